//! RFC 3665 / RFC 3261 call flows replayed as raw bytes through `DialogManager`s wired back to
//! back: caller `alice`, callee `bob` (two callees when forking), and, where the RFC flow has
//! proxies, dialog-stateful proxies in `observe` mode in the middle that see every message in
//! both directions. Every test checks the verdicts step by step, the bytes where the RFC says
//! what they must hold (Request-URI, Route order, CSeq, tags), and that every manager ends
//! with no dialog and, once its timers have run, no INVITE transaction record.
//!
//! The last test is a property test: random reordering, duplication and loss of the messages
//! of many concurrent calls, after which the timers must leave nothing behind.

mod flows;

use flows::{
    deliver, deliver_msg, deliver_one, header, ids, invite, invite_to, request_uri, start_line,
    values, Proxy, Ua, SDP_REOFFER, T64,
};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{Observation, RequestBody, Verdict};
use sipdialog::state::{Flags, Phase};
use sipdialog::table::DialogHandle;
use sipdialog::wire::{HeaderName, Method};

const CALL: &str = "3848276298220188511@atlanta.example.com";
const ATAG: &str = "9fxced76sl";

fn no_parts() -> ResponseParts<'static> {
    ResponseParts::default()
}

fn sdp_body(sdp: &str) -> RequestBody<'_> {
    RequestBody {
        content_type: Some(b"application/sdp"),
        body: sdp.as_bytes(),
        extra_headers: &[],
    }
}

fn phase(ua: &Ua, d: DialogHandle) -> Phase {
    ua.mgr.state(d).expect("live dialog").phase()
}

