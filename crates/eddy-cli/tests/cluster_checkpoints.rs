//! Checkpoints on a cluster, as users run them: a checkpointing job on real JobManager and
//! TaskManager processes, a TaskManager killed (`kill -9`) after a checkpoint completed, the
//! job restored from it on the spare TaskManager, its committed output compared with a run
//! without failures, and the REST checkpoint routes read field by field.
//!
//! Issue 5's acceptance test on a cluster: the job's worker processes and a TaskManager killed
//! three times at random points (seeded, the seed printed), the committed output equal to a
//! failure-free run's (EXACTLY_ONCE) or holding every one of its updates (AT_LEAST_ONCE).
//!
//! Like `cluster.rs`, this needs the example binaries: `cargo test --workspace` builds them,
//! `cargo test -p eddy-cli` alone does not (run `cargo build -p eddy-examples --bins` first).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Files of text for word_count: enough for the job to run a few seconds with checkpoints.
fn write_input(dir: &Path, files: usize, lines: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        write_text(&dir.join(format!("part-{f:02}.txt")), lines + f * 97);
    }
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// `{min, max, avg}` with min ≤ avg ≤ max.
fn check_summary(v: &Value, what: &str) {
    let (min, max, avg) = (u64_of(&v["min"], what), u64_of(&v["max"], what), u64_of(&v["avg"], what));
    assert!(min <= avg && avg <= max, "{what}: {v}");
}

