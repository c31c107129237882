//! Fault-tolerant state, release build: checkpointing cost on the sensor workload, checkpoint
//! size and duration versus state size (full and incremental), and recovery of 1 GB of state.
//!
//! ```text
//! cargo bench -p eddy-examples --bench state                    # every scenario
//! cargo bench -p eddy-examples --bench state -- sensors         # names containing "sensors"
//! EDDY_BENCH_RUNS=5 cargo bench -p eddy-examples --bench state
//! ```
//!
//! Same harness as `throughput.rs`: each run of each scenario is a process of its own (this
//! binary re-executes itself with `--run-scenario NAME`) that prints one result line; the parent
//! prints medians over the runs as markdown tables.
//!
//! - `sensors/{off,hashmap,fjall,fjall-incremental}`: the sensor workload of `windows.rs`
//!   (1 000 sensors, 1 s tumbling event-time windows with an incremental average, parallelism 2)
//!   with checkpoints every second on each backend, written to a temporary
//!   `state.checkpoints.dir`; `off` runs without checkpoints. Throughput in generated records.
//! - `checkpoints/{hashmap,fjall,fjall-incremental}/{1M,4M}-keys`: a `KeyedProcessFunction`
//!   keeps a 100-byte `ValueState` per key. The source (throttled to 5 M records/s) first writes
//!   every key once, then updates 64 hot keys for the rest of the run, with checkpoints every
//!   500 ms and 4 096 key groups. Reported, from the retained `chk-<n>/_metadata` files: the
//!   checkpoint that wrote the most (its full state size, the bytes it wrote, its duration) and
//!   the median of the last five (the steady state, where an incremental checkpoint writes only
//!   the key groups of the hot keys and references the rest).
//! - `recovery/{hashmap,fjall}/1GB`: 10 M keys × 100 bytes of keyed state, snapshotted and
//!   written as a checkpoint file; the time to read it back, decode it and rebuild the backend
//!   until every state is readable again (task deployment, a few ms, is not included).
//!
//! Environment:
//! - `EDDY_BENCH_RUNS` (3): runs per scenario.
//! - `EDDY_BENCH_STATE_SENSOR_RECORDS` (200000000): records per sensor-workload run.
//! - `EDDY_BENCH_STATE_HOT_RECORDS` (30000000): hot-key updates after the load, per
//!   checkpoint-size run.
//! - `EDDY_BENCH_RECOVERY_KEYS` (10000000): keys of the recovery scenarios.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use eddy::config::StateBackendConfig;
use eddy::prelude::*;
use eddy::state::KeyedState;
use eddy::Configuration;
use eddy_examples::bench_support::{
    bench_main, cpu_model, env_u64, load_average, median, millions, peak_rss_kb, run_scenario_process,
    select_scenarios, CountingSink,
};

#[allow(dead_code, unused_imports)]
use eddy_examples::sensors;
use sensors::SensorGenerator;

const RESULT_PREFIX: &str = "EDDY_BENCH_RESULT";
const SENSORS: u64 = 1_000;
const STEP_US: u64 = 10;
const VALUE_BYTES: usize = 100;
const HOT_KEYS: u64 = 64;
const KEY_GROUPS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Off,
    HashMap,
    Fjall,
    FjallIncremental,
}

