//! Barrier alignment in real tasks: pre-filled channels, a task run to its end on the test
//! thread, and a recording chain. Every element is in its channel before the task starts, so
//! the order the task sees them in is fixed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy_core::config::{CheckpointingMode, RuntimeMode};
use eddy_core::{codec, Batch, CheckpointBarrier, CheckpointType, Result, StreamElement};

use super::*;
use crate::channel::{channel, InputGate, JobSignals};
use crate::operator::{OperatorContext, TwoInputHead, TwoInputOperator};
use crate::output::{Emitter, Output};
use crate::task::{Invokable, OneInputTask, TaskRuntime, TwoInputTask};
use crate::time::ClockRef;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Records(Vec<u32>),
    Snapshot(u64),
    Complete(u64),
    End,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Output<u32> for Recorder {
    fn emit_batch(&mut self, batch: Batch<u32>) -> Result<()> {
        self.0.lock().unwrap().push(Seen::Records(batch.values));
        Ok(())
    }
    fn emit_watermark(&mut self, _: i64) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self, _: bool) -> Result<()> {
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        self.0.lock().unwrap().push(Seen::End);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut ChainSnapshot) -> Result<()> {
        self.0.lock().unwrap().push(Seen::Snapshot(barrier.id));
        snapshot.push(&Arc::from("recorder"), None);
        Ok(())
    }
    fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.0.lock().unwrap().push(Seen::Complete(id));
        Ok(())
    }
}

#[derive(Default)]
struct Responses(Mutex<Vec<TaskResponse>>);

impl CheckpointResponder for Responses {
    fn respond(&self, response: TaskResponse) {
        self.0.lock().unwrap().push(response);
    }
}

impl Responses {
    fn acknowledged(&self) -> Vec<TaskSnapshot> {
        let responses = self.0.lock().unwrap();
        responses
            .iter()
            .filter_map(|r| match r {
                TaskResponse::Acknowledge { snapshot, .. } => Some(snapshot.clone()),
                TaskResponse::Decline { .. } => None,
            })
            .collect()
    }
}

fn barrier(id: u64) -> StreamElement<u32> {
    StreamElement::CheckpointBarrier(CheckpointBarrier { id, timestamp: 0, kind: CheckpointType::Checkpoint })
}

fn rec(v: u32) -> StreamElement<u32> {
    StreamElement::Records(Batch::from_values(vec![v]))
}

/// A gate over channels already holding `elements` (each list should end with EndOfInput).
fn filled_gate(elements: Vec<Vec<StreamElement<u32>>>, signals: &Arc<JobSignals>) -> InputGate<u32> {
    let mut receivers = Vec::new();
    for list in elements {
        let (tx, rx) = channel(list.len().max(1), signals.clone());
        for e in list {
            tx.send(e).unwrap();
        }
        receivers.push(rx);
    }
    InputGate::new(receivers)
}

/// Runs the task to its end; control messages in `before` are waiting in its inbox from the
/// start.
fn run(task: Box<dyn Invokable>, mode: CheckpointingMode, before: &[TaskControl]) -> Arc<Responses> {
    let responses = Arc::new(Responses::default());
    let (tx, rx) = control_channel();
    for c in before {
        tx.send(*c).unwrap();
    }
    let rt = TaskRuntime {
        signals: Arc::new(JobSignals::default()),
        buffer_timeout: None,
        metrics: Default::default(),
        clock: ClockRef::system(),
        checkpoints: TaskCheckpointing::new(mode, 0, 0, rx, responses.clone()),
    };
    task.invoke(&rt).unwrap();
    rt.checkpoints.finish(&rt.signals).unwrap();
    responses
}

fn one_input(
    mode: CheckpointingMode,
    elements: Vec<Vec<StreamElement<u32>>>,
    before: &[TaskControl],
) -> (Vec<Seen>, Arc<Responses>) {
    let signals = Arc::new(JobSignals::default());
    let recorder = Recorder::default();
    let task = OneInputTask::new("test".into(), filled_gate(elements, &signals), Box::new(recorder.clone()));
    let responses = run(Box::new(task), mode, before);
    (recorder.take(), responses)
}

