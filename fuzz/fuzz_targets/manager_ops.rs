//! Scripts of SIP traffic through three `DialogManager`s: a caller, a callee and an observing
//! proxy between them. Messages are built from small pools of Call-IDs, tags, methods and
//! statuses (so scripts reach forking, CANCEL, glare, re-INVITE and BYE races), mixed with raw
//! arbitrary bytes; what a manager writes to its outbox can be delivered to the other side.
//!
//! Checked: nothing panics; every refusal is a typed error; every message a manager writes
//! parses back; the tables never exceed their capacity; and once the clock is moved far ahead
//! and the timers have run, no dialog and no INVITE record is left in any manager (dialogs
//! never leak, whatever the traffic).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

use sipdialog::build::ResponseParts;
use sipdialog::id::DialogKey;
use sipdialog::manager::{
    DialogManager, ManagerConfig, Outbox, RequestBody, MAX_EXPIRIES_PER_CALL,
};
use sipdialog::security::Policy;
use sipdialog::wire::{MessageView, Method};

const CALL_IDS: [&str; 3] = ["c1@a.example", "c2@a.example", "C1@a.example"];
const TAGS: [&str; 4] = ["t1", "t2", "T1", "t3"];
const METHODS: [&str; 8] = [
    "INVITE", "ACK", "BYE", "CANCEL", "INFO", "UPDATE", "OPTIONS", "PRACK",
];
const STATUSES: [u16; 10] = [100, 180, 183, 200, 202, 408, 481, 486, 491, 603];
const CAPACITY: u32 = 8;

#[derive(Arbitrary, Debug)]
struct Msg {
    call: u8,
    from_tag: u8,
    to_tag: Option<u8>,
    method: u8,
    /// `None`: a request; `Some(i)`: a response with `STATUSES[i]`.
    status: Option<u8>,
    cseq: u8,
    contact: bool,
    record_route: bool,
}

impl Msg {
    fn bytes(&self) -> Vec<u8> {
        let call = CALL_IDS[usize::from(self.call) % CALL_IDS.len()];
        let from = TAGS[usize::from(self.from_tag) % TAGS.len()];
        let method = METHODS[usize::from(self.method) % METHODS.len()];
        let to = self
            .to_tag
            .map(|t| format!(";tag={}", TAGS[usize::from(t) % TAGS.len()]))
            .unwrap_or_default();
        let start = match self.status {
            None => format!("{method} sip:bob@192.0.2.4 SIP/2.0"),
            Some(i) => {
                let code = STATUSES[usize::from(i) % STATUSES.len()];
                format!("SIP/2.0 {code} Whatever")
            }
        };
        let contact = if self.contact {
            "Contact: <sip:peer@192.0.2.9:5070>\r\n"
        } else {
            ""
        };
        let rr = if self.record_route {
            "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"
        } else {
            ""
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{}\r\nFrom: <sip:a@a.example>;tag={from}\r\n\
             To: <sip:b@b.example>{to}\r\nCall-ID: {call}\r\nCSeq: {} {method}\r\n{contact}{rr}Content-Length: 0\r\n\r\n",
            self.cseq, self.cseq
        )
        .into_bytes()
    }
}

/// The addresses messages come from: two peers on the callee's side share an IP.
const SOURCES: [&str; 3] = ["192.0.2.1:5060", "192.0.2.1:5062", "198.51.100.7:5060"];

#[derive(Arbitrary, Debug)]
enum Op {
    Received {
        side: bool,
        msg: Msg,
        /// `Some(i)`: from `SOURCES[i]`; `None`: source unknown.
        source: Option<u8>,
    },
    /// The policy is swapped: tight or loose limits.
    Swap {
        tight: bool,
    },
    Sent {
        side: bool,
        msg: Msg,
    },
    Observe {
        msg: Msg,
    },
    Respond {
        side: bool,
        msg: Msg,
        status: u8,
    },
    Request {
        side: bool,
        dialog: u8,
        method: u8,
    },
    Ack {
        side: bool,
        dialog: u8,
        cseq: u8,
    },
    Cancel {
        side: bool,
        msg: Msg,
    },
    /// Delivers what `side` wrote to the other side and the observer.
    Deliver {
        side: bool,
    },
    Advance {
        ms: u16,
    },
    Raw {
        side: bool,
        bytes: Vec<u8>,
    },
}

