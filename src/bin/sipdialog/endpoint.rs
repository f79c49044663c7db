//! The worker loop every mode shares: receive a batch of datagrams, let the worker's
//! transaction layer (`sipdialog::txn`) absorb retransmissions, stamp a request's Via with
//! where it came from, let the manager judge the message, let the mode act, and send what
//! the outbox holds through the transaction layer; in between, fire timers (the transaction
//! layer's retransmissions, the mode's scheduled actions, the manager's expiries).
//!
//! Each worker owns the transactions of the peers the kernel steers to it (`steer`): what is
//! to be sent to another worker's peer, or answered on another worker's transaction, is handed
//! to that worker with everything needed to send it, never as bytes to scan again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use sipdialog::build::ResponseParts;
use sipdialog::manager::{DialogManager, Expiry, InviteId, ManagerError, Verdict};
use sipdialog::stack::{Desk, Handover, Stack, StackConfig, StackCounters};
use sipdialog::txn::{TxnConfig, TxnError};
use sipdialog::wire::MessageView;

use crate::batch::{self, Receiver, Sender};

/// A minimal SDP body (one PCMU audio stream at `ip`): the answer serve gives, the offer the
/// B2BUA makes to a transfer target. Media is not handled; the dialogs are.
pub fn sdp_offer(ip: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=sipdialog 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

/// Counters for the status line.
#[derive(Default)]
pub struct Stats {
    /// INVITEs answered 2xx (calls set up).
    pub calls: AtomicU64,
    /// What every worker's stack counts (received, malformed, refused, sent once, handed
    /// over).
    pub stack: Arc<StackCounters>,
    /// Transactions and the bytes they hold, all workers (each adds what changed in its own).
    pub transactions: AtomicI64,
    pub transaction_bytes: AtomicI64,
}

/// Work for another worker: a message to send on one of its peers' transactions, or a mode's
/// action that needs that worker's transactions.
pub enum Mail<A> {
    /// A message for that worker's stack.
    Stack(Handover),
    /// A mode's action, to run there now.
    Action(A),
}

/// A worker's post: every worker's inbox (to hand work over) and its own receiving end.
pub type Post<A> = (Arc<Inboxes<A>>, mpsc::Receiver<Mail<A>>);

/// Every worker's inbox, by worker number.
pub struct Inboxes<A>(Vec<mpsc::Sender<Mail<A>>>);

impl<A> Inboxes<A> {
    /// Inboxes for `workers` workers, and the receiving end of each.
    pub fn new(workers: usize) -> (Inboxes<A>, Vec<mpsc::Receiver<Mail<A>>>) {
        let (senders, receivers) = (0..workers.max(1)).map(|_| mpsc::channel()).unzip();
        (Inboxes(senders), receivers)
    }

    fn send(&self, worker: usize, item: Mail<A>) {
        if let Some(inbox) = self.0.get(worker) {
            // A worker that has returned takes no more work; nothing to do about it.
            let _ = inbox.send(item);
        }
    }
}

/// What every worker shares.
pub struct Shared {
    /// The dialog layer.
    pub manager: Arc<DialogManager>,
    /// Set on SIGINT/SIGTERM: new INVITEs get 503.
    pub draining: AtomicBool,
    /// Set when the drain asks for every call to be hung up (worker 0 does it once).
    pub hang_up_all: AtomicBool,
    /// Set when the workers must return.
    pub stop: AtomicBool,
    /// Status line counters.
    pub stats: Stats,
    /// RFC 3261 T1.
    pub t1_ms: u64,
    /// Each worker's transaction layer (its owner number set per worker).
    pub txn: TxnConfig,
    clock: Instant,
}

impl Shared {
    /// Shared state around `manager`, each worker's transactions set up as `txn` says.
    pub fn new(manager: Arc<DialogManager>, txn: TxnConfig) -> Shared {
        Shared {
            manager,
            draining: AtomicBool::new(false),
            hang_up_all: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            t1_ms: txn.t1_ms,
            txn,
            clock: Instant::now(),
        }
    }

    /// Milliseconds since start: the clock the manager is given.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// `Retry-After` for a 503 the modes send themselves, from the policy in force.
    pub fn retry_after(&self) -> String {
        self.manager.security().policy().retry_after_s.to_string()
    }
}

struct Scheduled<A> {
    at: u64,
    seq: u64,
    action: A,
}

impl<A> PartialEq for Scheduled<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<A> Eq for Scheduled<A> {}
impl<A> PartialOrd for Scheduled<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Scheduled<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What a mode (serve, b2bua) does with the manager's verdicts and its own scheduled tasks.
pub trait Mode: Send + Sync {
    /// The mode's scheduled actions.
    type Action: Send;
    /// A received message (its top Via stamped with where it came from) and the manager's
    /// verdict on it; anything to send goes to `io.out`.
    fn on_verdict(&self, io: &mut Io<'_, Self::Action>, view: &MessageView<'_>, verdict: Verdict);
    /// The manager refused a message without a verdict (its answer, if any, is in the
    /// outbox).
    fn on_refused(
        &self,
        _io: &mut Io<'_, Self::Action>,
        _view: &MessageView<'_>,
        _error: &ManagerError,
    ) {
    }
    /// A scheduled action is due.
    fn on_action(&self, io: &mut Io<'_, Self::Action>, action: Self::Action);
    /// Dialogs and INVITEs the manager expired (their BYE/CANCEL/408 is already in the
    /// outbox).
    fn on_expired(&self, _io: &mut Io<'_, Self::Action>, _expired: &[Expiry]) {}
    /// The endpoint's manager is made: hang what the mode keeps per dialog off its end path.
    fn attach(&self, _manager: &DialogManager) {}
    /// The drain asks for every call to end: write the BYEs.
    fn hang_up_all(&self, io: &mut Io<'_, Self::Action>);
    /// The mode's own structures for `/metrics`: (name, help, value).
    fn usage(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
}

/// What a mode gets to act with: the shared state, the stack's desk (outbox, a look at the
/// worker's transactions), the clock and its timers.
pub struct Io<'w, A> {
    /// Shared state.
    pub shared: &'w Shared,
    /// The outbox and this worker's client transactions.
    pub desk: Desk<'w>,
    /// Now, on the manager's clock.
    pub now: u64,
    tasks: &'w mut BinaryHeap<Reverse<Scheduled<A>>>,
    seq: &'w mut u64,
    inboxes: &'w Inboxes<A>,
}

impl<A> Io<'_, A> {
    /// Runs `action` at `at` on this worker.
    pub fn schedule(&mut self, at: u64, action: A) {
        *self.seq += 1;
        self.tasks.push(Reverse(Scheduled {
            at,
            seq: *self.seq,
            action,
        }));
    }

    /// Runs `action` now on `worker` (this one: at once, after the current message).
    pub fn hand_over(&mut self, worker: usize, action: A) {
        match worker == self.desk.worker() {
            true => self.schedule(self.now, action),
            false => {
                let counters = &self.shared.stats.stack;
                counters.handed_over.fetch_add(1, Ordering::Relaxed);
                self.inboxes.send(worker, Mail::Action(action));
            }
        }
    }

    /// Answers the request in hand (`view`, the one the verdict is about) with `status`.
    pub fn respond(&mut self, view: &MessageView<'_>, status: u16, parts: &ResponseParts<'_>) {
        let _ = self.desk.respond(view, status, parts, self.now);
    }

    /// Answers a new INVITE by its token; `false` when nothing was sent because it has its
    /// final answer already (a CANCEL won) or is gone.
    pub fn respond_invite(
        &mut self,
        invite: InviteId,
        status: u16,
        parts: &ResponseParts<'_>,
    ) -> bool {
        self.desk
            .respond_invite(invite, status, parts, self.now)
            .is_ok()
    }

    /// A 503 with `Retry-After` for a new INVITE this mode cannot serve.
    pub fn unavailable(&mut self, invite: InviteId) {
        let retry = self.shared.retry_after();
        let headers: [(&str, &[u8]); 1] = [("Retry-After", retry.as_bytes())];
        let parts = ResponseParts {
            extra_headers: &headers,
            ..ResponseParts::default()
        };
        self.respond_invite(invite, 503, &parts);
    }
}

/// One worker: its socket, its stack and its timers.
pub struct Worker<M: Mode> {
    shared: Arc<Shared>,
    mode: Arc<M>,
    socket: UdpSocket,
    inboxes: Arc<Inboxes<M::Action>>,
    inbox: mpsc::Receiver<Mail<M::Action>>,
    /// What this worker sends, batched: flushed once a received batch is handled and once
    /// the timers have fired, so nothing waits while the worker blocks in a receive.
    sender: Sender,
    stack: Stack,
    tasks: BinaryHeap<Reverse<Scheduled<M::Action>>>,
    seq: u64,
    expired: Vec<Expiry>,
    /// The transaction usage last added to [`Stats`].
    published: (usize, usize),
}

impl<M: Mode> Worker<M> {
    /// Worker `id` of `workers` on `socket`, taking what other workers hand it from `inbox`
    /// (its own in `inboxes`).
    pub fn new(
        (id, workers): (usize, usize),
        shared: Arc<Shared>,
        mode: Arc<M>,
        socket: UdpSocket,
        (inboxes, inbox): Post<M::Action>,
    ) -> Result<Worker<M>, TxnError> {
        let config = StackConfig {
            txn: shared.txn,
            worker: id,
            workers,
            counters: Some(Arc::clone(&shared.stats.stack)),
        };
        Ok(Worker {
            stack: Stack::new(Arc::clone(&shared.manager), config)?,
            shared,
            mode,
            socket,
            inboxes,
            inbox,
            sender: Sender::new(),
            tasks: BinaryHeap::new(),
            seq: 0,
            expired: Vec::new(),
            published: (0, 0),
        })
    }

    /// Receives and handles datagrams until [`Shared::stop`] is set.
    ///
    /// One call receives every datagram already queued (up to a batch), waiting as long as
    /// the socket's read timeout for the first only; what handling them writes leaves in one
    /// call too.
    pub fn run(mut self) {
        let mut batch = Receiver::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.shared.now_ms();
            self.fire_timers(now);
            self.take_mail(now);
            self.sender.flush(&self.socket);
            match batch.recv(&self.socket) {
                Ok(count) => {
                    for i in 0..count {
                        let (bytes, src) = batch.get(i);
                        let Some(src) = src else { continue };
                        let now = self.shared.now_ms();
                        self.handle(bytes, src, now);
                    }
                    self.sender.flush(&self.socket);
                }
                Err(e) if batch::is_timeout(&e) => {}
                Err(e) => tracing::warn!(error = %e, "receive failed"),
            }
        }
    }

    fn handle(&mut self, bytes: &[u8], src: SocketAddr, now: u64) {
        if let Some(turn) = self.stack.receive(bytes, src, now) {
            let mut io = Io {
                shared: &self.shared,
                desk: turn.desk,
                now,
                tasks: &mut self.tasks,
                seq: &mut self.seq,
                inboxes: &self.inboxes,
            };
            match turn.verdict {
                Ok(verdict) => self.mode.on_verdict(&mut io, &turn.view, verdict),
                Err(e) => self.mode.on_refused(&mut io, &turn.view, &e),
            }
        }
        self.send(now);
    }

    /// Runs `act` with the stack's desk, then sends what it wrote.
    fn act(&mut self, now: u64, act: impl FnOnce(&M, &mut Io<'_, M::Action>)) {
        let mut io = Io {
            shared: &self.shared,
            desk: self.stack.desk(),
            now,
            tasks: &mut self.tasks,
            seq: &mut self.seq,
            inboxes: &self.inboxes,
        };
        act(&self.mode, &mut io);
        self.send(now);
    }

    /// Flushes the stack: its datagrams into the batch, its handovers to their workers.
    fn send(&mut self, now: u64) {
        self.stack.flush(now);
        let (socket, sender) = (&self.socket, &mut self.sender);
        self.stack.drain(|bytes, to| sender.push(socket, bytes, to));
        for (worker, handover) in self.stack.take_handovers() {
            self.inboxes.send(worker, Mail::Stack(handover));
        }
    }

    /// What other workers handed over: sent on this worker's transactions, or run here.
    fn take_mail(&mut self, now: u64) {
        while let Ok(item) = self.inbox.try_recv() {
            match item {
                Mail::Stack(handover) => {
                    self.stack.accept(handover, now);
                    self.send(now);
                }
                Mail::Action(action) => self.act(now, |mode, io| mode.on_action(io, action)),
            }
        }
    }

    fn fire_timers(&mut self, now: u64) {
        if self.stack.desk().worker() == 0 && self.shared.hang_up_all.swap(false, Ordering::Relaxed)
        {
            self.act(now, |mode, io| mode.hang_up_all(io));
        }
        if self.stack.next_deadline().is_some_and(|at| at <= now) {
            let mut expired = std::mem::take(&mut self.expired);
            expired.clear();
            self.stack.on_timeout(now, &mut expired);
            if !expired.is_empty() {
                self.act(now, |mode, io| mode.on_expired(io, &expired));
            }
            self.send(now);
            self.expired = expired;
        }
        while self.tasks.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(due)) = self.tasks.pop() else {
                break;
            };
            self.act(now, |mode, io| mode.on_action(io, due.action));
        }
        self.publish_usage();
        if self.tasks.is_empty() && self.tasks.capacity() > 1024 {
            self.tasks.shrink_to_fit();
        }
    }

    fn publish_usage(&mut self) {
        let usage = self.stack.usage();
        let stats = &self.shared.stats;
        let delta = |now: usize, then: usize| now as i64 - then as i64;
        stats
            .transactions
            .fetch_add(delta(usage.0, self.published.0), Ordering::Relaxed);
        stats
            .transaction_bytes
            .fetch_add(delta(usage.1, self.published.1), Ordering::Relaxed);
        self.published = usage;
    }
}
