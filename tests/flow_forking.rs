//! A forked INVITE (RFC 3261 §16.7, §13.2.2.4): two callees ring with their own To tags; both
//! answer 200 (the UAC ACKs each and BYEs the extra one), the second answers 486 after the
//! first 200, or the second never answers and its early dialog ends 64×T1 after the first 2xx.

mod flows;

use flows::{
    deliver_msg, deliver_one, hang_up, invite, no_parts, phase, request_uri, start_line, Ua, ATAG,
    CALL, T64,
};
use sipdialog::manager::{RequestBody, Verdict};
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::Method;

/// Two callees get the same INVITE (a forking proxy, RFC 3261 §16.7) and ring.
fn forked_ringing(
    alice: &mut Ua,
    bob1: &mut Ua,
    bob2: &mut Ua,
) -> [(DialogHandle, DialogHandle); 2] {
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    let mut pairs = Vec::new();
    for (i, bob) in [bob1, bob2].into_iter().enumerate() {
        let got = deliver_msg(&inv, &[], bob, 0);
        assert!(matches!(got.verdict, Some(Verdict::NewInvite { .. })));
        let b_d = bob
            .mgr
            .respond(&inv, 180, &no_parts(), 10 + i as u64, &mut bob.out)
            .unwrap()
            .unwrap();
        let ringing = deliver_one(bob, &[], alice, 10 + i as u64);
        let Some(Verdict::Provisional {
            dialog: Some(a_d),
            status: 180,
        }) = ringing.verdict
        else {
            panic!("180 from fork {i}: {:?}", ringing.verdict)
        };
        pairs.push((a_d, b_d));
    }
    assert_ne!(
        pairs[0].0, pairs[1].0,
        "one early dialog per To tag (§12.1.2)"
    );
    assert_ne!(
        alice.mgr.info(pairs[0].0).unwrap().remote_tag(),
        alice.mgr.info(pairs[1].0).unwrap().remote_tag()
    );
    assert_eq!(alice.mgr.len(), 2);
    [pairs[0], pairs[1]]
}

/// RFC 3261 §13.2.2.4: both forks answer 200; the UAC ACKs each 2xx and ends the extra one
/// with BYE.
#[test]
fn forked_invite_two_2xx_ack_both_bye_the_extra() {
    let (mut alice, mut bob1, mut bob2) = (
        Ua::alice(),
        Ua::new("bob", "192.0.2.4"),
        Ua::new("bob", "192.0.2.5"),
    );
    let [(a1, b1), (a2, b2)] = forked_ringing(&mut alice, &mut bob1, &mut bob2);
    let inv = invite(CALL, ATAG, None);

    bob1.mgr
        .respond(&inv, 200, &no_parts(), 20, &mut bob1.out)
        .unwrap();
    let ok1 = deliver_one(&mut bob1, &[], &mut alice, 20);
    assert_eq!(
        ok1.verdict,
        Some(Verdict::Confirmed {
            dialog: a1,
            cseq: 1,
            extra: false
        })
    );
    alice.mgr.ack(a1, 1, &mut alice.out).unwrap();
    assert_eq!(
        alice.peek_one().next_hop.as_deref(),
        Some("sip:bob@192.0.2.4")
    );
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob1, 21).verdict,
        Some(Verdict::Ack { dialog: b1 })
    );

    bob2.mgr
        .respond(&inv, 200, &no_parts(), 30, &mut bob2.out)
        .unwrap();
    let ok2 = deliver_one(&mut bob2, &[], &mut alice, 30);
    assert_eq!(
        ok2.verdict,
        Some(Verdict::Confirmed {
            dialog: a2,
            cseq: 1,
            extra: true
        })
    );
    alice.mgr.ack(a2, 1, &mut alice.out).unwrap();
    let ack2 = alice.peek_one();
    assert_eq!(start_line(&ack2.bytes), "ACK sip:bob@192.0.2.5 SIP/2.0");
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob2, 31).verdict,
        Some(Verdict::Ack { dialog: b2 })
    );
    alice
        .mgr
        .request(a2, Method::Bye, &RequestBody::default(), 32, &mut alice.out)
        .unwrap();
    assert_eq!(request_uri(&alice.peek_one().bytes), "sip:bob@192.0.2.5");
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob2, 32).verdict,
        Some(Verdict::Bye { dialog: b2 })
    );
    assert_eq!(
        deliver_one(&mut bob2, &[], &mut alice, 33).verdict,
        Some(Verdict::Ended {
            dialog: a2,
            status: 200
        })
    );
    assert_eq!(alice.mgr.len(), 1);
    assert_eq!(
        phase(&alice, a1),
        Phase::Confirmed,
        "the first fork's call is untouched"
    );

    hang_up(&mut alice, &mut bob1, &[], a1, b1, 40);
    alice.assert_clean("alice");
    bob1.assert_clean("bob1");
    bob2.assert_clean("bob2");
}

