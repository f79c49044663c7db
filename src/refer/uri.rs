//! The Refer-To header (RFC 3515 §2.1): the transfer target, and the Replaces an attended
//! transfer embeds in its URI headers (RFC 3891 §3, RFC 5589 §7).

use bumpalo::Bump;

use super::error::ReferError;
use super::replaces::lex::{is_token_byte, Cursor};
use super::replaces::{check_replaces, emit_replaces, parse_replaces, Replaces};
use crate::wire::trim_lws;

/// URI schemes a Refer-To may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UriScheme {
    /// `sip:` (RFC 3261).
    Sip,
    /// `sips:` (RFC 3261).
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
}

impl UriScheme {
    /// The scheme name in lower case, without the colon.
    pub const fn as_str(self) -> &'static str {
        match self {
            UriScheme::Sip => "sip",
            UriScheme::Sips => "sips",
            UriScheme::Tel => "tel",
        }
    }
}

/// Bounds and policy for parsing a Refer-To.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferLimits {
    /// Longest raw Refer-To value accepted, in bytes (default 2048).
    pub max_len: usize,
    /// The schemes a target may have (default all three); any other answers 403.
    pub allowed: &'static [UriScheme],
}

impl ReferLimits {
    /// The default limits: 2048 bytes, `sip`, `sips` and `tel`.
    pub const DEFAULT: ReferLimits = ReferLimits {
        max_len: 2048,
        allowed: &[UriScheme::Sip, UriScheme::Sips, UriScheme::Tel],
    };
}

impl Default for ReferLimits {
    fn default() -> ReferLimits {
        ReferLimits::DEFAULT
    }
}

/// A parsed Refer-To (RFC 3515 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferTo<'b> {
    /// The target as an INVITE Request-URI: the `?headers` part removed, URI parameters kept,
    /// escapes left as written.
    pub uri: &'b [u8],
    /// The URI scheme.
    pub scheme: UriScheme,
    /// The `Replaces` URI header, percent-decoded and parsed, if the URI carries one.
    pub replaces: Option<Replaces<'b>>,
}

const WHAT: &str = "Refer-To";
const MALFORMED: ReferError = ReferError::Malformed { what: WHAT };

/// Parses a raw Refer-To header value: a name-addr (`<...>` with an optional display name) or
/// an addr-spec, then header parameters, which are checked for syntax and ignored.
///
/// An embedded `?Replaces=...` is percent-decoded (into `bump` when it holds escapes, at most
/// its own length) and parsed; other `&`-separated URI headers are checked and ignored. Refused:
/// a value longer than `limits.max_len` (400), a scheme outside `limits.allowed` (403), a
/// malformed `%` escape anywhere in the URI, Replaces twice, and a comma-separated list of
/// targets (RFC 3515 allows exactly one).
///
/// The headers part starts at the first `?` of the URI: a `?` in the user part, which RFC 3261
/// allows, is read as the start of the headers, as most parsers do, since reading it
/// differently from the next hop is how a second Replaces gets smuggled through.
///
/// ```
/// use bumpalo::Bump;
/// use sipdialog::refer::{parse_refer_to, ReferLimits, UriScheme};
///
/// let bump = Bump::new();
/// let value = b"<sips:transfertarget@chicago.example.com?Replaces=090459243588173445%3Bto-tag%3D7553452%3Bfrom-tag%3D31431>";
/// let to = parse_refer_to(value, &bump, &ReferLimits::DEFAULT).unwrap();
/// assert_eq!(to.uri, b"sips:transfertarget@chicago.example.com");
/// assert_eq!(to.scheme, UriScheme::Sips);
/// let r = to.replaces.unwrap();
/// assert_eq!(r.call_id, b"090459243588173445");
/// assert_eq!((r.to_tag, r.from_tag), (&b"7553452"[..], &b"31431"[..]));
///
/// let err = parse_refer_to(b"<http://example.com/>", &bump, &ReferLimits::DEFAULT).unwrap_err();
/// assert_eq!(err.status().0, 403);
/// ```
pub fn parse_refer_to<'b>(
    value: &'b [u8],
    bump: &'b Bump,
    limits: &ReferLimits,
) -> Result<ReferTo<'b>, ReferError> {
    if value.len() > limits.max_len {
        return Err(ReferError::TooLong {
            max: limits.max_len,
        });
    }
    let mut c = Cursor::new(trim_lws(value));
    let raw = match c.peek() {
        None => return Err(MALFORMED),
        Some(b'"') => {
            c.take_quoted().ok_or(MALFORMED)?;
            c.skip_lws();
            bracketed(&mut c)?
        }
        Some(b'<') => bracketed(&mut c)?,
        Some(_) => {
            // `*(token LWS) "<"` is a name-addr; anything else (`sip:` stops the tokens at
            // the colon) is an addr-spec, which ends at `;`, `,` or white space (RFC 3261 §20).
            let mut probe = Cursor::new(c.rest());
            while !probe.take_while(is_token_byte).is_empty() {
                probe.skip_lws();
            }
            if probe.peek() == Some(b'<') {
                let uri = bracketed(&mut probe)?;
                c = probe;
                uri
            } else {
                c.take_while(|b| !matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
            }
        }
    };
    // Header parameters: checked, ignored. A `,` at this level starts a second target.
    loop {
        c.skip_lws();
        match c.peek() {
            None => break,
            Some(b',') => return Err(ReferError::MultipleTargets),
            Some(_) => {
                if c.next_param().map_err(|()| MALFORMED)?.is_none() {
                    break;
                }
            }
        }
    }
    split_uri(raw, bump, limits)
}

