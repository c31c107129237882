//! Every DataStream operator and partitioner, run end to end on the local mini-cluster.
//!
//! Each test computes what it expects from its input with plain Rust (loops, maps), never from
//! a previous run of the engine. Routing is observed through process functions that record the
//! subtask (`RuntimeContext::index_of_this_subtask`) each record reached.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use eddy::prelude::*;
use eddy::{DataStream, KeyedStream};
use eddy_core::keygroup::assign_key_to_operator;
use serde_json::Value;

fn env(parallelism: usize) -> StreamExecutionEnvironment {
    StreamExecutionEnvironment::local().with_parallelism(parallelism)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Tags every record with the index of the subtask that processed it.
#[derive(Clone, Default)]
struct TagSubtask {
    index: usize,
}

impl<T: Data> ProcessFunction<T, (usize, T)> for TagSubtask {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.index = ctx.index_of_this_subtask();
        Ok(())
    }

    fn process_element(&mut self, value: T, _: &mut Context, out: &mut Collector<(usize, T)>) -> Result<()> {
        out.collect((self.index, value));
        Ok(())
    }
}

/// `stream` seen by a tagging operator of the given parallelism.
fn tag_subtask<T: Data>(stream: &DataStream<T>, parallelism: usize) -> DataStream<(usize, T)> {
    stream.process(TagSubtask::default()).set_parallelism(parallelism)
}

