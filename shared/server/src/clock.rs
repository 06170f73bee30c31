//! The time source. Entry points build a system clock; tests build a manual one and move
//! it, so expiry and replay-window tests never sleep.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cinder_proto::Timestamp;

/// Where "now" comes from.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<AtomicU64>),
    Skewed(Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that stands still at `start` until moved through the returned handle.
    pub fn manual(start: Timestamp) -> (Self, ManualTime) {
        let cell = Arc::new(AtomicU64::new(start.0));
        (Self(Source::Manual(cell.clone())), ManualTime(cell))
    }

    /// The system clock plus an offset that the returned handle moves: time runs as usual
    /// (so signatures dated by a client's real clock stay fresh) and tests can jump ahead.
    pub fn skewed() -> (Self, SkewedTime) {
        let offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
        (Self(Source::Skewed(offset.clone())), SkewedTime(offset))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Source::System => Timestamp::now(),
            Source::Manual(cell) => Timestamp(cell.load(Ordering::SeqCst)),
            Source::Skewed(offset) => Timestamp(
                Timestamp::now()
                    .0
                    .saturating_add_signed(offset.load(Ordering::SeqCst)),
            ),
        }
    }

    /// The current time in milliseconds since the Unix epoch (a manual clock's second,
    /// times 1,000), for rate limits finer than a second.
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Manual(cell) => cell.load(Ordering::SeqCst).saturating_mul(1000),
            Source::Skewed(offset) => system_ms()
                .saturating_add_signed(offset.load(Ordering::SeqCst).saturating_mul(1000)),
        }
    }
}

fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(cell) => write!(f, "Clock::Manual({})", cell.load(Ordering::SeqCst)),
            Source::Skewed(offset) => {
                write!(f, "Clock::Skewed({:+})", offset.load(Ordering::SeqCst))
            }
        }
    }
}

/// The handle that moves a manual clock.
#[derive(Clone, Debug)]
pub struct ManualTime(Arc<AtomicU64>);

impl ManualTime {
    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// The handle that moves a skewed clock.
#[derive(Clone, Debug)]
pub struct SkewedTime(Arc<std::sync::atomic::AtomicI64>);

impl SkewedTime {
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0
            .fetch_add(i64::try_from(secs).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}
