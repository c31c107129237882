//! The local mini-cluster: runs a job's subtasks as threads of this process.
//!
//! [`LocalExecutor::submit`] turns the StreamGraph into a JobGraph, creates one bounded channel
//! per producer/consumer pair of every exchange, builds each subtask's chain from its tail to
//! its head, and starts one thread per subtask. The returned [`JobClient`] waits for the job,
//! reports its status and cancels it.
//!
//! With `execution.network-exchange` (an Eddy key, for testing) each attempt opens one
//! loopback TCP [`DataConnection`] pair and every channel becomes a remote channel over it,
//! the data plane a cluster uses between TaskManagers; the connections close when the
//! attempt's tasks have ended.
//!
//! The first task to fail records the root cause and cancels the attempt; every other task
//! sees the cancellation at its next batch or wait and stops.
//!
//! The building and running of tasks is shared with [`crate::distributed`], where one job
//! attempt is split over several worker processes: one `Builder` builds the subtasks that run
//! in a process (all of them for the mini-cluster), and `run_task_threads` runs them.
//!
//! # Failures and restarts
//!
//! A job master thread runs the job's attempts. When an attempt fails (a task returned an
//! error or panicked; a user's cancel is not a failure), the job's
//! [`RestartStrategy`] decides. If it allows a restart the job
//! is `RESTARTING` for the backoff, then the whole job is built again from the kept
//! StreamGraph, with [`OperatorContext::attempt`] one higher. When the strategy gives up, the
//! job is `FAILED` with the last root cause, annotated with the number of restarts and the
//! strategy. A cancel, during an attempt or during the backoff, ends the job `CANCELED`.
//!
//! # Checkpoints
//!
//! With `execution.checkpointing.interval` set (and in STREAMING mode), the job master runs a
//! [`CheckpointCoordinator`] next to every attempt (see [`crate::checkpoint`]). A restarted
//! attempt is built from the latest completed checkpoint: operators get their state back,
//! sources resume from their recorded positions, so each record changes the state once
//! (EXACTLY_ONCE). Without checkpoints a restart runs from scratch: bounded sources read their
//! input again from the beginning, operator state starts empty, and sinks with side effects
//! see the failed attempt's output twice. A checkpoint that cannot be read back (and no older
//! retained one can) fails the job for good rather than restoring wrong state.
//!
//! # Savepoints
//!
//! Every STREAMING job has a coordinator, also without periodic checkpoints, so that
//! [`JobClient::trigger_savepoint`] and [`JobClient::stop_with_savepoint`] can take savepoints
//! of the running attempt (see [`crate::checkpoint::savepoint`]). With
//! `execution.savepoint.path` the first attempt starts from that savepoint (or retained
//! checkpoint), at whatever parallelism the job has now; restarts before the job's first own
//! checkpoint start from it again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_core::config::{CheckpointRetention, RuntimeMode};
use eddy_core::{CheckpointType, EddyError, Result};

use crate::channel::JobSignals;
use crate::checkpoint::coordinator::{AttemptGateway, RunningCoordinator};
use crate::checkpoint::savepoint::{check_unclaimed_state, read_savepoint};
use crate::checkpoint::{
    control_channel, CheckpointConfig, CheckpointCoordinator, CheckpointStats, CompletedCheckpoint,
    OperatorInit, SavepointTrigger, TaskCheckpointing,
};
use crate::distributed::{Placement, WorkerMesh};
use crate::graph::{AnyBox, NodeId, NodeKind, SideSlot, StreamGraph, StreamType, TwoInputParts};
use crate::jobgraph::{operator_id, GraphSettings, JobGraph};
use crate::net::{ChannelId, DataConnection, NetOptions};
use crate::operator::{panic_message, OperatorContext};
use crate::partitioner::{pointwise_targets, WriterContext};
use crate::restart::{RestartBackoffTimeStrategy, RestartStrategy};
use crate::source::{SourceCoordinatorHandle, SplitDistribution};
use crate::task::{Invokable, TaskMetrics, TaskRuntime, TaskState, VertexMetrics, WorkerTask};

/// Flink's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// A failed attempt has ended; the job waits its backoff before it runs again.
    Restarting,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished)
    }

    /// Flink's upper-case name (`RUNNING`, `CANCELED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Failing => "FAILING",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
        }
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobExecutionResult {
    pub job_id: String,
    pub job_name: String,
    pub net_runtime: Duration,
}

/// How to run a job.
#[derive(Debug, Clone)]
pub struct ExecutionSettings {
    pub job_name: String,
    pub default_parallelism: usize,
    pub max_parallelism: Option<usize>,
    /// STREAMING, BATCH, or AUTOMATIC (resolved here from the sources).
    pub runtime_mode: RuntimeMode,
    pub buffer_timeout: Duration,
    pub batch_size: usize,
    pub channel_capacity: usize,
    /// Batches in flight per channel that crosses processes (credit-based flow control).
    pub remote_channel_capacity: usize,
    /// Slots of the mini-cluster; `None`: as many as the job needs.
    pub task_slots: Option<usize>,
    /// `pipeline.auto-watermark-interval`.
    pub auto_watermark_interval: Duration,
    /// Processing time.
    pub clock: crate::time::ClockRef,
    /// What happens after a failure (`restart-strategy.type`).
    pub restart_strategy: RestartStrategy,
    /// `execution.network-exchange`: every non-chained exchange crosses a loopback TCP data
    /// connection (see [`crate::net`]) instead of an in-process channel.
    pub network_exchange: bool,
    /// `execution.checkpointing.*` and `state.checkpoints.*`.
    pub checkpointing: CheckpointConfig,
    /// `state.backend.*`; the runtime adds the job's checkpoint directory and id.
    pub state_backend: Arc<eddy_core::config::StateBackendConfig>,
}

impl ExecutionSettings {
    /// The mode to run in: AUTOMATIC becomes BATCH when every source is bounded.
    pub fn resolved_mode(&self, graph: &StreamGraph) -> RuntimeMode {
        match self.runtime_mode {
            RuntimeMode::Automatic if graph.all_sources_bounded() => RuntimeMode::Batch,
            RuntimeMode::Automatic => RuntimeMode::Streaming,
            m => m,
        }
    }

