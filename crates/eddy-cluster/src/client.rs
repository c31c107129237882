//! The client side of the REST API: what `eddy list`/`cancel` and a job binary in client mode
//! (`eddy run`) use. Blocking, so that `execute` and the CLI need no async runtime.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy_core::{EddyError, Result};
use eddy_runtime::JobExecutionResult;
use serde_json::{json, Value};

use crate::artifacts::sha256_file;

/// A REST client for one JobManager.
pub struct RestClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A job's state as `GET /jobs/:id` reports it.
#[derive(Debug, Clone)]
pub struct JobState {
    pub state: String,
    pub duration_ms: i64,
}

impl RestClient {
    /// `address` is `host:port` (or a full `http://` URL).
    pub fn new(address: &str, token: Option<String>) -> Self {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        RestClient { base, token, agent }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn error(&self, action: &str, e: ureq::Error) -> EddyError {
        EddyError::user(format!("cannot {action} (JobManager REST API at {}): {e}", self.base))
    }

    fn answer(
        &self,
        action: &str,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value)> {
        let mut response = response.map_err(|e| self.error(action, e))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| self.error(action, e))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| EddyError::user(format!("cannot {action}: the JobManager answered {status} with something that is not JSON ({e}): {text:.200}")))?
        };
        if (200..300).contains(&status) {
            Ok((status, value))
        } else {
            let errors = value.get("errors").and_then(Value::as_array).map(|a| {
                a.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            Err(EddyError::user(format!("cannot {action}: {status} {}", errors.unwrap_or(text))))
        }
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let action = format!("GET {path}");
        self.answer(&action, self.agent.get(format!("{}{path}", self.base)).call()).map(|(_, v)| v)
    }

    /// Uploads a job binary unless the JobManager has it already; returns its id.
    pub fn upload_artifact(&self, binary: &Path) -> Result<String> {
        let id = sha256_file(binary)?;
        let known = self
            .agent
            .get(format!("{}/artifacts/{id}", self.base))
            .call()
            .map_err(|e| self.error("look up the artifact", e))?;
        if known.status().as_u16() == 200 {
            return Ok(id);
        }
        let file = std::fs::File::open(binary).map_err(|source| EddyError::Io {
            action: "cannot open",
            path: binary.to_path_buf(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Refused uploads are answered before the body is read, which the sender sees as a
        // broken pipe: check the limit first, and ask again without a body for the reason.
        if let Some(limit) = self.get("/config")?.get("upload-max-size").and_then(Value::as_u64) {
            if size > limit {
                return Err(EddyError::user(format!(
                    "cannot upload the job binary {}: it is {size} bytes, more than the JobManager accepts \
                     ({limit} bytes, rest.upload.max-size)",
                    binary.display()
                )));
            }
        }
        let request = self
            .auth(self.agent.post(format!("{}/artifacts", self.base)))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .header("x-eddy-artifact-sha256", &id);
        let action = "upload the job binary";
        let value = match request.send(ureq::SendBody::from_owned_reader(file)) {
            Ok(response) => self.answer(action, Ok(response))?.1,
            Err(e) => {
                let probe = self.auth(self.agent.post(format!("{}/artifacts", self.base))).send_empty();
                match self.answer(action, probe) {
                    Err(reason) if !reason.to_string().contains("the artifact is empty") => {
                        return Err(reason)
                    }
                    _ => return Err(self.error(action, e)),
                }
            }
        };
        Ok(value.get("id").and_then(Value::as_str).unwrap_or(&id).to_string())
    }

    /// Submits a job; returns its id.
    pub fn submit(
        &self,
        job_name: &str,
        plan: &Value,
        artifact: &str,
        args: &[String],
        properties: &BTreeMap<String, String>,
    ) -> Result<String> {
        let body = json!({
            "jobName": job_name,
            "plan": plan,
            "artifact": artifact,
            "programArgs": args,
            "properties": properties,
        });
        let request = self
            .auth(self.agent.post(format!("{}/jobs", self.base)))
            .header("Content-Type", "application/json");
        let (_, value) = self.answer("submit the job", request.send(body.to_string()))?;
        value.get("jobid").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            EddyError::user(format!("the JobManager accepted the job but sent no job id: {value}"))
        })
    }

    /// Asks the JobManager to cancel a job.
    pub fn cancel(&self, job_id: &str) -> Result<()> {
        let request = self.auth(self.agent.patch(format!("{}/jobs/{job_id}?mode=cancel", self.base)));
        self.answer(&format!("cancel job {job_id}"), request.send_empty()).map(|_| ())
    }

    /// Starts a savepoint of a running job into `target_directory` (default: the job's
    /// `state.savepoints.dir`), cancelling the job after it with `cancel_job`; returns the
    /// trigger id to follow with [`wait_for_savepoint`](Self::wait_for_savepoint).
    pub fn trigger_savepoint(
        &self,
        job_id: &str,
        target_directory: Option<&str>,
        cancel_job: bool,
    ) -> Result<String> {
        let body = json!({ "target-directory": target_directory, "cancel-job": cancel_job });
        self.operation(
            &format!("/jobs/{job_id}/savepoints"),
            &format!("trigger a savepoint of job {job_id}"),
            body,
        )
    }

    /// Stops a job with a savepoint into `target_directory` (default: the job's
    /// `state.savepoints.dir`); with `drain` its sources end their input first. Returns the
    /// trigger id.
    pub fn stop_with_savepoint(
        &self,
        job_id: &str,
        target_directory: Option<&str>,
        drain: bool,
    ) -> Result<String> {
        let body = json!({ "targetDirectory": target_directory, "drain": drain });
        self.operation(&format!("/jobs/{job_id}/stop"), &format!("stop job {job_id} with a savepoint"), body)
    }

    fn operation(&self, path: &str, action: &str, body: Value) -> Result<String> {
        let request = self
            .auth(self.agent.post(format!("{}{path}", self.base)))
            .header("Content-Type", "application/json");
        let (_, value) = self.answer(action, request.send(body.to_string()))?;
        value.get("request-id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            EddyError::user(format!("cannot {action}: the JobManager sent no request id: {value}"))
        })
    }

    /// Polls a savepoint operation until it completes; returns the savepoint's path, or the
    /// reason it failed as the error.
    pub fn wait_for_savepoint(&self, job_id: &str, trigger_id: &str) -> Result<String> {
        let mut pause = Duration::from_millis(20);
        loop {
            let v = self.get(&format!("/jobs/{job_id}/savepoints/{trigger_id}"))?;
            match v.pointer("/status/id").and_then(Value::as_str) {
                Some("IN_PROGRESS") => {}
                Some("COMPLETED") => {
                    if let Some(location) = v.pointer("/operation/location").and_then(Value::as_str) {
                        return Ok(location.to_string());
                    }
                    let cause = v.pointer("/operation/failure-cause");
                    let message = cause
                        .and_then(|c| c.get("message").or(c.get("stack-trace")))
                        .and_then(Value::as_str)
                        .map_or_else(|| v.to_string(), str::to_string);
                    return Err(EddyError::user(format!("the savepoint of job {job_id} failed: {message}")));
                }
                _ => {
                    return Err(EddyError::user(format!(
                        "the JobManager answered the savepoint status of job {job_id} with {v}"
                    )))
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    pub fn job_state(&self, job_id: &str) -> Result<JobState> {
        let v = self.get(&format!("/jobs/{job_id}"))?;
        Ok(JobState {
            state: v.get("state").and_then(Value::as_str).unwrap_or("UNKNOWN").to_string(),
            duration_ms: v.get("duration").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// Polls until the job reaches a terminal state (or `timeout` passes); returns the state.
    pub fn wait_for_end(&self, job_id: &str, timeout: Option<Duration>) -> Result<JobState> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let state = self.job_state(job_id)?;
            if matches!(state.state.as_str(), "FINISHED" | "FAILED" | "CANCELED") {
                return Ok(state);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(state);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// The root cause of a failed job.
    pub fn root_cause(&self, job_id: &str) -> Result<String> {
        let v = self.get(&format!("/jobs/{job_id}/exceptions"))?;
        Ok(v.get("root-exception").and_then(Value::as_str).unwrap_or("(no exception recorded)").to_string())
    }
}

/// Client mode of a job binary: submits this executable and the job graph, then waits for the
/// end unless detached, printing what Flink's client prints.
pub fn submit_self(
    rest: &str,
    token: Option<String>,
    detached: bool,
    job_name: &str,
    plan: &Value,
    properties: &BTreeMap<String, String>,
) -> Result<JobExecutionResult> {
    let client = RestClient::new(rest, token);
    let exe = std::env::current_exe()
        .map_err(|e| EddyError::user(format!("cannot find this program's executable: {e}")))?;
    let artifact = client.upload_artifact(&exe)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let job_id = client.submit(job_name, plan, &artifact, &args, properties)?;
    println!("Job has been submitted with JobID {job_id}");
    if detached {
        return Ok(JobExecutionResult {
            job_id,
            job_name: job_name.to_string(),
            net_runtime: Duration::ZERO,
        });
    }
    let state = client.wait_for_end(&job_id, None)?;
    match state.state.as_str() {
        "FINISHED" => {
            println!("Program execution finished");
            println!("Job with JobID {job_id} has finished.");
            println!("Job Runtime: {} ms", state.duration_ms);
            Ok(JobExecutionResult {
                job_id,
                job_name: job_name.to_string(),
                net_runtime: Duration::from_millis(state.duration_ms.max(0) as u64),
            })
        }
        "CANCELED" => Err(EddyError::Cancelled(job_id)),
        _ => Err(EddyError::user(format!("Job {job_id} failed: {}", client.root_cause(&job_id)?))),
    }
}
