//! Throughput and peak memory of whole Eddy jobs, release build.
//!
//! ```text
//! cargo bench -p eddy-examples --bench throughput                 # every scenario
//! cargo bench -p eddy-examples --bench throughput -- wordcount    # names containing "wordcount"
//! EDDY_BENCH_RUNS=5 cargo bench -p eddy-examples --bench throughput
//! ```
//!
//! Each run of each scenario is a process of its own: this binary re-executes itself with
//! `--run-scenario NAME`, the child runs the job once, reads its peak resident set (`VmHWM` in
//! `/proc/self/status`) and prints one result line. The parent reports, per scenario, the
//! median over the runs as a markdown table on stdout (progress goes to stderr).
//!
//! Scenarios:
//! - `wordcount/{streaming,batch}/p{1,2}`: `read_text_file` → `word_count` (tokenizer, key_by
//!   word, sum) → a sink that only counts records, over a generated Zipf text (100 MiB by
//!   default, cached). Throughput is in words: the words of the file, counted here.
//! - `wordcount-stages/{read,tokenize,tokenize+keyby}/p2`: the first stages of the WordCount
//!   job alone (lines; words; words through the keyed exchange), to see what each one costs.
//!   Throughput is in words of the file, as above.
//! - `map_filter/p1`: generator of `u64` → `map(x * 3 + 1)` → `filter(x % 2 == 0)` → counting
//!   sink, one chained task. Throughput is in generated records (per core, as p = 1).
//! - `keyed_shuffle/p2`: generator of `(u64 key, u64 value)` → `key_by(key)` → counting sink,
//!   parallelism 2, so every record crosses the hash exchange.
//! - `keyed_shuffle_network/p2`: the same with `execution.network-exchange: true`, so the hash
//!   exchange crosses a loopback TCP data connection (encoding, credit, decoding).
//!
//! Environment:
//! - `EDDY_BENCH_RUNS` (3): runs per scenario.
//! - `EDDY_BENCH_TEXT_MB` (100): size of the WordCount text in MiB.
//! - `EDDY_BENCH_DATA_DIR`: where the text is cached (default `$CARGO_TARGET_DIR/eddy-bench`
//!   when that is an absolute path, else `<temp dir>/eddy-bench`).
//! - `EDDY_BENCH_MAP_FILTER_RECORDS` (1000000000), `EDDY_BENCH_SHUFFLE_RECORDS` (200000000).

use eddy_examples::bench_support::{
    bench_main, cpu_model, env_u64, load_average, median, millions, peak_rss_kb, run_scenario_process,
    select_scenarios, CountingSink,
};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use eddy::config::RuntimeMode;
use eddy::prelude::*;

// The text generator of the `zipf_text` binary.
#[allow(dead_code, unused_imports)]
use eddy_examples::zipf;

const RESULT_PREFIX: &str = "EDDY_BENCH_RESULT";

#[derive(Debug, Clone, Copy)]
enum Kind {
    WordCount(RuntimeMode),
    /// The first stages of WordCount alone: reading lines; tokenizing them; tokenizing and
    /// sending the words through the keyed exchange (everything but the counting).
    ReadLines,
    Tokenize,
    TokenizeKeyBy,
    MapFilter,
    /// `network`: over a loopback data connection (`execution.network-exchange`).
    KeyedShuffle {
        network: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    kind: Kind,
    parallelism: usize,
    /// What the throughput counts.
    unit: &'static str,
    target: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "wordcount/streaming/p1",
        kind: Kind::WordCount(RuntimeMode::Streaming),
        parallelism: 1,
        unit: "words",
        target: "",
    },
    Scenario {
        name: "wordcount/streaming/p2",
        kind: Kind::WordCount(RuntimeMode::Streaming),
        parallelism: 2,
        unit: "words",
        target: "≥ 35 M/s, ≤ 100 MB",
    },
    Scenario {
        name: "wordcount/batch/p1",
        kind: Kind::WordCount(RuntimeMode::Batch),
        parallelism: 1,
        unit: "words",
        target: "",
    },
    Scenario {
        name: "wordcount/batch/p2",
        kind: Kind::WordCount(RuntimeMode::Batch),
        parallelism: 2,
        unit: "words",
        target: "≥ 35 M/s, ≤ 100 MB",
    },
    Scenario {
        name: "wordcount-stages/read/p2",
        kind: Kind::ReadLines,
        parallelism: 2,
        unit: "words",
        target: "(stage breakdown)",
    },
    Scenario {
        name: "wordcount-stages/tokenize/p2",
        kind: Kind::Tokenize,
        parallelism: 2,
        unit: "words",
        target: "(stage breakdown)",
    },
    Scenario {
        name: "wordcount-stages/tokenize+keyby/p2",
        kind: Kind::TokenizeKeyBy,
        parallelism: 2,
        unit: "words",
        target: "(stage breakdown)",
    },
    Scenario {
        name: "map_filter/p1",
        kind: Kind::MapFilter,
        parallelism: 1,
        unit: "records",
        target: "≥ 100 M/s per core",
    },
    Scenario {
        name: "keyed_shuffle/p2",
        kind: Kind::KeyedShuffle { network: false },
        parallelism: 2,
        unit: "records",
        target: "≥ 20 M/s",
    },
    Scenario {
        name: "keyed_shuffle_network/p2",
        kind: Kind::KeyedShuffle { network: true },
        parallelism: 2,
        unit: "records",
        target: "",
    },
];

