//! The connectors every job can use without extra crates: collections, number sequences,
//! generated data, text files, sockets, standard output.
//!
//! Connectors to external systems (Kafka, databases, object stores) live in their own crates;
//! these are the ones Flink ships with its core API.

mod collection;
#[cfg(test)]
mod conformance;
pub mod datagen;
pub mod file;
mod print;
pub mod socket;

pub use collection::CollectionSource;
pub use datagen::{DataGeneratorSource, NumberSequenceSource};
pub use file::{TextFileSink, TextFileSource};
pub use print::PrintSink;
pub use socket::SocketTextSource;
