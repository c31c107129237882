//! The checkpoint coordinator: triggers checkpoints, collects acknowledgements, completes,
//! stores and announces them (Flink's `CheckpointCoordinator`).
//!
//! One [`CheckpointCoordinator`] lives as long as its job: checkpoint ids keep growing across
//! restarts and the completed checkpoints it retains are what a restart restores from. For
//! every attempt it runs on a thread of its own ([`CheckpointCoordinator::start_attempt`]),
//! driven by a queue of events (acknowledgements, declines, tasks ending) and by time (the
//! next periodic trigger, the timeouts of pending checkpoints); it never sleeps.
//!
//! - **Trigger** (every `execution.checkpointing.interval`, at most
//!   `max-concurrent-checkpoints` at a time, `min-pause` after the last completion): snapshot
//!   every source's split enumerator, then send every running source task
//!   [`TaskControl::TriggerCheckpoint`]. Once every source task has finished, no more
//!   checkpoints are triggered (the rest of the job is draining).
//! - **Acknowledge**: a task's state for the checkpoint. A task that has finished counts as
//!   acknowledged, with its subtasks marked finished (Flink's checkpoints after tasks finish).
//! - **Complete** when every task has: the checkpoint is written to storage, the tasks are
//!   notified ([`TaskControl::CheckpointComplete`]) and older pending checkpoints are subsumed.
//! - **Fail** on timeout, decline or a storage error: the tasks are told
//!   ([`TaskControl::CheckpointAborted`]) and the failure counts; more consecutive failures
//!   than `tolerable-failed-checkpoints` fail the job. A failing attempt aborts its pending
//!   checkpoints without counting them.
//! - **Savepoints** ([`SavepointTrigger`]) are triggered on demand, also while periodic
//!   checkpoints run, and go through the same steps; on completion the coordinator writes them
//!   to their own folder ([`super::savepoint`]) instead of the retained checkpoints, and keeps
//!   the newest as a restore point for failover (the sinks committed it). No periodic
//!   checkpoint starts while a savepoint is pending. A failed savepoint is reported to whoever
//!   triggered it and does not count towards `tolerable-failed-checkpoints`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eddy_core::{CheckpointBarrier, CheckpointType, EddyError, Result};

use super::savepoint::write_savepoint;
use super::storage::{
    CheckpointLocation, CheckpointStorage, CompletedCheckpointStore, FileSystemCheckpointStorage,
    JobManagerCheckpointStorage,
};
use super::{
    CheckpointConfig, CheckpointResponder, CompletedCheckpoint, OperatorSnapshot, OperatorState,
    SubtaskState, TaskControl, TaskResponse, TaskSnapshot,
};
use crate::graph::{NodeKind, StreamGraph};
use crate::jobgraph::{operator_id, JobGraph};
use crate::source::SourceCoordinatorHandle;

/// What a job's checkpoints have done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints triggered and neither completed nor given up yet.
    pub in_progress: u64,
    /// The most recent checkpoints, oldest first, at most [`CHECKPOINT_HISTORY`] (Flink's
    /// `web.checkpoints.history`).
    pub history: VecDeque<CheckpointRecord>,
    /// The latest completed and the latest failed checkpoint (also when they have left the
    /// history).
    pub latest_completed_record: Option<CheckpointRecord>,
    pub latest_failed_record: Option<CheckpointRecord>,
    /// When the current attempt was restored (ms since the epoch), with `restored`.
    pub restore_timestamp: Option<i64>,
    /// Over all completed checkpoints: their state size and end-to-end duration.
    pub state_size: Summary,
    pub end_to_end_duration: Summary,
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub latest_completed: Option<u64>,
    /// The checkpoint the current attempt was restored from.
    pub restored: Option<u64>,
    /// How many attempts were restored from a checkpoint.
    pub restore_count: u64,
    /// Why the latest failed checkpoint failed.
    pub latest_failure: Option<String>,
    /// The retained checkpoints, oldest first.
    pub retained: Vec<u64>,
}

/// How many checkpoints [`CheckpointStats::history`] keeps.
pub const CHECKPOINT_HISTORY: usize = 10;

/// Minimum, maximum, sum and count of a quantity over completed checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub min: u64,
    pub max: u64,
    pub sum: u64,
    pub count: u64,
}

impl Summary {
    pub fn add(&mut self, value: u64) {
        self.min = if self.count == 0 { value } else { self.min.min(value) };
        self.max = self.max.max(value);
        self.sum += value;
        self.count += 1;
    }

