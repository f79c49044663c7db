//! Steering each peer to its worker. Every worker binds its own socket on the listen port
//! (SO_REUSEPORT); a classic BPF program on the group (SO_ATTACH_REUSEPORT_CBPF) picks the
//! socket by the datagram's source address with the same function as
//! [`sipdialog::stack::owner`], so each worker's stack receives what its own peers send.

use std::io;
use std::net::UdpSocket;

/// Attaches the steering program to the reuse-port group of `socket` (bound to an address of
/// `family_v6`'s family), which must hold the workers' sockets in worker order: the kernel
/// numbers a group's sockets in the order they were bound.
#[cfg(target_os = "linux")]
pub fn attach(socket: &UdpSocket, workers: usize, family_v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    // Offsets from the network header: source address, then the UDP source port right after
    // a header without options or extension headers. Such datagrams are the norm; one with
    // them is steered by other bytes, still to one worker, but maybe not the one that sends
    // to that peer: responses from such a peer then match no transaction where they land,
    // and our requests to it time out (run one worker for such peers).
    const SKF_NET_OFF: u32 = (-0x100000i32) as u32;
    let (addr_low, port) = if family_v6 { (8 + 12, 40) } else { (12, 20) };
    let filter = [
        // A = low 32 bits of the source address; X = A.
        cbpf(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            SKF_NET_OFF + addr_low,
        ),
        cbpf(libc::BPF_MISC | libc::BPF_TAX, 0),
        // A = source port; A ^= X; A %= workers; return A (the socket's index).
        cbpf(
            libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
            SKF_NET_OFF + port,
        ),
        cbpf(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0),
        cbpf(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, workers as u32),
        cbpf(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at `filter`, which outlives the call; the kernel copies the
    // program during setsockopt and keeps no pointer to either. The option length is the
    // size of the `sock_fprog` passed.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&program).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn cbpf(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Elsewhere the kernel cannot be told: the caller runs one worker.
#[cfg(not(target_os = "linux"))]
pub fn attach(_socket: &UdpSocket, _workers: usize, _family_v6: bool) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "steering datagrams to workers needs Linux",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use sipdialog::stack::owner;
    use std::time::Duration;

    /// The kernel delivers each peer's datagrams to the socket [`owner`] names, over IPv4
    /// and IPv6 loopback.
    #[test]
    fn the_kernel_steers_each_peer_to_its_owner() {
        for (workers, loopback) in [(2usize, "127.0.0.1"), (3, "127.0.0.1"), (2, "[::1]")] {
            let v6 = loopback.starts_with('[');
            let first = crate::net::bind_worker_socket(
                format!("{loopback}:0").parse().unwrap(),
                Duration::from_millis(200),
            )
            .unwrap();
            let addr = first.local_addr().unwrap();
            let mut sockets = vec![first];
            for _ in 1..workers {
                let socket =
                    crate::net::bind_worker_socket(addr, Duration::from_millis(200)).unwrap();
                sockets.push(socket);
            }
            attach(&sockets[0], workers, v6).unwrap();
            let mut seen = vec![0usize; workers];
            for _ in 0..24 {
                let peer = UdpSocket::bind(format!("{loopback}:0")).unwrap();
                let from = peer.local_addr().unwrap();
                peer.send_to(b"ping", addr).unwrap();
                let expected = owner(from, workers);
                let mut buf = [0u8; 16];
                let (len, source) = sockets[expected].recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..len], source), (&b"ping"[..], from));
                seen[expected] += 1;
            }
            // Ephemeral ports spread over every worker.
            assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        }
    }

    #[test]
    fn one_worker_owns_everything() {
        assert_eq!(owner("192.0.2.1:5060".parse().unwrap(), 1), 0);
        assert_eq!(owner("[2001:db8::1]:5060".parse().unwrap(), 1), 0);
    }
}
