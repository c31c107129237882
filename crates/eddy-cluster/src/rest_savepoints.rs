//! The savepoint routes of the REST API, with Flink's paths and field names:
//!
//! - `POST /jobs/:jobid/savepoints` `{"target-directory", "cancel-job", "triggerId"}` takes a
//!   savepoint (and cancels the job after it with `cancel-job`);
//! - `POST /jobs/:jobid/stop` `{"targetDirectory", "drain", "triggerId"}` stops the job with a
//!   savepoint;
//! - `GET /jobs/:jobid/savepoints/:triggerid` reports either: `{"status": {"id":
//!   "IN_PROGRESS"}}`, then `{"status": {"id": "COMPLETED"}, "operation": {"location": ...}}`
//!   or, when it failed, `"operation": {"failure-cause": {...}}`.
//!
//! The two `POST`s answer `202 {"request-id": ...}` at once and need the submission token, as
//! every request that stops code does. Every field is optional; without a directory the job's
//! `state.savepoints.dir` is used, and without that the request is refused (400). `formatType`
//! is accepted for Flink's clients: Eddy has one savepoint format (relocatable, canonical).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use eddy_core::CheckpointType;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::rest::{authorize, job_not_found, ok, ApiError, ApiResult, Jm};
use crate::savepoints::{self, After, Operation, SavepointRequest};

/// `POST /jobs/:jobid/savepoints`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
    #[serde(rename = "triggerId")]
    trigger_id: Option<String>,
    #[serde(rename = "formatType")]
    _format_type: Option<FormatType>,
}

/// `POST /jobs/:jobid/stop`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StopBody {
    target_directory: Option<String>,
    #[serde(default)]
    drain: bool,
    trigger_id: Option<String>,
    #[serde(rename = "formatType")]
    _format_type: Option<FormatType>,
}

/// Flink's savepoint formats; Eddy writes one, which is both relocatable and its own.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum FormatType {
    Canonical,
    Native,
}

/// The JSON body, or the defaults for an empty one.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("the {what} request is not valid: {e}")))
}

fn directory(dir: Option<String>) -> Option<std::path::PathBuf> {
    dir.filter(|d| !d.trim().is_empty()).map(std::path::PathBuf::from)
}

fn accepted(jm: &Jm, id: &str, request: SavepointRequest) -> ApiResult {
    let trigger_id = savepoints::trigger(jm, id, request)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger_id }))).into_response())
}

pub(crate) async fn trigger(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    authorize(&jm, &headers)?;
    let b: TriggerBody = body(&bytes, "savepoint")?;
    let request = SavepointRequest {
        kind: CheckpointType::Savepoint,
        target: directory(b.target_directory),
        after: if b.cancel_job { After::Cancel } else { After::Continue },
        trigger_id: b.trigger_id,
    };
    accepted(&jm, &id, request)
}

pub(crate) async fn stop(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    authorize(&jm, &headers)?;
    let b: StopBody = body(&bytes, "stop")?;
    let request = SavepointRequest {
        kind: if b.drain { CheckpointType::SavepointTerminate } else { CheckpointType::SavepointSuspend },
        target: directory(b.target_directory),
        after: After::Finish,
        trigger_id: b.trigger_id,
    };
    accepted(&jm, &id, request)
}

pub(crate) async fn status(
    State(jm): State<Jm>,
    Path((id, trigger_id)): Path<(String, String)>,
) -> ApiResult {
    let state = jm.shared.lock();
    let job = state.jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    let operation = job.savepoints.operation(&trigger_id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "there is no savepoint operation {trigger_id} for job {id} (or it is too old to be kept)"
            ),
        )
    })?;
    ok(match operation {
        Operation::InProgress => json!({ "status": { "id": "IN_PROGRESS" } }),
        Operation::Completed(location) => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "location": location },
        }),
        Operation::Failed(cause) => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "failure-cause": {
                "class": "eddy_core::EddyError",
                "message": cause,
                "stack-trace": cause,
            } },
        }),
    })
}
