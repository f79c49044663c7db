//! The caller-owned buffer the manager writes outgoing messages into.

use crate::build::BuildError;
use crate::table::DialogHandle;

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
        })
    }

    /// Appends one message written by `write`; on error nothing is added. A request is scanned
    /// once more to find its next hop (cold path: requests the manager builds).
    pub(crate) fn push(
        &mut self,
        dialog: Option<DialogHandle>,
        request: bool,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let start = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let hop = if request {
            next_hop(self.buf.get(start..).unwrap_or_default())
        } else {
            None
        };
        self.items.push(Item {
            start,
            end: self.buf.len(),
            hop,
            dialog,
        });
        Ok(())
    }
}

/// Where a request goes: the URI of its first Route header, else its Request-URI (offsets
/// within the message). `None` for a response.
fn next_hop(message: &[u8]) -> Option<(usize, usize)> {
    let view = crate::wire::MessageView::parse(message).ok()?;
    let uri = match view.route() {
        Some(route) => crate::dialog::contact_uri(route)?,
        None => view.request_uri()?,
    };
    let start = (uri.as_ptr() as usize).checked_sub(message.as_ptr() as usize)?;
    Some((start, start + uri.len()))
}
