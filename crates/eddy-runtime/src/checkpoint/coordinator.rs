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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eddy_core::{CheckpointBarrier, CheckpointType, EddyError, Result};

use super::savepoint::write_savepoint;
use super::storage::{
    CheckpointStorage, CompletedCheckpointStore, FileSystemCheckpointStorage, JobManagerCheckpointStorage,
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
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub latest_completed: Option<u64>,
    /// The checkpoint the current attempt was restored from.
    pub restored: Option<u64>,
    /// Why the latest failed checkpoint failed.
    pub latest_failure: Option<String>,
    /// The retained checkpoints, oldest first.
    pub retained: Vec<u64>,
}

/// One operator of the job, as checkpoints describe it.
#[derive(Debug, Clone)]
struct OperatorInfo {
    id: String,
    uid: Option<String>,
    name: String,
    vertex: usize,
    /// The operator is its vertex's chain head (where in-flight records are stored).
    head: bool,
    parallelism: usize,
    max_parallelism: usize,
}

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
        let storage: Box<dyn CheckpointStorage> = match &config.directory {
            Some(dir) => Box::new(FileSystemCheckpointStorage::new(dir, job_id)),
            None => Box::new(JobManagerCheckpointStorage),
        };
        let operators = graph
            .nodes
            .iter()
            .map(|n| OperatorInfo {
                id: operator_id(graph, n.id),
                uid: n.uid.clone(),
                name: n.name.clone(),
                vertex: jg.node_vertex[n.id],
                head: jg.vertices[jg.node_vertex[n.id]].nodes[0] == n.id,
                parallelism: jg.node_parallelism[n.id],
                max_parallelism: jg.node_max_parallelism[n.id],
            })
            .collect();
        let source_vertex =
            jg.vertices.iter().map(|v| matches!(graph.nodes[v.nodes[0]].kind, NodeKind::Source(_))).collect();
        CheckpointCoordinator {
            job_id: job_id.to_string(),
            store: CompletedCheckpointStore::new(storage, config.num_retained),
            config,
            operators,
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
        lock(&self.stats).restored = restored.as_ref().map(|c| c.id);
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
        lock(&self.c.stats).triggered += 1;
        let barrier = CheckpointBarrier { id, timestamp: now_ms(), kind };
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
            p.acks.insert((vertex, subtask), snapshot.operators);
            if let Some(in_flight) = snapshot.in_flight {
                p.in_flight.insert((vertex, subtask), in_flight);
            }
        }
        if p.awaiting.is_empty() {
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
                    Some(path)
                })
            }
            None => {
                let describe = self.c.store.describe();
                self.c
                    .store
                    .add(checkpoint)
                    .map(|_| None)
                    .map_err(|e| EddyError::user(format!("cannot store it in {describe}: {e}")))
            }
        };
        let path = match stored {
            Ok(path) => path,
            Err(e) => {
                for (_, handle) in &self.gateway.sources {
                    handle.abort(id);
                }
                self.notify(TaskControl::CheckpointAborted(id));
                match savepoint {
                    Some((_, reply)) => self.savepoint_failed(id, reply, &e.to_string()),
                    None => self.count_failure(id, &e.to_string()),
                }
                return;
            }
        };
        self.consecutive_failures = 0;
        self.last_completion = Some(Instant::now());
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
            .map(|op| {
                let subtasks = (0..op.parallelism)
                    .map(|s| {
                        let key = (op.vertex, s);
                        if p.finished.contains(&key) {
                            return SubtaskState { finished: true, ..Default::default() };
                        }
                        let state = p.acks.get_mut(&key).and_then(|ops| {
                            ops.iter_mut().find(|o| *o.operator_id == *op.id).and_then(|o| o.state.take())
                        });
                        let in_flight = if op.head { p.in_flight.remove(&key) } else { None };
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
