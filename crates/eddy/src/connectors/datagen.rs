//! Generated input: Flink's `DataGeneratorSource` and `env.fromSequence`.
//!
//! [`DataGeneratorSource`] calls a function for each index `0, 1, 2, …`: up to a count
//! (bounded) or forever (unbounded), optionally at a limited rate. It is the source of
//! benchmarks and demos, so its reader does nothing per record but call the generator and push
//! the result. [`NumberSequenceSource`] emits the numbers of an inclusive `i64` range.
//!
//! Both cut their index space into splits so that each index is generated exactly once,
//! whatever the parallelism.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use eddy_core::{Data, EddyError, Result};
use eddy_runtime::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitAssignment, SplitEnumerator, SplitQueue,
};

/// The longest a rate-limited reader sleeps in one poll, so its task still sees cancellation.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// The indices `start, start + stride, start + 2 * stride, …` below `end`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorSplit {
    pub start: u64,
    pub end: u64,
    pub stride: u64,
}

impl GeneratorSplit {
    /// How many indices the split holds.
    fn len(&self) -> u64 {
        if self.start >= self.end {
            0
        } else {
            (self.end - self.start - 1) / self.stride.max(1) + 1
        }
    }
}

impl SourceSplit for GeneratorSplit {
    fn split_id(&self) -> String {
        format!("{}-{}/{}", self.start, self.end, self.stride)
    }
}

/// Record `i` is `generator(i)`, as Flink's `DataGeneratorSource`.
///
/// A bounded generator produces indices `0..count`, cut into one contiguous range per reader.
/// An unbounded one never ends: reader `i` of `p` produces `i, i + p, i + 2p, …`. With
/// [`with_rate`](Self::with_rate) the whole source emits at most that many records per second.
///
/// ```
/// use eddy::connectors::datagen::DataGeneratorSource;
///
/// let words = DataGeneratorSource::new(|i| format!("word-{}", i % 100), 1_000_000);
/// let ticks = DataGeneratorSource::unbounded(|i| i as i64).with_rate(1000.0);
/// ```
pub struct DataGeneratorSource<T, F> {
    generator: F,
    count: Option<u64>,
    rate_per_second: Option<f64>,
    _record: PhantomData<fn() -> T>,
}

impl<T, F: Clone> Clone for DataGeneratorSource<T, F> {
    fn clone(&self) -> Self {
        DataGeneratorSource {
            generator: self.generator.clone(),
            count: self.count,
            rate_per_second: self.rate_per_second,
            _record: PhantomData,
        }
    }
}

impl<T, F> DataGeneratorSource<T, F>
where
    T: Data,
    F: Fn(u64) -> T + Clone + Send + Sync + 'static,
{
    /// Generates records `generator(0) .. generator(count - 1)`, then ends.
    pub fn new(generator: F, count: u64) -> Self {
        DataGeneratorSource { generator, count: Some(count), rate_per_second: None, _record: PhantomData }
    }

    /// Generates records `generator(0), generator(1), …` forever.
    pub fn unbounded(generator: F) -> Self {
        DataGeneratorSource { generator, count: None, rate_per_second: None, _record: PhantomData }
    }

    /// Emits at most `records_per_second` records per second in total over all readers.
    /// The rate must be positive and finite, or creating the job fails.
    pub fn with_rate(mut self, records_per_second: f64) -> Self {
        self.rate_per_second = Some(records_per_second);
        self
    }

    /// The rate of one of `parallelism` readers.
    fn reader_rate(&self, parallelism: usize) -> Result<Option<f64>> {
        let Some(rate) = self.rate_per_second else {
            return Ok(None);
        };
        if !(rate.is_finite() && rate > 0.0) {
            return Err(EddyError::Config {
                key: "data generator rate".into(),
                value: rate.to_string(),
                reason: "must be a positive, finite number of records per second".into(),
            });
        }
        Ok(Some(rate / parallelism.max(1) as f64))
    }
}