    pub fn graph_settings(&self, graph: &StreamGraph) -> GraphSettings {
        GraphSettings {
            job_name: self.job_name.clone(),
            default_parallelism: self.default_parallelism,
            max_parallelism: self.max_parallelism,
            runtime_mode: self.resolved_mode(graph),
        }
    }
}

/// A fresh 32-hex-digit job id.
pub fn new_job_id() -> String {
    format!("{:016x}{:016x}", eddy_core::random::random_seed(), eddy_core::random::random_seed())
}

/// What the job master and the tasks of the current attempt share, under one lock.
struct JobInner {
    status: JobStatus,
    /// The root cause of the current attempt's failure; at the end, of the job's.
    failure: Option<EddyError>,
    /// When the current attempt first failed.
    failed_at: Option<Instant>,
    /// The current attempt's cancellation signal.
    signals: Arc<JobSignals>,
    /// `cancel` was called (also while a failure was already winding the attempt down).
    cancel_requested: bool,
    /// The metrics of the current attempt's tasks: (vertex, subtask, metrics).
    metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    restarts: usize,
    finished_at: Option<Instant>,
    /// Takes savepoints of the current attempt while it runs (STREAMING jobs).
    savepoints: Option<SavepointTrigger>,
}

struct JobState {
    inner: Mutex<JobInner>,
    /// Signalled on every status change: wakes `wait` and a job master in its backoff.
    changed: Condvar,
    /// The job's checkpoint directory (`<state.checkpoints.dir>/<job-id>`) and what becomes of
    /// it when the job ends.
    checkpoints_dir: Option<(PathBuf, CheckpointRetention)>,
}

impl JobState {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, inner: &mut JobInner, status: JobStatus) {
        inner.status = status;
        if status.is_terminal() {
            inner.finished_at = Some(Instant::now());
            self.discard_checkpoints(status);
        }
        self.changed.notify_all();
    }

    /// Deletes the job's checkpoints when it ends, unless its retention keeps them; done before
    /// anyone hears of the end, so that nobody sees a deleted checkpoint as restorable.
    fn discard_checkpoints(&self, status: JobStatus) {
        let Some((dir, retention)) = &self.checkpoints_dir else { return };
        if retention.keeps(status == JobStatus::Failed) || !dir.exists() {
            return;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => tracing::info!(dir = %dir.display(), retention = retention.as_str(), status = ?status,
                "deleted the job's checkpoints"),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot delete the job's checkpoints"),
        }
    }

    /// Records a task's failure and cancels the other tasks of the attempt.
    fn fail(&self, error: EddyError) {
        let mut inner = self.lock();
        if is_new_root_cause(&inner.failure, &error)
            && matches!(inner.status, JobStatus::Running | JobStatus::Failing)
        {
            tracing::error!(error = %error, "job failing");
            inner.failure = Some(error);
            inner.failed_at.get_or_insert_with(Instant::now);
            self.set_status(&mut inner, JobStatus::Failing);
        }
        let signals = inner.signals.clone();
        drop(inner);
        signals.cancel();
    }
}

/// Whether `error` becomes the root cause of an attempt that has so far failed with `current`.
///
/// The first error wins, except that a real error replaces a cancellation: a failing task drops
/// its channels before its error is recorded, so a neighbour may report the closed channel (a
/// cancellation) first.
pub(crate) fn is_new_root_cause(current: &Option<EddyError>, error: &EddyError) -> bool {
    match current {
        None => true,
        Some(EddyError::Cancelled(_)) => !matches!(error, EddyError::Cancelled(_)),
        Some(_) => false,
    }
}

/// The metrics of one subtask, as [`JobClient::task_metrics`] returns them.
#[derive(Debug, Clone)]
pub struct SubtaskMetrics {
    pub vertex: usize,
    pub vertex_name: String,
    /// 0-based.
    pub subtask: usize,
    /// Metric name → value.
    pub values: std::collections::BTreeMap<String, f64>,
}

/// A handle on a running job: wait, query status, cancel. Dropping it leaves the job running,
/// as Flink's `JobClient` does.
pub struct JobClient {
    job_id: String,
    job_name: String,
    /// One zeroed entry per job vertex.
    vertices: Vec<VertexMetrics>,
    state: Arc<JobState>,
    master: Mutex<Option<std::thread::JoinHandle<()>>>,
    started: Instant,
    checkpoints: Arc<Mutex<CheckpointStats>>,
}

impl JobClient {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// What the job's checkpoints have done so far (all zero without checkpointing).
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The job's status; `RESTARTING` between a failed attempt and the next one.
    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// How often the job has been restarted after a failure so far.
    pub fn restarts(&self) -> usize {
        self.state.lock().restarts
    }

    /// The I/O counters of every job vertex, summed over its subtasks, in the current attempt
    /// (after the job ended: its last attempt). See [`TaskMetrics`] for what is counted.
    pub fn vertex_metrics(&self) -> Vec<VertexMetrics> {
        let tasks = self.state.lock().metrics.clone();
        let mut vertices = self.vertices.clone();
        for (vertex, _, metrics) in tasks {
            vertices[vertex].add(metrics.snapshot());
        }
        vertices
    }

    /// Every metric of every subtask of the current attempt (after the job ended: of its last
    /// attempt), by vertex and subtask, with Flink's names (see [`TaskMetrics::values`]):
    /// `numRecordsInPerSecond`, `busyTimeMsPerSecond`, `currentInputWatermark`,
    /// `<operator>.numLateRecordsDropped`, the metrics functions registered, ...
    pub fn task_metrics(&self) -> Vec<SubtaskMetrics> {
        let mut tasks = self.state.lock().metrics.clone();
        tasks.sort_by_key(|(v, s, _)| (*v, *s));
        tasks
            .into_iter()
            .map(|(vertex, subtask, m)| SubtaskMetrics {
                vertex,
                vertex_name: self.vertices[vertex].name.clone(),
                subtask,
                values: m.values().into_iter().collect(),
            })
            .collect()
    }

