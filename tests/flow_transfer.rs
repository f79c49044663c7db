//! Call transfer (RFC 5589) between three user agents wired back to back, every message raw
//! bytes built by one manager and received by another: alice (transferor), bob (transferee)
//! and carol (transfer target).
//!
//! Checked against RFC 3515 (REFER, its implicit subscription and NOTIFYs), RFC 4488
//! (`Refer-Sub: false`), RFC 6665 (NOTIFY handling: 481, 489, Subscription-State), RFC 3420
//! (`message/sipfrag`), RFC 3891 (Replaces) and RFC 3892 (Referred-By). Every NOTIFY is checked
//! for `Event: refer;id=<REFER CSeq>` (§2.4.6), its Subscription-State and the status line
//! of its sipfrag body.
//!
//! Replaces against every kind of dialog it can name (confirmed → BYE, early dialog this UA
//! initiated → CANCEL, foreign early dialog → 481, `early-only` → 486, ending → 603,
//! malformed → 400) is covered message by message in `tests/replaces.rs`
//! (`early_dialog_this_ua_initiated_is_replaced_with_a_cancel`,
//! `confirmed_dialog_is_replaced_with_a_bye`, …); here the confirmed case is driven through a
//! whole attended transfer (§7).

mod common;
mod flows;

use std::sync::{Mutex, MutexGuard, PoisonError};

use bumpalo::Bump;
use common::alloc::{live_bytes, TrackingAlloc};
use flows::{
    deliver, deliver_msg, deliver_one, establish, hang_up, ids, invite_to, no_parts, phase,
    start_line, values, Delivered, Ua, ATAG, CALL, SDP_REOFFER, T64,
};
use sipdialog::manager::{
    DialogManager, ManagerConfig, NewCall, Outbox, ReplacedAction, RequestBody, TransferProgress,
    Verdict,
};
use sipdialog::refer::{
    parse_refer_event, parse_refer_to, parse_replaces, parse_sipfrag_status,
    parse_subscription_state, ReferLimits, ReferRequest, Replaces, SubscriptionState,
};
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{HeaderName, MessageView, Method};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// The tests of this file run one at a time, so that the live-heap figures the memory checks
/// read are this test's alone.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The transfer target's address of record.
const CAROL: &str = "sip:carol@chicago.example.com";
/// Alice's identity as she puts it in Referred-By (RFC 3892: a name-addr).
const ALICE_AOR: &str = "<sip:alice@atlanta.example.com>";
/// Call-ID and From tag of alice's consultation call with carol (§7).
const CALL_AC: &str = "a84b4c76e66710@client.atlanta.example.com";
const ATAG_AC: &str = "1928301774";

fn carol() -> Ua {
    Ua::new("carol", "client.chicago.example.com")
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
        c.max_refers_per_second = 1_000_000;
        c.max_subscriptions = 1_000_000;
    })
}

/// The media type of a Content-Type value, without parameters, lower case.
fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The value of an extension header (`Refer-Sub`, `Supported`…), every occurrence.
fn other_header(msg: &[u8], name: &str) -> Vec<String> {
    let view = MessageView::parse(msg).expect("valid message");
    view.headers()
        .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
        .collect()
}

