//! Every state machine, every timer, every transition.

use std::net::SocketAddr;

use super::*;
use crate::wire::{MessageView, Method};

const T1: u64 = 500;
const T4: u64 = 5_000;

fn layer() -> Transactions {
    Transactions::with_secret(TxnConfig::default(), [7; 16]).expect("valid config")
}

fn peer() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

fn far() -> SocketAddr {
    "192.0.2.4:5070".parse().unwrap()
}

/// A request `method` with `branch`, CSeq `cseq` and sent-by `192.0.2.1:5060`.
fn request(method: &str, branch: &str, cseq: u32) -> Vec<u8> {
    let to_tag = if method == "INVITE" || method == "CANCEL" {
        ""
    } else {
        ";tag=9"
    };
    let cseq_method = method;
    format!(
        "{method} sip:b@192.0.2.4:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>{to_tag}\r\nCall-ID: call-1\r\n\
CSeq: {cseq} {cseq_method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn response(status: u16, method: &str, branch: &str, cseq: u32) -> Vec<u8> {
    format!(
        "SIP/2.0 {status} Reason\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=9\r\nCall-ID: call-1\r\n\
CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn view(bytes: &[u8]) -> MessageView<'_> {
    MessageView::parse(bytes).unwrap()
}

fn sent(out: &Transmits) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter().map(|t| (t.to, t.bytes.to_vec())).collect()
}

/// Runs the timers at each of `times`, returning at which times something was sent and
/// everything that expired.
fn run(txns: &mut Transactions, times: impl IntoIterator<Item = u64>) -> (Vec<u64>, Vec<Expired>) {
    let mut out = Transmits::new();
    let mut expired = Vec::new();
    let mut sends = Vec::new();
    for now in times {
        txns.on_timeout(now, &mut out, &mut expired);
        if !out.is_empty() {
            sends.push(now);
        }
        out.clear();
    }
    (sends, expired)
}

/// Every 10 ms from `from` to `to`.
fn ticks(from: u64, to: u64) -> impl Iterator<Item = u64> {
    (from / 10..=to / 10).map(|t| t * 10)
}

fn client(txns: &mut Transactions, method: Method, bytes: &[u8], branch: &str) -> TxnId {
    client_over(txns, method, bytes, branch, Transport::Unreliable)
}

fn client_over(
    txns: &mut Transactions,
    method: Method,
    bytes: &[u8],
    branch: &str,
    transport: Transport,
) -> TxnId {
    let mut out = Transmits::new();
    let token = method.as_str().unwrap().as_bytes();
    let id = txns
        .request(
            Request {
                bytes,
                method,
                method_token: token,
                branch: branch.as_bytes(),
                to: far(),
                transport,
            },
            0,
            &mut out,
        )
        .unwrap();
    assert_eq!(sent(&out), vec![(far(), bytes.to_vec())]);
    id
}

fn server(txns: &mut Transactions, bytes: &[u8], transport: Transport) -> TxnId {
    let mut out = Transmits::new();
    match txns.on_request(&view(bytes), peer(), transport, 0, &mut out) {
        Ok(Received::New(id)) => id,
        other => panic!("not new: {other:?}"),
    }
}

// ---- client INVITE (§17.1.1, RFC 6026) ----

#[test]
fn client_invite_timer_a_doubles_and_timer_b_reports_no_response() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKc1", 1);
    let id = client(&mut txns, Method::Invite, &invite, "z9hG4bKc1");
    assert_eq!(txns.state(id), Some(TxnState::Calling));
    let (sends, expired) = run(&mut txns, ticks(0, 64 * T1));
    // Timer A: T1, 3T1, 7T1, … (intervals double without a cap); Timer B at 64×T1.
    assert_eq!(sends, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].reason, TimedOut::NoResponse);
    assert_eq!(expired[0].role, Role::Client);
    assert!(txns.is_empty() && txns.bytes() == 0);
}

#[test]
fn client_invite_provisional_stops_retransmission_and_bounds_the_wait() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKc2", 1);
    let id = client(&mut txns, Method::Invite, &invite, "z9hG4bKc2");
    let mut out = Transmits::new();
    let ringing = response(180, "INVITE", "z9hG4bKc2", 1);
    let got = txns.on_response(&view(&ringing), 100, &mut out);
    assert_eq!(
        got,
        Received::Response {
            txn: id,
            status: 180
        }
    );
    assert_eq!(txns.state(id), Some(TxnState::Proceeding));
    let (sends, expired) = run(&mut txns, ticks(100, 179_000));
    assert!(sends.is_empty() && expired.is_empty());
    let (_, expired) = run(&mut txns, [180_100]);
    assert_eq!(expired[0].reason, TimedOut::NoFinalResponse);
    assert!(txns.is_empty());
}

