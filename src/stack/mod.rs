//! One worker's SIP stack, sans-IO: the run loop every endpoint follows, with the transaction
//! layer ([`crate::txn`]) and the dialog layer ([`crate::manager`]) wired together.
//!
//! A [`Stack`] takes datagrams and the time and gives back datagrams to send; it opens no
//! socket and reads no clock. Its contract, per worker:
//!
//! 1. [`Stack::receive`] a datagram with its source. The stack scans it once, answers a
//!    malformed one, stamps a request's top Via with where it came from (RFC 3261 §18.2.1,
//!    RFC 3581), lets the transaction layer absorb a retransmission, and hands what is new to
//!    the manager. A [`Turn`] comes back when there is something to act on: the message, the
//!    manager's verdict, and the outbox to answer into.
//! 2. [`Stack::flush`]: everything the outbox holds goes through the transaction layer
//!    (requests resent until answered, responses kept for retransmissions) into the stack's
//!    datagrams. Nothing written is scanned again: the outbox says what each message is and
//!    where it goes.
//! 3. Send what [`Stack::drain`] yields; with several workers, pass what
//!    [`Stack::take_handovers`] lists to the worker named (its peer's transactions live there)
//!    and give it to that worker's [`Stack::accept`].
//! 4. Sleep until [`Stack::next_deadline`] or the next datagram; then [`Stack::on_timeout`]
//!    (retransmissions, expired dialogs), flush and send again.
//!
//! ```
//! use std::sync::Arc;
//! use sipdialog::build::ResponseParts;
//! use sipdialog::manager::{DialogManager, ManagerConfig, Verdict};
//! use sipdialog::stack::{Stack, StackConfig};
//!
//! let manager = Arc::new(DialogManager::new(ManagerConfig::default()).unwrap());
//! let mut stack = Stack::new(manager, StackConfig::default()).unwrap();
//! let peer = "192.0.2.1:5060".parse().unwrap();
//! let options = b"OPTIONS sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKo1\r\n\
//! From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\
//! Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! let turn = stack.receive(options, peer, 0).expect("a new request");
//! assert!(matches!(turn.verdict, Ok(Verdict::OutOfDialog)));
//! let (view, mut desk) = (turn.view, turn.desk);
//! desk.respond(&view, 200, &ResponseParts::default(), 0);
//! stack.flush(0);
//! let mut sent = Vec::new();
//! stack.drain(|bytes, to| sent.push((bytes.to_vec(), to)));
//! assert!(sent[0].0.starts_with(b"SIP/2.0 200 OK\r\n") && sent[0].1 == peer);
//! // Its retransmission is answered by the transaction layer: no turn.
//! assert!(stack.receive(options, peer, 300).is_none());
//! stack.flush(300);
//! stack.drain(|bytes, _| assert!(bytes.starts_with(b"SIP/2.0 200 OK\r\n")));
//! ```

mod route;
mod send;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use crate::build::{self, ResponseParts};
use crate::manager::{
    Answering, DialogManager, Expiry, InviteId, KeptRequest, Kind, ManagerError, Outbox, Verdict,
};
use crate::security::{Policy, SecurityError};
use crate::table::DialogHandle;
use crate::txn::{
    Expired, Received, Transactions, Transmits, Transport, TxnConfig, TxnError, TxnState,
};
use crate::wire::{MessageView, Method};

pub use route::{owner, uri_addr};
pub use send::Handover;

/// How often at most the manager's timers are looked at: its deadlines are in the tens of
/// milliseconds or more, and looking costs a pass over its timer shards.
const MANAGER_CHECK_MS: u64 = 10;

/// Counters every worker's stack adds to (share one set between them).
#[derive(Debug, Default)]
pub struct StackCounters {
    /// Datagrams received, keepalives left out.
    pub received: AtomicU64,
    /// Datagrams that did not scan.
    pub malformed: AtomicU64,
    /// Requests refused by the stack or the manager (4xx–6xx sent for them).
    pub rejected: AtomicU64,
    /// Requests sent once only: to an address the dialog's peer never sent from, or with no
    /// room left in the transaction layer.
    pub sent_once: AtomicU64,
    /// Messages handed to another worker (its peer's transaction lives there).
    pub handed_over: AtomicU64,
}

