//! The event-time examples, run as a user runs them: `event_time_windows` against results
//! worked out by hand from Flink's window semantics, and `sensor_averages` against averages
//! computed here.
//!
//! Flink's rules used in the derivations below (../shared/FLINK-SEMANTICS.md, "Windows"):
//! - a window `[start, end)` has `maxTimestamp = end − 1` and fires when the watermark reaches
//!   it (its timer at `end − 1`), with everything added so far (FIRE keeps the contents);
//! - a record sees the watermark of the records BEFORE it: the per-event generator emits its
//!   watermark `max timestamp − out-of-orderness − 1` right after the record;
//! - a window is late when `maxTimestamp + allowedLateness ≤ watermark`, and its state is gone
//!   from then on (cleanup timer at `maxTimestamp + allowedLateness`);
//! - a record is added to each of its windows that is not late; if such a window's
//!   `maxTimestamp ≤ watermark` it fires again at once (a re-fire), otherwise it waits for its
//!   timer; a record added to no window (and with `ts + allowedLateness ≤ watermark`) goes to
//!   the late side output;
//! - the end of the input is the watermark `i64::MAX`: every pending window fires (windows that
//!   already fired do not fire again);
//! - session windows `[ts, ts + gap)` merge when they overlap or touch; a record is late when the
//!   window it merges into is late.

