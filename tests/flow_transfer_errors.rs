//! REFERs and NOTIFYs in a transfer that are refused or out of the ordinary, between alice
//! (transferor) and bob (transferee): `Refer-Sub: false` (RFC 4488), invalid REFERs (400, 403;
//! RFC 3515 §2.4.2), NOTIFYs for no subscription (481) or another event package (489;
//! RFC 6665 §4.1.3), and a NOTIFY that overtakes the 202 (RFC 6665 §4.1.2.4).

mod flows;
mod transfer;

use bumpalo::Bump;
use flows::{deliver_msg, deliver_one, establish, hang_up, phase, Ua, CALL};
use sipdialog::manager::{TransferProgress, Verdict};
use sipdialog::refer::{ReferLimits, ReferRequest};
use sipdialog::state::Phase;
use sipdialog::wire::{MessageView, Method};
use transfer::{
    answer_status, check_notify, notify_to_alice, other_header, raw_request, ALICE_AOR, CAROL,
};

/// RFC 4488: a REFER with `Refer-Sub: false` creates no subscription; the REFER-recipient that
/// honours it says so with `Refer-Sub: false` in its 2xx (§4), and sends no NOTIFY.
#[test]
fn rfc4488_refer_sub_false_creates_no_subscription() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);

    let (cseq, refer) = raw_request(
        &mut alice,
        a_d,
        Method::Refer,
        &[
            ("Refer-To", format!("<{CAROL}>").as_bytes()),
            ("Referred-By", ALICE_AOR.as_bytes()),
            ("Refer-Sub", b"false"),
            ("Supported", b"norefersub"),
        ],
        None,
        100,
    );
    let got = deliver_msg(&refer, &[], &mut bob, 100);
    assert_eq!(
        got.verdict,
        Some(Verdict::Refer {
            dialog: b_d,
            id: cseq,
            subscribed: false
        })
    );
    let accepted = bob.peek_one();
    let status = answer_status(&bob);
    assert!((200..300).contains(&status), "accepted: {status}");
    assert_eq!(
        other_header(&accepted.bytes, "Refer-Sub"),
        ["false"],
        "RFC 4488 §4: Refer-Sub: false in the 2xx"
    );
    assert_eq!(bob.mgr.transfers().subscriptions(b_d), 0);
    let view = MessageView::parse(&got.bytes).unwrap();
    let bump = Bump::new();
    let parsed = ReferRequest::parse(&view, &bump, &ReferLimits::DEFAULT).unwrap();
    assert!(!parsed.subscribe);
    assert_eq!(parsed.target.uri, CAROL.as_bytes());

    let got = deliver_one(&mut bob, &[], &mut alice, 101);
    assert_eq!(
        got.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status,
            method: Method::Refer,
            cseq
        })
    );
    // No subscription, so nothing to NOTIFY.
    assert!(bob
        .mgr
        .transfers()
        .notify(b_d, cseq, 100, 110, &mut bob.out)
        .is_err());
    assert!(bob
        .mgr
        .transfers()
        .notify(b_d, cseq, 200, 111, &mut bob.out)
        .is_err());
    assert!(bob.out.is_empty(), "no NOTIFY went out");
    assert_eq!(
        (
            bob.mgr.transfers().subscriptions(b_d),
            alice.mgr.transfers().subscriptions(a_d)
        ),
        (0, 0)
    );

    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// Extra headers of a hand-made request.
type Headers<'a> = Vec<(&'a str, &'a [u8])>;

