//! Sinks: where records leave the job.
//!
//! A [`Sink`] creates one [`SinkWriter`] per parallel subtask. Writers get whole batches.

use eddy_core::{Batch, Data, Result};

use crate::operator::{OneInputOperator, OperatorContext};
use crate::output::Emitter;

/// Where a sink writer runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub subtask_index: usize,
    pub parallelism: usize,
    pub operator_name: String,
}

/// Writes the records of one subtask.
pub trait SinkWriter<T>: Send {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()>;
    /// The buffer timeout expired: make what was written visible if the sink buffers.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// The input ended: write out everything.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A destination for records.
pub trait Sink<T>: Send + Sync + 'static {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>>;
}

/// The operator that drives a sink writer.
pub struct SinkOperator<T: Data> {
    writer: Box<dyn SinkWriter<T>>,
}

impl<T: Data> SinkOperator<T> {
    pub fn new(sink: &dyn Sink<T>, ctx: &OperatorContext) -> Result<Self> {
        let sctx = SinkContext {
            subtask_index: ctx.subtask_index,
            parallelism: ctx.parallelism,
            operator_name: ctx.operator_name.clone(),
        };
        Ok(SinkOperator { writer: ctx.guard(|| sink.create_writer(&sctx))? })
    }
}

impl<T: Data> OneInputOperator for SinkOperator<T> {
    type In = T;
    type Out = ();

    fn process_batch(&mut self, batch: Batch<T>, _: &mut Emitter<()>) -> Result<()> {
        self.writer.write_batch(batch)
    }

    fn process_watermark(&mut self, _: i64, _: &mut Emitter<()>) -> Result<()> {
        self.writer.flush()
    }

    fn end_input(&mut self, _: &mut Emitter<()>) -> Result<()> {
        self.writer.finish()
    }
}
