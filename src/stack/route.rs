//! Where a message goes: which worker owns a peer, and the address a next-hop URI names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The worker, of `workers`, that owns `peer`: receives what it sends and keeps its
/// transactions. An endpoint with several sockets on one port must have the kernel steer
/// datagrams with this same function (the binary does it with a BPF program on its
/// SO_REUSEPORT group).
///
/// ```
/// use sipdialog::stack::owner;
/// let peer = "192.0.2.7:5060".parse().unwrap();
/// assert_eq!(owner(peer, 1), 0);
/// assert!(owner(peer, 4) < 4);
/// ```
pub fn owner(peer: SocketAddr, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let low = match peer.ip() {
        IpAddr::V4(ip) => u32::from(ip),
        IpAddr::V6(ip) => {
            let octets = ip.octets();
            u32::from_be_bytes([octets[12], octets[13], octets[14], octets[15]])
        }
    };
    ((low ^ u32::from(peer.port())) % workers as u32) as usize
}

/// The address a SIP URI (`sip:user@host:port;params`, in `<>` or not) points at. Only IP
/// literals and `localhost` are resolved: the stack does no DNS (RFC 3263 is the caller's, who
/// can put the address in a request's destination instead).
///
/// ```
/// use sipdialog::stack::uri_addr;
/// assert_eq!(uri_addr(b"<sip:127.0.0.1;lr>"), "127.0.0.1:5060".parse().ok());
/// assert_eq!(uri_addr(b"sip:bob@example.com"), None);
/// ```
pub fn uri_addr(uri: &[u8]) -> Option<SocketAddr> {
    host_port(crate::dialog::uri_hostport(uri), 5060)
}

/// `host[:port]` (IPv6 in brackets) as a socket address, read as bytes.
fn host_port(text: &[u8], default_port: u16) -> Option<SocketAddr> {
    let text = crate::wire::trim_lws(text);
    let (host, port) = match text.strip_prefix(b"[") {
        Some(v6) => {
            let close = memchr::memchr(b']', v6)?;
            (&v6[..close], v6[close + 1..].strip_prefix(b":"))
        }
        None => match memchr::memrchr(b':', text) {
            Some(colon) => (&text[..colon], Some(&text[colon + 1..])),
            None => (text, None),
        },
    };
    let port = match port {
        Some(p) => u16::try_from(crate::wire::value::decimal_digits(p)?).ok()?,
        None => default_port,
    };
    let ip = if host.eq_ignore_ascii_case(b"localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        crate::wire::value::ip_addr(host)?
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
        assert_eq!(a("sip:bob@192.0.2.300"), None);
        assert_eq!(a("sip:bob@010.0.0.1"), None);
        assert_eq!(a("sip:bob@192.0.2.1:"), None);
        assert_eq!(a("sip:bob@192.0.2.1:70000"), None);
        assert_eq!(a("sip:bob@192.0.2.1:+5"), None);
        assert_eq!(a("sip:bob@192.0.2.1:005070"), "192.0.2.1:5070".parse().ok());
        assert_eq!(a("sip:bob@192.0.2.1:65535"), "192.0.2.1:65535".parse().ok());
        assert_eq!(a("sip:bob@192.0.2.1:65536"), None);
        assert_eq!(a("sip:[::1;lr"), None);
    }

    #[test]
    fn every_peer_has_one_owner_in_range() {
        for port in 5000..5100u16 {
            let peer = SocketAddr::from(([10, 0, 0, 9], port));
            assert_eq!(owner(peer, 1), 0);
            assert!(owner(peer, 3) < 3);
            assert_eq!(owner(peer, 3), owner(peer, 3));
        }
        let v6: SocketAddr = "[2001:db8::1:2]:5060".parse().unwrap();
        assert!(owner(v6, 2) < 2);
    }
}