/// What a NOTIFY for the REFER with CSeq `id` must look like (RFC 3515 §2.4.4–§2.4.7): an
/// `Event: refer;id=<id>`, a Subscription-State `active` until the final one, which is
/// `terminated;reason=noresource`, and a `message/sipfrag` body starting with the status line
/// of `status`. Checked as it went over the wire.
fn check_notify(msg: &[u8], id: u32, status: u16, last: bool) {
    let view = MessageView::parse(msg).expect("valid NOTIFY");
    assert_eq!(view.method(), Some(Method::Notify), "{}", start_line(msg));
    assert_eq!(view.cseq().method, b"NOTIFY");
    let events: Vec<String> = values(msg, HeaderName::Event);
    assert_eq!(events.len(), 1, "RFC 6665 §8.2.1: one Event header");
    assert_eq!(
        parse_refer_event(events[0].as_bytes()),
        Ok(Some(id)),
        "RFC 3515 §2.4.6: Event refer with id = the REFER's CSeq, got {:?}",
        events[0]
    );
    let state = view
        .subscription_state()
        .expect("RFC 6665 §8.2.3: NOTIFY carries Subscription-State");
    let state = parse_subscription_state(state).expect("well-formed Subscription-State");
    if last {
        assert_eq!(
            state,
            SubscriptionState::Terminated {
                reason: Some(b"noresource")
            },
            "RFC 3515 §2.4.7: the final NOTIFY is terminated with reason noresource"
        );
    } else {
        assert_eq!(
            state,
            SubscriptionState::Active { expires: Some(60) },
            "a provisional result leaves the subscription active"
        );
    }
    let content_type = values(msg, HeaderName::ContentType);
    assert_eq!(content_type.len(), 1);
    assert_eq!(
        media_type(&content_type[0]),
        "message/sipfrag",
        "RFC 3515 §2.4.4: the body is message/sipfrag"
    );
    let body = view.body();
    assert_eq!(
        parse_sipfrag_status(body),
        Ok(status),
        "RFC 3515 §2.4.5: the body begins with a status line: {:?}",
        String::from_utf8_lossy(body)
    );
    assert!(body.starts_with(format!("SIP/2.0 {status} ").as_bytes()));
}

/// The status of the one response in a [`Delivered`] request's answer, taken from `ua`'s
/// outbox (left there).
fn answer_status(ua: &Ua) -> u16 {
    let m = ua.peek_one();
    MessageView::parse(&m.bytes)
        .expect("valid response")
        .status_code()
        .expect("a response")
}

/// A NOTIFY bob sends and alice answers: checks it, delivers it, checks alice's verdict and
/// delivers her 200 back. Returns alice's verdict.
fn notify_to_alice(
    bob: &mut Ua,
    alice: &mut Ua,
    (a_d, b_d): (DialogHandle, DialogHandle),
    id: u32,
    status: u16,
    t: u64,
) -> Verdict {
    bob.mgr.notify(b_d, id, status, t, &mut bob.out).unwrap();
    let sent = bob.peek_one();
    assert_eq!(sent.dialog, Some(b_d));
    let last = status >= 200;
    check_notify(&sent.bytes, id, status, last);
    assert_eq!(
        start_line(&sent.bytes),
        "NOTIFY sip:alice@client.atlanta.example.com SIP/2.0",
        "RFC 3261 §12.2.1.1: to the remote target"
    );
    let (call_id, from_tag, to_tag, notify_cseq, _) = ids(&sent.bytes);
    assert_eq!(call_id, CALL);
    assert_eq!(to_tag.as_deref(), Some(ATAG));
    assert_eq!(
        from_tag.as_bytes(),
        alice.mgr.info(a_d).unwrap().remote_tag()
    );
    let got = deliver_one(bob, &[], alice, t);
    let verdict = got.verdict.expect("a verdict");
    let progress = match status {
        100..=199 => TransferProgress::Trying,
        200..=299 => TransferProgress::Succeeded,
        _ => TransferProgress::Failed,
    };
    assert_eq!(
        verdict,
        Verdict::Notify {
            dialog: a_d,
            id,
            status,
            progress,
            terminated: last
        }
    );
    // RFC 6665 §4.1.3: the subscriber answers a NOTIFY it accepts with 200.
    let ok = deliver_one(alice, &[], bob, t + 1);
    assert!(start_line(&ok.sent).starts_with("SIP/2.0 200 "));
    assert_eq!(ids(&ok.sent).3, notify_cseq);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: b_d,
            status: 200,
            method: Method::Notify,
            cseq: notify_cseq
        })
    );
    verdict
}

