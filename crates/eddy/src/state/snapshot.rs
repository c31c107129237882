//! Snapshots of keyed state, cut by key group, and the typed tables they are taken from.

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::ops::{Range, RangeInclusive};

use eddy_core::codec::{decode_prefix, encode_value};
use eddy_core::keygroup::assign_to_key_group;
use eddy_core::{EddyError, Key, Result};
use eddy_runtime::checkpoint::storage::SharedFile;
use serde::{Deserialize, Serialize};

use super::entry::{Entry, RETURNED};
use super::ttl::StateTtlConfig;
use super::{check_max_parallelism, Map, StateKind};

/// The version of the snapshot layout written by this build; restore refuses any other.
/// Version 2 added the references to shared key-group files of incremental checkpoints.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// All keyed state of one operator instance, as bytes per state and key group.
///
/// Serializable with serde (and `eddy_core::codec`): this is what a checkpoint stores for the
/// keyed state of a subtask. Restoring picks whole key groups out of one or more snapshots, which
/// is how keyed state is split and merged when the parallelism changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateSnapshot {
    pub format_version: u32,
    /// The max parallelism keys were grouped by: restore needs the same.
    pub max_parallelism: usize,
    pub states: Vec<StateSnapshot>,
    /// Incremental checkpoints only: the key groups whose entries are in shared files, one
    /// file per key group holding every state's entries of it (see [`KeyGroupFile`]); the
    /// `states` then list only names, kinds and types. Empty in a full snapshot.
    pub shared: Vec<SharedKeyGroup>,
}

/// A key group of an incremental checkpoint, kept in a shared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedKeyGroup {
    pub key_group: usize,
    pub file: SharedFile,
}

/// The content of a shared key-group file: the entries of every state in one key group, as
/// `(state name, bytes as in KeyGroupState)`. Encoded with `eddy_core::codec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupFile {
    pub format_version: u32,
    pub key_group: usize,
    #[serde(with = "state_bytes")]
    pub states: Vec<(String, Vec<u8>)>,
}

/// The states of a [`KeyGroupFile`], their bytes written and read as one block each (serde
/// would otherwise see a `Vec<u8>` as a sequence and decode it byte by byte).
mod state_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(states: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(states.iter().map(|(name, bytes)| (name, Bytes::new(bytes))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let states = Vec::<(String, ByteBuf)>::deserialize(d)?;
        Ok(states.into_iter().map(|(name, bytes)| (name, bytes.into_vec())).collect())
    }
}

impl KeyedStateSnapshot {
    pub fn state(&self, name: &str) -> Option<&StateSnapshot> {
        self.states.iter().find(|s| s.name == name)
    }
}

/// One named state of a [`KeyedStateSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub name: String,
    pub kind: StateKind,
    /// The Rust types of the state's values, which a descriptor must name again to read it.
    pub value_types: String,
    /// Whether entries carry TTL timestamps; state restores only into a descriptor that agrees.
    pub ttl: bool,
    /// The key groups holding entries, in increasing order.
    pub key_groups: Vec<KeyGroupState>,
}

/// The entries of one state whose keys fall in one key group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupState {
    pub key_group: usize,
    /// `Vec<(key, entry)>` encoded with `eddy_core::codec::encode_value`.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// The states of `snapshots` (of all subtasks before a rescale, or of just one), each holding
