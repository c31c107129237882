//! The JobManager's REST API: Flink's paths and field names where Flink has them, JSON in and
//! out, errors as `{"errors": [...]}` with the matching status code. `GET /openapi.json`
//! describes every route.
//!
//! Job submission is two requests, as with Flink's jar upload and run: `POST /artifacts` with
//! the job binary as the body (stored by its SHA-256, size-limited by `rest.upload.max-size`),
//! then `POST /jobs` naming the artifact. Requests that start or stop code (uploads,
//! submissions, cancellation, savepoints and stop-with-savepoint) need `Authorization: Bearer <rest.submission.token>` when a token
//! is configured, and are refused when the server is reachable from other machines without one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy_runtime::JobStatus;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::artifacts::{is_artifact_id, ArtifactError};
use crate::jobmanager::state::{now_ms, JobEntry, TaskManagerEntry};
use crate::jobmanager::{JobManager, Rejection, SubmitRequest};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, as written in the OpenAPI document (`{param}` style).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/overview"),
    ("get", "/config"),
    ("get", "/taskmanagers"),
    ("get", "/taskmanagers/{taskmanagerid}"),
    ("get", "/jobs"),
    ("post", "/jobs"),
    ("get", "/jobs/overview"),
    ("get", "/jobs/{jobid}"),
    ("patch", "/jobs/{jobid}"),
    ("get", "/jobs/{jobid}/plan"),
    ("get", "/jobs/{jobid}/config"),
    ("get", "/jobs/{jobid}/vertices/{vertexid}"),
    ("get", "/jobs/{jobid}/exceptions"),
    ("get", "/jobs/{jobid}/metrics"),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/metrics"),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/subtasks/metrics"),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/watermarks"),
    ("get", "/jobs/{jobid}/vertices/{vertexid}/backpressure"),
    ("get", "/taskmanagers/{taskmanagerid}/metrics"),
    ("get", "/jobmanager/metrics"),
    ("get", "/jobs/{jobid}/checkpoints"),
    ("get", "/jobs/{jobid}/checkpoints/config"),
    ("get", "/jobs/{jobid}/checkpoints/details/{checkpointid}"),
    ("get", "/jobs/{jobid}/checkpoints/details/{checkpointid}/subtasks/{vertexid}"),
    ("post", "/jobs/{jobid}/savepoints"),
    ("get", "/jobs/{jobid}/savepoints/{triggerid}"),
    ("post", "/jobs/{jobid}/stop"),
    ("post", "/artifacts"),
    ("get", "/artifacts/{artifactid}"),
    ("post", "/artifacts/{artifactid}/run"),
    ("get", "/openapi.json"),
];

pub(crate) type Jm = Arc<JobManager>;

/// An error response: `{"errors": [message]}`.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [self.1] }))).into_response()
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), r.message)
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

