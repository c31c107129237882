//! What one key holds in one state, and how a handle reads and writes it under TTL.
//!
//! Every stored value carries the processing time of its last access (its stamp), which TTL
//! compares with the clock; without TTL stamps are left at 0 and lists keep none at all.

use std::borrow::Cow;

use eddy_core::{Data, Key};
use serde::{Deserialize, Serialize};

use super::ttl::TtlNow;
use super::Map;

/// The stamp of an expired entry that a read has returned under `ReturnExpiredIfNotCleanedUp`:
/// that read cleaned it up, and the next one removes it.
pub(crate) const RETURNED: i64 = i64::MIN;

/// A key's entry in one state table: one or more stamped values.
pub(crate) trait Entry: Data {
    /// The user types the entry holds, for error messages.
    fn value_types() -> String;
    /// Keeps the values whose stamp passes `keep`; false if none is left.
    fn retain_stamps(&mut self, keep: impl FnMut(i64) -> bool) -> bool;
    /// Replaces every stamp `s` by `f(s)`.
    fn map_stamps(&mut self, f: impl FnMut(i64) -> i64);
    /// The entry with only the values whose stamp passes `keep`, copied only if some do not;
    /// `None` if none does.
    fn filtered(&self, keep: impl Fn(i64) -> bool) -> Option<Cow<'_, Self>>;
    /// Whether a decoded entry holds nothing (it is then not stored).
    fn is_empty(&self) -> bool {
        false
    }
    /// Checks the invariants of a decoded entry.
    fn check(&self, _has_ttl: bool) -> Result<(), String> {
        Ok(())
    }
}

/// A value and the processing time of its last access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stamped<V> {
    pub value: V,
    pub stamp: i64,
}

impl<V: Data> Entry for Stamped<V> {
    fn value_types() -> String {
        std::any::type_name::<V>().to_string()
    }
    fn retain_stamps(&mut self, mut keep: impl FnMut(i64) -> bool) -> bool {
        keep(self.stamp)
    }
    fn map_stamps(&mut self, mut f: impl FnMut(i64) -> i64) {
        self.stamp = f(self.stamp);
    }
    fn filtered(&self, keep: impl Fn(i64) -> bool) -> Option<Cow<'_, Self>> {
        keep(self.stamp).then_some(Cow::Borrowed(self))
    }
}

/// A list, with one stamp per element under TTL and none without.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ListEntry<V> {
    pub values: Vec<V>,
    pub stamps: Vec<i64>,
}

impl<V> ListEntry<V> {
    pub fn new(values: Vec<V>, stamp: Option<i64>) -> Self {
        let stamps = stamp.map_or_else(Vec::new, |s| vec![s; values.len()]);
        ListEntry { values, stamps }
    }

    pub fn push(&mut self, value: V, stamp: Option<i64>) {
        self.values.push(value);
        if let Some(s) = stamp {
            self.stamps.push(s);
        }
    }

    pub fn extend(&mut self, values: Vec<V>, stamp: Option<i64>) {
        if let Some(s) = stamp {
            self.stamps.resize(self.stamps.len() + values.len(), s);
        }
        self.values.extend(values);
    }
}

impl<V: Data> Entry for ListEntry<V> {
    fn value_types() -> String {
        format!("a list of {}", std::any::type_name::<V>())
    }
    fn retain_stamps(&mut self, mut keep: impl FnMut(i64) -> bool) -> bool {
        // Moves each kept element to the front, in order; its stamp along with it.
        let mut kept = 0;
        for i in 0..self.stamps.len() {
            if keep(self.stamps[i]) {
                self.values.swap(kept, i);
                self.stamps[kept] = self.stamps[i];
                kept += 1;
            }
        }
        self.values.truncate(kept);
        self.stamps.truncate(kept);
        !self.values.is_empty()
    }
    fn map_stamps(&mut self, mut f: impl FnMut(i64) -> i64) {
        for s in &mut self.stamps {
            *s = f(*s);
        }
    }
    fn filtered(&self, keep: impl Fn(i64) -> bool) -> Option<Cow<'_, Self>> {
        if self.stamps.iter().all(|&s| keep(s)) {
            return Some(Cow::Borrowed(self));
        }
        let mut copy = self.clone();
        copy.retain_stamps(keep).then_some(Cow::Owned(copy))
    }
    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    fn check(&self, has_ttl: bool) -> Result<(), String> {
        let expected = if has_ttl { self.values.len() } else { 0 };
        if self.stamps.len() != expected {
            return Err(format!(
                "a list of {} elements carries {} TTL stamps",
                self.values.len(),
                self.stamps.len()
            ));
        }
        Ok(())
    }
}

