//! A job to watch metrics and backpressure on: runs until stopped.
//!
//! ```text
//! cargo run --release -p eddy-examples --bin metrics_demo -- --sink-delay-ms 20
//! ```
//!
//! Two pipelines. `Readings` produces numbered readings as fast as it can, with event-time
//! timestamps and watermarks, through `Classify` (which counts the even readings in a metric
//! of its own, `Classify.evenReadings`), then over a rebalance to `Sink: Slow`, which waits
//! `--sink-delay-ms` after every batch: the `Readings` vertex is backpressured (HIGH) while
//! the sink is busy. `Heartbeats` produces one record a second, over a rebalance, into
//! `Sink: Idle`, which waits for input nearly all the time: an idle vertex (OK). (The
//! rate-limited generator sleeps inside its reader, which counts as busy, not idle.)

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::Batch;
use eddy_examples::{init_logging, report, CommonArgs};

#[derive(Debug, Parser)]
#[command(name = "metrics_demo")]
struct Cli {
    /// How long the slow sink waits after each batch, in ms.
    #[arg(long, default_value_t = 20)]
    sink_delay_ms: u64,
    #[command(flatten)]
    common: CommonArgs,
}

/// Counts the even readings in the operator's `evenReadings` counter.
#[derive(Clone, Default)]
struct Classify {
    even: Option<Counter>,
}

impl ProcessFunction<i64, i64> for Classify {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.even = Some(ctx.metrics().counter("evenReadings"));
        Ok(())
    }

    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v % 2 == 0 {
            if let Some(c) = &self.even {
                c.inc();
            }
        }
        out.collect(v);
        Ok(())
    }
}

/// Drops what it gets, waiting `delay` after each batch (a sink slower than its input).
#[derive(Clone)]
struct SlowSink {
    delay: Duration,
}

impl<T: Data> Sink<T> for SlowSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Data> SinkWriter<T> for SlowSink {
    fn write_batch(&mut self, _: Batch<T>) -> Result<()> {
        std::thread::sleep(self.delay);
        Ok(())
    }
}

fn run(cli: &Cli) -> eddy::Result<JobExecutionResult> {
    let env = cli.common.environment()?;
    let base = 1_700_000_000_000i64;
    let watermarks = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(100))
        .with_timestamp_assigner(move |v: &i64, _| base + v);
    env.from_source(DataGeneratorSource::unbounded(|i| i as i64), "Readings")
        .assign_timestamps_and_watermarks(watermarks)
        .process(Classify::default())
        .name("Classify")
        .rebalance()
        .sink_to(SlowSink { delay: Duration::from_millis(cli.sink_delay_ms) }, "Slow");
    env.from_source(DataGeneratorSource::unbounded(|i| i as i64).with_rate(1.0), "Heartbeats")
        .rebalance()
        .sink_to(SlowSink { delay: Duration::ZERO }, "Idle");
    env.execute("MetricsDemo")
}

fn main() -> ExitCode {
    init_logging();
    report(run(&Cli::parse()))
}
