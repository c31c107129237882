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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        reply: oneshot::Sender<Result<Deployment, Status>>,
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
    Failed { cause: String, taskmanager: Option<String> },
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
}

impl JobMaster {
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
                }
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
        let mut replies: Vec<oneshot::Sender<Result<Deployment, Status>>> = Vec::new();
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
                Some(JobEvent::WorkerRegistered { attempt: a, worker, data_address, plan_hash, reply })
                    if a == attempt && (worker as usize) < workers =>
                {
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
                    addresses[worker as usize] = Some(data_address);
                    replies.push(reply);
                    if addresses.iter().all(|a| a.is_some()) {
                        let deployment = Deployment {
                            slot_workers: slot_workers.clone(),
                            worker_addresses: addresses
                                .iter()
                                .map(|a| a.clone().unwrap_or_default())
                                .collect(),
                        };
                        for reply in replies.drain(..) {
                            let _ = reply.send(Ok(deployment.clone()));
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