/// Alice REFERs bob to `target` (with `replaces` for an attended transfer); checks the REFER
/// on the wire, bob's verdict, the 202 and alice's verdict for it. Returns the REFER's CSeq
/// (the event id) and the REFER as bob got it.
fn refer_accepted(
    alice: &mut Ua,
    bob: &mut Ua,
    (a_d, b_d): (DialogHandle, DialogHandle),
    target: &str,
    replaces: Option<&Replaces<'_>>,
    t: u64,
) -> (u32, Vec<u8>) {
    let id = alice
        .mgr
        .refer(
            a_d,
            target.as_bytes(),
            replaces,
            Some(ALICE_AOR.as_bytes()),
            t,
            &mut alice.out,
        )
        .unwrap();
    let refer = alice.peek_one();
    assert_eq!(refer.dialog, Some(a_d));
    assert_eq!(
        start_line(&refer.bytes),
        format!("REFER {} SIP/2.0", bob.contact_uri),
        "RFC 3261 §12.2.1.1: to the remote target"
    );
    let (call_id, from_tag, to_tag, cseq, method) = ids(&refer.bytes);
    assert_eq!((call_id.as_str(), method.as_str()), (CALL, "REFER"));
    assert_eq!(from_tag, ATAG);
    assert_eq!(
        to_tag.as_deref().map(str::as_bytes),
        Some(alice.mgr.info(a_d).unwrap().remote_tag())
    );
    assert_eq!(
        cseq, id,
        "the event id is the REFER's CSeq (RFC 3515 §2.4.6)"
    );
    let refer_to = values(&refer.bytes, HeaderName::ReferTo);
    assert_eq!(refer_to.len(), 1, "RFC 3515 §2.4.1: exactly one Refer-To");
    let bump = Bump::new();
    let parsed = parse_refer_to(refer_to[0].as_bytes(), &bump, &ReferLimits::DEFAULT).unwrap();
    assert_eq!(parsed.uri, target.as_bytes());
    assert_eq!(parsed.replaces.as_ref(), replaces);
    assert_eq!(
        values(&refer.bytes, HeaderName::ReferredBy),
        [ALICE_AOR],
        "RFC 3892"
    );
    assert!(
        other_header(&refer.bytes, "Refer-Sub").is_empty(),
        "a subscription is asked for"
    );

    let got = deliver_one(alice, &[], bob, t);
    assert_eq!(
        got.verdict,
        Some(Verdict::Refer {
            dialog: b_d,
            id,
            subscribed: true
        })
    );
    let refer_at_bob = got.bytes;
    // RFC 3515 §2.4.2: an accepted REFER is answered 202.
    let accepted = bob.peek_one();
    assert!(
        start_line(&accepted.bytes).starts_with("SIP/2.0 202 "),
        "{}",
        start_line(&accepted.bytes)
    );
    assert_eq!(ids(&accepted.bytes).3, id);
    assert!(
        other_header(&accepted.bytes, "Refer-Sub")
            .iter()
            .all(|v| !v.eq_ignore_ascii_case("false")),
        "no Refer-Sub: false when a subscription was created (RFC 4488)"
    );
    let got = deliver_one(bob, &[], alice, t + 1);
    assert_eq!(
        got.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 202,
            method: Method::Refer,
            cseq: id
        })
    );
    (id, refer_at_bob)
}

