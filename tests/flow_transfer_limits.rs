//! What a dialog holds for transfers stays bounded: REFERs beyond the per-second limit get
//! 403, a REFER storm never holds more than `max_subscriptions`, and `refer` on an ended
//! dialog leaves nothing behind.
//!
//! Some of these tests measure the live heap, so this file installs a tracking allocator and
//! its tests run one at a time behind a lock.

mod common;
mod flows;
mod transfer;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::alloc::{live_bytes, TrackingAlloc};
use flows::{deliver, deliver_one, establish, hang_up, phase, Delivered, Ua, CALL, T64};
use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, Verdict};
use sipdialog::state::Phase;
use sipdialog::wire::Method;
use transfer::{answer_status, notify_to_alice, CAROL};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// The tests of this file run one at a time, so that the live-heap figures the memory checks
/// read are this test's alone.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A user agent whose manager has `tune` applied to the usual test configuration.
fn ua_with(user: &str, host: &str, tune: impl FnOnce(&mut ManagerConfig)) -> Ua {
    let mut config = flows::config(user, host);
    tune(&mut config);
    Ua {
        mgr: DialogManager::new(config).expect("manager"),
        out: Outbox::new(),
        contact_uri: format!("sip:{user}@{host}"),
    }
}

/// Alice with limits too high to matter: what is tested is the recipient's policing.
fn alice_unlimited() -> Ua {
    ua_with("alice", "client.atlanta.example.com", |c| {
        c.policy.max_refers_per_second = 1_000_000;
        c.policy.max_subscriptions = 1_000_000;
    })
}

