//! `POST /artifacts/:id/run`: runs an uploaded job binary as `eddy run -d` would, on the
//! JobManager's machine, so that a job can be submitted from the web dashboard.
//!
//! A job's graph is built by its own program, so a browser cannot send `POST /jobs` itself: it
//! uploads the binary, then asks the JobManager to start it in client mode (detached), pointed
//! at this REST server. The program submits its graph with `POST /jobs` (the artifact is already
//! stored, so it is not uploaded again) and exits; its "Job has been submitted with JobID" line
//! gives the job id. This is Flink's `POST /jars/:jarid/run`, which also runs the program's
//! main method on the JobManager. It needs the same token as any submission.

use std::process::Stdio;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use eddy_core::config::options::{PARALLELISM_DEFAULT, SAVEPOINT_IGNORE_UNCLAIMED_STATE, SAVEPOINT_PATH};
use eddy_core::config::PROPERTIES_ENV;
use eddy_core::Configuration;
use serde_json::json;

use crate::rest::{authorize, bad_config, check_artifact_id, ok, ApiError, ApiResult, Jm};
use crate::worker::env;

/// What the dashboard sends (Flink's jar run request, without `entryClass`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    program_args_list: Vec<String>,
    parallelism: Option<u32>,
    savepoint_path: Option<String>,
    allow_non_restored_state: Option<bool>,
}

/// The most of a failed program's output that an error message quotes.
const OUTPUT_TAIL: usize = 2000;

pub(crate) async fn run(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&jm, &headers)?;
    if !jm.config.get(&crate::options::WEB_SUBMIT_ENABLE).map_err(bad_config)? {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "running job binaries through the REST API is disabled (web.submit.enable: false)".into(),
        ));
    }
    let request: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the run request is not valid JSON of the expected shape: {e}"),
            )
        })?
    };
    check_artifact_id(&id)?;
    let binary = jm
        .artifacts
        .get(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown artifact {id}: upload it first")))?;
    if request.parallelism == Some(0) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "parallelism must be at least 1".into()));
    }
    let mut properties = Configuration::new();
    if let Some(p) = request.parallelism {
        properties.set(PARALLELISM_DEFAULT.key, p.to_string());
    }
    if let Some(path) = request.savepoint_path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        properties.set(SAVEPOINT_PATH.key, path);
        let allow = request.allow_non_restored_state.unwrap_or(false);
        properties.set(SAVEPOINT_IGNORE_UNCLAIMED_STATE.key, allow.to_string());
    }
    // The program talks to this server over loopback, whatever address it is bound to.
    let rest = format!("127.0.0.1:{}", jm.rest_address.port());
    let mut command = tokio::process::Command::new(&binary);
    command
        .args(&request.program_args_list)
        .env(env::CLIENT_REST, rest)
        .env(env::DETACHED, "1")
        .env(PROPERTIES_ENV, properties.to_yaml())
        .env_remove(env::JOB_ID)
        .env_remove("EDDY_APPLICATION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match &jm.token {
        Some(token) => command.env(env::TOKEN, token),
        None => command.env_remove(env::TOKEN),
    };
    let timeout = jm.config.get(&crate::options::WEB_TIMEOUT).map_err(bad_config)?;
    let child = command.spawn().map_err(|e| {
        ApiError(StatusCode::BAD_REQUEST, format!("cannot start artifact {id} as a program: {e}"))
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("artifact {id}'s program: {e}")))
        }
        // Dropping the future kills the program (kill_on_drop).
        Err(_) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("artifact {id}'s program did not submit a job within {timeout:?} (web.timeout)"),
            ))
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let job_id = stdout.lines().find_map(|l| l.strip_prefix("Job has been submitted with JobID "));
    match job_id {
        Some(job_id) if output.status.success() => {
            let job_id = job_id.trim();
            tracing::info!(artifact = %id, job_id, "job submitted from a job binary run through the REST API");
            ok(json!({ "jobid": job_id, "jobUrl": format!("/jobs/{job_id}") }))
        }
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let text = if stderr.trim().is_empty() { stdout } else { stderr };
            let text = text.trim();
            let tail = &text[text.len() - tail_len(text, OUTPUT_TAIL)..];
            Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "artifact {id}'s program submitted no job (it exited with {}): {tail}",
                    output.status
                ),
            ))
        }
    }
}

/// The byte length of the last at most `max` bytes of `text`, on a character boundary.
fn tail_len(text: &str, max: usize) -> usize {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.len() - start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_an_output_ends_on_character_boundaries() {
        assert_eq!(tail_len("abc", 10), 3);
        assert_eq!(tail_len("abcdef", 2), 2);
        // "é" is two bytes: a cut inside it moves past it.
        assert_eq!(tail_len("aéb", 2), 1);
    }

    #[test]
    fn a_run_request_takes_flinks_field_names_and_refuses_others() {
        let r: RunRequest = serde_json::from_str(
            r#"{"programArgsList":["--input","x"],"parallelism":2,"savepointPath":"/s","allowNonRestoredState":true}"#,
        )
        .unwrap();
        assert_eq!(r.program_args_list, ["--input", "x"]);
        assert_eq!((r.parallelism, r.savepoint_path.as_deref()), (Some(2), Some("/s")));
        assert_eq!(r.allow_non_restored_state, Some(true));
        assert!(serde_json::from_str::<RunRequest>(r#"{"entryClass":"Main"}"#).is_err());
    }
}
