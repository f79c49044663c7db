//! Scripts of traffic through one sans-IO transaction layer (`sipdialog::txn::Transactions`)
//! with a tiny table (8 transactions, 4 KiB of messages) and fuzzer-chosen short timers:
//! received requests and responses built from small pools of methods, branches (with and
//! without the magic cookie, or none), sent-bys, Call-IDs, CSeq numbers and statuses, over UDP
//! or TCP; raw bytes fed when they scan; answers (`respond`) through live and stale tokens with
//! any status; requests of ours (`request`) with any method, empty or repeated branches, and
//! sizes past the byte budget; and the clock moved by fuzzer-chosen steps or to the next
//! deadline.
//!
//! Checked after every step: the count cap and byte budget hold; `len()` is the number of
//! tokens handed out and not yet ended; `next_deadline()` is `None` exactly when the table is
//! empty, and lies ahead after `on_timeout`; every datagram goes to an address the script used
//! (a source, a top Via's response destination, a request's next hop); every token is of the
//! right role; every `Expired` names a live transaction once, with a reason of its role, and
//! its `state()` is `None` afterwards; a transaction ends without being reported only after a
//! final response was sent (server) or received (client), since before that it is never
//! evictable; `respond` and `request` refuse what they must. At the end the clock moves past
//! every timer (`max_pending_ms`, 64×T1, Timer D's 32 s, T4) and the table must be empty,
//! holding no bytes.
#![no_main]

use std::collections::HashSet;
use std::net::SocketAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

use sipdialog::txn::{
    Expired, Received, Request, Role, TimedOut, Transactions, Transmits, Transport, TxnConfig,
    TxnError, TxnId,
};
use sipdialog::wire::{MessageView, Method};

const MAX_TRANSACTIONS: usize = 8;
const MAX_BYTES: usize = 4_096;

const METHODS: [&str; 8] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "FOO", "PRACK",
];
const BRANCHES: [&str; 3] = ["b1", "b2", "B1"];
const SENT_BYS: [&str; 6] = [
    "192.0.2.1:5060",
    "192.0.2.1:5062",
    "198.51.100.7",
    "192.0.2.1:5060;rport",
    "pc.example.com;received=203.0.113.9;rport=7000",
    "[2001:db8::1]:5060",
];
const CALL_IDS: [&str; 2] = ["call-1", "call-2"];
const SOURCES: [&str; 3] = ["192.0.2.1:5060", "192.0.2.1:5062", "198.51.100.7:5060"];
const DESTINATIONS: [&str; 2] = ["192.0.2.4:5070", "[2001:db8::4]:5060"];
const STATUSES: [u16; 10] = [100, 180, 183, 200, 202, 408, 481, 486, 487, 603];

#[derive(Arbitrary, Debug)]
struct Cfg {
    t1: u8,
    t2: u8,
    t4: u8,
    pending: u16,
}

#[derive(Arbitrary, Debug)]
struct Ids {
    method: u8,
    /// `None`: no branch parameter at all.
    branch: Option<u8>,
    magic: bool,
    sent_by: u8,
    call: u8,
    cseq: u8,
}

impl Ids {
    fn method(&self) -> &'static str {
        METHODS[usize::from(self.method) % METHODS.len()]
    }

    fn branch(&self) -> Option<String> {
        let b = BRANCHES[usize::from(self.branch?) % BRANCHES.len()];
        Some(if self.magic {
            format!("z9hG4bK{b}")
        } else {
            b.to_string()
        })
    }

    fn via(&self, transport: Transport) -> String {
        let proto = match transport {
            Transport::Unreliable => "UDP",
            Transport::Reliable => "TCP",
        };
        let sent_by = SENT_BYS[usize::from(self.sent_by) % SENT_BYS.len()];
        let branch = self
            .branch()
            .map(|b| format!(";branch={b}"))
            .unwrap_or_default();
        format!("Via: SIP/2.0/{proto} {sent_by}{branch}\r\n")
    }

    fn rest(&self, method: &str, to_tag: bool, pad: u8) -> String {
        let call = CALL_IDS[usize::from(self.call) % CALL_IDS.len()];
        let cseq = self.cseq % 3;
        let tag = if to_tag { ";tag=9" } else { "" };
        let pad = if pad > 0 {
            format!("X-Pad: {}\r\n", "p".repeat(usize::from(pad) * 8))
        } else {
            String::new()
        };
        format!(
            "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>{tag}\r\nCall-ID: {call}\r\n\
             CSeq: {cseq} {method}\r\n{pad}Content-Length: 0\r\n\r\n"
        )
    }

    fn request(&self, transport: Transport, pad: u8) -> Vec<u8> {
        let method = self.method();
        let to_tag = !matches!(method, "INVITE" | "CANCEL");
        format!(
            "{method} sip:b@192.0.2.4:5070 SIP/2.0\r\n{}{}",
            self.via(transport),
            self.rest(method, to_tag, pad)
        )
        .into_bytes()
    }

    fn response(&self, status: u16, pad: u8) -> Vec<u8> {
        format!(
            "SIP/2.0 {status} Whatever\r\n{}{}",
            self.via(Transport::Unreliable),
            self.rest(self.method(), true, pad)
        )
        .into_bytes()
    }
}

