//! Worker mode: the job binary, started by a TaskManager, runs its share of one job attempt.
//!
//! `execute` calls [`run`] when the worker environment variables are set. The worker builds
//! the job graph exactly as the client did (the graph hash proves it), binds its data-plane
//! listener, registers with the job master and gets the deployment back: which slots are its
//! own and where every other worker listens. It then connects to its peers, builds and runs
//! the subtasks of its slots, reports their states and counters while they run, reports how
//! they ended, and exits. The process never returns to the program's `main`.
//!
//! When the job checkpoints, the worker also describes the job's operators when it registers,
//! builds its subtasks from the checkpoint the deployment carries (after a restart), feeds
//! its tasks the job master's checkpoint messages and sends back their acknowledgements (see
//! [`crate::checkpoints`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use eddy_core::{EddyError, Result};
use eddy_runtime::channel::JobSignals;
use eddy_runtime::checkpoint::{control_channel, TaskCheckpointing};
use eddy_runtime::distributed::{
    build_restored_worker_tasks, describe_operators, run_worker_tasks, Placement, TaskState as RtTaskState,
    WorkerMesh, WorkerTask,
};
use eddy_runtime::executor::ExecutionSettings;
use eddy_runtime::net::NetOptions;
use eddy_runtime::{LocalExecutor, StreamGraph};

use crate::checkpoints::{
    checkpoint_from_proto, next_batch, operator_to_proto, route_control, task_ended_event, WorkerResponder,
};
use crate::proto::{
    CheckpointControlRequest, CheckpointEvent, CheckpointEvents, RegisterWorkerRequest, TaskReport,
    TaskState, WorkerFinishedRequest,
};

/// The environment variables that put a job binary in worker or client mode.
pub mod env {
    /// Client mode: the JobManager's REST address (`host:port`), set by `eddy run`.
    pub const CLIENT_REST: &str = "EDDY_JOBMANAGER_ADDRESS";
    /// Client mode: submit and return without waiting (`eddy run -d`).
    pub const DETACHED: &str = "EDDY_DETACHED";
    /// Client mode: the bearer token for submission.
    pub const TOKEN: &str = "EDDY_SUBMISSION_TOKEN";
    /// Worker mode: the job id; the other worker variables come with it.
    pub const JOB_ID: &str = "EDDY_WORKER_JOB_ID";
    pub const ATTEMPT: &str = "EDDY_WORKER_ATTEMPT";
    pub const INDEX: &str = "EDDY_WORKER_INDEX";
    pub const JOBMANAGER_RPC: &str = "EDDY_WORKER_JOBMANAGER_RPC";
    pub const DATA_HOST: &str = "EDDY_WORKER_DATA_HOST";
    pub const TASKMANAGER_ID: &str = "EDDY_WORKER_TASKMANAGER_ID";
    /// Exit when stdin closes (the TaskManager died).
    pub const WATCH_STDIN: &str = "EDDY_WORKER_WATCH_STDIN";
    /// The cluster's RPC token (`cluster.rpc.token`), empty when there is none.
    pub const RPC_TOKEN: &str = "EDDY_WORKER_RPC_TOKEN";
    /// Where the TaskManager that started the worker takes its metric reports (`host:port`).
    pub const TASKMANAGER_RPC: &str = "EDDY_WORKER_TASKMANAGER_RPC";
}

/// What a TaskManager tells its worker.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    pub job_id: String,
    pub attempt: u32,
    pub worker: u32,
    pub jobmanager_rpc: String,
    pub data_host: String,
    pub taskmanager_id: String,
    /// The TaskManager's RPC address, when it takes metric reports.
    pub taskmanager_rpc: Option<String>,
    pub watch_stdin: bool,
    pub rpc_token: Option<String>,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .map_err(|_| EddyError::user(format!("worker mode needs the environment variable {name}")))
}

impl WorkerEnv {
    /// The worker environment, when this process was started as a worker.
    pub fn from_env() -> Option<Result<WorkerEnv>> {
        let job_id = std::env::var(env::JOB_ID).ok()?;
        let number = |name: &str| -> Result<u32> {
            var(name)?.parse().map_err(|_| EddyError::user(format!("{name} must be a number")))
        };
        Some((|| {
            Ok(WorkerEnv {
                job_id,
                attempt: number(env::ATTEMPT)?,
                worker: number(env::INDEX)?,
                jobmanager_rpc: var(env::JOBMANAGER_RPC)?,
                data_host: std::env::var(env::DATA_HOST).unwrap_or_else(|_| "127.0.0.1".into()),
                taskmanager_id: std::env::var(env::TASKMANAGER_ID).unwrap_or_default(),
                taskmanager_rpc: std::env::var(env::TASKMANAGER_RPC).ok().filter(|a| !a.is_empty()),
                watch_stdin: std::env::var(env::WATCH_STDIN).is_ok_and(|v| v == "1"),
                rpc_token: std::env::var(env::RPC_TOKEN).ok().filter(|t| !t.is_empty()),
            })
        })())
    }
}

