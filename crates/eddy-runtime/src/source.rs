//! Sources in the shape of Flink's FLIP-27: splits, a split enumerator, and readers.
//!
//! A [`Source`] describes where data comes from. Its [`SplitEnumerator`] runs once per job and
//! hands out [`SourceSplit`]s (a file range, a number range, a socket, later a Kafka partition)
//! to the parallel [`SourceReader`]s that ask for work. A reader turns its splits into records,
//! a batch at a time. Files, sequences, generators and sockets all fit this one shape.
//!
//! # Checkpoints
//!
//! A split doubles as its own checkpoint state: a reader's
//! [`snapshot_state`](SourceReader::snapshot_state) returns its splits with their progress
//! (the part of a range not read yet, a file range starting at the next unread line), and a
//! restored reader is simply given those splits back with
//! [`add_split`](SourceReader::add_split). The enumerator's state is the splits it has not
//! handed out ([`SplitEnumerator::snapshot_state`]); [`Source::restore_enumerator`] hands them
//! out again. Splits are therefore serializable.
//!
//! The [`SourceCoordinator`] keeps the two consistent: after it snapshotted the enumerator for
//! checkpoint `n`, it hands no split to a reader that has not yet passed barrier `n`. A split
//! is then either in the enumerator's state or in one reader's, never in both or neither.

use std::any::Any;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy_core::{codec, Batch, CheckpointBarrier, CheckpointType, Data, EddyError, Result, NO_TIMESTAMP};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{check_cancelled, CANCEL_CHECK};
use crate::checkpoint::{ChainSnapshot, OperatorInit, TaskCheckpointing, TaskControl};
use crate::operator::OperatorContext;
use crate::output::Output;
use crate::task::{fire_due_timers, Flusher, Invokable, TaskRuntime};

/// Whether a source ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundedness {
    Bounded,
    ContinuousUnbounded,
}

/// One unit of work of a source, and (with its progress) a reader's checkpoint state.
pub trait SourceSplit: Clone + Send + Debug + Serialize + DeserializeOwned + 'static {
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

    /// The splits not handed out yet, for checkpoint `checkpoint_id`. The default says the
    /// enumerator cannot be checkpointed, which declines every checkpoint of the job.
    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<S>> {
        let _ = checkpoint_id;
        Err(EddyError::user("this split enumerator does not support checkpoints (no snapshot_state)"))
    }

    /// The splits this enumerator has set aside for reader `subtask` and not handed out yet,
    /// for the reader to checkpoint with its own: an enumerator that assigns splits to readers
    /// in advance ([`StaticSplitAssigner`]) keeps none in its own state. The default: none,
    /// every split goes to whichever reader asks.
    fn splits_destined_for(&mut self, subtask: usize) -> Result<Vec<S>> {
        let _ = subtask;
        Ok(Vec::new())
    }
}

/// Hands out a fixed list of splits, in order, to whichever reader asks first: the enumerator
/// of most bounded sources, and the default restored enumerator.
#[derive(Debug, Clone)]
pub struct SplitQueue<S> {
    splits: std::collections::VecDeque<S>,
}

impl<S> SplitQueue<S> {
    pub fn new(splits: impl IntoIterator<Item = S>) -> Self {
        SplitQueue { splits: splits.into_iter().collect() }
    }
}

