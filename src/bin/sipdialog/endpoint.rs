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

use sipdialog::build::{self, ResponseParts};
use sipdialog::manager::{
    Answering, Delivery, DialogManager, Expiry, InviteId, KeptRequest, Kind, ManagerError,
    OutMessage, Outbox, Verdict,
};
use sipdialog::security::SecurityError;
use sipdialog::txn::{
    Expired, Received, Request, Transactions, Transmits, Transport, TxnConfig, TxnError, TxnId,
    TxnState,
};
use sipdialog::wire::{MessageView, Method};

use crate::batch::{self, Receiver, Sender};
use crate::{net, steer};

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
    /// Requests refused (4xx–6xx sent by the manager or the mode).
    pub rejected: AtomicU64,
    /// Datagrams that did not scan.
    pub malformed: AtomicU64,
    /// Requests sent once only: to an address the dialog's peer never sent from, or with no
    /// room left in the transaction layer.
    pub sent_once: AtomicU64,
    /// Messages handed to another worker (its peer's transaction lives there).
    pub handed_over: AtomicU64,
    /// Datagrams received, keepalives left out.
    pub received: AtomicU64,
    /// Transactions and the bytes they hold, all workers (each adds what changed in its own).
    pub transactions: AtomicI64,
    pub transaction_bytes: AtomicI64,
}