/// Exits the process when stdin reaches its end: the TaskManager that started it is gone.
fn watch_stdin() {
    let _ = std::thread::Builder::new().name("worker-parent-watch".into()).spawn(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    eprintln!("eddy worker: the TaskManager is gone; exiting");
                    std::process::exit(3);
                }
                Ok(_) => {}
            }
        }
    });
}

/// The latest state and counters of this worker's subtasks, and whether they changed.
#[derive(Default)]
struct Reports {
    tasks: BTreeMap<(u32, u32), TaskState>,
    changed: bool,
    done: bool,
}

/// Runs this worker's share of the job and exits the process: status 0 when its subtasks
/// finished, 1 otherwise.
pub fn run(worker: WorkerEnv, graph: StreamGraph, settings: ExecutionSettings) -> ! {
    if worker.watch_stdin {
        watch_stdin();
    }
    let code = match run_inner(&worker, graph, settings) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("eddy worker {} of job {}: {e}", worker.worker, worker.job_id);
            1
        }
    };
    std::process::exit(code)
}

fn rpc_error(what: &str, status: tonic::Status) -> EddyError {
    EddyError::user(format!("{what}: {}", status.message()))
}

fn run_inner(worker: &WorkerEnv, graph: StreamGraph, settings: ExecutionSettings) -> Result<()> {
    // Multi-threaded (one thread): the RPC channel's background task must run while the main
    // thread is busy running subtasks and the reporter thread makes calls.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("worker-rpc")
        .enable_all()
        .build()
        .map_err(|e| EddyError::user(format!("cannot start the worker's async runtime: {e}")))?;
    let endpoint = format!("http://{}", worker.jobmanager_rpc);
    let mut client = {
        let _entered = runtime.enter();
        crate::rpc::jobmanager_client(&endpoint, worker.rpc_token.as_deref())?
    };

    let (graph, jg) = LocalExecutor::prepare(&graph, &settings)?;
    let plan = jg.to_plan_json(&graph, "");
    let plan_hash = crate::jobmanager::plan_hash(&plan);
    let checkpointing = eddy_runtime::distributed::checkpoints(&settings, &jg);
    let operators = match checkpointing {
        true => describe_operators(&graph, &jg).iter().map(operator_to_proto).collect(),
        false => Vec::new(),
    };

    let bind = format!("{}:0", worker.data_host);
    let listener = TcpListener::bind(&bind).map_err(|source| EddyError::Network {
        action: "cannot bind",
        address: bind.clone(),
        source,
    })?;
    let data_address = listener.local_addr().map_err(|source| EddyError::Network {
        action: "cannot bind",
        address: bind,
        source,
    })?;

    let mut deployment = runtime
        .block_on(client.register_worker(RegisterWorkerRequest {
            job_id: worker.job_id.clone(),
            attempt: worker.attempt,
            worker: worker.worker,
            data_address: data_address.to_string(),
            plan_hash,
            checkpointing,
            operators,
        }))
        .map_err(|s| rpc_error("the job master refused this worker", s))?
        .into_inner();
    let restore = deployment.restore.take().map(checkpoint_from_proto).transpose()?.map(Arc::new);
    if let Some(c) = &restore {
        tracing::info!(job_id = %worker.job_id, attempt = worker.attempt, checkpoint_id = c.id,
            "restoring this worker's subtasks from a checkpoint");
    }
    let peers: Vec<SocketAddr> = deployment
        .worker_addresses
        .iter()
        .map(|a| {
            a.parse().map_err(|_| EddyError::user(format!("bad worker address {a:?} in the deployment")))
        })
        .collect::<Result<_>>()?;
    let placement = Placement { slot_workers: deployment.slot_workers.iter().map(|&w| w as usize).collect() };

    let outcome = (|| {
        let mesh = WorkerMesh::establish(
            &worker.job_id,
            worker.attempt as usize,
            worker.worker as usize,
            &peers,
            listener,
            NetOptions::default(),
            Duration::from_secs(30),
        )?;
        let signals = Arc::new(JobSignals::default());
        let mut tasks = build_restored_worker_tasks(
            &graph,
            &jg,
            &settings,
            &worker.job_id,
            worker.attempt as usize,
            &placement,
            &mesh,
            &signals,
            restore,
        )?;
        let checkpoint_events = match checkpointing {
            true => Some(start_checkpointing(worker, runtime.handle(), &client, &mut tasks, &settings)?),
            false => None,
        };
        let metrics: Vec<_> =
            tasks.iter().map(|t| (t.vertex as u32, t.subtask as u32, t.metrics.clone())).collect();
        let reports = Arc::new((Mutex::new(Reports::default()), Condvar::new()));
        {
            let mut r = reports.0.lock().unwrap_or_else(|p| p.into_inner());
            for (v, s, _) in &metrics {
                let task_name = jg.vertices.get(*v as usize).map(|x| x.name.clone()).unwrap_or_default();
                r.tasks.insert(
                    (*v, *s),
                    TaskState {
                        vertex: *v,
                        subtask: *s,
                        state: "DEPLOYING".into(),
                        task_name,
                        ..Default::default()
                    },
                );
            }
            r.changed = true;
        }
        let taskmanager = {
            let _entered = runtime.enter();
            worker
                .taskmanager_rpc
                .as_deref()
                .map(|a| crate::rpc::taskexecutor_client(&format!("http://{a}"), worker.rpc_token.as_deref()))
                .transpose()?
        };
        let clients = Clients { jobmanager: client.clone(), taskmanager };
        let reporter = start_reporter(
            worker,
            &settings.job_name,
            runtime.handle().clone(),
            clients,
            reports.clone(),
            metrics,
        )?;
        let (events, events_thread) = checkpoint_events.unzip();
        let on_state = {
            let reports = reports.clone();
            move |vertex: usize, subtask: usize, state: RtTaskState, error: Option<&EddyError>| {
                // After the task's last acknowledgement, on the same queue: the job master
                // must not count it as finished for a checkpoint it acknowledged.
                if let Some(events) = &events {
                    match state {
                        RtTaskState::Running => {}
                        RtTaskState::Finished => drop(events.send(task_ended_event(vertex, subtask, true))),
                        _ => drop(events.send(task_ended_event(vertex, subtask, false))),
                    }
                }
                let mut r = reports.0.lock().unwrap_or_else(|p| p.into_inner());
                let entry = r.tasks.entry((vertex as u32, subtask as u32)).or_default();
                entry.vertex = vertex as u32;
                entry.subtask = subtask as u32;
                entry.state = state.as_str().to_string();
                entry.error = error.map(|e| e.to_string()).unwrap_or_default();
                r.changed = true;
                reports.1.notify_all();
            }
        };
        let mode = jg.runtime_mode;
        let result = run_worker_tasks(tasks, signals, &settings, mode, on_state);
        // Every task and `on_state` are gone, and with them the event queue's senders: the
        // thread sends what is left and ends, before this worker reports its end.
        if let Some(thread) = events_thread {
            let _ = thread.join();
        }
        {
            let mut r = reports.0.lock().unwrap_or_else(|p| p.into_inner());
            r.done = true;
            reports.1.notify_all();
        }
        let _ = reporter.join();
        mesh.close();
        result
    })();

    let caused_by_peer = matches!(outcome, Err(EddyError::Cancelled(_) | EddyError::Network { .. }));
    let finished = WorkerFinishedRequest {
        job_id: worker.job_id.clone(),
        attempt: worker.attempt,
        worker: worker.worker,
        success: outcome.is_ok(),
        error: outcome.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
        caused_by_peer,
    };
    runtime.block_on(client.worker_finished(finished)).map_err(|s| rpc_error("cannot report the end", s))?;
    outcome
}