fn position(seen: &[Seen], x: &Seen) -> usize {
    seen.iter().position(|s| s == x).unwrap_or_else(|| panic!("{x:?} not in {seen:?}"))
}

#[test]
fn exactly_once_holds_back_records_after_a_barrier_until_all_channels_delivered_it() {
    let end = StreamElement::EndOfInput;
    let channels =
        vec![vec![rec(1), barrier(1), rec(2), end.clone()], vec![rec(10), rec(11), barrier(1), end]];
    let (seen, responses) = one_input(CheckpointingMode::ExactlyOnce, channels, &[]);
    let snapshot = position(&seen, &Seen::Snapshot(1));
    for before in [1, 10, 11] {
        assert!(position(&seen, &Seen::Records(vec![before])) < snapshot, "{seen:?}");
    }
    // Record 2 followed the barrier on its channel: it is not in checkpoint 1.
    assert!(position(&seen, &Seen::Records(vec![2])) > snapshot, "{seen:?}");
    assert_eq!(seen.last(), Some(&Seen::End));
    let acks = responses.acknowledged();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].checkpoint_id, 1);
    assert_eq!(&*acks[0].operators[0].operator_id, "recorder");
}

#[test]
fn at_least_once_reads_on_and_snapshots_when_the_last_barrier_arrives() {
    let end = StreamElement::EndOfInput;
    let channels =
        vec![vec![rec(1), barrier(1), rec(2), end.clone()], vec![rec(10), rec(11), barrier(1), end]];
    let (seen, responses) = one_input(CheckpointingMode::AtLeastOnce, channels, &[]);
    let snapshot = position(&seen, &Seen::Snapshot(1));
    // Channel 0 was read on after its barrier, so record 2 is in the snapshot (and would be
    // processed again after a restore).
    assert!(position(&seen, &Seen::Records(vec![2])) < snapshot, "{seen:?}");
    assert!(position(&seen, &Seen::Records(vec![11])) < snapshot, "{seen:?}");
    assert_eq!(responses.acknowledged().len(), 1);
}

#[test]
fn a_channel_that_ended_counts_as_its_barrier() {
    let end = StreamElement::EndOfInput;
    for mode in [CheckpointingMode::ExactlyOnce, CheckpointingMode::AtLeastOnce] {
        // Channel 1 ends after the barrier arrived on channel 0: its end completes checkpoint 1.
        let channels = vec![vec![barrier(1), rec(2), end.clone()], vec![rec(10), end.clone()]];
        let (seen, responses) = one_input(mode, channels, &[]);
        let snapshot = position(&seen, &Seen::Snapshot(1));
        assert!(position(&seen, &Seen::Records(vec![10])) < snapshot, "{mode}: {seen:?}");
        assert_eq!(responses.acknowledged().len(), 1, "{mode}");
        // Channel 1 ended before checkpoint 2: only channel 0's barrier is needed.
        let channels = vec![vec![rec(1), rec(2), barrier(2), rec(3), end.clone()], vec![end.clone()]];
        let (seen, responses) = one_input(mode, channels, &[]);
        assert_eq!(
            seen,
            vec![
                Seen::Records(vec![1]),
                Seen::Records(vec![2]),
                Seen::Snapshot(2),
                Seen::Records(vec![3]),
                Seen::End
            ]
        );
        assert_eq!(responses.acknowledged()[0].checkpoint_id, 2);
    }
}

#[test]
fn an_aborted_checkpoint_unblocks_the_channels_and_is_not_acknowledged() {
    let end = StreamElement::EndOfInput;
    let channels = vec![vec![barrier(1), rec(2), end.clone()], vec![end.clone()]];
    let before = [TaskControl::CheckpointAborted(1), TaskControl::CheckpointComplete(7)];
    let (seen, responses) = one_input(CheckpointingMode::ExactlyOnce, channels, &before);
    assert_eq!(seen, vec![Seen::Complete(7), Seen::Records(vec![2]), Seen::End]);
    assert!(responses.acknowledged().is_empty());
}

