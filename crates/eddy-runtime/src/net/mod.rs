//! The data plane: channels between tasks in different processes.
//!
//! Two TaskManagers exchange records over one TCP connection, a [`DataConnection`], that
//! multiplexes any number of logical channels, each named by a [`ChannelId`]. A channel has one
//! producer subtask on one side and one consumer subtask on the other, exactly like a local
//! channel, and task code cannot tell them apart: the producer holds a [`RemoteSender`] with
//! the same `send` as [`ChannelSender`](crate::channel::ChannelSender), and the consumer a
//! regular [`ChannelReceiver`](crate::channel::ChannelReceiver) for its
//! [`InputGate`](crate::channel::InputGate).
//!
//! One connection carries the channels of both directions: each process registers, on the same
//! `DataConnection`, an output for every channel it produces and an input for every channel it
//! consumes (a channel's id names its direction, so the two sets never collide). Each side
//! counts the frames of its channels into the task's
//! [`TaskMetrics`](crate::task::TaskMetrics) (`bytes_out`, `bytes_in`).
//!
//! # Frames
//!
//! ```text
//! [len u32][kind u8][channel id: job u64, edge u32, producer u32, consumer u32][payload]
//! ```
//!
//! Integers are big-endian (network order); `len` counts the bytes after itself. The kinds are
//! `data` (one [`StreamElement`](eddy_core::StreamElement) encoded with
//! [`eddy_core::codec`]), `credit` (a `u32`: that many more elements may be sent) and `close`
//! (UTF-8 text: the other end of this channel is gone). A frame longer than
//! [`NetOptions::max_frame_bytes`] is refused by both ends: the sender returns an error for
//! that element, the receiver fails the connection, since a bogus length means the stream can
//! no longer be parsed. Each side opens with a six-byte handshake (`EDDY` and a version), so a
//! stray client or a mismatched build is rejected at once.
//!
//! # Credit-based flow control
//!
//! As in Flink, the consumer's side owns the buffer: each remote input is a bounded queue of
//! `capacity` elements (batches, watermarks and markers alike, as in a local channel).
//! Registering the input announces `capacity` credits; every element the task takes from the
//! queue returns one. The producer sends an element only when it holds a credit; otherwise its
//! task thread waits, which is backpressure, and it reaches the sources across processes
//! through the ordinary local channels upstream. Because no element is ever sent without room
//! for it, the connection's reader never waits for a task: a stalled consumer stops only its
//! own channel, and every other channel on the same connection keeps flowing. A peer that
//! sends beyond its credit breaks the protocol, and the connection fails.
//!
//! Credits are coalesced: a consumer that takes ten elements while the writer is busy produces
//! one credit frame of ten, not ten frames.
//!
//! # Threads, not tokio
//!
//! Each connection has one reader and one writer thread over a blocking socket. The engine's
//! tasks are OS threads that block on channels; an async runtime would have to be bridged to
//! them on both sides (`block_on` in every send, a channel back out of every read), adding
//! a hop and a second scheduling model for no gain. A TaskManager holds one connection per
//! peer TaskManager, so the thread count grows with the number of peers (a few dozen at
//! most), not with channels or records. The writer coalesces: it writes every frame already
//! queued into one buffer and flushes once, so a busy connection makes few system calls.
//! Encoding happens on the producing task's thread and decoding on the connection's reader.
//!
//! # Failures and cancellation
//!
//! A send that waits for credit wakes every [`CANCEL_CHECK`](crate::channel) to look at the
//! job's cancellation flag, like a local send. When the connection breaks (the peer died,
//! closed the socket, or broke the protocol), every waiting producer and every consumer whose
//! channel had not ended gets an [`EddyError::Network`](eddy_core::EddyError::Network) naming
//! the peer's address and what happened. When only one end of one channel goes away (its task
//! failed or was cancelled) a `close` frame tells the other end, which then fails as it would
//! with a local channel: the root cause is reported by the task that failed first.

mod channels;
mod connection;
mod frame;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use channels::RemoteSender;
pub use connection::DataConnection;

/// Names one logical channel of a job: one edge between two subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId {
    /// A hash of the job's id, so channels of different jobs never mix.
    pub job: u64,
    /// The job-graph edge.
    pub edge: u32,
    /// The producing subtask's index (0-based).
    pub producer: u32,
    /// The consuming subtask's index (0-based).
    pub consumer: u32,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {:016x} edge {} subtask {} -> {}", self.job, self.edge, self.producer, self.consumer)
    }
}

/// How a data-plane connection behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// The largest frame either end accepts, header included. An element whose encoding is
    /// larger cannot be sent: lower the batch size or make records smaller.
    pub max_frame_bytes: usize,
    /// How long to wait for the peer's handshake.
    pub handshake_timeout: std::time::Duration,
}

impl NetOptions {
    /// 64 MiB: far above a batch of ordinary records, low enough that a corrupt length cannot
    /// make a reader allocate gigabytes.
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}
