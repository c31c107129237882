//! Joins: window join, co-group and interval join.
//!
//! - The **window join** ([`DataStream::join`](crate::DataStream::join)) pairs the elements of
//!   two streams that have equal keys and fall into the same window; the **co-group**
//!   ([`DataStream::co_group`](crate::DataStream::co_group)) hands a function all elements of
//!   both streams per key and window, so that it can also see one-sided groups. Both are built,
//!   as in Flink, on the window operator: every assigner, trigger and evictor of
//!   [`windowing`](crate::windowing) works with them.
//! - The **interval join** ([`KeyedStream::interval_join`](crate::KeyedStream::interval_join))
//!   joins two keyed streams per key over a time interval relative to each element, with its
//!   own operator that buffers both sides until event time makes them useless.
//!
//! Results of a window join or co-group carry the window's max timestamp and follow the time of
//! its assigner; the interval join works in event time only (records need timestamps) and its
//! results carry the larger timestamp of the pair.

#[cfg(test)]
mod harness;
mod interval;
mod window;

pub use interval::{IntervalBound, IntervalJoin, IntervalJoined, JoinContext, ProcessJoinFunction};
pub use window::{CoGroup, CoGroupedStreams, EqualTo, Join, JoinedStreams, TaggedUnion, Where, WithWindow};

/// What `eddy::prelude` re-exports from joins.
pub mod prelude {
    pub use super::{IntervalBound, JoinContext, ProcessJoinFunction};
}
