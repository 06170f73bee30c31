//! Sockets with the options the relay needs: large buffers (a burst must not overflow the
//! kernel's queue between two reads) and, for listeners, address reuse.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// A non-blocking UDP socket bound to `addr` with `buffer` bytes of SO_RCVBUF and SO_SNDBUF.
pub(crate) fn udp_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    set_buffers(&socket, buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr` (SO_REUSEADDR, so a restart does not wait out TIME_WAIT).
pub(crate) fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Asks for `size` bytes of receive and send buffer; the kernel caps it at
/// `net.core.rmem_max`/`wmem_max`, which is logged once when it does.
fn set_buffers(socket: &Socket, size: usize) {
    if size == 0 {
        return;
    }
    let _ = socket.set_recv_buffer_size(size);
    let _ = socket.set_send_buffer_size(size);
    // Linux reports twice what it grants (the other half is its bookkeeping).
    if let Ok(got) = socket.recv_buffer_size()
        && got < size
    {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                asked = size,
                granted = got,
                "socket buffer capped by the kernel: raise net.core.rmem_max and wmem_max"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relay_and_listener_sockets_get_the_buffers_asked_for() {
        // 256 KiB is above Linux's default socket buffer (208 KiB) and within even a
        // default net.core.rmem_max once the kernel doubles what it grants.
        let asked = 256 * 1024;
        let socket = udp_socket("127.0.0.1:0".parse().expect("addr"), asked).expect("bind");
        let s = socket2::SockRef::from(&socket);
        assert!(s.recv_buffer_size().expect("SO_RCVBUF") >= asked);
        assert!(s.send_buffer_size().expect("SO_SNDBUF") >= asked);
    }
}
