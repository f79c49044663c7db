//! Where answers go: the top Via of a received request stamped with the address it came
//! from (RFC 3261 §18.2.1, RFC 3581 §4), and stateless answers to requests the scanner
//! refused.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use super::{put_name, put_u64, put_unfolded, BuildError};
use crate::wire::value::{Cursor, ViaValue};
use crate::wire::{MessageView, Salvaged, Via};

/// What the top Via of a request from `source` must say so that its answers go back to
/// `source`: `received` when the sent-by host is not the source address (or a `received` was
/// already there: only the receiver may write one, so the sender's is a forgery aimed at a
/// third party), and `rport` when the sender asked for it. `None` when the Via already
/// leads back to the source.
///
/// Also the port answers go to at `source` once stamped: the `rport` when asked for, else the
/// sent-by port, else 5060.
fn stamp_for(via: &ViaValue<'_>, source: SocketAddr) -> (Option<(IpAddr, Option<u16>)>, u16) {
    let view = crate::wire::Via {
        sent_by: via.sent_by,
        branch: None,
        received: None,
        rport: None,
    };
    let (host, port) = view.host_and_port();
    let host_is_source = crate::wire::value::ip_addr(host) == Some(source.ip());
    let rport = via.rport.is_some();
    let reply_port = match rport {
        true => source.port(),
        false => port.unwrap_or(5060),
    };
    if host_is_source && via.received.is_none() && via.rport.is_none() {
        return (None, reply_port);
    }
    (
        Some((source.ip(), rport.then_some(source.port()))),
        reply_port,
    )
}

/// Where [`put_stamped`] wrote the stamped element's fields, as ranges of its output.
struct StampedAt {
    sent_by: Range<usize>,
    branch: Option<Range<usize>>,
    received: Range<usize>,
}

/// Appends the Via header value `raw` with its first element stamped: its own `received`
/// and `rport` left out, ours added after its other parameters.
fn put_stamped(
    out: &mut Vec<u8>,
    raw: &[u8],
    via: &ViaValue<'_>,
    stamp: (IpAddr, Option<u16>),
) -> StampedAt {
    let base = raw.as_ptr() as usize;
    let sent_by_start = via.sent_by.as_ptr() as usize - base;
    let sent_by_end = sent_by_start + via.sent_by.len();
    let sent_by = out.len() + sent_by_start..out.len() + sent_by_end;
    out.extend_from_slice(&raw[..sent_by_end]);
    let params = &raw[sent_by_end..via.end];
    let mut branch = None;
    let mut c = Cursor::new(params);
    loop {
        let before = c.position();
        match c.next_param() {
            Ok(Some((name, value))) => {
                if name.eq_ignore_ascii_case(b"received") || name.eq_ignore_ascii_case(b"rport") {
                    continue;
                }
                if let (true, Some(value)) = (name.eq_ignore_ascii_case(b"branch"), value) {
                    let at =
                        out.len() + (value.as_ptr() as usize - params.as_ptr() as usize) - before;
                    branch = Some(at..at + value.len());
                }
                out.extend_from_slice(&params[before..c.position()]);
            }
            // The element parsed once already, so this ends at its end.
            _ => break,
        }
    }
    out.extend_from_slice(b";received=");
    let received_start = out.len();
    put_ip(out, stamp.0);
    let received = received_start..out.len();
    if let Some(port) = stamp.1 {
        out.extend_from_slice(b";rport=");
        put_u64(out, u64::from(port));
    }
    out.extend_from_slice(&raw[via.end..]);
    StampedAt {
        sent_by,
        branch,
        received,
    }
}

/// Appends `ip` as text: a dotted quad without the formatting machinery, which costs more
/// than the rest of the stamp.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                put_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// What stamping a request did.
enum Stamp<'r> {
    /// Nothing: its Via leads back to the source already (here decoded), at this port.
    Kept(Via<'r>, u16),
    /// The stamped copy is in the output; its Via value replaced the one at `at`
    /// (`raw_len` bytes) in the request.
    Written {
        at: usize,
        raw_len: usize,
        fields: StampedAt,
        rport: Option<Option<u16>>,
        /// The port answers go to at the source.
        reply_port: u16,
    },
}

