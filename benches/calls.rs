//! Whole calls through two managers as raw bytes, caller (alice, UAC) and callee (bob, UAS)
//! both: INVITE, 100, 180, 200, ACK, BYE, 200 — seven messages on the wire per call, every
//! one built by one manager and received by the other, plus the timers (`on_timeout` every
//! [`TIMER_EVERY`] calls on a fake clock that advances 1 ms per call), so that the INVITE
//! records kept 64×T1 for late forked 2xx are dropped as they would be in service.
//!
//! Each call has a fresh Call-ID and From tag; the INVITEs (~490 bytes, as softphones write
//! them) are generated before the timed loop. Outboxes are reused and cleared after delivery.
//! `manager/1_thread` runs one call per iteration; `manager/2_threads` runs two streams of
//! calls on two threads through the same pair of managers and reports wall time per call.
//!
//! Baseline in the same run, the ordinary way: the same seven messages (captured from the
//! managers) each parsed with `rsip`, a `"call-id|tag|tag"` `String` key formatted per
//! message, and insert/lookup/remove in `RwLock<HashMap<String, _>>`, one map per side. It
//! builds no message, which the managers do six times per call.
//!
//! `stack/…` is the whole call as an endpoint's worker runs it (issue 12): each side with its
//! transaction layer (`sipdialog::txn`), every received message scanned once and handed to
//! the transaction layer and then the manager as a view, every message sent through the
//! transaction layer straight from the outbox (never scanned), answers by token
//! (`respond_invite`), alice's INVITE made by `DialogManager::calls().invite` (fresh Call-ID and tags,
//! a 200-byte SDP offer), timers of both layers run on the same fake clock.
//!
//! After the benches both managers must be empty and, once their timers have run out, hold
//! no INVITE record and no timer entry: a leak fails the run.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use rsip::prelude::*;
use sipdialog::build::ResponseParts;
use sipdialog::manager::{
    DialogManager, Expiry, InviteId, NewCall, Outbox, RequestBody, Verdict, MAX_EXPIRIES_PER_CALL,
};
use sipdialog::security::Policy;
use sipdialog::stack::{Stack, StackConfig};
use sipdialog::wire::Method;
use support::{calls, Record};

const GROUP: &str = "calls";
/// INVITEs per stream. A stream's Call-IDs come round again after `POOL` of its calls, i.e.
/// after at least `POOL` ms on the fake clock: far beyond the 64×T1 (32 s) an INVITE record
/// is kept, so a reused Call-ID always meets a clean manager.
const POOL: usize = 1 << 16;
/// Calls between two `on_timeout` rounds (per worker).
const TIMER_EVERY: u32 = 64;
/// Calls captured for the baseline, per thread.
const SAMPLE: usize = 4_096;
/// Messages on the wire per call.
const MESSAGES_PER_CALL: f64 = 7.0;

/// `n` INVITEs with distinct Call-IDs (32–48 bytes) and From tags.
fn invites(n: usize, seed: u64) -> Vec<Vec<u8>> {
    calls::identities(n, seed)
        .iter()
        .enumerate()
        .map(|(i, id)| calls::initial_invite(&id.call_id, &id.remote_tag, seed << 32 | i as u64))
        .collect()
}

/// One worker's calls: its own INVITEs, outboxes and timer bookkeeping.
struct Worker {
    invites: Vec<Vec<u8>>,
    next: usize,
    a_out: Outbox,
    b_out: Outbox,
    expired: Vec<Expiry>,
    since_timers: u32,
}

impl Worker {
    fn new(invites: Vec<Vec<u8>>) -> Worker {
        Worker {
            invites,
            next: 0,
            a_out: Outbox::new(),
            b_out: Outbox::new(),
            expired: Vec::new(),
            since_timers: 0,
        }
    }
}

/// The only message in `out`.
fn only(out: &Outbox) -> &[u8] {
    let mut it = out.iter();
    match (it.next(), it.next()) {
        (Some(m), None) => m.bytes,
        _ => panic!("expected one message in the outbox, found {}", out.len()),
    }
}

/// The seven messages of one call, as they went over the wire.
type Wire = [Vec<u8>; 7];