/// Which worker a stack is, and its transaction layer.
#[derive(Clone, Debug, Default)]
pub struct StackConfig {
    /// The transaction layer (its `owner` is set to `worker`).
    pub txn: TxnConfig,
    /// This worker's number, below `workers`.
    pub worker: usize,
    /// How many workers share the manager (0 or 1: this one only, nothing is handed over).
    pub workers: usize,
    /// The counters to add to (a fresh set when `None`).
    pub counters: Option<Arc<StackCounters>>,
}

/// One worker's transactions, outbox and datagrams around the shared [`DialogManager`].
pub struct Stack {
    manager: Arc<DialogManager>,
    /// The manager's policy, checked once a message with a pointer compare while it stays the
    /// same: an `arc-swap` load costs about 80 instructions, and the manager's own entry
    /// points take one per message.
    policy: Cache<PolicyCell, Arc<Policy>>,
    worker: usize,
    workers: usize,
    txns: Transactions,
    /// Datagrams to send now.
    transmits: Transmits,
    out: Outbox,
    /// A received request with its Via stamped (reused).
    stamped: Vec<u8>,
    handovers: Vec<(usize, Handover)>,
    txn_expired: Vec<Expired>,
    next_manager_check: u64,
    counters: Arc<StackCounters>,
}

/// A received message to act on: what the manager made of it, and the desk to answer at.
pub struct Turn<'s> {
    /// The message, scanned once (a request's top Via stamped with its source, and decoded).
    pub view: MessageView<'s>,
    /// The manager's verdict, or why it refused the message (its answer, if any, is already
    /// in the outbox).
    pub verdict: Result<Verdict, ManagerError>,
    /// Where the answers go.
    pub desk: Desk<'s>,
}

/// What acting on a message or a timer needs: the outbox (answers to the message in hand
/// are sent on its server transaction) and a look at this worker's client transactions.
pub struct Desk<'s> {
    /// Messages to send at the next [`Stack::flush`].
    pub out: &'s mut Outbox,
    manager: &'s DialogManager,
    txns: &'s Transactions,
    worker: usize,
    workers: usize,
    counters: &'s StackCounters,
}

/// A request we sent, for [`Desk::in_flight`] to find its client transaction later.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The worker whose transactions hold it (its peer's).
    pub worker: usize,
    branch: Box<[u8]>,
    method: Method,
}

/// The manager's policy cell, for [`Stack::policy`]'s cache.
struct PolicyCell(Arc<DialogManager>);

impl std::ops::Deref for PolicyCell {
    type Target = ArcSwap<Policy>;

    fn deref(&self) -> &ArcSwap<Policy> {
        self.0.security().policy_cell()
    }
}

impl Stack {
    /// Worker `config.worker`'s stack around `manager`.
    pub fn new(manager: Arc<DialogManager>, config: StackConfig) -> Result<Stack, TxnError> {
        let txn = TxnConfig {
            owner: config.worker as u16,
            ..config.txn
        };
        Ok(Stack {
            policy: Cache::new(PolicyCell(Arc::clone(&manager))),
            manager,
            worker: config.worker,
            workers: config.workers.max(1),
            txns: Transactions::new(txn)?,
            transmits: Transmits::new(),
            out: Outbox::for_owner(config.worker as u16),
            stamped: Vec::new(),
            handovers: Vec::new(),
            txn_expired: Vec::new(),
            next_manager_check: 0,
            counters: config.counters.unwrap_or_default(),
        })
    }

    /// The dialog layer.
    pub fn manager(&self) -> &Arc<DialogManager> {
        &self.manager
    }

    /// The counters this stack adds to.
    pub fn counters(&self) -> &Arc<StackCounters> {
        &self.counters
    }

    /// Transactions held and the bytes they keep.
    pub fn usage(&self) -> (usize, usize) {
        (self.txns.len(), self.txns.bytes())
    }

