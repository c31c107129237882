//! Tasks: one subtask of one chain, run as one loop on its own thread.
//!
//! A task reads its input gate(s), passes watermarks through the valve and checkpoint barriers
//! through the aligner ([`crate::checkpoint::barrier`]), hands batches to the head of its
//! chain, and flushes partially filled output batches when the buffer timeout passes. It
//! checks the job's cancellation flag and its checkpoint control inbox between batches and
//! whenever it waits.
//!
//! Every subtask counts what passes through it in its [`TaskMetrics`], and a worker reports
//! each task's [`TaskState`] as it runs and ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::config::CheckpointingMode;
use eddy_core::{CheckpointBarrier, Data, Result, StreamElement};

use crate::channel::{check_cancelled, GateEvent, InputGate, JobSignals, CANCEL_CHECK};
use crate::checkpoint::barrier::{Alignment, BarrierAligner};
use crate::checkpoint::{ChainSnapshot, TaskCheckpointing, TaskControl};
use crate::operator::{TwoInputHead, TwoInputOperator};
use crate::output::Output;
use crate::time::ClockRef;
use crate::watermark::{ValveOutput, WatermarkValve};

/// What a task needs from the job while it runs.
pub struct TaskRuntime {
    pub signals: Arc<JobSignals>,
    /// The subtask's metrics.
    pub metrics: Arc<TaskMetrics>,
    /// `None`: flush only full batches and at the end (BATCH mode).
    pub buffer_timeout: Option<Duration>,
    pub clock: ClockRef,
    /// The task's end of the checkpoint protocol (disabled without checkpoints).
    pub checkpoints: TaskCheckpointing,
}

pub use crate::metrics::TaskMetrics;

/// The I/O counters of one job vertex, summed over its subtasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VertexMetrics {
    /// The vertex's index in the job graph.
    pub vertex: usize,
    /// The vertex's 32-hex-digit id.
    pub id: String,
    pub name: String,
    pub parallelism: usize,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl VertexMetrics {
    /// One entry per vertex of `jg`, all counters 0.
    pub fn zeroed(jg: &crate::jobgraph::JobGraph) -> Vec<VertexMetrics> {
        let vertex = |v: &crate::jobgraph::JobVertex| VertexMetrics {
            vertex: v.index,
            id: v.id.clone(),
            name: v.name.clone(),
            parallelism: v.parallelism,
            ..Default::default()
        };
        jg.vertices.iter().map(vertex).collect()
    }

    /// Adds one subtask's counters, as from [`TaskMetrics::snapshot`].
    pub fn add(&mut self, [records_in, records_out, bytes_in, bytes_out]: [u64; 4]) {
        self.records_in += records_in;
        self.records_out += records_out;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
    }
}

/// The states a worker reports for a task: Flink's `ExecutionState` from the moment the task
/// thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Finished,
    /// The task's own code or channel failed.
    Failed,
    /// The task stopped because its job was cancelled, or because a task it exchanges records
    /// with failed (the error then says so, and the root cause is that task's).
    Canceled,
}

impl TaskState {
    /// Flink's upper-case name (`RUNNING`, `FINISHED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::Finished => "FINISHED",
            TaskState::Failed => "FAILED",
            TaskState::Canceled => "CANCELED",
        }
    }
}

/// One subtask built and ready to run on its own thread: subtask `subtask` of job vertex
/// `vertex`, with the counters it fills and its end of the checkpoint protocol.
pub struct WorkerTask {
    pub vertex: usize,
    pub subtask: usize,
    pub task: Box<dyn Invokable>,
    pub metrics: Arc<TaskMetrics>,
    pub checkpoints: TaskCheckpointing,
}

/// Fires the chain's due processing-time timers; returns the next one still pending.
/// `fire(now)` fires them and returns the next timer after that.
pub(crate) fn fire_due_timers(
    next: Option<i64>,
    clock: &ClockRef,
    fire: impl FnOnce(i64) -> Result<Option<i64>>,
) -> Result<Option<i64>> {
    match next {
        Some(t) => {
            let now = clock.now_ms();
            if t <= now {
                fire(now)
            } else {
                Ok(Some(t))
            }
        }
        None => Ok(None),
    }
}

