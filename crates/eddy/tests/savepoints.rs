//! Savepoints on the local mini-cluster: taken from a running job that the test holds half
//! way, resumed at another parallelism, stop-with-savepoint with and without drain, and the
//! errors of a restore that cannot work.
//!
//! The job reads the numbers `0..N` (each its own event timestamp) from [`HeldSequence`], a
//! source that emits nothing at or above the [`Gate`]'s limit until the test lifts it. It keys
//! them by `v % KEYS` and writes three kinds of lines to the exactly-once text file sink:
//! `count k n` from a `KeyedProcessFunction` (value state), `window k end c` from the same
//! function's event-time timers (a tumbling window of `WINDOW` ms done by hand), and `sum k s`
//! from a keyed `sum`, `rich k n` from a rich map's keyed state, and `total k end c t 1` from a
//! window function's global state (the key's running total `t`) and window state (firings).
//! Whatever the parallelism and timing, an uninterrupted run writes each
//! line of [`expected_lines`] exactly once, so a resumed job must too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eddy::prelude::*;
use eddy::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitEnumerator, SplitQueue,
};
use eddy::Configuration;

const N: i64 = 20_000;
const HALF: i64 = N / 2 + 437;
const KEYS: i64 = 7;
const WINDOW: i64 = 1_000;
const SPLITS: i64 = 16;
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// What the test controls of a running [`HeldSequence`]: readers emit only numbers below
/// `limit`, and count what they emitted.
struct Gate {
    limit: AtomicI64,
    emitted: AtomicU64,
}

impl Gate {
    fn holding_at(limit: i64) -> Arc<Gate> {
        Arc::new(Gate { limit: AtomicI64::new(limit), emitted: AtomicU64::new(0) })
    }

    fn open() -> Arc<Gate> {
        Gate::holding_at(i64::MAX)
    }

    /// Waits until the readers have emitted every number below the limit.
    fn wait_until_held(&self) {
        let limit = self.limit.load(Ordering::SeqCst).min(N);
        let deadline = Instant::now() + JOB_LIMIT;
        while self.emitted.load(Ordering::SeqCst) < limit as u64 {
            assert!(Instant::now() < deadline, "the source did not reach {limit}");
            std::thread::yield_now();
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Range {
    from: i64,
    to: i64,
}

impl SourceSplit for Range {
    fn split_id(&self) -> String {
        format!("{}..{}", self.from, self.to)
    }
}

/// The numbers `0..N` in `SPLITS` ranges, each number with itself as its timestamp.
#[derive(Clone)]
struct HeldSequence {
    gate: Arc<Gate>,
}

impl Source for HeldSequence {
    type Output = i64;
    type Split = Range;
    type Reader = HeldReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, _: usize) -> Result<Box<dyn SplitEnumerator<Range>>> {
        let cut = |k: i64| N * k / SPLITS;
        Ok(Box::new(SplitQueue::new((0..SPLITS).map(|k| Range { from: cut(k), to: cut(k + 1) }))))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<HeldReader> {
        Ok(HeldReader { gate: self.gate.clone(), splits: Default::default() })
    }
}

struct HeldReader {
    gate: Arc<Gate>,
    splits: std::collections::VecDeque<Range>,
}

impl SourceReader for HeldReader {
    type Output = i64;
    type Split = Range;

    fn add_split(&mut self, split: Range) -> Result<()> {
        self.splits.push_back(split);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<i64>) -> Result<ReaderStatus> {
        let Some(split) = self.splits.front_mut() else { return Ok(ReaderStatus::NeedsSplit) };
        let limit = self.gate.limit.load(Ordering::SeqCst);
        let mut emitted = 0;
        while split.from < split.to && split.from < limit && out.remaining() > 0 {
            out.collect_with_timestamp(split.from, split.from);
            split.from += 1;
            emitted += 1;
        }
        self.gate.emitted.fetch_add(emitted, Ordering::SeqCst);
        if split.from == split.to {
            self.splits.pop_front();
            return Ok(ReaderStatus::MoreAvailable);
        }
        Ok(if emitted == 0 { ReaderStatus::NothingAvailable } else { ReaderStatus::MoreAvailable })
    }

    fn available_at(&self) -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(5))
    }

    fn snapshot_state(&mut self, _: u64) -> Result<Vec<Range>> {
        Ok(self.splits.iter().cloned().collect())
    }
}

/// Counts records per key (value state) and sums them per tumbling event-time window of
/// `WINDOW` ms, reported by a timer at the window's end.
#[derive(Clone)]
struct CountAndWindows {
    count: ValueStateDescriptor<i64>,
    windows: ValueStateDescriptor<BTreeMap<i64, i64>>,
}

impl CountAndWindows {
    fn new() -> Self {
        CountAndWindows {
            count: ValueStateDescriptor::new("count"),
            windows: ValueStateDescriptor::new("windows"),
        }
    }
}

impl KeyedProcessFunction<i64, i64, String> for CountAndWindows {
    fn process_element(
        &mut self,
        v: i64,
        ctx: &mut KeyedContext<i64>,
        out: &mut Collector<String>,
    ) -> Result<()> {
        let key = *ctx.current_key();
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect(format!("count {key} {n}"));
        let end = window_end(v);
        let mut windows = ctx.state(&self.windows);
        let mut w = windows.value().cloned().unwrap_or_default();
        *w.entry(end).or_insert(0) += 1;
        windows.update(w);
        ctx.timer_service().register_event_time_timer(end);
        Ok(())
    }

