//! The sensor workload: Flink's `AverageSensorReadings` (from "Stream Processing with Apache
//! Flink"), shared by the `sensor_averages` example, its tests and the window benchmarks.
//!
//! A [`SensorGenerator`] turns a record index `j = 0, 1, 2, …` into a temperature reading, as a
//! pure function of `j`: sensor `j mod sensors`, event time `start + j · step` and a
//! temperature in Fahrenheit that depends only on the sensor and `j`. The same index gives the
//! same reading on every run, at every parallelism, so a test can re-generate the readings
//! and check the averages on its own.
//!
//! [`average_per_window`] is the job: Fahrenheit to Celsius, `key_by(id)`, 1-second tumbling
//! event-time windows, and an incremental average ([`AverageAggregate`], one `(sum, count)`
//! per key and window, never the list of readings).
//!
//! Records in flight are [`Reading`] tuples. [`SensorReading`] is how a result is printed:
//! `SensorReading(sensor_7,999,21.4)`, the `toString` of the book's Scala case class, with the
//! temperature in Java's `Double.toString` form ([`java_double`]).

use std::fmt;
use std::sync::Arc;

use eddy::prelude::*;
use eddy::random::mix;

/// A reading in flight: `(sensor id, event timestamp in ms, temperature)`.
pub type Reading = (CompactString, i64, f64);

/// Flink's example: 10 sensors, each reporting every 100 ms.
pub const DEFAULT_SENSORS: u64 = 10;
pub const DEFAULT_INTERVAL_MS: u64 = 100;
/// The window of the example.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How far out of order readings may arrive (the book's `SensorTimeAssigner` allows 5 s).
pub const OUT_OF_ORDERNESS: Duration = Duration::from_secs(5);

/// A sensor's id: `sensor_<n>`, built without formatting machinery (it is on the hot path of
/// the benchmarks) and stored inline (up to 24 bytes).
pub fn sensor_id(n: u64) -> CompactString {
    let mut buf = [0u8; 27];
    buf[..7].copy_from_slice(b"sensor_");
    let mut digits = [0u8; 20];
    let (mut i, mut v) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = 7 + digits.len() - i;
    buf[7..len].copy_from_slice(&digits[i..]);
    // Only ASCII was written.
    CompactString::from_utf8(&buf[..len]).unwrap_or_default()
}

/// Uniform in `[0, 1)` from the top 53 bits of a hash.
#[inline]
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Readings as a pure function of their index.
///
/// Reading `j` comes from sensor `j mod sensors`, at event time
/// `start_ms + ⌊j · step_us / 1000⌋` ms. Its temperature is the sensor's own level, uniform in
/// 45–85 °F, plus noise uniform in ±0.5 °F that depends on `j`.
///
/// Like the book's `SensorSource`, which keeps an array of its sensors' ids, the generator
/// makes the ids of up to [`ID_TABLE_LIMIT`] sensors once; ids of larger fleets are made per
/// reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorGenerator {
    pub sensors: u64,
    /// Event time between consecutive readings (of any sensor), in microseconds.
    pub step_us: u64,
    pub start_ms: i64,
    ids: Arc<[CompactString]>,
}

/// The largest fleet whose ids a [`SensorGenerator`] keeps in a table.
pub const ID_TABLE_LIMIT: u64 = 1 << 16;

impl SensorGenerator {
    /// `sensors` sensors (at least 1), one reading every `step_us` µs of event time.
    pub fn new(sensors: u64, step_us: u64, start_ms: i64) -> Self {
        let sensors = sensors.max(1);
        let table = if sensors <= ID_TABLE_LIMIT { 0..sensors } else { 0..0 };
        let ids: Arc<[CompactString]> = table.map(sensor_id).collect();
        SensorGenerator { sensors, step_us, start_ms, ids }
    }

    /// `sensors` sensors, each reporting every `interval_ms` of event time, round-robin.
    pub fn every(sensors: u64, interval_ms: u64, start_ms: i64) -> Self {
        let sensors = sensors.max(1);
        Self::new(sensors, (interval_ms.saturating_mul(1000) / sensors).max(1), start_ms)
    }

