use std::sync::Arc;

use super::counters::thread_index;
use super::labels::{METHODS, ROLES};
use super::*;

const THREADS: usize = 8;
const UPDATES: u64 = 10_000;

/// Runs `update(i)` for `i in 0..UPDATES` on each of [`THREADS`] threads at once.
fn hammer(metrics: &Metrics, update: impl Fn(&Metrics, u64) + Sync) {
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for i in 0..UPDATES {
                    update(metrics, i);
                }
            });
        }
    });
}

#[test]
fn eight_threads_sum_exactly() {
    for shards in [1, 3, 8, MAX_SHARDS] {
        let metrics = Metrics::with_shards(shards);
        hammer(&metrics, |m, i| {
            m.dialog_created(ROLES[(i % 3) as usize]);
            m.dialog_terminated(TerminationReason::ALL[(i % 7) as usize], i);
            m.setup_completed(i % 1_000);
            m.message(MessageKind::Request, Method::Invite);
            m.message(MessageKind::Response, METHODS[(i % 15) as usize]);
            m.rejected(REJECT_STATUSES[(i % 9) as usize]);
            m.rejected(599);
            m.rate_limited();
            m.refer(ReferOutcome::ALL[(i % 4) as usize]);
        });
        let s = metrics.snapshot();
        let all = THREADS as u64 * UPDATES;
        let share =
            |n: u64, k: u64| THREADS as u64 * (0..UPDATES).filter(|i| i % n == k).count() as u64;

        for (k, role) in ROLES.iter().enumerate() {
            assert_eq!(s.created(*role), share(3, k as u64), "{role:?}");
        }
        for (k, reason) in TerminationReason::ALL.iter().enumerate() {
            assert_eq!(s.terminated(*reason), share(7, k as u64), "{reason:?}");
        }
        assert_eq!(s.messages(MessageKind::Request, Method::Invite), all);
        assert_eq!(s.messages(MessageKind::Request, Method::Bye), 0);
        for (k, method) in METHODS.iter().enumerate() {
            assert_eq!(
                s.messages(MessageKind::Response, *method),
                share(15, k as u64)
            );
        }
        for (k, status) in REJECT_STATUSES.iter().enumerate() {
            assert_eq!(s.rejected(*status), share(9, k as u64), "{status}");
        }
        assert_eq!(s.rejected(599), all);
        assert_eq!(s.rate_limited(), all);
        for (k, outcome) in ReferOutcome::ALL.iter().enumerate() {
            assert_eq!(s.refer(*outcome), share(4, k as u64));
        }

        // Durations 0..UPDATES ms from every thread: sum in µs, count, and the +Inf bucket.
        let sum_ms: u64 = (0..UPDATES).sum();
        assert_eq!(s.duration().count(), all);
        assert_eq!(s.duration().sum_micros(), THREADS as u64 * sum_ms * 1_000);
        assert_eq!(
            s.duration().cumulative().last(),
            Some(&(f64::INFINITY, all))
        );
        // Setup 0..999 ms ten times per thread: ≤100 ms is 0..=100 (101 values).
        assert_eq!(s.setup().count(), all);
        assert_eq!(
            s.setup().cumulative().first(),
            Some(&(0.1, THREADS as u64 * 10 * 101))
        );
    }
}

#[test]
fn threads_spread_over_shards() {
    // Two threads get distinct round-robin indices, so with ≥2 shards they write apart.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(thread_index);
        let b = scope.spawn(thread_index);
        (a.join(), b.join())
    });
    assert!(matches!((a, b), (Ok(x), Ok(y)) if x != y));
    // A thread keeps its index.
    assert_eq!(thread_index(), thread_index());
}

#[test]
fn shard_count_is_a_bounded_power_of_two() {
    assert_eq!(Metrics::with_shards(0).shards(), 1);
    assert_eq!(Metrics::with_shards(3).shards(), 4);
    assert_eq!(Metrics::with_shards(1_000).shards(), MAX_SHARDS);
    let n = Metrics::new().shards();
    assert!(n.is_power_of_two() && n <= MAX_SHARDS);
}

