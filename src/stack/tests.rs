use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::manager::{ManagerConfig, NewCall};
use crate::txn::TxnConfig;

fn manager() -> Arc<DialogManager> {
    Arc::new(DialogManager::new(ManagerConfig::default()).unwrap())
}

fn stack(manager: &Arc<DialogManager>, worker: usize, workers: usize, txn: TxnConfig) -> Stack {
    let config = StackConfig {
        txn,
        worker,
        workers,
        counters: None,
    };
    Stack::new(Arc::clone(manager), config).unwrap()
}

fn sent(stack: &mut Stack) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut sent = Vec::new();
    stack.drain(|bytes, to| sent.push((bytes.to_vec(), to)));
    sent
}

fn status_of(bytes: &[u8]) -> &[u8] {
    bytes.get(8..11).unwrap_or_default()
}

const PEER: &str = "192.0.2.1:5060";

fn invite(branch: &str, call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}\r\n\
         From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:a@192.0.2.1:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn an_invite_is_answered_on_its_transaction_and_its_retransmission_absorbed() {
    let manager = manager();
    let mut stack = stack(&manager, 0, 1, TxnConfig::default());
    let peer: SocketAddr = PEER.parse().unwrap();
    let bytes = invite("i1", "c1");
    let turn = stack.receive(&bytes, peer, 0).expect("a new INVITE");
    let Ok(Verdict::NewInvite { invite, .. }) = turn.verdict else {
        panic!("not a new INVITE: {:?}", turn.verdict.err());
    };
    let mut desk = turn.desk;
    desk.respond_invite(invite, 100, &ResponseParts::default(), 0)
        .unwrap();
    assert!(desk
        .respond_invite(invite, 200, &ResponseParts::default(), 0)
        .unwrap()
        .is_some());
    stack.flush(0);
    let out = sent(&mut stack);
    let statuses: Vec<_> = out.iter().map(|(b, _)| status_of(b)).collect();
    assert_eq!(statuses, [&b"100"[..], &b"200"[..]]);
    assert!(out.iter().all(|(_, to)| *to == peer));
    assert_eq!(manager.len(), 1);
    // The INVITE again: the transaction layer's, not the manager's.
    assert!(stack.receive(&bytes, peer, 100).is_none());
    stack.flush(100);
    assert_eq!(stack.counters().received.load(Ordering::Relaxed), 2);
}

#[test]
fn keepalives_are_ignored_and_malformed_datagrams_answered_400() {
    let manager = manager();
    let mut stack = stack(&manager, 0, 1, TxnConfig::default());
    let peer: SocketAddr = PEER.parse().unwrap();
    assert!(stack.receive(b"\r\n\r\n", peer, 0).is_none());
    stack.flush(0);
    assert!(sent(&mut stack).is_empty());
    let broken = b"OPTIONS sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKm\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: m1\r\nCSeq: one OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert!(stack.receive(broken, peer, 0).is_none());
    stack.flush(0);
    let out = sent(&mut stack);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0].0), b"400");
    let counters = stack.counters();
    assert_eq!(counters.received.load(Ordering::Relaxed), 1);
    assert_eq!(counters.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(counters.rejected.load(Ordering::Relaxed), 1);
}

#[test]
fn a_full_transaction_table_answers_503() {
    let manager = manager();
    let txn = TxnConfig {
        max_transactions: 1,
        ..TxnConfig::default()
    };
    let mut stack = stack(&manager, 0, 1, txn);
    let peer: SocketAddr = PEER.parse().unwrap();
    let first = invite("f1", "full1");
    assert!(stack.receive(&first, peer, 0).is_some());
    stack.flush(0);
    let second = invite("f2", "full2");
    assert!(stack.receive(&second, peer, 0).is_none());
    stack.flush(0);
    let out = sent(&mut stack);
    assert_eq!(out.last().map(|(b, _)| status_of(b)), Some(&b"503"[..]));
    assert_eq!(manager.len(), 0, "no dialog for the refused INVITE");
}

#[test]
fn a_request_to_another_workers_peer_is_handed_over_and_resent_there() {
    let manager = manager();
    let peer: SocketAddr = PEER.parse().unwrap();
    let theirs = owner(peer, 2);
    let ours = 1 - theirs;
    let mut here = stack(&manager, ours, 2, TxnConfig::default());
    let mut there = stack(&manager, theirs, 2, TxnConfig::default());
    let call = NewCall {
        request_uri: b"sip:b@192.0.2.1:5060",
        from: b"<sip:a@192.0.2.9>",
        to: b"<sip:b@192.0.2.1>",
        referred_by: None,
        replaces: None,
        content_type: None,
        body: b"",
    };
    let desk = here.desk();
    manager.calls().invite(&call, 0, desk.out).unwrap();
    let last = desk.last_request().expect("the INVITE");
    assert_eq!(last.worker, theirs);
    assert_eq!(desk.in_flight(&last), None, "another worker's transaction");
    here.flush(0);
    assert!(sent(&mut here).is_empty());
    let handovers: Vec<_> = here.take_handovers().collect();
    assert_eq!(handovers.len(), 1);
    for (worker, handover) in handovers {
        assert_eq!(worker, theirs);
        there.accept(handover, 0);
    }
    let out = sent(&mut there);
    assert_eq!(out.len(), 1);
    assert!(out[0]
        .0
        .starts_with(b"INVITE sip:b@192.0.2.1:5060 SIP/2.0\r\n"));
    assert_eq!(out[0].1, peer);
    assert_eq!(there.desk().in_flight(&last), Some(true));
    // Timer A: resent after T1 by the worker holding it.
    let t1 = TxnConfig::default().t1_ms;
    assert!(there.next_deadline().is_some_and(|at| at <= t1));
    let mut expired = Vec::new();
    there.on_timeout(t1, &mut expired);
    there.flush(t1);
    assert_eq!(sent(&mut there).len(), 1);
    assert_eq!(here.counters().handed_over.load(Ordering::Relaxed), 1);
}

#[test]
fn a_policy_put_in_force_applies_from_the_next_datagram() {
    let manager = manager();
    let mut stack = stack(&manager, 0, 1, TxnConfig::default());
    let peer: SocketAddr = PEER.parse().unwrap();
    assert!(stack.receive(&invite("p1", "policy1"), peer, 0).is_some());
    // The stack keeps the policy between datagrams; a new one must reach it all the same.
    let small = Policy {
        max_message_bytes: 200,
        ..(*manager.security().policy()).clone()
    };
    manager.security().set_policy(small);
    assert!(stack.receive(&invite("p2", "policy2"), peer, 0).is_none());
    stack.flush(0);
    let out = sent(&mut stack);
    assert_eq!(out.last().map(|(b, _)| status_of(b)), Some(&b"513"[..]));
    manager.security().set_policy(Policy::default());
    assert!(stack.receive(&invite("p3", "policy3"), peer, 0).is_some());
    assert_eq!(manager.pending_invites(), 2);
}
