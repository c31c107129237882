//! A job master: runs one job's attempts on the cluster.
//!
//! Each attempt allocates the job's slots (slot sharing: as many as the largest vertex
//! parallelism, spread round-robin over the TaskManagers with free slots), asks each chosen
//! TaskManager to start one worker process for its slots, answers the workers' registrations
//! with the deployment (where every subtask runs and where every worker's data plane listens)
//! once all have registered, and waits for every worker to report its end. The first failure —
//! a task's error, a worker process that dies, a TaskManager lost — stops the attempt's workers
//! and frees its slots; the restart strategy then decides whether the job runs again, from the
//! start, after its backoff. The master owns the attempt; it learns everything through
//! [`JobEvent`]s, so the RPC handlers never wait on it except for a registration's answer.
//!
//! A STREAMING job has one [`CheckpointCoordinator`] for its whole life (also without periodic
//! checkpoints: it takes savepoints), made from the operators the first workers describe. It
//! runs while an attempt's workers run (from their deployment on, see [`crate::checkpoints`]),
//! and its savepoint trigger is in the job's entry meanwhile (see [`crate::savepoints`]); a
//! restarted attempt starts from its latest completed checkpoint, which each worker receives
//! with its deployment. A job submitted with `execution.savepoint.path` starts its first
//! attempt from that savepoint, read at submission and checked against the operators once the
//! workers describe them; at another parallelism each worker gets every old subtask's state of
//! the rescaled operators.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_runtime::checkpoint::coordinator::{CheckpointedOperator, RunningCoordinator};
use eddy_runtime::checkpoint::savepoint::check_unclaimed_state;
use eddy_runtime::checkpoint::{
    CheckpointConfig, CheckpointCoordinator, CompletedCheckpoint, SavepointRestoreSettings,
};
use eddy_runtime::restart::RestartStrategy;
use eddy_runtime::JobStatus;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tonic::Status;

use crate::proto::{Deployment, StartWorkerRequest, StopWorkerRequest};

use super::state::{now_ms, ExceptionEntry, Shared, TaskSnapshot};

/// What a job master hears about.
#[derive(Debug)]
pub enum JobEvent {
    WorkerRegistered {
        attempt: u32,
        worker: u32,
        data_address: String,
        plan_hash: String,
        /// The worker's job checkpoints, and then every operator of its graph.
        checkpointing: bool,
        operators: Vec<CheckpointedOperator>,
        reply: oneshot::Sender<Result<Deployment, Status>>,
    },
    /// More checkpoints failed in a row than the job tolerates.
    CheckpointingFailed {
        attempt: u32,
        cause: String,
    },
    WorkerFinished {
        attempt: u32,
        worker: u32,
        success: bool,
        error: String,
        /// The worker failed because a peer closed a channel or the connection.
        caused_by_peer: bool,
    },
    WorkerExited {
        attempt: u32,
        worker: u32,
        taskmanager: String,
        status: String,
        success: bool,
    },
    TaskManagerLost {
        taskmanager: String,
        reason: String,
    },
    Cancel,
}

/// What a submitted job is.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub id: String,
    pub name: String,
    pub artifact: String,
    pub args: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub restart_strategy: RestartStrategy,
    pub slots_needed: usize,
    pub plan_hash: String,
    /// How the job's checkpoint coordinator works; `None`: the job has none (BATCH mode).
    /// STREAMING jobs have one also without periodic checkpoints, for savepoints.
    pub checkpointing: Option<CheckpointConfig>,
    /// The savepoint the first attempt starts from.
    pub restore: Option<Restore>,
}

/// A savepoint a job starts from, read at submission, and how it was asked for.
#[derive(Debug, Clone)]
pub struct Restore {
    pub savepoint: Arc<CompletedCheckpoint>,
    pub settings: SavepointRestoreSettings,
}

/// The cluster settings a job master uses.
#[derive(Debug, Clone)]
pub struct MasterSettings {
    pub slot_request_timeout: Duration,
    pub registration_timeout: Duration,
    /// Where workers reach the JobManager's RPC.
    pub rpc_address: String,
    /// `cluster.evenly-spread-out-slots`.
    pub evenly_spread_out_slots: bool,
}

/// How an attempt ended.
enum Outcome {
    Finished,
    Cancelled,
    Failed {
        cause: String,
        taskmanager: Option<String>,
    },
    /// A failure no restart can mend (the savepoint does not fit the job).
    Unrecoverable(String),
}

