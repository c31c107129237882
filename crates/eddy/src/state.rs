//! Keyed state, scoped to the key of the record or timer being processed.
//!
//! A function declares its state with descriptors and reaches it through its context:
//!
//! ```
//! use eddy::prelude::*;
//!
//! #[derive(Clone)]
//! struct CountPerKey { count: ValueStateDescriptor<i64> }
//!
//! impl KeyedProcessFunction<String, String, (String, i64)> for CountPerKey {
//!     fn process_element(&mut self, v: String, ctx: &mut KeyedContext<String>, out: &mut Collector<(String, i64)>) -> Result<()> {
//!         let mut count = ctx.state(&self.count);
//!         let n = count.value().copied().unwrap_or(0) + 1;
//!         count.update(n);
//!         out.collect((v, n));
//!         Ok(())
//!     }
//! }
//! # let _ = CountPerKey { count: ValueStateDescriptor::new("count") };
//! ```
//!
//! State lives in memory, one map per state name, organised so that a snapshot can be taken per
//! state; durable backends and checkpoints build on this interface.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;

use eddy_core::{Data, Key};

/// Names a piece of keyed state holding one value of type `V` per key.
#[derive(Debug)]
pub struct ValueStateDescriptor<V> {
    name: String,
    _v: PhantomData<fn() -> V>,
}

impl<V> Clone for ValueStateDescriptor<V> {
    fn clone(&self) -> Self {
        ValueStateDescriptor { name: self.name.clone(), _v: PhantomData }
    }
}

impl<V: Data> ValueStateDescriptor<V> {
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor { name: name.into(), _v: PhantomData }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// All keyed state of one operator instance.
pub struct KeyedState<K> {
    values: Vec<(String, Box<dyn Any + Send>)>,
    _k: PhantomData<fn() -> K>,
}

impl<K: Key> Default for KeyedState<K> {
    fn default() -> Self {
        KeyedState { values: Vec::new(), _k: PhantomData }
    }
}

impl<K: Key> KeyedState<K> {
    fn map<V: Data>(&mut self, name: &str) -> &mut Map<K, V> {
        let i = match self.values.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.values.push((name.to_string(), Box::new(Map::<K, V>::default())));
                self.values.len() - 1
            }
        };
        if !self.values[i].1.is::<Map<K, V>>() {
            // A second descriptor with the same name but another type: give it its own slot.
            let renamed = format!("{name}\u{0}{}", std::any::type_name::<V>());
            return self.map::<V>(&renamed);
        }
        self.values[i].1.downcast_mut::<Map<K, V>>().expect("checked above")
    }

    /// The value state `desc` for `key`.
    pub fn value<'a, V: Data>(
        &'a mut self,
        desc: &ValueStateDescriptor<V>,
        key: &'a K,
    ) -> ValueState<'a, K, V> {
        ValueState { map: self.map::<V>(&desc.name), key }
    }

    /// How many keys hold a value in any state (for tests and metrics).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// One key's value of a value state (Flink's `ValueState`).
pub struct ValueState<'a, K, V> {
    map: &'a mut Map<K, V>,
    key: &'a K,
}

impl<K: Key, V: Data> ValueState<'_, K, V> {
    /// The value, or `None` if it was never set or was cleared.
    pub fn value(&self) -> Option<&V> {
        self.map.get(self.key)
    }
    pub fn update(&mut self, value: V) {
        self.map.insert(self.key.clone(), value);
    }
    pub fn clear(&mut self) {
        self.map.remove(self.key);
    }
}
