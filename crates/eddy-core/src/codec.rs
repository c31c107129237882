//! The one codec for everything that leaves a process's memory: stream elements crossing the
//! network, and (later) keys and values entering state.
//!
//! It is bincode 2 through serde with `config::standard()` and fixed-width integers:
//! little-endian, no field names. Any `T: Data` is therefore encodable without extra derives.
//! Integers are written at their full width rather than as varints: a `(u64, u64)` record
//! takes 16 bytes instead of about 10, but encoding and decoding are plain copies, which made
//! the keyed exchange over the network 45% faster (see BENCHMARKS.md); bytes on a local
//! network are cheaper than branches per integer.
//!
//! Encoding appends to a caller-owned `Vec<u8>`, so a hot path reuses one buffer and can put a
//! frame header in front of the payload. Decoding reads a whole slice and rejects trailing
//! bytes: a frame holds exactly one element. Every failure is an [`EddyError::BadInput`] that
//! names what was being encoded or decoded; corrupt or truncated input is an error, never a panic
//! nor an allocation sized by an untrusted length.
//!
//! The format is internal: both ends of a connection run the same executable (see "User code in
//! a compiled language" in the architecture), so there is no schema evolution here. State that
//! must survive an upgrade will carry a format version of its own.
//!
//! ```
//! use eddy_core::codec::{decode_element, encode_element};
//! use eddy_core::{Batch, StreamElement};
//!
//! let mut buf = Vec::new();
//! let element = StreamElement::Records(Batch::from_values(vec![(1u64, "a".to_string())]));
//! encode_element(&element, &mut buf).unwrap();
//! assert_eq!(decode_element::<(u64, String)>(&buf).unwrap(), element);
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::element::{Batch, CheckpointBarrier, StreamElement};
use crate::error::{EddyError, Result};

fn config() -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Fixint> {
    bincode::config::standard().with_fixed_int_encoding()
}

/// How an element is written: borrows the batch, so encoding copies nothing but the bytes.
/// The variant order is the wire format and must match [`Wire`].
#[derive(Serialize)]
enum WireRef<'a, T> {
    Records { values: &'a [T], timestamps: &'a [i64] },
    Watermark(i64),
    Idle(bool),
    EndOfInput,
    Barrier(CheckpointBarrier),
}

/// How an element is read back.
#[derive(Deserialize)]
enum Wire<T> {
    Records { values: Vec<T>, timestamps: Vec<i64> },
    Watermark(i64),
    Idle(bool),
    EndOfInput,
    Barrier(CheckpointBarrier),
}

/// Appends the encoding of `element` to `buf` (which is not cleared).
pub fn encode_element<T: Serialize>(element: &StreamElement<T>, buf: &mut Vec<u8>) -> Result<()> {
    let wire = match element {
        StreamElement::Records(b) => WireRef::Records { values: &b.values, timestamps: &b.timestamps },
        StreamElement::Watermark(w) => WireRef::Watermark(*w),
        StreamElement::Idle(i) => WireRef::Idle(*i),
        StreamElement::EndOfInput => WireRef::EndOfInput,
        StreamElement::CheckpointBarrier(b) => WireRef::Barrier(*b),
    };
    encode_into(&wire, buf, || describe_element(element))
}

/// Decodes one element that fills `bytes` exactly.
pub fn decode_element<T: DeserializeOwned>(bytes: &[u8]) -> Result<StreamElement<T>> {
    let wire: Wire<T> = decode_from(bytes, "stream element")?;
    Ok(match wire {
        Wire::Records { values, timestamps } => {
            if !timestamps.is_empty() && timestamps.len() != values.len() {
                return Err(bad_input(
                    "stream element",
                    bytes.len(),
                    format!("a batch of {} records carries {} timestamps", values.len(), timestamps.len()),
                ));
            }
            StreamElement::Records(Batch { values, timestamps })
        }
        Wire::Watermark(w) => StreamElement::Watermark(w),
        Wire::Idle(i) => StreamElement::Idle(i),
        Wire::EndOfInput => StreamElement::EndOfInput,
        Wire::Barrier(b) => StreamElement::CheckpointBarrier(b),
    })
}

/// Appends the encoding of any serializable value (a key, a state entry) to `buf`.
pub fn encode_value<V: Serialize + ?Sized>(value: &V, buf: &mut Vec<u8>) -> Result<()> {
    encode_into(value, buf, || std::any::type_name::<V>().to_string())
}

/// Decodes one value of type `V` that fills `bytes` exactly.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    decode_from(bytes, std::any::type_name::<V>())
}

/// Decodes one value of type `V` from the start of `bytes`, and says how many bytes it took:
/// for reading a sequence of values while keeping each one's encoded bytes.
pub fn decode_prefix<V: DeserializeOwned>(bytes: &[u8]) -> Result<(V, usize)> {
    bincode::serde::decode_from_slice::<V, _>(bytes, config())
        .map_err(|e| bad_input(std::any::type_name::<V>(), bytes.len(), e.to_string()))
}

fn encode_into<V: Serialize + ?Sized>(
    value: &V,
    buf: &mut Vec<u8>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let start = buf.len();
    bincode::serde::encode_into_writer(value, VecWriter(buf), config()).map_err(|e| {
        // A serializer that fails half-way (a custom `Serialize` returning an error) must not
        // leave a partial encoding behind for the next caller of a reused buffer.
        buf.truncate(start);
        EddyError::BadInput { location: format!("encoding {}", what()), reason: e.to_string() }
    })
}

