//! Checkpoints and recovery on the local mini-cluster: real jobs that fail (several times, at
//! different points) and restart from their latest completed checkpoint.
//!
//! The stateful operator is a test operator that keeps a count per key in a `HashMap` and
//! implements `snapshot_state` / `initialize_state` itself. It fails in subtask 0 of attempt
//! `a` once it has counted `fail_after[a]` records *and* has since heard that a checkpoint
//! completed, so every failure happens with a checkpoint to restore from; should the input
//! end before such a notification, it fails at the end of its input instead. Either way the
//! final state must equal a failure-free run: that is the exactly-once guarantee, and it does
//! not depend on timing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::MaxPerKey;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::{Batch, Configuration};
use eddy_core::{codec, CheckpointBarrier};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::output::Emitter;
use eddy_runtime::{OneInputOperator, OperatorContext};

const KEYS: i64 = 100;
/// Generous: these jobs end in a few seconds even in a debug build on a busy machine.
const JOB_LIMIT: Duration = Duration::from_secs(120);

type Counts = Arc<Mutex<BTreeMap<i64, u64>>>;

/// Counts records per key (`value % KEYS`), emits `(key, count)` for each, and fails on
/// purpose as described in the module docs.
struct CountPerKey {
    counts: HashMap<i64, u64>,
    /// Records counted, restored state included.
    seen: u64,
    subtask: usize,
    attempt: usize,
    fail_after: Arc<Vec<u64>>,
    /// The failure point of this attempt is reached; waiting for a completed checkpoint.
    armed: bool,
    checkpoint_completed: bool,
    final_counts: Counts,
}

impl CountPerKey {
    fn fails_in_this_attempt(&self) -> bool {
        self.subtask == 0 && self.attempt < self.fail_after.len()
    }

    fn failure(&self, when: &str) -> EddyError {
        EddyError::user(format!("injected failure in attempt {} {when}", self.attempt))
    }
}

impl OneInputOperator for CountPerKey {
    type In = i64;
    type Out = (i64, u64);

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask_index;
        self.attempt = ctx.attempt;
        Ok(())
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        if let Some(bytes) = restored.map(RestoredState::unscaled).transpose()?.flatten() {
            let (counts, seen): (Vec<(i64, u64)>, u64) = codec::decode_value(bytes)?;
            self.counts = counts.into_iter().collect();
            self.seen = seen;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<i64>, out: &mut Emitter<(i64, u64)>) -> Result<()> {
        if self.armed && self.checkpoint_completed {
            return Err(self.failure("after a completed checkpoint"));
        }
        for v in batch.values {
            let key = v.rem_euclid(KEYS);
            let count = self.counts.entry(key).or_insert(0);
            *count += 1;
            self.seen += 1;
            out.collect((key, *count))?;
        }
        if self.fails_in_this_attempt() && self.seen >= self.fail_after[self.attempt] && !self.armed {
            self.armed = true;
            self.checkpoint_completed = false;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let counts: Vec<(i64, u64)> = self.counts.iter().map(|(k, v)| (*k, *v)).collect();
        let mut bytes = Vec::new();
        codec::encode_value(&(counts, self.seen), &mut bytes)?;
        Ok(Some(bytes))
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        if self.armed {
            self.checkpoint_completed = true;
        }
        Ok(())
    }

    fn end_input(&mut self, _: &mut Emitter<(i64, u64)>) -> Result<()> {
        if self.fails_in_this_attempt() {
            return Err(self.failure("at the end of its input"));
        }
        self.final_counts.lock().unwrap().extend(self.counts.iter().map(|(k, v)| (*k, *v)));
        Ok(())
    }
}

/// What a run of the counting job left behind.
struct Outcome {
    client: JobClient,
    result: Result<JobExecutionResult>,
    final_counts: BTreeMap<i64, u64>,
    sink_max: BTreeMap<i64, u64>,
    /// Records the source emitted, over all attempts.
    emitted: u64,
}

fn config(pairs: &[(&str, &str)]) -> Configuration {
    let mut config = Configuration::new();
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", "10");
    config.set("restart-strategy.fixed-delay.delay", "10 ms");
    // The tests look at the checkpoints a job left behind.
    config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION");
    for (k, v) in pairs {
        config.set(*k, *v);
    }
    config
}

/// `source(env)` → count what it emits → key_by → [`CountPerKey`] → [`MaxPerKey`].
fn run_counting_job(
    config: Configuration,
    fail_after: Vec<u64>,
    source: impl FnOnce(&StreamExecutionEnvironment) -> DataStream<i64>,
) -> Outcome {
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let emitted = Arc::new(AtomicU64::new(0));
    let final_counts = Counts::default();
    let sink = MaxPerKey::default();
    let (e, f) = (emitted.clone(), final_counts.clone());
    let fail_after = Arc::new(fail_after);
    source(&env)
        .map(move |x| {
            e.fetch_add(1, Ordering::Relaxed);
            x
        })
        .key_by(|x: &i64| x.rem_euclid(KEYS))
        .as_stream()
        .transform("CountPerKey", move |_| {
            Ok(CountPerKey {
                counts: HashMap::new(),
                seen: 0,
                subtask: 0,
                attempt: 0,
                fail_after: fail_after.clone(),
                armed: false,
                checkpoint_completed: false,
                final_counts: f.clone(),
            })
        })
        .uid("count-per-key")
        .sink_to(sink.clone(), "max per key");
    let client = env.execute_async("checkpointed counts").unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    let result = client.wait();
    let final_counts = final_counts.lock().unwrap().clone();
    let sink_max = sink.0.lock().unwrap().clone();
    Outcome { client, result, final_counts, sink_max, emitted: emitted.load(Ordering::Relaxed) }
}

/// The counts a failure-free run of `values` gives.
fn expected_counts(values: impl IntoIterator<Item = i64>) -> BTreeMap<i64, u64> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v.rem_euclid(KEYS)).or_insert(0) += 1;
    }
    counts
}

