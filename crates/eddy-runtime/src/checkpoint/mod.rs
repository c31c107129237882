//! Checkpoints: asynchronous barrier snapshots (Chandy–Lamport, as in Flink).
//!
//! A checkpoint is a consistent cut through a running job: the state of every operator as it
//! was after exactly the records before the cut, and the position of every source at the cut.
//! It is taken without stopping the job:
//!
//! 1. The [`CheckpointCoordinator`] (in the job master) snapshots the sources' split
//!    enumerators and asks every source task to start checkpoint `n`.
//! 2. A source task records its readers' positions and sends a
//!    [`CheckpointBarrier`](eddy_core::CheckpointBarrier) `n` down every output channel, between
//!    two batches.
//! 3. A task with several input channels *aligns* the barriers ([`barrier`]): in
//!    EXACTLY_ONCE mode it stops reading a channel once its barrier `n` arrived, until barrier
//!    `n` has arrived on every channel (end of input counts as a barrier); in AT_LEAST_ONCE mode
//!    it keeps reading. Then it snapshots its chained operators in chain order
//!    (`OneInputOperator::snapshot_state`), sends the barrier on, and acknowledges checkpoint
//!    `n` to the coordinator with the state bytes of each operator.
//!    The snapshot has two parts ([`async_snapshot`]): the synchronous part runs while the
//!    barrier passes the chain, and operators with large state (the `fjall` backend) defer the
//!    rest to the task's snapshot thread, which acknowledges once it is done; the task reads on
//!    meanwhile.
//! 4. When every task has acknowledged (a finished task counts as acknowledged), the
//!    coordinator writes the checkpoint to its [`storage`] and notifies every task, which calls
//!    `notify_checkpoint_complete` on its operators.
//!
//! When an attempt fails and the restart strategy restarts the job, the next attempt is built
//! from the latest completed checkpoint: every operator gets its bytes back through
//! `initialize_state` before it opens, sources resume from their recorded split positions and
//! the enumerators from their remaining splits. State is addressed by the operator's stable id
//! ([`operator_id`]: its uid, else its position in the graph) and the subtask index, so it can
//! later be redistributed when the parallelism changes.
//!
//! The pieces are shaped for the cluster too: barriers are stream elements and cross remote
//! channels like records; a task talks to its coordinator only through a
//! [`TaskCheckpointing`] (control messages in, acknowledgements out).

pub mod async_snapshot;
pub mod barrier;
pub mod coordinator;
pub mod savepoint;
pub mod storage;

use std::cell::OnceCell;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eddy_core::config::{options, CheckpointRetention, CheckpointingMode};
use eddy_core::keygroup::key_group_range_for_operator;
use eddy_core::{CheckpointType, Configuration, EddyError, Result};

use async_snapshot::SnapshotWorker;
pub use async_snapshot::{ChainSnapshot, DeferredSnapshot, SnapshotBytes};
pub use coordinator::{CheckpointCoordinator, CheckpointStats, PendingSavepoint, SavepointTrigger};
pub use savepoint::SavepointRestoreSettings;
pub use storage::{CheckpointStorage, CompletedCheckpointStore};

pub use crate::jobgraph::operator_id;

/// How a job is checkpointed: Flink's `execution.checkpointing.*` and `state.checkpoints.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointConfig {
    /// `execution.checkpointing.interval`; `None`: checkpointing is off.
    pub interval: Option<Duration>,
    pub mode: CheckpointingMode,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// The least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    pub max_concurrent: usize,
    /// Consecutive failed checkpoints the job tolerates.
    pub tolerable_failures: usize,
    /// Unaligned checkpoints (EXACTLY_ONCE): `Some(aligned-checkpoint-timeout)`.
    pub unaligned: Option<Duration>,
    /// What becomes of the checkpoints in [`directory`](Self::directory) when the job ends.
    pub retention: CheckpointRetention,
    /// `state.checkpoints.dir`; `None`: completed checkpoints are kept in memory.
    pub directory: Option<PathBuf>,
    pub num_retained: usize,
    /// `state.savepoints.dir`: where savepoints go when a trigger names no directory.
    pub savepoint_directory: Option<PathBuf>,
    /// `execution.savepoint.*`: the savepoint or checkpoint the job starts from.
    pub restore: Option<SavepointRestoreSettings>,
}

