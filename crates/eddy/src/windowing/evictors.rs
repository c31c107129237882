//! Evictors: remove elements from a window before and/or after its function runs (Flink's
//! `Evictor`).
//!
//! An evictor needs the window's elements, so a window with an evictor keeps every element
//! (with its timestamp) even for `reduce` and `aggregate`, which then run over the elements
//! left when the window fires. Elements an evictor removes are gone from the window for later
//! firings too.

use eddy_core::NO_TIMESTAMP;

use super::triggers::duration_ms;

/// The elements of one window, in arrival order, with their timestamps
/// ([`NO_TIMESTAMP`] for none).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct WindowElements<T> {
    values: Vec<T>,
    timestamps: Vec<i64>,
}

impl<T> WindowElements<T> {
    pub fn new() -> Self {
        WindowElements { values: Vec::new(), timestamps: Vec::new() }
    }

    pub fn push(&mut self, value: T, timestamp: i64) {
        self.values.push(value);
        self.timestamps.push(timestamp);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[T] {
        &self.values
    }

    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// `(value, timestamp)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&T, i64)> {
        self.values.iter().zip(self.timestamps.iter().copied())
    }

    /// Keeps the elements for which `keep(value, timestamp)` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T, i64) -> bool) {
        let mut kept = 0;
        for i in 0..self.values.len() {
            if keep(&self.values[i], self.timestamps[i]) {
                self.values.swap(kept, i);
                self.timestamps.swap(kept, i);
                kept += 1;
            }
        }
        self.values.truncate(kept);
        self.timestamps.truncate(kept);
    }

    /// Removes the first `n` elements (all if there are fewer).
    pub fn remove_first(&mut self, n: usize) {
        let n = n.min(self.values.len());
        self.values.drain(..n);
        self.timestamps.drain(..n);
    }

    pub(crate) fn append(&mut self, mut other: WindowElements<T>) {
        self.values.append(&mut other.values);
        self.timestamps.append(&mut other.timestamps);
    }
}

/// What an evictor may ask the operator (Flink's `EvictorContext`).
#[derive(Debug, Clone, Copy)]
pub struct EvictorContext {
    pub(crate) watermark: i64,
    pub(crate) processing_time: i64,
}

impl EvictorContext {
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }
}

/// Removes elements from a window when it fires (Flink's `Evictor`).
pub trait Evictor<T, W>: Clone + Send + Sync + 'static {
    /// Before the window function runs.
    fn evict_before(&self, elements: &mut WindowElements<T>, window: &W, ctx: &EvictorContext);

    /// After the window function ran.
    fn evict_after(&self, elements: &mut WindowElements<T>, window: &W, ctx: &EvictorContext);

    /// Shown in the operator name.
    fn name(&self) -> String {
        super::triggers::short_type_name::<Self>()
    }
}

/// The evictor of a windowed stream without one (a placeholder type; it is never called).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvictor;

impl<T, W> Evictor<T, W> for NoEvictor {
    fn evict_before(&self, _: &mut WindowElements<T>, _: &W, _: &EvictorContext) {}
    fn evict_after(&self, _: &mut WindowElements<T>, _: &W, _: &EvictorContext) {}
}

/// Keeps the last `max_count` elements (Flink's `CountEvictor`).
#[derive(Debug, Clone, Copy)]
pub struct CountEvictor {
    max_count: usize,
    after: bool,
}

impl CountEvictor {
    /// Evicts before the window function runs.
    pub fn of(max_count: usize) -> Self {
        CountEvictor { max_count, after: false }
    }

    /// Evicts after the window function ran.
    pub fn of_after(max_count: usize) -> Self {
        CountEvictor { max_count, after: true }
    }

    fn evict<T>(&self, elements: &mut WindowElements<T>) {
        if elements.len() > self.max_count {
            elements.remove_first(elements.len() - self.max_count);
        }
    }
}

impl<T, W> Evictor<T, W> for CountEvictor {
    fn evict_before(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if !self.after {
            self.evict(elements)
        }
    }
    fn evict_after(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if self.after {
            self.evict(elements)
        }
    }
    fn name(&self) -> String {
        format!("CountEvictor({})", self.max_count)
    }
}

/// Keeps the elements whose timestamp is within `window_size` of the window's latest element:
/// `ts > max_ts − window_size` (Flink's `TimeEvictor`). Does nothing when elements have no
/// timestamps.
#[derive(Debug, Clone, Copy)]
pub struct TimeEvictor {
    window_size: i64,
    after: bool,
}

impl TimeEvictor {
    pub fn of(window_size: std::time::Duration) -> Self {
        TimeEvictor { window_size: duration_ms(window_size), after: false }
    }

    pub fn of_after(window_size: std::time::Duration) -> Self {
        TimeEvictor { window_size: duration_ms(window_size), after: true }
    }

    fn evict<T>(&self, elements: &mut WindowElements<T>) {
        if !matches!(elements.timestamps.first(), Some(&t) if t != NO_TIMESTAMP) {
            return;
        }
        let Some(&max) = elements.timestamps.iter().max() else { return };
        let cutoff = max.saturating_sub(self.window_size);
        elements.retain(|_, ts| ts > cutoff);
    }
}