    /// The id of sensor `sensor`: `sensor_<n>`.
    #[inline]
    pub fn id(&self, sensor: u64) -> CompactString {
        match self.ids.get(sensor as usize) {
            Some(id) => id.clone(),
            None => sensor_id(sensor),
        }
    }

    /// Reading number `j`.
    #[inline]
    pub fn reading(&self, j: u64) -> Reading {
        let sensor = j % self.sensors;
        (self.id(sensor), self.timestamp(j), self.fahrenheit(sensor, j))
    }

    #[inline]
    pub fn timestamp(&self, j: u64) -> i64 {
        let us = match j.checked_mul(self.step_us) {
            Some(us) => us / 1000,
            None => (j as u128 * self.step_us as u128 / 1000) as u64,
        };
        self.start_ms + us as i64
    }

    #[inline]
    pub fn fahrenheit(&self, sensor: u64, j: u64) -> f64 {
        45.0 + 40.0 * unit(mix(sensor)) + unit(mix(j ^ 0x5e45_0125)) - 0.5
    }

    /// How many records per second of wall-clock time keep event time in step with it.
    pub fn real_time_rate(&self) -> f64 {
        1e6 / self.step_us as f64
    }
}

/// Maps the indices a bounded `DataGeneratorSource` of `count` records hands its `parallelism`
/// readers onto one interleaved sequence, so that all readers advance through event time
/// together.
///
/// The bounded generator gives reader `k` the contiguous range `[⌊count·k/p⌋, ⌊count·(k+1)/p⌋)`.
/// Generated from the raw index, every reader but the first would start far ahead in event
/// time, and since a window operator's event time is the minimum over its inputs, nothing
/// would fire until the first reader caught up: window state would grow with the input. This
/// maps offset `o` of reader `k` to `o·p + k` (plus a few at the end when `p` does not divide
/// `count`): a bijection of `0..count`, so the set of records does not depend on `p`.
///
/// The readers' first indices are computed once: mapping an index takes no division (this runs
/// once per generated record).
#[derive(Debug, Clone)]
pub struct Interleave {
    parallelism: u64,
    /// `⌊count·k/p⌋` for `k` in `0..=p`: where reader `k`'s range starts.
    cuts: Arc<[u64]>,
    /// `⌊count/p⌋`: the records every reader has in full rounds.
    short: u64,
}

impl Interleave {
    pub fn new(count: u64, parallelism: usize) -> Self {
        let p = parallelism.max(1) as u64;
        let cuts = (0..=p).map(|k| (count as u128 * k as u128 / p as u128) as u64).collect();
        Interleave { parallelism: p, cuts, short: count / p }
    }

    /// The position in the interleaved sequence of source index `i < count`.
    #[inline]
    pub fn map(&self, i: u64) -> u64 {
        let p = self.parallelism;
        if p == 1 {
            return i;
        }
        // The reader k whose range holds i: the largest k with ⌊n·k/p⌋ ≤ i.
        let k = self.cuts[1..p as usize].partition_point(|&cut| cut <= i);
        let offset = i - self.cuts[k];
        if offset < self.short {
            return offset * p + k as u64;
        }
        // The last record of one of the readers with ⌈n/p⌉ records: after all full rounds,
        // in reader order.
        let longer_before = self.cuts[..=k].windows(2).filter(|w| w[1] - w[0] > self.short).count() as u64;
        self.short * p + longer_before
    }
}

/// A bounded stream of readings `0..count`, with timestamps and watermarks (bounded
/// out-of-orderness of [`OUT_OF_ORDERNESS`]), generated by `parallelism` readers in step.
pub fn bounded_readings(
    env: &StreamExecutionEnvironment,
    generator: SensorGenerator,
    count: u64,
    parallelism: usize,
    rate: Option<f64>,
) -> DataStream<Reading> {
    bounded_readings_with(env, count, parallelism, rate, move |j| generator.reading(j))
}