/// How long a task may wait for input: until the flush deadline or the next timer.
pub(crate) fn wait_deadline(flusher: &Flusher, next_timer: Option<i64>, clock: &ClockRef) -> Instant {
    let d = flusher.deadline(Instant::now());
    match next_timer {
        Some(t) => d.min(clock.instant_of(t)),
        None => d,
    }
}

/// Something a task thread runs.
pub trait Invokable: Send {
    fn invoke(self: Box<Self>, rt: &TaskRuntime) -> Result<()>;
    /// `Chain name (i/p)`.
    fn name(&self) -> String;
}

/// Decides when partially filled output batches are pushed out.
pub struct Flusher {
    timeout: Option<Duration>,
    next: Instant,
}

impl Flusher {
    pub fn new(timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        Flusher { timeout, next: timeout.map_or(now, |t| now + t) }
    }

    /// How long an idle task may wait for input.
    pub fn deadline(&self, now: Instant) -> Instant {
        match self.timeout {
            Some(_) => self.next.min(now + CANCEL_CHECK),
            None => now + CANCEL_CHECK,
        }
    }

    /// Calls `flush` when the buffer timeout has passed since the last flush.
    pub fn maybe_flush(&mut self, now: Instant, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        if let Some(t) = self.timeout {
            if now >= self.next {
                flush()?;
                self.next = now + t;
            }
        }
        Ok(())
    }
}

/// A task whose chain starts with a one-input operator.
pub struct OneInputTask<T: Data> {
    pub(crate) name: String,
    pub(crate) gate: InputGate<T>,
    pub(crate) head: Box<dyn Output<T>>,
    /// In-flight records of the unaligned checkpoint the task restores from, replayed first.
    pub(crate) in_flight: Option<Vec<(u8, Vec<u8>)>>,
}

impl<T: Data> OneInputTask<T> {
    pub fn new(name: String, gate: InputGate<T>, head: Box<dyn Output<T>>) -> Self {
        OneInputTask { name, gate, head, in_flight: None }
    }

    /// Replays `in_flight` (what [`TaskSnapshot::in_flight`] held) before reading the gate.
    pub fn with_in_flight(mut self, in_flight: Option<&[u8]>) -> Result<Self> {
        self.in_flight = in_flight.map(eddy_core::codec::decode_value).transpose()?;
        Ok(self)
    }
}

fn forward_valve<T>(out: &mut dyn Output<T>, v: Option<ValveOutput>, metrics: &TaskMetrics) -> Result<()> {
    match v {
        Some(ValveOutput::Watermark(w)) => {
            crate::metrics::set_watermark(&metrics.input_watermark, w);
            out.emit_watermark(w)
        }
        Some(ValveOutput::Idle(i)) => out.emit_idle(i),
        None => Ok(()),
    }
}

/// A task's barrier alignment over its input channels (both gates of a two-input task,
/// numbered one after the other), or nothing when the job does not checkpoint.
struct Checkpointing<'a> {
    rt: &'a TaskCheckpointing,
    aligner: Option<BarrierAligner>,
    /// The unaligned checkpoint whose snapshot is taken and whose in-flight data is recorded.
    unaligned: Option<UnalignedSnapshot>,
}

/// An unaligned checkpoint between its snapshot and its last barrier.
struct UnalignedSnapshot {
    /// Its deferred parts, if any, start when it is acknowledged.
    snapshot: ChainSnapshot,
    /// The records that arrived on channels whose barrier was missing, as
    /// `(input, encoded batch)` in arrival order.
    in_flight: Vec<(u8, Vec<u8>)>,
}

/// A snapshot to take after an alignment step.
enum SnapshotStep {
    /// Snapshot and acknowledge at once (aligned).
    Aligned(CheckpointBarrier),
    /// Snapshot now, acknowledge when the in-flight data is complete.
    Unaligned(CheckpointBarrier),
    /// The in-flight data of this unaligned checkpoint is complete: acknowledge.
    AcknowledgeUnaligned(u64),
}

impl SnapshotStep {
    /// The barrier of an aligned snapshot (savepoints are always aligned).
    fn aligned_barrier(&self) -> Option<CheckpointBarrier> {
        match self {
            SnapshotStep::Aligned(b) => Some(*b),
            _ => None,
        }
    }
}

/// Encodes a batch of in-flight records.
fn encode_in_flight<T: Data>(batch: &eddy_core::Batch<T>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    eddy_core::codec::encode_value(&(&batch.values, &batch.timestamps), &mut bytes)?;
    Ok(bytes)
}