fn assert_recovered(o: &Outcome, failures: usize, expected: &BTreeMap<i64, u64>) {
    if let Err(e) = &o.result {
        panic!("the job failed: {e}; checkpoints {:?}", o.client.checkpoint_stats());
    }
    assert_eq!(o.client.restarts(), failures, "one restart per injected failure");
    let stats = o.client.checkpoint_stats();
    assert!(stats.completed >= 1, "{stats:?}");
    assert!(stats.restored.is_some(), "the last attempt was restored from a checkpoint: {stats:?}");
    assert_eq!(&o.final_counts, expected, "the final state equals a failure-free run's");
    assert_eq!(&o.sink_max, expected, "the sink saw every count up to the final one");
}

#[test]
fn exactly_once_state_survives_several_failures_and_sources_resume_where_they_were() {
    const N: i64 = 1_000_000;
    let config = config(&[("execution.checkpointing.interval", "20 ms")]);
    let o = run_counting_job(config, vec![100_000, 250_000, 400_000], |env| env.from_sequence(1, N));
    assert_recovered(&o, 3, &expected_counts(1..=N));
    // Each restart resumed the sequence from a checkpoint, not from 1.
    assert!(o.emitted < 2 * N as u64, "the source emitted {} records for {N}", o.emitted);
}

#[test]
fn at_least_once_ends_with_no_record_lost() {
    const N: i64 = 300_000;
    let config = config(&[
        ("execution.checkpointing.interval", "20 ms"),
        ("execution.checkpointing.mode", "AT_LEAST_ONCE"),
    ]);
    let o = run_counting_job(config, vec![50_000, 120_000], |env| env.from_sequence(1, N));
    assert!(o.result.is_ok(), "{:?}", o.result.err());
    assert_eq!(o.client.restarts(), 2);
    let expected = expected_counts(1..=N);
    // Records after an early barrier may be counted twice, but none is missing.
    assert_eq!(o.final_counts.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (k, want) in &expected {
        assert!(o.final_counts[k] >= *want, "key {k}: {} < {want}", o.final_counts[k]);
    }
}

#[test]
fn every_bounded_source_resumes_from_its_checkpointed_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("numbers.txt");
    let lines: Vec<String> = (0..300_000).map(|i| format!("{i}")).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let interval = [("execution.checkpointing.interval", "10 ms")];

    let o =
        run_counting_job(config(&interval), vec![5_000], |env| env.from_collection((0..300_000).collect()));
    assert_recovered(&o, 1, &expected_counts(0..300_000));

    let o =
        run_counting_job(config(&interval), vec![5_000], |env| env.from_generator(300_000, |i| i as i64 * 3));
    assert_recovered(&o, 1, &expected_counts((0..300_000).map(|i| i * 3)));

    let path = file.clone();
    let o = run_counting_job(config(&interval), vec![5_000, 40_000], move |env| {
        // Splits of 200 KB: several per reader, some restored in the middle.
        let source = eddy::connectors::TextFileSource::new(path).with_split_size(200_000);
        env.from_source(source, "numbers").map(|line: String| line.parse::<i64>().unwrap_or(-1))
    });
    assert_recovered(&o, 2, &expected_counts(0..300_000));
}

