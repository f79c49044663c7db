//! Blind call transfer (RFC 5589 §6) through three managers: alice REFERs bob to carol, bob
//! INVITEs carol with alice's Referred-By (RFC 3892) and reports the outcome to alice in
//! NOTIFYs (RFC 3515). Both outcomes: carol answers (§6.1), or carol is busy and the
//! alice–bob call stays up (§6).

mod flows;
mod transfer;

use flows::{
    deliver_msg, deliver_one, establish, hang_up, no_parts, phase, start_line, Ua, CALL,
    SDP_REOFFER,
};
use sipdialog::manager::{RequestBody, TransferProgress, Verdict};
use sipdialog::state::Phase;
use sipdialog::wire::Method;
use transfer::{
    bye, carol, invite_target, notify_to_alice, raw_request, refer_accepted, target_answers, CAROL,
};

/// RFC 5589 §6.1: blind transfer that succeeds. Alice REFERs bob to carol; bob accepts (202),
/// reports 100, INVITEs carol with alice's Referred-By, carol answers, bob reports 200 and the
/// subscription ends; alice hangs up on bob, later bob and carol hang up. Nothing is left.
#[test]
fn rfc5589_6_1_blind_transfer_succeeds() {
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);

    let (id, refer_at_bob) = refer_accepted(&mut alice, &mut bob, ab, CAROL, None, 100);
    assert_eq!(
        bob.mgr.transfers().subscriptions(b_d),
        1,
        "the 202 created the subscription"
    );

    // RFC 3515 §2.4.4 / RFC 6665 §4.2.1.2: a NOTIFY at once, here 100 Trying.
    let v = notify_to_alice(&mut bob, &mut alice, ab, id, 100, 110);
    assert!(matches!(
        v,
        Verdict::Notify {
            terminated: false,
            ..
        }
    ));
    assert_eq!(
        bob.mgr.transfers().subscriptions(b_d),
        1,
        "still active after a 1xx"
    );

    let (inv_at_carol, verdict) = invite_target(&mut bob, &mut carol, &refer_at_bob, 120);
    assert!(matches!(verdict, Verdict::NewInvite { .. }), "{verdict:?}");
    let (bc_d, c_d) = target_answers(&mut bob, &mut carol, &inv_at_carol, 130);

    // The final NOTIFY: 200, terminated;reason=noresource.
    notify_to_alice(&mut bob, &mut alice, ab, id, 200, 140);
    assert_eq!(
        bob.mgr.transfers().subscriptions(b_d),
        0,
        "the final NOTIFY ended it"
    );
    assert_eq!(alice.mgr.transfers().subscriptions(a_d), 0);
    // The subscription is gone: no further NOTIFY for it can be sent…
    assert!(bob
        .mgr
        .transfers()
        .notify(b_d, id, 200, 145, &mut bob.out)
        .is_err());
    assert!(bob.out.is_empty());
    // …and one that arrives anyway matches no subscription: 481 (RFC 6665 §4.1.3).
    let (_, late) = raw_request(
        &mut bob,
        b_d,
        Method::Notify,
        &[
            ("Event", format!("refer;id={id}").as_bytes()),
            ("Subscription-State", b"terminated;reason=noresource"),
        ],
        Some((b"message/sipfrag", b"SIP/2.0 200 OK\r\n")),
        146,
    );
    let got = deliver_msg(&late, &[], &mut alice, 146);
    assert!(
        matches!(got.verdict, Some(Verdict::Rejected { status: 481, .. })),
        "{:?}",
        got.verdict
    );
    assert!(start_line(&alice.peek_one().bytes).starts_with("SIP/2.0 481 "));
    alice.out.clear();
    assert_eq!(
        phase(&alice, a_d),
        Phase::Confirmed,
        "only the NOTIFY was refused"
    );

    // RFC 5589 §6.1: the transferor hangs up; later the transferee and the target do.
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 150);
    bye(&mut bob, &mut carol, bc_d, c_d, 5_000);

    alice.assert_clean("alice");
    bob.assert_clean("bob");
    carol.assert_clean("carol");
}

/// RFC 5589 §6 (failed blind transfer): carol is busy; bob reports 486 in the final NOTIFY,
/// alice learns the transfer failed, and the alice–bob call is still up (she takes it back
/// with a re-INVITE, as RFC 5589 §6 shows after a failure).
#[test]
fn rfc5589_6_blind_transfer_fails_and_the_call_stays_up() {
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);

    let (id, refer_at_bob) = refer_accepted(&mut alice, &mut bob, ab, CAROL, None, 100);
    notify_to_alice(&mut bob, &mut alice, ab, id, 100, 110);
    let (inv_at_carol, verdict) = invite_target(&mut bob, &mut carol, &refer_at_bob, 120);
    assert!(matches!(verdict, Verdict::NewInvite { .. }), "{verdict:?}");

    // 486 Busy Here (no dialog; the ACK for it is the transaction layer's, §17.1.1.3).
    assert_eq!(
        carol
            .mgr
            .respond(&inv_at_carol, 486, &no_parts(), 130, &mut carol.out)
            .unwrap(),
        None
    );
    let busy = deliver_one(&mut carol, &[], &mut bob, 130);
    assert_eq!(
        busy.verdict,
        Some(Verdict::Failed {
            status: 486,
            dialogs_ended: 0
        })
    );

    let v = notify_to_alice(&mut bob, &mut alice, ab, id, 486, 140);
    assert_eq!(
        v,
        Verdict::Notify {
            dialog: a_d,
            id,
            status: 486,
            progress: TransferProgress::Failed,
            terminated: true
        }
    );
    assert_eq!(
        (
            bob.mgr.transfers().subscriptions(b_d),
            alice.mgr.transfers().subscriptions(a_d)
        ),
        (0, 0)
    );
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed),
        "a failed transfer leaves the call as it was"
    );

    // Alice takes the call back (re-INVITE, 200, ACK): the dialog works.
    let reinvite = alice
        .mgr
        .request(
            a_d,
            Method::Invite,
            &RequestBody {
                content_type: Some(b"application/sdp"),
                body: SDP_REOFFER.as_bytes(),
                extra_headers: &[],
            },
            150,
            &mut alice.out,
        )
        .unwrap();
    let got = deliver_one(&mut alice, &[], &mut bob, 150);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Invite
        })
    );
    bob.mgr
        .respond(&got.bytes, 200, &no_parts(), 151, &mut bob.out)
        .unwrap();
    let ok = deliver_one(&mut bob, &[], &mut alice, 151);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Invite,
            cseq: reinvite
        })
    );
    alice.mgr.ack(a_d, reinvite, &mut alice.out).unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 152).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );

    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
    carol.assert_clean("carol");
}
