//! Testing one operator at a time (in the spirit of Flink's `OneInputStreamOperatorTestHarness`).
//!
//! [`OneInputHarness`] builds the last operator of a pipeline fragment, with a manual clock,
//! and lets a test push records, watermarks and processing time into it and read what it
//! emitted, in order, including watermarks and side outputs.
//!
//! ```
//! use eddy::prelude::*;
//! use eddy::testing::{OneInputHarness, Emitted};
//!
//! let mut h = OneInputHarness::build(|s: DataStream<(String, i64)>| {
//!     s.key_by(|t: &(String, i64)| t.0.clone()).sum(|t: &mut (String, i64)| &mut t.1)
//! })
//! .unwrap();
//! h.process_element(("a".to_string(), 2), 10).unwrap();
//! h.process_element(("a".to_string(), 3), 11).unwrap();
//! h.process_watermark(20).unwrap();
//! assert_eq!(
//!     h.take_output(),
//!     vec![
//!         Emitted::Record(("a".to_string(), 2), Some(10)),
//!         Emitted::Record(("a".to_string(), 5), Some(11)),
//!         Emitted::Watermark(20),
//!     ]
//! );
//! ```

use std::sync::{Arc, Mutex};

use eddy_core::config::RuntimeMode;
use eddy_core::{Batch, Data, EddyError, Result, NO_TIMESTAMP};
use eddy_runtime::graph::{downcast_output, upcast_output, NodeKind, SideSlot};
use eddy_runtime::time::{ClockRef, ManualClock};
use eddy_runtime::{OperatorContext, Output};

use crate::datastream::DataStream;
use crate::env::StreamExecutionEnvironment;
use crate::functions::OutputTag;

/// What the operator under test emitted, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Emitted<T> {
    /// A record and its timestamp (`None`: no timestamp).
    Record(T, Option<i64>),
    Watermark(i64),
    Idle(bool),
    End,
}

struct Recorder<T>(Arc<Mutex<Vec<Emitted<T>>>>);

impl<T: Data> Output<T> for Recorder<T> {
    fn emit_batch(&mut self, batch: Batch<T>) -> Result<()> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (r, ts) in batch.into_iter_with_timestamps() {
            v.push(Emitted::Record(r, (ts != NO_TIMESTAMP).then_some(ts)));
        }
        Ok(())
    }
    fn emit_watermark(&mut self, w: i64) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(Emitted::Watermark(w));
        Ok(())
    }
    fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(Emitted::Idle(idle));
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(Emitted::End);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

type SideRecords = eddy_runtime::graph::AnyRecords;

/// Drives one one-input operator by hand.
pub struct OneInputHarness<I, O> {
    operator: Box<dyn Output<I>>,
    output: Arc<Mutex<Vec<Emitted<O>>>>,
    sides: Vec<(String, SideRecords)>,
    clock: Arc<ManualClock>,
}

impl<I: Data + Sync, O: Data> OneInputHarness<I, O> {
    /// The last operator `pipeline` adds, at parallelism 1, in STREAMING mode, with processing
    /// time starting at 0.
    pub fn build(pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>) -> Result<Self> {
        Self::build_with(RuntimeMode::Streaming, pipeline)
    }

    /// Like [`build`](Self::build), in the given runtime mode.
    pub fn build_with(
        mode: RuntimeMode,
        pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>,
    ) -> Result<Self> {
        Self::build_inner(mode, pipeline, None, None)
    }

    /// Like [`build`](Self::build), with `config` (e.g. another `state.backend`).
    pub fn build_configured(
        config: &eddy_core::Configuration,
        pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>,
    ) -> Result<Self> {
        Self::build_inner(RuntimeMode::Streaming, pipeline, None, Some(config))
    }

    /// Like [`build`](Self::build), with the operator restored from `state`, what
    /// [`snapshot`](Self::snapshot) returned (as after a restart from a checkpoint).
    pub fn build_restored(
        pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>,
        state: Option<Vec<u8>>,
    ) -> Result<Self> {
        Self::build_inner(RuntimeMode::Streaming, pipeline, Some(state), None)
    }

    /// [`build_restored`](Self::build_restored) with `config` (e.g. another `state.backend`).
    pub fn build_restored_configured(
        config: &eddy_core::Configuration,
        pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>,
        state: Option<Vec<u8>>,
    ) -> Result<Self> {
        Self::build_inner(RuntimeMode::Streaming, pipeline, Some(state), Some(config))
    }

