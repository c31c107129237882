//! What [`KeyedState`](super::KeyedState) keeps besides its slots: the backend its tables live
//! in, and the bookkeeping of incremental checkpoints.
//!
//! # Incremental checkpoints
//!
//! The unit of an incremental checkpoint is the key group: each is written as one immutable
//! file holding every state's entries of it ([`KeyGroupFile`]), and a checkpoint references one
//! file per key group that has entries. A key group nobody wrote to since the previous
//! checkpoint keeps its file; the others get new files. This needs nothing from the LSM engine
//! but a consistent view and ordered prefix scans, and since files are per key group, a rescale
//! hands them to the new owners as they are.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, OnceLock};

use eddy_core::codec::decode_value;
use eddy_core::config::StateBackendConfig;
use eddy_core::{EddyError, Result};
use eddy_runtime::checkpoint::storage::{read_shared_file, SharedFile};

use super::lsm::{LsmStateTable, LsmStore, LsmView};
use super::snapshot::StateTable;
use super::{KeyGroupFile, KeyGroupState, KeyedStateSnapshot, StateSnapshot, SNAPSHOT_FORMAT_VERSION};

/// Where the tables of a [`KeyedState`](super::KeyedState) live.
pub(crate) enum Backend {
    Heap,
    Lsm(LsmStore),
}

/// What a state slot holds.
pub(crate) enum Content<K> {
    /// Restored bytes, waiting for a descriptor to say their types.
    Restored {
        max_parallelism: usize,
        /// Shared with the asynchronous parts of snapshots, which copy it off the task thread.
        snapshot: Arc<StateSnapshot>,
    },
    Heap(Box<dyn StateTable<K>>),
    Lsm(Box<dyn LsmStateTable<K>>),
}

/// The shared file of one key group, set by the asynchronous part of the snapshot that writes
/// it: `Some(file)`, or `None` when the key group turned out empty. Unset while that part has
/// not run, and for good if it failed.
pub(crate) type SharedSlot = OnceLock<Option<SharedFile>>;

/// A slot already holding `file`.
pub(crate) fn written(file: SharedFile) -> Arc<SharedSlot> {
    Arc::new(OnceLock::from(Some(file)))
}

/// The state of incremental checkpointing.
#[derive(Default)]
pub(crate) struct Incremental {
    /// The file of every key group with entries as of the last snapshot (or restore).
    pub base: BTreeMap<usize, Arc<SharedSlot>>,
    /// Makes this instance's file names unique (with the checkpoint id and key group).
    pub token: u64,
    /// The warning that checkpoints cannot be incremental was logged.
    pub warned: bool,
    /// The id of the next state created in the LSM backend.
    pub next_state_id: u32,
}

impl Incremental {
    pub fn new() -> Self {
        Incremental { token: eddy_core::random::random_seed(), ..Incremental::default() }
    }
}

impl Backend {
    /// A consistent view for a snapshot of key groups of `max_parallelism` (`None` on the heap).
    pub fn view(&self, max_parallelism: usize) -> Result<Option<LsmView>> {
        match self {
            Backend::Heap => Ok(None),
            Backend::Lsm(store) if store.max_parallelism != max_parallelism => {
                Err(EddyError::InvalidJob(format!(
                    "the fjall backend groups keys for max parallelism {} and cannot snapshot them for {}",
                    store.max_parallelism, max_parallelism
                )))
            }
            Backend::Lsm(store) => Ok(Some(store.snapshot_view())),
        }
    }
}

/// Snapshots with their shared key groups read back, and the shared files by key group.
pub(crate) type Resolved = (Vec<KeyedStateSnapshot>, BTreeMap<usize, SharedFile>);

/// `snapshots` with the shared files of their key groups in `range` read back into their
/// states, and those files by key group.
pub(crate) fn resolve_shared(
    snapshots: Vec<KeyedStateSnapshot>,
    range: &RangeInclusive<usize>,
    config: &StateBackendConfig,
) -> Result<Resolved> {
    let mut files = BTreeMap::new();
    let mut resolved = Vec::with_capacity(snapshots.len());
    for mut snapshot in snapshots {
        if snapshot.shared.is_empty() {
            resolved.push(snapshot);
            continue;
        }
        let Some((dir, _)) = &config.checkpoints else {
            return Err(EddyError::InvalidJob(
                "the keyed state was checkpointed incrementally, its key groups are files under \
                 state.checkpoints.dir, and state.checkpoints.dir is not set"
                    .into(),
            ));
        };
        for shared in std::mem::take(&mut snapshot.shared) {
            if !range.contains(&shared.key_group) {
                continue;
            }
            let bytes = read_shared_file(dir, &shared.file)?;
            let location = dir.join(&shared.file.path).display().to_string();
            let bad = |reason: String| EddyError::BadInput { location: location.clone(), reason };
            let file: KeyGroupFile = decode_value(&bytes).map_err(|e| bad(e.to_string()))?;
            if file.format_version != SNAPSHOT_FORMAT_VERSION || file.key_group != shared.key_group {
                return Err(bad(format!(
                    "holds key group {} in format {}, expected key group {} in format {SNAPSHOT_FORMAT_VERSION}",
                    file.key_group, file.format_version, shared.key_group
                )));
            }
            for (name, bytes) in file.states {
                let Some(state) = snapshot.states.iter_mut().find(|s| s.name == name) else {
                    return Err(bad(format!("holds state '{name}', which the checkpoint does not list")));
                };
                state.key_groups.push(KeyGroupState { key_group: shared.key_group, bytes });
            }
            files.insert(shared.key_group, shared.file);
        }
        resolved.push(snapshot);
    }
    Ok((resolved, files))
}
