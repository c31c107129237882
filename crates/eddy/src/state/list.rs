//! List state.

use eddy_core::{Data, Key};

use super::entry::{Access, ListEntry};

/// The current key's list of a list state (Flink's `ListState`).
///
/// Under TTL every element expires on its own, counted from when it was added (or last read,
/// with `OnReadAndWrite`).
pub struct ListState<'a, K, V> {
    access: Access<'a, K, ListEntry<V>>,
}

impl<'a, K: Key, V: Data> ListState<'a, K, V> {
    pub(crate) fn new(access: Access<'a, K, ListEntry<V>>) -> Self {
        ListState { access }
    }

    pub(crate) fn detached(key: &'a K) -> Self {
        ListState { access: Access::detached(key) }
    }

    /// The elements in the order they were added; empty if there are none.
    pub fn get(&mut self) -> &[V] {
        self.access.read().map_or(&[], |e| &e.values)
    }

    pub fn add(&mut self, value: V) {
        let stamp = self.access.write_stamp();
        self.access.upsert(value, |e, v| e.push(v, stamp), |v| ListEntry::new(vec![v], stamp));
    }

    pub fn add_all(&mut self, values: impl IntoIterator<Item = V>) {
        let values: Vec<V> = values.into_iter().collect();
        if values.is_empty() {
            return;
        }
        let stamp = self.access.write_stamp();
        self.access.upsert(values, |e, vs| e.extend(vs, stamp), |vs| ListEntry::new(vs, stamp));
    }

    /// Replaces the elements; an empty list clears the state.
    pub fn update(&mut self, values: Vec<V>) {
        let stamp = self.access.write_stamp();
        self.access.replace(|_| (!values.is_empty()).then(|| ListEntry::new(values, stamp)));
    }

    pub fn clear(&mut self) {
        self.access.clear()
    }
}
