//! The caller-owned buffer the manager writes outgoing messages into.

use std::net::SocketAddr;

use memchr::{memchr, memmem, memrchr};

use crate::build::{BuildError, Marks};
use crate::table::DialogHandle;
use crate::txn::TxnId;
use crate::wire::Method;

/// How the transport treats a message it sends (RFC 3261 §17 retransmissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Part of a transaction: a request is resent until answered, a final response to an
    /// INVITE until its ACK, an answer is kept for the request's retransmissions.
    Reliable,
    /// As [`Delivery::Reliable`], but only if the next hop resolves to this address, the one
    /// the dialog's peer sent from; anywhere else it goes out once. A peer that never answered
    /// from an address cannot make us send more than one datagram there (SECURITY.md).
    ReliableTo(SocketAddr),
    /// Once, never resent or kept: a stateless answer (a 503 for a limit, a 400 for a
    /// malformed request), or a request to a peer that never proved it listens (the BYE after
    /// a missing ACK).
    Once,
}

/// Messages to send, written back to back into one byte buffer. Reuse one per worker and
/// [`Outbox::clear`] it after sending: once its buffers have grown, writing costs no
/// allocation.
///
/// Each message says what the caller needs to send it without reading it again: its kind
/// (method or status), where it goes, the branch of a request (its client transaction) and
/// the server transaction a response answers ([`Outbox::answering`]).
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    items: Vec<Item>,
    owner: u16,
    answering: Option<Answering>,
}

/// The request a response answers, as the caller's transport knows it: its server
/// transaction (if the caller keeps one) and where answers to it go (RFC 3261 §18.2.2: the
/// top Via's `received`/`rport`, else its sent-by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answering {
    /// The server transaction, in the caller's transaction layer.
    pub txn: Option<TxnId>,
    /// Where its responses go.
    pub to: SocketAddr,
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request, by method (`Method::Extension` for an extension).
    Request(Method),
    /// A response, by status.
    Response(u16),
}

#[derive(Clone, Copy, Debug)]
struct Item {
    start: usize,
    end: usize,
    /// The URI a request goes to; `None` for a response.
    hop: Option<(usize, usize)>,
    dialog: Option<DialogHandle>,
    destination: Option<SocketAddr>,
    delivery: Delivery,
    kind: Kind,
    /// A request's top Via branch (offsets within the message).
    branch: Option<(usize, usize)>,
    txn: Option<TxnId>,
}

/// One message to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutMessage<'a> {
    /// The whole message.
    pub bytes: &'a [u8],
    /// For a request, the URI of its next hop (first Route entry, else the Request-URI): what
    /// the transport resolves. `None` for a response: it goes where the request came from
    /// (RFC 3261 §18.2.2, the top Via).
    pub next_hop: Option<&'a [u8]>,
    /// The dialog the message belongs to, if any.
    pub dialog: Option<DialogHandle>,
    /// Where it goes, when the manager knows better than the message says: a stateless answer
    /// to a malformed request, which may not scan. Otherwise a response goes where its top
    /// Via says ([`crate::wire::Via::response_destination`]) and a request to `next_hop`.
    pub destination: Option<SocketAddr>,
    /// Whether it is resent (see [`Delivery`]).
    pub delivery: Delivery,
    /// Request or response, and which.
    pub kind: Kind,
    /// For a request, the branch of its top Via: its client transaction. A CANCEL has its
    /// INVITE's.
    pub branch: Option<&'a [u8]>,
    /// For a response, the server transaction of the request it answers, when the caller
    /// named one ([`Outbox::answering`]); `None` for a stateless answer.
    pub txn: Option<TxnId>,
}

/// What the manager says about a message besides its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub dialog: Option<DialogHandle>,
    pub request: bool,
    pub destination: Option<SocketAddr>,
    pub delivery: Delivery,
    /// For a response to a request other than the one in hand: that request (`Some(None)`:
    /// the caller named none for it).
    pub answering: Option<Option<Answering>>,
}

