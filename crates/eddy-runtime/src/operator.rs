//! The operator core: one-input and two-input operators and how they sit in a chain.
//!
//! Every transformation of the API (`map`, `filter`, `reduce`, sinks, ...) is one of these two
//! traits. An operator handles a whole [`Batch`] per call and writes results to an [`Emitter`].
//! [`ChainedOperator`] glues an operator to its emitter and presents it as the [`Output`] of the
//! operator before it; the chain is built once per task, so within a chain the only dynamic
//! dispatch is one call per batch per operator.
//!
//! Errors and panics raised inside an operator are turned into [`EddyError::Task`] naming the
//! operator and the subtask, which fails the job.
//!
//! # State and checkpoints
//!
//! An operator that keeps state takes part in checkpoints through three hooks, all called on
//! its task's thread, between batches (see [`crate::checkpoint`]):
//!
//! 1. `initialize_state(restored)` once, before `open`: `restored` holds the bytes the
//!    operator's `snapshot_state` returned for the checkpoint the job restarts from, or is
//!    `None` on a fresh start;
//! 2. `snapshot_state(barrier)` when the checkpoint's barrier passes the operator: the
//!    synchronous part of a snapshot, so it should only copy or serialize what it must. An
//!    operator with large state implements `snapshot_state_async` instead, which may return a
//!    [`SnapshotBytes::Deferred`] part that builds the bytes on the task's snapshot thread
//!    from a consistent view taken now (see [`crate::checkpoint::async_snapshot`]);
//! 3. `notify_checkpoint_complete(checkpoint_id)` once the whole checkpoint is stored (where a
//!    sink would commit).
//!
//! The bytes are the operator's own business (the [`eddy_core::codec`] is there for them);
//! they are stored per operator (by its stable id) and per subtask.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use eddy_core::config::RuntimeMode;
use eddy_core::{Batch, CheckpointBarrier, Data, EddyError, Result};

use crate::checkpoint::{ChainSnapshot, OperatorInit, RestoredState, SnapshotBytes};
use crate::output::{Emitter, Output};

/// What an operator knows about where it runs.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    pub job_name: String,
    pub operator_name: String,
    /// 0-based index of this subtask.
    pub subtask_index: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub attempt: usize,
    pub runtime_mode: RuntimeMode,
    /// Records per batch handed between operators and tasks.
    pub batch_size: usize,
    /// Processing time (the wall clock, or a manual clock in tests).
    pub clock: crate::time::ClockRef,
    /// `pipeline.auto-watermark-interval` in ms (0 disables periodic watermarks).
    pub auto_watermark_interval: i64,
    /// The job takes checkpoints: sinks with side effects commit only what a completed
    /// checkpoint covers.
    pub checkpointing: bool,
    /// `state.backend` and its options: where keyed operators keep their state.
    pub state_backend: std::sync::Arc<eddy_core::config::StateBackendConfig>,
    /// The operator subtask's metrics, and where its functions register theirs.
    pub metrics: crate::metrics::MetricGroup,
}

impl OperatorContext {
    /// `Name (2/4)`, as Flink names a subtask.
    pub fn task_name(&self) -> String {
        format!("{} ({}/{})", self.operator_name, self.subtask_index + 1, self.parallelism)
    }

    /// Wraps an error of this operator into a [`EddyError::Task`] naming it.
    pub fn task_error(&self, message: impl std::fmt::Display) -> EddyError {
        EddyError::Task {
            operator: self.operator_name.clone(),
            subtask: self.subtask_index + 1,
            parallelism: self.parallelism,
            message: message.to_string(),
        }
    }

    /// Leaves task errors (raised further down the chain) as they are, wraps the others.
    pub fn attribute(&self, e: EddyError) -> EddyError {
        match e {
            e @ (EddyError::Task { .. } | EddyError::Cancelled(_)) => e,
            other => self.task_error(other),
        }
    }