impl Scenario {
    fn reads_text(&self) -> bool {
        !matches!(self.kind, Kind::MapFilter | Kind::KeyedShuffle { .. })
    }
}

fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// What one child run reports.
#[derive(Debug, Clone, Copy)]
struct RunResult {
    /// Input units (words or generated records) processed.
    units: u64,
    /// Records that reached the sink.
    sink_records: u64,
    seconds: f64,
    peak_rss_kb: u64,
}

// ---------------------------------------------------------------------------------------------
// The child: one scenario, one run.

fn run_child(name: &str, args: &[String]) -> std::result::Result<(), String> {
    let scenario =
        SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| format!("no scenario named {name}"))?;
    let arg =
        |flag: &str| -> Option<&String> { args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)) };
    let env = StreamExecutionEnvironment::local();
    env.set_parallelism(scenario.parallelism);
    let sink = CountingSink::default();
    let (units, expected_sink) = match scenario.kind {
        Kind::WordCount(_) | Kind::ReadLines | Kind::Tokenize | Kind::TokenizeKeyBy => {
            let input = arg("--input").ok_or("--input is missing")?;
            let number = |flag: &str| -> std::result::Result<u64, String> {
                arg(flag).ok_or(format!("{flag} is missing"))?.parse().map_err(|_| format!("bad {flag}"))
            };
            let (words, distinct, lines) = (number("--words")?, number("--distinct")?, number("--lines")?);
            let text = env.read_text_file(input);
            match scenario.kind {
                Kind::WordCount(mode) => {
                    env.set_runtime_mode(mode);
                    eddy_examples::word_count(&text).sink_to(sink.clone(), "Counting Sink");
                    // STREAMING emits an updated count per word, BATCH one final count per word.
                    (words, if mode == RuntimeMode::Batch { distinct } else { words })
                }
                Kind::ReadLines => {
                    text.sink_to(sink.clone(), "Counting Sink");
                    (words, lines)
                }
                Kind::Tokenize => {
                    text.flat_map(eddy_examples::tokenize).sink_to(sink.clone(), "Counting Sink");
                    (words, words)
                }
                _ => {
                    text.flat_map(eddy_examples::tokenize)
                        .key_by(|t: &eddy_examples::WordCount| t.0.clone())
                        .as_stream()
                        .sink_to(sink.clone(), "Counting Sink");
                    (words, words)
                }
            }
        }
        Kind::MapFilter => {
            let n = env_u64("EDDY_BENCH_MAP_FILTER_RECORDS", 1_000_000_000);
            env.from_generator(n, |i: u64| i)
                .map(|x: u64| x.wrapping_mul(3).wrapping_add(1))
                .filter(|x: &u64| x & 1 == 0) // even: x % 2 == 0
                .sink_to(sink.clone(), "Counting Sink");
            // x * 3 + 1 is even exactly when x is odd.
            (n, n / 2)
        }
        Kind::KeyedShuffle { network } => {
            if network {
                let mut config = eddy::Configuration::new();
                config.set("execution.network-exchange", "true");
                env.configure(&config);
            }
            let n = env_u64("EDDY_BENCH_SHUFFLE_RECORDS", 200_000_000);
            // About a million distinct keys, spread pseudo-randomly.
            env.from_generator(n, |i: u64| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44, i))
                .key_by(|t: &(u64, u64)| t.0)
                .as_stream()
                .sink_to(sink.clone(), "Counting Sink");
            (n, n)
        }
    };
    let started = Instant::now();
    env.execute(scenario.name).map_err(|e| format!("the job failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let sink_records = sink.count();
    if sink_records != expected_sink {
        return Err(format!("the sink received {sink_records} records, expected {expected_sink}"));
    }
    let peak_rss_kb = peak_rss_kb().ok_or("cannot read VmHWM from /proc/self/status")?;
    println!(
        "{RESULT_PREFIX} units={units} sink_records={sink_records} seconds={seconds:.6} peak_rss_kb={peak_rss_kb}"
    );
    Ok(())
}

fn parse_result(stdout: &str) -> Option<RunResult> {
    let line = stdout.lines().find(|l| l.starts_with(RESULT_PREFIX))?;
    let field = |key: &str| -> Option<&str> {
        line.split_whitespace().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    Some(RunResult {
        units: field("units")?.parse().ok()?,
        sink_records: field("sink_records")?.parse().ok()?,
        seconds: field("seconds")?.parse().ok()?,
        peak_rss_kb: field("peak_rss_kb")?.parse().ok()?,
    })
}

// ---------------------------------------------------------------------------------------------
// The parent: input data, child processes, the report.

struct Text {
    path: PathBuf,
    lines: u64,
    words: u64,
    distinct: u64,
    bytes: u64,
}

fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDDY_BENCH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t.join("eddy-bench"),
        _ => std::env::temp_dir().join("eddy-bench"),
    }
}

