//! The worker loop every mode shares: receive a datagram, absorb retransmissions, stamp the
//! request's Via with where it came from, let the manager judge it, let the mode act, send
//! what the outbox holds; in between, fire timers (our retransmissions, the mode's scheduled
//! actions, the manager's expiries).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sipdialog::build::{self, ResponseParts};
use sipdialog::manager::{
    Delivery, DialogManager, Expiry, InviteId, ManagerError, Outbox, Verdict,
};
use sipdialog::wire::{MessageView, Method};

use crate::batch::{self, Receiver, Sender};
use crate::net;
use crate::txn::{self, Budget, KeyHasher, ResponseCache, Retransmissions};

/// RFC 3261 T2: the cap on the retransmission interval.
const T2_MS: u64 = 4_000;

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
    /// Requests sent once only: to an address the dialog's peer never sent from, or past the
    /// retransmission budget.
    pub sent_once: AtomicU64,
    /// Response cache entries and bytes, all workers (each adds what changed in its own).
    pub cache_entries: AtomicI64,
    pub cache_bytes: AtomicI64,
}

/// What every worker shares.
pub struct Shared {
    /// The dialog layer.
    pub manager: Arc<DialogManager>,
    /// Requests and final INVITE responses in flight.
    pub retransmissions: Retransmissions,
    /// Transaction keys.
    pub keys: KeyHasher,
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
    clock: Instant,
}

