//! The single-value states: value, reducing and aggregating.

use eddy_core::{Data, Key};

use super::descriptors::{AggregatingStateDescriptor, DynAggregate, ReduceFn, ReducingStateDescriptor};
use super::entry::{Access, Stamped};

/// The current key's value of a value state (Flink's `ValueState`).
pub struct ValueState<'a, K, V> {
    access: Access<'a, K, Stamped<V>>,
}

impl<'a, K: Key, V: Data> ValueState<'a, K, V> {
    pub(crate) fn new(access: Access<'a, K, Stamped<V>>) -> Self {
        ValueState { access }
    }

    pub(crate) fn detached(key: &'a K) -> Self {
        ValueState { access: Access::detached(key) }
    }

    /// The value, or `None` if it was never set, was cleared or has expired.
    pub fn value(&mut self) -> Option<&V> {
        self.access.read().map(|e| &e.value)
    }

    pub fn update(&mut self, value: V) {
        let stamp = self.access.write_stamp().unwrap_or(0);
        self.access.upsert(value, |e, value| *e = Stamped { value, stamp }, |value| Stamped { value, stamp });
    }

    pub fn clear(&mut self) {
        self.access.clear()
    }

    /// The value, for an operator that updates it in place (a built-in aggregation's
    /// accumulator, a key's windows); `None` if it is unset. Marks the entry written, and
    /// ignores TTL: the operators' own states have none.
    pub(crate) fn into_value_mut(self) -> Option<&'a mut V> {
        self.access.into_stored().map(|e| &mut e.value)
    }

    /// [`into_value_mut`](Self::into_value_mut), setting the value to `init()` first if it is
    /// unset; `None` only if the state could not be reached.
    pub(crate) fn into_value_or_insert_with(self, init: impl FnOnce() -> V) -> Option<&'a mut V> {
        let create = || Stamped { value: init(), stamp: 0 };
        self.access.into_stored_or_insert_with(create).map(|e| &mut e.value)
    }
}

/// The current key's value of a reducing state (Flink's `ReducingState`): every added value is
/// folded into it with the descriptor's reduce function.
pub struct ReducingState<'a, K, V> {
    access: Access<'a, K, Stamped<V>>,
    reduce: &'a ReduceFn<V>,
}

impl<'a, K: Key, V: Data> ReducingState<'a, K, V> {
    pub(crate) fn new(access: Access<'a, K, Stamped<V>>, reduce: &'a ReduceFn<V>) -> Self {
        ReducingState { access, reduce }
    }

    pub(crate) fn detached(key: &'a K, desc: &'a ReducingStateDescriptor<V>) -> Self {
        ReducingState { access: Access::detached(key), reduce: &*desc.reduce }
    }

    /// The reduced value, or `None` if nothing was added since the state was created, cleared
    /// or expired.
    pub fn get(&mut self) -> Option<&V> {
        self.access.read().map(|e| &e.value)
    }

    /// Folds `value` in. An expired value is not folded: `value` starts afresh.
    pub fn add(&mut self, value: V) {
        let (ttl, reduce) = (self.access.ttl(), self.reduce);
        let stamp = self.access.write_stamp().unwrap_or(0);
        self.access.replace(|old| {
            let value = match old {
                Some(old) if !ttl.is_some_and(|t| t.expired(old.stamp)) => reduce(old.value, value),
                _ => value,
            };
            Some(Stamped { value, stamp })
        });
    }

    pub fn clear(&mut self) {
        self.access.clear()
    }
}

/// The current key's accumulator of an aggregating state (Flink's `AggregatingState`): every
/// added value goes into it with the descriptor's `AggregateFunction`, and it reads as the
/// function's result.
pub struct AggregatingState<'a, K, IN, ACC, OUT> {
    access: Access<'a, K, Stamped<ACC>>,
    function: &'a dyn DynAggregate<IN, ACC, OUT>,
}

impl<'a, K: Key, IN, ACC: Data, OUT> AggregatingState<'a, K, IN, ACC, OUT> {
    pub(crate) fn new(
        access: Access<'a, K, Stamped<ACC>>,
        function: &'a dyn DynAggregate<IN, ACC, OUT>,
    ) -> Self {
        AggregatingState { access, function }
    }

    pub(crate) fn detached(key: &'a K, desc: &'a AggregatingStateDescriptor<IN, ACC, OUT>) -> Self {
        AggregatingState { access: Access::detached(key), function: &*desc.function }
    }

    /// The result of the accumulator, or `None` if nothing was added since the state was
    /// created, cleared or expired.
    pub fn get(&mut self) -> Option<OUT> {
        let f = self.function;
        self.access.read().map(|e| f.get_result(&e.value))
    }

    /// Adds `value` to the accumulator. An expired accumulator is replaced by a new one first.
    pub fn add(&mut self, value: IN) {
        let (ttl, f) = (self.access.ttl(), self.function);
        let stamp = self.access.write_stamp().unwrap_or(0);
        self.access.upsert(
            value,
            |e, value| {
                if ttl.is_some_and(|t| t.expired(e.stamp)) {
                    e.value = f.create_accumulator();
                }
                f.add(&mut e.value, value);
                e.stamp = stamp;
            },
            |value| {
                let mut acc = f.create_accumulator();
                f.add(&mut acc, value);
                Stamped { value: acc, stamp }
            },
        );
    }

    pub fn clear(&mut self) {
        self.access.clear()
    }
}