/// The WordCount input: generated once, then reused; its words counted as the tokenizer does.
fn prepare_text() -> std::result::Result<Text, String> {
    let mb = env_f64("EDDY_BENCH_TEXT_MB", 100.0);
    let options = zipf::ZipfOptions::default();
    let path = data_dir()
        .join(format!("zipf-{mb}mb-v{}-s{}-seed{}.txt", options.vocabulary, options.exponent, options.seed));
    if !path.exists() {
        eprintln!("generating {} ...", path.display());
        zipf::write_zipf_file(&path, (mb * 1024.0 * 1024.0) as u64, &options)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let (mut lines, mut words, mut bytes) = (0u64, 0u64, 0u64);
    let mut distinct = HashSet::new();
    for line in BufReader::with_capacity(1 << 20, file).lines() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        lines += 1;
        bytes += line.len() as u64 + 1;
        for w in line.split_whitespace() {
            words += 1;
            if !distinct.contains(w) {
                distinct.insert(w.to_string());
            }
        }
    }
    Ok(Text { path, lines, words, distinct: distinct.len() as u64, bytes })
}

fn run_once(scenario: &Scenario, text: Option<&Text>) -> std::result::Result<RunResult, String> {
    let args = match text {
        Some(t) => vec![
            "--input".to_string(),
            t.path.display().to_string(),
            "--words".to_string(),
            t.words.to_string(),
            "--distinct".to_string(),
            t.distinct.to_string(),
            "--lines".to_string(),
            t.lines.to_string(),
        ],
        None => Vec::new(),
    };
    let stdout = run_scenario_process(scenario.name, &args)?;
    parse_result(&stdout).ok_or_else(|| format!("{}: no result line in {stdout:?}", scenario.name))
}

fn run_parent(filters: &[String]) -> std::result::Result<(), String> {
    let runs = env_u64("EDDY_BENCH_RUNS", 3).max(1) as usize;
    let selected = select_scenarios(SCENARIOS, |s| s.name, filters)?;
    let text = if selected.iter().any(|s| s.reads_text()) {
        let t = prepare_text()?;
        eprintln!(
            "input: {} ({} bytes, {} words, {} distinct)",
            t.path.display(),
            t.bytes,
            t.words,
            t.distinct
        );
        Some(t)
    } else {
        None
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("{} runs per scenario; {cores} cores, {}; load average {}", runs, cpu_model(), load_average());

    let mut rows = Vec::new();
    for s in &selected {
        let mut results = Vec::with_capacity(runs);
        for r in 0..runs {
            let res = run_once(s, text.as_ref().filter(|_| s.reads_text()))?;
            eprintln!(
                "  {} run {}/{}: {:.3} s, {} {}/s, sink {} records, peak RSS {:.1} MB",
                s.name,
                r + 1,
                runs,
                res.seconds,
                millions(res.units as f64 / res.seconds),
                s.unit,
                res.sink_records,
                res.peak_rss_kb as f64 / 1024.0
            );
            results.push(res);
        }
        let rates: Vec<f64> = results.iter().map(|r| r.units as f64 / r.seconds).collect();
        let (lo, hi) = rates.iter().fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        rows.push(format!(
            "| {} | {} | {} {}/s | {} – {} | {:.2} | {:.1} | {} |",
            s.name,
            s.parallelism,
            millions(median(rates)),
            s.unit,
            millions(lo),
            millions(hi),
            median(results.iter().map(|r| r.seconds).collect()),
            median(results.iter().map(|r| r.peak_rss_kb as f64 / 1024.0).collect()),
            s.target
        ));
    }
    eprintln!("load average after: {}", load_average());
    println!();
    println!("| scenario | p | throughput (median) | min – max | time s | peak RSS MB | target |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("{runs} runs per scenario, medians; peak RSS = VmHWM of the scenario's own process.");
    Ok(())
}

fn main() -> ExitCode {
    bench_main(run_child, run_parent)
}