/// One whole call from alice to bob and back; hands each wire message to `seen`.
fn call(
    alice: &DialogManager,
    bob: &DialogManager,
    clock: &AtomicU64,
    w: &mut Worker,
    mut seen: impl FnMut(&[u8]),
) {
    let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
    let inv = &w.invites[w.next];
    w.next = (w.next + 1) % w.invites.len();
    let rp = ResponseParts::default();

    alice.on_sent(inv, now).unwrap();
    seen(inv);
    let Verdict::NewInvite { .. } = bob.on_received(inv, now, &mut w.b_out).unwrap() else {
        panic!("INVITE not new")
    };
    bob.respond(inv, 100, &rp, now, &mut w.b_out).unwrap();
    seen(only(&w.b_out));
    let Verdict::Provisional { dialog: None, .. } = alice
        .on_received(only(&w.b_out), now, &mut w.a_out)
        .unwrap()
    else {
        panic!("100 not provisional")
    };
    w.b_out.clear();

    bob.respond(inv, 180, &rp, now, &mut w.b_out).unwrap();
    seen(only(&w.b_out));
    let Verdict::Provisional {
        dialog: Some(_), ..
    } = alice
        .on_received(only(&w.b_out), now, &mut w.a_out)
        .unwrap()
    else {
        panic!("180 made no early dialog")
    };
    w.b_out.clear();

    bob.respond(inv, 200, &rp, now, &mut w.b_out).unwrap();
    seen(only(&w.b_out));
    let Verdict::Confirmed {
        dialog,
        cseq,
        extra: false,
    } = alice
        .on_received(only(&w.b_out), now, &mut w.a_out)
        .unwrap()
    else {
        panic!("200 did not confirm")
    };
    w.b_out.clear();

    alice.ack(dialog, cseq, &mut w.a_out).unwrap();
    seen(only(&w.a_out));
    let Verdict::Ack { .. } = bob.on_received(only(&w.a_out), now, &mut w.b_out).unwrap() else {
        panic!("ACK not matched")
    };
    w.a_out.clear();

    alice
        .request(
            dialog,
            Method::Bye,
            &RequestBody::default(),
            now,
            &mut w.a_out,
        )
        .unwrap();
    seen(only(&w.a_out));
    let Verdict::Bye { .. } = bob.on_received(only(&w.a_out), now, &mut w.b_out).unwrap() else {
        panic!("BYE not matched")
    };
    w.a_out.clear();
    seen(only(&w.b_out));
    let Verdict::Ended { status: 200, .. } = alice
        .on_received(only(&w.b_out), now, &mut w.a_out)
        .unwrap()
    else {
        panic!("200 to BYE did not end the dialog")
    };
    w.b_out.clear();

    w.since_timers += 1;
    if w.since_timers == TIMER_EVERY {
        w.since_timers = 0;
        alice.on_timeout(now, &mut w.a_out, &mut w.expired);
        bob.on_timeout(now, &mut w.b_out, &mut w.expired);
        assert!(
            w.expired.is_empty() && w.a_out.is_empty() && w.b_out.is_empty(),
            "a finished call expired: {:?}",
            w.expired
        );
    }
}

/// One side of a call as a worker of an endpoint runs it: the library's `Stack` (its
/// transaction layer, outbox and datagrams) around that side's manager, at its address;
/// every received message scanned once, matched by the transaction layer, judged by the
/// manager; every message sent through the transaction layer without being read (the run
/// loop of the README, minus the socket).
struct Side {
    addr: SocketAddr,
    stack: Stack,
}

impl Side {
    fn new(addr: &str, manager: &Arc<DialogManager>) -> Side {
        Side {
            addr: addr.parse().unwrap(),
            stack: Stack::new(Arc::clone(manager), StackConfig::default()).expect("OS randomness"),
        }
    }

    /// Sends what the outbox holds through the transaction layer, into `wire`, checking it
    /// goes to `peer`.
    fn flush(&mut self, peer: SocketAddr, now: u64, wire: &mut Vec<u8>) {
        self.stack.flush(now);
        self.stack.drain(|bytes, to| {
            assert_eq!(to, peer);
            wire.extend_from_slice(bytes);
        });
    }

