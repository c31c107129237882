//! The entry point of every program: [`StreamExecutionEnvironment`].
//!
//! The environment collects the program's operators into a stream graph and runs it. With no
//! cluster configured it runs the job on the embedded local mini-cluster: the same tasks and
//! channels a cluster runs, as threads of this process.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use eddy_core::config::{options, CheckpointingMode, ConfigValue, RuntimeMode};
use eddy_core::{Configuration, Data, EddyError, Result};
use eddy_runtime::checkpoint::CheckpointConfig;
use eddy_runtime::executor::ExecutionSettings;
use eddy_runtime::graph::{NodeId, NodeKind, SourceNode, StreamGraph, StreamNode, StreamType, TypeOf};
use eddy_runtime::partitioner::{BasicPartitioner, PartitionKind};
use eddy_runtime::restart::RestartStrategy;
use eddy_runtime::source::Source;
use eddy_runtime::{ChainingStrategy, JobClient, JobExecutionResult, LocalExecutor};

use crate::connectors::{
    CollectionSource, DataGeneratorSource, NumberSequenceSource, SocketTextSource, TextFileSource,
};
use crate::datastream::{DataStream, Port};

pub(crate) struct EnvInner {
    pub graph: StreamGraph,
    pub config: Configuration,
    /// Mistakes found while the program was built, reported by `execute`.
    pub errors: Vec<EddyError>,
    /// Sinks that hand records back to this process (`collect_to_vec`): local only.
    pub collect_sinks: usize,
}

/// Builds and runs streaming and batch jobs (Flink's `StreamExecutionEnvironment`).
///
/// ```
/// use eddy::prelude::*;
///
/// let env = StreamExecutionEnvironment::local();
/// env.set_parallelism(2);
/// let mut doubled = env.from_sequence(1, 4).map(|x| x * 2).execute_and_collect().unwrap();
/// doubled.sort();
/// assert_eq!(doubled, vec![2, 4, 6, 8]);
/// ```
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    pub(crate) inner: Rc<RefCell<EnvInner>>,
    clock: eddy_runtime::time::ClockRef,
}

impl StreamExecutionEnvironment {
    /// The environment for this program: configuration from `$EDDY_CONF_DIR/eddy.yaml` (or
    /// `./conf/eddy.yaml`) and `$EDDY_PROPERTIES`, run on the local mini-cluster.
    ///
    /// A configuration that cannot be loaded is reported by `execute`.
    pub fn get_execution_environment() -> Self {
        match Configuration::load_default() {
            Ok(c) => Self::with_configuration(c),
            Err(e) => {
                let env = Self::local();
                env.inner.borrow_mut().errors.push(e);
                env
            }
        }
    }

    /// A local environment with default settings, ignoring configuration files.
    pub fn local() -> Self {
        Self::with_configuration(Configuration::new())
    }

    /// An environment with the given configuration (Flink's key names).
    pub fn with_configuration(config: Configuration) -> Self {
        StreamExecutionEnvironment {
            inner: Rc::new(RefCell::new(EnvInner {
                graph: StreamGraph::new(),
                config,
                errors: Vec::new(),
                collect_sinks: 0,
            })),
            clock: eddy_runtime::time::ClockRef::system(),
        }
    }