/// [`bounded_readings`] of any function of the interleaved index.
pub fn bounded_readings_with<F>(
    env: &StreamExecutionEnvironment,
    count: u64,
    parallelism: usize,
    rate: Option<f64>,
    reading: F,
) -> DataStream<Reading>
where
    F: Fn(u64) -> Reading + Clone + Send + Sync + 'static,
{
    let order = Interleave::new(count, parallelism);
    let mut source = DataGeneratorSource::new(move |i| reading(order.map(i)), count);
    if let Some(r) = rate {
        source = source.with_rate(r);
    }
    with_event_time(env.from_source(source, "Sensor Source").set_parallelism(parallelism))
}

/// An endless stream of readings: reader `k` of `p` generates `k, k + p, k + 2p, …`.
pub fn unbounded_readings(
    env: &StreamExecutionEnvironment,
    generator: SensorGenerator,
    parallelism: usize,
    rate: Option<f64>,
) -> DataStream<Reading> {
    let mut source = DataGeneratorSource::unbounded(move |j| generator.reading(j));
    if let Some(r) = rate {
        source = source.with_rate(r);
    }
    with_event_time(env.from_source(source, "Sensor Source").set_parallelism(parallelism))
}

fn with_event_time(readings: DataStream<Reading>) -> DataStream<Reading> {
    readings.assign_timestamps_and_watermarks(
        WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS)
            .with_timestamp_assigner(|r: &Reading, _| r.1),
    )
}

/// (°F − 32) · 5/9.
#[inline]
pub fn fahrenheit_to_celsius(f: f64) -> f64 {
    (f - 32.0) * (5.0 / 9.0)
}

/// The incremental average: `(sum, count)` per key and window.
#[derive(Debug, Clone, Copy, Default)]
pub struct AverageAggregate;

impl AggregateFunction<Reading, (f64, u64), f64> for AverageAggregate {
    fn create_accumulator(&self) -> (f64, u64) {
        (0.0, 0)
    }
    #[inline]
    fn add(&self, acc: &mut (f64, u64), r: Reading) {
        acc.0 += r.2;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(f64, u64)) -> f64 {
        acc.0 / acc.1 as f64
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
}

/// Labels a window's average with its sensor and the window's last millisecond (`end − 1`,
/// the timestamp Flink gives a window's result).
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelWithWindow;

impl ProcessWindowFunction<f64, Reading, CompactString, TimeWindow> for LabelWithWindow {
    fn process(
        &mut self,
        key: &CompactString,
        ctx: &mut WindowContext<CompactString, TimeWindow>,
        averages: &[f64],
        out: &mut Collector<Reading>,
    ) -> Result<()> {
        let end = ctx.window().end();
        for &avg in averages {
            out.collect((key.clone(), end - 1, avg));
        }
        Ok(())
    }
}

/// Celsius, per sensor, averaged per `window` of event time.
pub fn average_per_window(readings: &DataStream<Reading>, window: Duration) -> DataStream<Reading> {
    readings
        .map(|(id, ts, f): Reading| (id, ts, fahrenheit_to_celsius(f)))
        .name("Fahrenheit to Celsius")
        .key_by(|r: &Reading| r.0.clone())
        .window(TumblingEventTimeWindows::of(window))
        .aggregate_with(AverageAggregate, LabelWithWindow)
        .name("Average per Window")
}

/// A reading as the example prints it: `SensorReading(sensor_7,999,21.4)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorReading {
    pub id: CompactString,
    pub timestamp: i64,
    pub temperature: f64,
}

impl From<Reading> for SensorReading {
    fn from((id, timestamp, temperature): Reading) -> Self {
        SensorReading { id, timestamp, temperature }
    }
}

impl fmt::Display for SensorReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SensorReading({},{},{})", self.id, self.timestamp, JavaDouble(self.temperature))
    }
}