pub fn router(jm: Jm) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/config", get(config))
        .route("/taskmanagers", get(taskmanagers))
        .route("/taskmanagers/{id}", get(taskmanager))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{jobid}", get(job_details).patch(job_patch))
        .route("/jobs/{jobid}/plan", get(job_plan))
        .route("/jobs/{jobid}/config", get(job_config))
        .route("/jobs/{jobid}/vertices/{vertexid}", get(vertex_details))
        .route("/jobs/{jobid}/exceptions", get(job_exceptions))
        .route("/jobs/{jobid}/checkpoints", get(crate::rest_checkpoints::statistics))
        .route("/jobs/{jobid}/checkpoints/config", get(crate::rest_checkpoints::config))
        .route("/jobs/{jobid}/checkpoints/details/{checkpointid}", get(crate::rest_checkpoints::details))
        .route(
            "/jobs/{jobid}/checkpoints/details/{checkpointid}/subtasks/{vertexid}",
            get(crate::rest_checkpoints::subtasks),
        )
        .route("/jobs/{jobid}/savepoints", post(crate::rest_savepoints::trigger))
        .route("/jobs/{jobid}/savepoints/{triggerid}", get(crate::rest_savepoints::status))
        .route("/jobs/{jobid}/stop", post(crate::rest_savepoints::stop))
        .route("/artifacts", post(upload))
        .route("/artifacts/{id}", get(artifact))
        .route("/artifacts/{id}/run", post(crate::rest_run::run))
        .route("/openapi.json", get(openapi))
        .merge(crate::rest_metrics::routes())
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(jm)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Checks the bearer token of a request that starts or stops code.
pub(crate) fn authorize(jm: &JobManager, headers: &HeaderMap) -> Result<(), ApiError> {
    match &jm.token {
        None if jm.rest_exposed => Err(ApiError(
            StatusCode::FORBIDDEN,
            "job submission, uploads, cancellation and savepoints are disabled: the REST API is reachable from other \
             machines and rest.submission.token is not configured"
                .into(),
        )),
        None => Ok(()),
        Some(token) => {
            let given = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                Ok(())
            } else {
                Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "this request needs the header 'Authorization: Bearer <rest.submission.token>'".into(),
                ))
            }
        }
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn overview(State(jm): State<Jm>) -> ApiResult {
    let state = jm.shared.lock();
    let count = |s: JobStatus| state.jobs.values().filter(|j| j.status == s).count();
    let running = state.jobs.values().filter(|j| !j.status.is_terminal()).count();
    ok(json!({
        "taskmanagers": state.taskmanagers.len(),
        "slots-total": state.total_slots(),
        "slots-available": state.free_slots(),
        "jobs-running": running,
        "jobs-finished": count(JobStatus::Finished),
        "jobs-cancelled": count(JobStatus::Canceled),
        "jobs-failed": count(JobStatus::Failed),
        "eddy-version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn config(State(jm): State<Jm>) -> ApiResult {
    let refresh = jm.config.get(&crate::options::WEB_REFRESH_INTERVAL).map_err(bad_config)?;
    let web_submit = jm.config.get(&crate::options::WEB_SUBMIT_ENABLE).map_err(bad_config)?;
    ok(json!({
        "refresh-interval": refresh.as_millis().max(100) as u64,
        "timezone-name": "UTC",
        "timezone-offset": 0,
        "eddy-version": env!("CARGO_PKG_VERSION"),
        "features": { "web-submit": web_submit, "web-cancel": true, "web-history": false },
        "submission-token-required": jm.token.is_some() || jm.rest_exposed,
        "upload-max-size": jm.artifacts.max_bytes(),
    }))
}

pub(crate) fn bad_config(e: eddy_core::EddyError) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the JobManager's configuration is invalid: {e}"))
}

fn taskmanager_json(tm: &TaskManagerEntry) -> Value {
    let since = tm.last_heartbeat.elapsed().as_millis() as i64;
    json!({
        "id": tm.id,
        "path": tm.rpc_address,
        "dataPort": -1,
        "jmxPort": -1,
        "timeSinceLastHeartbeat": now_ms() - since,
        "slotsNumber": tm.slots.len(),
        "freeSlots": tm.free_slots(),
        "hardware": {
            "cpuCores": tm.cpu_cores,
            "physicalMemory": tm.physical_memory,
            "freeMemory": 0,
            "managedMemory": 0,
        },
        "dataHost": tm.data_host,
        "registered": tm.registered_ms,
    })
}

async fn taskmanagers(State(jm): State<Jm>) -> ApiResult {
    let state = jm.shared.lock();
    ok(json!({ "taskmanagers": state.taskmanagers.values().map(taskmanager_json).collect::<Vec<_>>() }))
}

async fn taskmanager(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let tm = state
        .taskmanagers
        .get(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("Could not find TaskManager {id}")))?;
    let mut value = taskmanager_json(tm);
    let allocated: Vec<Value> = tm
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.as_ref().map(|(job, attempt)| json!({"slot": i, "jobId": job, "attempt": attempt}))
        })
        .collect();
    value["allocatedSlots"] = json!(allocated);
    ok(value)
}

