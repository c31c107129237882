//! The broadcast state pattern on real jobs: per-sensor-type thresholds broadcast to a keyed
//! stream of readings at parallelism 2, and to a non-keyed stream.
//!
//! Rules come in versions, and each reading names the version it must be judged by, so the
//! expected output does not depend on whether a rule or a reading reaches a subtask first: a
//! reading whose rule has not arrived waits in keyed state, and the rule, when it comes, judges
//! the waiting readings of every key through `apply_to_keyed_state`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use eddy::prelude::*;
use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::Batch;
use eddy_runtime::output::Emitter;
use eddy_runtime::{OneInputOperator, OperatorContext};
use serde::{Deserialize, Serialize};

const SENSORS: u64 = 40;
const KINDS: u8 = 3;
const VERSIONS: u32 = 4;
const JOB_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    sensor: u64,
    seq: u64,
    kind: u8,
    /// The rule version this reading is judged by.
    version: u32,
    value: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rule {
    kind: u8,
    version: u32,
    threshold: i64,
}

/// `(sensor, seq, over the threshold, readings of the sensor judged so far)`.
type Judged = (u64, u64, bool, u64);
/// The distinct `(sensor, seq, over the threshold)` judgements.
type Verdicts = BTreeSet<(u64, u64, bool)>;

fn reading(i: u64) -> Reading {
    let sensor = i % SENSORS;
    Reading {
        sensor,
        seq: i,
        kind: (sensor % KINDS as u64) as u8,
        version: 1 + ((i / SENSORS) % VERSIONS as u64) as u32,
        value: ((i * 7919) % 100) as i64,
    }
}

fn rules() -> Vec<Rule> {
    // Versions in order, so each version updates the kind's rule.
    (1..=VERSIONS)
        .flat_map(|version| {
            (0..KINDS).map(move |kind| Rule { kind, version, threshold: 20 * version as i64 + kind as i64 })
        })
        .collect()
}

fn threshold(kind: u8, version: u32) -> i64 {
    rules().into_iter().find(|r| (r.kind, r.version) == (kind, version)).map(|r| r.threshold).unwrap()
}

#[derive(Clone)]
struct Thresholds {
    rules: MapStateDescriptor<(u8, u32), i64>,
    waiting: ListStateDescriptor<Reading>,
    judged: ValueStateDescriptor<u64>,
}

impl Thresholds {
    fn new() -> Self {
        Thresholds {
            rules: MapStateDescriptor::new("rules"),
            waiting: ListStateDescriptor::new("waiting"),
            judged: ValueStateDescriptor::new("judged"),
        }
    }
}

/// Counts the judgement in the key's state and emits it.
fn judge(
    judged: &ValueStateDescriptor<u64>,
    r: &Reading,
    threshold: i64,
    ctx: &mut KeyedContext<u64>,
    out: &mut Collector<Judged>,
) {
    let mut count = ctx.state(judged);
    let n = count.value().copied().unwrap_or(0) + 1;
    count.update(n);
    out.collect((r.sensor, r.seq, r.value > threshold, n));
}

impl KeyedBroadcastProcessFunction<u64, Reading, Rule, Judged> for Thresholds {
    fn process_element(
        &mut self,
        r: Reading,
        ctx: &mut KeyedReadOnlyContext<u64>,
        out: &mut Collector<Judged>,
    ) -> Result<()> {
        let rule = ctx.broadcast_state(&self.rules)?.get(&(r.kind, r.version)).copied();
        match rule {
            Some(t) => judge(&self.judged, &r, t, ctx, out),
            None => ctx.list_state(&self.waiting).add(r),
        }
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        rule: Rule,
        ctx: &mut KeyedBroadcastContext<u64>,
        out: &mut Collector<Judged>,
    ) -> Result<()> {
        ctx.broadcast_state(&self.rules)?.put((rule.kind, rule.version), rule.threshold);
        let (waiting, judged) = (&self.waiting, &self.judged);
        ctx.apply_to_keyed_state(waiting, |key_ctx| {
            let (ready, rest): (Vec<Reading>, Vec<Reading>) = key_ctx
                .list_state(waiting)
                .get()
                .iter()
                .cloned()
                .partition(|r| (r.kind, r.version) == (rule.kind, rule.version));
            if !ready.is_empty() {
                key_ctx.list_state(waiting).update(rest);
                for r in &ready {
                    judge(judged, r, rule.threshold, key_ctx, out);
                }
            }
            Ok(())
        })
    }
}

