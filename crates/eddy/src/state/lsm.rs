//! The `fjall` backend: keyed state in an embedded LSM tree on local disk, for state larger
//! than memory.
//!
//! Every operator subtask opens its own fjall keyspace in a fresh directory under
//! `state.backend.fjall.localdir` (the system's temporary directory by default), removed when
//! the subtask's state is dropped. All its states share one partition; an entry's LSM key is
//!
//! ```text
//! [key group: u16 big-endian][state id: u16 big-endian][the key, encoded with eddy_core::codec]
//! ```
//!
//! so the entries of one key group are one contiguous key range (a snapshot or a rescale reads
//! them with one prefix scan), and the value is the codec-encoded entry, TTL stamps included.
//!
//! In front of fjall each state keeps a bounded write-back cache of decoded entries: a state
//! handle works on the cached entry (loaded on first access), and changed entries are encoded
//! and written back in one batch when the cache is full and before every snapshot. Hot keys
//! therefore cost what they cost on the heap backend; a miss costs an LSM lookup and a decode.
//! The budget (`state.backend.fjall.memory`) is split: half for these caches, a quarter for
//! fjall's block cache, and an eighth for its memtable (fjall seals a memtable at that size and
//! flushes it in the background, so two can be in memory at once).

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eddy_core::codec::{decode_value, encode_value};
use eddy_core::config::StateBackendConfig;
use eddy_core::keygroup::assign_to_key_group;
use eddy_core::{EddyError, Key, Result};

use super::entry::{Cached, Entry, RETURNED};
use super::snapshot::{bad_key_group, for_each_entry, KeyGroupState};
use super::ttl::StateTtlConfig;
use super::Map;

/// Bytes a cached entry costs besides its encoded size: the hash map's slot and bookkeeping.
const CACHE_OVERHEAD: usize = 48;

/// One operator subtask's LSM tree, and what its states' caches share.
pub(crate) struct LsmStore {
    db: fjall::Database,
    partition: fjall::Keyspace,
    dir: PathBuf,
    /// The key groups keys are grouped by (the operator's max parallelism).
    pub max_parallelism: usize,
    /// Bytes the write-back caches of all states may hold together.
    cache_budget: usize,
    /// Live states (for their share of the cache budget).
    tables: usize,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// Key groups written to since the last snapshot (what an incremental snapshot rewrites).
    /// Shared with the asynchronous parts of snapshots, which mark the key groups they failed
    /// to write changed again.
    pub changed: Arc<[AtomicBool]>,
}

impl fmt::Debug for LsmStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LsmStore").field("dir", &self.dir).finish()
    }
}

impl LsmStore {
    /// Opens an empty LSM tree in a new directory under the configured local directory.
    pub fn open(config: &StateBackendConfig, max_parallelism: usize) -> Result<Self> {
        let parent = config.local_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!("eddy-fjall-{:016x}", eddy_core::random::random_seed()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| EddyError::io("cannot create the fjall state directory", &dir, e))?;
        let budget = config.memory_budget().bytes() as usize;
        let quarter = (budget / 4).max(1 << 20);
        let db = fjall::Database::builder(&dir)
            .temporary(true)
            .manual_journal_persist(true)
            .cache_size(quarter as u64)
            .worker_threads(1)
            .open()
            .map_err(|e| lsm_error(&dir, "cannot open the fjall database", e))?;
        let options = || {
            fjall::KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size((quarter / 2) as u64)
        };
        let partition = db
            .keyspace("keyed-state", options)
            .map_err(|e| lsm_error(&dir, "cannot open the fjall keyspace", e))?;
        Ok(LsmStore {
            db,
            partition,
            dir,
            max_parallelism,
            cache_budget: budget / 2,
            tables: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
            changed: (0..max_parallelism).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// A consistent view of everything written so far.
    pub fn view(&self) -> LsmView {
        self.snapshot_view()
    }

    /// A consistent view of everything written so far, which can be read on another thread
    /// while this store takes new writes.
    pub fn snapshot_view(&self) -> LsmView {
        LsmView { view: self.db.snapshot(), keyspace: self.partition.clone(), dir: self.dir.clone() }
    }

    /// Marks `key_group` as written to since the last snapshot.
    pub fn mark_changed(&self, key_group: usize, changed: bool) {
        self.changed[key_group].store(changed, Ordering::Relaxed);
    }

    /// Fills `key_buf` with the LSM key of `key` in state `state` and key group `key_group`.
    fn encode_key<K: Key>(&mut self, key_group: u16, state: u16, key: &K) -> Result<()> {
        self.key_buf.clear();
        self.key_buf.extend_from_slice(&lsm_prefix(key_group, state));
        encode_value(key, &mut self.key_buf)
    }

    /// The entries of state `state` in key group `key_group` of `view`, as (encoded key,
    /// encoded entry) pairs in key order.
    pub fn scan<'v>(
        &'v self,
        view: &'v LsmView,
        key_group: usize,
        state: u16,
    ) -> impl Iterator<Item = Result<(fjall::Slice, fjall::Slice)>> + 'v {
        view.scan(key_group, state)
    }

    /// The cache capacity, in entries, of one of the live states whose entries take about
    /// `entry_bytes` each.
    fn capacity(&self, entry_bytes: usize) -> usize {
        (self.cache_budget / self.tables.max(1) / entry_bytes.max(1)).max(16)
    }
}

/// A consistent (MVCC) view of an [`LsmStore`], owned: the asynchronous part of a snapshot
/// reads it on the snapshot thread while the task writes on. The view pins the data it sees:
/// neither new writes nor compactions change what it reads.
pub(crate) struct LsmView {
    view: fjall::Snapshot,
    keyspace: fjall::Keyspace,
    dir: PathBuf,
}

impl LsmView {
    /// The entries of state `state` in key group `key_group`, as (encoded key, encoded entry)
    /// pairs in key order.
    fn scan(
        &self,
        key_group: usize,
        state: u16,
    ) -> impl Iterator<Item = Result<(fjall::Slice, fjall::Slice)>> + '_ {
        use fjall::Readable;
        self.view
            .prefix(&self.keyspace, lsm_prefix(key_group as u16, state))
            .map(move |kv| kv.into_inner().map_err(|e| lsm_error(&self.dir, "cannot read state", e)))
    }

