//! The caller-owned buffer the manager writes outgoing messages into.

use std::net::SocketAddr;

use memchr::{memchr, memmem, memrchr};

use crate::build::BuildError;
use crate::table::DialogHandle;

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
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    items: Vec<Item>,
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
}

/// What the manager says about a message besides its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub dialog: Option<DialogHandle>,
    pub request: bool,
    pub destination: Option<SocketAddr>,
    pub delivery: Delivery,
}

impl Meta {
    /// A response, part of its request's transaction.
    pub(crate) fn response(dialog: Option<DialogHandle>) -> Meta {
        Meta {
            dialog,
            request: false,
            destination: None,
            delivery: Delivery::Reliable,
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
        self.items.iter().map(|item| OutMessage {
            bytes: self.buf.get(item.start..item.end).unwrap_or_default(),
            next_hop: item
                .hop
                .and_then(|(s, e)| self.buf.get(item.start + s..item.start + e)),
            dialog: item.dialog,
            destination: item.destination,
            delivery: item.delivery,
        })
    }

    /// Takes the last message back out.
    pub(crate) fn pop(&mut self) {
        if let Some(item) = self.items.pop() {
            self.buf.truncate(item.start);
        }
    }

    /// Appends one message written by `write`; on error nothing is added. A request is scanned
    /// once more to find its next hop (cold path: requests the manager builds).
    pub(crate) fn push(
        &mut self,
        meta: Meta,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let hop = if meta.request {
            next_hop(self.buf.get(start..).unwrap_or_default())
        } else {
            None
        };
        self.items.push(Item {
            start,
            end: self.buf.len(),
            hop,
            dialog: meta.dialog,
            destination: meta.destination,
            delivery: meta.delivery,
        });
        Ok(())
    }
}

/// Where a request the builder wrote goes: the URI of its first Route header, else its
/// Request-URI (offsets within the message). The builder writes one request line, full header
/// names and one Route entry per line, so a look for those is enough: no full scan.
fn next_hop(message: &[u8]) -> Option<(usize, usize)> {
    let head_end = memmem::find(message, b"\r\n\r\n")?;
    let head = message.get(..head_end + 2)?;
    let uri = match memmem::find(head, b"\r\nRoute:") {
        Some(at) => {
            let value = head.get(at + 8..)?;
            let end = memmem::find(value, b"\r\n")?;
            crate::dialog::contact_uri(value.get(..end)?)?
        }
        None => {
            let line = head.get(..memmem::find(head, b"\r\n")?)?;
            let first = memchr(b' ', line)?;
            let last = memrchr(b' ', line)?;
            line.get(first + 1..last)?
        }
    };
    let start = (uri.as_ptr() as usize).checked_sub(message.as_ptr() as usize)?;
    Some((start, start + uri.len()))
}

#[cfg(test)]
mod tests {
    use super::next_hop;

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