    /// Cancels the job, also while it waits to restart; returns at once. `wait` reports the
    /// cancellation.
    pub fn cancel(&self) {
        let mut inner = self.state.lock();
        inner.cancel_requested = true;
        if matches!(inner.status, JobStatus::Running | JobStatus::Restarting) {
            tracing::info!(job_id = %self.job_id, "cancelling job");
            self.state.set_status(&mut inner, JobStatus::Cancelling);
        }
        let signals = inner.signals.clone();
        drop(inner);
        signals.cancel();
    }

    /// Takes a savepoint of the running job into a new folder under `dir` (or
    /// `state.savepoints.dir`) and returns the folder once the savepoint is complete. The job
    /// goes on running. A job started with `execution.savepoint.path` set to that folder
    /// resumes from it, at any parallelism.
    pub fn trigger_savepoint(&self, dir: Option<&Path>) -> Result<PathBuf> {
        self.savepoint(CheckpointType::Savepoint, dir)?.wait()
    }

    /// Stops the job with a savepoint (Flink's `stop`) and returns the savepoint's folder once
    /// the job has ended.
    ///
    /// The sources stop. Without `drain` the job is suspended: the savepoint is taken, the
    /// sinks commit it, and every task stops without ending its input (no final watermark,
    /// so event-time windows and timers still pending stay in the savepoint, to fire in the
    /// job that resumes from it). With `drain` the sources first end their input with the
    /// maximum watermark, so every event-time timer and window fires and every operator
    /// finishes; the savepoint then records a finished job. Either way the job ends
    /// `FINISHED`. If the savepoint fails, the job keeps running and the error says why.
    pub fn stop_with_savepoint(&self, dir: Option<&Path>, drain: bool) -> Result<PathBuf> {
        let kind = if drain { CheckpointType::SavepointTerminate } else { CheckpointType::SavepointSuspend };
        let path = self.savepoint(kind, dir)?.wait()?;
        match self.wait() {
            Ok(_) => Ok(path),
            Err(e) => Err(EddyError::user(format!(
                "a savepoint was written to {}, but the job did not finish after it: {e}",
                path.display()
            ))),
        }
    }

    /// Starts a savepoint of `kind` on the running attempt; the engine-level entry point
    /// behind [`trigger_savepoint`](Self::trigger_savepoint) and
    /// [`stop_with_savepoint`](Self::stop_with_savepoint).
    pub fn savepoint(
        &self,
        kind: CheckpointType,
        dir: Option<&Path>,
    ) -> Result<crate::checkpoint::PendingSavepoint> {
        let inner = self.state.lock();
        let trigger = match (&inner.savepoints, inner.status) {
            (Some(t), JobStatus::Running) => t.clone(),
            (_, status) => {
                let why = match inner.savepoints {
                    None if status == JobStatus::Running => "savepoints are taken in STREAMING mode only",
                    _ => "the job is not running",
                };
                return Err(EddyError::user(format!(
                    "cannot take a savepoint of job {} ({}): {why}",
                    self.job_id,
                    status.as_str()
                )));
            }
        };
        drop(inner);
        trigger.trigger(kind, dir.map(Path::to_path_buf))
    }

    /// Waits until the job ends, at most `timeout`; returns the status then.
    pub fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let deadline = Instant::now() + timeout;
        let mut inner = self.state.lock();
        while !inner.status.is_terminal() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner =
                self.state.changed.wait_timeout(inner, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        inner.status
    }

    /// Waits until the job ends (after any restarts) and returns its result, or the error
    /// that ended it.
    pub fn wait(&self) -> Result<JobExecutionResult> {
        let mut inner = self.state.lock();
        while !inner.status.is_terminal() {
            inner = self.state.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        drop(inner);
        if let Some(master) = self.master.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = master.join();
        }
        let mut inner = self.state.lock();
        let end = inner.finished_at.unwrap_or_else(Instant::now);
        match inner.status {
            JobStatus::Finished => Ok(JobExecutionResult {
                job_id: self.job_id.clone(),
                job_name: self.job_name.clone(),
                net_runtime: end - self.started,
            }),
            JobStatus::Canceled => Err(EddyError::Cancelled(self.job_id.clone())),
            _ => Err(inner
                .failure
                .take()
                .unwrap_or_else(|| EddyError::user("job failed without a recorded cause"))),
        }
    }
}

/// Runs jobs inside this process.
pub struct LocalExecutor;

type Senders = HashMap<(usize, usize), Vec<AnyBox>>; // (stream edge, producer subtask) → channels

impl LocalExecutor {
    /// The graph to run in the resolved mode, and its job graph; runs nothing.
    pub fn prepare(graph: &StreamGraph, settings: &ExecutionSettings) -> Result<(StreamGraph, JobGraph)> {
        let gs = settings.graph_settings(graph);
        let graph = match gs.runtime_mode {
            RuntimeMode::Batch => graph.clone(),
            _ => graph.without_batch_only_nodes(),
        };
        let jg = JobGraph::build(&graph, &gs)?;
        Ok((graph, jg))
    }