    fn on_timer(&mut self, ts: i64, ctx: &mut KeyedContext<i64>, out: &mut Collector<String>) -> Result<()> {
        let key = *ctx.current_key();
        let mut windows = ctx.state(&self.windows);
        let mut w = windows.value().cloned().unwrap_or_default();
        let c = w.remove(&ts).unwrap_or(0);
        windows.update(w);
        out.collect(format!("window {key} {ts} {c}"));
        Ok(())
    }
}

/// Per tumbling window of `WINDOW` ms: its count and the key's running total over its windows
/// (global state), and how often the window fired (window state, cleared in `clear`).
#[derive(Clone)]
struct WindowTotals {
    total: ValueStateDescriptor<i64>,
    firings: ValueStateDescriptor<i64>,
}

impl ProcessWindowFunction<i64, String, i64, TimeWindow> for WindowTotals {
    fn process(
        &mut self,
        key: &i64,
        ctx: &mut WindowContext<'_, i64, TimeWindow>,
        elements: &[i64],
        out: &mut Collector<'_, String>,
    ) -> Result<()> {
        let mut firings = ctx.window_state();
        let mut f = firings.state(&self.firings);
        let fired = f.value().copied().unwrap_or(0) + 1;
        f.update(fired);
        let mut global = ctx.global_state();
        let mut t = global.state(&self.total);
        let total = t.value().copied().unwrap_or(0) + elements.len() as i64;
        t.update(total);
        let end = ctx.window().max_timestamp();
        out.collect(format!("total {key} {end} {} {total} {fired}", elements.len()));
        Ok(())
    }