    /// Replaces the processing-time clock (tests drive time with a `ManualClock`).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn eddy_runtime::time::Clock>) -> Self {
        self.clock = eddy_runtime::time::ClockRef(clock);
        self
    }

    /// Overlays configuration, e.g. parsed `-D key=value` arguments.
    pub fn configure(&self, config: &Configuration) -> &Self {
        self.inner.borrow_mut().config.merge(config);
        self
    }

    /// A copy of the current configuration.
    pub fn configuration(&self) -> Configuration {
        self.inner.borrow().config.clone()
    }

    fn set_option<T: ConfigValue>(&self, option: &eddy_core::config::ConfigOption<T>, value: T) -> &Self {
        if let Err(e) = option.check(&value) {
            self.inner.borrow_mut().errors.push(e);
        } else {
            self.inner.borrow_mut().config.set_value(option, value);
        }
        self
    }

    /// Default parallelism of operators (`parallelism.default`); without it, the number of cores.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.set_option(&options::PARALLELISM_DEFAULT, parallelism)
    }

    /// Builder form of [`set_parallelism`](Self::set_parallelism).
    pub fn with_parallelism(self, parallelism: usize) -> Self {
        self.set_parallelism(parallelism);
        self
    }

    /// The default parallelism in effect.
    pub fn parallelism(&self) -> Result<usize> {
        Ok(self
            .inner
            .borrow()
            .config
            .get_optional(&options::PARALLELISM_DEFAULT)?
            .unwrap_or_else(default_parallelism))
    }

    /// Number of key groups (`pipeline.max-parallelism`); without it, Flink's formula per operator.
    pub fn set_max_parallelism(&self, max_parallelism: usize) -> &Self {
        self.set_option(&options::MAX_PARALLELISM, max_parallelism)
    }

    /// STREAMING, BATCH or AUTOMATIC (`execution.runtime-mode`).
    pub fn set_runtime_mode(&self, mode: RuntimeMode) -> &Self {
        self.set_option(&options::RUNTIME_MODE, mode)
    }

    /// How long a partly filled batch may wait before it is sent (`execution.buffer-timeout`).
    pub fn set_buffer_timeout(&self, timeout: Duration) -> &Self {
        self.set_option(&options::BUFFER_TIMEOUT, timeout)
    }

    /// Takes a checkpoint every `interval` (`execution.checkpointing.interval`), in
    /// EXACTLY_ONCE mode unless `execution.checkpointing.mode` says otherwise. A failed job
    /// then restarts from its latest completed checkpoint, and an unset restart strategy
    /// becomes `exponential-delay`, as in Flink. Completed checkpoints are kept in memory, or
    /// under `state.checkpoints.dir` when it is set. Ignored in BATCH mode.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// let env = StreamExecutionEnvironment::local();
    /// env.enable_checkpointing(Duration::from_secs(10));
    /// ```
    pub fn enable_checkpointing(&self, interval: Duration) -> &Self {
        self.set_option(&options::CHECKPOINTING_INTERVAL, interval)
    }

    /// [`enable_checkpointing`](Self::enable_checkpointing) with a mode: `ExactlyOnce` aligns
    /// barriers, `AtLeastOnce` does not.
    pub fn enable_checkpointing_with_mode(&self, interval: Duration, mode: CheckpointingMode) -> &Self {
        self.enable_checkpointing(interval);
        self.set_option(&options::CHECKPOINTING_MODE, mode)
    }

    /// Writes completed checkpoints under `dir` (`state.checkpoints.dir`) instead of keeping
    /// them in memory.
    pub fn set_checkpoint_storage(&self, dir: impl Into<PathBuf>) -> &Self {
        let dir = dir.into().to_string_lossy().into_owned();
        self.set_option(&options::CHECKPOINTS_DIRECTORY, dir)
    }

    pub(crate) fn add_node(
        &self,
        name: impl Into<String>,
        kind: NodeKind,
        output_type: Arc<dyn StreamType>,
        non_parallel: bool,
    ) -> NodeId {
        self.inner.borrow_mut().graph.add_node(StreamNode {
            id: 0,
            name: name.into(),
            uid: None,
            parallelism: None,
            max_parallelism: None,
            non_parallel,
            chaining: ChainingStrategy::Always,
            kind,
            output_type,
            side_outputs: Vec::new(),
            batch_only: false,
            inherit_parallelism: false,
        })
    }

    pub(crate) fn record_error(&self, e: EddyError) {
        self.inner.borrow_mut().errors.push(e);
    }

    fn source_stream<T: Data>(&self, node: NodeId) -> DataStream<T> {
        DataStream {
            env: self.clone(),
            ports: vec![Port {
                node,
                side_tag: None,
                partitioner: Arc::new(BasicPartitioner::<T>::new(PartitionKind::Default)),
            }],
            _t: PhantomData,
        }
    }

    /// Adds a source (Flink's `fromSource`).
    pub fn from_source<S: Source>(&self, source: S, name: &str) -> DataStream<S::Output> {
        let kind = NodeKind::Source(Arc::new(SourceNode(Arc::new(source))));
        let node = self.add_node(format!("Source: {name}"), kind, TypeOf::<S::Output>::arc(), false);
        self.source_stream(node)
    }

    /// Adds a source whose records get timestamps and watermarks from `strategy` right away,
    /// in each source subtask (Flink's `fromSource(source, strategy, name)`).
    pub fn from_source_with_watermarks<S: Source>(
        &self,
        source: S,
        strategy: crate::watermark::WatermarkStrategy<S::Output>,
        name: &str,
    ) -> DataStream<S::Output> {
        self.from_source(source, name).assign_timestamps_and_watermarks(strategy)
    }

    fn non_parallel_source<S: Source>(&self, source: S, name: &str) -> DataStream<S::Output> {
        let kind = NodeKind::Source(Arc::new(SourceNode(Arc::new(source))));
        let node = self.add_node(format!("Source: {name}"), kind, TypeOf::<S::Output>::arc(), true);
        self.source_stream(node)
    }

    /// A bounded stream of the given records, in order (a non-parallel source).
    pub fn from_collection<T: Data + Sync>(&self, data: Vec<T>) -> DataStream<T> {
        self.non_parallel_source(CollectionSource::new(data), "Collection Source")
    }

    /// A bounded stream of what an iterator yields (collected when the job is built).
    pub fn from_iter<T: Data + Sync>(&self, iter: impl IntoIterator<Item = T>) -> DataStream<T> {
        self.from_collection(iter.into_iter().collect())
    }

    /// The numbers `from..=to`, split across parallel subtasks (Flink's `fromSequence`).
    pub fn from_sequence(&self, from: i64, to: i64) -> DataStream<i64> {
        self.from_source(NumberSequenceSource::new(from, to), "Sequence Source")
    }

    /// Lines of a text file, or of every file in a directory, read in parallel by byte range.
    pub fn read_text_file(&self, path: impl Into<PathBuf>) -> DataStream<String> {
        self.from_source(TextFileSource::new(path.into()), "File Source")
    }

    /// Lines received from a TCP server (unbounded; ends when the server closes the connection).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.non_parallel_source(SocketTextSource::new(host, port), "Socket Stream")
    }

    /// `count` records made by `generator(index)`, split across parallel subtasks.
    pub fn from_generator<T: Data, F>(&self, count: u64, generator: F) -> DataStream<T>
    where
        F: Fn(u64) -> T + Clone + Send + Sync + 'static,
    {
        self.from_source(DataGeneratorSource::new(generator, count), "Data Generator")
    }

    pub(crate) fn settings(&self, job_name: &str) -> Result<ExecutionSettings> {
        let inner = self.inner.borrow();
        let c = &inner.config;
        Ok(ExecutionSettings {
            job_name: job_name.to_string(),
            default_parallelism: c
                .get_optional(&options::PARALLELISM_DEFAULT)?
                .unwrap_or_else(default_parallelism),
            max_parallelism: c.get_optional(&options::MAX_PARALLELISM)?,
            runtime_mode: c.get(&options::RUNTIME_MODE)?,
            buffer_timeout: c.get(&options::BUFFER_TIMEOUT)?,
            batch_size: c.get(&options::BATCH_SIZE)?,
            channel_capacity: c.get(&options::CHANNEL_CAPACITY)?,
            remote_channel_capacity: c.get(&options::REMOTE_CHANNEL_CAPACITY)?,
            network_exchange: c.get(&options::NETWORK_EXCHANGE)?,
            task_slots: c.get_optional(&options::TASK_SLOTS)?,
            auto_watermark_interval: c.get(&options::AUTO_WATERMARK_INTERVAL)?,
            clock: self.clock.clone(),
            restart_strategy: RestartStrategy::from_configuration(c)?,
            checkpointing: CheckpointConfig::from_configuration(c)?,
            state_backend: Arc::new(eddy_core::config::StateBackendConfig::from_configuration(c)?),
        })
    }

    fn take_errors(&self) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.errors.is_empty() {
            Ok(())
        } else {
            Err(inner.errors.remove(0))
        }
    }

    /// The job graph as JSON: chains (`description`, `chain`), parallelism and exchanges.
    pub fn execution_plan(&self) -> Result<String> {
        self.take_errors()?;
        let settings = self.settings("plan")?;
        let (graph, jg) = LocalExecutor::prepare(&self.inner.borrow().graph, &settings)?;
        let json = jg.to_plan_json(&graph, "");
        serde_json::to_string_pretty(&json).map_err(EddyError::user)
    }

    /// Starts the job and returns a client to wait for it, query its status or cancel it.
    /// The environment's operators are handed to the job; the environment starts empty again.
    pub fn execute_async(&self, job_name: &str) -> Result<JobClient> {
        if cluster_mode() {
            return Err(EddyError::InvalidJob(
                "execute_async runs jobs on the local mini-cluster only; on a cluster use execute, and \
                 `eddy run -d` to return without waiting"
                    .into(),
            ));
        }
        let (graph, settings) = self.take_graph(job_name)?;
        LocalExecutor::submit(graph, settings)
    }

    /// The program's stream graph and the settings to run it with, without running it, for
    /// engines that run the job elsewhere (the distributed runtime). The environment keeps
    /// its operators.
    #[doc(hidden)]
    pub fn stream_graph_and_settings(&self, job_name: &str) -> Result<(StreamGraph, ExecutionSettings)> {
        self.take_errors()?;
        Ok((self.inner.borrow().graph.clone(), self.settings(job_name)?))
    }

    /// Runs the job to its end and returns its id and runtime.
    ///
    /// Where it runs depends on how the program was started:
    /// - plainly: on the embedded local mini-cluster, in this process;
    /// - by `eddy run` (`$EDDY_JOBMANAGER_ADDRESS` set): the program is a client. It submits
    ///   the job graph and its own executable to the JobManager, prints the job id, and waits
    ///   for the end (returns at once with `eddy run -d`);
    /// - with `--application` among its arguments (or `$EDDY_APPLICATION=1`): it starts a
    ///   JobManager of its own (configured as `eddy jobmanager` is), submits itself to it,
    ///   and stops it after the job; TaskManagers connect to it as to any JobManager;
    /// - by a TaskManager, as a worker: it runs the subtasks it was assigned and exits the
    ///   process, never returning here.
    pub fn execute(&self, job_name: &str) -> Result<JobExecutionResult> {
        use eddy_cluster::worker::{env, WorkerEnv};
        if let Some(worker) = WorkerEnv::from_env() {
            let worker = worker?;
            let (graph, settings) = self.take_job(job_name)?;
            eddy_cluster::worker::run(worker, graph, settings)
        }
        let token = std::env::var(env::TOKEN).ok().filter(|t| !t.is_empty());
        if let Some(rest) = std::env::var(env::CLIENT_REST).ok().filter(|a| !a.is_empty()) {
            let detached = std::env::var(env::DETACHED).is_ok_and(|v| v == "1" || v == "true");
            return self.submit_to_cluster(&rest, token, detached, job_name);
        }
        let application = std::env::var("EDDY_APPLICATION").is_ok_and(|v| v == "1" || v == "true")
            || std::env::args().skip(1).any(|a| a == "--application");
        if application {
            return self.run_application(token, job_name);
        }
        self.execute_async(job_name)?.wait()
    }

    /// The job's graph and settings, taken out of the environment (which starts empty again).
    fn take_graph(&self, job_name: &str) -> Result<(StreamGraph, ExecutionSettings)> {
        self.take_errors()?;
        let settings = self.settings(job_name)?;
        let graph = std::mem::take(&mut self.inner.borrow_mut().graph);
        Ok((graph, settings))
    }

    /// [`take_graph`](Self::take_graph) for a cluster, which cannot hand records back.
    fn take_job(&self, job_name: &str) -> Result<(StreamGraph, ExecutionSettings)> {
        self.take_errors()?;
        if self.inner.borrow().collect_sinks > 0 {
            return Err(EddyError::InvalidJob(
                "collect_to_vec and execute_and_collect hand records back to the program's own process, \
                 which only the local mini-cluster does; on a cluster write the stream to a file sink or \
                 print it"
                    .into(),
            ));
        }
        self.take_graph(job_name)
    }

    /// Client mode: submits the job and this executable to the JobManager at `rest`.
    fn submit_to_cluster(
        &self,
        rest: &str,
        token: Option<String>,
        detached: bool,
        job_name: &str,
    ) -> Result<JobExecutionResult> {
        let (graph, settings) = self.take_job(job_name)?;
        let (graph, jg) = LocalExecutor::prepare(&graph, &settings)?;
        let plan = jg.to_plan_json(&graph, "");
        // The workers must resolve every setting as this process did, on any machine.
        let mut properties = self.inner.borrow().config.to_map();
        properties
            .insert(options::PARALLELISM_DEFAULT.key.to_string(), settings.default_parallelism.to_string());
        eddy_cluster::client::submit_self(rest, token, detached, job_name, &plan, &properties)
    }

    /// Application mode: a JobManager in this process for this one job.
    fn run_application(&self, token: Option<String>, job_name: &str) -> Result<JobExecutionResult> {
        let config = self.inner.borrow().config.clone();
        let token = token.or(config.get_optional(&eddy_cluster::options::REST_SUBMISSION_TOKEN)?);
        let runtime = eddy_cluster::runtime("jobmanager")?;
        let handle = runtime.block_on(eddy_cluster::jobmanager::start(config))?;
        println!(
            "Application mode: JobManager running, REST API http://{}, RPC {}",
            handle.rest_address, handle.rpc_address
        );
        let rest = handle.rest_address.to_string();
        let result = self.submit_to_cluster(&rest, token, false, job_name);
        runtime.block_on(handle.shutdown());
        result
    }
}

/// Whether this process submits to, or works for, a cluster.
fn cluster_mode() -> bool {
    use eddy_cluster::worker::env;
    [env::CLIENT_REST, env::JOB_ID].iter().any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()))
}

fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