/// The second fork answers 486 after the first fork's 200 (only possible without a proxy
/// collecting responses, §16.7): alice's other early dialog ends, her call stays.
#[test]
fn forked_invite_second_fork_486_after_first_2xx() {
    let (mut alice, mut bob1, mut bob2) = (
        Ua::alice(),
        Ua::new("bob", "192.0.2.4"),
        Ua::new("bob", "192.0.2.5"),
    );
    let [(a1, b1), (a2, _)] = forked_ringing(&mut alice, &mut bob1, &mut bob2);
    let inv = invite(CALL, ATAG, None);
    bob1.mgr
        .respond(&inv, 200, &no_parts(), 20, &mut bob1.out)
        .unwrap();
    let ok1 = deliver_one(&mut bob1, &[], &mut alice, 20);
    assert!(matches!(
        ok1.verdict,
        Some(Verdict::Confirmed { extra: false, .. })
    ));
    alice.mgr.ack(a1, 1, &mut alice.out).unwrap();
    deliver_one(&mut alice, &[], &mut bob1, 21);

    bob2.mgr
        .respond(&inv, 486, &no_parts(), 30, &mut bob2.out)
        .unwrap();
    let busy = deliver_one(&mut bob2, &[], &mut alice, 30);
    assert_eq!(
        busy.verdict,
        Some(Verdict::Failed {
            status: 486,
            dialogs_ended: 1
        })
    );
    assert!(
        alice.mgr.state(a2).is_err(),
        "the busy fork's early dialog ended"
    );
    assert_eq!(alice.mgr.len(), 1);
    assert_eq!(
        phase(&alice, a1),
        Phase::Confirmed,
        "the answered call is untouched"
    );

    hang_up(&mut alice, &mut bob1, &[], a1, b1, 40);
    alice.assert_clean("alice");
    bob1.assert_clean("bob1");
    bob2.assert_clean("bob2");
}

/// RFC 3261 §13.2.2.4: "The UAC core considers the INVITE transaction completed 64*T1 seconds
/// after the reception of the first 2xx response. At this point all the early dialogs that
/// have not transitioned to established dialogs are terminated." The other fork never sends a
/// final response (a forking proxy CANCELs it and absorbs its 487, §16.7).
#[test]
fn forked_invite_other_early_dialog_ends_64_t1_after_first_2xx() {
    let (mut alice, mut bob1, mut bob2) = (
        Ua::alice(),
        Ua::new("bob", "192.0.2.4"),
        Ua::new("bob", "192.0.2.5"),
    );
    let [(a1, b1), (a2, _)] = forked_ringing(&mut alice, &mut bob1, &mut bob2);
    let inv = invite(CALL, ATAG, None);
    bob1.mgr
        .respond(&inv, 200, &no_parts(), 20, &mut bob1.out)
        .unwrap();
    deliver_one(&mut bob1, &[], &mut alice, 20);
    alice.mgr.ack(a1, 1, &mut alice.out).unwrap();
    deliver_one(&mut alice, &[], &mut bob1, 21);
    bob2.mgr
        .respond(&inv, 487, &no_parts(), 25, &mut bob2.out)
        .unwrap();
    bob2.out.clear(); // absorbed by the forking proxy

    let expired = alice.run_timers(20 + T64);
    assert!(
        alice.mgr.state(a2).is_err(),
        "alice's early dialog with the unanswered fork is still {:?} at first 2xx + 64×T1 \
         (expired: {expired:?})",
        alice.mgr.state(a2)
    );
    assert_eq!(alice.mgr.len(), 1);
    assert_eq!(alice.mgr.pending_invites(), 0);
    assert!(
        alice.out.is_empty(),
        "nothing to send: the proxy cancelled the fork"
    );
    assert_eq!(phase(&alice, a1), Phase::Confirmed);

    hang_up(&mut alice, &mut bob1, &[], a1, b1, 20 + T64 + 1);
    alice.assert_clean("alice");
    bob1.assert_clean("bob1");
    bob2.assert_clean("bob2");
}