/// Sets up a call alice → bob over `path` (bob answers 180 then 200, alice ACKs) and returns
/// (alice's dialog, bob's dialog, the INVITE as bob got it). The steps, and what the proxies
/// observe, are checked in detail by the §3.1/§3.2 tests; here only the verdicts.
fn establish(
    alice: &mut Ua,
    bob: &mut Ua,
    path: &[&Proxy],
    call_id: &str,
    t: u64,
) -> (DialogHandle, DialogHandle, Vec<u8>) {
    let back: Vec<&Proxy> = path.iter().rev().copied().collect();
    let route = path.first().map(|p| p.route());
    let inv = invite(call_id, ATAG, route.as_deref());
    assert_eq!(alice.mgr.on_sent(&inv, t).unwrap(), None);
    let got = deliver_msg(&inv, path, bob, t);
    assert!(
        matches!(got.verdict, Some(Verdict::NewInvite { .. })),
        "{:?}",
        got.verdict
    );
    let inv_at_bob = got.bytes;
    let b_d = bob
        .mgr
        .respond(&inv_at_bob, 180, &no_parts(), t + 1, &mut bob.out)
        .unwrap()
        .expect("180 creates bob's early dialog");
    let ringing = deliver_one(bob, &back, alice, t + 1);
    let Some(Verdict::Provisional {
        dialog: Some(a_d),
        status: 180,
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    assert_eq!(
        bob.mgr
            .respond(&inv_at_bob, 200, &no_parts(), t + 2, &mut bob.out)
            .unwrap(),
        Some(b_d)
    );
    let ok = deliver_one(bob, &back, alice, t + 2);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    let ack = deliver_one(alice, path, bob, t + 3);
    assert_eq!(ack.verdict, Some(Verdict::Ack { dialog: b_d }));
    assert_eq!(
        (phase(alice, a_d), phase(bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );
    (a_d, b_d, inv_at_bob)
}

/// Alice hangs up a call set up by [`establish`].
fn hang_up(
    alice: &mut Ua,
    bob: &mut Ua,
    path: &[&Proxy],
    a_d: DialogHandle,
    b_d: DialogHandle,
    t: u64,
) {
    let back: Vec<&Proxy> = path.iter().rev().copied().collect();
    alice
        .mgr
        .request(a_d, Method::Bye, &RequestBody::default(), t, &mut alice.out)
        .unwrap();
    let bye = deliver_one(alice, path, bob, t);
    assert_eq!(bye.verdict, Some(Verdict::Bye { dialog: b_d }));
    let ok = deliver_one(bob, &back, alice, t + 1);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 200
        })
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Successful session establishment
// ---------------------------------------------------------------------------------------------

/// RFC 3665 §3.1: Alice calls Bob directly; Bob answers, then Bob hangs up (F5 BYE Bob → Alice).
#[test]
fn rfc3665_3_1_successful_session_establishment() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());

    // F1 INVITE Alice → Bob.
    let inv = invite(CALL, ATAG, None);
    assert_eq!(alice.mgr.on_sent(&inv, 0).unwrap(), None);
    assert_eq!(alice.mgr.pending_invites(), 1);
    let got = deliver_msg(&inv, &[], &mut bob, 0);
    let Some(Verdict::NewInvite { to_tag }) = got.verdict else {
        panic!("INVITE: {:?}", got.verdict)
    };
    let bob_tag = to_tag.as_str().to_owned();
    assert_eq!(
        bob.mgr.len(),
        0,
        "no dialog before a response with a To tag"
    );
    // The INVITE again (UDP retransmission before any response) is recognised.
    assert_eq!(
        deliver_msg(&inv, &[], &mut bob, 1).verdict,
        Some(Verdict::Retransmission)
    );

    // 100 Trying: no To tag needed, creates no dialog (§8.2.6.2, §12.1).
    assert_eq!(
        bob.mgr
            .respond(&inv, 100, &no_parts(), 5, &mut bob.out)
            .unwrap(),
        None
    );
    let trying = deliver_one(&mut bob, &[], &mut alice, 5);
    assert!(start_line(&trying.bytes).starts_with("SIP/2.0 100 "));
    assert_eq!(ids(&trying.bytes).2, None);
    assert_eq!(
        trying.verdict,
        Some(Verdict::Provisional {
            dialog: None,
            status: 100
        })
    );
    assert_eq!(alice.mgr.len(), 0);

    // F2 180 Ringing: an early dialog on both sides, same To tag as chosen for the INVITE.
    let b_d = bob
        .mgr
        .respond(&inv, 180, &no_parts(), 10, &mut bob.out)
        .unwrap()
        .expect("180 with a tag creates an early dialog (§12.1.1)");
    assert_eq!(phase(&bob, b_d), Phase::Early);
    let ringing = deliver_one(&mut bob, &[], &mut alice, 10);
    assert_eq!(ids(&ringing.bytes).2.as_deref(), Some(&*bob_tag));
    assert_eq!(
        header(&ringing.bytes, "Contact"),
        format!("<{}>", bob.contact_uri)
    );
    let Some(Verdict::Provisional {
        dialog: Some(a_d),
        status: 180,
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    assert_eq!(phase(&alice, a_d), Phase::Early);

    // F3 200 OK: both confirmed; alice's remote target is Bob's Contact (§12.1.2).
    assert_eq!(
        bob.mgr
            .respond(&inv, 200, &no_parts(), 20, &mut bob.out)
            .unwrap(),
        Some(b_d)
    );
    let ok = deliver_one(&mut bob, &[], &mut alice, 20);
    assert_eq!(
        ids(&ok.bytes).2.as_deref(),
        Some(&*bob_tag),
        "§8.2.6.2: same tag on all responses"
    );
    assert_eq!(
        ok.verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    let info = alice.mgr.info(a_d).unwrap();
    assert_eq!(info.remote_target(), bob.contact_uri.as_bytes());
    assert_eq!(info.remote_tag(), bob_tag.as_bytes());
    assert_eq!(info.local_tag(), ATAG.as_bytes());
    assert!(info.route_set().is_empty());
    let info = bob.mgr.info(b_d).unwrap();
    assert_eq!(
        info.remote_target(),
        b"sip:alice@client.atlanta.example.com",
        "§12.1.1"
    );
    assert!(bob
        .mgr
        .state(b_d)
        .unwrap()
        .flags()
        .contains(Flags::ACK_PENDING));

    // F4 ACK: to the remote target, CSeq of the INVITE (§13.2.2.4).
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    let ack = alice.peek_one();
    assert_eq!(
        start_line(&ack.bytes),
        format!("ACK {} SIP/2.0", bob.contact_uri)
    );
    assert_eq!(ack.next_hop.as_deref(), Some(&*bob.contact_uri));
    assert_eq!(
        ids(&ack.bytes),
        (
            CALL.to_owned(),
            ATAG.to_owned(),
            Some(bob_tag.clone()),
            1,
            "ACK".to_owned()
        )
    );
    assert_eq!(ack.dialog, Some(a_d));
    assert_eq!(header(&ack.bytes, "Max-Forwards"), "70", "§8.1.1.6");
    assert_ne!(
        values(&ack.bytes, HeaderName::Via),
        values(&inv, HeaderName::Via),
        "§17.1.1.3: the ACK for a 2xx is its own transaction (new branch)"
    );
    let ack = deliver_one(&mut alice, &[], &mut bob, 25);
    assert_eq!(ack.verdict, Some(Verdict::Ack { dialog: b_d }));
    assert!(!bob
        .mgr
        .state(b_d)
        .unwrap()
        .flags()
        .contains(Flags::ACK_PENDING));

    // A retransmitted 200 (bob's ACK wait overlapping the ACK) is ACKed again (§13.2.2.4:
    // "MUST generate an ACK request for each 2xx"); the duplicate ACK changes nothing.
    assert_eq!(
        deliver_msg(&ok.bytes, &[], &mut alice, 26).verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 27).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );
    assert_eq!((alice.mgr.len(), bob.mgr.len()), (1, 1));

    // F5 BYE Bob → Alice: to Alice's Contact, Bob's tag in From, Alice's in To (§12.2.1.1).
    let bye_cseq = bob
        .mgr
        .request(b_d, Method::Bye, &RequestBody::default(), 30, &mut bob.out)
        .unwrap();
    assert!(bye_cseq > 0 && bye_cseq < 1 << 31, "§8.1.1.5");
    let bye = bob.peek_one();
    assert_eq!(bye.dialog, Some(b_d));
    assert_eq!(
        start_line(&bye.bytes),
        "BYE sip:alice@client.atlanta.example.com SIP/2.0"
    );
    assert_eq!(
        ids(&bye.bytes),
        (
            CALL.to_owned(),
            bob_tag.clone(),
            Some(ATAG.to_owned()),
            bye_cseq,
            "BYE".to_owned()
        )
    );
    assert!(values(&bye.bytes, HeaderName::Route).is_empty());
    assert_eq!(
        header(&bye.bytes, "From"),
        format!("Bob <sip:bob@biloxi.example.com>;tag={bob_tag}")
    );
    assert_eq!(
        header(&bye.bytes, "To"),
        format!("Alice <sip:alice@atlanta.example.com>;tag={ATAG}")
    );
    let bye = deliver_one(&mut bob, &[], &mut alice, 30);
    assert_eq!(bye.verdict, Some(Verdict::Bye { dialog: a_d }));
    assert_eq!(alice.mgr.len(), 0);

    // F6 200 OK.
    let ok = deliver_one(&mut alice, &[], &mut bob, 31);
    assert!(start_line(&ok.bytes).starts_with("SIP/2.0 200 "));
    assert_eq!(
        ok.verdict,
        Some(Verdict::Ended {
            dialog: b_d,
            status: 200
        })
    );

    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 3665 §3.2: the same through two Record-Routing proxies. `bob_hangs_up` as in the RFC
/// (F18 BYE Bob → Proxy 2), otherwise Alice hangs up.
fn two_proxies(bob_hangs_up: bool) {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (mut p1, mut p2) = (
        Proxy::new("ss1.atlanta.example.com"),
        Proxy::new("ss2.biloxi.example.com"),
    );
    let (ab, ba) = ([&p1, &p2], [&p2, &p1]);

    // INVITE Alice → Proxy 1 (pre-loaded Route) → Proxy 2 → Bob.
    let inv = invite(CALL, ATAG, Some(&p1.route()));
    alice.mgr.on_sent(&inv, 0).unwrap();
    let got = deliver_msg(&inv, &ab, &mut bob, 0);
    assert_eq!(got.seen, [Observation::Invite, Observation::Invite]);
    let Some(Verdict::NewInvite { to_tag }) = got.verdict else {
        panic!("INVITE: {:?}", got.verdict)
    };
    let bob_tag = to_tag.as_str().to_owned();
    let inv_at_bob = got.bytes;
    assert_eq!(
        values(&inv_at_bob, HeaderName::RecordRoute),
        [p2.route(), p1.route()]
    );
    assert!(values(&inv_at_bob, HeaderName::Route).is_empty());
    assert_eq!(values(&inv_at_bob, HeaderName::Via).len(), 3);

    // 100 Trying is hop by hop: Proxy 2 absorbs Bob's.
    bob.mgr
        .respond(&inv_at_bob, 100, &no_parts(), 5, &mut bob.out)
        .unwrap();
    let trying = deliver_one(&mut bob, &ba, &mut alice, 5);
    assert_eq!(
        (trying.seen.as_slice(), trying.verdict),
        (&[Observation::Other][..], None)
    );

    // 180 Ringing: an early dialog at every hop.
    let b_d = bob
        .mgr
        .respond(&inv_at_bob, 180, &no_parts(), 10, &mut bob.out)
        .unwrap()
        .unwrap();
    let ringing = deliver_one(&mut bob, &ba, &mut alice, 10);
    assert_eq!(
        values(&ringing.sent, HeaderName::RecordRoute),
        [p2.route(), p1.route()],
        "§12.1.1"
    );
    let [Observation::Early {
        dialog: o2,
        created: true,
    }, Observation::Early {
        dialog: o1,
        created: true,
    }] = ringing.seen[..]
    else {
        panic!("180 at the proxies: {:?}", ringing.seen)
    };
    let Some(Verdict::Provisional {
        dialog: Some(a_d),
        status: 180,
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    assert_eq!(
        values(&ringing.bytes, HeaderName::Via).len(),
        1,
        "the proxies popped their Via"
    );
    // The early dialog already has the route set, reversed for the UAC (§12.1.2).
    let early_routes: Vec<String> = alice
        .mgr
        .info(a_d)
        .unwrap()
        .route_set()
        .iter()
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert_eq!(early_routes, [p1.route(), p2.route()]);

    // 200 OK: route sets from Record-Route, reversed for the UAC only (§12.1.1, §12.1.2).
    bob.mgr
        .respond(&inv_at_bob, 200, &no_parts(), 20, &mut bob.out)
        .unwrap();
    let ok = deliver_one(&mut bob, &ba, &mut alice, 20);
    assert_eq!(
        values(&ok.sent, HeaderName::RecordRoute),
        [p2.route(), p1.route()],
        "§12.1.1: the 2xx copies Record-Route in order"
    );
    assert_eq!(
        ok.seen,
        [
            Observation::Confirmed {
                dialog: o2,
                created: false
            },
            Observation::Confirmed {
                dialog: o1,
                created: false
            }
        ]
    );
    assert_eq!(
        ok.verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    let a_info = alice.mgr.info(a_d).unwrap();
    let routes = |r: &[Box<[u8]>]| -> Vec<String> {
        r.iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    };
    assert_eq!(routes(a_info.route_set()), [p1.route(), p2.route()]);
    assert_eq!(a_info.remote_target(), bob.contact_uri.as_bytes());
    let b_info = bob.mgr.info(b_d).unwrap();
    assert_eq!(routes(b_info.route_set()), [p2.route(), p1.route()]);
    for p in [&p1, &p2] {
        let o = if std::ptr::eq(p, &p1) { o1 } else { o2 };
        assert_eq!(p.mgr.state(o).unwrap().phase(), Phase::Confirmed);
        let info = p.mgr.info(o).unwrap();
        assert_eq!(info.local_tag(), ATAG.as_bytes());
        assert_eq!(info.remote_tag(), bob_tag.as_bytes());
    }

    // ACK: Request-URI = Bob's Contact, Route = Proxy 1, Proxy 2 (§12.2.1.1 loose routing).
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    let ack = alice.peek_one();
    assert_eq!(request_uri(&ack.bytes), bob.contact_uri);
    assert_eq!(
        values(&ack.bytes, HeaderName::Route),
        [p1.route(), p2.route()]
    );
    assert_eq!(ack.next_hop, Some(p1.uri()));
    let ack = deliver_one(&mut alice, &ab, &mut bob, 25);
    assert_eq!(
        ack.seen,
        [
            Observation::InDialog { dialog: o1 },
            Observation::InDialog { dialog: o2 }
        ]
    );
    assert_eq!(ack.verdict, Some(Verdict::Ack { dialog: b_d }));

    if bob_hangs_up {
        // BYE Bob → Proxy 2 → Proxy 1 → Alice: Route = Proxy 2, Proxy 1 (UAS: as recorded).
        bob.mgr
            .request(b_d, Method::Bye, &RequestBody::default(), 30, &mut bob.out)
            .unwrap();
        let bye = bob.peek_one();
        assert_eq!(
            request_uri(&bye.bytes),
            "sip:alice@client.atlanta.example.com"
        );
        assert_eq!(
            values(&bye.bytes, HeaderName::Route),
            [p2.route(), p1.route()]
        );
        assert_eq!(bye.next_hop, Some(p2.uri()));
        let bye = deliver_one(&mut bob, &ba, &mut alice, 30);
        assert_eq!(
            bye.seen,
            [
                Observation::InDialog { dialog: o2 },
                Observation::InDialog { dialog: o1 }
            ]
        );
        assert_eq!(bye.verdict, Some(Verdict::Bye { dialog: a_d }));
        let ok = deliver_one(&mut alice, &ab, &mut bob, 31);
        assert_eq!(
            ok.seen,
            [
                Observation::Ended { dialog: o1 },
                Observation::Ended { dialog: o2 }
            ]
        );
        assert_eq!(
            ok.verdict,
            Some(Verdict::Ended {
                dialog: b_d,
                status: 200
            })
        );
    } else {
        // BYE Alice → Proxy 1 → Proxy 2 → Bob: Route = Proxy 1, Proxy 2 (UAC: reversed).
        let cseq = alice
            .mgr
            .request(
                a_d,
                Method::Bye,
                &RequestBody::default(),
                30,
                &mut alice.out,
            )
            .unwrap();
        assert_eq!(cseq, 2, "§12.2.1.1: the INVITE's CSeq plus one");
        let bye = alice.peek_one();
        assert_eq!(request_uri(&bye.bytes), bob.contact_uri);
        assert_eq!(
            values(&bye.bytes, HeaderName::Route),
            [p1.route(), p2.route()]
        );
        assert_eq!(bye.next_hop, Some(p1.uri()));
        let bye = deliver_one(&mut alice, &ab, &mut bob, 30);
        assert_eq!(
            bye.seen,
            [
                Observation::InDialog { dialog: o1 },
                Observation::InDialog { dialog: o2 }
            ]
        );
        assert_eq!(bye.verdict, Some(Verdict::Bye { dialog: b_d }));
        let ok = deliver_one(&mut bob, &ba, &mut alice, 31);
        assert_eq!(
            ok.seen,
            [
                Observation::Ended { dialog: o2 },
                Observation::Ended { dialog: o1 }
            ]
        );
        assert_eq!(
            ok.verdict,
            Some(Verdict::Ended {
                dialog: a_d,
                status: 200
            })
        );
    }

    alice.assert_clean("alice");
    bob.assert_clean("bob");
    p1.assert_clean("proxy 1");
    p2.assert_clean("proxy 2");
}

#[test]
fn rfc3665_3_2_session_through_two_proxies_bob_hangs_up() {
    two_proxies(true);
}

#[test]
fn rfc3665_3_2_session_through_two_proxies_alice_hangs_up() {
    two_proxies(false);
}

// ---------------------------------------------------------------------------------------------
// 2.–4. Unsuccessful sessions
// ---------------------------------------------------------------------------------------------

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
    let Some(Verdict::NewInvite { to_tag }) = got.verdict else {
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
    assert_eq!(got.verdict, Some(Verdict::Cancelled { dialogs_ended: 1 }));
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
            Some(Verdict::Cancelled { dialogs_ended: 0 })
                | Some(Verdict::Rejected {
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

// ---------------------------------------------------------------------------------------------
// 5. Forking
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 6. re-INVITE
// ---------------------------------------------------------------------------------------------

/// RFC 3261 §14 / RFC 3665 §3.7-style address change: alice re-INVITEs with a new offer and a
/// new Contact, bob answers 200 with a new Contact too; both remote targets are replaced
/// (§12.2.1.2, §12.2.2) and the ACK carries the re-INVITE's CSeq and goes to the new target.
#[test]
fn reinvite_refreshes_both_targets_and_is_acked_with_its_cseq() {
    // Alice's manager writes her new Contact; the first INVITE had the old one.
    let (mut alice, mut bob) = (Ua::new("alice", "192.0.2.201"), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    assert_eq!(
        bob.mgr.info(b_d).unwrap().remote_target(),
        b"sip:alice@client.atlanta.example.com"
    );

    let cseq = alice
        .mgr
        .request(
            a_d,
            Method::Invite,
            &sdp_body(SDP_REOFFER),
            1000,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(cseq, 2);
    let reinvite = alice.peek_one();
    assert_eq!(request_uri(&reinvite.bytes), bob.contact_uri);
    assert_eq!(
        header(&reinvite.bytes, "Contact"),
        "<sip:alice@192.0.2.201>"
    );
    assert_eq!(header(&reinvite.bytes, "Content-Type"), "application/sdp");
    assert!(reinvite.bytes.ends_with(SDP_REOFFER.as_bytes()));
    assert_eq!(
        header(&reinvite.bytes, "Content-Length"),
        SDP_REOFFER.len().to_string()
    );
    let got = deliver_one(&mut alice, &[], &mut bob, 1000);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Invite
        })
    );
    // A retransmission of the re-INVITE is recognised as such (§12.2.2: same CSeq).
    assert_eq!(
        bob.mgr.on_received(&got.bytes, 1001, &mut bob.out).unwrap(),
        Verdict::Retransmission
    );

    let parts = ResponseParts {
        contact: Some(b"<sip:bob@192.0.2.44:5062>"),
        content_type: Some(b"application/sdp"),
        body: SDP_REOFFER.as_bytes(),
        extra_headers: &[],
    };
    assert_eq!(
        bob.mgr
            .respond(&got.bytes, 200, &parts, 1010, &mut bob.out)
            .unwrap(),
        Some(b_d)
    );
    assert_eq!(
        bob.mgr.info(b_d).unwrap().remote_target(),
        b"sip:alice@192.0.2.201",
        "§12.2.2: the UAS takes the re-INVITE's Contact as remote target"
    );
    let ok = deliver_one(&mut bob, &[], &mut alice, 1010);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Invite,
            cseq: 2
        })
    );
    assert_eq!(
        alice.mgr.info(a_d).unwrap().remote_target(),
        b"sip:bob@192.0.2.44:5062",
        "§12.2.1.2: a 2xx to a target refresh replaces the remote target"
    );

    alice.mgr.ack(a_d, 2, &mut alice.out).unwrap();
    let ack = alice.peek_one();
    assert_eq!(
        start_line(&ack.bytes),
        "ACK sip:bob@192.0.2.44:5062 SIP/2.0"
    );
    assert_eq!(ids(&ack.bytes).3, 2);
    assert_eq!(ids(&ack.bytes).4, "ACK");
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 1020).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );

    // The next request from either side uses the new targets.
    bob.mgr
        .request(
            b_d,
            Method::Bye,
            &RequestBody::default(),
            2000,
            &mut bob.out,
        )
        .unwrap();
    assert_eq!(request_uri(&bob.peek_one().bytes), "sip:alice@192.0.2.201");
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 2000).verdict,
        Some(Verdict::Bye { dialog: a_d })
    );
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 2001).verdict,
        Some(Verdict::Ended {
            dialog: b_d,
            status: 200
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// A re-INVITE through the two proxies keeps the route set (§12.2.1.2: a target refresh does
/// not change it) and the observers follow it.
#[test]
fn reinvite_through_two_proxies_keeps_the_route_set() {
    let (mut alice, mut bob) = (Ua::new("alice", "192.0.2.201"), Ua::bob());
    let (mut p1, mut p2) = (
        Proxy::new("ss1.atlanta.example.com"),
        Proxy::new("ss2.biloxi.example.com"),
    );
    let (ab, ba) = ([&p1, &p2], [&p2, &p1]);
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &ab, CALL, 0);

    alice
        .mgr
        .request(
            a_d,
            Method::Invite,
            &sdp_body(SDP_REOFFER),
            1000,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(
        values(&alice.peek_one().bytes, HeaderName::Route),
        [p1.route(), p2.route()]
    );
    let got = deliver_one(&mut alice, &ab, &mut bob, 1000);
    assert!(matches!(
        got.seen[..],
        [Observation::InDialog { .. }, Observation::InDialog { .. }]
    ));
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Invite
        })
    );
    let parts = ResponseParts {
        contact: Some(b"<sip:bob@192.0.2.44>"),
        ..ResponseParts::default()
    };
    bob.mgr
        .respond(&got.bytes, 200, &parts, 1010, &mut bob.out)
        .unwrap();
    let ok = deliver_one(&mut bob, &ba, &mut alice, 1010);
    assert!(matches!(
        ok.seen[..],
        [Observation::InDialog { .. }, Observation::InDialog { .. }]
    ));
    assert!(matches!(
        ok.verdict,
        Some(Verdict::Response {
            status: 200,
            cseq: 2,
            ..
        })
    ));
    alice.mgr.ack(a_d, 2, &mut alice.out).unwrap();
    let ack = alice.peek_one();
    assert_eq!(request_uri(&ack.bytes), "sip:bob@192.0.2.44");
    assert_eq!(
        values(&ack.bytes, HeaderName::Route),
        [p1.route(), p2.route()]
    );
    assert_eq!(
        deliver_one(&mut alice, &ab, &mut bob, 1020).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );

    bob.mgr
        .request(
            b_d,
            Method::Bye,
            &RequestBody::default(),
            2000,
            &mut bob.out,
        )
        .unwrap();
    let bye = bob.peek_one();
    assert_eq!(request_uri(&bye.bytes), "sip:alice@192.0.2.201");
    assert_eq!(
        values(&bye.bytes, HeaderName::Route),
        [p2.route(), p1.route()]
    );
    assert_eq!(
        deliver_one(&mut bob, &ba, &mut alice, 2000).verdict,
        Some(Verdict::Bye { dialog: a_d })
    );
    deliver_one(&mut alice, &ab, &mut bob, 2001);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
    p1.assert_clean("proxy 1");
    p2.assert_clean("proxy 2");
}

// ---------------------------------------------------------------------------------------------
// 7. Glare
// ---------------------------------------------------------------------------------------------

/// RFC 3261 §14.1/§14.2: both sides re-INVITE at once; each answers the other 491; the owner
/// of the Call-ID (alice, the UAC) retries after 2.1–4 s, bob after 0–2 s, in units of 10 ms;
/// the retries succeed.
#[test]
fn reinvite_glare_491_and_retry() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let now = 10_000;

    alice
        .mgr
        .request(
            a_d,
            Method::Invite,
            &sdp_body(SDP_REOFFER),
            now,
            &mut alice.out,
        )
        .unwrap();
    bob.mgr
        .request(
            b_d,
            Method::Invite,
            &sdp_body(flows::SDP_ALICE),
            now,
            &mut bob.out,
        )
        .unwrap();
    let a_reinvite = alice.drain().remove(0).bytes;
    let b_reinvite = bob.drain().remove(0).bytes;

    // Each receives the other's while its own is pending: 491 Request Pending (§14.2).
    let at_bob = deliver_msg(&a_reinvite, &[], &mut bob, now);
    assert_eq!(
        at_bob.verdict,
        Some(Verdict::Rejected {
            status: 491,
            dialog: Some(b_d)
        })
    );
    let at_alice = deliver_msg(&b_reinvite, &[], &mut alice, now);
    assert_eq!(
        at_alice.verdict,
        Some(Verdict::Rejected {
            status: 491,
            dialog: Some(a_d)
        })
    );
    let to_alice = bob.peek_one();
    assert!(start_line(&to_alice.bytes).starts_with("SIP/2.0 491 "));
    assert_eq!(ids(&to_alice.bytes).3, ids(&a_reinvite).3);

    // Each receives the 491 to its own re-INVITE.
    let got = deliver_one(&mut bob, &[], &mut alice, now);
    let Some(Verdict::Glare {
        dialog,
        retry_at_ms: alice_retry,
    }) = got.verdict
    else {
        panic!("alice's 491: {:?}", got.verdict)
    };
    assert_eq!(dialog, a_d);
    let got = deliver_one(&mut alice, &[], &mut bob, now);
    let Some(Verdict::Glare {
        dialog,
        retry_at_ms: bob_retry,
    }) = got.verdict
    else {
        panic!("bob's 491: {:?}", got.verdict)
    };
    assert_eq!(dialog, b_d);
    assert!(
        (now + 2100..=now + 4000).contains(&alice_retry),
        "§14.1: the Call-ID owner waits 2.1–4 s, got {} ms",
        alice_retry - now
    );
    assert!(
        (now..=now + 2000).contains(&bob_retry),
        "§14.1: the other side waits 0–2 s, got {} ms",
        bob_retry - now
    );
    assert_eq!((alice_retry - now) % 10, 0, "§14.1: units of 10 ms");
    assert_eq!((bob_retry - now) % 10, 0, "§14.1: units of 10 ms");
    for (ua, d) in [(&alice, a_d), (&bob, b_d)] {
        assert!(
            !ua.mgr
                .state(d)
                .unwrap()
                .flags()
                .contains(Flags::INVITE_PENDING),
            "the 491 ended the re-INVITE transaction"
        );
    }

    // Bob's retry comes first and succeeds...
    let cseq = bob
        .mgr
        .request(
            b_d,
            Method::Invite,
            &sdp_body(flows::SDP_ALICE),
            bob_retry,
            &mut bob.out,
        )
        .unwrap();
    let got = deliver_one(&mut bob, &[], &mut alice, bob_retry);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: a_d,
            method: Method::Invite
        })
    );
    alice
        .mgr
        .respond(&got.bytes, 200, &no_parts(), bob_retry, &mut alice.out)
        .unwrap();
    let ok = deliver_one(&mut alice, &[], &mut bob, bob_retry);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: b_d,
            status: 200,
            method: Method::Invite,
            cseq
        })
    );
    bob.mgr.ack(b_d, cseq, &mut bob.out).unwrap();
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, bob_retry).verdict,
        Some(Verdict::Ack { dialog: a_d })
    );

    // ...then alice's.
    let cseq = alice
        .mgr
        .request(
            a_d,
            Method::Invite,
            &sdp_body(SDP_REOFFER),
            alice_retry,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(cseq, 3, "the refused re-INVITE used 2");
    let got = deliver_one(&mut alice, &[], &mut bob, alice_retry);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Invite
        })
    );
    bob.mgr
        .respond(&got.bytes, 200, &no_parts(), alice_retry, &mut bob.out)
        .unwrap();
    let ok = deliver_one(&mut bob, &[], &mut alice, alice_retry);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Invite,
            cseq: 3
        })
    );
    alice.mgr.ack(a_d, 3, &mut alice.out).unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, alice_retry).verdict,
        Some(Verdict::Ack { dialog: b_d })
    );

    hang_up(&mut alice, &mut bob, &[], a_d, b_d, alice_retry + 100);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