struct Side {
    manager: DialogManager,
    out: Outbox,
}

fn check_outbox(out: &Outbox) {
    for m in out.iter() {
        let Ok(view) = MessageView::parse(m.bytes) else {
            // A stateless answer to a malformed request copies what it was given.
            assert!(m.destination.is_some(), "the manager writes valid SIP");
            continue;
        };
        assert_eq!(view.is_request(), m.next_hop.is_some());
    }
}

/// Every tagged 1xx and 2xx to an INVITE written since `from` names a dialog `manager` holds.
fn check_answers_have_dialogs(manager: &DialogManager, out: &Outbox, from: usize) {
    for m in out.iter().skip(from) {
        let Ok(view) = MessageView::parse(m.bytes) else {
            continue;
        };
        let (Some(status), Some(tag)) = (view.status_code(), view.to_tag()) else {
            continue;
        };
        if view.cseq().method != b"INVITE" || !(101..300).contains(&status) || m.next_hop.is_some()
        {
            continue;
        }
        let key = DialogKey {
            call_id: view.call_id(),
            local_tag: tag,
            remote_tag: view.from_tag().unwrap_or_default(),
        };
        // A 2xx retransmitted by the application for a dialog already ended is not ours to
        // judge; ones the manager wrote (it adds its tag) must have a dialog.
        assert!(
            manager.table().lookup(&key).is_some(),
            "a {status} left for no dialog"
        );
    }
}