    /// The mean, rounded down; 0 before the first value.
    pub fn avg(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
}

/// Where a checkpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed,
}

impl CheckpointStatus {
    /// Flink's name: `IN_PROGRESS`, `COMPLETED`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointStatus::InProgress => "IN_PROGRESS",
            CheckpointStatus::Completed => "COMPLETED",
            CheckpointStatus::Failed => "FAILED",
        }
    }
}

/// One subtask's acknowledgement of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskAck {
    pub subtask: usize,
    /// When the coordinator received it (ms since the epoch).
    pub ack_timestamp: i64,
    /// The bytes of state its operators wrote; 0 for a subtask that had finished.
    pub state_size: u64,
    /// The subtask had finished: it counts as acknowledged without state.
    pub finished: bool,
    /// Milliseconds the task thread spent in the snapshot (Flink's `checkpoint_duration.sync`).
    pub sync_duration: u64,
    /// Milliseconds its snapshot thread spent on the deferred parts (`checkpoint_duration.async`).
    pub async_duration: u64,
}

/// The statistics of one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub id: u64,
    pub status: CheckpointStatus,
    pub kind: CheckpointType,
    pub trigger_timestamp: i64,
    /// The latest acknowledgement so far (ms since the epoch).
    pub latest_ack_timestamp: Option<i64>,
    /// Completion or failure (ms since the epoch).
    pub end_timestamp: Option<i64>,
    /// The state acknowledged so far (at completion: the checkpoint's, enumerators included).
    pub state_size: u64,
    /// Every subtask of the attempt, and those that acknowledged (finished ones included).
    pub num_subtasks: usize,
    pub num_acknowledged_subtasks: usize,
    /// Per job vertex (by index): its parallelism and the acknowledgements so far.
    pub vertices: BTreeMap<usize, (usize, Vec<SubtaskAck>)>,
    pub failure_message: Option<String>,
    /// Where a completed checkpoint is stored: its directory, or `None` in the JobManager's
    /// memory.
    pub external_path: Option<String>,
}

impl CheckpointRecord {
    /// From trigger to completion or failure, else to the latest acknowledgement, in ms.
    pub fn end_to_end_duration(&self) -> u64 {
        let end = self.end_timestamp.or(self.latest_ack_timestamp).unwrap_or(self.trigger_timestamp);
        (end - self.trigger_timestamp).max(0) as u64
    }
}

/// One operator of a job, as checkpoints describe it: what the coordinator needs to know of
/// the job's graph. On a cluster the job master has no graph; the workers, which build it,
/// describe it with [`CheckpointCoordinator::describe_operators`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointedOperator {
    /// The operator's stable id ([`operator_id`]).
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    /// The job vertex (chain) it runs in, by index.
    pub vertex: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// It is the source at the head of its vertex.
    pub source: bool,
}

type OperatorInfo = CheckpointedOperator;

/// What the coordinator needs to talk to the tasks of one attempt.
pub struct AttemptGateway {
    /// Every task's control inbox, by (vertex, subtask).
    pub tasks: Vec<((usize, usize), Sender<TaskControl>)>,
    /// Every source's split enumerator, by operator id.
    pub sources: Vec<(String, Arc<dyn SourceCoordinatorHandle>)>,
}

/// Triggers and completes the checkpoints of one job, over all its attempts.
pub struct CheckpointCoordinator {
    job_id: String,
    config: CheckpointConfig,
    operators: Vec<OperatorInfo>,
    /// Per operator: it heads its chain (where a task's in-flight records are stored).
    chain_head: Vec<bool>,
    source_vertex: Vec<bool>,
    store: CompletedCheckpointStore,
    /// A restore point outside the store: the newest completed savepoint, or the savepoint
    /// the job started from. A restart takes it when it is newer than every retained
    /// checkpoint.
    restore_point: Option<Arc<CompletedCheckpoint>>,
    next_id: u64,
    stats: Arc<Mutex<CheckpointStats>>,
}

impl CheckpointCoordinator {
    /// The coordinator of job `job_id`, whose graph is `graph`/`jg`; storage per `config`.
    pub fn new(job_id: &str, config: CheckpointConfig, graph: &StreamGraph, jg: &JobGraph) -> Self {
        Self::for_operators(job_id, config, Self::describe_operators(graph, jg))
    }

