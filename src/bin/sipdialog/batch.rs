//! Batched UDP: under load, one system call receives many datagrams and one sends many, to
//! as many destinations (`recvmmsg`/`sendmmsg` on Linux, through `nix`'s safe wrappers).
//!
//! The buffers are allocated once per worker and reused, so a datagram costs no allocation
//! either way. Receiving waits for the first datagram only (`MSG_WAITFORONE`): a lone one is
//! handed over at once, and the socket's read timeout bounds the wait as it does for
//! `recv_from`. Elsewhere (no `recvmmsg`) both sides fall back to one datagram per call.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Largest datagram read: any UDP payload (IPv4 65 507, IPv6 65 527 bytes) fits whole, and so
/// does anything the scanner accepts (its default limit is this).
pub const MAX_DATAGRAM: usize = 65_535;

/// Datagrams received in one call at most. 32 × 64 KiB is 2 MiB of address space a worker;
/// only the pages datagrams actually reach become resident (one page each for SIP's usual
/// sizes).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub const RECV_BATCH: usize = 32;

/// Messages sent in one call at most.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub const SEND_BATCH: usize = 64;

/// Bytes of pending messages at most; a larger message is sent on its own.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const SEND_BYTES: usize = 128 << 10;

#[cfg(target_os = "linux")]
pub use linux::{Receiver, Sender};

#[cfg(not(target_os = "linux"))]
pub use fallback::{Receiver, Sender};