#[test]
fn a_blocked_channel_is_not_read_until_unblocked() {
    let signals = Arc::new(JobSignals::default());
    let (tx0, rx0) = channel(4, signals.clone());
    let (tx1, rx1) = channel(4, signals.clone());
    for e in [rec(1), rec(2)] {
        tx0.send(e).unwrap();
    }
    tx1.send(rec(10)).unwrap();
    let mut gate = InputGate::new(vec![rx0, rx1]);
    gate.block(0);
    assert!(gate.is_blocked(0));
    let deadline = Instant::now();
    let next = |g: &mut InputGate<u32>| match g.next(deadline).unwrap() {
        crate::channel::GateEvent::Element(ch, StreamElement::Records(b)) => Some((ch, b.values[0])),
        _ => None,
    };
    assert_eq!(next(&mut gate), Some((1, 10)));
    assert_eq!(next(&mut gate), None, "channel 0 is blocked, channel 1 is empty");
    gate.unblock_all();
    assert_eq!(next(&mut gate), Some((0, 1)));
    assert_eq!(next(&mut gate), Some((0, 2)));
}

/// Records the values of both inputs; its state is what it has seen.
struct Seen2 {
    seen: Vec<u32>,
}

impl TwoInputOperator for Seen2 {
    type In1 = u32;
    type In2 = u32;
    type Out = u32;

    fn process_batch1(&mut self, batch: Batch<u32>, _: &mut Emitter<u32>) -> Result<()> {
        self.seen.extend(batch.values);
        Ok(())
    }
    fn process_batch2(&mut self, batch: Batch<u32>, _: &mut Emitter<u32>) -> Result<()> {
        self.seen.extend(batch.values);
        Ok(())
    }
    fn snapshot_state(&mut self, _: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        codec::encode_value(&self.seen, &mut bytes)?;
        Ok(Some(bytes))
    }
}

fn ctx() -> OperatorContext {
    OperatorContext {
        job_name: "test".into(),
        operator_name: "two".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        attempt: 0,
        runtime_mode: RuntimeMode::Streaming,
        batch_size: 16,
        clock: ClockRef::system(),
        auto_watermark_interval: 0,
        checkpointing: false,
        state_backend: Default::default(),
        metrics: Default::default(),
    }
}

#[test]
fn two_input_tasks_align_across_both_inputs() {
    let end = StreamElement::EndOfInput;
    let signals = Arc::new(JobSignals::default());
    let in1 = filled_gate(vec![vec![rec(1), barrier(1), rec(2), end.clone()]], &signals);
    let in2 = filled_gate(vec![vec![rec(10), rec(11), rec(12), barrier(1), rec(13), end.clone()]], &signals);
    let emitter = Emitter::new(Box::new(Recorder::default()), 16);
    let head =
        TwoInputHead::open_with_state(Seen2 { seen: Vec::new() }, emitter, ctx(), OperatorInit::fresh("two"))
            .unwrap();
    let responses = run(Box::new(TwoInputTask::new(in1, in2, head)), CheckpointingMode::ExactlyOnce, &[]);
    let acks = responses.acknowledged();
    assert_eq!(acks.len(), 1);
    let two = acks[0].operators.iter().find(|o| &*o.operator_id == "two").unwrap();
    let mut state: Vec<u32> = codec::decode_value(two.state.as_deref().unwrap()).unwrap();
    state.sort_unstable();
    assert_eq!(state, vec![1, 10, 11, 12], "exactly the records before both barriers");
}

