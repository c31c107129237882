//! Operator (non-keyed) list state of user functions: a buffering function keeps its buffer in
//! even-split list state and its counters in union list state.
//!
//! - Real jobs with checkpoints and injected failures end with exactly the result of a
//!   failure-free run. Failures are injected behind the function, in subtask 0, once it has
//!   passed its quota of records *and* heard of a completed checkpoint since, or else at the
//!   end of its input, so every attempt fails as planned whatever the timing.
//! - Rescaling 2 → 3 and 2 → 1 at the restore level: the states two subtasks wrote are handed
//!   to each new subtask as the runtime hands them after a parallelism change.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use eddy::operator_state::OperatorStateStore;
use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::Batch;
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::output::Emitter;
use eddy_runtime::time::{ClockRef, ManualClock};
use eddy_runtime::{OneInputOperator, OperatorContext};

const GROUP: usize = 7;
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// Emits records in groups of [`GROUP`]; the open group is kept in even-split list state, the
/// number of records seen per subtask in union list state as `(subtask, seen)`.
#[derive(Clone)]
struct Grouping {
    buffer: Vec<i64>,
    seen: u64,
    /// `(subtask, seen)` of every old subtask: what a union list state hands back.
    seen_by_subtask: Vec<(usize, u64)>,
    subtask: usize,
    attempt: usize,
    was_restored: bool,
    buffer_state: ListStateDescriptor<i64>,
    seen_state: ListStateDescriptor<(usize, u64)>,
}

impl Grouping {
    fn new() -> Self {
        Grouping {
            buffer: Vec::new(),
            seen: 0,
            seen_by_subtask: Vec::new(),
            subtask: 0,
            attempt: 0,
            was_restored: false,
            buffer_state: ListStateDescriptor::new("buffer"),
            seen_state: ListStateDescriptor::new("seen"),
        }
    }
}

impl FlatMapFunction<i64, Vec<i64>> for Grouping {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.index_of_this_subtask();
        self.attempt = ctx.attempt_number();
        Ok(())
    }

    fn flat_map(&mut self, v: i64, out: &mut Collector<Vec<i64>>) -> Result<()> {
        self.seen += 1;
        self.buffer.push(v);
        if self.buffer.len() == GROUP {
            out.collect(std::mem::take(&mut self.buffer));
        }
        Ok(())
    }
}

impl CheckpointedFunction for Grouping {
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let subtask = ctx.runtime_context().index_of_this_subtask();
        self.buffer = ctx.list_state(&self.buffer_state)?.get().to_vec();
        self.seen_by_subtask = ctx.union_list_state(&self.seen_state)?.get().to_vec();
        // After a rescale the subtask's own count is no longer meaningful: it starts at what
        // its old namesake had seen, if there was one.
        self.seen = self.seen_by_subtask.iter().find(|(s, _)| *s == subtask).map_or(0, |(_, n)| *n);
        self.was_restored = ctx.is_restored();
        Ok(())
    }

    fn snapshot_state(&mut self, ctx: &mut FunctionSnapshotContext) -> Result<()> {
        ctx.list_state(&self.buffer_state)?.update(self.buffer.clone());
        ctx.union_list_state(&self.seen_state)?.update(vec![(self.subtask, self.seen)]);
        Ok(())
    }
}

/// Passes records on. In subtask 0 of attempt `a < fail_after.len()` it fails once it has
/// passed `fail_after[a]` records and heard of a completed checkpoint since, or else at the end
/// of its input.
struct FailAfter {
    fail_after: Arc<Vec<u64>>,
    fails: bool,
    quota: u64,
    passed: u64,
    armed: bool,
    checkpoint_completed: bool,
}

impl OneInputOperator for FailAfter {
    type In = Vec<i64>;
    type Out = Vec<i64>;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.fails = ctx.subtask_index == 0 && ctx.attempt < self.fail_after.len();
        self.quota = self.fail_after.get(ctx.attempt).copied().unwrap_or(u64::MAX);
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<Vec<i64>>, out: &mut Emitter<Vec<i64>>) -> Result<()> {
        if self.armed && self.checkpoint_completed {
            return Err(EddyError::user("injected failure after a completed checkpoint"));
        }
        self.passed += batch.values.iter().map(|g| g.len() as u64).sum::<u64>();
        self.armed |= self.fails && self.passed >= self.quota;
        out.emit_batch(batch)
    }

    fn notify_checkpoint_complete(&mut self, _: u64) -> Result<()> {
        self.checkpoint_completed = self.armed;
        Ok(())
    }

    fn end_input(&mut self, _: &mut Emitter<Vec<i64>>) -> Result<()> {
        if self.fails {
            return Err(EddyError::user("injected failure at the end of the input"));
        }
        Ok(())
    }
}

