//! Metrics on a cluster: a real JobManager and TaskManager process, the `metrics_demo` job
//! submitted with `eddy run`, its metrics read over the REST API and from the Prometheus
//! reporters of both processes. (`cargo test -p eddy-cli` alone does not build the examples:
//! run `cargo test --workspace`.)

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{example, job_id_from, Cluster};
use serde_json::Value;

/// `GET path` as `{id: value}` of Flink's metric list.
fn metric_values(cluster: &Cluster, path: &str) -> HashMap<String, f64> {
    let list = cluster.get(path);
    list.as_array()
        .unwrap_or_else(|| panic!("{path}: not a list: {list}"))
        .iter()
        .map(|m| {
            let value = m["value"].as_str().unwrap_or_else(|| panic!("{path}: value is not a string: {m}"));
            (m["id"].as_str().unwrap().to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn get_text(url: &str) -> String {
    let mut response = Cluster::agent().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.body_mut().read_to_string().unwrap()
}

/// Checks every line of a Prometheus text page; returns its samples as (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(valid_name(name) && kind == "gauge", "bad TYPE line {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, HashMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let mut labels = HashMap::new();
                // Label values here hold no escaped quotes or commas.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(valid_name(k), "bad label name in {line:?}");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn url_in(line: &str) -> String {
    line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string()
}

fn vertex_id(details: &Value, name_part: &str) -> String {
    details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str().unwrap().contains(name_part))
        .unwrap_or_else(|| panic!("no vertex named like {name_part:?} in {details}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn metrics_of_a_running_job_over_rest_and_prometheus() {
    let props = ["metrics.reporter.prom.port=0", "heartbeat.interval=500 ms"];
    let mut cluster = Cluster::start(&props);
    let jm_prometheus = url_in(&cluster.jobmanager_line("Prometheus metrics"));
    let tm = cluster.spawn_taskmanager(2, &[]);
    let tm_prometheus = url_in(&tm.line_with("Prometheus metrics"));
    let tm_id = tm.line_with("running: RPC").split_whitespace().nth(1).unwrap().to_string();
    cluster.taskmanagers.push((tm_id.clone(), tm));
    cluster.wait_for("the TaskManager to register", |c| {
        c.get("/taskmanagers")["taskmanagers"].as_array().unwrap().iter().any(|t| t["id"] == tm_id.as_str())
    });

    let binary = example("metrics_demo");
    let args = ["run", "-m", cluster.rest.as_str(), "-d", &binary, "-p", "2", "--sink-delay-ms", "20"];
    let (ok, stdout, stderr) = cluster.eddy(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    let details = cluster.get(&format!("/jobs/{job}"));
    let readings = vertex_id(&details, "Readings");
    let sink = vertex_id(&details, "Slow");
    let heartbeats = vertex_id(&details, "Heartbeats");
    let idle_sink = vertex_id(&details, "Idle");
    let vertex = |v: &str, rest: &str| format!("/jobs/{job}/vertices/{v}/{rest}");

    // Counts grow, rates are positive while the job runs.
    let counts = "metrics?get=0.numRecordsOut,1.numRecordsOut,0.numRecordsOutPerSecond";
    let mut first = HashMap::new();
    cluster.wait_for("the readings to flow", |c| {
        first = metric_values(c, &vertex(&readings, counts));
        first.get("0.numRecordsOutPerSecond").is_some_and(|r| *r > 0.0)
    });
    cluster.wait_for("the count to grow", |c| {
        metric_values(c, &vertex(&readings, counts))["0.numRecordsOut"] > first["0.numRecordsOut"]
    });
    let listed = cluster.get(&vertex(&readings, "metrics"));
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in
        ["0.numRecordsIn", "0.busyTimeMsPerSecond", "1.Classify.numRecordsOut", "0.Classify.evenReadings"]
    {
        assert!(ids.contains(&id), "{id} is not listed: {ids:?}");
    }

    // The function's own counter, under its operator's name.
    cluster.wait_for("the user counter", |c| {
        metric_values(c, &vertex(&readings, "metrics?get=0.Classify.evenReadings"))
            .get("0.Classify.evenReadings")
            .is_some_and(|n| *n > 0.0)
    });

    // Event time reaches the sink: its input watermark is the readings' time.
    cluster.wait_for("the sink's watermarks", |c| {
        let list = c.get(&vertex(&sink, "watermarks"));
        let marks: Vec<i64> =
            list.as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().parse().unwrap()).collect();
        marks.len() == 2 && marks.iter().all(|w| *w >= 1_700_000_000_000)
    });

    // Aggregates agree with the subtasks' values (read within one report period).
    cluster.wait_for("aggregates equal to the per-subtask values", |c| {
        let per = metric_values(c, &vertex(&readings, "metrics?get=0.numRecordsOut,1.numRecordsOut"));
        let agg = c.get(&vertex(&readings, "subtasks/metrics?get=numRecordsOut"));
        let a = &agg[0];
        let (a0, a1) = (per["0.numRecordsOut"], per["1.numRecordsOut"]);
        a["id"] == "numRecordsOut"
            && a["sum"].as_f64() == Some(a0 + a1)
            && a["min"].as_f64() == Some(a0.min(a1))
            && a["max"].as_f64() == Some(a0.max(a1))
            && a["avg"].as_f64() == Some((a0 + a1) / 2.0)
    });

    // The slow sink backpressures the readings; the heartbeats and their idle sink are not.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = cluster.get(&vertex(&readings, "backpressure"));
        let idle = cluster.get(&vertex(&idle_sink, "backpressure"));
        let slow_source = cluster.get(&vertex(&heartbeats, "backpressure"));
        if busy["backpressure-level"] == "high"
            && idle["backpressure-level"] == "ok"
            && slow_source["backpressure-level"] == "ok"
        {
            assert_eq!(busy["status"], "ok");
            assert_eq!(busy["subtasks"].as_array().unwrap().len(), 2);
            for s in busy["subtasks"].as_array().unwrap() {
                let sum = s["ratio"].as_f64().unwrap()
                    + s["idleRatio"].as_f64().unwrap()
                    + s["busyRatio"].as_f64().unwrap();
                assert!((sum - 1.0).abs() < 1e-6, "ratios add up to {sum}: {s}");
            }
            assert!(idle["subtasks"][0]["idleRatio"].as_f64().unwrap() > 0.5, "{idle}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no high backpressure on the readings: {busy}\nheartbeats: {idle}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let details = cluster.get(&format!("/jobs/{job}"));
    let summary =
        details["vertices"].as_array().unwrap().iter().find(|v| v["id"] == readings.as_str()).unwrap();
    assert!(summary["metrics"]["accumulated-backpressured-time"].as_i64().unwrap() > 0, "{summary}");

    // Job, TaskManager and JobManager metrics.
    let job_metrics = metric_values(&cluster, &format!("/jobs/{job}/metrics?get=uptime,numRestarts"));
    assert!(job_metrics["uptime"] > 0.0 && job_metrics["numRestarts"] == 0.0, "{job_metrics:?}");
    cluster.wait_for("the TaskManager's heartbeat metrics", |c| {
        let m = metric_values(
            c,
            &format!("/taskmanagers/{tm_id}/metrics?get=Status.Memory.RSS,Status.Workers.Memory.RSS,Status.Slots.Free"),
        );
        m.get("Status.Workers.Memory.RSS").is_some_and(|r| *r > 0.0) && m["Status.Slots.Free"] == 0.0
    });
    let jm = metric_values(&cluster, "/jobmanager/metrics?get=numRunningJobs,Status.Memory.RSS");
    assert!(jm["numRunningJobs"] == 1.0 && jm["Status.Memory.RSS"] > 0.0, "{jm:?}");

    // Prometheus: the TaskManager serves its workers' task and operator metrics.
    let samples = parse_prometheus(&get_text(&tm_prometheus));
    let task = samples
        .iter()
        .find(|(name, labels, _)| {
            name == "eddy_taskmanager_job_task_numRecordsOut"
                && labels.get("task_name").is_some_and(|t| t.contains("Readings"))
        })
        .unwrap_or_else(|| panic!("no task numRecordsOut of the readings in {samples:?}"));
    assert_eq!(task.1["job_id"], job);
    assert_eq!(task.1["job_name"], "MetricsDemo");
    assert_eq!(task.1["tm_id"], tm_id);
    assert!(["0", "1"].contains(&task.1["subtask_index"].as_str()));
    assert!(task.2 > 0.0);
    assert!(
        samples.iter().any(|(name, labels, v)| name == "eddy_taskmanager_job_task_operator_evenReadings"
            && labels.get("operator_name").map(String::as_str) == Some("Classify")
            && *v > 0.0),
        "no evenReadings of Classify"
    );
    assert!(samples.iter().any(|(name, _, v)| name == "eddy_taskmanager_Status_Memory_RSS" && *v > 0.0));
    // The JobManager serves its own and the job's.
    let samples = parse_prometheus(&get_text(&jm_prometheus));
    assert!(samples.iter().any(|(n, _, v)| n == "eddy_jobmanager_numRegisteredTaskManagers" && *v == 1.0));
    assert!(samples
        .iter()
        .any(|(n, labels, _)| n == "eddy_jobmanager_job_uptime" && labels.get("job_id") == Some(&job)));

    let (ok, stdout, stderr) = cluster.eddy(&["cancel", "-m", &cluster.rest, &job]);
    assert!(ok, "{stdout}\n{stderr}");
}