    /// Every operator of the graph, in graph order.
    pub fn describe_operators(graph: &StreamGraph, jg: &JobGraph) -> Vec<CheckpointedOperator> {
        graph
            .nodes
            .iter()
            .map(|n| CheckpointedOperator {
                id: operator_id(graph, n.id),
                uid: n.uid.clone(),
                name: n.name.clone(),
                vertex: jg.node_vertex[n.id],
                parallelism: jg.node_parallelism[n.id],
                max_parallelism: jg.node_max_parallelism[n.id],
                source: matches!(n.kind, NodeKind::Source(_)),
            })
            .collect()
    }

    /// The coordinator of job `job_id`, whose operators are `operators` (in graph order, as
    /// [`describe_operators`](Self::describe_operators) lists them); storage per `config`.
    pub fn for_operators(
        job_id: &str,
        config: CheckpointConfig,
        operators: Vec<CheckpointedOperator>,
    ) -> Self {
        let storage: Box<dyn CheckpointStorage> = match &config.directory {
            Some(dir) => Box::new(FileSystemCheckpointStorage::new(dir, job_id)),
            None => Box::new(JobManagerCheckpointStorage),
        };
        let vertices = operators.iter().map(|o| o.vertex + 1).max().unwrap_or(0);
        let mut source_vertex = vec![false; vertices];
        for o in operators.iter().filter(|o| o.source) {
            source_vertex[o.vertex] = true;
        }
        // A chain's head comes first among its operators in graph order: it is created before
        // the operators chained to its output.
        let mut seen = HashSet::new();
        let chain_head = operators.iter().map(|o| seen.insert(o.vertex)).collect();
        CheckpointCoordinator {
            job_id: job_id.to_string(),
            store: CompletedCheckpointStore::new(storage, config.num_retained),
            config,
            operators,
            chain_head,
            source_vertex,
            restore_point: None,
            next_id: 1,
            stats: Arc::default(),
        }
    }

    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// The statistics, shared: they stay current while the coordinator runs.
    pub fn stats(&self) -> Arc<Mutex<CheckpointStats>> {
        self.stats.clone()
    }

    /// The job starts from `restored` (a savepoint or retained checkpoint, read from
    /// `execution.savepoint.path`): checkpoint ids go on after its id, and a restart before
    /// the first completed checkpoint restores it again.
    pub fn restore_from(&mut self, restored: Arc<CompletedCheckpoint>) {
        self.next_id = self.next_id.max(restored.id + 1);
        lock(&self.stats).restored = Some(restored.id);
        self.restore_point = Some(restored);
    }

    /// The latest completed checkpoint that reads back intact (falling back to older retained
    /// ones), or the newest savepoint when that is newer, for the next attempt to start from;
    /// `None` before the first.
    pub fn checkpoint_to_restore(&mut self) -> Result<Option<Arc<CompletedCheckpoint>>> {
        let point = self.restore_point.clone();
        let restored = match (self.store.latest_restorable(), point) {
            (Ok(Some(c)), Some(p)) if p.id > c.id => Some(p),
            (Ok(Some(c)), _) => Some(c),
            (Ok(None), p) => p,
            (Err(e), Some(p)) => {
                tracing::warn!(job_id = %self.job_id, checkpoint_id = p.id, error = %e,
                    "restoring from a savepoint: no retained checkpoint can be read");
                Some(p)
            }
            (Err(e), None) => return Err(e),
        };
        if let Some(c) = &restored {
            tracing::info!(job_id = %self.job_id, checkpoint_id = c.id, storage = %self.store.describe(),
                "restoring from checkpoint");
        }
        let mut stats = lock(&self.stats);
        stats.restored = restored.as_ref().map(|c| c.id);
        stats.restore_timestamp = restored.as_ref().map(|_| now_ms());
        stats.restore_count += u64::from(restored.is_some());
        drop(stats);
        Ok(restored)
    }

    /// Runs the coordinator for one attempt on a thread of its own. `fail_job` fails the
    /// attempt when more checkpoints failed in a row than tolerated.
    pub fn start_attempt(
        self,
        gateway: AttemptGateway,
        fail_job: Box<dyn Fn(EddyError) + Send>,
    ) -> Result<RunningCoordinator> {
        let (events, inbox) = crossbeam_channel::unbounded();
        let name = format!("CheckpointCoordinator {}", self.job_id);
        let run = AttemptRun::new(self, gateway, fail_job);
        let thread = std::thread::Builder::new()
            .name(name.chars().take(60).collect())
            .spawn(move || run.run(inbox))
            .map_err(|e| EddyError::user(format!("cannot start the checkpoint coordinator thread: {e}")))?;
        Ok(RunningCoordinator { events, thread })
    }
}

