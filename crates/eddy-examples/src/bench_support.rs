//! Pieces shared by the benchmark harnesses: statistics, machine facts, settings.

/// A whole-number setting from the environment, or `default` when unset.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// The peak resident set size of this process (`VmHWM`), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The median of the measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `12.34 M`.
pub fn millions(x: f64) -> String {
    format!("{:.2} M", x / 1e6)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Runs scenario `name` in a child process (this executable with `--run-scenario NAME` and
/// `args`) and returns what it printed on standard output.
pub fn run_scenario_process(name: &str, args: &[String]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg("--run-scenario")
        .arg(name)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run the scenario process: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The scenarios whose name contains one of `filters` (all of them without filters).
pub fn select_scenarios<'a, S>(
    all: &'a [S],
    name: impl Fn(&S) -> &str,
    filters: &[String],
) -> Result<Vec<&'a S>, String> {
    let selected: Vec<&S> = all
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| name(s).contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        return Err(format!("no scenario matches {filters:?}"));
    }
    Ok(selected)
}

/// A sink that counts the records it receives and does nothing else.
#[derive(Clone, Default)]
pub struct CountingSink(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

struct CountingWriter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CountingSink {
    /// The records received so far.
    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<T: eddy::Data> eddy::sink::Sink<T> for CountingSink {
    fn create_writer(&self, _: &eddy::sink::SinkContext) -> eddy::Result<Box<dyn eddy::sink::SinkWriter<T>>> {
        Ok(Box::new(CountingWriter(self.0.clone())))
    }
}

impl<T: eddy::Data> eddy::sink::SinkWriter<T> for CountingWriter {
    fn write_batch(&mut self, batch: eddy::Batch<T>) -> eddy::Result<()> {
        self.0.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The `main` of a benchmark harness: `--run-scenario NAME` runs one scenario in this process
/// (`child(name, args)`); anything else runs the parent with the non-flag arguments as scenario
/// filters (`cargo bench` passes `--bench`). Errors are printed and fail the process.
pub fn bench_main(
    child: impl FnOnce(&str, &[String]) -> Result<(), String>,
    parent: impl FnOnce(&[String]) -> Result<(), String>,
) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if let Some(i) = args.iter().position(|a| a == "--run-scenario") {
        match args.get(i + 1) {
            Some(name) => child(name, &args),
            None => Err("--run-scenario needs a scenario name".into()),
        }
    } else {
        let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        parent(&filters)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