/// A map, with one stamp per entry.
pub(crate) type MapEntry<UK, UV> = Map<UK, Stamped<UV>>;

impl<UK: Key, UV: Data> Entry for MapEntry<UK, UV> {
    fn value_types() -> String {
        format!("a map from {} to {}", std::any::type_name::<UK>(), std::any::type_name::<UV>())
    }
    fn retain_stamps(&mut self, mut keep: impl FnMut(i64) -> bool) -> bool {
        self.retain(|_, e| keep(e.stamp));
        !Map::is_empty(self)
    }
    fn map_stamps(&mut self, mut f: impl FnMut(i64) -> i64) {
        for e in self.values_mut() {
            e.stamp = f(e.stamp);
        }
    }
    fn filtered(&self, keep: impl Fn(i64) -> bool) -> Option<Cow<'_, Self>> {
        if self.values().all(|e| keep(e.stamp)) {
            return Some(Cow::Borrowed(self));
        }
        let copy: Self =
            self.iter().filter(|(_, e)| keep(e.stamp)).map(|(k, e)| (k.clone(), e.clone())).collect();
        (!copy.is_empty()).then_some(Cow::Owned(copy))
    }
    fn is_empty(&self) -> bool {
        Map::is_empty(self)
    }
}

/// One key's entry in the LSM backend's write-back cache: the decoded entry (`None`: the key
/// has none) and whether it changed since it was loaded or last written back.
pub(crate) struct Cached<E> {
    pub entry: Option<E>,
    pub dirty: bool,
    pub key_group: u16,
}

/// What a handle reads and writes: a table of the heap backend, or the current key's cached
/// entry in the LSM backend (which writes it back when it is evicted or snapshotted).
enum Store<'a, K, E> {
    /// The state could not be reached (the error went to the function's context).
    Detached,
    Heap(&'a mut Map<K, E>),
    Cached(&'a mut Cached<E>),
}

/// One key's entry in one state table, as a state handle reaches it.
///
/// A handle whose state could not be reached (the error went to the function's context) is
/// detached: it reads as empty and ignores writes.
pub(crate) struct Access<'a, K, E> {
    store: Store<'a, K, E>,
    key: &'a K,
    ttl: Option<TtlNow>,
}

/// Applies TTL to an entry before a read (see [`Access::read_with`]); false if nothing is left.
fn read_under_ttl<E: Entry>(e: &mut E, t: TtlNow, returns: bool) -> bool {
    let left = if t.return_expired {
        e.retain_stamps(|s| s != RETURNED)
    } else {
        e.retain_stamps(|s| !t.expired(s))
    };
    if left && returns {
        e.map_stamps(|s| match t.expired(s) {
            true => RETURNED,
            false if t.refresh_on_read => t.now,
            false => s,
        });
    }
    left
}

impl<'a, K: Key, E: Entry> Access<'a, K, E> {
    pub fn new(entries: &'a mut Map<K, E>, key: &'a K, ttl: Option<TtlNow>) -> Self {
        Access { store: Store::Heap(entries), key, ttl }
    }

    pub fn cached(slot: &'a mut Cached<E>, key: &'a K, ttl: Option<TtlNow>) -> Self {
        Access { store: Store::Cached(slot), key, ttl }
    }

    pub fn detached(key: &'a K) -> Self {
        Access { store: Store::Detached, key, ttl: None }
    }

    pub fn ttl(&self) -> Option<TtlNow> {
        self.ttl
    }

    /// The stamp of a write: now under TTL.
    pub fn write_stamp(&self) -> Option<i64> {
        self.ttl.map(|t| t.now)
    }

    /// The entry as stored, without TTL checks, for a caller that may change it (maps, whose
    /// entries expire one by one).
    pub fn stored(&mut self) -> Option<&mut E> {
        match &mut self.store {
            Store::Detached => None,
            Store::Heap(map) => map.get_mut(self.key),
            Store::Cached(c) => {
                c.dirty = true;
                c.entry.as_mut()
            }
        }
    }

