//! Savepoints of cluster jobs: triggering them on a running job's checkpoint coordinator and
//! following each one to its outcome, as the REST API's asynchronous operations.
//!
//! Every STREAMING job on a cluster has a checkpoint coordinator in its job master (also without
//! periodic checkpoints), and while an attempt runs its [`SavepointTrigger`] is kept in the job's
//! entry. A request starts a savepoint on it and gets a trigger id at once; a task of its own
//! then waits for the savepoint and records the outcome under that id, where
//! `GET /jobs/:jobid/savepoints/:triggerid` finds it. What follows the savepoint depends on the
//! request:
//!
//! - a plain savepoint completes with the savepoint's folder;
//! - with `cancel-job` the job is cancelled once the savepoint is written, and the operation
//!   completes when the job has ended `CANCELED`;
//! - stop-with-savepoint (`POST /jobs/:jobid/stop`) takes a synchronous savepoint after which
//!   the tasks stop (or, with `drain`, end their input first); the operation completes when the
//!   job has ended `FINISHED`.
//!
//! A savepoint that fails leaves the job running, and the operation reports why.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use eddy_core::{CheckpointType, EddyError};
use eddy_runtime::checkpoint::coordinator::{PendingSavepoint, SavepointTrigger};
use eddy_runtime::JobStatus;
use tokio::sync::watch;

use crate::jobmanager::{JobManager, Rejection};

/// How many finished operations a job keeps for status queries (the newest).
const KEPT_OPERATIONS: usize = 64;

/// The savepoint side of one job, in its entry.
#[derive(Default)]
pub struct JobSavepoints {
    /// `state.savepoints.dir` of the job's configuration.
    pub default_dir: Option<PathBuf>,
    /// The job runs in STREAMING mode: it has a checkpoint coordinator to take savepoints.
    pub supported: bool,
    /// The running attempt's trigger, while its coordinator runs.
    pub trigger: Option<SavepointTrigger>,
    /// Trigger id → where the operation is, oldest first.
    operations: VecDeque<(String, Operation)>,
}

/// Where a savepoint operation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    InProgress,
    /// The savepoint's folder.
    Completed(String),
    /// Why it failed.
    Failed(String),
}

impl JobSavepoints {
    pub fn new(default_dir: Option<PathBuf>, supported: bool) -> Self {
        JobSavepoints { default_dir, supported, trigger: None, operations: VecDeque::new() }
    }

    /// The operation with trigger id `id`, if the job knows it.
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.iter().find(|(t, _)| t == id).map(|(_, o)| o)
    }

    fn record(&mut self, id: &str, operation: Operation) {
        match self.operations.iter_mut().find(|(t, _)| t == id) {
            Some(entry) => entry.1 = operation,
            None => {
                if self.operations.len() >= KEPT_OPERATIONS {
                    // The oldest that has ended; operations in progress are never dropped.
                    if let Some(i) = self.operations.iter().position(|(_, o)| *o != Operation::InProgress) {
                        self.operations.remove(i);
                    }
                }
                self.operations.push_back((id.to_string(), operation));
            }
        }
    }
}

/// What happens once the savepoint is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Nothing: the job goes on.
    Continue,
    /// The job is cancelled (`cancel-job`).
    Cancel,
    /// The job stops by itself (a synchronous savepoint): wait for it to finish.
    Finish,
}

/// A savepoint asked for through the REST API.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    pub kind: CheckpointType,
    /// `None`: the job's `state.savepoints.dir`.
    pub target: Option<PathBuf>,
    pub after: After,
    /// The client's own id for the operation: asking again with it does not trigger twice.
    pub trigger_id: Option<String>,
}

fn conflict(message: String) -> Rejection {
    Rejection { status: 409, message }
}

