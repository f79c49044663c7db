//! The B2BUA's leg maps hang off the manager's single end path: whatever ends a leg (a BYE
//! received, an error answer, `terminate`) takes its pairing and the requests relayed onto it
//! out, lists what the application owes (the partner to hang up, the requests to answer), and
//! gives the budget back once that is taken. A pairing or a relayed request stored for a leg
//! that already ended is refused, so nothing outlives its legs.
//!
//! The B2BUA in the middle is a manager (`mid`) with a leg to alice (mid is its UAS) and a leg
//! to carol (mid is its UAC).

mod flows;

use std::sync::Arc;

use flows::{establish, hang_up, invite, Ua, ATAG};
use sipdialog::b2bua::{LegBudget, LegUsage, Legs, Relay};
use sipdialog::manager::{KeptRequest, RequestBody, Verdict};
use sipdialog::metrics::TerminationReason;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};

struct Call {
    alice: Ua,
    mid: Ua,
    carol: Ua,
    legs: Arc<Legs<()>>,
    /// alice's dialog, mid's leg to alice, mid's leg to carol, carol's dialog.
    alice_d: DialogHandle,
    mid_a: DialogHandle,
    mid_c: DialogHandle,
    carol_d: DialogHandle,
}

fn call(budget: LegBudget) -> Call {
    let (mut alice, mut mid) = (Ua::alice(), Ua::new("mid", "b2bua.example.com"));
    let mut carol = Ua::new("carol", "client.chicago.example.com");
    let legs = Arc::new(Legs::new(budget));
    assert!(mid.mgr.on_end(legs.clone()).is_ok(), "the first hook");
    let (alice_d, mid_a, _) = establish(&mut alice, &mut mid, &[], "leg-a@atlanta", 0);
    let (mid_c, carol_d, _) = establish(&mut mid, &mut carol, &[], "leg-c@b2bua", 10);
    Call {
        alice,
        mid,
        carol,
        legs,
        alice_d,
        mid_a,
        mid_c,
        carol_d,
    }
}

fn roomy() -> LegBudget {
    LegBudget {
        entries: 100,
        bytes: 1 << 20,
    }
}

fn kept() -> KeptRequest {
    let bytes = invite("relayed@atlanta", ATAG, None);
    KeptRequest::new(&MessageView::parse(&bytes).expect("a request"))
}

#[test]
fn a_bye_received_unpairs_both_legs_and_names_the_partner() {
    let mut c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    assert_eq!(c.legs.other(c.mid_a), Some(c.mid_c));
    assert_eq!(c.legs.usage().links, 2);

    hang_up(&mut c.alice, &mut c.mid, &[], c.alice_d, c.mid_a, 100);

    assert_eq!(
        c.legs.other(c.mid_c),
        None,
        "the partner's direction left too"
    );
    let usage = c.legs.usage();
    assert_eq!((usage.links, usage.entries), (0, 2), "held until taken");
    let ended = c.legs.take_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].leg, c.mid_a);
    assert_eq!(ended[0].reason, TerminationReason::Bye);
    assert_eq!(ended[0].partner, Some(c.mid_c));
    assert!(ended[0].unanswered.is_empty());
    assert_eq!(c.legs.usage(), LegUsage::default());
    assert!(c.legs.take_ended().is_empty(), "listed once");
}

#[test]
fn requests_relayed_onto_a_leg_that_ends_are_handed_back_with_its_partner() {
    let c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    let request = kept();
    assert!(c.legs.reserve_relayed(request.bytes()));
    assert!(c
        .legs
        .add_relayed(&c.mid.mgr, c.mid_c, 7, request, None)
        .is_none());
    assert_eq!(c.legs.usage().relayed, 1);
    assert!(c.legs.usage().bytes > 0);

    assert!(c
        .mid
        .mgr
        .terminate(c.mid_c, TerminationReason::Replaced, 200));

    let ended = c.legs.take_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].leg, c.mid_c);
    assert_eq!(ended[0].reason, TerminationReason::Replaced);
    assert_eq!(ended[0].partner, Some(c.mid_a));
    let cseqs: Vec<u32> = ended[0].unanswered.iter().map(|(cseq, _)| *cseq).collect();
    assert_eq!(cseqs, [7]);
    assert_eq!(c.legs.usage(), LegUsage::default());
}

