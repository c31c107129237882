//! Keyed state outside process functions: rich `map`, `flat_map` and `filter` on a keyed
//! stream, and the global and per-window state of window functions, on both state backends.
//! Checkpoint recovery of a rich map is in `checkpointed_operators.rs`; savepoints and
//! rescaling of both in `savepoints.rs`.

use eddy::prelude::*;
use eddy::testing::OneInputHarness;
use eddy::Configuration;

fn backend(name: &str) -> Configuration {
    let mut config = Configuration::new();
    config.set("state.backend", name);
    config
}

#[test]
fn rich_functions_on_a_keyed_stream_see_the_state_of_each_records_key() {
    for name in ["hashmap", "fjall"] {
        let env = StreamExecutionEnvironment::with_configuration(backend(name)).with_parallelism(2);
        let words: Vec<(u32, String)> =
            (0..200).map(|i| (i % 7, ["x", "y", "z"][(i % 3) as usize].to_string())).collect();
        let keyed = env.from_collection(words.clone()).key_by(|r: &(u32, String)| r.0);
        // filter: the first record of each (key, word) only.
        let seen = MapStateDescriptor::<String, bool>::new("seen");
        let firsts = keyed
            .filter(move |r: &(u32, String), state: &mut KeyedStateStore<u32>| {
                let mut seen = state.map_state(&seen);
                let first = !seen.contains(&r.1);
                seen.put(r.1.clone(), true);
                Ok(first)
            })
            .collect_to_vec();
        // flat_map: every record emits the key's list of records so far, one record per entry.
        let list = ListStateDescriptor::<String>::new("words");
        let lengths = keyed
            .flat_map(
                move |r: (u32, String),
                      state: &mut KeyedStateStore<u32>,
                      out: &mut Collector<(u32, usize)>| {
                    let key = *state.current_key();
                    let mut words = state.list_state(&list);
                    words.add(r.1);
                    let len = words.get().len();
                    for _ in 0..len {
                        out.collect((key, len));
                    }
                    Ok(())
                },
            )
            .collect_to_vec();
        env.execute("rich functions").unwrap();

        let mut firsts = firsts.take();
        firsts.sort();
        let mut expected: Vec<(u32, String)> = words.clone();
        expected.sort();
        expected.dedup();
        assert_eq!(firsts, expected, "{name}: each (key, word) passes once");

        let mut lengths = lengths.take();
        lengths.sort();
        let mut expected = Vec::new();
        for key in 0..7u32 {
            let n = words.iter().filter(|r| r.0 == key).count();
            for len in 1..=n {
                expected.extend(std::iter::repeat_n((key, len), len));
            }
        }
        expected.sort();
        assert_eq!(lengths, expected, "{name}: the list of each key grows by one per record");
    }
}

/// Per window: how often it fired (window state) and how often any window of the key fired
/// (global state). `clear` reports the window's firings to a side output and clears them.
#[derive(Clone)]
struct Firings {
    window: ValueStateDescriptor<i64>,
    global: ValueStateDescriptor<i64>,
    cleared: OutputTag<(String, i64, i64)>,
}

impl Firings {
    fn new() -> Self {
        Firings {
            window: ValueStateDescriptor::new("window firings"),
            global: ValueStateDescriptor::new("key firings"),
            cleared: OutputTag::new("cleared"),
        }
    }
}

impl<IN> ProcessWindowFunction<IN, (String, i64, i64, i64), String, TimeWindow> for Firings {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        _: &[IN],
        out: &mut Collector<'_, (String, i64, i64, i64)>,
    ) -> Result<()> {
        let mut window = ctx.window_state();
        let mut w = window.state(&self.window);
        let in_window = w.value().copied().unwrap_or(0) + 1;
        w.update(in_window);
        let mut global = ctx.global_state();
        let mut g = global.state(&self.global);
        let in_key = g.value().copied().unwrap_or(0) + 1;
        g.update(in_key);
        out.collect((key.clone(), ctx.window().start(), in_window, in_key));
        Ok(())
    }

    fn clear(&mut self, key: &String, ctx: &mut WindowContext<'_, String, TimeWindow>) -> Result<()> {
        let mut window = ctx.window_state();
        let mut w = window.state(&self.window);
        let firings = w.value().copied().unwrap_or(0);
        w.clear();
        let start = ctx.window().start();
        ctx.output(&self.cleared, (key.clone(), start, firings));
        Ok(())
    }
}

