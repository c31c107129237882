//! Average temperature per sensor and second of event time: Flink's `AverageSensorReadings`
//! (from "Stream Processing with Apache Flink").
//!
//! ```text
//! cargo run --release -p eddy-examples --bin sensor_averages                 # until Ctrl-C
//! cargo run --release -p eddy-examples --bin sensor_averages -- --events 1000 --rate unlimited
//! ```
//!
//! A generator produces Fahrenheit readings of `--sensors` sensors, each reporting every
//! `--interval-ms` of event time (timestamps from `--start-ms`, by default the current second);
//! watermarks trail the readings by 5 s. The job converts to Celsius and averages per sensor in
//! 1-second tumbling event-time windows, printing one line per sensor and window:
//!
//! ```text
//! SensorReading(sensor_7,1700000000999,21.433333333333334)
//! ```
//!
//! The timestamp is the window's last millisecond (`end − 1`); the temperature is printed as
//! Java's `Double.toString` would (shortest round-trip form, `21.0` rather than `21`).

use eddy_examples::sensors;

use std::process::ExitCode;

use clap::Parser;
use eddy::prelude::*;
use eddy_examples::{init_logging, report, CommonArgs};
use sensors::{SensorGenerator, SensorReading};

/// Prints each sensor's average temperature (°C) per second of event time.
#[derive(Debug, Parser)]
#[command(name = "sensor_averages")]
struct Cli {
    /// Number of sensors.
    #[arg(long, default_value_t = sensors::DEFAULT_SENSORS, value_parser = clap::value_parser!(u64).range(1..))]
    sensors: u64,
    /// Event time between two readings of the same sensor, in ms.
    #[arg(long, default_value_t = sensors::DEFAULT_INTERVAL_MS, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Stop after this many readings (default: run until stopped).
    #[arg(long)]
    events: Option<u64>,
    /// Readings per second over all sensors: a number, or `unlimited`
    /// (default: real time, i.e. event time advances as fast as the clock).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// Event time of the first reading, in ms since the epoch (default: now, whole seconds).
    #[arg(long)]
    start_ms: Option<i64>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Clone, Copy)]
enum Rate {
    Unlimited,
    PerSecond(f64),
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!("{s:?} is neither a positive number of readings per second nor `unlimited`")),
    }
}

fn now_whole_seconds_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() as i64 * 1000
}

fn run(cli: &Cli) -> eddy::Result<JobExecutionResult> {
    let env = cli.common.environment()?;
    let generator = SensorGenerator::every(
        cli.sensors,
        cli.interval_ms,
        cli.start_ms.unwrap_or_else(now_whole_seconds_ms),
    );
    let rate = match cli.rate {
        None => Some(generator.real_time_rate()),
        Some(Rate::Unlimited) => None,
        Some(Rate::PerSecond(r)) => Some(r),
    };
    let parallelism = env.parallelism()?;
    let readings = match cli.events {
        Some(n) => sensors::bounded_readings(&env, generator, n, parallelism, rate),
        None => sensors::unbounded_readings(&env, generator, parallelism, rate),
    };
    let averages = sensors::average_per_window(&readings, sensors::WINDOW)
        .map(|r| SensorReading::from(r).to_string())
        .name("To SensorReading");
    cli.common.emit(&averages);
    env.execute("AverageSensorReadings")
}

fn main() -> ExitCode {
    init_logging();
    report(run(&Cli::parse()))
}