#[test]
fn an_error_answer_that_ends_a_leg_goes_through_the_same_path() {
    let mut c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    // Carol forgets the call; mid's next request on that leg gets 481 (§12.2.1.2).
    assert!(c
        .carol
        .mgr
        .terminate(c.carol_d, TerminationReason::Error, 300));
    let body = RequestBody::default();
    c.mid
        .mgr
        .request(c.mid_c, Method::Info, &body, 300, &mut c.mid.out)
        .unwrap();
    let info = flows::deliver_one(&mut c.mid, &[], &mut c.carol, 300);
    assert_eq!(
        info.verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    let answer = flows::deliver_one(&mut c.carol, &[], &mut c.mid, 301);
    assert_eq!(
        answer.verdict,
        Some(Verdict::Ended {
            dialog: c.mid_c,
            status: 481
        })
    );
    let ended = c.legs.take_ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].partner, Some(c.mid_a));
    assert_eq!(ended[0].reason, TerminationReason::Error);
    assert_eq!(c.legs.usage(), LegUsage::default());
}

#[test]
fn nothing_is_kept_for_a_leg_that_already_ended() {
    let c = call(roomy());
    assert!(c.mid.mgr.terminate(c.mid_a, TerminationReason::Bye, 100));
    assert!(
        c.legs.take_ended().is_empty(),
        "an unpaired leg owes nothing"
    );

    assert!(!c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    assert_eq!(c.legs.other(c.mid_c), None);
    assert_eq!(c.legs.usage(), LegUsage::default());

    let request = kept();
    assert!(c.legs.reserve_relayed(request.bytes()));
    let handed_back = c.legs.add_relayed(&c.mid.mgr, c.mid_a, 3, request, None);
    assert!(handed_back.is_some(), "to be answered now");
    assert_eq!(c.legs.usage(), LegUsage::default());
}

#[test]
fn the_budget_caps_entries_and_bytes() {
    let c = call(LegBudget {
        entries: 2,
        bytes: 1 << 20,
    });
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    assert!(!c.legs.reserve_outbound(false), "two entries are all");
    assert!(!c.legs.reserve_relayed(10));
    assert_eq!(c.legs.usage().entries, 2);
    assert_eq!(c.legs.unlink(c.mid_a), Some(c.mid_c));
    assert_eq!(c.legs.usage(), LegUsage::default());

    let tight = call(LegBudget {
        entries: 100,
        bytes: 90,
    });
    assert!(
        !tight.legs.link(&tight.mid.mgr, tight.mid_a, tight.mid_c),
        "two links cost more than 90 bytes"
    );
    let request = kept();
    assert!(!tight.legs.reserve_relayed(request.bytes()));
    assert_eq!(tight.legs.usage(), LegUsage::default());
}

#[test]
fn a_manager_tells_one_hook() {
    let c = call(roomy());
    let other: Arc<Legs<()>> = Arc::new(Legs::new(roomy()));
    assert!(c.mid.mgr.on_end(other).is_err());
}

/// alice's INFO (with a body) on `alice_d`, scanned at mid with mid's verdict on it.
fn info_at_mid(c: &mut Call, now: u64) -> Vec<u8> {
    let body = RequestBody {
        content_type: Some(b"application/dtmf-relay"),
        body: b"Signal=5\r\nDuration=160\r\n",
        extra_headers: &[],
    };
    c.alice
        .mgr
        .request(c.alice_d, Method::Info, &body, now, &mut c.alice.out)
        .unwrap();
    let sent = c.alice.drain();
    assert_eq!(sent.len(), 1);
    sent[0].bytes.clone()
}

fn judged_at_mid(c: &mut Call, bytes: &[u8], now: u64) -> Verdict {
    let view = MessageView::parse(bytes).unwrap();
    c.mid
        .mgr
        .on_message(&view, None, now, &mut c.mid.out)
        .unwrap()
}

#[test]
fn a_request_is_relayed_to_the_other_leg_and_its_answer_comes_back_with_its_body() {
    let mut c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    let info = info_at_mid(&mut c, 100);
    assert_eq!(
        judged_at_mid(&mut c, &info, 100),
        Verdict::Request {
            dialog: c.mid_a,
            method: Method::Info
        }
    );
    let view = MessageView::parse(&info).unwrap();
    let relay = c.legs.relay(
        &c.mid.mgr,
        &mut c.mid.out,
        &view,
        c.mid_a,
        Method::Info,
        100,
    );
    let Relay::Sent { leg, cseq } = relay else {
        panic!("not relayed: {relay:?}")
    };
    assert_eq!(leg, c.mid_c);
    assert_eq!(c.legs.usage().relayed, 1);
    // Carol gets it with alice's body and answers 200 with a body of her own.
    let at_carol = flows::deliver_one(&mut c.mid, &[], &mut c.carol, 101);
    let carol_view = MessageView::parse(&at_carol.bytes).unwrap();
    assert_eq!(carol_view.body(), b"Signal=5\r\nDuration=160\r\n");
    assert_eq!(
        carol_view.content_type(),
        Some(&b"application/dtmf-relay"[..])
    );
    let parts = sipdialog::build::ResponseParts {
        content_type: Some(b"text/plain"),
        body: b"ok",
        ..Default::default()
    };
    c.carol
        .mgr
        .respond(&at_carol.bytes, 200, &parts, 102, &mut c.carol.out)
        .unwrap();
    let answer = c.carol.drain().remove(0).bytes;
    let verdict = judged_at_mid(&mut c, &answer, 103);
    assert_eq!(
        verdict,
        Verdict::Response {
            dialog: c.mid_c,
            status: 200,
            method: Method::Info,
            cseq
        }
    );
    let view = MessageView::parse(&answer).unwrap();
    c.legs.relay_answer(
        &c.mid.mgr,
        &mut c.mid.out,
        &view,
        c.mid_c,
        (200, Method::Info, cseq),
        103,
    );
    assert_eq!(c.legs.usage().relayed, 0);
    // alice's INFO gets the 200, carol's body with it.
    let back = flows::deliver_one(&mut c.mid, &[], &mut c.alice, 104);
    let back_view = MessageView::parse(&back.bytes).unwrap();
    assert_eq!(back_view.status_code(), Some(200));
    assert_eq!(back_view.body(), b"ok");
    assert_eq!(back_view.content_type(), Some(&b"text/plain"[..]));
    assert!(matches!(
        back.verdict,
        Some(Verdict::Response { status: 200, .. })
    ));
    assert!(!c
        .legs
        .relay_timeout(&c.mid.mgr, &mut c.mid.out, (leg, cseq), 40_000));
    assert!(c.mid.out.is_empty(), "nothing owed once answered");
}

#[test]
fn a_relayed_request_without_an_answer_gets_408_and_one_without_a_partner_481() {
    let mut c = call(roomy());
    // No partner: 481 at once.
    let info = info_at_mid(&mut c, 100);
    judged_at_mid(&mut c, &info, 100);
    let view = MessageView::parse(&info).unwrap();
    let relay = c.legs.relay(
        &c.mid.mgr,
        &mut c.mid.out,
        &view,
        c.mid_a,
        Method::Info,
        100,
    );
    assert_eq!(relay, Relay::Answered(481));
    let refused = flows::deliver_one(&mut c.mid, &[], &mut c.alice, 101);
    assert_eq!(
        MessageView::parse(&refused.bytes).unwrap().status_code(),
        Some(481)
    );
    // Paired (another call: the 481 ended alice's dialog), but carol never answers: 408 when
    // the timer says so, once.
    let mut c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    let info = info_at_mid(&mut c, 200);
    judged_at_mid(&mut c, &info, 200);
    let view = MessageView::parse(&info).unwrap();
    let Relay::Sent { leg, cseq } = c.legs.relay(
        &c.mid.mgr,
        &mut c.mid.out,
        &view,
        c.mid_a,
        Method::Info,
        200,
    ) else {
        panic!("not relayed")
    };
    c.mid.drain(); // lost on the way to carol
    assert!(c
        .legs
        .relay_timeout(&c.mid.mgr, &mut c.mid.out, (leg, cseq), 32_700));
    let timed_out = flows::deliver_one(&mut c.mid, &[], &mut c.alice, 32_701);
    assert_eq!(
        MessageView::parse(&timed_out.bytes).unwrap().status_code(),
        Some(408)
    );
    assert!(!c
        .legs
        .relay_timeout(&c.mid.mgr, &mut c.mid.out, (leg, cseq), 32_800));
    assert_eq!(c.legs.usage().relayed, 0);
}

#[test]
fn a_leg_that_ends_answers_what_was_relayed_onto_it_and_hangs_up_its_partner() {
    let mut c = call(roomy());
    assert!(c.legs.link(&c.mid.mgr, c.mid_a, c.mid_c));
    let info = info_at_mid(&mut c, 100);
    judged_at_mid(&mut c, &info, 100);
    let view = MessageView::parse(&info).unwrap();
    let relay = c.legs.relay(
        &c.mid.mgr,
        &mut c.mid.out,
        &view,
        c.mid_a,
        Method::Info,
        100,
    );
    assert!(matches!(relay, Relay::Sent { .. }));
    c.mid.drain();
    // Carol hangs up before answering the INFO.
    hang_up(&mut c.carol, &mut c.mid, &[], c.carol_d, c.mid_c, 200);
    c.legs.hang_up_ended(&c.mid.mgr, &mut c.mid.out, None, 201);
    let owed = flows::deliver(&mut c.mid, &[], &mut c.alice, 202);
    let statuses: Vec<_> = owed
        .iter()
        .map(|d| {
            let v = MessageView::parse(&d.bytes).unwrap();
            (v.status_code(), v.method())
        })
        .collect();
    assert_eq!(statuses, [(Some(481), None), (None, Some(Method::Bye))]);
    assert_eq!(c.legs.usage(), LegUsage::default());
}
