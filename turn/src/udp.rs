//! The UDP listener: one receive loop for every client on the socket.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::allocation::{ClientSink, FiveTuple, Transport};
use crate::server::{Ctx, Shared};
use crate::wire::{self, Kind};

/// Datagrams read per wake-up before yielding back to the scheduler.
const BATCH: usize = 64;

/// Serves the UDP listener until the server stops.
pub(crate) async fn serve(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut shutdown = shared.shutdown.clone();
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    datagram(&shared, &socket, local, &buf[..n], from);
                }
                for _ in 1..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => datagram(&shared, &socket, local, &buf[..n], from),
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

fn datagram(
    shared: &Shared,
    socket: &Arc<UdpSocket>,
    local: SocketAddr,
    data: &[u8],
    from: SocketAddr,
) {
    let Some(&first) = data.first() else {
        return;
    };
    let five_tuple = FiveTuple {
        transport: Transport::Udp,
        client: from,
        server: local,
    };
    match wire::kind(first) {
        Kind::ChannelData => {
            if let Some(alloc) = shared.table.get(&five_tuple) {
                shared.channel_data(&alloc, data);
            }
        }
        Kind::Stun if wire::is_stun_type(data, wire::SEND_INDICATION) => {
            if let Some(alloc) = shared.table.get(&five_tuple) {
                shared.send_indication(&alloc, data);
            }
        }
        Kind::Stun => {
            let ctx = Ctx {
                five_tuple,
                sink: ClientSink::Udp(socket.clone()),
            };
            if let Some(answer) = shared.handle_stun(data, &ctx) {
                let _ = socket.try_send_to(&answer, from);
            }
        }
        Kind::Other => {}
    }
}