fn failed(cause: impl Into<String>) -> Outcome {
    Outcome::Failed { cause: cause.into(), taskmanager: None }
}

/// The TaskManager a worker of the attempt runs on.
struct WorkerPlace {
    taskmanager: String,
    client: crate::rpc::TaskExecutorClient,
}

pub struct JobMaster {
    pub shared: Arc<Shared>,
    pub settings: MasterSettings,
    pub spec: JobSpec,
    pub events: mpsc::UnboundedReceiver<JobEvent>,
    checkpoints: MasterCheckpoints,
}

/// The job master's side of the job's checkpoints.
#[derive(Default)]
struct MasterCheckpoints {
    /// The job's operators, as its workers described them.
    operators: Vec<CheckpointedOperator>,
    /// Between attempts, and before the first deployment: `None` until then.
    coordinator: Option<CheckpointCoordinator>,
    /// While an attempt runs.
    running: Option<RunningCoordinator>,
    /// The checkpoint the next attempt starts from.
    restore: Option<Arc<CompletedCheckpoint>>,
    /// The coordinator panicked: its checkpoints are gone, and no restart can restore.
    lost: bool,
}

impl JobMaster {
    pub fn new(
        shared: Arc<Shared>,
        settings: MasterSettings,
        spec: JobSpec,
        events: mpsc::UnboundedReceiver<JobEvent>,
    ) -> Self {
        let restore = spec.restore.as_ref().map(|r| r.savepoint.clone());
        let checkpoints = MasterCheckpoints { restore, ..MasterCheckpoints::default() };
        JobMaster { shared, settings, spec, events, checkpoints }
    }

    pub async fn run(mut self) {
        let mut backoff = self.spec.restart_strategy.backoff_time_strategy();
        let mut attempt = 0u32;
        loop {
            self.update(|job| {
                job.attempt = attempt;
                job.tasks.clear();
                job.set_status(JobStatus::Running);
            });
            let outcome = self.run_attempt(attempt).await;
            match outcome {
                Outcome::Finished => {
                    tracing::info!(job_id = %self.spec.id, "job finished");
                    self.update(|job| job.set_status(JobStatus::Finished));
                    return;
                }
                Outcome::Cancelled => {
                    tracing::info!(job_id = %self.spec.id, "job cancelled");
                    self.update(|job| job.set_status(JobStatus::Canceled));
                    return;
                }
                Outcome::Unrecoverable(cause) => {
                    self.update(|job| {
                        job.exceptions.push(ExceptionEntry {
                            timestamp: now_ms(),
                            message: cause.clone(),
                            attempt,
                            taskmanager: None,
                        })
                    });
                    return self.fail_for_good(cause);
                }
                Outcome::Failed { cause, taskmanager } => {
                    tracing::warn!(job_id = %self.spec.id, attempt, %cause, "job attempt failed");
                    self.update(|job| {
                        job.exceptions.push(ExceptionEntry {
                            timestamp: now_ms(),
                            message: cause.clone(),
                            attempt,
                            taskmanager: taskmanager.clone(),
                        })
                    });
                    if self.checkpoints.lost {
                        return self.fail_for_good(
                            "the job's checkpoint coordinator is gone (it panicked): a restart could not \
                             restore the job's state"
                                .into(),
                        );
                    }
                    backoff.notify_failure(Instant::now());
                    if !backoff.can_restart() {
                        let strategy = &self.spec.restart_strategy;
                        let root = if matches!(strategy, RestartStrategy::None) {
                            cause
                        } else {
                            let s = if attempt == 1 { "" } else { "s" };
                            format!("{cause} (after {attempt} restart{s}; restart-strategy {strategy})")
                        };
                        tracing::error!(job_id = %self.spec.id, cause = %root, "job failed");
                        self.update(|job| {
                            job.root_cause = Some(root.clone());
                            job.set_status(JobStatus::Failed);
                        });
                        return;
                    }
                    let delay = backoff.backoff();
                    self.update(|job| job.set_status(JobStatus::Restarting));
                    if self.wait_backoff(delay).await {
                        self.update(|job| job.set_status(JobStatus::Canceled));
                        return;
                    }
                    attempt += 1;
                    self.update(|job| job.restarts = attempt);
                    if let Err(cause) = self.prepare_restore().await {
                        return self.fail_for_good(cause);
                    }
                }
            }
        }
    }