/// The in-flight records of input `input` that a restored task replays first, in order.
pub(crate) fn decode_in_flight<T: Data>(
    in_flight: &[(u8, Vec<u8>)],
    input: u8,
) -> impl Iterator<Item = Result<eddy_core::Batch<T>>> + '_ {
    in_flight.iter().filter(move |(i, _)| *i == input).map(|(_, bytes)| {
        let (values, timestamps): (Vec<T>, Vec<i64>) = eddy_core::codec::decode_value(bytes)?;
        Ok(eddy_core::Batch { values, timestamps })
    })
}

/// What a gate waits for at most: the flush deadline, the next timer or the moment an
/// alignment turns unaligned.
fn task_deadline(
    flusher: &Flusher,
    next_timer: Option<i64>,
    clock: &ClockRef,
    checkpointing: &Checkpointing,
) -> Instant {
    let d = wait_deadline(flusher, next_timer, clock);
    match checkpointing.aligner.as_ref().and_then(BarrierAligner::alignment_deadline) {
        Some(a) => d.min(a),
        None => d,
    }
}

/// What a task does after an alignment step, on gates it owns.
trait Gates {
    fn block(&mut self, channel: usize);
    fn unblock_all(&mut self);
}

impl<T> Gates for InputGate<T> {
    fn block(&mut self, channel: usize) {
        InputGate::block(self, channel)
    }
    fn unblock_all(&mut self) {
        InputGate::unblock_all(self)
    }
}

impl<A, B> Gates for (&mut InputGate<A>, &mut InputGate<B>) {
    fn block(&mut self, channel: usize) {
        let n1 = self.0.num_channels();
        if channel < n1 {
            self.0.block(channel)
        } else {
            self.1.block(channel - n1)
        }
    }
    fn unblock_all(&mut self) {
        self.0.unblock_all();
        self.1.unblock_all();
    }
}

impl<'a> Checkpointing<'a> {
    fn new(rt: &'a TaskCheckpointing, channels: usize) -> Self {
        let aligner = rt.mode().map(|m: CheckpointingMode| {
            let aligner = BarrierAligner::new(channels, m);
            match rt.unaligned() {
                Some(timeout) => aligner.with_unaligned(timeout),
                None => aligner,
            }
        });
        Checkpointing { rt, aligner, unaligned: None }
    }

    /// Applies an alignment step to the gates; returns the snapshot to take, if any.
    fn apply(&mut self, gates: &mut impl Gates, step: Alignment) -> Option<SnapshotStep> {
        match step {
            Alignment::Continue => None,
            Alignment::Block(ch) => {
                gates.block(ch);
                None
            }
            Alignment::Complete(barrier) => {
                gates.unblock_all();
                Some(SnapshotStep::Aligned(barrier))
            }
            Alignment::Aborted { checkpoint_id, block } => {
                if self.unaligned.as_ref().is_some_and(|u| u.snapshot.checkpoint_id <= checkpoint_id) {
                    self.unaligned = None;
                }
                gates.unblock_all();
                if let Some(ch) = block {
                    gates.block(ch);
                }
                None
            }
            Alignment::SnapshotUnaligned(barrier) => {
                gates.unblock_all();
                Some(SnapshotStep::Unaligned(barrier))
            }
            Alignment::CompleteUnaligned(id) => Some(SnapshotStep::AcknowledgeUnaligned(id)),
        }
    }

    fn on_barrier(
        &mut self,
        gates: &mut impl Gates,
        ch: usize,
        b: CheckpointBarrier,
    ) -> Option<SnapshotStep> {
        let step = self.aligner.as_mut()?.on_barrier(ch, b);
        self.apply(gates, step)
    }

    fn on_end_of_input(&mut self, gates: &mut impl Gates, ch: usize) -> Option<SnapshotStep> {
        let step = self.aligner.as_mut()?.on_end_of_input(ch);
        self.apply(gates, step)
    }

    /// An alignment that has taken too long turns unaligned.
    fn on_time(&mut self, gates: &mut impl Gates) -> Option<SnapshotStep> {
        let aligner = self.aligner.as_mut()?;
        aligner.alignment_deadline()?;
        let step = aligner.on_time(Instant::now());
        self.apply(gates, step)
    }