    /// Starts the job and returns at once.
    ///
    /// The first attempt's tasks are built here, so a job that cannot be built is an error
    /// of this call. The job master thread then runs the attempts: it keeps the graph to
    /// build every attempt after a failure anew, as its restart strategy allows.
    pub fn submit(graph: StreamGraph, settings: ExecutionSettings) -> Result<JobClient> {
        let (graph, jg) = Self::prepare(&graph, &settings)?;
        let needed = jg.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0);
        if let Some(slots) = settings.task_slots {
            if needed > slots {
                return Err(EddyError::InvalidJob(format!(
                    "not enough task slots: the job needs {needed}, the local mini-cluster has {slots} \
                     (taskmanager.numberOfTaskSlots)"
                )));
            }
        }
        if graph.nodes.is_empty() {
            return Err(EddyError::InvalidJob("the job has no operators; add a source and a sink".into()));
        }
        let job_id = new_job_id();
        let mut settings = settings;
        if let Some(dir) = &settings.checkpointing.directory {
            Arc::make_mut(&mut settings.state_backend).checkpoints = Some((dir.clone(), job_id.clone()));
        }
        let mut coordinator = match (settings.checkpointing.is_enabled(), jg.runtime_mode) {
            (true, RuntimeMode::Batch) => {
                tracing::info!(job_id = %job_id, "checkpointing is not used in BATCH mode");
                None
            }
            (_, RuntimeMode::Batch) => None,
            // Without periodic checkpoints the coordinator is there for savepoints.
            _ => Some(CheckpointCoordinator::new(&job_id, settings.checkpointing.clone(), &graph, &jg)),
        };
        let restore = match &mut coordinator {
            Some(c) => restore_savepoint(&graph, &settings, c)?,
            None if settings.checkpointing.restore.is_some() => {
                return Err(EddyError::InvalidJob(
                    "execution.savepoint.path is set, but the job runs in BATCH mode, which does not \
                     restore savepoints; run it in STREAMING mode"
                        .into(),
                ))
            }
            None => None,
        };
        let checkpoints = coordinator.as_ref().map(|c| c.stats()).unwrap_or_default();
        let checkpoints_dir = match (&coordinator, &settings.checkpointing.directory) {
            (Some(_), Some(dir)) => Some((dir.join(&job_id), settings.checkpointing.retention)),
            _ => None,
        };
        let master = JobMaster {
            job_id: job_id.clone(),
            coordinator,
            backoff: settings.restart_strategy.backoff_time_strategy(),
            graph,
            jg,
            settings,
            state: Arc::new(JobState {
                inner: Mutex::new(JobInner {
                    status: JobStatus::Running,
                    failure: None,
                    failed_at: None,
                    signals: Arc::new(JobSignals::default()),
                    cancel_requested: false,
                    metrics: Vec::new(),
                    restarts: 0,
                    finished_at: None,
                    savepoints: None,
                }),
                changed: Condvar::new(),
                checkpoints_dir,
            }),
        };
        let first = master.build_attempt(0, restore)?;
        let state = master.state.clone();
        let job_name = master.settings.job_name.clone();
        let vertices = VertexMetrics::zeroed(&master.jg);
        tracing::info!(job_id = %job_id, job = %job_name, tasks = first.tasks.len(), mode = %master.jg.runtime_mode,
            restart_strategy = %master.settings.restart_strategy, "starting job");
        let started = Instant::now();
        let handle = std::thread::Builder::new()
            .name(format!("JobMaster {job_id}"))
            .spawn(move || master.run(first))
            .map_err(|e| EddyError::user(format!("cannot start the job master thread: {e}")))?;
        Ok(JobClient {
            job_id,
            job_name,
            vertices,
            state,
            master: Mutex::new(Some(handle)),
            started,
            checkpoints,
        })
    }
}

/// One attempt's tasks, the signal that cancels them, the data connections their remote
/// channels use (with `execution.network-exchange`), closed when the attempt ends or is dropped,
/// and what the checkpoint coordinator needs to reach its tasks.
struct Attempt {
    tasks: Vec<WorkerTask>,
    signals: Arc<JobSignals>,
    network: Option<LoopbackNetwork>,
    sources: Vec<(String, Arc<dyn SourceCoordinatorHandle>)>,
}

/// Both ends of the loopback data connection of one attempt: every remote channel is
/// produced on `producer` and consumed on `consumer`.
pub(crate) struct LoopbackNetwork {
    producer: DataConnection,
    consumer: DataConnection,
}

impl LoopbackNetwork {
    fn open() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| EddyError::Network {
            action: "bind",
            address: "127.0.0.1:0".into(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| EddyError::Network {
            action: "read the address of",
            address: "the data-plane listener".into(),
            source,
        })?;
        // Both ends handshake at once: the accepting end needs a thread of its own.
        let accepting = std::thread::Builder::new()
            .name("net-accept".into())
            .spawn(move || DataConnection::accept(&listener, NetOptions::default()))
            .map_err(|e| EddyError::user(format!("cannot start the data-plane accept thread: {e}")))?;
        let producer = DataConnection::connect(address, NetOptions::default());
        if producer.is_err() {
            // Wakes the accepting thread, which then fails its handshake.
            let _ = std::net::TcpStream::connect(address);
        }
        let consumer = accepting.join().map_err(|p| {
            EddyError::user(format!("the data-plane accept thread panicked: {}", panic_message(&p)))
        })?;
        // Both results are looked at only now, so that neither end is left half open.
        Ok(LoopbackNetwork { producer: producer?, consumer: consumer? })
    }

    /// Sends what is queued and closes both ends, after the attempt's tasks have ended.
    fn close(self) {
        self.producer.close();
        self.consumer.close();
    }
}

/// A stable 64-bit hash of a job id: `ChannelId::job`.
pub(crate) fn job_hash(job_id: &str) -> u64 {
    let mut h = eddy_core::keygroup::StableHasher::new();
    std::hash::Hasher::write(&mut h, job_id.as_bytes());
    std::hash::Hasher::finish(&h)
}

/// Runs a job's attempts: starts the tasks, waits for them, and after a failure asks the
/// restart strategy whether and when to run the whole job again, from the latest completed
/// checkpoint when there is one.
struct JobMaster {
    job_id: String,
    graph: StreamGraph,
    jg: JobGraph,
    settings: ExecutionSettings,
    state: Arc<JobState>,
    backoff: Box<dyn RestartBackoffTimeStrategy>,
    /// `None` without checkpointing.
    coordinator: Option<CheckpointCoordinator>,
}

impl JobMaster {
    fn build_attempt(&self, attempt: usize, restore: Option<Arc<CompletedCheckpoint>>) -> Result<Attempt> {
        let signals = Arc::new(JobSignals::default());
        let network = if self.settings.network_exchange { Some(LoopbackNetwork::open()?) } else { None };
        let exchanges = match &network {
            Some(net) => Exchanges::Loopback(net),
            None => Exchanges::Local,
        };
        let job = job_hash(&self.job_id);
        let builder =
            Builder::new(&self.graph, &self.jg, &self.settings, &signals, attempt, job, exchanges, restore)?;
        let sources = builder.source_coordinators();
        let tasks = builder.build_tasks()?;
        Ok(Attempt { tasks, signals, network, sources })
    }

    /// The checkpoint the next attempt starts from; an error when retained checkpoints exist
    /// but none can be read.
    fn checkpoint_to_restore(&mut self) -> Result<Option<Arc<CompletedCheckpoint>>> {
        match &mut self.coordinator {
            Some(c) => c.checkpoint_to_restore(),
            None => Ok(None),
        }
    }

