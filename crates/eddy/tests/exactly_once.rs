//! Issue 5's acceptance test on the local mini-cluster: exactly-once under failure.
//!
//! The job reads a deterministic bounded source of [`N`] (10 million) numbers, keys them into
//! [`KEYS`] keys, counts per key in a `KeyedProcessFunction` whose count is `ValueState` (so it
//! lives in the configured state backend), and writes `(key, count)` on every update into the
//! exactly-once `TextFileSink`. Checkpoints are taken every 200 ms. A pass-through operator
//! ([`InjectFailures`]) behind the source fails the job at record positions drawn from a seeded
//! random generator (the seed is printed; `EDDY_TEST_SEED=<n>` replays a run), once per planned
//! point, in the attempt where that point is due. Every failure restarts the job from its latest
//! completed checkpoint.
//!
//! A failure-free run writes, for each key `k` with `n_k` records, exactly the lines `(k,1)` …
//! `(k,n_k)`, once each, and nothing else; that is what the committed files must hold after the
//! failures (EXACTLY_ONCE). With AT_LEAST_ONCE, records after an early barrier may be counted
//! again after a restore, so a key may go past `n_k` and a line may appear twice, but each of
//! `(k,1)` … `(k,n_k)` must be there (no loss). Both keyed-state backends run: `hashmap`, and
//! `fjall` with incremental checkpoints.
//!
//! Output volume: every update is written, 10 million lines per run (about 110 MB), so that
//! loss and duplication are seen directly in the committed output, not only through the final
//! state. 1,000 keys keep the state small and spread it over every key group. In a debug build
//! a run takes well under a minute on two cores; see the report printed by each test.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy::prelude::*;
use eddy::{Batch, Configuration};
use eddy_core::{codec, CheckpointBarrier};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::output::Emitter;
use eddy_runtime::{OneInputOperator, OperatorContext};

/// Records the source emits: 0 … N-1.
const N: i64 = 10_000_000;
const KEYS: i64 = 1_000;
/// Records per key (`N` is a multiple of `KEYS`).
const PER_KEY: i64 = N / KEYS;
const PARALLELISM: usize = 2;
const FAILURES: usize = 3;
/// Generous: a run ends in well under a minute in a debug build.
const JOB_LIMIT: Duration = Duration::from_secs(300);

