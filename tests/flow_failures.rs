//! Unsuccessful and abandoned calls: RFC 3665 §3.9 (486 Busy Here after ringing, through two
//! proxies), §3.8 (no answer: CANCEL, 200 for the CANCEL, 487 for the INVITE), 404 with and
//! without proxies, a CANCEL crossing the 200 (ACK and BYE follow), and a callee that may not
//! BYE its early dialog and ends it with a final response instead.

mod flows;

use flows::{
    deliver, deliver_msg, deliver_one, hang_up, header, ids, invite, no_parts, phase, start_line,
    values, Proxy, Ua, ATAG, CALL,
};
use sipdialog::manager::{Observation, RequestBody, Verdict};
use sipdialog::state::Phase;
use sipdialog::wire::{HeaderName, Method};

/// RFC 3665 §3.9 (with a 180 first): 486 Busy Here ends the early dialog everywhere (§13.2.2.3).
#[test]
fn rfc3665_3_9_unsuccessful_busy_after_ringing() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (mut p1, mut p2) = (
        Proxy::new("ss1.atlanta.example.com"),
        Proxy::new("ss2.biloxi.example.com"),
    );
    let (ab, ba) = ([&p1, &p2], [&p2, &p1]);
    let inv = invite(CALL, ATAG, Some(&p1.route()));
    alice.mgr.on_sent(&inv, 0).unwrap();
    let inv_at_bob = deliver_msg(&inv, &ab, &mut bob, 0).bytes;

    let b_d = bob
        .mgr
        .respond(&inv_at_bob, 180, &no_parts(), 10, &mut bob.out)
        .unwrap()
        .unwrap();
    let ringing = deliver_one(&mut bob, &ba, &mut alice, 10);
    assert!(matches!(
        ringing.verdict,
        Some(Verdict::Provisional {
            dialog: Some(_),
            status: 180
        })
    ));
    assert_eq!(
        (alice.mgr.len(), bob.mgr.len(), p1.mgr.len(), p2.mgr.len()),
        (1, 1, 1, 1)
    );

    // 486: the UAS's early dialog ends with its final response.
    assert_eq!(
        bob.mgr
            .respond(&inv_at_bob, 486, &no_parts(), 20, &mut bob.out)
            .unwrap(),
        None
    );
    assert!(bob.mgr.state(b_d).is_err(), "bob's early dialog ended");
    let busy = deliver_one(&mut bob, &ba, &mut alice, 20);
    assert!(start_line(&busy.bytes).starts_with("SIP/2.0 486 "));
    assert!(
        values(&busy.sent, HeaderName::RecordRoute).is_empty(),
        "RR only on 101–299"
    );
    assert_eq!(
        busy.seen,
        [
            Observation::Failed {
                status: 486,
                dialogs_ended: 1
            },
            Observation::Failed {
                status: 486,
                dialogs_ended: 1
            }
        ]
    );
    assert_eq!(
        busy.verdict,
        Some(Verdict::Failed {
            status: 486,
            dialogs_ended: 1
        })
    );
    // The ACK for the 486 is the transaction layer's (§17.1.1.3), hop by hop: not sent here.
    alice.assert_clean("alice");
    bob.assert_clean("bob");
    p1.assert_clean("proxy 1");
    p2.assert_clean("proxy 2");
}

