//! Keyed state of window functions: per key (`WindowContext::global_state`, Flink's
//! `globalState()`) and per key and window (`WindowContext::window_state`, Flink's
//! `windowState()`).
//!
//! Both are [`KeyedState`] in the operator's backend, created when a function first reaches
//! for them. Per-window state is keyed by [`KeyWindow`], whose key group is that of its key, so
//! it is cut by key group, restored and rescaled with the rest of the key's state. When a
//! window is cleaned up (its max timestamp plus the allowed lateness has passed) the operator
//! calls the function's `clear` for every key that reached that window's state, where the
//! function clears it, as in Flink. Merging (session) windows have no per-window state: a
//! window that merges away would take it with it.
//!
//! Checkpoints write both states in full (as savepoints do) inside the operator's
//! [`KeyedSnapshot`](super::checkpoint::KeyedSnapshot), with the windows awaiting `clear`.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;
use std::sync::Arc;

use eddy_core::config::StateBackendConfig;
use eddy_core::{EddyError, Key, Result};
use serde::{Deserialize, Serialize};

use super::checkpoint::{cut_by_key_group, Restore};
use super::operator::cleanup_time;
use super::window::Window;
use crate::operators::KeyMap;
use crate::state::{KeyGroupState, KeyedState, KeyedStateSnapshot};

/// A key and one of its windows: the key of per-window state.
///
/// It hashes as its key alone, so it belongs to the key's key group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWindow<K, W> {
    pub key: K,
    pub window: W,
}

impl<K: Hash, W> Hash for KeyWindow<K, W> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

/// What a checkpoint holds of a window function's state.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FunctionStateSnapshot {
    global: Option<KeyedStateSnapshot>,
    windows: Option<KeyedStateSnapshot>,
    /// `Vec<(key, window)>` per key group: the windows whose state awaits `clear`.
    cleanup: Vec<KeyGroupState>,
}

/// The state a window operator keeps for its window function.
pub(crate) struct WindowFnState<K, W> {
    config: Arc<StateBackendConfig>,
    max_parallelism: usize,
    event_time: bool,
    lateness: i64,
    merging: bool,
    global: Option<KeyedState<K>>,
    windows: Option<KeyedState<KeyWindow<K, W>>>,
    /// The windows whose state was reached, by cleanup time.
    cleanup: BTreeMap<i64, Vec<KeyWindow<K, W>>>,
    registered: KeyMap<KeyWindow<K, W>, ()>,
    /// The time up to which windows were cleaned up: a window reached after its cleanup (by
    /// `clear` itself) is not registered again.
    cleaned_to: i64,
    /// Where a handle points when the state could not be created (the call fails anyway).
    detached: Option<KeyedState<KeyWindow<K, W>>>,
    detached_global: Option<KeyedState<K>>,
}

impl<K: Key, W: Window> WindowFnState<K, W> {
    pub fn new(config: Arc<StateBackendConfig>, event_time: bool, lateness: i64, merging: bool) -> Self {
        WindowFnState {
            config,
            max_parallelism: 1,
            event_time,
            lateness,
            merging,
            global: None,
            windows: None,
            cleanup: BTreeMap::new(),
            registered: KeyMap::default(),
            cleaned_to: i64::MIN,
            detached: None,
            detached_global: None,
        }
    }

    /// Keys are grouped for `max_parallelism` (set when the operator opens).
    pub fn open(&mut self, max_parallelism: usize) {
        self.max_parallelism = max_parallelism;
    }

    /// The per-key state, created on first use. On failure the error goes to `error` and the
    /// state returned is a detached one.
    pub fn global(&mut self, error: &mut Option<EddyError>) -> &mut KeyedState<K> {
        let (config, max_parallelism) = (&self.config, self.max_parallelism);
        created(&mut self.global, &mut self.detached_global, config, max_parallelism, error)
    }

