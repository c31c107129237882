//! The metric routes of the REST API, with Flink's paths and response shapes.
//!
//! Subtask metrics come from the workers' reports (every half second, see
//! [`crate::worker`]); job metrics from the job's entry and its checkpoint statistics;
//! TaskManager metrics from their heartbeats; JobManager metrics from this process.
//!
//! - `GET /jobs/:jobid/vertices/:vid/metrics[?get=a,b]`: `[{"id"}]`, or `[{"id","value"}]`
//!   with `get`; ids are `<subtask>.<metric>` (`0.numRecordsIn`, `0.Map.numRecordsOut`);
//! - `GET /jobs/:jobid/vertices/:vid/subtasks/metrics[?get=..&agg=min,max,avg,sum&subtasks=0,1]`:
//!   aggregates over subtasks, `[{"id","min","max","avg","sum"}]`;
//! - `GET /jobs/:jobid/vertices/:vid/watermarks`: each subtask's `currentInputWatermark`;
//! - `GET /jobs/:jobid/vertices/:vid/backpressure`: each subtask's share of time
//!   backpressured, idle and busy, and its level (ok ≤ 0.10 < low ≤ 0.5 < high);
//! - `GET /jobs/:jobid/metrics`, `GET /taskmanagers/:id/metrics`, `GET /jobmanager/metrics`.
//!
//! Values are strings, as Flink sends them; unknown names in `get` are left out.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use eddy_runtime::JobStatus;
use serde_json::{json, Value};

use crate::jobmanager::state::{now_ms, ClusterState, JobEntry};
use crate::rest::{find_vertex, job_not_found, ok, ApiError, ApiResult, Jm};

pub use eddy_runtime::metrics::{backpressure_level, format_value};

/// The metric routes, merged into the REST router.
pub fn routes() -> axum::Router<Jm> {
    use axum::routing::get;
    axum::Router::new()
        .route("/jobs/{jobid}/vertices/{vertexid}/metrics", get(vertex_metrics))
        .route("/jobs/{jobid}/vertices/{vertexid}/subtasks/metrics", get(subtasks_metrics))
        .route("/jobs/{jobid}/vertices/{vertexid}/watermarks", get(watermarks))
        .route("/jobs/{jobid}/vertices/{vertexid}/backpressure", get(backpressure))
        .route("/jobs/{jobid}/metrics", get(job_metrics))
        .route("/taskmanagers/{id}/metrics", get(taskmanager_metrics))
        .route("/jobmanager/metrics", get(jobmanager_metrics))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct MetricsQuery {
    get: Option<String>,
    agg: Option<String>,
    subtasks: Option<String>,
}

fn names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// Flink's answer to a metric query: the names, or the values of the names asked for.
pub fn metric_list(values: &BTreeMap<String, f64>, get: Option<&str>) -> Value {
    match get {
        None => Value::Array(values.keys().map(|id| json!({ "id": id })).collect()),
        Some(list) => Value::Array(
            names(list)
                .filter_map(|id| values.get(id).map(|v| json!({ "id": id, "value": format_value(*v) })))
                .collect(),
        ),
    }
}

/// The latest metrics of each subtask of vertex `v` (empty before its first report).
fn subtask_metrics(job: &JobEntry, v: usize, parallelism: usize) -> Vec<HashMap<String, f64>> {
    (0..parallelism)
        .map(|s| job.tasks.get(&(v as u32, s as u32)).map(|t| t.metrics.clone()).unwrap_or_default())
        .collect()
}

fn job<'a>(state: &'a ClusterState, id: &str) -> Result<&'a JobEntry, ApiError> {
    state.jobs.get(id).ok_or_else(|| job_not_found(id))
}