#[test]
fn barriers_cross_the_network_data_plane() {
    const N: i64 = 500_000;
    let config =
        config(&[("execution.checkpointing.interval", "10 ms"), ("execution.network-exchange", "true")]);
    let o = run_counting_job(config, vec![20_000], |env| env.from_sequence(1, N));
    assert_recovered(&o, 1, &expected_counts(1..=N));
}

#[test]
fn unaligned_checkpoints_store_in_flight_records_and_restore_them_exactly_once() {
    const N: i64 = 600_000;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[
        ("execution.checkpointing.interval", "10 ms"),
        ("execution.checkpointing.unaligned.enabled", "true"),
        ("state.checkpoints.dir", dir.path().to_str().unwrap()),
        ("state.checkpoints.num-retained", "100000"),
    ]);
    let o = run_counting_job(config, vec![60_000, 200_000, 350_000], |env| env.from_sequence(1, N));
    assert_recovered(&o, 3, &expected_counts(1..=N));
    // Some checkpoint caught records in flight: the counting task has two input channels whose
    // barriers arrive at different times.
    let job_dir = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let in_flight = chk_dirs(&job_dir)
        .iter()
        .flat_map(|chk| std::fs::read_dir(job_dir.join(chk)).unwrap())
        .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().ends_with("-in-flight"))
        .count();
    assert!(in_flight > 0, "no checkpoint stored in-flight records");
}

#[test]
fn a_jobs_checkpoints_are_deleted_when_it_ends_unless_its_retention_keeps_them() {
    const N: i64 = 200_000;
    const RETENTION: &str = "execution.checkpointing.externalized-checkpoint-retention";
    // (retention, restart strategy, whether the job fails for good, whether its checkpoints stay)
    let cases = [
        ("NO_EXTERNALIZED_CHECKPOINTS", "fixed-delay", false, false),
        ("NO_EXTERNALIZED_CHECKPOINTS", "none", true, false),
        ("DELETE_ON_CANCELLATION", "fixed-delay", false, false),
        ("DELETE_ON_CANCELLATION", "none", true, true),
        ("RETAIN_ON_CANCELLATION", "fixed-delay", false, true),
    ];
    for (retention, restarts, fails, kept) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&[
            ("execution.checkpointing.interval", "10 ms"),
            ("state.checkpoints.dir", dir.path().to_str().unwrap()),
            ("restart-strategy.type", restarts),
            (RETENTION, retention),
        ]);
        let o = run_counting_job(config, vec![20_000], |env| env.from_sequence(1, N));
        assert_eq!(o.result.is_err(), fails, "{retention}, {restarts}: {:?}", o.result.as_ref().err());
        assert!(o.client.checkpoint_stats().completed >= 1, "{retention}: a checkpoint was written");
        let job_dir = dir.path().join(o.client.job_id());
        assert_eq!(
            job_dir.exists(),
            kept,
            "{retention}, the job {}",
            if fails { "failed" } else { "finished" }
        );
    }
}

