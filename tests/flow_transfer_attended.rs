//! Attended call transfer (RFC 5589 §7) through three managers: alice has a call with bob and
//! a consultation call with carol, and REFERs bob to carol with a Replaces (RFC 3891) naming
//! the consultation dialog. Both outcomes: bob's INVITE with Replaces takes over the
//! consultation call, or the consultation call has ended before it arrives, carol refuses it
//! with 481 and the alice–bob call stays up.
//!
//! Replaces against every kind of dialog it can name (confirmed → BYE, early dialog this UA
//! initiated → CANCEL, foreign early dialog → 481, `early-only` → 486, ending → 603,
//! malformed → 400) is covered message by message in `tests/replaces.rs`
//! (`early_dialog_this_ua_initiated_is_replaced_with_a_cancel`,
//! `confirmed_dialog_is_replaced_with_a_bye`, …); here the confirmed case is driven through a
//! whole attended transfer, and the vanished one through a failed transfer.

mod flows;
mod transfer;

use flows::{
    deliver_msg, deliver_one, establish, hang_up, ids, invite_to, no_parts, phase, start_line, Ua,
    CALL,
};
use sipdialog::manager::{ReplacedAction, RequestBody, TransferProgress, Verdict};
use sipdialog::refer::Replaces;
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};
use transfer::{
    bye, carol, invite_target, notify_to_alice, refer_accepted, target_answers, ATAG_AC, CALL_AC,
    CAROL,
};

/// The consultation call alice → carol (carol answers 200, alice ACKs), Call-ID [`CALL_AC`]
/// and alice's tag [`ATAG_AC`], set up from `t` on. Returns (alice's dialog, carol's dialog,
/// carol's tag).
fn consultation_call(
    alice: &mut Ua,
    carol: &mut Ua,
    t: u64,
) -> (DialogHandle, DialogHandle, String) {
    let inv = invite_to(
        CAROL,
        "Carol <sip:carol@chicago.example.com>",
        CALL_AC,
        ATAG_AC,
        None,
    );
    alice.mgr.on_sent(&inv, t).unwrap();
    let got = deliver_msg(&inv, &[], carol, t);
    let Some(Verdict::NewInvite { to_tag, .. }) = got.verdict else {
        panic!("INVITE to carol: {:?}", got.verdict)
    };
    let carol_tag = to_tag.as_str().to_owned();
    let ca_d = carol
        .mgr
        .respond(&got.bytes, 200, &no_parts(), t + 1, &mut carol.out)
        .unwrap()
        .expect("carol's dialog with alice");
    let ok = deliver_one(carol, &[], alice, t + 1);
    let Some(Verdict::Confirmed {
        dialog: ac_d,
        cseq: 1,
        extra: false,
    }) = ok.verdict
    else {
        panic!("200 from carol: {:?}", ok.verdict)
    };
    alice.mgr.ack(ac_d, 1, &mut alice.out).unwrap();
    assert_eq!(
        deliver_one(alice, &[], carol, t + 2).verdict,
        Some(Verdict::Ack { dialog: ca_d })
    );
    (ac_d, ca_d, carol_tag)
}

/// RFC 5589 §7 (attended transfer): alice has a call with bob and a consultation call with
/// carol; she REFERs bob to carol with Replaces naming the alice–carol dialog as carol sees it
/// (to-tag = carol's tag, from-tag = alice's, RFC 3891 §3). Bob's INVITE with Replaces takes
/// over that dialog at carol, who BYEs alice on it; the NOTIFYs reach alice as in §6.1.
#[test]
fn rfc5589_7_attended_transfer_replaces_the_consultation_call() {
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);

    // The consultation call alice → carol.
    let (ac_d, ca_d, carol_tag) = consultation_call(&mut alice, &mut carol, 10);

    // REFER with Refer-To: <carol's Contact?Replaces=...> (RFC 5589 §7.1: the target's
    // Contact), the dialog named from carol's side.
    let replaces = Replaces {
        call_id: CALL_AC.as_bytes(),
        to_tag: carol_tag.as_bytes(),
        from_tag: ATAG_AC.as_bytes(),
        early_only: false,
    };
    let target = carol.contact_uri.clone();
    let (id, refer_at_bob) =
        refer_accepted(&mut alice, &mut bob, ab, &target, Some(&replaces), 100);
    notify_to_alice(&mut bob, &mut alice, ab, id, 100, 110);

    let (inv_at_carol, verdict) = invite_target(&mut bob, &mut carol, &refer_at_bob, 120);
    let Verdict::ReplacingInvite { replaced, .. } = verdict else {
        panic!("INVITE with Replaces at carol: {verdict:?}")
    };
    assert_eq!(
        (replaced.dialog, replaced.action),
        (ca_d, ReplacedAction::Bye),
        "RFC 3891 §3: a confirmed dialog is replaced, then ended with BYE"
    );
    let (bc_d, c_d) = target_answers(&mut bob, &mut carol, &inv_at_carol, 130);

    // Carol ends the replaced dialog (RFC 3891 §3).
    bye(&mut carol, &mut alice, ca_d, ac_d, 140);

    // The final NOTIFY; then alice hangs up on bob.
    notify_to_alice(&mut bob, &mut alice, ab, id, 200, 150);
    assert_eq!(
        (
            bob.mgr.transfers().subscriptions(b_d),
            alice.mgr.transfers().subscriptions(a_d)
        ),
        (0, 0)
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 160);
    bye(&mut bob, &mut carol, bc_d, c_d, 5_000);

    alice.assert_clean("alice");
    bob.assert_clean("bob");
    carol.assert_clean("carol");
}

