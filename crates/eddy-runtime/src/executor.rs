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
//! # Failures and restarts
//!
//! A job master thread runs the job's attempts. When an attempt fails (a task returned an
//! error or panicked; a user's cancel is not a failure), the job's
//! [`RestartStrategy`](crate::restart::RestartStrategy) decides. If it allows a restart the job
//! is `RESTARTING` for the backoff, then the whole job is built again from the kept
//! StreamGraph and runs from scratch, with [`OperatorContext::attempt`] one higher. There are
//! no checkpoints yet: bounded sources read their input again from the beginning, operator
//! state starts empty, and sinks with side effects see the failed attempt's output twice
//! (exactly-once comes with checkpoints). When the strategy gives up, the job is `FAILED` with
//! the last root cause, annotated with the number of restarts and the strategy. A cancel,
//! during an attempt or during the backoff, ends the job `CANCELED`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_core::config::RuntimeMode;
use eddy_core::{EddyError, Result};

use crate::channel::JobSignals;
use crate::graph::{AnyBox, NodeId, NodeKind, SideSlot, StreamGraph};
use crate::jobgraph::{GraphSettings, JobGraph};
use crate::net::{ChannelId, DataConnection, NetOptions};
use crate::operator::{panic_message, OperatorContext};
use crate::partitioner::{pointwise_targets, WriterContext};
use crate::restart::{RestartBackoffTimeStrategy, RestartStrategy};
use crate::task::{Invokable, TaskRuntime};

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
    restarts: usize,
    finished_at: Option<Instant>,
}

struct JobState {
    inner: Mutex<JobInner>,
    /// Signalled on every status change: wakes `wait` and a job master in its backoff.
    changed: Condvar,
}

impl JobState {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, inner: &mut JobInner, status: JobStatus) {
        inner.status = status;
        if status.is_terminal() {
            inner.finished_at = Some(Instant::now());
        }
        self.changed.notify_all();
    }

    /// Records a task's failure and cancels the other tasks of the attempt.
    ///
    /// A failing task drops its channels before its error arrives here, so a neighbour may
    /// report the closed channel (a cancellation) first: a real error replaces that one.
    fn fail(&self, error: EddyError) {
        let mut inner = self.lock();
        let replaces_cancellation = matches!(inner.failure, Some(EddyError::Cancelled(_)))
            && !matches!(error, EddyError::Cancelled(_));
        if (inner.failure.is_none() || replaces_cancellation)
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

/// A handle on a running job: wait, query status, cancel. Dropping it leaves the job running,
/// as Flink's `JobClient` does.
pub struct JobClient {
    job_id: String,
    job_name: String,
    state: Arc<JobState>,
    master: Mutex<Option<std::thread::JoinHandle<()>>>,
    started: Instant,
}

impl JobClient {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's status; `RESTARTING` between a failed attempt and the next one.
    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// How often the job has been restarted after a failure so far.
    pub fn restarts(&self) -> usize {
        self.state.lock().restarts
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
        let master = JobMaster {
            job_id: job_id.clone(),
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
                    restarts: 0,
                    finished_at: None,
                }),
                changed: Condvar::new(),
            }),
        };
        let first = master.build_attempt(0)?;
        let state = master.state.clone();
        let job_name = master.settings.job_name.clone();
        tracing::info!(job_id = %job_id, job = %job_name, tasks = first.tasks.len(), mode = %master.jg.runtime_mode,
            restart_strategy = %master.settings.restart_strategy, "starting job");
        let started = Instant::now();
        let handle = std::thread::Builder::new()
            .name(format!("JobMaster {job_id}"))
            .spawn(move || master.run(first))
            .map_err(|e| EddyError::user(format!("cannot start the job master thread: {e}")))?;
        Ok(JobClient { job_id, job_name, state, master: Mutex::new(Some(handle)), started })
    }
}

/// One attempt's tasks, the signal that cancels them, and the data connections their remote
/// channels use (with `execution.network-exchange`), closed when the attempt ends or is dropped.
struct Attempt {
    tasks: Vec<Box<dyn Invokable>>,
    signals: Arc<JobSignals>,
    network: Option<LoopbackNetwork>,
}