/// Work for another worker: a message to send on one of its peers' transactions, or a mode's
/// action that needs that worker's transactions.
pub enum Handover<A> {
    /// A request to one of that worker's peers: its client transaction lives there.
    Request {
        bytes: Vec<u8>,
        method: Method,
        /// The top Via branch, as offsets into `bytes`.
        branch: Option<(usize, usize)>,
        to: SocketAddr,
        /// Resent until answered, or sent once.
        reliable: bool,
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
    /// A mode's action, to run there now.
    Action(A),
}

/// A request we sent, as [`Io::in_flight`] finds its client transaction.
pub struct Sent {
    /// The worker whose transactions hold it (its peer's).
    pub worker: usize,
    branch: Box<[u8]>,
    method: Method,
}

/// A worker's mail: every worker's inbox (to hand work over) and its own receiving end.
pub type Mail<A> = (Arc<Inboxes<A>>, mpsc::Receiver<Handover<A>>);

/// Every worker's inbox, by worker number.
pub struct Inboxes<A>(Vec<mpsc::Sender<Handover<A>>>);

impl<A> Inboxes<A> {
    /// Inboxes for `workers` workers, and the receiving end of each.
    pub fn new(workers: usize) -> (Inboxes<A>, Vec<mpsc::Receiver<Handover<A>>>) {
        let (senders, receivers) = (0..workers.max(1)).map(|_| mpsc::channel()).unzip();
        (Inboxes(senders), receivers)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn send(&self, stats: &Stats, worker: usize, item: Handover<A>) {
        if let Some(inbox) = self.0.get(worker) {
            if inbox.send(item).is_ok() {
                stats.handed_over.fetch_add(1, Ordering::Relaxed);
            }
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

/// What a mode gets to act with: the shared state, the outbox, the clock, its timers, and a
/// look at the worker's transactions.
pub struct Io<'w, A> {
    /// Shared state.
    pub shared: &'w Shared,
    /// Messages to send once the mode returns.
    pub out: &'w mut Outbox,
    /// Now, on the manager's clock.
    pub now: u64,
    /// This worker's number.
    pub worker: usize,
    tasks: &'w mut BinaryHeap<Reverse<Scheduled<A>>>,
    seq: &'w mut u64,
    txns: &'w Transactions,
    inboxes: &'w Inboxes<A>,
}

impl<A> Io<'_, A> {
    /// Runs `action` at `at` on this worker.
    pub fn schedule(&mut self, at: u64, action: A) {
        schedule(self.tasks, self.seq, at, action);
    }

    /// Runs `action` now on `worker` (this one: at once, after the current message).
    pub fn hand_over(&mut self, worker: usize, action: A) {
        match worker == self.worker {
            true => self.schedule(self.now, action),
            false => self
                .inboxes
                .send(&self.shared.stats, worker, Handover::Action(action)),
        }
    }

    /// Answers the request in hand (`view`, the one the verdict is about) with `status`
    /// through the manager (which adds the To tag and records what the answer does to the
    /// dialogs). Errors are logged.
    pub fn respond(&mut self, view: &MessageView<'_>, status: u16, parts: &ResponseParts<'_>) {
        let result = self
            .shared
            .manager
            .respond_to(view, status, parts, self.now, self.out);
        self.count(status, result.as_ref().err());
    }

    /// Answers a request received earlier, kept with its transaction (`answering`, what
    /// [`Outbox::answered`] said when it was in hand): the B2BUA's relayed requests, answered
    /// when the other leg answers. No scan: the kept copy knows its fields.
    pub fn respond_kept(
        &mut self,
        request: &KeptRequest,
        answering: Option<Answering>,
        status: u16,
        parts: &ResponseParts<'_>,
    ) {
        let in_hand = self.out.answered();
        self.out.answering(answering);
        let result = self
            .shared
            .manager
            .respond_kept(request, status, parts, self.now, self.out);
        self.out.answering(in_hand);
        self.count(status, result.as_ref().err());
    }

    /// Answers a new INVITE by its token; `false` when nothing was sent because it has its
    /// final answer already (a CANCEL won) or is gone.
    pub fn respond_invite(
        &mut self,
        invite: InviteId,
        status: u16,
        parts: &ResponseParts<'_>,
    ) -> bool {
        let result = self
            .shared
            .manager
            .respond_invite(invite, status, parts, self.now, self.out);
        self.count(status, result.as_ref().err());
        result.is_ok()
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

    /// The last request written into the outbox, to ask [`Io::in_flight`] about later.
    pub fn last_request(&self) -> Option<Sent> {
        let msg = self.out.iter().last()?;
        let Kind::Request(method) = msg.kind else {
            return None;
        };
        let to = request_destination(&msg)?;
        Some(Sent {
            worker: steer::owner(to, self.inboxes.len()),
            branch: msg.branch?.into(),
            method,
        })
    }

    /// Whether a request of ours still waits for its final response (false once answered,
    /// given up, or when it went out once); `None` when its transaction is another worker's
    /// ([`Sent::worker`]: hand the question over).
    pub fn in_flight(&self, sent: &Sent) -> Option<bool> {
        if sent.worker != self.worker {
            return None;
        }
        let method = sent.method;
        let token = method.as_str().unwrap_or_default().as_bytes();
        let state = self
            .txns
            .find_client(&sent.branch, method, token)
            .and_then(|txn| self.txns.state(txn));
        Some(matches!(
            state,
            Some(TxnState::Calling | TxnState::Trying | TxnState::Proceeding)
        ))
    }

    fn count(&self, status: u16, error: Option<&ManagerError>) {
        match error {
            None if status >= 300 => {
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
            Some(ManagerError::Security(_)) => {
                // The manager answered with a refusal instead.
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Some(e) => tracing::debug!(status, error = ?e, "response not sent"),
        }
    }
}

/// Where a request in the outbox goes: where the manager said, else its next hop.
fn request_destination(msg: &OutMessage<'_>) -> Option<SocketAddr> {
    msg.destination
        .or_else(|| msg.next_hop.and_then(net::uri_addr))
}

fn schedule<A>(tasks: &mut BinaryHeap<Reverse<Scheduled<A>>>, seq: &mut u64, at: u64, action: A) {
    *seq += 1;
    tasks.push(Reverse(Scheduled {
        at,
        seq: *seq,
        action,
    }));
}

/// One worker: its socket, outbox, transactions and timers.
pub struct Worker<M: Mode> {
    id: usize,
    shared: Arc<Shared>,
    mode: Arc<M>,
    socket: UdpSocket,
    inboxes: Arc<Inboxes<M::Action>>,
    inbox: mpsc::Receiver<Handover<M::Action>>,
    /// What this worker sends, batched: flushed once a received batch is handled and once
    /// the timers have fired, so nothing waits while the worker blocks in a receive.
    sender: Sender,
    out: Outbox,
    txns: Transactions,
    transmits: Transmits,
    txn_expired: Vec<Expired>,
    tasks: BinaryHeap<Reverse<Scheduled<M::Action>>>,
    seq: u64,
    expired: Vec<Expiry>,
    next_manager_check: u64,
    /// A received request with its Via stamped (reused).
    stamped: Vec<u8>,
    /// The transaction usage last added to [`Stats`].
    published: (usize, usize),
}

impl<M: Mode> Worker<M> {
    /// Worker `id` on `socket`, taking what other workers hand it from `inbox` (its own in
    /// `inboxes`).
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mode: Arc<M>,
        socket: UdpSocket,
        (inboxes, inbox): Mail<M::Action>,
    ) -> Result<Worker<M>, TxnError> {
        let config = TxnConfig {
            owner: id as u16,
            ..shared.txn
        };
        Ok(Worker {
            id,
            txns: Transactions::new(config)?,
            shared,
            mode,
            socket,
            inboxes,
            inbox,
            sender: Sender::new(),
            out: Outbox::for_owner(id as u16),
            transmits: Transmits::new(),
            txn_expired: Vec::new(),
            tasks: BinaryHeap::new(),
            seq: 0,
            expired: Vec::new(),
            next_manager_check: 0,
            stamped: Vec::new(),
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
            self.take_handovers(now);
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

    fn io(&mut self, now: u64) -> (Io<'_, M::Action>, &M) {
        (
            Io {
                shared: &self.shared,
                out: &mut self.out,
                now,
                worker: self.id,
                tasks: &mut self.tasks,
                seq: &mut self.seq,
                txns: &self.txns,
                inboxes: &self.inboxes,
            },
            &self.mode,
        )
    }

    fn handle(&mut self, bytes: &[u8], src: SocketAddr, now: u64) {
        // Keepalives (CRLF) and junk below the size of any SIP message.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.shared.stats.received.fetch_add(1, Ordering::Relaxed);
        let limits = self.shared.manager.scan_limits();
        let view = match MessageView::parse_with(bytes, &limits) {
            Ok(view) => view,
            Err(e) => {
                self.shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, error = %e, "malformed datagram");
                let manager = &self.shared.manager;
                if manager.answer_malformed(bytes, e, Some(src), now, &mut self.out) {
                    self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
                self.flush(now);
                return;
            }
        };
        // Answers, now or later, go back where the request came from (§18.2.1, RFC 3581).
        let mut stamped = std::mem::take(&mut self.stamped);
        stamped.clear();
        let view = match view.is_request() {
            true => match build::stamped(&view, src, &mut stamped) {
                Ok(Some(stamped)) => stamped,
                _ => view,
            },
            false => view,
        };
        // Decoded once for the transaction layer, the manager and the answer's destination.
        let view = view.with_decoded_via();
        if self.transact(&view, src, now) {
            let verdict = self
                .shared
                .manager
                .on_message(&view, Some(src), now, &mut self.out);
            let (mut io, mode) = self.io(now);
            match verdict {
                Ok(verdict) => {
                    if matches!(verdict, Verdict::Rejected { .. }) {
                        io.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    mode.on_verdict(&mut io, &view, verdict);
                }
                Err(e) => {
                    tracing::debug!(%src, error = ?e, "message refused");
                    mode.on_refused(&mut io, &view, &e);
                }
            }
        }
        self.out.answering(None);
        self.stamped = stamped;
        self.flush(now);
    }

    /// Hands a received message to the transaction layer: `true` when the dialog layer is to
    /// see it, with the request's transaction named in the outbox for its answers; `false`
    /// when the layer took care of it (a retransmission, a stray response) or refused it.
    fn transact(&mut self, view: &MessageView<'_>, src: SocketAddr, now: u64) -> bool {
        let received = if view.is_request() {
            let to = view
                .top_via()
                .ok()
                .flatten()
                .and_then(|via| via.response_destination())
                .unwrap_or(src);
            let received =
                self.txns
                    .on_request(view, to, Transport::Unreliable, now, &mut self.transmits);
            let txn = match received {
                Ok(Received::New(txn)) | Ok(Received::Cancel { cancel: txn, .. }) => Some(txn),
                Ok(_) => None,
                Err(TxnError::Full) => {
                    self.out.answering(Some(Answering { txn: None, to }));
                    let error = SecurityError::TooManyTransactions;
                    if self
                        .shared
                        .manager
                        .refuse_request(view, error, &mut self.out)
                        .is_ok()
                    {
                        self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    return false;
                }
                Err(e) => {
                    tracing::debug!(%src, error = %e, "request refused by the transaction layer");
                    return false;
                }
            };
            self.out.answering(Some(Answering { txn, to }));
            received
        } else {
            Ok(self.txns.on_response(view, now, &mut self.transmits))
        };
        self.transmit();
        !matches!(received, Ok(Received::Absorbed | Received::Dropped))
    }

    /// Sends the outbox: requests through a client transaction on the worker of their next
    /// hop (ACK and requests sent once go straight out), responses through the server
    /// transaction they answer on its worker, stateless answers straight out. Nothing in it is
    /// scanned: the outbox says what each message is and where it goes.
    fn flush(&mut self, now: u64) {
        let out = std::mem::take(&mut self.out);
        for msg in out.iter() {
            match msg.kind {
                Kind::Request(method) => {
                    let Some(to) = request_destination(&msg) else {
                        tracing::warn!(hop = ?msg.next_hop.map(String::from_utf8_lossy), "no address for next hop");
                        continue;
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
                    let owner = steer::owner(to, self.inboxes.len());
                    if owner != self.id && reliable && method != Method::Ack {
                        let item = Handover::Request {
                            bytes: msg.bytes.to_vec(),
                            method,
                            branch,
                            to,
                            reliable,
                        };
                        self.inboxes.send(&self.shared.stats, owner, item);
                        continue;
                    }
                    self.send_request(msg.bytes, method, branch, to, reliable, now);
                }
                Kind::Response(status) => {
                    let once = msg.delivery == Delivery::Once;
                    match msg.txn {
                        Some(txn) if usize::from(txn.owner()) != self.id => {
                            let item = Handover::Answer {
                                txn,
                                status,
                                bytes: msg.bytes.to_vec(),
                                once,
                                to: msg.destination,
                            };
                            let owner = usize::from(txn.owner());
                            self.inboxes.send(&self.shared.stats, owner, item);
                        }
                        Some(txn) => {
                            self.answer(txn, status, msg.bytes, once, msg.destination, now)
                        }
                        None => {
                            if let Some(to) = msg.destination {
                                self.sender.push(&self.socket, msg.bytes, to);
                            }
                        }
                    }
                }
            }
        }
        self.out = out;
        self.out.clear();
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
                self.transmit();
                return;
            }
            self.shared.stats.sent_once.fetch_add(1, Ordering::Relaxed);
        }
        self.sender.push(&self.socket, bytes, to);
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
        match sent {
            Ok(()) => self.transmit(),
            Err(e) => {
                tracing::debug!(status, error = %e, "response outside its transaction");
                // Its transaction ended (or has no room): a refusal still goes, once.
                if let (true, Some(to)) = (status >= 300, to) {
                    self.sender.push(&self.socket, bytes, to);
                }
            }
        }
    }

    /// Moves what the transaction layer wrote into the batch to send.
    fn transmit(&mut self) {
        for t in self.transmits.iter() {
            self.sender.push(&self.socket, t.bytes, t.to);
        }
        self.transmits.clear();
    }

    /// What other workers handed over: sent on this worker's transactions.
    fn take_handovers(&mut self, now: u64) {
        while let Ok(item) = self.inbox.try_recv() {
            match item {
                Handover::Request {
                    bytes,
                    method,
                    branch,
                    to,
                    reliable,
                } => self.send_request(&bytes, method, branch, to, reliable, now),
                Handover::Answer {
                    txn,
                    status,
                    bytes,
                    once,
                    to,
                } => self.answer(txn, status, &bytes, once, to, now),
                Handover::Action(action) => {
                    let (mut io, mode) = self.io(now);
                    mode.on_action(&mut io, action);
                    self.flush(now);
                }
            }
        }
    }

    fn fire_timers(&mut self, now: u64) {
        if self.id == 0 && self.shared.hang_up_all.swap(false, Ordering::Relaxed) {
            let (mut io, mode) = self.io(now);
            mode.hang_up_all(&mut io);
            self.flush(now);
        }
        if self.txns.next_deadline().is_some_and(|at| at <= now) {
            self.txn_expired.clear();
            self.txns
                .on_timeout(now, &mut self.transmits, &mut self.txn_expired);
            self.transmit();
            for e in &self.txn_expired {
                // The dialog layer has its own clock for what matters to a call (an INVITE
                // without answer, a 2xx without ACK): these only end transactions.
                tracing::debug!(reason = ?e.reason, role = ?e.role, "transaction timed out");
            }
        }
        while self.tasks.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(due)) = self.tasks.pop() else {
                break;
            };
            let (mut io, mode) = self.io(now);
            mode.on_action(&mut io, due.action);
            self.flush(now);
        }
        if now >= self.next_manager_check {
            self.next_manager_check = now + 10;
            self.publish_usage();
            let manager = Arc::clone(&self.shared.manager);
            if manager.next_deadline().is_some_and(|at| at <= now) {
                self.expired.clear();
                manager.on_timeout(now, &mut self.out, &mut self.expired);
                let expired = std::mem::take(&mut self.expired);
                let (mut io, mode) = self.io(now);
                mode.on_expired(&mut io, &expired);
                self.expired = expired;
                self.flush(now);
            }
        }
        if self.tasks.is_empty() && self.tasks.capacity() > 1024 {
            self.tasks.shrink_to_fit();
        }
    }

    fn publish_usage(&mut self) {
        let usage = (self.txns.len(), self.txns.bytes());
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
