//! The job lifecycle on the local mini-cluster: failures, termination, cancellation,
//! backpressure, configuration errors and job status.
//!
//! Jobs are started with `execute_async` and awaited with a bounded `wait_timeout`, so a job
//! that never ends fails its test instead of hanging the suite.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy::config::parse_dynamic_properties;
use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::Batch;

/// Generous: a healthy job here ends in well under a second.
const JOB_LIMIT: Duration = Duration::from_secs(30);

fn env(parallelism: usize) -> StreamExecutionEnvironment {
    StreamExecutionEnvironment::local().with_parallelism(parallelism)
}

/// Waits for the job to end, at most [`JOB_LIMIT`]; cancels it and fails the test otherwise.
fn await_end(client: &JobClient) -> JobStatus {
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    status
}

/// Counts the records it receives; optionally pauses after each batch (a slow consumer).
#[derive(Clone)]
struct CountingSink {
    count: Arc<AtomicU64>,
    pause_per_batch: Duration,
}

impl CountingSink {
    fn new() -> Self {
        CountingSink { count: Arc::new(AtomicU64::new(0)), pause_per_batch: Duration::ZERO }
    }
}

impl<T: Data> Sink<T> for CountingSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Data> SinkWriter<T> for CountingSink {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.count.fetch_add(batch.len() as u64, Ordering::SeqCst);
        if !self.pause_per_batch.is_zero() {
            // The slow consumer under test, not a stand-in for synchronization.
            std::thread::sleep(self.pause_per_batch);
        }
        Ok(())
    }
}

/// Collects what it receives, at whatever parallelism the sink runs.
#[derive(Clone)]
struct CollectSink<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink { records: Arc::new(Mutex::new(Vec::new())) }
    }
}

