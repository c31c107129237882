//! Map state.

use std::borrow::Borrow;
use std::hash::Hash;

use eddy_core::{Data, Key};

use super::entry::{Access, MapEntry, Stamped, RETURNED};
use super::ttl::TtlNow;

/// The current key's map of a map state (Flink's `MapState`). Iteration order is unspecified.
///
/// Under TTL every map entry expires on its own, counted from its last `put` (or last read,
/// with `OnReadAndWrite`).
pub struct MapState<'a, K, UK, UV> {
    access: Access<'a, K, MapEntry<UK, UV>>,
}

impl<'a, K: Key, UK: Key, UV: Data> MapState<'a, K, UK, UV> {
    pub(crate) fn new(access: Access<'a, K, MapEntry<UK, UV>>) -> Self {
        MapState { access }
    }

    pub(crate) fn detached(key: &'a K) -> Self {
        MapState { access: Access::detached(key) }
    }

    /// The value of `key`, or `None` if it has none or it expired.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&UV>
    where
        UK: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(t) = self.access.ttl() {
            if !self.read_entry(key, &t) {
                return None;
            }
        }
        self.access.peek()?.get(key).map(|e| &e.value)
    }

    /// Applies TTL to the entry of `key` before a read returns it (as `Access::read` does for
    /// whole entries); false if there is nothing to return.
    fn read_entry<Q>(&mut self, key: &Q, t: &TtlNow) -> bool
    where
        UK: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(map) = self.access.stored() else { return false };
        let Some(e) = map.get_mut(key) else { return false };
        if e.stamp == RETURNED || (t.expired(e.stamp) && !t.return_expired) {
            map.remove(key);
            if map.is_empty() {
                self.access.clear();
            }
            return false;
        }
        if t.expired(e.stamp) {
            e.stamp = RETURNED;
        } else if t.refresh_on_read {
            e.stamp = t.now;
        }
        true
    }

    pub fn contains<Q>(&mut self, key: &Q) -> bool
    where
        UK: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    pub fn put(&mut self, key: UK, value: UV) {
        let stamp = self.access.write_stamp().unwrap_or(0);
        self.access.upsert(
            (key, value),
            |m, (k, value)| {
                m.insert(k, Stamped { value, stamp });
            },
            |(k, value)| MapEntry::from_iter([(k, Stamped { value, stamp })]),
        );
    }

    pub fn put_all(&mut self, entries: impl IntoIterator<Item = (UK, UV)>) {
        let entries: Vec<(UK, UV)> = entries.into_iter().collect();
        if entries.is_empty() {
            return;
        }
        let stamp = self.access.write_stamp().unwrap_or(0);
        let stamped = move |entries: Vec<(UK, UV)>| {
            entries.into_iter().map(move |(k, value)| (k, Stamped { value, stamp }))
        };
        self.access.upsert(entries, |m, es| m.extend(stamped(es)), |es| stamped(es).collect());
    }

    /// Removes `key` and returns its value (`None` if it had none or it expired).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<UV>
    where
        UK: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.access.stored()?;
        let removed = map.remove(key)?;
        if map.is_empty() {
            self.access.clear();
        }
        match self.access.ttl() {
            Some(t) if removed.stamp == RETURNED || (t.expired(removed.stamp) && !t.return_expired) => None,
            _ => Some(removed.value),
        }
    }

    /// The entries (key, value), in no particular order.
    pub fn entries(&mut self) -> impl Iterator<Item = (&UK, &UV)> + '_ {
        self.access.read().into_iter().flat_map(|m| m.iter().map(|(k, e)| (k, &e.value)))
    }

    pub fn keys(&mut self) -> impl Iterator<Item = &UK> + '_ {
        self.entries().map(|(k, _)| k)
    }

    pub fn values(&mut self) -> impl Iterator<Item = &UV> + '_ {
        self.entries().map(|(_, v)| v)
    }

    /// Whether the map has no entries (that a read would return).
    pub fn is_empty(&mut self) -> bool {
        self.access.read_with(false).is_none()
    }

    pub fn clear(&mut self) {
        self.access.clear()
    }
}