async fn jobs(State(jm): State<Jm>) -> ApiResult {
    let state = jm.shared.lock();
    let jobs: Vec<Value> = state
        .job_order
        .iter()
        .filter_map(|id| state.jobs.get(id))
        .map(|j| json!({ "id": j.id, "status": j.status.as_str() }))
        .collect();
    ok(json!({ "jobs": jobs }))
}

const TASK_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
];

/// Per-state counts of a job's subtasks (the current attempt's; created when not yet reported).
fn task_counts(job: &JobEntry, vertex: Option<usize>) -> BTreeMap<&str, usize> {
    let mut counts: BTreeMap<&str, usize> = TASK_STATES.iter().map(|s| (*s, 0)).collect();
    for (v, info) in job.vertices.iter().enumerate() {
        if vertex.is_some_and(|x| x != v) {
            continue;
        }
        for s in 0..info.parallelism {
            let state = job.tasks.get(&(v as u32, s as u32)).map_or("CREATED", |t| t.state.as_str());
            let state = if job.status == JobStatus::Finished { "FINISHED" } else { state };
            *counts.entry(state).or_default() += 1;
        }
    }
    counts
}

fn duration(job: &JobEntry) -> i64 {
    job.end_ms.unwrap_or_else(now_ms) - job.submitted_ms
}

async fn jobs_overview(State(jm): State<Jm>) -> ApiResult {
    let state = jm.shared.lock();
    let jobs: Vec<Value> = state
        .job_order
        .iter()
        .filter_map(|id| state.jobs.get(id))
        .map(|job| {
            let counts = task_counts(job, None);
            let mut tasks: serde_json::Map<String, Value> =
                counts.iter().map(|(k, v)| (k.to_ascii_lowercase(), json!(v))).collect();
            tasks.insert("total".into(), json!(counts.values().sum::<usize>()));
            json!({
                "jid": job.id,
                "name": job.name,
                "state": job.status.as_str(),
                "start-time": job.submitted_ms,
                "end-time": job.end_ms.unwrap_or(-1),
                "duration": duration(job),
                "last-modification": job.last_modification_ms,
                "tasks": tasks,
            })
        })
        .collect();
    ok(json!({ "jobs": jobs }))
}

/// The vertex `vertex_id` of `job` and its index, or a 404 naming both.
pub(crate) fn find_vertex<'a>(
    job: &'a JobEntry,
    vertex_id: &str,
) -> Result<(usize, &'a crate::jobmanager::state::VertexInfo), ApiError> {
    job.vertices
        .iter()
        .enumerate()
        .find(|(_, v)| v.id == vertex_id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("Job {} has no vertex {vertex_id}", job.id)))
}

pub(crate) fn job_not_found(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Job {id} not found"))
}

/// A vertex's state from its subtasks', as Flink aggregates them.
fn vertex_state(counts: &BTreeMap<&str, usize>, total: usize) -> &'static str {
    let has = |s: &str| counts.get(s).copied().unwrap_or(0) > 0;
    if has("FAILED") {
        "FAILED"
    } else if has("CANCELING") {
        "CANCELING"
    } else if has("CANCELED") {
        "CANCELED"
    } else if counts.get("FINISHED").copied().unwrap_or(0) == total && total > 0 {
        "FINISHED"
    } else if has("RUNNING") || has("FINISHED") {
        "RUNNING"
    } else if has("DEPLOYING") {
        "DEPLOYING"
    } else if has("SCHEDULED") {
        "SCHEDULED"
    } else {
        "CREATED"
    }
}

