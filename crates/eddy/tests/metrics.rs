//! Metrics on the local mini-cluster, read from `JobClient::task_metrics`: records counted per
//! task and operator, a function's own counter, watermarks, and time spent backpressured by
//! a task in front of a slow sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::Batch;
use eddy::SubtaskMetrics;

const JOB_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
struct CountEvens {
    evens: Option<Counter>,
}

impl ProcessFunction<i64, i64> for CountEvens {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.evens = Some(ctx.metrics().counter("evens"));
        Ok(())
    }
    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v % 2 == 0 {
            self.evens.as_ref().expect("opened").inc();
        }
        out.collect(v);
        Ok(())
    }
}

/// Drops records; waits on `gate` before each batch while it is closed (a stuck consumer).
#[derive(Clone)]
struct GatedSink {
    open: Arc<AtomicBool>,
}

impl<T: Data> Sink<T> for GatedSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Data> SinkWriter<T> for GatedSink {
    fn write_batch(&mut self, _: Batch<T>) -> Result<()> {
        // The slow consumer under test: it polls its gate, not a stand-in for synchronization.
        while !self.open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

fn sum(metrics: &[SubtaskMetrics], vertex_name: &str, metric: &str) -> f64 {
    metrics.iter().filter(|m| m.vertex_name.contains(vertex_name)).map(|m| m.values[metric]).sum()
}

#[test]
fn records_user_counters_and_watermarks_are_counted() {
    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    env.from_sequence(1, 10_000)
        .process(CountEvens::default())
        .name("Count")
        .rebalance()
        .sink_to(GatedSink { open: Arc::new(AtomicBool::new(true)) }, "Out");
    let client = env.execute_async("metrics").unwrap();
    assert_eq!(client.wait_timeout(JOB_LIMIT), JobStatus::Finished);
    let m = client.task_metrics();
    assert_eq!(m.len(), 4, "two vertices of two subtasks: {m:?}");
    assert_eq!(sum(&m, "Sequence", "numRecordsOut"), 10_000.0);
    assert_eq!(sum(&m, "Sequence", "Count.numRecordsIn"), 10_000.0);
    assert_eq!(sum(&m, "Sequence", "Count.evens"), 5_000.0);
    assert_eq!(sum(&m, "Out", "numRecordsIn"), 10_000.0);
    assert_eq!(sum(&m, "Out", "Sink: Out.numRecordsIn"), 10_000.0);
    for s in &m {
        // A bounded input ends with the maximum watermark, which reaches every task.
        let wm =
            if s.vertex_name.contains("Out") { "currentInputWatermark" } else { "currentOutputWatermark" };
        assert_eq!(s.values[wm], i64::MAX as f64, "{wm} of {s:?}");
    }
}

#[test]
fn a_task_in_front_of_a_stuck_sink_is_backpressured() {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    let open = Arc::new(AtomicBool::new(false));
    env.from_source(DataGeneratorSource::unbounded(|i| i as i64), "Numbers")
        .rebalance()
        .sink_to(GatedSink { open: open.clone() }, "Stuck");
    let client = env.execute_async("backpressure").unwrap();
    let deadline = Instant::now() + JOB_LIMIT;
    let (source, sink) = loop {
        let m = client.task_metrics();
        let source = m.iter().find(|s| s.vertex_name.contains("Numbers")).map(|s| s.values.clone());
        let sink = m.iter().find(|s| s.vertex_name.contains("Stuck")).map(|s| s.values.clone());
        if let (Some(source), Some(sink)) = (source, sink) {
            // The view updater samples once a second: wait for a window where the source
            // spent most of its time waiting for room.
            if source["backPressuredTimeMsPerSecond"] > 900.0 {
                break (source, sink);
            }
        }
        assert!(Instant::now() < deadline, "the source was never backpressured: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = source["backPressuredTimeMsPerSecond"]
        + source["idleTimeMsPerSecond"]
        + source["busyTimeMsPerSecond"];
    assert!((total - 1000.0).abs() < 1e-6, "{source:?}");
    assert_eq!(sink["backPressuredTimeMsPerSecond"], 0.0, "a sink has no output channel: {sink:?}");
    assert!(source["accumulatedBackPressuredTimeMs"] > 0.0);
    open.store(true, Ordering::SeqCst);
    client.cancel();
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal());
}