/// Both ends of the loopback data connection of one attempt: every remote channel is
/// produced on `producer` and consumed on `consumer`.
struct LoopbackNetwork {
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
fn job_hash(job_id: &str) -> u64 {
    let mut h = eddy_core::keygroup::StableHasher::new();
    std::hash::Hasher::write(&mut h, job_id.as_bytes());
    std::hash::Hasher::finish(&h)
}

/// Runs a job's attempts: starts the tasks, waits for them, and after a failure asks the
/// restart strategy whether and when to run the whole job again.
struct JobMaster {
    job_id: String,
    graph: StreamGraph,
    jg: JobGraph,
    settings: ExecutionSettings,
    state: Arc<JobState>,
    backoff: Box<dyn RestartBackoffTimeStrategy>,
}

impl JobMaster {
    fn build_attempt(&self, attempt: usize) -> Result<Attempt> {
        let signals = Arc::new(JobSignals::default());
        let mode = self.jg.runtime_mode;
        let network = if self.settings.network_exchange { Some(LoopbackNetwork::open()?) } else { None };
        let builder = Builder::new(
            &self.graph,
            &self.jg,
            &self.settings,
            &signals,
            mode,
            attempt,
            network.as_ref().map(|n| (job_hash(&self.job_id), n)),
        )?;
        let tasks = builder.build_tasks()?;
        Ok(Attempt { tasks, signals, network })
    }

    fn run(mut self, first: Attempt) {
        let mut next = Ok(first);
        loop {
            match next {
                Ok(attempt) => {
                    if !self.begin_attempt(&attempt.signals) {
                        return;
                    }
                    self.run_attempt(attempt);
                }
                Err(e) => {
                    if !self.begin_attempt(&Arc::new(JobSignals::default())) {
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
            next = self.build_attempt(restarts);
        }
    }

    /// Installs the attempt's signals and marks the job running, unless it was cancelled in
    /// the meantime.
    fn begin_attempt(&self, signals: &Arc<JobSignals>) -> bool {
        let mut inner = self.state.lock();
        if inner.cancel_requested {
            self.state.set_status(&mut inner, JobStatus::Canceled);
            return false;
        }
        inner.signals = signals.clone();
        inner.failure = None;
        inner.failed_at = None;
        if inner.status != JobStatus::Running {
            self.state.set_status(&mut inner, JobStatus::Running);
        }
        true
    }

    /// Starts one thread per task and waits for all of them, then closes the attempt's data
    /// connections.
    fn run_attempt(&self, Attempt { tasks, signals, network }: Attempt) {
        let buffer_timeout = match self.jg.runtime_mode {
            RuntimeMode::Batch => None,
            _ => Some(self.settings.buffer_timeout),
        };
        let mut threads = Vec::with_capacity(tasks.len());
        for task in tasks {
            let task_state = self.state.clone();
            let rt =
                TaskRuntime { signals: signals.clone(), buffer_timeout, clock: self.settings.clock.clone() };
            let name = task.name();
            let thread_name: String = name.chars().take(60).collect();
            let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.invoke(&rt)));
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(EddyError::Cancelled(_))) if rt.signals.is_cancelled() => {}
                    Ok(Err(e)) => task_state.fail(e),
                    Err(p) => task_state.fail(EddyError::Task {
                        operator: name.clone(),
                        subtask: 0,
                        parallelism: 0,
                        message: format!("task thread panicked: {}", panic_message(&p)),
                    }),
                }
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => self.state.fail(EddyError::user(format!("cannot start a task thread: {e}"))),
            }
        }
        for t in threads {
            let _ = t.join();
        }
        // Every task has ended, so every channel has delivered its end of input or been
        // closed: closing now cannot fail a task.
        if let Some(network) = network {
            network.close();
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

struct Builder<'a> {
    graph: &'a StreamGraph,
    jg: &'a JobGraph,
    settings: &'a ExecutionSettings,
    mode: RuntimeMode,
    /// 0 for the first run, then the number of restarts before this attempt.
    attempt: usize,
    senders: Senders,
    /// (vertex, subtask, input) → receivers
    receivers: HashMap<(usize, usize, usize), Vec<AnyBox>>,
    coordinators: HashMap<NodeId, Arc<dyn Any + Send + Sync>>,
}

impl<'a> Builder<'a> {
    fn new(
        graph: &'a StreamGraph,
        jg: &'a JobGraph,
        settings: &'a ExecutionSettings,
        signals: &Arc<JobSignals>,
        mode: RuntimeMode,
        attempt: usize,
        network: Option<(u64, &LoopbackNetwork)>,
    ) -> Result<Self> {
        let mut senders: Senders = HashMap::new();
        let mut receivers: HashMap<(usize, usize, usize), Vec<AnyBox>> = HashMap::new();
        for je in &jg.edges {
            let se = &graph.edges[je.stream_edge];
            let ty = graph.nodes[se.source].output_type_of(se.side_tag.as_deref())?;
            let pu = jg.vertices[je.source_vertex].parallelism;
            let pd = jg.vertices[je.target_vertex].parallelism;
            for i in 0..pu {
                let targets =
                    if je.kind.is_pointwise() { pointwise_targets(pu, pd, i) } else { (0..pd).collect() };
                let list = senders.entry((je.stream_edge, i)).or_default();
                for j in targets {
                    let (tx, rx) = match network {
                        None => ty.channel(settings.channel_capacity, signals.clone()),
                        Some((job, net)) => {
                            let id = ChannelId {
                                job,
                                edge: je.stream_edge as u32,
                                producer: i as u32,
                                consumer: j as u32,
                            };
                            let capacity = settings.channel_capacity;
                            ty.remote_channel(id, &net.producer, &net.consumer, capacity, signals.clone())?
                        }
                    };
                    list.push(tx);
                    receivers.entry((je.target_vertex, j, se.input)).or_default().push(rx);
                }
            }
        }
        let mut coordinators = HashMap::new();
        for v in &jg.vertices {
            let head = &graph.nodes[v.nodes[0]];
            if let NodeKind::Source(s) = &head.kind {
                coordinators.insert(head.id, s.create_coordinator(v.parallelism)?);
            }
        }
        Ok(Builder { graph, jg, settings, mode, attempt, senders, receivers, coordinators })
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
        }
    }

