//! What the JobManager knows: registered TaskManagers with their slots (the resource manager's
//! view) and every job submitted (the dispatcher's view), shared by the RPC services, the job
//! masters and the REST API under one lock that is never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use eddy_runtime::checkpoint::{CheckpointConfig, CheckpointStats};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eddy_runtime::JobStatus;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};

use crate::proto::TaskState;

use super::master::JobEvent;

/// Milliseconds since the Unix epoch, as Flink's REST API reports times.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One slot's holder: (job id, attempt).
pub type SlotOwner = Option<(String, u32)>;

pub struct TaskManagerEntry {
    pub id: String,
    pub rpc_address: String,
    pub data_host: String,
    pub slots: Vec<SlotOwner>,
    pub last_heartbeat: Instant,
    pub registered_ms: i64,
    pub cpu_cores: u32,
    pub physical_memory: u64,
    pub client: crate::rpc::TaskExecutorClient,
    /// The TaskManager's process metrics, from its latest heartbeat.
    pub metrics: HashMap<String, f64>,
}

impl TaskManagerEntry {
    pub fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_none()).count()
    }
}

/// A vertex of a job's graph as the JobManager sees it (from the submitted plan).
#[derive(Debug, Clone)]
pub struct VertexInfo {
    pub id: String,
    pub name: String,
    pub parallelism: usize,
}

/// The latest state and counters of one subtask of the current attempt.
#[derive(Debug, Clone, Default)]
pub struct TaskSnapshot {
    pub state: String,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub taskmanager: String,
    /// Every metric of the subtask by Flink's name, from its latest report.
    pub metrics: HashMap<String, f64>,
}

/// One failure in a job's history.
#[derive(Debug, Clone)]
pub struct ExceptionEntry {
    pub timestamp: i64,
    pub message: String,
    pub attempt: u32,
    pub taskmanager: Option<String>,
}

pub struct JobEntry {
    pub id: String,
    pub name: String,
    pub status: JobStatus,
    pub submitted_ms: i64,
    pub end_ms: Option<i64>,
    pub last_modification_ms: i64,
    /// When the job first entered each status (Flink's `timestamps`).
    pub timestamps: BTreeMap<&'static str, i64>,
    pub plan: Value,
    /// The job's configuration as submitted (`GET /jobs/:id/config`).
    pub properties: BTreeMap<String, String>,
    /// The arguments its binary runs with.
    pub program_args: Vec<String>,
    pub vertices: Vec<VertexInfo>,
    pub attempt: u32,
    /// The attempt whose workers may run now; `None` between attempts. Workers of any other
    /// attempt are told to exit when they report (fencing off zombies of a lost TaskManager).
    pub live_attempt: Option<u32>,
    pub restarts: u32,
    /// (vertex, subtask) → latest report, for the current attempt.
    pub tasks: HashMap<(u32, u32), TaskSnapshot>,
    pub exceptions: Vec<ExceptionEntry>,
    /// The cause that failed the job for good.
    pub root_cause: Option<String>,
    /// How the job checkpoints; `None` when it does not (not configured, or BATCH mode).
    pub checkpoint_config: Option<CheckpointConfig>,
    /// What its checkpoints have done, once its checkpoint coordinator exists.
    pub checkpoint_stats: Option<Arc<Mutex<CheckpointStats>>>,
    /// The checkpoint RPCs' way to the running attempt's coordinator.
    pub checkpoint_link: Option<Arc<crate::checkpoints::AttemptLink>>,
    /// Savepoints: where they go by default, the running attempt's trigger and the
    /// operations asked for through the REST API.
    pub savepoints: crate::savepoints::JobSavepoints,
    /// The job's status as it changes, for whoever waits for the job to end.
    pub status_watch: watch::Sender<JobStatus>,
    pub events: mpsc::UnboundedSender<JobEvent>,
}

impl JobEntry {
    pub fn set_status(&mut self, status: JobStatus) {
        if self.status == status {
            return;
        }
        let now = now_ms();
        self.status = status;
        self.last_modification_ms = now;
        self.timestamps.entry(status.as_str()).or_insert(now);
        if status.is_terminal() {
            self.end_ms = Some(now);
            self.discard_checkpoints(status);
        }
        self.status_watch.send_replace(status);
    }

    /// Deletes the job's checkpoints (`<state.checkpoints.dir>/<job-id>`) when it ends, unless
    /// `execution.checkpointing.externalized-checkpoint-retention` keeps them; before the end is
    /// published.
    fn discard_checkpoints(&self, status: JobStatus) {
        let Some(config) = &self.checkpoint_config else { return };
        let Some(dir) = &config.directory else { return };
        if config.retention.keeps(status == JobStatus::Failed) {
            return;
        }
        let dir = dir.join(&self.id);
        if !dir.exists() {
            return;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(job_id = %self.id, dir = %dir.display(), "deleted the job's checkpoints")
            }
            Err(e) => tracing::warn!(job_id = %self.id, dir = %dir.display(), error = %e,
                "cannot delete the job's checkpoints"),
        }
    }

    pub fn record_tasks(&mut self, attempt: u32, tasks: &[TaskState]) {
        if attempt != self.attempt {
            return;
        }
        let now = now_ms();
        for t in tasks {
            let snap = self.tasks.entry((t.vertex, t.subtask)).or_default();
            if snap.state != t.state {
                if t.state == "RUNNING" && snap.start_ms == 0 {
                    snap.start_ms = now;
                }
                if matches!(t.state.as_str(), "FINISHED" | "FAILED" | "CANCELED") {
                    snap.end_ms = now;
                }
                snap.state = t.state.clone();
            }
            snap.records_in = t.records_in;
            snap.records_out = t.records_out;
            snap.bytes_in = t.bytes_in;
            snap.bytes_out = t.bytes_out;
            if !t.metrics.is_empty() {
                snap.metrics = t.metrics.clone();
            }
        }
        self.last_modification_ms = now;
    }
}

#[derive(Default)]
pub struct ClusterState {
    pub taskmanagers: BTreeMap<String, TaskManagerEntry>,
    /// Jobs by id, and their ids in submission order.
    pub jobs: HashMap<String, JobEntry>,
    pub job_order: Vec<String>,
}

impl ClusterState {
    pub fn total_slots(&self) -> usize {
        self.taskmanagers.values().map(|t| t.slots.len()).sum()
    }

    pub fn free_slots(&self) -> usize {
        self.taskmanagers.values().map(|t| t.free_slots()).sum()
    }

    /// Frees every slot a job attempt holds.
    pub fn release_slots(&mut self, job_id: &str, attempt: u32) {
        for tm in self.taskmanagers.values_mut() {
            for slot in &mut tm.slots {
                if matches!(slot, Some((j, a)) if j == job_id && *a == attempt) {
                    *slot = None;
                }
            }
        }
    }
}

/// The shared state and a signal for "slots may have become free".
pub struct Shared {
    state: Mutex<ClusterState>,
    pub slots_changed: Notify,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared { state: Mutex::new(ClusterState::default()), slots_changed: Notify::new() })
    }

    pub fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
