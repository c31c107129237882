//! The JobManager: the dispatcher (job submission and the REST API), the resource manager
//! (TaskManagers, their slots and heartbeats) and one [`master::JobMaster`] per job.
//!
//! It serves two endpoints: the control RPC (gRPC, `jobmanager.rpc.address:port`) for
//! TaskManagers and worker processes, and the REST API (`rest.bind-address:rest.port`) for
//! clients. Both bind to 127.0.0.1 unless configured otherwise.

pub mod master;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::{Configuration, EddyError, Result};
use eddy_runtime::checkpoint::CheckpointConfig;
use eddy_runtime::restart::RestartStrategy;
use eddy_runtime::JobStatus;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::artifacts::ArtifactStore;
use crate::options;
use crate::proto::job_manager_service_server::{JobManagerService, JobManagerServiceServer};
use crate::proto::task_executor_service_client::TaskExecutorServiceClient;
use crate::proto::*;
use crate::savepoints::JobSavepoints;
use master::{JobEvent, JobMaster, JobSpec, MasterSettings};
use state::{now_ms, JobEntry, Shared, TaskManagerEntry, VertexInfo};

/// Everything the JobManager's services share.
pub struct JobManager {
    pub shared: Arc<Shared>,
    pub config: Configuration,
    pub artifacts: ArtifactStore,
    pub master_settings: MasterSettings,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// Required on submissions, uploads and cancellations when set.
    pub token: Option<String>,
    /// Whether the REST server is reachable from other machines.
    pub rest_exposed: bool,
    pub started_ms: i64,
    pub rest_address: SocketAddr,
    /// `cluster.rpc.token`: carried by every control RPC.
    pub rpc_token: Option<String>,
    /// This process's `Status.*` metrics.
    pub process: std::sync::Mutex<crate::process_metrics::ProcessSampler>,
}

/// What a client submits (`POST /jobs`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    pub job_name: String,
    /// The job graph, as `execution_plan` / `GET /jobs/:id/plan` show it.
    pub plan: Value,
    /// The id of an uploaded artifact (`POST /artifacts`).
    pub artifact: String,
    #[serde(default)]
    pub program_args: Vec<String>,
    /// The job's configuration as the client resolved it.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The savepoint (or retained checkpoint) to start from: `execution.savepoint.path`.
    #[serde(default)]
    pub savepoint_path: Option<String>,
    /// Skip state of operators the job no longer has:
    /// `execution.savepoint.ignore-unclaimed-state`.
    #[serde(default)]
    pub allow_non_restored_state: Option<bool>,
}

/// A stable hash of a plan: how a worker proves it built the graph that was submitted.
pub fn plan_hash(plan: &Value) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(plan).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// A request the dispatcher refuses, with the HTTP status it maps to.
#[derive(Debug)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
}

impl Rejection {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Rejection { status: 400, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection { status: 404, message: message.into() }
    }
}