/// Decodes the top Via of `request` (once) and, when it does not lead back to `source`,
/// appends the stamped copy of the request to `out`.
fn stamp<'r>(
    request: &MessageView<'r>,
    source: SocketAddr,
    out: &mut Vec<u8>,
) -> Result<Stamp<'r>, BuildError> {
    let missing = BuildError::MissingHeader { header: "Via" };
    let invalid = BuildError::InvalidValue { header: "Via" };
    let raw = request.top_via_raw().ok_or(missing)?;
    let via = crate::wire::value::via(raw).map_err(|()| invalid)?;
    let (stamp, reply_port) = stamp_for(&via, source);
    let Some(stamp) = stamp else {
        return Via::from_value(&via)
            .map(|via| Stamp::Kept(via, reply_port))
            .map_err(|_| invalid);
    };
    let bytes = request.as_bytes();
    let at = (raw.as_ptr() as usize)
        .checked_sub(bytes.as_ptr() as usize)
        .filter(|&s| s + raw.len() <= bytes.len())
        .ok_or(missing)?;
    out.extend_from_slice(&bytes[..at]);
    let fields = put_stamped(out, raw, &via, stamp);
    out.extend_from_slice(&bytes[at + raw.len()..]);
    Ok(Stamp::Written {
        at,
        raw_len: raw.len(),
        fields,
        rport: stamp.1.map(Some),
        reply_port,
    })
}

/// Writes `request` into `out` with its top Via stamped for `source`, the address it came
/// from, as a server does on receipt (RFC 3261 §18.2.1, RFC 3581 §4): every response built
/// from the stamped copy, now or later, then goes back to `source` (see
/// [`crate::wire::Via::response_destination`]) and never to an address the sender named.
/// Returns `false`, writing nothing, when the Via already leads back to `source`; the request
/// can then be used as it is.
///
/// ```
/// use sipdialog::build::stamp_received;
/// use sipdialog::wire::MessageView;
///
/// let invite = b"INVITE sip:b@192.0.2.4 SIP/2.0\r\n\
/// Via: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
/// To: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
/// let view = MessageView::parse(invite).unwrap();
/// let mut stamped = Vec::new();
/// assert!(stamp_received(&view, "203.0.113.9:40000".parse().unwrap(), &mut stamped).unwrap());
/// let via = MessageView::parse(&stamped).unwrap().top_via().unwrap().unwrap();
/// assert_eq!(via.response_destination(), "203.0.113.9:40000".parse().ok());
/// ```
pub fn stamp_received(
    request: &MessageView<'_>,
    source: SocketAddr,
    out: &mut Vec<u8>,
) -> Result<bool, BuildError> {
    Ok(matches!(
        stamp(request, source, out)?,
        Stamp::Written { .. }
    ))
}

/// [`stamp_received`], and the view of the stamped copy in `out` when there is one (`None`:
/// the Via leads back to `source` already, use `request` as it is). The view is `request`'s
/// moved onto the copy, not a second scan.
///
/// ```
/// use sipdialog::build::stamped;
/// use sipdialog::wire::MessageView;
///
/// let bye = b"BYE sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK2\r\n\
/// From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\
/// Content-Length: 0\r\n\r\n";
/// let view = MessageView::parse(bye).unwrap();
/// let mut out = Vec::new();
/// let copy = stamped(&view, "203.0.113.9:5060".parse().unwrap(), &mut out).unwrap().unwrap();
/// assert_eq!(copy.via_branch(), Some(&b"z9hG4bK2"[..]));
/// assert_eq!(copy.top_via().unwrap().unwrap().received, Some(&b"203.0.113.9"[..]));
/// assert_eq!(copy.call_id(), b"c");
/// ```
pub fn stamped<'b>(
    request: &MessageView<'_>,
    source: SocketAddr,
    out: &'b mut Vec<u8>,
) -> Result<Option<MessageView<'b>>, BuildError> {
    out.clear();
    match stamp(request, source, out)? {
        Stamp::Kept(..) => Ok(None),
        Stamp::Written {
            at,
            raw_len,
            fields,
            rport,
            ..
        } => moved(request, out, (at, raw_len), fields, rport).map(Some),
    }
}