    fn clear(&mut self, _key: &i64, ctx: &mut WindowContext<'_, i64, TimeWindow>) -> Result<()> {
        ctx.window_state().state(&self.firings).clear();
        Ok(())
    }
}

/// A watermark at the start of every window below `HALF`, so that the windows the readers have
/// passed fire before a savepoint taken half way and the savepoint holds window-function state;
/// none after that, until the end of the input. (A resumed reader may hold several splits at
/// different positions, so watermarks from its timestamps would make other splits' records
/// late; below `HALF` each reader reads its own splits in order.)
struct AtWindowStarts;

impl WatermarkGenerator<i64> for AtWindowStarts {
    fn on_event(&mut self, _: &i64, timestamp: i64, output: &mut WatermarkOutput) {
        if timestamp % WINDOW == 0 && timestamp < HALF {
            output.emit_watermark(timestamp - 1);
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// The last timestamp of `v`'s window.
fn window_end(v: i64) -> i64 {
    (v / WINDOW + 1) * WINDOW - 1
}

/// Every line an uninterrupted run writes, sorted.
fn expected_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let mut windows: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut counts = vec![0i64; KEYS as usize];
    for v in 0..N {
        let k = v % KEYS;
        counts[k as usize] += 1;
        lines.push(format!("count {k} {}", counts[k as usize]));
        lines.push(format!("sum {k} {}", counts[k as usize]));
        lines.push(format!("rich {k} {}", counts[k as usize]));
        *windows.entry((k, window_end(v))).or_insert(0) += 1;
    }
    lines.extend(windows.iter().map(|((k, end), c)| format!("window {k} {end} {c}")));
    let mut totals = vec![0i64; KEYS as usize];
    for ((k, end), c) in &windows {
        totals[*k as usize] += c;
        lines.push(format!("total {k} {end} {c} {} 1", totals[*k as usize]));
    }
    lines.sort();
    lines
}

struct Job {
    parallelism: usize,
    gate: Arc<Gate>,
    out: PathBuf,
    config: Vec<(&'static str, String)>,
    /// Leave out the counting process function (a changed program).
    without_counts: bool,
}

impl Job {
    fn new(parallelism: usize, gate: Arc<Gate>, out: &Path) -> Self {
        Job { parallelism, gate, out: out.to_path_buf(), config: Vec::new(), without_counts: false }
    }

    fn restoring(mut self, path: &Path) -> Self {
        self.config.push(("execution.savepoint.path", path.display().to_string()));
        self
    }

    fn with(mut self, key: &'static str, value: &str) -> Self {
        self.config.push((key, value.to_string()));
        self
    }

    fn start(self) -> Result<JobClient> {
        let mut config = Configuration::new();
        // The file sink commits on checkpoints (and savepoints) only when the job checkpoints.
        config.set("execution.checkpointing.interval", "50 ms");
        config.set("restart-strategy.type", "none");
        for (k, v) in &self.config {
            config.set(*k, v.as_str());
        }
        let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(self.parallelism);
        let numbers = env
            .from_source(HeldSequence { gate: self.gate.clone() }, "held sequence")
            .uid("source")
            .assign_timestamps_and_watermarks(WatermarkStrategy::for_generator(|| AtWindowStarts))
            .uid("watermarks");
        let sums = numbers
            .map(|v: i64| (v % KEYS, 1i64))
            .uid("ones")
            .key_by(|t: &(i64, i64)| t.0)
            .sum(|t: &mut (i64, i64)| &mut t.1)
            .uid("sum")
            .map(|(k, s): (i64, i64)| format!("sum {k} {s}"))
            .uid("sum lines");
        let rich_count = ValueStateDescriptor::<i64>::new("count");
        let rich = numbers
            .key_by(|v: &i64| v % KEYS)
            .map(move |_: i64, state: &mut KeyedStateStore<i64>| {
                let key = *state.current_key();
                let mut count = state.state(&rich_count);
                let n = count.value().copied().unwrap_or(0) + 1;
                count.update(n);
                Ok(format!("rich {key} {n}"))
            })
            .uid("rich count");
        let totals = numbers
            .key_by(|v: &i64| v % KEYS)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(WINDOW as u64)))
            .process(WindowTotals {
                total: ValueStateDescriptor::new("total"),
                firings: ValueStateDescriptor::new("firings"),
            })
            .uid("window totals");
        let sums = sums.union(&rich).union(&totals);
        let lines = if self.without_counts {
            sums
        } else {
            let counts = numbers.key_by(|v: &i64| v % KEYS).process(CountAndWindows::new()).uid("count");
            counts.union(&sums)
        };
        lines.write_as_text(&self.out).uid("files");
        env.execute_async("savepoints")
    }
}

fn wait_finished(client: &JobClient) {
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal(), "the job did not end within {JOB_LIMIT:?}");
    if let Err(e) = client.wait() {
        panic!("the job failed: {e}; checkpoints {:?}", client.checkpoint_stats());
    }
}

/// The lines of the committed part files in `dir`, sorted; other files are an error.
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "only committed files are left: {name}");
        lines.extend(std::fs::read_to_string(entry.path()).unwrap().lines().map(str::to_string));
    }
    lines.sort();
    lines
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs the job at parallelism 2 up to `HALF` and takes a savepoint into `savepoints`; returns
/// the client (the job still running, held) and the savepoint folder.
fn savepoint_half_way(out: &Path, savepoints: &Path) -> (JobClient, PathBuf) {
    let gate = Gate::holding_at(HALF);
    let client = Job::new(2, gate.clone(), out).start().unwrap();
    gate.wait_until_held();
    let savepoint = client.trigger_savepoint(Some(savepoints)).unwrap();
    assert_eq!(client.status(), JobStatus::Running, "a savepoint leaves the job running");
    (client, savepoint)
}