// ---------------------------------------------------------------------------------------------
// 8. Errors
// ---------------------------------------------------------------------------------------------

/// §12.2.2: a request with a To tag that matches no dialog gets 481, its From and To (tags
/// included) copied (§8.2.6.2); an ACK that matches nothing gets no response at all (§17).
#[test]
fn in_dialog_request_for_unknown_dialog_gets_481_with_its_tags() {
    let mut bob = Ua::bob();
    let info = "INFO sip:bob@client.biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bKnashds7\r\n\
        Max-Forwards: 70\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
        CSeq: 7 INFO\r\n\
        Content-Length: 0\r\n\r\n";
    let got = deliver_msg(info.as_bytes(), &[], &mut bob, 0);
    assert_eq!(
        got.verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    let reply = bob.drain().remove(0);
    assert!(start_line(&reply.bytes).starts_with("SIP/2.0 481 "));
    assert_eq!(reply.next_hop, None);
    assert_eq!(
        header(&reply.bytes, "From"),
        "Alice <sip:alice@atlanta.example.com>;tag=1928301774"
    );
    assert_eq!(
        header(&reply.bytes, "To"),
        "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    );
    assert_eq!(
        header(&reply.bytes, "Call-ID"),
        "a84b4c76e66710@pc33.atlanta.example.com"
    );
    assert_eq!(header(&reply.bytes, "CSeq"), "7 INFO");
    assert_eq!(
        header(&reply.bytes, "Via"),
        "SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bKnashds7"
    );

    let ack = info
        .replace("INFO sip", "ACK sip")
        .replace("7 INFO", "7 ACK");
    let got = deliver_msg(ack.as_bytes(), &[], &mut bob, 1);
    assert_eq!(got.verdict, Some(Verdict::Stray));
    assert!(bob.out.is_empty(), "an ACK is never answered");
    bob.assert_clean("bob");
}

/// §12.2.2: a request whose CSeq is lower than the last one from the peer is out of order and
/// gets 500; the dialog lives on (§12.2.1.2: only 481/408 end it). Same CSeq again is a
/// retransmission.
#[test]
fn in_dialog_request_with_lower_cseq_gets_500_and_the_dialog_lives_on() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let dtmf = RequestBody {
        content_type: Some(b"application/dtmf-relay"),
        body: b"Signal=5\r\nDuration=160\r\n",
        extra_headers: &[],
    };
    let info_cseq = alice
        .mgr
        .request(a_d, Method::Info, &dtmf, 100, &mut alice.out)
        .unwrap();
    let options_cseq = alice
        .mgr
        .request(
            a_d,
            Method::Options,
            &RequestBody::default(),
            101,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!((info_cseq, options_cseq), (2, 3));
    let sent = alice.drain();
    let (info, options) = (&sent[0].bytes, &sent[1].bytes);

    // UDP reorders: the OPTIONS arrives first.
    let got = deliver_msg(options, &[], &mut bob, 110);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Options
        })
    );
    bob.mgr
        .respond(options, 200, &no_parts(), 110, &mut bob.out)
        .unwrap();
    assert_eq!(
        deliver_msg(options, &[], &mut bob, 111).verdict,
        Some(Verdict::Retransmission)
    );
    let got = deliver_msg(info, &[], &mut bob, 112);
    assert_eq!(
        got.verdict,
        Some(Verdict::Rejected {
            status: 500,
            dialog: Some(b_d)
        })
    );
    let answers = deliver(&mut bob, &[], &mut alice, 113);
    assert_eq!(answers.len(), 2);
    assert_eq!(
        answers[0].verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Options,
            cseq: 3
        })
    );
    assert!(start_line(&answers[1].bytes).starts_with("SIP/2.0 500 "));
    assert_eq!(header(&answers[1].bytes, "CSeq"), "2 INFO");
    assert_eq!(
        answers[1].verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 500,
            method: Method::Info,
            cseq: 2
        })
    );
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );

    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §12.2.1.2: a 481 to a request inside a dialog ends the dialog. Bob lost the call (restart);
