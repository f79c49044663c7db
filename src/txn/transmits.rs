//! The caller-owned buffer the transaction layer writes datagrams into.

use std::net::SocketAddr;

use super::{Transport, TxnKey};

/// Messages to send now, back to back in one buffer, each with where it goes. Reuse one per
/// worker and [`Transmits::clear`] it after sending: once grown, it allocates nothing.
#[derive(Debug, Default)]
pub struct Transmits {
    buf: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    start: usize,
    end: usize,
    to: SocketAddr,
    transport: Transport,
    txn: Option<TxnKey>,
}

/// One message to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// The whole message.
    pub bytes: &'a [u8],
    /// Where it goes.
    pub to: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// The transaction it belongs to (`None` for the ACK of a 2xx, which has none).
    pub txn: Option<TxnKey>,
}

impl Transmits {
    /// An empty buffer.
    pub fn new() -> Transmits {
        Transmits::default()
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
    pub fn iter(&self) -> impl Iterator<Item = Transmit<'_>> + '_ {
        self.items.iter().map(|item| Transmit {
            bytes: self.buf.get(item.start..item.end).unwrap_or_default(),
            to: item.to,
            transport: item.transport,
            txn: item.txn,
        })
    }

    pub(crate) fn push(
        &mut self,
        bytes: &[u8],
        to: SocketAddr,
        transport: Transport,
        txn: Option<TxnKey>,
    ) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.items.push(Item {
            start,
            end: self.buf.len(),
            to,
            transport,
            txn,
        });
    }
}