    /// The snapshot bytes of a state's entries in `key_group` (`Vec<(key, entry)>` as the codec
    /// writes it: a little-endian u64 count, then each key and entry), `None` if it has none.
    pub fn key_group_bytes(
        &self,
        writer: &EntryWriter,
        key_group: usize,
        now: i64,
    ) -> Result<Option<Vec<u8>>> {
        let mut out = vec![0u8; 8];
        let mut count = 0u64;
        for kv in self.scan(key_group, writer.id) {
            let (key, value) = kv?;
            if (writer.write)(writer, &key[4..], &value, now, &mut out)? {
                count += 1;
            }
        }
        if count == 0 {
            return Ok(None);
        }
        out[..8].copy_from_slice(&count.to_le_bytes());
        Ok(Some(out))
    }
}

/// How one state's stored entries go into a snapshot, without the state's table: what the
/// asynchronous part of a snapshot needs of it.
#[derive(Clone)]
pub(crate) struct EntryWriter {
    name: String,
    id: u16,
    ttl: Option<StateTtlConfig>,
    write: WriteEntry,
}

/// Appends a stored entry (its encoded key and value) to a snapshot's key-group bytes, as the
/// heap backend would write it at `now`; false if the snapshot leaves it out.
type WriteEntry = fn(&EntryWriter, &[u8], &[u8], i64, &mut Vec<u8>) -> Result<bool>;