/// Distinct judgements and the highest count per sensor (a failed attempt's output comes again).
#[derive(Clone, Default)]
struct Judgements {
    seen: Arc<Mutex<Verdicts>>,
    max_count: Arc<Mutex<BTreeMap<u64, u64>>>,
}

impl Sink<Judged> for Judgements {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<Judged>>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter<Judged> for Judgements {
    fn write_batch(&mut self, batch: Batch<Judged>) -> Result<()> {
        let (mut seen, mut max) = (self.seen.lock().unwrap(), self.max_count.lock().unwrap());
        for (sensor, seq, over, n) in batch.values {
            seen.insert((sensor, seq, over));
            let m = max.entry(sensor).or_insert(0);
            *m = (*m).max(n);
        }
        Ok(())
    }
}

/// Passes records on; in subtask 0 of the first attempt it fails once it has passed
/// `fail_after` records and heard of a completed checkpoint since, or else at the end of its
/// input (so the attempt fails whatever the timing).
struct FailOnce {
    fail_after: Option<u64>,
    passed: u64,
    armed: bool,
    checkpoint_completed: bool,
}

impl OneInputOperator for FailOnce {
    type In = Judged;
    type Out = Judged;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        if ctx.subtask_index != 0 || ctx.attempt > 0 {
            self.fail_after = None;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<Judged>, out: &mut Emitter<Judged>) -> Result<()> {
        if self.armed && self.checkpoint_completed {
            return Err(EddyError::user("injected failure after a completed checkpoint"));
        }
        self.passed += batch.len() as u64;
        if self.fail_after.is_some_and(|n| self.passed >= n) {
            self.armed = true;
        }
        out.emit_batch(batch)
    }