    /// One datagram from `from`, through the stack; the verdict (`None`: the transaction
    /// layer absorbed it).
    fn receive(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        now: u64,
    ) -> Option<(Verdict, Option<InviteId>)> {
        let verdict = self.stack.receive(bytes, from, now)?.verdict.unwrap();
        let invite = match verdict {
            Verdict::NewInvite { invite, .. } => Some(invite),
            _ => None,
        };
        Some((verdict, invite))
    }

    fn out(&mut self) -> &mut Outbox {
        self.stack.desk().out
    }

    /// Fires the stack's timers: a finished call leaves nothing to resend or end.
    fn timers(&mut self, now: u64, expired: &mut Vec<Expiry>) {
        self.stack.on_timeout(now, expired);
        assert!(self.out().is_empty(), "a timer wrote a request");
        self.stack.flush(now);
        self.stack
            .drain(|bytes, _| panic!("resent: {}", String::from_utf8_lossy(bytes)));
    }
}

/// One worker's two sides (alice's and bob's layers for its calls) and its datagram buffer.
struct StackWorker {
    alice: Side,
    bob: Side,
    wire: Vec<u8>,
    expired: Vec<Expiry>,
    since_timers: u32,
}

impl StackWorker {
    fn new(alice: &Arc<DialogManager>, bob: &Arc<DialogManager>) -> StackWorker {
        StackWorker {
            alice: Side::new("198.51.100.7:5060", alice),
            bob: Side::new("192.0.2.20:5060", bob),
            wire: Vec::with_capacity(4096),
            expired: Vec::new(),
            since_timers: 0,
        }
    }
}

/// A ~200-byte SDP offer, so the INVITE is the size softphones send.
const OFFER: &[u8] = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\n\
c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\n";

/// One whole call from alice to bob and back through both managers and both sides'
/// transaction layers: alice's INVITE (a fresh Call-ID and tags, as a B2BUA's outbound leg
/// makes them), bob's 100, 180 and 200 by the INVITE's token, alice's ACK, BYE, bob's 200.
fn stack_call(alice: &DialogManager, bob: &DialogManager, clock: &AtomicU64, w: &mut StackWorker) {
    let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
    let (a_addr, b_addr) = (w.alice.addr, w.bob.addr);
    let call = NewCall {
        request_uri: b"sip:bob@192.0.2.20:5060",
        from: b"\"Alice\" <sip:alice@198.51.100.7>",
        to: b"<sip:bob@192.0.2.20>",
        referred_by: None,
        replaces: None,
        content_type: Some(b"application/sdp"),
        body: OFFER,
    };
    alice.calls().invite(&call, now, w.alice.out()).unwrap();
    w.alice.flush(b_addr, now, &mut w.wire);
    let Some((Verdict::NewInvite { .. }, Some(invite))) = w.bob.receive(&w.wire, a_addr, now)
    else {
        panic!("INVITE not new")
    };
    w.wire.clear();
    let rp = ResponseParts::default();
    for (status, expect_dialog) in [(100, false), (180, true), (200, true)] {
        bob.respond_invite(invite, status, &rp, now, w.bob.out())
            .unwrap();
        w.bob.flush(a_addr, now, &mut w.wire);
        match w.alice.receive(&w.wire, b_addr, now) {
            Some((Verdict::Provisional { dialog, .. }, _)) if status < 200 => {
                assert_eq!(dialog.is_some(), expect_dialog)
            }
            Some((Verdict::Confirmed { dialog, cseq, .. }, _)) if status == 200 => {
                w.wire.clear();
                alice.ack(dialog, cseq, w.alice.out()).unwrap();
                w.alice.flush(b_addr, now, &mut w.wire);
                let Some((Verdict::Ack { .. }, _)) = w.bob.receive(&w.wire, a_addr, now) else {
                    panic!("ACK not matched")
                };
                w.wire.clear();
                alice
                    .request(
                        dialog,
                        Method::Bye,
                        &RequestBody::default(),
                        now,
                        w.alice.out(),
                    )
                    .unwrap();
                w.alice.flush(b_addr, now, &mut w.wire);
            }
            other => panic!("{status}: {other:?}"),
        }
        if status < 200 {
            w.wire.clear();
        }
    }
    let Some((Verdict::Bye { .. }, _)) = w.bob.receive(&w.wire, a_addr, now) else {
        panic!("BYE not matched")
    };
    w.wire.clear();
    w.bob.flush(a_addr, now, &mut w.wire);
    let Some((Verdict::Ended { status: 200, .. }, _)) = w.alice.receive(&w.wire, b_addr, now)
    else {
        panic!("200 to BYE did not end the dialog")
    };
    w.wire.clear();
    w.since_timers += 1;
    if w.since_timers == TIMER_EVERY {
        w.since_timers = 0;
        w.alice.timers(now, &mut w.expired);
        w.bob.timers(now, &mut w.expired);
        assert!(
            w.expired.is_empty(),
            "a finished call expired: {:?}",
            w.expired
        );
        assert!(w.alice.out().is_empty() && w.bob.out().is_empty());
    }
}

