//! Sending what the outbox holds: each request through a client transaction on the worker
//! of its next hop, each response through the server transaction it answers on that
//! transaction's worker, stateless answers straight out. Nothing is scanned: the outbox says
//! what each message is and where it goes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::{owner, uri_addr, Stack};
use crate::manager::{Delivery, Kind, OutMessage};
use crate::txn::{Request, Transport, TxnError, TxnId};
use crate::wire::Method;

/// A message for another worker to send on its transactions: pass it to that worker's
/// [`Stack::accept`]. It holds its own copy of the bytes and everything needed to send them.
#[derive(Debug)]
pub struct Handover(Item);

#[derive(Debug)]
enum Item {
    /// A request to one of that worker's peers: its client transaction lives there.
    Request {
        bytes: Vec<u8>,
        method: Method,
        /// The top Via branch, as offsets into `bytes`.
        branch: Option<(usize, usize)>,
        to: SocketAddr,
    },
    /// A response to a request whose server transaction lives there.
    Answer {
        txn: TxnId,
        status: u16,
        bytes: Vec<u8>,
        /// Sent once and the transaction forgotten (a refusal).
        once: bool,
        /// Where a refusal goes if the transaction has ended meanwhile.
        to: Option<SocketAddr>,
    },
}

/// Where a request in the outbox goes: where the manager said, else its next hop.
pub(super) fn request_destination(msg: &OutMessage<'_>) -> Option<SocketAddr> {
    msg.destination.or_else(|| msg.next_hop.and_then(uri_addr))
}

impl Stack {
    /// Sends the outbox: into this stack's datagrams, or handed over to the worker owning the
    /// transaction. Call it after acting on a [`super::Turn`], after [`Stack::on_timeout`] and
    /// after writing into the [`Stack::desk`].
    pub fn flush(&mut self, now: u64) {
        let mut out = std::mem::take(&mut self.out);
        out.answering(None);
        for msg in out.iter() {
            match msg.kind {
                Kind::Request(method) => self.flush_request(&msg, method, now),
                Kind::Response(status) => {
                    let once = msg.delivery == Delivery::Once;
                    match msg.txn {
                        Some(txn) if usize::from(txn.owner()) != self.worker => {
                            let item = Item::Answer {
                                txn,
                                status,
                                bytes: msg.bytes.to_vec(),
                                once,
                                to: msg.destination,
                            };
                            self.hand_over(usize::from(txn.owner()), item);
                        }
                        Some(txn) => {
                            self.answer(txn, status, msg.bytes, once, msg.destination, now)
                        }
                        None => {
                            if let Some(to) = msg.destination {
                                self.push(msg.bytes, to);
                            }
                        }
                    }
                }
            }
        }
        out.clear();
        self.out = out;
    }

    /// Sends what another worker handed over, on this worker's transactions.
    pub fn accept(&mut self, handover: Handover, now: u64) {
        match handover.0 {
            Item::Request {
                bytes,
                method,
                branch,
                to,
            } => self.send_request(&bytes, method, branch, to, true, now),
            Item::Answer {
                txn,
                status,
                bytes,
                once,
                to,
            } => self.answer(txn, status, &bytes, once, to, now),
        }
    }

    fn flush_request(&mut self, msg: &OutMessage<'_>, method: Method, now: u64) {
        let Some(to) = request_destination(msg) else {
            tracing::warn!(hop = ?msg.next_hop.map(String::from_utf8_lossy), "no address for next hop");
            return;
        };
        let reliable = match msg.delivery {
            Delivery::Reliable => true,
            Delivery::ReliableTo(peer) => peer == to,
            Delivery::Once => false,
        };
        let branch = msg.branch.map(|b| {
            let start = b.as_ptr() as usize - msg.bytes.as_ptr() as usize;
            (start, start + b.len())
        });
        // A request sent once needs no transaction: it leaves from here.
        let worker = owner(to, self.workers);
        if worker != self.worker && reliable && method != Method::Ack {
            let item = Item::Request {
                bytes: msg.bytes.to_vec(),
                method,
                branch,
                to,
            };
            self.hand_over(worker, item);
            return;
        }
        self.send_request(msg.bytes, method, branch, to, reliable, now);
    }

    fn hand_over(&mut self, worker: usize, item: Item) {
        self.counters.handed_over.fetch_add(1, Ordering::Relaxed);
        self.handovers.push((worker, Handover(item)));
    }

    /// Sends one of our requests: resent until answered through a client transaction, or
    /// once (ACK, delivery `Once`, an address the dialog's peer never sent from, no room).
    fn send_request(
        &mut self,
        bytes: &[u8],
        method: Method,
        branch: Option<(usize, usize)>,
        to: SocketAddr,
        reliable: bool,
        now: u64,
    ) {
        let branch = branch.and_then(|(s, e)| bytes.get(s..e));
        if method != Method::Ack {
            let started = match (reliable, branch) {
                (true, Some(branch)) => {
                    let token = bytes.split(|b| *b == b' ').next().unwrap_or_default();
                    let request = Request {
                        bytes,
                        method,
                        method_token: token,
                        branch,
                        to,
                        transport: Transport::Unreliable,
                    };
                    self.txns.request(request, now, &mut self.transmits)
                }
                _ => Err(TxnError::NoBranch),
            };
            if started.is_ok() {
                return;
            }
            self.counters.sent_once.fetch_add(1, Ordering::Relaxed);
        }
        self.push(bytes, to);
    }

    /// Sends a response on its server transaction (kept for the request's retransmissions,
    /// resent as the transaction says), or once and the transaction forgotten.
    fn answer(
        &mut self,
        txn: TxnId,
        status: u16,
        bytes: &[u8],
        once: bool,
        to: Option<SocketAddr>,
        now: u64,
    ) {
        let sent = match once {
            true => self
                .txns
                .respond_statelessly(txn, bytes, &mut self.transmits),
            false => self
                .txns
                .respond(txn, status, bytes, now, &mut self.transmits),
        };
        if let Err(e) = sent {
            tracing::debug!(status, error = %e, "response outside its transaction");
            // Its transaction ended (or has no room): a refusal still goes, once.
            if let (true, Some(to)) = (status >= 300, to) {
                self.push(bytes, to);
            }
        }
    }

    fn push(&mut self, bytes: &[u8], to: SocketAddr) {
        self.transmits.push(bytes, to, Transport::Unreliable, None);
    }
}