#[derive(Arbitrary, Debug)]
enum Status {
    Pick(u8),
    Any(u16),
}

impl Status {
    fn code(&self) -> u16 {
        match *self {
            Status::Pick(i) => STATUSES[usize::from(i) % STATUSES.len()],
            Status::Any(s) => s % 1_000,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request from `SOURCES[source]`.
    ReceiveRequest { ids: Ids, source: u8, reliable: bool },
    /// A response to one of ours (or to nothing).
    ReceiveResponse { ids: Ids, status: Status },
    /// Raw bytes from `SOURCES[source]`, fed if they scan.
    Raw { bytes: Vec<u8>, source: u8, reliable: bool },
    /// Answers the `which`-th token handed out (live or not).
    Respond { which: u8, status: Status, pad: u8 },
    /// A request of ours.
    Send { ids: Ids, to: u8, reliable: bool, pad: u8, empty_branch: bool },
    Advance { ms: u16 },
    /// To the next deadline (or a little past it).
    ToDeadline { past: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    cfg: Cfg,
    ops: Vec<Op>,
}

struct Token {
    id: TxnId,
    role: Role,
    /// A final response was sent (server) or received (client): it may now end quietly.
    final_seen: bool,
    ended: bool,
}

struct Harness {
    txns: Transactions,
    out: Transmits,
    expired: Vec<Expired>,
    tokens: Vec<Token>,
    allowed: HashSet<SocketAddr>,
    now: u64,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Harness {
    fn token(&mut self, id: TxnId, role: Role) {
        assert!(
            self.tokens.iter().all(|t| t.id != id),
            "a token handed out twice: {id:?}"
        );
        assert!(self.txns.state(id).is_some(), "a new token already ended");
        assert_eq!(self.txns.key(id).map(|k| k.role()), Some(role));
        self.tokens.push(Token {
            id,
            role,
            final_seen: false,
            ended: false,
        });
    }

    fn live(&self, id: TxnId, role: Role) {
        assert!(self.txns.state(id).is_some(), "a reported token is not live");
        assert_eq!(self.txns.key(id).map(|k| k.role()), Some(role));
        assert!(
            self.tokens.iter().any(|t| t.id == id && !t.ended),
            "a live transaction never handed out"
        );
    }

    fn received(&mut self, got: Result<Received, TxnError>, request: bool) {
        match got {
            Ok(Received::New(id)) => {
                assert!(request);
                self.token(id, Role::Server);
            }
            Ok(Received::Cancel { cancel, invite }) => {
                assert!(request);
                self.token(cancel, Role::Server);
                if let Some(invite) = invite {
                    self.live(invite, Role::Server);
                }
            }
            Ok(Received::AckOf2xx { invite }) => {
                assert!(request);
                if let Some(invite) = invite {
                    self.live(invite, Role::Server);
                }
            }
            Ok(Received::Response { txn, status }) => {
                assert!(!request);
                self.live(txn, Role::Client);
                if status >= 200 {
                    if let Some(t) = self.tokens.iter_mut().find(|t| t.id == txn) {
                        t.final_seen = true;
                    }
                }
            }
            Ok(Received::Stray2xx | Received::Dropped) => assert!(!request),
            Ok(Received::Absorbed) => {}
            Err(e) => {
                assert!(request, "a response refused");
                assert_eq!(e, TxnError::Full);
                assert!(
                    self.txns.len() == MAX_TRANSACTIONS,
                    "refused with room left: {e:?}, len {}",
                    self.txns.len()
                );
            }
        }
    }

    fn feed(&mut self, bytes: &[u8], source: SocketAddr, transport: Transport) {
        let Ok(view) = MessageView::parse(bytes) else {
            return;
        };
        let request = view.is_request();
        if request {
            self.allowed.insert(source);
            if let Some(dest) = view.top_via().ok().flatten().and_then(|v| v.response_destination()) {
                self.allowed.insert(dest);
            }
        }
        let got = self
            .txns
            .on_message(&view, source, transport, self.now, &mut self.out);
        self.received(got, request);
    }

    fn advance(&mut self, to: u64) {
        assert!(to >= self.now);
        self.now = to;
        self.expired.clear();
        self.txns
            .on_timeout(self.now, &mut self.out, &mut self.expired);
        if let Some(next) = self.txns.next_deadline() {
            assert!(next > self.now, "a timer due at {next} left at {}", self.now);
        }
        let mut seen = HashSet::new();
        for e in &self.expired {
            assert!(seen.insert(e.txn), "expired twice: {e:?}");
            assert_eq!(self.txns.state(e.txn), None, "reported but still there: {e:?}");
            let token = self
                .tokens
                .iter_mut()
                .find(|t| t.id == e.txn)
                .expect("an expired transaction never handed out");
            assert!(!token.ended, "an ended transaction expired: {e:?}");
            assert_eq!(token.role, e.role);
            let server_reason = matches!(
                e.reason,
                TimedOut::Unanswered | TimedOut::NoAck | TimedOut::NoAckOf2xx
            );
            assert_eq!(server_reason, e.role == Role::Server, "{e:?}");
            token.ended = true;
        }
    }

    fn check(&mut self) {
        let cfg = *self.txns.config();
        assert!(self.txns.len() <= cfg.max_transactions);
        assert!(self.txns.bytes() <= cfg.max_bytes);
        // Every transaction always has an end timer.
        assert_eq!(self.txns.next_deadline().is_none(), self.txns.is_empty());
        for t in self.out.iter() {
            assert!(
                self.allowed.contains(&t.to),
                "a datagram to an address never used: {}",
                t.to
            );
            assert!(t.txn.is_some());
        }
        self.out.clear();
        // Tokens that ended without a report: only after their final response.
        for t in self.tokens.iter_mut().filter(|t| !t.ended) {
            if self.txns.state(t.id).is_none() {
                assert!(
                    t.final_seen,
                    "a {:?} transaction vanished before its final response, unreported",
                    t.role
                );
                t.ended = true;
            }
        }
        let live = self.tokens.iter().filter(|t| !t.ended).count();
        assert_eq!(self.txns.len(), live, "len() is not the tokens still live");
    }
}

fuzz_target!(|input: Input| {
    let Input { cfg, ops } = input;
    let t1 = 1 + u64::from(cfg.t1 % 64);
    let config = TxnConfig {
        t1_ms: t1,
        t2_ms: t1 * (1 + u64::from(cfg.t2 % 8)),
        t4_ms: 1 + u64::from(cfg.t4) * 4,
        max_transactions: MAX_TRANSACTIONS,
        max_bytes: MAX_BYTES,
        max_pending_ms: u64::from(cfg.pending),
        owner: 0,
    };
    let mut h = Harness {
        txns: Transactions::with_secret(config, [7; 16]).expect("valid config"),
        out: Transmits::new(),
        expired: Vec::new(),
        tokens: Vec::new(),
        allowed: HashSet::new(),
        now: 0,
    };
    for op in ops.iter().take(96) {
        h.expired.clear();
        match op {
            Op::ReceiveRequest {
                ids,
                source,
                reliable,
            } => {
                let transport = if *reliable {
                    Transport::Reliable
                } else {
                    Transport::Unreliable
                };
                let bytes = ids.request(transport, 0);
                assert!(MessageView::parse(&bytes).is_ok(), "template request scans");
                let source = addr(SOURCES[usize::from(*source) % SOURCES.len()]);
                h.feed(&bytes, source, transport);
            }
            Op::ReceiveResponse { ids, status } => {
                let status = 100 + status.code() % 600;
                let bytes = ids.response(status, 0);
                assert!(MessageView::parse(&bytes).is_ok(), "template response scans");
                h.feed(&bytes, addr(SOURCES[0]), Transport::Unreliable);
            }
            Op::Raw {
                bytes,
                source,
                reliable,
            } => {
                let transport = if *reliable {
                    Transport::Reliable
                } else {
                    Transport::Unreliable
                };
                let source = addr(SOURCES[usize::from(*source) % SOURCES.len()]);
                h.feed(bytes, source, transport);
            }
            Op::Respond { which, status, pad } => {
                if h.tokens.is_empty() {
                    continue;
                }
                let i = usize::from(*which) % h.tokens.len();
                let (id, role) = (h.tokens[i].id, h.tokens[i].role);
                let status = status.code();
                let bytes = format!(
                    "SIP/2.0 {status} Whatever\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
                    "q".repeat(usize::from(*pad) * 4)
                );
                let before = h.out.len();
                let was = h.txns.state(id);
                let peer = h.txns.peer(id);
                let got = h.txns.respond(id, status, bytes.as_bytes(), h.now, &mut h.out);
                match got {
                    Ok(()) => {
                        assert!((100..=699).contains(&status));
                        assert_eq!(role, Role::Server, "a client transaction answered");
                        assert_eq!(h.out.len(), before + 1);
                        let sent = h.out.iter().last().unwrap();
                        assert_eq!(sent.bytes, bytes.as_bytes());
                        assert_eq!(Some(sent.to), peer);
                        if status >= 200 {
                            h.tokens[i].final_seen = true;
                        }
                    }
                    Err(e) => {
                        assert_eq!(h.out.len(), before, "sent although refused");
                        if !(100..=699).contains(&status) {
                            assert_eq!(e, TxnError::WrongState);
                        } else if was.is_none() {
                            assert_eq!(e, TxnError::Gone);
                        }
                    }
                }
            }
            Op::Send {
                ids,
                to,
                reliable,
                pad,
                empty_branch,
            } => {
                let transport = if *reliable {
                    Transport::Reliable
                } else {
                    Transport::Unreliable
                };
                let bytes = ids.request(transport, *pad);
                let method_token = ids.method();
                let method = Method::from_bytes(method_token.as_bytes());
                let branch = if *empty_branch {
                    String::new()
                } else {
                    ids.branch().unwrap_or_default()
                };
                let to = addr(DESTINATIONS[usize::from(*to) % DESTINATIONS.len()]);
                h.allowed.insert(to);
                let before = h.out.len();
                let got = h.txns.request(
                    Request {
                        bytes: &bytes,
                        method,
                        method_token: method_token.as_bytes(),
                        branch: branch.as_bytes(),
                        to,
                        transport,
                    },
                    h.now,
                    &mut h.out,
                );
                match got {
                    Ok(id) => {
                        assert!(method != Method::Ack && !branch.is_empty());
                        assert_eq!(h.out.len(), before + 1);
                        let sent = h.out.iter().last().unwrap();
                        assert_eq!((sent.bytes, sent.to), (&bytes[..], to));
                        h.token(id, Role::Client);
                    }
                    Err(e) => {
                        assert_eq!(h.out.len(), before, "sent although refused");
                        if method == Method::Ack {
                            assert_eq!(e, TxnError::AckIsNotATransaction);
                        } else if branch.is_empty() {
                            assert_eq!(e, TxnError::NoBranch);
                        } else if bytes.len() > MAX_BYTES {
                            assert_eq!(e, TxnError::Full);
                        }
                    }
                }
            }
            Op::Advance { ms } => h.advance(h.now + u64::from(*ms)),
            Op::ToDeadline { past } => {
                if let Some(next) = h.txns.next_deadline() {
                    h.advance(next.max(h.now) + u64::from(*past % 4));
                }
            }
        }
        h.check();
    }
    // Past every timer: the longest a transaction may live from its last change is the
    // longest of max_pending_ms, 64×T1, Timer D (at least 32 s) and T4.
    let cfg = *h.txns.config();
    let longest = [cfg.max_pending_ms, 64 * cfg.t1_ms, 32_000, cfg.t4_ms]
        .into_iter()
        .max()
        .unwrap();
    h.advance(h.now + longest);
    h.check();
    assert!(h.txns.is_empty(), "{} transactions outlived every timer", h.txns.len());
    assert_eq!(h.txns.bytes(), 0);
    assert_eq!(h.txns.next_deadline(), None);
    assert!(h.tokens.iter().all(|t| t.ended));
});