impl<T> CollectSink<T> {
    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl<T: Data> Sink<T> for CollectSink<T> {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Data> SinkWriter<T> for CollectSink<T> {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.records.lock().unwrap().extend(batch.values);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[test]
fn a_panicking_function_fails_the_job_naming_operator_subtask_and_panic() {
    let env = env(2);
    env.from_generator(1_000_000, |i| i)
        .map(|i: u64| {
            if i == 700_000 {
                panic!("exploded on record {i}");
            }
            i
        })
        .name("Exploder")
        .sink_to(CountingSink::new(), "Count")
        .set_parallelism(1);
    let client = env.execute_async("exploding").unwrap();
    assert_eq!(await_end(&client), JobStatus::Failed);
    let err = client.wait().unwrap_err().to_string();
    assert!(err.contains("Exploder (1/2)") || err.contains("Exploder (2/2)"), "operator and subtask: {err}");
    assert!(err.contains("exploded on record 700000"), "the panic message: {err}");
}

/// Fails on record 17 with an error value rather than a panic.
#[derive(Clone)]
struct RejectSeventeen;

impl ProcessFunction<i64, i64> for RejectSeventeen {
    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v == 17 {
            return Err(EddyError::user(format!("bad record {v}")));
        }
        out.collect(v);
        Ok(())
    }
}

#[test]
fn an_error_returned_by_a_function_fails_the_job_with_that_error() {
    let env = env(2);
    env.from_sequence(0, 10_000)
        .process(RejectSeventeen)
        .name("Validator")
        .sink_to(CountingSink::new(), "Count");
    let client = env.execute_async("rejecting").unwrap();
    assert_eq!(await_end(&client), JobStatus::Failed);
    let err = client.wait().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad record 17"), "{text}");
    assert!(matches!(&err, EddyError::Task { operator, .. } if operator == "Validator"), "{err:?}");
}

/// Fails on record `bad` with an error value; copies every earlier record to a side output.
#[derive(Clone)]
struct FailOn {
    bad: i64,
    side: OutputTag<i64>,
}

impl ProcessFunction<i64, i64> for FailOn {
    fn process_element(&mut self, v: i64, ctx: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v == self.bad {
            return Err(EddyError::user(format!("root cause: record {v}")));
        }
        ctx.output(&self.side, v);
        out.collect(v);
        Ok(())
    }
}

/// Takes a while to be dropped (every clone does).
#[derive(Clone)]
struct SlowDrop;

impl Drop for SlowDrop {
    fn drop(&mut self) {
        // Widens the window between a failing task closing its output channels and the task
        // reporting its error: the executor must name the root cause whatever the timing.
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_root_cause_is_reported_not_the_cancellation_it_causes_downstream() {
    let env = env(1);
    let side = OutputTag::<i64>::new("all");
    let main = env.from_sequence(0, 1_000).process(FailOn { bad: 500, side: side.clone() }).name("Failing");
    // Chained to the failing operator's side output, so the failing task drops it last, after
    // the channels of its main output.
    let slow = SlowDrop;
    main.get_side_output(&side)
        .filter(move |_| {
            let _ = &slow;
            true
        })
        .sink_to(CountingSink::new(), "Side");
    main.rebalance().sink_to(CountingSink::new(), "Main").set_parallelism(2);
    let client = env.execute_async("root cause").unwrap();
    assert_eq!(await_end(&client), JobStatus::Failed);
    let err = client.wait().unwrap_err().to_string();
    assert!(err.contains("root cause: record 500"), "the job's error must be its root cause: {err}");
}

// ---------------------------------------------------------------------------------------------
// Termination
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bounded_multi_stage_job_finishes_with_correct_results() {
    let n: u64 = 20_000;
    let mut expected: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for i in 0..n {
        let e = expected.entry(i % 17).or_default();
        e.0 += i * 3;
        e.1 += 1;
    }
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        let env = env(2);
        env.set_runtime_mode(mode);
        let out = CollectSink::default();
        env.from_generator(n, |i| i)
            .set_parallelism(2)
            .map(|i: u64| (i % 17, i * 3))
            .set_parallelism(3)
            .key_by(|t: &(u64, u64)| t.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .set_parallelism(2)
            .sink_to(out.clone(), "Collect")
            .set_parallelism(1);
        let client = env.execute_async("multi-stage").unwrap();
        assert_eq!(await_end(&client), JobStatus::Finished, "{mode:?}");
        client.wait().unwrap();

        let mut per_key: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (k, sum) in out.take() {
            per_key.entry(k).or_default().push(sum);
        }
        let finals: BTreeMap<u64, u64> = per_key.iter().map(|(k, v)| (*k, *v.last().unwrap())).collect();
        let want: BTreeMap<u64, u64> = expected.iter().map(|(k, (s, _))| (*k, *s)).collect();
        assert_eq!(finals, want, "{mode:?}: the last result per key is its total");
        for (k, sums) in &per_key {
            let emitted = if mode == RuntimeMode::Batch { 1 } else { expected[k].1 };
            assert_eq!(sums.len(), emitted, "{mode:?}: results for key {k}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation and backpressure
// ---------------------------------------------------------------------------------------------

/// Polls `condition` until it holds, waiting on the job between polls; false if the job ended
/// or `limit` passed first.
fn wait_until(client: &JobClient, limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        if client.wait_timeout(Duration::from_millis(5)).is_terminal() {
            return condition();
        }
    }
    false
}

#[test]
fn cancel_stops_an_unbounded_job() {
    let env = env(2);
    let sink = CountingSink::new();
    env.from_source(DataGeneratorSource::unbounded(|i| i), "Endless")
        .map(|i: u64| i.wrapping_mul(31))
        .sink_to(sink.clone(), "Count")
        .set_parallelism(1);
    let client = env.execute_async("endless").unwrap();
    let seen = sink.count.clone();
    assert!(wait_until(&client, JOB_LIMIT, || seen.load(Ordering::SeqCst) > 0), "the sink saw no records");
    assert_eq!(client.status(), JobStatus::Running);

    client.cancel();
    assert_eq!(client.wait_timeout(Duration::from_secs(10)), JobStatus::Canceled);
    match client.wait() {
        Err(EddyError::Cancelled(id)) => assert_eq!(id, client.job_id()),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert_eq!(client.status(), JobStatus::Canceled);
}

#[test]
fn backpressure_bounds_the_records_in_flight() {
    const BATCH: u64 = 16;
    const CAPACITY: u64 = 2;
    const RECORD_BYTES: usize = 10 * 1024;
    let (producers, consumers) = (2u64, 2u64);
    let channels = producers * consumers;
    // Channels full, plus per producer: the batch being generated, a partly filled buffer per
    // channel and a batch blocked in `send`; plus one batch per consumer.
    let bound = BATCH * (CAPACITY * channels + producers * (2 + consumers) + consumers);

    let mut conf = Configuration::new();
    conf.set("execution.batch-size", BATCH.to_string());
    conf.set("execution.channel-capacity", CAPACITY.to_string());
    let env = env(2);
    env.configure(&conf);

    let generated = Arc::new(AtomicU64::new(0));
    let counter = generated.clone();
    let sink = CountingSink { count: Arc::new(AtomicU64::new(0)), pause_per_batch: Duration::from_millis(1) };
    env.from_source(
        DataGeneratorSource::unbounded(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            vec![(i % 251) as u8; RECORD_BYTES]
        }),
        "Big records",
    )
    .set_parallelism(producers as usize)
    .rebalance()
    .sink_to(sink.clone(), "Slow sink")
    .set_parallelism(consumers as usize);
    let client = env.execute_async("backpressure").unwrap();

    let consumed = sink.count.clone();
    let mut max_in_flight = 0;
    let reached = wait_until(&client, JOB_LIMIT, || {
        // Generated first: a later read of `consumed` can only make the difference smaller.
        let g = generated.load(Ordering::SeqCst);
        let c = consumed.load(Ordering::SeqCst);
        max_in_flight = max_in_flight.max(g.saturating_sub(c));
        c >= 25 * bound || max_in_flight > bound
    });
    client.cancel();
    assert_eq!(client.wait_timeout(Duration::from_secs(10)), JobStatus::Canceled);
    assert!(reached, "the slow sink consumed only {} records", consumed.load(Ordering::SeqCst));
    assert!(
        max_in_flight <= bound,
        "{max_in_flight} records in flight ({} MiB), more than the {bound} the channels can hold",
        (max_in_flight * RECORD_BYTES as u64) >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------------

fn small_job(env: &StreamExecutionEnvironment) {
    env.from_sequence(1, 100).map(|x| x + 1).sink_to(CountingSink::new(), "Count");
}

#[test]
fn an_unparsable_default_parallelism_is_an_error_naming_key_and_value() {
    let mut conf = Configuration::new();
    conf.set("parallelism.default", "abc");
    let env = StreamExecutionEnvironment::local();
    env.configure(&conf);
    small_job(&env);
    let err = env.execute("bad conf").unwrap_err().to_string();
    assert!(err.contains("parallelism.default") && err.contains("abc"), "{err}");
}

#[test]
fn a_dynamic_property_with_a_bad_value_is_an_error_naming_key_and_value() {
    let args = ["-D", "parallelism.default=zero", "--input", "x"].map(String::from);
    let (conf, rest) = parse_dynamic_properties(args).unwrap();
    assert_eq!(rest, ["--input", "x"]);
    let env = StreamExecutionEnvironment::local();
    env.configure(&conf);
    small_job(&env);
    let err = env.execute("bad -D").unwrap_err().to_string();
    assert!(err.contains("parallelism.default") && err.contains("zero"), "{err}");
}

#[test]
fn a_parallelism_of_zero_is_an_error() {
    let env = StreamExecutionEnvironment::local();
    env.set_parallelism(0);
    small_job(&env);
    let err = env.execute("zero").unwrap_err().to_string();
    assert!(err.contains("parallelism.default") && err.contains("at least 1"), "{err}");
}

#[test]
fn too_few_task_slots_is_an_error_naming_slots_needed_and_available() {
    let mut conf = Configuration::new();
    conf.set("taskmanager.numberOfTaskSlots", "1");
    let env = env(2);
    env.configure(&conf);
    small_job(&env);
    let err = env.execute("slots").unwrap_err().to_string();
    assert!(err.contains("slots") && err.contains("needs 2") && err.contains("has 1"), "{err}");

    conf.set("taskmanager.numberOfTaskSlots", "2");
    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    env.configure(&conf);
    small_job(&env);
    env.execute("enough slots").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

#[test]
fn execute_async_reports_status_and_result_of_a_bounded_job() {
    let env = env(2);
    let out = env.from_sequence(1, 5_000).map(|x| x * x).collect_to_vec();
    let client = env.execute_async("status job").unwrap();
    let early = client.status();
    assert!(matches!(early, JobStatus::Running | JobStatus::Finished), "{early:?}");
    assert_eq!(await_end(&client), JobStatus::Finished);
    assert_eq!(client.status(), JobStatus::Finished);
    let result = client.wait().unwrap();
    assert_eq!(result.job_id.len(), 32, "{}", result.job_id);
    assert!(result.job_id.chars().all(|c| c.is_ascii_hexdigit()), "{}", result.job_id);
    assert_eq!(result.job_id, client.job_id());
    assert_eq!(result.job_name, "status job");
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (1..=5_000i64).map(|x| x * x).collect::<Vec<_>>());
}
