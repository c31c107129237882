//! Savepoints on a cluster, as users take them: `eddy savepoint` of a running job, `eddy stop`
//! with a savepoint, `eddy run --fromSavepoint` at another parallelism with the committed
//! output compared to a run without interruptions; the REST savepoint routes field by field
//! (trigger, status, stop with drain, errors); a bad savepoint path and a savepoint with state
//! the job cannot claim, through the CLI and the REST API.
//!
//! Like `cluster.rs`, this needs the example binaries: `cargo test --workspace` builds them,
//! `cargo test -p eddy-cli` alone does not (run `cargo build -p eddy-examples --bins` first).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Text files for word_count.
fn write_input(dir: &Path, files: usize, lines: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        write_text(&dir.join(format!("part-{f:02}.txt")), lines + f * 37);
    }
    (0..files).map(|f| ((lines + f * 37) * 7) as u64).sum()
}

/// The folder `eddy savepoint` / `eddy stop` printed.
fn printed_savepoint(stdout: &str) -> PathBuf {
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in {stdout}"));
    PathBuf::from(path.trim())
}

fn assert_savepoint_folder(path: &Path, under: &Path) {
    assert!(path.starts_with(under), "{} is not under {}", path.display(), under.display());
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(name.starts_with("savepoint-"), "{name}");
    assert!(path.join("_metadata").is_file(), "{} has no _metadata", path.display());
}

/// Submits word_count detached (`-p parallelism`, `args` after the binary); returns the job id.
fn submit(cluster: &Cluster, parallelism: &str, args: &[&str]) -> String {
    let binary = example("word_count");
    let mut cli = vec!["run", "-m", cluster.rest.as_str(), "-d", "-p", parallelism, binary.as_str()];
    cli.extend_from_slice(args);
    let (ok, stdout, stderr) = cluster.eddy(&cli);
    assert!(ok, "{stdout}\n{stderr}");
    job_id_from(&stdout)
}

/// Waits until every subtask of the job runs (its checkpoint coordinator is up then).
fn wait_running(cluster: &Cluster, job: &str) {
    cluster.wait_for("the job's tasks running", |c| {
        let details = c.get(&format!("/jobs/{job}"));
        assert_eq!(details["state"], "RUNNING", "the job ended early: the input is too small");
        details["vertices"].as_array().unwrap().iter().all(|v| v["status"] == "RUNNING")
    });
}

