//! Events from CSV lines `key,timestamp_ms,value`, and per-window statistics over them: the
//! pieces of the `event_time_windows` example.
//!
//! - [`parse_event`] reads one line; [`ParseEvents`] reads a file's lines in order, numbering
//!   them, and either fails the job on a malformed line (naming file, line number and line) or
//!   sends it, with the reason, to a side output.
//! - [`PerEventWatermarks`] is a punctuated watermark generator: after every record it emits
//!   `max timestamp − out-of-orderness − 1`, so event time advances at exactly the same points
//!   on every run.
//! - [`WindowSpec`] is the `--window` option; [`StatsAggregate`] and [`WindowStats`] make one
//!   line `key,window_start,window_end,count,sum,min,max` per window firing.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use eddy::prelude::*;

/// An event: `(key, timestamp in ms, value, the CSV line it was read from)`. The line travels
/// along so that a late event can be written out unchanged.
pub type Event = (CompactString, i64, f64, String);

/// Reads `key,timestamp_ms,value`. Fields may be padded with spaces; the key must not be empty,
/// the timestamp must be a whole number of milliseconds and the value a finite number.
pub fn parse_event(line: &str) -> std::result::Result<Event, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [key, timestamp, value] = fields[..] else {
        return Err(format!("expected 3 fields key,timestamp_ms,value, found {}", fields.len()));
    };
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    let timestamp: i64 =
        timestamp.parse().map_err(|_| format!("the timestamp {timestamp:?} is not a whole number of ms"))?;
    let value: f64 = match value.parse() {
        Ok(v) if f64::is_finite(v) => v,
        _ => return Err(format!("the value {value:?} is not a finite number")),
    };
    Ok((CompactString::new(key), timestamp, value, line.to_string()))
}

/// Parses the lines of one file, numbering them (from 1).
///
/// Line numbers are only right when this function sees every line of the file, in file order:
/// run it, and the source before it, at parallelism 1.
#[derive(Clone)]
pub struct ParseEvents {
    file: Arc<str>,
    line_number: u64,
    bad_records: Option<OutputTag<String>>,
}

impl ParseEvents {
    /// Fails the job at the first malformed line.
    pub fn strict(file: &str) -> Self {
        ParseEvents { file: file.into(), line_number: 0, bad_records: None }
    }

    /// Sends malformed lines to `bad_records` as `file:line: reason: line`.
    pub fn with_bad_records(file: &str, bad_records: OutputTag<String>) -> Self {
        ParseEvents { file: file.into(), line_number: 0, bad_records: Some(bad_records) }
    }
}

impl ProcessFunction<String, Event> for ParseEvents {
    fn process_element(&mut self, line: String, ctx: &mut Context, out: &mut Collector<Event>) -> Result<()> {
        self.line_number += 1;
        match parse_event(&line) {
            Ok(event) => out.collect(event),
            Err(reason) => match &self.bad_records {
                Some(tag) => ctx.output(tag, format!("{}:{}: {reason}: {line}", self.file, self.line_number)),
                None => {
                    return Err(EddyError::BadInput {
                        location: format!("{} line {}", self.file, self.line_number),
                        reason: format!("{reason}: {line:?}"),
                    })
                }
            },
        }
        Ok(())
    }
}

/// A punctuated watermark generator: `max timestamp − out_of_orderness − 1` after every event.
#[derive(Debug, Clone)]
pub struct PerEventWatermarks {
    max_timestamp: Option<i64>,
    out_of_orderness: i64,
}

impl PerEventWatermarks {
    pub fn new(out_of_orderness_ms: i64) -> Self {
        PerEventWatermarks { max_timestamp: None, out_of_orderness: out_of_orderness_ms }
    }
}

impl<T> WatermarkGenerator<T> for PerEventWatermarks {
    fn on_event(&mut self, _: &T, timestamp: i64, output: &mut WatermarkOutput) {
        let max = self.max_timestamp.map_or(timestamp, |m| m.max(timestamp));
        self.max_timestamp = Some(max);
        output.emit_watermark(max.saturating_sub(self.out_of_orderness).saturating_sub(1));
    }

    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// The `--window` option: `tumbling:SIZE`, `sliding:SIZE:SLIDE` or `session:GAP`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumbling { size: u64 },
    Sliding { size: u64, slide: u64 },
    Session { gap: u64 },
}

impl FromStr for WindowSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let ms = |p: &str| -> std::result::Result<u64, String> {
            match p.trim().parse::<u64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(format!("{p:?} is not a positive whole number of milliseconds")),
            }
        };
        match parts[..] {
            ["tumbling", size] => Ok(WindowSpec::Tumbling { size: ms(size)? }),
            ["sliding", size, slide] => Ok(WindowSpec::Sliding { size: ms(size)?, slide: ms(slide)? }),
            ["session", gap] => Ok(WindowSpec::Session { gap: ms(gap)? }),
            _ => Err(format!("{s:?} is not tumbling:SIZE, sliding:SIZE:SLIDE or session:GAP")),
        }
    }
}

