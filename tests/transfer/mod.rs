//! Shared pieces of the `tests/flow_transfer_*.rs` call-transfer tests (RFC 5589): the
//! transfer target carol, the steps of a transfer through three managers wired back to back
//! (alice transferor, bob transferee, carol target; every message raw bytes built by one
//! manager and received by another) and the checks made on the way.
//!
//! The steps are checked against RFC 3515 (REFER, its implicit subscription and NOTIFYs),
//! RFC 6665 (Subscription-State), RFC 3420 (`message/sipfrag`), RFC 3891 (Replaces) and
//! RFC 3892 (Referred-By). Every NOTIFY is checked for `Event: refer;id=<REFER CSeq>`
//! (RFC 3515 §2.4.6), its Subscription-State and the status line of its sipfrag body.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use bumpalo::Bump;
use sipdialog::manager::{NewCall, RequestBody, TransferProgress, Verdict};
use sipdialog::refer::{
    parse_refer_event, parse_refer_to, parse_replaces, parse_sipfrag_status,
    parse_subscription_state, ReferLimits, ReferRequest, Replaces, SubscriptionState,
};
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{HeaderName, MessageView, Method};

use crate::flows::{deliver_one, ids, no_parts, phase, start_line, values, Ua, ATAG, CALL};

/// The transfer target's address of record.
pub const CAROL: &str = "sip:carol@chicago.example.com";
/// Alice's identity as she puts it in Referred-By (RFC 3892: a name-addr).
pub const ALICE_AOR: &str = "<sip:alice@atlanta.example.com>";
/// Call-ID and From tag of alice's consultation call with carol (§7).
pub const CALL_AC: &str = "a84b4c76e66710@client.atlanta.example.com";
pub const ATAG_AC: &str = "1928301774";

pub fn carol() -> Ua {
    Ua::new("carol", "client.chicago.example.com")
}

/// The media type of a Content-Type value, without parameters, lower case.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The value of an extension header (`Refer-Sub`, `Supported`…), every occurrence.
pub fn other_header(msg: &[u8], name: &str) -> Vec<String> {
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
pub fn check_notify(msg: &[u8], id: u32, status: u16, last: bool) {
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
pub fn answer_status(ua: &Ua) -> u16 {
    let m = ua.peek_one();
    MessageView::parse(&m.bytes)
        .expect("valid response")
        .status_code()
        .expect("a response")
}

/// A NOTIFY bob sends and alice answers: checks it, delivers it, checks alice's verdict and
/// delivers her 200 back. Returns alice's verdict.
pub fn notify_to_alice(
    bob: &mut Ua,
    alice: &mut Ua,
    (a_d, b_d): (DialogHandle, DialogHandle),
    id: u32,
    status: u16,
    t: u64,
) -> Verdict {
    bob.mgr
        .transfers()
        .notify(b_d, id, status, t, &mut bob.out)
        .unwrap();
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
pub fn refer_accepted(
    alice: &mut Ua,
    bob: &mut Ua,
    (a_d, b_d): (DialogHandle, DialogHandle),
    target: &str,
    replaces: Option<&Replaces<'_>>,
    t: u64,
) -> (u32, Vec<u8>) {
    let id = alice
        .mgr
        .transfers()
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
pub fn invite_target(
    bob: &mut Ua,
    carol: &mut Ua,
    refer_at_bob: &[u8],
    t: u64,
) -> (Vec<u8>, Verdict) {
    let view = MessageView::parse(refer_at_bob).unwrap();
    let bump = Bump::new();
    let refer = ReferRequest::parse(&view, &bump, &ReferLimits::DEFAULT).unwrap();
    assert!(refer.subscribe);
    assert_eq!(refer.referred_by, Some(ALICE_AOR.as_bytes()));
    bob.mgr
        .calls()
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
pub fn target_answers(
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
pub fn bye(from: &mut Ua, to: &mut Ua, d_from: DialogHandle, d_to: DialogHandle, t: u64) {
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
pub fn raw_request(
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
