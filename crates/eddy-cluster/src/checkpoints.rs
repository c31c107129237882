//! Checkpoints on a cluster: the job master's end and the worker's end of the protocol.
//!
//! The job master runs the attempt's [`CheckpointCoordinator`], the same as the local
//! mini-cluster's. It has no job graph: the workers describe its operators when they register.
//! Between it and the tasks, which run in the workers, two RPCs carry what the local
//! mini-cluster passes through in-process channels:
//!
//! - `CheckpointControl`, a stream from the job master to each worker: triggers for the
//!   worker's source tasks, completions and aborts for all of its tasks. The coordinator writes
//!   to one inbox per task ([`AttemptGateway`]); a forwarding thread routes each message to
//!   the stream of the worker that runs the task, where it waits until the worker listens.
//! - `ReportCheckpointEvents`, from each worker: its tasks' acknowledgements (with the state
//!   bytes), declines and ends, in the order they happened. Order matters: a task that
//!   acknowledged checkpoint `n` and then finished must not count as finished for `n`.
//!
//! Both are fenced by attempt, like every worker RPC: a worker of an older attempt is refused.
//!
//! Completed checkpoints are stored by the job master (in its memory, or under
//! `state.checkpoints.dir`), and a restarted attempt gets its checkpoint from the job master
//! with its deployment: each worker receives the state of its own subtasks. The workers never
//! read the checkpoint directory, so in-memory storage works on a cluster too; the directory
//! is where the job master keeps checkpoints beyond its memory, and needs to be on a shared
//! filesystem only for a job master that runs elsewhere to find them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Select, Sender};
use eddy_core::{CheckpointBarrier, CheckpointType, EddyError, Result};
use eddy_runtime::checkpoint::coordinator::{
    AttemptGateway, CheckpointedOperator, RunningCoordinator, TaskEvents,
};
use eddy_runtime::checkpoint::{
    control_channel, CheckpointCoordinator, CheckpointResponder, CompletedCheckpoint, OperatorSnapshot,
    OperatorState, SubtaskState, TaskControl, TaskResponse, TaskSnapshot,
};
use tokio::sync::mpsc;

use crate::proto::{
    self, checkpoint_control_message::Kind as ControlKind, checkpoint_event::Kind as EventKind,
    CheckpointControlMessage, CheckpointEvent, CheckpointState,
};

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

pub fn operator_to_proto(o: &CheckpointedOperator) -> proto::CheckpointedOperator {
    proto::CheckpointedOperator {
        id: o.id.clone(),
        uid: o.uid.clone(),
        name: o.name.clone(),
        vertex: o.vertex as u32,
        parallelism: o.parallelism as u32,
        max_parallelism: o.max_parallelism as u32,
        source: o.source,
    }
}

pub fn operator_from_proto(o: &proto::CheckpointedOperator) -> CheckpointedOperator {
    CheckpointedOperator {
        id: o.id.clone(),
        uid: o.uid.clone(),
        name: o.name.clone(),
        vertex: o.vertex as usize,
        parallelism: o.parallelism as usize,
        max_parallelism: o.max_parallelism as usize,
        source: o.source,
    }
}

/// Checkpoint `c` for a worker that runs the subtasks `slots` (subtask `s` of every vertex
/// for each slot `s`) of a job whose operators are `operators`. An operator that runs at the
/// parallelism it was checkpointed at gets only the state of the worker's own subtasks; one
/// that runs at another parallelism (a savepoint restored after rescaling) gets every old
/// subtask's state, for each new subtask to take its share from. State of operators the job
/// does not have stays behind.
pub fn checkpoint_for_worker(
    c: &CompletedCheckpoint,
    slots: &[usize],
    operators: &[CheckpointedOperator],
) -> CheckpointState {
    let operators = c
        .operators
        .iter()
        .filter_map(|o| Some((o, operators.iter().find(|op| op.id == o.id)?)))
        .map(|(o, now)| {
            let rescaled = now.parallelism != o.parallelism;
            let shipped = |s: usize| rescaled || slots.contains(&s);
            proto::OperatorCheckpointState {
                id: o.id.clone(),
                uid: o.uid.clone(),
                name: o.name.clone(),
                parallelism: o.parallelism as u32,
                max_parallelism: o.max_parallelism as u32,
                coordinator: o.coordinator.clone(),
                subtasks: o
                    .subtasks
                    .iter()
                    .enumerate()
                    .map(|(s, st)| proto::SubtaskCheckpointState {
                        finished: st.finished,
                        state: if shipped(s) { st.state.clone() } else { None },
                        in_flight: if shipped(s) { st.in_flight.clone() } else { None },
                    })
                    .collect(),
            }
        })
        .collect();
    CheckpointState {
        job_id: c.job_id.clone(),
        id: c.id,
        timestamp: c.timestamp,
        kind: c.kind.as_str().to_string(),
        operators,
    }
}