/// Captures `n` calls' wire messages, from managers of their own.
fn capture(n: usize, seed: u64) -> Vec<Wire> {
    let (alice, bob) = calls::caller_and_callee();
    let clock = AtomicU64::new(0);
    let mut w = Worker::new(invites(n, seed));
    (0..n)
        .map(|_| {
            let mut wire: Vec<Vec<u8>> = Vec::with_capacity(7);
            call(&alice, &bob, &clock, &mut w, |m| wire.push(m.to_vec()));
            wire.try_into().expect("seven messages")
        })
        .collect()
}

type Map = RwLock<HashMap<String, Record>>;

/// Call-ID, From tag and To tag of a message, the ordinary way: full parse, owned strings.
fn parse_ids(bytes: &[u8]) -> (String, String, String) {
    let msg = rsip::SipMessage::try_from(bytes).expect("rsip parses the message");
    let call_id = msg.call_id_header().expect("Call-ID").value().to_string();
    let from = msg.from_header().expect("From").tag().expect("From tag");
    let to = msg.to_header().expect("To").tag().expect("To tag");
    (
        call_id,
        from.map(|t| t.to_string()).unwrap_or_default(),
        to.map(|t| t.to_string()).unwrap_or_default(),
    )
}

/// The ordinary way, per call: each side parses what it receives, formats its key
/// (`call-id|local tag|remote tag`) and works its locked map. Bob records the dialog on the
/// INVITE (with the tag it chose), finds it on ACK, drops it on BYE; alice checks the 100,
/// records the early dialog on the 180, confirms it on the 200 and drops it on the 200 to BYE.
fn conventional_call(alice: &Map, bob: &Map, wire: &Wire, bob_tag: &str) {
    let [inv, trying, ringing, ok, ack, bye, bye_ok] = wire;
    // Bob: INVITE.
    let (c, f, _) = parse_ids(inv);
    let key = format!("{c}|{bob_tag}|{f}");
    bob.write().unwrap().insert(key, Record::default());
    // Alice: 100 (no To tag yet: no dialog).
    let (c, f, t) = parse_ids(trying);
    let key = format!("{c}|{f}|{t}");
    assert!(black_box(alice.read().unwrap().get(&key)).is_none());
    // Alice: 180 creates the early dialog.
    let (c, f, t) = parse_ids(ringing);
    let key = format!("{c}|{f}|{t}");
    alice.write().unwrap().insert(key, Record::default());
    // Alice: 200 confirms it.
    let (c, f, t) = parse_ids(ok);
    let key = format!("{c}|{f}|{t}");
    alice
        .write()
        .unwrap()
        .get_mut(&key)
        .expect("early dialog")
        .state = 1;
    // Bob: ACK.
    let (c, f, t) = parse_ids(ack);
    let key = format!("{c}|{t}|{f}");
    assert!(black_box(bob.read().unwrap().get(&key)).is_some());
    // Bob: BYE ends it.
    let (c, f, t) = parse_ids(bye);
    let key = format!("{c}|{t}|{f}");
    assert!(bob.write().unwrap().remove(&key).is_some());
    // Alice: 200 to BYE ends hers.
    let (c, f, t) = parse_ids(bye_ok);
    let key = format!("{c}|{f}|{t}");
    assert!(alice.write().unwrap().remove(&key).is_some());
}