#[test]
fn client_invite_2xx_is_accepted_and_every_2xx_goes_up_until_timer_m() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKc3", 1);
    let id = client(&mut txns, Method::Invite, &invite, "z9hG4bKc3");
    let mut out = Transmits::new();
    let ok = response(200, "INVITE", "z9hG4bKc3", 1);
    assert!(
        txns.bytes() >= invite.len(),
        "the INVITE is kept to be resent"
    );
    for at in [10, 600, 1_600] {
        let got = txns.on_response(&view(&ok), at, &mut out);
        assert_eq!(
            got,
            Received::Response {
                txn: id,
                status: 200
            }
        );
    }
    assert!(out.is_empty(), "a 2xx is ACKed by the dialog, not here");
    assert_eq!(txns.state(id), Some(TxnState::Accepted));
    assert_eq!(
        txns.bytes(),
        0,
        "an accepted INVITE is not kept for Timer M"
    );
    let (sends, expired) = run(&mut txns, ticks(0, 64 * T1 + 10));
    assert!(sends.is_empty() && expired.is_empty());
    assert!(txns.is_empty());
    // Past Timer M, a late 2xx is a stray for the dialog layer.
    assert_eq!(
        txns.on_response(&view(&ok), 40_000, &mut out),
        Received::Stray2xx
    );
}

#[test]
fn client_invite_failure_is_acked_here_and_again_on_each_retransmission() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKc4", 5);
    let id = client(&mut txns, Method::Invite, &invite, "z9hG4bKc4");
    let mut out = Transmits::new();
    let busy = response(486, "INVITE", "z9hG4bKc4", 5);
    let got = txns.on_response(&view(&busy), 50, &mut out);
    assert_eq!(
        got,
        Received::Response {
            txn: id,
            status: 486
        }
    );
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    let acks = sent(&out);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, far());
    let ack = view(&acks[0].1);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!((ack.cseq().number, ack.cseq().method), (5, &b"ACK"[..]));
    assert_eq!(ack.to_tag(), Some(&b"9"[..]));
    assert_eq!(ack.via_branch(), Some(&b"z9hG4bKc4"[..]));
    out.clear();
    assert_eq!(
        txns.on_response(&view(&busy), 900, &mut out),
        Received::Absorbed
    );
    assert_eq!(sent(&out), acks);
    // Timer D: 32 s, quietly.
    let (sends, expired) = run(&mut txns, ticks(50, 32_040));
    assert!(sends.is_empty() && expired.is_empty());
    assert_eq!(txns.len(), 1);
    run(&mut txns, [32_050]);
    assert!(txns.is_empty() && txns.bytes() == 0);
}

#[test]
fn client_invite_over_a_reliable_transport_neither_resends_nor_lingers() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKc5", 1);
    let id = client_over(
        &mut txns,
        Method::Invite,
        &invite,
        "z9hG4bKc5",
        Transport::Reliable,
    );
    let (sends, _) = run(&mut txns, ticks(0, 10_000));
    assert!(sends.is_empty());
    let mut out = Transmits::new();
    let busy = response(603, "INVITE", "z9hG4bKc5", 1);
    txns.on_response(&view(&busy), 10_000, &mut out);
    assert_eq!(out.len(), 1, "the ACK");
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    run(&mut txns, [10_000]);
    assert!(txns.is_empty(), "Timer D is 0 over a reliable transport");
}

// ---- client non-INVITE (§17.1.2) ----

