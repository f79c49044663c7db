//! In-dialog requests (RFC 3261 §12.2.1.1), ACK for a 2xx (§13.2.2.4) and CANCEL (§9.1).

use memchr::{memchr, memchr2, memrchr};

use super::{
    check, check_nonempty, check_tail, check_uri, guarded, is_token, put_header, put_name,
    put_tail, put_u64, put_unfolded, BuildError, DialogParts, RequestParts,
};
use crate::wire::{HeaderName, MessageView, Method};

/// Writes an in-dialog request (BYE, ACK for a 2xx, re-INVITE, UPDATE, INFO, OPTIONS, REFER,
/// NOTIFY, MESSAGE, PRACK...). Appends to `out` (does not clear it). On error `out` is left
/// exactly as it was (truncate back).
///
/// The Request-URI and Route headers follow the route set (§12.2.1.1): with no route set or a
/// loose-routing first hop (`;lr`), the Request-URI is the remote target and every entry is a
/// Route; with a strict-routing first hop, the Request-URI is that hop and the remote target
/// becomes the last Route.
///
/// ```
/// use sipdialog::build::{request, DialogParts, RequestParts, RouteSet};
/// use sipdialog::wire::{MessageView, Method};
///
/// let route_set: [&[u8]; 1] = [b"<sip:p1.example.com;lr>"];
/// let dialog = DialogParts {
///     call_id: b"a84b4c76e66710",
///     local_uri: b"<sip:alice@atlanta.example.com>",
///     local_tag: b"1928301774",
///     remote_uri: b"<sip:bob@biloxi.example.com>",
///     remote_tag: b"a6c85cf",
///     remote_target: b"sip:bob@192.0.2.4",
///     route_set: RouteSet::from(&route_set[..]),
/// };
/// let parts = RequestParts {
///     method: Method::Bye,
///     cseq: 2,
///     via: b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7",
///     max_forwards: 70,
///     contact: None,
///     content_type: None,
///     body: b"",
///     extra_headers: &[],
/// };
/// let mut out = Vec::new();
/// request(&dialog, &parts, &mut out).unwrap();
/// assert!(out.starts_with(b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n"));
/// let view = MessageView::parse(&out).unwrap();
/// assert_eq!(view.to_tag(), Some(&b"a6c85cf"[..]));
/// assert_eq!(view.route(), Some(&b"<sip:p1.example.com;lr>"[..]));
/// ```
pub fn request(
    dialog: &DialogParts<'_>,
    parts: &RequestParts<'_>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    request_marked(dialog, parts, out).map(drop)
}

/// [`request`], and where it wrote what an outbox hands on with it.
pub(crate) fn request_marked(
    dialog: &DialogParts<'_>,
    parts: &RequestParts<'_>,
    out: &mut Vec<u8>,
) -> Result<Marks, BuildError> {
    write_request(dialog, parts, needs_remote_tag(parts.method), out)
}

/// Where a request written here has its Request-URI, its first Route value (from after
/// `Route:` to the end of the line) and its top Via value, as offsets from its first byte: an
/// outbox reads the next hop and the branch there instead of searching the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) request_uri: (usize, usize),
    pub(crate) first_route: Option<(usize, usize)>,
    pub(crate) via: (usize, usize),
}

/// An INVITE outside any dialog (RFC 3261 §8.1.1): `dialog` names the parties with our tag
/// and no remote tag (the To carries none), `remote_target` is the Request-URI and the route
/// set the pre-loaded Route headers, if any. Same rules and guarantees as [`request`].
pub fn initial_invite(
    dialog: &DialogParts<'_>,
    parts: &RequestParts<'_>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    initial_invite_marked(dialog, parts, out).map(drop)
}

