//! The windows themselves: [`TimeWindow`] (an interval of time) and [`GlobalWindow`] (everything).
//!
//! A window is also the namespace of its state: the window operator keeps one accumulator (or
//! list of elements), one trigger state and a few timers per key and window.

use std::fmt::{self, Debug, Display};

use eddy_core::Key;
use serde::{Deserialize, Serialize};

/// A window: what a [`WindowAssigner`](super::WindowAssigner) puts elements into (Flink's
/// `Window`). Windows are compared, hashed and serialized as part of the operator's state.
pub trait Window: Key + Debug {
    /// The largest timestamp that still belongs to the window. Results of the window carry it
    /// as their timestamp, and event-time triggers fire once the watermark reaches it.
    fn max_timestamp(&self) -> i64;

    /// The window `[start, end)` of this type, if windows of this type are time intervals.
    /// Lets the window operator compute windows arithmetically (pane sharing); implement it
    /// only for interval windows.
    #[doc(hidden)]
    fn from_interval(_start: i64, _end: i64) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// The interval `[start, end)` of time in milliseconds: `end` is exclusive (Flink's
/// `TimeWindow`).
///
/// ```
/// use eddy::prelude::*;
///
/// let w = TimeWindow::new(0, 1000);
/// assert_eq!(w.max_timestamp(), 999);
/// assert!(w.intersects(&TimeWindow::new(1000, 2000)), "touching windows intersect");
/// assert_eq!(w.cover(&TimeWindow::new(500, 1500)), TimeWindow::new(0, 1500));
/// assert_eq!(TimeWindow::window_start_with_offset(-1, 0, 1000), -1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    start: i64,
    end: i64,
}

impl TimeWindow {
    pub const fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// The first timestamp of the window.
    pub const fn start(&self) -> i64 {
        self.start
    }

    /// The first timestamp after the window.
    pub const fn end(&self) -> i64 {
        self.end
    }

    /// `end - 1`.
    pub const fn max_timestamp(&self) -> i64 {
        self.end.wrapping_sub(1)
    }

    /// Whether the windows overlap or touch: `self.start <= other.end && self.end >=
    /// other.start`. Touching session windows merge.
    pub const fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window containing both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The start of the window of length `window_size` containing `timestamp`, for windows
    /// aligned to `offset`: `timestamp − ((timestamp − offset) mod window_size)` with a
    /// non-negative modulus, so negative timestamps and offsets align like positive ones.
    /// Arithmetic wraps on overflow, as Java's `long` does in Flink.
    pub const fn window_start_with_offset(timestamp: i64, offset: i64, window_size: i64) -> i64 {
        let remainder = timestamp.wrapping_sub(offset) % window_size;
        if remainder < 0 {
            timestamp.wrapping_sub(remainder + window_size)
        } else {
            timestamp.wrapping_sub(remainder)
        }
    }

    /// Merges intersecting windows (Flink's `TimeWindow.mergeWindows`): sorts `windows` by
    /// start, then calls `merge(group, cover)` for every run of two or more windows that
    /// intersect the cover of the windows before them.
    pub fn merge_windows(windows: &mut [TimeWindow], merge: &mut dyn FnMut(&[TimeWindow], TimeWindow)) {
        windows.sort_unstable_by_key(|w| w.start);
        let mut i = 0;
        while i < windows.len() {
            let mut cover = windows[i];
            let mut j = i + 1;
            while j < windows.len() && cover.intersects(&windows[j]) {
                cover = cover.cover(&windows[j]);
                j += 1;
            }
            if j - i > 1 {
                merge(&windows[i..j], cover);
            }
            i = j;
        }
    }
}

impl Window for TimeWindow {
    fn max_timestamp(&self) -> i64 {
        TimeWindow::max_timestamp(self)
    }

    fn from_interval(start: i64, end: i64) -> Option<Self> {
        Some(TimeWindow::new(start, end))
    }
}

impl Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeWindow{{start={}, end={}}}", self.start, self.end)
    }
}

/// The one window that holds every element of a key (Flink's `GlobalWindow`). It never ends:
/// its max timestamp is `i64::MAX`, so no element is ever late for it and its state is never
/// cleaned up by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct GlobalWindow;