enum Event {
    Response(TaskResponse),
    TaskEnded { vertex: usize, subtask: usize, finished: bool },
    TriggerSavepoint(SavepointRequest),
    Stop,
}

/// A savepoint asked for: its kind, its target directory (`None`: `state.savepoints.dir`) and
/// where its outcome goes.
struct SavepointRequest {
    kind: CheckpointType,
    target: Option<PathBuf>,
    reply: Sender<Result<PathBuf>>,
}

/// Triggers savepoints on the attempt a coordinator runs for: the engine-level entry point of
/// `JobClient::trigger_savepoint` and of a job master's REST handler.
#[derive(Clone)]
pub struct SavepointTrigger(Sender<Event>);

impl SavepointTrigger {
    /// Starts a savepoint of `kind` (`Savepoint`; for stop-with-savepoint `SavepointSuspend`,
    /// or `SavepointTerminate` to drain) into `target`, or `state.savepoints.dir` when `None`.
    /// Returns at once; the [`PendingSavepoint`] reports the savepoint folder or why it failed.
    pub fn trigger(&self, kind: CheckpointType, target: Option<PathBuf>) -> Result<PendingSavepoint> {
        if !kind.is_savepoint() {
            return Err(EddyError::user("a savepoint trigger needs a savepoint kind"));
        }
        let (reply, outcome) = crossbeam_channel::bounded(1);
        self.0
            .send(Event::TriggerSavepoint(SavepointRequest { kind, target, reply }))
            .map_err(|_| EddyError::user("cannot trigger a savepoint: the job attempt has ended"))?;
        Ok(PendingSavepoint(outcome))
    }
}

/// The outcome of a triggered savepoint, once known.
pub struct PendingSavepoint(Receiver<Result<PathBuf>>);

impl PendingSavepoint {
    /// Waits for the savepoint: its folder, or why it failed.
    pub fn wait(self) -> Result<PathBuf> {
        self.0.recv().unwrap_or_else(|_| Err(ended_before_savepoint()))
    }

    /// The outcome if known by now; `None` while the savepoint is in progress.
    pub fn try_result(&self) -> Option<Result<PathBuf>> {
        match self.0.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Err(ended_before_savepoint())),
        }
    }
}

fn ended_before_savepoint() -> EddyError {
    EddyError::user("the savepoint was not completed: the job attempt ended before it")
}

/// A coordinator running for one attempt.
pub struct RunningCoordinator {
    events: Sender<Event>,
    thread: JoinHandle<CheckpointCoordinator>,
}

/// Tells a running coordinator when tasks end.
#[derive(Clone)]
pub struct TaskEvents(Sender<Event>);

impl TaskEvents {
    /// A task of the attempt ended: `finished` when it ran to its end, else it failed or was
    /// cancelled.
    pub fn task_ended(&self, vertex: usize, subtask: usize, finished: bool) {
        let _ = self.0.send(Event::TaskEnded { vertex, subtask, finished });
    }
}

struct EventResponder(Sender<Event>);

impl CheckpointResponder for EventResponder {
    fn respond(&self, response: TaskResponse) {
        let _ = self.0.send(Event::Response(response));
    }
}

impl RunningCoordinator {
    /// Where the attempt's tasks send their acknowledgements.
    pub fn responder(&self) -> Arc<dyn CheckpointResponder> {
        Arc::new(EventResponder(self.events.clone()))
    }

    /// Where the attempt reports its tasks' ends.
    pub fn task_events(&self) -> TaskEvents {
        TaskEvents(self.events.clone())
    }

    /// Triggers savepoints of the attempt.
    pub fn savepoint_trigger(&self) -> SavepointTrigger {
        SavepointTrigger(self.events.clone())
    }

    /// Stops the coordinator after the events sent so far (the attempt's tasks have ended)
    /// and hands it back for the next attempt.
    pub fn stop(self) -> Result<CheckpointCoordinator> {
        let _ = self.events.send(Event::Stop);
        self.thread.join().map_err(|p| {
            EddyError::user(format!(
                "the checkpoint coordinator panicked: {}",
                crate::operator::panic_message(&p)
            ))
        })
    }
}

struct PendingCheckpoint {
    barrier: CheckpointBarrier,
    started: Instant,
    awaiting: HashSet<(usize, usize)>,
    acks: HashMap<(usize, usize), Vec<OperatorSnapshot>>,
    /// Unaligned checkpoints: the in-flight records of each task that had some.
    in_flight: HashMap<(usize, usize), Vec<u8>>,
    finished: HashSet<(usize, usize)>,
    /// Source enumerator states, by operator id.
    coordinator_states: HashMap<String, Vec<u8>>,
    /// For a savepoint: its target directory and who waits for it.
    savepoint: Option<(PathBuf, Sender<Result<PathBuf>>)>,
}