/// Runs a one-input task with unaligned checkpoints (aligned-checkpoint timeout 0).
fn one_input_unaligned(
    elements: Vec<Vec<StreamElement<u32>>>,
    in_flight: Option<&[u8]>,
) -> (Vec<Seen>, Arc<Responses>) {
    let signals = Arc::new(JobSignals::default());
    let recorder = Recorder::default();
    let task = OneInputTask::new("test".into(), filled_gate(elements, &signals), Box::new(recorder.clone()))
        .with_in_flight(in_flight)
        .unwrap();
    let responses = Arc::new(Responses::default());
    let (_tx, rx) = control_channel();
    let rt = TaskRuntime {
        signals,
        buffer_timeout: None,
        metrics: Default::default(),
        clock: ClockRef::system(),
        checkpoints: TaskCheckpointing::new(CheckpointingMode::ExactlyOnce, 0, 0, rx, responses.clone())
            .with_unaligned(Some(std::time::Duration::ZERO)),
    };
    Box::new(task).invoke(&rt).unwrap();
    (recorder.take(), responses)
}

fn in_flight_records(snapshot: &TaskSnapshot) -> Vec<u32> {
    let Some(bytes) = &snapshot.in_flight else { return Vec::new() };
    let entries: Vec<(u8, Vec<u8>)> = codec::decode_value(bytes).unwrap();
    crate::task::decode_in_flight::<u32>(&entries, 0).flat_map(|b| b.unwrap().values).collect()
}

#[test]
fn unaligned_snapshots_at_the_first_barrier_and_stores_what_was_still_in_flight() {
    let end = StreamElement::EndOfInput;
    let channels = vec![
        vec![barrier(1), rec(2), end.clone()],
        vec![rec(10), rec(11), rec(12), barrier(1), rec(13), end],
    ];
    let (seen, responses) = one_input_unaligned(channels, None);
    let snapshot = position(&seen, &Seen::Snapshot(1));
    let acks = responses.acknowledged();
    assert_eq!(acks.len(), 1, "{seen:?}");
    // Channel 1's records before its barrier that the task processed after the snapshot are
    // exactly the in-flight data; those processed before are in the operators' state.
    let after_snapshot: Vec<u32> = seen[snapshot..]
        .iter()
        .filter_map(|s| match s {
            Seen::Records(v) if v[0] >= 10 && v[0] < 13 => Some(v[0]),
            _ => None,
        })
        .collect();
    assert!(!after_snapshot.is_empty(), "the gate read channel 1 after the first barrier: {seen:?}");
    assert_eq!(in_flight_records(&acks[0]), after_snapshot);
    // Nothing was held back: every record was processed, each once.
    let mut all: Vec<u32> =
        seen.iter().filter_map(|s| if let Seen::Records(v) = s { Some(v[0]) } else { None }).collect();
    all.sort();
    assert_eq!(all, [2, 10, 11, 12, 13]);
}

#[test]
fn a_restored_task_replays_its_in_flight_records_before_reading_its_input() {
    let mut bytes = Vec::new();
    let batch = |v: Vec<u32>| {
        let mut b = Vec::new();
        codec::encode_value(&(&v, &Vec::<i64>::new()), &mut b).unwrap();
        b
    };
    codec::encode_value(&vec![(0u8, batch(vec![7, 8])), (0u8, batch(vec![9]))], &mut bytes).unwrap();
    let (seen, _) = one_input_unaligned(vec![vec![rec(1), StreamElement::EndOfInput]], Some(&bytes));
    assert_eq!(
        seen,
        vec![Seen::Records(vec![7, 8]), Seen::Records(vec![9]), Seen::Records(vec![1]), Seen::End]
    );
}

// ---------------------------------------------------------------------------------------------
// The asynchronous part of snapshots
// ---------------------------------------------------------------------------------------------

mod asynchronous {
    use std::thread::JoinHandle;
    use std::time::Duration;

    use crossbeam_channel::{Receiver, Sender};
    use eddy_core::EddyError;

    use super::*;
    use crate::channel::ChannelSender;
    use crate::operator::{ChainedOperator, OneInputOperator};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// Keeps the values it has seen and reports each one; its snapshot's deferred part waits
    /// for the test to release it (`Ok`) or fail it (`Err`).
    struct Latched {
        seen: Vec<u32>,
        processed: Sender<u32>,
        release: Receiver<std::result::Result<(), String>>,
    }

