//! UDP sockets: one per worker on the same port (SO_REUSEPORT).

use std::io;
use std::net::{SocketAddr, UdpSocket};
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