impl JobManager {
    /// Accepts a job: checks it, registers it and starts its job master.
    pub fn submit(self: &Arc<Self>, request: SubmitRequest) -> std::result::Result<String, Rejection> {
        if self.artifacts.get(&request.artifact).is_none() {
            return Err(Rejection::bad_request(format!(
                "unknown artifact {:?}: upload the job binary first (POST /artifacts)",
                request.artifact
            )));
        }
        let vertices = vertices_of(&request.plan).map_err(Rejection::bad_request)?;
        let slots_needed = vertices.iter().map(|v| v.parallelism).max().unwrap_or(0);
        if slots_needed == 0 {
            return Err(Rejection::bad_request("the job graph has no vertices"));
        }
        let mut properties = request.properties;
        if let Some(path) = request.savepoint_path.filter(|p| !p.trim().is_empty()) {
            properties.insert(eddy_core::config::options::SAVEPOINT_PATH.key.to_string(), path);
        }
        if let Some(allow) = request.allow_non_restored_state {
            let key = eddy_core::config::options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key;
            properties.insert(key.to_string(), allow.to_string());
        }
        let mut job_config = self.config.clone();
        job_config.merge(&properties.iter().collect::<Configuration>());
        let restart_strategy = RestartStrategy::from_configuration(&job_config)
            .map_err(|e| Rejection::bad_request(e.to_string()))?;
        let checkpoint_config = CheckpointConfig::from_configuration(&job_config)
            .map_err(|e| Rejection::bad_request(e.to_string()))?;
        // BATCH jobs do not checkpoint, as in Flink. A STREAMING job has a checkpoint coordinator
        // also without periodic checkpoints: it takes savepoints and restores them.
        let streaming = request.plan.get("type").and_then(Value::as_str) != Some("BATCH");
        let restore = read_restore(&checkpoint_config, streaming).map_err(Rejection::bad_request)?;
        let savepoints = JobSavepoints::new(checkpoint_config.savepoint_directory.clone(), streaming);
        let checkpointing = (checkpoint_config.is_enabled() && streaming).then(|| checkpoint_config.clone());
        let coordinator = streaming.then_some(checkpoint_config);
        let id = eddy_runtime::executor::new_job_id();
        let (events, receiver) = mpsc::unbounded_channel();
        let now = now_ms();
        let spec = JobSpec {
            id: id.clone(),
            name: request.job_name.clone(),
            artifact: request.artifact,
            args: request.program_args,
            properties,
            restart_strategy,
            slots_needed,
            plan_hash: plan_hash(&request.plan),
            checkpointing: coordinator,
            restore,
        };
        let mut entry = JobEntry {
            id: id.clone(),
            name: request.job_name,
            status: JobStatus::Running,
            submitted_ms: now,
            end_ms: None,
            last_modification_ms: now,
            timestamps: BTreeMap::from([("INITIALIZING", now), ("CREATED", now), ("RUNNING", now)]),
            plan: request.plan,
            properties: spec.properties.clone(),
            program_args: spec.args.clone(),
            vertices,
            attempt: 0,
            live_attempt: None,
            restarts: 0,
            tasks: Default::default(),
            exceptions: Vec::new(),
            root_cause: None,
            checkpoint_config: checkpointing,
            checkpoint_stats: None,
            checkpoint_link: None,
            savepoints,
            status_watch: watch::channel(JobStatus::Running).0,
            events,
        };
        entry.plan["jid"] = Value::String(id.clone());
        {
            let mut state = self.shared.lock();
            state.jobs.insert(id.clone(), entry);
            state.job_order.push(id.clone());
        }
        tracing::info!(job_id = %id, job = %spec.name, slots = slots_needed, "job submitted");
        let master = JobMaster::new(self.shared.clone(), self.master_settings.clone(), spec, receiver);
        tokio::spawn(master.run());
        Ok(id)
    }

    /// Asks a job to cancel; returns at once.
    pub fn cancel(&self, job_id: &str) -> std::result::Result<(), Rejection> {
        let mut state = self.shared.lock();
        let job = state
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| Rejection::not_found(format!("Job {job_id} not found")))?;
        if job.status.is_terminal() {
            return Err(Rejection {
                status: 409,
                message: format!(
                    "Job {job_id} has already ended ({}); it cannot be cancelled",
                    job.status.as_str()
                ),
            });
        }
        job.set_status(JobStatus::Cancelling);
        let _ = job.events.send(JobEvent::Cancel);
        Ok(())
    }
}

/// The savepoint a job starts from (`execution.savepoint.path`), read and checked now so that a
/// bad path is an error of the submission; `None` when the key is unset.
fn read_restore(
    config: &CheckpointConfig,
    streaming: bool,
) -> std::result::Result<Option<master::Restore>, String> {
    let Some(settings) = config.restore.clone() else { return Ok(None) };
    if !streaming {
        return Err(
            "execution.savepoint.path (savepointPath) is set, but the job runs in BATCH mode, which \
                    does not restore savepoints; run it in STREAMING mode"
                .into(),
        );
    }
    let read = || eddy_runtime::checkpoint::savepoint::read_savepoint(&settings.path);
    // A savepoint holds all of a job's state: read it off the async workers.
    let savepoint = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(read),
        Err(_) => read(),
    }
    .map_err(|e| format!("cannot start the job from savepoint {}: {e}", settings.path.display()))?;
    tracing::info!(savepoint = %settings.path.display(), checkpoint_id = savepoint.id,
        kind = savepoint.kind.as_str(), "the job starts from a savepoint");
    Ok(Some(master::Restore { savepoint: Arc::new(savepoint), settings }))
}