/// RFC 5589 §7 (attended transfer that fails): as above, but the consultation call ends
/// (alice BYEs carol, carol answers 200) before bob's INVITE with Replaces reaches carol.
/// Carol's manager finds no dialog to replace and refuses the INVITE itself with 481
/// (RFC 3891 §3); bob reports the 481 in the final NOTIFY (RFC 3515 §2.4.5), alice learns the
/// transfer failed, and the alice–bob call is still up (an INFO goes through). The BYEs then
/// leave every manager empty.
#[test]
fn rfc5589_7_attended_transfer_fails_when_the_consultation_call_has_ended() {
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);
    let (ac_d, ca_d, carol_tag) = consultation_call(&mut alice, &mut carol, 10);

    let replaces = Replaces {
        call_id: CALL_AC.as_bytes(),
        to_tag: carol_tag.as_bytes(),
        from_tag: ATAG_AC.as_bytes(),
        early_only: false,
    };
    let target = carol.contact_uri.clone();
    let (id, refer_at_bob) =
        refer_accepted(&mut alice, &mut bob, ab, &target, Some(&replaces), 100);
    notify_to_alice(&mut bob, &mut alice, ab, id, 100, 110);

    // The consultation call ends before bob's INVITE gets to carol.
    bye(&mut alice, &mut carol, ac_d, ca_d, 115);
    assert_eq!(
        carol.mgr.len(),
        0,
        "the consultation dialog is gone at carol"
    );
    assert_eq!(alice.mgr.len(), 1, "alice keeps only her call with bob");

    // RFC 3891 §3: a Replaces matching no dialog is declined with 481, by the manager itself.
    let (inv_at_carol, verdict) = invite_target(&mut bob, &mut carol, &refer_at_bob, 120);
    assert!(
        matches!(verdict, Verdict::Rejected { status: 481, .. }),
        "INVITE with Replaces for an ended dialog: {verdict:?}"
    );
    let refusal = carol.peek_one();
    assert!(
        start_line(&refusal.bytes).starts_with("SIP/2.0 481 "),
        "{}",
        start_line(&refusal.bytes)
    );
    let view = MessageView::parse(&refusal.bytes).expect("valid response");
    assert_eq!(view.status_code(), Some(481));
    let (call_id, from_tag, _, cseq, method) = ids(&refusal.bytes);
    let (inv_call_id, inv_from_tag, _, inv_cseq, _) = ids(&inv_at_carol);
    assert_eq!(
        (call_id, from_tag, cseq, method.as_str()),
        (inv_call_id, inv_from_tag, inv_cseq, "INVITE"),
        "the 481 answers bob's INVITE"
    );
    assert_eq!(carol.mgr.len(), 0, "the refused INVITE created no dialog");

    // Bob's INVITE fails (no dialog was set up; the ACK is the transaction layer's).
    let refused = deliver_one(&mut carol, &[], &mut bob, 121);
    assert_eq!(
        refused.verdict,
        Some(Verdict::Failed {
            status: 481,
            dialogs_ended: 0
        })
    );
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed),
        "the 481 was for the new INVITE, not for the alice–bob dialog"
    );

    // Bob reports the failure: the final NOTIFY carries the 481.
    let v = notify_to_alice(&mut bob, &mut alice, ab, id, 481, 130);
    assert_eq!(
        v,
        Verdict::Notify {
            dialog: a_d,
            id,
            status: 481,
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

    // The alice–bob call is still up: an INFO goes through and is answered.
    let info = alice
        .mgr
        .request(
            a_d,
            Method::Info,
            &RequestBody::default(),
            140,
            &mut alice.out,
        )
        .unwrap();
    let got = deliver_one(&mut alice, &[], &mut bob, 140);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Info
        })
    );
    bob.mgr
        .respond(&got.bytes, 200, &no_parts(), 141, &mut bob.out)
        .unwrap();
    let ok = deliver_one(&mut bob, &[], &mut alice, 141);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Info,
            cseq: info
        })
    );
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );

    // Alice hangs up on bob: nothing is left anywhere.
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    for (who, ua, d) in [
        ("alice", &alice, a_d),
        ("bob", &bob, b_d),
        ("carol", &carol, ca_d),
    ] {
        assert_eq!(ua.mgr.len(), 0, "{who}: dialogs left");
        assert_eq!(
            ua.mgr.transfers().subscriptions(d),
            0,
            "{who}: subscriptions left"
        );
    }
    assert_eq!(alice.mgr.transfers().subscriptions(ac_d), 0);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
    carol.assert_clean("carol");
}