/// RFC 3665 §3.8: Alice gives up while it rings: CANCEL, 200 for the CANCEL, 487 for the
/// INVITE (§9.1, §9.2).
#[test]
fn rfc3665_3_8_unsuccessful_no_answer_cancel() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (mut p1, mut p2) = (
        Proxy::new("ss1.atlanta.example.com"),
        Proxy::new("ss2.biloxi.example.com"),
    );
    let (ab, ba) = ([&p1, &p2], [&p2, &p1]);
    let inv = invite(CALL, ATAG, Some(&p1.route()));
    alice.mgr.on_sent(&inv, 0).unwrap();
    let got = deliver_msg(&inv, &ab, &mut bob, 0);
    let Some(Verdict::NewInvite { to_tag, .. }) = got.verdict else {
        panic!("INVITE: {:?}", got.verdict)
    };
    let inv_at_bob = got.bytes;
    bob.mgr
        .respond(&inv_at_bob, 100, &no_parts(), 1, &mut bob.out)
        .unwrap();
    bob.mgr
        .respond(&inv_at_bob, 180, &no_parts(), 2, &mut bob.out)
        .unwrap();
    let early = deliver(&mut bob, &ba, &mut alice, 2);
    assert_eq!(early[0].verdict, None, "100 absorbed by proxy 2");
    assert!(matches!(
        early[1].verdict,
        Some(Verdict::Provisional {
            dialog: Some(_),
            status: 180
        })
    ));

    // F9 CANCEL: Request-URI, Call-ID, From, To, CSeq number and Route of the INVITE, its top
    // Via only (§9.1).
    alice
        .mgr
        .calls()
        .cancel(CALL.as_bytes(), ATAG.as_bytes(), &mut alice.out)
        .unwrap();
    let cancel = alice.peek_one();
    assert_eq!(
        start_line(&cancel.bytes),
        "CANCEL sip:bob@biloxi.example.com SIP/2.0"
    );
    assert_eq!(
        ids(&cancel.bytes),
        (
            CALL.to_owned(),
            ATAG.to_owned(),
            None,
            1,
            "CANCEL".to_owned()
        )
    );
    assert_eq!(
        values(&cancel.bytes, HeaderName::Via),
        values(&inv, HeaderName::Via)
    );
    assert_eq!(values(&cancel.bytes, HeaderName::Route), [p1.route()]);
    assert_eq!(header(&cancel.bytes, "To"), header(&inv, "To"));
    assert_eq!(header(&cancel.bytes, "From"), header(&inv, "From"));
    assert_eq!(cancel.next_hop, Some(p1.uri()));

    let got = deliver_one(&mut alice, &ab, &mut bob, 50);
    assert!(matches!(
        got.verdict,
        Some(Verdict::Cancelled {
            dialogs_ended: 1,
            ..
        })
    ));
    assert_eq!(bob.mgr.len(), 0);
    let answers = bob.drain();
    assert_eq!(
        answers.len(),
        2,
        "200 for the CANCEL and 487 for the INVITE"
    );
    let (ok, terminated) = (&answers[0].bytes, &answers[1].bytes);
    assert!(start_line(ok).starts_with("SIP/2.0 200 "));
    assert_eq!(ids(ok).4, "CANCEL");
    assert!(start_line(terminated).starts_with("SIP/2.0 487 "));
    let (call, from, to, cseq, method) = ids(terminated);
    assert_eq!(
        (
            call.as_str(),
            from.as_str(),
            to.as_deref(),
            cseq,
            method.as_str()
        ),
        (CALL, ATAG, Some(to_tag.as_str()), 1, "INVITE"),
        "§8.2.6.2: the 487 carries the tag of the 180"
    );

    // F10..F14: the 200 for the CANCEL tells nothing about the dialogs.
    let got = deliver_msg(ok, &ba, &mut alice, 51);
    assert_eq!(got.seen, [Observation::Other, Observation::Other]);
    assert_eq!(got.verdict, Some(Verdict::Stray));
    assert_eq!(alice.mgr.len(), 1);
    // F15..F19: the 487 ends the early dialogs.
    let got = deliver_msg(terminated, &ba, &mut alice, 52);
    let failed = Observation::Failed {
        status: 487,
        dialogs_ended: 1,
    };
    assert_eq!(got.seen, [failed, failed]);
    assert_eq!(
        got.verdict,
        Some(Verdict::Failed {
            status: 487,
            dialogs_ended: 1
        })
    );
    // The CANCEL again (a retransmission) changes nothing: 200 while the INVITE transaction
    // is still known, 481 once it is gone (§9.2); never a second 487, never a dialog.
    let again = deliver_msg(&cancel.bytes, &ab, &mut bob, 53);
    assert!(
        matches!(
            again.verdict,
            Some(Verdict::Cancelled {
                dialogs_ended: 0,
                ..
            }) | Some(Verdict::Rejected {
                status: 481,
                dialog: None
            })
        ),
        "{:?}",
        again.verdict
    );
    let answers = bob.drain();
    assert_eq!(answers.len(), 1, "one answer to the CANCEL, no 487");
    assert_eq!(ids(&answers[0].bytes).4, "CANCEL");
    assert_eq!(bob.mgr.len(), 0);

    alice.assert_clean("alice");
    bob.assert_clean("bob");
    p1.assert_clean("proxy 1");
    p2.assert_clean("proxy 2");
}

/// RFC 3665's unsuccessful flows with a 4xx straight away (404 after only a 100 Trying,
/// through the two proxies): no dialog was ever created, so none ends (§13.2.2.3).
#[test]
fn unsuccessful_404_without_provisional_through_two_proxies() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (mut p1, mut p2) = (
        Proxy::new("ss1.atlanta.example.com"),
        Proxy::new("ss2.biloxi.example.com"),
    );
    let (ab, ba) = ([&p1, &p2], [&p2, &p1]);
    let inv = invite(CALL, ATAG, Some(&p1.route()));
    alice.mgr.on_sent(&inv, 0).unwrap();
    let inv_at_bob = deliver_msg(&inv, &ab, &mut bob, 0).bytes;
    bob.mgr
        .respond(&inv_at_bob, 100, &no_parts(), 1, &mut bob.out)
        .unwrap();
    assert_eq!(
        bob.mgr
            .respond(&inv_at_bob, 404, &no_parts(), 2, &mut bob.out)
            .unwrap(),
        None
    );
    let got = deliver(&mut bob, &ba, &mut alice, 2);
    assert_eq!(got[0].verdict, None);
    let failed = Observation::Failed {
        status: 404,
        dialogs_ended: 0,
    };
    assert_eq!(got[1].seen, [failed, failed]);
    assert_eq!(
        got[1].verdict,
        Some(Verdict::Failed {
            status: 404,
            dialogs_ended: 0
        })
    );
    for (who, len) in [("alice", alice.mgr.len()), ("bob", bob.mgr.len())] {
        assert_eq!(len, 0, "{who}");
    }
    alice.assert_clean("alice");
    bob.assert_clean("bob");
    p1.assert_clean("proxy 1");
    p2.assert_clean("proxy 2");
}