    /// Whether a batch arriving on channel `ch` is in-flight data of an unaligned checkpoint.
    #[inline]
    fn records(&self, ch: usize) -> bool {
        self.aligner.as_ref().is_some_and(|a| a.in_flight(ch))
    }

    /// Records a batch of input `input` as in-flight data (see [`records`](Self::records)).
    fn record<T: Data>(&mut self, input: u8, batch: &eddy_core::Batch<T>) -> Result<()> {
        if let Some(u) = &mut self.unaligned {
            u.in_flight.push((input, encode_in_flight(batch)?));
        }
        Ok(())
    }

    /// Takes the task's snapshot: `emit` sends the barrier through the chain, collecting each
    /// operator's state (the synchronous part); then the snapshot is acknowledged, at once
    /// when aligned, with its in-flight data at the last barrier when unaligned. Deferred parts
    /// run on the task's snapshot thread, which sends the acknowledgement.
    fn snapshot(
        &mut self,
        step: SnapshotStep,
        emit: impl FnOnce(&CheckpointBarrier, &mut ChainSnapshot) -> Result<()>,
    ) -> Result<()> {
        match step {
            SnapshotStep::Aligned(barrier) => {
                self.unaligned = None;
                let mut snapshot = ChainSnapshot::new(barrier.id);
                emit(&barrier, &mut snapshot)?;
                self.rt.acknowledge(snapshot);
            }
            SnapshotStep::Unaligned(barrier) => {
                let mut snapshot = ChainSnapshot::new(barrier.id);
                emit(&barrier, &mut snapshot)?;
                snapshot.end_sync();
                self.unaligned = Some(UnalignedSnapshot { snapshot, in_flight: Vec::new() });
            }
            SnapshotStep::AcknowledgeUnaligned(id) => {
                if let Some(UnalignedSnapshot { mut snapshot, in_flight }) = self.unaligned.take() {
                    if snapshot.checkpoint_id == id {
                        if !in_flight.is_empty() {
                            let mut bytes = Vec::new();
                            eddy_core::codec::encode_value(&in_flight, &mut bytes)?;
                            snapshot.in_flight = Some(bytes);
                        }
                        self.rt.acknowledge(snapshot);
                    }
                }
            }
        }
        Ok(())
    }

    /// After the snapshot for `barrier`: for a stop-with-savepoint (`SAVEPOINT_SUSPEND`) waits
    /// for the savepoint's outcome, telling `notify` of completions, and returns `true` when it
    /// completed: the task then stops without ending its input.
    fn stops_after(
        &self,
        barrier: CheckpointBarrier,
        signals: &crate::channel::JobSignals,
        notify: impl FnMut(u64) -> Result<()>,
    ) -> Result<bool> {
        if barrier.kind != eddy_core::CheckpointType::SavepointSuspend {
            return Ok(false);
        }
        self.rt.await_savepoint(barrier.id, signals, notify)
    }

    /// Handles the control messages waiting in the inbox: `notify` hears of completed
    /// checkpoints.
    fn poll_control(
        &mut self,
        gates: &mut impl Gates,
        mut notify: impl FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        while let Some(control) = self.rt.poll() {
            match control {
                TaskControl::CheckpointComplete(id) => notify(id)?,
                TaskControl::CheckpointAborted(id) => {
                    if let Some(step) = self.aligner.as_mut().map(|a| a.on_abort(id)) {
                        self.apply(gates, step);
                    }
                }
                TaskControl::TriggerCheckpoint(_) => {}
            }
        }
        Ok(())
    }
}