/// Bob acts on the REFER as RFC 5589 §6.1 says: reads it and INVITEs the target with the
/// Referred-By (RFC 3892 §3) and the Replaces (RFC 3891, attended transfer) it carried.
/// Returns the INVITE as carol got it and carol's verdict.
fn invite_target(bob: &mut Ua, carol: &mut Ua, refer_at_bob: &[u8], t: u64) -> (Vec<u8>, Verdict) {
    let view = MessageView::parse(refer_at_bob).unwrap();
    let bump = Bump::new();
    let refer = ReferRequest::parse(&view, &bump, &ReferLimits::DEFAULT).unwrap();
    assert!(refer.subscribe);
    assert_eq!(refer.referred_by, Some(ALICE_AOR.as_bytes()));
    bob.mgr
        .invite(
            &NewCall {
                request_uri: refer.target.uri,
                from: b"Bob <sip:bob@biloxi.example.com>",
                to: b"Carol <sip:carol@chicago.example.com>",
                referred_by: refer.referred_by,
                replaces: refer.target.replaces.as_ref(),
                ..NewCall::default()
            },
            t,
            &mut bob.out,
        )
        .unwrap();
    let inv = bob.peek_one();
    let iv = MessageView::parse(&inv.bytes).unwrap();
    assert_eq!(iv.method(), Some(Method::Invite));
    assert_eq!(iv.request_uri(), Some(refer.target.uri));
    assert_ne!(iv.call_id(), CALL.as_bytes(), "a new call: fresh Call-ID");
    assert_ne!(
        iv.call_id(),
        CALL_AC.as_bytes(),
        "a new call: fresh Call-ID"
    );
    assert!(
        iv.from_tag().is_some_and(|t| !t.is_empty()),
        "§8.1.1.3 From tag"
    );
    assert_eq!(iv.to_tag(), None, "§8.1.1.2: no To tag outside a dialog");
    assert_eq!(iv.cseq().method, b"INVITE");
    assert!(
        iv.via_branch().is_some_and(|b| b.starts_with(b"z9hG4bK")),
        "§8.1.1.7"
    );
    assert_eq!(iv.max_forwards(), Some(70), "§8.1.1.6");
    assert!(iv.contact().is_some(), "§8.1.1.8: Contact on an INVITE");
    assert_eq!(
        iv.referred_by(),
        Some(ALICE_AOR.as_bytes()),
        "RFC 3892 §3: the triggered INVITE carries the REFER's Referred-By"
    );
    match refer.target.replaces {
        Some(r) => {
            let sent: Vec<String> = values(&inv.bytes, HeaderName::Replaces);
            assert_eq!(sent.len(), 1, "RFC 3891 §3: one Replaces");
            assert_eq!(parse_replaces(sent[0].as_bytes()), Ok(r));
        }
        None => assert!(iv.replaces().is_none()),
    }
    let got = deliver_one(bob, &[], carol, t);
    (got.bytes, got.verdict.expect("a verdict"))
}

/// Carol answers the INVITE (as she got it) 180 then 200, bob ACKs. Returns (bob's dialog,
/// carol's dialog).
fn target_answers(
    bob: &mut Ua,
    carol: &mut Ua,
    inv_at_carol: &[u8],
    t: u64,
) -> (DialogHandle, DialogHandle) {
    let c_d = carol
        .mgr
        .respond(inv_at_carol, 180, &no_parts(), t, &mut carol.out)
        .unwrap()
        .expect("carol's early dialog");
    let ringing = deliver_one(carol, &[], bob, t);
    let Some(Verdict::Provisional {
        dialog: Some(bc_d),
        status: 180,
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    assert_eq!(
        carol
            .mgr
            .respond(inv_at_carol, 200, &no_parts(), t + 1, &mut carol.out)
            .unwrap(),
        Some(c_d)
    );
    let invite_cseq = ids(inv_at_carol).3;
    let ok = deliver_one(carol, &[], bob, t + 1);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Confirmed {
            dialog: bc_d,
            cseq: invite_cseq,
            extra: false
        })
    );
    bob.mgr.ack(bc_d, invite_cseq, &mut bob.out).unwrap();
    let ack = deliver_one(bob, &[], carol, t + 2);
    assert_eq!(ack.verdict, Some(Verdict::Ack { dialog: c_d }));
    assert_eq!(
        (phase(bob, bc_d), phase(carol, c_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );
    (bc_d, c_d)
}

/// `from` sends BYE in `d_from`; `to` answers in `d_to`.
fn bye(from: &mut Ua, to: &mut Ua, d_from: DialogHandle, d_to: DialogHandle, t: u64) {
    from.mgr
        .request(
            d_from,
            Method::Bye,
            &RequestBody::default(),
            t,
            &mut from.out,
        )
        .unwrap();
    let got = deliver_one(from, &[], to, t);
    assert_eq!(got.verdict, Some(Verdict::Bye { dialog: d_to }));
    let ok = deliver_one(to, &[], from, t + 1);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Ended {
            dialog: d_from,
            status: 200
        })
    );
}

