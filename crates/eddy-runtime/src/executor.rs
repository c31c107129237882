//! The local mini-cluster: runs a job's subtasks as threads of this process.
//!
//! [`LocalExecutor::submit`] turns the StreamGraph into a JobGraph, creates one bounded channel
//! per producer/consumer pair of every exchange, builds each subtask's chain from its tail to
//! its head, and starts one thread per subtask. The returned [`JobClient`] waits for the job,
//! reports its status and cancels it.
//!
//! The first task to fail records the root cause and cancels the job; every other task sees
//! the cancellation at its next batch or wait and stops.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_core::config::RuntimeMode;
use eddy_core::{EddyError, Result};

use crate::channel::JobSignals;
use crate::graph::{AnyBox, NodeId, NodeKind, SideSlot, StreamGraph};
use crate::jobgraph::{GraphSettings, JobGraph};
use crate::operator::{panic_message, OperatorContext};
use crate::partitioner::{pointwise_targets, WriterContext};
use crate::task::{Invokable, TaskRuntime};

/// Flink's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
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
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut parts = [0u64; 2];
    for p in &mut parts {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        );
        *p = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

struct JobState {
    status: Mutex<JobStatus>,
    failure: Mutex<Option<EddyError>>,
    running_tasks: AtomicUsize,
    done: Condvar,
    signals: Arc<JobSignals>,
    finished_at: Mutex<Option<Instant>>,
}

impl JobState {
    /// Records a task's failure and cancels the other tasks.
    ///
    /// A failing task drops its channels before its error arrives here, so a neighbour may
    /// report the closed channel (a cancellation) first: a real error replaces that one.
    fn fail(&self, error: EddyError) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let replaces_cancellation =
            matches!(*f, Some(EddyError::Cancelled(_))) && !matches!(error, EddyError::Cancelled(_));
        if f.is_none() || replaces_cancellation {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*s, JobStatus::Running | JobStatus::Failing) {
                tracing::error!(error = %error, "job failing");
                *s = JobStatus::Failing;
                *f = Some(error);
            }
        }
        drop(f);
        self.signals.cancel();
    }

    fn task_ended(&self) {
        if self.running_tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            *s = match *s {
                JobStatus::Running => JobStatus::Finished,
                JobStatus::Failing => JobStatus::Failed,
                JobStatus::Cancelling => JobStatus::Canceled,
                other => other,
            };
            *self.finished_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            self.done.notify_all();
        }
    }
}

/// A handle on a running job: wait, query status, cancel. Dropping it leaves the job running,
/// as Flink's `JobClient` does.
pub struct JobClient {
    job_id: String,
    job_name: String,
    state: Arc<JobState>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    started: Instant,
}

impl JobClient {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn status(&self) -> JobStatus {
        *self.state.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels the job; returns at once. `wait` reports the cancellation.
    pub fn cancel(&self) {
        let mut s = self.state.status.lock().unwrap_or_else(|p| p.into_inner());
        if *s == JobStatus::Running {
            *s = JobStatus::Cancelling;
            tracing::info!(job_id = %self.job_id, "cancelling job");
        }
        drop(s);
        self.state.signals.cancel();
    }

    /// Waits until the job ends, at most `timeout`; returns the status then.
    pub fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.status.lock().unwrap_or_else(|p| p.into_inner());
        while !s.is_terminal() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self.state.done.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        *s
    }

    /// Waits until the job ends and returns its result, or the error that ended it.
    pub fn wait(&self) -> Result<JobExecutionResult> {
        let mut s = self.state.status.lock().unwrap_or_else(|p| p.into_inner());
        while !s.is_terminal() {
            s = self.state.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        let status = *s;
        drop(s);
        for t in self.threads.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = t.join();
        }
        let end =
            self.state.finished_at.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now);
        match status {
            JobStatus::Finished => Ok(JobExecutionResult {
                job_id: self.job_id.clone(),
                job_name: self.job_name.clone(),
                net_runtime: end - self.started,
            }),
            JobStatus::Canceled => Err(EddyError::Cancelled(self.job_id.clone())),
            _ => Err(self
                .state
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
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
        let signals = Arc::new(JobSignals::default());
        let mode = jg.runtime_mode;
        let tasks = Builder::new(&graph, &jg, &settings, &signals, mode)?.build_tasks()?;

        let state = Arc::new(JobState {
            status: Mutex::new(JobStatus::Running),
            failure: Mutex::new(None),
            running_tasks: AtomicUsize::new(tasks.len()),
            done: Condvar::new(),
            signals: signals.clone(),
            finished_at: Mutex::new(None),
        });
        let buffer_timeout = match mode {
            RuntimeMode::Batch => None,
            _ => Some(settings.buffer_timeout),
        };
        tracing::info!(job_id = %job_id, job = %settings.job_name, tasks = tasks.len(), mode = %mode, "starting job");
        let started = Instant::now();
        let mut threads = Vec::with_capacity(tasks.len());
        for task in tasks {
            let task_state = state.clone();
            let rt = TaskRuntime { signals: signals.clone(), buffer_timeout, clock: settings.clock.clone() };
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
                task_state.task_ended();
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    state.fail(EddyError::user(format!("cannot start a task thread: {e}")));
                    state.task_ended();
                }
            }
        }
        Ok(JobClient {
            job_id,
            job_name: settings.job_name.clone(),
            state,
            threads: Mutex::new(threads),
            started,
        })
    }
}

struct Builder<'a> {
    graph: &'a StreamGraph,
    jg: &'a JobGraph,
    settings: &'a ExecutionSettings,
    mode: RuntimeMode,
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
    ) -> Result<Self> {
        let mut senders: Senders = HashMap::new();
        let mut receivers: HashMap<(usize, usize, usize), Vec<AnyBox>> = HashMap::new();
        for je in &jg.edges {
            let se = &graph.edges[je.stream_edge];
            let ty = match &se.side_tag {
                None => graph.nodes[se.source].output_type.clone(),
                Some(tag) => graph.nodes[se.source]
                    .side_outputs
                    .iter()
                    .find(|(t, _)| t == tag)
                    .map(|(_, ty)| ty.clone())
                    .ok_or_else(|| EddyError::InvalidJob(format!("side output '{tag}' has no type")))?,
            };
            let pu = jg.vertices[je.source_vertex].parallelism;
            let pd = jg.vertices[je.target_vertex].parallelism;
            for i in 0..pu {
                let targets =
                    if je.kind.is_pointwise() { pointwise_targets(pu, pd, i) } else { (0..pd).collect() };
                let list = senders.entry((je.stream_edge, i)).or_default();
                for j in targets {
                    let (tx, rx) = ty.channel(settings.channel_capacity, signals.clone());
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
        Ok(Builder { graph, jg, settings, mode, senders, receivers, coordinators })
    }

    fn ctx(&self, node: NodeId, subtask: usize) -> OperatorContext {
        OperatorContext {
            job_name: self.settings.job_name.clone(),
            operator_name: self.graph.nodes[node].name.clone(),
            subtask_index: subtask,
            parallelism: self.jg.node_parallelism[node],
            max_parallelism: self.jg.node_max_parallelism[node],
            attempt: 0,
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
        let ty = match tag {
            None => graph.nodes[node].output_type.clone(),
            Some(t) => graph.nodes[node]
                .side_outputs
                .iter()
                .find(|(x, _)| x == t)
                .map(|(_, ty)| ty.clone())
                .ok_or_else(|| EddyError::InvalidJob(format!("side output '{t}' has no type")))?,
        };
        ty.fan_out(outs)
    }
}