#[test]
fn client_non_invite_timer_e_caps_at_t2_and_timer_f_reports() {
    let mut txns = layer();
    let bye = request("BYE", "z9hG4bKn1", 2);
    client(&mut txns, Method::Bye, &bye, "z9hG4bKn1");
    let (sends, expired) = run(&mut txns, ticks(0, 64 * T1));
    // T1, 2T1, 4T1, then T2 steps.
    assert_eq!(
        sends,
        vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(expired[0].reason, TimedOut::NoResponse);
    assert!(txns.is_empty());
}

#[test]
fn client_non_invite_provisional_moves_timer_e_to_t2_then_final_lingers_t4() {
    let mut txns = layer();
    let info = request("INFO", "z9hG4bKn2", 3);
    let id = client(&mut txns, Method::Info, &info, "z9hG4bKn2");
    let mut out = Transmits::new();
    let trying = response(100, "INFO", "z9hG4bKn2", 3);
    assert_eq!(
        txns.on_response(&view(&trying), 100, &mut out),
        Received::Response {
            txn: id,
            status: 100
        }
    );
    assert_eq!(txns.state(id), Some(TxnState::Proceeding));
    // The pending resend at T1 stays; after it, T2 steps.
    let (sends, _) = run(&mut txns, ticks(100, 9_000));
    assert_eq!(sends, vec![500, 4_500, 8_500]);
    let ok = response(200, "INFO", "z9hG4bKn2", 3);
    assert_eq!(
        txns.on_response(&view(&ok), 9_000, &mut out),
        Received::Response {
            txn: id,
            status: 200
        }
    );
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    assert_eq!(
        txns.on_response(&view(&ok), 9_100, &mut out),
        Received::Absorbed
    );
    assert!(out.is_empty());
    let (sends, _) = run(&mut txns, ticks(9_000, 9_000 + T4 - 10));
    assert!(sends.is_empty());
    assert_eq!(txns.len(), 1);
    run(&mut txns, [9_000 + T4]);
    assert!(txns.is_empty(), "Timer K");
}

#[test]
fn ack_and_unbranched_requests_start_no_client_transaction() {
    let mut txns = layer();
    let mut out = Transmits::new();
    let ack = request("ACK", "z9hG4bKa", 1);
    let req = |method, branch: &'static [u8]| Request {
        bytes: &ack,
        method,
        method_token: b"X",
        branch,
        to: far(),
        transport: Transport::Unreliable,
    };
    assert_eq!(
        txns.request(req(Method::Ack, b"z9hG4bKa"), 0, &mut out),
        Err(TxnError::AckIsNotATransaction)
    );
    assert_eq!(
        txns.request(req(Method::Bye, b""), 0, &mut out),
        Err(TxnError::NoBranch)
    );
    txns.request(req(Method::Bye, b"z9hG4bKa"), 0, &mut out)
        .unwrap();
    assert_eq!(
        txns.request(req(Method::Bye, b"z9hG4bKa"), 0, &mut out),
        Err(TxnError::WrongState),
        "a branch names one request"
    );
}

// ---- server INVITE (§17.2.1, RFC 6026) ----

#[test]
fn server_invite_retransmission_resends_the_last_provisional() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs1", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    assert_eq!(txns.state(id), Some(TxnState::Proceeding));
    let mut out = Transmits::new();
    let again = txns.on_request(&view(&invite), peer(), Transport::Unreliable, 100, &mut out);
    assert_eq!(again, Ok(Received::Absorbed));
    assert!(out.is_empty(), "nothing sent yet to resend");
    let ringing = response(180, "INVITE", "z9hG4bKs1", 1);
    txns.respond(id, 180, &ringing, 200, &mut out).unwrap();
    out.clear();
    txns.on_request(&view(&invite), peer(), Transport::Unreliable, 300, &mut out)
        .unwrap();
    assert_eq!(sent(&out), vec![(peer(), ringing)]);
}

#[test]
fn server_invite_failure_timer_g_timer_h_and_the_ack() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs2", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let busy = response(486, "INVITE", "z9hG4bKs2", 1);
    txns.respond(id, 486, &busy, 0, &mut out).unwrap();
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    let (sends, expired) = run(&mut txns, ticks(0, 64 * T1));
    // Timer G: T1, 2T1, 4T1, T2 steps; Timer H at 64×T1.
    assert_eq!(
        sends,
        vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(expired[0].reason, TimedOut::NoAck);
    assert_eq!(expired[0].txn, id);
    assert!(txns.is_empty());

    // With the ACK: Confirmed, resends stop, Timer I (T4) ends it quietly.
    let id = server(&mut txns, &invite, Transport::Unreliable);
    txns.respond(id, 486, &busy, 0, &mut out).unwrap();
    let ack = request("ACK", "z9hG4bKs2", 1);
    let got = txns.on_request(&view(&ack), peer(), Transport::Unreliable, 700, &mut out);
    assert_eq!(got, Ok(Received::Absorbed));
    assert_eq!(txns.state(id), Some(TxnState::Confirmed));
    let got = txns.on_request(&view(&ack), peer(), Transport::Unreliable, 800, &mut out);
    assert_eq!(got, Ok(Received::Absorbed), "the ACK again");
    let (sends, expired) = run(&mut txns, ticks(700, 700 + T4 - 10));
    assert!(sends.is_empty() && expired.is_empty());
    run(&mut txns, [700 + T4]);
    assert!(txns.is_empty());
}