/// The vertices (id, name, parallelism) of a submitted plan.
fn vertices_of(plan: &Value) -> std::result::Result<Vec<VertexInfo>, String> {
    let nodes = plan
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("the plan has no \"nodes\" array: submit the plan `execution_plan` produces")?;
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let field = |name: &str| n.get(name).ok_or(format!("plan node {i} has no \"{name}\""));
            let parallelism = field("parallelism")?
                .as_u64()
                .filter(|p| *p >= 1)
                .ok_or(format!("plan node {i}: \"parallelism\" must be a positive number"))?;
            Ok(VertexInfo {
                id: field("id")?
                    .as_str()
                    .ok_or(format!("plan node {i}: \"id\" must be a string"))?
                    .to_string(),
                name: field("description")?.as_str().unwrap_or_default().to_string(),
                parallelism: parallelism as usize,
            })
        })
        .collect()
}

/// Forgets a TaskManager and tells the jobs that held slots on it.
pub fn lose_taskmanager(shared: &Shared, id: &str, reason: &str) {
    let mut state = shared.lock();
    let Some(tm) = state.taskmanagers.remove(id) else { return };
    tracing::warn!(taskmanager = %id, reason, "TaskManager lost");
    let mut jobs: Vec<String> = tm.slots.iter().flatten().map(|(job, _)| job.clone()).collect();
    jobs.dedup();
    for job in jobs {
        if let Some(entry) = state.jobs.get(&job) {
            let _ = entry
                .events
                .send(JobEvent::TaskManagerLost { taskmanager: id.to_string(), reason: reason.to_string() });
        }
    }
    drop(state);
    shared.slots_changed.notify_waiters();
}

/// The control RPC a JobManager serves.
struct Rpc(Arc<JobManager>);

impl Rpc {
    fn job_events(&self, job_id: &str) -> std::result::Result<mpsc::UnboundedSender<JobEvent>, Status> {
        self.0
            .shared
            .lock()
            .jobs
            .get(job_id)
            .map(|j| j.events.clone())
            .ok_or_else(|| Status::not_found(format!("unknown job {job_id}")))
    }