async fn job_details(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let complete = job.status.is_terminal();
    let vertices: Vec<Value> = job
        .vertices
        .iter()
        .enumerate()
        .map(|(v, info)| {
            let counts = task_counts(job, Some(v));
            let subtasks: Vec<_> =
                (0..info.parallelism).filter_map(|s| job.tasks.get(&(v as u32, s as u32))).collect();
            let sum = |f: fn(&crate::jobmanager::state::TaskSnapshot) -> u64| {
                subtasks.iter().map(|t| f(t)).sum::<u64>()
            };
            let start = subtasks.iter().map(|t| t.start_ms).filter(|t| *t > 0).min().unwrap_or(-1);
            let (times, backpressure) = crate::rest_metrics::vertex_summary(job, v, info.parallelism);
            let end = if subtasks.len() == info.parallelism && subtasks.iter().all(|t| t.end_ms > 0) {
                subtasks.iter().map(|t| t.end_ms).max().unwrap_or(-1)
            } else {
                -1
            };
            json!({
                "id": info.id,
                "name": info.name,
                "parallelism": info.parallelism,
                "status": vertex_state(&counts, info.parallelism),
                "start-time": start,
                "end-time": end,
                "duration": if start < 0 { -1 } else if end < 0 { now_ms() - start } else { end - start },
                "tasks": counts,
                "metrics": {
                    "read-bytes": sum(|t| t.bytes_in),
                    "read-bytes-complete": complete,
                    "write-bytes": sum(|t| t.bytes_out),
                    "write-bytes-complete": complete,
                    "read-records": sum(|t| t.records_in),
                    "read-records-complete": complete,
                    "write-records": sum(|t| t.records_out),
                    "write-records-complete": complete,
                    "accumulated-backpressured-time": times["accumulated-backpressured-time"],
                    "accumulated-idle-time": times["accumulated-idle-time"],
                    "accumulated-busy-time": times["accumulated-busy-time"],
                },
                "backpressure-level": backpressure,
            })
        })
        .collect();
    let mut timestamps: serde_json::Map<String, Value> = [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "FAILED",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "SUSPENDED",
        "RECONCILING",
    ]
    .iter()
    .map(|s| (s.to_string(), json!(0)))
    .collect();
    for (s, t) in &job.timestamps {
        timestamps.insert(s.to_string(), json!(t));
    }
    let status_counts = task_counts(job, None);
    ok(json!({
        "jid": job.id,
        "name": job.name,
        "isStoppable": false,
        "state": job.status.as_str(),
        "job-type": job.plan.get("type").cloned().unwrap_or(json!("STREAMING")),
        "start-time": job.submitted_ms,
        "end-time": job.end_ms.unwrap_or(-1),
        "duration": duration(job),
        "maxParallelism": -1,
        "now": now_ms(),
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": status_counts,
        "plan": job.plan,
        "restarts": job.restarts,
    }))
}

async fn vertex_details(State(jm): State<Jm>, Path((id, vertex_id)): Path<(String, String)>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let (v, info) = find_vertex(job, &vertex_id)?;
    let subtasks: Vec<Value> = (0..info.parallelism)
        .map(|s| {
            let task = job.tasks.get(&(v as u32, s as u32)).cloned().unwrap_or_default();
            let state = if task.state.is_empty() { "CREATED" } else { task.state.as_str() };
            let end = if task.end_ms > 0 { task.end_ms } else { -1 };
            let start = if task.start_ms > 0 { task.start_ms } else { -1 };
            json!({
                "subtask": s,
                "status": state,
                "attempt": job.attempt,
                "taskmanager-id": task.taskmanager,
                "start-time": start,
                "end-time": end,
                "duration": if start < 0 { -1 } else if end < 0 { now_ms() - start } else { end - start },
                "metrics": {
                    "read-bytes": task.bytes_in,
                    "write-bytes": task.bytes_out,
                    "read-records": task.records_in,
                    "write-records": task.records_out,
                },
            })
        })
        .collect();
    ok(json!({
        "id": info.id,
        "name": info.name,
        "parallelism": info.parallelism,
        "now": now_ms(),
        "subtasks": subtasks,
    }))
}

async fn job_plan(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    ok(json!({ "plan": job.plan }))
}

/// Whether a configuration key may hold a secret, whose value is then not shown.
fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "apikey", "api-key", "credential", "private-key", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

