//! WordCount over lines from a TCP socket (Flink's SocketWindowWordCount / StreamWordCount).
//!
//! ```text
//! nc -lk 9999 &     # type lines into it
//! cargo run --release -p eddy-examples --bin socket_word_count -- --port 9999
//! ```

use std::process::ExitCode;

use clap::Parser;
use eddy::prelude::*;
use eddy_examples::{init_logging, report, word_count, CommonArgs};

/// Counts words received on a socket; prints an updated `(word,count)` per word.
#[derive(Debug, Parser)]
#[command(name = "socket_word_count")]
struct Cli {
    /// Host of the server to read lines from.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Port of the server to read lines from.
    #[arg(long)]
    port: u16,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(cli: &Cli) -> Result<JobExecutionResult> {
    let env = cli.common.environment()?;
    let lines = env.socket_text_stream(&cli.host, cli.port);
    cli.common.emit(&word_count(&lines));
    env.execute("Socket WordCount")
}

fn main() -> ExitCode {
    init_logging();
    report(run(&Cli::parse()))
}