/// alice's INFO gets bob's automatic 481 and alice's dialog ends.
#[test]
fn response_481_to_info_ends_the_dialog() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    assert!(bob.mgr.terminate(b_d));
    alice
        .mgr
        .request(
            a_d,
            Method::Info,
            &RequestBody::default(),
            100,
            &mut alice.out,
        )
        .unwrap();
    let info = deliver_one(&mut alice, &[], &mut bob, 100);
    assert_eq!(
        info.verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    let reply = bob.peek_one();
    assert_eq!(
        header(&reply.bytes, "To"),
        header(&info.bytes, "To"),
        "tags copied"
    );
    assert_eq!(header(&reply.bytes, "From"), header(&info.bytes, "From"));
    let got = deliver_one(&mut bob, &[], &mut alice, 101);
    assert_eq!(
        got.verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 481
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §12.2.1.2: a 408 to a request inside a dialog ends it too.
#[test]
fn response_408_to_options_ends_the_dialog() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    bob.mgr
        .request(
            b_d,
            Method::Options,
            &RequestBody::default(),
            100,
            &mut bob.out,
        )
        .unwrap();
    let options = deliver_one(&mut bob, &[], &mut alice, 100);
    assert_eq!(
        options.verdict,
        Some(Verdict::Request {
            dialog: a_d,
            method: Method::Options
        })
    );
    alice
        .mgr
        .respond(&options.bytes, 408, &no_parts(), 101, &mut alice.out)
        .unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 101).verdict,
        Some(Verdict::Ended {
            dialog: b_d,
            status: 408
        })
    );
    // Alice answered 408 herself; she ends her side with BYE... which bob no longer knows.
    alice
        .mgr
        .request(
            a_d,
            Method::Bye,
            &RequestBody::default(),
            102,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 102).verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 103).verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 481
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 3261 §12 (dialog ID = Call-ID + local tag + remote tag, seen from each side): a UA
/// that calls itself holds two distinct dialogs, a UAC and a UAS one, and every in-dialog
/// request finds the right one.
#[test]
fn ua_calling_itself_holds_two_dialogs() {
    let mut alice = Ua::alice();
    let inv = invite_to(
        "sip:alice@client.atlanta.example.com",
        "Alice <sip:alice@atlanta.example.com>",
        CALL,
        ATAG,
        None,
    );
    alice.mgr.on_sent(&inv, 0).unwrap();
    let loop_once = |ua: &mut Ua, now: u64| -> Vec<Option<Verdict>> {
        ua.drain()
            .iter()
            .map(|m| deliver_msg(&m.bytes, &[], ua, now).verdict)
            .collect()
    };
    let got = deliver_msg(&inv, &[], &mut alice, 0);
    let Some(Verdict::NewInvite { to_tag }) = got.verdict else {
        panic!("INVITE to myself: {:?}", got.verdict)
    };
    let uas = alice
        .mgr
        .respond(&inv, 180, &no_parts(), 1, &mut alice.out)
        .unwrap()
        .unwrap();
    let [Some(Verdict::Provisional {
        dialog: Some(uac),
        status: 180,
    })] = loop_once(&mut alice, 1)[..]
    else {
        panic!("180 to myself")
    };
    assert_ne!(uac, uas);
    assert_eq!(alice.mgr.len(), 2);
    alice
        .mgr
        .respond(&inv, 200, &no_parts(), 2, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 2),
        [Some(Verdict::Confirmed {
            dialog: uac,
            cseq: 1,
            extra: false
        })]
    );
    let (uac_info, uas_info) = (alice.mgr.info(uac).unwrap(), alice.mgr.info(uas).unwrap());
    assert_eq!(uac_info.local_tag(), ATAG.as_bytes());
    assert_eq!(uac_info.remote_tag(), to_tag.as_str().as_bytes());
    assert_eq!(uas_info.local_tag(), to_tag.as_str().as_bytes());
    assert_eq!(uas_info.remote_tag(), ATAG.as_bytes());

    alice.mgr.ack(uac, 1, &mut alice.out).unwrap();
    assert_eq!(
        loop_once(&mut alice, 3),
        [Some(Verdict::Ack { dialog: uas })]
    );
    // A request from the UAS side finds the UAC dialog, and its response the UAS dialog.
    let cseq = alice
        .mgr
        .request(
            uas,
            Method::Info,
            &RequestBody::default(),
            4,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 4),
        [Some(Verdict::Request {
            dialog: uac,
            method: Method::Info
        })]
    );
    let info = {
        let mut out = sipdialog::manager::Outbox::new();
        alice
            .mgr
            .request(uas, Method::Info, &RequestBody::default(), 5, &mut out)
            .unwrap();
        let bytes = out.iter().next().unwrap().bytes.to_vec();
        bytes
    };
    assert_eq!(ids(&info).3, cseq + 1);
    assert_eq!(
        deliver_msg(&info, &[], &mut alice, 5).verdict,
        Some(Verdict::Request {
            dialog: uac,
            method: Method::Info
        })
    );
    alice
        .mgr
        .respond(&info, 200, &no_parts(), 5, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 5),
        [Some(Verdict::Response {
            dialog: uas,
            status: 200,
            method: Method::Info,
            cseq: cseq + 1
        })]
    );
    // The UAC hangs up: its BYE ends the UAS dialog, the 200 the UAC one.
    alice
        .mgr
        .request(uac, Method::Bye, &RequestBody::default(), 6, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 6),
        [Some(Verdict::Bye { dialog: uas })]
    );
    assert_eq!(
        loop_once(&mut alice, 7),
        [Some(Verdict::Ended {
            dialog: uac,
            status: 200
        })]
    );
    alice.assert_clean("alice");
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