/// Collects the distinct groups it receives (a failed attempt's output comes again).
#[derive(Clone, Default)]
struct Groups(Arc<Mutex<BTreeSet<Vec<i64>>>>);

impl Sink<Vec<i64>> for Groups {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<Vec<i64>>>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter<Vec<i64>> for Groups {
    fn write_batch(&mut self, batch: Batch<Vec<i64>>) -> Result<()> {
        self.0.lock().unwrap().extend(batch.values);
        Ok(())
    }
}

struct Outcome {
    restarts: usize,
    restored: bool,
    groups: BTreeSet<Vec<i64>>,
}

fn run(n: i64, fail_after: Vec<u64>) -> Outcome {
    let mut config = Configuration::new();
    for (k, v) in [
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "10"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("execution.checkpointing.interval", "20 ms"),
    ] {
        config.set(k, v);
    }
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let groups = Groups::default();
    // One split per subtask, each read in order: the groups do not depend on timing.
    let fail_after = Arc::new(fail_after);
    env.from_generator(n as u64, |i| i as i64 + 1)
        .flat_map_checkpointed(Grouping::new())
        .uid("grouping")
        .transform("FailAfter", move |_| {
            Ok(FailAfter {
                fail_after: fail_after.clone(),
                fails: false,
                quota: u64::MAX,
                passed: 0,
                armed: false,
                checkpoint_completed: false,
            })
        })
        .sink_to(groups.clone(), "groups");
    let client = env.execute_async("grouping").unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    if let Err(e) = client.wait() {
        panic!("the job failed: {e}");
    }
    let groups = groups.0.lock().unwrap().clone();
    Outcome { restarts: client.restarts(), restored: client.checkpoint_stats().restored.is_some(), groups }
}

/// Every record is in exactly one emitted group (`n` is chosen so that each subtask's split
/// ends with a full group).
fn assert_each_record_once(o: &Outcome, n: i64) {
    let mut all: Vec<i64> = o.groups.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all.len(), n as usize, "records in groups, duplicates included");
    let wrong = all.iter().zip(1..=n).find(|(a, b)| **a != *b);
    assert!(wrong.is_none(), "every record once: first mismatch (found, expected) {wrong:?}");
    assert!(o.groups.iter().all(|g| g.len() == GROUP));
}

#[test]
fn buffered_records_survive_failures_exactly_once() {
    // Two generator splits of 200_004 = 7 × 28_572 records.
    const N: i64 = 400_008;
    let clean = run(N, vec![]);
    assert_eq!(clean.restarts, 0);
    assert_each_record_once(&clean, N);

    let failed = run(N, vec![50_000, 120_000]);
    assert_eq!(failed.restarts, 2, "one restart per injected failure");
    assert!(failed.restored, "the last attempt restored a checkpoint");
    assert_each_record_once(&failed, N);
    // Each subtask reads one generator split in order, so the groups are those of the run
    // without failures: a buffer lost or doubled in a restore would change them.
    let differing = failed.groups.symmetric_difference(&clean.groups).take(4).collect::<Vec<_>>();
    assert!(differing.is_empty(), "groups differ from the failure-free run, e.g. {differing:?}");
}

// ---- rescaling at the restore level ----

fn runtime(subtask: usize, parallelism: usize) -> RuntimeContext {
    RuntimeContext::new(OperatorContext {
        job_name: "rescale".into(),
        operator_name: "grouping".into(),
        subtask_index: subtask,
        parallelism,
        max_parallelism: 128,
        attempt: 1,
        runtime_mode: RuntimeMode::Streaming,
        batch_size: 1024,
        clock: ClockRef(Arc::new(ManualClock::new(0))),
        auto_watermark_interval: 200,
        checkpointing: true,
        state_backend: Default::default(),
        metrics: Default::default(),
    })
}