    /// Ends the job `FAILED` without asking the restart strategy.
    fn fail_for_good(&self, cause: String) {
        tracing::error!(job_id = %self.spec.id, %cause, "job failed for good");
        self.update(|job| {
            job.root_cause = Some(cause);
            job.set_status(JobStatus::Failed);
        });
    }

    /// Takes the latest completed checkpoint that reads back, for the next attempt; an error
    /// when retained checkpoints exist but none can be read.
    async fn prepare_restore(&mut self) -> Result<(), String> {
        let Some(mut coordinator) = self.checkpoints.coordinator.take() else { return Ok(()) };
        let read = tokio::task::spawn_blocking(move || {
            let restore = coordinator.checkpoint_to_restore();
            (coordinator, restore)
        })
        .await;
        let (coordinator, restore) =
            read.map_err(|e| format!("reading the checkpoint to restore panicked: {e}"))?;
        self.checkpoints.coordinator = Some(coordinator);
        self.checkpoints.restore = restore.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Starts the job's checkpoint coordinator for attempt `attempt` (slot `s` on worker
    /// `slot_workers[s]`), making it first if need be; nothing when the job does not
    /// checkpoint.
    fn start_checkpointing(&mut self, attempt: u32, slot_workers: &[u32]) -> Result<(), String> {
        let Some(config) = &self.spec.checkpointing else { return Ok(()) };
        let coordinator = match self.checkpoints.coordinator.take() {
            Some(c) => c,
            None => {
                let mut c = CheckpointCoordinator::for_operators(
                    &self.spec.id,
                    config.clone(),
                    self.checkpoints.operators.clone(),
                );
                if let Some(restore) = &self.spec.restore {
                    c.restore_from(restore.savepoint.clone());
                    let shared = c.stats();
                    let mut stats = shared.lock().unwrap_or_else(|p| p.into_inner());
                    stats.restore_count += 1;
                    stats.restore_timestamp = Some(now_ms());
                }
                let stats = c.stats();
                self.update(|job| job.checkpoint_stats = Some(stats));
                c
            }
        };
        let (parallelisms, events) = {
            let state = self.shared.lock();
            let job = state.jobs.get(&self.spec.id).ok_or("the job is gone")?;
            (job.vertices.iter().map(|v| v.parallelism).collect::<Vec<_>>(), job.events.clone())
        };
        let fail_job = Box::new(move |e: eddy_core::EddyError| {
            let _ = events.send(JobEvent::CheckpointingFailed { attempt, cause: e.to_string() });
        });
        let operators = &self.checkpoints.operators;
        let started = crate::checkpoints::start_attempt(
            coordinator,
            operators,
            attempt,
            slot_workers,
            &parallelisms,
            fail_job,
        );
        let (link, running) = started.map_err(|e| {
            self.checkpoints.lost = true;
            format!("cannot start the checkpoint coordinator: {e}")
        })?;
        let savepoints = running.savepoint_trigger();
        self.update(|job| {
            job.checkpoint_link = Some(link);
            job.savepoints.trigger = Some(savepoints);
        });
        self.checkpoints.running = Some(running);
        Ok(())
    }

    /// Checks the savepoint the job starts from against the operators its workers described:
    /// state of an operator the job no longer has is an error, unless the job allows it
    /// (`execution.savepoint.ignore-unclaimed-state`).
    fn check_restore(&self) -> Result<(), String> {
        let Some(restore) = &self.spec.restore else { return Ok(()) };
        let ids: std::collections::HashSet<String> =
            self.checkpoints.operators.iter().map(|o| o.id.clone()).collect();
        let path = &restore.settings.path;
        check_unclaimed_state(&restore.savepoint, &ids, path, restore.settings.ignore_unclaimed_state)
            .map_err(|e| format!("{e} (eddy run: --allowNonRestoredState; REST: \"allowNonRestoredState\")"))
    }

    /// Stops the attempt's checkpoint coordinator, after the attempt ended, and keeps it for
    /// the next attempt.
    async fn stop_checkpointing(&mut self) {
        self.update(|job| {
            job.checkpoint_link = None;
            job.savepoints.trigger = None;
        });
        let Some(running) = self.checkpoints.running.take() else { return };
        match tokio::task::spawn_blocking(move || running.stop()).await {
            Ok(Ok(coordinator)) => self.checkpoints.coordinator = Some(coordinator),
            Ok(Err(e)) => {
                tracing::error!(job_id = %self.spec.id, error = %e, "checkpoint coordinator lost");
                self.checkpoints.lost = true;
            }
            Err(e) => {
                tracing::error!(job_id = %self.spec.id, error = %e, "checkpoint coordinator lost");
                self.checkpoints.lost = true;
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut super::state::JobEntry)) {
        if let Some(job) = self.shared.lock().jobs.get_mut(&self.spec.id) {
            f(job);
        }
    }

    /// Waits out a restart backoff; returns whether the job was cancelled meanwhile.
    async fn wait_backoff(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return false,
                event = self.events.recv() => match event {
                    None | Some(JobEvent::Cancel) => return true,
                    Some(other) => reject_stale(other),
                },
            }
        }
    }