/// RFC 6026 §7.1 (updating RFC 3261 §17.2.1): after a 2xx the INVITE server transaction stays
/// in "Accepted" for 64×T1 and absorbs retransmissions of the INVITE. A late copy of the
/// INVITE (UDP reorders; the UAC retransmits until it hears a response) is not a new call.
#[test]
fn invite_retransmission_after_2xx_is_not_a_new_call() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, inv_at_bob) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let late = deliver_msg(&inv_at_bob, &[], &mut bob, 100);
    assert_eq!(
        late.verdict,
        Some(Verdict::Retransmission),
        "a copy of the answered INVITE was taken for a new call"
    );
    assert_eq!(bob.mgr.len(), 1);
    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §13.3.1.4: no ACK for the 2xx within 64×T1: the UAS ends the dialog with BYE, which the
/// caller (who did get the 200) accepts.
#[test]
fn lost_ack_the_uas_hangs_up_after_64_t1() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let inv = invite(CALL, ATAG, None);
    alice.mgr.on_sent(&inv, 0).unwrap();
    deliver_msg(&inv, &[], &mut bob, 0);
    let b_d = bob
        .mgr
        .respond(&inv, 200, &no_parts(), 10, &mut bob.out)
        .unwrap()
        .unwrap();
    let Some(Verdict::Confirmed { dialog: a_d, .. }) =
        deliver_one(&mut bob, &[], &mut alice, 10).verdict
    else {
        panic!("200")
    };
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    alice.out.clear(); // lost
    assert!(bob.run_timers(10 + T64 - 1).is_empty());
    let expired = bob.run_timers(10 + T64);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].dialog, b_d);
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 10 + T64).verdict,
        Some(Verdict::Bye { dialog: a_d })
    );
    // Bob's dialog left the table when it expired; the 200 to his BYE is a stray.
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 10 + T64 + 1).verdict,
        Some(Verdict::Stray)
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

