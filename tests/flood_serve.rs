//! `sipdialog serve` tried as an attacker would, on loopback (small scale of
//! `benches/flood.py`): floods past every cap, oversized messages, spoofed CANCELs, a Contact
//! naming a third party, malformed requests and garbage. Needs `sipp`; `.ci/test` installs it.
//! Floods come from other loopback addresses (127.0.0.x) than the legitimate SIPp calls.

mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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

fn serve(dir: &Path, base: u16, args: &[&str]) -> Endpoint {
    let mut all = vec!["serve", "--workers", "2"];
    all.extend_from_slice(args);
    Endpoint::start(
        dir,
        &all,
        at([127, 0, 0, 1], base),
        at([127, 0, 0, 1], base + 100),
    )
}

fn policy_file(dir: &Path, text: &str) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("policy file");
    path.to_string_lossy().into_owned()
}

/// Samples the endpoint's RSS until stopped; the peak, in KiB.
fn watch_rss(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut peak = 0;
        let limit = Instant::now() + Duration::from_secs(120);
        while !flag.load(Ordering::Relaxed) && Instant::now() < limit {
            peak = peak.max(udp::anon_kib(pid));
            sleep(Duration::from_millis(50));
        }
        peak
    });
    (stop, thread)
}

/// Final statuses per Call-ID, and how many BYEs each call drew.
fn finals(received: &[Vec<u8>]) -> (HashMap<String, Vec<u16>>, HashMap<String, usize>) {
    let (mut finals, mut byes) = (HashMap::<String, Vec<u16>>::new(), HashMap::new());
    for msg in received {
        if msg.starts_with(b"BYE ") {
            let view = sipdialog::wire::MessageView::parse(msg).expect("our BYE scans");
            let call = String::from_utf8_lossy(view.call_id()).into_owned();
            *byes.entry(call).or_insert(0) += 1;
            continue;
        }
        if let Some((status, method, call)) = udp::response(msg) {
            if method == "INVITE" && status >= 200 {
                let statuses = finals.entry(call).or_default();
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
        }
    }
    (finals, byes)
}

/// 20 000 INVITEs at 5 000/s from one address, never ACKed, against a table of 1 000: every
/// INVITE gets 200 (while the source's share lasts) or 503 with Retry-After, never a 200
/// without a dialog; a legitimate SIPp caller on another address keeps its calls; memory
/// comes back within 64xT1.
#[test]
fn invite_flood_past_capacity() {
    let _serial = one_at_a_time();
    require("sipp");
    let dir = scratch("flood_invite");
    let policy = policy_file(
        &dir,
        "new_dialogs_per_second_per_source = 100\nnew_dialog_burst_per_source = 100\n\
         max_dialogs_per_source = 500\n",
    );
    let t1 = 100;
    let serve = serve(
        &dir,
        24000,
        &["--capacity", "1000", "--t1-ms", "100", "--policy", &policy],
    );
    let pid = serve.pid();
    sleep(Duration::from_millis(500));
    let baseline = udp::anon_kib(pid);
    let (stop_rss, rss) = watch_rss(pid);

    let legit = Sipp {
        scenario: "uac",
        target: Some(serve.sip),
        port: 24200,
        calls: 200,
        rate: 25,
        extra: &[],
    }
    .spawn(&dir.join("legit"));

    let flooder = UdpPeer::bind(at([127, 0, 0, 2], 24201));
    let flooder_addr = flooder.addr;
    let sender = UdpPeer::bind(at([127, 0, 0, 2], 0));
    let collector = flooder.collect();
    let (total, rate) = (20_000u32, 5_000u32);
    let start = Instant::now();
    let mut sent_bytes = 0usize;
    for n in 0..total {
        let due = start + Duration::from_micros(u64::from(n) * 1_000_000 / u64::from(rate));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
        let msg = udp::invite(&format!("fl-{n}"), flooder_addr, flooder_addr, "");
        sent_bytes += msg.len();
        sender.send(&msg, serve.sip);
    }
    let flood_secs = start.elapsed().as_secs_f64();
    let run = legit.wait(Duration::from_secs(60));
    // The flood's dialogs wait 64xT1 for their ACK, then get their BYE (once).
    sleep(Duration::from_millis(64 * t1 + 1_500));
    let (_, received) = collector.finish();
    let after = {
        // Freed memory goes back within the endpoint's trim period.
        sleep(Duration::from_millis(2_500));
        udp::anon_kib(pid)
    };
    stop_rss.store(true, Ordering::Relaxed);
    let peak = rss.join().unwrap();

    let (finals, byes) = finals(&received);
    let answered_200 = finals.values().filter(|s| s.contains(&200)).count() as u64;
    let answered_503 = finals.values().filter(|s| s.contains(&503)).count() as u64;
    let both = finals.values().filter(|s| s.len() > 1).count();
    let with_retry_after = received
        .iter()
        .filter(|m| udp::response(m).is_some_and(|(s, _, _)| s == 503))
        .filter(|m| udp::has_header(m, "Retry-After").is_some_and(|v| v == "5"))
        .count() as u64;
    let created = serve.metric("sipdialog_dialogs_created_total");
    let rejected_503 = {
        let text = serve.scrape().expect("metrics");
        peers::metric_sum(
            &text
                .lines()
                .filter(|l| l.contains("status=\"503\""))
                .collect::<Vec<_>>()
                .join("\n"),
            "sipdialog_rejected_total",
        )
    };
    println!(
        "flood: {total} INVITEs in {flood_secs:.1} s ({sent_bytes} bytes): {answered_200} got 200, \
         {answered_503} got 503 ({with_retry_after} with Retry-After: 5), {} BYEs to the flooder; \
         legit SIPp: {} ok, {} failed; anonymous RSS {baseline} KiB before, peak {peak} KiB, {after} KiB \
         64xT1 after; dialogs created {created}, 503 counted {rejected_503}",
        byes.values().sum::<usize>(),
        run.successful,
        run.failed,
    );
    assert_eq!(
        finals.len() as u32,
        total,
        "every INVITE got a final answer"
    );
    assert_eq!(both, 0, "no INVITE got two different final answers");
    assert_eq!(answered_200 + answered_503, u64::from(total));
    assert!(answered_503 > 10_000, "the excess got 503");
    assert_eq!(
        with_retry_after, answered_503,
        "every 503 carries Retry-After"
    );
    assert_eq!(
        rejected_503, answered_503,
        "sipdialog_rejected_total{{status=\"503\"}}"
    );
    // Every 200 had a dialog behind it: the flood's and SIPp's 200s are all the dialogs made.
    assert_eq!(created, answered_200 + run.successful);
    assert!(
        byes.values().all(|&n| n == 1),
        "the BYE after no ACK goes once"
    );
    assert!(
        run.successful * 100 >= 99 * 200,
        "legitimate calls: {} of 200 ok",
        run.successful
    );
    assert!(
        peak <= baseline + 64 * 1024,
        "peak {peak} KiB, baseline {baseline} KiB"
    );
    assert!(
        after <= baseline + udp::SETTLED_SLACK_KIB,
        "{after} KiB 64xT1 after the flood, baseline {baseline} KiB"
    );
    assert_eq!(serve.wait_idle(Duration::from_secs(10)), 0);
    assert_eq!(serve.metric("sipdialog_invite_records"), 0);
    assert!(serve.stop().success());
}

/// 61 KB OPTIONS (240 Vias, answered 200 and cached) and 62 KB of Record-Route on INVITEs
/// (513): memory grows by no more than the transactions' byte budget.
#[test]
fn oversized_messages_stay_within_the_budgets() {
    let _serial = one_at_a_time();
    let dir = scratch("flood_oversized");
    let cache = 2 << 20;
    let serve = serve(
        &dir,
        24010,
        &["--t1-ms", "100", "--transaction-bytes", &cache.to_string()],
    );
    let pid = serve.pid();
    sleep(Duration::from_millis(300));
    let baseline = udp::anon_kib(pid);
    let (stop_rss, rss) = watch_rss(pid);
    let peer = UdpPeer::bind(at([127, 0, 0, 3], 0));
    let collector = UdpPeer::bind(at([127, 0, 0, 3], 24211)).collect();
    let from = at([127, 0, 0, 3], 24211);
    let vias: String = (0..239)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 10.{}.{}.1:5060;branch=z9hG4bK-pad-{i:0>201}\r\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    // 440 Record-Route entries, eleven to a line (as many lines would be over the header
    // count and get the rate-limited 513 for malformed requests instead).
    let routes: String = (0..40)
        .map(|l| {
            let entries: Vec<String> = (0..11)
                .map(|i| format!("<sip:proxy{:0>111}.example.com;lr>", l * 11 + i))
                .collect();
            format!("Record-Route: {}\r\n", entries.join(","))
        })
        .collect();
    let (options_n, invites_n) = (3_000u32, 1_000u32);
    for n in 0..options_n.max(invites_n) {
        if n < options_n {
            let msg = format!(
                "OPTIONS sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKo{n}\r\n\
{vias}Max-Forwards: 70\r\nFrom: <sip:big@{from}>;tag=o{n}\r\nTo: <sip:service@127.0.0.1>\r\n\
Call-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            assert!(msg.len() > 60_000 && msg.len() < 65_000, "{}", msg.len());
            peer.send(msg.as_bytes(), serve.sip);
        }
        if n < invites_n {
            let msg = udp::invite(&format!("rr-{n}"), from, from, &routes);
            assert!(msg.len() > 60_000 && msg.len() < 65_000, "{}", msg.len());
            peer.send(&msg, serve.sip);
        }
        // Paced (about 500 pairs a second): the point is what the endpoint keeps, not how many
        // 61 KB datagrams loopback drops.
        sleep(Duration::from_micros(2_500));
    }
    sleep(Duration::from_secs(2));
    let (_, received) = collector.finish();
    let during = udp::anon_kib(pid);
    sleep(Duration::from_millis(64 * 100 + 2_500));
    let after = udp::anon_kib(pid);
    stop_rss.store(true, Ordering::Relaxed);
    let peak = rss.join().unwrap();
    let count = |status: u16, method: &str| {
        received
            .iter()
            .filter_map(|m| udp::response(m))
            .filter(|(s, m, _)| *s == status && m == method)
            .count()
    };
    let cached = serve.metric("sipdialog_endpoint_transaction_bytes");
    println!(
        "{options_n} 61 KB OPTIONS: {} answered 200; {invites_n} 62 KB Record-Route INVITEs: {} \
         answered 513; anonymous RSS {baseline} KiB before, peak {peak} KiB, {during} KiB at the end, \
         {after} KiB 64xT1 later; transactions hold {cached} bytes",
        count(200, "OPTIONS"),
        count(513, "INVITE"),
    );
    // Loopback drops some 61 KB datagrams under a debug build (the socket buffers hold 60 of
    // them); the point is what is kept.
    assert!(
        count(200, "OPTIONS") as u32 > options_n / 2,
        "OPTIONS answered"
    );
    assert!(
        count(513, "INVITE") as u32 > invites_n / 2,
        "INVITEs refused with 513"
    );
    assert_eq!(serve.metric("sipdialog_dialogs_created_total"), 0);
    // Two workers' transactions, plus the allocator's slack.
    let budget_kib = 2 * cache as u64 / 1024;
    assert!(
        peak <= baseline + budget_kib + 24 * 1024,
        "peak {peak} KiB over {baseline} KiB"
    );
    assert!(
        after <= baseline + udp::SETTLED_SLACK_KIB,
        "{after} KiB after"
    );
    assert!(serve.stop().success());
}

/// A CANCEL with the victim's Call-ID and From tag but another branch (or another sent-by)
/// is not the victim's transaction: 481, and the victim's call is answered. The 481 goes back
/// to the CANCEL's source address (§18.2.1 `received`), never to the victim it named.
#[test]
fn a_spoofed_cancel_is_refused() {
    let _serial = one_at_a_time();
    let dir = scratch("flood_spoofed_cancel");
    let serve = serve(&dir, 24020, &["--answer-ms", "300"]);
    let victim = UdpPeer::bind(at([127, 0, 0, 4], 24221));
    let attacker = UdpPeer::bind(at([127, 0, 0, 5], 24222));
    // Where an answer to a CANCEL naming the victim's sent-by lands: the attacker's address
    // at the victim's port.
    let attacker_at_victims_port = UdpPeer::bind(at([127, 0, 0, 5], 24221));
    victim.send(
        &udp::invite("victim", victim.addr, victim.addr, ""),
        serve.sip,
    );
    sleep(Duration::from_millis(50));
    attacker.send(&udp::cancel("victim", victim.addr, "guess"), serve.sip);
    attacker.send(&udp::cancel("victim", attacker.addr, "victim"), serve.sip);
    let to_attacker = attacker.recv_for(Duration::from_millis(300), Duration::from_secs(2));
    let to_attacker_too =
        attacker_at_victims_port.recv_for(Duration::from_millis(300), Duration::from_secs(2));
    let to_victim = victim.recv_for(Duration::from_millis(500), Duration::from_secs(3));
    let statuses = |msgs: &[Vec<u8>]| -> Vec<(u16, String)> {
        msgs.iter()
            .filter_map(|m| udp::response(m))
            .map(|(s, m, _)| (s, m))
            .collect()
    };
    let cancel_481 = vec![(481, "CANCEL".to_string())];
    assert_eq!(statuses(&to_attacker), cancel_481, "wrong sent-by");
    assert_eq!(statuses(&to_attacker_too), cancel_481, "wrong branch");
    let victim_got = statuses(&to_victim);
    assert!(
        victim_got.contains(&(200, "INVITE".to_string())),
        "{victim_got:?}"
    );
    assert!(
        victim_got.iter().all(|(s, m)| m == "INVITE" && *s != 487),
        "{victim_got:?}"
    );
    assert!(serve.stop().success());
}

/// The right CANCEL from another port (so possibly another worker) around the time the 200
/// is due: for each INVITE either 487 or 200, never both.
#[test]
fn cancel_racing_the_200_from_another_port() {
    let _serial = one_at_a_time();
    let dir = scratch("flood_cancel_race");
    let serve = serve(&dir, 24030, &["--answer-ms", "100", "--t1-ms", "100"]);
    let caller = UdpPeer::bind(at([127, 0, 0, 6], 24231));
    let canceller = UdpPeer::bind(at([127, 0, 0, 6], 24232));
    let collector = caller.collect();
    let caller_addr = at([127, 0, 0, 6], 24231);
    let calls = 60u64;
    for n in 0..calls {
        let call = format!("race-{n}");
        canceller.send(&udp::invite(&call, caller_addr, caller_addr, ""), serve.sip);
        // 80 to 120 ms later: before, around and after the 200 at 100 ms.
        sleep(Duration::from_millis(80 + (n * 7) % 41));
        canceller.send(&udp::cancel(&call, caller_addr, &call), serve.sip);
    }
    sleep(Duration::from_millis(500));
    let (_, received) = collector.finish();
    let (finals, _) = finals(&received);
    let (mut ok, mut cancelled) = (0, 0);
    for (call, statuses) in &finals {
        assert_eq!(statuses.len(), 1, "{call}: {statuses:?}");
        match statuses[0] {
            200 => ok += 1,
            487 => cancelled += 1,
            s => panic!("{call}: {s}"),
        }
    }
    println!("{calls} INVITEs with a CANCEL from another port: {ok} answered 200, {cancelled} 487");
    assert_eq!(finals.len() as u64, calls);
    assert!(ok > 0 && cancelled > 0, "both orders happened");
    // Every call rang (an early dialog each); the answered ones are up, waiting for an ACK.
    assert_eq!(serve.metric("sipdialog_dialogs_created_total"), calls);
    assert_eq!(serve.metric("sipdialog_dialogs_active"), ok);
    assert!(serve.stop().success());
}

/// One INVITE whose Contact names a third party, never ACKed: the third party gets at most
/// one datagram (the BYE that ends the call), the source its answers; bytes out per byte in
/// are measured both ways.
#[test]
fn no_amplification_towards_a_third_party() {
    let _serial = one_at_a_time();
    let dir = scratch("flood_third_party");
    let t1 = 50;
    let serve = serve(&dir, 24040, &["--t1-ms", "50", "--hold-ms", "200"]);
    let attacker = UdpPeer::bind(at([127, 0, 0, 7], 24241));
    let victim = UdpPeer::bind(at([127, 0, 0, 8], 24242));
    let victim_rx = victim.collect();
    // Call 1: never ACKed. Call 2: ACKed from the attacker's address, then serve hangs up
    // (--hold-ms) towards the Contact.
    let first = udp::invite("tp-1", attacker.addr, at([127, 0, 0, 8], 24242), "");
    attacker.send(&first, serve.sip);
    let second = udp::invite("tp-2", attacker.addr, at([127, 0, 0, 8], 24242), "");
    attacker.send(&second, serve.sip);
    sleep(Duration::from_millis(30));
    let mut sent = first.len() + second.len();
    let got = attacker.recv_for(Duration::from_millis(100), Duration::from_secs(1));
    if let Some(ok) = got
        .iter()
        .find(|m| udp::response(m).is_some_and(|(s, _, c)| s == 200 && c == "tp-2"))
    {
        let view = sipdialog::wire::MessageView::parse(ok).unwrap();
        let to =
            sipdialog::dialog::without_tag(view.headers().find(|h| h.name == b"To").unwrap().value);
        let ack = format!(
            "ACK sip:sipdialog@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKack2\r\n\
From: <sip:flood@{}>;tag=ftp-2\r\nTo: {}{};tag={}\r\nCall-ID: tp-2\r\nCSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
            serve.sip,
            attacker.addr,
            attacker.addr,
            String::from_utf8_lossy(to.0).trim(),
            String::from_utf8_lossy(to.1),
            String::from_utf8_lossy(view.to_tag().unwrap()),
        );
        attacker.send(ack.as_bytes(), serve.sip);
        sent += ack.len();
    }
    let mut to_source: usize = got.iter().map(Vec::len).sum();
    let later = attacker.recv_for(
        Duration::from_millis(64 * t1 + 1_000),
        Duration::from_secs(10),
    );
    to_source += later.iter().map(Vec::len).sum::<usize>();
    sleep(Duration::from_millis(500));
    let (_, to_victim) = victim_rx.finish();
    let to_victim_bytes: usize = to_victim.iter().map(Vec::len).sum();
    println!(
        "{sent} bytes in from the attacker: {} datagrams / {to_source} bytes back to it ({:.2}x), \
         {} datagrams / {to_victim_bytes} bytes to the Contact it named ({:.2}x)",
        got.len() + later.len(),
        to_source as f64 / sent as f64,
        to_victim.len(),
        to_victim_bytes as f64 / sent as f64
    );
    let byes: Vec<_> = to_victim
        .iter()
        .filter(|m| m.starts_with(b"BYE "))
        .collect();
    assert_eq!(byes.len(), to_victim.len(), "only BYEs reach the Contact");
    assert!(
        to_victim.len() <= 2,
        "at most one datagram per call to the third party"
    );
    let calls: std::collections::HashSet<_> = byes
        .iter()
        .map(|m| {
            sipdialog::wire::MessageView::parse(m)
                .unwrap()
                .call_id()
                .to_vec()
        })
        .collect();
    assert_eq!(calls.len(), to_victim.len(), "never twice for one call");
    assert_eq!(serve.wait_idle(Duration::from_secs(5)), 0);
    assert!(serve.stop().success());
}

/// Malformed and unserved requests get an answer (the client would retransmit for 32 s
/// otherwise), and answers to garbage from one source are rate-limited.
#[test]
fn malformed_and_unserved_requests_are_answered() {
    let _serial = one_at_a_time();
    let dir = scratch("flood_malformed");
    let serve = serve(&dir, 24050, &[]);
    let peer = UdpPeer::bind(at([127, 0, 0, 9], 24251));
    let me = peer.addr;
    let request = |start: &str, cseq: &str, extra: &str| {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
From: <sip:x@{me}>;tag=t1\r\nTo: <sip:service@127.0.0.1>\r\nCall-ID: m-{}@x\r\n\
CSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n",
            start.len() + cseq.len() + extra.len(),
            start.len() + cseq.len() + extra.len()
        )
    };
    let cases = [
        (
            request("OPTIONS sip:service@127.0.0.1 SIP/2.0", "bad OPTIONS", ""),
            400,
            "",
        ),
        (
            request(
                "OPTIONS sip:service@127.0.0.1 SIP/2.0",
                "1 OPTIONS",
                "Content-Length: -1\r\n",
            ),
            400,
            "",
        ),
        (
            request("OPTIONS sip:service@127.0.0.1 SIP/7.0", "1 OPTIONS", ""),
            505,
            "",
        ),
        (
            request("REGISTER sip:127.0.0.1 SIP/2.0", "1 REGISTER", ""),
            405,
            "Allow",
        ),
        (
            request("FOO sip:service@127.0.0.1 SIP/2.0", "1 FOO", ""),
            501,
            "Allow",
        ),
        (
            request("OPTIONS sip:service@127.0.0.1 SIP/2.0", "2 OPTIONS", ""),
            200,
            "Allow",
        ),
        (
            request("BYE sip:service@127.0.0.1 SIP/2.0", "2 BYE", ""),
            481,
            "",
        ),
    ];
    for (msg, status, header) in cases {
        peer.send(msg.as_bytes(), serve.sip);
        let got = peer.recv_for(Duration::from_millis(300), Duration::from_secs(2));
        let answer = got.first().expect("answered").clone();
        let line = String::from_utf8_lossy(&answer[..11]).into_owned();
        assert_eq!(line, format!("SIP/2.0 {status}"), "{msg}");
        if !header.is_empty() {
            assert!(
                udp::has_header(&answer, header).is_some(),
                "{header} in {line}"
            );
        }
    }
    // A hundred malformed requests at once: the source's error bucket (burst 20) answers some.
    for n in 0..100 {
        let msg = request(
            "OPTIONS sip:service@127.0.0.1 SIP/2.0",
            &format!("x{n} OPTIONS"),
            "",
        );
        peer.send(msg.as_bytes(), serve.sip);
    }
    let answers = peer.recv_for(Duration::from_millis(300), Duration::from_secs(3));
    println!("100 malformed requests at once: {} answered", answers.len());
    assert!((20..=25).contains(&answers.len()), "{}", answers.len());
    assert!(serve.stop().success());
}

/// Random bytes, truncated and oversized datagrams: nothing crashes, the answers stay within
/// the source's rate, and a legitimate caller still gets through.
#[test]
fn a_garbage_flood_changes_nothing() {
    let _serial = one_at_a_time();
    require("sipp");
    let dir = scratch("flood_garbage");
    let serve = serve(&dir, 24060, &[]);
    // Ports the kernel picks: a fixed one was once found taken on a fresh machine.
    let peer = UdpPeer::bind(at([127, 0, 0, 10], 0));
    let listener = UdpPeer::bind(at([127, 0, 0, 10], 0));
    let from = listener.addr;
    let collector = listener.collect();
    let valid = udp::invite("g", from, from, "");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = Instant::now();
    let sent = AtomicU64::new(0);
    for n in 0..20_000u32 {
        let msg: Vec<u8> = match n % 4 {
            0 => (0..(random() % 1_500) as usize)
                .map(|_| random() as u8)
                .collect(),
            1 => valid[..(random() as usize) % valid.len()].to_vec(),
            2 => {
                let mut big = valid.clone();
                big.resize(65_000, b'x');
                big
            }
            _ => {
                let mut bad = valid.clone();
                let at = (random() as usize) % bad.len();
                bad[at] = random() as u8;
                bad
            }
        };
        peer.send(&msg, serve.sip);
        sent.fetch_add(1, Ordering::Relaxed);
        if n % 200 == 0 {
            sleep(Duration::from_millis(10));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sleep(Duration::from_millis(500));
    let (_, answers) = collector.finish();
    // Error answers: burst 20, then 10 a second. Some mutated INVITEs are still valid: they
    // are calls (100, 200, their retransmissions, and answers from the response cache to
    // the copies that repeat them), which the new-dialog limits govern instead.
    let errors = answers
        .iter()
        .filter_map(|m| udp::response(m))
        .filter(|(s, _, _)| *s >= 400)
        .count();
    println!(
        "{} garbage datagrams in {secs:.1} s: {} answers, {errors} of them errors",
        sent.load(Ordering::Relaxed),
        answers.len()
    );
    assert!(
        errors as f64 <= 20.0 + 10.0 * (secs + 1.0),
        "{errors} error answers"
    );
    let run = Sipp {
        scenario: "uac",
        target: Some(serve.sip),
        port: 24263,
        calls: 20,
        rate: 20,
        extra: &[],
    }
    .run(&dir, Duration::from_secs(60));
    assert_eq!((run.successful, run.failed), (20, 0), "{}", run.errors);
    assert!(serve.stop().success());
}
