//! The cluster as users run it: a real `eddy jobmanager` and `eddy taskmanager` processes on
//! loopback, jobs submitted with `eddy run`, REST answers read over HTTP, and failures
//! injected by killing processes.
//!
//! The job binaries are the examples of the eddy-examples package, found next to the `eddy`
//! binary: `cargo test --workspace` (the project's test command) builds both before any test
//! runs. (`cargo test -p eddy-cli` alone does not build the examples: run
//! `cargo build -p eddy-examples --bins` first, or the tests would use stale ones.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn word_count_at_parallelism_4_across_two_taskmanagers_equals_the_local_result() {
    let mut cluster = Cluster::start(&[]);
    let tm1 = cluster.add_taskmanager(2);
    let tm2 = cluster.add_taskmanager(2);
    let overview = cluster.get("/overview");
    assert_eq!(overview["taskmanagers"], 2);
    assert_eq!(overview["slots-total"], 4);
    assert_eq!(overview["slots-available"], 4);
    assert_eq!(overview["jobs-running"], 0);

    let input = cluster.dir.path().join("input.txt");
    write_text(&input, 3000);
    let out = cluster.dir.path().join("out");
    let input_arg = input.to_str().unwrap();
    let (ok, stdout, stderr) = cluster.eddy(&[
        "run",
        "-m",
        &cluster.rest,
        "-p",
        "4",
        &example("word_count"),
        "--input",
        input_arg,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "eddy run failed:\n{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    assert!(stdout.contains(&format!("Job with JobID {job} has finished.")), "{stdout}");
    assert!(stdout.contains("Job Runtime: "), "{stdout}");

    let local = local_result(
        &example("word_count"),
        &["--input", input_arg, "-p", "1"],
        &cluster.dir.path().join("local"),
    );
    assert_eq!(sorted_lines(&out), local);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4, "one part file per sink subtask");

    // REST, field by field.
    let overview = cluster.get("/overview");
    assert_eq!(overview["jobs-finished"], 1);
    assert_eq!(overview["slots-available"], 4, "slots are free again");
    let jobs = cluster.get("/jobs");
    assert_eq!(jobs["jobs"][0]["id"], job.as_str());
    assert_eq!(jobs["jobs"][0]["status"], "FINISHED");
    let listed = &cluster.get("/jobs/overview")["jobs"][0];
    assert_eq!(listed["jid"], job.as_str());
    assert_eq!(listed["name"], "WordCount");
    assert_eq!(listed["state"], "FINISHED");
    let details = cluster.get(&format!("/jobs/{job}"));
    assert_eq!(details["jid"], job.as_str());
    assert_eq!(details["state"], "FINISHED");
    assert!(details["end-time"].as_i64().unwrap() >= details["start-time"].as_i64().unwrap());
    let vertices = details["vertices"].as_array().unwrap();
    assert_eq!(
        listed["tasks"]["total"],
        vertices.iter().map(|v| v["parallelism"].as_u64().unwrap()).sum::<u64>()
    );
    let source = &vertices[0];
    assert!(source["name"].as_str().unwrap().starts_with("Source"), "{source}");
    assert_eq!(source["status"], "FINISHED");
    assert_eq!(source["metrics"]["read-records"], 0);
    // The source is chained with the tokenizer: the vertex emits one record per word.
    assert_eq!(source["metrics"]["write-records"], 3000 * 7);
    let last = vertices.last().unwrap();
    assert_eq!(last["parallelism"], 4);
    assert_eq!(last["metrics"]["write-records"], 0, "the sink emits nothing downstream");
    for pair in vertices.windows(2) {
        assert_eq!(pair[0]["metrics"]["write-records"], pair[1]["metrics"]["read-records"], "{pair:?}");
    }
    let words_in = last["metrics"]["read-records"].as_u64().unwrap();
    assert!(words_in > 0 && last["metrics"]["read-bytes"].as_u64().unwrap() > 0, "{last}");
    let plan = cluster.get(&format!("/jobs/{job}/plan"));
    assert_eq!(plan["plan"]["jid"], job.as_str());
    assert_eq!(plan["plan"]["nodes"].as_array().unwrap().len(), vertices.len());
    let exceptions = cluster.get(&format!("/jobs/{job}/exceptions"));
    assert!(exceptions["root-exception"].is_null());
    assert_eq!(exceptions["exceptionHistory"]["entries"].as_array().unwrap().len(), 0);

    // The subtasks of the keyed vertex ran on both TaskManagers.
    let vertex = last["id"].as_str().unwrap();
    let subtasks =
        cluster.get(&format!("/jobs/{job}/vertices/{vertex}"))["subtasks"].as_array().unwrap().clone();
    let hosts: std::collections::BTreeSet<&str> =
        subtasks.iter().map(|s| s["taskmanager-id"].as_str().unwrap()).collect();
    assert_eq!(hosts, [tm1.as_str(), tm2.as_str()].into_iter().collect());
    assert!(subtasks.iter().all(|s| s["status"] == "FINISHED"));

    let tms = cluster.get("/taskmanagers");
    let tm = &tms["taskmanagers"][0];
    assert_eq!(tm["slotsNumber"], 2);
    assert_eq!(tm["freeSlots"], 2);
    assert!(tm["hardware"]["cpuCores"].as_u64().unwrap() >= 1);
    let (status, body) = cluster.request("GET", "/taskmanagers/nobody", None);
    assert_eq!((status, body["errors"][0].as_str().unwrap()), (404, "Could not find TaskManager nobody"));

    // Event-time windows with late data, at parallelism 3 over both TaskManagers.
    let csv = cluster.dir.path().join("events.csv");
    let mut text = String::new();
    for i in 0..3000i64 {
        // Mostly ordered, every seventh record 900 ms behind: some late, some very late.
        let ts = 1_000_000 + i * 7 - if i % 7 == 0 { 900 } else { 0 };
        text.push_str(&format!("k{},{ts},{}\n", i % 5, i % 11));
    }
    std::fs::write(&csv, text).unwrap();
    let window_args = |out: &Path, late: &Path| -> Vec<String> {
        [
            "--input",
            csv.to_str().unwrap(),
            "--window",
            "tumbling:1000",
            "--out-of-orderness",
            "200",
            "--watermark",
            "per-event",
            "--allowed-lateness",
            "300",
            "--output",
            out.to_str().unwrap(),
            "--late-output",
            late.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (out3, late3) = (cluster.dir.path().join("win-out"), cluster.dir.path().join("win-late"));
    let mut args: Vec<String> =
        ["run", "-m", &cluster.rest, "-p", "3", &example("event_time_windows")].map(String::from).to_vec();
    args.extend(window_args(&out3, &late3));
    let (ok, stdout, stderr) = cluster.eddy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stdout}\n{stderr}");
    let (out1, late1) = (cluster.dir.path().join("win-out-local"), cluster.dir.path().join("win-late-local"));
    let status = Command::new(example("event_time_windows"))
        .args(window_args(&out1, &late1))
        .args(["-p", "1"])
        .env("EDDY_CONF_DIR", "")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!sorted_lines(&late1).is_empty(), "the input has late records");
    assert_eq!(sorted_lines(&out3), sorted_lines(&out1));
    assert_eq!(sorted_lines(&late3), sorted_lines(&late1));

    // Detached: returns with the id at once; `eddy list -a` shows both jobs.
    let (ok, stdout, stderr) = cluster.eddy(&[
        "run",
        "-m",
        &cluster.rest,
        "-d",
        &example("word_count"),
        "--output",
        cluster.dir.path().join("out2").to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let second = job_id_from(&stdout);
    assert!(!stdout.contains("has finished"), "{stdout}");
    cluster.wait_for("the detached job to finish", |c| c.job_state(&second) == "FINISHED");
    let (ok, stdout, _) = cluster.eddy(&["list", "-m", &cluster.rest, "-a"]);
    assert!(ok);
    assert!(stdout.contains(&format!(": {job} : WordCount (FINISHED)")), "{stdout}");
    assert!(stdout.contains("EventTimeWindows (FINISHED)"), "{stdout}");
    assert!(stdout.contains(&format!(": {second} : WordCount (FINISHED)")), "{stdout}");
}

/// Event-time sensor averages, slowed down so that the job is still running when a
/// TaskManager dies.
const SENSOR_ARGS: &[&str] =
    &["--events", "24000", "--rate", "4000", "--sensors", "8", "--start-ms", "1700000000000", "-p", "4"];

/// How a TaskManager is taken out in the middle of a job.
#[derive(Clone, Copy, PartialEq)]
enum Failure {
    /// `kill -9`: the process and its connections are gone at once.
    Kill,
    /// `kill -STOP`: the process stops answering and heartbeating but its sockets stay open;
    /// only the heartbeat timeout finds it.
    Freeze,
}

#[test]
fn killing_a_taskmanager_mid_job_restarts_it_on_the_spare_with_the_correct_result() {
    lose_a_taskmanager_mid_job(Failure::Kill);
}

#[test]
fn a_frozen_taskmanager_is_dropped_after_the_heartbeat_timeout_and_the_job_recovers() {
    lose_a_taskmanager_mid_job(Failure::Freeze);
}

fn signal(pid: u32, signal: &str) {
    let signal = match signal {
        "-STOP" => libc::SIGSTOP,
        "-CONT" => libc::SIGCONT,
        "-KILL" => libc::SIGKILL,
        other => panic!("unknown signal {other}"),
    };
    // SAFETY: kill(2) with plain integers.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0, "kill {pid}");
}

fn lose_a_taskmanager_mid_job(failure: Failure) {
    let mut cluster = Cluster::start(&[
        "heartbeat.interval=200 ms",
        "heartbeat.timeout=2 s",
        "restart-strategy.type=fixed-delay",
        "restart-strategy.fixed-delay.attempts=5",
        "restart-strategy.fixed-delay.delay=200 ms",
    ]);
    for _ in 0..3 {
        cluster.add_taskmanager(2);
    }
    let out = cluster.dir.path().join("out");
    let binary = example("sensor_averages");
    let mut args = vec!["run", "-m", cluster.rest.as_str(), "-d", &binary];
    args.extend_from_slice(SENSOR_ARGS);
    let out_arg = out.to_str().unwrap().to_string();
    args.extend(["--output", out_arg.as_str()]);
    let (ok, stdout, stderr) = cluster.eddy(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);

    // Wait until records flow, then kill -9 a TaskManager that runs part of the job.
    cluster.wait_for("records to flow", |c| {
        let d = c.get(&format!("/jobs/{job}"));
        d["vertices"][0]["metrics"]["write-records"].as_u64().unwrap_or(0) > 0
    });
    let holders = cluster.taskmanager_holding(&job);
    assert_eq!(holders.len(), 2, "4 slots spread over two of the three TaskManagers");
    let victim = cluster.taskmanagers.iter_mut().find(|(id, _)| *id == holders[0]).unwrap();
    let frozen_pid = match failure {
        Failure::Kill => {
            victim.1.kill();
            None
        }
        Failure::Freeze => {
            signal(victim.1.child.id(), "-STOP");
            Some(victim.1.child.id())
        }
    };
    let victim = victim.0.clone();
    let lost_at = Instant::now();

    cluster.wait_for("the job to end", |c| matches!(c.job_state(&job).as_str(), "FINISHED" | "FAILED"));
    let details = cluster.get(&format!("/jobs/{job}"));
    assert_eq!(details["state"], "FINISHED", "{}", cluster.get(&format!("/jobs/{job}/exceptions")));
    assert!(details["restarts"].as_u64().unwrap() >= 1);
    let exceptions = cluster.get(&format!("/jobs/{job}/exceptions"));
    assert!(!exceptions["exceptionHistory"]["entries"].as_array().unwrap().is_empty());
    cluster.wait_for("the lost TaskManager to be dropped", |c| {
        c.get("/taskmanagers")["taskmanagers"].as_array().unwrap().iter().all(|t| t["id"] != victim.as_str())
    });
    if let Some(pid) = frozen_pid {
        // Found by the heartbeat timeout (2 s) and not long after it.
        assert!(lost_at.elapsed() < Duration::from_secs(30), "{:?}", lost_at.elapsed());
        signal(pid, "-CONT");
    }

    let mut local_args: Vec<&str> = SENSOR_ARGS.to_vec();
    local_args[3] = "unlimited";
    let local = local_result(&example("sensor_averages"), &local_args, &cluster.dir.path().join("local"));
    assert_eq!(local.len(), 8 * 24000 / 8 / 10, "one average per sensor and second");
    assert_eq!(sorted_lines(&out), local);
}

#[test]
fn slot_shortage_fails_clearly_and_a_running_job_is_cancelled_from_the_cli() {
    let mut cluster = Cluster::start(&["slot.request.timeout=1 s"]);
    cluster.add_taskmanager(2);

    let (ok, stdout, stderr) = cluster.eddy(&["run", "-m", &cluster.rest, "-p", "4", &example("word_count")]);
    assert!(!ok, "{stdout}");
    let expected =
        "not enough task slots: the job needs 4 slots, the cluster has 2 (2 free) on 1 TaskManager";
    assert!(stderr.contains(expected) || stdout.contains(expected), "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    assert_eq!(cluster.job_state(&job), "FAILED");
    let root =
        cluster.get(&format!("/jobs/{job}/exceptions"))["root-exception"].as_str().unwrap().to_string();
    assert!(root.contains(expected), "{root}");

    // An unbounded job: runs until cancelled.
    let binary = example("sensor_averages");
    let mut args = vec!["run", "-m", cluster.rest.as_str(), "-d", &binary];
    args.extend(["-p", "2", "--rate", "1000", "--start-ms", "1700000000000"]);
    let out = cluster.dir.path().join("unbounded").to_str().unwrap().to_string();
    args.extend(["--output", out.as_str()]);
    let (ok, stdout, stderr) = cluster.eddy(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    cluster.wait_for("the job to run", |c| {
        let d = c.get(&format!("/jobs/{job}"));
        d["vertices"][0]["metrics"]["write-records"].as_u64().unwrap_or(0) > 0
    });
    let (ok, stdout, _) = cluster.eddy(&["list", "-m", &cluster.rest]);
    assert!(ok && stdout.contains(&format!("{job} : AverageSensorReadings (RUNNING)")), "{stdout}");
    let (ok, stdout, stderr) = cluster.eddy(&["cancel", "-m", &cluster.rest, &job]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("Cancelled job {job}.")), "{stdout}");
    assert_eq!(cluster.job_state(&job), "CANCELED");
    cluster.wait_for("the slots to be free", |c| c.get("/overview")["slots-available"] == 2);
    let (status, body) = cluster.request("PATCH", &format!("/jobs/{job}?mode=cancel"), None);
    assert_eq!(status, 409, "{body}");
}

#[test]
fn bad_submissions_are_rejected_clearly_and_the_jobmanager_keeps_serving() {
    let cluster = Cluster::start(&["rest.upload.max-size=64 kb"]);
    let (status, body) = cluster.request("POST", "/artifacts", Some(b"#!/bin/sh\necho hi\n".to_vec()));
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("not an executable"), "{body}");
    let mut big = b"\x7fELF".to_vec();
    big.resize(100 << 10, 0);
    let (status, body) = cluster.request("POST", "/artifacts", Some(big));
    assert_eq!(status, 413);
    assert!(body["errors"][0].as_str().unwrap().contains("rest.upload.max-size"), "{body}");
    let (status, body) = cluster.request("POST", "/artifacts", Some(Vec::new()));
    assert_eq!((status, body["errors"][0].as_str().unwrap()), (400, "the artifact is empty"));
    let (status, body) = cluster.request("POST", "/jobs", Some(b"{\"jobName\": 3".to_vec()));
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("not valid JSON"), "{body}");
    let submission = serde_json::json!({"jobName": "x", "plan": {"nodes": []}, "artifact": "0".repeat(64)});
    let (status, body) = cluster.request("POST", "/jobs", Some(submission.to_string().into_bytes()));
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("unknown artifact"), "{body}");
    let (status, body) = cluster.request("GET", "/jobs/0123", None);
    assert_eq!((status, body["errors"][0].as_str().unwrap()), (404, "Job 0123 not found"));
    let (status, _) = cluster.request("GET", "/no/such/path", None);
    assert_eq!(status, 404);
    let (status, _) = cluster.request("POST", "/overview", None);
    assert_eq!(status, 405);
    // Still serving, with no job accepted.
    let overview = cluster.get("/overview");
    assert_eq!(overview["jobs-running"], 0);
    assert_eq!(cluster.get("/jobs")["jobs"].as_array().unwrap().len(), 0);
    let openapi = cluster.get("/openapi.json");
    assert!(openapi["paths"]["/jobs/{jobid}"]["patch"].is_object());
}