/// Appends to a `Vec` directly: cheaper per primitive than going through `std::io::Write`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn decode_from<V: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<V> {
    let (value, read) = bincode::serde::decode_from_slice::<V, _>(bytes, config())
        .map_err(|e| bad_input(what, bytes.len(), e.to_string()))?;
    if read != bytes.len() {
        return Err(bad_input(
            what,
            bytes.len(),
            format!("{} trailing bytes after the value", bytes.len() - read),
        ));
    }
    Ok(value)
}

fn bad_input(what: &str, len: usize, reason: String) -> EddyError {
    EddyError::BadInput { location: format!("encoded {what} of {len} bytes"), reason }
}

fn describe_element<T>(element: &StreamElement<T>) -> String {
    match element {
        StreamElement::Records(b) => format!("a batch of {} {}", b.len(), std::any::type_name::<T>()),
        StreamElement::Watermark(w) => format!("watermark {w}"),
        StreamElement::Idle(i) => format!("idle marker {i}"),
        StreamElement::EndOfInput => "end of input".to_string(),
        StreamElement::CheckpointBarrier(b) => format!("barrier of {} {}", b.kind.as_str(), b.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{CheckpointType, NO_TIMESTAMP};

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(e: StreamElement<T>) {
        let mut buf = Vec::new();
        encode_element(&e, &mut buf).unwrap();
        assert_eq!(decode_element::<T>(&buf).unwrap(), e);
    }

    fn timestamped() -> Batch<(String, i64)> {
        let mut b = Batch::new();
        b.push(("no-ts".to_string(), 1));
        b.push_with_timestamp(("ts".to_string(), -2), 1_700_000_000_000);
        b.push_with_timestamp(("min".to_string(), i64::MAX), NO_TIMESTAMP);
        b
    }

    #[test]
    fn every_element_kind_roundtrips() {
        roundtrip(StreamElement::Records(Batch::from_values(vec![(1u64, 2u64), (u64::MAX, 0)])));
        roundtrip(StreamElement::Records(timestamped()));
        roundtrip(StreamElement::Records(Batch::<u8>::new()));
        roundtrip(StreamElement::<u64>::Watermark(i64::MIN));
        roundtrip(StreamElement::<u64>::Watermark(42));
        roundtrip(StreamElement::<u64>::Idle(true));
        roundtrip(StreamElement::<u64>::Idle(false));
        roundtrip(StreamElement::<u64>::EndOfInput);
        for kind in [
            CheckpointType::Checkpoint,
            CheckpointType::Savepoint,
            CheckpointType::SavepointSuspend,
            CheckpointType::SavepointTerminate,
        ] {
            let barrier = CheckpointBarrier { id: u64::MAX - 1, timestamp: 1_700_000_000_000, kind };
            roundtrip(StreamElement::<u64>::CheckpointBarrier(barrier));
        }
    }

    #[test]
    fn batches_keep_their_timestamps_or_lack_of_them() {
        let mut buf = Vec::new();
        encode_element(&StreamElement::Records(timestamped()), &mut buf).unwrap();
        let StreamElement::Records(b) = decode_element::<(String, i64)>(&buf).unwrap() else { panic!() };
        assert_eq!(b.timestamps, vec![NO_TIMESTAMP, 1_700_000_000_000, NO_TIMESTAMP]);
        buf.clear();
        encode_element(&StreamElement::Records(Batch::from_values(vec![7u32])), &mut buf).unwrap();
        let StreamElement::Records(b) = decode_element::<u32>(&buf).unwrap() else { panic!() };
        assert!(!b.has_timestamps());
    }

    #[test]
    fn encoding_appends_to_the_buffer() {
        let mut buf = vec![0xAB, 0xCD];
        encode_element(&StreamElement::<u8>::Watermark(5), &mut buf).unwrap();
        assert_eq!(&buf[..2], &[0xAB, 0xCD]);
        assert_eq!(decode_element::<u8>(&buf[2..]).unwrap(), StreamElement::Watermark(5));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = Vec::new();
        encode_element(&StreamElement::Records(timestamped()), &mut buf).unwrap();
        for len in 0..buf.len() {
            match decode_element::<(String, i64)>(&buf[..len]) {
                Err(EddyError::BadInput { location, .. }) => assert!(location.contains("stream element")),
                other => panic!("prefix of {len} bytes decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_frames_are_errors() {
        let unknown_variant = [9u8, 0, 0, 0];
        assert!(decode_element::<u64>(&unknown_variant).is_err());
        let mut trailing = Vec::new();
        encode_element(&StreamElement::<u64>::EndOfInput, &mut trailing).unwrap();
        trailing.push(0);
        let err = decode_element::<u64>(&trailing).unwrap_err().to_string();
        assert!(err.contains("1 trailing bytes"), "{err}");
        // Two values but one timestamp: the batch invariant is checked.
        let mut mismatched = Vec::new();
        encode_value(&(0u32, vec![1u64, 2], vec![3i64]), &mut mismatched).unwrap();
        let err = decode_element::<u64>(&mismatched).unwrap_err().to_string();
        assert!(err.contains("2 records carries 1 timestamps"), "{err}");
        // A length prefix claiming far more elements than the bytes hold.
        let huge_len = [0u8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        assert!(decode_element::<u64>(&huge_len).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_element::<(String, Vec<u32>)>(&bytes);
        }
    }

    #[test]
    fn values_roundtrip_for_state() {
        let mut buf = Vec::new();
        encode_value(&("key".to_string(), 3u32), &mut buf).unwrap();
        assert_eq!(decode_value::<(String, u32)>(&buf).unwrap(), ("key".to_string(), 3));
        let err = decode_value::<(String, u32)>(&buf[..2]).unwrap_err().to_string();
        assert!(err.contains("(alloc::string::String, u32)"), "{err}");
    }
}