#[test]
fn a_killed_taskmanager_restores_the_latest_checkpoint_and_every_update_is_committed_once() {
    let checkpoints = tempfile::tempdir().unwrap();
    let checkpoint_dir = format!("state.checkpoints.dir={}", checkpoints.path().display());
    let mut cluster = Cluster::start(&[
        "heartbeat.interval=200 ms",
        "heartbeat.timeout=2 s",
        "restart-strategy.type=fixed-delay",
        "restart-strategy.fixed-delay.attempts=5",
        "restart-strategy.fixed-delay.delay=200 ms",
        // The test looks at the checkpoints the job leaves behind.
        "execution.checkpointing.externalized-checkpoint-retention=RETAIN_ON_CANCELLATION",
        &checkpoint_dir,
    ]);
    for _ in 0..3 {
        cluster.add_taskmanager(2);
    }
    let input = cluster.dir.path().join("input");
    write_input(&input, 8, 40_000);
    let out = cluster.dir.path().join("out");
    let binary = example("word_count");
    let job_args = [
        "--input",
        input.to_str().unwrap(),
        "-p",
        "4",
        "--mode",
        "streaming",
        "--checkpoint-interval",
        "200",
    ];
    let mut args = vec!["run", "-m", cluster.rest.as_str(), "-d", binary.as_str()];
    args.extend_from_slice(&job_args);
    args.extend(["--output", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = cluster.eddy(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    let path = |p: &str| format!("/jobs/{job}/checkpoints{p}");

    // Kill -9 a TaskManager that runs part of the job once a checkpoint has completed.
    cluster.wait_for("a completed checkpoint", |c| {
        c.get(&path(""))["counts"]["completed"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(cluster.job_state(&job), "RUNNING", "the input is too small: the job ended before the kill");
    let holders = cluster.taskmanager_holding(&job);
    assert_eq!(holders.len(), 2, "4 slots spread over two of the three TaskManagers");
    let victim = cluster.taskmanagers.iter_mut().find(|(id, _)| *id == holders[0]).unwrap();
    victim.1.kill();

    cluster.wait_for("the job to end", |c| matches!(c.job_state(&job).as_str(), "FINISHED" | "FAILED"));
    let details = cluster.get(&format!("/jobs/{job}"));
    assert_eq!(details["state"], "FINISHED", "{}", cluster.get(&format!("/jobs/{job}/exceptions")));
    assert!(u64_of(&details["restarts"], "restarts") >= 1);
    // The last attempt resumed where the checkpoint was: its sources read only the rest.
    let total_words: u64 = (0..8).map(|f| (40_000 + f * 97) * 7).sum();
    let emitted = u64_of(&details["vertices"][0]["metrics"]["write-records"], "write-records");
    assert!(emitted < total_words, "the restored attempt read all {total_words} words again ({emitted})");

    // Every update (w,1) … (w,n) of every word exactly once, in committed files only: the
    // same as a run without failures.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
    }
    let local = local_result(&binary, &job_args, &cluster.dir.path().join("local"));
    assert_eq!(local.len() as u64, total_words, "one update per word read");
    assert_eq!(sorted_lines(&out), local);

    // GET /jobs/:id/checkpoints
    let stats = cluster.get(&path(""));
    let counts = &stats["counts"];
    let (total, completed) = (u64_of(&counts["total"], "total"), u64_of(&counts["completed"], "completed"));
    let (failed, in_progress) =
        (u64_of(&counts["failed"], "failed"), u64_of(&counts["in_progress"], "in_progress"));
    assert!(completed >= 1 && u64_of(&counts["restored"], "restored") >= 1, "{stats}");
    assert!(completed + failed + in_progress <= total, "{stats}");
    assert_eq!(in_progress, 0, "nothing is in progress after the end: {stats}");
    for key in ["checkpointed_size", "state_size", "end_to_end_duration", "alignment_buffered"] {
        check_summary(&stats["summary"][key], key);
    }
    assert!(u64_of(&stats["summary"]["state_size"]["max"], "state size") > 0, "keyed counts have state");
    let restored = &stats["latest"]["restored"];
    let restored_id = u64_of(&restored["id"], "restored id");
    assert!(restored["restore_timestamp"].as_i64().unwrap() > 0, "{restored}");
    assert_eq!(restored["is_savepoint"], false);
    assert_eq!(stats["latest"]["savepoint"], Value::Null);
    let latest = &stats["latest"]["completed"];
    assert_eq!(latest["status"], "COMPLETED");
    assert!(u64_of(&latest["id"], "latest id") >= restored_id);
    let chk_dir = checkpoints.path().join(&job).join(format!("chk-{}", latest["id"]));
    assert_eq!(latest["external_path"], chk_dir.display().to_string());
    assert!(chk_dir.join("_metadata").exists(), "retained on disk: {}", chk_dir.display());
    let history = stats["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 10, "{stats}");
    let ids: Vec<u64> = history.iter().map(|h| u64_of(&h["id"], "id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for h in history {
        assert_eq!(h["is_savepoint"], false);
        assert_eq!(h["checkpoint_type"], "CHECKPOINT");
        let trigger = h["trigger_timestamp"].as_i64().unwrap();
        match h["status"].as_str().unwrap() {
            "COMPLETED" => {
                assert_eq!(h["num_acknowledged_subtasks"], h["num_subtasks"], "{h}");
                assert!(h["latest_ack_timestamp"].as_i64().unwrap() >= trigger, "{h}");
                assert!(u64_of(&h["state_size"], "state_size") > 0, "{h}");
                assert!(h["external_path"]
                    .as_str()
                    .unwrap()
                    .starts_with(&checkpoints.path().display().to_string()));
            }
            "FAILED" => assert!(h["failure_message"].is_string(), "{h}"),
            other => panic!("checkpoint in state {other} after the job ended: {h}"),
        }
        // Tokenizer (source chain) and Counter (sink chain): 4 subtasks each.
        assert_eq!(h["num_subtasks"], 8, "{h}");
    }

    // GET /jobs/:id/checkpoints/details/:checkpointid, with a summary per vertex.
    let id = latest["id"].as_u64().unwrap();
    let detail = cluster.get(&path(&format!("/details/{id}")));
    assert_eq!((detail["id"].as_u64(), &detail["status"]), (Some(id), &Value::from("COMPLETED")));
    let vertices: Vec<String> = details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let tasks = detail["tasks"].as_object().unwrap();
    assert_eq!(tasks.len(), vertices.len());
    let mut sizes = 0;
    for v in &vertices {
        let t = &tasks[v];
        assert_eq!(
            (&t["num_subtasks"], &t["num_acknowledged_subtasks"]),
            (&Value::from(4), &Value::from(4)),
            "{t}"
        );
        assert_eq!(t["status"], "COMPLETED");
        sizes += u64_of(&t["state_size"], "state_size");
    }
    // The vertices' state and the source enumerator's (an empty list: 8 bytes).
    assert_eq!(sizes + 8, u64_of(&detail["state_size"], "state_size"), "{detail}");
    let sub = cluster.get(&path(&format!("/details/{id}/subtasks/{}", vertices[1])));
    let subtasks = sub["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 4);
    for (i, s) in subtasks.iter().enumerate() {
        assert_eq!((s["index"].as_u64(), &s["status"]), (Some(i as u64), &Value::from("completed")), "{s}");
    }
    check_summary(&sub["summary"]["state_size"], "subtask state size");
    let (status, body) = cluster.request("GET", &path("/details/987654"), None);
    assert_eq!(status, 404, "{body}");

    // GET /jobs/:id/checkpoints/config
    let config = cluster.get(&path("/config"));
    assert_eq!(config["mode"], "exactly_once");
    assert_eq!(config["interval"], 200);
    assert_eq!(config["timeout"], 600_000);
    assert_eq!(config["min_pause"], 0);
    assert_eq!(config["max_concurrent"], 1);
    assert_eq!(config["tolerable_failed_checkpoints"], 0);
    assert_eq!(config["unaligned_checkpoints"], false);
    assert_eq!(config["externalization"]["enabled"], true);
    assert_eq!(config["checkpoint_storage"], "FileSystemCheckpointStorage");
}

// ---------------------------------------------------------------------------------------------
// Issue 5's acceptance test on a cluster: several kills at random points
// ---------------------------------------------------------------------------------------------

/// What a kill takes down.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The job's worker process on one TaskManager (`kill -9`); the TaskManager stays.
    Worker,
    /// A whole TaskManager (`kill -9`), its worker with it; a new TaskManager is started in
    /// its place, so that a spare is there for the next kill.
    TaskManager,
}

/// Both kinds, more than once each for workers.
const KILLS: [Victim; 3] = [Victim::Worker, Victim::TaskManager, Victim::Worker];
const INTERVAL_MS: u64 = 200;

/// A word_count run on a cluster, killed as [`KILLS`] says.
struct KilledRun {
    cluster: Cluster,
    job: String,
    out: std::path::PathBuf,
    /// The committed output of a failure-free run on the local mini-cluster, sorted.
    local: Vec<String>,
    seed: u64,
}

/// Runs word_count (`extra` arguments appended) with checkpoints every 200 ms on three
/// TaskManagers of two slots at parallelism 4 (one TaskManager spare), and kills a process
/// running it [`KILLS`] times. Each kill waits until the attempt running then has completed
/// `1 + r` checkpoints (`r` random in 0..=4, so that every attempt makes progress and
/// restores real state) and then a random 0–200 ms more, so that the kills land at random
/// points of the checkpoint cycle: while records are processed, while a barrier is aligned, or
/// between a checkpoint's completion and the sink's commit. Victims are chosen at random among
/// the TaskManagers holding the job. Returns after the job ended.
fn word_count_killed_at_random_points(what: &str, extra: &[&str]) -> KilledRun {
    let mut rng = SplitMix::from_env(what);
    let seed = rng.0;
    let checkpoints = tempfile::tempdir().unwrap();
    let checkpoint_dir = format!("state.checkpoints.dir={}", checkpoints.path().display());
    let mut cluster = Cluster::start(&[
        "heartbeat.interval=200 ms",
        "heartbeat.timeout=2 s",
        "restart-strategy.type=fixed-delay",
        "restart-strategy.fixed-delay.attempts=20",
        "restart-strategy.fixed-delay.delay=200 ms",
        &checkpoint_dir,
    ]);
    for _ in 0..3 {
        cluster.add_taskmanager(2);
    }
    let input = cluster.dir.path().join("input");
    write_input(&input, 8, 15_000);
    let out = cluster.dir.path().join("out");
    let binary = example("word_count");
    let mut job_args = vec![
        "--input",
        input.to_str().unwrap(),
        "-p",
        "4",
        "--mode",
        "streaming",
        "--checkpoint-interval",
        "200",
    ];
    job_args.extend_from_slice(extra);
    // About 8 s of input without failures: room for the kills and the restarts.
    let throttle = ["--rate", "15000"];
    let mut args = vec!["run", "-m", cluster.rest.as_str(), "-d", binary.as_str()];
    args.extend_from_slice(&job_args);
    args.extend_from_slice(&throttle);
    args.extend(["--output", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = cluster.eddy(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);
    let restarts = |c: &Cluster| u64_of(&c.get(&format!("/jobs/{job}"))["restarts"], "restarts");
    let completed =
        |c: &Cluster| c.get(&format!("/jobs/{job}/checkpoints"))["counts"]["completed"].as_u64().unwrap_or(0);

    let mut restarts_before_kill = None;
    for (i, victim) in KILLS.iter().enumerate() {
        if let Some(before) = restarts_before_kill {
            cluster.wait_for("the restart after the kill", |c| restarts(c) > before);
        }
        let target = completed(&cluster) + 1 + rng.between(0, 5);
        cluster.wait_for(&format!("checkpoint {target} to complete"), |c| {
            let state = c.job_state(&job);
            assert!(
                !matches!(state.as_str(), "FINISHED" | "FAILED" | "CANCELED"),
                "the job ended ({state}) before kill {i}: the input is too small; {}",
                c.get(&format!("/jobs/{job}/exceptions"))
            );
            completed(c) >= target
        });
        // The random point within the checkpoint cycle (not a synchronization: any delay is
        // a valid point to fail at).
        std::thread::sleep(Duration::from_millis(rng.between(0, INTERVAL_MS)));
        let attempt = restarts(&cluster);
        let holders = cluster.taskmanager_holding(&job);
        assert!(!holders.is_empty(), "no TaskManager holds the job's slots");
        let tm = holders[rng.between(0, holders.len() as u64) as usize].clone();
        let index = cluster.taskmanagers.iter().position(|(id, _)| *id == tm).unwrap();
        match victim {
            Victim::Worker => {
                let tm_pid = cluster.taskmanagers[index].1.child.id();
                let pid = worker_pid(tm_pid, &job, attempt).unwrap_or_else(|| {
                    panic!("no worker of attempt {attempt} under TaskManager {tm} (pid {tm_pid})")
                });
                println!("kill {i}: worker {pid} of attempt {attempt} on TaskManager {tm}");
                kill_9(pid);
            }
            Victim::TaskManager => {
                println!("kill {i}: TaskManager {tm} during attempt {attempt}");
                let (_, mut proc) = cluster.taskmanagers.remove(index);
                proc.kill();
                cluster.add_taskmanager(2);
            }
        }
        restarts_before_kill = Some(attempt);
    }

    cluster.wait_for("the job to end", |c| matches!(c.job_state(&job).as_str(), "FINISHED" | "FAILED"));
    let details = cluster.get(&format!("/jobs/{job}"));
    assert_eq!(details["state"], "FINISHED", "{}", cluster.get(&format!("/jobs/{job}/exceptions")));
    let restarts = u64_of(&details["restarts"], "restarts");
    assert!(restarts >= KILLS.len() as u64, "one restart (at least) per kill: {restarts}");
    let stats = cluster.get(&format!("/jobs/{job}/checkpoints"));
    println!(
        "{what}: {restarts} restarts, {} checkpoints completed, the last attempt restored checkpoint {}",
        stats["counts"]["completed"], stats["latest"]["restored"]["id"]
    );
    assert!(u64_of(&stats["counts"]["restored"], "restored") >= KILLS.len() as u64, "{stats}");
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
    }
    // Unthrottled: the same output, sooner.
    let local = local_result(&binary, &job_args, &cluster.dir.path().join("local"));
    let total_words: usize = (0..8).map(|f| (15_000 + f * 97) * 7).sum();
    assert_eq!(local.len(), total_words, "one update per word read");
    KilledRun { cluster, job, out, local, seed }
}

/// How often each line occurs.
fn line_counts(lines: &[String]) -> std::collections::HashMap<&str, usize> {
    let mut counts = std::collections::HashMap::new();
    for l in lines {
        *counts.entry(l.as_str()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn killing_workers_and_a_taskmanager_several_times_commits_exactly_the_failure_free_output() {
    let run = word_count_killed_at_random_points("exactly-once kills", &[]);
    let config = run.cluster.get(&format!("/jobs/{}/checkpoints/config", run.job));
    assert_eq!(config["mode"], "exactly_once");
    let committed = sorted_lines(&run.out);
    if committed != run.local {
        let (got, want) = (line_counts(&committed), line_counts(&run.local));
        let missing: Vec<_> = want.keys().filter(|l| !got.contains_key(*l)).take(5).collect();
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(5).collect();
        let unexpected: Vec<_> = got.keys().filter(|l| !want.contains_key(*l)).take(5).collect();
        panic!(
            "seed {}: the committed output ({} lines) differs from a failure-free run's ({} lines): \
             missing e.g. {missing:?}, more than once e.g. {twice:?}, unexpected e.g. {unexpected:?}",
            run.seed,
            committed.len(),
            run.local.len()
        );
    }
}

#[test]
fn killing_workers_and_a_taskmanager_at_least_once_loses_no_update() {
    let run = word_count_killed_at_random_points(
        "at-least-once kills",
        &["-D", "execution.checkpointing.mode=AT_LEAST_ONCE"],
    );
    let config = run.cluster.get(&format!("/jobs/{}/checkpoints/config", run.job));
    assert_eq!(config["mode"], "at_least_once");
    let committed = sorted_lines(&run.out);
    let got = line_counts(&committed);
    let missing: Vec<&String> = run.local.iter().filter(|l| !got.contains_key(l.as_str())).collect();
    println!("at-least-once: {} lines committed for {} without failures", committed.len(), run.local.len());
    assert!(
        missing.is_empty(),
        "seed {}: {} updates of the failure-free run were lost, e.g. {:?}",
        run.seed,
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
