//! The checkpoint routes of the REST API, with Flink's paths and field names:
//! `/jobs/:jobid/checkpoints` (counts, summary, latest, history), `.../checkpoints/config`,
//! `.../checkpoints/details/:checkpointid` (with a summary per job vertex) and
//! `.../details/:checkpointid/subtasks/:vertexid` (per subtask).
//!
//! Durations are in milliseconds and sizes in bytes. `checkpoint_duration.sync` is the time a
//! subtask's thread spent in the snapshot, `async` the time its snapshot thread spent on the
//! deferred parts. Eddy does not measure what Flink reports about alignment and in-flight
//! data: those fields are 0. A job that does not checkpoint answers 404, as in Flink.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use eddy_core::config::{CheckpointRetention, CheckpointingMode};
use eddy_core::CheckpointType;
use eddy_runtime::checkpoint::coordinator::{CheckpointRecord, CheckpointStatus, SubtaskAck, Summary};
use eddy_runtime::checkpoint::CheckpointStats;
use serde_json::{json, Map, Value};

use crate::jobmanager::state::{now_ms, JobEntry};
use crate::rest::{job_not_found, ok, ApiError, ApiResult, Jm};

/// The job's checkpoint statistics, or a 404 when the job does not checkpoint.
fn with_stats<T>(
    jm: &Jm,
    id: &str,
    f: impl FnOnce(&JobEntry, &CheckpointStats) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let state = jm.shared.lock();
    let job = state.jobs.get(id).ok_or_else(|| job_not_found(id))?;
    if job.checkpoint_config.is_none() {
        return Err(not_enabled(id));
    }
    let stats = job.checkpoint_stats.as_ref().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone());
    f(job, &stats.unwrap_or_default())
}

fn not_enabled(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Checkpointing is not enabled for job {id}"))
}

pub(crate) async fn statistics(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let body = with_stats(&jm, &id, |_, stats| {
        let restored = stats.restored.map(|rid| {
            let record = stats.latest_completed_record.iter().chain(&stats.history).find(|r| r.id == rid);
            json!({
                "id": rid,
                "restore_timestamp": stats.restore_timestamp,
                "is_savepoint": record.is_some_and(|r| r.kind == CheckpointType::Savepoint),
                "external_path": record.and_then(|r| r.external_path.clone()),
            })
        });
        let savepoint = stats
            .history
            .iter()
            .rev()
            .find(|r| r.kind == CheckpointType::Savepoint && r.status == CheckpointStatus::Completed);
        Ok(json!({
            "counts": {
                "restored": stats.restore_count,
                "total": stats.triggered,
                "in_progress": stats.in_progress,
                "completed": stats.completed,
                "failed": stats.failed,
            },
            "summary": {
                "checkpointed_size": summary(&stats.state_size),
                "state_size": summary(&stats.state_size),
                "end_to_end_duration": summary(&stats.end_to_end_duration),
                "alignment_buffered": summary(&Summary::default()),
                "processed_data": summary(&Summary::default()),
                "persisted_data": summary(&Summary::default()),
            },
            "latest": {
                "completed": stats.latest_completed_record.as_ref().map(|r| checkpoint(r, None)),
                "savepoint": savepoint.map(|r| checkpoint(r, None)),
                "failed": stats.latest_failed_record.as_ref().map(|r| checkpoint(r, None)),
                "restored": restored,
            },
            "history": stats.history.iter().rev().map(|r| checkpoint(r, None)).collect::<Vec<_>>(),
        }))
    })?;
    ok(body)
}

fn summary(s: &Summary) -> Value {
    json!({ "min": s.min, "max": s.max, "avg": s.avg() })
}

/// One checkpoint as Flink's `CheckpointStatistics`; with the job's vertices, its `tasks`.
fn checkpoint(r: &CheckpointRecord, job: Option<&JobEntry>) -> Value {
    let class = match r.status {
        CheckpointStatus::InProgress => ".PendingCheckpointStatistics",
        CheckpointStatus::Completed => ".CompletedCheckpointStatistics",
        CheckpointStatus::Failed => ".FailedCheckpointStatistics",
    };
    let mut tasks = Map::new();
    if let Some(job) = job {
        for (v, (parallelism, acks)) in &r.vertices {
            if let Some(info) = job.vertices.get(*v) {
                tasks.insert(info.id.clone(), vertex_summary(r, *parallelism, acks));
            }
        }
    }
    let mut value = json!({
        "className": class,
        "id": r.id,
        "status": r.status.as_str(),
        "is_savepoint": r.kind == CheckpointType::Savepoint,
        "savepointFormat": Value::Null,
        "trigger_timestamp": r.trigger_timestamp,
        "latest_ack_timestamp": r.latest_ack_timestamp.unwrap_or(-1),
        "checkpointed_size": r.state_size,
        "state_size": r.state_size,
        "end_to_end_duration": r.end_to_end_duration(),
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": 0,
        "num_subtasks": r.num_subtasks,
        "num_acknowledged_subtasks": r.num_acknowledged_subtasks,
        "checkpoint_type": r.kind.as_str(),
        "tasks": tasks,
    });
    match r.status {
        CheckpointStatus::Completed => {
            value["external_path"] = json!(r.external_path);
            value["discarded"] = json!(false);
        }
        CheckpointStatus::Failed => {
            value["failure_timestamp"] = json!(r.end_timestamp);
            value["failure_message"] = json!(r.failure_message);
        }
        CheckpointStatus::InProgress => {}
    }
    value
}

