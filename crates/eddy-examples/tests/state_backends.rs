//! `word_count --state-backend hashmap|fjall`: the counts (a keyed `sum`) in either backend give
//! the same committed output, and a checkpoint of one backend resumes on the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn word_count(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_word_count")).args(args).output().expect("word_count runs")
}

/// The committed `(word,count)` lines of `output`, sorted; an uncommitted file is an error.
fn committed_updates(output: &Path) -> Vec<(String, i64)> {
    let mut got = Vec::new();
    for entry in std::fs::read_dir(output).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let tuple = &line[line.find('(').expect("a tuple")..];
            let inner = tuple.strip_prefix('(').and_then(|t| t.strip_suffix(')')).expect("(..)");
            let (word, count) = inner.rsplit_once(',').expect("word,count");
            got.push((word.to_string(), count.parse().expect("a count")));
        }
    }
    got.sort();
    got
}

/// Every update `(w,1)` … `(w,n)` of every word of `text`, sorted.
fn every_update(text: &str) -> Vec<(String, i64)> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w).or_insert(0) += 1;
    }
    let mut want: Vec<(String, i64)> =
        counts.into_iter().flat_map(|(w, n)| (1..=n).map(move |c| (w.to_string(), c))).collect();
    want.sort();
    want
}

/// Many distinct words (so that fjall's small memory budget cannot cache them all) and a few
/// frequent ones.
fn input_text(lines: usize) -> String {
    (0..lines).map(|i| format!("w{} u{} shared x{}\n", i % 7, i % 3, i * 7_919 % 20_011)).collect()
}

#[test]
fn word_count_on_fjall_with_checkpoints_commits_what_hashmap_commits() {
    let dir = tempfile::tempdir().unwrap();
    let text = input_text(30_000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let local = dir.path().join("fjall");
    let local_conf = format!("state.backend.fjall.localdir={}", local.display());
    let mut outputs = Vec::new();
    for backend in ["hashmap", "fjall"] {
        let output = dir.path().join(format!("out-{backend}"));
        let out = word_count(&[
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--mode",
            "streaming",
            "-p",
            "2",
            "--checkpoint-interval",
            "10",
            "--state-backend",
            backend,
            "-D",
            "state.backend.fjall.memory=4mb",
            "-D",
            &local_conf,
        ]);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push(committed_updates(&output));
    }
    assert_eq!(outputs[0], every_update(&text), "hashmap");
    assert_eq!(outputs[1], outputs[0], "fjall commits what hashmap commits");
    assert!(local.is_dir(), "the fjall run kept its state under state.backend.fjall.localdir");
}

#[test]
fn an_unknown_state_backend_is_refused() {
    let out = word_count(&["--state-backend", "rocksdb"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fjall"), "{err}");
}

/// The folder of checkpoint `n` under `dir/<job-id>/`, once it is complete.
fn retained_checkpoint(dir: &Path, n: u64) -> Option<PathBuf> {
    let job = std::fs::read_dir(dir).ok()?.next()?.ok()?.path();
    let chk = job.join(format!("chk-{n}"));
    chk.is_dir().then_some(chk)
}

#[test]
fn a_run_killed_on_fjall_with_incremental_checkpoints_resumes_on_hashmap() {
    let dir = tempfile::tempdir().unwrap();
    let text = input_text(600);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let output = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let (input, output_arg) = (input.to_str().unwrap(), output.to_str().unwrap());
    let chk_conf = format!("state.checkpoints.dir={}", checkpoints.display());
    // 600 lines at 200 lines/s: three seconds, checkpointed every 20 ms, every checkpoint kept.
    let mut first = Command::new(env!("CARGO_BIN_EXE_word_count"))
        .args(["--input", input, "--output", output_arg, "--mode", "streaming", "-p", "2"])
        .args(["--rate", "200", "--checkpoint-interval", "20", "-D", &chk_conf])
        .args(["--state-backend", "fjall", "-D", "state.backend.incremental=true"])
        .args(["-D", "state.checkpoints.num-retained=100000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let checkpoint = loop {
        if let (Some(chk), Some(_)) =
            (retained_checkpoint(&checkpoints, 20), retained_checkpoint(&checkpoints, 30))
        {
            break chk;
        }
        assert!(first.try_wait().unwrap().is_none(), "the throttled run ended before its checkpoints");
        assert!(Instant::now() < deadline, "no checkpoint was retained");
        std::thread::sleep(Duration::from_millis(5));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let shared = checkpoint.parent().unwrap().join("shared");
    assert!(
        std::fs::read_dir(&shared).is_ok_and(|mut d| d.next().is_some()),
        "the fjall checkpoints were incremental (files under {})",
        shared.display()
    );

    let out = word_count(&[
        "--input",
        input,
        "--output",
        output_arg,
        "--mode",
        "streaming",
        "-p",
        "3",
        "--checkpoint-interval",
        "20",
        "--state-backend",
        "hashmap",
        "-D",
        &chk_conf,
        "--from-savepoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(committed_updates(&output), every_update(&text));
}
