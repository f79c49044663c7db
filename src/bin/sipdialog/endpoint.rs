//! The worker loop every mode shares: receive a datagram, absorb retransmissions, let the
//! manager judge it, let the mode act, send what the outbox holds; in between, fire timers
//! (our retransmissions, the mode's scheduled actions, the manager's expiries).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sipdialog::build::{self, ResponseParts};
use sipdialog::manager::{DialogManager, Expiry, Outbox, Verdict};
use sipdialog::wire::{MessageView, Method};

use crate::net;
use crate::txn::{self, KeyHasher, ResponseCache, Retransmissions};

/// RFC 3261 T2: the cap on the retransmission interval.
const T2_MS: u64 = 4_000;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

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
    /// Datagrams that did not parse.
    pub malformed: AtomicU64,
}

/// What every worker shares.
pub struct Shared {
    /// The dialog layer.
    pub manager: Arc<DialogManager>,
    /// Requests and 2xx responses in flight.
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
    /// Shared state around `manager`.
    pub fn new(manager: Arc<DialogManager>, t1_ms: u64) -> Shared {
        Shared {
            manager,
            retransmissions: Retransmissions::new(),
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
    /// A received message and the manager's verdict on it; anything to send goes to
    /// `io.out` (responses go back to `src`).
    fn on_verdict(
        &self,
        io: &mut Io<'_, Self::Action>,
        view: &MessageView<'_>,
        bytes: &[u8],
        verdict: Verdict,
    );
    /// A scheduled action is due.
    fn on_action(&self, io: &mut Io<'_, Self::Action>, action: Self::Action);
    /// Dialogs the manager expired (their BYE/CANCEL/408 is already in the outbox).
    fn on_expired(&self, _io: &mut Io<'_, Self::Action>, _expired: &[Expiry]) {}
    /// The drain asks for every call to end: write the BYEs.
    fn hang_up_all(&self, io: &mut Io<'_, Self::Action>);
}

/// What a mode gets to act with: the shared state, the outbox, the clock, and its timers.
pub struct Io<'w, A> {
    /// Shared state.
    pub shared: &'w Shared,
    /// Messages to send once the mode returns.
    pub out: &'w mut Outbox,
    /// Now, on the manager's clock.
    pub now: u64,
    /// The last response sent per server transaction.
    pub cache: &'w ResponseCache,
    tasks: &'w mut BinaryHeap<Reverse<Scheduled<A>>>,
    seq: &'w mut u64,
}

impl<A> Io<'_, A> {
    /// Runs `action` at `at` on this worker.
    pub fn schedule(&mut self, at: u64, action: A) {
        schedule(self.tasks, self.seq, at, Task::App(action));
    }

    /// Answers `request` with `status` through the manager (which adds the To tag and records
    /// what the answer does to the dialogs). Errors are logged: the request then goes
    /// unanswered and the peer retransmits or times out.
    pub fn respond(&mut self, request: &[u8], status: u16, parts: &ResponseParts<'_>) {
        if status >= 300 {
            self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self
            .shared
            .manager
            .respond(request, status, parts, self.now, self.out)
        {
            tracing::debug!(status, error = ?e, "response not sent");
        }
    }

    /// The status of the last response sent in `request`'s server transaction.
    pub fn answered(&self, request: &MessageView<'_>) -> Option<u16> {
        self.cache
            .get(self.shared.keys.server(request))
            .map(|(status, _, _)| status)
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
    out: Outbox,
    cache: ResponseCache,
    tasks: BinaryHeap<Reverse<Scheduled<M::Action>>>,
    seq: u64,
    expired: Vec<Expiry>,
    next_manager_check: u64,
}

impl<M: Mode> Worker<M> {
    /// A worker on `socket`, caching the responses of the last `cache_size` transactions.
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mode: Arc<M>,
        socket: UdpSocket,
        cache_size: usize,
    ) -> Worker<M> {
        Worker {
            id,
            shared,
            mode,
            socket,
            out: Outbox::new(),
            cache: ResponseCache::new(cache_size),
            tasks: BinaryHeap::new(),
            seq: 0,
            expired: Vec::new(),
            next_manager_check: 0,
        }
    }

    /// Receives and handles datagrams until [`Shared::stop`] is set.
    pub fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.shared.now_ms();
            self.fire_timers(now);
            match self.socket.recv_from(&mut buf) {
                Ok((n, src)) => {
                    let now = self.shared.now_ms();
                    self.handle(&buf[..n], src, now);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
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
                cache: &self.cache,
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
        let view = match MessageView::parse(bytes) {
            Ok(view) => view,
            Err(e) => {
                self.shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, error = %e, "malformed datagram dropped");
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
                send(&self.socket, cached, to);
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
        let verdict = self.shared.manager.on_received(bytes, now, &mut self.out);
        match verdict {
            Ok(verdict) => {
                if matches!(verdict, Verdict::Rejected { .. }) {
                    self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
                let (mut io, mode) = self.io(now);
                mode.on_verdict(&mut io, &view, bytes, verdict);
            }
            Err(e) => {
                tracing::debug!(%src, error = ?e, "message refused");
                if view.is_request() && view.method() != Some(Method::Ack) {
                    let (code, reason) = e.status();
                    let mut response = Vec::new();
                    let parts = ResponseParts::default();
                    if build::response(&view, code, reason, None, &parts, &mut response).is_ok() {
                        self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        send(&self.socket, &response, src);
                    }
                }
            }
        }
        // The answer to this request goes back where it came from (symmetric response
        // routing); anything else the outbox holds follows its own Via.
        let answering = view
            .is_request()
            .then(|| (src, self.shared.keys.server(&view)));
        self.flush(answering, now);
    }

    /// A non-2xx final response to our INVITE ends its client transaction; the ACK is ours
    /// to send (the dialog layer only ACKs 2xx). A retransmitted failure finds the INVITE gone
    /// and is ACKed again from the cache of ACKs sent.
    fn ack_failure(&mut self, key: u64, response: &MessageView<'_>) {
        let ack_key = key ^ 0xACC;
        if let Some(invite) = self.shared.retransmissions.take(key) {
            let Ok(invite_view) = MessageView::parse(&invite.bytes) else {
                return;
            };
            if let Some(ack) = txn::ack_for_non_2xx(&invite_view, response) {
                send(&self.socket, &ack, invite.to);
                self.cache.put(ack_key, 0, invite.to, &ack);
            }
        } else if let Some((_, to, ack)) = self.cache.get(ack_key) {
            send(&self.socket, ack, to);
        }
    }

    /// Sends the outbox: requests to their next hop (and into retransmission unless ACK),
    /// responses to the source of the request they answer when that is `answering` (its
    /// address and server transaction key), else per their Via.
    fn flush(&mut self, answering: Option<(SocketAddr, u64)>, now: u64) {
        let out = std::mem::take(&mut self.out);
        for msg in out.iter() {
            let Ok(view) = MessageView::parse(msg.bytes) else {
                continue;
            };
            if view.is_request() {
                let Some(to) = msg.next_hop.and_then(net::uri_addr) else {
                    tracing::warn!(hop = ?msg.next_hop.map(String::from_utf8_lossy), "no address for next hop");
                    continue;
                };
                // In flight before it is sent: its answer may reach another worker at once.
                if view.method() != Some(Method::Ack) {
                    if let Some(key) = self.shared.keys.client(&view) {
                        self.retransmit(key, to, msg.bytes, now);
                    }
                }
                send(&self.socket, msg.bytes, to);
            } else {
                let key = self.shared.keys.server(&view);
                let to = match answering {
                    Some((src, request)) if request == key => Some(src),
                    _ => net::response_addr(msg.bytes),
                };
                let Some(to) = to else {
                    continue;
                };
                let status = view.status_code().unwrap_or(0);
                self.cache.put(key, status, to, msg.bytes);
                // Final responses to INVITE are resent until the ACK (Timers G and 2xx), and
                // are in flight before they are sent, as requests are.
                if status >= 200 && view.cseq().method == b"INVITE" {
                    let key = if status < 300 {
                        self.shared.keys.awaiting_ack(&view)
                    } else {
                        self.shared.keys.failure_awaiting_ack(&view)
                    };
                    self.retransmit(key, to, msg.bytes, now);
                }
                send(&self.socket, msg.bytes, to);
            }
        }
        self.out = out;
        self.out.clear();
    }

    fn retransmit(&mut self, key: u64, to: SocketAddr, bytes: &[u8], now: u64) {
        let t1 = self.shared.t1_ms;
        self.shared.retransmissions.insert(key, to, bytes);
        let task = Task::Retransmit {
            key,
            interval: t1,
            give_up_at: now + 64 * t1,
        };
        schedule(&mut self.tasks, &mut self.seq, now + t1, task);
    }

    fn fire_timers(&mut self, now: u64) {
        if self.id == 0 && self.shared.hang_up_all.swap(false, Ordering::Relaxed) {
            let (mut io, mode) = self.io(now);
            mode.hang_up_all(&mut io);
            self.flush(None, now);
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
                    let socket = &self.socket;
                    let live = self
                        .shared
                        .retransmissions
                        .resend(key, |bytes, to| send(socket, bytes, to));
                    if live {
                        let interval = (interval * 2).min(T2_MS);
                        let task = Task::Retransmit {
                            key,
                            interval,
                            give_up_at,
                        };
                        schedule(&mut self.tasks, &mut self.seq, now + interval, task);
                    }
                }
                Task::App(action) => {
                    let (mut io, mode) = self.io(now);
                    mode.on_action(&mut io, action);
                    self.flush(None, now);
                }
            }
        }
        if now >= self.next_manager_check {
            self.next_manager_check = now + 10;
            let manager = Arc::clone(&self.shared.manager);
            if manager.next_deadline().is_some_and(|at| at <= now) {
                self.expired.clear();
                manager.on_timeout(now, &mut self.out, &mut self.expired);
                let expired = std::mem::take(&mut self.expired);
                let (mut io, mode) = self.io(now);
                mode.on_expired(&mut io, &expired);
                self.expired = expired;
                self.flush(None, now);
            }
        }
    }
}

fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::debug!(%to, error = %e, "send failed");
    }
}