/// A received request as every layer after the transport reads it: its top Via stamped for
/// `source` when it does not lead back there (the copy written into `out`), and decoded,
/// once either way, in place. A request whose Via cannot be stamped is left as it is.
pub(crate) fn as_received<'a>(
    request: &mut MessageView<'a>,
    source: SocketAddr,
    out: &'a mut Vec<u8>,
) {
    out.clear();
    match stamp(request, source, out) {
        Ok(Stamp::Kept(via, reply_port)) => {
            request.set_via(via);
            request.set_reply_port(reply_port);
        }
        Ok(Stamp::Written {
            at,
            raw_len,
            fields,
            rport,
            reply_port,
        }) => {
            if let Ok(moved) = moved(request, out, (at, raw_len), fields, rport) {
                *request = moved;
                request.set_reply_port(reply_port);
            }
        }
        Err(_) => {}
    }
}

/// The view of `request` moved onto its stamped copy `out`, with the stamped Via decoded
/// from where it was written: no second scan, no second decode.
fn moved<'b>(
    request: &MessageView<'_>,
    out: &'b [u8],
    (at, raw_len): (usize, usize),
    fields: StampedAt,
    rport: Option<Option<u16>>,
) -> Result<MessageView<'b>, BuildError> {
    let invalid = BuildError::InvalidValue { header: "Via" };
    let new_len = (out.len() + raw_len)
        .checked_sub(request.as_bytes().len())
        .ok_or(invalid)?;
    let via = Via {
        sent_by: out.get(fields.sent_by).ok_or(invalid)?,
        branch: fields.branch.and_then(|r| out.get(r)),
        received: out.get(fields.received),
        rport,
    };
    let mut view = request
        .with_top_via_replaced(out, at, raw_len, new_len)
        .ok_or(invalid)?;
    view.set_via(via);
    Ok(view)
}

