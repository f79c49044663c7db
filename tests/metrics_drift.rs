//! The active-dialog gauge and the created/terminated counters never drift from the table:
//! four threads race calls through one caller and one callee manager (answered and hung up,
//! cancelled, rejected, left ringing, left up), then the registry is scraped and parsed with
//! an independent OpenMetrics parser. At the end `sipdialog_dialogs_active` equals the live
//! dialogs by phase, and for each manager created − terminated equals what it holds.

use std::sync::Arc;

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::OpenMetricsValue;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use sipdialog::dialog::Role;
use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, RequestBody, Verdict};
use sipdialog::metrics::{Metrics, TableStats, TerminationReason};
use sipdialog::wire::Method;

const THREADS: usize = 4;
const CALLS: usize = 400;

fn invite(call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{call_id}\r\n\
         From: <sip:alice@a.example>;tag=t{call_id}\r\nTo: <sip:bob@b.example>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The one message in `out`, taken out.
fn take(out: &mut Outbox) -> Vec<u8> {
    let bytes = out
        .iter()
        .last()
        .map(|m| m.bytes.to_vec())
        .unwrap_or_default();
    out.clear();
    bytes
}

/// One call; its fate picked by `n`.
fn call(alice: &DialogManager, bob: &DialogManager, id: &str, n: usize, now: u64) {
    let (mut a, mut b) = (Outbox::new(), Outbox::new());
    let inv = invite(id);
    alice.on_sent(&inv, now).unwrap();
    let Ok(Verdict::NewInvite { .. }) = bob.on_received(&inv, now, &mut b) else {
        panic!("not new")
    };
    bob.respond(&inv, 180, &Default::default(), now, &mut b)
        .unwrap();
    alice.on_received(&take(&mut b), now, &mut a).unwrap();
    match n % 5 {
        // Left ringing.
        0 => {}
        // Rejected.
        1 => {
            bob.respond(&inv, 486, &Default::default(), now, &mut b)
                .unwrap();
            alice.on_received(&take(&mut b), now, &mut a).unwrap();
        }
        // Cancelled.
        2 => {
            let view = sipdialog::wire::MessageView::parse(&inv).unwrap();
            alice
                .calls()
                .cancel(view.call_id(), view.from_tag().unwrap(), &mut a)
                .unwrap();
            bob.on_received(&take(&mut a), now, &mut b).unwrap();
            // The 487 (second message) goes to alice.
            alice.on_received(&take(&mut b), now, &mut a).unwrap();
        }
        // Answered and left up, or answered and hung up.
        _ => {
            bob.respond(&inv, 200, &Default::default(), now, &mut b)
                .unwrap();
            let Ok(Verdict::Confirmed { dialog, cseq, .. }) =
                alice.on_received(&take(&mut b), now, &mut a)
            else {
                panic!("not confirmed")
            };
            alice.ack(dialog, cseq, &mut a).unwrap();
            bob.on_received(&take(&mut a), now, &mut b).unwrap();
            if n % 5 == 4 {
                alice
                    .request(dialog, Method::Bye, &RequestBody::default(), now, &mut a)
                    .unwrap();
                bob.on_received(&take(&mut a), now, &mut b).unwrap();
                alice.on_received(&take(&mut b), now, &mut a).unwrap();
            }
        }
    }
}

/// `sipdialog_dialogs_active` by state, from a parsed scrape.
fn active(registry: &Registry) -> (f64, f64) {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    let exposition = parse_openmetrics(&text).unwrap();
    let family = &exposition.families["sipdialog_dialogs_active"];
    let mut by_state = (f64::NAN, f64::NAN);
    for sample in family.iter_samples() {
        let state = sample
            .get_labelset()
            .ok()
            .and_then(|set| set.get_label_value("state").map(str::to_owned))
            .unwrap_or_default();
        let OpenMetricsValue::Gauge(v) = &sample.value else {
            panic!("not a gauge")
        };
        match state.as_str() {
            "early" => by_state.0 = v.as_f64(),
            "confirmed" => by_state.1 = v.as_f64(),
            other => panic!("unexpected state {other}"),
        }
    }
    by_state
}

#[test]
fn gauges_and_counters_match_the_table_after_racing_calls() {
    let config = ManagerConfig {
        capacity: (THREADS * CALLS) as u32,
        ..ManagerConfig::default()
    };
    let (alice_metrics, bob_metrics) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let alice =
        Arc::new(DialogManager::with_metrics(config.clone(), alice_metrics.clone()).unwrap());
    let bob = Arc::new(DialogManager::with_metrics(config, bob_metrics.clone()).unwrap());
    let (mut alice_registry, mut bob_registry) = (Registry::default(), Registry::default());
    alice_metrics.register(&mut alice_registry, alice.clone());
    bob_metrics.register(&mut bob_registry, bob.clone());

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (alice, bob) = (&alice, &bob);
            s.spawn(move || {
                for n in 0..CALLS {
                    call(alice, bob, &format!("c{t}x{n}"), n, (t * CALLS + n) as u64);
                }
            });
        }
    });

    // Fates cycle through 5: ringing (early), rejected, cancelled, up (confirmed), hung up.
    let per_fate = (THREADS * CALLS / 5) as u64;
    for (name, manager, registry, metrics, role) in [
        ("alice", &alice, &alice_registry, &alice_metrics, Role::Uac),
        ("bob", &bob, &bob_registry, &bob_metrics, Role::Uas),
    ] {
        let (early, confirmed) = manager.by_phase();
        assert_eq!(
            (early, confirmed),
            (per_fate, per_fate),
            "{name}: table by phase"
        );
        assert_eq!(
            active(registry),
            (early as f64, confirmed as f64),
            "{name}: gauge"
        );
        let snap = metrics.snapshot();
        let created = snap.created(role);
        let terminated: u64 = TerminationReason::ALL
            .iter()
            .map(|&r| snap.terminated(r))
            .sum();
        assert_eq!(
            created - terminated,
            manager.len() as u64,
            "{name}: counters drifted"
        );
        assert_eq!(
            snap.terminated(TerminationReason::Bye),
            per_fate,
            "{name}: BYEs"
        );
        assert_eq!(
            snap.terminated(TerminationReason::Rejected),
            per_fate,
            "{name}: rejected"
        );
        assert_eq!(
            snap.terminated(TerminationReason::Cancel),
            per_fate,
            "{name}: cancelled"
        );
        assert_eq!(snap.setup().count(), 2 * per_fate, "{name}: setup times");
    }
}