fn count_per_subtask<T>(tagged: &[(usize, T)], parallelism: usize) -> Vec<usize> {
    let mut counts = vec![0; parallelism];
    for (i, _) in tagged {
        counts[*i] += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// One-input transformations
// ---------------------------------------------------------------------------------------------

#[test]
fn map_applies_the_function_to_every_record() {
    let input: Vec<i64> = (0..2_000).map(|i| i * 7 - 300).collect();
    let expected = sorted(input.iter().map(|x| format!("v{}", x * 3)).collect());
    let got =
        env(3).from_collection(input).map(|x: i64| format!("v{}", x * 3)).execute_and_collect().unwrap();
    assert_eq!(sorted(got), expected);
}

#[test]
fn flat_map_emits_zero_or_more_records_per_input() {
    let input: Vec<u32> = (0..60).collect();
    let mut expected = Vec::new();
    for &x in &input {
        for k in 0..x % 5 {
            expected.push((x, k));
        }
    }
    let got = env(2)
        .from_collection(input)
        .flat_map(|x: u32, out: &mut Collector<(u32, u32)>| {
            for k in 0..x % 5 {
                out.collect((x, k));
            }
        })
        .execute_and_collect()
        .unwrap();
    assert_eq!(sorted(got), sorted(expected));
}

#[test]
fn filter_keeps_exactly_the_matching_records() {
    let expected: Vec<i64> = (1..=5_000).filter(|x| x % 3 == 0 || x % 7 == 1).collect();
    let got =
        env(3).from_sequence(1, 5_000).filter(|x| x % 3 == 0 || x % 7 == 1).execute_and_collect().unwrap();
    assert_eq!(sorted(got), expected);
}

/// Evens (times ten) to the main output, odds (as text) to a side output.
#[derive(Clone)]
struct SplitOdds {
    odds: OutputTag<String>,
}

impl ProcessFunction<i64, i64> for SplitOdds {
    fn process_element(&mut self, v: i64, ctx: &mut Context, out: &mut Collector<i64>) -> Result<()> {
        if v % 2 == 0 {
            out.collect(v * 10);
        } else {
            ctx.output(&self.odds, format!("odd {v}"));
        }
        Ok(())
    }
}

#[test]
fn process_function_writes_main_and_side_output() {
    let env = env(2);
    let odds = OutputTag::<String>::new("odds");
    let main = env.from_sequence(0, 999).process(SplitOdds { odds: odds.clone() });
    let side = main.get_side_output(&odds).collect_to_vec();
    let kept = main.collect_to_vec();
    env.execute("side outputs").unwrap();

    let expected_main: Vec<i64> = (0..1000).filter(|v| v % 2 == 0).map(|v| v * 10).collect();
    let expected_side: Vec<String> = (0..1000).filter(|v| v % 2 != 0).map(|v| format!("odd {v}")).collect();
    assert_eq!(sorted(kept.take()), sorted(expected_main));
    assert_eq!(sorted(side.take()), sorted(expected_side));
}

// ---------------------------------------------------------------------------------------------
// Keyed streams: reduce and the aggregations
// ---------------------------------------------------------------------------------------------

/// `(key, id, value)`: `id` is unique per record, so a result shows which record it came from.
type Rec = (String, i64, i64);
type KeyOf = fn(&Rec) -> String;

fn key_of(r: &Rec) -> String {
    r.0.clone()
}

/// Five keys; values in 0..13, so every key sees the same value many times (ties).
fn keyed_input() -> Vec<Rec> {
    (0..300i64).map(|i| (format!("k{}", i % 5), i, (i * 7919 + 3) % 13)).collect()
}

/// The records of each key, in the order they were emitted.
fn group_by_key<T: Clone>(records: &[T], key: impl Fn(&T) -> String) -> BTreeMap<String, Vec<T>> {
    let mut groups: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().push(r.clone());
    }
    groups
}

/// What a running aggregation emits per key in STREAMING mode: its value after every record.
fn running<T: Clone>(
    input: &[T],
    key: impl Fn(&T) -> String,
    step: impl Fn(T, T) -> T,
) -> BTreeMap<String, Vec<T>> {
    let mut acc: HashMap<String, T> = HashMap::new();
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for r in input {
        let k = key(r);
        let next = match acc.remove(&k) {
            Some(a) => step(a, r.clone()),
            None => r.clone(),
        };
        acc.insert(k.clone(), next.clone());
        out.entry(k).or_default().push(next);
    }
    out
}

/// Runs `aggregate` over [`keyed_input`] keyed by the first field, at parallelism 3.
fn run_aggregation(
    mode: RuntimeMode,
    aggregate: impl Fn(&KeyedStream<Rec, String, KeyOf>) -> DataStream<Rec>,
) -> Vec<Rec> {
    let env = env(3);
    env.set_runtime_mode(mode);
    let keyed = env.from_collection(keyed_input()).key_by(key_of as KeyOf);
    aggregate(&keyed).execute_and_collect().unwrap()
}

/// Checks both modes: STREAMING emits the running value per input record (in order per key),
/// BATCH only the final value per key.
fn check_aggregation(
    aggregate: impl Fn(&KeyedStream<Rec, String, KeyOf>) -> DataStream<Rec>,
    step: impl Fn(Rec, Rec) -> Rec,
) {
    let expected = running(&keyed_input(), key_of, step);

    let streaming = run_aggregation(RuntimeMode::Streaming, &aggregate);
    assert_eq!(streaming.len(), keyed_input().len(), "STREAMING emits one result per input record");
    assert_eq!(group_by_key(&streaming, key_of), expected);

    let batch = run_aggregation(RuntimeMode::Batch, &aggregate);
    let finals: Vec<Rec> = expected.values().map(|v| v.last().unwrap().clone()).collect();
    assert_eq!(sorted(batch), sorted(finals), "BATCH emits the final result once per key");
}

#[test]
fn reduce_combines_records_per_key() {
    check_aggregation(
        |k| k.reduce(|a: Rec, b: Rec| (a.0, a.1.max(b.1), (a.2 * 3 + b.2) % 1_000_003)),
        |a, b| (a.0, a.1.max(b.1), (a.2 * 3 + b.2) % 1_000_003),
    );
}

#[test]
fn sum_adds_the_field_and_keeps_the_first_records_other_fields() {
    check_aggregation(|k| k.sum(|r: &mut Rec| &mut r.2), |a, b| (a.0, a.1, a.2 + b.2));
    // Flink's `sum`: the non-aggregated fields are those of the key's first record.
    let out = run_aggregation(RuntimeMode::Batch, |k| k.sum(|r: &mut Rec| &mut r.2));
    for r in out {
        let first = keyed_input().into_iter().find(|x| x.0 == r.0).unwrap();
        assert_eq!(r.1, first.1, "{r:?}");
    }
}

#[test]
fn min_keeps_the_first_records_other_fields_with_the_minimum() {
    check_aggregation(|k| k.min(|r: &mut Rec| &mut r.2), |a, b| (a.0, a.1, a.2.min(b.2)));
    let out = run_aggregation(RuntimeMode::Streaming, |k| k.min(|r: &mut Rec| &mut r.2));
    for r in out {
        let first = keyed_input().into_iter().find(|x| x.0 == r.0).unwrap();
        assert_eq!(r.1, first.1, "`min` must not take other fields from the minimal record: {r:?}");
    }
}

#[test]
fn max_keeps_the_first_records_other_fields_with_the_maximum() {
    check_aggregation(|k| k.max(|r: &mut Rec| &mut r.2), |a, b| (a.0, a.1, a.2.max(b.2)));
    let out = run_aggregation(RuntimeMode::Batch, |k| k.max(|r: &mut Rec| &mut r.2));
    for r in out {
        let max = keyed_input().iter().filter(|x| x.0 == r.0).map(|x| x.2).max().unwrap();
        let first = keyed_input().into_iter().find(|x| x.0 == r.0).unwrap();
        assert_eq!((r.1, r.2), (first.1, max), "{r:?}");
    }
}

#[test]
fn min_by_returns_the_whole_record_with_the_minimum_first_on_ties() {
    check_aggregation(|k| k.min_by(|r: &mut Rec| &mut r.2), |a, b| if b.2 < a.2 { b } else { a });
    let out = run_aggregation(RuntimeMode::Batch, |k| k.min_by(|r: &mut Rec| &mut r.2));
    for r in out {
        let min = keyed_input().iter().filter(|x| x.0 == r.0).map(|x| x.2).min().unwrap();
        let first_min = keyed_input().into_iter().find(|x| x.0 == r.0 && x.2 == min).unwrap();
        assert_eq!(r, first_min, "the first record holding the minimum");
    }
}

#[test]
fn max_by_returns_the_whole_record_with_the_maximum_first_on_ties() {
    check_aggregation(|k| k.max_by(|r: &mut Rec| &mut r.2), |a, b| if b.2 > a.2 { b } else { a });
    let out = run_aggregation(RuntimeMode::Batch, |k| k.max_by(|r: &mut Rec| &mut r.2));
    for r in out {
        let max = keyed_input().iter().filter(|x| x.0 == r.0).map(|x| x.2).max().unwrap();
        let first_max = keyed_input().into_iter().find(|x| x.0 == r.0 && x.2 == max).unwrap();
        assert_eq!(r, first_max, "the first record holding the maximum");
    }
}

/// Emits `(current key, the record's own key, subtask, parallelism, max parallelism)`.
#[derive(Clone, Default)]
struct EchoKey {
    subtask: usize,
    parallelism: usize,
    max_parallelism: usize,
}

type Echo = (String, String, usize, usize, usize);

impl KeyedProcessFunction<String, (String, i64), Echo> for EchoKey {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.index_of_this_subtask();
        self.parallelism = ctx.number_of_parallel_subtasks();
        self.max_parallelism = ctx.max_number_of_parallel_subtasks();
        Ok(())
    }

    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<Echo>,
    ) -> Result<()> {
        out.collect((ctx.current_key().clone(), v.0, self.subtask, self.parallelism, self.max_parallelism));
        Ok(())
    }
}