#[test]
fn an_uninterrupted_run_writes_the_expected_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Job::new(2, Gate::open(), &tmp.path().join("out")).start().unwrap();
    wait_finished(&client);
    assert_eq!(committed_lines(&tmp.path().join("out")), expected_lines());
}

#[test]
fn a_savepoint_resumes_at_another_parallelism_with_every_line_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (client, savepoint) = savepoint_half_way(&out, &tmp.path().join("savepoints"));
    client.cancel();
    assert!(client.wait().is_err(), "a cancelled job reports its cancellation");
    let name = savepoint.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("savepoint-{}-", &client.job_id()[..6])), "{name}");
    assert!(savepoint.join("_metadata").is_file());
    // A savepoint is self-contained: moved elsewhere, it still restores.
    let moved = tmp.path().join("moved").join(&name);
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&savepoint, &moved).unwrap();

    for parallelism in [3, 1] {
        // Each resumed run continues from its own copy of the output the first run left.
        let resumed_out = tmp.path().join(format!("out-{parallelism}"));
        copy_dir(&out, &resumed_out);
        let gate = Gate::open();
        let resumed = Job::new(parallelism, gate.clone(), &resumed_out).restoring(&moved).start().unwrap();
        wait_finished(&resumed);
        assert!(resumed.checkpoint_stats().restored.is_some());
        assert_eq!(gate.emitted.load(Ordering::SeqCst), (N - HALF) as u64, "the source went on where it was");
        assert_eq!(committed_lines(&resumed_out), expected_lines(), "resumed at parallelism {parallelism}");
    }
}

#[test]
fn stop_with_savepoint_suspends_without_firing_pending_windows_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let gate = Gate::holding_at(HALF);
    let client = Job::new(2, gate.clone(), &out).start().unwrap();
    gate.wait_until_held();
    let savepoint = client.stop_with_savepoint(Some(&tmp.path().join("sp")), false).unwrap();
    assert_eq!(client.status(), JobStatus::Finished);
    // The sinks committed the savepoint; the window the source stopped in did not fire.
    let lines = committed_lines(&out);
    let held_window = format!(" {} ", window_end(HALF));
    assert!(!lines.iter().any(|l| l.starts_with("window") && l.contains(&held_window)), "{lines:?}");
    let counted = lines.iter().filter(|l| l.starts_with("count")).count();
    assert_eq!(counted, HALF as usize, "every record before the stop was counted once");

    let gate = Gate::open();
    let resumed = Job::new(3, gate.clone(), &out).restoring(&savepoint).start().unwrap();
    wait_finished(&resumed);
    assert_eq!(gate.emitted.load(Ordering::SeqCst), (N - HALF) as u64, "the source went on where it was");
    assert_eq!(committed_lines(&out), expected_lines());
}

#[test]
fn stop_with_savepoint_and_drain_fires_every_window_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let gate = Gate::holding_at(HALF);
    let client = Job::new(2, gate.clone(), &out).start().unwrap();
    gate.wait_until_held();
    let savepoint = client.stop_with_savepoint(Some(&tmp.path().join("sp")), true).unwrap();
    assert_eq!(client.status(), JobStatus::Finished);
    assert!(savepoint.join("_metadata").is_file());
    // The maximum watermark fired the window the source stopped in, with what it had.
    let lines = committed_lines(&out);
    let end = window_end(HALF);
    let partial: i64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("window "))
        .filter(|l| l.split(' ').nth(1) == Some(&end.to_string()))
        .map(|l| l.split(' ').nth(2).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(partial, HALF - (end + 1 - WINDOW), "{lines:?}");
    let windows = lines.iter().filter(|l| l.starts_with("window")).count();
    assert_eq!(windows as i64, KEYS * (end + 1) / WINDOW, "every window up to the stop fired once");
    assert_eq!(lines.iter().filter(|l| l.starts_with("count")).count(), HALF as usize);
}