/// The coordinator's state while one attempt runs.
struct AttemptRun {
    c: CheckpointCoordinator,
    gateway: AttemptGateway,
    fail_job: Box<dyn Fn(EddyError) + Send>,
    pending: BTreeMap<u64, PendingCheckpoint>,
    finished: HashSet<(usize, usize)>,
    /// The attempt is failing or the job failed on checkpoints: trigger no more.
    stopped: bool,
    next_periodic: Instant,
    last_completion: Option<Instant>,
    consecutive_failures: usize,
}

impl AttemptRun {
    fn new(
        c: CheckpointCoordinator,
        gateway: AttemptGateway,
        fail_job: Box<dyn Fn(EddyError) + Send>,
    ) -> Self {
        let interval = c.config.interval.unwrap_or(Duration::MAX);
        AttemptRun {
            c,
            gateway,
            fail_job,
            pending: BTreeMap::new(),
            finished: HashSet::new(),
            stopped: false,
            next_periodic: Instant::now().checked_add(interval).unwrap_or_else(far_future),
            last_completion: None,
            consecutive_failures: 0,
        }
    }

    fn run(mut self, inbox: Receiver<Event>) -> CheckpointCoordinator {
        loop {
            let now = Instant::now();
            let wait =
                self.next_deadline().map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(now));
            match inbox.recv_timeout(wait) {
                Ok(Event::Response(TaskResponse::Acknowledge { vertex, subtask, snapshot })) => {
                    self.acknowledge(vertex, subtask, snapshot)
                }
                Ok(Event::Response(TaskResponse::Decline { vertex, subtask, checkpoint_id, reason })) => {
                    let reason = format!("declined by task {vertex}/{subtask}: {reason}");
                    self.fail(checkpoint_id, &reason, true);
                }
                Ok(Event::TaskEnded { vertex, subtask, finished: true }) => {
                    self.task_finished(vertex, subtask)
                }
                Ok(Event::TaskEnded { finished: false, .. }) => {
                    self.stopped = true;
                    self.abort_all("the job attempt is failing or cancelled");
                }
                Ok(Event::TriggerSavepoint(request)) => self.trigger_savepoint(request),
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            self.expire(now);
            if self.next_trigger().is_some_and(|t| t <= now) {
                self.next_periodic = now.checked_add(self.interval()).unwrap_or_else(far_future);
                self.trigger(CheckpointType::Checkpoint, None);
            }
        }
        self.abort_all("the job attempt ended");
        self.c
    }

    fn interval(&self) -> Duration {
        self.c.config.interval.unwrap_or(Duration::MAX)
    }

    fn sources_running(&self) -> bool {
        self.gateway
            .tasks
            .iter()
            .any(|((v, s), _)| self.c.source_vertex[*v] && !self.finished.contains(&(*v, *s)))
    }

    /// When the next checkpoint may be triggered; `None` while that waits for an event.
    fn next_trigger(&self) -> Option<Instant> {
        let config = &self.c.config;
        if self.stopped
            || !self.sources_running()
            || self.pending.len() >= config.max_concurrent
            || self.pending.values().any(|p| p.savepoint.is_some())
        {
            return None;
        }
        if !config.min_pause.is_zero() && !self.pending.is_empty() {
            return None;
        }
        let earliest = self.last_completion.and_then(|t| t.checked_add(config.min_pause));
        Some(earliest.map_or(self.next_periodic, |e| e.max(self.next_periodic)))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timeouts = self.pending.values().filter_map(|p| p.started.checked_add(self.c.config.timeout));
        timeouts.chain(self.next_trigger()).min()
    }

    /// Starts a savepoint, or tells the requester why it cannot start.
    fn trigger_savepoint(&mut self, request: SavepointRequest) {
        let SavepointRequest { kind, target, reply } = request;
        let refusal = if self.stopped {
            Some("the job attempt is failing or ending".to_string())
        } else if !self.sources_running() {
            Some("every source has finished; the job is ending".to_string())
        } else if self.pending.values().any(|p| p.barrier.kind.is_synchronous()) {
            Some("a stop-with-savepoint is in progress".to_string())
        } else {
            None
        };
        let target = target.or_else(|| self.c.config.savepoint_directory.clone());
        let outcome = match (refusal, target) {
            (Some(why), _) => Err(why),
            (None, None) => Err("no target directory: name one, or set state.savepoints.dir".to_string()),
            (None, Some(dir)) => Ok(dir),
        };
        match outcome {
            Ok(dir) => self.trigger(kind, Some((dir, reply))),
            Err(why) => {
                let _ = reply.send(Err(EddyError::user(format!("cannot take a savepoint: {why}"))));
            }
        }
    }