#[test]
fn keyed_process_function_sees_the_key_of_each_record() {
    let input: Vec<(String, i64)> = (0..400).map(|i| (format!("user-{}", i % 37), i)).collect();
    let got = env(4)
        .from_collection(input.clone())
        .key_by(|r: &(String, i64)| r.0.clone())
        .process(EchoKey::default())
        .execute_and_collect()
        .unwrap();
    assert_eq!(got.len(), input.len());
    let mut subtask_of: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for (current, own, subtask, parallelism, max_parallelism) in &got {
        assert_eq!(current, own, "current_key is the key of the record being processed");
        assert_eq!(*parallelism, 4);
        // Keys are routed by key group, as in Flink.
        assert_eq!(*subtask, assign_key_to_operator(own, *max_parallelism, *parallelism), "{own}");
        subtask_of.entry(own.clone()).or_default().insert(*subtask);
    }
    assert!(subtask_of.values().all(|s| s.len() == 1), "a key lives in one subtask: {subtask_of:?}");
    let used: BTreeSet<usize> = subtask_of.values().flatten().copied().collect();
    assert!(used.len() > 1, "37 keys should spread over more than one of 4 subtasks");
}

// ---------------------------------------------------------------------------------------------
// Multiple inputs: union and connect
// ---------------------------------------------------------------------------------------------

#[test]
fn union_of_three_streams_holds_all_their_records() {
    let env = env(2);
    let a = env.from_collection((0..100i64).collect());
    let b = env.from_sequence(1_000, 1_300);
    let c = env.from_generator(250, |i| -(i as i64));
    let got = a.union(&b).union(&c).map(|x| x).execute_and_collect().unwrap();
    let mut expected: Vec<i64> = (0..100).collect();
    expected.extend(1_000..=1_300);
    expected.extend((0..250).map(|i| -i));
    assert_eq!(sorted(got), sorted(expected));
}

