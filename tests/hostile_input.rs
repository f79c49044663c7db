//! Hostile input through the manager: malformed requests get their status (rate-limited per
//! source), oversized parts get 413/513, a peer that never answered cannot make us send more
//! than one datagram elsewhere, and an INVITE nobody answers is reported by `on_timeout`.

use std::net::SocketAddr;

use sipdialog::build::{stamp_received, ResponseParts};
use sipdialog::manager::{
    Delivery, DialogManager, ExpiryReason, ManagerConfig, NewCall, Outbox, Verdict,
};
use sipdialog::security::Policy;
use sipdialog::wire::{MessageView, WireError};

const T1: u64 = 500;

fn manager(policy: Policy) -> DialogManager {
    DialogManager::new(ManagerConfig {
        t1_ms: T1,
        policy,
        ..ManagerConfig::default()
    })
    .unwrap()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn request(start: &str, cseq: &str, extra: &str) -> Vec<u8> {
    format!(
        "{start}\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\n\
From: <sip:a@example.com>;tag=f1\r\nTo: <sip:b@example.com>\r\nCall-ID: m1@x\r\n\
CSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn status_of(msg: &[u8]) -> Option<u16> {
    MessageView::parse(msg).ok()?.status_code()
}

/// The answer a malformed request got: (status line, where it goes), or `None`.
fn answer_to(
    manager: &DialogManager,
    bytes: &[u8],
    from: SocketAddr,
) -> Option<(String, SocketAddr)> {
    let mut out = Outbox::new();
    let result = manager.on_received_from(bytes, from, 0, &mut out);
    assert!(result.is_err(), "{result:?}");
    let msg = out.iter().next()?;
    let line = msg.bytes.split(|&b| b == b'\r').next().unwrap_or_default();
    assert_eq!(msg.delivery, Delivery::Once, "stateless");
    Some((String::from_utf8_lossy(line).into_owned(), msg.destination?))
}

#[test]
fn malformed_requests_get_their_status_where_the_via_says() {
    let bob = manager(Policy {
        error_answers_per_second_per_source: 0,
        ..Policy::default()
    });
    let from = addr("192.0.2.1:5070");
    let cases: [(Vec<u8>, &str); 6] = [
        (
            request("OPTIONS sip:b@h SIP/2.0", "x OPTIONS", ""),
            "SIP/2.0 400 Bad Request",
        ),
        (
            request(
                "OPTIONS sip:b@h SIP/2.0",
                "1 OPTIONS",
                "Content-Length: -5\r\n",
            ),
            "SIP/2.0 400 Bad Request",
        ),
        (
            request("OPTIONS sip:b@h SIP/7.0", "1 OPTIONS", ""),
            "SIP/2.0 505 Version Not Supported",
        ),
        (
            request("FOO sip:b@h SIP/2.0", "1 BAR", ""),
            "SIP/2.0 501 Not Implemented",
        ),
        (
            request(
                "INVITE sip:b@h SIP/2.0",
                "1 INVITE",
                &"X-Pad: y\r\n".repeat(300),
            ),
            "SIP/2.0 513 Message Too Large",
        ),
        (
            request("INVITE sip:b@h SIP/2.0", "4294967296 INVITE", ""),
            "SIP/2.0 400 Bad Request",
        ),
    ];
    for (bytes, want) in cases {
        let (line, to) = answer_to(&bob, &bytes, from).expect("answered");
        assert_eq!(line, want, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(to, from);
    }
    // A source port other than the sent-by's, without rport: the sent-by port (§18.2.2).
    let (_, to) = answer_to(&bob, &cases_first(), addr("192.0.2.1:40000")).unwrap();
    assert_eq!(to, addr("192.0.2.1:5070"));
}

fn cases_first() -> Vec<u8> {
    request("OPTIONS sip:b@h SIP/2.0", "x OPTIONS", "")
}

#[test]
fn garbage_and_responses_are_not_answered() {
    let bob = manager(Policy::default());
    let from = addr("192.0.2.1:5070");
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\r\n",
        b"INVITE sip:b@h SIP/2.0\r\nTo: <sip:b@h>\r\n\r\n",
        b"ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nCSeq: x\r\n\r\n",
    ] {
        let mut out = Outbox::new();
        assert!(bob.on_received_from(junk, from, 0, &mut out).is_err());
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(junk));
    }
}

#[test]
fn answers_to_garbage_are_rate_limited_per_source() {
    let bob = manager(Policy {
        error_answers_per_second_per_source: 10,
        error_answer_burst_per_source: 5,
        ..Policy::default()
    });
    let bad = cases_first();
    let answered = |from: &str, at: u64| {
        let mut out = Outbox::new();
        let _ = bob.on_received_from(&bad, addr(from), at, &mut out);
        out.len()
    };
    let burst: usize = (0..100).map(|_| answered("192.0.2.1:5070", 0)).sum();
    assert_eq!(burst, 5, "the burst, then silence");
    assert_eq!(
        answered("192.0.2.2:5070", 0),
        1,
        "another source has its own bucket"
    );
    // A second later: a full bucket again, then ten a second (one every 100 ms).
    let second: usize = (0..100)
        .map(|i| answered("192.0.2.1:5070", 1_000 + i * 10))
        .sum();
    assert!(
        (14..=15).contains(&second),
        "{second} answers in the next second"
    );
}

#[test]
fn oversized_bodies_and_route_sets_are_refused() {
    let bob = manager(Policy {
        max_body_bytes: 100,
        max_route_entries: 4,
        max_route_bytes: 200,
        ..Policy::default()
    });
    let from = addr("192.0.2.1:5070");
    let rr: String = (0..5)
        .map(|i| format!("Record-Route: <sip:p{i}.example;lr>\r\n"))
        .collect();
    let body = "x".repeat(101);
    let with_body = format!(
        "MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKb\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: b@x\r\nCSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\nContent-Length: 101\r\n\r\n{body}"
    );
    for (bytes, status) in [
        (request("INVITE sip:b@h SIP/2.0", "1 INVITE", &rr), 513),
        (with_body.into_bytes(), 413),
    ] {
        let mut out = Outbox::new();
        let verdict = bob.on_received_from(&bytes, from, 0, &mut out).unwrap();
        assert_eq!(
            verdict,
            Verdict::Rejected {
                status,
                dialog: None
            }
        );
        assert_eq!(status_of(out.iter().next().unwrap().bytes), Some(status));
    }
    assert!(bob.is_empty() && bob.pending_invites() == 0);
}

/// A caller whose Contact names a third party and who never ACKs: the BYE that ends the call
/// goes once; requests of a dialog whose peer did ACK are resent only towards that peer.
#[test]
fn no_retransmission_towards_an_address_that_never_answered() {
    let bob = manager(Policy::default());
    let attacker = addr("192.0.2.66:5060");
    let invite = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKatk\r\nFrom: <sip:a@x>;tag=atk\r\n\
To: <sip:bob@y>\r\nCall-ID: atk@x\r\nCSeq: 1 INVITE\r\nContact: <sip:victim@198.51.100.9>\r\n\
Content-Length: 0\r\n\r\n";
    let mut out = Outbox::new();
    let Verdict::NewInvite { invite: id, .. } =
        bob.on_received_from(invite, attacker, 0, &mut out).unwrap()
    else {
        panic!()
    };
    let call = bob
        .respond_invite(id, 200, &ResponseParts::default(), 0, &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(bob.info(call).unwrap().peer(), Some(attacker));
    out.clear();
    // An in-dialog request: resent only if its next hop is the peer (it is not: the Contact).
    bob.request(
        call,
        sipdialog::wire::Method::Info,
        &Default::default(),
        1,
        &mut out,
    )
    .unwrap();
    let info = out.iter().next().unwrap();
    assert_eq!(info.next_hop, Some(&b"sip:victim@198.51.100.9"[..]));
    assert_eq!(info.delivery, Delivery::ReliableTo(attacker));
    out.clear();
    // No ACK: the BYE goes once.
    let mut expired = Vec::new();
    bob.on_timeout(64 * T1 + 1, &mut out, &mut expired);
    assert_eq!(expired[0].reason, ExpiryReason::NoAck);
    let bye = out.iter().next().unwrap();
    assert!(bye.bytes.starts_with(b"BYE sip:victim@198.51.100.9 "));
    assert_eq!(bye.delivery, Delivery::Once);
}

/// Our INVITE that draws no response at all is over at Timer B (64xT1): `on_timeout` says so,
/// and its record is gone.
#[test]
fn an_unanswered_invite_is_reported_at_timer_b() {
    let alice = manager(Policy::default());
    let mut out = Outbox::new();
    let call = NewCall {
        request_uri: b"sip:bob@192.0.2.4",
        from: b"<sip:alice@192.0.2.1>",
        to: b"<sip:bob@192.0.2.4>",
        ..NewCall::default()
    };
    let started = alice.calls().invite(&call, 0, &mut out).unwrap();
    assert_eq!(alice.pending_invites(), 1);
    assert_eq!(alice.next_deadline(), Some(64 * T1));
    let mut expired = Vec::new();
    alice.on_timeout(64 * T1 - 1, &mut out, &mut expired);
    assert!(expired.is_empty());
    alice.on_timeout(64 * T1, &mut out, &mut expired);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].reason, ExpiryReason::NoAnswer);
    assert_eq!(expired[0].invite, Some(started.invite));
    assert_eq!(expired[0].dialog, None);
    assert_eq!(alice.pending_invites(), 0);
    assert_eq!(alice.invite_record_bytes(), 0);
}

/// Responses built from a stamped request go back to its source, never where the sender's Via
/// (or a forged `received`) points.
#[test]
fn answers_follow_the_stamped_via() {
    let bob = manager(Policy::default());
    let forged = b"OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.66:5060;received=198.51.100.9;rport=9;branch=z9hG4bKf\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bob@y>\r\nCall-ID: f@x\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";
    let source = addr("203.0.113.5:41000");
    let mut stamped = Vec::new();
    let view = MessageView::parse(forged).unwrap();
    assert!(stamp_received(&view, source, &mut stamped).unwrap());
    let mut out = Outbox::new();
    assert_eq!(
        bob.on_received_from(&stamped, source, 0, &mut out).unwrap(),
        Verdict::OutOfDialog
    );
    bob.respond(&stamped, 200, &ResponseParts::default(), 0, &mut out)
        .unwrap();
    let answer = MessageView::parse(out.iter().next().unwrap().bytes).unwrap();
    let via = answer.top_via().unwrap().unwrap();
    assert_eq!(via.response_destination(), Some(source));
    // A scan error is a WireError whatever the entry point.
    let mut out = Outbox::new();
    assert_eq!(
        bob.on_received_from(b"", source, 0, &mut out),
        Err(WireError::Empty.into())
    );
}
