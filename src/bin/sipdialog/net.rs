//! UDP sockets and addresses: one socket per worker on the same port (SO_REUSEPORT), and
//! where requests go (the next hop's URI; responses follow their top Via, see
//! `sipdialog::wire::Via::response_destination`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked of the kernel: bursts of thousands of datagrams a second
/// must not be dropped while a worker is busy.
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with SO_REUSEPORT, so every worker binds its own and the
/// kernel spreads peers over them (one peer's datagrams always reach the same worker).
pub fn bind_worker_socket(addr: SocketAddr, read_timeout: Duration) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // The kernel may grant less than asked; that is not an error.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(read_timeout))?;
    Ok(socket)
}

/// The address a SIP URI (`sip:user@host:port;params`, in `<>` or not) points at. Only IP
/// literals and `localhost` are resolved: the endpoint does no DNS (RFC 3263 is out of scope).
pub fn uri_addr(uri: &[u8]) -> Option<SocketAddr> {
    host_port(sipdialog::dialog::uri_hostport(uri), 5060)
}

/// `host[:port]` (IPv6 in brackets) as a socket address.
fn host_port(text: &[u8], default_port: u16) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let close = v6.find(']')?;
        let port = v6[close + 1..].strip_prefix(':');
        (&v6[..close], port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_to_addresses() {
        let a = |s: &str| uri_addr(s.as_bytes());
        assert_eq!(a("sip:bob@127.0.0.1:5070"), "127.0.0.1:5070".parse().ok());
        assert_eq!(a("<sip:127.0.0.1;lr>"), "127.0.0.1:5060".parse().ok());
        assert_eq!(a("sip:[::1]:5080;transport=udp"), "[::1]:5080".parse().ok());
        assert_eq!(a("sips:alice@localhost"), "127.0.0.1:5060".parse().ok());
        assert_eq!(a("tel:+15551234"), None);
        assert_eq!(a("sip:bob@example.com"), None);
    }
}
