//! The vocabulary every Eddy crate shares: what a record is ([`Data`]), how records travel
//! ([`Batch`], [`StreamElement`]), how they are encoded to cross processes ([`codec`]), where a
//! key lives ([`keygroup`]), how a job is configured ([`config`]) and how things fail
//! ([`EddyError`]).
//!
//! Nothing here runs anything; the runtime (`eddy-runtime`) and the API (`eddy`) build on it.

pub mod codec;
pub mod config;
pub mod data;
pub mod element;
pub mod error;
pub mod keygroup;
pub mod random;

/// A string stored inline when short (up to 24 bytes), so that creating, cloning, hashing and
/// comparing words and ids needs no heap allocation. Use it for short keys on hot paths.
pub use compact_str::CompactString;
pub use config::Configuration;
pub use data::{Data, Key, RecordDisplay, ShowRecord};
pub use element::{Batch, CheckpointBarrier, CheckpointType, StreamElement, NO_TIMESTAMP};
pub use error::{EddyError, Result};
