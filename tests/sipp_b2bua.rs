//! SIPp caller → `sipdialog b2bua` → SIPp callee on loopback: the calls relayed leg to leg
//! (each run ending with no failed call on either side, no dialog and no leg entry left), and a REFER the
//! B2BUA carries out itself. Needs `sipp`; `.ci/test` installs it.

mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use peers::{refer_keys, require, scenario, scratch, Endpoint, Sipp};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn path(name: &str) -> String {
    match name {
        "uas" => name.to_string(),
        _ => scenario(name).to_string_lossy().into_owned(),
    }
}

/// One callee SIPp: its scenario, the calls it must see, its extra options.
struct Callee<'a> {
    scenario: &'a str,
    port: u16,
    calls: u64,
    extra: &'a [&'a str],
}

/// Runs `caller` (with `caller_extra`) for `calls` calls through a fresh b2bua whose upstream
/// is the first callee; checks every SIPp's verdict, the b2bua's dialog count, that no
/// dialog is left, and that the b2bua drains and exits 0.
fn relay(
    test: &str,
    base: u16,
    caller: &str,
    caller_extra: &[&str],
    callees: &[Callee<'_>],
    calls: u64,
    dialogs: u64,
) {
    require("sipp");
    let dir = scratch(test);
    let paths: Vec<String> = callees.iter().map(|c| path(c.scenario)).collect();
    let running: Vec<_> = callees
        .iter()
        .zip(&paths)
        .map(|(c, p)| {
            let sipp = Sipp {
                scenario: p,
                target: None,
                port: c.port,
                calls: c.calls,
                rate: 10,
                extra: c.extra,
            };
            sipp.spawn(&dir.join(format!("callee-{}", c.port)))
        })
        .collect();
    let upstream = addr(callees[0].port).to_string();
    let b2bua = Endpoint::start(
        &dir,
        &["b2bua", "--upstream", &upstream],
        addr(base),
        addr(base + 100),
    );
    let caller_path = path(caller);
    let outcome = Sipp {
        scenario: &caller_path,
        target: Some(b2bua.sip),
        port: base + 200,
        calls,
        rate: 20,
        extra: caller_extra,
    }
    .run(&dir, Duration::from_secs(120));
    assert_eq!(
        (outcome.successful, outcome.failed),
        (calls, 0),
        "caller (successful, failed); errors:\n{}\nb2bua log:\n{}",
        outcome.errors,
        b2bua.log()
    );
    assert!(
        outcome.status.is_some_and(|s| s.success()),
        "caller exit: {:?}",
        outcome.status
    );
    for (callee, run) in callees.iter().zip(running) {
        let run = run.wait(Duration::from_secs(60));
        assert_eq!(
            (run.successful, run.failed),
            (callee.calls, 0),
            "callee {} (successful, failed); errors:\n{}",
            callee.scenario,
            run.errors
        );
    }
    assert_eq!(b2bua.wait_idle(Duration::from_secs(10)), 0, "dialogs left");
    // Every way a call ended took its leg entries out.
    for gauge in ["sipdialog_b2bua_leg_entries", "sipdialog_b2bua_leg_bytes"] {
        assert_eq!(b2bua.metric(gauge), 0, "{gauge} after the calls");
    }
    assert_eq!(
        b2bua.metric("sipdialog_dialogs_created_total"),
        dialogs,
        "dialogs the b2bua created"
    );
    assert!(b2bua.stop().success(), "b2bua exit status");
}

const CALLS: u64 = 20;

#[test]
fn basic_calls_relayed() {
    let callee = Callee {
        scenario: "uas",
        port: 22301,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_basic",
        22060,
        "basic",
        &[],
        &[callee],
        CALLS,
        2 * CALLS,
    );
}

#[test]
fn cancel_relayed_to_the_ringing_callee() {
    let callee = Callee {
        scenario: "callee_ring",
        port: 22311,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_cancel",
        22061,
        "cancel",
        &[],
        &[callee],
        CALLS,
        2 * CALLS,
    );
}

#[test]
fn callee_hangs_up_and_the_bye_is_relayed() {
    let callee = Callee {
        scenario: "callee_bye",
        port: 22321,
        calls: CALLS,
        extra: &["-d", "200"],
    };
    relay(
        "b2bua_callee_bye",
        22062,
        "serve_bye",
        &[],
        &[callee],
        CALLS,
        2 * CALLS,
    );
}

#[test]
fn reinvite_update_info_options_relayed() {
    let callee = Callee {
        scenario: "callee_reinvite",
        port: 22331,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_reinvite",
        22063,
        "reinvite",
        &[],
        &[callee],
        CALLS,
        2 * CALLS,
    );
}

#[test]
fn refer_carried_out_by_the_b2bua() {
    // A calls B through the b2bua and transfers B to C with REFER. The b2bua calls C, NOTIFYs
    // A (100, then 200), bridges B to C; A hangs up; later B hangs up and C gets the BYE.
    let b = Callee {
        scenario: "callee_bye",
        port: 22341,
        calls: CALLS,
        extra: &["-d", "3000"],
    };
    let c = Callee {
        scenario: "uas",
        port: 22342,
        calls: CALLS,
        extra: &[],
    };
    let target = refer_keys("127.0.0.1:22342", "0");
    relay(
        "b2bua_refer",
        22064,
        "refer",
        &target,
        &[b, c],
        CALLS,
        3 * CALLS,
    );
}

#[test]
fn replaces_through_the_b2bua() {
    // Each caller call makes two dialogs (the second replacing the first): two calls upstream.
    let callee = Callee {
        scenario: "uas",
        port: 22351,
        calls: 2 * CALLS,
        extra: &[],
    };
    relay(
        "b2bua_replaces",
        22065,
        "replaces",
        &[],
        &[callee],
        CALLS,
        4 * CALLS,
    );
}

#[test]
fn unknown_dialog_gets_481() {
    let callee = Callee {
        scenario: "uas",
        port: 22361,
        calls: 0,
        extra: &[],
    };
    relay(
        "b2bua_481",
        22066,
        "unknown_dialog",
        &[],
        &[callee],
        CALLS,
        0,
    );
}

#[test]
fn relayed_calls_survive_packet_loss() {
    let callee = Callee {
        scenario: "uas",
        port: 22371,
        calls: 50,
        extra: &[],
    };
    relay(
        "b2bua_loss",
        22067,
        "basic",
        &["-lost", "10"],
        &[callee],
        50,
        100,
    );
}

/// A callee that sends its 200 again (its first ACK lost) keeps its call: the B2BUA ACKs the
/// repeat too and ends nothing, so the caller's BYE is relayed as usual. (Taking the repeat
/// for an answer that came after we gave up ended both legs.)
#[test]
fn a_callees_repeated_2xx_is_acked_again_and_the_call_goes_on() {
    let callee = Callee {
        scenario: "callee_2xx_again",
        port: 22381,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_2xx_again",
        22068,
        "basic",
        &[],
        &[callee],
        CALLS,
        2 * CALLS,
    );
}

/// The caller hears a 100 Trying only when the callee is slow: a callee that rings at once
/// makes it moot (the caller's scenario takes a 100 for an unexpected message), and one that
/// answers after 300 ms gets the caller its 100 first (that scenario requires it).
#[test]
fn a_100_trying_only_while_the_callee_keeps_the_caller_waiting() {
    let at_once = Callee {
        scenario: "uas",
        port: 22391,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_no_trying",
        22069,
        "ring_no_trying",
        &[],
        &[at_once],
        CALLS,
        2 * CALLS,
    );
    let slow = Callee {
        scenario: "callee_slow",
        port: 22392,
        calls: CALLS,
        extra: &[],
    };
    relay(
        "b2bua_trying",
        22070,
        "trying_first",
        &[],
        &[slow],
        CALLS,
        2 * CALLS,
    );
}
