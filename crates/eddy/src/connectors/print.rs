//! `print()` and `print_to_err()`: records as text on standard output or error.

use std::fmt::Write as _;
use std::io::Write as _;

use eddy_core::{Batch, Data, EddyError, RecordDisplay, Result, ShowRecord};
use eddy_runtime::sink::{Sink, SinkContext, SinkWriter};

/// Prints each record on a line, prefixed `N> ` (N = subtask index + 1) when the sink runs with
/// parallelism above 1: Flink's `PrintSinkFunction` format.
pub struct PrintSink {
    stderr: bool,
}

impl PrintSink {
    pub fn stdout() -> Self {
        PrintSink { stderr: false }
    }
    pub fn stderr() -> Self {
        PrintSink { stderr: true }
    }
}

struct PrintWriter {
    stderr: bool,
    prefix: String,
    text: String,
}

impl<T: Data + RecordDisplay> Sink<T> for PrintSink {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        let prefix = if ctx.parallelism > 1 { format!("{}> ", ctx.subtask_index + 1) } else { String::new() };
        Ok(Box::new(PrintWriter { stderr: self.stderr, prefix, text: String::new() }))
    }
}

impl<T: RecordDisplay> SinkWriter<T> for PrintWriter {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.text.clear();
        for v in &batch.values {
            // Writing to a String cannot fail.
            let _ = writeln!(self.text, "{}{}", self.prefix, ShowRecord(v));
        }
        // One write per batch, so lines of different subtasks never interleave mid-line.
        let result = if self.stderr {
            std::io::stderr().lock().write_all(self.text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(self.text.as_bytes())
        };
        result.map_err(|e| {
            EddyError::user(format!(
                "cannot write to standard {}: {e}",
                if self.stderr { "error" } else { "output" }
            ))
        })
    }

    fn flush(&mut self) -> Result<()> {
        let _ = if self.stderr { std::io::stderr().flush() } else { std::io::stdout().flush() };
        Ok(())
    }
}