/// REFERs that must be refused, each answered in the outbox and leaving the dialog as it
/// was: no Refer-To or more than one (RFC 3515 §2.4.2: 400), a scheme the policy refuses
/// (403).
#[test]
fn invalid_refers_are_answered_400_or_403() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let carol = format!("<{CAROL}>");
    let cases: [(&str, Headers<'_>, u16); 4] = [
        (
            "two Refer-To headers",
            vec![
                ("Refer-To", carol.as_bytes()),
                ("Refer-To", b"<sip:dave@denver.example.com>"),
            ],
            400,
        ),
        (
            "two targets in one Refer-To",
            vec![(
                "Refer-To",
                b"<sip:carol@chicago.example.com>, <sip:dave@denver.example.com>",
            )],
            400,
        ),
        (
            "no Refer-To",
            vec![("Referred-By", ALICE_AOR.as_bytes())],
            400,
        ),
        (
            "an http: target",
            vec![("Refer-To", b"<http://www.example.com/transfer>")],
            403,
        ),
    ];
    for (i, (what, headers, status)) in cases.iter().enumerate() {
        let t = 100 + 10 * i as u64;
        let (cseq, refer) = raw_request(&mut alice, a_d, Method::Refer, headers, None, t);
        let got = deliver_msg(&refer, &[], &mut bob, t);
        assert_eq!(
            got.verdict,
            Some(Verdict::Rejected {
                status: *status,
                dialog: Some(b_d)
            }),
            "{what}"
        );
        assert_eq!(answer_status(&bob), *status, "{what}");
        assert_eq!(bob.mgr.transfers().subscriptions(b_d), 0, "{what}");
        let got = deliver_one(&mut bob, &[], &mut alice, t + 1);
        assert_eq!(
            got.verdict,
            Some(Verdict::Response {
                dialog: a_d,
                status: *status,
                method: Method::Refer,
                cseq
            }),
            "{what}"
        );
        assert_eq!(
            (phase(&alice, a_d), phase(&bob, b_d)),
            (Phase::Confirmed, Phase::Confirmed),
            "{what}"
        );
    }
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// NOTIFYs alice must refuse (RFC 6665 §4.1.3): one for a refer subscription she does not
/// hold gets 481, one for another event package gets 489. Her dialog is untouched. (The
/// refusals are not carried back to bob: what a 481 to a NOTIFY does to the notifier's
/// dialog is not asserted here.)
#[test]
fn notify_for_no_subscription_is_481_and_for_another_package_489() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let sipfrag: Option<(&[u8], &[u8])> = Some((b"message/sipfrag", b"SIP/2.0 100 Trying\r\n"));
    let cases: [(&[u8], u16); 3] = [(b"refer;id=999", 481), (b"refer", 481), (b"presence", 489)];
    for (i, (event, status)) in cases.into_iter().enumerate() {
        let t = 100 + 10 * i as u64;
        let (_, notify) = raw_request(
            &mut bob,
            b_d,
            Method::Notify,
            &[
                ("Event", event),
                ("Subscription-State", b"active;expires=60"),
            ],
            sipfrag,
            t,
        );
        let got = deliver_msg(&notify, &[], &mut alice, t);
        let what = String::from_utf8_lossy(event);
        assert!(
            matches!(got.verdict, Some(Verdict::Rejected { status: s, .. }) if s == status),
            "Event: {what}: {:?}",
            got.verdict
        );
        assert_eq!(answer_status(&alice), status, "Event: {what}");
        alice.out.clear();
        assert_eq!(phase(&alice, a_d), Phase::Confirmed, "Event: {what}");
    }
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 6665 §4.1.2.4 (which RFC 7647 applies to REFER): messages get reordered, so the
/// subscriber must take a NOTIFY that arrives before the 2xx to the request that created the
/// subscription. Bob's 100 NOTIFY overtakes his 202.
#[test]
fn notify_overtaking_the_202_is_accepted() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let id = alice
        .mgr
        .transfers()
        .refer(a_d, CAROL.as_bytes(), None, None, 100, &mut alice.out)
        .unwrap();
    let got = deliver_one(&mut alice, &[], &mut bob, 100);
    assert!(matches!(got.verdict, Some(Verdict::Refer { .. })));
    let accepted = bob.drain().remove(0).bytes;
    bob.mgr
        .transfers()
        .notify(b_d, id, 100, 101, &mut bob.out)
        .unwrap();
    let notify = bob.drain().remove(0).bytes;
    check_notify(&notify, id, 100, false);
    // The NOTIFY first.
    let got = deliver_msg(&notify, &[], &mut alice, 102);
    assert_eq!(
        got.verdict,
        Some(Verdict::Notify {
            dialog: a_d,
            id,
            status: 100,
            progress: TransferProgress::Trying,
            terminated: false
        })
    );
    assert_eq!(answer_status(&alice), 200);
    deliver_one(&mut alice, &[], &mut bob, 102);
    // Then the 202.
    let got = deliver_msg(&accepted, &[], &mut alice, 103);
    assert_eq!(
        got.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 202,
            method: Method::Refer,
            cseq: id
        })
    );
    notify_to_alice(&mut bob, &mut alice, (a_d, b_d), id, 200, 110);
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}