impl Shared {
    /// Shared state around `manager`, retransmitting within `budget`.
    pub fn new(manager: Arc<DialogManager>, t1_ms: u64, budget: Budget) -> Shared {
        Shared {
            manager,
            retransmissions: Retransmissions::new(budget),
            keys: KeyHasher::default(),
            draining: AtomicBool::new(false),
            hang_up_all: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            t1_ms,
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

/// Something to do later on this worker.
pub enum Task<A> {
    /// Resend what is in flight under this key, unless it was answered.
    Retransmit {
        /// Retransmission key.
        key: u64,
        /// The interval that led here (doubles up to T2).
        interval: u64,
        /// 64×T1 after the first send: give up.
        give_up_at: u64,
    },
    /// The mode's own action.
    App(A),
}

struct Scheduled<A> {
    at: u64,
    seq: u64,
    task: Task<A>,
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
    /// The drain asks for every call to end: write the BYEs.
    fn hang_up_all(&self, io: &mut Io<'_, Self::Action>);
    /// The mode's own structures for `/metrics`: (name, help, value).
    fn usage(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
}

/// What a mode gets to act with: the shared state, the outbox, the clock, and its timers.
pub struct Io<'w, A> {
    /// Shared state.
    pub shared: &'w Shared,
    /// Messages to send once the mode returns.
    pub out: &'w mut Outbox,
    /// Now, on the manager's clock.
    pub now: u64,
    tasks: &'w mut BinaryHeap<Reverse<Scheduled<A>>>,
    seq: &'w mut u64,
}

impl<A> Io<'_, A> {
    /// Runs `action` at `at` on this worker.
    pub fn schedule(&mut self, at: u64, action: A) {
        schedule(self.tasks, self.seq, at, Task::App(action));
    }

    /// Answers `request` with `status` through the manager (which adds the To tag and records
    /// what the answer does to the dialogs). Errors are logged.
    pub fn respond(&mut self, request: &[u8], status: u16, parts: &ResponseParts<'_>) {
        let result = self
            .shared
            .manager
            .respond(request, status, parts, self.now, self.out);
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

fn schedule<A>(
    tasks: &mut BinaryHeap<Reverse<Scheduled<A>>>,
    seq: &mut u64,
    at: u64,
    task: Task<A>,
) {
    *seq += 1;
    tasks.push(Reverse(Scheduled {
        at,
        seq: *seq,
        task,
    }));
}

/// One worker: its socket, outbox, response cache and timers.
pub struct Worker<M: Mode> {
    id: usize,
    shared: Arc<Shared>,
    mode: Arc<M>,
    socket: UdpSocket,
    /// What this worker sends, batched: flushed once a received batch is handled and once
    /// the timers have fired, so nothing waits while the worker blocks in a receive.
    sender: Sender,
    out: Outbox,
    cache: ResponseCache,
    tasks: BinaryHeap<Reverse<Scheduled<M::Action>>>,
    seq: u64,
    expired: Vec<Expiry>,
    next_manager_check: u64,
    /// A received request with its Via stamped (reused).
    stamped: Vec<u8>,
    /// The cache usage last added to [`Stats`].
    published: (usize, usize),
}

impl<M: Mode> Worker<M> {
    /// A worker on `socket`, caching responses within `cache`.
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mode: Arc<M>,
        socket: UdpSocket,
        cache: Budget,
    ) -> Worker<M> {
        Worker {
            id,
            shared,
            mode,
            socket,
            sender: Sender::new(),
            out: Outbox::new(),
            cache: ResponseCache::new(cache),
            tasks: BinaryHeap::new(),
            seq: 0,
            expired: Vec::new(),
            next_manager_check: 0,
            stamped: Vec::new(),
            published: (0, 0),
        }
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
                tasks: &mut self.tasks,
                seq: &mut self.seq,
            },
            &self.mode,
        )
    }

    fn handle(&mut self, bytes: &[u8], src: SocketAddr, now: u64) {
        // Keepalives (CRLF) and junk below the size of any SIP message.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
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
        let keys = &self.shared.keys;
        if view.is_request() {
            if view.method() == Some(Method::Ack) {
                let retransmissions = &self.shared.retransmissions;
                retransmissions.remove(keys.awaiting_ack(&view));
                retransmissions.remove(keys.failure_awaiting_ack(&view));
            } else if let Some((_, to, cached)) = self.cache.get(keys.server(&view)) {
                // A retransmitted request: the answer again, the manager never sees it.
                self.sender.push(&self.socket, cached, to);
                return;
            }
        } else if let Some(key) = keys.client(&view) {
            let status = view.status_code().unwrap_or(0);
            if status >= 300 && view.cseq().method == b"INVITE" {
                self.ack_failure(key, &view);
            } else if status >= 200 {
                self.shared.retransmissions.remove(key);
            } else {
                self.shared.retransmissions.quieten(key);
            }
        }
        // Answers, now or later, go back where the request came from (§18.2.1, RFC 3581).
        let mut stamped = std::mem::take(&mut self.stamped);
        stamped.clear();
        let view = match view.is_request() {
            true => match build::stamp_received(&view, src, &mut stamped) {
                Ok(true) => match MessageView::parse_with(&stamped, &limits) {
                    Ok(view) => view,
                    Err(_) => view,
                },
                _ => view,
            },
            false => view,
        };
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
        self.stamped = stamped;
        self.flush(now);
    }

    /// A non-2xx final response to our INVITE ends its client transaction; the ACK is ours
    /// to send (the dialog layer only ACKs 2xx). A retransmitted failure finds the INVITE gone
    /// and is ACKed again from the cache of ACKs sent.
    fn ack_failure(&mut self, key: u64, response: &MessageView<'_>) {
        let ack_key = key ^ 0xACC;
        let now = self.shared.now_ms();
        if let Some(invite) = self.shared.retransmissions.take(key) {
            let Ok(invite_view) = MessageView::parse(&invite.bytes) else {
                return;
            };
            if let Some(ack) = txn::ack_for_non_2xx(&invite_view, response) {
                self.sender.push(&self.socket, &ack, invite.to);
                self.cache.put(ack_key, 0, invite.to, &ack, now);
            }
        } else if let Some((_, to, ack)) = self.cache.get(ack_key) {
            self.sender.push(&self.socket, ack, to);
        }
    }

    /// Sends the outbox: requests to their next hop, and into retransmission as their
    /// delivery allows (never ACK); responses where the manager says or where their top Via
    /// says, kept for the request's retransmissions unless sent once.
    fn flush(&mut self, now: u64) {
        let out = std::mem::take(&mut self.out);
        for msg in out.iter() {
            let view = MessageView::parse(msg.bytes).ok();
            let request = match &view {
                Some(view) => view.is_request(),
                None => false,
            };
            if request {
                let to = msg
                    .destination
                    .or_else(|| msg.next_hop.and_then(net::uri_addr));
                let Some(to) = to else {
                    tracing::warn!(hop = ?msg.next_hop.map(String::from_utf8_lossy), "no address for next hop");
                    continue;
                };
                let view = view.as_ref();
                let resend = match msg.delivery {
                    Delivery::Reliable => true,
                    Delivery::ReliableTo(peer) => peer == to,
                    _ => false,
                };
                let is_ack = view.is_some_and(|v| v.method() == Some(Method::Ack));
                if !is_ack {
                    // In flight before it is sent: its answer may reach another worker at once.
                    let key = view.and_then(|v| self.shared.keys.client(v));
                    let tracked =
                        resend && key.is_some_and(|key| self.retransmit(key, to, msg.bytes, now));
                    if !tracked {
                        self.shared.stats.sent_once.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.sender.push(&self.socket, msg.bytes, to);
                continue;
            }
            let to = msg.destination.or_else(|| {
                let via = view.as_ref()?.top_via().ok()??;
                via.response_destination()
            });
            let Some(to) = to else {
                continue;
            };
            if let (Some(view), false) = (&view, msg.delivery == Delivery::Once) {
                let key = self.shared.keys.server(view);
                let status = view.status_code().unwrap_or(0);
                self.cache.put(key, status, to, msg.bytes, now);
                // Final responses to INVITE are resent until the ACK (Timers G and 2xx), and
                // are in flight before they are sent, as requests are.
                if status >= 200 && view.cseq().method == b"INVITE" {
                    let key = if status < 300 {
                        self.shared.keys.awaiting_ack(view)
                    } else {
                        self.shared.keys.failure_awaiting_ack(view)
                    };
                    self.retransmit(key, to, msg.bytes, now);
                }
            }
            self.sender.push(&self.socket, msg.bytes, to);
        }
        self.out = out;
        self.out.clear();
    }

    /// Starts retransmitting; `false` when the budget is spent (the message goes once).
    fn retransmit(&mut self, key: u64, to: SocketAddr, bytes: &[u8], now: u64) -> bool {
        let t1 = self.shared.t1_ms;
        if !self.shared.retransmissions.insert(key, to, bytes) {
            return false;
        }
        let task = Task::Retransmit {
            key,
            interval: t1,
            give_up_at: now + 64 * t1,
        };
        schedule(&mut self.tasks, &mut self.seq, now + t1, task);
        true
    }

    fn fire_timers(&mut self, now: u64) {
        if self.id == 0 && self.shared.hang_up_all.swap(false, Ordering::Relaxed) {
            let (mut io, mode) = self.io(now);
            mode.hang_up_all(&mut io);
            self.flush(now);
        }
        while self.tasks.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(due)) = self.tasks.pop() else {
                break;
            };
            match due.task {
                Task::Retransmit {
                    key,
                    interval,
                    give_up_at,
                } => {
                    if now >= give_up_at {
                        self.shared.retransmissions.remove(key);
                        continue;
                    }
                    let (socket, sender) = (&self.socket, &mut self.sender);
                    let live = self
                        .shared
                        .retransmissions
                        .resend(key, |bytes, to| sender.push(socket, bytes, to));
                    if live {
                        let interval = (interval * 2).min(T2_MS);
                        let task = Task::Retransmit {
                            key,
                            interval,
                            give_up_at,
                        };
                        // The last wake-up is the give-up itself, not the tick after it.
                        let at = (now + interval).min(give_up_at);
                        schedule(&mut self.tasks, &mut self.seq, at, task);
                    }
                }
                Task::App(action) => {
                    let (mut io, mode) = self.io(now);
                    mode.on_action(&mut io, action);
                    self.flush(now);
                }
            }
        }
        if now >= self.next_manager_check {
            self.next_manager_check = now + 10;
            self.cache.expire(now);
            self.publish_cache_usage();
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
}

impl<M: Mode> Worker<M> {
    fn publish_cache_usage(&mut self) {
        let usage = self.cache.usage();
        let stats = &self.shared.stats;
        let delta = |now: usize, then: usize| now as i64 - then as i64;
        stats
            .cache_entries
            .fetch_add(delta(usage.0, self.published.0), Ordering::Relaxed);
        stats
            .cache_bytes
            .fetch_add(delta(usage.1, self.published.1), Ordering::Relaxed);
        self.published = usage;
    }
}