fn write_entry<E: Entry>(
    w: &EntryWriter,
    key: &[u8],
    value: &[u8],
    now: i64,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let Some(ttl) = w.ttl else {
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        return Ok(true);
    };
    let entry: E = decode_value(value).map_err(|e| EddyError::BadInput {
        location: format!("keyed state '{}'", w.name),
        reason: e.to_string(),
    })?;
    let t = ttl.at(now);
    let kept = if ttl.cleanup_full_snapshot {
        entry.filtered(|s| !t.expired(s))
    } else {
        entry.filtered(|s| s != RETURNED)
    };
    match kept {
        Some(entry) => {
            out.extend_from_slice(key);
            encode_value(&*entry, out)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The first bytes of the LSM keys of state `state` in key group `key_group`.
fn lsm_prefix(key_group: u16, state: u16) -> [u8; 4] {
    let [g0, g1] = key_group.to_be_bytes();
    let [s0, s1] = state.to_be_bytes();
    [g0, g1, s0, s1]
}

fn lsm_error(dir: &Path, what: &str, e: impl fmt::Display) -> EddyError {
    EddyError::user(format!("fjall state backend in {}: {what}: {e}", dir.display()))
}

/// A state table of any entry type in the LSM backend.
pub(crate) trait LsmStateTable<K>: Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn id(&self) -> u16;
    fn value_types(&self) -> String;
    fn ttl(&self) -> Option<StateTtlConfig>;
    fn set_ttl(&mut self, ttl: Option<StateTtlConfig>);
    /// Writes the changed cached entries back to the LSM tree, marking their key groups.
    fn flush(&mut self, store: &mut LsmStore) -> Result<()>;
    /// How the state's stored entries go into a snapshot.
    fn entry_writer(&self) -> EntryWriter;
    /// Whether the state holds no entry (cached or stored); an unreadable tree counts as not
    /// empty.
    fn is_empty(&self, store: &LsmStore) -> bool;
}

/// The entries of one state in the LSM backend, and their write-back cache.
pub(crate) struct LsmTable<K, E> {
    name: String,
    id: u16,
    cache: Map<K, Cached<E>>,
    ttl: Option<StateTtlConfig>,
    /// The cache holds at most this many entries.
    capacity: usize,
    /// The average encoded size of an entry (key and value) seen at the last write-back.
    entry_bytes: usize,
}

impl<K: Key, E: Entry> LsmTable<K, E> {
    pub fn new(name: &str, id: u16, ttl: Option<StateTtlConfig>, store: &mut LsmStore) -> Self {
        store.tables += 1;
        let entry_bytes = std::mem::size_of::<(K, Cached<E>)>() + CACHE_OVERHEAD;
        let capacity = store.capacity(entry_bytes);
        LsmTable { name: name.to_string(), id, cache: Map::default(), ttl, capacity, entry_bytes }
    }

    /// The cached entry of `key`, loaded from the LSM tree if it is not cached.
    pub fn slot(&mut self, key: &K, store: &mut LsmStore) -> Result<&mut Cached<E>> {
        if !self.cache.contains_key(key) {
            self.load(key, store)?;
        }
        self.cache.get_mut(key).ok_or_else(|| EddyError::user("state cache lost an entry it loaded"))
    }

    fn load(&mut self, key: &K, store: &mut LsmStore) -> Result<()> {
        if self.cache.len() >= self.capacity {
            self.flush(store)?;
            self.cache.clear();
        }
        let key_group = assign_to_key_group(key, store.max_parallelism) as u16;
        store.encode_key(key_group, self.id, key)?;
        let stored = store
            .partition
            .get(&store.key_buf)
            .map_err(|e| lsm_error(&store.dir, &format!("cannot read state '{}'", self.name), e))?;
        let entry = match stored {
            Some(bytes) => Some(decode_value::<E>(&bytes).map_err(|e| EddyError::BadInput {
                location: format!("keyed state '{}', key group {key_group}", self.name),
                reason: e.to_string(),
            })?),
            None => None,
        };
        self.cache.insert(key.clone(), Cached { entry, dirty: false, key_group });
        Ok(())
    }

    /// Decodes and checks the restored key groups of this (new, empty) state and writes their
    /// entries to the LSM tree by bulk ingestion: sorted runs go straight into new tables,
    /// bypassing the journal and the memtable, so recovery costs about one write of the state.
    /// The entries' encodings are copied from the snapshot, not encoded again. With more than a
    /// few megabytes to restore, a second thread decodes and sorts the next key groups while
    /// this one writes. Nothing is visible before every key group has decoded: an error leaves
    /// the state empty.
    pub fn restore(
        &mut self,
        max_parallelism: usize,
        key_groups: &[KeyGroupState],
        store: &mut LsmStore,
    ) -> Result<()> {
        if let Some(w) = key_groups.windows(2).find(|w| w[0].key_group >= w[1].key_group) {
            return Err(EddyError::BadInput {
                location: format!("keyed state '{}'", self.name),
                reason: format!("key groups {} and {} out of order", w[0].key_group, w[1].key_group),
            });
        }
        let (name, id, ttl) = (self.name.as_str(), self.id, self.ttl.is_some());
        let sort = |kg| SortedKeyGroup::decode::<K, E>(name, id, max_parallelism, ttl, kg);
        let fail = |e: fjall::Error| lsm_error(&store.dir, &format!("cannot restore state '{name}'"), e);
        let mut ingestion = store.partition.start_ingestion().map_err(fail)?;
        let bytes: usize = key_groups.iter().map(|kg| kg.bytes.len()).sum();
        if bytes < PIPELINED_RESTORE_BYTES {
            for kg in key_groups {
                sort(kg)?.write(|k, v| ingestion.write(k, v)).map_err(fail)?;
            }
        } else {
            std::thread::scope(|scope| -> Result<()> {
                let (sorted, received) = std::sync::mpsc::sync_channel(2);
                scope.spawn(move || {
                    for kg in key_groups {
                        let next = sort(kg);
                        let failed = next.is_err();
                        // Stops when the writer has stopped, or after the first error.
                        if sorted.send(next).is_err() || failed {
                            break;
                        }
                    }
                });
                for next in received {
                    next?.write(|k, v| ingestion.write(k, v)).map_err(fail)?;
                }
                Ok(())
            })?;
        }
        ingestion.finish().map_err(fail)
    }
}

/// Restores of fewer bytes decode and write on one thread.
const PIPELINED_RESTORE_BYTES: usize = 4 << 20;

/// The entries of one restored key group of one state, as LSM keys and values in key order.
struct SortedKeyGroup<'a> {
    kg: &'a KeyGroupState,
    /// The LSM keys, back to back.
    keys: Vec<u8>,
    /// Each entry's LSM key in `keys` and encoded value in `kg.bytes` (`None`: the entry is
    /// empty and not written), sorted by key.
    rows: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl<'a> SortedKeyGroup<'a> {
    /// Decodes and checks the entries of `kg` (see `for_each_entry`) and sorts them by LSM key;
    /// a key that comes twice is an error.
    fn decode<K: Key, E: Entry>(
        name: &str,
        state: u16,
        max_parallelism: usize,
        has_ttl: bool,
        kg: &'a KeyGroupState,
    ) -> Result<Self> {
        let prefix = lsm_prefix(kg.key_group as u16, state);
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        for_each_entry::<K, E>(name, max_parallelism, kg, has_ttl, |_, entry, at| {
            let start = keys.len();
            keys.extend_from_slice(&prefix);
            keys.extend_from_slice(&kg.bytes[at.key]);
            rows.push((start..keys.len(), (!entry.is_empty()).then_some(at.entry)));
            Ok(())
        })?;
        rows.sort_unstable_by(|a, b| keys[a.0.clone()].cmp(&keys[b.0.clone()]));
        if rows.windows(2).any(|w| keys[w[0].0.clone()] == keys[w[1].0.clone()]) {
            return Err(bad_key_group(name, kg, "holds the same key twice".into()));
        }
        Ok(SortedKeyGroup { kg, keys, rows })
    }

    /// Hands the entries to `write` (an ingestion's) in key order.
    fn write(&self, mut write: impl FnMut(&[u8], &[u8]) -> fjall::Result<()>) -> fjall::Result<()> {
        for (key, value) in &self.rows {
            if let Some(value) = value {
                write(&self.keys[key.clone()], &self.kg.bytes[value.clone()])?;
            }
        }
        Ok(())
    }
}

impl<K: Key, E: Entry> LsmStateTable<K> for LsmTable<K, E> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn id(&self) -> u16 {
        self.id
    }

    fn value_types(&self) -> String {
        E::value_types()
    }

    fn ttl(&self) -> Option<StateTtlConfig> {
        self.ttl
    }

    fn set_ttl(&mut self, ttl: Option<StateTtlConfig>) {
        self.ttl = ttl;
    }

    fn flush(&mut self, store: &mut LsmStore) -> Result<()> {
        let mut batch = store.db.batch();
        let (mut written, mut bytes) = (0usize, 0usize);
        for (key, c) in self.cache.iter_mut().filter(|(_, c)| c.dirty) {
            store.encode_key(c.key_group, self.id, key)?;
            match &c.entry {
                Some(entry) if !entry.is_empty() => {
                    store.value_buf.clear();
                    encode_value(entry, &mut store.value_buf)?;
                    bytes += store.key_buf.len() + store.value_buf.len();
                    written += 1;
                    batch.insert(&store.partition, store.key_buf.as_slice(), store.value_buf.as_slice());
                }
                _ => batch.remove(&store.partition, store.key_buf.as_slice()),
            }
            store.mark_changed(c.key_group as usize, true);
            c.dirty = false;
        }
        batch
            .commit()
            .map_err(|e| lsm_error(&store.dir, &format!("cannot write state '{}'", self.name), e))?;
        if let Some(average) = bytes.checked_div(written) {
            self.entry_bytes = std::mem::size_of::<(K, Cached<E>)>() + CACHE_OVERHEAD + average;
            self.capacity = store.capacity(self.entry_bytes);
        }
        Ok(())
    }

    fn is_empty(&self, store: &LsmStore) -> bool {
        if self.cache.values().any(|c| c.entry.is_some()) {
            return false;
        }
        let view = store.view();
        for key_group in 0..store.max_parallelism {
            for kv in store.scan(&view, key_group, self.id) {
                let Ok((key, _)) = kv else { return false };
                // A key deleted in the cache and not yet written back does not count.
                match decode_value::<K>(&key[4..]) {
                    Ok(k) if self.cache.get(&k).is_some_and(|c| c.entry.is_none()) => continue,
                    _ => return false,
                }
            }
        }
        true
    }

    fn entry_writer(&self) -> EntryWriter {
        EntryWriter { name: self.name.clone(), id: self.id, ttl: self.ttl, write: write_entry::<E> }
    }
}
