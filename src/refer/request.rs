//! A received REFER, read for what the transferee acts on: the target, the Replaces it
//! carries, the Referred-By to pass on, and whether a subscription was asked for.

use bumpalo::Bump;

use super::{parse_refer_sub, parse_refer_to, ReferError, ReferLimits, ReferTo};
use crate::wire::{HeaderName, MessageView};

/// A REFER's instructions (RFC 3515 §2.4.1, RFC 4488, RFC 3892).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferRequest<'b> {
    /// The one Refer-To, decoded.
    pub target: ReferTo<'b>,
    /// The Referred-By value, raw, to copy into the triggered INVITE (RFC 3892 §3).
    pub referred_by: Option<&'b [u8]>,
    /// `false` when the REFER carried `Refer-Sub: false` (RFC 4488): no NOTIFY is sent.
    pub subscribe: bool,
}

impl<'b> ReferRequest<'b> {
    /// Reads a REFER: exactly one Refer-To (400 otherwise), a scheme `limits` allow (403),
    /// a well-formed Refer-Sub if present (400).
    ///
    /// ```
    /// use bumpalo::Bump;
    /// use sipdialog::refer::{ReferLimits, ReferRequest};
    /// use sipdialog::wire::MessageView;
    ///
    /// let refer = b"REFER sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr\r\n\
    /// From: <sip:alice@a>;tag=a1\r\nTo: <sip:bob@b>;tag=b1\r\nCall-ID: c1@a\r\nCSeq: 93 REFER\r\n\
    /// Refer-To: <sip:carol@chicago.example.com>\r\nReferred-By: <sip:alice@a>\r\n\
    /// Refer-Sub: false\r\nContent-Length: 0\r\n\r\n";
    /// let view = MessageView::parse(refer).unwrap();
    /// let bump = Bump::new();
    /// let request = ReferRequest::parse(&view, &bump, &ReferLimits::DEFAULT).unwrap();
    /// assert_eq!(request.target.uri, b"sip:carol@chicago.example.com");
    /// assert_eq!(request.referred_by, Some(&b"<sip:alice@a>"[..]));
    /// assert!(!request.subscribe);
    /// ```
    pub fn parse(
        view: &MessageView<'b>,
        bump: &'b Bump,
        limits: &ReferLimits,
    ) -> Result<ReferRequest<'b>, ReferError> {
        let mut refer_to = view.headers().filter(|h| h.kind == HeaderName::ReferTo);
        let first = match (refer_to.next(), refer_to.next()) {
            (Some(first), None) => first,
            (None, _) => return Err(ReferError::Malformed { what: "Refer-To" }),
            (Some(_), Some(_)) => return Err(ReferError::MultipleTargets),
        };
        let target = parse_refer_to(first.value, bump, limits)?;
        let subscribe = match view
            .headers()
            .find(|h| h.kind == HeaderName::Other && h.name.eq_ignore_ascii_case(b"Refer-Sub"))
        {
            Some(h) => parse_refer_sub(h.value)?,
            None => true,
        };
        Ok(ReferRequest {
            target,
            referred_by: view.referred_by(),
            subscribe,
        })
    }
}
