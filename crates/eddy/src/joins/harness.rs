//! Drives one two-input operator by hand in tests (Flink's `TwoInputStreamOperatorTestHarness`):
//! records and watermarks per input, the operator's event time being the minimum of both.

use std::sync::{Arc, Mutex};

use eddy_core::config::RuntimeMode;
use eddy_core::element::{CheckpointBarrier, CheckpointType};
use eddy_core::{Batch, Data, Result, NO_TIMESTAMP};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::time::{ClockRef, ManualClock};
use eddy_runtime::{Emitter, OperatorContext, Output, TwoInputOperator};

use crate::datastream::DataStream;
use crate::env::StreamExecutionEnvironment;
use crate::functions::OutputTag;
use crate::testing::Emitted;
use crate::watermark::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};

type Log<T> = Arc<Mutex<Vec<Emitted<T>>>>;

struct Recorder<T>(Log<T>);

impl<T> Recorder<T> {
    fn push(&self, e: Emitted<T>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
}

impl<T: Data> Output<T> for Recorder<T> {
    fn emit_batch(&mut self, batch: Batch<T>) -> Result<()> {
        for (r, ts) in batch.into_iter_with_timestamps() {
            self.push(Emitted::Record(r, (ts != NO_TIMESTAMP).then_some(ts)));
        }
        Ok(())
    }
    fn emit_watermark(&mut self, w: i64) -> Result<()> {
        self.push(Emitted::Watermark(w));
        Ok(())
    }
    fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.push(Emitted::Idle(idle));
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        self.push(Emitted::End);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

fn take<T>(log: &Log<T>) -> Vec<(T, Option<i64>)> {
    std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .filter_map(|e| match e {
            Emitted::Record(r, ts) => Some((r, ts)),
            _ => None,
        })
        .collect()
}

/// A side output's records, as the harness recorded them.
pub(crate) struct SideLog<X>(Log<X>);

impl<X> SideLog<X> {
    pub fn take(&self) -> Vec<(X, Option<i64>)> {
        take(&self.0)
    }
}

pub(crate) struct TwoInputHarness<Op: TwoInputOperator> {
    pub op: Op,
    out: Emitter<Op::Out>,
    output: Log<Op::Out>,
    watermarks: [i64; 2],
    combined: i64,
}

impl<Op: TwoInputOperator> TwoInputHarness<Op> {
    pub fn open(op: Op) -> Result<Self> {
        Self::open_subtask(op, 0, 1, None)
    }

    /// Opens subtask `index` of `parallelism` (max parallelism 128), restored from `restored`.
    pub fn open_subtask(
        mut op: Op,
        index: usize,
        parallelism: usize,
        restored: Option<&RestoredState>,
    ) -> Result<Self> {
        op.initialize_state(restored)?;
        let ctx = OperatorContext {
            job_name: "harness".into(),
            operator_name: "operator under test".into(),
            subtask_index: index,
            parallelism,
            max_parallelism: 128,
            attempt: 0,
            runtime_mode: RuntimeMode::Streaming,
            batch_size: 1024,
            clock: ClockRef(Arc::new(ManualClock::new(0))),
            auto_watermark_interval: 200,
            checkpointing: false,
            state_backend: Default::default(),
            metrics: Default::default(),
        };
        op.open(&ctx)?;
        let output: Log<Op::Out> = Arc::default();
        let out = Emitter::new(Box::new(Recorder(output.clone())), 1024);
        Ok(TwoInputHarness { op, out, output, watermarks: [i64::MIN; 2], combined: i64::MIN })
    }

    /// Records what the operator writes to side output `tag`.
    pub fn side_output<X: Data>(&mut self, tag: &OutputTag<X>) -> SideLog<X> {
        let log: Log<X> = Arc::default();
        self.out.add_side_output::<X>(tag.id(), Box::new(Recorder(log.clone())));
        SideLog(log)
    }

    fn batch<T>(value: T, ts: Option<i64>) -> Batch<T> {
        let mut b = Batch::new();
        b.push_with_timestamp(value, ts.unwrap_or(NO_TIMESTAMP));
        b
    }

    pub fn element1(&mut self, value: Op::In1, ts: Option<i64>) -> Result<()> {
        self.op.process_batch1(Self::batch(value, ts), &mut self.out)?;
        self.out.flush_buffer()
    }

    pub fn element2(&mut self, value: Op::In2, ts: Option<i64>) -> Result<()> {
        self.op.process_batch2(Self::batch(value, ts), &mut self.out)?;
        self.out.flush_buffer()
    }

    /// A watermark on input `input` (0 or 1); the operator sees the minimum of both inputs.
    pub fn watermark(&mut self, input: usize, w: i64) -> Result<()> {
        self.watermarks[input] = self.watermarks[input].max(w);
        let min = self.watermarks[0].min(self.watermarks[1]);
        if min > self.combined {
            self.combined = min;
            self.op.process_watermark(min, &mut self.out)?;
        }
        Ok(())
    }

    /// The same watermark on both inputs.
    pub fn watermark_both(&mut self, w: i64) -> Result<()> {
        self.watermark(0, w)?;
        self.watermark(1, w)
    }

    /// The records emitted since the last call, with their timestamps.
    pub fn take_records(&mut self) -> Vec<(Op::Out, Option<i64>)> {
        take(&self.output)
    }

    /// What the operator writes at a checkpoint barrier.
    pub fn snapshot(&mut self) -> Result<Option<Vec<u8>>> {
        let barrier = CheckpointBarrier { id: 1, timestamp: 0, kind: CheckpointType::Checkpoint };
        self.op.snapshot_state(&barrier)
    }
}

/// Watermark `ts - 1` right after every record, so that event time advances (and state is
/// cleaned, windows fire) while a job runs, not only at its end.
pub(crate) struct AfterEveryRecord;

impl<T> WatermarkGenerator<T> for AfterEveryRecord {
    fn on_event(&mut self, _: &T, ts: i64, out: &mut WatermarkOutput) {
        out.emit_watermark(ts - 1);
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// A stream of `records` with event timestamps `ts(record)` and [`AfterEveryRecord`]
/// watermarks. With non-decreasing timestamps, none of its records is ever late downstream.
pub(crate) fn timed<T: Data + Sync>(
    env: &StreamExecutionEnvironment,
    records: Vec<T>,
    ts: fn(&T) -> i64,
) -> DataStream<T> {
    env.from_collection(records).assign_timestamps_and_watermarks(
        WatermarkStrategy::for_generator(|| AfterEveryRecord).with_timestamp_assigner(move |e: &T, _| ts(e)),
    )
}