/// [`initial_invite`], and where it wrote what an outbox hands on with it.
pub(crate) fn initial_invite_marked(
    dialog: &DialogParts<'_>,
    parts: &RequestParts<'_>,
    out: &mut Vec<u8>,
) -> Result<Marks, BuildError> {
    if parts.method != Method::Invite {
        return Err(BuildError::UnsupportedMethod(parts.method));
    }
    if !dialog.remote_tag.is_empty() {
        return Err(BuildError::InvalidValue { header: "To" });
    }
    write_request(dialog, parts, false, out)
}

fn write_request(
    dialog: &DialogParts<'_>,
    parts: &RequestParts<'_>,
    needs_remote_tag: bool,
    out: &mut Vec<u8>,
) -> Result<Marks, BuildError> {
    let method = parts
        .method
        .as_str()
        .filter(|_| parts.method != Method::Cancel)
        .ok_or(BuildError::UnsupportedMethod(parts.method))?;
    check_dialog(dialog, needs_remote_tag)?;
    check_nonempty(parts.via, "Via")?;
    if parts.contact.is_none() && matches!(parts.method, Method::Invite | Method::Update) {
        return Err(BuildError::MissingContact);
    }
    check_tail(
        parts.contact,
        parts.content_type,
        parts.body,
        parts.extra_headers,
    )?;
    let start = out.len();
    guarded(out, |out| {
        let first_hop = dialog.route_set.first().map(|e| route_uri(e));
        let strict = match first_hop {
            Some(Some(uri)) if !has_lr(uri) => Some(uri),
            _ => None,
        };
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        let uri_start = out.len() - start;
        match strict {
            Some(uri) => put_request_uri(out, uri),
            None => out.extend_from_slice(dialog.remote_target),
        }
        let request_uri = (uri_start, out.len() - start);
        out.extend_from_slice(b" SIP/2.0\r\nVia: ");
        let via = (out.len() - start, out.len() - start + parts.via.len());
        out.extend_from_slice(parts.via);
        out.extend_from_slice(b"\r\n");
        put_name(out, "Max-Forwards");
        put_u64(out, u64::from(parts.max_forwards));
        out.extend_from_slice(b"\r\n");
        // The first Route value as a reader of the message would take it: from after the
        // colon (its space included) to the end of the line.
        let routes_start = out.len() - start;
        match strict {
            Some(_) => {
                for entry in dialog.route_set.iter().skip(1) {
                    put_header(out, "Route", entry);
                }
                put_name(out, "Route");
                out.push(b'<');
                out.extend_from_slice(dialog.remote_target);
                out.extend_from_slice(b">\r\n");
            }
            None => {
                for entry in dialog.route_set {
                    put_header(out, "Route", entry);
                }
            }
        }
        let first_route = (out.len() - start > routes_start).then(|| {
            let value = routes_start + b"Route:".len();
            let line = &out[start + value..];
            (value, value + memchr(b'\r', line).unwrap_or(line.len()))
        });
        put_tagged(out, "From", dialog.local_uri, dialog.local_tag);
        put_tagged(out, "To", dialog.remote_uri, dialog.remote_tag);
        put_header(out, "Call-ID", dialog.call_id);
        put_name(out, "CSeq");
        put_u64(out, u64::from(parts.cseq));
        out.push(b' ');
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(b"\r\n");
        put_tail(
            out,
            parts.contact,
            parts.content_type,
            parts.body,
            parts.extra_headers,
        );
        Ok(Marks {
            request_uri,
            first_route,
            via,
        })
    })
}

/// ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4): CSeq number of the INVITE,
/// method ACK, same routing as any in-dialog request, no body.
pub fn ack_for_2xx(
    dialog: &DialogParts<'_>,
    invite_cseq: u32,
    via: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    ack_for_2xx_marked(dialog, invite_cseq, via, out).map(drop)
}

/// [`ack_for_2xx`], and where it wrote what an outbox hands on with it.
pub(crate) fn ack_for_2xx_marked(
    dialog: &DialogParts<'_>,
    invite_cseq: u32,
    via: &[u8],
    out: &mut Vec<u8>,
) -> Result<Marks, BuildError> {
    let parts = RequestParts {
        method: Method::Ack,
        cseq: invite_cseq,
        via,
        max_forwards: 70,
        contact: None,
        content_type: None,
        body: b"",
        extra_headers: &[],
    };
    request_marked(dialog, &parts, out)
}