    /// The checkpoint link of attempt `attempt` of a job, while that attempt runs.
    fn checkpoint_link(
        &self,
        job_id: &str,
        attempt: u32,
    ) -> std::result::Result<Arc<crate::checkpoints::AttemptLink>, Status> {
        let state = self.0.shared.lock();
        let job = state.jobs.get(job_id).ok_or_else(|| Status::not_found(format!("unknown job {job_id}")))?;
        match &job.checkpoint_link {
            Some(link) if link.attempt == attempt => Ok(link.clone()),
            _ => Err(Status::failed_precondition(format!(
                "attempt {attempt} of job {job_id} is not running with checkpoints (any more)"
            ))),
        }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = std::result::Result<ArtifactChunk, Status>> + Send>>;
type ControlStream =
    Pin<Box<dyn Stream<Item = std::result::Result<CheckpointControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl JobManagerService for Rpc {
    async fn register_task_manager(
        &self,
        request: Request<RegisterTaskManagerRequest>,
    ) -> std::result::Result<Response<RegisterTaskManagerResponse>, Status> {
        let r = request.into_inner();
        if r.slots == 0 {
            return Err(Status::invalid_argument("a TaskManager needs at least one slot"));
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", r.rpc_address))
            .map_err(|e| Status::invalid_argument(format!("bad rpc address {:?}: {e}", r.rpc_address)))?
            .connect_timeout(Duration::from_secs(5))
            // A frozen TaskManager must not hold up a job master.
            .timeout(Duration::from_secs(10));
        let add_token = crate::rpc::AddToken::new(self.0.rpc_token.as_deref())
            .map_err(|e| Status::internal(e.to_string()))?;
        let client = TaskExecutorServiceClient::with_interceptor(endpoint.connect_lazy(), add_token);
        if self.0.shared.lock().taskmanagers.contains_key(&r.taskmanager_id) {
            lose_taskmanager(&self.0.shared, &r.taskmanager_id, "it registered again (restarted)");
        }
        tracing::info!(taskmanager = %r.taskmanager_id, address = %r.rpc_address, slots = r.slots,
            "TaskManager registered");
        self.0.shared.lock().taskmanagers.insert(
            r.taskmanager_id.clone(),
            TaskManagerEntry {
                id: r.taskmanager_id,
                rpc_address: r.rpc_address,
                data_host: r.data_host,
                slots: vec![None; r.slots as usize],
                last_heartbeat: Instant::now(),
                registered_ms: now_ms(),
                cpu_cores: r.cpu_cores,
                physical_memory: r.physical_memory,
                client,
                metrics: Default::default(),
            },
        );
        self.0.shared.slots_changed.notify_waiters();
        Ok(Response::new(RegisterTaskManagerResponse {
            heartbeat_interval_ms: self.0.heartbeat_interval.as_millis() as u64,
            max_artifact_bytes: self.0.artifacts.max_bytes(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> std::result::Result<Response<HeartbeatResponse>, Status> {
        let HeartbeatRequest { taskmanager_id: id, metrics } = request.into_inner();
        let mut state = self.0.shared.lock();
        let known = match state.taskmanagers.get_mut(&id) {
            Some(tm) => {
                tm.last_heartbeat = Instant::now();
                if !metrics.is_empty() {
                    tm.metrics = metrics;
                }
                true
            }
            None => false,
        };
        Ok(Response::new(HeartbeatResponse { known }))
    }

    type FetchArtifactStream = ChunkStream;

    async fn fetch_artifact(
        &self,
        request: Request<FetchArtifactRequest>,
    ) -> std::result::Result<Response<ChunkStream>, Status> {
        let id = request.into_inner().artifact_id;
        let path =
            self.0.artifacts.get(&id).ok_or_else(|| Status::not_found(format!("unknown artifact {id}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || stream_file(&path, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn worker_exited(
        &self,
        request: Request<WorkerExitedRequest>,
    ) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        let events = self.job_events(&r.job_id)?;
        let _ = events.send(JobEvent::WorkerExited {
            attempt: r.attempt,
            worker: r.worker,
            taskmanager: r.taskmanager_id,
            status: r.status,
            success: r.success,
        });
        Ok(Response::new(Ack {}))
    }

    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> std::result::Result<Response<Deployment>, Status> {
        let r = request.into_inner();
        let events = self.job_events(&r.job_id)?;
        let (reply, answer) = oneshot::channel();
        events
            .send(JobEvent::WorkerRegistered {
                attempt: r.attempt,
                worker: r.worker,
                data_address: r.data_address,
                plan_hash: r.plan_hash,
                checkpointing: r.checkpointing,
                operators: r.operators.iter().map(crate::checkpoints::operator_from_proto).collect(),
                reply,
            })
            .map_err(|_| Status::failed_precondition(format!("job {} has ended", r.job_id)))?;
        match answer.await {
            Ok(result) => result.map(Response::new),
            Err(_) => Err(Status::failed_precondition(format!(
                "attempt {} of job {} has ended",
                r.attempt, r.job_id
            ))),
        }
    }

    async fn report_tasks(&self, request: Request<TaskReport>) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        let mut state = self.0.shared.lock();
        let job = state
            .jobs
            .get_mut(&r.job_id)
            .ok_or_else(|| Status::not_found(format!("unknown job {}", r.job_id)))?;
        job.record_tasks(r.attempt, &r.tasks);
        Ok(Response::new(Ack {}))
    }

    type CheckpointControlStream = ControlStream;

    async fn checkpoint_control(
        &self,
        request: Request<CheckpointControlRequest>,
    ) -> std::result::Result<Response<ControlStream>, Status> {
        use tokio_stream::StreamExt;
        let r = request.into_inner();
        let link = self.checkpoint_link(&r.job_id, r.attempt)?;
        let messages = link.take_control(r.worker as usize).ok_or_else(|| {
            Status::failed_precondition(format!(
                "attempt {} of job {} has no worker {} waiting for its checkpoint messages (it has its \
                 stream already, or there is no such worker)",
                r.attempt, r.job_id, r.worker
            ))
        })?;
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(messages).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_checkpoint_events(
        &self,
        request: Request<CheckpointEvents>,
    ) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        self.checkpoint_link(&r.job_id, r.attempt)?.deliver(r.events);
        Ok(Response::new(Ack {}))
    }

    async fn worker_finished(
        &self,
        request: Request<WorkerFinishedRequest>,
    ) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        let events = self.job_events(&r.job_id)?;
        let _ = events.send(JobEvent::WorkerFinished {
            attempt: r.attempt,
            worker: r.worker,
            success: r.success,
            error: r.error,
            caused_by_peer: r.caused_by_peer,
        });
        Ok(Response::new(Ack {}))
    }
}

fn stream_file(path: &std::path::Path, tx: mpsc::Sender<std::result::Result<ArtifactChunk, Status>>) {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Err(Status::internal(format!("cannot open the artifact: {e}"))));
            return;
        }
    };
    let total_size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut first = true;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                let chunk = ArtifactChunk { data: buf, total_size: if first { total_size } else { 0 } };
                first = false;
                if tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::internal(format!("cannot read the artifact: {e}"))));
                return;
            }
        }
    }
}