fn chk_dirs(job_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn checkpoints_are_written_to_the_configured_directory_and_retained() {
    const N: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[
        ("execution.checkpointing.interval", "10 ms"),
        ("state.checkpoints.dir", dir.path().to_str().unwrap()),
        ("state.checkpoints.num-retained", "2"),
    ]);
    let o = run_counting_job(config, vec![30_000], |env| env.from_sequence(1, N));
    assert_recovered(&o, 1, &expected_counts(1..=N));
    let job_dir = dir.path().join(o.client.job_id());
    let names = chk_dirs(&job_dir);
    let stats = o.client.checkpoint_stats();
    let want: Vec<String> = stats.retained.iter().map(|id| format!("chk-{id}")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(names, want_sorted, "exactly the retained checkpoints are on disk: {stats:?}");
    assert!((1..=2).contains(&names.len()), "{names:?}");
    for name in &names {
        let chk = job_dir.join(name);
        let metadata: serde_json::Value =
            serde_json::from_slice(&std::fs::read(chk.join("_metadata")).unwrap()).unwrap();
        assert_eq!(metadata["version"], 1);
        assert_eq!(format!("chk-{}", metadata["checkpoint_id"]), *name);
        let operators = metadata["operators"].as_array().unwrap();
        let counter =
            operators.iter().find(|o| o["uid"] == "count-per-key").expect("the operator by its uid");
        assert_eq!(counter["parallelism"], 2);
        assert_eq!(counter["max_parallelism"], 128);
        for subtask in counter["subtasks"].as_array().unwrap() {
            if let Some(file) = subtask["state"]["file"].as_str() {
                let len = std::fs::metadata(chk.join(file)).unwrap().len();
                assert_eq!(subtask["state"]["size"], len);
            }
        }
        // The sequence source's enumerator state is there too.
        assert!(operators.iter().any(|o| o["coordinator"].is_object()), "{metadata}");
    }
}

#[test]
fn a_source_that_cannot_checkpoint_fails_the_job_after_the_tolerated_failures() {
    // `from_source` of a reader without `snapshot_state`: every checkpoint is declined.
    let env = StreamExecutionEnvironment::with_configuration(config(&[
        ("execution.checkpointing.interval", "10 ms"),
        ("execution.checkpointing.tolerable-failed-checkpoints", "2"),
        ("restart-strategy.type", "none"),
    ]))
    .with_parallelism(1);
    env.from_source(Endless, "endless").sink_to(MaxPerKey::default(), "sink");
    let client = env.execute_async("undeclared").unwrap();
    let err = client.wait().unwrap_err().to_string();
    assert!(err.contains("Exceeded checkpoint tolerable failure threshold (2"), "{err}");
    assert!(err.contains("does not support checkpoints"), "{err}");
    assert_eq!(client.checkpoint_stats().failed, 3);
}

/// An unbounded source whose reader cannot record its position.
struct Endless;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct EndlessSplit;

impl eddy::source::SourceSplit for EndlessSplit {
    fn split_id(&self) -> String {
        "endless".into()
    }
}

struct EndlessReader;

impl eddy::source::SourceReader for EndlessReader {
    type Output = (i64, u64);
    type Split = EndlessSplit;

    fn add_split(&mut self, _: EndlessSplit) -> Result<()> {
        Ok(())
    }

    fn poll_next(
        &mut self,
        out: &mut eddy::source::SourceOutput<(i64, u64)>,
    ) -> Result<eddy::source::ReaderStatus> {
        out.collect((1, 1));
        Ok(eddy::source::ReaderStatus::MoreAvailable)
    }
}

impl eddy::source::Source for Endless {
    type Output = (i64, u64);
    type Split = EndlessSplit;
    type Reader = EndlessReader;

    fn boundedness(&self) -> eddy::source::Boundedness {
        eddy::source::Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, _: usize) -> Result<Box<dyn eddy::source::SplitEnumerator<EndlessSplit>>> {
        Ok(Box::new(eddy::source::SplitQueue::new(vec![EndlessSplit])))
    }

    fn create_reader(&self, _: &eddy::source::ReaderContext) -> Result<EndlessReader> {
        Ok(EndlessReader)
    }
}

#[test]
fn a_source_that_finished_before_a_checkpoint_is_not_read_again() {
    // The small collection is done long before the first checkpoint (50 ms in): its subtask is
    // checkpointed as finished, and restored as finished it emits nothing again.
    const N: i64 = 400_000;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[
        ("execution.checkpointing.interval", "50 ms"),
        ("state.checkpoints.dir", dir.path().to_str().unwrap()),
    ]);
    let o = run_counting_job(config, vec![60_000], |env| {
        let small = env.from_collection((-1_000..0).collect()).uid("small");
        small.union(&env.from_sequence(1, N))
    });
    assert_recovered(&o, 1, &expected_counts((-1_000..0).chain(1..=N)));
    let job_dir = dir.path().join(o.client.job_id());
    for name in chk_dirs(&job_dir) {
        let metadata: serde_json::Value =
            serde_json::from_slice(&std::fs::read(job_dir.join(name).join("_metadata")).unwrap()).unwrap();
        let small = metadata["operators"].as_array().unwrap().iter().find(|o| o["uid"] == "small").unwrap();
        assert_eq!(small["subtasks"][0]["finished"], true, "{small}");
        assert!(small["subtasks"][0]["state"].is_null(), "{small}");
    }
}