/// CANCEL for an INVITE this UA sent (§9.1): same Request-URI, Call-ID, From, To (as sent: no
/// To tag), CSeq number with method CANCEL, only the top Via of the INVITE, and the INVITE's
/// Route headers; Max-Forwards 70; Content-Length 0.
pub fn cancel(invite: &MessageView<'_>, out: &mut Vec<u8>) -> Result<(), BuildError> {
    same_transaction(invite, "CANCEL", invite, out)
}

/// ACK for a non-2xx final response to an INVITE this UA sent (§17.1.1.3): as [`cancel`], with
/// method ACK and the To of the response (its tag included). The INVITE's client transaction
/// sends it; an ACK for a 2xx is a request of the dialog ([`ack_for_2xx`]).
///
/// ```
/// use sipdialog::build::ack_for_failure;
/// use sipdialog::wire::MessageView;
///
/// let invite = MessageView::parse(b"INVITE sip:b@192.0.2.4 SIP/2.0\r\n\
/// Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1\r\nFrom: <sip:a@x>;tag=1\r\n\
/// To: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
/// let busy = MessageView::parse(b"SIP/2.0 486 Busy Here\r\n\
/// Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1\r\nFrom: <sip:a@x>;tag=1\r\n\
/// To: <sip:b@y>;tag=9\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
/// let mut ack = Vec::new();
/// ack_for_failure(&invite, &busy, &mut ack).unwrap();
/// let ack = MessageView::parse(&ack).unwrap();
/// assert_eq!((ack.cseq().number, ack.cseq().method), (7, &b"ACK"[..]));
/// assert_eq!(ack.to_tag(), Some(&b"9"[..]));
/// assert_eq!(ack.via_branch(), Some(&b"z9hG4bKa1"[..]));
/// ```
pub fn ack_for_failure(
    invite: &MessageView<'_>,
    response: &MessageView<'_>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    same_transaction(invite, "ACK", response, out)
}

/// A CANCEL or an ACK of `invite`'s transaction, with the To header of `to`.
fn same_transaction(
    invite: &MessageView<'_>,
    method: &str,
    to: &MessageView<'_>,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    if invite.method() != Some(Method::Invite) {
        return Err(BuildError::CancelNotInvite);
    }
    let uri = invite.request_uri().unwrap_or_default();
    check_uri(uri, "Request-URI")?;
    let via = invite
        .values(HeaderName::Via)
        .next()
        .ok_or(BuildError::MissingHeader { header: "Via" })?;
    guarded(out, |out| {
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        put_name(out, "Via");
        put_unfolded(out, via, "Via")?;
        out.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
        for route in invite.values(HeaderName::Route) {
            put_name(out, "Route");
            put_unfolded(out, route, "Route")?;
            out.extend_from_slice(b"\r\n");
        }
        put_copied(out, invite, HeaderName::From, None)?;
        put_copied(out, to, HeaderName::To, None)?;
        put_header(out, "Call-ID", invite.call_id());
        put_name(out, "CSeq");
        put_u64(out, u64::from(invite.cseq().number));
        out.push(b' ');
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        Ok(())
    })
}

