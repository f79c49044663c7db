//! What counting costs: in-dialog INFO/200 exchanges on two threads (each thread its own
//! call through one shared pair of managers: request built, received, answered, answer
//! received: two messages counted per exchange), with metrics on and, in the same run, off.
//! The report prints messages/s for both and the overhead. Run: `cargo bench --bench metrics`.

mod support;

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, RequestBody, Verdict};
use sipdialog::metrics::Metrics;
use sipdialog::table::DialogHandle;
use sipdialog::wire::Method;

const GROUP: &str = "metrics";
const THREADS: usize = 2;
const MESSAGES_PER_EXCHANGE: f64 = 2.0;

/// One thread's call: its dialog on each side and its outboxes.
struct Leg {
    a_d: DialogHandle,
    a_out: Outbox,
    b_out: Outbox,
}

struct Pair {
    alice: DialogManager,
    bob: DialogManager,
    legs: Vec<Mutex<Leg>>,
}

fn invite(n: usize) -> Vec<u8> {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK{n:016x}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774{n}\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         Call-ID: a84b4c76e66710-{n}@pc33.atlanta.example.com\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn last(out: &Outbox) -> Vec<u8> {
    out.iter()
        .last()
        .map(|m| m.bytes.to_vec())
        .expect("a message")
}

fn pair(metrics: bool) -> Pair {
    let config = ManagerConfig {
        capacity: 64,
        ..ManagerConfig::default()
    };
    let manager = |config: ManagerConfig| match metrics {
        true => DialogManager::with_metrics(config, Arc::new(Metrics::new())),
        false => DialogManager::new(config),
    };
    let alice = manager(config.clone()).expect("OS randomness");
    let bob = manager(config).expect("OS randomness");
    let legs = (0..THREADS)
        .map(|n| {
            let (mut a_out, mut b_out) = (Outbox::new(), Outbox::new());
            let inv = invite(n);
            alice.on_sent(&inv, 0).unwrap();
            bob.on_received(&inv, 0, &mut b_out).unwrap();
            bob.respond(&inv, 200, &ResponseParts::default(), 0, &mut b_out)
                .unwrap();
            let Ok(Verdict::Confirmed { dialog, cseq, .. }) =
                alice.on_received(&last(&b_out), 0, &mut a_out)
            else {
                panic!("not confirmed")
            };
            b_out.clear();
            alice.ack(dialog, cseq, &mut a_out).unwrap();
            bob.on_received(&last(&a_out), 0, &mut b_out).unwrap();
            a_out.clear();
            Mutex::new(Leg {
                a_d: dialog,
                a_out,
                b_out,
            })
        })
        .collect();
    Pair { alice, bob, legs }
}

/// `n` INFO/200 exchanges on this thread's leg.
fn exchanges(p: &Pair, leg: usize, n: u64) {
    let mut leg = p.legs[leg].lock().unwrap();
    let Leg { a_d, a_out, b_out } = &mut *leg;
    for _ in 0..n {
        p.alice
            .request(*a_d, Method::Info, &RequestBody::default(), 1, a_out)
            .unwrap();
        let info = a_out.iter().next().map(|m| m.bytes).unwrap();
        let Ok(Verdict::Request { .. }) = p.bob.on_received(info, 1, b_out) else {
            panic!("INFO not matched")
        };
        p.bob
            .respond(info, 200, &ResponseParts::default(), 1, b_out)
            .unwrap();
        a_out.clear();
        let ok = b_out.iter().next().map(|m| m.bytes).unwrap();
        let Ok(Verdict::Response { .. }) = p.alice.on_received(ok, 1, a_out) else {
            panic!("200 not matched")
        };
        a_out.clear();
        b_out.clear();
    }
}

/// Wall time for `iters` exchanges split over the threads.
fn on_threads(p: &Pair, iters: u64) -> Duration {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let spans: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    exchanges(p, t, iters / THREADS as u64);
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<_> = spans.into_iter().map(|h| h.join().unwrap()).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap();
        spans.iter().map(|s| s.1).max().unwrap() - start
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for (id, on) in [("on", true), ("off", false)] {
        let p = pair(on);
        g.bench_function(BenchmarkId::new("info_200_2_threads", id), |b| {
            b.iter_custom(|iters| on_threads(&p, iters.max(THREADS as u64)))
        });
    }
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    report.ratio(
        "INFO/200 exchanges on 2 threads, metrics on vs off",
        GROUP,
        "info_200_2_threads/on",
        "info_200_2_threads/off",
    );
    report.print();
    if let (Some(on), Some(off)) = (
        report.median_ns(GROUP, "info_200_2_threads/on"),
        report.median_ns(GROUP, "info_200_2_threads/off"),
    ) {
        let rate = |ns: f64| MESSAGES_PER_EXCHANGE * 1e9 / ns;
        println!(
            "messages/s on 2 threads: metrics on {:.0}, off {:.0}; overhead {:+.1}%",
            rate(on),
            rate(off),
            (on / off - 1.0) * 100.0
        );
    }
}
