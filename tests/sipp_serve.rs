//! SIPp calls `sipdialog serve` on loopback: every kind of call the UAS handles, each run
//! ending with no failed call, every call counted by the endpoint, and no dialog left.
//! Needs `sipp` (Debian's sip-tester); `.ci/test` installs it.

mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use peers::{refer_keys, require, scenario, scratch, Endpoint, Sipp};

/// Each test its own ports, so they run in parallel.
fn addrs(base: u16) -> (SocketAddr, SocketAddr, u16) {
    let sip = SocketAddr::from(([127, 0, 0, 1], base));
    let metrics = SocketAddr::from(([127, 0, 0, 1], base + 100));
    (sip, metrics, base + 200)
}

/// Runs `scenario` for `calls` calls against a fresh `serve <args>`; checks SIPp's verdict,
/// that serve set up `dialogs` dialogs, that none is left, and that serve drains and exits 0.
fn run(test: &str, base: u16, args: &[&str], name: &str, calls: u64, dialogs: u64, extra: &[&str]) {
    require("sipp");
    let dir = scratch(test);
    let (sip, metrics, sipp_port) = addrs(base);
    let mut serve_args = vec!["serve"];
    serve_args.extend_from_slice(args);
    let serve = Endpoint::start(&dir, &serve_args, sip, metrics);
    let path = scenario(name);
    let sipp = Sipp {
        scenario: path.to_str().unwrap(),
        target: Some(sip),
        port: sipp_port,
        calls,
        rate: 20,
        extra,
    };
    let outcome = sipp.run(&dir, Duration::from_secs(120));
    assert_eq!(
        (outcome.successful, outcome.failed),
        (calls, 0),
        "SIPp calls (successful, failed); errors:\n{}\nserve log:\n{}",
        outcome.errors,
        serve.log()
    );
    assert!(
        outcome.status.is_some_and(|s| s.success()),
        "SIPp exit: {:?}",
        outcome.status
    );
    assert_eq!(serve.wait_idle(Duration::from_secs(10)), 0, "dialogs left");
    assert_eq!(
        serve.metric("sipdialog_dialogs_created_total"),
        dialogs,
        "dialogs serve created"
    );
    assert!(serve.stop().success(), "serve exit status");
}

#[test]
fn basic_calls() {
    run("basic_calls", 21060, &[], "basic", 50, 50, &[]);
}

#[test]
fn cancel_before_answer() {
    // serve rings for 5 s; every call is cancelled and leaves its early dialog behind none.
    run(
        "cancel",
        21061,
        &["--answer-ms", "5000"],
        "cancel",
        20,
        20,
        &[],
    );
}

#[test]
fn serve_hangs_up() {
    run(
        "serve_bye",
        21062,
        &["--hold-ms", "200"],
        "serve_bye",
        20,
        20,
        &[],
    );
}

#[test]
fn reinvite_update_info_options() {
    run("reinvite", 21063, &[], "reinvite", 20, 20, &[]);
}

#[test]
fn blind_transfer_with_both_notifies() {
    let target = refer_keys("127.0.0.1:21064", "0");
    run(
        "refer",
        21064,
        &["--transfer-ms", "100"],
        "refer",
        20,
        20,
        &target,
    );
}

#[test]
fn final_notify_waits_for_the_answer_to_the_first() {
    // The transfer is over after 50 ms but NOTIFY 100 is answered after 300: a final NOTIFY
    // sent before that answer reaches SIPp during its pause and fails the call.
    let target = refer_keys("127.0.0.1:21068", "300");
    run(
        "refer_late_answer",
        21068,
        &["--transfer-ms", "50"],
        "refer",
        10,
        10,
        &target,
    );
}

#[test]
fn invite_with_replaces_takes_over_a_live_call() {
    // Two dialogs per call: the original and the one replacing it.
    run("replaces", 21065, &[], "replaces", 20, 40, &[]);
}

#[test]
fn request_in_unknown_dialog_gets_481() {
    run("unknown_dialog", 21066, &[], "unknown_dialog", 20, 0, &[]);
}

#[test]
fn calls_survive_packet_loss() {
    // SIPp drops 10 % of what it sends and receives: both sides must retransmit (INVITE,
    // 2xx until ACK, BYE) and answer retransmissions from the response cache.
    run(
        "packet_loss",
        21067,
        &[],
        "basic",
        100,
        100,
        &["-lost", "10"],
    );
}

/// serve sends a 100 Trying only when no response leaves at once: ringing at once (180, then
/// the 200 after 300 ms) takes none, and the caller's scenario takes a 100 for an unexpected
/// message; answering after 300 ms with no 180 sends the 100 first (that scenario requires it).
#[test]
fn a_100_trying_only_when_serve_keeps_the_caller_waiting() {
    run(
        "ring_no_trying",
        21070,
        &["--answer-ms", "300"],
        "ring_no_trying",
        20,
        20,
        &[],
    );
    run(
        "trying_first",
        21071,
        &["--ring-ms", "1000", "--answer-ms", "300"],
        "trying_first",
        20,
        20,
        &[],
    );
}