/// Reads `<URI>` at the cursor and answers the URI; the cursor ends after `>`.
fn bracketed<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], ReferError> {
    if !c.eat(b'<') {
        return Err(MALFORMED);
    }
    let uri = c.take_while(|b| b != b'>');
    if !c.eat(b'>') {
        return Err(MALFORMED);
    }
    Ok(uri)
}

/// Whether `b` may stand in a URI as written here: visible ASCII except `<`, `>` and `"`,
/// which would end or confuse the header around it.
fn is_uri_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'<' | b'>' | b'"')
}

/// The value of a hex digit.
fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The byte at `i` of `raw`, decoded if it starts an escape, and how many bytes it took.
fn decode_at(raw: &[u8], i: usize) -> Result<Option<(u8, usize)>, ReferError> {
    match raw.get(i) {
        None => Ok(None),
        Some(b'%') => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
            (Some(hi), Some(lo)) => Ok(Some(((hi << 4) | lo, 3))),
            _ => Err(ReferError::BadEscape),
        },
        Some(&b) => Ok(Some((b, 1))),
    }
}

/// `Ok` when every byte of `uri` may stand in a URI and every `%` starts an escape.
fn check_uri_bytes(uri: &[u8]) -> Result<(), ReferError> {
    if !uri.iter().all(|&b| is_uri_byte(b)) {
        return Err(MALFORMED);
    }
    let mut i = 0;
    while let Some((_, n)) = decode_at(uri, i)? {
        i += n;
    }
    Ok(())
}

/// Whether the escaped header name `name` is `Replaces`, compared case-insensitively after
/// decoding (so `Re%70laces` cannot slip a second one past this check).
fn is_replaces_name(name: &[u8]) -> Result<bool, ReferError> {
    let want = b"replaces";
    let (mut i, mut k) = (0, 0);
    while let Some((b, n)) = decode_at(name, i)? {
        match want.get(k) {
            Some(w) if b.eq_ignore_ascii_case(w) => (i, k) = (i + n, k + 1),
            _ => return Ok(false),
        }
    }
    Ok(k == want.len())
}

/// Percent-decodes `raw`: borrowed when it has no escape, else into `bump` (at most
/// `raw.len()` bytes, so the arena grows linearly with the input).
fn decode<'b>(raw: &'b [u8], bump: &'b Bump) -> Result<&'b [u8], ReferError> {
    if !raw.contains(&b'%') {
        return Ok(raw);
    }
    let buf = bump.alloc_slice_fill_copy(raw.len(), 0u8);
    let (mut i, mut len) = (0, 0);
    while let Some((b, n)) = decode_at(raw, i)? {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b;
        }
        (i, len) = (i + n, len + 1);
    }
    let buf: &'b [u8] = buf;
    Ok(buf.get(..len).unwrap_or_default())
}