/// The checkpoint a worker was handed; an error names what is wrong with it.
pub fn checkpoint_from_proto(c: CheckpointState) -> Result<CompletedCheckpoint> {
    let Some(kind) = CheckpointType::parse(&c.kind) else {
        return Err(EddyError::user(format!(
            "checkpoint {} from the job master has an unknown type {:?}",
            c.id, c.kind
        )));
    };
    let operators = c
        .operators
        .into_iter()
        .map(|o| OperatorState {
            id: o.id,
            uid: o.uid,
            name: o.name,
            parallelism: o.parallelism as usize,
            max_parallelism: o.max_parallelism as usize,
            coordinator: o.coordinator,
            subtasks: o
                .subtasks
                .into_iter()
                .map(|s| SubtaskState { finished: s.finished, state: s.state, in_flight: s.in_flight })
                .collect(),
        })
        .collect();
    Ok(CompletedCheckpoint { job_id: c.job_id, id: c.id, timestamp: c.timestamp, kind, operators })
}

fn control_to_proto(vertex: usize, subtask: usize, control: TaskControl) -> CheckpointControlMessage {
    let mut m =
        CheckpointControlMessage { vertex: vertex as u32, subtask: subtask as u32, ..Default::default() };
    match control {
        TaskControl::TriggerCheckpoint(b) => {
            m.set_kind(ControlKind::Trigger);
            m.checkpoint_id = b.id;
            m.timestamp = b.timestamp;
            m.checkpoint_type = b.kind.as_str().to_string();
        }
        TaskControl::CheckpointComplete(id) => {
            m.set_kind(ControlKind::Complete);
            m.checkpoint_id = id;
        }
        TaskControl::CheckpointAborted(id) => {
            m.set_kind(ControlKind::Abort);
            m.checkpoint_id = id;
        }
    }
    m
}

fn control_from_proto(m: &CheckpointControlMessage) -> Result<TaskControl> {
    Ok(match m.kind() {
        ControlKind::Trigger => {
            let name = m.checkpoint_type.as_str();
            let kind = match name {
                "" => Some(CheckpointType::Checkpoint),
                name => CheckpointType::parse(name),
            };
            let Some(kind) = kind else {
                return Err(EddyError::user(format!(
                    "checkpoint {} triggered with an unknown type {name:?}",
                    m.checkpoint_id
                )));
            };
            TaskControl::TriggerCheckpoint(CheckpointBarrier {
                id: m.checkpoint_id,
                timestamp: m.timestamp,
                kind,
            })
        }
        ControlKind::Complete => TaskControl::CheckpointComplete(m.checkpoint_id),
        ControlKind::Abort => TaskControl::CheckpointAborted(m.checkpoint_id),
    })
}