/// Starts a savepoint of job `job_id`; returns the operation's trigger id at once.
pub fn trigger(
    jm: &Arc<JobManager>,
    job_id: &str,
    request: SavepointRequest,
) -> std::result::Result<String, Rejection> {
    let mut state = jm.shared.lock();
    let job =
        state.jobs.get_mut(job_id).ok_or_else(|| Rejection::not_found(format!("Job {job_id} not found")))?;
    if let Some(id) = &request.trigger_id {
        if job.savepoints.operation(id).is_some() {
            return Ok(id.clone());
        }
    }
    if !job.savepoints.supported {
        return Err(Rejection::bad_request(format!(
            "job {job_id} runs in BATCH mode, which takes no savepoints; savepoints are taken of STREAMING jobs"
        )));
    }
    if job.status != JobStatus::Running {
        return Err(conflict(format!(
            "job {job_id} is {}: savepoints are taken of running jobs only",
            job.status.as_str()
        )));
    }
    let Some(savepoints) = job.savepoints.trigger.clone() else {
        return Err(conflict(format!(
            "job {job_id} is not running yet (its tasks are being deployed); try again shortly"
        )));
    };
    let target = request.target.clone().or_else(|| job.savepoints.default_dir.clone()).ok_or_else(|| {
        Rejection::bad_request(format!(
            "no target directory for the savepoint of job {job_id}: name one in the request, or set \
             state.savepoints.dir in the job's configuration"
        ))
    })?;
    let pending = savepoints.trigger(request.kind, Some(target)).map_err(|e| conflict(e.to_string()))?;
    let id = request.trigger_id.clone().unwrap_or_else(eddy_runtime::executor::new_job_id);
    job.savepoints.record(&id, Operation::InProgress);
    let status = job.status_watch.subscribe();
    drop(state);
    tracing::info!(job_id, trigger_id = %id, kind = request.kind.as_str(), "savepoint triggered");
    tokio::spawn(follow(jm.clone(), job_id.to_string(), id.clone(), pending, request.after, status));
    Ok(id)
}

/// Waits for the savepoint and what follows it, and records the outcome.
async fn follow(
    jm: Arc<JobManager>,
    job_id: String,
    trigger_id: String,
    pending: PendingSavepoint,
    after: After,
    status: watch::Receiver<JobStatus>,
) {
    let written = tokio::task::spawn_blocking(move || pending.wait())
        .await
        .unwrap_or_else(|e| Err(EddyError::user(format!("waiting for the savepoint panicked: {e}"))));
    let operation = match written {
        Err(e) => Operation::Failed(e.to_string()),
        Ok(path) => finish(&jm, &job_id, path.display().to_string(), after, status).await,
    };
    match &operation {
        Operation::Failed(cause) => {
            tracing::warn!(%job_id, %trigger_id, %cause, "savepoint operation failed")
        }
        _ => tracing::info!(%job_id, %trigger_id, ?operation, "savepoint operation completed"),
    }
    if let Some(job) = jm.shared.lock().jobs.get_mut(&job_id) {
        job.savepoints.record(&trigger_id, operation);
    }
}

/// After the savepoint at `location` was written: cancels the job or waits for it to finish,
/// as `after` says.
async fn finish(
    jm: &JobManager,
    job_id: &str,
    location: String,
    after: After,
    mut status: watch::Receiver<JobStatus>,
) -> Operation {
    let expected = match after {
        After::Continue => return Operation::Completed(location),
        After::Cancel => {
            if let Err(r) = jm.cancel(job_id) {
                return Operation::Failed(format!(
                    "a savepoint was written to {location}, but the job cannot be cancelled: {}",
                    r.message
                ));
            }
            JobStatus::Canceled
        }
        After::Finish => JobStatus::Finished,
    };
    let ended = status.wait_for(|s| s.is_terminal()).await.map(|s| *s);
    match ended {
        Ok(s) if s == expected => Operation::Completed(location),
        Ok(s) => Operation::Failed(format!(
            "a savepoint was written to {location}, but the job ended {} instead of {}",
            s.as_str(),
            expected.as_str()
        )),
        Err(_) => Operation::Failed(format!(
            "a savepoint was written to {location}, but the job's status can no longer be followed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_operations_make_room_but_those_in_progress_stay() {
        let mut s = JobSavepoints::new(None, true);
        s.record("running", Operation::InProgress);
        for i in 0..KEPT_OPERATIONS + 5 {
            s.record(&format!("done-{i}"), Operation::Completed(format!("/sp/{i}")));
        }
        assert_eq!(s.operations.len(), KEPT_OPERATIONS);
        assert_eq!(s.operation("running"), Some(&Operation::InProgress));
        assert_eq!(s.operation("done-0"), None, "the oldest finished operation left first");
        let last = format!("done-{}", KEPT_OPERATIONS + 4);
        assert_eq!(s.operation(&last), Some(&Operation::Completed(format!("/sp/{}", KEPT_OPERATIONS + 4))));
        s.record("running", Operation::Failed("no".into()));
        assert_eq!(s.operation("running"), Some(&Operation::Failed("no".into())));
    }
}