impl Meta {
    /// A response, part of its request's transaction.
    pub(crate) fn response(dialog: Option<DialogHandle>) -> Meta {
        Meta {
            dialog,
            request: false,
            destination: None,
            delivery: Delivery::Reliable,
            answering: None,
        }
    }

    /// A response to a request other than the one in hand (an INVITE answered later).
    pub(crate) fn answering(self, answering: Option<Answering>) -> Meta {
        Meta {
            answering: Some(answering),
            ..self
        }
    }

    /// A request, resent until answered.
    pub(crate) fn request(dialog: Option<DialogHandle>) -> Meta {
        Meta {
            request: true,
            ..Meta::response(dialog)
        }
    }

    /// With another delivery.
    pub(crate) fn delivered(self, delivery: Delivery) -> Meta {
        Meta { delivery, ..self }
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// An empty outbox of one owner of a transaction layer (an endpoint's worker): the
    /// branches of the requests written into it name `owner`
    /// ([`super::DialogManager::branch_owner`]), so a response to one can be steered to the
    /// owner of its client transaction.
    pub fn for_owner(owner: u16) -> Outbox {
        Outbox {
            owner,
            ..Outbox::default()
        }
    }

    /// The owner named by the branches written here.
    pub fn owner(&self) -> u16 {
        self.owner
    }

    /// Names the request being handed to the manager: every response written until the next
    /// call answers it (its server transaction and destination ride along in
    /// [`OutMessage::txn`] and [`OutMessage::destination`]; an INVITE's record keeps them for
    /// answers written later). `None` when no request is in hand.
    pub fn answering(&mut self, request: Option<Answering>) {
        self.answering = request;
    }

    /// The request in hand ([`Outbox::answering`]).
    pub fn answered(&self) -> Option<Answering> {
        self.answering
    }

    /// Forgets every message, keeping the buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The messages, in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = OutMessage<'_>> + '_ {
        self.items.iter().map(|item| {
            let part = |(s, e): (usize, usize)| self.buf.get(item.start + s..item.start + e);
            OutMessage {
                bytes: self.buf.get(item.start..item.end).unwrap_or_default(),
                next_hop: item.hop.and_then(part),
                dialog: item.dialog,
                destination: item.destination,
                delivery: item.delivery,
                kind: item.kind,
                branch: item.branch.and_then(part),
                txn: item.txn,
            }
        })
    }

    /// Takes the last message back out.
    pub(crate) fn pop(&mut self) {
        if let Some(item) = self.items.pop() {
            self.buf.truncate(item.start);
        }
    }

    /// Appends one message written by `write`; on error nothing is added. What the caller
    /// needs to send it is read off what the builder wrote, at the places it writes them
    /// (start line, first Via, first Route): no scan.
    pub(crate) fn push(
        &mut self,
        meta: Meta,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        self.push_marked(meta, |buf| write(buf).map(|()| None))
    }

    /// [`Outbox::push`] of a request written by a builder that says where it put its
    /// Request-URI, first Route and top Via ([`Marks`]): the next hop and the branch are read
    /// there, not searched for.
    pub(crate) fn push_request(
        &mut self,
        meta: Meta,
        write: impl FnOnce(&mut Vec<u8>) -> Result<Marks, BuildError>,
    ) -> Result<(), BuildError> {
        self.push_marked(meta, |buf| write(buf).map(Some))
    }

