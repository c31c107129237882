//! The example binaries, run as a user runs them: output format, files, sockets and errors.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const TEXT: &str = "the quick brown fox\njumps over the lazy dog\n\nthe end  of   the story\r\nfox fox\n";

fn expected_counts(text: &str) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for w in text.split_whitespace() {
        *m.entry(w.to_string()).or_insert(0) += 1;
    }
    m
}

fn word_count(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_word_count")).args(args).output().expect("word_count runs")
}

/// Parses `(word,count)`, returning the prefix before it (`"2> "` or `""`).
fn parse_line(line: &str) -> (String, String, i64) {
    let open = line.find('(').unwrap_or_else(|| panic!("no tuple in {line:?}"));
    let (prefix, tuple) = line.split_at(open);
    let inner = tuple.strip_prefix('(').and_then(|t| t.strip_suffix(')')).expect("(..)");
    let (word, count) = inner.rsplit_once(',').expect("word,count");
    (prefix.to_string(), word.to_string(), count.parse().expect("count"))
}

fn write_input(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("input.txt");
    std::fs::File::create(&input).unwrap().write_all(TEXT.as_bytes()).unwrap();
    input
}

#[test]
fn batch_word_count_prints_final_counts_with_subtask_prefix_when_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = word_count(&["--input", input.to_str().unwrap(), "--mode", "batch", "-p", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut counts = HashMap::new();
    for line in stdout.lines() {
        let (prefix, word, count) = parse_line(line);
        assert!(prefix == "1> " || prefix == "2> ", "prefix {prefix:?} in {line:?}");
        assert!(counts.insert(word, count).is_none(), "BATCH emits one result per word");
    }
    assert_eq!(counts, expected_counts(TEXT));
}

#[test]
fn streaming_word_count_at_parallelism_one_prints_every_update_without_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = word_count(&["--input", input.to_str().unwrap(), "--mode", "streaming", "-p", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut updates: HashMap<String, Vec<i64>> = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (prefix, word, count) = parse_line(line);
        assert_eq!(prefix, "", "no prefix at parallelism 1: {line:?}");
        updates.entry(word).or_default().push(count);
    }
    for (word, n) in expected_counts(TEXT) {
        assert_eq!(updates[&word], (1..=n).collect::<Vec<_>>(), "updates of {word}");
    }
}

#[test]
fn output_directory_gets_one_part_file_per_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let output = dir.path().join("out");
    let out = word_count(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--mode",
        "batch",
        "-p",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut counts = HashMap::new();
    for i in 0..3 {
        let part = std::fs::read_to_string(output.join(format!("part-{i}-0"))).expect("part file");
        for line in part.lines() {
            let (prefix, word, count) = parse_line(line);
            assert_eq!(prefix, "", "files carry no subtask prefix");
            counts.insert(word, count);
        }
    }
    assert_eq!(counts, expected_counts(TEXT));
}

#[test]
fn missing_input_and_bad_configuration_fail_with_a_clear_message() {
    let out = word_count(&["--input", "/definitely/not/here.txt"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/definitely/not/here.txt"), "{err}");

    let out = word_count(&["-D", "parallelism.default=lots"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parallelism.default") && err.contains("lots"), "{err}");
}

#[test]
fn socket_word_count_counts_lines_from_a_real_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(TEXT.as_bytes()).unwrap();
        // Closing the connection ends the stream, as with Flink's socket source.
    });
    let out = Command::new(env!("CARGO_BIN_EXE_socket_word_count"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-p", "2"])
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut last = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (_, word, count) = parse_line(line);
        let e = last.entry(word).or_insert(0);
        *e = (*e).max(count);
    }
    assert_eq!(last, expected_counts(TEXT));
}

#[test]
fn socket_word_count_reports_a_refused_connection() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_socket_word_count"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn with_checkpoints_streaming_word_count_commits_every_update_once() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..20_000).map(|i| format!("w{} w{} shared\n", i % 7, i % 3)).collect();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let output = dir.path().join("out");
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
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every update (w,1) … (w,n) of every word, once each, in committed part files only.
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&output).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
        lines.extend(std::fs::read_to_string(entry.path()).unwrap().lines().map(parse_line));
    }
    let mut got: Vec<(String, i64)> = lines.into_iter().map(|(_, w, c)| (w, c)).collect();
    got.sort();
    let mut want: Vec<(String, i64)> =
        expected_counts(&text).into_iter().flat_map(|(w, n)| (1..=n).map(move |c| (w.clone(), c))).collect();
    want.sort();
    assert_eq!(got, want);
}

/// The committed `(word,count)` lines of `output`, sorted; an uncommitted file is an error.
fn committed_updates(output: &Path) -> Vec<(String, i64)> {
    let mut got = Vec::new();
    for entry in std::fs::read_dir(output).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "nothing uncommitted is left: {name}");
        let text = std::fs::read_to_string(entry.path()).unwrap();
        got.extend(text.lines().map(parse_line).map(|(_, w, c)| (w, c)));
    }
    got.sort();
    got
}

fn every_update(text: &str) -> Vec<(String, i64)> {
    let mut want: Vec<(String, i64)> =
        expected_counts(text).into_iter().flat_map(|(w, n)| (1..=n).map(move |c| (w.clone(), c))).collect();
    want.sort();
    want
}

/// The folder of checkpoint `n` under `dir/<job-id>/`, once it is complete.
fn retained_checkpoint(dir: &Path, n: u64) -> Option<std::path::PathBuf> {
    let job = std::fs::read_dir(dir).ok()?.next()?.ok()?.path();
    let chk = job.join(format!("chk-{n}"));
    chk.is_dir().then_some(chk)
}

#[test]
fn a_throttled_run_killed_half_way_resumes_from_its_checkpoint_at_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..600).map(|i| format!("w{} w{} shared\n", i % 7, i % 3)).collect();
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
        .args(["-D", "state.checkpoints.num-retained=100000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let checkpoint = loop {
        // Checkpoint 20 is about 0.4 s in; the run goes on writing after it until it is killed.
        if let (Some(chk), Some(_)) =
            (retained_checkpoint(&checkpoints, 20), retained_checkpoint(&checkpoints, 30))
        {
            break chk;
        }
        assert!(first.try_wait().unwrap().is_none(), "the throttled run ended before its first checkpoint");
        assert!(std::time::Instant::now() < deadline, "no checkpoint was retained");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    // Moved elsewhere, the retained checkpoint still restores (nothing in it names a path).
    let moved = dir.path().join("kept-checkpoint");
    std::fs::rename(&checkpoint, &moved).unwrap();

    let out = word_count(&[
        "--input",
        input,
        "--output",
        output_arg,
        "--mode",
        "streaming",
        "-p",
        "1",
        "--checkpoint-interval",
        "20",
        "--from-savepoint",
        moved.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(committed_updates(&output), every_update(&text));
}

#[test]
fn rate_needs_an_input_and_a_positive_number() {
    let out = word_count(&["--rate", "10"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input"));
    let out = word_count(&["--rate=0", "--input", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lines per second"));
}