impl Backend {
    fn configure(self, config: &mut Configuration, dir: &Path) {
        // A failure ends the run with its error instead of restarting out of sight.
        config.set("restart-strategy.type", "none");
        if self == Backend::Off {
            return;
        }
        config.set("state.checkpoints.dir", dir.to_str().expect("a UTF-8 temporary directory"));
        config.set("state.backend", if self == Backend::HashMap { "hashmap" } else { "fjall" });
        config.set(
            "state.backend.incremental",
            if self == Backend::FjallIncremental { "true" } else { "false" },
        );
        config.set("state.backend.fjall.localdir", dir.to_str().expect("a UTF-8 temporary directory"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sensors,
    Checkpoints { keys: u64 },
    Recovery,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    kind: Kind,
    backend: Backend,
}

const fn scenario(name: &'static str, kind: Kind, backend: Backend) -> Scenario {
    Scenario { name, kind, backend }
}

const M: u64 = 1_000_000;
const SCENARIOS: &[Scenario] = &[
    scenario("sensors/off", Kind::Sensors, Backend::Off),
    scenario("sensors/hashmap", Kind::Sensors, Backend::HashMap),
    scenario("sensors/fjall", Kind::Sensors, Backend::Fjall),
    scenario("sensors/fjall-incremental", Kind::Sensors, Backend::FjallIncremental),
    scenario("checkpoints/hashmap/1M-keys", Kind::Checkpoints { keys: M }, Backend::HashMap),
    scenario("checkpoints/fjall/1M-keys", Kind::Checkpoints { keys: M }, Backend::Fjall),
    scenario(
        "checkpoints/fjall-incremental/1M-keys",
        Kind::Checkpoints { keys: M },
        Backend::FjallIncremental,
    ),
    scenario("checkpoints/hashmap/4M-keys", Kind::Checkpoints { keys: 4 * M }, Backend::HashMap),
    scenario("checkpoints/fjall/4M-keys", Kind::Checkpoints { keys: 4 * M }, Backend::Fjall),
    scenario(
        "checkpoints/fjall-incremental/4M-keys",
        Kind::Checkpoints { keys: 4 * M },
        Backend::FjallIncremental,
    ),
    scenario("recovery/hashmap/1GB", Kind::Recovery, Backend::HashMap),
    scenario("recovery/fjall/1GB", Kind::Recovery, Backend::Fjall),
];

/// What one child run reports, as `key=value` pairs.
type Fields = Vec<(String, f64)>;

fn report(fields: &[(&str, f64)]) {
    let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{RESULT_PREFIX} {}", line.join(" "));
}

// ---------------------------------------------------------------------------------------------
// Sensors with checkpoints.

fn run_sensors(s: &Scenario, dir: &Path) -> std::result::Result<(), String> {
    let mut config = Configuration::new();
    if s.backend != Backend::Off {
        config.set("execution.checkpointing.interval", "1 s");
    }
    s.backend.configure(&mut config, dir);
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let n = env_u64("EDDY_BENCH_STATE_SENSOR_RECORDS", 200_000_000);
    let generator = SensorGenerator::new(SENSORS, STEP_US, 0);
    let readings = sensors::bounded_readings_with(&env, n, 2, None, move |j| {
        let sensor = j % SENSORS;
        (generator.id(sensor), (j * STEP_US / 1000) as i64, generator.fahrenheit(sensor, j))
    });
    let sink = CountingSink::default();
    sensors::average_per_window(&readings, sensors::WINDOW)
        .uid("averages")
        .sink_to(sink.clone(), "Counting Sink");
    let started = Instant::now();
    let client = env.execute_async("sensors with checkpoints").map_err(|e| e.to_string())?;
    client.wait().map_err(|e| format!("the job failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let windows = n * STEP_US / 1_000_000;
    let expected = windows.max(1) * SENSORS;
    let got = sink.count();
    if got != expected {
        return Err(format!("the sink received {got} window results, expected {expected}"));
    }
    let stats = client.checkpoint_stats();
    let durations: Vec<f64> = stats.history.iter().map(|r| r.end_to_end_duration() as f64).collect();
    let sizes: Vec<f64> = stats.history.iter().map(|r| r.state_size as f64).collect();
    report(&[
        ("records", n as f64),
        ("seconds", seconds),
        ("checkpoints", stats.completed as f64),
        ("ckpt_ms", if durations.is_empty() { 0.0 } else { median(durations) }),
        ("ckpt_bytes", if sizes.is_empty() { 0.0 } else { median(sizes) }),
        ("peak_rss_kb", peak_rss_kb().unwrap_or(0) as f64),
    ]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checkpoint size and duration versus state size.

#[derive(Clone)]
struct Remember {
    value: ValueStateDescriptor<Vec<u8>>,
}

impl KeyedProcessFunction<u64, u64, u64> for Remember {
    fn process_element(&mut self, j: u64, ctx: &mut KeyedContext<u64>, _: &mut Collector<u64>) -> Result<()> {
        let mut value = vec![0u8; VALUE_BYTES];
        value[..8].copy_from_slice(&j.to_le_bytes());
        ctx.state(&self.value).update(value);
        Ok(())
    }
}

fn run_checkpoints(s: &Scenario, keys: u64, dir: &Path) -> std::result::Result<(), String> {
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "500 ms");
    config.set("pipeline.max-parallelism", KEY_GROUPS.to_string());
    // Every checkpoint is kept, to measure what each wrote.
    config.set("state.checkpoints.num-retained", "1000");
    config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION");
    s.backend.configure(&mut config, dir);
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let hot = env_u64("EDDY_BENCH_STATE_HOT_RECORDS", 30_000_000);
    // Every key once, then the hot keys over and over.
    let source =
        DataGeneratorSource::new(move |j: u64| if j < keys { j } else { (j * 7919) % HOT_KEYS }, keys + hot)
            .with_rate(5e6);
    env.from_source(source, "keys")
        .key_by(|k: &u64| *k)
        .process(Remember { value: ValueStateDescriptor::new("value") })
        .uid("remember")
        .sink_to(CountingSink::default(), "discard");
    let started = Instant::now();
    let client = env.execute_async("checkpoint sizes").map_err(|e| e.to_string())?;
    client.wait().map_err(|e| format!("the job failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = client.checkpoint_stats();
    let durations: std::collections::HashMap<u64, f64> = stats
        .history
        .iter()
        .filter(|r| r.end_timestamp.is_some() && r.failure_message.is_none())
        .map(|r| (r.id, r.end_to_end_duration() as f64))
        .collect();
    let sizes = checkpoint_sizes(&dir.join(client.job_id()), dir)?;
    // (id, full size, bytes written by this checkpoint, duration) of the checkpoints the
    // statistics still list.
    let listed: Vec<(u64, u64, u64, f64)> = sizes
        .into_iter()
        .filter_map(|(id, full, new)| durations.get(&id).map(|d| (id, full, new, *d)))
        .collect();
    let largest = listed.iter().max_by_key(|c| c.2).ok_or("no checkpoint completed")?;
    let steady: Vec<_> = listed.iter().rev().take(5).collect();
    report(&[
        ("seconds", seconds),
        ("checkpoints", stats.completed as f64),
        ("largest_full_bytes", largest.1 as f64),
        ("largest_written_bytes", largest.2 as f64),
        ("largest_ms", largest.3),
        ("steady_full_bytes", median(steady.iter().map(|c| c.1 as f64).collect())),
        ("steady_written_bytes", median(steady.iter().map(|c| c.2 as f64).collect())),
        ("steady_ms", median(steady.iter().map(|c| c.3).collect())),
    ]);
    Ok(())
}

/// Per retained checkpoint of the job in `job_dir`, in id order: its id, its full size (its own
/// state files and every shared file it references) and the bytes it wrote (its own files and
/// the shared files no earlier checkpoint references).
fn checkpoint_sizes(job_dir: &Path, root: &Path) -> std::result::Result<Vec<(u64, u64, u64)>, String> {
    let mut ids: Vec<u64> = std::fs::read_dir(job_dir)
        .map_err(|e| format!("cannot list {}: {e}", job_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        let path = job_dir.join(format!("chk-{id}")).join("_metadata");
        let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let meta: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        let (mut full, mut new) = (text.len() as u64, text.len() as u64);
        for subtask in meta["operators"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|o| o["subtasks"].as_array())
            .flatten()
        {
            let own = subtask["state"]["size"].as_u64().unwrap_or(0);
            full += own;
            new += own;
            for shared in subtask["shared"].as_array().into_iter().flatten().filter_map(|s| s.as_str()) {
                let size = std::fs::metadata(root.join(shared)).map(|m| m.len()).unwrap_or(0);
                full += size;
                if seen.insert(shared.to_string()) {
                    new += size;
                }
            }
        }
        out.push((id, full, new));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Recovery of 1 GB of state.

fn run_recovery(s: &Scenario, dir: &Path) -> std::result::Result<(), String> {
    let err = |e: EddyError| e.to_string();
    let keys = env_u64("EDDY_BENCH_RECOVERY_KEYS", 10_000_000);
    let mut config = Configuration::new();
    s.backend.configure(&mut config, dir);
    config.set("state.backend.fjall.memory", "256 mb");
    let backend = Arc::new(StateBackendConfig::from_configuration(&config).map_err(err)?);
    let desc = ValueStateDescriptor::<Vec<u8>>::new("value");
    let mut state = KeyedState::<u64>::new(backend.clone(), 128).map_err(err)?;
    for k in 0..keys {
        let mut value = vec![0u8; VALUE_BYTES];
        value[..8].copy_from_slice(&k.to_le_bytes());
        state.value_state(&desc, &k, 0).map_err(err)?.update(value);
    }
    let snapshot = state.snapshot(128, 0).map_err(err)?;
    drop(state);
    let file = dir.join("keyed-state");
    let mut bytes = Vec::new();
    eddy_core::codec::encode_value(&snapshot, &mut bytes).map_err(err)?;
    drop(snapshot);
    std::fs::write(&file, &bytes).map_err(|e| e.to_string())?;
    // On disk, as a completed checkpoint is (the job master syncs its files): otherwise the
    // kernel would still be writing it back while the restore below is timed.
    std::fs::File::open(&file).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
    let size = bytes.len();
    drop(bytes);

    // What a restarted task does: read the file, decode it, restore its key groups, and read
    // state (which decodes the restored bytes into the backend).
    let started = Instant::now();
    let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
    let snapshot: eddy::state::KeyedStateSnapshot = eddy_core::codec::decode_value(&bytes).map_err(err)?;
    drop(bytes);
    let mut restored = KeyedState::<u64>::new(backend, 128).map_err(err)?;
    restored.restore(vec![snapshot], 0..=127).map_err(err)?;
    let probe = keys / 2;
    let value = restored.value_state(&desc, &probe, 0).map_err(err)?.value().cloned();
    let seconds = started.elapsed().as_secs_f64();
    if value.as_deref().map(|v| &v[..8]) != Some(&probe.to_le_bytes()[..]) {
        return Err(format!("key {probe} did not come back: {value:?}"));
    }
    report(&[
        ("seconds", seconds),
        ("bytes", size as f64),
        ("peak_rss_kb", peak_rss_kb().unwrap_or(0) as f64),
    ]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The harness.

fn run_child(name: &str) -> std::result::Result<(), String> {
    let s = *SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| format!("no scenario named {name}"))?;
    let dir = tempfile_dir()?;
    let result = match s.kind {
        Kind::Sensors => run_sensors(&s, &dir),
        Kind::Checkpoints { keys } => run_checkpoints(&s, keys, &dir),
        Kind::Recovery => run_recovery(&s, &dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::result::Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("eddy-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn parse(stdout: &str) -> Option<Fields> {
    let line = stdout.lines().find(|l| l.starts_with(RESULT_PREFIX))?;
    line.split_whitespace()
        .skip(1)
        .map(|kv| kv.split_once('=').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

fn field(f: &Fields, key: &str) -> f64 {
    f.iter().find(|(k, _)| k == key).map_or(f64::NAN, |(_, v)| *v)
}

fn run_parent(filters: &[String]) -> std::result::Result<(), String> {
    let runs = env_u64("EDDY_BENCH_RUNS", 3).max(1) as usize;
    let selected = select_scenarios(SCENARIOS, |s| s.name, filters)?;
    eprintln!("{runs} runs per scenario; {}; load average {}", cpu_model(), load_average());
    let mut tables: [Vec<String>; 3] = Default::default();
    for s in &selected {
        let mut results = Vec::new();
        for r in 0..runs {
            let stdout = run_scenario_process(s.name, &[])?;
            let fields = parse(&stdout).ok_or_else(|| format!("{}: no result line in {stdout:?}", s.name))?;
            eprintln!("  {} run {}/{}: {fields:?}", s.name, r + 1, runs);
            results.push(fields);
        }
        let med = |key: &str| median(results.iter().map(|f| field(f, key)).collect());
        let mb = |bytes: f64| bytes / (1024.0 * 1024.0);
        match s.kind {
            Kind::Sensors => tables[0].push(format!(
                "| {} | {} records/s | {:.2} | {:.0} | {:.0} ms | {:.2} MB | {:.0} |",
                s.name,
                millions(med("records") / med("seconds")),
                med("seconds"),
                med("checkpoints"),
                med("ckpt_ms"),
                mb(med("ckpt_bytes")),
                med("peak_rss_kb") / 1024.0
            )),
            Kind::Checkpoints { .. } => tables[1].push(format!(
                "| {} | {:.0} | {:.1} MB | {:.1} MB | {:.0} ms | {:.1} MB | {:.2} MB | {:.0} ms |",
                s.name,
                med("checkpoints"),
                mb(med("largest_full_bytes")),
                mb(med("largest_written_bytes")),
                med("largest_ms"),
                mb(med("steady_full_bytes")),
                mb(med("steady_written_bytes")),
                med("steady_ms")
            )),
            Kind::Recovery => tables[2].push(format!(
                "| {} | {:.0} MB | {:.2} s | {:.0} |",
                s.name,
                mb(med("bytes")),
                med("seconds"),
                med("peak_rss_kb") / 1024.0
            )),
        }
    }
    eprintln!("load average after: {}", load_average());
    let heads = [
        "| scenario | throughput (median) | time s | checkpoints | checkpoint duration (median) | checkpoint size (median) | peak RSS MB |\n|---|---|---|---|---|---|---|",
        "| scenario | checkpoints | largest: state size | written | duration | steady state (median of last 5): state size | written | duration |\n|---|---|---|---|---|---|---|---|",
        "| scenario | checkpoint size | recovery time | peak RSS MB |\n|---|---|---|---|",
    ];
    for (head, rows) in heads.iter().zip(&tables) {
        if !rows.is_empty() {
            println!("\n{head}");
            for r in rows {
                println!("{r}");
            }
        }
    }
    println!("\n{runs} runs per scenario, medians.");
    Ok(())
}

fn main() -> ExitCode {
    bench_main(|name, _| run_child(name), run_parent)
}