/// `(count, sum, min, max)` of the values of a window.
pub type Stats = (u64, f64, f64, f64);

/// Counts, sums and bounds the values of a window, incrementally.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsAggregate;

impl AggregateFunction<Event, Stats, Stats> for StatsAggregate {
    fn create_accumulator(&self) -> Stats {
        (0, 0.0, f64::INFINITY, f64::NEG_INFINITY)
    }
    fn add(&self, acc: &mut Stats, event: Event) {
        let v = event.2;
        *acc = (acc.0 + 1, acc.1 + v, acc.2.min(v), acc.3.max(v));
    }
    fn get_result(&self, acc: &Stats) -> Stats {
        *acc
    }
    fn merge(&self, acc: &mut Stats, o: Stats) {
        *acc = (acc.0 + o.0, acc.1 + o.1, acc.2.min(o.2), acc.3.max(o.3));
    }
}

/// One output line per window firing: `key,window_start,window_end,count,sum,min,max`.
///
/// Numbers print in their shortest form that reads back the same: `6`, `2.5`, `-0.1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowStats;

/// Formats one output line.
pub fn stats_line(key: &str, start: i64, end: i64, (count, sum, min, max): Stats) -> String {
    format!("{key},{start},{end},{count},{sum},{min},{max}")
}

impl ProcessWindowFunction<Stats, String, CompactString, TimeWindow> for WindowStats {
    fn process(
        &mut self,
        key: &CompactString,
        ctx: &mut WindowContext<CompactString, TimeWindow>,
        results: &[Stats],
        out: &mut Collector<String>,
    ) -> Result<()> {
        let w = ctx.window();
        for &stats in results {
            out.collect(stats_line(key, w.start(), w.end(), stats));
        }
        Ok(())
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Tumbling { size } => write!(f, "tumbling:{size}"),
            WindowSpec::Sliding { size, slide } => write!(f, "sliding:{size}:{slide}"),
            WindowSpec::Session { gap } => write!(f, "session:{gap}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_lines_and_says_what_is_wrong_with_bad_ones() {
        let (k, ts, v, line) = parse_event("a, 1000 ,2.5").unwrap();
        assert_eq!((k.as_str(), ts, v, line.as_str()), ("a", 1000, 2.5, "a, 1000 ,2.5"));
        assert!(parse_event("a,1").unwrap_err().contains("found 2"));
        assert!(parse_event("a,1,2,3").unwrap_err().contains("found 4"));
        assert!(parse_event("").unwrap_err().contains("found 1"));
        assert!(parse_event(",1,2").unwrap_err().contains("key"));
        assert!(parse_event("a,1.5,2").unwrap_err().contains("timestamp"));
        assert!(parse_event("a,x,2").unwrap_err().contains("timestamp"));
        assert!(parse_event("a,1,abc").unwrap_err().contains("value"));
        assert!(parse_event("a,1,NaN").unwrap_err().contains("value"));
        assert!(parse_event("a,1,inf").unwrap_err().contains("value"));
    }

    #[test]
    fn window_specs() {
        assert_eq!("tumbling:10".parse(), Ok(WindowSpec::Tumbling { size: 10 }));
        assert_eq!("sliding:10:5".parse(), Ok(WindowSpec::Sliding { size: 10, slide: 5 }));
        assert_eq!("session:3".parse(), Ok(WindowSpec::Session { gap: 3 }));
        for bad in ["tumbling", "tumbling:0", "sliding:10", "session:-1", "hopping:1"] {
            assert!(bad.parse::<WindowSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn per_event_watermarks_trail_the_largest_timestamp() {
        let mut g = PerEventWatermarks::new(2);
        let mut o = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_event(&mut g, &(), 10, &mut o);
        WatermarkGenerator::<()>::on_event(&mut g, &(), 5, &mut o);
        // Emitted 7 then 7 again; the output keeps the largest.
        assert_eq!(format!("{o:?}"), "WatermarkOutput { watermark: Some(7), idle: Some(false) }");
    }

    #[test]
    fn stats_lines() {
        let agg = StatsAggregate;
        let mut acc = agg.create_accumulator();
        for v in [3.0, -1.5, 4.0] {
            agg.add(&mut acc, ("k".into(), 0, v, String::new()));
        }
        assert_eq!(stats_line("k", 0, 10, agg.get_result(&acc)), "k,0,10,3,5.5,-1.5,4");
    }
}