/// An in-dialog request built by the generic `request` path, with `extra` headers: the way
/// to put on the wire what `refer`/`notify` would never write. Returns (CSeq, bytes).
fn raw_request(
    ua: &mut Ua,
    d: DialogHandle,
    method: Method,
    extra: &[(&str, &[u8])],
    body: Option<(&[u8], &[u8])>,
    t: u64,
) -> (u32, Vec<u8>) {
    let cseq = ua
        .mgr
        .request(
            d,
            method,
            &RequestBody {
                content_type: body.map(|b| b.0),
                body: body.map(|b| b.1).unwrap_or_default(),
                extra_headers: extra,
            },
            t,
            &mut ua.out,
        )
        .unwrap();
    let sent = ua.peek_one();
    ua.out.clear();
    (cseq, sent.bytes)
}

/// RFC 5589 §6.1: blind transfer that succeeds. Alice REFERs bob to carol; bob accepts (202),
/// reports 100, INVITEs carol with alice's Referred-By, carol answers, bob reports 200 and the
/// subscription ends; alice hangs up on bob, later bob and carol hang up. Nothing is left.
#[test]
fn rfc5589_6_1_blind_transfer_succeeds() {
    let _serial = serial();
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);

    let (id, refer_at_bob) = refer_accepted(&mut alice, &mut bob, ab, CAROL, None, 100);
    assert_eq!(
        bob.mgr.subscriptions(b_d),
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
    assert_eq!(bob.mgr.subscriptions(b_d), 1, "still active after a 1xx");

    let (inv_at_carol, verdict) = invite_target(&mut bob, &mut carol, &refer_at_bob, 120);
    assert!(matches!(verdict, Verdict::NewInvite { .. }), "{verdict:?}");
    let (bc_d, c_d) = target_answers(&mut bob, &mut carol, &inv_at_carol, 130);

    // The final NOTIFY: 200, terminated;reason=noresource.
    notify_to_alice(&mut bob, &mut alice, ab, id, 200, 140);
    assert_eq!(bob.mgr.subscriptions(b_d), 0, "the final NOTIFY ended it");
    assert_eq!(alice.mgr.subscriptions(a_d), 0);
    // The subscription is gone: no further NOTIFY for it can be sent…
    assert!(bob.mgr.notify(b_d, id, 200, 145, &mut bob.out).is_err());
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
    let _serial = serial();
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
        (bob.mgr.subscriptions(b_d), alice.mgr.subscriptions(a_d)),
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

/// RFC 5589 §7 (attended transfer): alice has a call with bob and a consultation call with
/// carol; she REFERs bob to carol with Replaces naming the alice–carol dialog as carol sees it
/// (to-tag = carol's tag, from-tag = alice's, RFC 3891 §3). Bob's INVITE with Replaces takes
/// over that dialog at carol, who BYEs alice on it; the NOTIFYs reach alice as in §6.1.
#[test]
fn rfc5589_7_attended_transfer_replaces_the_consultation_call() {
    let _serial = serial();
    let (mut alice, mut bob, mut carol) = (Ua::alice(), Ua::bob(), carol());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let ab = (a_d, b_d);

    // The consultation call alice → carol.
    let inv = invite_to(
        CAROL,
        "Carol <sip:carol@chicago.example.com>",
        CALL_AC,
        ATAG_AC,
        None,
    );
    alice.mgr.on_sent(&inv, 10).unwrap();
    let got = deliver_msg(&inv, &[], &mut carol, 10);
    let Some(Verdict::NewInvite { to_tag }) = got.verdict else {
        panic!("INVITE to carol: {:?}", got.verdict)
    };
    let carol_tag = to_tag.as_str().to_owned();
    let ca_d = carol
        .mgr
        .respond(&got.bytes, 200, &no_parts(), 11, &mut carol.out)
        .unwrap()
        .expect("carol's dialog with alice");
    let ok = deliver_one(&mut carol, &[], &mut alice, 11);
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
        deliver_one(&mut alice, &[], &mut carol, 12).verdict,
        Some(Verdict::Ack { dialog: ca_d })
    );

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
        (bob.mgr.subscriptions(b_d), alice.mgr.subscriptions(a_d)),
        (0, 0)
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 160);
    bye(&mut bob, &mut carol, bc_d, c_d, 5_000);

    alice.assert_clean("alice");
    bob.assert_clean("bob");
    carol.assert_clean("carol");
}