// ---------------------------------------------------------------------------------------------
// 9. Property test: reordering, duplication and loss over many concurrent calls
// ---------------------------------------------------------------------------------------------

mod chaos {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;
    use sipdialog::build::ResponseParts;
    use sipdialog::manager::{DialogManager, ManagerError, Outbox, RequestBody, Verdict};
    use sipdialog::table::{DialogHandle, TableError};
    use sipdialog::wire::{MessageView, Method};

    use super::flows::{config, invite, run_timers, FAR};

    /// How a call goes when nothing is lost.
    #[derive(Clone, Copy, Debug)]
    enum Script {
        AliceHangsUp,
        BobHangsUp,
        Busy,
        Cancel,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Node {
        Alice,
        Bob,
        Observer,
    }

    struct Packet {
        bytes: Vec<u8>,
        to: Node,
        /// Between alice and bob: the observer in the middle sees it.
        observed: bool,
    }

    /// One network step: which of the first `WINDOW` packets goes next, how many copies of it
    /// arrive (0: lost), and how much time passes first.
    #[derive(Clone, Copy, Debug)]
    struct Step {
        pick: usize,
        copies: u8,
        dt: u64,
    }

    /// How far UDP may reorder: a packet may overtake this many sent before it.
    const WINDOW: usize = 4;

