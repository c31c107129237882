//! Checkpoints on a cluster, as users run them: a checkpointing job on real JobManager and
//! TaskManager processes, a TaskManager killed (`kill -9`) after a checkpoint completed, the
//! job restored from it on the spare TaskManager, its committed output compared with a run
//! without failures, and the REST checkpoint routes read field by field.
//!
//! Like `cluster.rs`, this needs the example binaries: `cargo test --workspace` builds them,
//! `cargo test -p eddy-cli` alone does not (run `cargo build -p eddy-examples --bins` first).

mod common;

use std::path::Path;

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