#[test]
fn co_map_maps_each_input_with_its_own_function() {
    let env = env(3);
    let numbers = env.from_sequence(1, 500);
    let words = env.from_collection((0..300).map(|i| format!("w{i}")).collect::<Vec<_>>());
    let got = numbers
        .connect(&words)
        .co_map(|n: i64| format!("n:{}", n * 2), |w: String| format!("s:{}", w.len()))
        .execute_and_collect()
        .unwrap();
    let mut expected: Vec<String> = (1..=500).map(|n| format!("n:{}", n * 2)).collect();
    expected.extend((0..300).map(|i| format!("s:{}", format!("w{i}").len())));
    assert_eq!(sorted(got), sorted(expected));
}

#[test]
fn co_flat_map_emits_any_number_of_records_per_input() {
    let env = env(2);
    let first = env.from_collection((0..40u32).collect::<Vec<_>>());
    let second = env.from_collection(vec!["a b c".to_string(), String::new(), "d e".to_string()]);
    let got = first
        .connect(&second)
        .co_flat_map(
            |n: u32, out: &mut Collector<String>| {
                for k in 0..n % 3 {
                    out.collect(format!("{n}.{k}"));
                }
            },
            |line: String, out: &mut Collector<String>| {
                for w in line.split_whitespace() {
                    out.collect(w.to_string());
                }
            },
        )
        .execute_and_collect()
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    for n in 0..40u32 {
        expected.extend((0..n % 3).map(|k| format!("{n}.{k}")));
    }
    expected.extend(["a", "b", "c", "d", "e"].map(String::from));
    assert_eq!(sorted(got), sorted(expected));
}

/// Sums the first input, counts characters of the second; negative numbers go to a side output.
#[derive(Clone)]
struct CoSummary {
    negatives: OutputTag<i64>,
}

impl CoProcessFunction<i64, String, String> for CoSummary {
    fn process_element1(&mut self, v: i64, ctx: &mut Context, out: &mut Collector<String>) -> Result<()> {
        if v < 0 {
            ctx.output(&self.negatives, v);
        } else {
            out.collect(format!("number {v}"));
        }
        Ok(())
    }

    fn process_element2(&mut self, v: String, _: &mut Context, out: &mut Collector<String>) -> Result<()> {
        out.collect(format!("text {} ({})", v, v.len()));
        Ok(())
    }
}

#[test]
fn co_process_handles_both_inputs_and_side_outputs() {
    let env = env(2);
    let negatives = OutputTag::<i64>::new("negatives");
    let numbers = env.from_sequence(-50, 150);
    let texts = env.from_collection((0..80).map(|i| "x".repeat(i % 9)).collect::<Vec<_>>());
    let main = numbers.connect(&texts).co_process(CoSummary { negatives: negatives.clone() });
    let side = main.get_side_output(&negatives).collect_to_vec();
    let out = main.collect_to_vec();
    env.execute("co-process").unwrap();

    let mut expected: Vec<String> = (0..=150).map(|v| format!("number {v}")).collect();
    expected.extend((0..80).map(|i| format!("text {} ({})", "x".repeat(i % 9), i % 9)));
    assert_eq!(sorted(out.take()), sorted(expected));
    assert_eq!(sorted(side.take()), (-50..0).collect::<Vec<i64>>());
}

/// Emits `(key, input number, subtask)` for every record of either input.
#[derive(Clone, Default)]
struct WhereKeysMeet {
    subtask: usize,
}

impl CoProcessFunction<(u32, i64), (u32, String), (u32, u8, usize)> for WhereKeysMeet {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.index_of_this_subtask();
        Ok(())
    }

    fn process_element1(
        &mut self,
        v: (u32, i64),
        _: &mut Context,
        out: &mut Collector<(u32, u8, usize)>,
    ) -> Result<()> {
        out.collect((v.0, 1, self.subtask));
        Ok(())
    }

    fn process_element2(
        &mut self,
        v: (u32, String),
        _: &mut Context,
        out: &mut Collector<(u32, u8, usize)>,
    ) -> Result<()> {
        out.collect((v.0, 2, self.subtask));
        Ok(())
    }
}

