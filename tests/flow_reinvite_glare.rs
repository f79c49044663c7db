//! re-INVITEs inside an established call (RFC 3261 §14): a target refresh that replaces both
//! remote targets and is ACKed with its own CSeq, the same through two proxies keeping the
//! route set, and glare (§14.1/§14.2): crossing re-INVITEs, 491 on both sides, timed retries.

mod flows;

use flows::{
    deliver_msg, deliver_one, establish, hang_up, header, ids, no_parts, request_uri, start_line,
    values, Proxy, Ua, CALL, SDP_REOFFER,
};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{Observation, RequestBody, Verdict};
use sipdialog::state::Flags;
use sipdialog::wire::{HeaderName, Method};

fn sdp_body(sdp: &str) -> RequestBody<'_> {
    RequestBody {
        content_type: Some(b"application/sdp"),
        body: sdp.as_bytes(),
        extra_headers: &[],
    }
}

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