    /// Takes a datagram from `src`; `Some` when there is a message to act on (see the module
    /// docs). Keepalives, retransmissions and stray responses end here; a malformed message
    /// or one the transaction layer has no room for is answered (at the next flush).
    #[inline]
    pub fn receive<'s>(
        &'s mut self,
        bytes: &'s [u8],
        src: SocketAddr,
        now: u64,
    ) -> Option<Turn<'s>> {
        // Keepalives (CRLF) and junk below the size of any SIP message.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let Stack {
            manager,
            policy,
            worker,
            workers,
            txns,
            transmits,
            out,
            stamped,
            counters,
            ..
        } = self;
        let policy: &Policy = policy.load();
        let mut view = match MessageView::parse_with(bytes, &policy.scan_limits()) {
            Ok(view) => view,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, error = %e, "malformed datagram");
                if manager.answer_malformed(bytes, e, Some(src), now, out) {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
        };
        // Answers, now or later, go back where the request came from. The top Via is decoded
        // once here for the transaction layer, the manager and the answer's destination.
        if view.is_request() {
            build::as_received(&mut view, src, stamped);
        }
        view.decode_via();
        let received = match view.is_request() {
            true => transact_request(manager, txns, transmits, out, counters, &view, src, now),
            false => Some(txns.on_response(&view, now, transmits)),
        };
        if matches!(
            received,
            None | Some(Received::Absorbed | Received::Dropped)
        ) {
            return None;
        }
        let verdict = manager.message(policy, &view, Some(src), now, out);
        if matches!(verdict, Ok(Verdict::Rejected { .. })) {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = &verdict {
            tracing::debug!(%src, error = ?e, "message refused");
        }
        Some(Turn {
            view,
            verdict,
            desk: Desk {
                out,
                manager,
                txns,
                worker: *worker,
                workers: *workers,
                counters,
            },
        })
    }

    /// The desk to act at outside a received message (a timer of the caller's, a handed-over
    /// action); what it writes leaves at the next [`Stack::flush`].
    pub fn desk(&mut self) -> Desk<'_> {
        Desk {
            out: &mut self.out,
            manager: &self.manager,
            txns: &self.txns,
            worker: self.worker,
            workers: self.workers,
            counters: &self.counters,
        }
    }

    /// When [`Stack::on_timeout`] is next due (the manager's deadlines are looked at no more
    /// often than every 10 ms).
    pub fn next_deadline(&mut self) -> Option<u64> {
        let txn = self.txns.next_deadline();
        let manager = self
            .manager
            .next_deadline()
            .map(|at| at.max(self.next_manager_check));
        match (txn, manager) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires what is due at `now`: the transaction layer's retransmissions and ends (into the
    /// datagrams), the manager's expiries (their BYE/CANCEL/408 into the outbox, the dialogs
    /// and INVITEs ended listed in `expired`). Flush afterwards.
    pub fn on_timeout(&mut self, now: u64, expired: &mut Vec<Expiry>) {
        if self.txns.next_deadline().is_some_and(|at| at <= now) {
            self.txn_expired.clear();
            self.txns
                .on_timeout(now, &mut self.transmits, &mut self.txn_expired);
            for e in &self.txn_expired {
                // The dialog layer has its own clock for what matters to a call (an INVITE
                // without answer, a 2xx without ACK): these only end transactions.
                tracing::debug!(reason = ?e.reason, role = ?e.role, "transaction timed out");
            }
        }
        if now >= self.next_manager_check {
            self.next_manager_check = now + MANAGER_CHECK_MS;
            if self.manager.next_deadline().is_some_and(|at| at <= now) {
                self.manager.on_timeout(now, &mut self.out, expired);
            }
        }
    }

    /// Hands each datagram to send to `send`, and forgets them.
    pub fn drain(&mut self, mut send: impl FnMut(&[u8], SocketAddr)) {
        for t in self.transmits.iter() {
            send(t.bytes, t.to);
        }
        self.transmits.clear();
    }

    /// What is for other workers: each to give to that worker's [`Stack::accept`].
    pub fn take_handovers(&mut self) -> std::vec::Drain<'_, (usize, Handover)> {
        self.handovers.drain(..)
    }
}