/// RFC 4488: a REFER with `Refer-Sub: false` creates no subscription; the REFER-recipient that
/// honours it says so with `Refer-Sub: false` in its 2xx (§4), and sends no NOTIFY.
#[test]
fn rfc4488_refer_sub_false_creates_no_subscription() {
    let _serial = serial();
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
    assert_eq!(bob.mgr.subscriptions(b_d), 0);
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
    assert!(bob.mgr.notify(b_d, cseq, 100, 110, &mut bob.out).is_err());
    assert!(bob.mgr.notify(b_d, cseq, 200, 111, &mut bob.out).is_err());
    assert!(bob.out.is_empty(), "no NOTIFY went out");
    assert_eq!(
        (bob.mgr.subscriptions(b_d), alice.mgr.subscriptions(a_d)),
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
    let _serial = serial();
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
        assert_eq!(bob.mgr.subscriptions(b_d), 0, "{what}");
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
    let _serial = serial();
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

/// More REFERs in one second than `max_refers_per_second` (4): the extra ones get 403; a
/// second later REFERs are accepted again.
#[test]
fn refers_beyond_the_per_second_limit_get_403() {
    let _serial = serial();
    let mut alice = alice_unlimited();
    let mut bob = ua_with("bob", "client.biloxi.example.com", |c| {
        c.max_subscriptions = 64; // so that only the rate limit bites
    });
    assert_eq!(bob.mgr.config().max_refers_per_second, 4, "the default");
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let mut accepted = Vec::new();
    let mut refer = |alice: &mut Ua, bob: &mut Ua, t: u64| -> Verdict {
        let id = alice
            .mgr
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
        bob.mgr.subscriptions(b_d),
        4,
        "the refused ones created none"
    );
    assert_eq!(
        alice.mgr.subscriptions(a_d),
        4,
        "a REFER refused with a non-2xx leaves its sender no subscription"
    );
    let v = refer(&mut alice, &mut bob, 11_500);
    assert!(matches!(v, Verdict::Refer { .. }), "a second later: {v:?}");
    assert_eq!(bob.mgr.subscriptions(b_d), 5);

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
        (bob.mgr.subscriptions(b_d), alice.mgr.subscriptions(a_d)),
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
    let max = bob.mgr.config().max_subscriptions as usize;
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
        let before = bob.mgr.subscriptions(b_d);
        assert!(before <= max);
        let id = alice
            .mgr
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
            bob.mgr.subscriptions(b_d) <= max,
            "#{i}: bob holds {}",
            bob.mgr.subscriptions(b_d)
        );
        assert!(
            alice.mgr.subscriptions(a_d) <= max,
            "#{i}: alice holds {}",
            alice.mgr.subscriptions(a_d)
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
        if bob.mgr.notify(b_d, *id, 603, t, &mut bob.out).is_ok() {
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
        (bob.mgr.subscriptions(b_d), alice.mgr.subscriptions(a_d)),
        (0, 0)
    );
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, t + 100_000);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 6665 §4.1.2.4 (which RFC 7647 applies to REFER): messages get reordered, so the
/// subscriber must take a NOTIFY that arrives before the 2xx to the request that created the
/// subscription. Bob's 100 NOTIFY overtakes his 202.
#[test]
fn notify_overtaking_the_202_is_accepted() {
    let _serial = serial();
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let id = alice
        .mgr
        .refer(a_d, CAROL.as_bytes(), None, None, 100, &mut alice.out)
        .unwrap();
    let got = deliver_one(&mut alice, &[], &mut bob, 100);
    assert!(matches!(got.verdict, Some(Verdict::Refer { .. })));
    let accepted = bob.drain().remove(0).bytes;
    bob.mgr.notify(b_d, id, 100, 101, &mut bob.out).unwrap();
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
        let late = alice
            .mgr
            .refer(a_d, CAROL.as_bytes(), None, None, t + 20, &mut alice.out);
        assert!(late.is_err(), "refer on an ended dialog: {late:?}");
        assert!(alice.out.is_empty());
        assert_eq!(alice.mgr.subscriptions(a_d), 0);
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