/// Gives every task its end of the checkpoint protocol: an inbox fed from the job master's
/// control stream (by a thread of its own) and a responder into an ordered event queue, which
/// a second thread sends to the job master. Returns the queue and that thread, which ends
/// once every sender of the queue is gone.
fn start_checkpointing(
    worker: &WorkerEnv,
    runtime: &tokio::runtime::Handle,
    client: &crate::rpc::JobManagerClient,
    tasks: &mut [WorkerTask],
    settings: &ExecutionSettings,
) -> Result<(crossbeam_channel::Sender<CheckpointEvent>, std::thread::JoinHandle<()>)> {
    let (events, queue) = crossbeam_channel::unbounded();
    let responder = Arc::new(WorkerResponder(events.clone()));
    let mut inboxes = HashMap::new();
    for t in tasks.iter_mut() {
        let (tx, rx) = control_channel();
        inboxes.insert((t.vertex as u32, t.subtask as u32), tx);
        let mode = settings.checkpointing.mode;
        t.checkpoints = TaskCheckpointing::new(mode, t.vertex, t.subtask, rx, responder.clone());
    }
    let (job_id, attempt, index) = (worker.job_id.clone(), worker.attempt, worker.worker);
    let request = CheckpointControlRequest { job_id: job_id.clone(), attempt, worker: index };
    let (rt, mut control_client) = (runtime.clone(), client.clone());
    let spawn_error = |e: std::io::Error| EddyError::user(format!("cannot start a checkpoint thread: {e}"));
    std::thread::Builder::new()
        .name("worker-checkpoint-control".into())
        .spawn(move || {
            let mut stream = match rt.block_on(control_client.checkpoint_control(request)) {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::error!(%status, "cannot receive checkpoint messages: checkpoints will time out");
                    return;
                }
            };
            // Ends with the attempt: the job master closes the stream.
            while let Ok(Some(message)) = rt.block_on(stream.message()) {
                route_control(&inboxes, &message);
            }
        })
        .map_err(spawn_error)?;
    let (rt, mut events_client) = (runtime.clone(), client.clone());
    let sender = std::thread::Builder::new()
        .name("worker-checkpoint-events".into())
        .spawn(move || {
            while let Some(batch) = next_batch(&queue) {
                let request =
                    CheckpointEvents { job_id: job_id.clone(), attempt, worker: index, events: batch };
                if let Err(status) = rt.block_on(events_client.report_checkpoint_events(request)) {
                    // The checkpoints concerned time out or are aborted by the job master.
                    tracing::warn!(%status, "cannot send checkpoint acknowledgements");
                }
            }
        })
        .map_err(spawn_error)?;
    Ok((events, sender))
}

