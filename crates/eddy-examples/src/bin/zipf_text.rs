//! Writes deterministic, Zipf-distributed text: the input of the WordCount benchmark.
//!
//! ```text
//! cargo run --release -p eddy-examples --bin zipf_text -- --size-mb 100 --output /tmp/zipf.txt
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

// The generator is shared with the throughput benchmark, which includes the same file.
#[allow(dead_code)]
use eddy_examples::zipf;

use zipf::{write_zipf_file, ZipfOptions};

/// Writes lines of about ten words drawn from a Zipf distribution over a seeded vocabulary.
#[derive(Debug, Parser)]
#[command(name = "zipf_text")]
struct Cli {
    /// Size of the text in MiB (the last line is completed, so slightly more).
    #[arg(long, default_value_t = 100.0)]
    size_mb: f64,
    /// The file to write (replaced if it exists).
    #[arg(long)]
    output: PathBuf,
    /// Number of distinct words to draw from.
    #[arg(long, default_value_t = 100_000)]
    vocabulary: usize,
    /// Zipf exponent: the word of rank k has weight 1/k^exponent.
    #[arg(long, default_value_t = 1.0)]
    exponent: f64,
    /// Seed of the generator: the same options and seed give the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Mean number of words per line.
    #[arg(long, default_value_t = 10)]
    words_per_line: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !(cli.size_mb.is_finite() && cli.size_mb >= 0.0) {
        eprintln!("error: --size-mb must be a non-negative number");
        return ExitCode::FAILURE;
    }
    let options = ZipfOptions {
        vocabulary: cli.vocabulary,
        exponent: cli.exponent,
        seed: cli.seed,
        words_per_line: cli.words_per_line,
    };
    let target = (cli.size_mb * 1024.0 * 1024.0) as u64;
    let started = Instant::now();
    match write_zipf_file(&cli.output, target, &options) {
        Ok(s) => {
            eprintln!(
                "wrote {} bytes, {} lines, {} words ({} distinct) to {} in {:.1} s",
                s.bytes,
                s.lines,
                s.words,
                s.distinct,
                cli.output.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", cli.output.display());
            ExitCode::FAILURE
        }
    }
}