/// One job vertex's part of a checkpoint (Flink's `TaskCheckpointStatistics`).
fn vertex_summary(r: &CheckpointRecord, parallelism: usize, acks: &[SubtaskAck]) -> Value {
    let latest = acks.iter().map(|a| a.ack_timestamp).max();
    let size: u64 = acks.iter().map(|a| a.state_size).sum();
    let status = if acks.len() == parallelism { "COMPLETED" } else { r.status.as_str() };
    json!({
        "id": r.id,
        "status": status,
        "latest_ack_timestamp": latest.unwrap_or(-1),
        "checkpointed_size": size,
        "state_size": size,
        "end_to_end_duration": latest.map_or(0, |t| (t - r.trigger_timestamp).max(0)),
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": 0,
        "num_subtasks": parallelism,
        "num_acknowledged_subtasks": acks.len(),
    })
}

pub(crate) async fn config(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let c = job.checkpoint_config.as_ref().ok_or_else(|| not_enabled(&id))?;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    ok(json!({
        "mode": match c.mode {
            CheckpointingMode::ExactlyOnce => "exactly_once",
            CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": c.interval.map_or(0, ms),
        "timeout": ms(c.timeout),
        "min_pause": ms(c.min_pause),
        "max_concurrent": c.max_concurrent,
        // With a directory, completed checkpoints stay there when the job ends.
        "externalization": {
            "enabled": c.directory.is_some() && c.retention != CheckpointRetention::NoExternalizedCheckpoints,
            "delete_on_cancellation": c.retention != CheckpointRetention::RetainOnCancellation,
        },
        "state_backend": "HashMapStateBackend",
        "checkpoint_storage": if c.directory.is_some() { "FileSystemCheckpointStorage" } else { "JobManagerCheckpointStorage" },
        "checkpoints_directory": c.directory.as_ref().map(|d| d.display().to_string()),
        "num_retained": c.num_retained,
        "unaligned_checkpoints": false,
        "tolerable_failed_checkpoints": c.tolerable_failures,
        "aligned_checkpoint_timeout": 0,
        "checkpoints_after_tasks_finish": true,
        "state_changelog_enabled": false,
    }))
}

/// The record of checkpoint `cid` of the job, if the history still has it.
fn find<'a>(stats: &'a CheckpointStats, cid: &str) -> Result<&'a CheckpointRecord, ApiError> {
    let missing = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("Could not find checkpointing statistics for checkpoint {cid}"),
        )
    };
    let n: u64 = cid
        .parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("{cid:?} is not a checkpoint id")))?;
    let completed = stats.latest_completed_record.iter();
    let failed = stats.latest_failed_record.iter();
    stats.history.iter().chain(completed).chain(failed).find(|r| r.id == n).ok_or_else(missing)
}

pub(crate) async fn details(State(jm): State<Jm>, Path((id, cid)): Path<(String, String)>) -> ApiResult {
    let body = with_stats(&jm, &id, |job, stats| Ok(checkpoint(find(stats, &cid)?, Some(job))))?;
    ok(body)
}

pub(crate) async fn subtasks(
    State(jm): State<Jm>,
    Path((id, cid, vertex_id)): Path<(String, String, String)>,
) -> ApiResult {
    let body = with_stats(&jm, &id, |job, stats| {
        let r = find(stats, &cid)?;
        let (v, _) = crate::rest::find_vertex(job, &vertex_id)?;
        let (parallelism, acks) = r.vertices.get(&v).map(|(p, a)| (*p, a.as_slice())).unwrap_or((0, &[]));
        let mut size = Summary::default();
        let mut duration = Summary::default();
        let (mut sync, mut asynchronous) = (Summary::default(), Summary::default());
        let subtasks: Vec<Value> = (0..parallelism)
            .map(|s| match acks.iter().find(|a| a.subtask == s) {
                Some(a) => {
                    let e2e = (a.ack_timestamp - r.trigger_timestamp).max(0) as u64;
                    size.add(a.state_size);
                    duration.add(e2e);
                    sync.add(a.sync_duration);
                    asynchronous.add(a.async_duration);
                    json!({
                        "index": s,
                        "status": "completed",
                        "ack_timestamp": a.ack_timestamp,
                        "end_to_end_duration": e2e,
                        "state_size": a.state_size,
                        "checkpointed_size": a.state_size,
                        "checkpoint": { "sync": a.sync_duration, "async": a.async_duration },
                        "alignment": { "buffered": 0, "processed": 0, "persisted": 0, "duration": 0 },
                        "start_delay": 0,
                        "unaligned_checkpoint": false,
                        "aborted": false,
                        "finished": a.finished,
                    })
                }
                None => json!({ "index": s, "status": "pending_or_failed" }),
            })
            .collect();
        let mut value = vertex_summary(r, parallelism, acks);
        let zero = summary(&Summary::default());
        value["summary"] = json!({
            "state_size": summary(&size),
            "checkpointed_size": summary(&size),
            "end_to_end_duration": summary(&duration),
            "checkpoint_duration": { "sync": summary(&sync), "async": summary(&asynchronous) },
            "alignment": { "buffered": zero, "processed": zero, "persisted": zero, "duration": zero },
            "start_delay": zero,
        });
        value["subtasks"] = json!(subtasks);
        value["now"] = json!(now_ms());
        Ok(value)
    })?;
    ok(body)
}
