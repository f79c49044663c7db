//! SIPp → Kamailio (dialog module, record-routing) → `sipdialog serve`: the calls work with a
//! route set, and serve's own requests (NOTIFY, BYE) travel back through the proxy.
//! Needs `sipp` and `kamailio`; `.ci/test` installs them.

mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use peers::{refer_keys, require, scenario, scratch, Endpoint, Kamailio, Sipp};

const CALLS: u64 = 20;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs `name` through the proxy; returns Kamailio's `stat` before and after.
fn through_proxy(
    dir: &std::path::Path,
    kamailio: &Kamailio,
    serve: &Endpoint,
    name: &str,
    port: u16,
    stat: &str,
) -> (u64, u64) {
    let before = kamailio.stat(stat);
    let path = scenario(name);
    let outcome = Sipp {
        scenario: path.to_str().unwrap(),
        target: Some(kamailio.sip),
        port,
        calls: CALLS,
        rate: 20,
        extra: &refer_keys("127.0.0.1:23070", "0"),
    }
    .run(dir, Duration::from_secs(120));
    assert_eq!(
        (outcome.successful, outcome.failed),
        (CALLS, 0),
        "{name}: SIPp calls (successful, failed); errors:\n{}\nserve log:\n{}",
        outcome.errors,
        serve.log()
    );
    assert_eq!(
        serve.wait_idle(Duration::from_secs(10)),
        0,
        "{name}: dialogs left in serve"
    );
    (before, kamailio.stat(stat))
}

#[test]
fn calls_through_kamailio_use_the_route_set() {
    require("sipp");
    let dir = scratch("kamailio_serve");
    // Kamailio's workers may deliver NOTIFY 100 before the 202; refer.xml then answers the
    // NOTIFY's retransmission, and serve holds the final NOTIFY until NOTIFY 100 is answered.
    let serve = Endpoint::start(
        &dir,
        &["serve", "--transfer-ms", "50"],
        addr(23070),
        addr(23170),
    );
    let kamailio = Kamailio::start(&dir, addr(23060), serve.sip, addr(23090), 256);

    through_proxy(
        &dir,
        &kamailio,
        &serve,
        "basic",
        23260,
        "kamailio_core_rcv_requests",
    );
    through_proxy(
        &dir,
        &kamailio,
        &serve,
        "reinvite",
        23261,
        "kamailio_core_rcv_requests",
    );
    // SIPp sends INVITE, ACK, REFER, BYE per call; serve's two NOTIFYs only reach the proxy
    // if serve follows the route set Kamailio recorded.
    let (before, after) = through_proxy(
        &dir,
        &kamailio,
        &serve,
        "refer",
        23262,
        "kamailio_core_rcv_requests",
    );
    assert!(
        after - before >= 6 * CALLS,
        "requests through the proxy: {} (NOTIFYs bypassed it?)",
        after - before
    );
    drop(serve);
    // serve hangs up: every BYE the proxy sees came from serve, along the route set.
    let serve = Endpoint::start(
        &dir,
        &["serve", "--hold-ms", "100"],
        addr(23071),
        addr(23171),
    );
    let kamailio_bye = Kamailio::start(
        &scratch("kamailio_serve_bye"),
        addr(23061),
        serve.sip,
        addr(23091),
        256,
    );
    let (before, after) = through_proxy(
        &dir,
        &kamailio_bye,
        &serve,
        "serve_bye",
        23263,
        "kamailio_core_rcv_requests_bye",
    );
    assert_eq!(after - before, CALLS, "BYEs from serve through the proxy");

    for k in [&kamailio, &kamailio_bye] {
        assert_eq!(
            k.stat("kamailio_dialog_active_dialogs"),
            0,
            "dialogs left in Kamailio"
        );
    }
    assert!(serve.stop().success());
}