/// More REFERs in one second than `max_refers_per_second` (4): the extra ones get 403; a
/// second later REFERs are accepted again.
#[test]
fn refers_beyond_the_per_second_limit_get_403() {
    let _serial = serial();
    let mut alice = alice_unlimited();
    let mut bob = ua_with("bob", "client.biloxi.example.com", |c| {
        c.policy.max_subscriptions = 64; // so that only the rate limit bites
    });
    assert_eq!(
        bob.mgr.security().policy().max_refers_per_second,
        4,
        "the default"
    );
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let mut accepted = Vec::new();
    let mut refer = |alice: &mut Ua, bob: &mut Ua, t: u64| -> Verdict {
        let id = alice
            .mgr
            .transfers()
            .refer(a_d, CAROL.as_bytes(), None, None, t, &mut alice.out)
            .unwrap();
        let verdict = deliver_one(alice, &[], bob, t).verdict.unwrap();
        let status = answer_status(bob);
        let back = deliver_one(bob, &[], alice, t);
        assert_eq!(
            back.verdict,
            Some(Verdict::Response {
                dialog: a_d,
                status,
                method: Method::Refer,
                cseq: id
            })
        );
        if matches!(verdict, Verdict::Refer { .. }) {
            assert_eq!(status, 202);
            accepted.push(id);
        }
        verdict
    };
    for i in 0..4 {
        let v = refer(&mut alice, &mut bob, 10_000 + i);
        assert!(
            matches!(
                v,
                Verdict::Refer {
                    subscribed: true,
                    ..
                }
            ),
            "#{i}: {v:?}"
        );
    }
    for i in 4..8 {
        let v = refer(&mut alice, &mut bob, 10_000 + i);
        assert_eq!(
            v,
            Verdict::Rejected {
                status: 403,
                dialog: Some(b_d)
            },
            "#{i} in the same second"
        );
    }
    assert_eq!(
        bob.mgr.transfers().subscriptions(b_d),
        4,
        "the refused ones created none"
    );
    assert_eq!(
        alice.mgr.transfers().subscriptions(a_d),
        4,
        "a REFER refused with a non-2xx leaves its sender no subscription"
    );
    let v = refer(&mut alice, &mut bob, 11_500);
    assert!(matches!(v, Verdict::Refer { .. }), "a second later: {v:?}");
    assert_eq!(bob.mgr.transfers().subscriptions(b_d), 5);

    // End every subscription (final NOTIFY), then the call.
    for (k, id) in accepted.iter().enumerate() {
        notify_to_alice(
            &mut bob,
            &mut alice,
            (a_d, b_d),
            *id,
            603,
            12_000 + 10 * k as u64,
        );
    }
    assert_eq!(
        (
            bob.mgr.transfers().subscriptions(b_d),
            alice.mgr.transfers().subscriptions(a_d)
        ),
        (0, 0)
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 13_000);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// A REFER storm: 1000 REFERs in one dialog, one a second for 1000 simulated seconds, bob's
/// application never NOTIFYing. The live subscriptions never exceed `max_subscriptions` (4):
/// a REFER is accepted only while fewer are live, the rest get 403, so what a dialog holds
/// for transfers stays bounded however long the storm lasts.
#[test]
fn refer_storm_never_holds_more_than_max_subscriptions() {
    let _serial = serial();
    let mut alice = alice_unlimited();
    let mut bob = Ua::bob();
    let max = bob.mgr.security().policy().max_subscriptions as usize;
    assert_eq!(max, 4, "the default");
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let (mut accepted, mut refused) = (Vec::new(), 0);
    let t0 = 10_000;
    let mut heap_at_100 = 0;
    for i in 0..1000u64 {
        let t = t0 + i * 1000;
        if i == 100 {
            heap_at_100 = live_bytes();
        }
        // Whatever the managers' timers do meanwhile (a subscription may time out with a
        // NOTIFY) is delivered as it would be.
        bob.run_timers(t);
        alice.run_timers(t);
        pump(&mut bob, &mut alice, t);
        let before = bob.mgr.transfers().subscriptions(b_d);
        assert!(before <= max);
        let id = alice
            .mgr
            .transfers()
            .refer(a_d, CAROL.as_bytes(), None, None, t, &mut alice.out)
            .unwrap();
        let v = deliver_one(&mut alice, &[], &mut bob, t).verdict.unwrap();
        if before < max {
            assert_eq!(
                v,
                Verdict::Refer {
                    dialog: b_d,
                    id,
                    subscribed: true
                },
                "#{i}: {before} live, room for one more"
            );
            accepted.push(id);
        } else {
            assert_eq!(
                v,
                Verdict::Rejected {
                    status: 403,
                    dialog: Some(b_d)
                },
                "#{i}: {before} live already"
            );
            refused += 1;
        }
        pump(&mut bob, &mut alice, t);
        assert!(
            bob.mgr.transfers().subscriptions(b_d) <= max,
            "#{i}: bob holds {}",
            bob.mgr.transfers().subscriptions(b_d)
        );
        assert!(
            alice.mgr.transfers().subscriptions(a_d) <= max,
            "#{i}: alice holds {}",
            alice.mgr.transfers().subscriptions(a_d)
        );
    }
    // REFERs 100 to 999 left nothing behind: the heap did not grow with the storm.
    let grown = live_bytes() - heap_at_100;
    assert!(
        grown < 16 * 1024,
        "900 more REFERs grew the heap by {grown} bytes"
    );
    assert!(accepted.len() >= max);
    assert!(refused > 0);
    assert_eq!(accepted.len() + refused, 1000);
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed),
        "the storm did not hurt the call"
    );
    println!(
        "storm: {} accepted, {refused} refused; timer entries alice {} bob {}",
        accepted.len(),
        alice.mgr.timer_entries(),
        bob.mgr.timer_entries()
    );

    // After the storm bob ends what is still live; then the call ends, nothing left.
    let t = t0 + 1_000_000;
    for (k, id) in accepted.iter().enumerate() {
        let t = t + 10 * k as u64;
        if bob
            .mgr
            .transfers()
            .notify(b_d, *id, 603, t, &mut bob.out)
            .is_ok()
        {
            let got = deliver_one(&mut bob, &[], &mut alice, t);
            assert!(
                matches!(got.verdict, Some(Verdict::Notify { id: got_id, terminated: true, .. }) if got_id == *id),
                "{:?}",
                got.verdict
            );
            pump(&mut alice, &mut bob, t);
        }
    }
    assert_eq!(
        (
            bob.mgr.transfers().subscriptions(b_d),
            alice.mgr.transfers().subscriptions(a_d)
        ),
        (0, 0)
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, t + 100_000);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// `refer` on a dialog that has ended fails, and leaves nothing behind: over many calls, each
/// ended before a late `refer` for it, the heap does not grow.
#[test]
fn refer_on_an_ended_dialog_fails_and_leaves_nothing_behind() {
    let _serial = serial();
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let mut cycle = |i: u64| {
        let t = i * 100_000;
        let call_id = format!("{i:08x}-late-refer@atlanta.example.com");
        let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], &call_id, t);
        hang_up(&mut alice, &mut bob, &[], a_d, b_d, t + 10);
        let late =
            alice
                .mgr
                .transfers()
                .refer(a_d, CAROL.as_bytes(), None, None, t + 20, &mut alice.out);
        assert!(late.is_err(), "refer on an ended dialog: {late:?}");
        assert!(alice.out.is_empty());
        assert_eq!(alice.mgr.transfers().subscriptions(a_d), 0);
        assert!(alice.run_timers(t + T64 + 100).is_empty());
        assert!(bob.run_timers(t + T64 + 100).is_empty());
    };
    for i in 0..200 {
        cycle(i);
    }
    let before = live_bytes();
    for i in 200..2200 {
        cycle(i);
    }
    let grown = live_bytes() - before;
    assert!(
        grown < 32 * 1024,
        "2000 late REFERs on ended calls grew the heap by {grown} bytes"
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// Delivers whatever `a` has to send to `b` and back, until both outboxes are empty.
fn pump(a: &mut Ua, b: &mut Ua, t: u64) -> Vec<Delivered> {
    let mut all = Vec::new();
    for _ in 0..16 {
        if a.out.is_empty() && b.out.is_empty() {
            return all;
        }
        all.extend(deliver(a, &[], b, t));
        all.extend(deliver(b, &[], a, t));
    }
    panic!("messages kept coming")
}