    fn build_inner(
        mode: RuntimeMode,
        pipeline: impl FnOnce(DataStream<I>) -> DataStream<O>,
        restored: Option<Option<Vec<u8>>>,
        config: Option<&eddy_core::Configuration>,
    ) -> Result<Self> {
        let env = match config {
            Some(c) => StreamExecutionEnvironment::with_configuration(c.clone()),
            None => StreamExecutionEnvironment::local(),
        }
        .with_parallelism(1);
        let result = pipeline(env.from_collection(Vec::<I>::new()));
        let inner = env.inner.borrow();
        let node_id =
            result.ports.last().map(|p| p.node).ok_or_else(|| EddyError::InvalidJob("no operator".into()))?;
        let node = &inner.graph.nodes[node_id];
        let NodeKind::OneInput(factory) = &node.kind else {
            return Err(EddyError::InvalidJob(format!("'{}' is not a one-input operator", node.name)));
        };
        let clock = Arc::new(ManualClock::new(0));
        let ctx = OperatorContext {
            job_name: "harness".into(),
            operator_name: node.name.clone(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            attempt: 0,
            runtime_mode: mode,
            batch_size: 1024,
            clock: ClockRef(clock.clone()),
            auto_watermark_interval: 200,
            checkpointing: false,
            state_backend: Arc::new(eddy_core::config::StateBackendConfig::from_configuration(
                &inner.config,
            )?),
            metrics: Default::default(),
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        let main = upcast_output::<O>(Box::new(Recorder(output.clone())));
        let mut sides = Vec::new();
        let mut slots: Vec<(String, SideSlot)> = Vec::new();
        for (tag, ty) in &node.side_outputs {
            let records: SideRecords = Arc::default();
            slots.push((tag.clone(), ty.side_slot(ty.collecting_output(records.clone()))?));
            sides.push((tag.clone(), records));
        }
        let operator = match restored {
            None => factory.create(&ctx, main, slots)?,
            Some(state) => {
                let mut init = eddy_runtime::checkpoint::OperatorInit::fresh(ctx.operator_name.as_str());
                let states = state.map(|b| vec![(0, b)]).unwrap_or_default();
                let name = ctx.operator_name.as_str();
                let restored =
                    eddy_runtime::checkpoint::RestoredState::new(name, states, 1, 0, 1, ctx.max_parallelism);
                init.restored = Some(restored);
                factory.create_with_state(&ctx, main, slots, init)?
            }
        };
        let operator = downcast_output::<I>(operator)?;
        Ok(OneInputHarness { operator, output, sides, clock })
    }

    /// The operator's state for checkpoint `checkpoint_id`, as its checkpoint barrier would
    /// take it (`None`: the operator keeps no state).
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>> {
        use eddy_core::element::{CheckpointBarrier, CheckpointType};
        let barrier = CheckpointBarrier { id: checkpoint_id, timestamp: 0, kind: CheckpointType::Checkpoint };
        let mut snapshot = eddy_runtime::checkpoint::ChainSnapshot::new(checkpoint_id);
        self.operator.emit_barrier(&barrier, &mut snapshot)?;
        // The asynchronous part, if any, runs here.
        Ok(snapshot.complete()?.operators.into_iter().next().and_then(|s| s.state))
    }

    /// Pushes one record with an event timestamp.
    pub fn process_element(&mut self, value: I, timestamp: i64) -> Result<()> {
        let mut b = Batch::new();
        b.push_with_timestamp(value, timestamp);
        self.operator.emit_batch(b)
    }

    /// Pushes one record without a timestamp.
    pub fn process_element_without_timestamp(&mut self, value: I) -> Result<()> {
        self.operator.emit_batch(Batch::from_values(vec![value]))
    }

    pub fn process_watermark(&mut self, watermark: i64) -> Result<()> {
        self.operator.emit_watermark(watermark)
    }

    /// Moves processing time to `time` and fires what became due.
    pub fn set_processing_time(&mut self, time: i64) -> Result<()> {
        self.clock.set(time);
        if self.operator.next_processing_time().is_some_and(|t| t <= time) {
            self.operator.on_processing_time(time)?;
        }
        Ok(())
    }

    /// Ends the input (as a bounded source does after its final watermark).
    pub fn end_input(&mut self) -> Result<()> {
        self.operator.end_input()
    }

    /// Everything emitted since the last call.
    pub fn take_output(&mut self) -> Vec<Emitted<O>> {
        std::mem::take(&mut *self.output.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Only the records emitted since the last call, with their timestamps.
    pub fn take_records(&mut self) -> Vec<(O, Option<i64>)> {
        self.take_output()
            .into_iter()
            .filter_map(|e| match e {
                Emitted::Record(r, ts) => Some((r, ts)),
                _ => None,
            })
            .collect()
    }

    /// The records written to side output `tag` since the last call.
    pub fn take_side_output<X: Data>(&mut self, tag: &OutputTag<X>) -> Vec<(X, Option<i64>)> {
        let Some((_, records)) = self.sides.iter().find(|(t, _)| t == tag.id()) else { return Vec::new() };
        std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .filter_map(|(r, ts)| r.downcast::<X>().ok().map(|r| (*r, (ts != NO_TIMESTAMP).then_some(ts))))
            .collect()
    }
}