fn response_to_proto(response: TaskResponse) -> CheckpointEvent {
    match response {
        TaskResponse::Acknowledge { vertex, subtask, snapshot } => CheckpointEvent {
            vertex: vertex as u32,
            subtask: subtask as u32,
            kind: EventKind::Acknowledge as i32,
            checkpoint_id: snapshot.checkpoint_id,
            operators: snapshot
                .operators
                .into_iter()
                .map(|o| proto::OperatorSnapshot { operator_id: o.operator_id.to_string(), state: o.state })
                .collect(),
            reason: String::new(),
            in_flight: snapshot.in_flight,
            sync_duration_ms: snapshot.sync_duration.as_millis() as u64,
            async_duration_ms: snapshot.async_duration.as_millis() as u64,
        },
        TaskResponse::Decline { vertex, subtask, checkpoint_id, reason } => CheckpointEvent {
            vertex: vertex as u32,
            subtask: subtask as u32,
            kind: EventKind::Decline as i32,
            checkpoint_id,
            operators: Vec::new(),
            reason,
            in_flight: None,
            ..Default::default()
        },
    }
}

/// A task's end as a checkpoint event.
pub fn task_ended_event(vertex: usize, subtask: usize, finished: bool) -> CheckpointEvent {
    let kind = if finished { EventKind::TaskFinished } else { EventKind::TaskFailed };
    CheckpointEvent {
        vertex: vertex as u32,
        subtask: subtask as u32,
        kind: kind as i32,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The job master's end
// ---------------------------------------------------------------------------------------------

/// What the RPC handlers of one attempt's checkpoints need, installed in the job's entry while
/// the attempt runs.
pub struct AttemptLink {
    pub attempt: u32,
    responder: Arc<dyn CheckpointResponder>,
    events: TaskEvents,
    /// Per worker: the control messages waiting for its stream, until it opens it.
    controls: Mutex<Vec<Option<mpsc::UnboundedReceiver<CheckpointControlMessage>>>>,
}

impl AttemptLink {
    /// The control stream of worker `worker`; `None` when it has been taken already or there
    /// is no such worker.
    pub fn take_control(&self, worker: usize) -> Option<mpsc::UnboundedReceiver<CheckpointControlMessage>> {
        self.controls.lock().unwrap_or_else(|p| p.into_inner()).get_mut(worker)?.take()
    }

    /// Hands a worker's events to the coordinator, in order.
    pub fn deliver(&self, events: Vec<CheckpointEvent>) {
        for e in events {
            let (vertex, subtask) = (e.vertex as usize, e.subtask as usize);
            match e.kind() {
                EventKind::Acknowledge => {
                    let mut snapshot = TaskSnapshot::new(e.checkpoint_id);
                    snapshot.operators = e
                        .operators
                        .into_iter()
                        .map(|o| OperatorSnapshot { operator_id: o.operator_id.into(), state: o.state })
                        .collect();
                    snapshot.in_flight = e.in_flight;
                    snapshot.sync_duration = std::time::Duration::from_millis(e.sync_duration_ms);
                    snapshot.async_duration = std::time::Duration::from_millis(e.async_duration_ms);
                    self.responder.respond(TaskResponse::Acknowledge { vertex, subtask, snapshot });
                }
                EventKind::Decline => self.responder.respond(TaskResponse::Decline {
                    vertex,
                    subtask,
                    checkpoint_id: e.checkpoint_id,
                    reason: e.reason,
                }),
                EventKind::TaskFinished => self.events.task_ended(vertex, subtask, true),
                EventKind::TaskFailed => self.events.task_ended(vertex, subtask, false),
            }
        }
    }
}

/// Starts `coordinator` for attempt `attempt`, whose slot `s` runs on worker
/// `slot_workers[s]`; `parallelisms` are the job vertices'. `fail_job` fails the attempt when
/// more checkpoints failed in a row than tolerated.
pub fn start_attempt(
    coordinator: CheckpointCoordinator,
    operators: &[CheckpointedOperator],
    attempt: u32,
    slot_workers: &[u32],
    parallelisms: &[usize],
    fail_job: Box<dyn Fn(EddyError) + Send>,
) -> Result<(Arc<AttemptLink>, RunningCoordinator)> {
    let workers = slot_workers.iter().map(|&w| w as usize + 1).max().unwrap_or(0);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
    let mut inboxes = Vec::new();
    let mut routes = Vec::new();
    for (vertex, &p) in parallelisms.iter().enumerate() {
        for subtask in 0..p {
            let (tx, rx) = control_channel();
            inboxes.push(((vertex, subtask), tx));
            let worker = slot_workers.get(subtask).copied().unwrap_or(0) as usize;
            routes.push(((vertex, subtask), rx, senders[worker].clone()));
        }
    }
    drop(senders);
    std::thread::Builder::new()
        .name(format!("checkpoint-control {attempt}"))
        .spawn(move || forward_controls(routes))
        .map_err(|e| EddyError::user(format!("cannot start the checkpoint control thread: {e}")))?;
    let gateway =
        AttemptGateway { tasks: inboxes, sources: eddy_runtime::distributed::cluster_enumerators(operators) };
    let running = coordinator.start_attempt(gateway, fail_job)?;
    let link = AttemptLink {
        attempt,
        responder: running.responder(),
        events: running.task_events(),
        controls: Mutex::new(receivers.into_iter().map(Some).collect()),
    };
    Ok((Arc::new(link), running))
}

type Route = ((usize, usize), Receiver<TaskControl>, mpsc::UnboundedSender<CheckpointControlMessage>);

/// Moves what the coordinator writes to the tasks' inboxes to their workers' streams, until
/// the coordinator has stopped (every inbox is disconnected).
fn forward_controls(mut routes: Vec<Route>) {
    while !routes.is_empty() {
        let mut select = Select::new();
        for (_, rx, _) in &routes {
            select.recv(rx);
        }
        let op = select.select();
        let i = op.index();
        match op.recv(&routes[i].1) {
            Ok(control) => {
                let ((vertex, subtask), _, worker) = &routes[i];
                // A worker that is gone no longer listens; the attempt is ending.
                let _ = worker.send(control_to_proto(*vertex, *subtask, control));
            }
            Err(_) => {
                routes.swap_remove(i);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The worker's end
// ---------------------------------------------------------------------------------------------

/// Sends a task's acknowledgements and declines into the worker's ordered event queue.
pub struct WorkerResponder(pub Sender<CheckpointEvent>);

impl CheckpointResponder for WorkerResponder {
    fn respond(&self, response: TaskResponse) {
        let _ = self.0.send(response_to_proto(response));
    }
}

/// Delivers the control messages of the job master's stream to the tasks' inboxes.
pub fn route_control(inboxes: &HashMap<(u32, u32), Sender<TaskControl>>, m: &CheckpointControlMessage) {
    match (inboxes.get(&(m.vertex, m.subtask)), control_from_proto(m)) {
        (Some(inbox), Ok(control)) => {
            let _ = inbox.send(control);
        }
        (None, _) => tracing::warn!(
            vertex = m.vertex,
            subtask = m.subtask,
            checkpoint_id = m.checkpoint_id,
            "checkpoint message for a task that does not run in this worker"
        ),
        (_, Err(e)) => tracing::warn!(error = %e, "ignoring a checkpoint message"),
    }
}

/// The most event bytes one `ReportCheckpointEvents` call carries (it may carry one larger
/// acknowledgement alone).
pub const EVENT_BATCH_BYTES: usize = 8 << 20;

/// Takes the next batch of events from `queue`: waits for one, then takes what is waiting,
/// up to [`EVENT_BATCH_BYTES`]. `None` when the queue is closed and empty.
pub fn next_batch(queue: &Receiver<CheckpointEvent>) -> Option<Vec<CheckpointEvent>> {
    let first = queue.recv().ok()?;
    let mut bytes = event_bytes(&first);
    let mut batch = vec![first];
    while bytes < EVENT_BATCH_BYTES {
        match queue.try_recv() {
            Ok(e) => {
                bytes += event_bytes(&e);
                batch.push(e);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

fn event_bytes(e: &CheckpointEvent) -> usize {
    e.operators.iter().map(|o| o.state.as_ref().map_or(0, Vec::len) + o.operator_id.len()).sum::<usize>() + 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> CompletedCheckpoint {
        CompletedCheckpoint {
            job_id: "j".into(),
            id: 7,
            timestamp: 1234,
            kind: CheckpointType::Checkpoint,
            operators: vec![OperatorState {
                id: "op".into(),
                uid: Some("u".into()),
                name: "Source".into(),
                parallelism: 3,
                max_parallelism: 128,
                coordinator: Some(vec![0; 8]),
                subtasks: vec![
                    SubtaskState { finished: false, state: Some(vec![1]), in_flight: None },
                    SubtaskState { finished: true, ..Default::default() },
                    SubtaskState { finished: false, state: Some(vec![3, 3]), in_flight: Some(vec![7]) },
                ],
            }],
        }
    }

    fn described(parallelism: usize) -> Vec<CheckpointedOperator> {
        vec![CheckpointedOperator {
            id: "op".into(),
            uid: Some("u".into()),
            name: "Source".into(),
            vertex: 0,
            parallelism,
            max_parallelism: 128,
            source: true,
        }]
    }

    #[test]
    fn a_worker_gets_the_state_of_its_own_subtasks_only() {
        let c = checkpoint();
        let ops = described(3);
        let mine = checkpoint_from_proto(checkpoint_for_worker(&c, &[0, 1], &ops)).unwrap();
        let op = &mine.operators[0];
        assert_eq!(op.subtasks[0].state, Some(vec![1]));
        assert!(op.subtasks[1].finished, "finished flags travel for every subtask");
        assert_eq!(op.subtasks[2], SubtaskState { finished: false, state: None, in_flight: None });
        assert_eq!((op.coordinator.clone(), op.uid.clone()), (Some(vec![0; 8]), Some("u".into())));
        let all = checkpoint_from_proto(checkpoint_for_worker(&c, &[0, 1, 2], &ops)).unwrap();
        assert_eq!(all, c, "with every slot the checkpoint travels unchanged");
    }

    #[test]
    fn after_rescaling_every_worker_gets_every_old_subtasks_state() {
        let c = checkpoint();
        for p in [2, 5] {
            let one_slot = checkpoint_from_proto(checkpoint_for_worker(&c, &[1], &described(p))).unwrap();
            assert_eq!(one_slot, c, "at parallelism {p} each new subtask picks its share of all old state");
        }
    }

    #[test]
    fn state_of_operators_the_job_does_not_have_stays_behind() {
        let c = checkpoint();
        let shipped = checkpoint_from_proto(checkpoint_for_worker(&c, &[0, 1, 2], &[])).unwrap();
        assert!(shipped.operators.is_empty(), "{shipped:?}");
    }

    #[test]
    fn a_checkpoint_of_unknown_type_is_an_error() {
        let mut p = checkpoint_for_worker(&checkpoint(), &[0], &described(3));
        p.kind = "SNAPSHOT".into();
        let e = checkpoint_from_proto(p).unwrap_err().to_string();
        assert!(e.contains("checkpoint 7") && e.contains("SNAPSHOT"), "{e}");
    }

    #[test]
    fn control_messages_travel_unchanged() {
        let barrier = CheckpointBarrier { id: 3, timestamp: 99, kind: CheckpointType::Savepoint };
        for c in [
            TaskControl::TriggerCheckpoint(barrier),
            TaskControl::CheckpointComplete(4),
            TaskControl::CheckpointAborted(5),
        ] {
            let m = control_to_proto(2, 1, c);
            assert_eq!((m.vertex, m.subtask), (2, 1));
            assert_eq!(control_from_proto(&m).unwrap(), c);
        }
    }

    #[test]
    fn batches_keep_the_order_of_events() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let responder = WorkerResponder(tx.clone());
        let mut snapshot = TaskSnapshot::new(1);
        snapshot.push(&Arc::from("op"), Some(vec![9; 10]));
        responder.respond(TaskResponse::Acknowledge { vertex: 0, subtask: 1, snapshot });
        tx.send(task_ended_event(0, 1, true)).unwrap();
        drop((tx, responder));
        let batch = next_batch(&rx).unwrap();
        let kinds: Vec<EventKind> = batch.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, [EventKind::Acknowledge, EventKind::TaskFinished]);
        assert_eq!(batch[0].operators[0].state, Some(vec![9; 10]));
        assert!(next_batch(&rx).is_none(), "a closed, empty queue ends the batches");
    }
}