impl<S: SourceSplit> SplitEnumerator<S> for SplitQueue<S> {
    fn request_split(&mut self, _subtask: usize) -> Result<SplitAssignment<S>> {
        Ok(match self.splits.pop_front() {
            Some(split) => SplitAssignment::Split(split),
            None => SplitAssignment::NoMoreSplits,
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<S>> {
        Ok(self.splits.iter().cloned().collect())
    }
}

/// What `poll_next` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderStatus {
    /// Call again right away.
    MoreAvailable,
    /// No data now. The reader should have waited briefly (≤ 50 ms) before saying so, or
    /// say through [`SourceReader::available_at`] when to ask again.
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

    /// Collects every record of `values`. Cheaper per record than `collect` in a loop: the
    /// records are written straight into the batch.
    #[inline]
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) {
        self.batch.values.extend(values);
        if !self.batch.timestamps.is_empty() {
            self.batch.timestamps.resize(self.batch.values.len(), NO_TIMESTAMP);
        }
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

    /// Adds a split to read: one the enumerator handed out, or one restored from a
    /// checkpoint (with its progress, as [`snapshot_state`](Self::snapshot_state) returned it).
    fn add_split(&mut self, split: Self::Split) -> Result<()>;

    /// Emits up to a batch of records into `out`.
    fn poll_next(&mut self, out: &mut SourceOutput<Self::Output>) -> Result<ReaderStatus>;

    /// The splits this reader holds, each with its progress, such that a new reader given
    /// them with `add_split` emits exactly the records this one has not emitted yet. Called
    /// between two `poll_next`s. The default says the reader cannot be checkpointed, which
    /// declines every checkpoint of the job.
    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<Self::Split>> {
        let _ = checkpoint_id;
        Err(EddyError::user("this source reader does not support checkpoints (no snapshot_state)"))
    }

    /// After `poll_next` said `NothingAvailable`: when the reader expects data again (a
    /// throttled reader: when its next record is due). The source task then waits until
    /// then, handling checkpoint triggers, timers and flushes meanwhile, instead of asking
    /// again at once. The default, `None`, means the reader waited itself.
    fn available_at(&self) -> Option<Instant> {
        None
    }

    /// Checkpoint `checkpoint_id` is complete (where a reader would commit offsets).
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let _ = checkpoint_id;
        Ok(())
    }

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

    /// The enumerator of a restored job, from the splits the checkpointed enumerator had not
    /// handed out. The default hands them out in order to whichever reader asks first.
    fn restore_enumerator(
        &self,
        parallelism: usize,
        splits: Vec<Self::Split>,
    ) -> Result<Box<dyn SplitEnumerator<Self::Split>>> {
        let _ = parallelism;
        Ok(Box::new(SplitQueue::new(splits)))
    }
}

/// The split enumerator of one source, shared by its readers in one process, and kept
/// consistent with their checkpoints (see the module docs).
pub struct SourceCoordinator<S> {
    state: Mutex<CoordinatorState<S>>,
}

struct CoordinatorState<S> {
    enumerator: Box<dyn SplitEnumerator<S>>,
    /// The checkpoint the enumerator was last snapshotted for.
    snapshot_id: u64,
    /// Per subtask: the newest checkpoint whose barrier it has passed.
    passed: Vec<u64>,
}

impl<S: SourceSplit> SourceCoordinator<S> {
    pub fn new(enumerator: Box<dyn SplitEnumerator<S>>, parallelism: usize) -> Self {
        let state = CoordinatorState { enumerator, snapshot_id: 0, passed: vec![0; parallelism.max(1)] };
        SourceCoordinator { state: Mutex::new(state) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, CoordinatorState<S>>> {
        self.state.lock().map_err(|_| EddyError::user("split enumerator poisoned by a panic"))
    }

    /// A split for reader `subtask`, or `NotYet` while a checkpoint's enumerator snapshot is
    /// newer than the barrier the reader has passed.
    pub fn request_split(&self, subtask: usize) -> Result<SplitAssignment<S>> {
        let mut state = self.lock()?;
        if state.passed.get(subtask).is_some_and(|&p| p < state.snapshot_id) {
            return Ok(SplitAssignment::NotYet);
        }
        state.enumerator.request_split(subtask)
    }

    /// The splits set aside for reader `subtask` and not handed out yet (see
    /// [`SplitEnumerator::splits_destined_for`]).
    pub fn splits_destined_for(&self, subtask: usize) -> Result<Vec<S>> {
        self.lock()?.enumerator.splits_destined_for(subtask)
    }

    /// Reader `subtask` has injected the barrier of checkpoint `checkpoint_id`.
    pub fn barrier_passed(&self, subtask: usize, checkpoint_id: u64) -> Result<()> {
        let mut state = self.lock()?;
        if let Some(p) = state.passed.get_mut(subtask) {
            *p = (*p).max(checkpoint_id);
        }
        Ok(())
    }
}

/// What the checkpoint coordinator does with a source's [`SourceCoordinator`], whatever its
/// split type.
pub trait SourceCoordinatorHandle: Send + Sync {
    /// For the source task of the same type to take it back.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The enumerator's encoded state for checkpoint `checkpoint_id`; from now on, splits go
    /// only to readers past its barrier.
    fn snapshot(&self, checkpoint_id: u64) -> Result<Vec<u8>>;
    /// Checkpoint `checkpoint_id` was given up: no reader waits for its barrier any longer.
    fn abort(&self, checkpoint_id: u64);
}

impl<S: SourceSplit> SourceCoordinatorHandle for SourceCoordinator<S> {
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn snapshot(&self, checkpoint_id: u64) -> Result<Vec<u8>> {
        let mut state = self.lock()?;
        let splits = state.enumerator.snapshot_state(checkpoint_id)?;
        let mut bytes = Vec::new();
        codec::encode_value(&splits, &mut bytes)?;
        state.snapshot_id = state.snapshot_id.max(checkpoint_id);
        Ok(bytes)
    }

    fn abort(&self, checkpoint_id: u64) {
        if let Ok(mut state) = self.lock() {
            for p in &mut state.passed {
                *p = (*p).max(checkpoint_id);
            }
        }
    }
}

/// Decodes the splits a reader or an enumerator wrote for a checkpoint.
pub fn decode_splits<S: SourceSplit>(bytes: &[u8]) -> Result<Vec<S>> {
    codec::decode_value(bytes)
}

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

impl<S: Clone + Send> StaticSplitAssigner<S> {
    /// Replays the inner enumerator to its end, so that every split has its reader.
    fn replay_all(&mut self) -> Result<()> {
        while self.exhausted.iter().any(|e| !e) {
            if !self.replay_one()? {
                return Err(EddyError::user(
                    "this source's split enumerator discovers splits over time (it answered NotYet), \
                     which a job on a cluster cannot checkpoint yet: its readers' splits are assigned \
                     statically",
                ));
            }
        }
        Ok(())
    }
}

/// Checkpoints: every split is destined for one reader, so the splits a reader has not been
/// handed yet are checkpointed with that reader's own splits ([`splits_destined_for`]), and
/// the enumerator itself keeps nothing: its state is empty, and a restored enumerator hands
/// out no more splits. The whole replay is run first, which needs an enumerator that knows
/// all its splits (true of the bounded sources).
///
/// [`splits_destined_for`]: SplitEnumerator::splits_destined_for
impl<S: Clone + Send> SplitEnumerator<S> for StaticSplitAssigner<S> {
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<S>> {
        self.replay_all()?;
        Ok(Vec::new())
    }

    fn splits_destined_for(&mut self, subtask: usize) -> Result<Vec<S>> {
        self.replay_all()?;
        Ok(self.queues.get(subtask).map(|q| q.iter().cloned().collect()).unwrap_or_default())
    }

    fn request_split(&mut self, subtask: usize) -> Result<SplitAssignment<S>> {
        if subtask >= self.queues.len() || !self.local[subtask] {
            return Err(EddyError::user(format!(
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
    pub(crate) coordinator: Arc<SourceCoordinator<R::Split>>,
    pub(crate) out: Box<dyn Output<R::Output>>,
    pub(crate) ctx: OperatorContext,
    /// The source operator's id, under which its reader state is checkpointed.
    pub(crate) operator_id: Arc<str>,
    /// Restored from a checkpoint taken after this subtask had finished: it reads nothing.
    pub(crate) finished_on_restore: bool,
}

impl<R: SourceReader> SourceTask<R> {
    /// A task for `reader`, given back the splits it had in the checkpoint `init` restores.
    pub(crate) fn new(
        mut reader: R,
        coordinator: Arc<SourceCoordinator<R::Split>>,
        out: Box<dyn Output<R::Output>>,
        ctx: OperatorContext,
        init: &OperatorInit,
    ) -> Result<Self> {
        if let Some(restored) = &init.restored {
            // The splits the readers had, dealt out again if the parallelism changed.
            let mut splits: Vec<R::Split> = Vec::new();
            for bytes in restored.all() {
                splits.extend(decode_splits::<R::Split>(bytes).map_err(|e| ctx.task_error(e))?);
            }
            for split in restored.even_split(splits) {
                ctx.guard(|| reader.add_split(split))?;
            }
        }
        Ok(SourceTask {
            reader,
            coordinator,
            out,
            ctx,
            operator_id: init.operator_id.clone(),
            finished_on_restore: init.finished,
        })
    }

    fn request_split(&mut self) -> Result<SplitAssignment<R::Split>> {
        self.ctx.guard(|| self.coordinator.request_split(self.ctx.subtask_index))
    }

    fn run(&mut self, rt: &TaskRuntime, flusher: &mut Flusher) -> Result<()> {
        let (signals, clock, checkpoints) = (&rt.signals, &rt.clock, &rt.checkpoints);
        let mut output = SourceOutput::new(self.ctx.batch_size);
        let mut no_more_splits = false;
        let mut stop = Stop::No;
        while !self.finished_on_restore && stop == Stop::No {
            check_cancelled(signals)?;
            while let Some(control) = checkpoints.poll() {
                stop = self.on_control(control, rt)?;
                if stop != Stop::No {
                    break;
                }
            }
            if stop != Stop::No {
                break;
            }
            let out = &mut self.out;
            fire_due_timers(out.next_processing_time(), clock, |now| {
                out.on_processing_time(now)?;
                Ok(None)
            })?;
            let reader = &mut self.reader;
            let status = self.ctx.guard(|| reader.poll_next(&mut output))?;
            if !output.is_empty() {
                let batch = output.take();
                crate::metrics::count(&self.ctx.metrics.records_out, batch.len());
                self.out.emit_batch(batch)?;
            }
            match status {
                ReaderStatus::MoreAvailable => {}
                ReaderStatus::NothingAvailable => {
                    if let Some(at) = self.reader.available_at() {
                        let now = Instant::now();
                        let mut until = at.min(flusher.deadline(now));
                        if let Some(t) = self.out.next_processing_time() {
                            until = until.min(clock.instant_of(t));
                        }
                        if until > now {
                            let wait = || checkpoints.wait(until - now);
                            if let Some(control) = crate::metrics::timed(&rt.metrics.idle_ns, wait) {
                                stop = self.on_control(control, rt)?;
                            }
                        }
                    }
                }
                ReaderStatus::EndOfInput => break,
                ReaderStatus::NeedsSplit if no_more_splits => break,
                ReaderStatus::NeedsSplit => match self.request_split()? {
                    SplitAssignment::Split(s) => {
                        let reader = &mut self.reader;
                        self.ctx.guard(|| reader.add_split(s))?
                    }
                    SplitAssignment::NoMoreSplits => no_more_splits = true,
                    // Waits on the control inbox: a checkpoint trigger (which may be what holds
                    // the split back) is handled at once.
                    SplitAssignment::NotYet => {
                        let wait = || checkpoints.wait(CANCEL_CHECK);
                        if let Some(control) = crate::metrics::timed(&rt.metrics.idle_ns, wait) {
                            stop = self.on_control(control, rt)?;
                        }
                    }
                },
            }
            flusher.maybe_flush(Instant::now(), || self.out.flush())?;
        }
        let reader = &mut self.reader;
        self.ctx.guard(|| reader.close())?;
        if stop == Stop::Suspend {
            // Stopped by a completed stop-with-savepoint: the input does not end, so nothing
            // downstream fires or flushes what the savepoint holds.
            return Ok(());
        }
        // A bounded input ends with the maximum watermark, so every pending timer fires.
        self.out.emit_watermark(i64::MAX)?;
        self.out.end_input()
    }

    /// Handles a control message; says whether the source stops reading.
    fn on_control(&mut self, control: TaskControl, rt: &TaskRuntime) -> Result<Stop> {
        let checkpoints = &rt.checkpoints;
        match control {
            // Drain: end the input now, with the maximum watermark; the savepoint completes
            // once every task has finished.
            TaskControl::TriggerCheckpoint(barrier) if barrier.kind == CheckpointType::SavepointTerminate => {
                Ok(Stop::Drain)
            }
            TaskControl::TriggerCheckpoint(barrier) => {
                if !self.checkpoint(barrier, checkpoints)? || barrier.kind != CheckpointType::SavepointSuspend
                {
                    return Ok(Stop::No);
                }
                let suspended =
                    checkpoints.await_savepoint(barrier.id, &rt.signals, |id| self.notify_complete(id))?;
                Ok(if suspended { Stop::Suspend } else { Stop::No })
            }
            TaskControl::CheckpointComplete(id) => {
                self.notify_complete(id)?;
                Ok(Stop::No)
            }
            TaskControl::CheckpointAborted(_) => Ok(Stop::No),
        }
    }

    fn notify_complete(&mut self, id: u64) -> Result<()> {
        let reader = &mut self.reader;
        self.ctx.guard(|| reader.notify_checkpoint_complete(id))?;
        self.out.notify_checkpoint_complete(id)
    }

    /// Records the reader's splits, sends the barrier through the chain and acknowledges;
    /// `false` when the reader declined.
    fn checkpoint(&mut self, barrier: CheckpointBarrier, checkpoints: &TaskCheckpointing) -> Result<bool> {
        self.coordinator.barrier_passed(self.ctx.subtask_index, barrier.id)?;
        let subtask = self.ctx.subtask_index;
        let recorded = self.reader.snapshot_state(barrier.id).and_then(|mut splits| {
            splits.extend(self.coordinator.splits_destined_for(subtask)?);
            Ok(splits)
        });
        let splits = match recorded {
            Ok(splits) => splits,
            Err(e) => {
                let reason = format!("{} cannot record its position: {e}", self.ctx.task_name());
                tracing::warn!(checkpoint_id = barrier.id, task = %self.ctx.task_name(), error = %e,
                    "declining checkpoint");
                checkpoints.decline(barrier.id, reason);
                return Ok(false);
            }
        };
        let mut bytes = Vec::new();
        codec::encode_value(&splits, &mut bytes).map_err(|e| self.ctx.task_error(e))?;
        let mut snapshot = ChainSnapshot::new(barrier.id);
        snapshot.push(&self.operator_id, Some(bytes));
        self.out.emit_barrier(&barrier, &mut snapshot)?;
        checkpoints.acknowledge(snapshot);
        Ok(true)
    }
}

/// Whether a source task stops reading, and how (stop-with-savepoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    /// The savepoint completed: stop without ending the input.
    Suspend,
    /// End the input now, as if the source were exhausted.
    Drain,
}

impl<R: SourceReader> Invokable for SourceTask<R> {
    fn invoke(mut self: Box<Self>, rt: &TaskRuntime) -> Result<()> {
        let mut flusher = Flusher::new(rt.buffer_timeout);
        self.run(rt, &mut flusher)
    }

    fn name(&self) -> String {
        self.ctx.task_name()
    }
}
