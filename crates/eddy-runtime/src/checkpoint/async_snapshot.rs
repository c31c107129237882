//! The two phases of a task's snapshot: a short synchronous part on the task thread and an
//! asynchronous part on the task's snapshot thread.
//!
//! When a barrier passes an operator, the operator returns its state as [`SnapshotBytes`]:
//! either the bytes themselves (`Ready`), or a closure that builds them later (`Deferred`).
//! A deferred part must own everything it reads: typically a consistent, copy-on-write view of
//! the state taken in the synchronous part (the `fjall` backend's MVCC snapshot), so that the
//! task can go on changing its state while the part runs. The barrier collects the parts of
//! every chained operator into a [`ChainSnapshot`]; the task forwards the barrier and goes back
//! to its records at once.
//!
//! A snapshot with deferred parts is handed to the task's [`SnapshotWorker`], a thread started
//! with the first such snapshot. It runs the parts of one snapshot after the other, in the
//! order the task took them, and then acknowledges the checkpoint (or declines it, with the
//! error of the part that failed) through the task's `CheckpointResponder`. Once a task has a
//! worker, every later acknowledgement goes through it too, so that a task's acknowledgements
//! reach the coordinator in checkpoint order.
//!
//! A task that finishes waits for its worker before it reports its end (a finished task counts
//! as acknowledged, so its last acknowledgements must come first). A task that fails or is
//! cancelled does not wait: the worker skips what has not started and ends after the part it
//! is running.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::{EddyError, Result};

use super::{OperatorSnapshot, TaskSnapshot};
use crate::operator::panic_message;

/// The asynchronous part of an operator's snapshot: builds the state bytes off the task thread.
pub type DeferredSnapshot = Box<dyn FnOnce() -> Result<Vec<u8>> + Send>;

/// An operator's state for a checkpoint: ready now, or built by a deferred part.
pub enum SnapshotBytes {
    /// The whole snapshot was taken on the task thread.
    Ready(Vec<u8>),
    /// The synchronous part is done; this builds the bytes on the task's snapshot thread.
    Deferred(DeferredSnapshot),
}

impl fmt::Debug for SnapshotBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotBytes::Ready(bytes) => write!(f, "Ready({} bytes)", bytes.len()),
            SnapshotBytes::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

impl SnapshotBytes {
    /// The bytes, building them on the calling thread if they are deferred.
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        match self {
            SnapshotBytes::Ready(bytes) => Ok(bytes),
            SnapshotBytes::Deferred(part) => part(),
        }
    }
}

/// One operator's entry in a [`ChainSnapshot`].
struct Part {
    operator_id: Arc<str>,
    /// For errors.
    operator_name: String,
    state: Option<SnapshotBytes>,
}

/// What a checkpoint barrier collects on its way through a task's chain: one entry per
/// operator, in chain order, each ready or deferred. [`complete`](Self::complete) turns it
/// into the [`TaskSnapshot`] the task acknowledges with.
pub struct ChainSnapshot {
    pub checkpoint_id: u64,
    parts: Vec<Part>,
    /// Unaligned checkpoints: the records in flight on the task's inputs, encoded.
    pub in_flight: Option<Vec<u8>>,
    started: Instant,
    sync_duration: Option<Duration>,
}

impl fmt::Debug for ChainSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.parts.iter().map(|p| (&*p.operator_id, &p.state)).collect();
        f.debug_struct("ChainSnapshot")
            .field("checkpoint_id", &self.checkpoint_id)
            .field("parts", &parts)
            .finish()
    }
}

impl ChainSnapshot {
    /// An empty snapshot for checkpoint `checkpoint_id`; its synchronous part starts now.
    pub fn new(checkpoint_id: u64) -> Self {
        ChainSnapshot {
            checkpoint_id,
            parts: Vec::new(),
            in_flight: None,
            started: Instant::now(),
            sync_duration: None,
        }
    }

    /// Adds an operator's state, taken whole on the task thread (`None`: no state).
    pub fn push(&mut self, operator_id: &Arc<str>, state: Option<Vec<u8>>) {
        self.push_part(operator_id, "", state.map(SnapshotBytes::Ready));
    }

    /// Adds an operator's state, ready or deferred; `operator_name` names it in errors.
    pub fn push_part(&mut self, operator_id: &Arc<str>, operator_name: &str, state: Option<SnapshotBytes>) {
        let operator_name = operator_name.to_string();
        self.parts.push(Part { operator_id: operator_id.clone(), operator_name, state });
    }

