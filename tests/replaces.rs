//! An INVITE with Replaces (RFC 3891 §3) against every kind of dialog it can name: accepted
//! for a confirmed dialog (BYE it) and for an early one this UA initiated (CANCEL it); refused
//! with 481 for an unknown or a foreign early dialog, 486 for `early-only` against a
//! confirmed one, 603 for a dialog being torn down, 400 for a malformed, repeated or
//! misplaced Replaces.

use sipdialog::manager::{
    DialogManager, ManagerConfig, Outbox, ReplacedAction, RequestBody, Verdict,
};
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};

fn invite(call_id: &str, from_tag: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}{from_tag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@192.0.2.1:5060>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn manager() -> DialogManager {
    DialogManager::new(ManagerConfig {
        capacity: 64,
        ..ManagerConfig::default()
    })
    .unwrap()
}

/// Bob answers a call from alice with `status`; returns the dialog and bob's tag.
fn answered(bob: &DialogManager, call_id: &str, status: u16) -> (DialogHandle, String) {
    let mut out = Outbox::new();
    let inv = invite(call_id, "alicetag", "");
    let Verdict::NewInvite { to_tag, .. } = bob.on_received(&inv, 0, &mut out).unwrap() else {
        panic!("not new")
    };
    let dialog = bob
        .respond(&inv, status, &Default::default(), 0, &mut out)
        .unwrap()
        .unwrap();
    (dialog, to_tag.as_str().to_owned())
}

/// The status bob answers an INVITE carrying `replaces` with (0 when it is accepted), and
/// the verdict.
fn offer(bob: &DialogManager, extra: &str) -> (u16, Verdict) {
    let mut out = Outbox::new();
    let verdict = bob
        .on_received(&invite("new@c", "carol", extra), 1, &mut out)
        .unwrap();
    let status = out
        .iter()
        .next()
        .map(|m| MessageView::parse(m.bytes).unwrap().status_code().unwrap())
        .unwrap_or(0);
    (status, verdict)
}

#[test]
fn confirmed_dialog_is_replaced_with_a_bye() {
    let bob = manager();
    let (dialog, tag) = answered(&bob, "c1@a", 200);
    let (status, verdict) = offer(
        &bob,
        &format!("Replaces: c1@a;to-tag={tag};from-tag=alicetag\r\n"),
    );
    assert_eq!(status, 0);
    let Verdict::ReplacingInvite { replaced, .. } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(replaced.dialog, dialog);
    assert_eq!(replaced.action, ReplacedAction::Bye);
}

#[test]
fn early_only_against_a_confirmed_dialog_is_486() {
    let bob = manager();
    let (_, tag) = answered(&bob, "c2@a", 200);
    let extra = format!("Replaces: c2@a;to-tag={tag};from-tag=alicetag;early-only\r\n");
    assert_eq!(offer(&bob, &extra).0, 486);
}

#[test]
fn unknown_dialog_and_swapped_tags_are_481() {
    let bob = manager();
    let (_, tag) = answered(&bob, "c3@a", 200);
    assert_eq!(
        offer(&bob, "Replaces: nope@a;to-tag=x;from-tag=y\r\n").0,
        481
    );
    // The tags as the sender sees them, not as the recipient does: no match.
    let swapped = format!("Replaces: c3@a;to-tag=alicetag;from-tag={tag}\r\n");
    assert_eq!(offer(&bob, &swapped).0, 481);
}

#[test]
fn early_dialog_this_ua_did_not_initiate_is_481() {
    let bob = manager();
    let (_, tag) = answered(&bob, "c4@a", 180);
    let extra = format!("Replaces: c4@a;to-tag={tag};from-tag=alicetag\r\n");
    assert_eq!(offer(&bob, &extra).0, 481);
}

#[test]
fn early_dialog_this_ua_initiated_is_replaced_with_a_cancel() {
    // Alice calls bob, bob rings; carol's INVITE to alice replaces alice's early dialog.
    let alice = manager();
    let bob = manager();
    let mut out = Outbox::new();
    let inv = invite("c5@a", "alicetag", "");
    alice.on_sent(&inv, 0).unwrap();
    bob.on_received(&inv, 0, &mut out).unwrap();
    bob.respond(&inv, 180, &Default::default(), 0, &mut out)
        .unwrap();
    let ringing = out.iter().next().unwrap().bytes.to_vec();
    let Verdict::Provisional {
        dialog: Some(early),
        ..
    } = alice.on_received(&ringing, 0, &mut Outbox::new()).unwrap()
    else {
        panic!("no early dialog")
    };
    let bob_tag = MessageView::parse(&ringing)
        .unwrap()
        .to_tag()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap();
    // Alice's local tag is her From tag: it is the to-tag from her side.
    let extra = format!("Replaces: c5@a;to-tag=alicetag;from-tag={bob_tag}\r\n");
    let (status, verdict) = offer(&alice, &extra);
    assert_eq!(status, 0);
    let Verdict::ReplacingInvite { replaced, .. } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (replaced.dialog, replaced.action),
        (early, ReplacedAction::Cancel)
    );
}

#[test]
fn dialog_being_torn_down_is_603() {
    let bob = manager();
    let (dialog, tag) = answered(&bob, "c6@a", 200);
    bob.request(
        dialog,
        Method::Bye,
        &RequestBody::default(),
        0,
        &mut Outbox::new(),
    )
    .unwrap();
    let extra = format!("Replaces: c6@a;to-tag={tag};from-tag=alicetag\r\n");
    assert_eq!(offer(&bob, &extra).0, 603);
}

#[test]
fn malformed_repeated_or_misplaced_replaces_is_400() {
    let bob = manager();
    let (dialog, tag) = answered(&bob, "c7@a", 200);
    let good = format!("Replaces: c7@a;to-tag={tag};from-tag=alicetag\r\n");
    assert_eq!(offer(&bob, &format!("{good}{good}")).0, 400);
    assert_eq!(offer(&bob, "Replaces: c7@a;to-tag=x\r\n").0, 400);
    assert_eq!(offer(&bob, "Replaces: ;;;\r\n").0, 400);
    // On a request other than an INVITE that creates a dialog.
    let bye = format!(
        "BYE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\n\
         From: <sip:alice@a>;tag=alicetag\r\nTo: <sip:bob@b>;tag={tag}\r\nCall-ID: c7@a\r\n\
         CSeq: 2 BYE\r\n{good}Content-Length: 0\r\n\r\n"
    );
    let mut out = Outbox::new();
    let verdict = bob.on_received(bye.as_bytes(), 2, &mut out).unwrap();
    assert_eq!(
        verdict,
        Verdict::Rejected {
            status: 400,
            dialog: None
        }
    );
    assert!(bob.state(dialog).is_ok(), "the refused BYE ended nothing");
}
