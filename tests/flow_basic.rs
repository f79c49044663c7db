//! RFC 3665 successful sessions replayed as raw bytes through `DialogManager`s wired back to
//! back: §3.1 (Alice calls Bob directly, Bob hangs up) and §3.2 (the same through two
//! Record-Routing proxies in `observe` mode, either side hanging up). The verdicts are checked
//! step by step, the bytes where the RFC says what they must hold (Request-URI, Route order,
//! CSeq, tags), and every manager ends with no dialog and, once its timers have run, no INVITE
//! transaction record.

mod flows;

use flows::{
    deliver_msg, deliver_one, header, ids, invite, no_parts, phase, request_uri, start_line,
    values, Proxy, Ua, ATAG, CALL,
};
use sipdialog::manager::{Observation, RequestBody, Verdict};
use sipdialog::state::{Flags, Phase};
use sipdialog::wire::{HeaderName, Method};

/// RFC 3665 §3.1: Alice calls Bob directly; Bob answers, then Bob hangs up (F5 BYE Bob → Alice).
#[test]
fn rfc3665_3_1_successful_session_establishment() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());

    // F1 INVITE Alice → Bob.
    let inv = invite(CALL, ATAG, None);
    assert_eq!(alice.mgr.on_sent(&inv, 0).unwrap(), None);
    assert_eq!(alice.mgr.pending_invites(), 1);
    let got = deliver_msg(&inv, &[], &mut bob, 0);
    let Some(Verdict::NewInvite { to_tag, .. }) = got.verdict else {
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
    let Some(Verdict::NewInvite { to_tag, .. }) = got.verdict else {
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
    let routes = |r: sipdialog::build::RouteSet<'_>| -> Vec<String> {
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