/// Sends one datagram; a failure is logged and the message dropped, as UDP may.
fn send_one(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::debug!(%to, error = %e, "send failed");
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};

    use super::{send_one, MAX_DATAGRAM, RECV_BATCH, SEND_BATCH, SEND_BYTES};

    /// A worker's receive buffers and what the last call received into them.
    pub struct Receiver {
        /// `RECV_BATCH` buffers of `MAX_DATAGRAM` bytes, back to back.
        buffers: Box<[u8]>,
        headers: MultiHeaders<SockaddrStorage>,
        /// Length and source of each datagram received by the last call.
        received: [(usize, Option<SocketAddr>); RECV_BATCH],
        count: usize,
    }

    impl Receiver {
        /// Buffers for one worker (allocated here, once).
        pub fn new() -> Receiver {
            Receiver {
                buffers: vec![0u8; RECV_BATCH * MAX_DATAGRAM].into_boxed_slice(),
                headers: MultiHeaders::preallocate(RECV_BATCH, None),
                received: [(0, None); RECV_BATCH],
                count: 0,
            }
        }

        /// Waits for a datagram (as long as the socket's read timeout allows) and takes
        /// whatever else is queued behind it, up to the batch size, without waiting more.
        /// The number received; an expired timeout is `WouldBlock`, as for `recv_from`.
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.count = 0;
            let mut chunks = self.buffers.chunks_exact_mut(MAX_DATAGRAM);
            let mut slices: [[IoSliceMut<'_>; 1]; RECV_BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    chunks.next().expect("RECV_BATCH buffers of MAX_DATAGRAM"),
                )]
            });
            // An interrupting signal comes back as `Interrupted`: the caller's loop waits again.
            let results = socket::recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(io::Error::from)?;
            for (slot, msg) in self.received.iter_mut().zip(results) {
                let from = msg.address.and_then(|a| socket_addr(&a));
                *slot = (msg.bytes, from);
                self.count += 1;
            }
            Ok(self.count)
        }

        /// The `i`th datagram of the last call and where it came from (`None`: an address
        /// family other than IP, which a UDP socket does not report).
        pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
            let (len, from) = self.received[i];
            let start = i * MAX_DATAGRAM;
            (&self.buffers[start..start + len], from)
        }
    }

    fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        let v6 = addr.as_sockaddr_in6()?;
        Some(SocketAddr::V6(SocketAddrV6::from(*v6)))
    }

    /// A worker's pending messages: copied into one reused buffer as they are written,
    /// sent together by [`Sender::flush`] (or when the batch is full).
    pub struct Sender {
        bytes: Vec<u8>,
        /// End offset in `bytes` and destination of each pending message.
        pending: Vec<(usize, SockaddrStorage)>,
    }

    thread_local! {
        /// The message headers `sendmmsg` fills, made once per thread. Not in [`Sender`]:
        /// they hold raw pointers, so they are not `Send`, and a worker is built on the main
        /// thread before it is moved to its own.
        static SEND_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> =
            const { RefCell::new(None) };
    }

    impl Sender {
        /// Buffers for one worker (allocated here, once).
        pub fn new() -> Sender {
            Sender {
                bytes: Vec::with_capacity(SEND_BYTES),
                pending: Vec::with_capacity(SEND_BATCH),
            }
        }

        /// Queues `bytes` for `to`; sends what is pending first if it would not fit.
        pub fn push(&mut self, socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
            if bytes.len() > SEND_BYTES {
                // Larger than the whole buffer: on its own, after what is queued.
                self.flush(socket);
                send_one(socket, bytes, to);
                return;
            }
            if self.pending.len() == SEND_BATCH || self.bytes.len() + bytes.len() > SEND_BYTES {
                self.flush(socket);
            }
            self.bytes.extend_from_slice(bytes);
            self.pending
                .push((self.bytes.len(), SockaddrStorage::from(to)));
        }

        /// Sends every pending message, in order. One that fails (an unreachable or
        /// invalid destination) is logged and dropped; the rest are still sent.
        pub fn flush(&mut self, socket: &UdpSocket) {
            let total = self.pending.len();
            let mut done = 0;
            while done < total {
                match self.send_from(socket, done) {
                    Ok(0) => {
                        // Not expected of a blocking socket; never spin on it.
                        tracing::debug!(dropped = total - done, "sendmmsg sent nothing");
                        break;
                    }
                    Ok(sent) => done += sent,
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        // `sendmmsg` reports an error only for the first message it was
                        // given: drop that one and go on with the rest.
                        let to = socket_addr(&self.pending[done].1);
                        tracing::debug!(to = ?to, error = %e, "send failed");
                        done += 1;
                    }
                }
            }
            self.bytes.clear();
            self.pending.clear();
        }

        /// One `sendmmsg` of the pending messages from index `first` on: how many were sent.
        fn send_from(&self, socket: &UdpSocket, first: usize) -> nix::Result<usize> {
            let pending = &self.pending[first..];
            let bytes = &self.bytes;
            let mut start = if first == 0 {
                0
            } else {
                self.pending[first - 1].0
            };
            let mut slices: [[IoSlice<'_>; 1]; SEND_BATCH] =
                std::array::from_fn(|_| [IoSlice::new(&[])]);
            let mut addrs: [Option<SockaddrStorage>; SEND_BATCH] = [None; SEND_BATCH];
            for ((slice, addr), (end, to)) in slices.iter_mut().zip(&mut addrs).zip(pending) {
                *slice = [IoSlice::new(&bytes[start..*end])];
                *addr = Some(*to);
                start = *end;
            }
            let n = pending.len();
            SEND_HEADERS.with_borrow_mut(|headers| {
                let headers =
                    headers.get_or_insert_with(|| MultiHeaders::preallocate(SEND_BATCH, None));
                let results = socket::sendmmsg(
                    socket.as_raw_fd(),
                    headers,
                    &slices[..n],
                    &addrs[..n],
                    [],
                    MsgFlags::empty(),
                )?;
                Ok(results.count())
            })
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod fallback {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use super::{send_one, MAX_DATAGRAM};

    /// One datagram per call: `recvmmsg` is Linux's.
    pub struct Receiver {
        buffer: Box<[u8]>,
        received: (usize, Option<SocketAddr>),
    }

    impl Receiver {
        /// The buffer for one worker.
        pub fn new() -> Receiver {
            Receiver {
                buffer: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
                received: (0, None),
            }
        }

        /// Waits for one datagram (as long as the socket's read timeout allows).
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            let (n, from) = socket.recv_from(&mut self.buffer)?;
            self.received = (n, Some(from));
            Ok(1)
        }

        /// The datagram received and where it came from.
        pub fn get(&self, _i: usize) -> (&[u8], Option<SocketAddr>) {
            (&self.buffer[..self.received.0], self.received.1)
        }
    }

    /// Sends at once, one datagram per call.
    pub struct Sender;

    impl Sender {
        /// Nothing to hold.
        pub fn new() -> Sender {
            Sender
        }

        /// Sends `bytes` to `to` now.
        pub fn push(&mut self, socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
            send_one(socket, bytes, to);
        }

        /// Nothing is pending.
        pub fn flush(&mut self, _socket: &UdpSocket) {}
    }
}

/// Whether `e` is the read timeout expiring (or a signal), not a failure.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn socket(timeout_ms: u64) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(timeout_ms);
        socket.set_read_timeout(Some(timeout)).unwrap();
        socket
    }

    /// Everything `receiver` gets until the socket stays quiet for its timeout.
    fn drain(receiver: &mut Receiver, socket: &UdpSocket) -> (Vec<Vec<u8>>, usize) {
        let (mut got, mut calls) = (Vec::new(), 0);
        loop {
            match receiver.recv(socket) {
                Ok(n) => {
                    calls += 1;
                    for i in 0..n {
                        let (bytes, from) = receiver.get(i);
                        assert!(from.is_some());
                        got.push(bytes.to_vec());
                    }
                }
                Err(e) if is_timeout(&e) => return (got, calls),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_burst_is_received_whole_in_few_calls() {
        let (rx, tx) = (socket(200), socket(200));
        let to = rx.local_addr().unwrap();
        let mut messages: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 100 + i as usize]).collect();
        // The largest UDP payload over IPv4 arrives whole, in the middle of the burst.
        messages.insert(35, vec![b'x'; 65_507]);
        for m in &messages {
            tx.send_to(m, to).unwrap();
        }
        let mut receiver = Receiver::new();
        let (got, calls) = drain(&mut receiver, &rx);
        assert_eq!(got, messages);
        if cfg!(target_os = "linux") {
            assert!(calls <= 71usize.div_ceil(RECV_BATCH), "{calls} calls");
        }
    }

    #[test]
    fn a_lone_datagram_is_not_held_and_the_timeout_still_applies() {
        let (rx, tx) = (socket(1_000), socket(1_000));
        let mut receiver = Receiver::new();
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        assert_eq!(receiver.recv(&rx).unwrap(), 1);
        assert_eq!(receiver.get(0), (&b"one"[..], tx.local_addr().ok()));
        assert!(started.elapsed() < Duration::from_millis(500));

        let quiet = socket(50);
        let started = Instant::now();
        let e = receiver.recv(&quiet).unwrap_err();
        assert!(is_timeout(&e), "{e}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
        assert!(waited < Duration::from_millis(900), "{waited:?}");
    }

    #[test]
    fn a_failed_message_does_not_drop_the_rest_of_its_batch() {
        let (rx, tx) = (socket(200), socket(200));
        let to = rx.local_addr().unwrap();
        let port_zero: SocketAddr = "127.0.0.1:0".parse().unwrap(); // EINVAL
        let wrong_family: SocketAddr = "[::1]:5060".parse().unwrap(); // EAFNOSUPPORT
        let mut sender = Sender::new();
        let mut expected = Vec::new();
        for i in 0..150u32 {
            let bytes = format!("message {i}").into_bytes();
            let dest = match i % 10 {
                3 => port_zero,
                7 => wrong_family,
                _ => {
                    expected.push(bytes.clone());
                    to
                }
            };
            sender.push(&tx, &bytes, dest);
        }
        // Does not fit beside what is pending: that goes first, in order.
        let big = vec![b'b'; SEND_BYTES];
        sender.push(&tx, &big[..60_000], to);
        expected.push(big[..60_000].to_vec());
        sender.flush(&tx);
        sender.push(&tx, b"last", port_zero);
        sender.push(&tx, b"last", to);
        sender.flush(&tx);
        expected.push(b"last".to_vec());
        let (got, _) = drain(&mut Receiver::new(), &rx);
        assert_eq!(got, expected);
    }
}