    async fn run_attempt(&mut self, attempt: u32) -> Outcome {
        let (places, slot_workers) = match self.allocate(attempt).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        self.update(|job| job.live_attempt = Some(attempt));
        let outcome = self.deploy_and_wait(attempt, &places, slot_workers).await;
        self.update(|job| job.live_attempt = None);
        self.stop_checkpointing().await;
        if !matches!(outcome, Outcome::Finished) {
            for place in &places {
                let request = StopWorkerRequest { job_id: self.spec.id.clone(), attempt };
                let (mut client, taskmanager) = (place.client.clone(), place.taskmanager.clone());
                // In the background: an unreachable TaskManager must not delay the restart;
                // its workers are fenced off when they next report.
                tokio::spawn(async move {
                    if let Err(status) = client.stop_worker(request).await {
                        tracing::debug!(%taskmanager, %status, "cannot stop a worker");
                    }
                });
            }
        }
        {
            let mut state = self.shared.lock();
            state.release_slots(&self.spec.id, attempt);
        }
        self.shared.slots_changed.notify_waiters();
        outcome
    }

    /// Takes `slots_needed` free slots, spread over the TaskManagers, waiting up to
    /// `slot.request.timeout` for enough to be free.
    async fn allocate(&mut self, attempt: u32) -> Result<(Vec<WorkerPlace>, Vec<u32>), Outcome> {
        let needed = self.spec.slots_needed;
        let deadline = tokio::time::Instant::now() + self.settings.slot_request_timeout;
        loop {
            let changed = self.shared.slots_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(allocation) = self.try_allocate(attempt) {
                return Ok(allocation);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = sleep_until(deadline) => {
                    let state = self.shared.lock();
                    let (total, free, tms) = (state.total_slots(), state.free_slots(), state.taskmanagers.len());
                    return Err(failed(format!(
                        "not enough task slots: the job needs {needed} slot{}, the cluster has {total} \
                         ({free} free) on {tms} TaskManager{} (waited {:?}, slot.request.timeout)",
                        if needed == 1 { "" } else { "s" },
                        if tms == 1 { "" } else { "s" },
                        self.settings.slot_request_timeout,
                    )));
                }
                event = self.events.recv() => match event {
                    None | Some(JobEvent::Cancel) => return Err(Outcome::Cancelled),
                    Some(other) => reject_stale(other),
                },
            }
        }
    }

    fn try_allocate(&self, attempt: u32) -> Option<(Vec<WorkerPlace>, Vec<u32>)> {
        let needed = self.spec.slots_needed;
        let mut state = self.shared.lock();
        if state.free_slots() < needed {
            return None;
        }
        // TaskManagers with the most free slots first. By default a TaskManager's free slots are
        // used up before the next one's (Flink's default), which keeps whole TaskManagers free
        // for other jobs; with `cluster.evenly-spread-out-slots` the slots are taken round-robin.
        let mut free: Vec<(String, usize)> =
            state.taskmanagers.values().map(|t| (t.id.clone(), t.free_slots())).filter(|t| t.1 > 0).collect();
        free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut slot_tms: Vec<String> = Vec::with_capacity(needed);
        if self.settings.evenly_spread_out_slots {
            let mut remaining: Vec<usize> = free.iter().map(|f| f.1).collect();
            while slot_tms.len() < needed {
                for (i, (tm, _)) in free.iter().enumerate() {
                    if slot_tms.len() < needed && remaining[i] > 0 {
                        remaining[i] -= 1;
                        slot_tms.push(tm.clone());
                    }
                }
            }
        } else {
            for (tm, n) in &free {
                let take = (*n).min(needed - slot_tms.len());
                slot_tms.extend(std::iter::repeat_n(tm.clone(), take));
            }
        }
        let mut places: Vec<WorkerPlace> = Vec::new();
        let mut slot_workers = Vec::with_capacity(needed);
        for tm_id in &slot_tms {
            let worker = match places.iter().position(|p| &p.taskmanager == tm_id) {
                Some(w) => w,
                None => {
                    let tm = &state.taskmanagers[tm_id];
                    places.push(WorkerPlace { taskmanager: tm_id.clone(), client: tm.client.clone() });
                    places.len() - 1
                }
            };
            slot_workers.push(worker as u32);
            let tm = state.taskmanagers.get_mut(tm_id).expect("listed above");
            let slot = tm.slots.iter_mut().find(|s| s.is_none()).expect("counted as free");
            *slot = Some((self.spec.id.clone(), attempt));
        }
        tracing::info!(job_id = %self.spec.id, attempt, slots = needed,
            taskmanagers = ?places.iter().map(|p| &p.taskmanager).collect::<Vec<_>>(), "slots allocated");
        Some((places, slot_workers))
    }