impl Default for CheckpointConfig {
    /// Checkpointing off, every other setting at Flink's default.
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
            unaligned: None,
            retention: CheckpointRetention::default(),
            directory: None,
            num_retained: 1,
            savepoint_directory: None,
            restore: None,
        }
    }
}

impl CheckpointConfig {
    /// The settings `config` asks for; a bad value is an [`EddyError::Config`] naming its key.
    pub fn from_configuration(config: &Configuration) -> Result<Self> {
        Ok(CheckpointConfig {
            interval: config.get_optional(&options::CHECKPOINTING_INTERVAL)?,
            mode: config.get(&options::CHECKPOINTING_MODE)?,
            timeout: config.get(&options::CHECKPOINTING_TIMEOUT)?,
            min_pause: config.get(&options::CHECKPOINTING_MIN_PAUSE)?,
            max_concurrent: config.get(&options::CHECKPOINTING_MAX_CONCURRENT)?,
            tolerable_failures: config.get(&options::CHECKPOINTING_TOLERABLE_FAILURES)?,
            retention: config.get(&options::CHECKPOINTING_RETENTION)?,
            unaligned: match config.get(&options::CHECKPOINTING_UNALIGNED)? {
                true => Some(config.get(&options::CHECKPOINTING_ALIGNED_TIMEOUT)?),
                false => None,
            },
            directory: config.get_optional(&options::CHECKPOINTS_DIRECTORY)?.map(PathBuf::from),
            num_retained: config.get(&options::CHECKPOINTS_NUM_RETAINED)?,
            savepoint_directory: config.get_optional(&options::SAVEPOINTS_DIRECTORY)?.map(PathBuf::from),
            restore: SavepointRestoreSettings::from_configuration(config)?,
        })
    }

    /// Whether periodic checkpoints are taken. (Savepoints can be taken from any STREAMING
    /// job.)
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some()
    }
}

/// The state one operator of a task wrote for one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSnapshot {
    /// The operator's stable id ([`operator_id`]).
    pub operator_id: Arc<str>,
    /// `None`: the operator keeps no state.
    pub state: Option<Vec<u8>>,
}

/// A task's acknowledgement of a checkpoint: the state of every operator of its chain, in
/// chain order, once the snapshot's asynchronous part is done (see [`ChainSnapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    pub checkpoint_id: u64,
    pub operators: Vec<OperatorSnapshot>,
    /// Unaligned checkpoints: the records in flight on the task's inputs at the cut, encoded
    /// (`None`: aligned, or nothing was in flight). Stored with the chain's head operator.
    pub in_flight: Option<Vec<u8>>,
    /// How long the task thread spent on the snapshot (the barrier passing the chain).
    pub sync_duration: Duration,
    /// How long the snapshot thread spent on the deferred parts (zero without any).
    pub async_duration: Duration,
}

impl TaskSnapshot {
    pub fn new(checkpoint_id: u64) -> Self {
        TaskSnapshot {
            checkpoint_id,
            operators: Vec::new(),
            in_flight: None,
            sync_duration: Duration::ZERO,
            async_duration: Duration::ZERO,
        }
    }

    pub fn push(&mut self, operator_id: &Arc<str>, state: Option<Vec<u8>>) {
        self.operators.push(OperatorSnapshot { operator_id: operator_id.clone(), state });
    }
}

/// What the coordinator tells a running task, between two of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskControl {
    /// Sent to source tasks: start checkpoint `barrier.id` by injecting the barrier.
    TriggerCheckpoint(eddy_core::CheckpointBarrier),
    /// Every task acknowledged the checkpoint and it is stored.
    CheckpointComplete(u64),
    /// The checkpoint was given up (timeout, decline, failure): stop aligning for it.
    CheckpointAborted(u64),
}

/// A task's answer to a checkpoint, as the coordinator receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskResponse {
    Acknowledge {
        vertex: usize,
        subtask: usize,
        snapshot: TaskSnapshot,
    },
    /// The task cannot take part in the checkpoint (a source that cannot record its position).
    Decline {
        vertex: usize,
        subtask: usize,
        checkpoint_id: u64,
        reason: String,
    },
}

