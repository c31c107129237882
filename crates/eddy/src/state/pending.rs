//! The asynchronous part of a keyed-state snapshot.
//!
//! [`KeyedState::snapshot_async`](super::KeyedState::snapshot_async) and
//! [`checkpoint_async`](super::KeyedState::checkpoint_async) take the synchronous part on the
//! task thread: on the `fjall` backend they write the caches back, take an MVCC view of the
//! tree and note, per state, where its entries come from. The returned [`PendingSnapshot`]
//! owns all it reads, so [`PendingSnapshot::finish`] can scan the view, build the bytes and
//! write the shared files of an incremental checkpoint on another thread while the task keeps
//! changing its state. On the heap backend the synchronous part copies the tables' entries
//! (there is no cheaper consistent view of a hash map), and `finish` only assembles them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eddy_core::Result;
use eddy_runtime::checkpoint::storage::{shared_file_path, write_shared_file, SharedFile};

use super::backend::SharedSlot;
use super::lsm::{EntryWriter, LsmView};
use super::SNAPSHOT_FORMAT_VERSION;
use super::{KeyGroupFile, KeyGroupState, KeyedStateSnapshot, SharedKeyGroup, StateSnapshot};

/// Where a state's entries come from in the asynchronous part.
pub(crate) enum Source {
    /// Already in the snapshot (heap tables, copied in the synchronous part).
    Taken,
    /// Restored bytes no descriptor has named since: copied as they are.
    Restored(Arc<StateSnapshot>),
    /// Scanned from the view.
    Lsm(EntryWriter),
}

/// What an incremental checkpoint writes and references.
pub(crate) struct IncrementalPart {
    /// `state.checkpoints.dir` and the job id, under which shared files go.
    pub dir: PathBuf,
    pub job_id: String,
    pub checkpoint_id: u64,
    /// Makes this backend instance's file names unique.
    pub token: u64,
    /// The key groups written to since the previous snapshot, with the slots this part sets.
    pub write: Vec<(usize, Arc<SharedSlot>)>,
    /// Every key group the checkpoint references (those of `write` included).
    pub base: Vec<(usize, Arc<SharedSlot>)>,
    /// The backend's changed flags: a failed write marks its key groups changed again, so that
    /// the next checkpoint rewrites them.
    pub changed: Arc<[AtomicBool]>,
}

/// A keyed-state snapshot whose synchronous part is taken; [`finish`](Self::finish) takes the
/// rest, on any thread.
pub struct PendingSnapshot {
    /// The states' headers, and the key groups of those already [`Source::Taken`].
    pub(crate) snapshot: KeyedStateSnapshot,
    /// Per state of `snapshot`, in order.
    pub(crate) sources: Vec<Source>,
    /// `None` on the heap backend.
    pub(crate) view: Option<LsmView>,
    /// Processing time at the barrier, for TTL.
    pub(crate) now: i64,
    pub(crate) incremental: Option<IncrementalPart>,
}

impl PendingSnapshot {
    /// Whether `finish` has real work to do (reading an LSM tree, writing files); on the heap
    /// backend it only assembles what the synchronous part copied.
    pub fn is_deferred(&self) -> bool {
        self.view.is_some()
    }

    /// Builds the snapshot: the bytes of every state by key group (full), or the shared files
    /// of the changed key groups and the references to all (incremental).
    pub fn finish(mut self) -> Result<KeyedStateSnapshot> {
        match self.incremental.take() {
            None => {
                let mp = self.snapshot.max_parallelism;
                for i in 0..self.sources.len() {
                    let groups = match &self.sources[i] {
                        Source::Taken => continue,
                        Source::Restored(restored) => restored.key_groups.clone(),
                        Source::Lsm(_) => {
                            let mut groups = Vec::new();
                            for key_group in 0..mp {
                                if let Some(bytes) = self.bytes(&self.sources[i], key_group)? {
                                    groups.push(KeyGroupState { key_group, bytes });
                                }
                            }
                            groups
                        }
                    };
                    self.snapshot.states[i].key_groups = groups;
                }
                Ok(self.snapshot)
            }
            Some(part) => {
                if let Err(e) = self.write_changed(&part) {
                    for (key_group, _) in &part.write {
                        part.changed[*key_group].store(true, Ordering::Relaxed);
                    }
                    return Err(e);
                }
                let mut shared = Vec::with_capacity(part.base.len());
                for (key_group, slot) in &part.base {
                    let file = match slot.get() {
                        Some(file) => file.clone(),
                        // The part that was to write it failed: write it from this view.
                        None => self.write_key_group(&part, *key_group)?,
                    };
                    if let Some(file) = file {
                        shared.push(SharedKeyGroup { key_group: *key_group, file });
                    }
                }
                self.snapshot.shared = shared;
                Ok(self.snapshot)
            }
        }
    }

    fn write_changed(&self, part: &IncrementalPart) -> Result<()> {
        for (key_group, slot) in &part.write {
            let file = self.write_key_group(part, *key_group)?;
            // Only this part sets its slots; a slot set already means it ran twice.
            let _ = slot.set(file);
        }
        Ok(())
    }

    /// Writes every state's entries of `key_group` as one shared file; `None` if it has none.
    fn write_key_group(&self, part: &IncrementalPart, key_group: usize) -> Result<Option<SharedFile>> {
        let mut states = Vec::new();
        for (state, source) in self.snapshot.states.iter().zip(&self.sources) {
            if let Some(bytes) = self.bytes(source, key_group)? {
                states.push((state.name.clone(), bytes));
            }
        }
        if states.is_empty() {
            return Ok(None);
        }
        let file = KeyGroupFile { format_version: SNAPSHOT_FORMAT_VERSION, key_group, states };
        let mut bytes = Vec::new();
        eddy_core::codec::encode_value(&file, &mut bytes)?;
        let name = format!("{:016x}-kg{key_group}", part.token);
        let path = shared_file_path(&part.job_id, part.checkpoint_id, &name);
        write_shared_file(&part.dir, &path, &bytes).map(Some)
    }

    /// A state's entries in `key_group`, as [`KeyGroupState::bytes`].
    fn bytes(&self, source: &Source, key_group: usize) -> Result<Option<Vec<u8>>> {
        match (source, &self.view) {
            (Source::Taken, _) => Ok(None),
            (Source::Restored(restored), _) => Ok(restored
                .key_groups
                .binary_search_by_key(&key_group, |g| g.key_group)
                .ok()
                .map(|i| restored.key_groups[i].bytes.clone())),
            (Source::Lsm(writer), Some(view)) => view.key_group_bytes(writer, key_group, self.now),
            (Source::Lsm(_), None) => Ok(None),
        }
    }
}
