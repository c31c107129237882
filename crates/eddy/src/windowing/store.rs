//! Where the general window operator keeps each key's open windows: a heap map on the
//! `hashmap` backend, keyed state on any other.
//!
//! On `fjall`, a key's window list (windows with their contents, trigger state and live
//! timers) is one value of a value state, so it sits in the backend's write-back cache while
//! the key is hot and in the LSM tree otherwise; state larger than memory then works for
//! windows as for keyed process functions. The timer queues stay on the heap (as Flink's
//! RocksDB backend can keep its timers on the heap): they hold `(time, key, window)` per live
//! timer, not the contents. Checkpoints write the same format from both (see
//! [`super::checkpoint`]), so a savepoint of one backend restores on the other.

use std::sync::Arc;

use eddy_core::config::{StateBackendConfig, StateBackendKind};
use eddy_core::{Data, EddyError, Key, Result};

use crate::operators::KeyMap;
use crate::state::{KeyedState, KeyedStateDescriptor, ValueStateDescriptor};

/// The name of the value state holding a key's windows on a serializing backend.
const WINDOWS_STATE: &str = "windows";

/// Each key's list of `E` (its open windows).
pub(crate) enum KeyedLists<K, E> {
    Heap(KeyMap<K, Vec<E>>),
    Backend { state: Box<KeyedState<K>>, desc: ValueStateDescriptor<Vec<E>> },
}

fn detached() -> EddyError {
    EddyError::user("the window state could not be reached")
}

impl<K: Key, E: Data> KeyedLists<K, E> {
    /// Lists on the backend `config` names, keys grouped for `max_parallelism`.
    pub fn new(config: &Arc<StateBackendConfig>, max_parallelism: usize) -> Result<Self> {
        Ok(match config.kind {
            StateBackendKind::HashMap => KeyedLists::Heap(KeyMap::default()),
            _ => KeyedLists::Backend {
                state: Box::new(KeyedState::new(config.clone(), max_parallelism)?),
                desc: ValueStateDescriptor::new(WINDOWS_STATE),
            },
        })
    }

    /// The list of `key`, created empty if it has none. (The list borrows the key too: keyed
    /// state hands out entries for the lifetime of both.)
    pub fn entries<'s>(&'s mut self, key: &'s K) -> Result<&'s mut Vec<E>> {
        match self {
            KeyedLists::Heap(map) => {
                if !map.contains_key(key) {
                    map.insert(key.clone(), Vec::new());
                }
                map.get_mut(key).ok_or_else(detached)
            }
            KeyedLists::Backend { state, desc } => {
                state.value_state(desc, key, 0)?.into_value_or_insert_with(Vec::new).ok_or_else(detached)
            }
        }
    }

    /// The list of `key`, if it has one.
    pub fn get_mut<'s>(&'s mut self, key: &'s K) -> Result<Option<&'s mut Vec<E>>> {
        match self {
            KeyedLists::Heap(map) => Ok(map.get_mut(key)),
            KeyedLists::Backend { state, desc } => Ok(state.value_state(desc, key, 0)?.into_value_mut()),
        }
    }

    pub fn remove(&mut self, key: &K) -> Result<()> {
        match self {
            KeyedLists::Heap(map) => {
                map.remove(key);
            }
            KeyedLists::Backend { state, desc } => state.value_state(desc, key, 0)?.clear(),
        }
        Ok(())
    }

    /// Calls `f` with every key and its list: in place on the heap, copied out of the backend.
    pub fn for_each(&mut self, mut f: impl FnMut(&K, &[E])) -> Result<()> {
        match self {
            KeyedLists::Heap(map) => map.iter().for_each(|(k, v)| f(k, v)),
            KeyedLists::Backend { state, desc } => {
                for key in desc.keys_in(state)? {
                    if let Some(list) = state.value_state(desc, &key, 0)?.value() {
                        f(&key, list);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every key and its list, copied.
    pub fn copy_all(&mut self) -> Result<Vec<(K, Vec<E>)>> {
        let mut all = Vec::new();
        self.for_each(|k, v| all.push((k.clone(), v.to_vec())))?;
        Ok(all)
    }
}