/// Where a task sends its acknowledgements: the local coordinator's event queue, or (on a
/// cluster, later) an RPC to the job master.
pub trait CheckpointResponder: Send + Sync {
    fn respond(&self, response: TaskResponse);
}

/// A task's end of the checkpoint protocol: its control inbox and its responder. Disabled
/// when the job does not checkpoint; then every method is a no-op.
pub struct TaskCheckpointing {
    mode: Option<CheckpointingMode>,
    /// Unaligned checkpoints: `Some(aligned-checkpoint-timeout)`.
    unaligned: Option<Duration>,
    vertex: usize,
    subtask: usize,
    inbox: Option<Receiver<TaskControl>>,
    responder: Option<Arc<dyn CheckpointResponder>>,
    /// The snapshot thread, started with the first snapshot that has deferred parts.
    worker: OnceCell<SnapshotWorker>,
}

impl fmt::Debug for TaskCheckpointing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCheckpointing")
            .field("mode", &self.mode)
            .field("vertex", &self.vertex)
            .field("subtask", &self.subtask)
            .finish()
    }
}

impl Default for TaskCheckpointing {
    fn default() -> Self {
        Self::disabled()
    }
}

impl TaskCheckpointing {
    /// For jobs without checkpoints: barriers are dropped, nothing is acknowledged.
    pub fn disabled() -> Self {
        TaskCheckpointing {
            mode: None,
            unaligned: None,
            vertex: 0,
            subtask: 0,
            inbox: None,
            responder: None,
            worker: OnceCell::new(),
        }
    }

    /// Subtask `subtask` of vertex `vertex`, reading `inbox` and answering to `responder`.
    pub fn new(
        mode: CheckpointingMode,
        vertex: usize,
        subtask: usize,
        inbox: Receiver<TaskControl>,
        responder: Arc<dyn CheckpointResponder>,
    ) -> Self {
        TaskCheckpointing {
            mode: Some(mode),
            unaligned: None,
            vertex,
            subtask,
            inbox: Some(inbox),
            responder: Some(responder),
            worker: OnceCell::new(),
        }
    }

    /// Takes unaligned checkpoints (EXACTLY_ONCE), after aligning for `aligned_timeout`.
    pub fn with_unaligned(mut self, aligned_timeout: Option<Duration>) -> Self {
        self.unaligned = aligned_timeout;
        self
    }

    /// `None` when the job does not checkpoint.
    pub fn mode(&self) -> Option<CheckpointingMode> {
        self.mode
    }

    /// `Some(aligned-checkpoint timeout)` when checkpoints may be unaligned.
    pub fn unaligned(&self) -> Option<Duration> {
        self.unaligned
    }

    /// The next control message, if one is waiting.
    #[inline]
    pub fn poll(&self) -> Option<TaskControl> {
        self.inbox.as_ref()?.try_recv().ok()
    }

