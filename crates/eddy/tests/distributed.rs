//! One job attempt split over several workers (`eddy_runtime::distributed`), each with its own
//! worker mesh on its own 127.0.0.1 listener, built and run on a thread of its own: results
//! must equal the local mini-cluster's, every source record must be read exactly once, and a
//! failure in one worker must end every worker's tasks.
//!
//! Every wait is bounded and waits on an observed condition.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::{Batch, Configuration};
use eddy_runtime::channel::JobSignals;
use eddy_runtime::distributed::{
    build_worker_tasks, prepare, run_worker_tasks, Placement, TaskState, VertexMetrics, WorkerMesh,
};
use eddy_runtime::executor::ExecutionSettings;
use eddy_runtime::jobgraph::JobGraph;
use eddy_runtime::net::NetOptions;
use eddy_runtime::StreamGraph;

/// Generous: every job here ends in well under a second when healthy.
const JOB_LIMIT: Duration = Duration::from_secs(60);
const JOB_ID: &str = "0123456789abcdef0123456789abcdef";

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Appends every record to a vector shared by all subtasks of all workers of this process.
struct SharedSink<T>(Shared<T>);

impl<T: Data> Sink<T> for SharedSink<T> {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(SharedWriter(self.0.clone())))
    }
}

struct SharedWriter<T>(Shared<T>);

impl<T: Data> SinkWriter<T> for SharedWriter<T> {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.0.lock().unwrap().extend(batch.values);
        Ok(())
    }
}

fn env(parallelism: usize, mode: RuntimeMode) -> StreamExecutionEnvironment {
    env_with(Configuration::new(), parallelism, mode)
}

fn env_with(config: Configuration, parallelism: usize, mode: RuntimeMode) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(parallelism);
    env.set_runtime_mode(mode);
    env
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// A program: builds its pipeline on an environment, ending in the sink it is given.
type Program<T> = dyn Fn(&StreamExecutionEnvironment, SharedSink<T>);

/// Runs `program` on the local mini-cluster: its output and the vertex counters.
fn run_local<T: Data>(
    program: &Program<T>,
    parallelism: usize,
    mode: RuntimeMode,
) -> (Vec<T>, Vec<VertexMetrics>) {
    let env = env(parallelism, mode);
    let out = Shared::default();
    program(&env, SharedSink(out.clone()));
    let client = env.execute_async("local").unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    assert!(status.is_terminal(), "the local job did not end within {JOB_LIMIT:?}");
    client.wait().unwrap();
    let records = std::mem::take(&mut *out.lock().unwrap());
    (records, client.vertex_metrics())
}

/// What one worker reports: its result, and (vertex, subtask, state) for every state change.
struct WorkerReport {
    result: eddy::Result<()>,
    states: Vec<(usize, usize, TaskState)>,
    metrics: Vec<(usize, [u64; 4])>,
}

/// What every worker builds from: the same graph, job graph and settings.
struct Job {
    graph: StreamGraph,
    jg: JobGraph,
    settings: ExecutionSettings,
}

/// Worker `me`: joins the mesh, builds and runs its tasks, closes the mesh.
fn worker(
    job: &Job,
    me: usize,
    peers: &[SocketAddr],
    listener: TcpListener,
    placement: &Placement,
) -> WorkerReport {
    let states = Arc::new(Mutex::new(Vec::new()));
    let mut metrics = Vec::new();
    let result = WorkerMesh::establish(JOB_ID, 0, me, peers, listener, NetOptions::default(), JOB_LIMIT)
        .and_then(|mesh| {
            let signals = Arc::new(JobSignals::default());
            let result =
                build_worker_tasks(&job.graph, &job.jg, &job.settings, JOB_ID, 0, placement, &mesh, &signals)
                    .and_then(|tasks| {
                        let counters: Vec<_> = tasks.iter().map(|t| (t.vertex, t.metrics.clone())).collect();
                        let seen = states.clone();
                        let result = run_worker_tasks(
                            tasks,
                            signals,
                            &job.settings,
                            job.jg.runtime_mode,
                            move |vertex, subtask, state, _| {
                                seen.lock().unwrap().push((vertex, subtask, state))
                            },
                        );
                        metrics = counters.into_iter().map(|(v, m)| (v, m.snapshot())).collect();
                        result
                    });
            mesh.close();
            result
        });
    let states = std::mem::take(&mut *states.lock().unwrap());
    WorkerReport { result, states, metrics }
}