    fn build_tasks(mut self) -> Result<Vec<Box<dyn Invokable>>> {
        let mut tasks = Vec::new();
        for v in &self.jg.vertices {
            for s in 0..v.parallelism {
                tasks.push(self.build_head(v.index, v.nodes[0], s)?);
            }
        }
        Ok(tasks)
    }

    fn build_head(&mut self, vertex: usize, head: NodeId, s: usize) -> Result<Box<dyn Invokable>> {
        let node = &self.graph.nodes[head];
        let ctx = self.ctx(head, s);
        let (main, sides) = self.build_outputs(head, s)?;
        let task_name = format!("{} ({}/{})", self.jg.vertices[vertex].name, s + 1, ctx.parallelism);
        match &node.kind {
            NodeKind::Source(f) => {
                let coordinator = self.coordinators[&head].clone();
                f.create_task(ctx, &coordinator, main)
            }
            NodeKind::OneInput(f) => {
                let op = f.create(&ctx, main, sides)?;
                let inputs = self.receivers.remove(&(vertex, s, 0)).unwrap_or_default();
                f.input_type().one_input_task(task_name, op, inputs)
            }
            NodeKind::TwoInput(f) => {
                let in1 = self.receivers.remove(&(vertex, s, 0)).unwrap_or_default();
                let in2 = self.receivers.remove(&(vertex, s, 1)).unwrap_or_default();
                f.create_task(&ctx, main, sides, in1, in2)
            }
        }
    }

    /// The operator of a chained (non-head) node, as `Box<dyn Output<In>>`.
    fn build_chained(&mut self, node: NodeId, s: usize) -> Result<AnyBox> {
        let ctx = self.ctx(node, s);
        let (main, sides) = self.build_outputs(node, s)?;
        match &self.graph.nodes[node].kind {
            NodeKind::OneInput(f) => f.create(&ctx, main, sides),
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
                };
                outs.push(e.partitioner.create_writer(self.jg.edge_kind[i], senders, &wctx)?);
            }
        }
        graph.nodes[node].output_type_of(tag)?.fan_out(outs)
    }
}