    fn trigger(&mut self, kind: CheckpointType, savepoint: Option<(PathBuf, Sender<Result<PathBuf>>)>) {
        let id = self.c.next_id;
        self.c.next_id += 1;
        let barrier = CheckpointBarrier { id, timestamp: now_ms(), kind };
        self.record_trigger(&barrier);
        let job_id = self.c.job_id.clone();
        tracing::debug!(job_id = %job_id, checkpoint_id = id, kind = kind.as_str(), "triggering checkpoint");
        let mut pending = PendingCheckpoint {
            barrier,
            started: Instant::now(),
            awaiting: HashSet::new(),
            acks: HashMap::new(),
            in_flight: HashMap::new(),
            finished: self.finished.clone(),
            coordinator_states: HashMap::new(),
            savepoint,
        };
        // The enumerators first: a split handed out from now on goes only to readers that
        // have passed this checkpoint's barrier, so no split is in both states.
        for (op, handle) in &self.gateway.sources {
            match handle.snapshot(id) {
                Ok(bytes) => {
                    pending.coordinator_states.insert(op.clone(), bytes);
                }
                Err(e) => {
                    self.pending.insert(id, pending);
                    self.fail(
                        id,
                        &format!("cannot snapshot the split enumerator of operator {op}: {e}"),
                        true,
                    );
                    return;
                }
            }
        }
        for ((v, s), _) in &self.gateway.tasks {
            if !self.finished.contains(&(*v, *s)) {
                pending.awaiting.insert((*v, *s));
            }
        }
        self.pending.insert(id, pending);
        for ((v, s), tx) in &self.gateway.tasks {
            if self.c.source_vertex[*v] && !self.finished.contains(&(*v, *s)) {
                let _ = tx.send(TaskControl::TriggerCheckpoint(barrier));
            }
        }
    }

    fn acknowledge(&mut self, vertex: usize, subtask: usize, snapshot: TaskSnapshot) {
        let id = snapshot.checkpoint_id;
        let Some(p) = self.pending.get_mut(&id) else { return };
        if p.awaiting.remove(&(vertex, subtask)) {
            let in_flight_size = snapshot.in_flight.as_ref().map_or(0, Vec::len) as u64;
            let size =
                snapshot.operators.iter().map(|o| o.state.as_ref().map_or(0, Vec::len) as u64).sum::<u64>()
                    + in_flight_size;
            let durations = [snapshot.sync_duration, snapshot.async_duration].map(|d| d.as_millis() as u64);
            p.acks.insert((vertex, subtask), snapshot.operators);
            if let Some(in_flight) = snapshot.in_flight {
                p.in_flight.insert((vertex, subtask), in_flight);
            }
            self.record_ack(id, vertex, subtask, size, Some(durations));
        }
        if self.pending.get(&id).is_some_and(|p| p.awaiting.is_empty()) {
            self.complete(id);
        }
    }