/// the key groups in `range`, and the snapshots' max parallelism.
///
/// Checks the layout: one format version and max parallelism, key groups in range and not
/// twice, one kind and TTL flag per name. The entries are checked when they are decoded.
pub(crate) fn select_key_groups(
    snapshots: Vec<KeyedStateSnapshot>,
    range: RangeInclusive<usize>,
) -> Result<(usize, Vec<StateSnapshot>)> {
    let bad = |reason: String| EddyError::BadInput { location: "keyed state snapshot".into(), reason };
    let Some(max_parallelism) = snapshots.first().map(|s| s.max_parallelism) else {
        return Ok((0, Vec::new()));
    };
    check_max_parallelism(max_parallelism).map_err(|e| bad(e.to_string()))?;
    if *range.end() >= max_parallelism {
        return Err(EddyError::InvalidJob(format!(
            "key groups {range:?} do not exist with max parallelism {max_parallelism}"
        )));
    }
    let mut selected: Vec<StateSnapshot> = Vec::new();
    for s in snapshots {
        if s.format_version != SNAPSHOT_FORMAT_VERSION {
            let v = s.format_version;
            return Err(bad(format!("format version {v} (this build reads {SNAPSHOT_FORMAT_VERSION})")));
        }
        if s.max_parallelism != max_parallelism {
            let m = s.max_parallelism;
            return Err(bad(format!(
                "snapshots of max parallelism {max_parallelism} and {m} cannot be merged"
            )));
        }
        for mut state in s.states {
            let into = match selected.iter().position(|r| r.name == state.name) {
                Some(i) if !selected[i].same_state_as(&state) => {
                    let name = &state.name;
                    return Err(bad(format!(
                        "state '{name}' differs in kind, types or TTL between snapshots"
                    )));
                }
                Some(i) => i,
                None => {
                    selected.push(state.header());
                    selected.len() - 1
                }
            };
            for kg in std::mem::take(&mut state.key_groups) {
                if kg.key_group >= max_parallelism {
                    let (name, g) = (&state.name, kg.key_group);
                    return Err(bad(format!(
                        "state '{name}' has key group {g} of max parallelism {max_parallelism}"
                    )));
                }
                if range.contains(&kg.key_group) {
                    selected[into].key_groups.push(kg);
                }
            }
        }
    }
    for state in &mut selected {
        state.key_groups.sort_by_key(|kg| kg.key_group);
        if let Some(w) = state.key_groups.windows(2).find(|w| w[0].key_group == w[1].key_group) {
            return Err(bad(format!("state '{}' has key group {} twice", state.name, w[0].key_group)));
        }
    }
    Ok((max_parallelism, selected))
}

impl StateSnapshot {
    /// Whether `other` is a snapshot of the same kind, types and TTL flag.
    fn same_state_as(&self, other: &StateSnapshot) -> bool {
        (self.kind, &self.value_types, self.ttl) == (other.kind, &other.value_types, other.ttl)
    }

    /// The name, kind, types and TTL flag, without the entries.
    fn header(&self) -> Self {
        StateSnapshot {
            name: self.name.clone(),
            kind: self.kind,
            value_types: self.value_types.clone(),
            ttl: self.ttl,
            key_groups: Vec::new(),
        }
    }
}

/// A state table of any entry type: what a snapshot and the type checks need.
pub(crate) trait StateTable<K>: Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn value_types(&self) -> String;
    fn ttl(&self) -> Option<StateTtlConfig>;
    fn set_ttl(&mut self, ttl: Option<StateTtlConfig>);
    fn is_empty(&self) -> bool;
    fn snapshot(&self, max_parallelism: usize, now: i64) -> Result<Vec<KeyGroupState>>;
}

/// The entries of one state, by key.
pub(crate) struct Table<K, E> {
    pub entries: Map<K, E>,
    ttl: Option<StateTtlConfig>,
}

impl<K: Key, E: Entry> Table<K, E> {
    pub fn new(ttl: Option<StateTtlConfig>) -> Self {
        Table { entries: Map::default(), ttl }
    }

    /// Decodes the entries of one key group of state `name` and adds them.
    pub fn restore_key_group(
        &mut self,
        name: &str,
        max_parallelism: usize,
        kg: &KeyGroupState,
    ) -> Result<()> {
        let entries: Vec<(K, E)> = decode_key_group(name, max_parallelism, kg, self.ttl.is_some())?;
        self.entries.extend(entries);
        Ok(())
    }
}