#[test]
fn server_invite_2xx_is_resent_until_its_ack_then_absorbs_until_timer_l() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs3", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let ok = response(200, "INVITE", "z9hG4bKs3", 1);
    txns.respond(id, 200, &ok, 0, &mut out).unwrap();
    assert_eq!(txns.state(id), Some(TxnState::Accepted));
    let (sends, _) = run(&mut txns, ticks(0, 4_000));
    assert_eq!(sends, vec![500, 1_500, 3_500]);
    // The INVITE again in Accepted: absorbed, nothing sent (RFC 6026 §7.1).
    out.clear();
    let again = txns.on_request(
        &view(&invite),
        peer(),
        Transport::Unreliable,
        4_000,
        &mut out,
    );
    assert_eq!(again, Ok(Received::Absorbed));
    assert!(out.is_empty());
    // The ACK of a 2xx has its own branch.
    assert!(txns.bytes() >= ok.len(), "the 2xx is kept to be resent");
    let ack = request("ACK", "z9hG4bKother", 1);
    let got = txns.on_request(&view(&ack), peer(), Transport::Unreliable, 4_100, &mut out);
    assert_eq!(got, Ok(Received::AckOf2xx { invite: Some(id) }));
    assert_eq!(
        txns.bytes(),
        0,
        "an acknowledged 2xx is not kept for Timer L"
    );
    let (sends, expired) = run(&mut txns, ticks(4_100, 64 * T1 + 10));
    assert!(sends.is_empty() && expired.is_empty());
    assert!(txns.is_empty(), "Timer L");
    // An ACK nobody waits for is still the dialog's.
    let got = txns.on_request(&view(&ack), peer(), Transport::Unreliable, 40_000, &mut out);
    assert_eq!(got, Ok(Received::AckOf2xx { invite: None }));
}

#[test]
fn server_invite_2xx_never_acked_is_reported_for_a_bye() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs4", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let ok = response(200, "INVITE", "z9hG4bKs4", 1);
    txns.respond(id, 200, &ok, 0, &mut out).unwrap();
    // A second 2xx (RFC 6026) is allowed; a non-2xx is not.
    txns.respond(id, 200, &ok, 10, &mut out).unwrap();
    let busy = response(486, "INVITE", "z9hG4bKs4", 1);
    assert_eq!(
        txns.respond(id, 486, &busy, 20, &mut out),
        Err(TxnError::WrongState)
    );
    let (sends, expired) = run(&mut txns, ticks(0, 64 * T1));
    assert_eq!(sends.len(), 10, "T1 doubling to T2 until 64×T1");
    assert_eq!(expired[0].reason, TimedOut::NoAckOf2xx);
    assert_eq!(
        txns.respond(id, 200, &ok, 40_000, &mut out),
        Err(TxnError::Gone)
    );
}

#[test]
fn server_invite_unanswered_is_reported_after_the_pending_limit() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs5", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let (_, expired) = run(&mut txns, [179_990]);
    assert!(expired.is_empty());
    let (_, expired) = run(&mut txns, [180_000]);
    assert_eq!(
        expired,
        vec![Expired {
            txn: id,
            role: Role::Server,
            reason: TimedOut::Unanswered
        }]
    );
}

// ---- server non-INVITE (§17.2.2) ----

#[test]
fn server_non_invite_absorbs_then_resends_its_last_response_until_timer_j() {
    let mut txns = layer();
    let bye = request("BYE", "z9hG4bKs6", 2);
    let id = server(&mut txns, &bye, Transport::Unreliable);
    assert_eq!(txns.state(id), Some(TxnState::Trying));
    let mut out = Transmits::new();
    let again = |txns: &mut Transactions, out: &mut Transmits, at| {
        out.clear();
        let got = txns.on_request(&view(&bye), peer(), Transport::Unreliable, at, out);
        assert_eq!(got, Ok(Received::Absorbed));
        sent(out)
    };
    assert!(again(&mut txns, &mut out, 100).is_empty());
    let trying = response(100, "BYE", "z9hG4bKs6", 2);
    txns.respond(id, 100, &trying, 150, &mut out).unwrap();
    assert_eq!(txns.state(id), Some(TxnState::Proceeding));
    assert_eq!(
        again(&mut txns, &mut out, 200),
        vec![(peer(), trying.clone())]
    );
    let ok = response(200, "BYE", "z9hG4bKs6", 2);
    txns.respond(id, 200, &ok, 300, &mut out).unwrap();
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    assert_eq!(again(&mut txns, &mut out, 400), vec![(peer(), ok.clone())]);
    assert_eq!(
        txns.respond(id, 200, &ok, 500, &mut out),
        Err(TxnError::WrongState)
    );
    let (sends, expired) = run(&mut txns, ticks(300, 300 + 64 * T1 - 10));
    assert!(
        sends.is_empty() && expired.is_empty(),
        "no timer resends a non-INVITE answer"
    );
    run(&mut txns, [300 + 64 * T1]);
    assert!(txns.is_empty(), "Timer J");
}