/// A small, seeded generator (SplitMix64): the failure points of a run can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `lo..hi` for choosing failure points.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// `EDDY_TEST_SEED`, else one taken from the clock.
fn seed() -> u64 {
    match std::env::var("EDDY_TEST_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("EDDY_TEST_SEED={s} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

/// `FAILURES` increasing record positions of subtask 0 of the injector, one in each of
/// `FAILURES` equal slices of 5 % to 80 % of its expected share (`N / PARALLELISM`), so that
/// checkpoints complete between the failures and the later failures restore real state.
fn failure_points(seed: u64) -> Vec<u64> {
    let mut rng = SplitMix(seed);
    let share = (N as u64) / PARALLELISM as u64;
    let (lo, hi) = (share / 20, share * 4 / 5);
    let slice = (hi - lo) / FAILURES as u64;
    (0..FAILURES as u64).map(|i| rng.between(lo + i * slice, lo + (i + 1) * slice)).collect()
}

/// What the injector saw, per attempt of subtask 0: the position it was restored at and the
/// position it failed at (`None`: the attempt did not fail).
type AttemptLog = Arc<Mutex<Vec<(usize, u64, Option<u64>)>>>;

/// Passes records through. Its state is its position: the records this subtask has passed,
/// restored from the checkpoint. Subtask 0 fails attempt `a` at position `points[a]` (after
/// passing on the records before it); should its input end first (the source hands out its
/// splits to whichever reader asks, so a subtask's share varies), it fails at the end of its
/// input instead. Either way attempt `a` fails exactly once, for `a < points.len()`.
struct InjectFailures {
    points: Arc<Vec<u64>>,
    position: u64,
    subtask: usize,
    attempt: usize,
    log: AttemptLog,
}

impl InjectFailures {
    fn due(&self) -> Option<u64> {
        (self.subtask == 0).then(|| self.points.get(self.attempt).copied()).flatten()
    }

    fn fail(&self, at: &str) -> EddyError {
        self.log.lock().unwrap().last_mut().unwrap().2 = Some(self.position);
        EddyError::user(format!("injected failure of attempt {} at {at}", self.attempt))
    }
}

impl OneInputOperator for InjectFailures {
    type In = i64;
    type Out = i64;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.attempt = ctx.attempt;
        if self.subtask == 0 {
            self.log.lock().unwrap().push((self.attempt, self.position, None));
        }
        Ok(())
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        if let Some(bytes) = restored.map(RestoredState::unscaled).transpose()?.flatten() {
            self.position = codec::decode_value(bytes)?;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<i64>, out: &mut Emitter<i64>) -> Result<()> {
        let due = self.due().map(|p| p.saturating_sub(self.position)).unwrap_or(u64::MAX);
        for (i, v) in batch.values.into_iter().enumerate() {
            if i as u64 == due {
                return Err(self.fail(&format!("record position {}", self.position)));
            }
            out.collect(v)?;
            self.position += 1;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        codec::encode_value(&self.position, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn end_input(&mut self, _: &mut Emitter<i64>) -> Result<()> {
        if self.due().is_some() {
            return Err(self.fail("the end of its input"));
        }
        Ok(())
    }
}

/// Counts the records of each key in `ValueState` and emits `(key, count)` on every update.
#[derive(Clone)]
struct CountPerKey {
    count: ValueStateDescriptor<u64>,
}

impl KeyedProcessFunction<i64, i64, (i64, u64)> for CountPerKey {
    fn process_element(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<i64>,
        out: &mut Collector<(i64, u64)>,
    ) -> Result<()> {
        let key = *ctx.current_key();
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect((key, n));
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    HashMap,
    /// `fjall` with incremental checkpoints.
    FjallIncremental,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    ExactlyOnce,
    AtLeastOnce,
}

struct Run {
    client: JobClient,
    log: Vec<(usize, u64, Option<u64>)>,
    points: Vec<u64>,
    seed: u64,
    elapsed: Duration,
}

fn run_job(backend: Backend, mode: Mode, out: &Path, checkpoints: &Path) -> Run {
    let seed = seed();
    let points = failure_points(seed);
    println!(
        "{backend:?} {mode:?}: seed {seed} (EDDY_TEST_SEED={seed} replays it), failure points {points:?}"
    );
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "200 ms");
    config.set("state.checkpoints.dir", checkpoints.display().to_string());
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", (FAILURES + 2).to_string());
    config.set("restart-strategy.fixed-delay.delay", "10 ms");
    if mode == Mode::AtLeastOnce {
        config.set("execution.checkpointing.mode", "AT_LEAST_ONCE");
    }
    if let Backend::FjallIncremental = backend {
        config.set("state.backend", "fjall");
        config.set("state.backend.incremental", "true");
    }
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(PARALLELISM);
    let log = AttemptLog::default();
    let (p, l) = (Arc::new(points.clone()), log.clone());
    env.from_sequence(0, N - 1)
        .transform("InjectFailures", move |_| {
            Ok(InjectFailures { points: p.clone(), position: 0, subtask: 0, attempt: 0, log: l.clone() })
        })
        .uid("inject-failures")
        .key_by(|v: &i64| v % KEYS)
        .process(CountPerKey { count: ValueStateDescriptor::new("count") })
        .uid("count-per-key")
        .write_as_text(out);
    let start = Instant::now();
    let client = env.execute_async("exactly-once acceptance").unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?}, seed {seed})");
    }
    if let Err(e) = client.wait() {
        panic!("the job failed (seed {seed}): {e}; checkpoints {:?}", client.checkpoint_stats());
    }
    let elapsed = start.elapsed();
    let log = log.lock().unwrap().clone();
    Run { client, log, points, seed, elapsed }
}

/// How often each expected line `(k,c)`, `1 ≤ c ≤ PER_KEY`, was committed, and what else was.
struct Committed {
    /// Index `k * PER_KEY + c - 1`.
    times: Vec<u8>,
    lines: u64,
    /// Lines that are not an expected `(k,c)`: counts past `PER_KEY`, or not a pair of numbers.
    beyond: u64,
    examples_beyond: Vec<String>,
}

/// Reads every committed file of `dir`; anything but a committed part file fails the test.
fn read_committed(dir: &Path) -> Committed {
    let mut c = Committed { times: vec![0; N as usize], lines: 0, beyond: 0, examples_beyond: Vec::new() };
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "only committed part files are left: {name}");
        let text = std::fs::read(entry.path()).unwrap();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            c.lines += 1;
            match parse_pair(line) {
                Some((k, n)) if (0..KEYS).contains(&k) && (1..=PER_KEY).contains(&n) => {
                    let slot = &mut c.times[(k * PER_KEY + n - 1) as usize];
                    *slot = slot.saturating_add(1);
                }
                _ => {
                    c.beyond += 1;
                    if c.examples_beyond.len() < 5 {
                        c.examples_beyond.push(String::from_utf8_lossy(line).into_owned());
                    }
                }
            }
        }
    }
    c
}

