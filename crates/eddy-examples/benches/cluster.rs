//! Cluster benchmarks: a keyed shuffle between two TaskManagers beside the same job in one
//! process, and how long a submitted job takes until all its subtasks run.
//!
//! ```text
//! cargo build --release -p eddy-cli && cargo bench -p eddy-examples --bench cluster
//! ```
//!
//! The benchmark starts a real JobManager and two TaskManagers (one slot each) from the release
//! `eddy` binary, and submits itself as the job binary with `eddy run` (it runs the job when
//! started with `--job`). Scenarios:
//! - `shuffle/local`: generator of `(u64 key, u64 value)` → `key_by` → sink, parallelism 2, in
//!   one process (the local mini-cluster).
//! - `shuffle/cluster`: the same job at parallelism 2 on the two TaskManagers: each keeps the
//!   records of its own key groups and sends the other half over TCP. Time is from the first
//!   subtask's start to the last one's end as the JobManager recorded them (artifact fetch and
//!   process start excluded); MB/s counts the bytes that crossed between the processes.
//! - `submit`: `eddy run -d` of an unbounded job (artifact already cached), then the time from
//!   the JobManager accepting the job to its last subtask reporting RUNNING; the job is
//!   cancelled after each run.
//!
//! Environment: `EDDY_BENCH_RUNS` (5), `EDDY_BENCH_SHUFFLE_RECORDS` (200000000).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use eddy::prelude::*;
use eddy_examples::bench_support::{cpu_model, env_u64, load_average, median, millions};
use serde_json::Value;

