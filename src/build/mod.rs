//! Writing SIP messages into a buffer the caller owns: in-dialog requests (RFC 3261 §12.2.1.1),
//! ACK for a 2xx (§13.2.2.4), CANCEL (§9.1) and responses (§8.2.6).
//!
//! Every builder appends to `out` and, on error, leaves it exactly as it was. Nothing here
//! allocates beyond growing `out`, so a caller that reuses one buffer sends without allocating.
//! Values the caller passes are checked for CR, LF and NUL (header injection); values copied
//! from a received message have their folds unfolded, so every header is one line.

mod request;
mod response;
mod routes;
#[cfg(test)]
mod tests;
mod via;

use core::fmt;

use memchr::memchr3;

use crate::wire::{is_token, HeaderName, Method};

pub use request::{ack_for_2xx, ack_for_failure, cancel, initial_invite, request};
pub(crate) use request::{ack_for_2xx_marked, initial_invite_marked, request_marked, Marks};
pub use response::{reason_phrase, response};
pub(crate) use routes::{pack as pack_routes, packed_len as packed_routes_len};
pub use routes::{RouteSet, Routes};
pub(crate) use via::as_received;
pub use via::{error_response, stamp_received, stamped};

/// The dialog state a request inside the dialog is built from (RFC 3261 §12.2.1.1).
#[derive(Clone, Copy, Debug)]
pub struct DialogParts<'a> {
    /// Call-ID.
    pub call_id: &'a [u8],
    /// Our party as written in From of our requests, without the tag parameter, e.g.
    /// `"Alice" <sip:alice@atlanta.example.com>` or `<sip:alice@a.example>`.
    pub local_uri: &'a [u8],
    /// Our tag.
    pub local_tag: &'a [u8],
    /// The peer as written in To of our requests, without the tag.
    pub remote_uri: &'a [u8],
    /// The peer's tag; empty when the dialog has none yet (never for an established dialog).
    pub remote_tag: &'a [u8],
    /// The remote target: the URI from the peer's Contact (addr-spec, no angle brackets).
    pub remote_target: &'a [u8],
    /// The route set, in the order our requests must visit it; each entry a name-addr as in
    /// Record-Route, e.g. `<sip:p1.example.com;lr>`.
    pub route_set: RouteSet<'a>,
}

/// The per-request parts.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The method (not `Method::Extension`, not CANCEL: use [`cancel`]).
    pub method: Method,
    /// CSeq number.
    pub cseq: u32,
    /// The whole Via value the caller's transport provides, e.g.
    /// `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx1`.
    pub via: &'a [u8],
    /// Max-Forwards (70 is usual).
    pub max_forwards: u8,
    /// Contact value to send (INVITE/UPDATE must carry one: §12.2.1.1 target refresh), e.g.
    /// `<sip:alice@192.0.2.1:5060>`.
    pub contact: Option<&'a [u8]>,
    /// Content-Type of the body, required when the body is not empty.
    pub content_type: Option<&'a [u8]>,
    /// The body.
    pub body: &'a [u8],
    /// Any further headers, written as `name: value` in order.
    pub extra_headers: &'a [(&'a str, &'a [u8])],
}

/// What a response carries beyond the copied headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseParts<'a> {
    /// Contact value (dialog-creating 1xx/2xx and target-refresh 2xx need one).
    pub contact: Option<&'a [u8]>,
    /// Content-Type of the body, required when the body is not empty.
    pub content_type: Option<&'a [u8]>,
    /// The body.
    pub body: &'a [u8],
    /// Any further headers, written as `name: value` in order (e.g. `Retry-After`).
    pub extra_headers: &'a [(&'a str, &'a [u8])],
}

