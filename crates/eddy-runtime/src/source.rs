//! Sources in the shape of Flink's FLIP-27: splits, a split enumerator, and readers.
//!
//! A [`Source`] describes where data comes from. Its [`SplitEnumerator`] runs once per job and
//! hands out [`SourceSplit`]s (a file range, a number range, a socket, later a Kafka partition)
//! to the parallel [`SourceReader`]s that ask for work. A reader turns its splits into records,
//! a batch at a time. Files, sequences, generators and sockets all fit this one shape.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy_core::{Batch, Data, Result};

use crate::channel::{check_cancelled, JobSignals};
use crate::operator::OperatorContext;
use crate::output::Output;
use crate::task::{fire_due_timers, Flusher, Invokable, TaskRuntime};
use crate::time::ClockRef;

/// Whether a source ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundedness {
    Bounded,
    ContinuousUnbounded,
}

/// One unit of work of a source.
pub trait SourceSplit: Clone + Send + Debug + 'static {
    fn split_id(&self) -> String;
}

/// The enumerator's answer to a reader asking for work.
#[derive(Debug)]
pub enum SplitAssignment<S> {
    Split(S),
    /// Every split has been handed out: the reader ends when its own are done.
    NoMoreSplits,
    /// Nothing now; ask again later (unbounded sources that discover splits).
    NotYet,
}

/// Hands out splits to readers; one per source per job.
pub trait SplitEnumerator<S>: Send {
    fn request_split(&mut self, subtask: usize) -> Result<SplitAssignment<S>>;
}

/// What `poll_next` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderStatus {
    /// Call again right away.
    MoreAvailable,
    /// No data now. The reader should have waited briefly (≤ 50 ms) before saying so.
    NothingAvailable,
    /// The reader has finished its splits and wants another.
    NeedsSplit,
    /// The reader will produce nothing more.
    EndOfInput,
}

/// Where a reader puts records: a batch with a capacity.
pub struct SourceOutput<T> {
    batch: Batch<T>,
    capacity: usize,
}

impl<T> SourceOutput<T> {
    pub fn new(capacity: usize) -> Self {
        SourceOutput { batch: Batch::with_capacity(capacity), capacity: capacity.max(1) }
    }

    #[inline]
    pub fn collect(&mut self, value: T) {
        self.batch.push(value);
    }

    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, ts: i64) {
        self.batch.push_with_timestamp(value, ts);
    }

    /// The batch is full: return from `poll_next` so the records move on.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.capacity
    }

    /// How many more records fit in this batch.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.capacity.saturating_sub(self.batch.len())
    }

    pub fn take(&mut self) -> Batch<T> {
        self.batch.take()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// Where a reader runs.
#[derive(Debug, Clone)]
pub struct ReaderContext {
    pub subtask_index: usize,
    pub parallelism: usize,
    pub batch_size: usize,
}

/// Reads the records of the splits assigned to one subtask.
pub trait SourceReader: Send + 'static {
    type Output: Data;
    type Split: SourceSplit;

    fn add_split(&mut self, split: Self::Split) -> Result<()>;

    /// Emits up to a batch of records into `out`.
    fn poll_next(&mut self, out: &mut SourceOutput<Self::Output>) -> Result<ReaderStatus>;

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A source of records.
pub trait Source: Send + Sync + 'static {
    type Output: Data;
    type Split: SourceSplit;
    type Reader: SourceReader<Output = Self::Output, Split = Self::Split>;

    fn boundedness(&self) -> Boundedness;

    /// Creates the job's enumerator for `parallelism` readers.
    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<Self::Split>>>;

    fn create_reader(&self, ctx: &ReaderContext) -> Result<Self::Reader>;
}

/// The enumerator shared by the readers of one source in one process.
pub type SharedEnumerator<S> = Arc<Mutex<Box<dyn SplitEnumerator<S>>>>;

/// How the readers of a source get their splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitDistribution {
    /// All readers run in this process and share one enumerator: a split goes to whichever
    /// reader asks first, so fast readers take more.
    OnDemand,
    /// The readers are spread over several processes, each with its own copy of the
    /// enumerator: a [`StaticSplitAssigner`] decides which reader gets which split, the same way
    /// in every process. `local[s]`: reader `s` runs in this process.
    Static { local: Vec<bool> },
}

/// A split enumerator that assigns splits the same way in every process of a distributed job.
///
/// Enumerators are pull-based and run once per process, so readers in different processes
/// asking their own copies would read the same splits. This wrapper replays requests to the
/// inner enumerator in a fixed order instead: round-robin over subtasks `0..parallelism`,
/// skipping subtasks that already got `NoMoreSplits`, and queues each answer for the subtask it
/// was replayed for. A reader's own request is answered from its queue, advancing the replay
/// as far as needed. Since every process runs the same replay over the same deterministic
/// enumerator, split `k` lands on the same subtask everywhere, and each process hands out only
/// its own subtasks' splits (the others' are dropped when replayed).
///
/// The inner enumerator must answer a given sequence of requests the same way in every
/// process: true of the bounded sources (file listings are sorted, sequences and generators
/// are computed). `NotYet` is passed on to the reader that asked (it asks again later), and
/// the replay resumes with the same subtask; an enumerator that discovers splits over time may
/// still answer differently in different processes. Unlike [`SplitDistribution::OnDemand`],
/// a slow reader is not relieved by fast ones.
pub struct StaticSplitAssigner<S> {
    inner: Box<dyn SplitEnumerator<S>>,
    /// Per subtask: splits replayed for it and not yet handed out (remote subtasks: none).
    queues: Vec<std::collections::VecDeque<S>>,
    /// Per subtask: the replay got `NoMoreSplits` for it.
    exhausted: Vec<bool>,
    local: Vec<bool>,
    /// The subtask the replay asks for next.
    next: usize,
}