fn run_job(args: &[String]) -> ExitCode {
    let env = StreamExecutionEnvironment::get_execution_environment();
    let (name, n) = match args.first().map(String::as_str) {
        Some("shuffle") => ("Keyed Shuffle", args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000)),
        _ => ("Unbounded Shuffle", u64::MAX),
    };
    // About a million distinct keys, spread pseudo-randomly (as in the throughput benchmark).
    env.from_generator(n, |i: u64| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44, i))
        .key_by(|t: &(u64, u64)| t.0)
        .as_stream()
        .filter(|_| false)
        .print();
    match env.execute(name) {
        Ok(result) => {
            println!("RESULT seconds={:.6}", result.net_runtime.as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("the job failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy <args>` and returns it with the first stdout line containing `needle`.
fn start(eddy: &Path, args: &[String], needle: &str) -> (Proc, String) {
    let mut child = Command::new(eddy)
        .args(args)
        .env("EDDY_CONF_DIR", "")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start eddy");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains(needle)).expect("eddy said nothing");
    std::thread::spawn(move || lines.for_each(drop));
    (Proc(child), line)
}

fn get(rest: &str, path: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = agent.get(format!("http://{rest}{path}")).call().unwrap().body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap()
}

fn eddy_run(eddy: &Path, rest: &str, extra: &[&str]) -> String {
    let bench = std::env::current_exe().unwrap();
    let out = Command::new(eddy)
        .args(["run", "-m", rest, "-p", "2"])
        .args(extra.iter().take_while(|a| a.starts_with('-') && **a != "--job"))
        .arg(&bench)
        .args(extra.iter().skip_while(|a| **a != "--job"))
        .env("EDDY_CONF_DIR", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "eddy run failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .expect("no job id")
        .trim()
        .to_string()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--job") {
        return run_job(&args[i + 1..]);
    }
    if args.iter().any(|a| a == "--list") {
        println!("shuffle/local: benchmark\nshuffle/cluster: benchmark\nsubmit: benchmark");
        return ExitCode::SUCCESS;
    }
    let eddy: PathBuf = Path::new(env!("CARGO_BIN_EXE_word_count")).with_file_name("eddy");
    if !eddy.exists() {
        eprintln!("{} is missing: run `cargo build --release -p eddy-cli` first", eddy.display());
        return ExitCode::FAILURE;
    }
    let runs = env_u64("EDDY_BENCH_RUNS", 5) as usize;
    let n = env_u64("EDDY_BENCH_SHUFFLE_RECORDS", 200_000_000);
    println!(
        "cluster benchmarks: {runs} runs each, {n} records, cpu {}, load {}",
        cpu_model(),
        load_average()
    );

    let work = std::env::temp_dir().join(format!("eddy-bench-cluster-{}", std::process::id()));
    let (_jm, line) = start(
        &eddy,
        &[
            "jobmanager".into(),
            "-D".into(),
            "rest.port=0".into(),
            "-D".into(),
            "jobmanager.rpc.port=0".into(),
        ],
        "JobManager running",
    );
    let rest = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let rpc_port = line.rsplit(':').next().unwrap().trim().to_string();
    let mut tms = Vec::new();
    for _ in 0..2 {
        let args: Vec<String> = [
            "taskmanager",
            "-D",
            &format!("jobmanager.rpc.port={rpc_port}"),
            "-D",
            "taskmanager.numberOfTaskSlots=1",
            "-D",
            &format!("process.taskmanager.working-dir={}", work.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        tms.push(start(&eddy, &args, "running: RPC").0);
    }
    while get(&rest, "/overview")["taskmanagers"] != 2 {
        std::thread::sleep(Duration::from_millis(20));
    }

    // shuffle/local
    let bench = std::env::current_exe().unwrap();
    let mut local = Vec::new();
    for _ in 0..runs {
        let out = Command::new(&bench)
            .args(["--job", "shuffle", &n.to_string()])
            .env("EDDY_CONF_DIR", "")
            .env("EDDY_PROPERTIES", "parallelism.default: 2")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let seconds: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT seconds="))
            .and_then(|s| s.trim().parse().ok())
            .expect("no result from the local run");
        local.push(n as f64 / seconds);
    }
    let local_rate = median(local.clone());
    println!(
        "shuffle/local     p=2: {} records/s (median; runs {:?})",
        millions(local_rate),
        local.iter().map(|r| millions(*r)).collect::<Vec<_>>()
    );

    // shuffle/cluster
    let mut rates = Vec::new();
    let mut mbps = Vec::new();
    let mut bytes_per_record = 0.0;
    for _ in 0..runs {
        let job = eddy_run(&eddy, &rest, &["--job", "shuffle", &n.to_string()]);
        let details = get(&rest, &format!("/jobs/{job}"));
        assert_eq!(details["state"], "FINISHED", "{details}");
        let vertices = details["vertices"].as_array().unwrap();
        let start = vertices.iter().map(|v| v["start-time"].as_i64().unwrap()).min().unwrap();
        let end = vertices.iter().map(|v| v["end-time"].as_i64().unwrap()).max().unwrap();
        let sink_in = vertices.last().unwrap()["metrics"]["read-records"].as_u64().unwrap();
        assert_eq!(sink_in, n, "every record reached the sink");
        let crossed = vertices[0]["metrics"]["write-bytes"].as_u64().unwrap();
        let seconds = (end - start) as f64 / 1000.0;
        rates.push(n as f64 / seconds);
        mbps.push(crossed as f64 / seconds / 1e6);
        bytes_per_record = crossed as f64 / (n as f64 / 2.0);
    }
    let cluster_rate = median(rates.clone());
    println!(
        "shuffle/cluster   p=2 over 2 TaskManagers: {} records/s, {:.0} MB/s between them ({:.1} bytes per crossing record) \
         = {:.0}% of local (median; runs {:?})",
        millions(cluster_rate),
        median(mbps),
        bytes_per_record,
        100.0 * cluster_rate / local_rate,
        rates.iter().map(|r| millions(*r)).collect::<Vec<_>>()
    );

    // submit
    let mut latencies = Vec::new();
    let mut client = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let job = eddy_run(&eddy, &rest, &["-d", "--job", "unbounded"]);
        client.push(t0.elapsed().as_secs_f64() * 1000.0);
        let running_at = loop {
            let d = get(&rest, &format!("/jobs/{job}"));
            let vertices = d["vertices"].as_array().unwrap();
            if vertices.iter().all(|v| v["status"] == "RUNNING") {
                let submitted = d["start-time"].as_i64().unwrap();
                let last = vertices.iter().map(|v| v["start-time"].as_i64().unwrap()).max().unwrap();
                break (last - submitted) as f64;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        latencies.push(running_at);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.patch(format!("http://{rest}/jobs/{job}?mode=cancel")).send_empty().unwrap();
        while get(&rest, &format!("/jobs/{job}"))["state"] != "CANCELED"
            || get(&rest, "/overview")["slots-available"] != 2
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!(
        "submit: {:.0} ms from submission to all subtasks RUNNING (median; runs {:?} ms); `eddy run -d` returns after {:.0} ms",
        median(latencies.clone()),
        latencies.iter().map(|l| l.round()).collect::<Vec<_>>(),
        median(client)
    );
    let _ = std::fs::remove_dir_all(&work);
    ExitCode::SUCCESS
}