impl GlobalWindow {
    pub const fn get() -> Self {
        GlobalWindow
    }
}

impl Window for GlobalWindow {
    fn max_timestamp(&self) -> i64 {
        i64::MAX
    }
}

impl Display for GlobalWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GlobalWindow")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(ts: i64, offset: i64, size: i64) -> i64 {
        TimeWindow::window_start_with_offset(ts, offset, size)
    }

    #[test]
    fn window_start_aligns_positive_and_negative_timestamps() {
        assert_eq!(start(0, 0, 1000), 0);
        assert_eq!(start(999, 0, 1000), 0);
        assert_eq!(start(1000, 0, 1000), 1000);
        assert_eq!(start(-1, 0, 1000), -1000);
        assert_eq!(start(-1000, 0, 1000), -1000);
        assert_eq!(start(-1001, 0, 1000), -2000);
    }

    #[test]
    fn window_start_applies_positive_and_negative_offsets() {
        // Offset 100: windows [.., 100), [100, 1100), [1100, 2100)...
        assert_eq!(start(99, 100, 1000), -900);
        assert_eq!(start(100, 100, 1000), 100);
        assert_eq!(start(1099, 100, 1000), 100);
        assert_eq!(start(-901, 100, 1000), -1900);
        // Offset -100 is the same alignment as offset 900.
        assert_eq!(start(899, -100, 1000), -100);
        assert_eq!(start(900, -100, 1000), 900);
        assert_eq!(start(-100, -100, 1000), -100);
        assert_eq!(start(-101, -100, 1000), -1100);
        for ts in -3000..3000 {
            assert_eq!(start(ts, -100, 1000), start(ts, 900, 1000));
            let s = start(ts, -100, 1000);
            assert!(s <= ts && ts < s + 1000 && (s + 100).rem_euclid(1000) == 0, "ts {ts}: start {s}");
        }
    }

    #[test]
    fn window_start_of_utc_plus_8_days() {
        let day = 86_400_000;
        let eight_hours = 8 * 3_600_000;
        // 1970-01-01T16:00Z is 1970-01-02T00:00 at UTC+8: a new day starts there.
        assert_eq!(start(16 * 3_600_000, -eight_hours, day), 16 * 3_600_000);
        assert_eq!(start(16 * 3_600_000 - 1, -eight_hours, day), -eight_hours);
    }

    #[test]
    fn max_timestamp_is_end_minus_one() {
        assert_eq!(TimeWindow::new(-10, 0).max_timestamp(), -1);
        assert_eq!(Window::max_timestamp(&GlobalWindow), i64::MAX);
    }

    #[test]
    fn intersects_is_inclusive_and_cover_spans_both() {
        let a = TimeWindow::new(0, 10);
        assert!(a.intersects(&TimeWindow::new(10, 20)));
        assert!(a.intersects(&TimeWindow::new(-5, 0)));
        assert!(!a.intersects(&TimeWindow::new(11, 20)));
        assert!(a.intersects(&TimeWindow::new(2, 3)));
        assert_eq!(a.cover(&TimeWindow::new(-5, 3)), TimeWindow::new(-5, 10));
    }

    #[test]
    fn merge_windows_reports_each_intersecting_run_once() {
        let mut ws = vec![
            TimeWindow::new(20, 30),
            TimeWindow::new(0, 5),
            TimeWindow::new(40, 45),
            TimeWindow::new(5, 8),
            TimeWindow::new(29, 35),
            TimeWindow::new(3, 4),
        ];
        let mut merges = Vec::new();
        TimeWindow::merge_windows(&mut ws, &mut |group, cover| {
            let mut g = group.to_vec();
            g.sort();
            merges.push((g, cover));
        });
        merges.sort();
        assert_eq!(
            merges,
            vec![
                (
                    vec![TimeWindow::new(0, 5), TimeWindow::new(3, 4), TimeWindow::new(5, 8)],
                    TimeWindow::new(0, 8)
                ),
                (vec![TimeWindow::new(20, 30), TimeWindow::new(29, 35)], TimeWindow::new(20, 35)),
            ]
        );
    }

    #[test]
    fn display_matches_flink() {
        assert_eq!(TimeWindow::new(0, 5).to_string(), "TimeWindow{start=0, end=5}");
    }
}