#[test]
fn restoring_into_a_job_without_an_operator_needs_ignore_unclaimed_state() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (client, savepoint) = savepoint_half_way(&out, &tmp.path().join("sp"));
    client.cancel();
    let _ = client.wait();

    let mut changed = Job::new(2, Gate::open(), &tmp.path().join("unused")).restoring(&savepoint);
    changed.without_counts = true;
    let err = changed.start().err().expect("the count operator's state has no owner").to_string();
    assert!(err.contains("uid count") && err.contains("execution.savepoint.ignore-unclaimed-state"), "{err}");

    let mut changed = Job::new(2, Gate::open(), &out)
        .restoring(&savepoint)
        .with("execution.savepoint.ignore-unclaimed-state", "true");
    changed.without_counts = true;
    let resumed = changed.start().unwrap();
    wait_finished(&resumed);
    let lines = committed_lines(&out);
    // The sums went on from the savepoint's; the counts stopped where the savepoint was taken.
    let sums: Vec<&String> = lines.iter().filter(|l| l.starts_with("sum")).collect();
    let expected = expected_lines();
    let expected_sums: Vec<&String> = expected.iter().filter(|l| l.starts_with("sum")).collect();
    assert_eq!(sums, expected_sums);
    assert_eq!(lines.iter().filter(|l| l.starts_with("count")).count(), HALF as usize);
}

#[test]
fn a_corrupt_or_missing_savepoint_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (client, savepoint) = savepoint_half_way(&tmp.path().join("out"), &tmp.path().join("sp"));
    client.cancel();
    let _ = client.wait();

    let metadata = savepoint.join("_metadata");
    let text = std::fs::read_to_string(&metadata).unwrap();
    std::fs::write(&metadata, &text[..text.len() / 3]).unwrap();
    let err = Job::new(2, Gate::open(), &tmp.path().join("o1")).restoring(&savepoint).start().err();
    let err = err.expect("a corrupt savepoint is refused").to_string();
    assert!(err.contains(&metadata.display().to_string()), "{err}");

    let missing = tmp.path().join("no-such-savepoint");
    let err = Job::new(2, Gate::open(), &tmp.path().join("o2")).restoring(&missing).start().err();
    let err = err.expect("a missing savepoint is refused").to_string();
    assert!(err.contains("no-such-savepoint"), "{err}");
}

#[test]
fn a_savepoint_needs_a_directory_and_a_running_job() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = Gate::holding_at(HALF);
    let client = Job::new(1, gate.clone(), &tmp.path().join("out")).start().unwrap();
    gate.wait_until_held();
    let err = client.trigger_savepoint(None).unwrap_err().to_string();
    assert!(err.contains("state.savepoints.dir"), "{err}");
    client.cancel();
    let _ = client.wait();
    let err = client.trigger_savepoint(Some(tmp.path())).unwrap_err().to_string();
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn a_throttled_file_source_takes_checkpoints_while_it_waits_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let text: String = (0..300).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &text).unwrap();
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "20 ms");
    config.set("restart-strategy.type", "none");
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    // 300 lines at 600 lines/s: about half a second, so a few dozen checkpoints fall in it.
    env.from_source(TextFileSource::new(&input).with_rate(600.0), "slow file")
        .write_as_text(tmp.path().join("out"));
    let started = Instant::now();
    let client = env.execute_async("throttled").unwrap();
    wait_finished(&client);
    assert!(started.elapsed() >= Duration::from_millis(400), "the rate held: {:?}", started.elapsed());
    let stats = client.checkpoint_stats();
    assert!(stats.completed >= 5 && stats.failed == 0, "{stats:?}");
    let mut want: Vec<String> = text.lines().map(str::to_string).collect();
    want.sort();
    assert_eq!(committed_lines(&tmp.path().join("out")), want);
}