impl<T, F> Source for DataGeneratorSource<T, F>
where
    T: Data,
    F: Fn(u64) -> T + Clone + Send + Sync + 'static,
{
    type Output = T;
    type Split = GeneratorSplit;
    type Reader = DataGeneratorReader<T, F>;

    fn boundedness(&self) -> Boundedness {
        match self.count {
            Some(_) => Boundedness::Bounded,
            None => Boundedness::ContinuousUnbounded,
        }
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<GeneratorSplit>>> {
        self.reader_rate(parallelism)?;
        let parallelism = parallelism.max(1) as u64;
        Ok(match self.count {
            Some(count) => {
                let splits = (0..parallelism)
                    .map(|k| GeneratorSplit {
                        start: cut(count, k, parallelism),
                        end: cut(count, k + 1, parallelism),
                        stride: 1,
                    })
                    .filter(|s| s.len() > 0);
                Box::new(SplitQueue::new(splits))
            }
            None => Box::new(StridedEnumerator { parallelism, assigned: vec![false; parallelism as usize] }),
        })
    }

    fn create_reader(&self, ctx: &ReaderContext) -> Result<DataGeneratorReader<T, F>> {
        Ok(DataGeneratorReader {
            generator: self.generator.clone(),
            splits: VecDeque::new(),
            next: 0,
            end: 0,
            left: 0,
            stride: 1,
            limiter: self.reader_rate(ctx.parallelism)?.map(RateLimiter::new),
            _record: PhantomData,
        })
    }
}

/// The `k`-th of `parts` cut points of `0..count`: `count * k / parts`, without overflow.
fn cut(count: u64, k: u64, parts: u64) -> u64 {
    (count as u128 * k as u128 / parts as u128) as u64
}

/// Gives subtask `i` the endless split `i, i + p, i + 2p, …`, once.
struct StridedEnumerator {
    parallelism: u64,
    assigned: Vec<bool>,
}

impl SplitEnumerator<GeneratorSplit> for StridedEnumerator {
    fn request_split(&mut self, subtask: usize) -> Result<SplitAssignment<GeneratorSplit>> {
        Ok(match self.assigned.get_mut(subtask) {
            Some(assigned) if !*assigned => {
                *assigned = true;
                SplitAssignment::Split(GeneratorSplit {
                    start: subtask as u64,
                    end: u64::MAX,
                    stride: self.parallelism,
                })
            }
            _ => SplitAssignment::NoMoreSplits,
        })
    }

    /// The splits of the subtasks that have not asked yet. A restored job hands them out in
    /// order to whichever reader asks (each index is still generated once).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<GeneratorSplit>> {
        let p = self.parallelism;
        let unassigned = self.assigned.iter().enumerate().filter(|(_, a)| !**a);
        Ok(unassigned.map(|(s, _)| GeneratorSplit { start: s as u64, end: u64::MAX, stride: p }).collect())
    }
}

/// Generates the records of its [`GeneratorSplit`]s.
pub struct DataGeneratorReader<T, F> {
    generator: F,
    splits: VecDeque<GeneratorSplit>,
    /// The current split: the next index, where it ends, how many are left and the step
    /// between them.
    next: u64,
    end: u64,
    left: u64,
    stride: u64,
    limiter: Option<RateLimiter>,
    _record: PhantomData<fn() -> T>,
}