    async fn deploy_and_wait(
        &mut self,
        attempt: u32,
        places: &[WorkerPlace],
        slot_workers: Vec<u32>,
    ) -> Outcome {
        for (w, place) in places.iter().enumerate() {
            let request = StartWorkerRequest {
                job_id: self.spec.id.clone(),
                attempt,
                worker: w as u32,
                artifact_id: self.spec.artifact.clone(),
                args: self.spec.args.clone(),
                properties: self.spec.properties.clone().into_iter().collect(),
                jobmanager_rpc_address: self.settings.rpc_address.clone(),
            };
            if let Err(status) = place.client.clone().start_worker(request).await {
                let cause = format!(
                    "cannot start a worker on TaskManager {}: {}",
                    place.taskmanager,
                    status.message()
                );
                if status.code() == tonic::Code::Unavailable {
                    super::lose_taskmanager(&self.shared, &place.taskmanager, "it cannot be reached");
                }
                return Outcome::Failed { cause, taskmanager: Some(place.taskmanager.clone()) };
            }
        }
        self.update(|job| {
            let parallelisms: Vec<usize> = job.vertices.iter().map(|v| v.parallelism).collect();
            for (slot, &w) in slot_workers.iter().enumerate() {
                for (v, &parallelism) in parallelisms.iter().enumerate() {
                    if slot < parallelism {
                        job.tasks.insert(
                            (v as u32, slot as u32),
                            TaskSnapshot {
                                state: "DEPLOYING".into(),
                                taskmanager: places[w as usize].taskmanager.clone(),
                                ..TaskSnapshot::default()
                            },
                        );
                    }
                }
            }
        });

        let workers = places.len();
        let mut addresses: Vec<Option<String>> = vec![None; workers];
        let mut replies: Vec<(u32, oneshot::Sender<Result<Deployment, Status>>)> = Vec::new();
        // Whether each worker has reported its end (successful or not).
        let mut reported = vec![false; workers];
        let mut deployed = false;
        let registration_deadline = tokio::time::Instant::now() + self.settings.registration_timeout;
        // A failure caused by a peer (a closed channel) waits this long for the failure that
        // caused it, which is the one to report.
        let mut provisional: Option<(Outcome, tokio::time::Instant)> = None;
        let on_tm = |tm: &str| places.iter().any(|p| p.taskmanager == tm);
        loop {
            let deadline = match &provisional {
                Some((_, until)) => Some(*until),
                None if !deployed => Some(registration_deadline),
                None => None,
            };
            let timeout = async {
                match deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let event = tokio::select! {
                _ = timeout => {
                    if let Some((outcome, _)) = provisional.take() {
                        return outcome;
                    }
                    let missing = addresses.iter().filter(|a| a.is_none()).count();
                    return failed(format!(
                        "{missing} of {workers} worker processes did not register within {:?} \
                         (taskmanager.worker.registration-timeout)",
                        self.settings.registration_timeout
                    ));
                }
                event = self.events.recv() => event,
            };
            match event {
                None | Some(JobEvent::Cancel) => return Outcome::Cancelled,
                Some(JobEvent::WorkerRegistered {
                    attempt: a,
                    worker,
                    data_address,
                    plan_hash,
                    checkpointing,
                    operators,
                    reply,
                }) if a == attempt && (worker as usize) < workers => {
                    if plan_hash != self.spec.plan_hash {
                        let cause = format!(
                            "the job binary built a different job graph in worker {worker} than the one \
                             submitted (graph hash {plan_hash} vs {}): graph construction must not depend on \
                             anything but the program's arguments and configuration",
                            self.spec.plan_hash
                        );
                        let _ = reply.send(Err(Status::failed_precondition(cause.clone())));
                        return failed(cause);
                    }
                    if checkpointing != self.spec.checkpointing.is_some() {
                        let cause = format!(
                            "worker {worker} {} checkpoints, the job master {}: the job's configuration \
                             reached them differently",
                            if checkpointing { "takes" } else { "does not take" },
                            if self.spec.checkpointing.is_some() { "expects them" } else { "does not" },
                        );
                        let _ = reply.send(Err(Status::failed_precondition(cause.clone())));
                        return failed(cause);
                    }
                    if self.checkpoints.operators.is_empty() {
                        self.checkpoints.operators = operators;
                        if let Err(cause) = self.check_restore() {
                            let _ = reply.send(Err(Status::failed_precondition(cause.clone())));
                            return Outcome::Unrecoverable(cause);
                        }
                    }
                    addresses[worker as usize] = Some(data_address);
                    replies.push((worker, reply));
                    if addresses.iter().all(|a| a.is_some()) {
                        if let Err(cause) = self.start_checkpointing(attempt, &slot_workers) {
                            return failed(cause);
                        }
                        let worker_addresses: Vec<String> =
                            addresses.iter().map(|a| a.clone().unwrap_or_default()).collect();
                        for (worker, reply) in replies.drain(..) {
                            let slots: Vec<usize> =
                                (0..slot_workers.len()).filter(|&s| slot_workers[s] == worker).collect();
                            let restore = self.checkpoints.restore.as_ref();
                            let deployment = Deployment {
                                slot_workers: slot_workers.clone(),
                                worker_addresses: worker_addresses.clone(),
                                restore: restore.map(|c| {
                                    crate::checkpoints::checkpoint_for_worker(
                                        c,
                                        &slots,
                                        &self.checkpoints.operators,
                                    )
                                }),
                            };
                            let _ = reply.send(Ok(deployment));
                        }
                        deployed = true;
                        tracing::info!(job_id = %self.spec.id, attempt, workers, "all workers registered");
                    }
                }
                Some(JobEvent::WorkerFinished { attempt: a, worker, success, error, caused_by_peer })
                    if a == attempt && (worker as usize) < workers =>
                {
                    reported[worker as usize] = true;
                    if !success {
                        let taskmanager = places.get(worker as usize).map(|p| p.taskmanager.clone());
                        let outcome = Outcome::Failed { cause: error, taskmanager };
                        if !caused_by_peer {
                            return outcome;
                        }
                        if provisional.is_none() {
                            let until = tokio::time::Instant::now() + Duration::from_secs(2);
                            provisional = Some((outcome, until));
                        }
                    }
                    if reported.iter().all(|r| *r) {
                        return match provisional.take() {
                            Some((outcome, _)) => outcome,
                            None => Outcome::Finished,
                        };
                    }
                }
                Some(JobEvent::WorkerExited { attempt: a, worker, taskmanager, status, success: _ })
                    if a == attempt && !reported.get(worker as usize).copied().unwrap_or(true) =>
                {
                    return Outcome::Failed {
                        cause: format!(
                            "the worker process of the job on TaskManager {taskmanager} ended ({status}) \
                             before its tasks finished"
                        ),
                        taskmanager: Some(taskmanager),
                    };
                }
                Some(JobEvent::CheckpointingFailed { attempt: a, cause }) if a == attempt => {
                    return failed(cause);
                }
                Some(JobEvent::TaskManagerLost { taskmanager, reason }) if on_tm(&taskmanager) => {
                    return Outcome::Failed {
                        cause: format!("TaskManager {taskmanager} was lost: {reason}"),
                        taskmanager: Some(taskmanager),
                    };
                }
                Some(other) => reject_stale(other),
            }
        }
    }
}

/// Answers an event that belongs to no current attempt.
fn reject_stale(event: JobEvent) {
    if let JobEvent::WorkerRegistered { reply, attempt, .. } = event {
        let _ = reply.send(Err(Status::failed_precondition(format!(
            "attempt {attempt} of the job is not running (any more)"
        ))));
    }
}