/// A running JobManager: where it listens, and how to stop it.
pub struct JobManagerHandle {
    pub rest_address: SocketAddr,
    pub rpc_address: SocketAddr,
    /// Where the Prometheus reporter serves `/metrics`, when it is enabled.
    pub prometheus_address: Option<SocketAddr>,
    pub jobmanager: Arc<JobManager>,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// The artifact directory, when it is this JobManager's own temporary one.
    temporary_dir: Option<std::path::PathBuf>,
}

impl JobManagerHandle {
    /// Stops serving and waits for the servers to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        if let Some(dir) = self.temporary_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn bind_error(address: &str, source: std::io::Error) -> EddyError {
    EddyError::Network { action: "cannot bind", address: address.to_string(), source }
}

/// Whether `host` only accepts connections from this machine.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Starts a JobManager's RPC and REST servers (on the current tokio runtime).
pub async fn start(config: Configuration) -> Result<JobManagerHandle> {
    let rpc_host = options::or_default(config.get(&options::JOBMANAGER_RPC_ADDRESS)?, "127.0.0.1");
    let rpc_port = config.get(&options::JOBMANAGER_RPC_PORT)?;
    let rest_host = options::or_default(config.get(&options::REST_ADDRESS)?, &rpc_host);
    let rest_bind = options::or_default(config.get(&options::REST_BIND_ADDRESS)?, &rest_host);
    let rest_port = config.get(&options::REST_PORT)?;
    let token = config.get_optional(&options::REST_SUBMISSION_TOKEN)?.filter(|t| !t.is_empty());
    let max_upload = config.get(&options::REST_UPLOAD_MAX_SIZE)?.0;

    let rpc_token = crate::rpc::token(&config)?;
    crate::rpc::check_exposure(&rpc_host, &rpc_token, "JobManager")?;
    let rpc_bind = format!("{rpc_host}:{rpc_port}");
    let rpc_listener =
        tokio::net::TcpListener::bind(&rpc_bind).await.map_err(|e| bind_error(&rpc_bind, e))?;
    let rpc_address = rpc_listener.local_addr().map_err(|e| bind_error(&rpc_bind, e))?;
    let rest_bind_address = format!("{rest_bind}:{rest_port}");
    let rest_listener = tokio::net::TcpListener::bind(&rest_bind_address)
        .await
        .map_err(|e| bind_error(&rest_bind_address, e))?;
    let rest_address = rest_listener.local_addr().map_err(|e| bind_error(&rest_bind_address, e))?;

    let (artifact_dir, temporary_dir) = match config.get_optional(&options::WEB_UPLOAD_DIR)? {
        Some(dir) if !dir.trim().is_empty() => (std::path::PathBuf::from(dir), None),
        _ => {
            let dir = std::env::temp_dir().join(format!(
                "eddy-jobmanager-{}-{}",
                std::process::id(),
                rpc_address.port()
            ));
            (dir.clone(), Some(dir))
        }
    };
    let jobmanager = Arc::new(JobManager {
        shared: Shared::new(),
        artifacts: ArtifactStore::open(artifact_dir.join("artifacts"), max_upload)?,
        master_settings: MasterSettings {
            slot_request_timeout: config.get(&options::SLOT_REQUEST_TIMEOUT)?,
            registration_timeout: config.get(&options::WORKER_REGISTRATION_TIMEOUT)?,
            rpc_address: rpc_address.to_string(),
            evenly_spread_out_slots: config.get(&options::EVENLY_SPREAD_OUT_SLOTS)?,
        },
        heartbeat_interval: config.get(&options::HEARTBEAT_INTERVAL)?,
        heartbeat_timeout: config.get(&options::HEARTBEAT_TIMEOUT)?,
        token,
        rest_exposed: !is_loopback(&rest_bind),
        started_ms: now_ms(),
        rest_address,
        rpc_token: rpc_token.clone(),
        process: Default::default(),
        config,
    });
    if jobmanager.rest_exposed && jobmanager.token.is_none() {
        tracing::warn!(address = %rest_address,
            "the REST API is reachable from other machines and rest.submission.token is not set: \
             job submission, uploads and cancellation are refused");
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut servers = Vec::new();

    let rpc = tonic::service::interceptor::InterceptedService::new(
        JobManagerServiceServer::new(Rpc(jobmanager.clone()))
            .max_decoding_message_size(crate::rpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::rpc::MAX_MESSAGE_BYTES),
        crate::rpc::CheckToken::new(rpc_token.as_deref()),
    );
    let routes = tonic::service::Routes::new(rpc);
    servers.push(crate::rpc::spawn_server(routes, rpc_listener, shutdown_rx.clone(), "JobManager"));

    let router = crate::rest::router(jobmanager.clone());
    let mut stop = shutdown_rx.clone();
    servers.push(tokio::spawn(async move {
        let result = axum::serve(rest_listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the REST server ended");
        }
    }));

    let monitor = jobmanager.clone();
    let stop_prom = shutdown_rx.clone();
    let mut stop = shutdown_rx;
    servers.push(tokio::spawn(async move {
        let period =
            (monitor.heartbeat_timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let timeout = monitor.heartbeat_timeout;
            let lost: Vec<String> = monitor
                .shared
                .lock()
                .taskmanagers
                .values()
                .filter(|tm| tm.last_heartbeat.elapsed() > timeout)
                .map(|tm| tm.id.clone())
                .collect();
            for id in lost {
                lose_taskmanager(
                    &monitor.shared,
                    &id,
                    &format!("no heartbeat for {timeout:?} (heartbeat.timeout)"),
                );
            }
        }
    }));
    let prometheus_address = match crate::prometheus::config(&jobmanager.config)? {
        Some(prom) => {
            let page = jobmanager.clone();
            let render: crate::prometheus::Render =
                Arc::new(move || crate::rest_metrics::prometheus_page(&page));
            let (address, server) = crate::prometheus::serve(&prom, render, stop_prom).await?;
            servers.push(server);
            Some(address)
        }
        None => None,
    };
    tracing::info!(rpc = %rpc_address, rest = %rest_address, "JobManager started");
    Ok(JobManagerHandle {
        rest_address,
        rpc_address,
        prometheus_address,
        jobmanager,
        shutdown,
        servers,
        temporary_dir,
    })
}

/// Runs a JobManager in the foreground until the process is interrupted or terminated.
pub fn run_foreground(config: Configuration) -> Result<()> {
    let runtime = crate::runtime("jobmanager")?;
    runtime.block_on(async {
        let handle = start(config).await?;
        println!("JobManager running: REST API http://{} , RPC {}", handle.rest_address, handle.rpc_address);
        if let Some(address) = handle.prometheus_address {
            println!("JobManager Prometheus metrics: http://{address}/metrics");
        }
        crate::wait_for_termination().await;
        tracing::info!("JobManager stopping");
        handle.shutdown().await;
        Ok(())
    })
}
