//! Windows: assigners, triggers, evictors, window functions and the window operator.
//!
//! Windows cut an unbounded stream into finite pieces that a function can see at once. A
//! windowed computation has four parts, as in Flink:
//!
//! - a **window assigner** puts each element into zero or more windows: tumbling, sliding or
//!   session windows in event time or processing time, or one global window
//!   ([`assigners`]);
//! - a **trigger** decides when a window's function runs, and whether its contents are then
//!   purged; each assigner has a default ([`triggers`]);
//! - an optional **evictor** removes elements before or after the function runs
//!   ([`evictors`]);
//! - a **window function** turns the window into results: `reduce` and `aggregate` fold
//!   elements into an accumulator as they arrive, `process` sees all elements with the
//!   window's metadata ([`functions`]).
//!
//! Event-time windows fire when the watermark passes their end (`end − 1`), and their results
//! carry the timestamp `end − 1`. With `allowed_lateness(L)`, a window keeps its state until
//! the watermark reaches `end − 1 + L`; elements arriving meanwhile fire it again. Elements
//! too late for every window go to `side_output_late_data(&tag)` or are dropped.
//!
//! ```
//! use eddy::prelude::*;
//!
//! /// Average temperature per sensor and 10 s window.
//! #[derive(Clone)]
//! struct Average;
//!
//! impl AggregateFunction<(String, i64, f64), (f64, u64), f64> for Average {
//!     fn create_accumulator(&self) -> (f64, u64) { (0.0, 0) }
//!     fn add(&self, acc: &mut (f64, u64), r: (String, i64, f64)) { acc.0 += r.2; acc.1 += 1; }
//!     fn get_result(&self, acc: &(f64, u64)) -> f64 { acc.0 / acc.1 as f64 }
//!     fn merge(&self, acc: &mut (f64, u64), o: (f64, u64)) { acc.0 += o.0; acc.1 += o.1; }
//! }
//!
//! let env = StreamExecutionEnvironment::local().with_parallelism(2);
//! let readings = vec![
//!     ("s1".to_string(), 1_000, 20.0),
//!     ("s1".to_string(), 4_000, 22.0),
//!     ("s2".to_string(), 5_000, 10.0),
//!     ("s1".to_string(), 12_000, 30.0),
//! ];
//! let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(1))
//!     .with_timestamp_assigner(|r: &(String, i64, f64), _| r.1);
//! let mut averages = env
//!     .from_collection(readings)
//!     .assign_timestamps_and_watermarks(strategy)
//!     .key_by(|r: &(String, i64, f64)| r.0.clone())
//!     .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
//!     .aggregate_with(Average, |sensor: &String, ctx: &mut WindowContext<_, TimeWindow>, avg: &[f64], out: &mut Collector<(String, i64, f64)>| {
//!         out.collect((sensor.clone(), ctx.window().start(), avg[0]));
//!         Ok(())
//!     })
//!     .execute_and_collect()
//!     .unwrap();
//! averages.sort_by(|a, b| a.partial_cmp(b).unwrap());
//! assert_eq!(
//!     averages,
//!     vec![("s1".to_string(), 0, 21.0), ("s1".to_string(), 10_000, 30.0), ("s2".to_string(), 0, 10.0)]
//! );
//! ```
//!
//! **How it runs.** Tumbling and sliding windows with `reduce`/`aggregate`, the default
//! trigger and no evictor run on a specialised operator that keeps one accumulator per key
//! and *pane* (the pieces between window boundaries) and needs no per-key timers, so sliding
//! windows cost the same per record as tumbling ones. Everything else runs on the general
//! window operator, which follows Flink's `WindowOperator` step by step: per key and window
//! it keeps the contents, the trigger's state and the timers.
//!
//! **Checkpoints.** Window operators are part of checkpoints: each key's windows with their
//! contents, trigger state and timers (or, on the aligned operator, its pane accumulators) are
//! written per key group, so a job restarts from its latest checkpoint with its windows as
//! they were, also at another parallelism. Accumulators and buffered elements are therefore
//! serializable (`ACC: Data`). After a restore the watermark starts again from `i64::MIN`, as
//! in Flink, but elements that were late before the checkpoint stay late until event time has
//! caught up, and windows that had fired do not fire again. The `checkpoint` module has the format.
//!
//! **State backends.** With `state.backend: fjall`, window contents go through the backend:
//! every window runs on the general operator, which keeps each key's windows in keyed state
//! (timers stay on the heap). A savepoint restores on the other backend, except that a job
//! whose tumbling or sliding `reduce`/`aggregate` windows ran on the aligned operator
//! (`hashmap`) cannot switch backends through it yet: the two operators' formats differ.
//!
//! **State in window functions.** A [`ProcessWindowFunction`] reaches the key's keyed state
//! through `ctx.global_state()` and the state of the key in the firing window through
//! `ctx.window_state()` (Flink's `globalState()` and `windowState()`), in the job's state
//! backend, checkpointed and rescaled with the window contents. Per-window state is the
//! function's to clear in `ProcessWindowFunction::clear`, which runs when the window is
//! cleaned up. Merging (session) windows have no per-window state.
//!
//! **Differences from Flink.** Processing-time assigners read the clock once per batch of
//! records rather than per record.

mod aligned;
pub mod assigners;
pub(crate) mod checkpoint;
pub mod evictors;
pub(crate) mod fn_state;
pub mod functions;
mod operator;
mod store;
mod stream;
pub mod triggers;
pub mod window;

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod tests;

pub use assigners::{
    DynamicEventTimeSessionWindows, DynamicProcessingTimeSessionWindows, EventTimeSessionWindows,
    GlobalWindows, MergeCallback, ProcessingTimeSessionWindows, SessionGap, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner,
    WindowAssignerContext,
};
pub use evictors::{
    CountEvictor, DeltaEvictor, Evictor, EvictorContext, NoEvictor, TimeEvictor, WindowElements,
};
pub use fn_state::KeyWindow;
pub use functions::{
    AggregateFunction, AllWindowContext, ProcessAllWindowFunction, ProcessWindowFunction, WindowContext,
};
pub use stream::{AllWindowedStream, WindowedStream};
pub use triggers::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountTrigger, EndOfStreamTrigger,
    EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger, TriggerContext,
    TriggerResult,
};
pub use window::{GlobalWindow, TimeWindow, Window};

/// What `eddy::prelude` re-exports from windowing.
pub mod prelude {
    pub use super::{
        AggregateFunction, AllWindowContext, AllWindowedStream, ContinuousEventTimeTrigger,
        ContinuousProcessingTimeTrigger, CountEvictor, CountTrigger, DeltaEvictor, EndOfStreamTrigger,
        EventTimeSessionWindows, EventTimeTrigger, Evictor, EvictorContext, GlobalWindow, GlobalWindows,
        KeyWindow, MergeCallback, NeverTrigger, NoEvictor, ProcessAllWindowFunction, ProcessWindowFunction,
        ProcessingTimeSessionWindows, ProcessingTimeTrigger, PurgingTrigger, SlidingEventTimeWindows,
        SlidingProcessingTimeWindows, TimeEvictor, TimeWindow, Trigger, TriggerContext, TriggerResult,
        TumblingEventTimeWindows, TumblingProcessingTimeWindows, Window, WindowAssigner,
        WindowAssignerContext, WindowContext, WindowElements, WindowedStream,
    };
}