    struct Call {
        script: Script,
        call_id: String,
        from_tag: String,
        cancel_sent: bool,
        alice_bye: HashSet<DialogHandle>,
        bob_bye: HashSet<DialogHandle>,
        bob_answered: bool,
    }

    struct World {
        alice: DialogManager,
        bob: DialogManager,
        observer: DialogManager,
        outs: [Outbox; 3],
        queue: Vec<Packet>,
        calls: Vec<Call>,
        by_call_id: HashMap<String, usize>,
        now: u64,
    }

    /// Errors an application may get when it acts on a dialog that the network already ended
    /// (a BYE crossing an ACK, a CANCEL after the final response…).
    fn expected(e: &ManagerError) -> bool {
        matches!(
            e,
            ManagerError::UnknownDialog
                | ManagerError::Table(TableError::Stale | TableError::State(_))
        )
    }

    fn allow<T>(r: Result<T, ManagerError>, what: &str) {
        if let Err(e) = r {
            assert!(expected(&e), "{what}: unexpected error {e:?}");
        }
    }

    impl World {
        fn new(scripts: &[Script]) -> World {
            let mut w = World {
                alice: DialogManager::new(config("alice", "client.atlanta.example.com")).unwrap(),
                bob: DialogManager::new(config("bob", "client.biloxi.example.com")).unwrap(),
                observer: DialogManager::new(config("sbc", "sbc.example.net")).unwrap(),
                outs: [Outbox::new(), Outbox::new(), Outbox::new()],
                queue: Vec::new(),
                calls: Vec::new(),
                by_call_id: HashMap::new(),
                now: 0,
            };
            for (i, &script) in scripts.iter().enumerate() {
                let call_id = format!("c{i}@atlanta.example.com");
                let from_tag = format!("a{i}x");
                let inv = invite(&call_id, &from_tag, None);
                assert_eq!(w.alice.on_sent(&inv, 0).unwrap(), None);
                w.queue.push(Packet {
                    bytes: inv,
                    to: Node::Bob,
                    observed: true,
                });
                w.by_call_id.insert(call_id.clone(), i);
                w.calls.push(Call {
                    script,
                    call_id,
                    from_tag,
                    cancel_sent: false,
                    alice_bye: HashSet::new(),
                    bob_bye: HashSet::new(),
                    bob_answered: false,
                });
            }
            w
        }

        fn mgr(&self, node: Node) -> &DialogManager {
            match node {
                Node::Alice => &self.alice,
                Node::Bob => &self.bob,
                Node::Observer => &self.observer,
            }
        }

        /// Where a message goes: requests by their next hop, responses back along their top Via.
        fn route(bytes: &[u8], next_hop: Option<&[u8]>) -> Node {
            let view = MessageView::parse(bytes).expect("managers write valid messages");
            let target = match view.method() {
                Some(_) => next_hop.or(view.request_uri()).unwrap_or_default(),
                None => view.via_sent_by().unwrap_or_default(),
            };
            let target = String::from_utf8_lossy(target);
            if target.contains("atlanta") {
                Node::Alice
            } else if target.contains("biloxi") {
                Node::Bob
            } else {
                Node::Observer
            }
        }