fn write_records(cluster: &Cluster, job: &str) -> u64 {
    cluster.get(&format!("/jobs/{job}"))["vertices"][0]["metrics"]["write-records"].as_u64().unwrap()
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_at_another_parallelism_and_commits_every_update_once() {
    let mut cluster = Cluster::start(&[]);
    cluster.add_taskmanager(2);
    cluster.add_taskmanager(2);
    let input = cluster.dir.path().join("input");
    let total_words = write_input(&input, 4, 1_000);
    let out = cluster.dir.path().join("out");
    let savepoints = cluster.dir.path().join("savepoints");
    let job_args =
        ["--input", input.to_str().unwrap(), "--mode", "streaming", "--checkpoint-interval", "200"];
    let mut throttled = job_args.to_vec();
    throttled.extend(["--rate", "400", "--output", out.to_str().unwrap()]);
    let job = submit(&cluster, "2", &throttled);
    wait_running(&cluster, &job);

    // eddy savepoint <jobid> <targetDirectory>: the job goes on.
    let sp_dir = savepoints.to_str().unwrap();
    let (ok, stdout, stderr) = cluster.eddy(&["savepoint", "-m", &cluster.rest, &job, sp_dir]);
    assert!(ok, "{stdout}\n{stderr}");
    let first = printed_savepoint(&stdout);
    assert_savepoint_folder(&first, &savepoints);
    assert_eq!(cluster.job_state(&job), "RUNNING", "a savepoint leaves the job running");
    let latest = cluster.get(&format!("/jobs/{job}/checkpoints"))["latest"]["savepoint"].clone();
    assert_eq!(latest["external_path"], first.display().to_string(), "{latest}");
    assert_eq!(latest["checkpoint_type"], "SAVEPOINT");

    // eddy stop -p <dir> <jobid>: suspended half way, FINISHED.
    let (ok, stdout, stderr) = cluster.eddy(&["stop", "-m", &cluster.rest, "-p", sp_dir, &job]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("Suspending job \"{job}\" with a savepoint.")), "{stdout}");
    let stopped = printed_savepoint(&stdout);
    assert_savepoint_folder(&stopped, &savepoints);
    assert_ne!(stopped, first);
    assert_eq!(cluster.job_state(&job), "FINISHED");
    let read = write_records(&cluster, &job);
    assert!(read < total_words, "the job read all {total_words} words before it was stopped");

    // eddy run -s <savepoint> -p 3: the rest of the input, into the same output directory.
    let binary = example("word_count");
    let stopped_arg = stopped.to_str().unwrap();
    let mut cli = vec!["run", "-m", &cluster.rest, "-s", stopped_arg, "-p", "3", &binary];
    cli.extend_from_slice(&job_args);
    cli.extend(["--output", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = cluster.eddy(&cli);
    assert!(ok, "{stdout}\n{stderr}");
    let resumed = job_id_from(&stdout);
    let details = cluster.get(&format!("/jobs/{resumed}"));
    assert_eq!(details["state"], "FINISHED");
    assert!(details["vertices"].as_array().unwrap().iter().all(|v| v["parallelism"] == 3), "{details}");
    let resumed_read = write_records(&cluster, &resumed);
    assert_eq!(read + resumed_read, total_words, "the resumed job read exactly the rest of the input");
    let stats = cluster.get(&format!("/jobs/{resumed}/checkpoints"));
    assert_eq!(stats["counts"]["restored"], 1, "{stats}");

    // Every update (w,1) … (w,n) of every word exactly once, in committed files only: what a
    // run without interruptions commits.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
    }
    let local = local_result(&binary, &job_args, &cluster.dir.path().join("local"));
    assert_eq!(local.len() as u64, total_words, "one update per word read");
    assert_eq!(sorted_lines(&out), local);
}

/// A request with a JSON body: (status, body).
fn post(cluster: &Cluster, path: &str, body: Value) -> (u16, Value) {
    cluster.request("POST", path, Some(body.to_string().into_bytes()))
}

/// Polls a savepoint operation until it has completed; returns its `operation`.
fn wait_for_operation(cluster: &Cluster, job: &str, trigger: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.get(&format!("/jobs/{job}/savepoints/{trigger}"));
        match status["status"]["id"].as_str() {
            Some("IN_PROGRESS") => assert!(status.get("operation").is_none(), "{status}"),
            Some("COMPLETED") => return status["operation"].clone(),
            _ => panic!("unexpected savepoint status {status}"),
        }
        assert!(Instant::now() < deadline, "the savepoint did not complete: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn error_of(body: &Value) -> String {
    body["errors"][0].as_str().unwrap_or_else(|| panic!("no error message in {body}")).to_string()
}

#[test]
fn savepoints_through_the_rest_api_and_restores_that_do_not_fit() {
    let mut cluster = Cluster::start(&[]);
    cluster.add_taskmanager(2);
    let input = cluster.dir.path().join("input");
    let total_words = write_input(&input, 2, 1_500);
    let out = cluster.dir.path().join("out");
    let savepoints = cluster.dir.path().join("savepoints");
    // No periodic checkpoints: a STREAMING job takes savepoints all the same.
    let args = ["--input", input.to_str().unwrap(), "--mode", "streaming", "--rate", "300"];
    let mut job_args = args.to_vec();
    job_args.extend(["--output", out.to_str().unwrap()]);
    let job = submit(&cluster, "2", &job_args);
    wait_running(&cluster, &job);
    let path = format!("/jobs/{job}/savepoints");

    // Requests that cannot start a savepoint.
    let (status, body) = post(&cluster, "/jobs/0123/savepoints", json!({}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&cluster, &path, json!({}));
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("state.savepoints.dir"), "{body}");
    let (status, body) = post(&cluster, &path, json!({"target-directory": "/tmp", "cancel": true}));
    assert_eq!(status, 400, "an unknown field: {body}");
    let (status, body) = cluster.request("GET", &format!("{path}/no-such-trigger"), None);
    assert_eq!(status, 404, "{body}");

    // A savepoint: 202 with a request id, IN_PROGRESS, then COMPLETED with its location.
    let target = savepoints.to_str().unwrap();
    let (status, body) = post(&cluster, &path, json!({"target-directory": target, "cancel-job": false}));
    assert_eq!(status, 202, "{body}");
    let trigger = body["request-id"].as_str().unwrap().to_string();
    let operation = wait_for_operation(&cluster, &job, &trigger);
    assert!(operation.get("failure-cause").is_none(), "{operation}");
    let first = PathBuf::from(operation["location"].as_str().unwrap());
    assert_savepoint_folder(&first, &savepoints);
    assert_eq!(cluster.job_state(&job), "RUNNING");
    // The same trigger id again names the same operation: no second savepoint.
    let again = json!({"target-directory": target, "triggerId": trigger});
    let (status, body) = post(&cluster, &path, again);
    assert_eq!((status, body["request-id"].as_str()), (202, Some(trigger.as_str())), "{body}");
    assert_eq!(std::fs::read_dir(&savepoints).unwrap().count(), 1, "one savepoint folder");

    // Stop with drain: the input ends, every task finishes, the job is FINISHED.
    let (status, body) =
        post(&cluster, &format!("/jobs/{job}/stop"), json!({"targetDirectory": target, "drain": true}));
    assert_eq!(status, 202, "{body}");
    let stop = body["request-id"].as_str().unwrap().to_string();
    let operation = wait_for_operation(&cluster, &job, &stop);
    let drained = PathBuf::from(operation["location"].as_str().unwrap_or_else(|| panic!("{operation}")));
    assert_savepoint_folder(&drained, &savepoints);
    assert_eq!(cluster.job_state(&job), "FINISHED");
    assert!(write_records(&cluster, &job) < total_words, "stopped before the end of its input");
    let (status, body) = post(&cluster, &path, json!({"target-directory": target}));
    assert_eq!(status, 409, "no savepoint of a job that has ended: {body}");
    assert!(error_of(&body).contains("FINISHED"), "{body}");

    // A savepoint path that does not exist: the submission is refused, through the CLI …
    let binary = example("word_count");
    let missing = cluster.dir.path().join("no-such-savepoint");
    let missing = missing.to_str().unwrap();
    let out2 = cluster.dir.path().join("out2");
    let mut cli = vec!["run", "-m", &cluster.rest, "-s", missing, &binary];
    cli.extend_from_slice(&args);
    cli.extend(["--output", out2.to_str().unwrap()]);
    let (ok, stdout, stderr) = cluster.eddy(&cli);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("cannot start the job from savepoint") && stderr.contains(missing), "{stderr}");
    // … and through the REST API.
    let (status, body) = cluster.request("POST", "/artifacts", Some(b"\x7fELF: not a program".to_vec()));
    assert_eq!(status, 201, "{body}");
    let submission = |plan_type: &str, savepoint: &str| {
        json!({
            "jobName": "restore",
            "plan": {"type": plan_type, "nodes": [{"id": "v0", "parallelism": 1, "description": "Source"}]},
            "artifact": body["id"],
            "savepointPath": savepoint,
            "allowNonRestoredState": true,
        })
    };
    let (status, refused) = post(&cluster, "/jobs", submission("STREAMING", missing));
    assert_eq!(status, 400, "{refused}");
    assert!(error_of(&refused).contains(missing), "{refused}");
    let (status, refused) = post(&cluster, "/jobs", submission("BATCH", first.to_str().unwrap()));
    assert_eq!(status, 400, "{refused}");
    assert!(error_of(&refused).contains("BATCH"), "{refused}");

    // A job without the savepoint's source (word_count on its built-in text has another one)
    // fails, naming the operator; with --allowNonRestoredState it runs.
    let first_arg = first.to_str().unwrap();
    let builtin = ["--mode", "streaming", "--output"];
    let mut cli = vec!["run", "-m", &cluster.rest, "-s", first_arg, &binary];
    cli.extend_from_slice(&builtin);
    let out3 = cluster.dir.path().join("out3");
    cli.push(out3.to_str().unwrap());
    let (ok, stdout, stderr) = cluster.eddy(&cli);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("'Source: File Source'") && stderr.contains("--allowNonRestoredState"),
        "{stderr}"
    );
    let failed = job_id_from(&stdout);
    assert_eq!(cluster.job_state(&failed), "FAILED");
    cli.insert(5, "-n");
    let (ok, stdout, stderr) = cluster.eddy(&cli);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!sorted_lines(&out3).is_empty(), "the job ran and committed its counts");
}