    fn run(mut self, first: Attempt) {
        let mut next = Ok(first);
        loop {
            match next {
                Ok(attempt) => {
                    let metrics =
                        attempt.tasks.iter().map(|t| (t.vertex, t.subtask, t.metrics.clone())).collect();
                    if !self.begin_attempt(&attempt.signals, metrics) {
                        return;
                    }
                    self.run_attempt(attempt);
                }
                Err(e) => {
                    if !self.begin_attempt(&Arc::new(JobSignals::default()), Vec::new()) {
                        return;
                    }
                    self.state.fail(e);
                }
            }
            if !self.end_attempt() {
                return;
            }
            let restarts = self.state.lock().restarts;
            tracing::info!(job_id = %self.job_id, attempt = restarts, "restarting job");
            let restore = match self.checkpoint_to_restore() {
                Ok(restore) => restore,
                Err(e) => return self.fail_for_good(e),
            };
            next = self.build_attempt(restarts, restore);
        }
    }

    /// Ends the job `FAILED` with `error`, without asking the restart strategy.
    fn fail_for_good(&self, error: EddyError) {
        tracing::error!(job_id = %self.job_id, error = %error, "job failed for good");
        let mut inner = self.state.lock();
        inner.failure = Some(error);
        let status = if inner.cancel_requested { JobStatus::Canceled } else { JobStatus::Failed };
        self.state.set_status(&mut inner, status);
    }

    /// Installs the attempt's signals and counters and marks the job running, unless it was
    /// cancelled in the meantime.
    fn begin_attempt(
        &self,
        signals: &Arc<JobSignals>,
        metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    ) -> bool {
        let mut inner = self.state.lock();
        if inner.cancel_requested {
            self.state.set_status(&mut inner, JobStatus::Canceled);
            return false;
        }
        inner.signals = signals.clone();
        inner.metrics = metrics;
        inner.failure = None;
        inner.failed_at = None;
        if inner.status != JobStatus::Running {
            self.state.set_status(&mut inner, JobStatus::Running);
        }
        true
    }

    /// Starts the checkpoint coordinator for the attempt and gives every task its end of the
    /// protocol.
    fn start_checkpointing(
        &mut self,
        tasks: &mut [WorkerTask],
        sources: Vec<(String, Arc<dyn SourceCoordinatorHandle>)>,
    ) -> Option<RunningCoordinator> {
        let coordinator = self.coordinator.take()?;
        let (mode, unaligned) = (coordinator.config().mode, coordinator.config().unaligned);
        let mut inboxes = Vec::with_capacity(tasks.len());
        let mut receivers = Vec::with_capacity(tasks.len());
        for t in tasks.iter() {
            let (tx, rx) = control_channel();
            inboxes.push(((t.vertex, t.subtask), tx));
            receivers.push(rx);
        }
        let state = self.state.clone();
        let gateway = AttemptGateway { tasks: inboxes, sources };
        let running = match coordinator.start_attempt(gateway, Box::new(move |e| state.fail(e))) {
            Ok(running) => running,
            Err(e) => {
                self.state.fail(e);
                return None;
            }
        };
        let responder = running.responder();
        for (t, rx) in tasks.iter_mut().zip(receivers) {
            t.checkpoints = TaskCheckpointing::new(mode, t.vertex, t.subtask, rx, responder.clone())
                .with_unaligned(unaligned);
        }
        Some(running)
    }

    /// Starts one thread per task and waits for all of them, then closes the attempt's data
    /// connections and stops its checkpoint coordinator.
    fn run_attempt(&mut self, Attempt { mut tasks, signals, network, sources }: Attempt) {
        let coordinator = self.start_checkpointing(&mut tasks, sources);
        self.state.lock().savepoints = coordinator.as_ref().map(|c| c.savepoint_trigger());
        let state = self.state.clone();
        let events = coordinator.as_ref().map(|c| c.task_events());
        let report = move |vertex: usize, subtask: usize, task_state: TaskState, error: Option<EddyError>| {
            if let Some(c) = &events {
                match task_state {
                    TaskState::Running => {}
                    TaskState::Finished => c.task_ended(vertex, subtask, true),
                    TaskState::Failed | TaskState::Canceled => c.task_ended(vertex, subtask, false),
                }
            }
            if let Some(e) = error {
                state.fail(e);
            }
        };
        run_task_threads(tasks, &signals, &self.settings, self.jg.runtime_mode, Arc::new(report));
        self.state.lock().savepoints = None;
        // Every task has ended, so every channel has delivered its end of input or been
        // closed: closing now cannot fail a task.
        if let Some(network) = network {
            network.close();
        }
        if let Some(running) = coordinator {
            match running.stop() {
                Ok(c) => self.coordinator = Some(c),
                Err(e) => self.state.fail(e),
            }
        }
    }