/// Runs `work(thread, calls)` on two threads started together; returns the wall time from
/// the first start to the last end.
fn two_threads<W: Sync>(iters: u64, shared: &W, work: fn(&W, usize, u64)) -> Duration {
    let barrier = Barrier::new(2);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let barrier = &barrier;
                let n = iters / 2 + (t as u64) * (iters % 2);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(shared, t, n);
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    end - start
}

/// What the managers' threads share.
struct Managed {
    alice: Arc<DialogManager>,
    bob: Arc<DialogManager>,
    clock: AtomicU64,
    workers: [std::sync::Mutex<Worker>; 2],
    stack: [std::sync::Mutex<StackWorker>; 2],
}

/// What the baseline's threads share.
struct Conventional {
    alice: Map,
    bob: Map,
    samples: [Vec<(Wire, String)>; 2],
    next: [AtomicU64; 2],
}

/// The To tag bob chose, from the 180 of a captured call.
fn bob_tag(wire: &Wire) -> String {
    parse_ids(&wire[2]).2
}

fn bench(c: &mut Criterion) {
    let (alice, bob) = calls::caller_and_callee();
    // The stack runs pass the source address, as an endpoint does: alice is one source making
    // calls far faster than the default per-source rate (200/s) on the fake clock. Limits
    // stay on, so their accounting is in the figure, just out of the way.
    let trunk = Policy {
        new_dialogs_per_second_per_source: 1_000_000_000,
        new_dialog_burst_per_source: 1_000_000_000,
        ..(*bob.security().policy()).clone()
    };
    bob.security().set_policy(trunk);
    let (alice, bob) = (Arc::new(alice), Arc::new(bob));
    let managed = Managed {
        alice: Arc::clone(&alice),
        bob: Arc::clone(&bob),
        clock: AtomicU64::new(0),
        workers: [
            std::sync::Mutex::new(Worker::new(invites(POOL, 1))),
            std::sync::Mutex::new(Worker::new(invites(POOL, 2))),
        ],
        stack: [0, 1].map(|_| std::sync::Mutex::new(StackWorker::new(&alice, &bob))),
    };
    let conventional = Conventional {
        alice: RwLock::new(HashMap::new()),
        bob: RwLock::new(HashMap::new()),
        samples: [3, 4].map(|seed| {
            capture(SAMPLE, seed)
                .into_iter()
                .map(|wire| {
                    let tag = bob_tag(&wire);
                    (wire, tag)
                })
                .collect()
        }),
        next: [AtomicU64::new(0), AtomicU64::new(0)],
    };
    let sizes: Vec<usize> = conventional.samples[0]
        .iter()
        .flat_map(|(wire, _)| wire.iter().map(Vec::len))
        .collect();
    println!(
        "wire message sizes (bytes): INVITE {}, mean of all seven {:.0}",
        sizes[0],
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
    );

    let mut g = c.benchmark_group(GROUP);
    g.bench_function(BenchmarkId::new("manager", "1_thread"), |b| {
        let mut w = managed.workers[0].lock().unwrap();
        b.iter(|| call(&managed.alice, &managed.bob, &managed.clock, &mut w, |_| {}))
    });
    g.bench_function(BenchmarkId::new("manager", "2_threads"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &managed, |m, t, n| {
                let mut w = m.workers[t].lock().unwrap();
                for _ in 0..n {
                    call(&m.alice, &m.bob, &m.clock, &mut w, |_| {});
                }
            })
        })
    });

    g.bench_function(BenchmarkId::new("stack", "1_thread"), |b| {
        let mut w = managed.stack[0].lock().unwrap();
        b.iter(|| stack_call(&managed.alice, &managed.bob, &managed.clock, &mut w))
    });
    g.bench_function(BenchmarkId::new("stack", "2_threads"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &managed, |m, t, n| {
                let mut w = m.stack[t].lock().unwrap();
                for _ in 0..n {
                    stack_call(&m.alice, &m.bob, &m.clock, &mut w);
                }
            })
        })
    });

    fn conventional_calls(m: &Conventional, t: usize, n: u64) {
        for _ in 0..n {
            let i = m.next[t].fetch_add(1, Ordering::Relaxed) as usize % SAMPLE;
            let (wire, tag) = &m.samples[t][i];
            conventional_call(&m.alice, &m.bob, wire, tag);
        }
    }
    g.bench_function(BenchmarkId::new("rsip_rwlock_hashmap", "1_thread"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            conventional_calls(&conventional, 0, iters);
            start.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("rsip_rwlock_hashmap", "2_threads"), |b| {
        b.iter_custom(|iters| two_threads(iters, &conventional, conventional_calls))
    });
    g.finish();

    assert!(
        conventional.alice.read().unwrap().is_empty()
            && conventional.bob.read().unwrap().is_empty()
    );
    check_drained(&managed);
}

