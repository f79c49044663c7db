use super::*;
use crate::build::ResponseParts;
use crate::state::Phase;
use crate::wire::{HeaderName, MessageView};

fn invite(call_id: &str, from_tag: &str, cseq: u32) -> Vec<u8> {
    format!(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:alice@192.0.2.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn managers() -> (DialogManager, DialogManager) {
    let config = |host: &str| ManagerConfig {
        capacity: 64,
        contact: format!("<sip:ua@{host}>").into_bytes().into(),
        via: format!("SIP/2.0/UDP {host}").into_bytes().into(),
        ..ManagerConfig::default()
    };
    (
        DialogManager::new(config("192.0.2.1:5060")).unwrap(),
        DialogManager::new(config("192.0.2.4:5060")).unwrap(),
    )
}

/// The one message in `out`, cleared after.
fn take(out: &mut Outbox) -> Vec<u8> {
    assert_eq!(out.len(), 1, "{:?}", out);
    let bytes = out.iter().next().unwrap().bytes.to_vec();
    out.clear();
    bytes
}

#[test]
fn basic_call_back_to_back_leaves_nothing_behind() {
    let (alice, bob) = managers();
    let (mut a_out, mut b_out) = (Outbox::new(), Outbox::new());
    let inv = invite("c1@a", "at", 1);
    alice.on_sent(&inv, 0).unwrap();
    let Verdict::NewInvite { to_tag, .. } = bob.on_received(&inv, 0, &mut b_out).unwrap() else {
        panic!("not a new INVITE")
    };
    assert_eq!(
        bob.on_received(&inv, 1, &mut b_out).unwrap(),
        Verdict::Retransmission
    );

    let early = bob
        .respond(&inv, 180, &Default::default(), 10, &mut b_out)
        .unwrap()
        .unwrap();
    assert_eq!(bob.state(early).unwrap().phase(), Phase::Early);
    let ringing = take(&mut b_out);
    let Verdict::Provisional {
        dialog: Some(a_early),
        status: 180,
    } = alice.on_received(&ringing, 10, &mut a_out).unwrap()
    else {
        panic!("no early dialog")
    };
    assert_eq!(alice.info(a_early).unwrap().remote_tag(), to_tag.as_bytes());

    assert_eq!(
        bob.respond(&inv, 200, &Default::default(), 20, &mut b_out)
            .unwrap(),
        Some(early)
    );
    let ok = take(&mut b_out);
    let Verdict::Confirmed {
        dialog,
        cseq: 1,
        extra: false,
    } = alice.on_received(&ok, 20, &mut a_out).unwrap()
    else {
        panic!("not confirmed")
    };
    assert_eq!(dialog, a_early);
    assert_eq!(
        alice.info(dialog).unwrap().remote_target(),
        b"sip:ua@192.0.2.4:5060"
    );
    alice.ack(dialog, 1, &mut a_out).unwrap();
    let ack = take(&mut a_out);
    assert_eq!(
        bob.on_received(&ack, 25, &mut b_out).unwrap(),
        Verdict::Ack { dialog: early }
    );

    alice
        .request(dialog, Method::Bye, &RequestBody::default(), 30, &mut a_out)
        .unwrap();
    let bye = take(&mut a_out);
    assert_eq!(
        bob.on_received(&bye, 30, &mut b_out).unwrap(),
        Verdict::Bye { dialog: early }
    );
    let bye_ok = take(&mut b_out);
    assert_eq!(
        alice.on_received(&bye_ok, 31, &mut a_out).unwrap(),
        Verdict::Ended {
            dialog,
            status: 200
        }
    );
    assert!(alice.is_empty() && bob.is_empty());
    // Both keep the INVITE record 64×T1 after the 2xx (alice for late forked 2xx, bob for
    // retransmitted INVITEs), then drop it.
    assert_eq!((alice.pending_invites(), bob.pending_invites()), (1, 1));
    // What the two records hold meanwhile is what each call of a B2BUA (one record per leg)
    // holds for 64×T1 (32 s): the default byte budget must let it go on at the rate the
    // policy documents, not be what stops it.
    let per_call = alice.invite_record_bytes() + bob.invite_record_bytes();
    let sustained = crate::security::Policy::default().invite_record_bytes / (per_call * 32);
    assert!(
        sustained >= 20_000,
        "{per_call} bytes a call: the default budget holds {sustained} calls/s"
    );
    assert_eq!(
        bob.on_received(&inv, 40, &mut b_out).unwrap(),
        Verdict::Retransmission
    );
    let mut expired = Vec::new();
    alice.on_timeout(20 + 64 * 500, &mut a_out, &mut expired);
    bob.on_timeout(20 + 64 * 500, &mut b_out, &mut expired);
    assert_eq!((alice.pending_invites(), bob.pending_invites()), (0, 0));
    assert!(expired.is_empty() && a_out.is_empty() && b_out.is_empty());
}

#[test]
fn missing_ack_ends_the_dialog_with_bye_after_64_t1() {
    let (_, bob) = managers();
    let mut out = Outbox::new();
    let inv = invite("c2@a", "at", 1);
    bob.on_received(&inv, 0, &mut out).unwrap();
    let d = bob
        .respond(&inv, 200, &Default::default(), 0, &mut out)
        .unwrap()
        .unwrap();
    out.clear();
    assert_eq!(bob.next_deadline(), Some(64 * 500));
    let mut expired = Vec::new();
    bob.on_timeout(64 * 500 - 1, &mut out, &mut expired);
    assert!(expired.is_empty());
    bob.on_timeout(64 * 500, &mut out, &mut expired);
    assert_eq!(
        expired,
        [Expiry {
            dialog: Some(d),
            invite: None,
            reason: ExpiryReason::NoAck,
            role: crate::dialog::Role::Uas
        }]
    );
    let bye = take(&mut out);
    assert!(bye.starts_with(b"BYE sip:alice@192.0.2.1:5060 SIP/2.0\r\n"));
    assert!(bob.is_empty());
}

fn response_to(request: &[u8], status: u16, to_tag: &str, contact: &str) -> Vec<u8> {
    let view = crate::wire::MessageView::parse(request).unwrap();
    let mut out = Vec::new();
    crate::build::response(
        &view,
        status,
        crate::build::reason_phrase(status),
        Some(to_tag.as_bytes()),
        &crate::build::ResponseParts {
            contact: Some(contact.as_bytes()),
            ..Default::default()
        },
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn observer_follows_both_directions_and_byes_both_sides_when_idle() {
    let proxy = DialogManager::new(ManagerConfig {
        capacity: 16,
        idle_timeout_ms: 60_000,
        ..ManagerConfig::default()
    })
    .unwrap();
    let inv = invite("c3@a", "caller", 5);
    assert_eq!(proxy.observe(&inv, 0).unwrap(), Observation::Invite);
    let ringing = response_to(&inv, 180, "callee", "<sip:bob@192.0.2.4>");
    let Observation::Early {
        dialog,
        created: true,
    } = proxy.observe(&ringing, 1).unwrap()
    else {
        panic!("no early dialog")
    };
    let ok = response_to(&inv, 200, "callee", "<sip:bob@192.0.2.4>");
    assert_eq!(
        proxy.observe(&ok, 2).unwrap(),
        Observation::Confirmed {
            dialog,
            created: false
        }
    );
    // A request from the callee (tags swapped) finds the same dialog.
    let info =
        b"INFO sip:alice@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKi1\r\n\
From: <sip:bob@biloxi.example.com>;tag=callee\r\nTo: <sip:alice@a>;tag=caller\r\n\
Call-ID: c3@a\r\nCSeq: 40 INFO\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        proxy.observe(info, 3).unwrap(),
        Observation::InDialog { dialog }
    );

    let mut out = Outbox::new();
    let mut expired = Vec::new();
    proxy.on_timeout(60_002, &mut out, &mut expired);
    assert!(
        expired.is_empty(),
        "activity at 3 ms moved the idle deadline"
    );
    proxy.on_timeout(60_003, &mut out, &mut expired);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].reason, ExpiryReason::Idle);
    let byes: Vec<_> = out.iter().collect();
    assert_eq!(byes.len(), 2);
    let to_callee = crate::wire::MessageView::parse(byes[0].bytes).unwrap();
    assert_eq!(to_callee.request_uri(), Some(&b"sip:bob@192.0.2.4"[..]));
    assert_eq!(to_callee.from_tag(), Some(&b"caller"[..]));
    assert_eq!(to_callee.cseq().number, 6);
    let to_caller = crate::wire::MessageView::parse(byes[1].bytes).unwrap();
    assert_eq!(
        to_caller.request_uri(),
        Some(&b"sip:alice@192.0.2.1:5060"[..])
    );
    assert_eq!(to_caller.from_tag(), Some(&b"callee"[..]));
    assert_eq!(to_caller.cseq().number, 41);
    assert!(proxy.is_empty());
}

#[test]
fn early_dialogs_time_out_with_cancel_for_the_uac_and_408_from_the_uas() {
    let config = ManagerConfig {
        capacity: 16,
        early_timeout_ms: 1_000,
        ..ManagerConfig::default()
    };
    let alice = DialogManager::new(config.clone()).unwrap();
    let bob = DialogManager::new(config).unwrap();
    let mut out = Outbox::new();
    let inv = invite("c4@a", "at", 1);
    alice.on_sent(&inv, 0).unwrap();
    bob.on_received(&inv, 0, &mut out).unwrap();
    bob.respond(&inv, 180, &Default::default(), 0, &mut out)
        .unwrap();
    let ringing = take(&mut out);
    alice.on_received(&ringing, 0, &mut out).unwrap();

    let mut expired = Vec::new();
    alice.on_timeout(1_000, &mut out, &mut expired);
    assert_eq!(expired[0].reason, ExpiryReason::EarlyTimeout);
    let cancel = take(&mut out);
    assert!(cancel.starts_with(b"CANCEL sip:bob@192.0.2.4 SIP/2.0\r\n"));

    expired.clear();
    bob.on_timeout(1_000, &mut out, &mut expired);
    assert_eq!(expired[0].reason, ExpiryReason::EarlyTimeout);
    let timeout = take(&mut out);
    assert!(timeout.starts_with(b"SIP/2.0 408 "));
    assert!(alice.is_empty() && bob.is_empty());
    assert_eq!(bob.pending_invites(), 1, "kept 64×T1 after the 408");
    bob.on_timeout(1_000 + 64 * 500, &mut out, &mut expired);
    assert_eq!(bob.pending_invites(), 0);
}

#[test]
fn expiry_is_worked_off_in_bounded_slices() {
    let bob = DialogManager::new(ManagerConfig {
        capacity: 10_000,
        ..ManagerConfig::default()
    })
    .unwrap();
    let mut out = Outbox::new();
    for i in 0..MAX_EXPIRIES_PER_CALL + 10 {
        let inv = invite(&format!("bulk{i}@a"), "t", 1);
        bob.on_received(&inv, 0, &mut out).unwrap();
        bob.respond(&inv, 200, &Default::default(), 0, &mut out)
            .unwrap();
    }
    out.clear();
    let mut expired = Vec::new();
    let now = 64 * 500;
    // Each dialog's ACK deadline and its INVITE record come due together: more than one
    // slice's worth, so the first call stops at the bound with work left.
    assert_eq!(
        bob.on_timeout(now, &mut out, &mut expired),
        MAX_EXPIRIES_PER_CALL
    );
    assert!(!bob.is_empty());
    let mut calls = 1;
    while bob.on_timeout(now, &mut out, &mut expired) == MAX_EXPIRIES_PER_CALL {
        calls += 1;
    }
    assert!(calls >= 2);
    assert!(bob.is_empty());
    assert_eq!(bob.pending_invites(), 0);
    assert_eq!(expired.len(), MAX_EXPIRIES_PER_CALL + 10);
    assert!(expired.iter().all(|e| e.reason == ExpiryReason::NoAck));
}

/// A call up between alice (UAC) and bob (UAS): (alice's dialog, bob's dialog).
fn call_up(
    alice: &DialogManager,
    bob: &DialogManager,
    call_id: &str,
) -> (DialogHandle, DialogHandle) {
    let mut out = Outbox::new();
    let inv = invite(call_id, "at", 1);
    alice.on_sent(&inv, 0).unwrap();
    bob.on_received(&inv, 0, &mut out).unwrap();
    let b = bob
        .respond(&inv, 200, &Default::default(), 0, &mut out)
        .unwrap()
        .unwrap();
    let ok = take(&mut out);
    let Verdict::Confirmed { dialog: a, .. } = alice.on_received(&ok, 0, &mut out).unwrap() else {
        panic!("not confirmed")
    };
    alice.ack(a, 1, &mut out).unwrap();
    let ack = take(&mut out);
    bob.on_received(&ack, 0, &mut out).unwrap();
    (a, b)
}

#[test]
fn blind_transfer_reports_trying_then_success_and_leaves_no_subscription() {
    let (alice, bob) = managers();
    let (a, b) = call_up(&alice, &bob, "x1@a");
    let mut out = Outbox::new();
    let id = alice
        .transfers()
        .refer(
            a,
            b"sip:carol@chicago.example.com",
            None,
            Some(b"<sip:alice@a>"),
            1,
            &mut out,
        )
        .unwrap();
    let refer = take(&mut out);
    assert_eq!(
        bob.on_received(&refer, 1, &mut out).unwrap(),
        Verdict::Refer {
            dialog: b,
            id,
            subscribed: true
        }
    );
    let accepted = take(&mut out);
    assert!(accepted.starts_with(b"SIP/2.0 202 Accepted\r\n"));
    alice.on_received(&accepted, 1, &mut out).unwrap();
    for (status, progress, terminated) in [
        (100, TransferProgress::Trying, false),
        (200, TransferProgress::Succeeded, true),
    ] {
        bob.transfers().notify(b, id, status, 2, &mut out).unwrap();
        let notify = take(&mut out);
        let view = crate::wire::MessageView::parse(&notify).unwrap();
        assert_eq!(view.event(), Some(format!("refer;id={id}").as_bytes()));
        assert_eq!(
            alice.on_received(&notify, 2, &mut out).unwrap(),
            Verdict::Notify {
                dialog: a,
                id,
                status,
                progress,
                terminated
            }
        );
        assert!(take(&mut out).starts_with(b"SIP/2.0 200 OK\r\n"));
    }
    assert_eq!(
        (
            alice.transfers().subscriptions(a),
            bob.transfers().subscriptions(b)
        ),
        (0, 0)
    );
    assert_eq!(
        bob.transfers().notify(b, id, 200, 3, &mut out),
        Err(ManagerError::NoSubscription)
    );
}

#[test]
fn the_outbox_says_how_to_send_each_message_without_reading_it() {
    use crate::txn::{Transactions, TxnConfig};
    let (alice, bob) = managers();
    let (mut a_out, mut b_out) = (Outbox::for_owner(3), Outbox::for_owner(0x2b));
    let inv = invite("c-out@a", "at", 1);
    alice.on_sent(&inv, 0).unwrap();
    // A server transaction token from a real layer, and where answers go.
    let mut layer = Transactions::with_secret(TxnConfig::default(), [1; 16]).unwrap();
    let peer: std::net::SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let mut transmits = crate::txn::Transmits::new();
    let view = crate::wire::MessageView::parse(&inv).unwrap();
    let crate::txn::Received::New(txn) = layer
        .on_request(
            &view,
            peer,
            crate::txn::Transport::Unreliable,
            0,
            &mut transmits,
        )
        .unwrap()
    else {
        panic!("a new transaction")
    };
    b_out.answering(Some(Answering {
        txn: Some(txn),
        to: peer,
    }));
    let Verdict::NewInvite { invite, .. } =
        bob.on_message(&view, Some(peer), 0, &mut b_out).unwrap()
    else {
        panic!("not a new INVITE")
    };
    // The request in hand is done with; the INVITE's record remembers its transaction.
    b_out.answering(None);
    bob.respond_invite(invite, 200, &Default::default(), 10, &mut b_out)
        .unwrap();
    let ok = b_out.iter().next().unwrap();
    assert_eq!(ok.kind, Kind::Response(200));
    assert_eq!(
        (ok.txn, ok.destination, ok.branch),
        (Some(txn), Some(peer), None)
    );
    let ok = ok.bytes.to_vec();
    b_out.clear();
    let Verdict::Confirmed { dialog, cseq, .. } = alice.on_received(&ok, 20, &mut a_out).unwrap()
    else {
        panic!("not confirmed")
    };
    alice.ack(dialog, cseq, &mut a_out).unwrap();
    alice
        .request(
            dialog,
            crate::wire::Method::Bye,
            &RequestBody::default(),
            30,
            &mut a_out,
        )
        .unwrap();
    let sent: Vec<_> = a_out.iter().collect();
    assert_eq!(sent[0].kind, Kind::Request(crate::wire::Method::Ack));
    assert_eq!(sent[1].kind, Kind::Request(crate::wire::Method::Bye));
    for msg in &sent {
        let branch = msg.branch.unwrap();
        let view = crate::wire::MessageView::parse(msg.bytes).unwrap();
        assert_eq!(view.via_branch(), Some(branch));
        assert_eq!(alice.branch_owner(branch), Some(3));
        // Another manager's prefix differs: not ours.
        assert_eq!(bob.branch_owner(branch), None);
        assert_eq!((msg.txn, msg.next_hop.is_some()), (None, true));
    }
}

/// A kept request's view reads the canonical lines of its copy without a scan, and they are
/// what a scan of the copy finds, for a request with compact names, a folded list and a header the
/// copy does not keep.
#[test]
fn a_kept_requests_headers_are_what_a_scan_of_the_copy_finds() {
    let request = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKk1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKk0\r\n\
Record-Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Subject: not kept\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@y>\r\ni: kept1\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKk2\r\nCSeq: 4 INVITE\r\nRoute: <sip:p3;lr>\r\n\
m: <sip:a@192.0.2.1>\r\nm: <sip:second@192.0.2.1>\r\nContent-Length: 0\r\n\r\n";
    let kept = KeptRequest::new(&crate::wire::MessageView::parse(request).unwrap());
    let view = kept.view().unwrap();
    let walked: Vec<_> = view.headers().map(|h| (h.kind, h.value.to_vec())).collect();
    let scan = crate::wire::MessageView::parse(view.as_bytes()).unwrap();
    let scanned: Vec<_> = scan.headers().map(|h| (h.kind, h.value.to_vec())).collect();
    assert_eq!(walked, scanned);
    // The Via lines the copy counts are the ones a scan of it counts (responses stop their
    // walk for the Vias on that count).
    assert_eq!(view.via_lines(), Some(2));
    assert_eq!(view.via_lines(), scan.via_lines());
    let kinds: Vec<_> = walked.iter().map(|(k, _)| *k).collect();
    use crate::wire::HeaderName::*;
    assert_eq!(
        kinds,
        [
            Via,
            RecordRoute,
            From,
            To,
            CallId,
            Via,
            CSeq,
            Route,
            Contact,
            ContentLength
        ]
    );
    let vias: Vec<_> = view.values(Via).collect();
    assert_eq!(vias.len(), 3);
}

#[test]
fn our_via_fields_are_where_a_decode_finds_them() {
    let long = format!("SIP/2.0/UDP {}.example:5060", "h".repeat(90));
    for via in [
        "SIP/2.0/UDP 192.0.2.1:5060",
        "SIP/2.0/UDP 192.0.2.1",
        "SIP/2.0/UDP [2001:db8::1]:5070;rport",
        "SIP/2.0/TCP  host.example ; maddr=192.0.2.9",
        &long,
    ] {
        let manager = DialogManager::new(ManagerConfig {
            via: via.as_bytes().into(),
            ..ManagerConfig::default()
        })
        .unwrap();
        let mut buf = [0u8; 128];
        let len = manager.via_with(7, &[b'u'; 17], &mut buf);
        let written = &buf[..len];
        let decoded = crate::wire::value::via(written);
        let expected = decoded
            .ok()
            .map(|v| (v.branch.unwrap_or_default(), v.sent_by));
        assert_eq!(manager.own_via_fields(written), expected, "{via}");
    }
    // Ours already names a branch: no INVITE of ours could be matched, so none is written.
    let manager = DialogManager::new(ManagerConfig {
        via: b"SIP/2.0/UDP h;branch=z9hG4bKx"[..].into(),
        ..ManagerConfig::default()
    })
    .unwrap();
    assert_eq!(manager.own_sent_by, None);
}

/// RFC 3261 §8.2.6.1: a 100 to an INVITE echoes its Timestamp, from the copy the manager
/// answers from, whether the scan kept every header the copy needs (one Via) or the copy
/// walked the headers (two Via lines); no other answer carries it.
#[test]
fn a_100_echoes_the_invites_timestamp() {
    for (call_id, extra_via) in [
        ("ts1", ""),
        ("ts2", "v: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKp\r\n"),
    ] {
        let (_, bob) = managers();
        let invite = String::from_utf8(invite(call_id, "a1", 1))
            .unwrap()
            .replace(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\n{extra_via}timestamp:  54.2 \r\n"),
            );
        let mut out = Outbox::new();
        let Ok(Verdict::NewInvite { invite, .. }) = bob.on_received(invite.as_bytes(), 0, &mut out)
        else {
            panic!("not a new INVITE")
        };
        let parts = ResponseParts {
            contact: Some(b"<sip:bob@192.0.2.4>"),
            ..ResponseParts::default()
        };
        for (status, echoed) in [(100, Some(&b"54.2"[..])), (180, None), (200, None)] {
            bob.respond_invite(invite, status, &parts, 0, &mut out)
                .unwrap();
            let answer = take(&mut out);
            let view = MessageView::parse(&answer).unwrap();
            assert_eq!(view.timestamp(), echoed, "{call_id} {status}");
            assert_eq!(
                view.headers().filter(|h| h.kind == HeaderName::Via).count(),
                1 + usize::from(!extra_via.is_empty())
            );
        }
    }
}

/// Alice's re-INVITE in dialog `a`, its Contact moved to `contact`, and its CSeq.
fn reinvite_with_contact(alice: &DialogManager, a: DialogHandle, contact: &str) -> (Vec<u8>, u32) {
    let mut out = Outbox::new();
    let cseq = alice
        .request(a, Method::Invite, &RequestBody::default(), 5, &mut out)
        .unwrap();
    let text = String::from_utf8(take(&mut out)).unwrap();
    let old = text.lines().find(|l| l.starts_with("Contact:")).unwrap();
    let moved = text.replacen(old, &format!("Contact: {contact}"), 1);
    (moved.into_bytes(), cseq)
}

/// Bob answers Alice's re-INVITE 200; the 200 reaches her and her ACK him.
fn answer_reinvite(
    alice: &DialogManager,
    bob: &DialogManager,
    a: DialogHandle,
    reinvite: (Vec<u8>, u32),
) {
    let mut out = Outbox::new();
    bob.respond(&reinvite.0, 200, &Default::default(), 6, &mut out)
        .unwrap();
    let ok = take(&mut out);
    alice.on_received(&ok, 6, &mut out).unwrap();
    alice.ack(a, reinvite.1, &mut out).unwrap();
    let ack = take(&mut out);
    bob.on_received(&ack, 6, &mut out).unwrap();
}

/// The bytes the dialogs' data holds follow each dialog in and out, a proposed target and a
/// refreshed one: what the policy's `dialog_bytes` is checked against.
#[test]
fn dialog_data_bytes_follow_every_dialog_and_target() {
    let (alice, bob) = managers();
    let mut out = Outbox::new();
    assert_eq!(bob.dialog_bytes(), 0);
    let (a1, b1) = call_up(&alice, &bob, "bytes-1@a");
    let (_, b2) = call_up(&alice, &bob, "bytes-2@a");
    let cost = |d| bob.info(d).unwrap().cost();
    assert_eq!(bob.dialog_bytes(), cost(b1) + cost(b2));
    assert!(cost(b1) > 150, "{} bytes", cost(b1));

    // A re-INVITE's Contact is held until it is answered, then becomes the target.
    let moved = "<sip:alice-moved-to-a-longer-user-part@192.0.2.99:5070>";
    let reinvite = reinvite_with_contact(&alice, a1, moved);
    let before = bob.dialog_bytes();
    assert!(matches!(
        bob.on_received(&reinvite.0, 6, &mut out).unwrap(),
        Verdict::Request { .. }
    ));
    let proposed = bob.dialog_bytes() - before;
    assert_eq!(proposed, moved.len() - 2 + 4 * std::mem::size_of::<usize>());
    answer_reinvite(&alice, &bob, a1, reinvite);
    assert_eq!(
        bob.info(b1).unwrap().remote_target(),
        &moved.as_bytes()[1..moved.len() - 1]
    );
    assert_eq!(bob.dialog_bytes(), cost(b1) + cost(b2));

    // Every way out gives the bytes back.
    bob.terminate(b1, TerminationReason::Bye, 8);
    assert_eq!(bob.dialog_bytes(), cost(b2));
    bob.terminate(b2, TerminationReason::Bye, 8);
    assert_eq!(bob.dialog_bytes(), 0);
}

/// At the budget a new INVITE gets 503 before any dialog is made, and a target refresh that
/// would grow the data is not made; room comes back when a call ends.
#[test]
fn the_dialog_data_budget_refuses_new_dialogs_and_growing_refreshes() {
    let (alice, bob) = managers();
    let mut out = Outbox::new();
    let (a1, b1) = call_up(&alice, &bob, "budget-1@a");
    let one = bob.dialog_bytes();
    bob.security().set_policy(crate::security::Policy {
        dialog_bytes: one,
        ..crate::security::Policy::default()
    });

    let inv = invite("budget-2@a", "at2", 1);
    let verdict = bob.on_received(&inv, 1, &mut out).unwrap();
    assert_eq!(
        verdict,
        Verdict::Rejected {
            status: 503,
            dialog: None
        }
    );
    assert!(String::from_utf8(take(&mut out))
        .unwrap()
        .contains("Retry-After"));
    assert_eq!((bob.len(), bob.dialog_bytes()), (1, one));

    // A longer Contact would grow the data past the budget: not even held while the
    // re-INVITE waits for its answer, and not installed by the 2xx.
    let budget = |bytes| {
        bob.security().set_policy(crate::security::Policy {
            dialog_bytes: bytes,
            ..crate::security::Policy::default()
        })
    };
    let target = bob.info(b1).unwrap().remote_target().to_vec();
    let longer = "<sip:a-much-longer-contact@192.0.2.99:5070>";
    let reinvite = reinvite_with_contact(&alice, a1, longer);
    bob.on_received(&reinvite.0, 2, &mut out).unwrap();
    assert_eq!(bob.dialog_bytes(), one, "the proposed target was held");
    answer_reinvite(&alice, &bob, a1, reinvite);
    assert_eq!(bob.info(b1).unwrap().remote_target(), &target[..]);
    // Held while there was room, then the budget shrank before the answer.
    budget(one + 4_096);
    let reinvite = reinvite_with_contact(&alice, a1, longer);
    bob.on_received(&reinvite.0, 4, &mut out).unwrap();
    assert!(bob.dialog_bytes() > one, "the proposed target was not held");
    budget(one);
    answer_reinvite(&alice, &bob, a1, reinvite);
    assert_eq!(bob.info(b1).unwrap().remote_target(), &target[..]);
    assert_eq!(bob.dialog_bytes(), one);

    bob.terminate(b1, TerminationReason::Bye, 6);
    assert!(matches!(
        bob.on_received(&inv, 7, &mut out).unwrap(),
        Verdict::NewInvite { .. }
    ));
}

/// An INVITE record stays 248 bytes (its key, Via fingerprint and per-source charge kept as
/// words, not 16-byte-aligned `u128`s): every call holds one per side for 64×T1.
#[test]
fn an_invite_record_is_248_bytes() {
    assert_eq!(std::mem::size_of::<pending::PendingInvite>(), 248);
}

/// A ringing call's deadline (the early limit, minutes ahead) waits in the timing wheel, not
/// the heap: once the calls are answered and their ACK waits are over, each side's heap holds
/// one entry per established call, its idle deadline, and nothing stale. (With the early
/// deadlines in the heap, the callee's held three entries a call.)
#[test]
fn a_ringing_calls_deadlines_leave_nothing_stale_in_the_heap() {
    let (alice, bob) = managers();
    let mut out = Outbox::new();
    for n in 0..20 {
        let inv = invite(&format!("ring-{n}@a"), "at", 1);
        alice.on_sent(&inv, 0).unwrap();
        bob.on_received(&inv, 0, &mut out).unwrap();
        for status in [180, 200] {
            bob.respond(&inv, status, &Default::default(), 10, &mut out)
                .unwrap();
            let answer = take(&mut out);
            if let Verdict::Confirmed { dialog, .. } =
                alice.on_received(&answer, 10, &mut out).unwrap()
            {
                alice.ack(dialog, 1, &mut out).unwrap();
                let ack = take(&mut out);
                bob.on_received(&ack, 10, &mut out).unwrap();
            }
        }
    }
    let mut expired = Vec::new();
    for side in [&alice, &bob] {
        assert_eq!(side.len(), 20);
        while side.on_timeout(70_000, &mut out, &mut expired) > 0 {}
        assert_eq!(side.timers.far_len(), 20);
    }
    assert!(expired.is_empty());
    // The early limit still ends a call that rings for ever (checked within each lap).
    let inv = invite("ring-long@a", "at", 1);
    bob.on_received(&inv, 50_000, &mut out).unwrap();
    bob.respond(&inv, 180, &Default::default(), 50_000, &mut out)
        .unwrap();
    out.clear();
    let mut now = 50_000;
    while expired.is_empty() && now < 50_000 + 200_000 {
        now += 1_000;
        bob.on_timeout(now, &mut out, &mut expired);
    }
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(
        (50_000 + 180_000..50_000 + 182_000).contains(&now),
        "ended at {now}"
    );
}

#[test]
fn memory_use_follows_the_calls_structure_by_structure() {
    let (alice, bob) = managers();
    let empty = bob.memory();
    assert_eq!((empty.dialog_data, empty.records, empty.timers), (0, 0, 0));
    let (_, b) = call_up(&alice, &bob, "mem@a");
    let up = bob.memory();
    assert_eq!(up.dialog_data, bob.dialog_bytes());
    assert_eq!(up.records, bob.invite_record_bytes());
    assert!(up.records > 0, "the INVITE record lingers 64×T1");
    assert!(up.slots >= crate::table::HOT_SLOT_BYTES && up.timers > 0);
    assert!(
        up.cold_entries > empty.cold_entries,
        "the first call made a page of entries"
    );
    assert!(bob.terminate(b, crate::metrics::TerminationReason::Bye, 0));
    let mut expired = Vec::new();
    bob.on_timeout(64 * 500 + 1, &mut Outbox::new(), &mut expired);
    let ended = bob.memory();
    assert_eq!((ended.dialog_data, ended.records), (0, 0));
    // Pages stay for the next calls.
    assert_eq!(
        (ended.slots, ended.cold_entries),
        (up.slots, up.cold_entries)
    );
}

#[test]
fn the_table_gauge_counts_the_slab_and_the_index() {
    let m = DialogManager::new(ManagerConfig {
        capacity: 1_000,
        ..ManagerConfig::default()
    })
    .unwrap();
    let memory = m.memory();
    // 1 000 dialogs: 250 chunks, rounded up to 256 of 64 bytes.
    assert_eq!(memory.index, 256 * 64);
    let stats: &dyn TableStats = &m;
    assert_eq!(
        stats.slab_bytes() + stats.index_bytes(),
        (memory.slots + memory.index) as u64
    );
}
