//! A TaskManager: offers its slots to the JobManager, heartbeats, and runs the job workers the
//! JobManager asks for.
//!
//! A worker is the job's own binary, fetched from the JobManager (content-addressed by SHA-256
//! and cached in the working directory) and started in worker mode for one attempt of one job:
//! it builds the job graph and runs the subtasks of this TaskManager's slots. Running user code
//! in a child process keeps a crashing job from taking the TaskManager down, and lets a
//! cancelled or failed attempt be stopped by killing the process. Each worker's stdin is a pipe
//! from the TaskManager: when the TaskManager dies, even by `kill -9`, the pipe closes and the
//! worker exits, so no orphaned worker keeps running.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_core::{Configuration, EddyError, Result};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::artifacts::ArtifactStore;
use crate::options;
use crate::proto::task_executor_service_server::{TaskExecutorService, TaskExecutorServiceServer};
use crate::proto::*;
use crate::worker::env as wenv;

/// A worker process of (job, attempt).
struct Worker {
    attempt: u32,
    pid: u32,
    kill: tokio::sync::mpsc::Sender<()>,
}

struct TaskManager {
    id: String,
    host: String,
    jobmanager: crate::rpc::JobManagerClient,
    /// `cluster.rpc.token`, handed to workers.
    rpc_token: Option<String>,
    artifacts: ArtifactStore,
    work_dir: PathBuf,
    /// Running workers by job id.
    workers: Mutex<HashMap<String, Worker>>,
    /// One artifact download at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Where this TaskManager's RPC listens; its workers report their metrics there.
    rpc_address: SocketAddr,
    /// The latest task report of each running worker, by (job, attempt, worker).
    reports: Mutex<HashMap<(String, u32, u32), TaskReport>>,
    /// This process's `Status.*` metrics.
    process: Mutex<crate::process_metrics::ProcessSampler>,
}

fn status(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl TaskManager {
    /// The artifact's path, fetched from the JobManager unless cached.
    async fn artifact(&self, id: &str) -> std::result::Result<PathBuf, Status> {
        let _one = self.fetching.lock().await;
        if let Some(path) = self.artifacts.get(id) {
            return Ok(path);
        }
        let mut stream = self
            .jobmanager
            .clone()
            .fetch_artifact(FetchArtifactRequest { artifact_id: id.to_string() })
            .await?
            .into_inner();
        let mut writer = self.artifacts.writer().map_err(status)?;
        while let Some(chunk) = stream.message().await? {
            writer.write(&chunk.data).map_err(status)?;
        }
        let (stored, size) = tokio::task::block_in_place(|| writer.finish(Some(id)))
            .map_err(|e| Status::data_loss(e.to_string()))?;
        tracing::info!(artifact = %stored, size, "artifact fetched");
        self.artifacts.get(&stored).ok_or_else(|| Status::internal("the fetched artifact vanished"))
    }

    fn stop(&self, job_id: &str, attempt: Option<u32>) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(job_id) {
            if attempt.is_none_or(|a| a == w.attempt) {
                let _ = w.kill.try_send(());
            }
        }
    }
}

