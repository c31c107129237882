//! State time-to-live (Flink's `StateTtlConfig`): when keyed state expires, what a read of
//! expired state returns, and where expired state is cleaned up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When the last-access timestamp of a state entry is refreshed (Flink's
/// `StateTtlConfig.UpdateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateType {
    /// On creation and on every write (the default).
    OnCreateAndWrite,
    /// On creation, on every write and on every read that returns the entry.
    OnReadAndWrite,
}

/// Whether a read may return an entry that has expired but is still stored (Flink's
/// `StateTtlConfig.StateVisibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateVisibility {
    /// Expired entries are never returned (the default).
    NeverReturnExpired,
    /// An expired entry that was not cleaned up yet is returned by the read that finds it; that
    /// read cleans it up, so the next read no longer sees it.
    ReturnExpiredIfNotCleanedUp,
}

/// How long keyed state lives after its last access, in processing time (Flink's
/// `StateTtlConfig`). Enable it on a descriptor with `enable_time_to_live`.
///
/// An entry expires once `last access + ttl <= now`, with `now` read from the operator's clock.
/// Granularity is the entry: a value, one element of a list, one entry of a map.
///
/// ```
/// use eddy::prelude::*;
///
/// let ttl = StateTtlConfig::new(Duration::from_secs(60))
///     .update_type(UpdateType::OnReadAndWrite)
///     .state_visibility(StateVisibility::NeverReturnExpired)
///     .cleanup_full_snapshot();
/// let last_seen = ValueStateDescriptor::<i64>::new("last-seen").enable_time_to_live(ttl);
/// assert_eq!(last_seen.ttl_config().map(|c| c.ttl), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTtlConfig {
    /// How long an entry lives after its last access.
    pub ttl: Duration,
    pub update_type: UpdateType,
    pub state_visibility: StateVisibility,
    /// Whether snapshots leave expired entries out.
    pub cleanup_full_snapshot: bool,
}

impl StateTtlConfig {
    /// Entries live `ttl` after their last write (Flink's `newBuilder(ttl).build()`). Time is
    /// counted in whole milliseconds; a TTL under 1 ms expires entries at once.
    pub fn new(ttl: Duration) -> Self {
        StateTtlConfig {
            ttl,
            update_type: UpdateType::OnCreateAndWrite,
            state_visibility: StateVisibility::NeverReturnExpired,
            cleanup_full_snapshot: false,
        }
    }

    pub fn update_type(mut self, update_type: UpdateType) -> Self {
        self.update_type = update_type;
        self
    }

    pub fn state_visibility(mut self, visibility: StateVisibility) -> Self {
        self.state_visibility = visibility;
        self
    }

    /// Leaves expired entries out of snapshots (the live state keeps them until read).
    pub fn cleanup_full_snapshot(mut self) -> Self {
        self.cleanup_full_snapshot = true;
        self
    }

    pub(crate) fn at(&self, now: i64) -> TtlNow {
        TtlNow {
            ttl_ms: i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
            now,
            refresh_on_read: self.update_type == UpdateType::OnReadAndWrite,
            return_expired: self.state_visibility == StateVisibility::ReturnExpiredIfNotCleanedUp,
        }
    }
}

/// A TTL configuration at one instant: what an access needs to judge and stamp entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TtlNow {
    ttl_ms: i64,
    pub now: i64,
    pub refresh_on_read: bool,
    pub return_expired: bool,
}

impl TtlNow {
    /// Whether an entry last accessed at `stamp` has expired.
    #[inline]
    pub fn expired(&self, stamp: i64) -> bool {
        stamp.saturating_add(self.ttl_ms) <= self.now
    }
}