    /// Whether some operator's state is still to be built off the task thread.
    pub fn is_deferred(&self) -> bool {
        self.parts.iter().any(|p| matches!(p.state, Some(SnapshotBytes::Deferred(_))))
    }

    /// Ends the synchronous part (the first call counts): the barrier has passed the chain.
    pub fn end_sync(&mut self) {
        if self.sync_duration.is_none() {
            self.sync_duration = Some(self.started.elapsed());
        }
    }

    /// Runs the deferred parts on the calling thread, in chain order, and returns the
    /// acknowledgement. A part that fails or panics is an error naming its operator.
    pub fn complete(mut self) -> Result<TaskSnapshot> {
        self.end_sync();
        let started = Instant::now();
        let checkpoint_id = self.checkpoint_id;
        let mut operators = Vec::with_capacity(self.parts.len());
        for Part { operator_id, operator_name, state } in self.parts {
            let state = match state {
                None => None,
                Some(SnapshotBytes::Ready(bytes)) => Some(bytes),
                Some(SnapshotBytes::Deferred(part)) => {
                    let name = if operator_name.is_empty() { &*operator_id } else { &operator_name };
                    let failed = |why: String| {
                        EddyError::user(format!(
                            "the asynchronous part of the snapshot of '{name}' for checkpoint \
                             {checkpoint_id} failed: {why}"
                        ))
                    };
                    match catch_unwind(AssertUnwindSafe(part)) {
                        Ok(Ok(bytes)) => Some(bytes),
                        Ok(Err(e)) => return Err(failed(e.to_string())),
                        Err(panic) => return Err(failed(format!("panicked: {}", panic_message(&panic)))),
                    }
                }
            };
            operators.push(OperatorSnapshot { operator_id, state });
        }
        Ok(TaskSnapshot {
            checkpoint_id,
            operators,
            in_flight: self.in_flight,
            sync_duration: self.sync_duration.unwrap_or_default(),
            async_duration: started.elapsed(),
        })
    }
}

/// What the worker does with a completed snapshot or a failed one.
pub(crate) type Respond = Box<dyn Fn(u64, Result<TaskSnapshot>) + Send + Sync>;

/// A task's snapshot thread: runs the deferred parts of its snapshots in order and answers
/// the coordinator. Dropping it abandons what has not started.
pub(crate) struct SnapshotWorker {
    jobs: Sender<ChainSnapshot>,
    shared: Arc<WorkerShared>,
}

struct WorkerShared {
    /// Snapshots handed over and not yet answered.
    pending: Mutex<usize>,
    answered: Condvar,
    /// The task ended without waiting: skip what has not started.
    abandoned: AtomicBool,
}

impl SnapshotWorker {
    /// Starts the thread `name`; `respond` hears every snapshot's outcome.
    pub fn start(name: String, respond: Respond) -> Result<Self> {
        let (jobs, inbox) = crossbeam_channel::unbounded::<ChainSnapshot>();
        let shared = Arc::new(WorkerShared {
            pending: Mutex::new(0),
            answered: Condvar::new(),
            abandoned: AtomicBool::new(false),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                for snapshot in inbox {
                    if !worker.abandoned.load(Ordering::Acquire) {
                        let id = snapshot.checkpoint_id;
                        respond(id, snapshot.complete());
                    }
                    let mut pending = lock(&worker.pending);
                    *pending = pending.saturating_sub(1);
                    worker.answered.notify_all();
                }
            })
            .map_err(|e| EddyError::user(format!("cannot start a snapshot thread: {e}")))?;
        Ok(SnapshotWorker { jobs, shared })
    }

    /// Queues `snapshot` behind the ones handed over before.
    pub fn submit(&self, snapshot: ChainSnapshot) {
        *lock(&self.shared.pending) += 1;
        if self.jobs.send(snapshot).is_err() {
            // The thread is gone (it only ends when this handle is dropped).
            *lock(&self.shared.pending) -= 1;
        }
    }

    /// Waits up to `timeout` for every snapshot handed over to be answered; `true` when done.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending = lock(&self.shared.pending);
        while *pending > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            pending = match self.shared.answered.wait_timeout(pending, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for SnapshotWorker {
    fn drop(&mut self) {
        // After a normal end the queue is empty; after a failure nobody waits for the rest.
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
