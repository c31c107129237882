//! Eddy's execution engine.
//!
//! A program builds a [`graph::StreamGraph`]: one node per operator, typed code hidden behind
//! factories. [`jobgraph::JobGraph`] fuses forward-connected operators of equal parallelism into
//! chains; [`executor`] expands every chain into parallel subtasks, wires them with bounded,
//! batched channels and runs each subtask as one task thread:
//!
//! ```text
//! input gate → watermark valve → chained operators → partition writer → channels
//! ```
//!
//! Records move in [`eddy_core::Batch`]es: an operator is called once per batch, so virtual
//! calls, channel operations and clock reads are paid per batch, never per record. A full
//! channel blocks its producer, which is backpressure, all the way back to the sources.
//!
//! The [`executor`] runs a whole job in this process (the local mini-cluster). On a cluster,
//! [`distributed`] runs one worker's share of a job attempt, with channels to the other
//! workers over the data plane ([`net`]).

pub mod channel;
pub mod checkpoint;
pub mod distributed;
pub mod executor;
pub mod graph;
pub mod jobgraph;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod output;
pub mod partitioner;
pub mod restart;
pub mod sink;
pub mod source;
pub mod task;
pub mod time;
pub mod watermark;

pub use executor::{JobClient, JobExecutionResult, JobStatus, LocalExecutor};
pub use graph::{ChainingStrategy, NodeId, StreamGraph};
pub use metrics::{Counter, Gauge, Histogram, Meter, MetricGroup};
pub use operator::{OneInputOperator, OperatorContext, TwoInputOperator};
pub use output::{Emitter, MainOutput, Output, SideOutputs};
pub use task::{TaskMetrics, TaskState, VertexMetrics};