/// Runs `program` split over the workers of `slot_workers`, one thread each; returns the output
/// and every worker's report. Fails the test if a worker has not ended after [`JOB_LIMIT`].
fn run_distributed<T: Data>(
    program: &Program<T>,
    parallelism: usize,
    mode: RuntimeMode,
    slot_workers: &[usize],
) -> (Vec<T>, Vec<WorkerReport>) {
    run_distributed_with(Configuration::new(), program, parallelism, mode, slot_workers)
}

fn run_distributed_with<T: Data>(
    config: Configuration,
    program: &Program<T>,
    parallelism: usize,
    mode: RuntimeMode,
    slot_workers: &[usize],
) -> (Vec<T>, Vec<WorkerReport>) {
    let env = env_with(config, parallelism, mode);
    let out = Shared::default();
    program(&env, SharedSink(out.clone()));
    let (graph, settings) = env.stream_graph_and_settings("distributed").unwrap();
    let (graph, jg) = prepare(&graph, &settings).unwrap();
    let job = Arc::new(Job { graph, jg, settings });
    let placement = Arc::new(Placement::new(slot_workers.to_vec()));
    let workers = slot_workers.iter().max().unwrap() + 1;
    let listeners: Vec<TcpListener> =
        (0..workers).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let peers: Arc<Vec<SocketAddr>> = Arc::new(listeners.iter().map(|l| l.local_addr().unwrap()).collect());
    let (done, reports) = mpsc::channel();
    for (me, listener) in listeners.into_iter().enumerate() {
        let (job, peers, placement, done) = (job.clone(), peers.clone(), placement.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("worker {me}"))
            .spawn(move || done.send((me, worker(&job, me, &peers, listener, &placement))).unwrap())
            .unwrap();
    }
    let mut by_worker: Vec<Option<WorkerReport>> = (0..workers).map(|_| None).collect();
    for _ in 0..workers {
        let (me, report) = reports
            .recv_timeout(JOB_LIMIT)
            .unwrap_or_else(|_| panic!("a worker of {slot_workers:?} did not end within {JOB_LIMIT:?}"));
        by_worker[me] = Some(report);
    }
    let records = std::mem::take(&mut *out.lock().unwrap());
    (records, by_worker.into_iter().map(Option::unwrap).collect())
}

/// Every worker ran exactly the tasks its slots hold, each RUNNING and then FINISHED.
fn assert_all_finished(reports: &[WorkerReport], slot_workers: &[usize], what: &str) {
    for (me, report) in reports.iter().enumerate() {
        if let Err(e) = &report.result {
            panic!("{what}: worker {me} failed: {e}");
        }
        let mut started = Vec::new();
        let mut finished = Vec::new();
        for &(vertex, subtask, state) in &report.states {
            assert_eq!(slot_workers[subtask], me, "{what}: subtask {subtask} ran on the wrong worker");
            match state {
                TaskState::Running => started.push((vertex, subtask)),
                TaskState::Finished => finished.push((vertex, subtask)),
                other => panic!("{what}: task {vertex}/{subtask} on worker {me} ended {}", other.as_str()),
            }
        }
        assert_eq!(sorted(started), sorted(finished.clone()), "{what}: worker {me}");
        assert!(!finished.is_empty() || !slot_workers.contains(&me), "{what}: worker {me} ran nothing");
    }
}