/// Checks the URI of a Refer-To and splits off its headers part.
fn split_uri<'b>(
    raw: &'b [u8],
    bump: &'b Bump,
    limits: &ReferLimits,
) -> Result<ReferTo<'b>, ReferError> {
    check_uri_bytes(raw)?;
    let colon = raw.iter().position(|&b| b == b':').ok_or(MALFORMED)?;
    let (name, ssp) = (
        raw.get(..colon).unwrap_or_default(),
        raw.get(colon + 1..).unwrap_or_default(),
    );
    let scheme_ok = name.first().is_some_and(u8::is_ascii_alphabetic)
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(MALFORMED);
    }
    let scheme = [UriScheme::Sip, UriScheme::Sips, UriScheme::Tel]
        .into_iter()
        .find(|s| name.eq_ignore_ascii_case(s.as_str().as_bytes()))
        .ok_or(ReferError::SchemeNotAllowed)?;
    if !limits.allowed.contains(&scheme) {
        return Err(ReferError::SchemeNotAllowed);
    }
    let (body, headers) = match ssp.iter().position(|&b| b == b'?') {
        Some(q) => (ssp.get(..q).unwrap_or_default(), ssp.get(q + 1..)),
        None => (ssp, None),
    };
    let uri = raw.get(..colon + 1 + body.len()).unwrap_or_default();
    match scheme {
        UriScheme::Sip | UriScheme::Sips => check_sip_body(body)?,
        // RFC 3966 has no headers part; a Replaces on a tel: target would mean nothing.
        UriScheme::Tel if body.is_empty() || headers.is_some() => return Err(MALFORMED),
        UriScheme::Tel => {}
    }
    let mut replaces_raw = None;
    for header in headers.into_iter().flat_map(|h| h.split(|&b| b == b'&')) {
        let eq = header.iter().position(|&b| b == b'=').ok_or(MALFORMED)?;
        let name = header.get(..eq).unwrap_or_default();
        if name.is_empty() {
            return Err(MALFORMED);
        }
        if is_replaces_name(name)? {
            if replaces_raw.is_some() {
                return Err(ReferError::DuplicateReplaces);
            }
            replaces_raw = header.get(eq + 1..);
        }
    }
    let replaces = match replaces_raw {
        Some(raw) => Some(parse_replaces(decode(raw, bump)?)?),
        None => None,
    };
    Ok(ReferTo {
        uri,
        scheme,
        replaces,
    })
}

/// `[userinfo "@"] hostport *(";" uri-parameter)` of a SIP URI: a non-empty userinfo when
/// there is an `@` (uri-parameters hold no `@`, so the first one ends the userinfo), and a
/// host of host characters (`_` tolerated, as real host names carry it).
fn check_sip_body(body: &[u8]) -> Result<(), ReferError> {
    let host_params = match body.iter().position(|&b| b == b'@') {
        Some(0) => return Err(MALFORMED),
        Some(at) => body.get(at + 1..).unwrap_or_default(),
        None => body,
    };
    let hostport = host_params.split(|&b| b == b';').next().unwrap_or_default();
    let host_byte =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':');
    if hostport.is_empty() || !hostport.iter().all(host_byte) {
        return Err(MALFORMED);
    }
    Ok(())
}

/// Appends a Refer-To value `<uri>` or `<uri?Replaces=...>`, the Replaces percent-encoded as
/// an attended transfer needs (RFC 5589 §7): everything outside RFC 3261 `unreserved` and
/// `hnv-unreserved` is escaped, `?` too (escaping more is always allowed), so `;`, `=`, `@`,
/// `%` and `&` never end up bare in the URI header.
///
/// `uri` must be non-empty visible ASCII without `?`, `<`, `>`, `"` (so no CR, LF, NUL or
/// white space) and with well-formed escapes; its scheme is not checked. On error `out` is
/// unchanged.
///
/// ```
/// use sipdialog::refer::{write_refer_to, Replaces};
///
/// let r = Replaces { call_id: b"a84b@atlanta.example.com", to_tag: b"1-2", from_tag: b"x.y", early_only: false };
/// let mut out = Vec::new();
/// write_refer_to(&mut out, b"sip:bob@biloxi.example.com", Some(&r)).unwrap();
/// assert_eq!(
///     out,
///     &b"<sip:bob@biloxi.example.com?Replaces=a84b%40atlanta.example.com%3Bto-tag%3D1-2%3Bfrom-tag%3Dx.y>"[..],
/// );
/// assert!(write_refer_to(&mut out, b"sip:b@c?Subject=x", None).is_err());
/// ```
pub fn write_refer_to(
    out: &mut Vec<u8>,
    uri: &[u8],
    replaces: Option<&Replaces<'_>>,
) -> Result<(), ReferError> {
    let invalid = ReferError::InvalidValue {
        what: "Refer-To URI",
    };
    if uri.is_empty() || uri.contains(&b'?') {
        return Err(invalid);
    }
    check_uri_bytes(uri).map_err(|_| invalid)?;
    if let Some(r) = replaces {
        check_replaces(r)?;
    }
    out.push(b'<');
    out.extend_from_slice(uri);
    if let Some(r) = replaces {
        out.extend_from_slice(b"?Replaces=");
        emit_replaces(r, |piece| put_escaped(out, piece));
    }
    out.push(b'>');
    Ok(())
}

/// Appends `bytes` with everything outside `unreserved` and `hnv-unreserved` (minus `?`)
/// percent-encoded, upper-case hex.
fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' // mark
                    | b'[' | b']' | b'/' | b':' | b'+' | b'$' // hnv-unreserved
            );
        if plain {
            out.push(b);
        } else {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'%', hi, lo]);
        }
    }
}