    fn task_finished(&mut self, vertex: usize, subtask: usize) {
        self.finished.insert((vertex, subtask));
        let mut done = Vec::new();
        for (id, p) in &mut self.pending {
            if p.awaiting.remove(&(vertex, subtask)) {
                p.finished.insert((vertex, subtask));
                if p.awaiting.is_empty() {
                    done.push(*id);
                }
            }
        }
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.record_ack(id, vertex, subtask, 0, None);
        }
        for id in done {
            self.complete(id);
        }
    }

    fn complete(&mut self, id: u64) {
        let Some(mut p) = self.pending.remove(&id) else { return };
        let savepoint = p.savepoint.take();
        let checkpoint = self.assemble(p);
        let started = Instant::now();
        let size = checkpoint.state_size();
        let stored = match &savepoint {
            Some((dir, _)) => {
                let checkpoint = Arc::new(checkpoint);
                write_savepoint(dir, &checkpoint).map(|path| {
                    self.c.restore_point = Some(checkpoint);
                    let external = path.display().to_string();
                    (Some(path), Some(external))
                })
            }
            None => {
                let describe = self.c.store.describe();
                self.c
                    .store
                    .add(checkpoint)
                    .map(|stored| match &stored.location {
                        CheckpointLocation::Directory(dir) => (None, Some(dir.display().to_string())),
                        CheckpointLocation::Memory(_) => (None, None),
                    })
                    .map_err(|e| EddyError::user(format!("cannot store it in {describe}: {e}")))
            }
        };
        let (path, external) = match stored {
            Ok(stored) => stored,
            Err(e) => {
                for (_, handle) in &self.gateway.sources {
                    handle.abort(id);
                }
                self.notify(TaskControl::CheckpointAborted(id));
                let reason = e.to_string();
                self.record_end(id, CheckpointStatus::Failed, Some(&reason), None);
                match savepoint {
                    Some((_, reply)) => self.savepoint_failed(id, reply, &reason),
                    None => self.count_failure(id, &reason),
                }
                return;
            }
        };
        self.consecutive_failures = 0;
        self.last_completion = Some(Instant::now());
        self.record_end(id, CheckpointStatus::Completed, None, Some((size as u64, external)));
        {
            let mut stats = lock(&self.c.stats);
            stats.completed += 1;
            stats.latest_completed = Some(id);
            stats.retained = self.c.store.retained_ids();
        }
        tracing::info!(job_id = %self.c.job_id, checkpoint_id = id, bytes = size,
            store_ms = started.elapsed().as_millis() as u64, savepoint = ?path, "checkpoint completed");
        self.notify(TaskControl::CheckpointComplete(id));
        if let (Some((_, reply)), Some(path)) = (savepoint, path) {
            let _ = reply.send(Ok(path));
        }
        let subsumed: Vec<u64> = self.pending.range(..id).map(|(k, _)| *k).collect();
        for old in subsumed {
            self.fail(old, "subsumed by a newer completed checkpoint", false);
        }
    }

    fn assemble(&self, mut p: PendingCheckpoint) -> CompletedCheckpoint {
        let operators = self
            .c
            .operators
            .iter()
            .zip(&self.c.chain_head)
            .map(|(op, &head)| {
                let subtasks = (0..op.parallelism)
                    .map(|s| {
                        let key = (op.vertex, s);
                        if p.finished.contains(&key) {
                            return SubtaskState { finished: true, ..Default::default() };
                        }
                        let state = p.acks.get_mut(&key).and_then(|ops| {
                            ops.iter_mut().find(|o| *o.operator_id == *op.id).and_then(|o| o.state.take())
                        });
                        let in_flight = if head { p.in_flight.remove(&key) } else { None };
                        SubtaskState { finished: false, state, in_flight }
                    })
                    .collect();
                OperatorState {
                    id: op.id.clone(),
                    uid: op.uid.clone(),
                    name: op.name.clone(),
                    parallelism: op.parallelism,
                    max_parallelism: op.max_parallelism,
                    coordinator: p.coordinator_states.remove(&op.id),
                    subtasks,
                }
            })
            .collect();
        CompletedCheckpoint {
            job_id: self.c.job_id.clone(),
            id: p.barrier.id,
            timestamp: p.barrier.timestamp,
            kind: p.barrier.kind,
            operators,
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.c.config.timeout;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.started.checked_add(timeout).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.fail(
                id,
                &format!("expired before completing (execution.checkpointing.timeout {timeout:?})"),
                true,
            );
        }
    }

    /// Gives checkpoint `id` up; `counted`: it is a failure towards the tolerable limit (never
    /// for a savepoint, whose requester hears of it instead).
    fn fail(&mut self, id: u64, reason: &str, counted: bool) {
        let Some(p) = self.pending.remove(&id) else { return };
        self.record_end(id, CheckpointStatus::Failed, Some(reason), None);
        for (_, handle) in &self.gateway.sources {
            handle.abort(id);
        }
        self.notify(TaskControl::CheckpointAborted(id));
        if let Some((_, reply)) = p.savepoint {
            self.savepoint_failed(id, reply, reason);
        } else if counted {
            self.count_failure(id, reason);
        } else {
            tracing::debug!(job_id = %self.c.job_id, checkpoint_id = id, reason, "checkpoint aborted");
        }
    }

    fn savepoint_failed(&mut self, id: u64, reply: Sender<Result<PathBuf>>, reason: &str) {
        {
            let mut stats = lock(&self.c.stats);
            stats.failed += 1;
            stats.latest_failure = Some(format!("savepoint {id}: {reason}"));
        }
        tracing::warn!(job_id = %self.c.job_id, checkpoint_id = id, reason, "savepoint failed");
        let _ = reply.send(Err(EddyError::user(format!("savepoint {id} failed: {reason}"))));
    }

    fn count_failure(&mut self, id: u64, reason: &str) {
        self.consecutive_failures += 1;
        {
            let mut stats = lock(&self.c.stats);
            stats.failed += 1;
            stats.latest_failure = Some(format!("checkpoint {id}: {reason}"));
        }
        tracing::warn!(job_id = %self.c.job_id, checkpoint_id = id, reason, "checkpoint failed");
        let tolerable = self.c.config.tolerable_failures;
        if self.consecutive_failures > tolerable && !self.stopped {
            self.stopped = true;
            (self.fail_job)(EddyError::user(format!(
                "Exceeded checkpoint tolerable failure threshold ({tolerable}, \
                 execution.checkpointing.tolerable-failed-checkpoints): checkpoint {id} {reason}"
            )));
        }
    }

    fn abort_all(&mut self, reason: &str) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.fail(id, reason, false);
        }
    }

    /// A new checkpoint enters the statistics, in progress.
    fn record_trigger(&self, barrier: &CheckpointBarrier) {
        let mut vertices = BTreeMap::new();
        for op in &self.c.operators {
            vertices.entry(op.vertex).or_insert((op.parallelism, Vec::new()));
        }
        // Finished tasks count as acknowledged from the start.
        let mut finished: Vec<&(usize, usize)> = self.finished.iter().collect();
        finished.sort();
        for &(vertex, subtask) in finished {
            if let Some((_, acks)) = vertices.get_mut(&vertex) {
                acks.push(SubtaskAck {
                    subtask,
                    ack_timestamp: barrier.timestamp,
                    state_size: 0,
                    finished: true,
                    sync_duration: 0,
                    async_duration: 0,
                });
            }
        }
        let acknowledged = vertices.values().map(|(_, acks)| acks.len()).sum();
        let record = CheckpointRecord {
            id: barrier.id,
            status: CheckpointStatus::InProgress,
            kind: barrier.kind,
            trigger_timestamp: barrier.timestamp,
            latest_ack_timestamp: None,
            end_timestamp: None,
            state_size: 0,
            num_subtasks: self.gateway.tasks.len(),
            num_acknowledged_subtasks: acknowledged,
            vertices,
            failure_message: None,
            external_path: None,
        };
        let mut stats = lock(&self.c.stats);
        stats.triggered += 1;
        stats.in_progress += 1;
        if stats.history.len() >= CHECKPOINT_HISTORY {
            stats.history.pop_front();
        }
        stats.history.push_back(record);
    }

    /// A subtask acknowledged checkpoint `id`, with `[sync, async]` durations in ms; `None`:
    /// it had finished.
    fn record_ack(
        &self,
        id: u64,
        vertex: usize,
        subtask: usize,
        state_size: u64,
        durations: Option<[u64; 2]>,
    ) {
        let now = now_ms();
        let mut stats = lock(&self.c.stats);
        let Some(r) = stats.history.iter_mut().rev().find(|r| r.id == id) else { return };
        let Some((_, acks)) = r.vertices.get_mut(&vertex) else { return };
        if acks.iter().any(|a| a.subtask == subtask) {
            return;
        }
        let finished = durations.is_none();
        let [sync_duration, async_duration] = durations.unwrap_or_default();
        acks.push(SubtaskAck {
            subtask,
            ack_timestamp: now,
            state_size,
            finished,
            sync_duration,
            async_duration,
        });
        r.num_acknowledged_subtasks += 1;
        r.state_size += state_size;
        r.latest_ack_timestamp = Some(now);
    }

    /// A checkpoint completed (`stored`: its size and directory) or failed (`failure`).
    fn record_end(
        &self,
        id: u64,
        status: CheckpointStatus,
        failure: Option<&str>,
        stored: Option<(u64, Option<String>)>,
    ) {
        let mut stats = lock(&self.c.stats);
        stats.in_progress = stats.in_progress.saturating_sub(1);
        let Some(r) = stats.history.iter_mut().rev().find(|r| r.id == id) else { return };
        r.status = status;
        r.end_timestamp = Some(now_ms());
        r.failure_message = failure.map(str::to_string);
        if let Some((size, path)) = stored {
            r.state_size = size;
            r.external_path = path;
        }
        let record = r.clone();
        if status == CheckpointStatus::Completed {
            stats.state_size.add(record.state_size);
            stats.end_to_end_duration.add(record.end_to_end_duration());
            stats.latest_completed_record = Some(record);
        } else {
            stats.latest_failed_record = Some(record);
        }
    }

    fn notify(&self, message: TaskControl) {
        for (_, tx) in &self.gateway.tasks {
            let _ = tx.send(message);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
