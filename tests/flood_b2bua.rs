//! `sipdialog b2bua` under overload, on loopback (small scale of `benches/flood.py`): an
//! upstream that never answers costs nothing lasting (callers get 408, the leg maps empty),
//! and a caller the B2BUA cannot serve gets 503, never silence. Needs `sipp`.

mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use peers::udp::{self, UdpPeer};
use peers::{require, scratch, Endpoint, Sipp};

/// One flood at a time: on two cores, two at once would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn b2bua(dir: &Path, base: u16, upstream: SocketAddr, args: &[&str]) -> Endpoint {
    let upstream = upstream.to_string();
    let mut all = vec!["b2bua", "--workers", "2", "--upstream", &upstream];
    all.extend_from_slice(args);
    let sip = at([127, 0, 0, 1], base);
    Endpoint::start(dir, &all, sip, at([127, 0, 0, 1], base + 100))
}

/// The last final status each Call-ID got.
fn finals(received: &[Vec<u8>]) -> HashMap<String, u16> {
    let mut finals = HashMap::new();
    for msg in received {
        if let Some((status, method, call)) = udp::response(msg) {
            if method == "INVITE" && status >= 200 {
                finals.insert(call, status);
            }
        }
    }
    finals
}

/// Waits (at most `limit`) until `metric` reads `want`; the last value read.
fn wait_for(endpoint: &Endpoint, metric: &str, want: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let value = endpoint.metric(metric);
        if value == want || Instant::now() >= deadline {
            return value;
        }
        sleep(Duration::from_millis(100));
    }
}

/// 3 000 INVITEs to a B2BUA whose upstream never answers: every caller gets 100, then 408 at
/// Timer B (64xT1), and every map the B2BUA and the manager keep for them empties.
#[test]
fn a_silent_upstream_costs_nothing_lasting() {
    let _serial = one_at_a_time();
    let dir = scratch("b2bua_silent");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "new_dialogs_per_second_per_source = 0\n").unwrap();
    let silent = UdpPeer::bind(at([127, 0, 0, 1], 24150)).collect();
    let t1 = 50;
    let b2bua = b2bua(
        &dir,
        24100,
        at([127, 0, 0, 1], 24150),
        &["--t1-ms", "50", "--policy", policy.to_str().unwrap()],
    );
    let pid = b2bua.pid();
    sleep(Duration::from_millis(300));
    let baseline = udp::anon_kib(pid);
    let caller = UdpPeer::bind(at([127, 0, 0, 11], 24151));
    let caller_addr = caller.addr;
    let replies = caller.collect();
    let sender = UdpPeer::bind(at([127, 0, 0, 11], 0));
    let total = 3_000u32;
    for n in 0..total {
        sender.send(
            &udp::invite(&format!("s-{n}"), caller_addr, caller_addr, ""),
            b2bua.sip,
        );
        if n % 20 == 0 {
            sleep(Duration::from_millis(10));
        }
    }
    let outbound = b2bua.metric("sipdialog_b2bua_outbound_invites");
    let peak = udp::anon_kib(pid);
    sleep(Duration::from_millis(64 * t1 + 1_000));
    let (_, received) = replies.finish();
    let finals = finals(&received);
    let timeouts = finals.values().filter(|&&s| s == 408).count();
    let legs = wait_for(
        &b2bua,
        "sipdialog_b2bua_leg_entries",
        0,
        Duration::from_secs(5),
    );
    let records = wait_for(
        &b2bua,
        "sipdialog_invite_records",
        0,
        Duration::from_secs(10),
    );
    let retransmitting = wait_for(
        &b2bua,
        "sipdialog_endpoint_transactions",
        0,
        Duration::from_secs(10),
    );
    sleep(Duration::from_millis(2_500));
    let after = udp::anon_kib(pid);
    let (_, upstream_got) = silent.finish();
    println!(
        "{total} INVITEs to a silent upstream: {outbound} outbound INVITEs at the peak, \
         {} INVITE datagrams upstream, {timeouts} callers got 408; leg entries {legs}, INVITE \
         records {records}, transactions {retransmitting} after; anonymous RSS {baseline} KiB before, \
         {peak} KiB at the peak, {after} KiB after",
        upstream_got.len()
    );
    assert!(outbound > 0);
    assert_eq!(
        finals.len() as u32,
        total,
        "every caller got a final answer"
    );
    assert_eq!(timeouts as u32, total, "and it is 408");
    assert_eq!(legs, 0, "the B2BUA's maps are empty");
    assert_eq!(b2bua.metric("sipdialog_b2bua_outbound_invites"), 0);
    assert_eq!(b2bua.metric("sipdialog_b2bua_inbound_invites"), 0);
    assert_eq!(records, 0, "the manager's INVITE records are gone");
    assert_eq!(retransmitting, 0, "nothing is retransmitted any more");
    assert_eq!(b2bua.metric("sipdialog_dialogs_active"), 0);
    assert!(
        after <= baseline + udp::SETTLED_SLACK_KIB,
        "{after} KiB, baseline {baseline}"
    );
    assert!(b2bua.stop().success());
}

/// More calls than the B2BUA has room for (a table of 20 dialogs: 10 calls), all at once:
/// every caller gets a final answer, 200 or 503 with Retry-After.
#[test]
fn past_its_capacity_the_b2bua_answers_503() {
    let _serial = one_at_a_time();
    require("sipp");
    let dir = scratch("b2bua_capacity");
    let upstream = Sipp {
        scenario: "uas",
        target: None,
        port: 24160,
        calls: 1_000,
        rate: 10,
        extra: &[],
    }
    .spawn(&dir.join("uas"));
    let b2bua = b2bua(
        &dir,
        24110,
        at([127, 0, 0, 1], 24160),
        &["--capacity", "20"],
    );
    let caller = UdpPeer::bind(at([127, 0, 0, 12], 24161));
    let caller_addr = caller.addr;
    let replies = caller.collect();
    let sender = UdpPeer::bind(at([127, 0, 0, 12], 0));
    let total = 60u32;
    for n in 0..total {
        sender.send(
            &udp::invite(&format!("cap-{n}"), caller_addr, caller_addr, ""),
            b2bua.sip,
        );
    }
    sleep(Duration::from_secs(3));
    let (_, received) = replies.finish();
    let finals = finals(&received);
    let ok = finals.values().filter(|&&s| s == 200).count();
    let unavailable = finals.values().filter(|&&s| s == 503).count();
    let with_retry_after = received
        .iter()
        .filter(|m| udp::response(m).is_some_and(|(s, _, _)| s == 503))
        .all(|m| udp::has_header(m, "Retry-After").is_some());
    println!("{total} calls at once into room for 10: {ok} answered 200, {unavailable} got 503");
    assert_eq!(
        finals.len() as u32,
        total,
        "every caller got a final answer"
    );
    assert_eq!(ok + unavailable, total as usize, "{finals:?}");
    assert!((1..=10).contains(&ok), "{ok} calls fit");
    assert!(with_retry_after, "503s carry Retry-After");
    drop(upstream);
    assert!(b2bua.stop().success());
}