/// Writes the job's configuration as the worker's `eddy.yaml`; returns its directory.
fn write_worker_conf(dir: &Path, properties: &HashMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| EddyError::Io {
        action: "cannot create",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut text = String::from("# The job's configuration, written by the TaskManager for its worker.\n");
    text.push_str(&properties.iter().collect::<Configuration>().to_yaml());
    let file = dir.join(eddy_core::config::CONF_FILE_NAME);
    std::fs::write(&file, text).map_err(|source| EddyError::Io { action: "cannot write", path: file, source })
}

struct Rpc(Arc<TaskManager>);

#[tonic::async_trait]
impl TaskExecutorService for Rpc {
    async fn start_worker(
        &self,
        request: Request<StartWorkerRequest>,
    ) -> std::result::Result<Response<Ack>, Status> {
        let tm = self.0.clone();
        let r = request.into_inner();
        let binary = tm.artifact(&r.artifact_id).await?;
        // Per TaskManager too: TaskManagers may share a working directory (and its artifact cache).
        let tm_dir = tm.id.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let dir = tm.work_dir.join("jobs").join(&r.job_id).join(format!("{tm_dir}-attempt-{}", r.attempt));
        write_worker_conf(&dir, &r.properties).map_err(status)?;
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(&r.args)
            .env_remove(wenv::CLIENT_REST)
            .env_remove(wenv::DETACHED)
            .env_remove(eddy_core::config::PROPERTIES_ENV)
            .env(eddy_core::config::CONF_DIR_ENV, &dir)
            .env(wenv::JOB_ID, &r.job_id)
            .env(wenv::ATTEMPT, r.attempt.to_string())
            .env(wenv::INDEX, r.worker.to_string())
            .env(wenv::JOBMANAGER_RPC, &r.jobmanager_rpc_address)
            .env(wenv::DATA_HOST, &tm.host)
            .env(wenv::TASKMANAGER_ID, &tm.id)
            .env(wenv::WATCH_STDIN, "1")
            .env(wenv::RPC_TOKEN, tm.rpc_token.as_deref().unwrap_or(""))
            .env(wenv::TASKMANAGER_RPC, tm.rpc_address.to_string())
            .stdin(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            Status::internal(format!("cannot start the job binary {}: {e}", binary.display()))
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(job_id = %r.job_id, attempt = r.attempt, worker = r.worker, pid, "worker started");
        let (kill, mut killed) = tokio::sync::mpsc::channel(1);
        if let Some(old) = tm
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.job_id.clone(), Worker { attempt: r.attempt, pid, kill })
        {
            let _ = old.kill.try_send(());
        }
        tokio::spawn(async move {
            // Held, never written: closes when this TaskManager dies.
            let _stdin = child.stdin.take();
            let exit = tokio::select! {
                exit = child.wait() => exit,
                _ = killed.recv() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let (text, success) = match exit {
                Ok(s) => (describe_exit(&s), s.success()),
                Err(e) => (format!("cannot wait for the process: {e}"), false),
            };
            tracing::info!(job_id = %r.job_id, attempt = r.attempt, pid, status = %text, "worker ended");
            {
                let mut workers = tm.workers.lock().unwrap_or_else(|p| p.into_inner());
                if workers.get(&r.job_id).is_some_and(|w| w.attempt == r.attempt) {
                    workers.remove(&r.job_id);
                }
            }
            tm.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(job, attempt, _), _| !(job == &r.job_id && *attempt == r.attempt));
            let _ = std::fs::remove_dir_all(&dir);
            let report = WorkerExitedRequest {
                job_id: r.job_id,
                attempt: r.attempt,
                worker: r.worker,
                taskmanager_id: tm.id.clone(),
                status: text,
                success,
            };
            if let Err(e) = tm.jobmanager.clone().worker_exited(report).await {
                tracing::debug!(status = %e, "cannot report a worker's end");
            }
        });
        Ok(Response::new(Ack {}))
    }

    async fn report_tasks(&self, request: Request<TaskReport>) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        let tm = &self.0;
        // Only from a worker this TaskManager runs: a late report of an ended one is dropped.
        let running = tm
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&r.job_id)
            .is_some_and(|w| w.attempt == r.attempt);
        if running {
            let key = (r.job_id.clone(), r.attempt, r.worker);
            tm.reports.lock().unwrap_or_else(|p| p.into_inner()).insert(key, r);
        }
        Ok(Response::new(Ack {}))
    }

    async fn stop_worker(
        &self,
        request: Request<StopWorkerRequest>,
    ) -> std::result::Result<Response<Ack>, Status> {
        let r = request.into_inner();
        self.0.stop(&r.job_id, Some(r.attempt));
        Ok(Response::new(Ack {}))
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "ended".to_string(),
    }
}

/// A running TaskManager.
pub struct TaskManagerHandle {
    pub id: String,
    pub rpc_address: SocketAddr,
    /// Where the Prometheus reporter serves `/metrics`, when it is enabled.
    pub prometheus_address: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tm: Arc<TaskManager>,
}