type Event = (String, i64);
type Fired = (String, i64, i64, i64);

fn event(key: &str, v: i64) -> Event {
    (key.to_string(), v)
}

/// Tumbling windows of 10 ms with 20 ms of allowed lateness, all elements (the general
/// operator) or a running sum (`reduce_with`: the aligned operator on `hashmap`).
fn pipeline(aggregate: bool) -> impl Fn(DataStream<Event>) -> DataStream<Fired> + Copy {
    move |input: DataStream<Event>| {
        let windows = input
            .key_by(|e: &Event| e.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
            .allowed_lateness(Duration::from_millis(20));
        let fired = if aggregate {
            windows.reduce_with(|a: Event, b: Event| (a.0, a.1 + b.1), Firings::new())
        } else {
            windows.process(Firings::new())
        };
        // Declares the side output, so that the harness collects it.
        let _ = fired.get_side_output(&Firings::new().cleared);
        fired
    }
}

fn records(h: &mut OneInputHarness<Event, Fired>) -> Vec<Fired> {
    let mut r: Vec<Fired> = h.take_records().into_iter().map(|(r, _)| r).collect();
    r.sort();
    r
}

fn cleared(h: &mut OneInputHarness<Event, Fired>) -> Vec<(String, i64, i64)> {
    let mut r: Vec<_> = h.take_side_output(&Firings::new().cleared).into_iter().map(|(r, _)| r).collect();
    r.sort();
    r
}

#[test]
fn window_functions_keep_state_per_window_and_per_key_through_a_restore() {
    let s = |k: &str| k.to_string();
    for name in ["hashmap", "fjall"] {
        for aggregate in [false, true] {
            let what = format!("{name}, {}", if aggregate { "reduce_with" } else { "process" });
            let config = backend(name);
            let mut before = OneInputHarness::build_configured(&config, pipeline(aggregate)).unwrap();
            before.process_element(event("a", 1), 1).unwrap();
            before.process_element(event("a", 2), 2).unwrap();
            before.process_element(event("b", 5), 5).unwrap();
            before.process_watermark(9).unwrap();
            assert_eq!(records(&mut before), vec![(s("a"), 0, 1, 1), (s("b"), 0, 1, 1)], "{what}");
            let state = before.snapshot(1).unwrap();

            // The restored operator goes on with both states and the windows awaiting `clear`.
            let mut after =
                OneInputHarness::build_restored_configured(&config, pipeline(aggregate), state).unwrap();
            after.process_watermark(9).unwrap();
            after.process_element(event("a", 3), 3).unwrap(); // late, within the allowed lateness
            assert_eq!(records(&mut after), vec![(s("a"), 0, 2, 2)], "{what}: the late firing");
            after.process_element(event("a", 15), 15).unwrap();
            assert!(cleared(&mut after).is_empty(), "{what}: nothing cleaned up before its time");
            after.process_watermark(29).unwrap();
            assert_eq!(records(&mut after), vec![(s("a"), 10, 1, 3)], "{what}");
            assert_eq!(
                cleared(&mut after),
                vec![(s("a"), 0, 2), (s("b"), 0, 1)],
                "{what}: window [0, 10) is cleaned up at 9 + 20, and clear sees its state"
            );
            after.process_watermark(100).unwrap();
            assert_eq!(cleared(&mut after), vec![(s("a"), 10, 1)], "{what}");
            assert!(records(&mut after).is_empty());
        }
    }
}

#[test]
fn per_window_state_is_refused_with_merging_windows() {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Event, _| e.1);
    env.from_collection(vec![event("a", 1), event("a", 2)])
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|e: &Event| e.0.clone())
        .window(EventTimeSessionWindows::with_gap(Duration::from_millis(10)))
        .process(Firings::new())
        .collect_to_vec();
    let err = env.execute("sessions with window state").unwrap_err().to_string();
    assert!(err.contains("merging (session) windows"), "{err}");
}