/// Where the reporter sends: the job master, and the TaskManager for Prometheus.
struct Clients {
    jobmanager: crate::rpc::JobManagerClient,
    taskmanager: Option<crate::rpc::TaskExecutorClient>,
}

/// Sends the subtasks' states when they change and their metrics every half second, from a
/// thread of its own, until the subtasks have ended (then once more): to the job master, and
/// to the TaskManager that started this worker (which serves them to Prometheus).
fn start_reporter(
    worker: &WorkerEnv,
    job_name: &str,
    runtime: tokio::runtime::Handle,
    clients: Clients,
    reports: Arc<(Mutex<Reports>, Condvar)>,
    metrics: Vec<(u32, u32, Arc<eddy_runtime::task::TaskMetrics>)>,
) -> Result<std::thread::JoinHandle<()>> {
    let (job_id, attempt, index) = (worker.job_id.clone(), worker.attempt, worker.worker);
    let (job_name, taskmanager_id) = (job_name.to_string(), worker.taskmanager_id.clone());
    let Clients { jobmanager: mut client, taskmanager: mut tm_client } = clients;
    std::thread::Builder::new()
        .name("worker-reporter".into())
        .spawn(move || loop {
            let (tasks, done) = {
                let mut r = reports.0.lock().unwrap_or_else(|p| p.into_inner());
                if !r.changed && !r.done {
                    r = reports
                        .1
                        .wait_timeout(r, Duration::from_millis(500))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                r.changed = false;
                for (v, s, m) in &metrics {
                    if let Some(t) = r.tasks.get_mut(&(*v, *s)) {
                        [t.records_in, t.records_out, t.bytes_in, t.bytes_out] = m.snapshot();
                        t.metrics = m.values().into_iter().collect();
                    }
                }
                (r.tasks.values().cloned().collect::<Vec<_>>(), r.done)
            };
            let report = TaskReport {
                job_id: job_id.clone(),
                attempt,
                worker: index,
                tasks,
                job_name: job_name.clone(),
                taskmanager_id: taskmanager_id.clone(),
            };
            if let Some(tm) = &mut tm_client {
                if let Err(e) = runtime.block_on(tm.report_tasks(report.clone())) {
                    tracing::debug!(status = %e, "cannot report task metrics to the TaskManager");
                }
            }
            match runtime.block_on(client.report_tasks(report)) {
                Ok(_) => {}
                Err(e) if matches!(e.code(), tonic::Code::FailedPrecondition | tonic::Code::NotFound) => {
                    // The job master has moved on (the attempt failed or was cancelled):
                    // nothing this process does counts any more.
                    eprintln!("eddy worker: {}; exiting", e.message());
                    std::process::exit(4);
                }
                Err(e) => tracing::debug!(status = %e, "cannot report task states"),
            }
            if done {
                return;
            }
        })
        .map_err(|e| EddyError::user(format!("cannot start the worker's reporter thread: {e}")))
}
