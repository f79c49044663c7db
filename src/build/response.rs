//! Responses (RFC 3261 §8.2.6) and the default reason phrases (§21).

use smallvec::SmallVec;

use super::{
    check, check_tail, guarded, is_token, put_header, put_name, put_tail, put_u64, put_unfolded,
    BuildError, ResponseParts,
};
use crate::wire::{HeaderName, MessageView, Method, ValueList};

/// A response to `request` (§8.2.6): status line with `reason` (empty: [`reason_phrase`]);
/// ALL Via header values copied in order; From copied; To copied, with `;tag=<to_tag>`
/// appended when the request's To has no tag and `to_tag` is Some (a To that already has a tag
/// is copied unchanged); Call-ID; CSeq copied; Record-Route values copied (in order) when the
/// request is dialog-creating (INVITE, SUBSCRIBE, REFER outside a dialog, i.e. request To has
/// no tag) and status is 101..=299; then Contact/extra headers/body from `parts`;
/// Content-Length always. A 100 also copies the request's Timestamp (§8.2.6.1).
///
/// Appends to `out`; on error `out` is left exactly as it was. A 2xx to INVITE or UPDATE, and
/// a 101..=199 that creates a dialog (INVITE, `to_tag` given), need `parts.contact`
/// ([`BuildError::MissingContact`]).
///
/// ```
/// use sipdialog::build::{response, ResponseParts};
/// use sipdialog::wire::MessageView;
///
/// let invite = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
/// Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
/// Max-Forwards: 70\r\n\
/// To: <sip:bob@biloxi.example.com>\r\n\
/// From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
/// Call-ID: a84b4c76e66710\r\n\
/// CSeq: 314159 INVITE\r\n\
/// Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
/// Content-Length: 0\r\n\r\n";
/// let request = MessageView::parse(invite).unwrap();
/// let parts = ResponseParts {
///     contact: Some(b"<sip:bob@192.0.2.4>"),
///     ..ResponseParts::default()
/// };
/// let mut out = Vec::new();
/// response(&request, 180, "Ringing", Some(b"a6c85cf"), &parts, &mut out).unwrap();
/// assert!(out.starts_with(b"SIP/2.0 180 Ringing\r\n"));
/// let view = MessageView::parse(&out).unwrap();
/// assert_eq!(view.to_tag(), Some(&b"a6c85cf"[..]));
/// assert_eq!(view.cseq().number, 314159);
/// ```
pub fn response(
    request: &MessageView<'_>,
    status: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    parts: &ResponseParts<'_>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    let method = match request.method() {
        None => return Err(BuildError::NotARequest),
        Some(Method::Ack) => return Err(BuildError::ResponseToAck),
        Some(m) => m,
    };
    if !(100..=699).contains(&status) {
        return Err(BuildError::InvalidStatus(status));
    }
    check(reason.as_bytes(), "Reason-Phrase")?;
    let reason = if reason.is_empty() {
        reason_phrase(status)
    } else {
        reason
    };
    if to_tag.is_some_and(|t| !is_token(t)) {
        return Err(BuildError::InvalidValue { header: "To" });
    }
    let untagged = request.to_tag().is_none();
    // The tag to add: only when the request's To has none (§8.2.6.2).
    let add_tag = to_tag.filter(|_| untagged);
    let creates_dialog = untagged
        && matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
        && (101..=299).contains(&status);
    let needs_contact = matches!(method, Method::Invite | Method::Update)
        && ((200..=299).contains(&status)
            || (method == Method::Invite && add_tag.is_some() && (101..=199).contains(&status)));
    if needs_contact && parts.contact.is_none() {
        return Err(BuildError::MissingContact);
    }
    check_tail(
        parts.contact,
        parts.content_type,
        parts.body,
        parts.extra_headers,
    )?;
    // One walk over the request's headers finds everything copied (a walk per header would
    // cost as much as scanning the request again, each time).
    let copied = Copied::collect(request, creates_dialog, status == 100);
    guarded(out, |out| {
        out.extend_from_slice(b"SIP/2.0 ");
        put_u64(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        put_values(out, &copied.via, HeaderName::Via)?;
        put_value(out, copied.from, HeaderName::From, None)?;
        put_value(out, copied.to, HeaderName::To, add_tag)?;
        put_header(out, "Call-ID", request.call_id());
        put_name(out, "CSeq");
        put_u64(out, u64::from(request.cseq().number));
        out.push(b' ');
        out.extend_from_slice(request.cseq().method);
        out.extend_from_slice(b"\r\n");
        if creates_dialog {
            put_values(out, &copied.record_route, HeaderName::RecordRoute)?;
        }
        if status == 100 {
            if let Some(timestamp) = copied.timestamp {
                // A 100 echoes the request's Timestamp (§8.2.6.1).
                put_name(out, "Timestamp");
                put_unfolded(out, timestamp, "Timestamp")?;
                out.extend_from_slice(b"\r\n");
            }
        }
        put_tail(
            out,
            parts.contact,
            parts.content_type,
            parts.body,
            parts.extra_headers,
        );
        Ok(())
    })
}

