//! Allocations: a relay socket per client, its permissions and channels, its lifetime and
//! bandwidth cap, and the task that relays what peers send back to the client.
//!
//! Each allocation holds one lock, taken once per relayed packet in either direction for
//! the permission and channel lookups and the token bucket; nothing on that path allocates.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::metrics::Counters;
use crate::wire;

/// How a client is reached, and which allocation is its: the transport and both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FiveTuple {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// The client's transport to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Where frames for the client go.
#[derive(Debug, Clone)]
pub(crate) enum ClientSink {
    /// Straight out of the UDP listener's socket.
    Udp(Arc<UdpSocket>),
    /// Straight into a TCP connection, queued only behind what the kernel did not take.
    Tcp(Arc<crate::tcp::DirectSink>),
    /// Into a TLS connection's write queue (its writer makes a TLS record of each).
    Stream(mpsc::Sender<Bytes>),
}

/// A token bucket: `rate` bytes per second, bursts of up to one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, n: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.rate);
            self.last = now;
        }
        match self.tokens.checked_sub(n as u64) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    peer: SocketAddr,
    expires: Instant,
}

/// What an allocation's lock guards.
#[derive(Debug)]
pub(crate) struct State {
    pub expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, Binding>,
    peer_channels: HashMap<SocketAddr, u16>,
    bucket: Option<Bucket>,
}

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// No permission for the peer, or the channel is not bound.
    Permission,
    /// Over the bandwidth cap.
    Cap,
}

/// Why a ChannelBind was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindConflict {
    /// The channel is bound to another peer.
    ChannelTaken,
    /// The peer is bound to another channel.
    PeerTaken,
    /// The allocation holds its most permissions (508).
    Full,
}

/// The allocation holds its most permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Most permissions (peer IPs) one allocation holds: a call has a handful of peers, and
/// the cap keeps a client from growing the server's memory without bound.
pub(crate) const MAX_PERMISSIONS: usize = 256;

/// One client's allocation.
#[derive(Debug)]
pub(crate) struct Allocation {
    pub five_tuple: FiveTuple,
    pub username: String,
    /// The relayed transport address as peers see it (the public IP when set).
    pub relayed: SocketAddr,
    pub relay: Arc<UdpSocket>,
    pub sink: ClientSink,
    /// The transaction id and bytes of the Allocate success, for retransmissions.
    pub allocate_reply: ([u8; 12], Vec<u8>),
    state: Mutex<State>,
    pub closed: Notify,
    counters: Arc<Counters>,
    tid_counter: AtomicU64,
}