/// The state an old subtask writes with `buffer` open and `seen` records seen.
fn old_subtask_state(subtask: usize, buffer: Vec<i64>, seen: u64) -> Vec<u8> {
    let mut f = Grouping::new();
    let mut store = OperatorStateStore::new("grouping");
    let rt = runtime(subtask, 2);
    f.initialize_state(&mut FunctionInitializationContext::new(&mut store, false, &rt)).unwrap();
    assert!(!f.was_restored);
    f.subtask = subtask;
    f.buffer = buffer;
    f.seen = seen;
    f.snapshot_state(&mut FunctionSnapshotContext::new(&mut store, 7, 0)).unwrap();
    store.snapshot().unwrap()
}

/// The function of new subtask `subtask` of `parallelism`, restored from `states`.
fn restore(states: &[(usize, Vec<u8>)], subtask: usize, parallelism: usize) -> Grouping {
    let restored = RestoredState {
        states: states.to_vec(),
        old_parallelism: 2,
        subtask,
        parallelism,
        max_parallelism: 128,
        operator_name: "grouping".into(),
    };
    let mut store = OperatorStateStore::new("grouping");
    store.restore(&restored).unwrap();
    let mut f = Grouping::new();
    let rt = runtime(subtask, parallelism);
    f.initialize_state(&mut FunctionInitializationContext::new(&mut store, true, &rt)).unwrap();
    assert!(f.was_restored);
    f
}

#[test]
fn rescaling_deals_out_even_split_state_and_hands_union_state_to_everyone() {
    let states =
        vec![(0, old_subtask_state(0, vec![1, 2, 3, 4, 5], 40)), (1, old_subtask_state(1, vec![11, 12], 30))];
    let union = vec![(0, 40), (1, 30)];

    // 2 → 3: the elements of both lists, in old subtask order, dealt out round robin.
    let new: Vec<Grouping> = (0..3).map(|i| restore(&states, i, 3)).collect();
    assert_eq!(new[0].buffer, vec![1, 4, 12]);
    assert_eq!(new[1].buffer, vec![2, 5]);
    assert_eq!(new[2].buffer, vec![3, 11]);
    for f in &new {
        assert_eq!(f.seen_by_subtask, union, "union state: every subtask gets all of it");
    }
    assert_eq!((new[0].seen, new[1].seen, new[2].seen), (40, 30, 0));

    // 2 → 1: one subtask takes everything, of both kinds.
    let single = restore(&states, 0, 1);
    assert_eq!(single.buffer, vec![1, 2, 3, 4, 5, 11, 12]);
    assert_eq!(single.seen_by_subtask, union);

    // And back: 3 → 2 restores what the three wrote, nothing lost or doubled.
    let written: Vec<(usize, Vec<u8>)> =
        new.iter().enumerate().map(|(i, f)| (i, old_subtask_state(i, f.buffer.clone(), f.seen))).collect();
    let restored = RestoredState {
        states: written,
        old_parallelism: 3,
        subtask: 0,
        parallelism: 2,
        max_parallelism: 128,
        operator_name: "grouping".into(),
    };
    let mut all = Vec::new();
    for subtask in 0..2 {
        let mut store = OperatorStateStore::new("grouping");
        store.restore(&RestoredState { subtask, ..restored.clone() }).unwrap();
        all.extend(
            store.list_state(&ListStateDescriptor::<i64>::new("buffer")).unwrap().get().iter().copied(),
        );
    }
    all.sort_unstable();
    assert_eq!(all, vec![1, 2, 3, 4, 5, 11, 12]);
}

#[test]
fn without_a_rescale_each_subtask_gets_its_own_lists_back() {
    let states = [(1, old_subtask_state(1, vec![11, 12], 30))];
    let restored = RestoredState {
        states: states.to_vec(),
        old_parallelism: 2,
        subtask: 1,
        parallelism: 2,
        max_parallelism: 128,
        operator_name: "grouping".into(),
    };
    let mut store = OperatorStateStore::new("grouping");
    store.restore(&restored).unwrap();
    let mut f = Grouping::new();
    let rt = runtime(1, 2);
    f.initialize_state(&mut FunctionInitializationContext::new(&mut store, true, &rt)).unwrap();
    assert_eq!((f.buffer, f.seen), (vec![11, 12], 30));
}