fn tight() -> Policy {
    Policy {
        max_dialogs: 4,
        max_early_dialogs: 2,
        max_dialogs_per_source: 2,
        new_dialogs_per_second_per_source: 5,
        new_dialog_burst_per_source: 2,
        max_invite_records: 8,
        ..Policy::default()
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let config = ManagerConfig {
        capacity: CAPACITY,
        policy: Policy {
            max_invite_records: 8,
            ..Policy::default()
        },
        early_timeout_ms: 3_000,
        idle_timeout_ms: 10_000,
        ..ManagerConfig::default()
    };
    let mut sides = [
        Side {
            manager: DialogManager::new(config.clone()).unwrap(),
            out: Outbox::new(),
        },
        Side {
            manager: DialogManager::new(config.clone()).unwrap(),
            out: Outbox::new(),
        },
    ];
    let proxy = DialogManager::new(config).unwrap();
    let mut now = 0u64;
    let mut expired = Vec::new();
    for op in ops.iter().take(64) {
        let before = [sides[0].out.len(), sides[1].out.len()];
        match op {
            Op::Received { side, msg, source } => {
                let s = &mut sides[usize::from(*side)];
                let _ = match source {
                    Some(i) => {
                        let from: SocketAddr =
                            SOURCES[usize::from(*i) % SOURCES.len()].parse().unwrap();
                        s.manager
                            .on_received_from(&msg.bytes(), from, now, &mut s.out)
                    }
                    None => s.manager.on_received(&msg.bytes(), now, &mut s.out),
                };
            }
            Op::Swap { tight: t } => {
                for s in &sides {
                    let policy = if *t {
                        tight()
                    } else {
                        Policy {
                            max_invite_records: 8,
                            ..Policy::default()
                        }
                    };
                    s.manager.security().set_policy(policy);
                }
            }
            Op::Sent { side, msg } => {
                let _ = sides[usize::from(*side)].manager.on_sent(&msg.bytes(), now);
            }
            Op::Observe { msg } => {
                let _ = proxy.observe(&msg.bytes(), now);
            }
            Op::Respond { side, msg, status } => {
                let s = &mut sides[usize::from(*side)];
                let code = STATUSES[usize::from(*status) % STATUSES.len()];
                let _ = s.manager.respond(
                    &msg.bytes(),
                    code,
                    &ResponseParts::default(),
                    now,
                    &mut s.out,
                );
            }
            Op::Request {
                side,
                dialog,
                method,
            } => {
                let s = &mut sides[usize::from(*side)];
                let handles: Vec<_> = s.manager.table().iter().map(|(h, _)| h).collect();
                if let Some(&h) = handles.get(usize::from(*dialog) % handles.len().max(1)) {
                    let m = [
                        Method::Bye,
                        Method::Invite,
                        Method::Update,
                        Method::Info,
                        Method::Options,
                    ];
                    let m = m[usize::from(*method) % m.len()];
                    let _ = s
                        .manager
                        .request(h, m, &RequestBody::default(), now, &mut s.out);
                }
            }
            Op::Ack { side, dialog, cseq } => {
                let s = &mut sides[usize::from(*side)];
                let handles: Vec<_> = s.manager.table().iter().map(|(h, _)| h).collect();
                if let Some(&h) = handles.get(usize::from(*dialog) % handles.len().max(1)) {
                    let _ = s.manager.ack(h, u32::from(*cseq), &mut s.out);
                }
            }
            Op::Cancel { side, msg } => {
                let s = &mut sides[usize::from(*side)];
                let call = CALL_IDS[usize::from(msg.call) % CALL_IDS.len()];
                let tag = TAGS[usize::from(msg.from_tag) % TAGS.len()];
                let _ = s
                    .manager
                    .calls()
                    .cancel(call.as_bytes(), tag.as_bytes(), &mut s.out);
            }
            Op::Deliver { side } => {
                let (from, to) = if *side { (1, 0) } else { (0, 1) };
                let messages: Vec<Vec<u8>> =
                    sides[from].out.iter().map(|m| m.bytes.to_vec()).collect();
                check_outbox(&sides[from].out);
                sides[from].out.clear();
                for bytes in messages {
                    let _ = proxy.observe(&bytes, now);
                    let t = &mut sides[to];
                    let _ = t.manager.on_received(&bytes, now, &mut t.out);
                }
            }
            Op::Advance { ms } => {
                now += u64::from(*ms);
                for s in sides.iter_mut() {
                    s.manager.on_timeout(now, &mut s.out, &mut expired);
                }
                proxy.on_timeout(now, &mut sides[0].out, &mut expired);
            }
            Op::Raw { side, bytes } => {
                let s = &mut sides[usize::from(*side)];
                let _ = s.manager.on_received(bytes, now, &mut s.out);
                let _ = s.manager.on_sent(bytes, now);
                let _ = proxy.observe(bytes, now);
            }
        }
        for (s, from) in sides.iter().zip(before) {
            assert!(s.manager.len() <= CAPACITY as usize);
            if !matches!(op, Op::Deliver { .. }) {
                check_answers_have_dialogs(&s.manager, &s.out, from);
            }
        }
        assert!(proxy.len() <= CAPACITY as usize);
    }
    // Far ahead: every dialog and every INVITE record must be gone. Ending a dialog can start
    // a last linger (an INVITE record answered 408 stays 64×T1 for retransmissions), so the
    // clock moves on twice, each step past any linger.
    for manager in [&sides[0].manager, &sides[1].manager, &proxy] {
        let mut out = Outbox::new();
        for step in 1..=2u64 {
            let at = now + step * 1_000_000_000;
            while manager.on_timeout(at, &mut out, &mut expired) == MAX_EXPIRIES_PER_CALL {}
        }
        check_outbox(&out);
        assert_eq!(manager.len(), 0, "a dialog outlived every timer");
        assert_eq!(
            manager.pending_invites(),
            0,
            "an INVITE record outlived its timer"
        );
    }
    for s in &sides {
        check_outbox(&s.out);
    }
});
