//! What a record is.
//!
//! Any `T: Data` can flow through a stream: it is cloned only where a stream fans out to
//! several consumers, sent between threads in batches without serialization, and (from the
//! cluster runtime on) encoded with serde when it crosses a process boundary or enters state.

use std::fmt;
use std::hash::Hash;

/// A record type: anything clonable, sendable and serializable.
pub trait Data: Clone + Send + 'static + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Clone + Send + 'static + serde::Serialize + serde::de::DeserializeOwned> Data for T {}

/// A key type for `key_by`: a record type that can be hashed and compared.
///
/// Keys are routed by [`crate::keygroup`] with a stable hash of their `Hash` input, never by
/// std's randomly seeded hasher, so every process agrees on where a key lives.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// How a record is printed by `print()` and written by the text file sink: Flink's `toString`
/// conventions, so that `("hello", 3)` prints as `(hello,3)` like Flink's `Tuple2`.
///
/// Implemented for the primitive types, strings, `Option`, `Vec` and tuples up to 8 fields.
/// For your own types, implement it directly or, if they implement `Display`, use
/// [`record_display_via_display!`](crate::record_display_via_display).
pub trait RecordDisplay {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Adapts a [`RecordDisplay`] to `Display`: `format!("{}", ShowRecord(&r))`.
pub struct ShowRecord<'a, T: ?Sized>(pub &'a T);

impl<T: RecordDisplay + ?Sized> fmt::Display for ShowRecord<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_record(f)
    }
}

/// Implements [`RecordDisplay`] for types that already implement `Display`.
#[macro_export]
macro_rules! record_display_via_display {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::data::RecordDisplay for $t {
            fn fmt_record(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(self, f)
            }
        }
    )*};
}

record_display_via_display!(
    bool,
    char,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    String,
    str,
    compact_str::CompactString
);

impl<T: RecordDisplay + ?Sized> RecordDisplay for &T {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt_record(f)
    }
}

impl<T: RecordDisplay + ?Sized> RecordDisplay for Box<T> {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt_record(f)
    }
}

impl<T: RecordDisplay + ?Sized> RecordDisplay for std::sync::Arc<T> {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt_record(f)
    }
}

/// `None` prints as `null`, as a Java field would.
impl<T: RecordDisplay> RecordDisplay for Option<T> {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Some(v) => v.fmt_record(f),
            None => f.write_str("null"),
        }
    }
}

/// Lists print as Java's `List.toString`: `[a, b, c]`.
impl<T: RecordDisplay> RecordDisplay for Vec<T> {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            v.fmt_record(f)?;
        }
        f.write_str("]")
    }
}

macro_rules! tuple_record_display {
    ($first:ident $($rest:ident)*) => {
        impl<$first: RecordDisplay, $($rest: RecordDisplay),*> RecordDisplay for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let ($first, $($rest,)*) = self;
                f.write_str("(")?;
                $first.fmt_record(f)?;
                $( f.write_str(",")?; $rest.fmt_record(f)?; )*
                f.write_str(")")
            }
        }
    };
}
tuple_record_display!(A);
tuple_record_display!(A B);
tuple_record_display!(A B C);
tuple_record_display!(A B C D);
tuple_record_display!(A B C D E);
tuple_record_display!(A B C D E F2);
tuple_record_display!(A B C D E F2 G);
tuple_record_display!(A B C D E F2 G H);

impl RecordDisplay for () {
    fn fmt_record(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("()")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_print_like_flink_tuples() {
        assert_eq!(ShowRecord(&("hello".to_string(), 3i64)).to_string(), "(hello,3)");
        assert_eq!(ShowRecord(&(1u8, 2.5f64, true)).to_string(), "(1,2.5,true)");
    }

    #[test]
    fn lists_and_options_print_like_java() {
        assert_eq!(ShowRecord(&vec![1, 2, 3]).to_string(), "[1, 2, 3]");
        assert_eq!(ShowRecord(&None::<i32>).to_string(), "null");
        assert_eq!(ShowRecord(&Some("x")).to_string(), "x");
    }
}
