//! State descriptors: the name, the types and the options of one piece of keyed state.
//!
//! A function keeps its descriptors in its fields and passes them to its context to reach the
//! state. Descriptors are cheap to clone: the functions of reducing and aggregating state are
//! shared.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::{Data, Key};

use super::ttl::StateTtlConfig;
use crate::windowing::AggregateFunction;

/// The name, the TTL and the accessors every descriptor shares.
macro_rules! descriptor_common {
    () => {
        /// The state's name, unique among the keyed state of one operator.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Lets entries expire `cfg.ttl` after their last access (Flink's `enableTimeToLive`).
        pub fn enable_time_to_live(mut self, cfg: StateTtlConfig) -> Self {
            self.ttl = Some(cfg);
            self
        }

        pub fn ttl_config(&self) -> Option<&StateTtlConfig> {
            self.ttl.as_ref()
        }
    };
}

/// Names a keyed state holding one value of type `V` per key (Flink's `ValueStateDescriptor`).
pub struct ValueStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _v: PhantomData<fn() -> V>,
}

impl<V: Data> ValueStateDescriptor<V> {
    pub fn new(name: impl Into<String>) -> Self {
        ValueStateDescriptor { name: name.into(), ttl: None, _v: PhantomData }
    }
    descriptor_common!();
}

/// Names a keyed state holding a list of `V` per key (Flink's `ListStateDescriptor`).
pub struct ListStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _v: PhantomData<fn() -> V>,
}

impl<V: Data> ListStateDescriptor<V> {
    pub fn new(name: impl Into<String>) -> Self {
        ListStateDescriptor { name: name.into(), ttl: None, _v: PhantomData }
    }
    descriptor_common!();
}

/// Names a keyed state holding a map from `UK` to `UV` per key (Flink's `MapStateDescriptor`).
pub struct MapStateDescriptor<UK, UV> {
    name: String,
    ttl: Option<StateTtlConfig>,
    _v: PhantomData<fn() -> (UK, UV)>,
}

impl<UK: Key, UV: Data> MapStateDescriptor<UK, UV> {
    pub fn new(name: impl Into<String>) -> Self {
        MapStateDescriptor { name: name.into(), ttl: None, _v: PhantomData }
    }
    descriptor_common!();
}

pub(crate) type ReduceFn<V> = dyn Fn(V, V) -> V + Send + Sync;

/// Names a keyed state that folds the values added to it with a reduce function (Flink's
/// `ReducingStateDescriptor`).
pub struct ReducingStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtlConfig>,
    pub(crate) reduce: Arc<ReduceFn<V>>,
}

impl<V: Data> ReducingStateDescriptor<V> {
    /// `reduce(accumulated, added)` gives the new accumulated value.
    pub fn new(name: impl Into<String>, reduce: impl Fn(V, V) -> V + Send + Sync + 'static) -> Self {
        ReducingStateDescriptor { name: name.into(), ttl: None, reduce: Arc::new(reduce) }
    }
    descriptor_common!();
}

/// An [`AggregateFunction`] behind a pointer: the trait itself is `Clone`, so not object safe.
pub(crate) trait DynAggregate<IN, ACC, OUT>: Send + Sync {
    fn create_accumulator(&self) -> ACC;
    fn add(&self, accumulator: &mut ACC, value: IN);
    fn get_result(&self, accumulator: &ACC) -> OUT;
}

impl<IN, ACC, OUT, F: AggregateFunction<IN, ACC, OUT>> DynAggregate<IN, ACC, OUT> for F {
    fn create_accumulator(&self) -> ACC {
        AggregateFunction::create_accumulator(self)
    }
    fn add(&self, accumulator: &mut ACC, value: IN) {
        AggregateFunction::add(self, accumulator, value)
    }
    fn get_result(&self, accumulator: &ACC) -> OUT {
        AggregateFunction::get_result(self, accumulator)
    }
}

/// Names a keyed state that aggregates the values added to it into an accumulator of type
/// `ACC` with an [`AggregateFunction`], and reads as `OUT` (Flink's
/// `AggregatingStateDescriptor`). The accumulator is what is stored and snapshotted.
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    name: String,
    ttl: Option<StateTtlConfig>,
    pub(crate) function: Arc<dyn DynAggregate<IN, ACC, OUT>>,
}

impl<IN: 'static, ACC: Data, OUT: 'static> AggregatingStateDescriptor<IN, ACC, OUT> {
    pub fn new(name: impl Into<String>, function: impl AggregateFunction<IN, ACC, OUT>) -> Self {
        AggregatingStateDescriptor { name: name.into(), ttl: None, function: Arc::new(function) }
    }
    descriptor_common!();
}

/// `Clone` and `Debug` without bounds on the state's types.
macro_rules! clone_and_debug {
    ($ty:ident < $($p:ident),+ >, $kind:literal, $typed:ident) => {
        impl<$($p),+> Clone for $ty<$($p),+> {
            fn clone(&self) -> Self {
                $ty { name: self.name.clone(), ttl: self.ttl, $typed: self.$typed.clone() }
            }
        }

        impl<$($p),+> fmt::Debug for $ty<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.name)
                    .field("kind", &$kind)
                    .field("ttl", &self.ttl)
                    .finish()
            }
        }
    };
}

clone_and_debug!(ValueStateDescriptor<V>, "value", _v);
clone_and_debug!(ListStateDescriptor<V>, "list", _v);
clone_and_debug!(MapStateDescriptor<UK, UV>, "map", _v);
clone_and_debug!(ReducingStateDescriptor<V>, "reducing", reduce);
clone_and_debug!(AggregatingStateDescriptor<IN, ACC, OUT>, "aggregating", function);