    /// Waits up to `timeout` for a control message; without checkpoints, just waits.
    pub fn wait(&self, timeout: Duration) -> Option<TaskControl> {
        match &self.inbox {
            Some(inbox) => match inbox.recv_timeout(timeout) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                // The coordinator is gone (the attempt is ending): wait as without checkpoints.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(timeout);
                    None
                }
            },
            None => {
                std::thread::sleep(timeout);
                None
            }
        }
    }

    /// Acknowledges the checkpoint `snapshot` was taken for, once its deferred parts are done:
    /// at once when it has none (and no earlier snapshot is still in progress), else from the
    /// task's snapshot thread, in the order of the calls. A deferred part that fails declines
    /// the checkpoint with its error.
    pub fn acknowledge(&self, mut snapshot: ChainSnapshot) {
        let Some(responder) = &self.responder else { return };
        snapshot.end_sync();
        if self.worker.get().is_none() && !snapshot.is_deferred() {
            let id = snapshot.checkpoint_id;
            respond(responder.as_ref(), self.vertex, self.subtask, id, snapshot.complete());
            return;
        }
        let worker = match self.worker.get() {
            Some(w) => w,
            None => {
                let (to, vertex, subtask) = (responder.clone(), self.vertex, self.subtask);
                let answer: async_snapshot::Respond =
                    Box::new(move |id, outcome| respond(to.as_ref(), vertex, subtask, id, outcome));
                let name = format!("snapshots {vertex}/{subtask}");
                match SnapshotWorker::start(name, answer) {
                    Ok(w) => self.worker.get_or_init(|| w),
                    Err(e) => {
                        // No thread to spare: take the asynchronous part here instead.
                        tracing::warn!(error = %e, "taking the asynchronous part of a snapshot on the task thread");
                        let id = snapshot.checkpoint_id;
                        respond(responder.as_ref(), self.vertex, self.subtask, id, snapshot.complete());
                        return;
                    }
                }
            }
        };
        worker.submit(snapshot);
    }

    /// Waits until every snapshot handed to [`acknowledge`](Self::acknowledge) is answered, so
    /// that a finishing task's acknowledgements precede its end; gives up when the job is
    /// cancelled.
    pub fn finish(&self, signals: &crate::channel::JobSignals) -> Result<()> {
        let Some(worker) = self.worker.get() else { return Ok(()) };
        while !worker.wait_idle(crate::channel::CANCEL_CHECK) {
            crate::channel::check_cancelled(signals)?;
        }
        Ok(())
    }

    /// After acknowledging the stop-with-savepoint `checkpoint_id` (kind `SAVEPOINT_SUSPEND`),
    /// waits for its outcome, reading nothing else: the sources stopped after its barrier.
    /// `notify` hears of completed checkpoints. `true`: the savepoint completed (and `notify`
    /// has heard of it), so the task stops without ending its input; `false`: it was aborted
    /// and the task goes on.
    pub fn await_savepoint(
        &self,
        checkpoint_id: u64,
        signals: &crate::channel::JobSignals,
        mut notify: impl FnMut(u64) -> Result<()>,
    ) -> Result<bool> {
        loop {
            crate::channel::check_cancelled(signals)?;
            match self.wait(crate::channel::CANCEL_CHECK) {
                Some(TaskControl::CheckpointComplete(id)) => {
                    notify(id)?;
                    if id == checkpoint_id {
                        return Ok(true);
                    }
                }
                Some(TaskControl::CheckpointAborted(id)) if id == checkpoint_id => return Ok(false),
                Some(_) | None => {}
            }
        }
    }

    pub fn decline(&self, checkpoint_id: u64, reason: String) {
        if let Some(r) = &self.responder {
            let (vertex, subtask) = (self.vertex, self.subtask);
            r.respond(TaskResponse::Decline { vertex, subtask, checkpoint_id, reason });
        }
    }
}

/// Sends the outcome of checkpoint `checkpoint_id`'s snapshot: the acknowledgement, or a decline
/// with the error of the part that failed.
fn respond(
    responder: &dyn CheckpointResponder,
    vertex: usize,
    subtask: usize,
    checkpoint_id: u64,
    outcome: Result<TaskSnapshot>,
) {
    match outcome {
        Ok(snapshot) => {
            tracing::debug!(
                checkpoint_id,
                vertex,
                subtask,
                sync_ms = snapshot.sync_duration.as_secs_f64() * 1e3,
                async_ms = snapshot.async_duration.as_secs_f64() * 1e3,
                "snapshot taken"
            );
            responder.respond(TaskResponse::Acknowledge { vertex, subtask, snapshot });
        }
        Err(e) => {
            tracing::warn!(checkpoint_id, vertex, subtask, error = %e, "declining checkpoint");
            let reason = e.to_string();
            responder.respond(TaskResponse::Decline { vertex, subtask, checkpoint_id, reason });
        }
    }
}

/// What an operator starts from when a task is built: its id and, after a restore, its state.
#[derive(Debug, Clone, Default)]
pub struct OperatorInit {
    /// The operator's stable id ([`operator_id`]).
    pub operator_id: Arc<str>,
    /// The state the operator wrote for the checkpoint the job restores from.
    pub restored: Option<RestoredState>,
    /// The subtask had finished before the checkpoint: it must not emit its end-of-input
    /// results again.
    pub finished: bool,
    /// Unaligned checkpoints: the records in flight on the task's inputs at the checkpoint,
    /// which the restored task replays first (head operators only).
    pub in_flight: Option<Vec<u8>>,
}