/// Decodes and checks the entries of one key group of state `name`: every key in that key
/// group, none twice, entries well formed; empty entries are left out.
pub(crate) fn decode_key_group<K: Key, E: Entry>(
    name: &str,
    max_parallelism: usize,
    kg: &KeyGroupState,
    has_ttl: bool,
) -> Result<Vec<(K, E)>> {
    let mut entries: Vec<(K, E)> = Vec::new();
    for_each_entry::<K, E>(name, max_parallelism, kg, has_ttl, |key, entry, _| {
        entries.push((key, entry));
        Ok(())
    })?;
    let mut seen = HashSet::with_capacity(entries.len());
    if entries.iter().any(|(key, _)| !seen.insert(key)) {
        return Err(bad_key_group(name, kg, "holds the same key twice".into()));
    }
    drop(seen);
    entries.retain(|(_, e)| !e.is_empty());
    Ok(entries)
}

/// Where a decoded entry's encodings are in its key group's bytes.
pub(crate) struct EncodedAt {
    pub key: Range<usize>,
    pub entry: Range<usize>,
}

/// Decodes the entries of one key group of state `name` one at a time and hands each to `f`
/// with where its key and entry are encoded in `kg.bytes`. Checks that every key is in that key
/// group, every entry is well formed and the bytes hold exactly the entries they count; whether
/// a key comes twice is the caller's to check.
pub(crate) fn for_each_entry<K: Key, E: Entry>(
    name: &str,
    max_parallelism: usize,
    kg: &KeyGroupState,
    has_ttl: bool,
    mut f: impl FnMut(K, E, EncodedAt) -> Result<()>,
) -> Result<()> {
    let bad = |reason: String| bad_key_group(name, kg, reason);
    let decode_error = |e: EddyError| match e {
        EddyError::BadInput { location, reason } => bad(format!("{location}: {reason}")),
        other => bad(other.to_string()),
    };
    let bytes = &kg.bytes[..];
    let (count, mut at) = decode_prefix::<u64>(bytes).map_err(decode_error)?;
    for _ in 0..count {
        let (key, key_len) = decode_prefix::<K>(&bytes[at..]).map_err(decode_error)?;
        let (entry, entry_len) = decode_prefix::<E>(&bytes[at + key_len..]).map_err(decode_error)?;
        let actual = assign_to_key_group(&key, max_parallelism);
        if actual != kg.key_group {
            let m = max_parallelism;
            return Err(bad(format!("holds a key of key group {actual} (max parallelism {m})")));
        }
        entry.check(has_ttl).map_err(bad)?;
        let encoded = EncodedAt { key: at..at + key_len, entry: at + key_len..at + key_len + entry_len };
        at = encoded.entry.end;
        f(key, entry, encoded)?;
    }
    if at != bytes.len() {
        return Err(bad(format!("{} trailing bytes after {count} entries", bytes.len() - at)));
    }
    Ok(())
}

pub(crate) fn bad_key_group(name: &str, kg: &KeyGroupState, reason: String) -> EddyError {
    EddyError::BadInput { location: format!("keyed state '{name}', key group {}", kg.key_group), reason }
}

impl<K: Key, E: Entry> StateTable<K> for Table<K, E> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
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

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn snapshot(&self, max_parallelism: usize, now: i64) -> Result<Vec<KeyGroupState>> {
        // Values a read returned expired are cleaned up already; with `cleanup_full_snapshot`
        // so is everything expired.
        let cleanup = self.ttl.map(|c| (c.cleanup_full_snapshot, c.at(now)));
        let mut groups: BTreeMap<usize, Vec<(&K, Cow<'_, E>)>> = BTreeMap::new();
        for (key, entry) in &self.entries {
            let entry = match cleanup {
                Some((true, t)) => entry.filtered(|s| !t.expired(s)),
                Some((false, _)) => entry.filtered(|s| s != RETURNED),
                None => Some(Cow::Borrowed(entry)),
            };
            let Some(entry) = entry else { continue };
            groups.entry(assign_to_key_group(key, max_parallelism)).or_default().push((key, entry));
        }
        groups
            .into_iter()
            .map(|(key_group, entries)| {
                let mut bytes = Vec::new();
                encode_value(&entries, &mut bytes)?;
                Ok(KeyGroupState { key_group, bytes })
            })
            .collect()
    }
}