    fn push_marked(
        &mut self,
        meta: Meta,
        write: impl FnOnce(&mut Vec<u8>) -> Result<Option<Marks>, BuildError>,
    ) -> Result<(), BuildError> {
        let start = self.buf.len();
        let marks = match write(&mut self.buf) {
            Ok(marks) => marks,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        let written = self.buf.get(start..).unwrap_or_default();
        let (kind, hop, branch, txn, destination) = if meta.request {
            let method = written
                .get(..memchr(b' ', written).unwrap_or(0))
                .map_or(Method::Extension, Method::from_bytes);
            let kind = Kind::Request(method);
            let (hop, branch) = match marks {
                Some(marks) => (marked_hop(written, &marks), marked_branch(written, &marks)),
                None => (next_hop(written), top_branch(written)),
            };
            (kind, hop, branch, None, meta.destination)
        } else {
            let status = written
                .get(8..11)
                .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
                .unwrap_or(0);
            let answering = meta.answering.unwrap_or(self.answering);
            let destination = meta.destination.or(answering.map(|a| a.to));
            let txn = answering.and_then(|a| a.txn);
            (Kind::Response(status), None, None, txn, destination)
        };
        self.items.push(Item {
            start,
            end: self.buf.len(),
            hop,
            dialog: meta.dialog,
            destination,
            delivery: meta.delivery,
            kind,
            branch,
            txn,
        });
        Ok(())
    }
}

/// A searcher for `needle`, built once: a `memmem::find` call builds one each time, which
/// costs more than the search over a few hundred bytes.
macro_rules! finder {
    ($needle:expr) => {{
        static FINDER: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
        FINDER.get_or_init(|| memmem::Finder::new($needle))
    }};
}

/// Where a request the builder wrote goes: the URI of its first Route header, else its
/// Request-URI (offsets within the message). The builder writes one request line, full header
/// names and one Route entry per line, so a look for those is enough: no full scan.
fn next_hop(message: &[u8]) -> Option<(usize, usize)> {
    // A Route line counts only before the blank line (a body may say anything): one search
    // for the line, and one for the blank line only up to it when there is one.
    let route = finder!(b"\r\nRoute:")
        .find(message)
        .filter(|&at| finder!(b"\r\n\r\n").find(&message[..at + 2]).is_none());
    let uri = match route {
        Some(at) => {
            let value = message.get(at + 8..)?;
            let end = finder!(b"\r\n").find(value)?;
            crate::dialog::contact_uri(value.get(..end)?)?
        }
        None => {
            let line = message.get(..memchr(b'\n', message)?.checked_sub(1)?)?;
            let first = memchr(b' ', line)?;
            let last = memrchr(b' ', line)?;
            line.get(first + 1..last)?
        }
    };
    let start = (uri.as_ptr() as usize).checked_sub(message.as_ptr() as usize)?;
    Some((start, start + uri.len()))
}

/// [`next_hop`] from the builder's marks: the URI of the first Route value, else the
/// Request-URI.
fn marked_hop(message: &[u8], marks: &Marks) -> Option<(usize, usize)> {
    match marks.first_route {
        Some((start, end)) => {
            let value = message.get(start..end)?;
            let uri = crate::dialog::contact_uri(value)?;
            let at = start + (uri.as_ptr() as usize).checked_sub(value.as_ptr() as usize)?;
            Some((at, at + uri.len()))
        }
        None => Some(marks.request_uri),
    }
}

/// [`top_branch`] from the builder's marks: the branch within the top Via value.
fn marked_branch(message: &[u8], marks: &Marks) -> Option<(usize, usize)> {
    let (start, end) = marks.via;
    let (from, to) = branch_within(message.get(start..end)?)?;
    Some((start + from, start + to))
}

/// Where the `branch` parameter's value lies in one Via line or value.
fn branch_within(line: &[u8]) -> Option<(usize, usize)> {
    let start = finder!(b";branch=").find(line)? + b";branch=".len();
    let value = line.get(start..)?;
    let end = start + memchr::memchr3(b';', b' ', b',', value).unwrap_or(value.len());
    Some((start, end))
}

/// The branch of the first Via the builder wrote (`Via: …;branch=…` on one line).
fn top_branch(message: &[u8]) -> Option<(usize, usize)> {
    // Our Via is the first header line; anything else is searched for.
    let second = memchr(b'\n', message)? + 1;
    let via = match message.get(second..)?.starts_with(b"Via: ") {
        true => second,
        false => finder!(b"\r\nVia: ").find(message)? + 2,
    };
    let line_end = via + finder!(b"\r\n").find(message.get(via..)?)?;
    let (start, end) = branch_within(message.get(via..line_end)?)?;
    Some((via + start, via + end))
}

#[cfg(test)]
mod tests {
    use super::{marked_branch, marked_hop, next_hop, top_branch};
    use crate::build::{request_marked, DialogParts, RequestParts};
    use crate::wire::Method;
    use proptest::prelude::*;

