//! The `Status.*` metrics of a JobManager or TaskManager process, read from procfs.
//!
//! Flink reports the JVM's (`Status.JVM.Memory.Heap.Used`, `Status.JVM.CPU.Load`); a Rust
//! process has no heap of its own to speak of, so Eddy reports what the kernel accounts to the
//! process instead:
//!
//! | name | meaning |
//! | --- | --- |
//! | `Status.Memory.RSS` | resident set size, bytes (`VmRSS` of `/proc/<pid>/status`) |
//! | `Status.Memory.Virtual` | virtual memory size, bytes (`VmSize`) |
//! | `Status.Threads.Count` | threads (`Threads`) |
//! | `Status.CPU.Time` | user + system CPU time since the process started, ms (`/proc/<pid>/stat`) |
//! | `Status.CPU.Load` | CPU time per wall-clock time since the previous sample, over all cores (0 to 1) |
//!
//! Off Linux (no `/proc`), the names are reported with 0.

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux
/// architecture Eddy builds for.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's memory and thread counts, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStatus {
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat` (`pid`: a number or `self`); `None` when
/// the process is gone or there is no procfs.
pub fn read_process(pid: &str) -> Option<ProcessStatus> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcessStatus { cpu_ticks: parse_cpu_ticks(&stat)?, ..parse_status(&status) })
}

/// The `VmRSS`, `VmSize` and `Threads` lines of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> ProcessStatus {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ProcessStatus {
        rss_bytes: field("VmRSS:") * 1024,
        virtual_bytes: field("VmSize:") * 1024,
        threads: field("Threads:"),
        cpu_ticks: 0,
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces
/// and parentheses, so the fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Samples this process's `Status.*` metrics; keeps the previous sample for the CPU load.
pub struct ProcessSampler {
    last: Option<(Instant, u64)>,
    cores: f64,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        ProcessSampler { last: None, cores }
    }
}

impl ProcessSampler {
    /// The metrics of this process now.
    pub fn sample(&mut self) -> Vec<(String, f64)> {
        let status = read_process("self").unwrap_or_default();
        let now = Instant::now();
        let load = match self.last {
            Some((t, ticks)) if now > t => {
                let cpu = status.cpu_ticks.saturating_sub(ticks) as f64 / TICKS_PER_SECOND;
                (cpu / now.duration_since(t).as_secs_f64() / self.cores).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        self.last = Some((now, status.cpu_ticks));
        let mut out = status_metrics("Status", &status);
        out.push(("Status.CPU.Load".into(), load));
        out
    }
}

/// `<prefix>.Memory.RSS`, `<prefix>.Memory.Virtual`, `<prefix>.Threads.Count` and
/// `<prefix>.CPU.Time` (ms) of a process.
pub fn status_metrics(prefix: &str, s: &ProcessStatus) -> Vec<(String, f64)> {
    vec![
        (format!("{prefix}.Memory.RSS"), s.rss_bytes as f64),
        (format!("{prefix}.Memory.Virtual"), s.virtual_bytes as f64),
        (format!("{prefix}.Threads.Count"), s.threads as f64),
        (format!("{prefix}.CPU.Time"), s.cpu_ticks as f64 * 1000.0 / TICKS_PER_SECOND),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tx\nVmSize:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n";
        let s = parse_status(status);
        assert_eq!((s.rss_bytes, s.virtual_bytes, s.threads), (1 << 20, 2 << 20, 7));
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let mut sampler = ProcessSampler::default();
        let values: std::collections::HashMap<_, _> = sampler.sample().into_iter().collect();
        assert!(values["Status.Memory.RSS"] > 0.0);
        assert!(values["Status.Threads.Count"] >= 1.0);
        assert!((0.0..=1.0).contains(&values["Status.CPU.Load"]));
    }
}
