//! Where an operator's results go.
//!
//! An [`Output`] accepts stream elements: it is the next operator of the chain, a fan-out to
//! several consumers, or a partition writer that feeds channels to other tasks. Operators never
//! see an `Output` directly; they write to an [`Emitter`], which buffers records into a batch
//! and hands full batches on, so the per-record path is a `Vec::push`.

use std::any::Any;

use eddy_core::{Batch, CheckpointBarrier, Data, Result};

use crate::checkpoint::ChainSnapshot;

/// A consumer of stream elements, called once per batch.
pub trait Output<T>: Send {
    fn emit_batch(&mut self, batch: Batch<T>) -> Result<()>;
    fn emit_watermark(&mut self, watermark: i64) -> Result<()>;
    /// The producer became idle (`true`) or active again (`false`).
    fn emit_idle(&mut self, idle: bool) -> Result<()>;
    /// The producer has finished; no element follows.
    fn end_input(&mut self) -> Result<()>;
    /// Pushes buffered records on towards the network (the buffer timeout expired).
    fn flush(&mut self) -> Result<()>;

    /// A checkpoint barrier: the operators from here on snapshot their state into
    /// `snapshot`, in chain order, and the barrier goes on to every output channel after the
    /// records before it. Outputs without operators or channels (collectors) do nothing.
    fn emit_barrier(&mut self, _barrier: &CheckpointBarrier, _snapshot: &mut ChainSnapshot) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` is complete: tells the operators from here on.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Processing time reached `now` (ms since the epoch): operators fire due timers.
    fn on_processing_time(&mut self, _now: i64) -> Result<()> {
        Ok(())
    }

    /// The earliest processing-time timer of this output and everything after it in the task.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }
}

/// Drops everything: the output of an operator that nobody consumes.
pub struct Discard;

impl<T: Send> Output<T> for Discard {
    fn emit_batch(&mut self, _: Batch<T>) -> Result<()> {
        Ok(())
    }
    fn emit_watermark(&mut self, _: i64) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self, _: bool) -> Result<()> {
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Sends every element to several consumers; the last one gets the original, the others clones.
pub struct FanOut<T> {
    outputs: Vec<Box<dyn Output<T>>>,
}

impl<T: Data> FanOut<T> {
    /// One output for a list of consumers: the consumer itself when there is one.
    pub fn combine(mut outputs: Vec<Box<dyn Output<T>>>) -> Box<dyn Output<T>> {
        match outputs.len() {
            0 => Box::new(Discard),
            1 => outputs.pop().expect("one output"),
            _ => Box::new(FanOut { outputs }),
        }
    }
}

impl<T: Data> Output<T> for FanOut<T> {
    fn emit_batch(&mut self, batch: Batch<T>) -> Result<()> {
        let (last, rest) = self.outputs.split_last_mut().expect("fan-out has outputs");
        for o in rest {
            o.emit_batch(batch.clone())?;
        }
        last.emit_batch(batch)
    }
    fn emit_watermark(&mut self, watermark: i64) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.emit_watermark(watermark))
    }
    fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.emit_idle(idle))
    }
    fn end_input(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.end_input())
    }
    fn flush(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.flush())
    }
    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.emit_barrier(barrier, snapshot))
    }
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.notify_checkpoint_complete(checkpoint_id))
    }
    fn on_processing_time(&mut self, now: i64) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.on_processing_time(now))
    }
    fn next_processing_time(&self) -> Option<i64> {
        self.outputs.iter().map(|o| o.next_processing_time()).fold(None, crate::time::earliest)
    }
}

/// A named side output of an operator (Flink's `OutputTag`), typed by what it carries.
pub(crate) fn side_output<X: Data>(out: Box<dyn Output<X>>) -> Box<dyn ErasedSide> {
    Box::new(SideOutput { buffer: Batch::new(), out })
}

pub(crate) struct SideOutput<X> {
    buffer: Batch<X>,
    out: Box<dyn Output<X>>,
}

/// The side outputs of an operator, by tag.
pub struct SideOutputs {
    slots: Vec<(String, Box<dyn ErasedSide>)>,
    capacity: usize,
}

impl SideOutputs {
    /// Emits a record to side output `tag`. Records for a tag that nobody consumes are dropped,
    /// as in Flink: a side output without consumer is not part of the job.
    pub fn emit<X: Data>(&mut self, tag: &str, value: X, ts: i64) -> Result<()> {
        let Some((_, slot)) = self.slots.iter_mut().find(|(t, _)| t == tag) else {
            return Ok(());
        };
        let side = slot.as_any_mut().downcast_mut::<SideOutput<X>>().ok_or_else(|| {
            eddy_core::EddyError::InvalidJob(format!(
                "side output '{tag}' is used with two different record types"
            ))
        })?;
        side.buffer.push_with_timestamp(value, ts);
        if side.buffer.len() >= self.capacity {
            let b = side.buffer.take();
            side.out.emit_batch(b)?;
        }
        Ok(())
    }

    fn flush_buffers(&mut self) -> Result<()> {
        self.slots.iter_mut().try_for_each(|(_, s)| s.flush_buffer())
    }

    fn control(&mut self, c: impl Fn() -> Control) -> Result<()> {
        self.slots.iter_mut().try_for_each(|(_, s)| s.control(c()))
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.slots.iter().map(|(_, s)| s.next_processing_time()).fold(None, crate::time::earliest)
    }

    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        self.slots.iter_mut().try_for_each(|(_, s)| s.emit_barrier(barrier, snapshot))
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.slots.iter_mut().try_for_each(|(_, s)| s.notify_checkpoint_complete(checkpoint_id))
    }
}

/// The main output of an operator: a batch buffer in front of the next [`Output`].
pub struct MainOutput<T> {
    buffer: Batch<T>,
    capacity: usize,
    /// The timestamp given to records collected without one of their own (Flink: the output
    /// record keeps the timestamp of the input record that produced it).
    current_timestamp: i64,
    out: Box<dyn Output<T>>,
    /// The operator's metrics: `numRecordsOut` and the output watermark.
    metrics: crate::metrics::MetricGroup,
}

impl<T: Data> MainOutput<T> {
    /// Sets the timestamp that [`collect`](Self::collect) attaches.
    #[inline]
    pub fn set_timestamp(&mut self, ts: i64) {
        self.current_timestamp = ts;
    }

    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.current_timestamp
    }

    /// Emits a record with the current timestamp.
    #[inline]
    pub fn collect(&mut self, value: T) -> Result<()> {
        self.buffer.push_with_timestamp(value, self.current_timestamp);
        if self.buffer.len() >= self.capacity {
            self.flush_main()?;
        }
        Ok(())
    }

    /// Emits a record with an explicit timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, ts: i64) -> Result<()> {
        self.buffer.push_with_timestamp(value, ts);
        if self.buffer.len() >= self.capacity {
            self.flush_main()?;
        }
        Ok(())
    }

    /// Emits a whole batch after anything collected before it.
    pub fn emit_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.flush_main()?;
        if !batch.is_empty() {
            crate::metrics::count(&self.metrics.records_out, batch.len());
            self.out.emit_batch(batch)?;
        }
        Ok(())
    }

    fn flush_main(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let b = std::mem::replace(&mut self.buffer, Batch::with_capacity(self.capacity.min(4096)));
            crate::metrics::count(&self.metrics.records_out, b.len());
            self.out.emit_batch(b)?;
        }
        Ok(())
    }
}

/// What an operator writes to: the main output plus its side outputs.
///
/// Dereferences to its [`MainOutput`], so `emitter.collect(v)` emits on the main output.
pub struct Emitter<T> {
    main: MainOutput<T>,
    side: SideOutputs,
}

impl<T> std::ops::Deref for Emitter<T> {
    type Target = MainOutput<T>;
    fn deref(&self) -> &MainOutput<T> {
        &self.main
    }
}

impl<T> std::ops::DerefMut for Emitter<T> {
    fn deref_mut(&mut self) -> &mut MainOutput<T> {
        &mut self.main
    }
}

impl<T: Data> Emitter<T> {
    pub fn new(out: Box<dyn Output<T>>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Emitter {
            main: MainOutput {
                buffer: Batch::with_capacity(capacity.min(4096)),
                capacity,
                current_timestamp: eddy_core::NO_TIMESTAMP,
                out,
                metrics: crate::metrics::MetricGroup::default(),
            },
            side: SideOutputs { slots: Vec::new(), capacity },
        }
    }

    /// Counts what the operator emits into `metrics` (the operator's group).
    pub fn set_metrics(&mut self, metrics: crate::metrics::MetricGroup) {
        self.main.metrics = metrics;
    }

    /// Registers the consumer of side output `tag` (carrying `X`).
    pub fn add_side_output<X: Data>(&mut self, tag: impl Into<String>, out: Box<dyn Output<X>>) {
        self.side.slots.push((tag.into(), side_output(out)));
    }

    pub(crate) fn add_side_slot(&mut self, tag: String, side: Box<dyn ErasedSide>) {
        self.side.slots.push((tag, side));
    }

    /// The main output and the side outputs, borrowed apart.
    pub fn split(&mut self) -> (&mut MainOutput<T>, &mut SideOutputs) {
        (&mut self.main, &mut self.side)
    }

    /// Emits a record to side output `tag`.
    pub fn side_output<X: Data>(&mut self, tag: &str, value: X, ts: i64) -> Result<()> {
        self.side.emit(tag, value, ts)
    }

    /// Hands buffered records on, main output and side outputs.
    pub fn flush_buffer(&mut self) -> Result<()> {
        self.main.flush_main()?;
        self.side.flush_buffers()
    }

    pub fn emit_watermark(&mut self, watermark: i64) -> Result<()> {
        crate::metrics::set_watermark(&self.main.metrics.output_watermark, watermark);
        self.main.flush_main()?;
        self.side.control(|| Control::Watermark(watermark))?;
        self.main.out.emit_watermark(watermark)
    }

    pub fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.main.flush_main()?;
        self.side.control(|| Control::Idle(idle))?;
        self.main.out.emit_idle(idle)
    }

    pub fn end_input(&mut self) -> Result<()> {
        self.main.flush_main()?;
        self.side.control(|| Control::End)?;
        self.main.out.end_input()
    }

    /// Flushes towards the network: the buffer timeout expired.
    pub fn flush(&mut self) -> Result<()> {
        self.main.flush_main()?;
        self.side.control(|| Control::Flush)?;
        self.main.out.flush()
    }

    /// Passes processing time on to the operators after this one.
    pub fn on_processing_time(&mut self, now: i64) -> Result<()> {
        self.main.flush_main()?;
        self.side.control(|| Control::ProcessingTime(now))?;
        self.main.out.on_processing_time(now)
    }

    /// The earliest processing-time timer after this operator.
    pub fn next_processing_time(&self) -> Option<i64> {
        crate::time::earliest(self.main.out.next_processing_time(), self.side.next_processing_time())
    }

    /// Passes a checkpoint barrier on, after the records collected before it.
    pub fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        self.main.flush_main()?;
        self.side.emit_barrier(barrier, snapshot)?;
        self.main.out.emit_barrier(barrier, snapshot)
    }

    /// Tells the operators after this one that checkpoint `checkpoint_id` is complete.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.side.notify_checkpoint_complete(checkpoint_id)?;
        self.main.out.notify_checkpoint_complete(checkpoint_id)
    }
}

pub(crate) enum Control {
    ProcessingTime(i64),
    Watermark(i64),
    Idle(bool),
    End,
    Flush,
}

/// Side outputs are stored type-erased; this trait lets the emitter drive them without knowing
/// their record type.
pub(crate) trait ErasedSide: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush_buffer(&mut self) -> Result<()>;
    fn control(&mut self, c: Control) -> Result<()>;
    fn next_processing_time(&self) -> Option<i64>;
    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()>;
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
}

impl<X: Data> ErasedSide for SideOutput<X> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush_buffer(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let b = self.buffer.take();
            self.out.emit_batch(b)?;
        }
        Ok(())
    }
    fn control(&mut self, c: Control) -> Result<()> {
        self.flush_buffer()?;
        match c {
            Control::Watermark(w) => self.out.emit_watermark(w),
            Control::Idle(i) => self.out.emit_idle(i),
            Control::End => self.out.end_input(),
            Control::Flush => self.out.flush(),
            Control::ProcessingTime(now) => self.out.on_processing_time(now),
        }
    }
    fn next_processing_time(&self) -> Option<i64> {
        self.out.next_processing_time()
    }
    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        self.flush_buffer()?;
        self.out.emit_barrier(barrier, snapshot)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.out.notify_checkpoint_complete(checkpoint_id)
    }
}