impl<T, F> SourceReader for DataGeneratorReader<T, F>
where
    T: Data,
    F: Fn(u64) -> T + Clone + Send + Sync + 'static,
{
    type Output = T;
    type Split = GeneratorSplit;

    fn add_split(&mut self, split: GeneratorSplit) -> Result<()> {
        self.splits.push_back(split);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<T>) -> Result<ReaderStatus> {
        while self.left == 0 {
            let Some(split) = self.splits.pop_front() else {
                return Ok(ReaderStatus::NeedsSplit);
            };
            self.next = split.start;
            self.end = split.end;
            self.left = split.len();
            self.stride = split.stride.max(1);
        }
        let mut n = (out.remaining() as u64).min(self.left);
        if let Some(limiter) = &mut self.limiter {
            match limiter.acquire(n, Instant::now()) {
                Some(allowed) => n = allowed,
                None => return Ok(ReaderStatus::NothingAvailable),
            }
        }
        let (generator, stride, first) = (&self.generator, self.stride, self.next);
        out.extend((0..n).map(|k| generator(first.wrapping_add(k.wrapping_mul(stride)))));
        self.next = first.wrapping_add(n.wrapping_mul(stride));
        self.left -= n;
        Ok(ReaderStatus::MoreAvailable)
    }

    /// The rest of the current split (from the next index on) and the splits not started.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<GeneratorSplit>> {
        let current = (self.left > 0).then_some(GeneratorSplit {
            start: self.next,
            end: self.end,
            stride: self.stride,
        });
        Ok(current.into_iter().chain(self.splits.iter().cloned()).collect())
    }
}

/// Paces one reader at `rate` records per second, a batch at a time.
struct RateLimiter {
    rate: f64,
    start: Option<Instant>,
    emitted: u64,
}

impl RateLimiter {
    fn new(rate: f64) -> Self {
        RateLimiter { rate, start: None, emitted: 0 }
    }

    /// Waits (at most [`MAX_WAIT`]) until the next batch is due. Returns how many of `wanted`
    /// records may go now, or `None` if the batch is not due yet.
    fn acquire(&mut self, wanted: u64, now: Instant) -> Option<u64> {
        let start = *self.start.get_or_insert(now);
        match batch_due(start, self.emitted, self.rate) {
            Some(due) if due <= now => {}
            Some(due) if due - now <= MAX_WAIT => std::thread::sleep(due - now),
            _ => {
                std::thread::sleep(MAX_WAIT);
                return None;
            }
        }
        let allowed = wanted.min(batch_limit(self.rate));
        self.emitted += allowed;
        Some(allowed)
    }
}

/// When a reader limited to `rate_per_second` may emit its next batch, having emitted
/// `emitted` records since `start`: `emitted / rate` seconds after `start` (`None` if that is
/// beyond what an `Instant` can hold).
///
/// Emitting each batch no earlier than this keeps the count at any time `t` at most
/// `rate * (t - start)` plus one batch.
fn batch_due(start: Instant, emitted: u64, rate_per_second: f64) -> Option<Instant> {
    let offset = Duration::try_from_secs_f64(emitted as f64 / rate_per_second).ok()?;
    start.checked_add(offset)
}

/// The largest batch a rate-limited reader emits at once: what the rate allows in
/// [`MAX_WAIT`], at least one record, so slow rates are paced smoothly rather than in bursts.
fn batch_limit(rate_per_second: f64) -> u64 {
    ((rate_per_second * MAX_WAIT.as_secs_f64()) as u64).max(1)
}

/// The numbers `from..=to`, as Flink's `env.fromSequence(from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumberSequenceSplit {
    pub from: i64,
    pub to: i64,
}

impl SourceSplit for NumberSequenceSplit {
    fn split_id(&self) -> String {
        format!("{}..={}", self.from, self.to)
    }
}

/// Emits every number of the inclusive range `from..=to` once, as Flink's
/// `env.fromSequence(from, to)`; empty if `from > to`. Bounded.
///
/// The range is cut into four splits per reader, handed out on request, so faster readers
/// take more of the work.
///
/// ```
/// use eddy::connectors::datagen::NumberSequenceSource;
///
/// let one_to_a_million = NumberSequenceSource::new(1, 1_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct NumberSequenceSource {
    from: i64,
    to: i64,
}