impl<S> StaticSplitAssigner<S> {
    /// Wraps `inner` for `parallelism` readers, of which `local[s]` run in this process
    /// (missing entries: not local).
    pub fn new(inner: Box<dyn SplitEnumerator<S>>, parallelism: usize, mut local: Vec<bool>) -> Self {
        let parallelism = parallelism.max(1);
        local.resize(parallelism, false);
        StaticSplitAssigner {
            inner,
            queues: (0..parallelism).map(|_| Default::default()).collect(),
            exhausted: vec![false; parallelism],
            local,
            next: 0,
        }
    }

    /// Asks the inner enumerator once, for the next subtask in the replay order; `false` on
    /// `NotYet`.
    fn replay_one(&mut self) -> Result<bool> {
        let n = self.exhausted.len();
        let Some(t) = (0..n).map(|k| (self.next + k) % n).find(|&t| !self.exhausted[t]) else {
            return Ok(true);
        };
        match self.inner.request_split(t)? {
            SplitAssignment::Split(split) => {
                if self.local[t] {
                    self.queues[t].push_back(split);
                }
            }
            SplitAssignment::NoMoreSplits => self.exhausted[t] = true,
            SplitAssignment::NotYet => {
                self.next = t;
                return Ok(false);
            }
        }
        self.next = (t + 1) % n;
        Ok(true)
    }
}

impl<S: Send> SplitEnumerator<S> for StaticSplitAssigner<S> {
    fn request_split(&mut self, subtask: usize) -> Result<SplitAssignment<S>> {
        if subtask >= self.queues.len() || !self.local[subtask] {
            return Err(eddy_core::EddyError::user(format!(
                "split request from subtask {subtask}, which does not run in this process"
            )));
        }
        loop {
            if let Some(split) = self.queues[subtask].pop_front() {
                return Ok(SplitAssignment::Split(split));
            }
            if self.exhausted[subtask] {
                return Ok(SplitAssignment::NoMoreSplits);
            }
            if !self.replay_one()? {
                return Ok(SplitAssignment::NotYet);
            }
        }
    }
}

/// Runs one source reader and pushes its records into the chain.
pub struct SourceTask<R: SourceReader> {
    pub(crate) reader: R,
    pub(crate) enumerator: SharedEnumerator<R::Split>,
    pub(crate) out: Box<dyn Output<R::Output>>,
    pub(crate) ctx: OperatorContext,
}

impl<R: SourceReader> SourceTask<R> {
    fn request_split(&mut self) -> Result<SplitAssignment<R::Split>> {
        let mut e = self
            .enumerator
            .lock()
            .map_err(|_| eddy_core::EddyError::user("split enumerator poisoned by a panic"))?;
        self.ctx.guard(|| e.request_split(self.ctx.subtask_index))
    }

    fn run(&mut self, signals: &JobSignals, flusher: &mut Flusher, clock: &ClockRef) -> Result<()> {
        let mut output = SourceOutput::new(self.ctx.batch_size);
        let mut no_more_splits = false;
        loop {
            check_cancelled(signals)?;
            let out = &mut self.out;
            fire_due_timers(out.next_processing_time(), clock, |now| {
                out.on_processing_time(now)?;
                Ok(None)
            })?;
            let reader = &mut self.reader;
            let status = self.ctx.guard(|| reader.poll_next(&mut output))?;
            if !output.is_empty() {
                self.out.emit_batch(output.take())?;
            }
            match status {
                ReaderStatus::MoreAvailable => {}
                ReaderStatus::NothingAvailable => {}
                ReaderStatus::EndOfInput => break,
                ReaderStatus::NeedsSplit if no_more_splits => break,
                ReaderStatus::NeedsSplit => match self.request_split()? {
                    SplitAssignment::Split(s) => {
                        let reader = &mut self.reader;
                        self.ctx.guard(|| reader.add_split(s))?
                    }
                    SplitAssignment::NoMoreSplits => no_more_splits = true,
                    SplitAssignment::NotYet => {
                        std::thread::sleep(crate::channel::CANCEL_CHECK);
                    }
                },
            }
            flusher.maybe_flush(Instant::now(), || self.out.flush())?;
        }
        let reader = &mut self.reader;
        self.ctx.guard(|| reader.close())?;
        // A bounded input ends with the maximum watermark, so every pending timer fires.
        self.out.emit_watermark(i64::MAX)?;
        self.out.end_input()
    }
}

impl<R: SourceReader> Invokable for SourceTask<R> {
    fn invoke(mut self: Box<Self>, rt: &TaskRuntime) -> Result<()> {
        let mut flusher = Flusher::new(rt.buffer_timeout);
        self.run(&rt.signals, &mut flusher, &rt.clock)
    }

    fn name(&self) -> String {
        self.ctx.task_name()
    }
}