/// The vertex counters summed over all workers.
fn summed(reports: &[WorkerReport], vertices: usize) -> Vec<[u64; 4]> {
    let mut sums = vec![[0u64; 4]; vertices];
    for (vertex, m) in reports.iter().flat_map(|r| &r.metrics) {
        for k in 0..4 {
            sums[*vertex][k] += m[k];
        }
    }
    sums
}

// ---------------------------------------------------------------------------------------------
// WordCount
// ---------------------------------------------------------------------------------------------

/// `lines` lines over a skewed vocabulary of 300 words, from a linear congruential generator.
fn generate_lines(seed: u64, lines: usize) -> Vec<String> {
    let mut state = seed;
    let mut below = |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    (0..lines)
        .map(|_| {
            let words = below(10);
            (0..words).map(|_| format!("w{}", below(300) * below(300) / 300)).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

fn word_count_of(lines: Vec<String>) -> Box<Program<(String, i64)>> {
    Box::new(move |env: &StreamExecutionEnvironment, sink| {
        env.from_collection(lines.clone())
            .flat_map(|line: String, out: &mut Collector<(String, i64)>| {
                for word in line.split_whitespace() {
                    out.collect((word.to_string(), 1));
                }
            })
            .name("Tokenizer")
            .key_by(|t: &(String, i64)| t.0.clone())
            .sum(|t: &mut (String, i64)| &mut t.1)
            .name("Counter")
            .sink_to(sink, "Shared Sink");
    })
}

/// Keyed counts of `n mod 101` over a parallel number sequence.
fn sequence_count(to: i64) -> Box<Program<(i64, i64)>> {
    Box::new(move |env: &StreamExecutionEnvironment, sink| {
        env.from_sequence(1, to)
            .map(|n: i64| (n % 101, 1i64))
            .key_by(|t: &(i64, i64)| t.0)
            .sum(|t: &mut (i64, i64)| &mut t.1)
            .sink_to(sink, "Shared Sink");
    })
}

const PLACEMENTS: [&[usize]; 3] = [&[0, 1, 0, 1], &[0, 0, 0, 1], &[2, 0, 1, 2]];

#[test]
fn keyed_word_count_split_over_workers_equals_the_local_run() {
    let lines = generate_lines(11, 3_000);
    let words: usize = lines.iter().map(|l| l.split_whitespace().count()).sum();
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        let program = word_count_of(lines.clone());
        let (local, _) = run_local(&*program, 4, mode);
        let local = sorted(local);
        if mode == RuntimeMode::Streaming {
            assert_eq!(local.len(), words, "one running count per word");
        }
        for slot_workers in PLACEMENTS {
            let what = format!("word count, {mode:?}, placement {slot_workers:?}");
            let (got, reports) = run_distributed(&*program, 4, mode, slot_workers);
            assert_all_finished(&reports, slot_workers, &what);
            assert_eq!(sorted(got), local, "{what}");
        }
    }
}

#[test]
fn keyed_count_over_a_parallel_sequence_reads_every_number_once() {
    let expected: Vec<(i64, i64)> =
        (0..101).map(|k| (k, (1..=20_000).filter(|n| n % 101 == k).count() as i64)).collect();
    let program = sequence_count(20_000);
    let (local, _) = run_local(&*program, 4, RuntimeMode::Batch);
    assert_eq!(sorted(local), expected);
    for slot_workers in PLACEMENTS {
        let what = format!("sequence count, placement {slot_workers:?}");
        let (got, reports) = run_distributed(&*program, 4, RuntimeMode::Batch, slot_workers);
        assert_all_finished(&reports, slot_workers, &what);
        assert_eq!(sorted(got), expected, "{what}");
    }
}

#[test]
fn generator_records_are_produced_once_across_workers() {
    let program: Box<Program<u64>> = Box::new(|env: &StreamExecutionEnvironment, sink| {
        env.from_generator(30_000, |i| i).rebalance().map(|i: u64| i * 2).sink_to(sink, "Shared Sink");
    });
    for slot_workers in PLACEMENTS {
        let (got, reports) = run_distributed(&*program, 4, RuntimeMode::Streaming, slot_workers);
        assert_all_finished(&reports, slot_workers, "generator");
        assert_eq!(sorted(got), (0..30_000).map(|i| i * 2).collect::<Vec<u64>>(), "{slot_workers:?}");
    }
}

#[test]
fn every_line_of_a_directory_of_files_is_read_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for f in 0..6 {
        let lines: Vec<String> =
            (0..150 + 37 * f).map(|l| format!("file {f} line {l} {}", "x".repeat(l % 13))).collect();
        std::fs::write(dir.path().join(format!("part-{f}.txt")), lines.join("\n") + "\n").unwrap();
        expected.extend(lines);
    }
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("nested").join("more.txt"), "nested one\nnested two").unwrap();
    expected.extend(["nested one".to_string(), "nested two".to_string()]);
    std::fs::write(dir.path().join("_SUCCESS"), "hidden\n").unwrap();
    let expected = sorted(expected);
    let path = dir.path().to_path_buf();
    let program: Box<Program<String>> = Box::new(move |env: &StreamExecutionEnvironment, sink| {
        // Small splits, so that every file is cut into several and most splits start mid-line.
        env.from_source(TextFileSource::new(&path).with_split_size(700), "Files")
            .sink_to(sink, "Shared Sink");
    });
    let (local, _) = run_local(&*program, 3, RuntimeMode::Batch);
    assert_eq!(sorted(local), expected);
    for slot_workers in [&[0, 1, 0][..], &[2, 0, 1], &[0, 0, 1]] {
        let (got, reports) = run_distributed(&*program, 3, RuntimeMode::Batch, slot_workers);
        assert_all_finished(&reports, slot_workers, "files");
        assert_eq!(sorted(got), expected, "{slot_workers:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn vertex_counters_of_the_local_run_and_of_the_workers_agree() {
    let lines = generate_lines(5, 2_000);
    let words: u64 = lines.iter().map(|l| l.split_whitespace().count() as u64).sum();
    let program = word_count_of(lines.clone());
    let (_, local) = run_local(&*program, 4, RuntimeMode::Streaming);
    let names: Vec<&str> = local.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let io = |v: &VertexMetrics| [v.records_in, v.records_out];
    // Source → Tokenizer → Counter -> Sink: records leave a vertex as often as they enter the next.
    assert_eq!(io(&local[0]), [0, lines.len() as u64], "{}", local[0].name);
    assert_eq!(io(&local[1]), [lines.len() as u64, words], "{}", local[1].name);
    assert_eq!(io(&local[2]), [words, 0], "{}", local[2].name);
    assert!(local.iter().all(|v| v.bytes_in == 0 && v.bytes_out == 0), "in-process channels count no bytes");

    for slot_workers in PLACEMENTS {
        let (_, reports) = run_distributed(&*program, 4, RuntimeMode::Streaming, slot_workers);
        let sums = summed(&reports, local.len());
        for (v, sum) in local.iter().zip(&sums) {
            assert_eq!([sum[0], sum[1]], io(v), "{slot_workers:?}: {}", v.name);
        }
        let (bytes_in, bytes_out): (u64, u64) = sums.iter().fold((0, 0), |(i, o), s| (i + s[2], o + s[3]));
        assert!(bytes_out > 0, "{slot_workers:?}: records crossed workers");
        assert_eq!(bytes_in, bytes_out, "{slot_workers:?}: every frame sent was received");
    }
}

#[test]
fn the_network_exchange_mode_counts_bytes_both_ways() {
    let program = sequence_count(5_000);
    let mut config = Configuration::new();
    config.set("execution.network-exchange", "true");
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let out = Shared::default();
    program(&env, SharedSink(out.clone()));
    let client = env.execute_async("network").unwrap();
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal());
    client.wait().unwrap();
    let m = client.vertex_metrics();
    assert_eq!([m[0].records_in, m[0].records_out], [0, 5_000]);
    assert_eq!([m[1].records_in, m[1].records_out], [5_000, 0]);
    assert!(m[0].bytes_out > 0 && m[0].bytes_out == m[1].bytes_in, "{m:?}");
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/// Fails in subtask 1 as soon as it sees a record.
#[derive(Clone, Default)]
struct FailInSubtaskOne {
    subtask: usize,
}

impl ProcessFunction<i64, (i64, i64)> for FailInSubtaskOne {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.index_of_this_subtask();
        Ok(())
    }

    fn process_element(&mut self, n: i64, _: &mut Context, out: &mut Collector<(i64, i64)>) -> Result<()> {
        if self.subtask == 1 {
            return Err(EddyError::user("boom in subtask 1"));
        }
        out.collect((n % 7, 1));
        Ok(())
    }
}

#[test]
fn a_failing_task_in_one_worker_ends_every_worker_with_an_error() {
    let program: Box<Program<(i64, i64)>> = Box::new(|env: &StreamExecutionEnvironment, sink| {
        env.from_sequence(1, 200_000)
            .process(FailInSubtaskOne::default())
            .key_by(|t: &(i64, i64)| t.0)
            .sum(|t: &mut (i64, i64)| &mut t.1)
            .sink_to(sink, "Shared Sink");
    });
    for slot_workers in [&[0, 1, 0, 1][..], &[2, 0, 1, 2]] {
        let (_, reports) = run_distributed(&*program, 4, RuntimeMode::Streaming, slot_workers);
        let failing = slot_workers[1];
        for (me, report) in reports.iter().enumerate() {
            let err = match &report.result {
                Ok(()) => panic!("{slot_workers:?}: worker {me} finished although subtask 1 failed"),
                Err(e) => e.to_string(),
            };
            if me == failing {
                assert!(err.contains("boom in subtask 1") && err.contains("(2/4)"), "root cause: {err}");
                let failed: Vec<_> = report.states.iter().filter(|s| s.2 == TaskState::Failed).collect();
                assert_eq!(failed.len(), 1, "{:?}", report.states);
                assert_eq!(failed[0].1, 1, "{:?}", report.states);
            } else {
                assert!(!err.contains("boom"), "worker {me} did not fail by itself: {err}");
            }
            // Every task that ran has ended.
            let ran = report.states.iter().filter(|s| s.2 == TaskState::Running).count();
            assert_eq!(ran * 2, report.states.len(), "{slot_workers:?} worker {me}: {:?}", report.states);
        }
    }
}

#[test]
fn a_placement_that_does_not_fit_the_job_is_refused() {
    let program = sequence_count(10);
    let env = env(4, RuntimeMode::Batch);
    program(&env, SharedSink(Shared::default()));
    let (graph, settings) = env.stream_graph_and_settings("misplaced").unwrap();
    let (graph, jg) = prepare(&graph, &settings).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peers = [listener.local_addr().unwrap()];
    let mesh =
        WorkerMesh::establish(JOB_ID, 0, 0, &peers, listener, NetOptions::default(), JOB_LIMIT).unwrap();
    let signals = Arc::new(JobSignals::default());
    let build = |slots: Vec<usize>, job: &str| {
        let placement = Placement::new(slots);
        build_worker_tasks(&graph, &jg, &settings, job, 0, &placement, &mesh, &signals)
            .err()
            .map(|e| e.to_string())
    };
    let too_few = build(vec![0, 0, 0], JOB_ID).expect("3 slots for parallelism 4");
    assert!(too_few.contains("has 3 slots, the job needs 4"), "{too_few}");
    let no_worker = build(vec![0, 0, 1, 0], JOB_ID).expect("worker 1 does not exist");
    assert!(no_worker.contains("slot 2 on worker 1"), "{no_worker}");
    let other_job = build(vec![0; 4], "another job").expect("the mesh belongs to another job");
    assert!(other_job.contains("worker mesh was established for job"), "{other_job}");
    // A single worker with every slot runs the whole job with local channels only.
    let tasks =
        build_worker_tasks(&graph, &jg, &settings, JOB_ID, 0, &Placement::new(vec![0; 4]), &mesh, &signals)
            .unwrap();
    assert_eq!(tasks.len(), 8);
}

// ---------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------

/// A sink that takes a millisecond per batch and records, at every batch, how many records the
/// source had produced beyond what the sink had received: what was in flight.
struct SlowSink {
    produced: Arc<std::sync::atomic::AtomicU64>,
    consumed: Arc<std::sync::atomic::AtomicU64>,
    max_in_flight: Arc<std::sync::atomic::AtomicU64>,
}

impl Sink<u64> for SlowSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<u64>>> {
        Ok(Box::new(SlowSink {
            produced: self.produced.clone(),
            consumed: self.consumed.clone(),
            max_in_flight: self.max_in_flight.clone(),
        }))
    }
}