impl Allocation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        five_tuple: FiveTuple,
        username: String,
        relayed: SocketAddr,
        relay: Arc<UdpSocket>,
        sink: ClientSink,
        lifetime: Duration,
        bandwidth: Option<u64>,
        allocate_reply: ([u8; 12], Vec<u8>),
        counters: Arc<Counters>,
    ) -> Self {
        let now = Instant::now();
        let mut seed = [0u8; 8];
        // A failed read leaves a zero seed: Data indication transaction ids only need to
        // differ from each other, which the counter ensures.
        let _ = getrandom::fill(&mut seed);
        Allocation {
            five_tuple,
            username,
            relayed,
            relay,
            sink,
            allocate_reply,
            state: Mutex::new(State {
                expires: now + lifetime,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                peer_channels: HashMap::new(),
                bucket: bandwidth.map(|rate| Bucket {
                    rate,
                    tokens: rate,
                    last: now,
                }),
            }),
            closed: Notify::new(),
            counters,
            tid_counter: AtomicU64::new(u64::from_le_bytes(seed)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (each update is one
        // insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the lifetime from now.
    pub fn refresh(&self, lifetime: Duration) {
        self.lock().expires = Instant::now() + lifetime;
    }

    /// Installs or refreshes permissions for every IP of `ips`, or none if that would
    /// take the allocation past [`MAX_PERMISSIONS`].
    pub fn permit(&self, ips: &[IpAddr], lifetime: Duration) -> Result<(), Full> {
        let expires = Instant::now() + lifetime;
        let mut s = self.lock();
        let new = ips
            .iter()
            .filter(|ip| !s.permissions.contains_key(ip))
            .count();
        if s.permissions.len() + new > MAX_PERMISSIONS {
            return Err(Full);
        }
        for ip in ips {
            if s.permissions.insert(*ip, expires).is_none() {
                Counters::add(&self.counters.permissions_current, 1);
            }
        }
        Ok(())
    }

    /// Binds `channel` to `peer` (or refreshes the binding), and the peer's permission.
    pub fn bind(
        &self,
        channel: u16,
        peer: SocketAddr,
        channel_lifetime: Duration,
        permission_lifetime: Duration,
    ) -> Result<(), BindConflict> {
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(b) = s.channels.get(&channel)
            && b.peer != peer
        {
            return Err(BindConflict::ChannelTaken);
        }
        if let Some(&c) = s.peer_channels.get(&peer)
            && c != channel
        {
            return Err(BindConflict::PeerTaken);
        }
        if !s.permissions.contains_key(&peer.ip()) && s.permissions.len() >= MAX_PERMISSIONS {
            return Err(BindConflict::Full);
        }
        let binding = Binding {
            peer,
            expires: now + channel_lifetime,
        };
        if s.channels.insert(channel, binding).is_none() {
            Counters::add(&self.counters.channels_current, 1);
        }
        s.peer_channels.insert(peer, channel);
        if s.permissions
            .insert(peer.ip(), now + permission_lifetime)
            .is_none()
        {
            Counters::add(&self.counters.permissions_current, 1);
        }
        Ok(())
    }

    /// The peer a client's ChannelData goes to, if bound and permitted and under the cap.
    pub fn channel_peer(&self, channel: u16, len: usize) -> Result<SocketAddr, Dropped> {
        let now = Instant::now();
        let mut s = self.lock();
        let peer = match s.channels.get(&channel) {
            Some(b) if b.expires > now => b.peer,
            _ => return Err(Dropped::Permission),
        };
        s.admit(peer.ip(), len, now)?;
        Ok(peer)
    }

    /// Whether a client's Send indication to `peer` may go.
    pub fn admit_to_peer(&self, peer: SocketAddr, len: usize) -> Result<(), Dropped> {
        let now = Instant::now();
        self.lock().admit(peer.ip(), len, now)
    }

    /// Whether a peer's packet may reach the client, and on which channel (none: a Data
    /// indication).
    fn admit_from_peer(&self, peer: SocketAddr, len: usize) -> Result<Option<u16>, Dropped> {
        let now = Instant::now();
        let mut s = self.lock();
        s.admit(peer.ip(), len, now)?;
        let channel = s
            .peer_channels
            .get(&peer)
            .copied()
            .filter(|c| s.channels.get(c).is_some_and(|b| b.expires > now));
        Ok(channel)
    }

    /// Forgets expired permissions and channels; returns the allocation's expiry.
    fn sweep(&self) -> Instant {
        let now = Instant::now();
        let mut s = self.lock();
        let before = (s.permissions.len(), s.channels.len());
        s.permissions.retain(|_, e| *e > now);
        let State {
            channels,
            peer_channels,
            ..
        } = &mut *s;
        channels.retain(|_, b| b.expires > now);
        peer_channels.retain(|_, c| channels.contains_key(c));
        Counters::sub(
            &self.counters.permissions_current,
            (before.0 - s.permissions.len()) as u64,
        );
        Counters::sub(
            &self.counters.channels_current,
            (before.1 - s.channels.len()) as u64,
        );
        s.expires
    }

    /// Drops every permission and channel from the counters (the allocation is going).
    fn forget(&self) {
        let mut s = self.lock();
        Counters::sub(
            &self.counters.permissions_current,
            s.permissions.len() as u64,
        );
        Counters::sub(&self.counters.channels_current, s.channels.len() as u64);
        s.permissions.clear();
        s.channels.clear();
        s.peer_channels.clear();
    }

    fn next_tid(&self) -> [u8; 12] {
        let n = self.tid_counter.fetch_add(1, Ordering::Relaxed);
        let mut tid = [0u8; 12];
        tid[4..].copy_from_slice(&n.to_be_bytes());
        tid
    }
}

impl State {
    fn admit(&mut self, ip: IpAddr, len: usize, now: Instant) -> Result<(), Dropped> {
        match self.permissions.get(&ip) {
            Some(e) if *e > now => {}
            _ => return Err(Dropped::Permission),
        }
        if let Some(bucket) = &mut self.bucket
            && !bucket.take(len, now)
        {
            return Err(Dropped::Cap);
        }
        Ok(())
    }
}

/// Counts a dropped packet under its reason.
pub(crate) fn count_drop(counters: &Counters, why: Dropped) {
    match why {
        Dropped::Permission => Counters::add(&counters.dropped_permission, 1),
        Dropped::Cap => Counters::add(&counters.dropped_cap, 1),
    }
}

/// Every allocation, by five-tuple, and how many each username holds.
#[derive(Debug, Default)]
pub(crate) struct Table {
    by_client: RwLock<HashMap<FiveTuple, Arc<Allocation>>>,
    per_user: Mutex<HashMap<String, usize>>,
}

/// Why an allocation could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableFull {
    /// The username holds its quota (486).
    User,
    /// The server holds its most (508).
    Server,
}

impl Table {
    pub fn get(&self, key: &FiveTuple) -> Option<Arc<Allocation>> {
        self.by_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.by_client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether `username` may add one more allocation, and the server too.
    pub fn has_room(&self, username: &str, quota: usize, max: usize) -> Result<(), TableFull> {
        let held = self
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(username)
            .copied()
            .unwrap_or(0);
        if held >= quota {
            return Err(TableFull::User);
        }
        if self.len() >= max {
            return Err(TableFull::Server);
        }
        Ok(())
    }

    pub fn insert(&self, alloc: Arc<Allocation>) {
        *self
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(alloc.username.clone())
            .or_default() += 1;
        self.by_client
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(alloc.five_tuple, alloc);
    }

    /// Removes `alloc` from the table (if it is still there, and not a newer one).
    pub fn remove(&self, alloc: &Arc<Allocation>) {
        let mut map = self.by_client.write().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&alloc.five_tuple)
            .is_some_and(|a| Arc::ptr_eq(a, alloc))
        {
            map.remove(&alloc.five_tuple);
            drop(map);
            let mut users = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = users.get_mut(&alloc.username) {
                *n -= 1;
                if *n == 0 {
                    users.remove(&alloc.username);
                }
            }
        }
    }
}

/// How often an allocation forgets expired permissions and channels.
const SWEEP: Duration = Duration::from_secs(30);
/// The largest datagram a relay socket receives whole.
const MAX_DATAGRAM: usize = 65_536;

thread_local! {
    /// Each worker thread's receive buffer for relay sockets: payloads land after
    /// HEADROOM so headers are written in front of them in place, and 3 spare bytes at the
    /// end take padding.
    static RELAY_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; wire::HEADROOM + MAX_DATAGRAM + 3]);
}