impl NumberSequenceSource {
    pub fn new(from: i64, to: i64) -> Self {
        NumberSequenceSource { from, to }
    }

    /// How many numbers the source emits (up to 2^64).
    fn count(&self) -> u128 {
        if self.from > self.to {
            0
        } else {
            (self.to as i128 - self.from as i128 + 1) as u128
        }
    }
}

impl Source for NumberSequenceSource {
    type Output = i64;
    type Split = NumberSequenceSplit;
    type Reader = NumberSequenceReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<NumberSequenceSplit>>> {
        let count = self.count();
        let wanted = parallelism.max(1).saturating_mul(4).min(u32::MAX as usize) as u128;
        let parts = wanted.min(count);
        let splits = (0..parts)
            .map(|k| NumberSequenceSplit {
                from: self.nth(count * k / parts),
                to: self.nth(count * (k + 1) / parts - 1),
            })
            .collect::<Vec<_>>();
        Ok(Box::new(SplitQueue::new(splits)))
    }

    fn create_reader(&self, _ctx: &ReaderContext) -> Result<NumberSequenceReader> {
        Ok(NumberSequenceReader { splits: VecDeque::new(), next: 0, to: 0, left: 0 })
    }
}

impl NumberSequenceSource {
    /// The `i`-th number of the sequence, for `i < count()`.
    fn nth(&self, i: u128) -> i64 {
        (self.from as i128 + i as i128) as i64
    }
}

/// Emits the numbers of its [`NumberSequenceSplit`]s in order.
pub struct NumberSequenceReader {
    splits: VecDeque<NumberSequenceSplit>,
    next: i64,
    /// The last number of the current split.
    to: i64,
    /// Numbers left in the current split; one split may hold all 2^64 `i64`s.
    left: u128,
}

impl SourceReader for NumberSequenceReader {
    type Output = i64;
    type Split = NumberSequenceSplit;

    fn add_split(&mut self, split: NumberSequenceSplit) -> Result<()> {
        self.splits.push_back(split);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<i64>) -> Result<ReaderStatus> {
        while self.left == 0 {
            let Some(split) = self.splits.pop_front() else {
                return Ok(ReaderStatus::NeedsSplit);
            };
            self.next = split.from;
            self.to = split.to;
            self.left = NumberSequenceSource::new(split.from, split.to).count();
        }
        let n = (out.remaining() as u128).min(self.left);
        let mut value = self.next;
        for _ in 0..n {
            out.collect(value);
            value = value.wrapping_add(1);
        }
        self.next = value;
        self.left -= n;
        Ok(ReaderStatus::MoreAvailable)
    }