    /// Settles the status after all tasks of an attempt ended. Returns whether to restart,
    /// after the backoff has passed.
    fn end_attempt(&mut self) -> bool {
        let mut inner = self.state.lock();
        match inner.status {
            JobStatus::Running => {
                self.state.set_status(&mut inner, JobStatus::Finished);
                return false;
            }
            JobStatus::Cancelling => {
                self.state.set_status(&mut inner, JobStatus::Canceled);
                return false;
            }
            _ => {}
        }
        let checkpointing =
            self.settings.checkpointing.is_enabled() && self.jg.runtime_mode != RuntimeMode::Batch;
        if checkpointing && self.coordinator.is_none() {
            // The coordinator was lost (it panicked): a restart could not restore.
            tracing::error!(job_id = %self.job_id, "job failed: its checkpoint coordinator is gone");
            self.state.set_status(&mut inner, JobStatus::Failed);
            return false;
        }
        self.backoff.notify_failure(inner.failed_at.unwrap_or_else(Instant::now));
        if !self.backoff.can_restart() {
            let strategy = &self.settings.restart_strategy;
            if !matches!(strategy, RestartStrategy::None) {
                let cause = inner.failure.take().unwrap_or_else(|| EddyError::user("job failed"));
                inner.failure = Some(annotate(cause, inner.restarts, strategy));
            }
            tracing::error!(job_id = %self.job_id, restarts = inner.restarts, "job failed");
            self.state.set_status(&mut inner, JobStatus::Failed);
            return false;
        }
        if inner.cancel_requested {
            self.state.set_status(&mut inner, JobStatus::Canceled);
            return false;
        }
        let backoff = self.backoff.backoff();
        tracing::warn!(job_id = %self.job_id, error = ?inner.failure, backoff = ?backoff,
            "job failed; restarting after the backoff");
        self.state.set_status(&mut inner, JobStatus::Restarting);
        let deadline = Instant::now() + backoff;
        while inner.status == JobStatus::Restarting {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner =
                self.state.changed.wait_timeout(inner, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        if inner.status != JobStatus::Restarting {
            self.state.set_status(&mut inner, JobStatus::Canceled);
            return false;
        }
        inner.restarts += 1;
        true
    }
}

/// The savepoint or retained checkpoint `execution.savepoint.path` names, checked against the
/// job (state of an operator the job does not have is an error unless ignored) and handed to
/// the coordinator as where the job starts from; `None` when the key is unset.
fn restore_savepoint(
    graph: &StreamGraph,
    settings: &ExecutionSettings,
    coordinator: &mut CheckpointCoordinator,
) -> Result<Option<Arc<CompletedCheckpoint>>> {
    let Some(restore) = &settings.checkpointing.restore else { return Ok(None) };
    let savepoint = read_savepoint(&restore.path)?;
    let ids: HashSet<String> = graph.nodes.iter().map(|n| operator_id(graph, n.id)).collect();
    check_unclaimed_state(&savepoint, &ids, &restore.path, restore.ignore_unclaimed_state)?;
    tracing::info!(savepoint = %restore.path.display(), checkpoint_id = savepoint.id,
        kind = savepoint.kind.as_str(), "starting the job from a savepoint");
    let savepoint = Arc::new(savepoint);
    coordinator.restore_from(savepoint.clone());
    Ok(Some(savepoint))
}

/// The root cause, with how many restarts came before it and under which strategy.
fn annotate(cause: EddyError, restarts: usize, strategy: &RestartStrategy) -> EddyError {
    let note = format!(
        " (after {restarts} restart{}; restart-strategy {strategy})",
        if restarts == 1 { "" } else { "s" }
    );
    match cause {
        EddyError::Task { operator, subtask, parallelism, message } => {
            EddyError::Task { operator, subtask, parallelism, message: message + &note }
        }
        EddyError::User(message) => EddyError::User(message + &note),
        other => EddyError::User(format!("{other}{note}")),
    }
}

/// Hears of a task's state changes: (vertex, subtask, state, error). A task that did not
/// finish brings its error: the one that failed it, or the cancellation that stopped it.
pub(crate) type TaskReport = Arc<dyn Fn(usize, usize, TaskState, Option<EddyError>) + Send + Sync>;

/// Runs every task on a thread of its own and returns when all have ended.
///
/// `report` hears `RUNNING` when a task's thread starts and then how it ended; it must cancel
/// `signals` on an error, so that the other tasks stop too.
pub(crate) fn run_task_threads(
    tasks: Vec<WorkerTask>,
    signals: &Arc<JobSignals>,
    settings: &ExecutionSettings,
    mode: RuntimeMode,
    report: TaskReport,
) {
    let buffer_timeout = match mode {
        RuntimeMode::Batch => None,
        _ => Some(settings.buffer_timeout),
    };
    let mut threads = Vec::with_capacity(tasks.len());
    for WorkerTask { vertex, subtask, task, metrics, checkpoints } in tasks {
        let rt = TaskRuntime {
            signals: signals.clone(),
            metrics,
            buffer_timeout,
            clock: settings.clock.clone(),
            checkpoints,
        };
        let name = task.name();
        let thread_name: String = name.chars().take(60).collect();
        let on_thread = report.clone();
        let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
            on_thread(vertex, subtask, TaskState::Running, None);
            // A finished task waits for its snapshots' asynchronous parts: the coordinator
            // counts a finished task as acknowledged, so its acknowledgements must come first.
            let run = || task.invoke(&rt).and_then(|()| rt.checkpoints.finish(&rt.signals));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            let (state, error) = task_outcome(result, name, subtask);
            on_thread(vertex, subtask, state, error);
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                let error = EddyError::user(format!("cannot start a task thread: {e}"));
                report(vertex, subtask, TaskState::Failed, Some(error));
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// How a task ended, from what its `invoke` returned.
fn task_outcome(
    result: std::thread::Result<Result<()>>,
    name: String,
    subtask: usize,
) -> (TaskState, Option<EddyError>) {
    match result {
        Ok(Ok(())) => (TaskState::Finished, None),
        // Cancelled with the job, or stopped because a neighbour went away (which reports the
        // root cause itself).
        Ok(Err(e @ EddyError::Cancelled(_))) => (TaskState::Canceled, Some(e)),
        Ok(Err(e)) => (TaskState::Failed, Some(e)),
        Err(p) => {
            let message = format!("task thread panicked: {}", panic_message(&p));
            (
                TaskState::Failed,
                Some(EddyError::Task { operator: name, subtask: subtask + 1, parallelism: 0, message }),
            )
        }
    }
}

/// How the channels of an exchange are made, and which subtasks run in this process.
pub(crate) enum Exchanges<'a> {
    /// Every subtask runs here; channels are in-process.
    Local,
    /// Every subtask runs here; every channel crosses the loopback connection pair
    /// (`execution.network-exchange`).
    Loopback(&'a LoopbackNetwork),
    /// Only the subtasks placed on this worker run here; channels between them are
    /// in-process, channels to other workers cross the mesh.
    Mesh { placement: &'a Placement, mesh: &'a WorkerMesh },
}

impl Exchanges<'_> {
    fn runs_here(&self, subtask: usize) -> bool {
        match self {
            Exchanges::Mesh { placement, mesh } => placement.worker_of(subtask) == mesh.me(),
            _ => true,
        }
    }
}

/// One channel to make: its id, and where its ends are.
struct ChannelPlan {
    id: ChannelId,
    producer_here: bool,
    consumer_here: bool,
}

/// Builds the subtasks of one attempt that run in this process: creates their channels,
/// builds each chain from its tail to its head, and wires the chains to the channels.
pub(crate) struct Builder<'a> {
    graph: &'a StreamGraph,
    jg: &'a JobGraph,
    settings: &'a ExecutionSettings,
    mode: RuntimeMode,
    /// 0 for the first run, then the number of restarts before this attempt.
    attempt: usize,
    exchanges: Exchanges<'a>,
    signals: Arc<JobSignals>,
    senders: Senders,
    /// (vertex, subtask, input) → receivers
    receivers: HashMap<(usize, usize, usize), Vec<AnyBox>>,
    coordinators: HashMap<NodeId, Arc<dyn SourceCoordinatorHandle>>,
    /// (vertex, subtask) → counters, for the subtasks that run here.
    metrics: HashMap<(usize, usize), Arc<TaskMetrics>>,
    /// The checkpoint the attempt starts from.
    restore: Option<Arc<CompletedCheckpoint>>,
}

impl<'a> Builder<'a> {
    /// Creates the channels and split enumerators of the subtasks that run here; `job` is
    /// `ChannelId::job`. With `restore`, every operator and source starts from that checkpoint.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        graph: &'a StreamGraph,
        jg: &'a JobGraph,
        settings: &'a ExecutionSettings,
        signals: &Arc<JobSignals>,
        attempt: usize,
        job: u64,
        exchanges: Exchanges<'a>,
        restore: Option<Arc<CompletedCheckpoint>>,
    ) -> Result<Self> {
        let mut b = Builder {
            graph,
            jg,
            settings,
            mode: jg.runtime_mode,
            attempt,
            exchanges,
            signals: signals.clone(),
            senders: HashMap::new(),
            receivers: HashMap::new(),
            coordinators: HashMap::new(),
            metrics: HashMap::new(),
            restore,
        };
        for v in &jg.vertices {
            for s in b.subtasks_here(v.parallelism) {
                let metrics = Arc::default();
                crate::metrics::register_views(&metrics);
                b.metrics.insert((v.index, s), metrics);
            }
        }
        b.create_channels(job)?;
        b.create_coordinators()?;
        Ok(b)
    }

    /// The subtasks of a vertex of parallelism `p` that run here.
    fn subtasks_here(&self, p: usize) -> Vec<usize> {
        (0..p).filter(|&s| self.exchanges.runs_here(s)).collect()
    }

    /// One channel per producer/consumer pair of every exchange with an end here.
    fn create_channels(&mut self, job: u64) -> Result<()> {
        let (graph, jg) = (self.graph, self.jg);
        for je in &jg.edges {
            let se = &graph.edges[je.stream_edge];
            let ty = graph.nodes[se.source].output_type_of(se.side_tag.as_deref())?;
            let pu = jg.vertices[je.source_vertex].parallelism;
            let pd = jg.vertices[je.target_vertex].parallelism;
            for i in 0..pu {
                let producer_here = self.exchanges.runs_here(i);
                let targets =
                    if je.kind.is_pointwise() { pointwise_targets(pu, pd, i) } else { (0..pd).collect() };
                let mut senders = Vec::new();
                for j in targets {
                    let consumer_here = self.exchanges.runs_here(j);
                    if !producer_here && !consumer_here {
                        continue;
                    }
                    let (edge, producer, consumer) = (je.stream_edge as u32, i as u32, j as u32);
                    let plan = ChannelPlan {
                        id: ChannelId { job, edge, producer, consumer },
                        producer_here,
                        consumer_here,
                    };
                    let (tx, rx) = self.channel(&*ty, &plan, je.source_vertex, je.target_vertex)?;
                    senders.extend(tx);
                    if let Some(rx) = rx {
                        self.receivers.entry((je.target_vertex, j, se.input)).or_default().push(rx);
                    }
                }
                if producer_here {
                    self.senders.insert((je.stream_edge, i), senders);
                }
            }
        }
        Ok(())
    }

    /// The split enumerator of every source with readers here: one for the whole job, or on
    /// a worker one that assigns splits statically.
    fn create_coordinators(&mut self) -> Result<()> {
        for v in &self.jg.vertices {
            let head = &self.graph.nodes[v.nodes[0]];
            let NodeKind::Source(source) = &head.kind else { continue };
            let here = self.subtasks_here(v.parallelism);
            if here.is_empty() {
                continue;
            }
            let distribution = match self.exchanges {
                Exchanges::Mesh { .. } => SplitDistribution::Static {
                    local: (0..v.parallelism).map(|s| here.contains(&s)).collect(),
                },
                _ => SplitDistribution::OnDemand,
            };
            let id = operator_id(self.graph, head.id);
            let restored =
                self.restore.as_ref().and_then(|c| c.operator(&id)).and_then(|o| o.coordinator.as_deref());
            let coordinator = source.create_coordinator(v.parallelism, &distribution, restored)?;
            self.coordinators.insert(head.id, coordinator);
        }
        Ok(())
    }

    /// Every source's split enumerator, by operator id, for the checkpoint coordinator.
    pub(crate) fn source_coordinators(&self) -> Vec<(String, Arc<dyn SourceCoordinatorHandle>)> {
        let mut sources: Vec<_> = self.coordinators.iter().map(|(n, c)| (*n, c.clone())).collect();
        sources.sort_by_key(|(n, _)| *n);
        sources.into_iter().map(|(n, c)| (operator_id(self.graph, n), c)).collect()
    }

    /// What operator `node`'s subtask `s` starts from.
    fn init(&self, node: NodeId, s: usize) -> Result<OperatorInit> {
        let id = operator_id(self.graph, node);
        match &self.restore {
            Some(c) => {
                c.operator_init(&id, s, self.jg.node_parallelism[node], self.jg.node_max_parallelism[node])
            }
            None => Ok(OperatorInit::fresh(id)),
        }
    }

    /// The ends of one channel that live in this process: (sender, receiver).
    fn channel(
        &self,
        ty: &dyn StreamType,
        plan: &ChannelPlan,
        source_vertex: usize,
        target_vertex: usize,
    ) -> Result<(Option<AnyBox>, Option<AnyBox>)> {
        let id = plan.id;
        let capacity = self.settings.channel_capacity;
        let remote_capacity = self.settings.remote_channel_capacity;
        let signals = self.signals.clone();
        let producer = || self.metrics[&(source_vertex, id.producer as usize)].clone();
        let consumer = || self.metrics[&(target_vertex, id.consumer as usize)].clone();
        match &self.exchanges {
            Exchanges::Local => {
                let (tx, rx) = ty.channel(capacity, signals);
                Ok((Some(tx), Some(rx)))
            }
            Exchanges::Loopback(net) => {
                // The input first: registering it grants the producer its credit.
                let rx = ty.remote_input(id, &net.consumer, remote_capacity, consumer())?;
                let tx = ty.remote_output(id, &net.producer, signals, producer())?;
                Ok((Some(tx), Some(rx)))
            }
            Exchanges::Mesh { placement, mesh } => match (plan.producer_here, plan.consumer_here) {
                (true, true) => {
                    let (tx, rx) = ty.channel(capacity, signals);
                    Ok((Some(tx), Some(rx)))
                }
                (true, false) => {
                    let conn = mesh.connection(placement.worker_of(id.consumer as usize))?;
                    Ok((Some(ty.remote_output(id, conn, signals, producer())?), None))
                }
                _ => {
                    let conn = mesh.connection(placement.worker_of(id.producer as usize))?;
                    Ok((None, Some(ty.remote_input(id, conn, remote_capacity, consumer())?)))
                }
            },
        }
    }

    fn ctx(&self, node: NodeId, subtask: usize) -> OperatorContext {
        OperatorContext {
            job_name: self.settings.job_name.clone(),
            operator_name: self.graph.nodes[node].name.clone(),
            subtask_index: subtask,
            parallelism: self.jg.node_parallelism[node],
            max_parallelism: self.jg.node_max_parallelism[node],
            attempt: self.attempt,
            runtime_mode: self.mode,
            batch_size: self.settings.batch_size,
            clock: self.settings.clock.clone(),
            auto_watermark_interval: self.settings.auto_watermark_interval.as_millis() as i64,
            checkpointing: self.settings.checkpointing.is_enabled() && self.mode != RuntimeMode::Batch,
            state_backend: self.settings.state_backend.clone(),
            metrics: self.metrics[&(self.jg.node_vertex[node], subtask)]
                .operator(&self.graph.nodes[node].name),
        }
    }

    /// Builds every subtask that runs here, vertex by vertex.
    pub(crate) fn build_tasks(mut self) -> Result<Vec<WorkerTask>> {
        let mut tasks = Vec::new();
        for v in &self.jg.vertices {
            for s in self.subtasks_here(v.parallelism) {
                let task = self.build_head(v.index, v.nodes[0], s)?;
                let metrics = self.metrics[&(v.index, s)].clone();
                let checkpoints = TaskCheckpointing::disabled();
                tasks.push(WorkerTask { vertex: v.index, subtask: s, task, metrics, checkpoints });
            }
        }
        Ok(tasks)
    }

    fn build_head(&mut self, vertex: usize, head: NodeId, s: usize) -> Result<Box<dyn Invokable>> {
        let node = &self.graph.nodes[head];
        let ctx = self.ctx(head, s);
        let (main, sides) = self.build_outputs(head, s)?;
        let task_name = format!("{} ({}/{})", self.jg.vertices[vertex].name, s + 1, ctx.parallelism);
        let metrics = self.metrics[&(vertex, s)].clone();
        let init = self.init(head, s)?;
        match &node.kind {
            NodeKind::Source(f) => {
                let coordinator = self.coordinators[&head].clone();
                f.create_task(ctx, &coordinator, main, &init)
            }
            NodeKind::OneInput(f) => {
                let in_flight = init.in_flight.clone();
                let op = f.create_with_state(&ctx, main, sides, init)?;
                let inputs = self.receivers.remove(&(vertex, s, 0)).unwrap_or_default();
                f.input_type().one_input_task(task_name, op, inputs, metrics, in_flight.as_deref())
            }
            NodeKind::TwoInput(f) => {
                let inputs1 = self.receivers.remove(&(vertex, s, 0)).unwrap_or_default();
                let inputs2 = self.receivers.remove(&(vertex, s, 1)).unwrap_or_default();
                f.create_task(&ctx, TwoInputParts { main, sides, inputs1, inputs2, metrics, init })
            }
        }
    }

    /// The operator of a chained (non-head) node, as `Box<dyn Output<In>>`.
    fn build_chained(&mut self, node: NodeId, s: usize) -> Result<AnyBox> {
        let ctx = self.ctx(node, s);
        let (main, sides) = self.build_outputs(node, s)?;
        let init = self.init(node, s)?;
        match &self.graph.nodes[node].kind {
            NodeKind::OneInput(f) => f.create_with_state(&ctx, main, sides, init),
            _ => Err(EddyError::InvalidJob("only one-input operators can be chained".into())),
        }
    }

    fn build_outputs(&mut self, node: NodeId, s: usize) -> Result<(AnyBox, Vec<(String, SideSlot)>)> {
        let main = self.build_output(node, None, s)?;
        let mut sides = Vec::new();
        for (tag, ty) in self.graph.nodes[node].side_outputs.clone() {
            let out = self.build_output(node, Some(&tag), s)?;
            sides.push((tag, ty.side_slot(out)?));
        }
        Ok((main, sides))
    }

    fn build_output(&mut self, node: NodeId, tag: Option<&str>, s: usize) -> Result<AnyBox> {
        let graph = self.graph;
        let mut outs = Vec::new();
        for (i, e) in graph.edges.iter().enumerate() {
            if e.source != node || e.side_tag.as_deref() != tag {
                continue;
            }
            if self.jg.chained[i] {
                outs.push(self.build_chained(e.target, s)?);
            } else {
                let senders = self.senders.remove(&(i, s)).unwrap_or_default();
                let wctx = WriterContext {
                    subtask_index: s,
                    batch_size: self.settings.batch_size,
                    max_parallelism: self.jg.node_max_parallelism[e.target],
                    metrics: self.metrics[&(self.jg.node_vertex[node], s)].clone(),
                };
                outs.push(e.partitioner.create_writer(self.jg.edge_kind[i], senders, &wctx)?);
            }
        }
        graph.nodes[node].output_type_of(tag)?.fan_out(outs)
    }
}