#[test]
fn transactions_that_end_leave_no_entry_in_the_eviction_queue() {
    let mut txns = layer();
    let mut out = Transmits::new();
    // Fewer than the sweep's threshold of stale entries: only their removal can clear them.
    for i in 0..60 {
        let branch = format!("z9hG4bKq{i}");
        let id = server(
            &mut txns,
            &request("BYE", &branch, 2),
            Transport::Unreliable,
        );
        let ok = response(200, "BYE", &branch, 2);
        txns.respond(id, 200, &ok, i, &mut out).unwrap();
    }
    assert_eq!(
        txns.evictable_queued(),
        60,
        "each answered BYE may be evicted"
    );
    run(&mut txns, [30 + 64 * T1]);
    assert_eq!(txns.len(), 29, "Timer J ended the first 31");
    assert_eq!(
        txns.evictable_queued(),
        29,
        "their queue entries went with them"
    );
    run(&mut txns, [60 + 64 * T1]);
    assert!(txns.is_empty());
    assert_eq!(txns.evictable_queued(), 0);
}

#[test]
fn server_non_invite_over_reliable_ends_at_its_final_response() {
    let mut txns = layer();
    let bye = request("BYE", "z9hG4bKs7", 2);
    let id = server(&mut txns, &bye, Transport::Reliable);
    let mut out = Transmits::new();
    txns.respond(id, 200, &response(200, "BYE", "z9hG4bKs7", 2), 0, &mut out)
        .unwrap();
    assert_eq!(out.iter().next().unwrap().to, peer(), "back to the source");
    run(&mut txns, [0]);
    assert!(txns.is_empty());
}

#[test]
fn server_non_invite_unanswered_ends_with_its_client_at_64_t1() {
    let mut txns = layer();
    let id = server(
        &mut txns,
        &request("INFO", "z9hG4bKs8", 2),
        Transport::Unreliable,
    );
    let (_, expired) = run(&mut txns, [64 * T1]);
    assert_eq!(expired[0].txn, id);
    assert_eq!(expired[0].reason, TimedOut::Unanswered);
}

#[test]
fn statuses_outside_the_range_are_refused() {
    let mut txns = layer();
    let id = server(
        &mut txns,
        &request("INFO", "z9hG4bKs9", 2),
        Transport::Unreliable,
    );
    let mut out = Transmits::new();
    assert_eq!(
        txns.respond(id, 99, b"x", 0, &mut out),
        Err(TxnError::WrongState)
    );
    assert_eq!(
        txns.respond(id, 700, b"x", 0, &mut out),
        Err(TxnError::WrongState)
    );
    assert!(out.is_empty());
}

// ---- matching (§17.2.3, §9.2) ----

#[test]
fn cancel_matches_the_invite_by_branch_and_sent_by_only() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKm1", 1);
    let inv = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let cancel = request("CANCEL", "z9hG4bKm1", 1);
    let got = txns
        .on_request(&view(&cancel), peer(), Transport::Unreliable, 10, &mut out)
        .unwrap();
    let Received::Cancel {
        cancel: c,
        invite: Some(i),
    } = got
    else {
        panic!("{got:?}");
    };
    assert_eq!(i, inv);
    assert_ne!(c, inv);
    // Its retransmission is the CANCEL's transaction again.
    let again = txns.on_request(&view(&cancel), peer(), Transport::Unreliable, 20, &mut out);
    assert_eq!(again, Ok(Received::Absorbed));
    // Another branch, or another sent-by with the same branch: no INVITE.
    let other = request("CANCEL", "z9hG4bKm2", 1);
    let got = txns.on_request(&view(&other), peer(), Transport::Unreliable, 30, &mut out);
    assert!(matches!(got, Ok(Received::Cancel { invite: None, .. })));
    let moved = String::from_utf8(request("CANCEL", "z9hG4bKm1", 1))
        .unwrap()
        .replace("192.0.2.1:5060", "192.0.2.66:5060");
    let got = txns.on_request(
        &view(moved.as_bytes()),
        peer(),
        Transport::Unreliable,
        40,
        &mut out,
    );
    assert!(matches!(got, Ok(Received::Cancel { invite: None, .. })));
}