async fn job_config(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let user_config: serde_json::Map<String, Value> = job
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), json!(if is_sensitive(k) { "******" } else { v.as_str() })))
        .collect();
    let parallelism = job
        .properties
        .get(eddy_core::config::options::PARALLELISM_DEFAULT.key)
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(-1);
    let restart = job.properties.get("restart-strategy.type").map_or("cluster default", String::as_str);
    ok(json!({
        "jid": job.id,
        "name": job.name,
        "execution-config": {
            "execution-mode": "PIPELINED",
            "restart-strategy": restart,
            "job-parallelism": parallelism,
            "object-reuse-mode": false,
            "user-config": user_config,
        },
        "program-args": job.program_args,
    }))
}

async fn job_exceptions(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let entries: Vec<Value> = job
        .exceptions
        .iter()
        .rev()
        .map(|e| {
            json!({
                "exceptionName": "JobFailure",
                "stacktrace": e.message,
                "timestamp": e.timestamp,
                "taskName": Value::Null,
                "endpoint": Value::Null,
                "taskManagerId": e.taskmanager,
                "attempt": e.attempt,
                "failureLabels": {},
                "concurrentExceptions": [],
            })
        })
        .collect();
    let root = job.root_cause.clone().or_else(|| job.exceptions.last().map(|e| e.message.clone()));
    ok(json!({
        "root-exception": root,
        "timestamp": job.exceptions.last().map(|e| e.timestamp),
        "all-exceptions": [],
        "truncated": false,
        "exceptionHistory": { "entries": entries, "truncated": false },
    }))
}

#[derive(serde::Deserialize)]
struct PatchQuery {
    mode: Option<String>,
}

async fn job_patch(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    Query(query): Query<PatchQuery>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&jm, &headers)?;
    match query.mode.as_deref().unwrap_or("cancel") {
        "cancel" => {
            jm.cancel(&id)?;
            Ok((StatusCode::ACCEPTED, Json(json!({})).into_response()).into_response())
        }
        other => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown mode {other:?}: only 'cancel' is supported"),
        )),
    }
}

async fn submit(State(jm): State<Jm>, headers: HeaderMap, body: Bytes) -> ApiResult {
    authorize(&jm, &headers)?;
    let request: SubmitRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the job submission is not valid JSON of the expected shape: {e}"),
        )
    })?;
    let id = jm.submit(request)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "jobid": id, "jobUrl": format!("/jobs/{id}") }))).into_response())
}

async fn upload(State(jm): State<Jm>, headers: HeaderMap, body: Body) -> ApiResult {
    authorize(&jm, &headers)?;
    let limit = jm.artifacts.max_bytes();
    let too_large = |limit| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the artifact is larger than the limit of {limit} bytes (rest.upload.max-size)"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut writer =
        jm.artifacts.writer().map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("the upload broke off: {e}")))?;
        writer.write(&chunk).map_err(|e| artifact_error(e, limit))?;
    }
    let expected = headers.get("x-eddy-artifact-sha256").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (id, size) = tokio::task::block_in_place(|| writer.finish(expected.as_deref()))
        .map_err(|e| artifact_error(e, limit))?;
    tracing::info!(artifact = %id, size, "artifact stored");
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "size": size }))).into_response())
}

fn artifact_error(e: ArtifactError, limit: u64) -> ApiError {
    match e {
        ArtifactError::TooLarge { .. } => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the artifact is larger than the limit of {limit} bytes (rest.upload.max-size)"),
        ),
        ArtifactError::Io(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        other => ApiError(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

/// A 400 unless `id` has the form of an artifact id.
pub(crate) fn check_artifact_id(id: &str) -> Result<(), ApiError> {
    if is_artifact_id(id) {
        return Ok(());
    }
    Err(ApiError(StatusCode::BAD_REQUEST, format!("{id:?} is not an artifact id (64 hex digits)")))
}

async fn artifact(State(jm): State<Jm>, Path(id): Path<String>) -> ApiResult {
    check_artifact_id(&id)?;
    let size = jm
        .artifacts
        .size(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown artifact {id}")))?;
    ok(json!({ "id": id, "size": size }))
}