#[test]
fn connected_key_by_brings_equal_keys_of_both_inputs_to_one_subtask() {
    let env = env(4);
    let first = env.from_collection((0..500i64).map(|i| ((i % 61) as u32, i)).collect::<Vec<_>>());
    let second = env.from_sequence(0, 299).map(|i| ((i % 61) as u32, format!("s{i}")));
    let got = first
        .connect(&second)
        .key_by(|a: &(u32, i64)| a.0, |b: &(u32, String)| b.0)
        .co_process(WhereKeysMeet::default())
        .execute_and_collect()
        .unwrap();
    assert_eq!(got.len(), 800);
    let mut seen: BTreeMap<u32, (BTreeSet<u8>, BTreeSet<usize>)> = BTreeMap::new();
    for (key, input, subtask) in got {
        let e = seen.entry(key).or_default();
        e.0.insert(input);
        e.1.insert(subtask);
    }
    assert_eq!(seen.len(), 61);
    for (key, (inputs, subtasks)) in &seen {
        assert_eq!(inputs.len(), 2, "key {key} arrives from both inputs");
        assert_eq!(subtasks.len(), 1, "key {key} of both inputs must meet in one subtask: {subtasks:?}");
    }
    let used: BTreeSet<usize> = seen.values().flat_map(|(_, s)| s.iter().copied()).collect();
    assert!(used.len() > 1, "61 keys should spread over more than one of 4 subtasks");
}

// ---------------------------------------------------------------------------------------------
// Partitioners
// ---------------------------------------------------------------------------------------------

#[test]
fn forward_sends_subtask_i_to_subtask_i() {
    let env = env(3);
    let upstream = tag_subtask(&env.from_collection((0..3_000i64).collect()).rebalance(), 3);
    let downstream = upstream.forward().process(TagSubtask::default()).set_parallelism(3).disable_chaining();
    let got = downstream.execute_and_collect().unwrap();
    assert_eq!(sorted(got.iter().map(|(_, (_, v))| *v).collect()), (0..3_000).collect::<Vec<_>>());
    for (down, (up, v)) in &got {
        assert_eq!(down, up, "record {v} went from subtask {up} to subtask {down}");
    }
    let used: BTreeSet<usize> = got.iter().map(|(d, _)| *d).collect();
    assert_eq!(used.len(), 3, "every subtask forwards its share");
}

#[test]
fn forward_with_a_change_of_parallelism_is_an_error_naming_forward() {
    let env = env(2);
    env.from_sequence(1, 10).set_parallelism(2).forward().map(|x| x + 1).set_parallelism(3).collect_to_vec();
    let err = env.execute("bad forward").unwrap_err().to_string();
    assert!(err.to_lowercase().contains("forward"), "{err}");
}

#[test]
fn rebalance_spreads_records_evenly() {
    let n = 4_000;
    let env = env(2);
    let got = tag_subtask(&env.from_sequence(1, n).rebalance(), 4).execute_and_collect().unwrap();
    assert_eq!(sorted(got.iter().map(|(_, v)| *v).collect()), (1..=n).collect::<Vec<_>>());
    let counts = count_per_subtask(&got, 4);
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    // Round-robin per producer: each of the 2 producers is off by at most one per subtask.
    assert!(max - min <= 2, "uneven: {counts:?}");
}

#[test]
fn rescale_sends_each_producer_to_its_own_subset_of_consumers() {
    let (up_p, down_p) = (2usize, 4usize);
    let env = env(1);
    let upstream = tag_subtask(&env.from_collection((0..2_000i64).collect()).rebalance(), up_p);
    let got = upstream
        .rescale()
        .process(TagSubtask::default())
        .set_parallelism(down_p)
        .execute_and_collect()
        .unwrap();
    assert_eq!(sorted(got.iter().map(|(_, (_, v))| *v).collect()), (0..2_000).collect::<Vec<_>>());
    let per_producer = down_p / up_p;
    let mut pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (down, (up, _)) in &got {
        assert_eq!(down / per_producer, *up, "producer {up} may only feed its local consumers, not {down}");
        *pairs.entry((*up, *down)).or_default() += 1;
    }
    // Every consumer is used, and each producer round-robins over its consumers.
    assert_eq!(pairs.len(), down_p, "{pairs:?}");
    for up in 0..up_p {
        let counts: Vec<usize> = pairs.iter().filter(|((u, _), _)| *u == up).map(|(_, c)| *c).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{pairs:?}");
    }
}

#[test]
fn shuffle_reaches_every_subtask() {
    let n = 4_000;
    let env = env(1);
    let got = tag_subtask(&env.from_collection((0..n).collect::<Vec<i64>>()).shuffle(), 4)
        .execute_and_collect()
        .unwrap();
    assert_eq!(sorted(got.iter().map(|(_, v)| *v).collect()), (0..n).collect::<Vec<_>>());
    let counts = count_per_subtask(&got, 4);
    assert!(counts.iter().all(|&c| c > 0), "some subtask got nothing: {counts:?}");
}