/// The same without proxies: a 404 that carries a To tag (§8.2.6.2) creates no dialog either.
#[test]
fn unsuccessful_404_direct() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    deliver_msg(&inv, &[], &mut bob, 0);
    bob.mgr
        .respond(&inv, 404, &no_parts(), 1, &mut bob.out)
        .unwrap();
    let got = deliver_one(&mut bob, &[], &mut alice, 1);
    assert!(
        ids(&got.bytes).2.is_some(),
        "a final response carries the UAS's tag"
    );
    assert_eq!(
        got.verdict,
        Some(Verdict::Failed {
            status: 404,
            dialogs_ended: 0
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 3665 §3.8 note: "If a 200 OK to the INVITE had crossed with the CANCEL, Alice would
/// have sent an ACK then a BYE to Bob in order to properly terminate the call." A CANCEL that
/// arrives after the final response has no effect on the call (RFC 3261 §9.2): no 487, the
/// dialog stays, and the CANCEL's own answer ends nothing at the caller.
#[test]
fn cancel_crossing_the_200_then_ack_and_bye() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    deliver_msg(&inv, &[], &mut bob, 0);
    let b_d = bob
        .mgr
        .respond(&inv, 180, &no_parts(), 1, &mut bob.out)
        .unwrap()
        .unwrap();
    let ringing = deliver_one(&mut bob, &[], &mut alice, 1);
    let Some(Verdict::Provisional {
        dialog: Some(a_d), ..
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    // Both at once: bob's 200 and alice's CANCEL cross on the wire.
    bob.mgr
        .respond(&inv, 200, &no_parts(), 10, &mut bob.out)
        .unwrap();
    let ok = bob.drain().remove(0).bytes;
    alice
        .mgr
        .calls()
        .cancel(CALL.as_bytes(), ATAG.as_bytes(), &mut alice.out)
        .unwrap();
    let cancel = deliver_one(&mut alice, &[], &mut bob, 11);
    let answers = bob.drain();
    assert_eq!(answers.len(), 1, "only the CANCEL is answered, no 487");
    let status = start_line(&answers[0].bytes);
    // 200 if the INVITE transaction is still known (RFC 6026 "Accepted"), 481 if it is gone
    // (RFC 3261 §9.2); either way the dialog is untouched.
    assert!(
        status.starts_with("SIP/2.0 200 ") || status.starts_with("SIP/2.0 481 "),
        "CANCEL answered {status:?} ({:?})",
        cancel.verdict
    );
    assert_eq!(ids(&answers[0].bytes).4, "CANCEL");
    assert_eq!(phase(&bob, b_d), Phase::Confirmed);
    assert_eq!(
        deliver_msg(&answers[0].bytes, &[], &mut alice, 12).verdict,
        Some(Verdict::Stray)
    );
    assert_eq!(phase(&alice, a_d), Phase::Early);

    assert_eq!(
        deliver_msg(&ok, &[], &mut alice, 13).verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 14).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 15);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 3261 §15: "the callee's UA MUST NOT send a BYE on early dialogs". Asked to build one,
/// the manager refuses and writes nothing; the callee ends an early dialog with a final
/// response instead (here 480), which ends it on both sides (§13.2.2.3).
#[test]
fn callee_may_not_bye_an_early_dialog() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    deliver_msg(&inv, &[], &mut bob, 0);
    let b_d = bob
        .mgr
        .respond(&inv, 180, &no_parts(), 1, &mut bob.out)
        .unwrap()
        .unwrap();
    deliver_one(&mut bob, &[], &mut alice, 1);
    let built = bob
        .mgr
        .request(b_d, Method::Bye, &RequestBody::default(), 2, &mut bob.out);
    assert!(
        built.is_err(),
        "the UAS built a BYE on its early dialog (CSeq {built:?})"
    );
    assert!(bob.out.is_empty());
    assert_eq!(phase(&bob, b_d), Phase::Early);
    bob.mgr
        .respond(&inv, 480, &no_parts(), 3, &mut bob.out)
        .unwrap();
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 3).verdict,
        Some(Verdict::Failed {
            status: 480,
            dialogs_ended: 1
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}