impl RecordDisplay for SensorReading {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl SensorReading {
    /// Parses what [`Display`](fmt::Display) prints (for tests and tools).
    pub fn parse(s: &str) -> Option<SensorReading> {
        let inner = s.strip_prefix("SensorReading(")?.strip_suffix(')')?;
        let mut fields = inner.splitn(3, ',');
        let id = CompactString::new(fields.next()?);
        let timestamp = fields.next()?.parse().ok()?;
        let temperature = fields.next()?.parse().ok()?;
        Some(SensorReading { id, timestamp, temperature })
    }
}

/// Formats an `f64` as Java's `Double.toString` (JDK 19 and later): the shortest decimal that
/// reads back as the same double; plain notation with at least one fractional digit for
/// `10⁻³ ≤ |x| < 10⁷` (`21.0`, `21.433333333333334`), computerized scientific notation
/// otherwise (`1.0E-4`, `1.2345E7`); `NaN`, `Infinity`, `-Infinity`.
pub struct JavaDouble(pub f64);

impl fmt::Display for JavaDouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x.is_nan() {
            return f.write_str("NaN");
        }
        if x.is_infinite() {
            return f.write_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        }
        let a = x.abs();
        if a == 0.0 || (1e-3..1e7).contains(&a) {
            // Rust's `{}` is also the shortest round-trip form; only `.0` may be missing.
            let s = x.to_string();
            f.write_str(&s)?;
            if !s.contains('.') {
                f.write_str(".0")?;
            }
            return Ok(());
        }
        let s = format!("{x:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        f.write_str(mantissa)?;
        if !mantissa.contains('.') {
            f.write_str(".0")?;
        }
        write!(f, "E{exponent}")
    }
}

/// Shorthand for [`JavaDouble`]'s text.
pub fn java_double(x: f64) -> String {
    JavaDouble(x).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_matches_double_to_string() {
        let cases = [
            (21.4, "21.4"),
            (21.0, "21.0"),
            (-3.0, "-3.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1.5e-5, "1.5E-5"),
            (9999999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (12345678.9, "1.23456789E7"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, java) in cases {
            assert_eq!(java_double(x), java, "{x:?}");
        }
    }

    #[test]
    fn sensor_ids() {
        assert_eq!(sensor_id(0), "sensor_0");
        assert_eq!(sensor_id(7), "sensor_7");
        assert_eq!(sensor_id(999_999), "sensor_999999");
        assert_eq!(sensor_id(u64::MAX), format!("sensor_{}", u64::MAX));
    }

    #[test]
    fn interleave_is_a_bijection_that_keeps_readers_in_step() {
        for count in [0u64, 1, 2, 7, 10, 11, 12, 100, 101] {
            for p in 1..=5usize {
                let order = Interleave::new(count, p);
                let mut seen: Vec<u64> = (0..count).map(|i| order.map(i)).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..count).collect::<Vec<_>>(), "count {count}, p {p}");
            }
        }
        // Readers 0 and 1 of 2 over 10 records: 0, 2, 4, … and 1, 3, 5, …
        let order = Interleave::new(10, 2);
        assert_eq!((0..5).map(|i| order.map(i)).collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
        assert_eq!((5..10).map(|i| order.map(i)).collect::<Vec<_>>(), vec![1, 3, 5, 7, 9]);
    }

    #[test]
    fn readings_are_a_pure_function_of_the_index() {
        let g = SensorGenerator::every(10, 100, 0);
        assert_eq!(g.step_us, 10_000);
        let (id, ts, f) = g.reading(23);
        assert_eq!((id.as_str(), ts), ("sensor_3", 230));
        assert!((44.5..85.5).contains(&f));
        assert_eq!(g.reading(23), (id, ts, f));
    }

    #[test]
    fn sensor_reading_prints_like_the_scala_case_class() {
        let r = SensorReading { id: "sensor_7".into(), timestamp: 999, temperature: 21.4 };
        assert_eq!(r.to_string(), "SensorReading(sensor_7,999,21.4)");
        assert_eq!(SensorReading::parse(&r.to_string()), Some(r));
    }
}
