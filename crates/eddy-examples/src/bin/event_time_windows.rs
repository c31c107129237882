//! Event-time windows over a CSV file of `key,timestamp_ms,value` lines.
//!
//! ```text
//! cargo run --release -p eddy-examples --bin event_time_windows -- \
//!     --input events.csv --window tumbling:1000 --out-of-orderness 200 --watermark per-event \
//!     --allowed-lateness 500 --output out/ --late-output late/ --bad-records bad/ -p 4
//! ```
//!
//! The file is read by one reader, in file order, and its lines are numbered and parsed by one
//! subtask: line numbers in errors are only right because both run at parallelism 1. Event
//! time is the `timestamp_ms` field; watermarks trail the largest timestamp seen by
//! `--out-of-orderness` ms:
//!
//! - `--watermark periodic` (default): Flink's bounded out-of-orderness strategy, emitted every
//!   `pipeline.auto-watermark-interval` (200 ms) of wall-clock time. Which records end up late
//!   then depends on timing.
//! - `--watermark per-event`: after every record, `max timestamp − out-of-orderness − 1`. Every
//!   run sees the same watermarks at the same records, so the output is deterministic.
//!
//! The window operator (parallelism `-p`) keys by `key` and counts, sums and bounds the values
//! of each window incrementally. Each firing writes one line
//! `key,window_start,window_end,count,sum,min,max` (a window fires once when the watermark
//! passes its end, and once more for every late record within `--allowed-lateness`, with all
//! its records so far). Numbers are printed in their shortest exact form (`6`, `2.5`).
//!
//! Outputs are directories of part files, one per subtask (`part-<i>-0`), as Flink's
//! `writeAsText`; without `--output` the results are printed. Records too late even for the
//! allowed lateness go, unchanged, to `--late-output`, or are dropped (as Flink does without a
//! late side output). A malformed line fails the job with an error naming the file, the line
//! number and the line; with `--bad-records` it goes there instead, as
//! `file:line: reason: line`. The set of output lines does not depend on `-p`.
//!
//! In `--mode batch` watermarks are ignored: every window fires once, at the end, and nothing
//! is late.

use eddy_examples::csv_events;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use csv_events::{Event, ParseEvents, PerEventWatermarks, StatsAggregate, WindowSpec, WindowStats};
use eddy::prelude::*;
use eddy_examples::{init_logging, report, CommonArgs};

/// Counts, sums and bounds the values of each key per event-time window.
#[derive(Debug, Parser)]
#[command(name = "event_time_windows")]
struct Cli {
    /// A CSV file of `key,timestamp_ms,value` lines.
    #[arg(long)]
    input: PathBuf,
    /// `tumbling:SIZE`, `sliding:SIZE:SLIDE` or `session:GAP`, in ms.
    #[arg(long, value_parser = parse_window)]
    window: WindowSpec,
    /// How far behind the largest timestamp seen the watermark stays, in ms.
    #[arg(long, default_value_t = 0)]
    out_of_orderness: u64,
    /// When watermarks are generated.
    #[arg(long, value_enum, default_value_t = WatermarkMode::Periodic)]
    watermark: WatermarkMode,
    /// How long after its end a window still accepts (and re-fires for) late records, in ms.
    #[arg(long, default_value_t = 0)]
    allowed_lateness: u64,
    /// Directory for records too late for their windows (the CSV lines, unchanged).
    #[arg(long)]
    late_output: Option<PathBuf>,
    /// Directory for malformed lines, with their line numbers and what is wrong with them
    /// (default: a malformed line fails the job).
    #[arg(long)]
    bad_records: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WatermarkMode {
    /// Bounded out-of-orderness, emitted every `pipeline.auto-watermark-interval`.
    Periodic,
    /// A watermark after every record (deterministic).
    PerEvent,
}

fn parse_window(s: &str) -> Result<WindowSpec, String> {
    s.parse()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn watermarks(cli: &Cli) -> WatermarkStrategy<Event> {
    let bound = cli.out_of_orderness;
    let strategy = match cli.watermark {
        WatermarkMode::Periodic => WatermarkStrategy::for_bounded_out_of_orderness(ms(bound)),
        WatermarkMode::PerEvent => {
            WatermarkStrategy::for_generator(move || PerEventWatermarks::new(bound as i64))
        }
    };
    strategy.with_timestamp_assigner(|e: &Event, _| e.1)
}

fn run(cli: &Cli) -> eddy::Result<JobExecutionResult> {
    let env = cli.common.environment()?;
    if !cli.input.is_file() {
        return Err(EddyError::BadInput {
            location: cli.input.display().to_string(),
            reason: "--input must be a readable file".into(),
        });
    }
    let file = cli.input.display().to_string();
    let bad_tag = OutputTag::<String>::new("bad-records");
    let parser = match cli.bad_records {
        Some(_) => ParseEvents::with_bad_records(&file, bad_tag.clone()),
        None => ParseEvents::strict(&file),
    };
    // One reader in file order, and one parser, so that lines are numbered right.
    let events = env
        .from_source(TextFileSource::new(&cli.input), "CSV")
        .set_parallelism(1)
        .process(parser)
        .name("Parse CSV")
        .set_parallelism(1);
    if let Some(dir) = &cli.bad_records {
        events.get_side_output(&bad_tag).write_as_text(dir.clone()).set_parallelism(1);
    }
    let keyed = events.assign_timestamps_and_watermarks(watermarks(cli)).key_by(|e: &Event| e.0.clone());
    let late_tag = OutputTag::<Event>::new("late-events");
    let lateness = ms(cli.allowed_lateness);
    // The same steps for every kind of window (each assigner makes its own stream type).
    macro_rules! window_stats {
        ($assigner:expr) => {{
            let windowed = keyed.window($assigner).allowed_lateness(lateness);
            let windowed = match cli.late_output {
                Some(_) => windowed.side_output_late_data(&late_tag),
                None => windowed,
            };
            windowed.aggregate_with(StatsAggregate, WindowStats)
        }};
    }
    let stats = match cli.window {
        WindowSpec::Tumbling { size } => window_stats!(TumblingEventTimeWindows::of(ms(size))),
        WindowSpec::Sliding { size, slide } => {
            window_stats!(SlidingEventTimeWindows::of(ms(size), ms(slide)))
        }
        WindowSpec::Session { gap } => window_stats!(EventTimeSessionWindows::with_gap(ms(gap))),
    }
    .name(&format!("Window Stats ({})", cli.window));
    cli.common.emit(&stats);
    if let Some(dir) = &cli.late_output {
        stats.get_side_output(&late_tag).map(|e: Event| e.3).name("Late Lines").write_as_text(dir.clone());
    }
    env.execute("EventTimeWindows")
}

fn main() -> ExitCode {
    init_logging();
    report(run(&Cli::parse()))
}