impl SinkWriter<u64> for SlowSink {
    fn write_batch(&mut self, batch: Batch<u64>) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let consumed = self.consumed.fetch_add(batch.len() as u64, SeqCst) + batch.len() as u64;
        let in_flight = self.produced.load(SeqCst).saturating_sub(consumed);
        self.max_in_flight.fetch_max(in_flight, SeqCst);
        // The slow consumer (not a synchronization: nothing waits for this).
        std::thread::sleep(Duration::from_millis(1));
        Ok(())
    }
}

#[test]
fn a_slow_consumer_in_another_worker_holds_the_source_back() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    const RECORDS: u64 = 20_000;
    const BATCH: u64 = 100;
    const CREDIT: u64 = 4;
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let mut config = Configuration::new();
    config.set("execution.batch-size", BATCH.to_string());
    config.set("execution.remote-channel-capacity", CREDIT.to_string());
    let sink = SlowSink {
        produced: produced.clone(),
        consumed: consumed.clone(),
        max_in_flight: max_in_flight.clone(),
    };
    let counter = produced.clone();
    let program: Box<Program<u64>> = Box::new(move |env: &StreamExecutionEnvironment, _unused| {
        let counter = counter.clone();
        // Source and map in slot 0 (worker 0); every record goes to sink subtask 1 (worker 1).
        env.from_sequence(0, RECORDS as i64 - 1)
            .set_parallelism(1)
            .map(move |n: i64| {
                counter.fetch_add(1, SeqCst);
                n as u64
            })
            .set_parallelism(1)
            .partition_custom(|_: &u64, _partitions| 1, |n: &u64| *n)
            .sink_to(
                SlowSink {
                    produced: sink.produced.clone(),
                    consumed: sink.consumed.clone(),
                    max_in_flight: sink.max_in_flight.clone(),
                },
                "Slow Sink",
            );
    });
    let (_, reports) = run_distributed_with(config, &*program, 2, RuntimeMode::Streaming, &[0, 1]);
    assert_all_finished(&reports, &[0, 1], "backpressure");
    assert_eq!(consumed.load(SeqCst), RECORDS, "every record arrived");
    // In flight at most: the credit (CREDIT batches), the batch the source is filling, the one
    // being decoded and the one the sink holds. Without backpressure the source would have
    // produced all 20 000 records within the sink's first few batches.
    let bound = (CREDIT + 3) * BATCH;
    let seen = max_in_flight.load(SeqCst);
    assert!(seen <= bound, "{seen} records were in flight, more than {bound}");
    assert!(seen >= BATCH, "the sink never fell behind ({seen}): the test did not test backpressure");
}
