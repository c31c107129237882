//! Shared pieces of the example jobs: command-line options and the WordCount pipeline.

pub mod bench_support;
pub mod csv_events;
pub mod sensors;
pub mod zipf;

use std::path::PathBuf;

use clap::Args;
use eddy::config::{options, parse_dynamic_properties, ConfigValue, RuntimeMode, StateBackendKind};
use eddy::prelude::*;

/// Options every example takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Output directory (one part file per subtask); without it, records are printed.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Parallelism of the job (default: `parallelism.default`, else the number of cores).
    #[arg(long, short = 'p')]
    pub parallelism: Option<usize>,
    /// Runtime mode: streaming, batch or automatic (default: `execution.runtime-mode`).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<RuntimeMode>,
    /// Configuration overrides, Flink style: `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    pub define: Vec<String>,
    /// Take a checkpoint every this many milliseconds (`execution.checkpointing.interval`):
    /// after a failure the job resumes from the latest one, and the `--output` files are then
    /// exactly-once.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..))]
    pub checkpoint_interval: Option<u64>,
    /// Start from this savepoint or retained checkpoint (`execution.savepoint.path`): a
    /// savepoint folder, its `_metadata`, or a `chk-<n>` folder. The parallelism may differ
    /// from the run that wrote it.
    #[arg(long, value_name = "PATH")]
    pub from_savepoint: Option<PathBuf>,
    /// Where keyed state lives (`state.backend`): `hashmap` (in memory) or `fjall` (an
    /// embedded LSM tree on local disk, for state larger than memory). A savepoint or
    /// checkpoint of one restores on the other.
    #[arg(long, value_name = "hashmap|fjall", value_parser = parse_state_backend)]
    pub state_backend: Option<StateBackendKind>,
    /// Application mode: start a JobManager for this job alone, then run the job on the
    /// TaskManagers that connect to it (`execute` reads the flag).
    #[arg(long)]
    pub application: bool,
}

fn parse_mode(s: &str) -> std::result::Result<RuntimeMode, String> {
    s.parse()
}

fn parse_state_backend(s: &str) -> std::result::Result<StateBackendKind, String> {
    StateBackendKind::parse_value(s)
}

/// A positive number of lines (or records) per second.
pub fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number of lines per second")),
    }
}

impl CommonArgs {
    /// The environment these options describe.
    pub fn environment(&self) -> Result<StreamExecutionEnvironment> {
        let env = StreamExecutionEnvironment::get_execution_environment();
        let defines = self.define.iter().map(|d| format!("-D{d}"));
        let (conf, _) = parse_dynamic_properties(defines)?;
        env.configure(&conf);
        if let Some(p) = self.parallelism {
            env.set_parallelism(p);
        }
        if let Some(m) = self.mode {
            env.set_runtime_mode(m);
        }
        if let Some(ms) = self.checkpoint_interval {
            env.enable_checkpointing(std::time::Duration::from_millis(ms));
        }
        if let Some(kind) = self.state_backend {
            let mut conf = eddy::Configuration::new();
            conf.set(options::STATE_BACKEND.key, kind.as_str());
            env.configure(&conf);
        }
        if let Some(path) = &self.from_savepoint {
            let mut conf = eddy::Configuration::new();
            conf.set(options::SAVEPOINT_PATH.key, path.to_string_lossy().as_ref());
            env.configure(&conf);
        }
        Ok(env)
    }

    /// Prints the stream, or writes it to the output directory.
    pub fn emit<T: Data + RecordDisplay>(&self, stream: &DataStream<T>) {
        match &self.output {
            Some(dir) => stream.write_as_text(dir.clone()),
            None => stream.print(),
        };
    }
}

/// A word and its count. Words are [`CompactString`]s: stored inline up to 24 bytes, so
/// splitting, routing, hashing and counting them allocates nothing.
pub type WordCount = (CompactString, i64);

/// Splits lines on whitespace into `(word, 1)`.
pub fn tokenize(line: String, out: &mut Collector<WordCount>) {
    // ASCII lines split on ASCII whitespace: the same words as `split_whitespace`, which also
    // splits on vertical tab (`is_ascii_whitespace` does not), without decoding characters.
    if line.is_ascii() {
        for word in line.as_bytes().split(|&b| b.is_ascii_whitespace() || b == 0x0b).filter(|w| !w.is_empty())
        {
            // ASCII bytes are valid UTF-8.
            let word = std::str::from_utf8(word).unwrap_or_default();
            out.collect((CompactString::new(word), 1));
        }
    } else {
        for word in line.split_whitespace() {
            out.collect((CompactString::new(word), 1));
        }
    }
}

/// The WordCount pipeline: `(word, count)` per word, updated per word in STREAMING mode and
/// final per word in BATCH mode.
pub fn word_count(lines: &DataStream<String>) -> DataStream<WordCount> {
    lines
        .flat_map(tokenize)
        .name("Tokenizer")
        .key_by(|t: &WordCount| t.0.clone())
        .sum(|t: &mut WordCount| &mut t.1)
        .name("Counter")
}

/// Prints how the job ended and turns it into the process's exit code.
pub fn report(result: Result<JobExecutionResult>) -> std::process::ExitCode {
    match result {
        Ok(r) => {
            eprintln!("Job {} finished in {} ms", r.job_id, r.net_runtime.as_millis());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A few lines of Hamlet, the input when none is given (as in Flink's examples).
pub const DEFAULT_TEXT: &[&str] = &[
    "To be, or not to be,--that is the question:--",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune",
    "Or to take arms against a sea of troubles,",
    "And by opposing end them?--To die,--to sleep,--",
    "No more; and by a sleep to say we end",
    "The heartache, and the thousand natural shocks",
    "That flesh is heir to,--'tis a consummation",
    "Devoutly to be wish'd. To die,--to sleep;--",
    "To sleep! perchance to dream:--ay, there's the rub;",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_splits_exactly_like_split_whitespace() {
        let lines = ["  to be\tor\x0bnot \r\n", "", "   ", "naïve café\u{a0}au lait", "a\x0c\x0cb"];
        for line in lines {
            let env = StreamExecutionEnvironment::local().with_parallelism(1);
            let words = env
                .from_collection(vec![line.to_string()])
                .flat_map(tokenize)
                .map(|(w, _)| w.to_string())
                .execute_and_collect()
                .unwrap();
            let expected: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            assert_eq!(words, expected, "{line:?}");
        }
    }
}