impl<T, W> Evictor<T, W> for TimeEvictor {
    fn evict_before(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if !self.after {
            self.evict(elements)
        }
    }
    fn evict_after(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if self.after {
            self.evict(elements)
        }
    }
    fn name(&self) -> String {
        format!("TimeEvictor({})", self.window_size)
    }
}

/// Evicts the elements whose `delta(element, last element) >= threshold` (Flink's
/// `DeltaEvictor`).
#[derive(Debug, Clone, Copy)]
pub struct DeltaEvictor<F> {
    threshold: f64,
    delta: F,
    after: bool,
}

impl<F> DeltaEvictor<F> {
    pub fn of(threshold: f64, delta: F) -> Self {
        DeltaEvictor { threshold, delta, after: false }
    }

    pub fn of_after(threshold: f64, delta: F) -> Self {
        DeltaEvictor { threshold, delta, after: true }
    }
}

impl<F> DeltaEvictor<F> {
    fn evict<T: Clone>(&self, elements: &mut WindowElements<T>)
    where
        F: Fn(&T, &T) -> f64,
    {
        let Some(last) = elements.values.last().cloned() else { return };
        // Removes where delta >= threshold; a NaN delta keeps the element, as in Flink.
        elements.retain(|v, _| {
            !matches!(
                (self.delta)(v, &last).partial_cmp(&self.threshold),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            )
        });
    }
}

impl<T: Clone, W, F> Evictor<T, W> for DeltaEvictor<F>
where
    F: Fn(&T, &T) -> f64 + Clone + Send + Sync + 'static,
{
    fn evict_before(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if !self.after {
            self.evict(elements)
        }
    }
    fn evict_after(&self, elements: &mut WindowElements<T>, _: &W, _: &EvictorContext) {
        if self.after {
            self.evict(elements)
        }
    }
    fn name(&self) -> String {
        format!("DeltaEvictor({})", self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: EvictorContext = EvictorContext { watermark: 0, processing_time: 0 };

    fn elements(items: &[(i32, i64)]) -> WindowElements<i32> {
        let mut e = WindowElements::new();
        for &(v, ts) in items {
            e.push(v, ts);
        }
        e
    }

    #[test]
    fn count_evictor_keeps_the_last_n_before_or_after() {
        let mut e = elements(&[(1, 10), (2, 11), (3, 12), (4, 13)]);
        let before = CountEvictor::of(2);
        Evictor::<i32, ()>::evict_after(&before, &mut e, &(), &CTX);
        assert_eq!(e.len(), 4, "an evict-before evictor does nothing after");
        Evictor::<i32, ()>::evict_before(&before, &mut e, &(), &CTX);
        assert_eq!((e.values(), e.timestamps()), (&[3, 4][..], &[12, 13][..]));
        let after = CountEvictor::of_after(1);
        Evictor::<i32, ()>::evict_before(&after, &mut e, &(), &CTX);
        assert_eq!(e.len(), 2);
        Evictor::<i32, ()>::evict_after(&after, &mut e, &(), &CTX);
        assert_eq!(e.values(), &[4]);
        Evictor::<i32, ()>::evict_before(&CountEvictor::of(5), &mut e, &(), &CTX);
        assert_eq!(e.values(), &[4]);
    }

    #[test]
    fn time_evictor_keeps_elements_within_the_size_of_the_latest() {
        let mut e = elements(&[(1, 100), (2, 250), (3, 150), (4, 201), (5, 200)]);
        // max 250, cutoff 250 - 50 = 200: keeps ts > 200.
        Evictor::<i32, ()>::evict_before(
            &TimeEvictor::of(std::time::Duration::from_millis(50)),
            &mut e,
            &(),
            &CTX,
        );
        assert_eq!((e.values(), e.timestamps()), (&[2, 4][..], &[250, 201][..]));
        let mut untimed = elements(&[(1, NO_TIMESTAMP), (2, NO_TIMESTAMP)]);
        Evictor::<i32, ()>::evict_before(
            &TimeEvictor::of(std::time::Duration::ZERO),
            &mut untimed,
            &(),
            &CTX,
        );
        assert_eq!(untimed.len(), 2);
    }

    #[test]
    fn delta_evictor_removes_elements_far_from_the_last() {
        let mut e = elements(&[(1, 0), (9, 0), (5, 0), (7, 0)]);
        let d = DeltaEvictor::of(3.0, |a: &i32, b: &i32| f64::from((a - b).abs()));
        Evictor::<i32, ()>::evict_before(&d, &mut e, &(), &CTX);
        // |1-7| = 6 and |5-7| = 2 (kept), |9-7| = 2 (kept), |7-7| = 0 (kept).
        assert_eq!(e.values(), &[9, 5, 7]);
    }

    #[test]
    fn retain_keeps_order_and_timestamps_aligned() {
        let mut e = elements(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
        e.retain(|v, _| v % 2 == 1);
        assert_eq!(e.iter().collect::<Vec<_>>(), vec![(&1, 1), (&3, 3), (&5, 5)]);
    }
}