    /// The rest of the current split (from the next number on) and the splits not started.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<NumberSequenceSplit>> {
        let current = (self.left > 0).then_some(NumberSequenceSplit { from: self.next, to: self.to });
        Ok(current.into_iter().chain(self.splits.iter().cloned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(subtask_index: usize, parallelism: usize) -> ReaderContext {
        ReaderContext { subtask_index, parallelism, batch_size: 7 }
    }

    /// Runs a bounded source to the end with `parallelism` readers taking splits in turn.
    fn read_all<S: Source>(source: &S, parallelism: usize) -> Vec<Vec<S::Output>> {
        let mut enumerator = source.create_enumerator(parallelism).unwrap();
        let mut readers: Vec<S::Reader> =
            (0..parallelism).map(|i| source.create_reader(&ctx(i, parallelism)).unwrap()).collect();
        let mut outputs = vec![Vec::new(); parallelism];
        let mut done = vec![false; parallelism];
        let mut out = SourceOutput::new(7);
        while done.iter().any(|d| !d) {
            for (i, reader) in readers.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                let status = reader.poll_next(&mut out).unwrap();
                let batch = out.take();
                assert!(batch.len() <= 7);
                outputs[i].extend(batch.values);
                match status {
                    ReaderStatus::NeedsSplit => match enumerator.request_split(i).unwrap() {
                        SplitAssignment::Split(s) => reader.add_split(s).unwrap(),
                        SplitAssignment::NoMoreSplits => done[i] = true,
                        SplitAssignment::NotYet => panic!("bounded sources know all splits"),
                    },
                    ReaderStatus::EndOfInput => done[i] = true,
                    ReaderStatus::MoreAvailable | ReaderStatus::NothingAvailable => {}
                }
            }
        }
        outputs
    }

    #[test]
    fn bounded_generator_generates_each_index_once() {
        for parallelism in [1, 2, 3, 4, 7, 16] {
            for count in [0, 1, 3, 5, 100, 1001] {
                let source = DataGeneratorSource::new(|i| i * 10, count);
                assert_eq!(source.boundedness(), Boundedness::Bounded);
                let mut all: Vec<u64> = read_all(&source, parallelism).concat();
                all.sort_unstable();
                let want: Vec<u64> = (0..count).map(|i| i * 10).collect();
                assert_eq!(all, want, "parallelism {parallelism}, count {count}");
            }
        }
    }

    #[test]
    fn restored_readers_and_enumerators_go_on_where_they_were() {
        use crate::connectors::conformance::assert_restores_change_nothing;
        assert_restores_change_nothing(&DataGeneratorSource::new(|i| i * 2, 61));
        assert_restores_change_nothing(&DataGeneratorSource::new(|i| i, 0));
        assert_restores_change_nothing(&NumberSequenceSource::new(-20, 40));
        assert_restores_change_nothing(&NumberSequenceSource::new(i64::MAX - 30, i64::MAX));
        assert_restores_change_nothing(&NumberSequenceSource::new(5, 4));
    }

    #[test]
    fn an_unbounded_generator_resumes_each_reader_from_its_next_index() {
        let source = DataGeneratorSource::unbounded(|i| i);
        let mut enumerator = source.create_enumerator(2).unwrap();
        let mut reader = source.create_reader(&ctx(0, 2)).unwrap();
        let SplitAssignment::Split(split) = enumerator.request_split(0).unwrap() else { panic!() };
        reader.add_split(split).unwrap();
        let mut out = SourceOutput::new(7);
        reader.poll_next(&mut out).unwrap();
        assert_eq!(out.take().values, (0..7).map(|k| 2 * k).collect::<Vec<u64>>());
        // Subtask 1 has not asked yet: its split is the enumerator's state.
        let left = enumerator.snapshot_state(1).unwrap();
        assert_eq!(left, vec![GeneratorSplit { start: 1, end: u64::MAX, stride: 2 }]);
        let mut restored = source.create_reader(&ctx(0, 2)).unwrap();
        for split in reader.snapshot_state(1).unwrap() {
            restored.add_split(split).unwrap();
        }
        restored.poll_next(&mut out).unwrap();
        assert_eq!(out.take().values, (7..14).map(|k| 2 * k).collect::<Vec<u64>>());
    }

    #[test]
    fn bounded_splits_are_contiguous_ranges() {
        let source = DataGeneratorSource::new(|i| i, 10);
        let mut enumerator = source.create_enumerator(3).unwrap();
        let mut ranges = Vec::new();
        while let SplitAssignment::Split(s) = enumerator.request_split(0).unwrap() {
            ranges.push((s.start, s.end, s.stride));
        }
        assert_eq!(ranges, vec![(0, 3, 1), (3, 6, 1), (6, 10, 1)]);
    }

    #[test]
    fn unbounded_readers_interleave_indices() {
        for parallelism in [1, 2, 3, 5] {
            let source = DataGeneratorSource::unbounded(|i| i);
            assert_eq!(source.boundedness(), Boundedness::ContinuousUnbounded);
            let mut enumerator = source.create_enumerator(parallelism).unwrap();
            let mut all = Vec::new();
            for i in 0..parallelism {
                let mut reader = source.create_reader(&ctx(i, parallelism)).unwrap();
                let mut out = SourceOutput::new(7);
                assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::NeedsSplit);
                let SplitAssignment::Split(split) = enumerator.request_split(i).unwrap() else {
                    panic!("subtask {i} gets a split");
                };
                assert!(matches!(enumerator.request_split(i).unwrap(), SplitAssignment::NoMoreSplits));
                reader.add_split(split).unwrap();
                let mut values = Vec::new();
                for _ in 0..5 {
                    assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::MoreAvailable);
                    values.extend(out.take().values);
                }
                let p = parallelism as u64;
                let want: Vec<u64> = (0..35).map(|k| i as u64 + k * p).collect();
                assert_eq!(values, want);
                all.extend(values);
            }
            all.sort_unstable();
            assert_eq!(all, (0..35 * parallelism as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn strided_split_near_the_end_of_the_index_space_does_not_overflow() {
        let split = GeneratorSplit { start: u64::MAX - 5, end: u64::MAX, stride: 2 };
        assert_eq!(split.len(), 3);
        let source = DataGeneratorSource::unbounded(|i| i);
        let mut reader = source.create_reader(&ctx(0, 1)).unwrap();
        reader.add_split(split).unwrap();
        let mut out = SourceOutput::new(16);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::MoreAvailable);
        assert_eq!(out.take().values, vec![u64::MAX - 5, u64::MAX - 3, u64::MAX - 1]);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::NeedsSplit);
    }

    #[test]
    fn generator_can_build_any_record_type() {
        let source = DataGeneratorSource::new(|i| (format!("key-{}", i % 2), i as i64), 4);
        let mut all = read_all(&source, 2).concat();
        all.sort();
        assert_eq!(all[0], ("key-0".to_string(), 0));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn invalid_rate_is_a_config_error() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let source = DataGeneratorSource::new(|i| i, 10).with_rate(rate);
            assert!(matches!(source.create_enumerator(1).err(), Some(EddyError::Config { .. })));
            assert!(matches!(source.create_reader(&ctx(0, 1)).err(), Some(EddyError::Config { .. })));
        }
    }

