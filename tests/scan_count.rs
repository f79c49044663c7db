//! One scan per received message, none per sent one, through `sipdialog serve` and through
//! `sipdialog b2bua`: SIPp calls with re-INVITE, UPDATE, INFO and OPTIONS, the endpoint built
//! with the `scan-counter` feature, and its count of scans compared with its count of
//! datagrams received. Every message the endpoint sends (100, 180, 200s, ACKs, the B2BUA's
//! relayed requests and answers) leaves without a scan: the outbox and the transaction layer
//! say what each is and where it goes. Needs `sipp`; `.ci/test` installs it and runs this
//! test with the feature on.

mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use peers::{require, scenario, scratch, Endpoint, Sipp};

const CALLS: u64 = 20;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Scans and datagrams received, once the calls are over and every dialog gone.
fn counts(endpoint: &Endpoint) -> (u64, u64) {
    assert_eq!(
        endpoint.wait_idle(Duration::from_secs(10)),
        0,
        "dialogs left"
    );
    (
        endpoint.metric("sipdialog_wire_scans_total"),
        endpoint.metric("sipdialog_endpoint_datagrams_received_total"),
    )
}

fn caller(dir: &std::path::Path, name: &str, target: SocketAddr, port: u16) {
    let path = scenario(name);
    let outcome = Sipp {
        scenario: path.to_str().unwrap(),
        target: Some(target),
        port,
        calls: CALLS,
        rate: 20,
        extra: &[],
    }
    .run(dir, Duration::from_secs(120));
    assert_eq!(
        (outcome.successful, outcome.failed),
        (CALLS, 0),
        "SIPp {name}: {}",
        outcome.errors
    );
}

#[test]
fn serve_scans_each_received_message_once() {
    require("sipp");
    let dir = scratch("scan_count_serve");
    let serve = Endpoint::start(&dir, &["serve"], addr(25060), addr(25160));
    caller(&dir, "basic", serve.sip, 25260);
    caller(&dir, "reinvite", serve.sip, 25261);
    let (scans, received) = counts(&serve);
    println!("serve: {received} datagrams received, {scans} scans");
    // 20 basic calls (INVITE, ACK, BYE) and 20 with re-INVITE, ACK, UPDATE, INFO, OPTIONS.
    assert!(received >= 8 * CALLS, "{received} datagrams");
    assert_eq!(scans, received, "scans per received message");
    assert!(serve.stop().success());
}

#[test]
fn b2bua_scans_each_received_message_once() {
    require("sipp");
    let dir = scratch("scan_count_b2bua");
    let callee_path = scenario("callee_reinvite");
    let callees = [
        ("uas".to_string(), 25301),
        (callee_path.to_string_lossy().into_owned(), 25302),
    ];
    for (round, (callee, port)) in callees.iter().enumerate() {
        let dir = dir.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let running = Sipp {
            scenario: callee,
            target: None,
            port: *port,
            calls: CALLS,
            rate: 10,
            extra: &[],
        }
        .spawn(&dir.join("callee"));
        let upstream = addr(*port).to_string();
        let base = 25070 + round as u16;
        let b2bua = Endpoint::start(
            &dir,
            &["b2bua", "--upstream", &upstream],
            addr(base),
            addr(base + 100),
        );
        let name = if round == 0 { "basic" } else { "reinvite" };
        caller(&dir, name, b2bua.sip, base + 200);
        let run = running.wait(Duration::from_secs(60));
        assert_eq!(
            (run.successful, run.failed),
            (CALLS, 0),
            "callee: {}",
            run.errors
        );
        let (scans, received) = counts(&b2bua);
        println!("b2bua ({name}): {received} datagrams received, {scans} scans");
        assert!(received >= 6 * CALLS, "{received} datagrams");
        assert_eq!(scans, received, "scans per received message");
        assert!(b2bua.stop().success());
    }
}