/// Appends `name: value` for the first header `name` of `view`, unfolded, with `;tag=tag`
/// appended when `tag` is given.
fn put_copied(
    out: &mut Vec<u8>,
    view: &MessageView<'_>,
    name: HeaderName,
    tag: Option<&[u8]>,
) -> Result<(), BuildError> {
    let value = view
        .headers()
        .find(|h| h.kind == name)
        .map(|h| h.value)
        .ok_or(BuildError::MissingHeader {
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

/// Whether a request with this method is only ever sent inside a dialog, so its To needs the
/// remote tag. MESSAGE, SUBSCRIBE, PUBLISH and REGISTER may go out of dialog (To without tag).
fn needs_remote_tag(method: Method) -> bool {
    !matches!(
        method,
        Method::Message | Method::Subscribe | Method::Publish | Method::Register
    )
}

/// Checks the dialog parts before anything is written.
fn check_dialog(dialog: &DialogParts<'_>, needs_remote_tag: bool) -> Result<(), BuildError> {
    check_nonempty(dialog.call_id, "Call-ID")?;
    check_nonempty(dialog.local_uri, "From")?;
    check_nonempty(dialog.remote_uri, "To")?;
    if !is_token(dialog.local_tag) {
        return Err(BuildError::InvalidValue { header: "From" });
    }
    if dialog.remote_tag.is_empty() {
        if needs_remote_tag {
            return Err(BuildError::MissingRemoteTag);
        }
    } else if !is_token(dialog.remote_tag) {
        return Err(BuildError::InvalidValue { header: "To" });
    }
    check_uri(dialog.remote_target, "Request-URI")?;
    for entry in dialog.route_set {
        check(entry, "Route")?;
        let uri = route_uri(entry).ok_or(BuildError::InvalidValue { header: "Route" })?;
        check_uri(uri, "Route")?;
    }
    Ok(())
}

/// The URI inside the `<>` of a name-addr (a display name may precede it, quoted or not);
/// `None` when there is no `<...>`.
fn route_uri(entry: &[u8]) -> Option<&[u8]> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in entry.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                let rest = entry.get(i + 1..)?;
                return rest.get(..memchr(b'>', rest)?);
            }
            _ => {}
        }
    }
    None
}

/// Splits a SIP URI into what precedes its parameters, the parameters (each led by `;`) and
/// the `?headers` part. Parameters start at the first `;` after the userinfo: the user part
/// may hold `;` and `?` (§25.1 user-unreserved), parameters and headers never hold `@`.
fn split_uri(uri: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let host = memrchr(b'@', uri).map_or(0, |i| i + 1);
    let tail = uri.get(host..).unwrap_or_default();
    let params = memchr2(b';', b'?', tail).map_or(uri.len(), |i| host + i);
    let headers = memchr(b'?', tail).map_or(uri.len(), |i| host + i);
    (
        uri.get(..params).unwrap_or(uri),
        uri.get(params..headers).unwrap_or_default(),
        uri.get(headers..).unwrap_or_default(),
    )
}

/// The `;`-led URI parameters as (name, whole parameter) pairs.
fn uri_params(params: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    params
        .split(|&b| b == b';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let name = p.get(..memchr(b'=', p).unwrap_or(p.len())).unwrap_or(p);
            (name, p)
        })
}

/// Whether the URI has the `lr` parameter (loose routing, RFC 3261 §19.1.1).
fn has_lr(uri: &[u8]) -> bool {
    let (_, params, _) = split_uri(uri);
    uri_params(params).any(|(name, _)| name.eq_ignore_ascii_case(b"lr"))
}

/// Appends a strict router's URI as a Request-URI: without the `method` parameter and the
/// `?headers` part, which a Request-URI may not carry (§19.1.1, Table 1).
fn put_request_uri(out: &mut Vec<u8>, uri: &[u8]) {
    let (base, params, _) = split_uri(uri);
    out.extend_from_slice(base);
    for (name, param) in uri_params(params) {
        if !name.eq_ignore_ascii_case(b"method") {
            out.push(b';');
            out.extend_from_slice(param);
        }
    }
}

/// Appends `name: uri;tag=tag`, or just `name: uri` when `tag` is empty.
fn put_tagged(out: &mut Vec<u8>, name: &str, uri: &[u8], tag: &[u8]) {
    put_name(out, name);
    out.extend_from_slice(uri);
    if !tag.is_empty() {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag);
    }
    out.extend_from_slice(b"\r\n");
}