/// Both managers hold no dialog; once every deadline has passed, no INVITE record and no
/// timer entry either. Panics otherwise: a leak fails the bench run.
fn check_drained(m: &Managed) {
    let (alice, bob) = (&m.alice, &m.bob);
    assert_eq!(
        (alice.len(), bob.len()),
        (0, 0),
        "dialogs left after the calls (alice, bob)"
    );
    println!(
        "before draining: timer entries alice {} bob {}, INVITE records alice {} bob {}",
        alice.timer_entries(),
        bob.timer_entries(),
        alice.pending_invites(),
        bob.pending_invites()
    );
    let later = m.clock.load(Ordering::Relaxed) + 86_400_000;
    let (mut out, mut expired) = (Outbox::new(), Vec::new());
    for manager in [alice, bob] {
        while manager.on_timeout(later, &mut out, &mut expired) == MAX_EXPIRIES_PER_CALL {}
    }
    assert!(
        expired.is_empty() && out.is_empty(),
        "expiries: {expired:?}"
    );
    assert_eq!(
        (alice.pending_invites(), bob.pending_invites()),
        (0, 0),
        "INVITE records left once their timers ran out (alice, bob)"
    );
    assert_eq!(
        (alice.timer_entries(), bob.timer_entries()),
        (0, 0),
        "timer entries left once every deadline passed (alice, bob)"
    );
    println!(
        "check: both managers empty after {} calls (no dialog, INVITE record or timer left)",
        m.clock.load(Ordering::Relaxed)
    );
}

fn main() {
    let mut report = support::run(bench);
    for threads in ["1_thread", "2_threads"] {
        report.ratio(
            &format!("whole call, 7 messages, both sides, {threads}"),
            GROUP,
            &format!("manager/{threads}"),
            &format!("rsip_rwlock_hashmap/{threads}"),
        );
        report.ratio(
            &format!("whole call with transactions, one scan per message, {threads}"),
            GROUP,
            &format!("stack/{threads}"),
            &format!("rsip_rwlock_hashmap/{threads}"),
        );
    }
    for id in ["manager", "stack", "rsip_rwlock_hashmap"] {
        let one = report.median_ns(GROUP, &format!("{id}/1_thread"));
        let two = report.median_ns(GROUP, &format!("{id}/2_threads"));
        if let (Some(one), Some(two)) = (one, two) {
            println!("{id}: 2 threads give {:.2}x the calls/s of one", one / two);
        }
    }
    report.print();
    for (label, threads) in [("1 thread ", "1_thread"), ("2 threads", "2_threads")] {
        for (who, id) in [
            ("manager ", "manager"),
            ("stack   ", "stack"),
            ("baseline", "rsip_rwlock_hashmap"),
        ] {
            match report.median_ns(GROUP, &format!("{id}/{threads}")) {
                Some(ns) => {
                    let calls = 1e9 / ns;
                    println!(
                        "{who} {label}: {ns:.0} ns per call -> {calls:.0} calls/s, {:.0} messages/s",
                        calls * MESSAGES_PER_CALL
                    );
                }
                None => println!("{who} {label}: not measured in this run (filtered out?)"),
            }
        }
    }
}