impl OperatorInit {
    /// A fresh operator (no restore).
    pub fn fresh(operator_id: impl Into<Arc<str>>) -> Self {
        OperatorInit { operator_id: operator_id.into(), restored: None, finished: false, in_flight: None }
    }
}

/// The checkpointed state one operator subtask restores from.
///
/// With the parallelism unchanged a subtask gets back exactly what it wrote. After a rescale
/// (a savepoint or checkpoint restored with another parallelism) it is handed the state of
/// every subtask of the checkpointed run and picks its share:
///
/// - keyed state: the key groups of [`key_groups`](Self::key_groups), out of the old
///   subtasks [`keyed`](Self::keyed) returns (those whose key groups overlap);
/// - operator list state, even-split: the elements of all old subtasks
///   ([`all`](Self::all)), dealt out so that each new subtask takes every
///   `parallelism`-th one;
/// - union list state: everything, on every subtask.
///
/// An operator that cannot redistribute its state calls [`unscaled`](Self::unscaled), which
/// refuses a rescale with an error naming the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredState {
    /// `(old subtask index, the bytes it wrote)`: this subtask's own entry when the parallelism
    /// is unchanged, every old subtask that wrote state after a rescale.
    pub states: Vec<(usize, Vec<u8>)>,
    /// The parallelism of the checkpointed run.
    pub old_parallelism: usize,
    /// This subtask's index and the parallelism now.
    pub subtask: usize,
    pub parallelism: usize,
    /// The max parallelism (number of key groups), the same before and after.
    pub max_parallelism: usize,
    /// The operator's name, for errors.
    pub operator_name: String,
}

impl RestoredState {
    /// Operator `operator_name`'s subtask `subtask` of `parallelism`, given `states` of a run at
    /// `old_parallelism`, with `max_parallelism` key groups.
    pub fn new(
        operator_name: impl Into<String>,
        states: Vec<(usize, Vec<u8>)>,
        old_parallelism: usize,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Self {
        let operator_name = operator_name.into();
        RestoredState { states, old_parallelism, subtask, parallelism, max_parallelism, operator_name }
    }

    /// Whether the parallelism changed since the checkpoint.
    pub fn is_rescaled(&self) -> bool {
        self.old_parallelism != self.parallelism
    }

    /// The key groups this subtask owns now.
    pub fn key_groups(&self) -> RangeInclusive<usize> {
        key_group_range_for_operator(self.max_parallelism, self.parallelism, self.subtask)
    }

    /// The states of the old subtasks whose key groups overlap [`key_groups`](Self::key_groups):
    /// all the keyed state this subtask takes over (its own state when not rescaled).
    pub fn keyed(&self) -> impl Iterator<Item = &[u8]> {
        let mine = self.key_groups();
        self.states.iter().filter_map(move |(old, bytes)| {
            let theirs = key_group_range_for_operator(self.max_parallelism, self.old_parallelism, *old);
            (theirs.start() <= mine.end() && mine.start() <= theirs.end()).then_some(bytes.as_slice())
        })
    }

    /// Every state handed over, in old subtask order (for union and even-split list state).
    pub fn all(&self) -> impl Iterator<Item = &[u8]> {
        self.states.iter().map(|(_, b)| b.as_slice())
    }

    /// This subtask's own state, for operators whose state cannot be redistributed: an
    /// [`EddyError::InvalidJob`] after a rescale.
    pub fn unscaled(&self) -> Result<Option<&[u8]>> {
        if self.is_rescaled() {
            return Err(EddyError::InvalidJob(format!(
                "the state of '{}' cannot be redistributed from parallelism {} to {}",
                self.operator_name, self.old_parallelism, self.parallelism
            )));
        }
        Ok(self.states.first().map(|(_, b)| b.as_slice()))
    }

    /// Deals `items` (the union of all old subtasks' list elements, in a fixed order) out to the
    /// subtasks: this one keeps every `parallelism`-th, starting at its index. Without a rescale
    /// it keeps them all (they are its own).
    pub fn even_split<T>(&self, items: Vec<T>) -> Vec<T> {
        if !self.is_rescaled() {
            return items;
        }
        let (p, i) = (self.parallelism, self.subtask);
        items.into_iter().enumerate().filter(|(n, _)| n % p == i).map(|(_, t)| t).collect()
    }
}

/// The state of one subtask of one operator in a completed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubtaskState {
    /// The subtask had finished before the checkpoint was taken.
    pub finished: bool,
    /// The bytes its `snapshot_state` returned; `None`: no state.
    pub state: Option<Vec<u8>>,
    /// Unaligned checkpoints, on the head operator of a chain: the records that were in flight
    /// on the task's inputs ([`TaskSnapshot::in_flight`]).
    pub in_flight: Option<Vec<u8>>,
}

