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
use sipdialog::b2bua::{LegBudget, LegUsage, Legs};
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