#[test]
fn every_method_has_its_label() {
    let expected = [
        (Method::Invite, "INVITE"),
        (Method::Ack, "ACK"),
        (Method::Bye, "BYE"),
        (Method::Cancel, "CANCEL"),
        (Method::Options, "OPTIONS"),
        (Method::Register, "REGISTER"),
        (Method::Prack, "PRACK"),
        (Method::Subscribe, "SUBSCRIBE"),
        (Method::Notify, "NOTIFY"),
        (Method::Publish, "PUBLISH"),
        (Method::Info, "INFO"),
        (Method::Refer, "REFER"),
        (Method::Message, "MESSAGE"),
        (Method::Update, "UPDATE"),
        (Method::Extension, "other"),
    ];
    assert_eq!(expected.len(), METHODS.len());
    for ((method, label), listed) in expected.iter().zip(METHODS) {
        assert_eq!(*method, listed, "METHODS order");
        assert_eq!(method_label(*method), *label);
        // The wire token maps back to the same label.
        assert_eq!(method_label(Method::from_bytes(label.as_bytes())), *label);
    }
    assert_eq!(method_label(Method::from_bytes(b"FOO")), "other");

    // Each method counts in its own cell and nowhere else.
    let metrics = Metrics::with_shards(2);
    for (i, method) in METHODS.iter().enumerate() {
        for _ in 0..=i {
            metrics.message(MessageKind::Response, *method);
        }
    }
    let s = metrics.snapshot();
    for (i, method) in METHODS.iter().enumerate() {
        assert_eq!(s.messages(MessageKind::Response, *method), i as u64 + 1);
        assert_eq!(s.messages(MessageKind::Request, *method), 0);
    }
}

#[test]
fn every_listed_status_has_its_label_and_others_are_other() {
    for status in REJECT_STATUSES {
        assert_eq!(status_label(status), status.to_string());
    }
    for status in [
        0,
        100,
        200,
        401,
        404,
        480,
        487,
        488,
        502,
        504,
        599,
        600,
        604,
        u16::MAX,
    ] {
        assert_eq!(status_label(status), "other", "{status}");
    }

    let metrics = Metrics::with_shards(1);
    for (i, status) in REJECT_STATUSES.iter().enumerate() {
        for _ in 0..=i {
            metrics.rejected(*status);
        }
    }
    metrics.rejected(599);
    metrics.rejected(404);
    let s = metrics.snapshot();
    for (i, status) in REJECT_STATUSES.iter().enumerate() {
        assert_eq!(s.rejected(*status), i as u64 + 1, "{status}");
    }
    assert_eq!(s.rejected(599), 2, "599 and 404 share `other`");
    assert_eq!(s.rejected(1), 2);
}

#[test]
fn every_enum_label() {
    let roles: Vec<_> = ROLES.iter().map(|r| role_label(*r)).collect();
    assert_eq!(roles, ["uac", "uas", "observed"]);
    let reasons: Vec<_> = TerminationReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "bye",
            "cancel",
            "rejected",
            "timeout_ack",
            "timeout_idle",
            "replaced",
            "error"
        ]
    );
    let kinds: Vec<_> = MessageKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["request", "response"]);
    let outcomes: Vec<_> = ReferOutcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(outcomes, ["accepted", "rejected", "succeeded", "failed"]);
}

#[test]
fn histogram_bounds_are_inclusive() {
    let metrics = Metrics::with_shards(1);
    for ms in [0, 100, 101, 250, 60_000, 60_001, u64::MAX] {
        metrics.setup_completed(ms);
    }
    let setup = metrics.snapshot().setup().clone();
    let cumulative = setup.cumulative();
    assert_eq!(cumulative.len(), SETUP_BOUNDS_MS.len() + 1);
    assert_eq!(cumulative[0], (0.1, 2), "0 and 100 ms are le=0.1");
    assert_eq!(cumulative[1], (0.25, 4), "101 and 250 ms are le=0.25");
    assert_eq!(cumulative[11], (60.0, 5), "60 s is le=60");
    assert_eq!(cumulative[12], (f64::INFINITY, 7));
    assert_eq!(setup.count(), 7);
    // u64::MAX ms saturates to u64::MAX µs and wraps the sum: the sum is best effort at
    // absurd values, the buckets are exact.
    let bounds: Vec<f64> = setup.bounds_seconds().collect();
    assert_eq!(
        bounds,
        [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0]
    );

    metrics.dialog_terminated(TerminationReason::Bye, 90_500);
    let duration = metrics.snapshot().duration().clone();
    let bounds: Vec<f64> = duration.bounds_seconds().collect();
    assert_eq!(
        bounds,
        [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0]
    );
    assert_eq!(duration.cumulative()[4], (60.0, 0));
    assert_eq!(duration.cumulative()[5], (120.0, 1));
    assert_eq!(duration.sum_seconds(), 90.5);
}

#[test]
fn updates_through_an_arc_from_many_threads() {
    // The shape the manager uses: one Arc<Metrics> shared by workers.
    let metrics = Arc::new(Metrics::with_shards(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&metrics);
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    m.dialog_created(Role::Uas);
                }
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().is_ok());
    }
    assert_eq!(metrics.snapshot().created(Role::Uas), 4_000);
    assert!(format!("{metrics:?}").contains("shards: 4"));
}