    fn end_input(&mut self, _: &mut Emitter<Judged>) -> Result<()> {
        if self.fail_after.is_some() {
            return Err(EddyError::user("injected failure at the end of the input"));
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _: u64) -> Result<()> {
        self.checkpoint_completed = self.armed;
        Ok(())
    }
}

struct Outcome {
    restarts: usize,
    restored: bool,
    seen: Verdicts,
    max_count: BTreeMap<u64, u64>,
}

fn run_keyed(n: u64, fail_after: Option<u64>) -> Outcome {
    let mut config = Configuration::new();
    for (k, v) in [
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "5"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("execution.checkpointing.interval", "20 ms"),
    ] {
        config.set(k, v);
    }
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let f = Thresholds::new();
    let rules = env.from_collection(rules()).broadcast_with(&f.rules);
    let sink = Judgements::default();
    env.from_generator(n, reading)
        .key_by(|r: &Reading| r.sensor)
        .connect(&rules)
        .process(f)
        .uid("thresholds")
        .transform("FailOnce", move |_| {
            Ok(FailOnce { fail_after, passed: 0, armed: false, checkpoint_completed: false })
        })
        .sink_to(sink.clone(), "judgements");
    let client = env.execute_async("thresholds").unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    if let Err(e) = client.wait() {
        panic!("the job failed: {e}");
    }
    let seen = sink.seen.lock().unwrap().clone();
    let max_count = sink.max_count.lock().unwrap().clone();
    Outcome {
        restarts: client.restarts(),
        restored: client.checkpoint_stats().restored.is_some(),
        seen,
        max_count,
    }
}

/// The judgements of `n` readings, and the readings per sensor.
fn model(n: u64) -> (Verdicts, BTreeMap<u64, u64>) {
    let mut seen = BTreeSet::new();
    let mut per_sensor = BTreeMap::new();
    for i in 0..n {
        let r = reading(i);
        seen.insert((r.sensor, r.seq, r.value > threshold(r.kind, r.version)));
        *per_sensor.entry(r.sensor).or_insert(0) += 1;
    }
    (seen, per_sensor)
}

fn assert_model(o: &Outcome, n: u64) {
    let (seen, per_sensor) = model(n);
    assert_eq!(o.seen.len(), seen.len(), "one judgement per reading");
    let wrong = o.seen.symmetric_difference(&seen).take(4).collect::<Vec<_>>();
    assert!(wrong.is_empty(), "judgements differ from the model, e.g. {wrong:?}");
    assert_eq!(o.max_count, per_sensor, "each sensor's count in keyed state ends at its readings");
}

#[test]
fn rules_broadcast_to_a_keyed_stream_judge_every_reading_by_its_version() {
    const N: u64 = 20_000;
    let o = run_keyed(N, None);
    assert_eq!(o.restarts, 0);
    assert_model(&o, N);
}

#[test]
fn broadcast_and_keyed_state_survive_a_failure() {
    const N: u64 = 200_000;
    let clean = run_keyed(N, None);
    assert_model(&clean, N);
    let failed = run_keyed(N, Some(20_000));
    assert_eq!(failed.restarts, 1, "one restart for the injected failure");
    assert!(failed.restored, "the second attempt restored a checkpoint");
    // The rule source had finished before the restore: readings after it are judged only
    // because the broadcast state came back.
    assert_model(&failed, N);
    assert_eq!(failed.seen, clean.seen);
    assert_eq!(failed.max_count, clean.max_count);
}

/// Non-keyed: scales values by a per-kind factor; values that come before their factor wait in
/// the function (this job does not checkpoint).
#[derive(Clone)]
struct Scale {
    factors: MapStateDescriptor<u8, i64>,
    waiting: Vec<(u8, i64)>,
}

impl BroadcastProcessFunction<(u8, i64), (u8, i64), i64> for Scale {
    fn process_element(
        &mut self,
        (kind, v): (u8, i64),
        ctx: &mut ReadOnlyBroadcastContext,
        out: &mut Collector<i64>,
    ) -> Result<()> {
        match ctx.broadcast_state(&self.factors)?.get(&kind) {
            Some(f) => out.collect(v * f),
            None => self.waiting.push((kind, v)),
        }
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        (kind, factor): (u8, i64),
        ctx: &mut BroadcastContext,
        out: &mut Collector<i64>,
    ) -> Result<()> {
        ctx.broadcast_state(&self.factors)?.put(kind, factor);
        for (_, v) in self.waiting.iter().filter(|(k, _)| *k == kind) {
            out.collect(v * factor);
        }
        self.waiting.retain(|(k, _)| *k != kind);
        Ok(())
    }
}

#[test]
fn rules_broadcast_to_a_non_keyed_stream_reach_every_subtask() {
    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    let f = Scale { factors: MapStateDescriptor::new("factors"), waiting: Vec::new() };
    let factors = env.from_collection(vec![(0u8, 10i64), (1, 100), (2, 1000)]).broadcast_with(&f.factors);
    let values: Vec<(u8, i64)> = (0..3000).map(|i| ((i % 3) as u8, i)).collect();
    let mut out = env.from_collection(values.clone()).rebalance().connect(&factors).process(f);
    out = out.set_parallelism(2);
    let mut got = out.execute_and_collect().unwrap();
    got.sort_unstable();
    let mut want: Vec<i64> = values.iter().map(|(k, v)| v * [10, 100, 1000][*k as usize]).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn an_undeclared_broadcast_state_fails_the_job_with_its_name() {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    let declared = MapStateDescriptor::<u8, i64>::new("declared");
    let f = Scale { factors: MapStateDescriptor::new("factors"), waiting: Vec::new() };
    let factors = env.from_collection(vec![(0u8, 10i64)]).broadcast_with(&declared);
    env.from_collection(vec![(0u8, 1i64)]).connect(&factors).process(f).collect_to_vec();
    let err = env.execute("undeclared").unwrap_err().to_string();
    assert!(err.contains("broadcast state 'factors'"), "{err}");
    assert!(err.contains("is not declared"), "{err}");
}
