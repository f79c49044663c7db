//! What the network can make the endpoint say, from arbitrary bytes and an arbitrary source:
//! the stateless answer to a refused request, the top Via stamped on receipt, the security
//! checks, and a manager with a tight policy.
//!
//! Checked: nothing panics; an answer to a malformed request is never much larger than the
//! request (no amplifier) and goes back to the source's IP; a stamped request scans again
//! with the same transaction identity, and its answers go back to the source's IP (to its
//! port with `rport`), whatever `received`, `rport` or sent-by the sender wrote; everything a
//! manager writes scans, or carries its destination; no tagged 1xx/2xx leaves for a dialog the
//! manager does not hold.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sipdialog::build::{error_response, stamp_received};
use sipdialog::id::DialogKey;
use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, Verdict};
use sipdialog::security::Policy;
use sipdialog::wire::{MessageView, Salvaged};

#[derive(Arbitrary, Debug)]
struct Input {
    ip: u32,
    port: u16,
    /// Answer new INVITEs with this status (100..=699 when it fits).
    answer: u16,
    bytes: Vec<u8>,
}

/// Where answers to a request whose top Via is `via` and that came from `source` go.
fn expected(rport: bool, sent_by_port: Option<u16>, source: SocketAddr) -> SocketAddr {
    if rport {
        source
    } else {
        SocketAddr::new(source.ip(), sent_by_port.unwrap_or(5060))
    }
}

fuzz_target!(|input: Input| {
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(input.ip)), input.port);
    let bytes = &input.bytes;

    if let Some(salvaged) = Salvaged::scan(bytes) {
        let mut answer = Vec::new();
        if error_response(&salvaged, 400, "Bad Request", Some(source), &mut answer).is_ok() {
            // Copied parts come from the request; ours are the status line, the stamp and
            // Content-Length.
            assert!(
                answer.len() <= bytes.len() + 160,
                "{} > {}",
                answer.len(),
                bytes.len()
            );
            if let Some(to) = salvaged.response_destination(Some(source)) {
                assert_eq!(to.ip(), source.ip());
            }
        }
    }

    let Ok(view) = MessageView::parse(bytes) else {
        return;
    };
    if view.is_request() {
        if let Ok(Some(via)) = view.top_via() {
            let want = expected(via.rport.is_some(), via.port(), source);
            let mut stamped = Vec::new();
            match stamp_received(&view, source, &mut stamped) {
                Ok(true) => {
                    let again = MessageView::parse(&stamped).expect("a stamped request scans");
                    assert_eq!(again.call_id(), view.call_id());
                    assert_eq!(again.cseq(), view.cseq());
                    assert_eq!(again.via_branch(), view.via_branch());
                    assert_eq!(again.via_sent_by(), view.via_sent_by());
                    assert_eq!(again.body(), view.body());
                    let top = again.top_via().unwrap().unwrap();
                    assert_eq!(top.response_destination(), Some(want));
                }
                Ok(false) => assert_eq!(via.response_destination(), Some(want)),
                Err(_) => {}
            }
        }
    }

    let policy = Policy {
        max_dialogs: 2,
        max_early_dialogs: 1,
        max_dialogs_per_source: 1,
        new_dialogs_per_second_per_source: 2,
        new_dialog_burst_per_source: 1,
        error_answer_burst_per_source: 2,
        max_invite_records: 2,
        invite_record_bytes: 2_000,
        dialog_bytes: 1_000,
        max_body_bytes: 64,
        max_route_entries: 2,
        max_route_bytes: 64,
        ..Policy::default()
    };
    let manager = DialogManager::new(ManagerConfig {
        capacity: 4,
        policy,
        ..ManagerConfig::default()
    })
    .unwrap();
    let mut out = Outbox::new();
    for now in 0..2 {
        if let Ok(Verdict::NewInvite { invite, .. }) =
            manager.on_received_from(bytes, source, now, &mut out)
        {
            let status = 100 + input.answer % 600;
            let _ = manager.respond_invite(invite, status, &Default::default(), now, &mut out);
        }
    }
    for msg in out.iter() {
        let Ok(sent) = MessageView::parse(msg.bytes) else {
            assert!(
                msg.destination.is_some(),
                "an unscannable answer carries its destination"
            );
            continue;
        };
        let (Some(status), Some(tag)) = (sent.status_code(), sent.to_tag()) else {
            continue;
        };
        if sent.cseq().method == b"INVITE" && (101..300).contains(&status) {
            let key = DialogKey {
                call_id: sent.call_id(),
                local_tag: tag,
                remote_tag: sent.from_tag().unwrap_or_default(),
            };
            assert!(
                manager.table().lookup(&key).is_some(),
                "a {status} without its dialog"
            );
        }
    }
    assert!(manager.len() <= 2 && manager.invite_record_bytes() <= 2_000);
    // One thread passes the dialogs' budget by one dialog at most, which holds at most a
    // message's worth beside its head and our Contact.
    assert!(manager.dialog_bytes() < 1_000 + bytes.len() + 512);
});