pub async fn vertex_metrics(
    State(jm): State<Jm>,
    Path((id, vertex_id)): Path<(String, String)>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult {
    let state = jm.shared.lock();
    let job = job(&state, &id)?;
    let (v, info) = find_vertex(job, &vertex_id)?;
    let mut values = BTreeMap::new();
    for (s, metrics) in subtask_metrics(job, v, info.parallelism).into_iter().enumerate() {
        values.extend(metrics.into_iter().map(|(name, value)| (format!("{s}.{name}"), value)));
    }
    ok(metric_list(&values, q.get.as_deref()))
}

/// min, max, avg and sum of each metric over the chosen subtasks.
pub fn aggregate(subtasks: &[HashMap<String, f64>], get: &str, agg: Option<&str>) -> Value {
    let wanted: Vec<&str> = match agg {
        Some(a) => names(a).filter(|n| matches!(*n, "min" | "max" | "avg" | "sum")).collect(),
        None => vec!["min", "max", "avg", "sum"],
    };
    let mut out = Vec::new();
    for id in names(get) {
        let values: Vec<f64> = subtasks.iter().filter_map(|m| m.get(id).copied()).collect();
        if values.is_empty() {
            continue;
        }
        let sum: f64 = values.iter().sum();
        let mut entry = serde_json::Map::new();
        entry.insert("id".into(), json!(id));
        for a in &wanted {
            let x = match *a {
                "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "avg" => sum / values.len() as f64,
                _ => sum,
            };
            entry.insert(a.to_string(), json!(x));
        }
        out.push(Value::Object(entry));
    }
    Value::Array(out)
}

pub async fn subtasks_metrics(
    State(jm): State<Jm>,
    Path((id, vertex_id)): Path<(String, String)>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult {
    let state = jm.shared.lock();
    let job = job(&state, &id)?;
    let (v, info) = find_vertex(job, &vertex_id)?;
    let mut subtasks = subtask_metrics(job, v, info.parallelism);
    if let Some(list) = q.subtasks.as_deref() {
        let chosen: Vec<usize> = names(list)
            .map(|s| {
                s.parse::<usize>().map_err(|_| {
                    ApiError(StatusCode::BAD_REQUEST, format!("subtasks: {s:?} is not a subtask index"))
                })
            })
            .collect::<Result<_, _>>()?;
        subtasks = chosen.into_iter().filter_map(|s| subtasks.get(s).cloned()).collect();
    }
    match q.get.as_deref() {
        Some(get) => ok(aggregate(&subtasks, get, q.agg.as_deref())),
        None => {
            let all: BTreeMap<String, f64> =
                subtasks.iter().flat_map(|m| m.keys().map(|k| (k.clone(), 0.0))).collect();
            ok(metric_list(&all, None))
        }
    }
}

pub async fn watermarks(State(jm): State<Jm>, Path((id, vertex_id)): Path<(String, String)>) -> ApiResult {
    let state = jm.shared.lock();
    let job = job(&state, &id)?;
    let (v, info) = find_vertex(job, &vertex_id)?;
    let list: Vec<Value> = subtask_metrics(job, v, info.parallelism)
        .iter()
        .enumerate()
        .filter_map(|(s, m)| {
            m.get("currentInputWatermark")
                .map(|w| json!({ "id": format!("{s}.currentInputWatermark"), "value": format_value(*w) }))
        })
        .collect();
    ok(Value::Array(list))
}

/// One subtask's entry of the backpressure response, from its metrics.
pub fn backpressure_entry(subtask: usize, attempt: u32, m: &HashMap<String, f64>) -> Value {
    let per_second = |name: &str| m.get(name).copied().unwrap_or(0.0) / 1000.0;
    let ratio = per_second("backPressuredTimeMsPerSecond");
    json!({
        "subtask": subtask,
        "attempt-number": attempt,
        "backpressure-level": backpressure_level(ratio),
        "ratio": ratio,
        "idleRatio": per_second("idleTimeMsPerSecond"),
        "busyRatio": per_second("busyTimeMsPerSecond"),
    })
}

pub async fn backpressure(State(jm): State<Jm>, Path((id, vertex_id)): Path<(String, String)>) -> ApiResult {
    let state = jm.shared.lock();
    let job = job(&state, &id)?;
    let (v, info) = find_vertex(job, &vertex_id)?;
    let metrics = subtask_metrics(job, v, info.parallelism);
    let worst = metrics
        .iter()
        .map(|m| m.get("backPressuredTimeMsPerSecond").copied().unwrap_or(0.0) / 1000.0)
        .fold(0.0, f64::max);
    let subtasks: Vec<Value> =
        metrics.iter().enumerate().map(|(s, m)| backpressure_entry(s, job.attempt, m)).collect();
    ok(json!({
        "status": "ok",
        "backpressure-level": backpressure_level(worst),
        "end-timestamp": now_ms(),
        "subtasks": subtasks,
    }))
}

/// Flink's job metrics of a job.
pub fn job_values(job: &JobEntry) -> BTreeMap<String, f64> {
    let running_since = job.timestamps.get("RUNNING").copied();
    let uptime = match (job.status, running_since) {
        (JobStatus::Running, Some(t)) => (now_ms() - t) as f64,
        (s, _) if s.is_terminal() => -1.0,
        _ => 0.0,
    };
    let mut values = BTreeMap::from([
        ("uptime".to_string(), uptime),
        ("numRestarts".to_string(), job.restarts as f64),
        ("fullRestarts".to_string(), job.restarts as f64),
    ]);
    let stats = job.checkpoint_stats.as_ref().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let stats = stats.unwrap_or_default();
    let last = stats.latest_completed_record.as_ref();
    values.extend([
        ("numberOfCompletedCheckpoints".to_string(), stats.completed as f64),
        ("numberOfFailedCheckpoints".to_string(), stats.failed as f64),
        ("numberOfInProgressCheckpoints".to_string(), stats.in_progress as f64),
        ("totalNumberOfCheckpoints".to_string(), stats.triggered as f64),
        ("lastCheckpointDuration".to_string(), last.map_or(-1.0, |r| r.end_to_end_duration() as f64)),
        ("lastCheckpointSize".to_string(), last.map_or(-1.0, |r| r.state_size as f64)),
        ("lastCheckpointRestoreTimestamp".to_string(), stats.restore_timestamp.map_or(-1.0, |t| t as f64)),
    ]);
    values
}

pub async fn job_metrics(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult {
    let state = jm.shared.lock();
    ok(metric_list(&job_values(job(&state, &id)?), q.get.as_deref()))
}

/// A TaskManager's metrics: its slots (as the JobManager sees them) and its heartbeat's.
fn taskmanager_values(tm: &crate::jobmanager::state::TaskManagerEntry) -> BTreeMap<String, f64> {
    let mut values: BTreeMap<String, f64> = tm.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
    values.insert("Status.Slots.Total".into(), tm.slots.len() as f64);
    values.insert("Status.Slots.Free".into(), tm.free_slots() as f64);
    values
}

pub async fn taskmanager_metrics(
    State(jm): State<Jm>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult {
    let state = jm.shared.lock();
    let tm = state
        .taskmanagers
        .get(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("Could not find TaskManager {id}")))?;
    ok(metric_list(&taskmanager_values(tm), q.get.as_deref()))
}

/// The JobManager's metrics: Flink's cluster counts and this process's `Status.*`.
pub fn jobmanager_values(jm: &crate::jobmanager::JobManager) -> BTreeMap<String, f64> {
    let mut values: BTreeMap<String, f64> =
        jm.process.lock().unwrap_or_else(|p| p.into_inner()).sample().into_iter().collect();
    let state = jm.shared.lock();
    values.extend([
        ("numRegisteredTaskManagers".to_string(), state.taskmanagers.len() as f64),
        (
            "numRunningJobs".to_string(),
            state.jobs.values().filter(|j| !j.status.is_terminal()).count() as f64,
        ),
        ("taskSlotsTotal".to_string(), state.total_slots() as f64),
        ("taskSlotsAvailable".to_string(), state.free_slots() as f64),
    ]);
    values
}

pub async fn jobmanager_metrics(State(jm): State<Jm>, Query(q): Query<MetricsQuery>) -> ApiResult {
    ok(metric_list(&jobmanager_values(&jm), q.get.as_deref()))
}

/// A vertex's busy, idle and backpressured time and level for `GET /jobs/:id` (Flink's
/// `accumulated-*-time` fields, in ms, summed over the subtasks).
pub fn vertex_summary(job: &JobEntry, v: usize, parallelism: usize) -> (Value, &'static str) {
    let metrics = subtask_metrics(job, v, parallelism);
    let sum = |name: &str| metrics.iter().filter_map(|m| m.get(name)).sum::<f64>() as i64;
    let worst = metrics
        .iter()
        .map(|m| m.get("backPressuredTimeMsPerSecond").copied().unwrap_or(0.0) / 1000.0)
        .fold(0.0, f64::max);
    let fields = json!({
        "accumulated-backpressured-time": sum("accumulatedBackPressuredTimeMs"),
        "accumulated-idle-time": sum("accumulatedIdleTimeMs"),
        "accumulated-busy-time": sum("accumulatedBusyTimeMs"),
    });
    (fields, backpressure_level(worst))
}

/// The JobManager's Prometheus page: its own metrics and every job's.
pub fn prometheus_page(jm: &crate::jobmanager::JobManager) -> String {
    let mut w = crate::prometheus::TextWriter::default();
    for (name, v) in jobmanager_values(jm) {
        w.sample(&format!("eddy_jobmanager_{name}"), &[], v);
    }
    let state = jm.shared.lock();
    for id in &state.job_order {
        let Some(job) = state.jobs.get(id) else { continue };
        let labels = [("job_id", job.id.as_str()), ("job_name", job.name.as_str())];
        for (name, v) in job_values(job) {
            w.sample(&format!("eddy_jobmanager_job_{name}"), &labels, v);
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_gets_as_flink_does() {
        let values = BTreeMap::from([("0.numRecordsIn".to_string(), 12.0), ("0.x".to_string(), 0.5)]);
        assert_eq!(metric_list(&values, None), json!([{"id": "0.numRecordsIn"}, {"id": "0.x"}]));
        assert_eq!(
            metric_list(&values, Some("0.x,nope,0.numRecordsIn")),
            json!([{"id": "0.x", "value": "0.5"}, {"id": "0.numRecordsIn", "value": "12"}])
        );
    }

    #[test]
    fn aggregates_over_subtasks() {
        let a = HashMap::from([("n".to_string(), 1.0)]);
        let b = HashMap::from([("n".to_string(), 3.0)]);
        let got = aggregate(&[a.clone(), b.clone()], "n,missing", None);
        assert_eq!(got, json!([{"id": "n", "min": 1.0, "max": 3.0, "avg": 2.0, "sum": 4.0}]));
        assert_eq!(aggregate(&[a, b], "n", Some("max")), json!([{"id": "n", "max": 3.0}]));
    }

    #[test]
    fn backpressure_entries_classify_the_ratio() {
        let m = HashMap::from([
            ("backPressuredTimeMsPerSecond".to_string(), 600.0),
            ("idleTimeMsPerSecond".to_string(), 100.0),
            ("busyTimeMsPerSecond".to_string(), 300.0),
        ]);
        let e = backpressure_entry(1, 0, &m);
        assert_eq!(e["backpressure-level"], "high");
        assert_eq!(e["ratio"], 0.6);
        assert_eq!(e["idleRatio"], 0.1);
        assert_eq!(e["busyRatio"], 0.3);
        assert_eq!(backpressure_entry(0, 0, &HashMap::new())["backpressure-level"], "ok");
    }
}