impl TaskManagerHandle {
    /// Stops the workers and the servers.
    pub async fn shutdown(self) {
        let jobs: Vec<String> =
            self.tm.workers.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for job in jobs {
            self.tm.stop(&job, None);
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl TaskManager {
    /// The TaskManager's metrics: its own process's `Status.*`, and its workers' summed up as
    /// `Status.Workers.*` (they run the subtasks, so their memory is the TaskManager's too).
    fn status_metrics(&self) -> Vec<(String, f64)> {
        let mut out = self.process.lock().unwrap_or_else(|p| p.into_inner()).sample();
        let pids: Vec<u32> =
            self.workers.lock().unwrap_or_else(|p| p.into_inner()).values().map(|w| w.pid).collect();
        let mut total = crate::process_metrics::ProcessStatus::default();
        for pid in &pids {
            if let Some(s) = crate::process_metrics::read_process(&pid.to_string()) {
                total.rss_bytes += s.rss_bytes;
                total.virtual_bytes += s.virtual_bytes;
                total.threads += s.threads;
                total.cpu_ticks += s.cpu_ticks;
            }
        }
        out.extend(crate::process_metrics::status_metrics("Status.Workers", &total));
        out.push(("Status.Workers.Count".into(), pids.len() as f64));
        out
    }

    /// The TaskManager's Prometheus page: its metrics and its workers' subtasks'.
    fn prometheus_page(&self) -> String {
        let mut w = crate::prometheus::TextWriter::default();
        let tm_labels = [("tm_id", self.id.as_str())];
        for (name, v) in self.status_metrics() {
            w.sample(&format!("eddy_taskmanager_{name}"), &tm_labels, v);
        }
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        for report in reports.values() {
            for task in &report.tasks {
                let subtask = task.subtask.to_string();
                let labels = [
                    ("job_id", report.job_id.as_str()),
                    ("job_name", report.job_name.as_str()),
                    ("task_name", task.task_name.as_str()),
                    ("subtask_index", subtask.as_str()),
                    ("tm_id", self.id.as_str()),
                ];
                for (name, v) in &task.metrics {
                    match crate::prometheus::split_operator(name) {
                        (None, metric) => {
                            w.sample(&format!("eddy_taskmanager_job_task_{metric}"), &labels, *v)
                        }
                        (Some(op), metric) => {
                            let mut with_op = labels.to_vec();
                            with_op.push(("operator_name", op));
                            w.sample(&format!("eddy_taskmanager_job_task_operator_{metric}"), &with_op, *v);
                        }
                    }
                }
            }
        }
        w.finish()
    }
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// Starts a TaskManager (on the current tokio runtime): binds its RPC, and registers with the
/// JobManager in the background, retrying until the JobManager answers.
pub async fn start(config: Configuration) -> Result<TaskManagerHandle> {
    let host = options::or_default(config.get(&options::TASKMANAGER_HOST)?, "127.0.0.1");
    let port = config.get(&options::TASKMANAGER_RPC_PORT)?;
    let slots = config.get(&eddy_core::config::options::TASK_SLOTS)?;
    let jm_host = options::or_default(config.get(&options::JOBMANAGER_RPC_ADDRESS)?, "127.0.0.1");
    let jm_port = config.get(&options::JOBMANAGER_RPC_PORT)?;
    let heartbeat_interval = config.get(&options::HEARTBEAT_INTERVAL)?;

    let rpc_token = crate::rpc::token(&config)?;
    crate::rpc::check_exposure(&host, &rpc_token, "TaskManager")?;
    let bind = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(|source| EddyError::Network {
        action: "cannot bind",
        address: bind.clone(),
        source,
    })?;
    let rpc_address = listener.local_addr().map_err(|source| EddyError::Network {
        action: "cannot bind",
        address: bind.clone(),
        source,
    })?;
    let id = match config.get_optional(&options::TASKMANAGER_RESOURCE_ID)? {
        Some(id) if !id.trim().is_empty() => id,
        _ => format!("{rpc_address}-{:06x}", eddy_core::random::random_seed() & 0xff_ffff),
    };
    let work_dir = match config.get_optional(&options::WORKING_DIR)? {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir()
            .join(format!("eddy-taskmanager-{}", id.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))),
    };
    let jm_endpoint = format!("http://{jm_host}:{jm_port}");
    let jobmanager = crate::rpc::jobmanager_client(&jm_endpoint, rpc_token.as_deref())?;
    let tm = Arc::new(TaskManager {
        id: id.clone(),
        host: host.clone(),
        jobmanager,
        rpc_token: rpc_token.clone(),
        // The JobManager enforces the upload limit; this only guards against a runaway stream.
        artifacts: ArtifactStore::open(
            work_dir.join("artifacts"),
            config.get(&options::REST_UPLOAD_MAX_SIZE)?.0,
        )?,
        work_dir,
        workers: Mutex::new(HashMap::new()),
        fetching: tokio::sync::Mutex::new(()),
        rpc_address,
        reports: Mutex::new(HashMap::new()),
        process: Default::default(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let server = tonic::service::interceptor::InterceptedService::new(
        TaskExecutorServiceServer::new(Rpc(tm.clone())),
        crate::rpc::CheckToken::new(rpc_token.as_deref()),
    );
    let routes = tonic::service::Routes::new(server);
    tasks.push(crate::rpc::spawn_server(routes, listener, shutdown_rx.clone(), "TaskManager"));

    let registration = RegisterTaskManagerRequest {
        taskmanager_id: id.clone(),
        rpc_address: rpc_address.to_string(),
        slots: slots as u32,
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u32,
        physical_memory: total_memory(),
        data_host: host,
    };
    let heart = tm.clone();
    let mut stop = shutdown_rx;
    tasks.push(tokio::spawn(async move {
        let mut registered = false;
        loop {
            let mut client = heart.jobmanager.clone();
            if !registered {
                match client.register_task_manager(registration.clone()).await {
                    Ok(_) => {
                        tracing::info!(taskmanager = %heart.id, jobmanager = %jm_endpoint, "registered with the JobManager");
                        registered = true;
                    }
                    Err(e) => tracing::warn!(jobmanager = %jm_endpoint, status = %e.message(), "cannot register; retrying"),
                }
            } else {
                let metrics = heart.status_metrics().into_iter().collect();
                match client.heartbeat(HeartbeatRequest { taskmanager_id: heart.id.clone(), metrics }).await {
                    Ok(r) if !r.get_ref().known => {
                        tracing::warn!("the JobManager does not know this TaskManager (any more); registering again");
                        registered = false;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(status = %e.message(), "heartbeat failed"),
                }
            }
            let pause = if registered { heartbeat_interval } else { heartbeat_interval.min(Duration::from_millis(500)) };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }));
    let prometheus_address = match crate::prometheus::config(&config)? {
        Some(prom) => {
            let page = tm.clone();
            let render: crate::prometheus::Render = Arc::new(move || page.prometheus_page());
            let (address, server) = crate::prometheus::serve(&prom, render, shutdown.subscribe()).await?;
            tasks.push(server);
            Some(address)
        }
        None => None,
    };
    tracing::info!(taskmanager = %id, rpc = %rpc_address, slots, "TaskManager started");
    Ok(TaskManagerHandle { id, rpc_address, prometheus_address, shutdown, tasks, tm })
}

/// Runs a TaskManager in the foreground until the process is interrupted or terminated.
pub fn run_foreground(config: Configuration) -> Result<()> {
    let runtime = crate::runtime("taskmanager")?;
    runtime.block_on(async {
        let handle = start(config).await?;
        if let Some(address) = handle.prometheus_address {
            println!("TaskManager {} Prometheus metrics: http://{address}/metrics", handle.id);
        }
        println!("TaskManager {} running: RPC {}", handle.id, handle.rpc_address);
        crate::wait_for_termination().await;
        tracing::info!("TaskManager stopping");
        handle.shutdown().await;
        Ok(())
    })
}