#[test]
fn rfc_2543_requests_match_without_a_magic_cookie() {
    let mut txns = layer();
    let invite = request("INVITE", "old1", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let again = txns.on_request(&view(&invite), peer(), Transport::Unreliable, 10, &mut out);
    assert_eq!(again, Ok(Received::Absorbed));
    let busy = response(486, "INVITE", "old1", 1);
    txns.respond(id, 486, &busy, 20, &mut out).unwrap();
    let ack = request("ACK", "old1", 1);
    let got = txns.on_request(&view(&ack), peer(), Transport::Unreliable, 30, &mut out);
    assert_eq!(got, Ok(Received::Absorbed));
    assert_eq!(txns.state(id), Some(TxnState::Confirmed));
    // Another CSeq is another transaction.
    let next = request("INVITE", "old1", 2);
    let got = txns.on_request(&view(&next), peer(), Transport::Unreliable, 40, &mut out);
    assert!(matches!(got, Ok(Received::New(_))));
}

#[test]
fn a_branch_we_sent_and_one_we_received_never_meet() {
    let mut txns = layer();
    let bye = request("BYE", "z9hG4bKsame", 2);
    let ours = client(&mut txns, Method::Bye, &bye, "z9hG4bKsame");
    let theirs = server(&mut txns, &bye, Transport::Unreliable);
    assert_ne!(ours, theirs);
    assert_eq!(txns.key(ours).unwrap().role(), Role::Client);
    assert_eq!(txns.key(theirs).unwrap().role(), Role::Server);
}

#[test]
fn responses_without_a_transaction() {
    let mut txns = layer();
    let mut out = Transmits::new();
    let ok = response(200, "INVITE", "z9hG4bKnone", 1);
    assert_eq!(
        txns.on_response(&view(&ok), 0, &mut out),
        Received::Stray2xx
    );
    let ringing = response(180, "INVITE", "z9hG4bKnone", 1);
    assert_eq!(
        txns.on_response(&view(&ringing), 0, &mut out),
        Received::Dropped
    );
    let bye_ok = response(200, "BYE", "z9hG4bKnone", 1);
    assert_eq!(
        txns.on_response(&view(&bye_ok), 0, &mut out),
        Received::Dropped
    );
    // A response to our BYE naming it as an INVITE is not ours.
    let bye = request("BYE", "z9hG4bKx", 2);
    client(&mut txns, Method::Bye, &bye, "z9hG4bKx");
    let wrong = response(486, "INVITE", "z9hG4bKx", 2);
    assert_eq!(
        txns.on_response(&view(&wrong), 0, &mut out),
        Received::Dropped
    );
}

#[test]
fn responses_go_where_the_via_says_over_udp() {
    let mut txns = layer();
    let stamped = String::from_utf8(request("INFO", "z9hG4bKv1", 2))
        .unwrap()
        .replace(
            "5060;branch",
            "5060;received=198.51.100.9;rport=40000;branch",
        );
    let id = server(&mut txns, stamped.as_bytes(), Transport::Unreliable);
    assert_eq!(txns.peer(id), "198.51.100.9:40000".parse().ok());
    let id = server(
        &mut txns,
        &request("INFO", "z9hG4bKv2", 2),
        Transport::Reliable,
    );
    assert_eq!(txns.peer(id), Some(peer()));
}

// ---- budgets and tokens ----

#[test]
fn the_count_cap_drops_finished_transactions_first_then_refuses() {
    let config = TxnConfig {
        max_transactions: 3,
        ..TxnConfig::default()
    };
    let mut txns = Transactions::with_secret(config, [1; 16]).expect("valid config");
    let mut out = Transmits::new();
    let done = server(
        &mut txns,
        &request("BYE", "z9hG4bKb1", 2),
        Transport::Unreliable,
    );
    txns.respond(
        done,
        200,
        &response(200, "BYE", "z9hG4bKb1", 2),
        0,
        &mut out,
    )
    .unwrap();
    server(
        &mut txns,
        &request("BYE", "z9hG4bKb2", 2),
        Transport::Unreliable,
    );
    server(
        &mut txns,
        &request("BYE", "z9hG4bKb3", 2),
        Transport::Unreliable,
    );
    // Full: the answered one goes, the unanswered stay.
    server(
        &mut txns,
        &request("BYE", "z9hG4bKb4", 2),
        Transport::Unreliable,
    );
    assert_eq!(txns.state(done), None);
    assert_eq!(txns.len(), 3);
    let refused = txns.on_request(
        &view(&request("BYE", "z9hG4bKb5", 2)),
        peer(),
        Transport::Unreliable,
        0,
        &mut out,
    );
    assert_eq!(refused, Err(TxnError::Full));
    assert_eq!(TxnError::Full.status().0, 503);
}

#[test]
fn the_byte_budget_holds_and_refuses_what_does_not_fit() {
    let config = TxnConfig {
        max_bytes: 1_000,
        ..TxnConfig::default()
    };
    let mut txns = Transactions::with_secret(config, [1; 16]).expect("valid config");
    let mut out = Transmits::new();
    let invite = request("INVITE", "z9hG4bKy1", 1);
    client(&mut txns, Method::Invite, &invite, "z9hG4bKy1");
    let big = vec![b'x'; 900];
    let refused = txns.request(
        Request {
            bytes: &big,
            method: Method::Options,
            method_token: b"OPTIONS",
            branch: b"z9hG4bKy2",
            to: far(),
            transport: Transport::Unreliable,
        },
        0,
        &mut out,
    );
    assert_eq!(refused, Err(TxnError::Full));
    assert!(out.is_empty(), "nothing sent that is not held");
    assert!(txns.bytes() <= 1_000);
    let id = server(
        &mut txns,
        &request("INFO", "z9hG4bKy3", 1),
        Transport::Unreliable,
    );
    assert_eq!(
        txns.respond(id, 200, &big, 0, &mut out),
        Err(TxnError::Full)
    );
    assert!(out.is_empty());
}

/// The budget counts the buffers held, not the bytes written: small messages cannot hold
/// more memory than it allows, however they reuse larger spare buffers.
#[test]
fn the_byte_budget_counts_buffer_capacity() {
    let config = TxnConfig {
        max_bytes: 16 * 1024,
        ..TxnConfig::default()
    };
    let mut txns = Transactions::with_secret(config, [1; 16]).expect("valid config");
    let mut out = Transmits::new();
    // Spares of 4 KiB each, left by large requests that were answered and ended.
    let big = vec![b'x'; 3_000];
    for i in 0..3 {
        let branch = format!("z9hG4bKbig{i}");
        client(&mut txns, Method::Options, &big, &branch);
    }
    let (_, _) = run(&mut txns, ticks(0, 64 * T1 + 1));
    assert!(txns.is_empty() && txns.bytes() == 0);
    // Now 300-byte requests until the budget refuses one.
    let small = vec![b'y'; 300];
    let mut held = 0;
    loop {
        let branch = format!("z9hG4bKsmall{held}");
        let sent = txns.request(
            Request {
                bytes: &small,
                method: Method::Options,
                method_token: b"OPTIONS",
                branch: branch.as_bytes(),
                to: far(),
                transport: Transport::Unreliable,
            },
            0,
            &mut out,
        );
        match sent {
            Ok(_) => held += 1,
            Err(e) => {
                assert_eq!(e, TxnError::Full);
                break;
            }
        }
        assert!(held <= 64, "no end to what the budget admits");
    }
    // Each holds a 512-byte buffer, counted as such.
    assert_eq!(held, 16 * 1024 / 512);
    assert_eq!(txns.bytes(), held * 512);
}

#[test]
fn a_stale_token_never_reaches_a_reused_entry() {
    let mut txns = layer();
    let mut out = Transmits::new();
    let old = server(
        &mut txns,
        &request("INFO", "z9hG4bKt1", 1),
        Transport::Reliable,
    );
    txns.respond(
        old,
        200,
        &response(200, "INFO", "z9hG4bKt1", 1),
        0,
        &mut out,
    )
    .unwrap();
    run(&mut txns, [0]);
    let new = server(
        &mut txns,
        &request("INFO", "z9hG4bKt2", 1),
        Transport::Reliable,
    );
    assert_ne!(old, new);
    assert_eq!(txns.state(old), None);
    assert_eq!(
        txns.respond(old, 200, b"SIP/2.0 200 OK\r\n\r\n", 0, &mut out),
        Err(TxnError::Gone)
    );
    assert_eq!(txns.state(new), Some(TxnState::Trying));
}

#[test]
fn a_burst_gives_its_memory_back_and_old_tokens_stay_stale() {
    let mut txns = layer();
    let mut out = Transmits::new();
    let mut ids = Vec::new();
    for i in 0..2_000 {
        let bye = request("BYE", &format!("z9hG4bKburst{i}"), 2);
        ids.push(server(&mut txns, &bye, Transport::Reliable));
    }
    for (i, id) in ids.iter().enumerate() {
        let ok = response(200, "BYE", &format!("z9hG4bKburst{i}"), 2);
        txns.respond(*id, 200, &ok, 0, &mut out).unwrap();
    }
    run(&mut txns, [0]);
    assert!(txns.is_empty() && txns.bytes() == 0);
    assert_eq!(txns.next_deadline(), None);
    let fresh = server(
        &mut txns,
        &request("BYE", "z9hG4bKafter", 2),
        Transport::Reliable,
    );
    assert!(ids
        .iter()
        .all(|id| *id != fresh && txns.state(*id).is_none()));
}

#[test]
fn next_deadline_follows_the_earliest_timer() {
    let mut txns = layer();
    assert_eq!(txns.next_deadline(), None);
    client(
        &mut txns,
        Method::Bye,
        &request("BYE", "z9hG4bKd1", 2),
        "z9hG4bKd1",
    );
    assert_eq!(txns.next_deadline(), Some(T1));
    let mut out = Transmits::new();
    let mut expired = Vec::new();
    txns.on_timeout(T1, &mut out, &mut expired);
    assert_eq!(txns.next_deadline(), Some(3 * T1));
}

#[test]
fn a_client_transaction_is_never_answered() {
    let mut txns = layer();
    let id = client(
        &mut txns,
        Method::Info,
        &request("INFO", "z9hG4bKr1", 2),
        "z9hG4bKr1",
    );
    let mut out = Transmits::new();
    let ok = response(200, "INFO", "z9hG4bKr1", 2);
    assert_eq!(
        txns.respond(id, 200, &ok, 10, &mut out),
        Err(TxnError::WrongState)
    );
    assert!(out.is_empty());
    assert_eq!(txns.state(id), Some(TxnState::Trying));
}

#[test]
fn a_token_of_another_owner_names_nothing_here() {
    let worker = |owner| {
        let config = TxnConfig {
            owner,
            ..TxnConfig::default()
        };
        Transactions::with_secret(config, [7; 16]).expect("valid config")
    };
    let (mut zero, mut one) = (worker(0), worker(1));
    let info = request("INFO", "z9hG4bKo1", 2);
    // Same secret, same request: both layers give the same slot and generation.
    let theirs = server(&mut zero, &info, Transport::Unreliable);
    let ours = server(&mut one, &info, Transport::Unreliable);
    assert_eq!((theirs.owner(), ours.owner()), (0, 1));
    let mut out = Transmits::new();
    let ok = response(200, "INFO", "z9hG4bKo1", 2);
    assert_eq!(
        one.respond(theirs, 200, &ok, 10, &mut out),
        Err(TxnError::NotOurs)
    );
    assert!(out.is_empty());
    assert_eq!(
        (one.state(theirs), one.state(ours)),
        (None, Some(TxnState::Trying))
    );
    assert_eq!(one.respond(ours, 200, &ok, 10, &mut out), Ok(()));
}

#[test]
fn timers_of_zero_are_refused() {
    for (t1_ms, t2_ms) in [(0, 4_000), (500, 0), (500, 499)] {
        let config = TxnConfig {
            t1_ms,
            t2_ms,
            ..TxnConfig::default()
        };
        assert_eq!(
            Transactions::with_secret(config, [7; 16]).err(),
            Some(TxnError::BadConfig)
        );
    }
}

#[test]
fn a_client_transaction_is_found_by_branch_and_method_while_it_lives() {
    let mut txns = layer();
    let notify = request("NOTIFY", "z9hG4bKn1", 3);
    let id = client(&mut txns, Method::Notify, &notify, "z9hG4bKn1");
    assert_eq!(
        txns.find_client(b"z9hG4bKn1", Method::Notify, b"NOTIFY"),
        Some(id)
    );
    assert_eq!(txns.find_client(b"z9hG4bKn1", Method::Bye, b"BYE"), None);
    assert_eq!(
        txns.find_client(b"z9hG4bKn2", Method::Notify, b"NOTIFY"),
        None
    );
    let mut out = Transmits::new();
    let ok = response(200, "NOTIFY", "z9hG4bKn1", 3);
    txns.on_response(&view(&ok), 10, &mut out);
    assert_eq!(txns.state(id), Some(TxnState::Completed));
    run(&mut txns, [10 + T4]);
    assert_eq!(
        txns.find_client(b"z9hG4bKn1", Method::Notify, b"NOTIFY"),
        None
    );
}

#[test]
fn a_stateless_answer_leaves_no_transaction() {
    let mut txns = layer();
    let invite = request("INVITE", "z9hG4bKs1", 1);
    let id = server(&mut txns, &invite, Transport::Unreliable);
    let mut out = Transmits::new();
    let busy = response(503, "INVITE", "z9hG4bKs1", 1);
    txns.respond_statelessly(id, &busy, &mut out).unwrap();
    assert_eq!(sent(&out), vec![(peer(), busy.clone())]);
    assert!(txns.is_empty() && txns.next_deadline().is_none());
    assert_eq!(
        txns.respond_statelessly(id, &busy, &mut out),
        Err(TxnError::Gone)
    );
    // The INVITE again is a new transaction, not a retransmission to absorb.
    server(&mut txns, &invite, Transport::Unreliable);
}
