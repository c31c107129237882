//! Pieces the checkpoint tests share.

// Not every test file uses every piece.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::{Batch, Data, EddyError, Result};
use eddy_runtime::output::Emitter;
use eddy_runtime::{OneInputOperator, OperatorContext};

/// Keeps the highest count it received per key (a failed attempt's records included): after a
/// job with failures, every key's maximum must be its final count.
pub struct MaxPerKey<C>(pub Arc<Mutex<BTreeMap<i64, C>>>);

impl<C> Clone for MaxPerKey<C> {
    fn clone(&self) -> Self {
        MaxPerKey(self.0.clone())
    }
}

impl<C> Default for MaxPerKey<C> {
    fn default() -> Self {
        MaxPerKey(Arc::default())
    }
}

impl<C: Ord + Copy + Default + Send + 'static> Sink<(i64, C)> for MaxPerKey<C>
where
    (i64, C): Data,
{
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<(i64, C)>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<C: Ord + Copy + Default + Send + 'static> SinkWriter<(i64, C)> for MaxPerKey<C>
where
    (i64, C): Data,
{
    fn write_batch(&mut self, batch: Batch<(i64, C)>) -> Result<()> {
        let mut max = self.0.lock().unwrap();
        for (k, c) in batch.values {
            let m = max.entry(k).or_default();
            *m = (*m).max(c);
        }
        Ok(())
    }
}

/// Passes `(key, count)` records through; in attempt 0 its subtask 0 fails once it has seen
/// `fail_after` records and a checkpoint has completed since, so that the restart restores
/// real state.
pub struct FailOnce {
    fail_after: u64,
    seen: u64,
    attempt: usize,
    subtask: usize,
    checkpoint_completed: bool,
}

impl FailOnce {
    pub fn after(fail_after: u64) -> Self {
        FailOnce { fail_after, seen: 0, attempt: 0, subtask: 0, checkpoint_completed: false }
    }
}

impl OneInputOperator for FailOnce {
    type In = (i64, i64);
    type Out = (i64, i64);

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.attempt = ctx.attempt;
        self.subtask = ctx.subtask_index;
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<(i64, i64)>, out: &mut Emitter<(i64, i64)>) -> Result<()> {
        let armed = self.attempt == 0 && self.subtask == 0 && self.seen >= self.fail_after;
        if armed && self.checkpoint_completed {
            return Err(EddyError::user("injected failure after a completed checkpoint"));
        }
        self.seen += batch.len() as u64;
        for (v, ts) in batch.into_iter_with_timestamps() {
            out.collect_with_timestamp(v, ts)?;
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        self.checkpoint_completed |= self.seen >= self.fail_after;
        Ok(())
    }

    /// Should the input end before a checkpoint completed after the failure point, fail here:
    /// the restart then restores whatever checkpoint there is (the tests check there was one).
    fn end_input(&mut self, _: &mut Emitter<(i64, i64)>) -> Result<()> {
        if self.attempt == 0 && self.subtask == 0 {
            return Err(EddyError::user("injected failure at the end of the input"));
        }
        Ok(())
    }
}
