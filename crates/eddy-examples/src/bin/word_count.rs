//! WordCount over text files (Flink's BatchWordCount / BoundedWordCount).
//!
//! ```text
//! cargo run --release -p eddy-examples --bin word_count -- --input README.md --mode batch
//! ```
//!
//! Slowly, with checkpoints kept on disk, then resumed from one of them at another parallelism:
//!
//! ```text
//! word_count --input big.txt --output out --rate 1000 --checkpoint-interval 500 \
//!     -D state.checkpoints.dir=/tmp/chk        # interrupt it half way
//! word_count --input big.txt --output out --checkpoint-interval 500 -p 4 \
//!     --from-savepoint /tmp/chk/<job-id>/chk-<n>
//! ```
//!
//! With `--state-backend fjall` the counts live in an embedded LSM tree on local disk
//! (`state.backend`; `-D state.backend.fjall.memory=16mb` bounds its memory,
//! `-D state.backend.incremental=true` makes checkpoints incremental). A checkpoint of one
//! backend restores on the other.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eddy::prelude::*;
use eddy_examples::{init_logging, parse_rate, report, word_count, CommonArgs, DEFAULT_TEXT};

/// Counts the words of a text file or directory; prints `(word,count)` lines.
#[derive(Debug, Parser)]
#[command(name = "word_count")]
struct Cli {
    /// A text file or a directory of text files (default: a built-in text).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Read the input at most this many lines per second (over all readers), so that a run
    /// can be stopped, killed or savepointed half way.
    #[arg(long, value_name = "LINES_PER_S", value_parser = parse_rate)]
    rate: Option<f64>,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(cli: &Cli) -> Result<JobExecutionResult> {
    let env = cli.common.environment()?;
    let lines = match &cli.input {
        Some(path) => {
            let source = TextFileSource::new(path);
            let source = match cli.rate {
                Some(rate) => source.with_rate(rate),
                None => source,
            };
            env.from_source(source, "File Source")
        }
        None if cli.rate.is_some() => {
            return Err(EddyError::InvalidJob("--rate throttles the --input files; give --input".into()))
        }
        None => env.from_collection(DEFAULT_TEXT.iter().map(|s| s.to_string()).collect()),
    };
    cli.common.emit(&word_count(&lines));
    env.execute("WordCount")
}

fn main() -> ExitCode {
    init_logging();
    report(run(&Cli::parse()))
}