#[test]
fn broadcast_sends_every_record_to_every_subtask() {
    let (n, p) = (500i64, 3usize);
    let env = env(p);
    let got = tag_subtask(&env.from_collection((0..n).collect::<Vec<_>>()).broadcast(), p)
        .execute_and_collect()
        .unwrap();
    assert_eq!(got.len(), n as usize * p);
    for subtask in 0..p {
        let values: Vec<i64> = sorted(got.iter().filter(|(s, _)| *s == subtask).map(|(_, v)| *v).collect());
        assert_eq!(values, (0..n).collect::<Vec<_>>(), "subtask {subtask}");
    }
}

#[test]
fn global_sends_everything_to_the_first_subtask() {
    let env = env(3);
    let got = tag_subtask(&env.from_sequence(1, 3_000).global(), 3).execute_and_collect().unwrap();
    assert_eq!(sorted(got.iter().map(|(_, v)| *v).collect()), (1..=3_000).collect::<Vec<_>>());
    assert!(got.iter().all(|(s, _)| *s == 0), "{:?}", count_per_subtask(&got, 3));
}

#[test]
fn partition_custom_puts_records_where_the_partitioner_says() {
    let env = env(1);
    let stream = env
        .from_collection((0..1_000i64).collect::<Vec<_>>())
        .partition_custom(|k: &i64, n: usize| (*k as usize * 7) % n, |v: &i64| *v);
    let got = tag_subtask(&stream, 4).execute_and_collect().unwrap();
    assert_eq!(sorted(got.iter().map(|(_, v)| *v).collect()), (0..1_000).collect::<Vec<_>>());
    for (subtask, v) in &got {
        assert_eq!(*subtask, (*v as usize * 7) % 4, "record {v}");
    }
}

#[test]
fn partition_custom_out_of_range_fails_the_job_naming_the_channel() {
    let env = env(1);
    let stream = env
        .from_collection((0..1_000i64).collect::<Vec<_>>())
        .partition_custom(|k: &i64, n: usize| if *k == 500 { n } else { 0 }, |v: &i64| *v);
    tag_subtask(&stream, 4).collect_to_vec();
    let err = env.execute("bad partitioner").unwrap_err().to_string();
    assert!(err.contains("channel 4"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Sources and parallelism
// ---------------------------------------------------------------------------------------------

#[test]
fn from_sequence_in_parallel_yields_each_number_exactly_once() {
    let got = env(3).from_sequence(-1_000, 20_000).execute_and_collect().unwrap();
    assert_eq!(sorted(got), (-1_000..=20_000).collect::<Vec<_>>());
}

#[test]
fn from_sequence_handles_empty_tiny_and_extreme_ranges() {
    for (from, to) in [(5, 1), (7, 7), (1, 2), (i64::MAX - 20, i64::MAX), (i64::MIN, i64::MIN + 20)] {
        let got = env(3).from_sequence(from, to).execute_and_collect().unwrap();
        let expected: Vec<i64> = if from > to { Vec::new() } else { (from..=to).collect() };
        assert_eq!(sorted(got), expected, "{from}..={to}");
    }
}

#[test]
fn from_generator_yields_generator_of_each_index_once() {
    let generate = |i: u64| (i, format!("item-{}", i * i % 101));
    let got = env(3).from_generator(5_000, generate).execute_and_collect().unwrap();
    assert_eq!(sorted(got), (0..5_000).map(generate).collect::<Vec<_>>());
}

/// Emits `(subtask, parallelism)` of the subtask that saw each record.
#[derive(Clone, Default)]
struct WhereAmI {
    at: (usize, usize),
}

impl<T: Data> ProcessFunction<T, (usize, usize)> for WhereAmI {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.at = (ctx.index_of_this_subtask(), ctx.number_of_parallel_subtasks());
        Ok(())
    }

    fn process_element(&mut self, _: T, _: &mut Context, out: &mut Collector<(usize, usize)>) -> Result<()> {
        out.collect(self.at);
        Ok(())
    }
}

#[test]
fn set_parallelism_applies_per_operator() {
    let env = env(2);
    let seen = env.from_sequence(1, 3_000).rebalance().process(WhereAmI::default()).set_parallelism(3);
    let first = seen.collect_to_vec();
    let second = seen.rebalance().process(WhereAmI::default()).set_parallelism(5).collect_to_vec();
    env.execute("parallelism").unwrap();

    let first = first.take();
    assert_eq!(first.len(), 3_000);
    assert!(first.iter().all(|(_, p)| *p == 3), "the first process runs at parallelism 3");
    assert_eq!(first.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>(), (0..3).collect());
    let second = second.take();
    assert_eq!(second.len(), 3_000);
    assert!(second.iter().all(|(_, p)| *p == 5), "the second process runs at parallelism 5");
    assert_eq!(second.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>(), (0..5).collect());
}

// ---------------------------------------------------------------------------------------------
// The execution plan: names, uids and chaining
// ---------------------------------------------------------------------------------------------

fn plan(env: &StreamExecutionEnvironment) -> Value {
    serde_json::from_str(&env.execution_plan().unwrap()).unwrap()
}

fn vertices(plan: &Value) -> &Vec<Value> {
    plan["nodes"].as_array().expect("the plan lists its vertices")
}

fn descriptions(plan: &Value) -> Vec<String> {
    vertices(plan).iter().map(|v| v["description"].as_str().unwrap().to_string()).collect()
}

/// The vertex whose chain holds the operator named `name`.
fn vertex_of<'a>(plan: &'a Value, name: &str) -> &'a Value {
    vertices(plan)
        .iter()
        .find(|v| v["chain"].as_array().unwrap().iter().any(|op| op["name"] == name))
        .unwrap_or_else(|| panic!("no vertex runs {name}: {plan:#}"))
}