    /// The per-window state, created on first use; `key_window`'s `clear` is due when its
    /// window is cleaned up. On failure (or for merging windows) the error goes to `error` and
    /// the state returned is a detached one.
    pub fn windows(
        &mut self,
        key_window: &KeyWindow<K, W>,
        error: &mut Option<EddyError>,
    ) -> &mut KeyedState<KeyWindow<K, W>> {
        if self.merging {
            error.get_or_insert(EddyError::InvalidJob(
                "per-window state (window_state) is not available with merging (session) windows; \
                 use global_state"
                    .into(),
            ));
            return self.detached.get_or_insert_with(KeyedState::default);
        }
        if !self.registered.contains_key(key_window) {
            self.register(key_window.clone());
        }
        let (config, max_parallelism) = (&self.config, self.max_parallelism);
        created(&mut self.windows, &mut self.detached, config, max_parallelism, error)
    }

    fn register(&mut self, key_window: KeyWindow<K, W>) {
        let time = cleanup_time(key_window.window.max_timestamp(), self.event_time, self.lateness);
        if time <= self.cleaned_to {
            return;
        }
        self.registered.insert(key_window.clone(), ());
        self.cleanup.entry(time).or_default().push(key_window);
    }

    /// The windows cleaned up by `time` whose state the function reached: it clears them now.
    pub fn due(&mut self, time: i64) -> Vec<KeyWindow<K, W>> {
        self.cleaned_to = self.cleaned_to.max(time);
        let mut due = Vec::new();
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() > time {
                break;
            }
            due.extend(entry.remove());
        }
        for kw in &due {
            self.registered.remove(kw);
        }
        due
    }

    /// Both states in full, and the windows awaiting `clear`; `None` if the function never
    /// used state.
    pub fn snapshot(&mut self, now: i64) -> Result<Option<FunctionStateSnapshot>> {
        if self.global.is_none() && self.windows.is_none() {
            return Ok(None);
        }
        let max_parallelism = self.max_parallelism;
        let global = self.global.as_mut().map(|s| s.snapshot(max_parallelism, now)).transpose()?;
        let windows = self.windows.as_mut().map(|s| s.snapshot(max_parallelism, now)).transpose()?;
        let pending = self.registered.keys().map(|kw| (&kw.key, &kw.window));
        let cleanup = cut_by_key_group(pending, max_parallelism)?;
        Ok(Some(FunctionStateSnapshot { global, windows, cleanup }))
    }

    /// Takes the key groups this subtask owns out of the snapshots' function state.
    pub fn restore(&mut self, restore: &mut Restore<'_>) -> Result<()> {
        let mut parts: Vec<FunctionStateSnapshot> =
            restore.snapshots.iter_mut().filter_map(|s| s.functions.take()).collect();
        if parts.is_empty() {
            return Ok(());
        }
        let range = restore.restored.key_groups();
        self.max_parallelism = restore.restored.max_parallelism;
        let (mut global, mut windows) = (Vec::new(), Vec::new());
        for part in &mut parts {
            global.extend(part.global.take());
            windows.extend(part.windows.take());
        }
        self.global = self.restored(global, &range)?;
        self.windows = self.restored(windows, &range)?;
        let pending: Vec<(K, W)> = restore.decode_key_groups(parts.iter().flat_map(|p| &p.cleanup))?;
        for (key, window) in pending {
            self.register(KeyWindow { key, window });
        }
        Ok(())
    }

    fn restored<KK: Key>(
        &self,
        snapshots: Vec<KeyedStateSnapshot>,
        range: &RangeInclusive<usize>,
    ) -> Result<Option<KeyedState<KK>>> {
        if snapshots.is_empty() {
            return Ok(None);
        }
        let mut state = KeyedState::new(self.config.clone(), self.max_parallelism)?;
        state.restore(snapshots, range.clone())?;
        Ok(Some(state))
    }
}

/// `state`, created on the backend `config` names if it does not exist yet; if it cannot be
/// created, the error goes to `error` and `detached` (a heap state nothing reads) is returned.
fn created<'s, KK: Key>(
    state: &'s mut Option<KeyedState<KK>>,
    detached: &'s mut Option<KeyedState<KK>>,
    config: &Arc<StateBackendConfig>,
    max_parallelism: usize,
    error: &mut Option<EddyError>,
) -> &'s mut KeyedState<KK> {
    if state.is_none() {
        match KeyedState::new(config.clone(), max_parallelism) {
            Ok(s) => *state = Some(s),
            Err(e) => {
                error.get_or_insert(e);
                return detached.get_or_insert_with(KeyedState::default);
            }
        }
    }
    state.as_mut().expect("created above")
}
