//! Admission before answer (issue: overload and hostile input): past any cap a new INVITE
//! gets 503 with Retry-After, a tagged 1xx or a 2xx leaves only for a dialog that exists,
//! CANCEL matches its INVITE's transaction and never wins together with a 200, and the policy
//! swaps while threads push calls.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::Rng;
use sipdialog::build::ResponseParts;
use sipdialog::id::DialogKey;
use sipdialog::manager::{DialogManager, ManagerConfig, ManagerError, Outbox, Verdict};
use sipdialog::metrics::Metrics;
use sipdialog::security::Policy;
use sipdialog::wire::{HeaderName, MessageView};

const T1: u64 = 500;

fn manager(policy: Policy) -> DialogManager {
    DialogManager::new(ManagerConfig {
        capacity: 1_024,
        t1_ms: T1,
        policy,
        ..ManagerConfig::default()
    })
    .unwrap()
}

fn source(n: u32) -> SocketAddr {
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 5060))
}

/// An INVITE from `via_host` (the sent-by), with a branch of its own.
fn invite(call: &str, branch: &str, via_host: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP {via_host}:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: Alice <sip:alice@example.com>;tag=a-{call}\r\nTo: Bob <sip:bob@example.com>\r\n\
Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{via_host}:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn cancel(call: &str, branch: &str, via_host: &str) -> Vec<u8> {
    format!(
        "CANCEL sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP {via_host}:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: Alice <sip:alice@example.com>;tag=a-{call}\r\nTo: Bob <sip:bob@example.com>\r\n\
Call-ID: {call}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Every tagged 1xx and every 2xx to an INVITE in `out` names a dialog the manager holds
/// now: the property "no response with our tag leaves for a dialog that does not exist".
/// Returns how many such answers it checked.
fn assert_answers_have_dialogs(manager: &DialogManager, out: &Outbox) -> usize {
    let mut checked = 0;
    for msg in out.iter() {
        let Ok(view) = MessageView::parse(msg.bytes) else {
            continue;
        };
        let (Some(status), Some(to_tag)) = (view.status_code(), view.to_tag()) else {
            continue;
        };
        if view.cseq().method != b"INVITE" || !(101..300).contains(&status) {
            continue;
        }
        let key = DialogKey {
            call_id: view.call_id(),
            local_tag: to_tag,
            remote_tag: view.from_tag().unwrap_or_default(),
        };
        assert!(
            manager.table().lookup(&key).is_some(),
            "a {status} with our tag left for no dialog:\n{}",
            String::from_utf8_lossy(msg.bytes)
        );
        checked += 1;
    }
    checked
}

fn status_of(msg: &[u8]) -> Option<u16> {
    MessageView::parse(msg).ok()?.status_code()
}

fn header<'a>(msg: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let view = MessageView::parse(msg).ok()?;
    let kind = HeaderName::classify(name.as_bytes());
    view.headers()
        .find(|h| h.kind == kind && h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.trim_ascii())
}

#[test]
fn a_full_table_answers_503_and_never_a_2xx_without_a_dialog() {
    let metrics = Arc::new(Metrics::new());
    let policy = Policy {
        max_dialogs: 8,
        max_early_dialogs: 4,
        ..Policy::default()
    };
    let config = ManagerConfig {
        capacity: 1_024,
        policy,
        ..ManagerConfig::default()
    };
    let bob = DialogManager::with_metrics(config, Arc::clone(&metrics)).unwrap();
    let mut rng = Rng::new(7);
    let mut out = Outbox::new();
    let (mut ok, mut refused, mut answered_503, mut checked) = (0, 0, 0, 0);
    let mut pending = Vec::new();
    for n in 0..400u32 {
        let call = format!("c{n}");
        let inv = invite(&call, &format!("b{n}"), "192.0.2.1");
        match bob.on_received_from(&inv, source(n), u64::from(n), &mut out) {
            Ok(Verdict::NewInvite { invite, .. }) => pending.push(invite),
            Ok(Verdict::Rejected { status: 503, .. }) => refused += 1,
            other => panic!("{other:?}"),
        }
        // The application answers some of the INVITEs it holds, in any order: 180 or 200,
        // while some calls end (so slots come and go).
        for _ in 0..2 {
            if pending.is_empty() {
                break;
            }
            let i = rng.below(pending.len() as u64) as usize;
            let status = if rng.below(3) == 0 { 180 } else { 200 };
            let id = pending[i];
            match bob.respond_invite(
                id,
                status,
                &ResponseParts::default(),
                u64::from(n),
                &mut out,
            ) {
                Ok(_) if status == 200 => {
                    ok += 1;
                    pending.swap_remove(i);
                }
                Ok(_) => {}
                Err(ManagerError::Security(_)) => {
                    answered_503 += 1;
                    pending.swap_remove(i);
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        checked += assert_answers_have_dialogs(&bob, &out);
        for msg in out.iter().filter(|m| status_of(m.bytes) == Some(503)) {
            assert_eq!(header(msg.bytes, "Retry-After"), Some(&b"5"[..]));
        }
        out.clear();
        assert!(bob.len() <= 8 && bob.early_dialogs() <= 4);
        if n % 10 == 9 {
            // Some calls end, so that new ones find room again.
            let live: Vec<_> = bob.table().iter().map(|(d, _)| d).collect();
            for d in live.into_iter().take(3) {
                bob.terminate(d, sipdialog::metrics::TerminationReason::Bye, u64::from(n));
            }
        }
    }
    assert!(
        ok > 20 && refused > 100 && answered_503 > 0,
        "{ok} {refused} {answered_503}"
    );
    assert!(checked >= ok, "{checked} tagged answers checked");
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.rejected(503), refused + answered_503);
}

#[test]
fn per_source_limits_and_rates_refuse_with_503() {
    let policy = Policy {
        max_dialogs_per_source: 2,
        new_dialogs_per_second_per_source: 5,
        new_dialog_burst_per_source: 5,
        ..Policy::default()
    };
    let bob = manager(policy);
    let mut out = Outbox::new();
    let from = source(1);
    let mut outcomes = Vec::new();
    for n in 0..8 {
        let inv = invite(&format!("s{n}"), &format!("s{n}"), "192.0.2.1");
        let verdict = bob.on_received_from(&inv, from, 0, &mut out).unwrap();
        let answered = match verdict {
            Verdict::NewInvite { invite, .. } => {
                match bob.respond_invite(invite, 200, &ResponseParts::default(), 0, &mut out) {
                    Ok(_) => 200,
                    Err(ManagerError::Security(e)) => e.status().0,
                    Err(e) => panic!("{e:?}"),
                }
            }
            Verdict::Rejected { status, .. } => status,
            v => panic!("{v:?}"),
        };
        outcomes.push(answered);
    }
    // Two calls fit the source's share, then 503; after five the bucket is empty (503 too).
    assert_eq!(outcomes, [200, 200, 503, 503, 503, 503, 503, 503]);
    // Another source is not affected.
    let inv = invite("other", "o1", "192.0.2.9");
    assert!(matches!(
        bob.on_received_from(&inv, source(2), 0, &mut out),
        Ok(Verdict::NewInvite { .. })
    ));
}

/// A source's share of live dialogs goes from the INVITE's record to the dialog it makes and
/// back to the source when the call ends (or when the INVITE is refused): the source may then
/// start another call.
#[test]
fn a_sources_share_comes_back_when_its_call_ends() {
    let bob = manager(Policy {
        max_dialogs_per_source: 1,
        ..Policy::default()
    });
    let mut out = Outbox::new();
    let from = source(1);
    let call = |n: &str, status: u16, out: &mut Outbox| {
        let inv = invite(n, n, "192.0.2.1");
        match bob.on_received_from(&inv, from, 0, out).unwrap() {
            Verdict::NewInvite { invite, .. } => bob
                .respond_invite(invite, status, &ResponseParts::default(), 0, out)
                .map_err(|e| format!("{e:?}")),
            v => Err(format!("{v:?}")),
        }
    };
    // Refused by us: the record's share goes back at once.
    assert_eq!(call("r1", 486, &mut out), Ok(None));
    let dialog = call("c1", 200, &mut out).unwrap().expect("a dialog");
    assert!(call("c2", 200, &mut out).unwrap_err().contains("503"));
    bob.terminate(dialog, sipdialog::metrics::TerminationReason::Bye, 1);
    assert!(call("c3", 200, &mut out).unwrap().is_some());
}

#[test]
fn a_cancel_must_match_the_invite_transaction() {
    let bob = manager(Policy::default());
    let mut out = Outbox::new();
    let inv = invite("victim", "v1", "192.0.2.1");
    let Verdict::NewInvite { invite: id, .. } =
        bob.on_received_from(&inv, source(1), 0, &mut out).unwrap()
    else {
        panic!()
    };
    bob.respond_invite(id, 180, &ResponseParts::default(), 0, &mut out)
        .unwrap();
    out.clear();
    // Same Call-ID and From tag, another branch, or another sent-by: not this transaction.
    for spoof in [
        cancel("victim", "other", "192.0.2.1"),
        cancel("victim", "v1", "198.51.100.7"),
    ] {
        assert_eq!(
            bob.on_received_from(&spoof, source(66), 1, &mut out)
                .unwrap(),
            Verdict::Rejected {
                status: 481,
                dialog: None
            }
        );
        assert_eq!(
            bob.early_dialogs(),
            1,
            "the victim's early dialog is untouched"
        );
    }
    assert_eq!(bob.is_answered(id), Some(false));
    out.clear();
    // The right one, even from another port (another worker): 200 and 487.
    let right = cancel("victim", "v1", "192.0.2.1");
    let verdict = bob
        .on_received_from(&right, source(9), 2, &mut out)
        .unwrap();
    assert!(matches!(
        verdict,
        Verdict::Cancelled {
            dialogs_ended: 1,
            ..
        }
    ));
    let statuses: Vec<_> = out.iter().filter_map(|m| status_of(m.bytes)).collect();
    assert_eq!(statuses, [200, 487]);
    assert!(bob.is_empty());
    out.clear();
    // Too late for a 200 now.
    assert_eq!(
        bob.respond_invite(id, 200, &ResponseParts::default(), 3, &mut out),
        Err(ManagerError::AlreadyAnswered)
    );
    assert!(out.is_empty());
}

#[test]
fn a_cancel_after_the_2xx_gets_200_and_changes_nothing() {
    let bob = manager(Policy::default());
    let mut out = Outbox::new();
    let inv = invite("late", "l1", "192.0.2.1");
    let Verdict::NewInvite { invite: id, .. } =
        bob.on_received_from(&inv, source(1), 0, &mut out).unwrap()
    else {
        panic!()
    };
    let call = bob
        .respond_invite(id, 200, &ResponseParts::default(), 0, &mut out)
        .unwrap()
        .unwrap();
    out.clear();
    let verdict = bob
        .on_received_from(&cancel("late", "l1", "192.0.2.1"), source(1), 1, &mut out)
        .unwrap();
    assert!(matches!(
        verdict,
        Verdict::Cancelled {
            dialogs_ended: 0,
            ..
        }
    ));
    let statuses: Vec<_> = out.iter().filter_map(|m| status_of(m.bytes)).collect();
    assert_eq!(statuses, [200], "the CANCEL's 200 only, no 487");
    assert!(bob.state(call).is_ok(), "the call is up");
}

/// CANCEL and the 200 race on two threads, many times over: for each INVITE exactly one final
/// answer leaves (487 or 200), and a dialog is left exactly when the 200 won.
#[test]
fn cancel_racing_the_200_never_yields_both() {
    let bob = Arc::new(manager(Policy::default()));
    let (mut won_by_200, mut won_by_cancel) = (0, 0);
    for n in 0..400u32 {
        let call = format!("race{n}");
        let inv = invite(&call, &format!("r{n}"), "192.0.2.1");
        let mut out = Outbox::new();
        let Verdict::NewInvite { invite: id, .. } =
            bob.on_received_from(&inv, source(n), 0, &mut out).unwrap()
        else {
            panic!()
        };
        if n % 2 == 0 {
            bob.respond_invite(id, 180, &ResponseParts::default(), 0, &mut out)
                .unwrap();
        }
        let answer = {
            let bob = Arc::clone(&bob);
            move || {
                let mut out = Outbox::new();
                let _ = bob.respond_invite(id, 200, &ResponseParts::default(), 1, &mut out);
                out.iter()
                    .filter_map(|m| status_of(m.bytes))
                    .collect::<Vec<_>>()
            }
        };
        let cancel = {
            let bob = Arc::clone(&bob);
            let cancel = cancel(&call, &format!("r{n}"), "192.0.2.1");
            move || {
                let mut out = Outbox::new();
                bob.on_received_from(&cancel, source(100_000 + n), 1, &mut out)
                    .unwrap();
                out.iter()
                    .filter_map(|m| status_of(m.bytes))
                    .collect::<Vec<_>>()
            }
        };
        // Racing on two threads; and one way round, then the other, so both orders happen.
        let (answered, cancelled) = match n % 3 {
            0 => {
                let (a, c) = (std::thread::spawn(answer), std::thread::spawn(cancel));
                (a.join().unwrap(), c.join().unwrap())
            }
            1 => {
                let a = answer();
                (a, cancel())
            }
            _ => {
                let c = cancel();
                (answer(), c)
            }
        };
        let ok = answered.contains(&200);
        let terminated = cancelled.contains(&487);
        assert!(ok != terminated, "INVITE {n}: 200 {ok}, 487 {terminated}");
        assert_eq!(
            cancelled.first(),
            Some(&200),
            "the CANCEL itself gets its 200"
        );
        let live = bob.len();
        if ok {
            won_by_200 += 1;
            assert_eq!(live, 1, "the 200's dialog is up");
            let (d, _) = bob.table().iter().next().unwrap();
            bob.terminate(d, sipdialog::metrics::TerminationReason::Bye, 2);
        } else {
            won_by_cancel += 1;
            assert_eq!(live, 0, "no dialog survives a cancelled INVITE");
        }
    }
    println!("200 won {won_by_200} times, CANCEL {won_by_cancel} times");
    assert!(
        won_by_200 > 0 && won_by_cancel > 0,
        "both orders were raced"
    );
}

/// The policy is swapped back and forth while two threads push whole calls: every INVITE is
/// answered (200 or 503), no 2xx leaves without its dialog, nothing is left over.
#[test]
fn the_policy_swaps_while_two_threads_push_calls() {
    let bob = Arc::new(manager(Policy::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let pushers: Vec<_> = (0..2u32)
        .map(|t| {
            let (bob, stop) = (Arc::clone(&bob), Arc::clone(&stop));
            let (calls, refused) = (Arc::clone(&calls), Arc::clone(&refused));
            std::thread::spawn(move || {
                let mut out = Outbox::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) || n < 2_000 {
                    n += 1;
                    let call = format!("t{t}-{n}");
                    let inv = invite(&call, &call, "192.0.2.1");
                    let now = u64::from(n);
                    match bob
                        .on_received_from(&inv, source(t), now, &mut out)
                        .unwrap()
                    {
                        Verdict::NewInvite { invite, .. } => {
                            let parts = ResponseParts::default();
                            match bob.respond_invite(invite, 200, &parts, now, &mut out) {
                                Ok(Some(d)) => {
                                    calls.fetch_add(1, Ordering::Relaxed);
                                    assert_eq!(assert_answers_have_dialogs(&bob, &out), 1);
                                    bob.terminate(
                                        d,
                                        sipdialog::metrics::TerminationReason::Bye,
                                        now,
                                    );
                                }
                                Err(ManagerError::Security(_)) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                other => panic!("{other:?}"),
                            }
                        }
                        Verdict::Rejected { status: 503, .. } => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        v => panic!("{v:?}"),
                    }
                    out.clear();
                }
                n
            })
        })
        .collect();
    let tight = Policy {
        max_dialogs: 1,
        new_dialogs_per_second_per_source: 100,
        new_dialog_burst_per_source: 1,
        ..Policy::default()
    };
    let loose = Policy {
        new_dialogs_per_second_per_source: 0,
        ..Policy::default()
    };
    for swap in 0..2_000 {
        let next = if swap % 2 == 0 {
            tight.clone()
        } else {
            loose.clone()
        };
        bob.security().set_policy(next);
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let pushed: u32 = pushers.into_iter().map(|p| p.join().unwrap()).sum();
    let (calls, refused) = (
        calls.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert_eq!(calls + refused, u64::from(pushed), "every INVITE answered");
    assert!(calls > 0, "calls went through");
    assert!(bob.is_empty(), "nothing left over");
    println!("{pushed} INVITEs: {calls} calls, {refused} refused while the policy swapped");
}

#[test]
fn the_invite_records_stay_within_their_budget_and_time_out_with_408() {
    let policy = Policy {
        max_invite_records: 100,
        invite_record_bytes: 40_000,
        ..Policy::default()
    };
    let bob = DialogManager::new(ManagerConfig {
        early_timeout_ms: 10_000,
        policy,
        ..ManagerConfig::default()
    })
    .unwrap();
    let mut out = Outbox::new();
    let mut held = 0;
    for n in 0..1_000 {
        let inv = invite(&format!("r{n}"), &format!("r{n}"), "192.0.2.1");
        match bob.on_received_from(&inv, source(n), 0, &mut out).unwrap() {
            Verdict::NewInvite { .. } => held += 1,
            Verdict::Rejected { status: 503, .. } => {}
            v => panic!("{v:?}"),
        }
        assert!(bob.invite_record_bytes() <= 40_000);
        assert!(bob.pending_invites() <= 100);
    }
    assert!(held > 0 && held < 100, "{held} held before the byte budget");
    out.clear();
    // Nobody answers them: at the early limit each gets 408, 64xT1 later all are gone.
    let mut expired = Vec::new();
    bob.on_timeout(10_000, &mut out, &mut expired);
    let timeouts = out
        .iter()
        .filter(|m| status_of(m.bytes) == Some(408))
        .count();
    assert_eq!(timeouts, held);
    assert_eq!(expired.len(), held);
    bob.on_timeout(10_000 + 64 * T1, &mut out, &mut expired);
    assert_eq!(bob.pending_invites(), 0);
    assert_eq!(bob.invite_record_bytes(), 0);
}