/// The raw header values a response copies from its request, found in one walk. Inline up to
/// a usual count, so a response costs no allocation.
struct Copied<'a> {
    via: SmallVec<[&'a [u8]; 4]>,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    record_route: SmallVec<[&'a [u8]; 4]>,
    timestamp: Option<&'a [u8]>,
}

impl<'a> Copied<'a> {
    /// Walks `view`'s headers until everything needed is found: all its Vias (their count is
    /// known from the scan), From and To, the Record-Routes when `record_route` (their count
    /// too). The Timestamp (wanted when `timestamp`) comes from the view, which the scan or the
    /// writer of a kept copy filled in. A view whose counts are unknown is walked whole.
    fn collect(view: &MessageView<'a>, record_route: bool, timestamp: bool) -> Copied<'a> {
        let mut c = Copied {
            via: SmallVec::new(),
            from: None,
            to: None,
            record_route: SmallVec::new(),
            timestamp: view.timestamp().filter(|_| timestamp),
        };
        let vias = view.via_lines().map(|n| n as usize);
        let rrs = view.route_tally(HeaderName::RecordRoute).lines as usize;
        // One Via line and at most one Record-Route line: the scan kept each of them, so no
        // walk at all.
        if vias == Some(1) && (!record_route || rrs <= 1) {
            if let Some(via) = view.top_via_raw() {
                c.via.push(via);
                c.from = Some(view.raw_from());
                c.to = Some(view.raw_to());
                if record_route {
                    c.record_route.extend(view.record_route());
                }
                return c;
            }
        }
        let done = |c: &Copied<'_>| {
            vias == Some(c.via.len())
                && c.from.is_some()
                && c.to.is_some()
                && (!record_route || c.record_route.len() == rrs)
        };
        for h in view.headers() {
            match h.kind {
                HeaderName::Via => c.via.push(h.value),
                HeaderName::RecordRoute if record_route => c.record_route.push(h.value),
                HeaderName::From if c.from.is_none() => c.from = Some(h.value),
                HeaderName::To if c.to.is_none() => c.to = Some(h.value),
                _ => continue,
            }
            if done(&c) {
                break;
            }
        }
        c
    }
}

/// Appends every list element of the `name` header values, one per line, in order.
fn put_values(out: &mut Vec<u8>, values: &[&[u8]], name: HeaderName) -> Result<(), BuildError> {
    for value in values.iter().flat_map(|v| ValueList::new(v)) {
        put_name(out, name.as_str());
        put_unfolded(out, value, name.as_str())?;
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Appends one copied header, with a tag added if given.
fn put_value(
    out: &mut Vec<u8>,
    value: Option<&[u8]>,
    name: HeaderName,
    tag: Option<&[u8]>,
) -> Result<(), BuildError> {
    let value = value.ok_or(BuildError::MissingHeader {
        header: name.as_str(),
    })?;
    put_name(out, name.as_str());
    put_unfolded(out, value, name.as_str())?;
    if let Some(tag) = tag {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The default reason phrase of a status code (RFC 3261 §21 and the extensions that define
/// codes since); for a code no RFC defines, the name of its class; empty outside 100..=699.
///
/// ```
/// use sipdialog::build::reason_phrase;
///
/// assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
/// assert_eq!(reason_phrase(499), "Request Failure");
/// ```
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        // A code no RFC defines is read as the x00 of its class (§8.1.3.2): name the class.
        _ => match status {
            100..=199 => "Provisional",
            200..=299 => "Successful",
            300..=399 => "Redirection",
            400..=499 => "Request Failure",
            500..=599 => "Server Failure",
            600..=699 => "Global Failure",
            _ => "",
        },
    }
}