    /// The entry as stored, without TTL checks, for an operator that updates it in place and
    /// keeps the reference (the handle is used up); `None` if the key has none.
    pub fn into_stored(self) -> Option<&'a mut E> {
        match self.store {
            Store::Detached => None,
            Store::Heap(map) => map.get_mut(self.key),
            Store::Cached(c) => {
                c.dirty = true;
                c.entry.as_mut()
            }
        }
    }

    /// [`into_stored`](Self::into_stored), creating the entry with `create` if the key has
    /// none; `None` only for a detached handle.
    pub fn into_stored_or_insert_with(self, create: impl FnOnce() -> E) -> Option<&'a mut E> {
        match self.store {
            Store::Detached => None,
            Store::Heap(map) => {
                if !map.contains_key(self.key) {
                    map.insert(self.key.clone(), create());
                }
                map.get_mut(self.key)
            }
            Store::Cached(c) => {
                c.dirty = true;
                Some(c.entry.get_or_insert_with(create))
            }
        }
    }

    /// The entry as stored, for a caller that only reads it.
    pub fn peek(&self) -> Option<&E> {
        match &self.store {
            Store::Detached => None,
            Store::Heap(map) => map.get(self.key),
            Store::Cached(c) => c.entry.as_ref(),
        }
    }

    /// The entry as a read that returns it sees it (see [`Access::read_with`]).
    pub fn read(&mut self) -> Option<&mut E> {
        self.read_with(true)
    }

    /// The entry as a read sees it under TTL: values returned expired by an earlier read are
    /// removed, and so are expired ones under `NeverReturnExpired`. If the read `returns` the
    /// entry, expired values it returns are marked for removal by the next read
    /// (`ReturnExpiredIfNotCleanedUp`), and `OnReadAndWrite` refreshes the others.
    pub fn read_with(&mut self, returns: bool) -> Option<&mut E> {
        let ttl = self.ttl;
        match &mut self.store {
            Store::Detached => None,
            Store::Heap(map) => {
                if let Some(t) = ttl {
                    if !read_under_ttl(map.get_mut(self.key)?, t, returns) {
                        map.remove(self.key);
                        return None;
                    }
                }
                map.get_mut(self.key)
            }
            Store::Cached(c) => {
                if let Some(t) = ttl {
                    c.dirty = true;
                    if !read_under_ttl(c.entry.as_mut()?, t, returns) {
                        c.entry = None;
                        return None;
                    }
                }
                c.entry.as_mut()
            }
        }
    }

    /// Updates the entry with `value`, or creates it from `value` if the key has none.
    pub fn upsert<T>(&mut self, value: T, update: impl FnOnce(&mut E, T), create: impl FnOnce(T) -> E) {
        match &mut self.store {
            Store::Detached => {}
            Store::Heap(map) => match map.get_mut(self.key) {
                Some(e) => update(e, value),
                None => {
                    map.insert(self.key.clone(), create(value));
                }
            },
            Store::Cached(c) => {
                c.dirty = true;
                match &mut c.entry {
                    Some(e) => update(e, value),
                    None => c.entry = Some(create(value)),
                }
            }
        }
    }

    /// Replaces the entry by `f(old entry)`; `None` removes it.
    pub fn replace(&mut self, f: impl FnOnce(Option<E>) -> Option<E>) {
        match &mut self.store {
            Store::Detached => {}
            Store::Heap(map) => match map.remove_entry(self.key) {
                Some((k, e)) => {
                    if let Some(new) = f(Some(e)) {
                        map.insert(k, new);
                    }
                }
                None => {
                    if let Some(new) = f(None) {
                        map.insert(self.key.clone(), new);
                    }
                }
            },
            Store::Cached(c) => {
                c.dirty = true;
                c.entry = f(c.entry.take());
            }
        }
    }

    /// Removes the key's entry.
    pub fn clear(&mut self) {
        match &mut self.store {
            Store::Detached => {}
            Store::Heap(map) => {
                map.remove(self.key);
            }
            Store::Cached(c) => {
                c.dirty |= c.entry.is_some();
                c.entry = None;
            }
        }
    }
}