fn ship_strategies_into(vertex: &Value) -> Vec<String> {
    vertex["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ship_strategy"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn map_and_filter_at_equal_parallelism_are_chained_into_one_vertex() {
    let env = env(2);
    let out = env.from_sequence(1, 100).map(|x| x * 2).filter(|x| x % 3 != 0).collect_to_vec();
    let plan = plan(&env);
    assert_eq!(descriptions(&plan), vec!["Source: Sequence Source -> Map -> Filter -> Sink: Collect Sink"]);
    assert_eq!(vertices(&plan)[0]["parallelism"], 2);
    // The chained job still computes the right thing.
    env.execute("chained").unwrap();
    let expected: Vec<i64> = (1..=100).map(|x| x * 2).filter(|x| x % 3 != 0).collect();
    assert_eq!(sorted(out.take()), expected);
}

#[test]
fn disable_chaining_puts_the_operator_in_a_vertex_of_its_own() {
    let env = env(2);
    env.from_sequence(1, 100).map(|x| x * 2).filter(|x| x % 3 != 0).disable_chaining().collect_to_vec();
    let plan = plan(&env);
    let descriptions = descriptions(&plan);
    assert!(descriptions.iter().all(|d| !d.contains("Map -> Filter")), "{descriptions:?}");
    let filter = vertex_of(&plan, "Filter");
    assert_eq!(filter["description"], "Filter", "nothing chains to or from it");
    assert_eq!(ship_strategies_into(filter), vec!["FORWARD"]);
    assert_ne!(vertex_of(&plan, "Map")["id"], filter["id"]);
    assert_ne!(vertex_of(&plan, "Sink: Collect Sink")["id"], filter["id"]);
}

#[test]
fn start_new_chain_begins_a_chain_that_continues_downstream() {
    let env = env(2);
    env.from_sequence(1, 100).map(|x| x * 2).filter(|x| x % 3 != 0).start_new_chain().collect_to_vec();
    let plan = plan(&env);
    assert_eq!(
        descriptions(&plan),
        vec!["Source: Sequence Source -> Map", "Filter -> Sink: Collect Sink"],
        "{plan:#}"
    );
    assert_eq!(ship_strategies_into(vertex_of(&plan, "Filter")), vec!["FORWARD"]);
}

#[test]
fn key_by_is_never_chained() {
    let env = env(2);
    env.from_sequence(1, 100)
        .map(|x| (x % 5, x))
        .key_by(|t: &(i64, i64)| t.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .collect_to_vec();
    let plan = plan(&env);
    let reduce = vertex_of(&plan, "Keyed Reduce");
    assert_ne!(vertex_of(&plan, "Map")["id"], reduce["id"]);
    assert_eq!(reduce["chain"][0]["name"], "Keyed Reduce", "the keyed operator heads its chain");
    assert_eq!(ship_strategies_into(reduce), vec!["HASH"]);
}

#[test]
fn a_change_of_parallelism_breaks_the_chain() {
    let env = env(2);
    env.from_sequence(1, 100).map(|x| x * 2).filter(|x| x % 3 != 0).set_parallelism(3).collect_to_vec();
    let plan = plan(&env);
    let (map, filter) = (vertex_of(&plan, "Map"), vertex_of(&plan, "Filter"));
    assert_ne!(map["id"], filter["id"]);
    assert_eq!((map["parallelism"].as_u64(), filter["parallelism"].as_u64()), (Some(2), Some(3)));
    assert_eq!(ship_strategies_into(filter), vec!["REBALANCE"]);
}

#[test]
fn name_and_uid_appear_in_the_plan() {
    let env = env(2);
    env.from_sequence(1, 100)
        .name("Numbers")
        .map(|x| x * 2)
        .name("Doubler")
        .uid("doubler-v1")
        .print()
        .name("Results")
        .uid("results-v1");
    let plan = plan(&env);
    assert_eq!(descriptions(&plan), vec!["Source: Numbers -> Doubler -> Results"]);
    let chain = vertices(&plan)[0]["chain"].as_array().unwrap().clone();
    let uids: Vec<(&str, Option<&str>)> =
        chain.iter().map(|op| (op["name"].as_str().unwrap(), op["uid"].as_str())).collect();
    assert_eq!(
        uids,
        vec![("Source: Numbers", None), ("Doubler", Some("doubler-v1")), ("Results", Some("results-v1"))]
    );
}

// ---------------------------------------------------------------------------------------------
// Runtime modes
// ---------------------------------------------------------------------------------------------

#[test]
fn automatic_mode_with_only_bounded_sources_runs_as_batch() {
    let input: Vec<(String, i64)> = (0..600).map(|i| (format!("k{}", i % 9), i)).collect();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in &input {
        *totals.entry(k.clone()).or_default() += v;
    }
    let expected: Vec<(String, i64)> = totals.into_iter().collect();

    let env = env(2);
    env.set_runtime_mode(RuntimeMode::Automatic);
    let out = env
        .from_collection(input)
        .key_by(|t: &(String, i64)| t.0.clone())
        .sum(|t: &mut (String, i64)| &mut t.1)
        .collect_to_vec();
    assert_eq!(plan(&env)["type"], "BATCH");
    env.execute("automatic").unwrap();
    assert_eq!(sorted(out.take()), expected, "one final result per key");
}

#[test]
fn automatic_mode_with_an_unbounded_source_runs_as_streaming() {
    let env = env(2);
    env.set_runtime_mode(RuntimeMode::Automatic);
    let unbounded = env.from_source(DataGeneratorSource::unbounded(|i| i), "Ticks");
    let bounded = env.from_sequence(0, 10).map(|x| x as u64);
    unbounded.union(&bounded).key_by(|x: &u64| x % 3).sum(|x: &mut u64| x).collect_to_vec();
    assert_eq!(plan(&env)["type"], "STREAMING");
}

#[test]
fn batch_keyed_aggregations_pre_aggregate_before_the_exchange_and_streaming_does_not() {
    let build = |mode: RuntimeMode| {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        env.set_runtime_mode(mode);
        env.from_sequence(1, 10)
            .map(|x| (x % 3, x))
            .key_by(|t: &(i64, i64)| t.0)
            .sum(|t: &mut (i64, i64)| &mut t.1);
        descriptions(&plan(&env))
    };
    assert_eq!(
        build(RuntimeMode::Batch),
        vec!["Source: Sequence Source -> Map -> Combine: Keyed Aggregation", "Keyed Aggregation"]
    );
    assert_eq!(build(RuntimeMode::Streaming), vec!["Source: Sequence Source -> Map", "Keyed Aggregation"]);
}

#[test]
fn batch_reduce_with_a_combiner_gives_exact_totals_at_any_parallelism() {
    for p in [1, 2, 3] {
        let env = StreamExecutionEnvironment::local().with_parallelism(p);
        env.set_runtime_mode(RuntimeMode::Batch);
        let mut out = env
            .from_sequence(1, 10_000)
            .map(|x| (x % 7, x))
            .key_by(|t: &(i64, i64)| t.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .execute_and_collect()
            .unwrap();
        out.sort();
        let mut expected: Vec<(i64, i64)> =
            (0..7).map(|k| (k, (1..=10_000i64).filter(|x| x % 7 == k).sum())).collect();
        expected.sort();
        assert_eq!(out, expected, "parallelism {p}");
    }
}