/// Sums each input of a two-input task; fails once in attempt 0 after a completed checkpoint.
struct SumBoth {
    sums: [i64; 2],
    attempt: usize,
    seen: u64,
    armed: bool,
    checkpoint_completed: bool,
    result: Arc<Mutex<Option<[i64; 2]>>>,
}

impl SumBoth {
    fn add(&mut self, input: usize, batch: Batch<i64>) -> Result<()> {
        if self.armed && self.checkpoint_completed {
            return Err(EddyError::user("injected failure"));
        }
        self.seen += batch.len() as u64;
        self.sums[input] += batch.values.iter().sum::<i64>();
        self.armed |= self.attempt == 0 && self.seen >= 50_000;
        Ok(())
    }
}

impl eddy_runtime::TwoInputOperator for SumBoth {
    type In1 = i64;
    type In2 = i64;
    type Out = i64;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.attempt = ctx.attempt;
        Ok(())
    }
    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        if let Some(bytes) = restored.map(RestoredState::unscaled).transpose()?.flatten() {
            (self.sums, self.seen) = codec::decode_value(bytes)?;
        }
        Ok(())
    }
    fn process_batch1(&mut self, batch: Batch<i64>, _: &mut Emitter<i64>) -> Result<()> {
        self.add(0, batch)
    }
    fn process_batch2(&mut self, batch: Batch<i64>, _: &mut Emitter<i64>) -> Result<()> {
        self.add(1, batch)
    }
    fn snapshot_state(&mut self, _: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        codec::encode_value(&(self.sums, self.seen), &mut bytes)?;
        Ok(Some(bytes))
    }
    fn notify_checkpoint_complete(&mut self, _: u64) -> Result<()> {
        self.checkpoint_completed |= self.armed;
        Ok(())
    }
    fn end_input(&mut self, _: &mut Emitter<i64>) -> Result<()> {
        if self.attempt == 0 {
            return Err(EddyError::user("injected failure at the end of the input"));
        }
        *self.result.lock().unwrap() = Some(self.sums);
        Ok(())
    }
}

#[test]
fn a_two_input_operator_is_restored_with_exactly_the_records_before_its_barriers() {
    const N: i64 = 300_000;
    let env = StreamExecutionEnvironment::with_configuration(config(&[(
        "execution.checkpointing.interval",
        "10 ms",
    )]))
    .with_parallelism(2);
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    // Throttled so that the job outlasts a few checkpoint intervals (at least 200 ms).
    let sequence = || DataGeneratorSource::new(|i| i as i64 + 1, N as u64).with_rate(N as f64 * 5.0);
    let evens = env.from_source(sequence(), "evens").map(|x| x * 2);
    let odds = env.from_source(sequence(), "odds").map(|x| x * 2 - 1);
    evens
        .connect(&odds)
        .transform("SumBoth", move |_| {
            Ok(SumBoth {
                sums: [0, 0],
                attempt: 0,
                seen: 0,
                armed: false,
                checkpoint_completed: false,
                result: r.clone(),
            })
        })
        .set_parallelism(1)
        .sink_to(Discard, "discard");
    let client = env.execute_async("two inputs").unwrap();
    client.wait().unwrap();
    assert_eq!(client.restarts(), 1);
    assert!(client.checkpoint_stats().restored.is_some(), "{:?}", client.checkpoint_stats());
    let sum_evens: i64 = (1..=N).map(|x| x * 2).sum();
    let sum_odds: i64 = (1..=N).map(|x| x * 2 - 1).sum();
    assert_eq!(*result.lock().unwrap(), Some([sum_evens, sum_odds]));
}

/// A sink for a stream nobody looks at.
struct Discard;

impl Sink<i64> for Discard {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<i64>>> {
        struct Nothing;
        impl SinkWriter<i64> for Nothing {
            fn write_batch(&mut self, _: Batch<i64>) -> Result<()> {
                Ok(())
            }
        }
        Ok(Box::new(Nothing))
    }
}