    proptest! {
        /// Where the builder says the next hop and the branch are is where a search of what
        /// it wrote finds them: no route set, loose and strict first hops, one or more
        /// entries, a body that mentions Route.
        #[test]
        fn the_marks_point_where_the_search_finds(
            routes in proptest::collection::vec(
                prop_oneof![
                    Just(&b"<sip:p1.example.com;lr>"[..]),
                    Just(&b"<sip:p2.example.com>"[..]),
                    Just(&b"\"Edge\" <sip:192.0.2.9:5070;lr;transport=udp>"[..]),
                    Just(&b"<sip:p3.example.com;lr>;x=1"[..]),
                ],
                0..4,
            ),
            via in prop_oneof![
                Just(&b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7"[..]),
                Just(&b"SIP/2.0/UDP h;rport;branch=z9hG4bK1;x"[..]),
                Just(&b"SIP/2.0/UDP h;received=1.2.3.4"[..]),
            ],
            body in prop_oneof![Just(&b""[..]), Just(&b"Route: <sip:body>\r\n"[..])],
        ) {
            let route_set: Vec<Box<[u8]>> = routes.iter().map(|r| r.to_vec().into()).collect();
            let dialog = DialogParts {
                call_id: b"c1",
                local_uri: b"<sip:a@a.example>",
                local_tag: b"1",
                remote_uri: b"<sip:b@b.example>",
                remote_tag: b"2",
                remote_target: b"sip:b@192.0.2.4:5062",
                route_set: (&route_set[..]).into(),
            };
            let parts = RequestParts {
                method: Method::Info,
                cseq: 2,
                via,
                max_forwards: 70,
                contact: None,
                content_type: (!body.is_empty()).then_some(&b"text/plain"[..]),
                body,
                extra_headers: &[],
            };
            let mut out = b"earlier message".to_vec();
            let start = out.len();
            let marks = request_marked(&dialog, &parts, &mut out).unwrap();
            let written = &out[start..];
            prop_assert_eq!(marked_hop(written, &marks), next_hop(written));
            prop_assert_eq!(marked_branch(written, &marks), top_branch(written));
        }
    }

    #[test]
    fn the_branch_is_read_off_the_first_via() {
        let bye = b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a:5060;branch=z9hG4bKx1;rport\r\n\
Via: SIP/2.0/UDP b;branch=z9hG4bKx2\r\n\r\n";
        let (s, e) = top_branch(bye).unwrap();
        assert_eq!(&bye[s..e], b"z9hG4bKx1");
        let last = b"ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKa\r\n\r\n";
        let (s, e) = top_branch(last).unwrap();
        assert_eq!(&last[s..e], b"z9hG4bKa");
        assert_eq!(
            top_branch(b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\n\r\n"),
            None
        );
        // Not the first header line: searched for.
        let later = b"BYE sip:b@h SIP/2.0\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKl\r\n\r\n";
        let (s, e) = top_branch(later).unwrap();
        assert_eq!(&later[s..e], b"z9hG4bKl");
    }

    fn hop(message: &[u8]) -> Option<&[u8]> {
        next_hop(message).map(|(s, e)| &message[s..e])
    }

    #[test]
    fn next_hop_is_the_first_route_else_the_request_uri() {
        let direct = b"BYE sip:b@192.0.2.4:5070 SIP/2.0\r\nVia: x\r\nTo: <sip:b@h>\r\n\r\n";
        assert_eq!(hop(direct), Some(&b"sip:b@192.0.2.4:5070"[..]));
        let routed = b"BYE sip:b@192.0.2.4 SIP/2.0\r\nRoute: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\r\nRoute: <sip:body>";
        assert_eq!(hop(routed), Some(&b"sip:p1.example;lr"[..]));
        let body_only = b"BYE sip:b@h SIP/2.0\r\nVia: x\r\n\r\nRoute: <sip:body>";
        assert_eq!(hop(body_only), Some(&b"sip:b@h"[..]));
        assert_eq!(hop(b"no end of headers"), None);
    }
}
