//! Visiting every key of a state: what `apply_to_keyed_state` of the broadcast state pattern
//! needs, where a broadcast element is not scoped to one key.

use eddy_core::{Data, Key, Result};

use super::entry::{ListEntry, MapEntry, Stamped};
use super::{
    AggregatingStateDescriptor, KeyedState, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    StateKind, ValueStateDescriptor,
};

mod sealed {
    pub trait Sealed {}
}

/// A descriptor of any kind of keyed state: it names a state and the types of its entries.
///
/// Implemented by the five descriptors; taken by
/// [`KeyedBroadcastContext::apply_to_keyed_state`](crate::broadcast::KeyedBroadcastContext::apply_to_keyed_state).
pub trait KeyedStateDescriptor: sealed::Sealed {
    /// The state's name.
    fn state_name(&self) -> &str;

    /// The keys holding an entry of this state, in a fixed order (none if the state was never
    /// written or restored). An error if the name is used by another kind of state or types.
    fn keys_in<K: Key>(&self, state: &mut KeyedState<K>) -> Result<Vec<K>>;
}

macro_rules! keyed_state_descriptor {
    ($desc:ident < $($p:ident : $b:ident),+ >, $entry:ty, $kind:expr) => {
        impl<$($p: $b),+> sealed::Sealed for $desc<$($p),+> {}

        impl<$($p: $b),+> KeyedStateDescriptor for $desc<$($p),+> {
            fn state_name(&self) -> &str {
                self.name()
            }

            fn keys_in<K: Key>(&self, state: &mut KeyedState<K>) -> Result<Vec<K>> {
                state.keys_of::<$entry>(self.name(), $kind, self.ttl_config().copied())
            }
        }
    };
}

keyed_state_descriptor!(ValueStateDescriptor<V: Data>, Stamped<V>, StateKind::Value);
keyed_state_descriptor!(ListStateDescriptor<V: Data>, ListEntry<V>, StateKind::List);
keyed_state_descriptor!(MapStateDescriptor<UK: Key, UV: Data>, MapEntry<UK, UV>, StateKind::Map);
keyed_state_descriptor!(ReducingStateDescriptor<V: Data>, Stamped<V>, StateKind::Reducing);

impl<IN, ACC, OUT> sealed::Sealed for AggregatingStateDescriptor<IN, ACC, OUT> {}

impl<IN: 'static, ACC: Data, OUT: 'static> KeyedStateDescriptor for AggregatingStateDescriptor<IN, ACC, OUT> {
    fn state_name(&self) -> &str {
        self.name()
    }

    fn keys_in<K: Key>(&self, state: &mut KeyedState<K>) -> Result<Vec<K>> {
        state.keys_of::<Stamped<ACC>>(self.name(), StateKind::Aggregating, self.ttl_config().copied())
    }
}