/// Size of the blocks frames for stream clients are cut from.
const ARENA: usize = 16 * 1024;
/// Datagrams read per wake-up before yielding back to the scheduler.
const BATCH: usize = 64;

/// Relays what peers send to the relay socket back to the client until the allocation
/// expires or is closed, then removes it from the table.
pub(crate) async fn relay(
    alloc: Arc<Allocation>,
    table: Arc<Table>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let pad = !matches!(alloc.sink, ClientSink::Udp(_));
    let mut arena = BytesMut::new();
    let closed = alloc.closed.notified();
    tokio::pin!(closed);
    let mut expires = alloc.sweep();
    let deadline = tokio::time::sleep_until(expires.min(Instant::now() + SWEEP));
    tokio::pin!(deadline);
    let why = loop {
        tokio::select! {
            () = &mut closed => break "closed",
            _ = shutdown.changed() => break "server stopping",
            () = &mut deadline => {
                expires = alloc.sweep();
                let now = Instant::now();
                if expires <= now {
                    break "expired";
                }
                deadline.as_mut().reset(expires.min(now + SWEEP));
            }
            r = alloc.relay.readable() => {
                if r.is_err() {
                    continue;
                }
                // Drain what is queued (a batch at most, then back to the scheduler), into
                // the worker thread's buffer: an idle allocation holds no buffer of its own.
                for _ in 0..BATCH {
                    let more = RELAY_BUF.with_borrow_mut(|buf| {
                        let payload = wire::HEADROOM..wire::HEADROOM + MAX_DATAGRAM;
                        match alloc.relay.try_recv_from(&mut buf[payload]) {
                            Ok((n, peer)) => {
                                to_client(&alloc, &counters, buf, &mut arena, n, peer, pad);
                                true
                            }
                            // WouldBlock: readiness is cleared, wait for the next.
                            Err(_) => false,
                        }
                    });
                    if !more {
                        break;
                    }
                }
            }
        }
    };
    table.remove(&alloc);
    alloc.forget();
    Counters::sub(&counters.allocations_current, 1);
    tracing::info!(
        client = %alloc.five_tuple.client,
        relayed = %alloc.relayed,
        why,
        "allocation ended"
    );
}

