//! The server's counters: relaxed atomics bumped on the data path, read as a [`Snapshot`]
//! through [`crate::Server::counters`] and logged every `stats_interval`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by every task of one server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub allocations_current: AtomicU64,
    pub allocations_total: AtomicU64,
    pub permissions_current: AtomicU64,
    pub channels_current: AtomicU64,
    pub packets_to_peer: AtomicU64,
    pub bytes_to_peer: AtomicU64,
    pub packets_to_client: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub dropped_filter: AtomicU64,
    pub dropped_permission: AtomicU64,
    pub dropped_cap: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub refused_quota: AtomicU64,
    pub refused_peer: AtomicU64,
    pub auth_failures: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            allocations_current: self.allocations_current.load(Relaxed),
            allocations_total: self.allocations_total.load(Relaxed),
            permissions_current: self.permissions_current.load(Relaxed),
            channels_current: self.channels_current.load(Relaxed),
            packets_to_peer: self.packets_to_peer.load(Relaxed),
            bytes_to_peer: self.bytes_to_peer.load(Relaxed),
            packets_to_client: self.packets_to_client.load(Relaxed),
            bytes_to_client: self.bytes_to_client.load(Relaxed),
            dropped_filter: self.dropped_filter.load(Relaxed),
            dropped_permission: self.dropped_permission.load(Relaxed),
            dropped_cap: self.dropped_cap.load(Relaxed),
            dropped_queue: self.dropped_queue.load(Relaxed),
            refused_quota: self.refused_quota.load(Relaxed),
            refused_peer: self.refused_peer.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Allocations alive now.
    pub allocations_current: u64,
    /// Allocations made since start.
    pub allocations_total: u64,
    /// Permissions installed now, over all allocations.
    pub permissions_current: u64,
    /// Channel bindings now, over all allocations.
    pub channels_current: u64,
    /// Packets relayed from clients to peers.
    pub packets_to_peer: u64,
    /// Payload bytes relayed from clients to peers.
    pub bytes_to_peer: u64,
    /// Packets relayed from peers to clients.
    pub packets_to_client: u64,
    /// Payload bytes relayed from peers to clients.
    pub bytes_to_client: u64,
    /// Send indications to a refused peer address, dropped.
    pub dropped_filter: u64,
    /// Packets to or from a peer without a permission (or on an unbound channel), dropped.
    pub dropped_permission: u64,
    /// Packets over an allocation's bandwidth cap, dropped.
    pub dropped_cap: u64,
    /// Packets for a stream client whose send queue was full, dropped.
    pub dropped_queue: u64,
    /// Allocate requests refused by the per-user quota (486) or capacity (508).
    pub refused_quota: u64,
    /// CreatePermission and ChannelBind requests refused by the peer policy (403).
    pub refused_peer: u64,
    /// Requests refused for bad, expired or malformed credentials (401).
    pub auth_failures: u64,
}

impl Snapshot {
    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_filter + self.dropped_permission + self.dropped_cap + self.dropped_queue
    }

    /// Logs the snapshot at info, one structured event.
    pub(crate) fn log(&self) {
        tracing::info!(
            allocations = self.allocations_current,
            allocations_total = self.allocations_total,
            permissions = self.permissions_current,
            channels = self.channels_current,
            packets_to_peer = self.packets_to_peer,
            bytes_to_peer = self.bytes_to_peer,
            packets_to_client = self.packets_to_client,
            bytes_to_client = self.bytes_to_client,
            dropped_filter = self.dropped_filter,
            dropped_permission = self.dropped_permission,
            dropped_cap = self.dropped_cap,
            dropped_queue = self.dropped_queue,
            refused_quota = self.refused_quota,
            refused_peer = self.refused_peer,
            auth_failures = self.auth_failures,
            "counters"
        );
    }
}