#[test]
fn submission_needs_the_token_when_one_is_configured() {
    let cluster = Cluster::start(&["rest.submission.token=s3cret"]);
    let (status, body) = cluster.request("POST", "/artifacts", Some(b"\x7fELF".to_vec()));
    assert_eq!(status, 401, "{body}");
    let (ok, stdout, stderr) = cluster.eddy(&["run", "-m", &cluster.rest, &example("word_count")]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("401") || stdout.contains("401"), "{stdout}\n{stderr}");
    // Reading needs no token.
    assert_eq!(cluster.get("/overview")["taskmanagers"], 0);
}

#[test]
fn the_control_rpc_needs_the_cluster_token_and_is_not_exposed_without_one() {
    // Bound beyond loopback without a token: refused at start.
    let out = Command::new(eddy_bin())
        .args([
            "jobmanager",
            "-D",
            "jobmanager.rpc.address=0.0.0.0",
            "-D",
            "rest.port=0",
            "-D",
            "jobmanager.rpc.port=0",
        ])
        .env("EDDY_CONF_DIR", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.rpc.token"), "{stderr}");

    // With a token, TaskManagers and workers that carry it work; one with another is refused.
    let mut cluster = Cluster::start(&["cluster.rpc.token=inside-secret"]);
    cluster.add_taskmanager(2);
    let out = cluster.dir.path().join("out");
    let (ok, stdout, stderr) = cluster.eddy(&[
        "run",
        "-m",
        &cluster.rest,
        "-p",
        "2",
        &example("word_count"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let intruder = cluster.spawn_taskmanager(1, &["cluster.rpc.token=guessed"]);
    intruder.line_with("running: RPC");
    let log = cluster.dir.path().join("taskmanager-1-1.log");
    cluster.wait_for("the intruder to be refused", |_| {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("cluster's RPC token"))
    });
    assert_eq!(cluster.get("/overview")["taskmanagers"], 1);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Stops what `eddy cluster start` started, also when the test fails.
struct StandaloneCluster {
    conf: PathBuf,
    pids: Vec<u32>,
}

impl StandaloneCluster {
    fn eddy(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(eddy_bin()).args(args).env("EDDY_CONF_DIR", &self.conf).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

impl Drop for StandaloneCluster {
    fn drop(&mut self) {
        let _ = self.eddy(&["cluster", "stop"]);
        for pid in &self.pids {
            // SAFETY: kill(2) with plain integers; a pid that is gone is ESRCH, ignored.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

#[test]
fn cluster_start_runs_a_jobmanager_and_the_workers_file_and_cluster_stop_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let rest_port = free_port();
    std::fs::write(
        conf.join("eddy.yaml"),
        format!(
            "jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {}\nrest.port: {rest_port}\n\
             taskmanager.numberOfTaskSlots: 2\nparallelism.default: 3\nenv.pid.dir: {}\nenv.log.dir: {}\n\
             process.taskmanager.working-dir: {}\n",
            free_port(),
            dir.path().join("pids").display(),
            dir.path().join("log").display(),
            dir.path().join("tm-work").display(),
        ),
    )
    .unwrap();
    std::fs::write(conf.join("workers"), "# one TaskManager per line\nlocalhost\nlocalhost\n").unwrap();
    let mut cluster = StandaloneCluster { conf: conf.clone(), pids: Vec::new() };
    let (ok, stdout, stderr) = cluster.eddy(&["cluster", "start"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("Starting jobmanager daemon"), "{stdout}");
    assert_eq!(stdout.matches("Starting taskmanager daemon").count(), 2, "{stdout}");
    for file in ["eddy-jobmanager.pid", "eddy-taskmanager.pid"] {
        let text = std::fs::read_to_string(dir.path().join("pids").join(file)).unwrap();
        cluster.pids.extend(text.lines().map(|l| l.trim().parse::<u32>().unwrap()));
    }
    assert_eq!(cluster.pids.len(), 3);
    assert!(cluster.pids.iter().all(|&p| running(p)));

    // `eddy run` finds the JobManager through the same conf directory; parallelism.default
    // comes from it too.
    let out = dir.path().join("out");
    let (ok, stdout, stderr) =
        cluster.eddy(&["run", &example("word_count"), "--output", out.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3, "parallelism.default: 3 from eddy.yaml");
    let local = local_result(&example("word_count"), &["-p", "1"], &dir.path().join("local"));
    assert_eq!(sorted_lines(&out), local);

    let (ok, stdout, stderr) = cluster.eddy(&["cluster", "start"]);
    assert!(!ok && stderr.contains("still running"), "a second start is refused: {stdout}\n{stderr}");
    let (ok, stdout, stderr) = cluster.eddy(&["cluster", "stop"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(cluster.pids.iter().all(|&p| !running(p)), "{stdout}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", rest_port)).is_err(), "the REST API is gone");
}

#[test]
fn application_mode_a_job_binary_with_its_own_jobmanager_and_two_taskmanagers() {
    let dir = tempfile::tempdir().unwrap();
    let rpc_port = free_port();
    // TaskManagers first: they keep trying to register until the application's JobManager is up.
    let mut taskmanagers = Vec::new();
    for i in 0..2 {
        let mut command = Command::new(eddy_bin());
        command.arg("taskmanager").args([
            "-D".to_string(),
            format!("jobmanager.rpc.port={rpc_port}"),
            "-D".to_string(),
            "taskmanager.numberOfTaskSlots=2".into(),
            "-D".to_string(),
            format!("process.taskmanager.working-dir={}", dir.path().join("tm-work").display()),
        ]);
        command.env("EDDY_CONF_DIR", "").current_dir(dir.path());
        let tm = Proc::spawn(command, &dir.path().join(format!("taskmanager-{i}.log")));
        tm.line_with("running: RPC");
        taskmanagers.push(tm);
    }
    let input = dir.path().join("input.txt");
    write_text(&input, 500);
    let out = dir.path().join("out");
    let output = Command::new(example("word_count"))
        .args(["--application", "-p", "4", "-D", "rest.port=0", "-D"])
        .arg(format!("jobmanager.rpc.port={rpc_port}"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .env("EDDY_CONF_DIR", "")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Application mode: JobManager running"), "{stdout}");
    assert!(stdout.contains("has finished."), "{stdout}");
    let local = local_result(
        &example("word_count"),
        &["--input", input.to_str().unwrap(), "-p", "1"],
        &dir.path().join("local"),
    );
    assert_eq!(sorted_lines(&out), local);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
}