/// Hands a received request to the transaction layer, with its transaction named in the
/// outbox for its answers: `None` when it was refused there (the table is full: 503).
#[allow(clippy::too_many_arguments)]
fn transact_request(
    manager: &DialogManager,
    txns: &mut Transactions,
    transmits: &mut Transmits,
    out: &mut Outbox,
    counters: &StackCounters,
    view: &MessageView<'_>,
    src: SocketAddr,
    now: u64,
) -> Option<Received> {
    // Where answers go (RFC 3261 §18.2.2): a new transaction worked it out from the stamped
    // Via already; anything else reads it here.
    let reply_to = |view: &MessageView<'_>| view.reply_to(src).unwrap_or(src);
    let received = match txns.on_request(view, src, Transport::Unreliable, now, transmits) {
        Ok(received) => received,
        Err(TxnError::Full) => {
            out.answering(Some(Answering {
                txn: None,
                to: reply_to(view),
            }));
            let error = SecurityError::TooManyTransactions;
            if manager.refuse_request(view, error, out).is_ok() {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        Err(e) => {
            tracing::debug!(%src, error = %e, "request refused by the transaction layer");
            return None;
        }
    };
    let txn = match received {
        Received::New(txn) | Received::Cancel { cancel: txn, .. } => Some(txn),
        _ => None,
    };
    let to = match txn.and_then(|txn| txns.peer(txn)) {
        Some(peer) => peer,
        None => reply_to(view),
    };
    out.answering(Some(Answering { txn, to }));
    Some(received)
}

impl Desk<'_> {
    /// This worker's number.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The dialog layer.
    pub fn manager(&self) -> &DialogManager {
        self.manager
    }

    /// Answers the request in hand (`view`, the turn's) with `status` through the manager,
    /// which adds the To tag and records what the answer does to the dialogs (the dialog a
    /// 2xx or tagged provisional made comes back).
    pub fn respond(
        &mut self,
        view: &MessageView<'_>,
        status: u16,
        parts: &ResponseParts<'_>,
        now: u64,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let result = self.manager.respond_to(view, status, parts, now, self.out);
        self.count(status, result.as_ref().err());
        result
    }

    /// Answers a request received earlier and kept with its transaction (`answering`, what
    /// [`Outbox::answered`] said when it was in hand), such as a B2BUA's relayed request
    /// answered when the other leg answers. No scan: the kept copy knows its fields.
    pub fn respond_kept(
        &mut self,
        request: &KeptRequest,
        answering: Option<Answering>,
        status: u16,
        parts: &ResponseParts<'_>,
        now: u64,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let in_hand = self.out.answered();
        self.out.answering(answering);
        let result = self
            .manager
            .respond_kept(request, status, parts, now, self.out);
        self.out.answering(in_hand);
        self.count(status, result.as_ref().err());
        result
    }

    /// Answers a new INVITE by its token; an error when nothing was sent because it has its
    /// final answer already (a CANCEL won) or is gone.
    pub fn respond_invite(
        &mut self,
        invite: InviteId,
        status: u16,
        parts: &ResponseParts<'_>,
        now: u64,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let result = self
            .manager
            .respond_invite(invite, status, parts, now, self.out);
        self.count(status, result.as_ref().err());
        result
    }

    /// Counts an answer of ours: refusals (sent, or a security refusal sent instead).
    pub fn count(&self, status: u16, error: Option<&ManagerError>) {
        let refused = match error {
            None => status >= 300,
            // The manager answered with a refusal instead.
            Some(ManagerError::Security(_)) => true,
            Some(e) => {
                tracing::debug!(status, error = ?e, "response not sent");
                false
            }
        };
        if refused {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last request written into the outbox, to ask [`Desk::in_flight`] about later.
    pub fn last_request(&self) -> Option<Sent> {
        let msg = self.out.iter().last()?;
        let Kind::Request(method) = msg.kind else {
            return None;
        };
        let to = send::request_destination(&msg)?;
        Some(Sent {
            worker: owner(to, self.workers),
            branch: msg.branch?.into(),
            method,
        })
    }

    /// Whether a request of ours still waits for its final response (false once answered,
    /// given up, or when it went out once); `None` when its transaction is another worker's
    /// ([`Sent::worker`]: ask there).
    pub fn in_flight(&self, sent: &Sent) -> Option<bool> {
        if sent.worker != self.worker {
            return None;
        }
        let token = sent.method.as_str().unwrap_or_default().as_bytes();
        let state = self
            .txns
            .find_client(&sent.branch, sent.method, token)
            .and_then(|txn| self.txns.state(txn));
        Some(matches!(
            state,
            Some(TxnState::Calling | TxnState::Trying | TxnState::Proceeding)
        ))
    }
}