        /// Moves every outbox's messages onto the network.
        fn collect(&mut self) {
            for (i, from) in [Node::Alice, Node::Bob, Node::Observer]
                .into_iter()
                .enumerate()
            {
                for m in self.outs[i].iter() {
                    let to = World::route(m.bytes, m.next_hop);
                    assert_ne!(to, from, "a message to itself");
                    self.queue.push(Packet {
                        bytes: m.bytes.to_vec(),
                        to,
                        observed: from != Node::Observer && to != Node::Observer,
                    });
                }
                self.outs[i].clear();
            }
        }

        fn timers(&mut self) {
            let now = self.now;
            for (i, node) in [Node::Alice, Node::Bob, Node::Observer]
                .into_iter()
                .enumerate()
            {
                let mut out = std::mem::take(&mut self.outs[i]);
                run_timers(self.mgr(node), &mut out, now);
                self.outs[i] = out;
            }
            self.collect();
        }

        fn deliver(&mut self, p: &Packet) {
            let now = self.now;
            if p.observed {
                if let Err(e) = self.observer.observe(&p.bytes, now) {
                    panic!("observe: {e:?}\n{}", String::from_utf8_lossy(&p.bytes));
                }
            }
            let idx = p.to as usize;
            let mut out = std::mem::take(&mut self.outs[idx]);
            let verdict = match self.mgr(p.to).on_received(&p.bytes, now, &mut out) {
                Ok(v) => v,
                Err(e) => panic!(
                    "{:?} on_received: {e:?}\n{}",
                    p.to,
                    String::from_utf8_lossy(&p.bytes)
                ),
            };
            self.outs[idx] = out;
            self.react(p, verdict);
            self.collect();
        }

        /// What the applications on top do with a verdict.
        fn react(&mut self, p: &Packet, verdict: Verdict) {
            let view = MessageView::parse(&p.bytes).unwrap();
            let call_id = String::from_utf8_lossy(view.call_id()).into_owned();
            let Some(&c) = self.by_call_id.get(&call_id) else {
                panic!("unknown Call-ID {call_id}")
            };
            let now = self.now;
            let [a_out, b_out, _] = &mut self.outs;
            let call = &mut self.calls[c];
            match (p.to, verdict) {
                (
                    Node::Alice,
                    Verdict::Provisional {
                        dialog: Some(_), ..
                    },
                ) if matches!(call.script, Script::Cancel) && !call.cancel_sent => {
                    call.cancel_sent = true;
                    allow(
                        self.alice
                            .cancel(call.call_id.as_bytes(), call.from_tag.as_bytes(), a_out),
                        "cancel",
                    );
                }
                (
                    Node::Alice,
                    Verdict::Confirmed {
                        dialog,
                        cseq,
                        extra,
                    },
                ) => {
                    allow(self.alice.ack(dialog, cseq, a_out), "ack");
                    let hang_up = extra || matches!(call.script, Script::AliceHangsUp);
                    if hang_up && call.alice_bye.insert(dialog) {
                        allow(
                            self.alice.request(
                                dialog,
                                Method::Bye,
                                &RequestBody::default(),
                                now,
                                a_out,
                            ),
                            "alice BYE",
                        );
                    }
                }
                (Node::Alice | Node::Bob, Verdict::Request { .. }) => {
                    let (mgr, out) = if p.to == Node::Alice {
                        (&self.alice, a_out)
                    } else {
                        (&self.bob, b_out)
                    };
                    allow(
                        mgr.respond(&p.bytes, 200, &ResponseParts::default(), now, out),
                        "respond",
                    );
                }
                (Node::Bob, Verdict::NewInvite { .. }) => {
                    call.bob_answered = true;
                    let finals: &[u16] = match call.script {
                        Script::AliceHangsUp | Script::BobHangsUp => &[100, 180, 200],
                        Script::Busy => &[100, 180, 486],
                        Script::Cancel => &[100, 180],
                    };
                    for &status in finals {
                        let r = self.bob.respond(
                            &p.bytes,
                            status,
                            &ResponseParts::default(),
                            now,
                            b_out,
                        );
                        if let Err(e) = r {
                            panic!("bob respond {status}: {e:?}");
                        }
                    }
                }
                (Node::Bob, Verdict::Ack { dialog })
                    if matches!(call.script, Script::BobHangsUp) && call.bob_bye.insert(dialog) =>
                {
                    allow(
                        self.bob
                            .request(dialog, Method::Bye, &RequestBody::default(), now, b_out),
                        "bob BYE",
                    );
                }
                _ => {}
            }
        }

        fn run(&mut self, steps: &[Step]) {
            // Lossy, reordering, duplicating phase.
            for step in steps {
                if self.queue.is_empty() {
                    break;
                }
                self.now += step.dt;
                self.timers();
                if self.queue.is_empty() {
                    break;
                }
                let p = self.queue.remove(step.pick % self.queue.len().min(WINDOW));
                for _ in 0..step.copies {
                    self.deliver(&p);
                }
            }
            // Then a reliable network, and the timers up to far in the future.
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 100_000, "the calls never settle");
                if !self.queue.is_empty() {
                    let p = self.queue.remove(0);
                    self.now += 1;
                    self.deliver(&p);
                    continue;
                }
                let next = [&self.alice, &self.bob, &self.observer]
                    .iter()
                    .filter_map(|m| m.next_deadline())
                    .min();
                match next {
                    Some(at) if at <= FAR => {
                        self.now = self.now.max(at);
                        self.timers();
                    }
                    _ => break,
                }
            }
            self.now = self.now.max(FAR);
            self.timers();
            assert!(self.queue.is_empty());
        }
    }

    fn script() -> impl Strategy<Value = Script> {
        prop_oneof![
            Just(Script::AliceHangsUp),
            Just(Script::BobHangsUp),
            Just(Script::Busy),
            Just(Script::Cancel),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let copies = prop_oneof![12 => Just(1u8), 3 => Just(2u8), 1 => Just(3u8), 2 => Just(0u8)];
        let dt = prop_oneof![20 => 0u64..300, 1 => 20_000u64..40_000];
        (0..WINDOW, copies, dt).prop_map(|(pick, copies, dt)| Step { pick, copies, dt })
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(64)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever UDP does to the messages of up to eight concurrent calls, once they are
        /// over and the timers have run, no dialog and no INVITE record is left anywhere.
        #[test]
        fn reordered_duplicated_lost_calls_leave_nothing_behind(
            scripts in prop::collection::vec(script(), 1..=8),
            steps in prop::collection::vec(step(), 0..160),
        ) {
            let mut world = World::new(&scripts);
            world.run(&steps);
            for (name, m) in [("alice", &world.alice), ("bob", &world.bob), ("observer", &world.observer)] {
                prop_assert_eq!(m.len(), 0, "{} holds dialogs", name);
                prop_assert_eq!(m.pending_invites(), 0, "{} holds INVITE records", name);
            }
        }
    }
}