fn to_client(
    alloc: &Allocation,
    counters: &Counters,
    buf: &mut [u8],
    arena: &mut BytesMut,
    n: usize,
    peer: SocketAddr,
    pad: bool,
) {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let channel = match alloc.admit_from_peer(peer, n) {
        Ok(c) => c,
        Err(why) => return count_drop(counters, why),
    };
    let range = match channel {
        Some(c) => wire::frame_channel_data(buf, wire::HEADROOM, n, c, pad),
        None => wire::frame_data_indication(buf, wire::HEADROOM, n, peer, &alloc.next_tid()),
    };
    let frame = &buf[range];
    let sent = match &alloc.sink {
        // A full send buffer drops the packet, as the network would: waiting would hold up
        // this allocation's other packets and gain nothing for real-time media.
        ClientSink::Udp(socket) => socket.try_send_to(frame, alloc.five_tuple.client).is_ok(),
        ClientSink::Tcp(direct) => direct.send(frame, false),
        ClientSink::Stream(tx) => {
            // Frames are cut from one arena block; a new block comes only when it is used
            // up, and the old one is freed when the writer has sent its last frame.
            if arena.capacity() < frame.len() {
                arena.reserve(frame.len().max(ARENA));
            }
            arena.extend_from_slice(frame);
            tx.try_send(arena.split().freeze()).is_ok()
        }
    };
    if sent {
        Counters::add(&counters.packets_to_client, 1);
        Counters::add(&counters.bytes_to_client, n as u64);
    } else {
        Counters::add(&counters.dropped_queue, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_admits_a_second_of_bytes_then_refills() {
        let start = Instant::now();
        let mut b = Bucket {
            rate: 1000,
            tokens: 1000,
            last: start,
        };
        assert!(b.take(600, start));
        assert!(b.take(400, start));
        assert!(!b.take(1, start));
        assert!(b.take(500, start + Duration::from_millis(500)));
        assert!(!b.take(1, start + Duration::from_millis(500)));
        // Never more than one second's worth, however long it idles.
        assert!(!b.take(1001, start + Duration::from_secs(60)));
        assert!(b.take(1000, start + Duration::from_secs(60)));
    }
}
