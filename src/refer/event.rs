//! The headers of a REFER's implicit subscription: `Event: refer;id=N` (RFC 3515 §2.4.6),
//! Subscription-State (RFC 6665 §8.2.3) and Refer-Sub (RFC 4488 §3).

use super::error::ReferError;
use super::replaces::lex::{is_token, is_token_byte, parse_u32, put_u32, Cursor};
use crate::wire::trim_lws;

/// The `id` of an `Event: refer;id=N` (RFC 3515 §2.4.6: the CSeq number of the REFER, which
/// tells apart the subscriptions of several REFERs in one dialog).
///
/// `Ok(None)` for a plain `refer`; `Err(BadEvent)` (489) for another package. The package name
/// is compared byte by byte, as RFC 6665 §8.2.1 says, so `Refer` is another package. Parameter
/// names are case-insensitive; other parameters are checked for syntax and ignored; an `id`
/// that is not a decimal `u32` is malformed (400).
///
/// ```
/// use sipdialog::refer::parse_refer_event;
///
/// assert_eq!(parse_refer_event(b"refer;id=93809824"), Ok(Some(93809824)));
/// assert_eq!(parse_refer_event(b"presence").unwrap_err().status().0, 489);
/// ```
pub fn parse_refer_event(value: &[u8]) -> Result<Option<u32>, ReferError> {
    let malformed = ReferError::Malformed { what: "Event" };
    let mut c = Cursor::new(trim_lws(value));
    // `event-type` is a token (its dots separate templates, so `refer.x` is not `refer`).
    let package = c.take_while(is_token_byte);
    if package.is_empty() {
        return Err(malformed);
    }
    if package != b"refer" {
        return Err(ReferError::BadEvent);
    }
    let mut id = None;
    while let Some((name, val)) = c.next_param().map_err(|()| malformed)? {
        if name.eq_ignore_ascii_case(b"id") {
            if id.is_some() {
                return Err(ReferError::DuplicateParam { param: "id" });
            }
            id = Some(val.and_then(parse_u32).ok_or(malformed)?);
        }
    }
    Ok(id)
}

/// Subscription-State (RFC 6665 §8.2.3): `active` or `pending` with an optional `expires`,
/// `terminated` with an optional `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState<'a> {
    /// The subscription is active.
    Active {
        /// Seconds until it expires, if given.
        expires: Option<u32>,
    },
    /// The subscription is pending (not yet authorized).
    Pending {
        /// Seconds until it expires, if given.
        expires: Option<u32>,
    },
    /// The subscription has ended.
    Terminated {
        /// Why (`noresource`, `timeout`, `rejected`, ... or an extension token), if given.
        reason: Option<&'a [u8]>,
    },
}

/// `delta-seconds`: digits, saturating at `u32::MAX` (RFC 3261 §25.1 leaves the size open;
/// a longer run of digits still means "very long", not "malformed").
fn delta_seconds(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u32, |n, &d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

/// Parses a Subscription-State value. The state is case-insensitive; an extension state
/// (RFC 6665 allows them) is refused as malformed, as is `expires` or `reason` twice. `expires`
/// is read only for `active`/`pending` and `reason` only for `terminated`; every other
/// parameter (`retry-after`, extensions) is checked for syntax and ignored.
///
/// ```
/// use sipdialog::refer::{parse_subscription_state, SubscriptionState};
///
/// assert_eq!(
///     parse_subscription_state(b"active;expires=60"),
///     Ok(SubscriptionState::Active { expires: Some(60) }),
/// );
/// ```
pub fn parse_subscription_state(value: &[u8]) -> Result<SubscriptionState<'_>, ReferError> {
    let malformed = ReferError::Malformed {
        what: "Subscription-State",
    };
    let mut c = Cursor::new(trim_lws(value));
    let state = c.take_while(is_token_byte);
    let (mut expires, mut reason) = (None, None);
    while let Some((name, val)) = c.next_param().map_err(|()| malformed)? {
        if name.eq_ignore_ascii_case(b"expires") {
            if expires.is_some() {
                return Err(ReferError::DuplicateParam { param: "expires" });
            }
            expires = Some(val.and_then(delta_seconds).ok_or(malformed)?);
        } else if name.eq_ignore_ascii_case(b"reason") {
            if reason.is_some() {
                return Err(ReferError::DuplicateParam { param: "reason" });
            }
            reason = Some(val.filter(|v| is_token(v)).ok_or(malformed)?);
        }
    }
    if state.eq_ignore_ascii_case(b"active") {
        Ok(SubscriptionState::Active { expires })
    } else if state.eq_ignore_ascii_case(b"pending") {
        Ok(SubscriptionState::Pending { expires })
    } else if state.eq_ignore_ascii_case(b"terminated") {
        Ok(SubscriptionState::Terminated { reason })
    } else {
        Err(malformed)
    }
}

/// Appends a Subscription-State value: `active;expires=60`, `pending`,
/// `terminated;reason=noresource`. The reason must be a token. On error `out` is unchanged.
///
/// ```
/// use sipdialog::refer::{write_subscription_state, SubscriptionState};
///
/// let mut out = Vec::new();
/// write_subscription_state(&mut out, &SubscriptionState::Terminated { reason: Some(b"noresource") }).unwrap();
/// assert_eq!(out, b"terminated;reason=noresource");
/// ```
pub fn write_subscription_state(
    out: &mut Vec<u8>,
    s: &SubscriptionState<'_>,
) -> Result<(), ReferError> {
    let (state, expires, reason) = match *s {
        SubscriptionState::Active { expires } => ("active", expires, None),
        SubscriptionState::Pending { expires } => ("pending", expires, None),
        SubscriptionState::Terminated { reason } => ("terminated", None, reason),
    };
    if reason.is_some_and(|r| !is_token(r)) {
        return Err(ReferError::InvalidValue { what: "reason" });
    }
    out.extend_from_slice(state.as_bytes());
    if let Some(n) = expires {
        out.extend_from_slice(b";expires=");
        put_u32(out, n);
    }
    if let Some(r) = reason {
        out.extend_from_slice(b";reason=");
        out.extend_from_slice(r);
    }
    Ok(())
}

/// Parses a Refer-Sub value (RFC 4488 §3): `true` or `false`, case-insensitive; parameters
/// are checked for syntax and ignored.
///
/// ```
/// use sipdialog::refer::parse_refer_sub;
///
/// assert_eq!(parse_refer_sub(b"false"), Ok(false));
/// assert!(parse_refer_sub(b"maybe").is_err());
/// ```
pub fn parse_refer_sub(value: &[u8]) -> Result<bool, ReferError> {
    let malformed = ReferError::Malformed { what: "Refer-Sub" };
    let mut c = Cursor::new(trim_lws(value));
    let word = c.take_while(is_token_byte);
    while c.next_param().map_err(|()| malformed)?.is_some() {}
    if word.eq_ignore_ascii_case(b"true") {
        Ok(true)
    } else if word.eq_ignore_ascii_case(b"false") {
        Ok(false)
    } else {
        Err(malformed)
    }
}