/// Why a message could not be built.
///
/// These are the caller's mistakes (or a received message this module refuses to echo), so
/// [`BuildError::status`] answers 500 for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A value holds CR, LF or NUL (header injection), is empty where one is required, or is
    /// not of the form its header needs (a tag that is not a token, a Request-URI with white
    /// space, a route entry without `<URI>`). `header` names the header (or `Request-URI`,
    /// `Reason-Phrase`).
    InvalidValue {
        /// The header the value was for.
        header: &'static str,
    },
    /// An entry of `extra_headers` has a name that is not a token, a name this module writes
    /// itself (Via, From, To, Call-ID, CSeq, Max-Forwards, Route, Contact, Content-Type,
    /// Content-Length, in any form), or a value holding CR, LF or NUL.
    InvalidExtraHeader {
        /// Its index in `extra_headers`.
        index: usize,
    },
    /// A status code outside 100..=699.
    InvalidStatus(u16),
    /// A method [`request`] cannot build: [`Method::Extension`], or CANCEL (use [`cancel`]).
    UnsupportedMethod(Method),
    /// A non-empty body without a Content-Type.
    BodyWithoutContentType,
    /// An INVITE or UPDATE request, or a dialog-creating or 2xx response to one, without the
    /// Contact RFC 3261 §12.1.1 and §12.2.1.1 require (target refresh).
    MissingContact,
    /// The dialog has no remote tag, and the method is only ever sent inside a dialog (BYE,
    /// ACK, re-INVITE, UPDATE, INFO, OPTIONS, REFER, NOTIFY, PRACK).
    MissingRemoteTag,
    /// The message passed to [`cancel`] or [`ack_for_failure`] is not an INVITE request.
    CancelNotInvite,
    /// [`response`] was asked to answer an ACK, which gets no response.
    ResponseToAck,
    /// [`response`] was given a response, not a request.
    NotARequest,
    /// The received message lacks a header the built message must copy (the INVITE's Via for
    /// a CANCEL).
    MissingHeader {
        /// The header.
        header: &'static str,
    },
}