impl<T: Data> Invokable for OneInputTask<T> {
    fn invoke(mut self: Box<Self>, rt: &TaskRuntime) -> Result<()> {
        let mut valve = WatermarkValve::new(self.gate.num_channels());
        let mut checkpointing = Checkpointing::new(&rt.checkpoints, self.gate.num_channels());
        let mut flusher = Flusher::new(rt.buffer_timeout);
        let head = &mut *self.head;
        let gate = &mut self.gate;
        for batch in self.in_flight.iter().flat_map(|f| decode_in_flight(f, 0)) {
            head.emit_batch(batch?)?;
        }
        let mut next_timer = head.next_processing_time();
        loop {
            check_cancelled(&rt.signals)?;
            let deadline = task_deadline(&flusher, next_timer, &rt.clock, &checkpointing);
            let snapshot_at = match gate.next(deadline)? {
                GateEvent::Element(ch, StreamElement::Records(b)) => {
                    if checkpointing.records(ch) {
                        checkpointing.record(0, &b)?;
                    }
                    head.emit_batch(b)?;
                    None
                }
                GateEvent::Element(ch, StreamElement::Watermark(w)) => {
                    forward_valve(head, valve.input_watermark(ch, w), &rt.metrics)?;
                    None
                }
                GateEvent::Element(ch, StreamElement::Idle(i)) => {
                    forward_valve(head, valve.input_idle(ch, i), &rt.metrics)?;
                    None
                }
                GateEvent::Element(ch, StreamElement::CheckpointBarrier(b)) => {
                    checkpointing.on_barrier(gate, ch, b)
                }
                GateEvent::Element(ch, StreamElement::EndOfInput) => {
                    forward_valve(head, valve.channel_finished(ch), &rt.metrics)?;
                    checkpointing.on_end_of_input(gate, ch)
                }
                GateEvent::Timeout => checkpointing.on_time(gate),
                GateEvent::Finished => break,
            };
            if let Some(step) = snapshot_at {
                let aligned = step.aligned_barrier();
                checkpointing.snapshot(step, |b, s| head.emit_barrier(b, s))?;
                if let Some(barrier) = aligned {
                    if checkpointing
                        .stops_after(barrier, &rt.signals, |id| head.notify_checkpoint_complete(id))?
                    {
                        return Ok(());
                    }
                }
            }
            checkpointing.poll_control(gate, |id| head.notify_checkpoint_complete(id))?;
            next_timer = fire_due_timers(head.next_processing_time(), &rt.clock, |now| {
                head.on_processing_time(now)?;
                Ok(head.next_processing_time())
            })?;
            flusher.maybe_flush(Instant::now(), || head.flush())?;
        }
        head.end_input()
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// A task whose chain starts with a two-input operator.
pub struct TwoInputTask<Op: TwoInputOperator> {
    pub(crate) gate1: InputGate<Op::In1>,
    pub(crate) gate2: InputGate<Op::In2>,
    pub(crate) head: TwoInputHead<Op>,
    /// In-flight records of the unaligned checkpoint the task restores from, replayed first.
    pub(crate) in_flight: Option<Vec<(u8, Vec<u8>)>>,
}

impl<Op: TwoInputOperator> TwoInputTask<Op> {
    pub fn new(gate1: InputGate<Op::In1>, gate2: InputGate<Op::In2>, head: TwoInputHead<Op>) -> Self {
        TwoInputTask { gate1, gate2, head, in_flight: None }
    }

    /// Replays `in_flight` (what [`TaskSnapshot::in_flight`] held) before reading the gates.
    pub fn with_in_flight(mut self, in_flight: Option<&[u8]>) -> Result<Self> {
        self.in_flight = in_flight.map(eddy_core::codec::decode_value).transpose()?;
        Ok(self)
    }
}

impl<Op: TwoInputOperator> Invokable for TwoInputTask<Op> {
    fn invoke(mut self: Box<Self>, rt: &TaskRuntime) -> Result<()> {
        let mut valve1 = WatermarkValve::new(self.gate1.num_channels());
        let mut valve2 = WatermarkValve::new(self.gate2.num_channels());
        let n1 = self.gate1.num_channels();
        let mut checkpointing = Checkpointing::new(&rt.checkpoints, n1 + self.gate2.num_channels());
        let mut combined = i64::MIN;
        let mut idle = [false, false];
        let mut task_idle = false;
        let mut flusher = Flusher::new(rt.buffer_timeout);
        let mut turn = false;
        if let Some(in_flight) = &self.in_flight {
            // Replayed in the order they arrived, across both inputs.
            for run in in_flight.chunk_by(|a, b| a.0 == b.0) {
                if run[0].0 == 0 {
                    for batch in decode_in_flight(run, 0) {
                        self.head.batch1(batch?)?;
                    }
                } else {
                    for batch in decode_in_flight(run, 1) {
                        self.head.batch2(batch?)?;
                    }
                }
            }
        }
        let mut next_timer = self.head.next_processing_time();
        while !(self.gate1.is_finished() && self.gate2.is_finished()) {
            check_cancelled(&rt.signals)?;
            turn = !turn;
            // Alternate between the inputs; wait on both without favouring either.
            let ev1;
            let ev2;
            let deadline = task_deadline(&flusher, next_timer, &rt.clock, &checkpointing);
            if crate::channel::next_of_two(&mut self.gate1, &mut self.gate2, turn, deadline)? {
                ev1 = self.gate1.take_ready();
                ev2 = None;
            } else {
                ev1 = None;
                ev2 = self.gate2.take_ready();
            }
            let mut gates = (&mut self.gate1, &mut self.gate2);
            let mut snapshot_at = None;
            let changed = match (ev1, ev2) {
                (Some((ch, StreamElement::Records(b))), _) => {
                    if checkpointing.records(ch) {
                        checkpointing.record(0, &b)?;
                    }
                    self.head.batch1(b)?;
                    None
                }
                (_, Some((ch, StreamElement::Records(b)))) => {
                    if checkpointing.records(n1 + ch) {
                        checkpointing.record(1, &b)?;
                    }
                    self.head.batch2(b)?;
                    None
                }
                (Some((ch, StreamElement::CheckpointBarrier(b))), _) => {
                    snapshot_at = checkpointing.on_barrier(&mut gates, ch, b);
                    None
                }
                (_, Some((ch, StreamElement::CheckpointBarrier(b)))) => {
                    snapshot_at = checkpointing.on_barrier(&mut gates, n1 + ch, b);
                    None
                }
                (Some((ch, e)), _) => {
                    if matches!(e, StreamElement::EndOfInput) {
                        snapshot_at = checkpointing.on_end_of_input(&mut gates, ch);
                    }
                    control(&mut valve1, ch, e).map(|v| (0, v))
                }
                (_, Some((ch, e))) => {
                    if matches!(e, StreamElement::EndOfInput) {
                        snapshot_at = checkpointing.on_end_of_input(&mut gates, n1 + ch);
                    }
                    control(&mut valve2, ch, e).map(|v| (1, v))
                }
                (None, None) => {
                    snapshot_at = checkpointing.on_time(&mut gates);
                    None
                }
            };
            if let Some((input, out)) = changed {
                if let ValveOutput::Idle(i) = out {
                    idle[input] = i;
                }
                // An idle input does not hold event time back; both idle: the task is idle.
                let active = [
                    (!idle[0]).then(|| valve1.current_watermark()),
                    (!idle[1]).then(|| valve2.current_watermark()),
                ];
                match active.into_iter().flatten().min() {
                    Some(w) => {
                        if task_idle {
                            task_idle = false;
                            self.head.idle(false)?;
                        }
                        if w > combined {
                            combined = w;
                            crate::metrics::set_watermark(&rt.metrics.input_watermark, w);
                            self.head.watermark(w)?;
                        }
                    }
                    None if !task_idle => {
                        task_idle = true;
                        self.head.idle(true)?;
                    }
                    None => {}
                }
            }
            let head = &mut self.head;
            if let Some(step) = snapshot_at {
                let aligned = step.aligned_barrier();
                checkpointing.snapshot(step, |b, s| head.emit_barrier(b, s))?;
                if let Some(barrier) = aligned {
                    if checkpointing
                        .stops_after(barrier, &rt.signals, |id| head.notify_checkpoint_complete(id))?
                    {
                        return Ok(());
                    }
                }
            }
            let mut gates = (&mut self.gate1, &mut self.gate2);
            checkpointing.poll_control(&mut gates, |id| head.notify_checkpoint_complete(id))?;
            next_timer = fire_due_timers(head.next_processing_time(), &rt.clock, |now| {
                head.on_processing_time(now)?;
                Ok(head.next_processing_time())
            })?;
            flusher.maybe_flush(Instant::now(), || self.head.flush())?;
        }
        self.head.end_input()
    }

    fn name(&self) -> String {
        self.head.ctx.task_name()
    }
}

fn control<T>(valve: &mut WatermarkValve, ch: usize, e: StreamElement<T>) -> Option<ValveOutput> {
    match e {
        StreamElement::Watermark(w) => valve.input_watermark(ch, w),
        StreamElement::Idle(i) => valve.input_idle(ch, i),
        StreamElement::EndOfInput => valve.channel_finished(ch),
        StreamElement::Records(_) | StreamElement::CheckpointBarrier(_) => None,
    }
}