/// A stateless answer to a request the scanner refused (RFC 3261 §8.2.6: Via values, From,
/// To, Call-ID and CSeq as the request had them, folds unfolded, the top Via stamped for
/// `source`), e.g. 400, 505 or 513 from [`crate::wire::WireError::status`]. A header holding
/// a NUL is left out rather than copied. The answer carries no To tag of ours (no dialog
/// exists) and no body, so it is never much larger than what it answers.
///
/// ```
/// use sipdialog::build::error_response;
/// use sipdialog::wire::{MessageView, Salvaged};
///
/// let bad = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
/// From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
/// let error = MessageView::parse(bad).unwrap_err();
/// let (code, reason) = error.status();
/// let mut out = Vec::new();
/// let salvaged = Salvaged::scan(bad).unwrap();
/// error_response(&salvaged, code, reason, Some("192.0.2.1:5060".parse().unwrap()), &mut out)
///     .unwrap();
/// assert!(out.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
/// assert_eq!(MessageView::parse(&out).unwrap().cseq().number, 1);
/// ```
pub fn error_response(
    salvaged: &Salvaged<'_>,
    status: u16,
    reason: &str,
    source: Option<SocketAddr>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    if !(100..=699).contains(&status) {
        return Err(BuildError::InvalidStatus(status));
    }
    super::check(reason.as_bytes(), "Reason-Phrase")?;
    let top = salvaged
        .top_via_value()
        .ok_or(BuildError::MissingHeader { header: "Via" })?;
    super::guarded(out, |out| {
        out.extend_from_slice(b"SIP/2.0 ");
        put_u64(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (i, raw) in salvaged.vias().iter().enumerate() {
            let stamp = source.filter(|_| i == 0).and_then(|s| stamp_for(&top, s).0);
            match stamp {
                Some(stamp) => {
                    put_name(out, "Via");
                    let mut unfolded = Vec::with_capacity(raw.len());
                    put_stamped(&mut unfolded, raw, &top, stamp);
                    put_unfolded(out, &unfolded, "Via")?;
                }
                None => put_copied(out, "Via", raw)?,
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in ["From", "To", "Call-ID", "CSeq"]
            .into_iter()
            .zip(salvaged.identity())
        {
            if let Some(value) = value {
                let len = out.len();
                if put_copied(out, name, value).is_ok() {
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.truncate(len);
                }
            }
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Ok(())
    })
}

/// Appends `name: value` for a received value, unfolded; refuses a NUL or a bare CR.
fn put_copied(out: &mut Vec<u8>, name: &'static str, value: &[u8]) -> Result<(), BuildError> {
    put_name(out, name);
    let start = out.len();
    put_unfolded(out, value, name)?;
    if out[start..].contains(&b'\r') {
        return Err(BuildError::InvalidValue { header: name });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(via: &str, source: &str) -> Option<String> {
        let msg = format!(
            "BYE sip:a@b SIP/2.0\r\nVia: {via}\r\nFrom: <sip:x@y>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let view = MessageView::parse(msg.as_bytes()).unwrap();
        let mut out = Vec::new();
        stamp_received(&view, source.parse().unwrap(), &mut out)
            .unwrap()
            .then(|| {
                let view = MessageView::parse(&out).unwrap();
                let via = view
                    .headers()
                    .find(|h| h.kind == crate::wire::HeaderName::Via);
                String::from_utf8(via.unwrap().value.to_vec()).unwrap()
            })
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.7",
            "203.0.113.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            put_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }

    #[test]
    fn stamps_only_when_the_via_does_not_lead_back() {
        assert_eq!(
            stamped(
                "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1",
                "127.0.0.1:5061"
            ),
            None
        );
        // Another port and no rport: the answer goes to the sent-by port (§18.2.2).
        assert_eq!(
            stamped("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1", "127.0.0.1:7"),
            None
        );
        assert_eq!(
            stamped(
                "SIP/2.0/UDP pc.example.com;branch=z9hG4bK1",
                "192.0.2.1:5060"
            )
            .as_deref(),
            Some(" SIP/2.0/UDP pc.example.com;branch=z9hG4bK1;received=192.0.2.1")
        );
        assert_eq!(
            stamped(
                "SIP/2.0/UDP 10.1.1.1:5060;rport;branch=z9hG4bK1",
                "192.0.2.1:4000"
            )
            .as_deref(),
            Some(" SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1;received=192.0.2.1;rport=4000")
        );
    }

    #[test]
    fn a_forged_received_or_rport_is_replaced() {
        let via = "SIP/2.0/UDP 127.0.0.1:5061;received=198.51.100.66;rport=9;branch=z9hG4bK1, \
SIP/2.0/UDP other";
        assert_eq!(
            stamped(via, "127.0.0.1:5061").as_deref(),
            Some(
                " SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1;received=127.0.0.1;rport=5061, \
SIP/2.0/UDP other"
            )
        );
    }

    #[test]
    fn error_answers_copy_what_they_can() {
        let bad = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP p2\r\nFrom: <sip:x@y>\r\n ;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\0x\r\n\
CSeq: 1 INVITE\r\nContent-Length: -1\r\n\r\n";
        let s = Salvaged::scan(bad).unwrap();
        let mut out = Vec::new();
        error_response(
            &s,
            400,
            "Bad Request",
            Some("192.0.2.5:5070".parse().unwrap()),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 400 Bad Request\r\n\
Via: SIP/2.0/UDP h.example;branch=z9hG4bK1;received=192.0.2.5\r\nVia: SIP/2.0/UDP p2\r\n\
From: <sip:x@y> ;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