/// `(k,c)` with two non-negative numbers.
fn parse_pair(line: &[u8]) -> Option<(i64, i64)> {
    let inner = line.strip_prefix(b"(")?.strip_suffix(b")")?;
    let comma = inner.iter().position(|&b| b == b',')?;
    let number = |digits: &[u8]| -> Option<i64> {
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    Some((number(&inner[..comma])?, number(&inner[comma + 1..])?))
}

/// The expected lines committed `0` times, and more than once, with a few of each.
fn missing_and_repeated(c: &Committed) -> (u64, Vec<String>, u64, Vec<String>) {
    let line = |i: usize| format!("({},{})", i as i64 / PER_KEY, i as i64 % PER_KEY + 1);
    let (mut missing, mut repeated) = (0, 0);
    let (mut missing_examples, mut repeated_examples) = (Vec::new(), Vec::new());
    for (i, &t) in c.times.iter().enumerate() {
        if t == 0 {
            missing += 1;
            if missing_examples.len() < 5 {
                missing_examples.push(line(i));
            }
        } else if t > 1 {
            repeated += 1;
            if repeated_examples.len() < 5 {
                repeated_examples.push(format!("{} ×{t}", line(i)));
            }
        }
    }
    (missing, missing_examples, repeated, repeated_examples)
}

/// Every failure was injected and restarted the job; the later ones restored real state.
fn assert_failed_as_planned(run: &Run) {
    let stats = run.client.checkpoint_stats();
    println!(
        "seed {}: {:?} in {:.1?}; attempts of subtask 0 (attempt, restored position, failed at): {:?}; \
         checkpoints completed {}, restored {:?}",
        run.seed, run.points, run.elapsed, run.log, stats.completed, stats.restored
    );
    assert_eq!(run.client.restarts(), FAILURES, "one restart per planned failure (seed {})", run.seed);
    let failed = run.log.iter().filter(|(_, _, f)| f.is_some()).count();
    assert_eq!(failed, FAILURES, "every attempt but the last failed once: {:?}", run.log);
    assert!(stats.restored.is_some(), "the last attempt was restored from a checkpoint: {stats:?}");
    assert!(
        run.log.iter().any(|(_, restored, _)| *restored > 0),
        "some attempt resumed its input from a checkpointed position: {:?}",
        run.log
    );
}

fn exactly_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = run_job(backend, Mode::ExactlyOnce, &out, &dir.path().join("checkpoints"));
    assert_failed_as_planned(&run);
    let committed = read_committed(&out);
    let (missing, missing_examples, repeated, repeated_examples) = missing_and_repeated(&committed);
    assert!(
        missing == 0 && repeated == 0 && committed.beyond == 0 && committed.lines == N as u64,
        "seed {}: the committed output differs from a failure-free run's: {} lines for {N}; \
         {missing} missing (e.g. {missing_examples:?}), {repeated} more than once (e.g. \
         {repeated_examples:?}), {} unexpected (e.g. {:?})",
        run.seed,
        committed.lines,
        committed.beyond,
        committed.examples_beyond
    );
}

fn at_least_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = run_job(backend, Mode::AtLeastOnce, &out, &dir.path().join("checkpoints"));
    assert_failed_as_planned(&run);
    let committed = read_committed(&out);
    let (missing, missing_examples, repeated, _) = missing_and_repeated(&committed);
    println!(
        "AT_LEAST_ONCE on {backend:?}: {} lines committed, {repeated} expected lines more than once, \
         {} past the failure-free counts",
        committed.lines, committed.beyond
    );
    assert_eq!(
        missing, 0,
        "seed {}: no update of the failure-free run may be lost (e.g. {missing_examples:?})",
        run.seed
    );
}

#[test]
fn exactly_once_on_the_hashmap_backend_commits_what_a_failure_free_run_commits() {
    exactly_once(Backend::HashMap);
}

#[test]
fn exactly_once_on_fjall_with_incremental_checkpoints_commits_what_a_failure_free_run_commits() {
    exactly_once(Backend::FjallIncremental);
}

#[test]
fn at_least_once_on_the_hashmap_backend_loses_nothing() {
    at_least_once(Backend::HashMap);
}

#[test]
fn at_least_once_on_fjall_with_incremental_checkpoints_loses_nothing() {
    at_least_once(Backend::FjallIncremental);
}
