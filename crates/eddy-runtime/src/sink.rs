//! Sinks: where records leave the job.
//!
//! A [`Sink`] creates one [`SinkWriter`] per parallel subtask. Writers get whole batches.

use eddy_core::{Batch, CheckpointBarrier, Data, Result};

use crate::checkpoint::RestoredState;
use crate::operator::{OneInputOperator, OperatorContext};
use crate::output::Emitter;

/// Where a sink writer runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub subtask_index: usize,
    pub parallelism: usize,
    pub operator_name: String,
    /// The job takes checkpoints: a sink with side effects should make its output visible
    /// only for what a completed checkpoint covers (two-phase commit).
    pub checkpointing: bool,
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
    /// Called once before the first record: the state [`prepare_commit`](Self::prepare_commit)
    /// returned for the checkpoint the job restarts from (`None`: a fresh start).
    fn restore(&mut self, _state: Option<&RestoredState>) -> Result<()> {
        Ok(())
    }
    /// A checkpoint's barrier arrived: make everything written so far ready to commit, and
    /// return the writer's state (what to commit, where to go on).
    fn prepare_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Checkpoint `checkpoint_id` completed: commit what was prepared up to it.
    fn commit(&mut self, _checkpoint_id: u64) -> Result<()> {
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
            checkpointing: ctx.checkpointing,
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

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        self.writer.restore(restored)
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.writer.prepare_commit(barrier.id)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.writer.commit(checkpoint_id)
    }
}
