//! `/metrics` against a hostile client: 1 500 connections that never finish their request
//! (slowloris) and one endless header line cost the endpoint no thread, no memory to speak of
//! and no SIP call; the connections are closed by the endpoint's limits. Needs `sipp`.

mod peers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use peers::udp;
use peers::{http_get, require, scratch, Endpoint, Sipp};

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether the server has closed `stream` (a read returns 0 or an error other than a
/// timeout).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (e.g. 408), then the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_and_huge_headers_change_nothing() {
    require("sipp");
    let dir = scratch("metrics_abuse");
    let serve = Endpoint::start(
        &dir,
        &["serve", "--workers", "2", "--metrics-connections", "16"],
        at(24300),
        at(24400),
    );
    let pid = serve.pid();
    let metrics = at(24400);
    sleep(Duration::from_millis(300));
    let (threads_before, anon_before) = (udp::threads(pid), udp::anon_kib(pid));

    // 1 500 connections, each sending half a request head and then nothing.
    let mut idle = Vec::new();
    for _ in 0..1_500 {
        if let Ok(mut stream) = TcpStream::connect_timeout(&metrics, Duration::from_secs(1)) {
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            idle.push(stream);
        }
    }
    sleep(Duration::from_millis(300));
    let threads_held = udp::threads(pid);
    // Beyond the cap of 16, connections are closed as soon as they are accepted.
    let closed_at_once = idle.iter_mut().map(closed_by_server).filter(|&c| c).count();

    // SIP goes on meanwhile.
    let run = Sipp {
        scenario: "uac",
        target: Some(serve.sip),
        port: 24500,
        calls: 20,
        rate: 20,
        extra: &[],
    }
    .run(&dir, Duration::from_secs(60));

    // One header line that never ends: cut off at the header size cap.
    let started = Instant::now();
    let mut huge = TcpStream::connect(metrics).expect("connect");
    huge.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = huge.write_all(b"GET /metrics HTTP/1.1\r\nX-Huge: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut written = 0usize;
    while written < 300 << 20 && started.elapsed() < Duration::from_secs(20) {
        match huge.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    let anon_after_huge = udp::anon_kib(pid);

    // The header read timeout (5 s) closes the slow ones that were let in.
    sleep(Duration::from_secs(6));
    let closed_later = idle.iter_mut().map(closed_by_server).filter(|&c| c).count();
    let scrape_works = http_get(metrics, "/metrics").is_some();
    let (threads_after, anon_after) = (udp::threads(pid), udp::anon_kib(pid));
    println!(
        "{} slow connections: {closed_at_once} closed on accept, {closed_later} closed within 6 s; \
         threads {threads_before} before, {threads_held} while held, {threads_after} after; \
         an endless header line was cut after {} KiB; anonymous RSS {anon_before} KiB before, \
         {anon_after_huge} KiB after the huge header, {anon_after} KiB at the end; SIPp {} ok",
        idle.len(),
        written / 1024,
        run.successful
    );
    // A few connects may time out while the listen queue is full: that is the point.
    assert!(idle.len() >= 1_400, "{} connected", idle.len());
    assert!(
        closed_at_once >= idle.len() - 16,
        "{closed_at_once} closed on accept"
    );
    assert_eq!(closed_later, idle.len(), "the slow ones timed out");
    assert_eq!(threads_held, threads_before, "no thread per connection");
    // What was written sits in the two sockets' buffers; the server read 16 KiB of it.
    assert!(
        written < 64 << 20,
        "the server stopped reading after {} bytes",
        written
    );
    assert!(
        anon_after_huge <= anon_before + 4 * 1024,
        "{anon_after_huge} KiB"
    );
    assert_eq!((run.successful, run.failed), (20, 0), "{}", run.errors);
    assert!(scrape_works, "/metrics answers again");
    assert!(serve.stop().success());
}