use eddy_examples::sensors;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn event_time_windows(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_event_time_windows"))
        .args(args)
        .output()
        .expect("event_time_windows runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// All lines of all part files in `dir`, sorted (a multiset: repeated lines stay).
fn lines_in(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return lines };
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// A job's input and output places in a temporary directory.
struct Job {
    dir: tempfile::TempDir,
    input: PathBuf,
}

impl Job {
    fn new(csv: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("events.csv");
        std::fs::write(&input, csv).unwrap();
        Job { dir, input }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs with `--output out-<tag> --late-output late-<tag>` plus `args`; returns the sorted
    /// window lines and late lines.
    fn run(&self, tag: &str, args: &[&str]) -> (Vec<String>, Vec<String>) {
        let (out, late) = (self.path(&format!("out-{tag}")), self.path(&format!("late-{tag}")));
        let mut all = vec![
            "--input",
            self.input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--late-output",
            late.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let result = event_time_windows(&all);
        assert!(result.status.success(), "{args:?} failed: {}", stderr(&result));
        (lines_in(&out), lines_in(&late))
    }
}

// ---------------------------------------------------------------------------------------------
// Tumbling windows of 10 ms, out-of-orderness 2 ms (watermark = max ts − 3 after each record),
// allowed lateness 5 ms (a window [s, s+10) is late, and its state gone, once WM ≥ s + 14).
//
//  #  record     WM seen  what happens                                              WM after
//  1  a,1,1      MIN      a[0,10) += 1, timer 9                                        −2
//  2  a,5,2      −2       a[0,10) += 2                                                  2
//  3  b,3,10     2        b[0,10) += 10, timer 9                                        2
//  4  a,12,3     2        a[10,20) += 3, timer 19                                       9
//                         WM 9 fires a[0,10) {1,2} → a,0,10,2,3,1,2
//                                    b[0,10) {10}  → b,0,10,1,10,10,10
//  5  a,8,4      9        a[0,10) not late (9+5 > 9) += 4, 9 ≤ WM: re-fire
//                         → a,0,10,3,7,1,4                                               9
//  6  b,15,20    9        b[10,20) += 20, timer 19                                     12
//  7  a,7,5      12       a[0,10) not late (14 > 12) += 5, re-fire → a,0,10,4,12,1,5   12
//  8  a,20,6     12       a[20,30) += 6, timer 29                                      17
//                         WM 17 ≥ 14: a[0,10) and b[0,10) cleaned up
//  9  a,3,7      17       a[0,10) late (14 ≤ 17): 3 + 5 ≤ 17 → late output "a,3,7"     17
// 10  b,9,8      17       b[0,10) late → late output "b,9,8"                            17
// 11  a,25,9     17       a[20,30) += 9                                                22
//                         WM 22 fires a[10,20) {3}  → a,10,20,1,3,3,3
//                                     b[10,20) {20} → b,10,20,1,20,20,20
// 12  b,19,11    22       b[10,20) not late (24 > 22) += 11, re-fire → b,10,20,2,31,11,20  22
// 13  a,18,12    22       a[10,20) += 12, re-fire → a,10,20,2,15,3,12                  22
// 14  a,40,13    22       a[40,50) += 13, timer 49                                     37
//                         WM 37 fires a[20,30) {6,9} → a,20,30,2,15,6,9
//                         and cleans up [10,20) (24 ≤ 37) and [20,30) (34 ≤ 37)
// 15  b,24,14    37       b[20,30) late (34 ≤ 37) → late output "b,24,14"              37
// 16  a,35,15    37       a[30,40): 44 > 37, not late; 39 > 37, so no fire yet: timer 39   37
// end            MAX      fires a[30,40) {15} → a,30,40,1,15,15,15
//                               a[40,50) {13} → a,40,50,1,13,13,13
const TUMBLING_INPUT: &str = "\
a,1,1
a,5,2
b,3,10
a,12,3
a,8,4
b,15,20
a,7,5
a,20,6
a,3,7
b,9,8
a,25,9
b,19,11
a,18,12
a,40,13
b,24,14
a,35,15
";

const TUMBLING_OUTPUT: &[&str] = &[
    "a,0,10,2,3,1,2",
    "b,0,10,1,10,10,10",
    "a,0,10,3,7,1,4",
    "a,0,10,4,12,1,5",
    "a,10,20,1,3,3,3",
    "b,10,20,1,20,20,20",
    "b,10,20,2,31,11,20",
    "a,10,20,2,15,3,12",
    "a,20,30,2,15,6,9",
    "a,30,40,1,15,15,15",
    "a,40,50,1,13,13,13",
];

const TUMBLING_LATE: &[&str] = &["a,3,7", "b,9,8", "b,24,14"];

const TUMBLING_ARGS: &[&str] = &[
    "--window",
    "tumbling:10",
    "--out-of-orderness",
    "2",
    "--watermark",
    "per-event",
    "--allowed-lateness",
    "5",
];

#[test]
fn tumbling_windows_with_allowed_lateness_refire_and_send_late_records_aside() {
    let job = Job::new(TUMBLING_INPUT);
    let (out, late) = job.run("p1", &[TUMBLING_ARGS, &["-p", "1"]].concat());
    assert_eq!(out, sorted(TUMBLING_OUTPUT));
    assert_eq!(late, sorted(TUMBLING_LATE));
}

#[test]
fn parallelism_does_not_change_the_lines() {
    let job = Job::new(TUMBLING_INPUT);
    let p1 = job.run("p1", &[TUMBLING_ARGS, &["-p", "1"]].concat());
    let p3 = job.run("p3", &[TUMBLING_ARGS, &["-p", "3"]].concat());
    assert_eq!(p1, p3);
    assert_eq!(p3.0, sorted(TUMBLING_OUTPUT));

    // And a larger, shuffled input with many keys and every kind of window.
    let mut csv = String::new();
    let mut x: u64 = 7;
    for i in 0..3000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let jitter = (x >> 33) % 600; // up to 600 ms out of order
        let ts = (i * 10) as i64 - jitter as i64;
        csv.push_str(&format!("k{},{},{}\n", (x >> 20) % 37, ts, (x >> 40) % 1000));
    }
    let job = Job::new(&csv);
    for window in ["tumbling:100", "sliding:300:100", "session:35"] {
        let args = [
            "--window",
            window,
            "--out-of-orderness",
            "150",
            "--watermark",
            "per-event",
            "--allowed-lateness",
            "100",
        ];
        let p1 = job.run(&format!("{}-p1", &window[..4]), &[&args[..], &["-p", "1"]].concat());
        let p3 = job.run(&format!("{}-p3", &window[..4]), &[&args[..], &["-p", "3"]].concat());
        assert!(!p1.0.is_empty() && !p1.1.is_empty(), "{window}: some windows and some late records");
        assert_eq!(p1, p3, "{window}");
    }
}

#[test]
fn without_late_output_late_records_are_dropped() {
    let job = Job::new(TUMBLING_INPUT);
    let out_dir = job.path("out");
    let out = event_time_windows(
        &[&["--input", job.input.to_str().unwrap(), "--output", out_dir.to_str().unwrap()], TUMBLING_ARGS]
            .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines_in(&out_dir), sorted(TUMBLING_OUTPUT));
}

// ---------------------------------------------------------------------------------------------
// Sliding windows of 10 ms every 5 ms, out-of-orderness 0 (watermark = max ts − 1), no allowed
// lateness. A record at ts is in [s, s+10) for s = ts − ts mod 5 and s − 5: ts 1 → [−5,5), [0,10).
//
//  #  record    WM seen  what happens                                                 WM after
//  1  k,1,1     MIN      k[−5,5) += 1, k[0,10) += 1                                        0
//  2  k,6,2     0        k[0,10) += 2, k[5,15) += 2                                        5
//                        WM 5 fires k[−5,5) {1} → k,-5,5,1,1,1,1
//  3  k,4,3     5        [−5,5) is late (4 ≤ 5): skipped; k[0,10) += 3 (not late, 9 > 5,
//                        no fire yet). Added to a window, so not a late record             5
//  4  k,12,4    5        k[5,15) += 4, k[10,20) += 4                                     11
//                        WM 11 fires k[0,10) {1,2,3} → k,0,10,3,6,1,3
//  5  k,2,5     11       [−5,5) and [0,10) both late → late output "k,2,5"              11
//  6  j,14,6    11       j[5,15) += 6, j[10,20) += 6                                     13
// end           MAX      k[5,15) {2,4} → k,5,15,2,6,2,4;  k[10,20) {4} → k,10,20,1,4,4,4
//                        j[5,15) {6} → j,5,15,1,6,6,6;    j[10,20) {6} → j,10,20,1,6,6,6
#[test]
fn sliding_windows_by_hand() {
    let job = Job::new("k,1,1\nk,6,2\nk,4,3\nk,12,4\nk,2,5\nj,14,6\n");
    for p in ["1", "3"] {
        let (out, late) = job.run(p, &["--window", "sliding:10:5", "--watermark", "per-event", "-p", p]);
        assert_eq!(
            out,
            sorted(&[
                "k,-5,5,1,1,1,1",
                "k,0,10,3,6,1,3",
                "k,5,15,2,6,2,4",
                "k,10,20,1,4,4,4",
                "j,5,15,1,6,6,6",
                "j,10,20,1,6,6,6",
            ]),
            "p = {p}"
        );
        assert_eq!(late, vec!["k,2,5"], "p = {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// Session windows with a gap of 5 ms, out-of-orderness 10 (watermark = max ts − 11), no allowed
// lateness. A record at ts opens [ts, ts+5); sessions merge when they overlap or touch.
//
//  #  record    WM seen  what happens                                                 WM after
//  1  s,0,1     MIN      s: [0,5) {1}                                                    −11
//  2  s,12,2    −11      s: [0,5), [12,17) {2}                                             1
//  3  s,7,3     1        [7,12) touches [12,17) → [7,17) {2,3}                             1
//  4  s,4,4     1        [4,9) overlaps [0,5) and [7,17) → [0,17) {1,2,3,4}                1
//  5  t,30,5    1        t: [30,35) {5}                                                   19
//                        WM 19 fires s[0,17) (16 ≤ 19) → s,0,17,4,10,1,4, and cleans it up
//  6  s,22,6    19       s: [22,27) {6}                                                   19
//  7  s,18,7    19       [18,23) touches [22,27) → [18,27), not late (26 > 19) {6,7}      19
//  8  s,5,8     19       [5,10) merges with nothing left; late (9 ≤ 19) → late "s,5,8"    19
// end           MAX      s[18,27) {6,7} → s,18,27,2,13,6,7;  t[30,35) {5} → t,30,35,1,5,5,5
#[test]
fn session_windows_by_hand() {
    let job = Job::new("s,0,1\ns,12,2\ns,7,3\ns,4,4\nt,30,5\ns,22,6\ns,18,7\ns,5,8\n");
    for p in ["1", "3"] {
        let (out, late) = job.run(
            p,
            &["--window", "session:5", "--out-of-orderness", "10", "--watermark", "per-event", "-p", p],
        );
        assert_eq!(out, sorted(&["s,0,17,4,10,1,4", "s,18,27,2,13,6,7", "t,30,35,1,5,5,5"]), "p = {p}");
        assert_eq!(late, vec!["s,5,8"], "p = {p}");
    }
}

#[test]
fn periodic_watermarks_with_enough_out_of_orderness_give_one_final_result_per_window() {
    // No record is more than 17 ms behind the largest timestamp before it, so with a bound of
    // 40 none is late, whenever the periodic watermarks come: each window fires once, complete.
    let job = Job::new(TUMBLING_INPUT);
    let (out, late) =
        job.run("periodic", &["--window", "tumbling:10", "--out-of-orderness", "40", "-p", "2"]);
    assert_eq!(
        out,
        sorted(&[
            "a,0,10,5,19,1,7",
            "b,0,10,2,18,8,10",
            "a,10,20,2,15,3,12",
            "b,10,20,2,31,11,20",
            "b,20,30,1,14,14,14",
            "a,20,30,2,15,6,9",
            "a,30,40,1,15,15,15",
            "a,40,50,1,13,13,13",
        ])
    );
    assert!(late.is_empty(), "{late:?}");
}

// ---------------------------------------------------------------------------------------------
// Malformed input.

const WITH_BAD_LINE: &str = "a,1,1\na,2,2\nb,3,3\na,four,4\na,5,5\n";

#[test]
fn a_malformed_line_fails_the_job_naming_file_line_number_and_line() {
    let job = Job::new(WITH_BAD_LINE);
    let out = event_time_windows(&[
        "--input",
        job.input.to_str().unwrap(),
        "--window",
        "tumbling:10",
        "--output",
        job.path("out").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "the job must fail");
    let err = stderr(&out);
    assert!(err.contains("events.csv line 4"), "{err}");
    assert!(err.contains("a,four,4"), "{err}");
    assert!(err.contains("timestamp"), "{err}");
}

#[test]
fn with_bad_records_a_malformed_line_goes_there_and_the_job_succeeds() {
    let job = Job::new(WITH_BAD_LINE);
    let bad = job.path("bad");
    let (out, late) = job.run(
        "bad",
        &[
            "--window",
            "tumbling:10",
            "--watermark",
            "per-event",
            "--bad-records",
            bad.to_str().unwrap(),
            "-p",
            "2",
        ],
    );
    assert_eq!(out, sorted(&["a,0,10,3,8,1,5", "b,0,10,1,3,3,3"]));
    assert!(late.is_empty());
    let bad = lines_in(&bad);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].ends_with("events.csv:4: the timestamp \"four\" is not a whole number of ms: a,four,4"),
        "{bad:?}"
    );
}

#[test]
fn every_kind_of_malformed_line_is_caught() {
    for (line, what) in
        [("a,1", "3 fields"), ("a,1,2,3", "3 fields"), ("a,1,x", "value"), ("a,1.5,1", "timestamp")]
    {
        let job = Job::new(&format!("a,1,1\n{line}\n"));
        let out = event_time_windows(&["--input", job.input.to_str().unwrap(), "--window", "session:5"]);
        assert!(!out.status.success(), "{line}");
        let err = stderr(&out);
        assert!(err.contains("line 2") && err.contains(line) && err.contains(what), "{line}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// sensor_averages

fn sensor_averages(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sensor_averages")).args(args).output().expect("sensor_averages runs")
}

/// The averages per (sensor, window end − 1), computed here from the generator's readings.
fn expected_averages(g: &sensors::SensorGenerator, events: u64) -> HashMap<(String, i64), f64> {
    let mut sums: BTreeMap<(String, i64), (f64, u64)> = BTreeMap::new();
    for j in 0..events {
        let (id, ts, f) = g.reading(j);
        let celsius = (f - 32.0) * 5.0 / 9.0;
        let last_ms = ts.div_euclid(1000) * 1000 + 999;
        let e = sums.entry((id.to_string(), last_ms)).or_default();
        e.0 += celsius;
        e.1 += 1;
    }
    sums.into_iter().map(|(k, (sum, n))| (k, sum / n as f64)).collect()
}

#[test]
fn sensor_averages_prints_the_average_of_each_sensor_and_second() {
    let g = sensors::SensorGenerator::every(7, 100, 1_700_000_000_000);
    let expected = expected_averages(&g, 2000);
    for p in ["1", "2"] {
        let out = sensor_averages(&[
            "--sensors",
            "7",
            "--events",
            "2000",
            "--rate",
            "unlimited",
            "--start-ms",
            "1700000000000",
            "-p",
            p,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut got = HashMap::new();
        for line in stdout.lines() {
            // At parallelism 2 lines start with the subtask: "1> SensorReading(...)".
            let text = line.split_once("> ").map_or(line, |(_, r)| r);
            let r = sensors::SensorReading::parse(text).unwrap_or_else(|| panic!("format of {line:?}"));
            assert_eq!(text, r.to_string(), "printed as Java would");
            assert!(got.insert((r.id.to_string(), r.timestamp), r.temperature).is_none(), "{line}");
        }
        assert_eq!(got.len(), expected.len(), "one line per sensor and second (p = {p})");
        for (k, avg) in &expected {
            let g = got.get(k).unwrap_or_else(|| panic!("no average for {k:?}"));
            // Sums may add in another order at p = 2: equal up to rounding.
            assert!((g - avg).abs() <= 1e-9 * avg.abs().max(1.0), "{k:?}: {g} vs {avg}");
        }
    }
}

#[test]
fn sensor_averages_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let out = sensor_averages(&[
        "--sensors",
        "3",
        "--events",
        "300",
        "--rate",
        "unlimited",
        "--start-ms",
        "0",
        "-p",
        "2",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines_in(&output);
    // 3 sensors every 100 ms, 300 readings: 10 s of event time, so 10 windows per sensor.
    assert_eq!(lines.len(), 30, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("SensorReading(sensor_") && l.ends_with(')')), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("SensorReading(sensor_0,999,")), "{lines:?}");
}