/// The state of one operator in a completed checkpoint, for all its subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorState {
    /// The operator's stable id ([`operator_id`]).
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// State kept outside the subtasks: a source's split enumerator.
    pub coordinator: Option<Vec<u8>>,
    /// One entry per subtask, by index.
    pub subtasks: Vec<SubtaskState>,
}

/// A checkpoint every task acknowledged: what a restore starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedCheckpoint {
    pub job_id: String,
    pub id: u64,
    /// When it was triggered, in ms since the epoch.
    pub timestamp: i64,
    pub kind: CheckpointType,
    /// In graph order.
    pub operators: Vec<OperatorState>,
}

impl CompletedCheckpoint {
    pub fn operator(&self, id: &str) -> Option<&OperatorState> {
        self.operators.iter().find(|o| o.id == id)
    }

    /// The total size of the state bytes.
    pub fn state_size(&self) -> usize {
        let subtasks = |o: &OperatorState| -> usize {
            o.subtasks.iter().map(|s| s.state.as_ref().map_or(0, Vec::len)).sum()
        };
        self.operators.iter().map(|o| subtasks(o) + o.coordinator.as_ref().map_or(0, Vec::len)).sum()
    }

    /// What operator `id`'s subtask `subtask` starts from, running at `parallelism` with
    /// `max_parallelism` key groups; an operator the checkpoint does not know starts empty (it
    /// was added since). With another parallelism than checkpointed, the subtask is handed every
    /// old subtask's state to pick its share from ([`RestoredState`]); the max parallelism must
    /// not change, since it fixes the key groups.
    pub fn operator_init(
        &self,
        id: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Result<OperatorInit> {
        let Some(op) = self.operator(id) else {
            return Ok(OperatorInit::fresh(id));
        };
        if op.max_parallelism != max_parallelism {
            return Err(EddyError::InvalidJob(format!(
                "cannot restore '{}' (operator {id}) from checkpoint {}: its max parallelism was {} and is \
                 {max_parallelism} now; the max parallelism fixes the key groups and must not change",
                op.name, self.id, op.max_parallelism
            )));
        }
        let (states, finished, in_flight) = if op.parallelism == parallelism {
            let s = op.subtasks.get(subtask).cloned().unwrap_or_default();
            (s.state.map(|b| vec![(subtask, b)]).unwrap_or_default(), s.finished, s.in_flight)
        } else {
            if op.subtasks.iter().any(|s| s.in_flight.is_some()) {
                return Err(EddyError::InvalidJob(format!(
                    "cannot restore '{}' (operator {id}) at parallelism {parallelism} from checkpoint {}: \
                     it is an unaligned checkpoint with records in flight, which only restores at the \
                     parallelism it was taken at ({}); rescale from a savepoint (always aligned)",
                    op.name, self.id, op.parallelism
                )));
            }
            let states =
                op.subtasks.iter().enumerate().filter_map(|(i, s)| s.state.clone().map(|b| (i, b))).collect();
            (states, !op.subtasks.is_empty() && op.subtasks.iter().all(|s| s.finished), None)
        };
        let restored = RestoredState {
            states,
            old_parallelism: op.parallelism,
            subtask,
            parallelism,
            max_parallelism,
            operator_name: op.name.clone(),
        };
        Ok(OperatorInit { operator_id: id.into(), restored: Some(restored), finished, in_flight })
    }
}

/// The channel a task's control messages travel on.
pub fn control_channel() -> (Sender<TaskControl>, Receiver<TaskControl>) {
    crossbeam_channel::unbounded()
}

#[cfg(test)]
mod tests;
