//! # Eddy
//!
//! Stateful computations over bounded and unbounded streams, with Flink's DataStream API in
//! Rust. A program creates a [`StreamExecutionEnvironment`], adds sources, transformations and
//! sinks, and calls `execute`:
//!
//! ```
//! use eddy::prelude::*;
//!
//! let env = StreamExecutionEnvironment::local();
//! env.set_parallelism(2).set_runtime_mode(RuntimeMode::Batch);
//! let mut counts = env
//!     .from_collection(vec!["to be or not to be".to_string()])
//!     .flat_map(|line: String, out: &mut Collector<(String, i64)>| {
//!         for w in line.split_whitespace() {
//!             out.collect((w.to_string(), 1));
//!         }
//!     })
//!     .key_by(|t: &(String, i64)| t.0.clone())
//!     .sum(|t: &mut (String, i64)| &mut t.1)
//!     .execute_and_collect()
//!     .unwrap();
//! counts.sort();
//! assert_eq!(counts[0], ("be".to_string(), 2));
//! ```
//!
//! Jobs run on the embedded local mini-cluster: every operator runs as parallel subtasks on
//! threads, connected by bounded, batched channels with backpressure.

pub mod broadcast;
pub mod connectors;
pub mod datastream;
pub mod env;
pub mod functions;
pub mod joins;
pub mod operator_state;
mod operators;
pub mod state;
pub mod testing;
pub mod timers;
pub mod watermark;
pub mod windowing;

pub use datastream::{
    CollectedRecords, Connect, ConnectedStreams, DataStream, DataStreamSink, KeyedConnectedStreams,
    KeyedStream,
};
pub use eddy_core::random;
pub use eddy_core::{
    config, Batch, CompactString, Configuration, Data, EddyError, Key, RecordDisplay, Result, ShowRecord,
};
pub use eddy_runtime::executor::SubtaskMetrics;
pub use eddy_runtime::{metrics, sink, source, JobClient, JobExecutionResult, JobStatus};
pub use env::StreamExecutionEnvironment;

/// Everything a typical program needs.
pub mod prelude {
    pub use crate::broadcast::{
        BroadcastContext, BroadcastProcessFunction, BroadcastState, BroadcastStream, KeyedBroadcastContext,
        KeyedBroadcastProcessFunction, KeyedReadOnlyContext, ReadOnlyBroadcastContext,
        ReadOnlyBroadcastState,
    };
    pub use crate::connectors::{DataGeneratorSource, NumberSequenceSource, TextFileSink, TextFileSource};
    pub use crate::datastream::{DataStream, KeyedStream};
    pub use crate::env::StreamExecutionEnvironment;
    pub use crate::functions::{
        CoProcessFunction, Collector, Context, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
        KeyedStateStore, OutputTag, ProcessFunction, RichFilterFunction, RichFlatMapFunction,
        RichMapFunction, RuntimeContext, TimeDomain, TimerService,
    };
    pub use crate::joins::prelude::*;
    pub use crate::operator_state::{
        CheckpointedFunction, FlatMapFunction, FunctionInitializationContext, FunctionSnapshotContext,
        MapFunction, OperatorListState,
    };
    pub use crate::state::{
        AggregatingState, AggregatingStateDescriptor, ListState, ListStateDescriptor, MapState,
        MapStateDescriptor, ReducingState, ReducingStateDescriptor, StateTtlConfig, StateVisibility,
        UpdateType, ValueState, ValueStateDescriptor,
    };
    pub use crate::watermark::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
    pub use crate::windowing::prelude::*;
    pub use eddy_core::config::RuntimeMode;
    pub use eddy_core::{
        record_display_via_display, CompactString, Configuration, Data, EddyError, RecordDisplay, Result,
    };
    pub use eddy_runtime::metrics::{Counter, Gauge, Histogram, Meter, MetricGroup};
    pub use eddy_runtime::{JobClient, JobExecutionResult, JobStatus};
    pub use std::time::Duration;
}

/// The README's Rust examples, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
