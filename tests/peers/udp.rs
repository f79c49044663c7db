//! A raw UDP peer for the hostile-input tests: it sends what it is told from the address it is
//! bound to (any 127.x.y.z is loopback, so one machine has many sources) and collects what
//! comes back, with every wait bounded.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sipdialog::wire::MessageView;
use socket2::{Domain, Protocol, Socket, Type};

/// A UDP socket with a large receive buffer.
pub struct UdpPeer {
    socket: UdpSocket,
    /// Where it is bound.
    pub addr: SocketAddr,
}

impl UdpPeer {
    /// Binds `addr` (port 0: any).
    pub fn bind(addr: SocketAddr) -> UdpPeer {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        let _ = socket.set_recv_buffer_size(16 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.bind(&addr.into()).expect("bind peer");
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("local addr");
        UdpPeer { socket, addr }
    }

    /// Sends one datagram.
    pub fn send(&self, bytes: &[u8], to: SocketAddr) {
        let _ = self.socket.send_to(bytes, to);
    }

    /// Everything that arrives until nothing has for `quiet`, or `limit` has passed.
    pub fn recv_for(&self, quiet: Duration, limit: Duration) -> Vec<Vec<u8>> {
        let (start, mut last) = (Instant::now(), Instant::now());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while start.elapsed() < limit && last.elapsed() < quiet {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
                last = Instant::now();
            }
        }
        got
    }

    /// Collects on a thread of its own until [`Collector::finish`].
    pub fn collect(self) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_536];
            // Bounded: a test that forgets to stop it still ends.
            let limit = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < limit {
                if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
            (self, got)
        });
        Collector {
            stop,
            thread: Some(thread),
        }
    }
}

/// A peer receiving in the background.
pub struct Collector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(UdpPeer, Vec<Vec<u8>>)>>,
}

impl Collector {
    /// Stops, and hands back the peer and what it received.
    pub fn finish(mut self) -> (UdpPeer, Vec<Vec<u8>>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("collector")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An INVITE from `from` (its Via sent-by) with a Contact of `contact` and `extra` headers.
pub fn invite(call_id: &str, from: SocketAddr, contact: SocketAddr, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\n\
Max-Forwards: 70\r\nFrom: <sip:flood@{from}>;tag=f{call_id}\r\nTo: <sip:service@127.0.0.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{contact}>\r\n{extra}\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A CANCEL for [`invite`]`(call_id, via, ..)`: its branch and sent-by are the INVITE's
/// unless `branch` says otherwise.
pub fn cancel(call_id: &str, via: SocketAddr, branch: &str) -> Vec<u8> {
    format!(
        "CANCEL sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:flood@{via}>;tag=f{call_id}\r\nTo: <sip:service@127.0.0.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Status code, CSeq method and Call-ID of a response.
pub fn response(msg: &[u8]) -> Option<(u16, String, String)> {
    let view = MessageView::parse(msg).ok()?;
    Some((
        view.status_code()?,
        String::from_utf8_lossy(view.cseq().method).into_owned(),
        String::from_utf8_lossy(view.call_id()).into_owned(),
    ))
}

/// Whether the message has a header `name: value` (value trimmed).
pub fn has_header(msg: &[u8], name: &str) -> Option<String> {
    let view = MessageView::parse(msg).ok()?;
    view.headers()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(h.value.trim_ascii()).into_owned())
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// Resident anonymous memory of process `pid` (heap and stacks: what traffic can grow;
/// the rest is code and libraries, paged in as code paths are first run), KiB.
pub fn anon_kib(pid: u32) -> u64 {
    status_field(pid, "RssAnon:")
}

/// How far above its baseline an endpoint's anonymous memory may stay once a flood is over
/// and its structures are empty: the pages of its pre-sized tables the flood touched (the
/// INVITE records' index, 1.2 MB) and what the allocator keeps in partly used pages.
pub const SETTLED_SLACK_KIB: u64 = 8 * 1024;

/// Threads of process `pid`.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