    /// What `Latched` reports when its input has ended.
    const ENDED: u32 = u32::MAX;

    impl OneInputOperator for Latched {
        type In = u32;
        type Out = u32;

        fn process_batch(&mut self, batch: Batch<u32>, _: &mut Emitter<u32>) -> Result<()> {
            for v in batch.values {
                self.seen.push(v);
                let _ = self.processed.send(v);
            }
            Ok(())
        }

        fn end_input(&mut self, _: &mut Emitter<u32>) -> Result<()> {
            let _ = self.processed.send(ENDED);
            Ok(())
        }

        fn snapshot_state_async(&mut self, _: &CheckpointBarrier) -> Result<Option<SnapshotBytes>> {
            let (seen, release) = (self.seen.clone(), self.release.clone());
            Ok(Some(SnapshotBytes::Deferred(Box::new(move || match release.recv() {
                Ok(Ok(())) => {
                    let mut bytes = Vec::new();
                    codec::encode_value(&seen, &mut bytes)?;
                    Ok(bytes)
                }
                Ok(Err(why)) => Err(EddyError::user(why)),
                Err(_) => Err(EddyError::user("the test dropped the latch")),
            }))))
        }
    }

    struct ChannelResponder(Sender<TaskResponse>);

    impl CheckpointResponder for ChannelResponder {
        fn respond(&self, response: TaskResponse) {
            let _ = self.0.send(response);
        }
    }

    /// A running task around a `Latched` operator, and the test's ends of its channels.
    struct Running {
        input: ChannelSender<u32>,
        processed: Receiver<u32>,
        release: Sender<std::result::Result<(), String>>,
        responses: Receiver<TaskResponse>,
        signals: Arc<JobSignals>,
        /// The task's outcome, once its thread ends (after `finish`, as the executor runs it).
        ended: Receiver<Result<()>>,
        thread: JoinHandle<()>,
    }

    fn start() -> Running {
        let signals = Arc::new(JobSignals::default());
        let (input, rx) = channel(16, signals.clone());
        let (processed_tx, processed) = crossbeam_channel::unbounded();
        let (release, release_rx) = crossbeam_channel::unbounded();
        let (responses_tx, responses) = crossbeam_channel::unbounded();
        let (ended_tx, ended) = crossbeam_channel::bounded(1);
        let op = Latched { seen: Vec::new(), processed: processed_tx, release: release_rx };
        let mut context = ctx();
        context.operator_name = "latched".into();
        let emitter = Emitter::new(Box::new(Recorder::default()), 16);
        let head = ChainedOperator::open(op, emitter, context).unwrap();
        let task = OneInputTask::new("latched".into(), InputGate::new(vec![rx]), Box::new(head));
        let (_control, inbox) = control_channel();
        let task_signals = signals.clone();
        let thread = std::thread::spawn(move || {
            let responder = Arc::new(ChannelResponder(responses_tx));
            let rt = TaskRuntime {
                signals: task_signals,
                buffer_timeout: None,
                metrics: Default::default(),
                clock: ClockRef::system(),
                checkpoints: TaskCheckpointing::new(CheckpointingMode::ExactlyOnce, 0, 0, inbox, responder),
            };
            let _control = _control;
            let outcome = Box::new(task).invoke(&rt).and_then(|()| rt.checkpoints.finish(&rt.signals));
            let _ = ended_tx.send(outcome);
        });
        Running { input, processed, release, responses, signals, ended, thread }
    }

    impl Running {
        fn send(&self, elements: Vec<StreamElement<u32>>) {
            for e in elements {
                self.input.send(e).unwrap();
            }
        }

        fn next_processed(&self) -> u32 {
            self.processed.recv_timeout(DEADLINE).expect("the task stopped processing records")
        }

        fn next_response(&self) -> TaskResponse {
            self.responses.recv_timeout(DEADLINE).expect("no acknowledgement or decline")
        }

