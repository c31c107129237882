//! Processing time: the clock operators read and the callbacks that fire their timers.
//!
//! Every task asks its chain for the earliest processing-time timer after each batch and wakes
//! up for it; a timer fires as a call to `on_processing_time` on the task's own thread, between
//! batches, so an operator is never called concurrently. Tests replace the system clock with a
//! [`ManualClock`].

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, as Flink's processing time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to (for tests and the operator test harness).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(AtomicI64::new(start_ms))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
#[derive(Clone)]
pub struct ClockRef(pub Arc<dyn Clock>);

impl ClockRef {
    pub fn system() -> Self {
        ClockRef(Arc::new(SystemClock))
    }
    #[inline]
    pub fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
    /// The instant at which this clock will read `at_ms` (now if already past).
    pub fn instant_of(&self, at_ms: i64) -> Instant {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Instant::now() + Duration::from_millis(wait)
    }
}

impl fmt::Debug for ClockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({} ms)", self.now_ms())
    }
}

impl Default for ClockRef {
    fn default() -> Self {
        Self::system()
    }
}

/// The earlier of two optional times.
#[inline]
pub fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