    /// Runs operator code, turning a panic into a task error.
    pub fn guard<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r.map_err(|e| self.attribute(e)),
            Err(panic) => Err(self.task_error(format!("panicked: {}", panic_message(&panic)))),
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// An operator with one input.
pub trait OneInputOperator: Send + 'static {
    type In: Data;
    type Out: Data;

    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<Self::In>, out: &mut Emitter<Self::Out>) -> Result<()>;

    /// The operator's event time advanced. The default forwards the watermark.
    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<Self::Out>) -> Result<()> {
        out.emit_watermark(watermark)
    }

    /// Processing time reached `now`: fire due processing-time timers.
    fn on_processing_time(&mut self, _now: i64, _out: &mut Emitter<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// The earliest processing-time timer of this operator.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// The input has ended. Called once, before the end is forwarded downstream.
    fn end_input(&mut self, _out: &mut Emitter<Self::Out>) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Restores the state `snapshot_state` wrote for the checkpoint the job restarts from
    /// (`None`: a fresh start, or no state was written). Called once, before `open`.
    fn initialize_state(&mut self, _restored: Option<&RestoredState>) -> Result<()> {
        Ok(())
    }

    /// The operator's state for checkpoint `checkpoint_id`, as bytes (`None`: no state).
    /// Called when the checkpoint's barrier reaches the operator, after every record before it.
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// The operator's state for the checkpoint of `barrier`, split into a synchronous part
    /// (this call, on the task thread) and an optional deferred part
    /// ([`SnapshotBytes::Deferred`]) that the task's snapshot thread runs while the task goes
    /// on; the checkpoint is acknowledged once it is done, and declined if it fails. The
    /// deferred part must not see changes made after this call. The default takes the whole
    /// snapshot now, with [`snapshot_state`](Self::snapshot_state).
    fn snapshot_state_async(&mut self, barrier: &CheckpointBarrier) -> Result<Option<SnapshotBytes>> {
        Ok(self.snapshot_state(barrier)?.map(SnapshotBytes::Ready))
    }

    /// Checkpoint `checkpoint_id` is complete and stored.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// An operator with two inputs of different types (`connect`, joins).
pub trait TwoInputOperator: Send + 'static {
    type In1: Data;
    type In2: Data;
    type Out: Data;

    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }
    fn process_batch1(&mut self, batch: Batch<Self::In1>, out: &mut Emitter<Self::Out>) -> Result<()>;
    fn process_batch2(&mut self, batch: Batch<Self::In2>, out: &mut Emitter<Self::Out>) -> Result<()>;
    /// The combined event time (minimum of both inputs) advanced.
    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<Self::Out>) -> Result<()> {
        out.emit_watermark(watermark)
    }
    /// Processing time reached `now`: fire due processing-time timers.
    fn on_processing_time(&mut self, _now: i64, _out: &mut Emitter<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// The earliest processing-time timer of this operator.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// Both inputs have ended.
    fn end_input(&mut self, _out: &mut Emitter<Self::Out>) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Restores the state `snapshot_state` wrote for the checkpoint the job restarts from
    /// (`None`: a fresh start, or no state was written). Called once, before `open`.
    fn initialize_state(&mut self, _restored: Option<&RestoredState>) -> Result<()> {
        Ok(())
    }

    /// The operator's state for checkpoint `checkpoint_id`, as bytes (`None`: no state).
    /// Called when the checkpoint's barrier reaches the operator, after every record before it.
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// The operator's state for the checkpoint of `barrier`, split into a synchronous part
    /// (this call, on the task thread) and an optional deferred part
    /// ([`SnapshotBytes::Deferred`]) that the task's snapshot thread runs while the task goes
    /// on; the checkpoint is acknowledged once it is done, and declined if it fails. The
    /// deferred part must not see changes made after this call. The default takes the whole
    /// snapshot now, with [`snapshot_state`](Self::snapshot_state).
    fn snapshot_state_async(&mut self, barrier: &CheckpointBarrier) -> Result<Option<SnapshotBytes>> {
        Ok(self.snapshot_state(barrier)?.map(SnapshotBytes::Ready))
    }

    /// Checkpoint `checkpoint_id` is complete and stored.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// A one-input operator placed in a chain: the `Output` of whatever precedes it.
pub struct ChainedOperator<Op: OneInputOperator> {
    op: Op,
    out: Emitter<Op::Out>,
    ctx: OperatorContext,
    ended: bool,
    /// The operator's stable id, under which its state is checkpointed.
    id: Arc<str>,
    /// Restored from a checkpoint taken after this subtask had finished: its end-of-input
    /// work is done and must not be repeated.
    finished_on_restore: bool,
}

impl<Op: OneInputOperator> ChainedOperator<Op> {
    /// Opens the operator and returns it ready to receive elements.
    pub fn open(op: Op, out: Emitter<Op::Out>, ctx: OperatorContext) -> Result<Self> {
        let id = ctx.operator_name.clone();
        Self::open_with_state(op, out, ctx, OperatorInit::fresh(id))
    }

    /// Restores the operator's state from `init`, then opens it.
    pub fn open_with_state(
        mut op: Op,
        mut out: Emitter<Op::Out>,
        ctx: OperatorContext,
        init: OperatorInit,
    ) -> Result<Self> {
        ctx.guard(|| {
            op.initialize_state(init.restored.as_ref())?;
            op.open(&ctx)
        })?;
        out.set_metrics(ctx.metrics.clone());
        let (id, finished_on_restore) = (init.operator_id, init.finished);
        Ok(ChainedOperator { op, out, ctx, ended: false, id, finished_on_restore })
    }
}

impl<Op: OneInputOperator> Output<Op::In> for ChainedOperator<Op> {
    #[inline]
    fn emit_batch(&mut self, batch: Batch<Op::In>) -> Result<()> {
        crate::metrics::count(&self.ctx.metrics.records_in, batch.len());
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            op.process_batch(batch, out)?;
            out.flush_buffer()
        })
    }

    fn emit_watermark(&mut self, watermark: i64) -> Result<()> {
        crate::metrics::set_watermark(&self.ctx.metrics.input_watermark, watermark);
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| op.process_watermark(watermark, out))
    }

    fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.out.emit_idle(idle)
    }

    fn end_input(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        let (op, out, finished) = (&mut self.op, &mut self.out, self.finished_on_restore);
        self.ctx.guard(|| {
            if !finished {
                op.end_input(out)?;
            }
            op.close()?;
            out.end_input()
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }

    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        let (op, out, id, name) = (&mut self.op, &mut self.out, &self.id, &self.ctx.operator_name);
        self.ctx.guard(|| {
            out.flush_buffer()?;
            let state = op.snapshot_state_async(barrier)?;
            snapshot.push_part(id, name, state);
            out.emit_barrier(barrier, snapshot)
        })
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            op.notify_checkpoint_complete(checkpoint_id)?;
            out.notify_checkpoint_complete(checkpoint_id)
        })
    }

    fn on_processing_time(&mut self, now: i64) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            if op.next_processing_time().is_some_and(|t| t <= now) {
                op.on_processing_time(now, out)?;
            }
            out.on_processing_time(now)
        })
    }

    fn next_processing_time(&self) -> Option<i64> {
        crate::time::earliest(self.op.next_processing_time(), self.out.next_processing_time())
    }
}