        fn no_response_yet(&self) {
            assert!(self.responses.try_recv().is_err(), "answered before the deferred part finished");
        }

        fn end(self) -> Result<()> {
            let outcome = self.ended.recv_timeout(DEADLINE).expect("the task did not end");
            self.thread.join().unwrap();
            outcome
        }
    }

    fn acknowledged(response: TaskResponse) -> TaskSnapshot {
        match response {
            TaskResponse::Acknowledge { snapshot, .. } => snapshot,
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
    }

    fn state(snapshot: &TaskSnapshot) -> Vec<u32> {
        codec::decode_value(snapshot.operators[0].state.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_task_reads_on_while_its_snapshot_is_deferred_and_acknowledges_when_the_part_is_done() {
        let task = start();
        task.send(vec![rec(1), barrier(1), rec(2)]);
        assert_eq!(task.next_processed(), 1);
        // Record 2 follows the barrier: processed while the deferred part still waits.
        assert_eq!(task.next_processed(), 2);
        task.no_response_yet();
        task.send(vec![StreamElement::EndOfInput]);
        assert_eq!(task.next_processed(), ENDED);
        // The input has ended, but a finishing task waits for its acknowledgement.
        assert!(task.ended.try_recv().is_err(), "the task ended before its snapshot was acknowledged");
        task.no_response_yet();
        task.release.send(Ok(())).unwrap();
        let ack = acknowledged(task.next_response());
        assert_eq!(ack.checkpoint_id, 1);
        assert_eq!(state(&ack), vec![1], "the state as it was at the barrier");
        assert!(ack.async_duration > Duration::ZERO);
        task.end().unwrap();
    }

    #[test]
    fn acknowledgements_keep_the_order_of_the_checkpoints() {
        let task = start();
        task.send(vec![rec(1), barrier(1), rec(2), barrier(2), rec(3)]);
        for v in [1, 2, 3] {
            assert_eq!(task.next_processed(), v);
        }
        task.release.send(Ok(())).unwrap();
        task.release.send(Ok(())).unwrap();
        let (first, second) = (acknowledged(task.next_response()), acknowledged(task.next_response()));
        assert_eq!((first.checkpoint_id, state(&first)), (1, vec![1]));
        assert_eq!((second.checkpoint_id, state(&second)), (2, vec![1, 2]));
        task.send(vec![StreamElement::EndOfInput]);
        task.end().unwrap();
    }

    #[test]
    fn a_failing_deferred_part_declines_the_checkpoint_and_the_task_runs_on() {
        let task = start();
        task.send(vec![rec(1), barrier(1), rec(2)]);
        task.release.send(Err("disk full".into())).unwrap();
        match task.next_response() {
            TaskResponse::Decline { checkpoint_id, reason, .. } => {
                assert_eq!(checkpoint_id, 1);
                assert!(reason.contains("'latched'"), "{reason}");
                assert!(reason.contains("checkpoint 1"), "{reason}");
                assert!(reason.contains("disk full"), "{reason}");
            }
            other => panic!("expected a decline, got {other:?}"),
        }
        // The next checkpoint goes through.
        task.send(vec![barrier(2), rec(3)]);
        task.release.send(Ok(())).unwrap();
        let ack = acknowledged(task.next_response());
        assert_eq!((ack.checkpoint_id, state(&ack)), (2, vec![1, 2]));
        task.send(vec![StreamElement::EndOfInput]);
        task.end().unwrap();
    }

    #[test]
    fn a_cancelled_task_does_not_wait_for_a_blocked_deferred_part() {
        let task = start();
        task.send(vec![rec(1), barrier(1), StreamElement::EndOfInput]);
        assert_eq!(task.next_processed(), 1);
        assert_eq!(task.next_processed(), ENDED);
        task.signals.cancel();
        // The deferred part is never released; the task ends anyway.
        let release = task.release.clone();
        assert!(matches!(task.end(), Err(EddyError::Cancelled(_))));
        drop(release);
    }
}