    #[test]
    fn rate_limited_reader_still_emits_everything() {
        // A rate this high is never waited for: the test checks the limited path, not timing.
        let source = DataGeneratorSource::new(|i| i, 500).with_rate(1e12);
        let mut all = read_all(&source, 3).concat();
        all.sort_unstable();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn batch_due_spaces_batches_by_the_rate() {
        let start = Instant::now();
        assert_eq!(batch_due(start, 0, 100.0), Some(start));
        assert_eq!(batch_due(start, 100, 50.0), Some(start + Duration::from_secs(2)));
        assert_eq!(batch_due(start, 5, 1000.0), Some(start + Duration::from_millis(5)));
        assert_eq!(batch_due(start, u64::MAX, 1e-9), None);
    }

    #[test]
    fn emitting_at_due_times_keeps_to_the_rate() {
        // Simulated clock: each batch goes out at its due time or later, never earlier.
        for rate in [0.5, 10.0, 1000.0, 250_000.0] {
            let batch = batch_limit(rate);
            let start = Instant::now();
            let mut now = start;
            let mut emitted = 0u64;
            for step in 0..1000u64 {
                let due = batch_due(start, emitted, rate).unwrap();
                now = now.max(due) + Duration::from_micros(step % 3);
                emitted += batch;
                let elapsed = (now - start).as_secs_f64();
                assert!(emitted as f64 <= rate * elapsed + batch as f64 + 1e-6, "rate {rate}");
            }
            // And it does not fall behind when batches go out on time.
            let elapsed = (now - start).as_secs_f64();
            assert!(emitted as f64 >= rate * (elapsed - 0.01), "rate {rate}");
        }
    }

    #[test]
    fn batch_limit_is_what_the_rate_allows_in_one_wait() {
        assert_eq!(batch_limit(0.5), 1);
        assert_eq!(batch_limit(10.0), 1);
        assert_eq!(batch_limit(1000.0), 50);
        assert_eq!(batch_limit(1e6), 50_000);
    }

    #[test]
    fn limiter_lets_due_batches_go_at_most_a_wait_long() {
        let mut limiter = RateLimiter::new(1000.0);
        let start = Instant::now();
        // The first batch is due at once; 1000 records/s allow 50 per MAX_WAIT.
        assert_eq!(limiter.acquire(1000, start), Some(50));
        // The next 50 are due 50 ms later: asking then does not wait.
        assert_eq!(limiter.acquire(10, start + MAX_WAIT), Some(10));
        assert_eq!(limiter.emitted, 60);
        assert_eq!(batch_due(start, limiter.emitted, 1000.0), Some(start + Duration::from_millis(60)));
    }

    #[test]
    fn sequence_emits_each_number_once_in_order() {
        for parallelism in [1, 2, 3, 8] {
            for (from, to) in
                [(1, 1000), (-10, 10), (5, 5), (0, 2), (i64::MAX - 10, i64::MAX), (i64::MIN, i64::MIN + 30)]
            {
                let source = NumberSequenceSource::new(from, to);
                let outputs = read_all(&source, parallelism);
                for output in &outputs {
                    assert!(output.windows(2).all(|w| w[0] < w[1]), "each reader emits in order");
                }
                let mut all = outputs.concat();
                all.sort_unstable();
                assert_eq!(all, (from..=to).collect::<Vec<_>>(), "[{from}, {to}], parallelism {parallelism}");
            }
        }
    }

    #[test]
    fn sequence_with_from_after_to_is_empty() {
        let source = NumberSequenceSource::new(10, 1);
        let mut enumerator = source.create_enumerator(4).unwrap();
        assert!(matches!(enumerator.request_split(0).unwrap(), SplitAssignment::NoMoreSplits));
        assert!(read_all(&source, 2).concat().is_empty());
    }

    #[test]
    fn sequence_splits_cover_the_whole_i64_range() {
        let source = NumberSequenceSource::new(i64::MIN, i64::MAX);
        let mut enumerator = source.create_enumerator(3).unwrap();
        let mut splits = Vec::new();
        while let SplitAssignment::Split(s) = enumerator.request_split(0).unwrap() {
            splits.push(s);
        }
        assert_eq!(splits.len(), 12);
        assert_eq!(splits[0].from, i64::MIN);
        assert_eq!(splits[11].to, i64::MAX);
        for pair in splits.windows(2) {
            assert_eq!(pair[0].to.checked_add(1), Some(pair[1].from));
        }
        // A reader starts the last split without overflowing.
        let mut reader = source.create_reader(&ctx(0, 1)).unwrap();
        reader.add_split(NumberSequenceSplit { from: i64::MAX - 1, to: i64::MAX }).unwrap();
        let mut out = SourceOutput::new(8);
        reader.poll_next(&mut out).unwrap();
        assert_eq!(out.take().values, vec![i64::MAX - 1, i64::MAX]);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::NeedsSplit);
    }

    #[test]
    fn sequence_has_four_splits_per_reader_but_never_empty_ones() {
        let count_splits = |source: NumberSequenceSource, p| {
            let mut e = source.create_enumerator(p).unwrap();
            let mut n = 0;
            while let SplitAssignment::Split(s) = e.request_split(0).unwrap() {
                assert!(s.from <= s.to);
                n += 1;
            }
            n
        };
        assert_eq!(count_splits(NumberSequenceSource::new(0, 999), 2), 8);
        assert_eq!(count_splits(NumberSequenceSource::new(0, 2), 2), 3);
        assert_eq!(count_splits(NumberSequenceSource::new(0, 999), 0), 4);
    }
}