/// A two-input operator at the head of its task, driven by a two-input task.
pub struct TwoInputHead<Op: TwoInputOperator> {
    op: Op,
    out: Emitter<Op::Out>,
    pub(crate) ctx: OperatorContext,
    id: Arc<str>,
    finished_on_restore: bool,
}

impl<Op: TwoInputOperator> TwoInputHead<Op> {
    pub fn open(op: Op, out: Emitter<Op::Out>, ctx: OperatorContext) -> Result<Self> {
        let id = ctx.operator_name.clone();
        Self::open_with_state(op, out, ctx, OperatorInit::fresh(id))
    }

    /// Restores the operator's state from `init`, then opens it.
    pub fn open_with_state(
        mut op: Op,
        mut out: Emitter<Op::Out>,
        ctx: OperatorContext,
        init: OperatorInit,
    ) -> Result<Self> {
        ctx.guard(|| {
            op.initialize_state(init.restored.as_ref())?;
            op.open(&ctx)
        })?;
        out.set_metrics(ctx.metrics.clone());
        let (id, finished_on_restore) = (init.operator_id, init.finished);
        Ok(TwoInputHead { op, out, ctx, id, finished_on_restore })
    }

    pub(crate) fn emit_barrier(
        &mut self,
        barrier: &CheckpointBarrier,
        snapshot: &mut ChainSnapshot,
    ) -> Result<()> {
        let (op, out, id, name) = (&mut self.op, &mut self.out, &self.id, &self.ctx.operator_name);
        self.ctx.guard(|| {
            out.flush_buffer()?;
            let state = op.snapshot_state_async(barrier)?;
            snapshot.push_part(id, name, state);
            out.emit_barrier(barrier, snapshot)
        })
    }

    pub(crate) fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            op.notify_checkpoint_complete(checkpoint_id)?;
            out.notify_checkpoint_complete(checkpoint_id)
        })
    }

    pub(crate) fn batch1(&mut self, b: Batch<Op::In1>) -> Result<()> {
        crate::metrics::count(&self.ctx.metrics.records_in, b.len());
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            op.process_batch1(b, out)?;
            out.flush_buffer()
        })
    }

    pub(crate) fn batch2(&mut self, b: Batch<Op::In2>) -> Result<()> {
        crate::metrics::count(&self.ctx.metrics.records_in, b.len());
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            op.process_batch2(b, out)?;
            out.flush_buffer()
        })
    }

    pub(crate) fn watermark(&mut self, w: i64) -> Result<()> {
        crate::metrics::set_watermark(&self.ctx.metrics.input_watermark, w);
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| op.process_watermark(w, out))
    }

    pub(crate) fn idle(&mut self, idle: bool) -> Result<()> {
        self.out.emit_idle(idle)
    }

    pub(crate) fn end_input(&mut self) -> Result<()> {
        let (op, out, finished) = (&mut self.op, &mut self.out, self.finished_on_restore);
        self.ctx.guard(|| {
            if !finished {
                op.end_input(out)?;
            }
            op.close()?;
            out.end_input()
        })
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }

    pub(crate) fn on_processing_time(&mut self, now: i64) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        self.ctx.guard(|| {
            if op.next_processing_time().is_some_and(|t| t <= now) {
                op.on_processing_time(now, out)?;
            }
            out.on_processing_time(now)
        })
    }

    pub(crate) fn next_processing_time(&self) -> Option<i64> {
        crate::time::earliest(self.op.next_processing_time(), self.out.next_processing_time())
    }
}
