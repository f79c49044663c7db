//! What admission costs: the check a new INVITE from a known source pays (its token bucket
//! in a concurrent map, one CAS; the default policy has no global rate), with one thread and
//! with a second thread admitting from other sources, and with the global bucket on; the
//! per-source dialog count taken and given back; the message check on an INVITE; the policy
//! load a message pays once. Baseline in the same run: the same token bucket behind a
//! `Mutex<HashMap>` (the ordinary way).

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use criterion::Criterion;
use sipdialog::security::{Policy, Security};
use sipdialog::wire::MessageView;

const GROUP: &str = "security";

fn source(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

/// A policy whose limits never refuse, so every iteration pays the whole check.
fn open_policy() -> Policy {
    Policy {
        new_dialogs_per_second_per_source: 1_000_000,
        new_dialog_burst_per_source: u32::MAX,
        ..Policy::default()
    }
}

/// The baseline: a token bucket per source in a locked map.
struct LockedBuckets {
    map: Mutex<HashMap<IpAddr, (f64, u64)>>,
}

impl LockedBuckets {
    fn take(&self, ip: IpAddr, now_ms: u64, per_second: f64, burst: f64) -> bool {
        let mut map = self.map.lock().unwrap();
        let (tokens, last) = map.entry(ip).or_insert((burst, now_ms));
        *tokens = (*tokens + (now_ms - *last) as f64 * per_second / 1_000.0).min(burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\nTo: Bob <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

fn bench(c: &mut Criterion) {
    let security = Security::new(open_policy());
    // The manager loads the policy once per message and hands it to every check.
    let policy = security.load();
    // 10 000 known sources, as on a busy SBC.
    for n in 0..10_000 {
        security
            .admit_new_dialog(&policy, Some(source(n)), 0)
            .unwrap();
    }
    let mut g = c.benchmark_group(GROUP);

    let mut n = 0u32;
    g.bench_function("admit_hit", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            security.admit_new_dialog(&policy, black_box(Some(source(n))), 1)
        })
    });

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut m = 5_000u32;
            while !stop.load(Ordering::Relaxed) {
                m = 5_000 + (m + 1) % 5_000;
                let _ = security.admit_new_dialog(&security.load(), Some(source(m)), 1);
            }
        });
        let mut n = 0u32;
        g.bench_function("admit_hit_second_thread", |b| {
            b.iter(|| {
                n = (n + 1) % 5_000;
                security.admit_new_dialog(&policy, black_box(Some(source(n))), 1)
            })
        });
        stop.store(true, Ordering::Relaxed);
    });

    let mut n = 0u32;
    g.bench_function("charge_and_release", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            if let Ok(Some(charge)) = security.charge(&policy, black_box(Some(source(n))), 1) {
                security.release(charge);
            }
        })
    });

    let global = Security::new(Policy {
        new_dialogs_per_second: 1_000_000,
        new_dialog_burst: u32::MAX,
        ..open_policy()
    });
    let global_policy = global.load();
    let mut n = 0u32;
    g.bench_function("admit_hit_global_bucket", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            global.admit_new_dialog(&global_policy, black_box(Some(source(n))), 1)
        })
    });

    g.bench_function("policy_load", |b| {
        b.iter(|| black_box(&security).load().max_dialogs)
    });

    let view = MessageView::parse(INVITE).unwrap();
    g.bench_function("check_message", |b| {
        b.iter(|| security.check_message(&policy, black_box(&view)))
    });

    let locked = LockedBuckets {
        map: Mutex::new(HashMap::new()),
    };
    for n in 0..10_000 {
        locked.take(source(n), 0, 1_000_000.0, f64::MAX);
    }
    let mut n = 0u32;
    g.bench_function("baseline_locked_map", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            locked.take(black_box(source(n)), 1, 1_000_000.0, f64::MAX)
        })
    });

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut m = 5_000u32;
            while !stop.load(Ordering::Relaxed) {
                m = 5_000 + (m + 1) % 5_000;
                locked.take(source(m), 1, 1_000_000.0, f64::MAX);
            }
        });
        let mut n = 0u32;
        g.bench_function("baseline_locked_map_second_thread", |b| {
            b.iter(|| {
                n = (n + 1) % 5_000;
                locked.take(black_box(source(n)), 1, 1_000_000.0, f64::MAX)
            })
        });
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    report.median(
        "admission check, known source (rates, one thread)",
        GROUP,
        "admit_hit",
    );
    report.median(
        "admission check, second thread admitting other sources",
        GROUP,
        "admit_hit_second_thread",
    );
    report.median(
        "admission check with the global bucket on too",
        GROUP,
        "admit_hit_global_bucket",
    );
    report.median("policy load (once per message)", GROUP, "policy_load");
    report.median(
        "per-source dialog count taken and given back",
        GROUP,
        "charge_and_release",
    );
    report.median(
        "message check (body, Record-Route, Route)",
        GROUP,
        "check_message",
    );
    report.ratio(
        "admission vs a Mutex<HashMap> token bucket",
        GROUP,
        "admit_hit",
        "baseline_locked_map",
    );
    report.ratio(
        "the same with a second thread admitting other sources",
        GROUP,
        "admit_hit_second_thread",
        "baseline_locked_map_second_thread",
    );
    report.print();
}