impl BuildError {
    /// The status code and reason phrase to answer with when a response could not be built:
    /// always 500, since the fault is on our side.
    ///
    /// ```
    /// use sipdialog::build::BuildError;
    ///
    /// assert_eq!(BuildError::InvalidStatus(700).status(), (500, "Server Internal Error"));
    /// ```
    pub const fn status(&self) -> (u16, &'static str) {
        (500, "Server Internal Error")
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidValue { header } => write!(f, "invalid value for {header}"),
            BuildError::InvalidExtraHeader { index } => write!(f, "invalid extra header #{index}"),
            BuildError::InvalidStatus(code) => write!(f, "status code {code} is not 100-699"),
            BuildError::UnsupportedMethod(m) => {
                write!(
                    f,
                    "cannot build a {} request here",
                    m.as_str().unwrap_or("extension")
                )
            }
            BuildError::BodyWithoutContentType => f.write_str("body without Content-Type"),
            BuildError::MissingContact => f.write_str("missing Contact"),
            BuildError::MissingRemoteTag => f.write_str("in-dialog request without remote tag"),
            BuildError::CancelNotInvite => {
                f.write_str("CANCEL or ACK of a message that is not an INVITE")
            }
            BuildError::ResponseToAck => f.write_str("ACK gets no response"),
            BuildError::NotARequest => f.write_str("responding to a response"),
            BuildError::MissingHeader { header } => write!(f, "message has no {header}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Runs `write` on `out` and truncates back to the original length if it fails, so a failed
/// build leaves no half message behind.
fn guarded<T>(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    let len = out.len();
    let result = write(out);
    if result.is_err() {
        out.truncate(len);
    }
    result
}

/// `Ok` when `value` holds no CR, LF or NUL: anything else could end the header line early.
fn check(value: &[u8], header: &'static str) -> Result<(), BuildError> {
    match memchr3(b'\r', b'\n', 0, value) {
        None => Ok(()),
        Some(_) => Err(BuildError::InvalidValue { header }),
    }
}

/// [`check`], and not empty.
fn check_nonempty(value: &[u8], header: &'static str) -> Result<(), BuildError> {
    if value.is_empty() {
        return Err(BuildError::InvalidValue { header });
    }
    check(value, header)
}

/// `Ok` for a URI that can stand in a request line or inside `<>`: not empty, and no white
/// space, angle bracket, CR, LF or NUL.
fn check_uri(uri: &[u8], header: &'static str) -> Result<(), BuildError> {
    let bad = |b: &u8| matches!(b, b' ' | b'\t' | b'<' | b'>' | b'\r' | b'\n' | 0);
    if uri.is_empty() || uri.iter().any(bad) {
        return Err(BuildError::InvalidValue { header });
    }
    Ok(())
}

/// Checks the caller's extra headers: token names, none that this module writes itself (a
/// second Content-Length or Call-ID is how smuggling starts), values without CR, LF or NUL.
fn check_extras(extras: &[(&str, &[u8])]) -> Result<(), BuildError> {
    for (index, (name, value)) in extras.iter().enumerate() {
        let owned = matches!(
            HeaderName::classify(name.as_bytes()),
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::Route
                | HeaderName::Contact
                | HeaderName::ContentType
                | HeaderName::ContentLength
        );
        if owned || !is_token(name.as_bytes()) || check(value, "").is_err() {
            return Err(BuildError::InvalidExtraHeader { index });
        }
    }
    Ok(())
}

/// Checks Contact, Content-Type, body and extra headers, shared by requests and responses.
fn check_tail(
    contact: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
    extras: &[(&str, &[u8])],
) -> Result<(), BuildError> {
    if let Some(contact) = contact {
        check_nonempty(contact, "Contact")?;
    }
    match content_type {
        Some(ct) => check_nonempty(ct, "Content-Type")?,
        None if !body.is_empty() => return Err(BuildError::BodyWithoutContentType),
        None => {}
    }
    check_extras(extras)
}

/// Appends the decimal digits of `n` without allocating.
fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut len = 0;
    for slot in buf.iter_mut().rev() {
        // `n % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(buf.len() - len..).unwrap_or_default());
}

/// Appends `name: ` (the value follows).
fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
}

/// Appends `name: value CRLF` for a value already checked.
fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    put_name(out, name);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the value of a received header, LWS-trimmed and with each fold (a run of CR, LF,
/// SP and HT that holds a CR or LF) replaced by one SP (RFC 3261 §7.3.1: same meaning). A
/// NUL is refused: other parsers may read it as the end of the value.
fn put_unfolded(out: &mut Vec<u8>, value: &[u8], header: &'static str) -> Result<(), BuildError> {
    let lws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = value.iter().position(|b| !lws(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !lws(b)).map_or(start, |i| i + 1);
    let mut rest = value.get(start..end).unwrap_or_default();
    while let Some(i) = memchr3(b'\r', b'\n', 0, rest) {
        let (head, tail) = rest.split_at(i);
        if tail.first() == Some(&0) {
            return Err(BuildError::InvalidValue { header });
        }
        out.extend_from_slice(head);
        out.push(b' ');
        let skip = tail.iter().position(|b| !lws(b)).unwrap_or(tail.len());
        rest = tail.get(skip..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// Appends Contact, the extra headers, Content-Type, Content-Length, the empty line and the
/// body: the tail every message here ends with. All values were checked by [`check_tail`].
fn put_tail(
    out: &mut Vec<u8>,
    contact: Option<&[u8]>,
    content_type: Option<&[u8]>,
    body: &[u8],
    extras: &[(&str, &[u8])],
) {
    if let Some(contact) = contact {
        put_header(out, "Contact", contact);
    }
    for (name, value) in extras {
        put_header(out, name, value);
    }
    if let Some(ct) = content_type {
        put_header(out, "Content-Type", ct);
    }
    put_name(out, "Content-Length");
    put_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}
