//! The keyed-state backends beyond the shared suite in `state.rs`: incremental checkpoints of
//! the `fjall` backend (only changed key groups are written, restore reads the shared files and
//! checks them), state larger than the memory budget, switching backends through a savepoint,
//! and exactly-once recovery of a job on `fjall` with incremental checkpoints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use common::{FailOnce, MaxPerKey};
use eddy::prelude::*;
use eddy::state::{KeyedState, KeyedStateSnapshot, SharedKeyGroup};
use eddy::{Configuration, EddyError};
use eddy_core::codec::{decode_value, encode_value};
use eddy_core::config::{StateBackendConfig, StateBackendKind};
use eddy_core::keygroup::assign_to_key_group;
use eddy_runtime::checkpoint::storage::{read_checkpoint, SHARED_DIR};

const MAX_PARALLELISM: usize = 128;
const ALL_KEY_GROUPS: std::ops::RangeInclusive<usize> = 0..=127;
const JOB_LIMIT: Duration = Duration::from_secs(120);

fn backend(kind: StateBackendKind, incremental: bool, checkpoints: &Path) -> Arc<StateBackendConfig> {
    Arc::new(StateBackendConfig {
        kind,
        incremental,
        checkpoints: Some((checkpoints.to_path_buf(), "job".into())),
        ..StateBackendConfig::default()
    })
}

/// Through the codec and back, as a checkpoint stores it.
fn stored(snapshot: &KeyedStateSnapshot) -> KeyedStateSnapshot {
    let mut bytes = Vec::new();
    encode_value(snapshot, &mut bytes).unwrap();
    decode_value(&bytes).unwrap()
}

struct Descriptors {
    count: ValueStateDescriptor<u64>,
    tags: MapStateDescriptor<String, u32>,
}

impl Descriptors {
    fn new() -> Self {
        Descriptors { count: ValueStateDescriptor::new("count"), tags: MapStateDescriptor::new("tags") }
    }

    fn write(&self, st: &mut KeyedState<u64>, key: u64, n: u64) {
        st.value_state(&self.count, &key, 0).unwrap().update(n);
        st.map_state(&self.tags, &key, 0).unwrap().put(format!("t{}", key % 7), n as u32);
    }

    fn read(&self, st: &mut KeyedState<u64>, key: u64) -> (Option<u64>, BTreeMap<String, u32>) {
        let count = st.value_state(&self.count, &key, 0).unwrap().value().copied();
        let tags =
            st.map_state(&self.tags, &key, 0).unwrap().entries().map(|(k, v)| (k.clone(), *v)).collect();
        (count, tags)
    }
}

fn by_key_group(shared: &[SharedKeyGroup]) -> BTreeMap<usize, String> {
    shared.iter().map(|s| (s.key_group, s.file.path.clone())).collect()
}

#[test]
fn a_second_incremental_checkpoint_writes_only_the_key_groups_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = Descriptors::new();
    let mut st =
        KeyedState::new(backend(StateBackendKind::Fjall, true, dir.path()), MAX_PARALLELISM).unwrap();
    for key in 0..1_000 {
        d.write(&mut st, key, key);
    }
    let first = st.checkpoint(MAX_PARALLELISM, 0, 1).unwrap();
    assert!(first.states.iter().all(|s| s.key_groups.is_empty()), "entries are in shared files only");
    let first_files = by_key_group(&first.shared);
    let all_groups: BTreeSet<usize> =
        (0..1_000u64).map(|k| assign_to_key_group(&k, MAX_PARALLELISM)).collect();
    assert_eq!(first_files.keys().copied().collect::<BTreeSet<_>>(), all_groups);
    assert!(first_files.values().all(|p| p.starts_with("job/shared/chk-1-")), "{first_files:?}");

    let touched = [3u64, 500, 999];
    for key in touched {
        d.write(&mut st, key, key + 1_000_000);
    }
    let second = st.checkpoint(MAX_PARALLELISM, 0, 2).unwrap();
    let second_files = by_key_group(&second.shared);
    let changed: BTreeSet<usize> = touched.iter().map(|k| assign_to_key_group(k, MAX_PARALLELISM)).collect();
    assert_eq!(second_files.keys().collect::<Vec<_>>(), first_files.keys().collect::<Vec<_>>());
    for (kg, path) in &second_files {
        if changed.contains(kg) {
            assert!(path.starts_with("job/shared/chk-2-"), "key group {kg} was written to: {path}");
        } else {
            assert_eq!(path, &first_files[kg], "key group {kg} is unchanged and keeps its file");
        }
    }
    let shared = dir.path().join("job").join(SHARED_DIR);
    let written: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chk-2-"))
        .collect();
    assert_eq!(
        written.len(),
        changed.len(),
        "checkpoint 2 wrote one file per changed key group: {written:?}"
    );

    // A savepoint is always full: entries in the snapshot, no references.
    let savepoint = st.snapshot(MAX_PARALLELISM, 0).unwrap();
    assert!(savepoint.shared.is_empty());
    assert!(savepoint.states.iter().any(|s| !s.key_groups.is_empty()));

    // Restoring the incremental checkpoint gives the live state, on either backend.
    let snapshot = stored(&second);
    for kind in [StateBackendKind::Fjall, StateBackendKind::HashMap] {
        let mut restored = KeyedState::new(backend(kind, true, dir.path()), MAX_PARALLELISM).unwrap();
        restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap();
        for key in 0..1_000 {
            assert_eq!(d.read(&mut restored, key), d.read(&mut st, key), "key {key} on {kind}");
        }
        assert_eq!(d.read(&mut restored, 5_000), (None, BTreeMap::new()));
    }
}

#[test]
fn a_restored_incremental_checkpoint_keeps_referencing_its_files_until_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = Descriptors::new();
    let config = backend(StateBackendKind::Fjall, true, dir.path());
    let mut st = KeyedState::new(config.clone(), MAX_PARALLELISM).unwrap();
    for key in 0..200 {
        d.write(&mut st, key, key);
    }
    let first = stored(&st.checkpoint(MAX_PARALLELISM, 0, 1).unwrap());
    // Rescaled to two subtasks: each keeps its half of the files as they are.
    let halves = [0..=63, 64..=127];
    for range in halves {
        let mut restored = KeyedState::new(config.clone(), MAX_PARALLELISM).unwrap();
        restored.restore(vec![first.clone()], range.clone()).unwrap();
        let key = (0..200u64).find(|k| range.contains(&assign_to_key_group(k, MAX_PARALLELISM))).unwrap();
        d.write(&mut restored, key, 7);
        let next = restored.checkpoint(MAX_PARALLELISM, 0, 2).unwrap();
        let expected: BTreeMap<usize, String> = by_key_group(&first.shared)
            .into_iter()
            .filter(|(kg, _)| range.contains(kg))
            .filter(|(kg, _)| *kg != assign_to_key_group(&key, MAX_PARALLELISM))
            .collect();
        let mut got = by_key_group(&next.shared);
        let rewritten = got.remove(&assign_to_key_group(&key, MAX_PARALLELISM)).unwrap();
        assert!(rewritten.starts_with("job/shared/chk-2-"), "{rewritten}");
        assert_eq!(got, expected);
    }
}

#[test]
fn a_missing_or_corrupt_shared_file_fails_the_restore_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Descriptors::new();
    let config = backend(StateBackendKind::Fjall, true, dir.path());
    let mut st = KeyedState::new(config.clone(), MAX_PARALLELISM).unwrap();
    for key in 0..100 {
        d.write(&mut st, key, key);
    }
    let snapshot = stored(&st.checkpoint(MAX_PARALLELISM, 0, 1).unwrap());
    let victim = dir.path().join(&snapshot.shared[3].file.path);

    let bytes = std::fs::read(&victim).unwrap();
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    std::fs::write(&victim, &corrupt).unwrap();
    let mut restored = KeyedState::<u64>::new(config.clone(), MAX_PARALLELISM).unwrap();
    let err = restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap_err();
    let EddyError::BadInput { location, reason } = &err else { panic!("{err:?}") };
    assert_eq!(location, &victim.display().to_string());
    assert!(reason.contains("corrupt"), "{reason}");

    std::fs::remove_file(&victim).unwrap();
    let err = restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap_err();
    assert!(matches!(err, EddyError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&victim.display().to_string()), "{err}");

    // Key groups outside the restored range are not read at all.
    let elsewhere = snapshot.shared[3].key_group;
    let range = if elsewhere >= 64 { 0..=63 } else { 64..=127 };
    restored.restore(vec![snapshot.clone()], range).unwrap();
}

#[test]
fn a_large_restore_into_fjall_ingests_every_key_and_refuses_a_corrupt_key_group_in_the_middle() {
    // Enough bytes that the restore decodes on a second thread while it ingests (from 4 MB).
    const KEYS: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let desc = ValueStateDescriptor::<String>::new("payload");
    // Written on the heap, whose snapshot lists each key group's keys in hash order: the restore
    // must sort them for the LSM tree.
    let mut heap =
        KeyedState::new(backend(StateBackendKind::HashMap, false, dir.path()), MAX_PARALLELISM).unwrap();
    for key in 0..KEYS {
        heap.value_state(&desc, &key, 0).unwrap().update(payload(key));
    }
    let snapshot = stored(&heap.snapshot(MAX_PARALLELISM, 0).unwrap());
    let bytes: usize = snapshot.states[0].key_groups.iter().map(|kg| kg.bytes.len()).sum();
    assert!(bytes > 4 << 20, "{bytes} bytes is too little to exercise the pipelined restore");

    let fjall = backend(StateBackendKind::Fjall, false, dir.path());
    let mut restored = KeyedState::<u64>::new(fjall.clone(), MAX_PARALLELISM).unwrap();
    restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap();
    let wrong: Vec<u64> = (0..KEYS)
        .filter(|key| restored.value_state(&desc, key, 0).unwrap().value() != Some(&payload(*key)))
        .collect();
    assert!(wrong.is_empty(), "{} keys came back wrong, the first {:?}", wrong.len(), wrong.first());
    // And through fjall's own snapshot once more, read in another order.
    let again = stored(&restored.snapshot(MAX_PARALLELISM, 0).unwrap());
    let mut twice = KeyedState::<u64>::new(fjall.clone(), MAX_PARALLELISM).unwrap();
    twice.restore(vec![again], ALL_KEY_GROUPS).unwrap();
    for key in (0..KEYS).rev().step_by(7) {
        assert_eq!(twice.value_state(&desc, &key, 0).unwrap().value(), Some(&payload(key)));
    }

    // One key group in the middle cut short, and one holding its first entry twice: the
    // restore fails naming the key group, and no key of the state is readable afterwards.
    let middle = snapshot.states[0].key_groups.len() / 2;
    let mut cut = snapshot.clone();
    let kg = &mut cut.states[0].key_groups[middle];
    kg.bytes.pop();
    let (cut_group, some_key) = (kg.key_group, 0u64);
    let mut doubled = snapshot.clone();
    let kg = &mut doubled.states[0].key_groups[middle + 1];
    let count = u64::from_le_bytes(kg.bytes[..8].try_into().unwrap());
    let first_entry = kg.bytes.len().checked_sub(8).unwrap() / count as usize; // equal-size entries
    let copy = kg.bytes[8..8 + first_entry].to_vec();
    kg.bytes.extend_from_slice(&copy);
    kg.bytes[..8].copy_from_slice(&(count + 1).to_le_bytes());
    let doubled_group = kg.key_group;
    for (bad, group, reason) in
        [(cut, cut_group, "bytes"), (doubled, doubled_group, "holds the same key twice")]
    {
        let mut restored = KeyedState::<u64>::new(fjall.clone(), MAX_PARALLELISM).unwrap();
        restored.restore(vec![bad], ALL_KEY_GROUPS).unwrap();
        let err = restored.value_state(&desc, &some_key, 0).map(|_| ()).unwrap_err();
        let EddyError::BadInput { location, reason: why } = &err else { panic!("{err:?}") };
        assert_eq!(location, &format!("keyed state 'payload', key group {group}"), "{err}");
        assert!(why.contains(reason), "{err}");
        let err = restored.value_state(&desc, &some_key, 0).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("payload"), "the state stays unreadable: {err}");
    }
}

/// Every key's value and tags, read from a heap state restored from `snapshot`.
fn restored_contents(
    snapshot: &KeyedStateSnapshot,
    dir: &Path,
    keys: std::ops::Range<u64>,
) -> Vec<(Option<u64>, BTreeMap<String, u32>)> {
    let d = Descriptors::new();
    let config = backend(StateBackendKind::HashMap, false, dir);
    let mut restored = KeyedState::new(config, MAX_PARALLELISM).unwrap();
    restored.restore(vec![stored(snapshot)], ALL_KEY_GROUPS).unwrap();
    keys.map(|key| d.read(&mut restored, key)).collect()
}

/// What `Descriptors::write(key, key + offset)` leaves for every key.
fn written(keys: std::ops::Range<u64>, offset: u64) -> Vec<(Option<u64>, BTreeMap<String, u32>)> {
    keys.map(|key| {
        let n = key + offset;
        (Some(n), BTreeMap::from([(format!("t{}", key % 7), n as u32)]))
    })
    .collect()
}

#[test]
fn a_deferred_snapshot_sees_the_state_as_it_was_when_its_synchronous_part_was_taken() {
    for incremental in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let d = Descriptors::new();
        let config = backend(StateBackendKind::Fjall, incremental, dir.path());
        let mut st = KeyedState::new(config, MAX_PARALLELISM).unwrap();
        for key in 0..1_000 {
            d.write(&mut st, key, key);
        }
        let first = st.checkpoint_async(MAX_PARALLELISM, 0, 1).unwrap();
        assert!(first.is_deferred(), "fjall reads its view off the task thread");
        for key in 0..1_000 {
            d.write(&mut st, key, key + 1_000_000);
        }
        for key in 1_000..1_200 {
            d.write(&mut st, key, key);
        }
        st.value_state(&d.count, &7, 0).unwrap().clear();
        // Its synchronous part writes the changes back to the tree the first one reads.
        let second = st.checkpoint_async(MAX_PARALLELISM, 0, 2).unwrap();
        let (first, second) = (first.finish().unwrap(), second.finish().unwrap());
        assert_eq!(first.shared.is_empty(), !incremental);

        let mut before = written(0..1_000, 0);
        before.extend(written(1_000..1_200, 0).into_iter().map(|_| (None, BTreeMap::new())));
        assert_eq!(restored_contents(&first, dir.path(), 0..1_200), before, "incremental: {incremental}");
        let mut after = written(0..1_000, 1_000_000);
        after[7].0 = None;
        after.extend(written(1_000..1_200, 0));
        assert_eq!(restored_contents(&second, dir.path(), 0..1_200), after, "incremental: {incremental}");
    }
    // The heap backend copies its entries in the synchronous part.
    let dir = tempfile::tempdir().unwrap();
    let mut heap =
        KeyedState::new(backend(StateBackendKind::HashMap, false, dir.path()), MAX_PARALLELISM).unwrap();
    Descriptors::new().write(&mut heap, 1, 1);
    assert!(!heap.snapshot_async(MAX_PARALLELISM, 0).unwrap().is_deferred());
}

#[test]
fn the_checkpoint_after_a_failed_asynchronous_part_writes_what_that_part_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = Descriptors::new();
    let mut st =
        KeyedState::new(backend(StateBackendKind::Fjall, true, dir.path()), MAX_PARALLELISM).unwrap();
    for key in 0..300 {
        d.write(&mut st, key, key);
    }
    let first = st.checkpoint_async(MAX_PARALLELISM, 0, 1).unwrap();
    d.write(&mut st, 5, 5_000);
    // Taken before the first part runs, as the task does: it references the first's files.
    let second = st.checkpoint_async(MAX_PARALLELISM, 0, 2).unwrap();

    // A file where the shared directory should be: the first part cannot write.
    let shared = dir.path().join("job").join(SHARED_DIR);
    std::fs::create_dir_all(shared.parent().unwrap()).unwrap();
    std::fs::write(&shared, b"in the way").unwrap();
    let err = first.finish().unwrap_err();
    assert!(err.to_string().contains(&shared.display().to_string()), "{err}");
    std::fs::remove_file(&shared).unwrap();

    let second = second.finish().unwrap();
    let files = by_key_group(&second.shared);
    assert!(files.values().all(|p| p.starts_with("job/shared/chk-2-")), "{files:?}");
    let mut expected = written(0..300, 0);
    expected[5] = written(5..6, 4_995).remove(0);
    assert_eq!(restored_contents(&second, dir.path(), 0..300), expected);

    // The failed part's key groups were marked changed again: the next checkpoint rewrites
    // them, and the one after references those files.
    let third = st.checkpoint(MAX_PARALLELISM, 0, 3).unwrap();
    let files = by_key_group(&third.shared);
    assert!(files.values().all(|p| p.starts_with("job/shared/chk-3-")), "{files:?}");
    let fourth = st.checkpoint(MAX_PARALLELISM, 0, 4).unwrap();
    assert_eq!(by_key_group(&fourth.shared), by_key_group(&third.shared));
    assert_eq!(restored_contents(&fourth, dir.path(), 0..300), expected);
}

#[test]
fn a_savepoint_switches_a_job_between_backends() {
    let dir = tempfile::tempdir().unwrap();
    let d = Descriptors::new();
    for (from, to) in [
        (StateBackendKind::HashMap, StateBackendKind::Fjall),
        (StateBackendKind::Fjall, StateBackendKind::HashMap),
    ] {
        let mut st = KeyedState::new(backend(from, false, dir.path()), MAX_PARALLELISM).unwrap();
        for key in 0..300 {
            d.write(&mut st, key, key * 3);
        }
        let savepoint = stored(&st.snapshot(MAX_PARALLELISM, 0).unwrap());
        let mut restored = KeyedState::new(backend(to, false, dir.path()), MAX_PARALLELISM).unwrap();
        restored.restore(vec![savepoint], ALL_KEY_GROUPS).unwrap();
        for key in 0..300 {
            assert_eq!(d.read(&mut restored, key), d.read(&mut st, key), "key {key}, {from} to {to}");
        }
    }
}

#[test]
fn rocksdb_is_refused_with_a_pointer_to_fjall() {
    let mut config = Configuration::new();
    config.set("state.backend", "rocksdb");
    let err = StateBackendConfig::from_configuration(&config).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("'state.backend'") && text.contains("state.backend: fjall"), "{text}");
    config.set("state.backend", "fjall");
    config.set("state.backend.fjall.memory", "2 mb");
    let err = StateBackendConfig::from_configuration(&config).unwrap_err();
    assert!(err.to_string().contains("at least 4 mb"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// State larger than memory
// ---------------------------------------------------------------------------------------------

/// ~100 bytes that do not compress, derived from the key.
fn payload(key: u64) -> String {
    let mut x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Record `(key, pass)`: pass 0 writes the key's payload into value and map state, pass 1
/// checks it; the record `(u64::MAX, _)`, last in the input, reports
/// `(keys checked, keys wrong, bytes under the local directory)`.
#[derive(Clone)]
struct WriteThenCheck {
    payload: ValueStateDescriptor<String>,
    seen: MapStateDescriptor<u8, u64>,
    local_dir: std::path::PathBuf,
    checked: u64,
    wrong: u64,
}

impl KeyedProcessFunction<u64, (u64, u8), (u64, u64, u64)> for WriteThenCheck {
    fn process_element(
        &mut self,
        (key, pass): (u64, u8),
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<(u64, u64, u64)>,
    ) -> Result<()> {
        if key == u64::MAX {
            out.collect((self.checked, self.wrong, dir_size(&self.local_dir)));
            return Ok(());
        }
        if pass == 0 {
            ctx.state(&self.payload).update(payload(key));
            ctx.map_state(&self.seen).put(0, key);
            return Ok(());
        }
        self.checked += 1;
        let right = ctx.state(&self.payload).value() == Some(&payload(key))
            && ctx.map_state(&self.seen).get(&0) == Some(&key);
        if !right {
            self.wrong += 1;
        }
        Ok(())
    }
}

#[test]
fn state_many_times_the_memory_budget_is_kept_on_disk_and_read_back() {
    const KEYS: u64 = 200_000;
    const BUDGET: u64 = 8 << 20;
    let local = tempfile::tempdir().unwrap();
    let mut config = Configuration::new();
    config.set("state.backend", "fjall");
    config.set("state.backend.fjall.memory", "8 mb");
    config.set("state.backend.fjall.localdir", local.path().display().to_string());
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(1);
    let input = env.from_generator(2 * KEYS + 1, |i| match i {
        i if i == 2 * KEYS => (u64::MAX, 0),
        // Pass 1 visits the keys in another order than pass 0.
        i if i >= KEYS => ((i - KEYS) * 7_919 % KEYS, 1),
        i => (i, 0),
    });
    let report = input
        .key_by(|r: &(u64, u8)| r.0)
        .process(WriteThenCheck {
            payload: ValueStateDescriptor::new("payload"),
            seen: MapStateDescriptor::new("seen"),
            local_dir: local.path().to_path_buf(),
            checked: 0,
            wrong: 0,
        })
        .execute_and_collect()
        .unwrap();
    let [(checked, wrong, on_disk)] = report[..] else { panic!("{report:?}") };
    assert_eq!((checked, wrong), (KEYS, 0), "every key read back its own payload");
    assert!(on_disk > 4 * BUDGET, "{on_disk} bytes on disk for a budget of {BUDGET}");
    assert_eq!(dir_size(local.path()), 0, "the working directory is removed when the task ends");
}

// ---------------------------------------------------------------------------------------------
// Exactly-once recovery on fjall with incremental checkpoints
// ---------------------------------------------------------------------------------------------

const COUNT_KEYS: i64 = 500;
const N: i64 = 1_000_000;

#[derive(Clone)]
struct Count {
    count: ValueStateDescriptor<i64>,
}

impl KeyedProcessFunction<i64, i64, (i64, i64)> for Count {
    fn process_element(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<i64>,
        out: &mut Collector<(i64, i64)>,
    ) -> Result<()> {
        let key = *ctx.current_key();
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect((key, n));
        Ok(())
    }
}

#[test]
fn keyed_counts_on_fjall_with_incremental_checkpoints_are_exactly_once_across_a_failure() {
    let checkpoints = tempfile::tempdir().unwrap();
    let mut config = Configuration::new();
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", "3");
    config.set("restart-strategy.fixed-delay.delay", "10 ms");
    config.set("execution.checkpointing.interval", "20 ms");
    config.set("state.checkpoints.dir", checkpoints.path().display().to_string());
    config.set("state.checkpoints.num-retained", "2");
    // The test looks at the checkpoints the job leaves behind.
    config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION");
    config.set("state.backend", "fjall");
    config.set("state.backend.incremental", "true");
    let env = StreamExecutionEnvironment::with_configuration(config).with_parallelism(2);
    let sink = MaxPerKey::default();
    // Runs of 1000 records per key: each checkpoint interval writes to a few keys only.
    env.from_sequence(0, N - 1)
        .key_by(|v: &i64| (v / 1_000) % COUNT_KEYS)
        .process(Count { count: ValueStateDescriptor::new("count") })
        .uid("count")
        .transform("FailOnce", |_| Ok(FailOnce::after((N / 3) as u64)))
        .sink_to(sink.clone(), "max per key");
    let client = env.execute_async("keyed counts on fjall").unwrap();
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal(), "the job did not end within {JOB_LIMIT:?}");
    if let Err(e) = client.wait() {
        panic!("the job failed: {e}; checkpoints {:?}", client.checkpoint_stats());
    }
    assert_eq!(client.restarts(), 1, "the injected failure restarted the job once");
    assert!(client.checkpoint_stats().restored.is_some(), "{:?}", client.checkpoint_stats());
    let expected: BTreeMap<i64, i64> = (0..COUNT_KEYS).map(|k| (k, N / COUNT_KEYS)).collect();
    assert_eq!(*sink.0.lock().unwrap(), expected, "the counts equal a failure-free run's");

    // The retained checkpoints reference shared files, and the shared directory holds nothing
    // else but files of checkpoints newer than the oldest retained one.
    let job_dir = checkpoints.path().join(client.job_id());
    let mut retained: Vec<u64> = std::fs::read_dir(&job_dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    retained.sort();
    let mut referenced = BTreeSet::new();
    for id in &retained {
        let checkpoint = read_checkpoint(&job_dir.join(format!("chk-{id}"))).unwrap();
        for op in &checkpoint.operators {
            for bytes in op.subtasks.iter().filter_map(|s| s.state.as_deref()) {
                let (files, _) = eddy_runtime::checkpoint::storage::split_shared_files(bytes).unwrap();
                referenced.extend(files.into_iter().map(|f| f.path));
            }
        }
    }
    assert!(!referenced.is_empty(), "the checkpoints of the fjall backend are incremental");
    let oldest = retained[0];
    for entry in std::fs::read_dir(job_dir.join(SHARED_DIR)).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let written_for: u64 = name.strip_prefix("chk-").unwrap().split('-').next().unwrap().parse().unwrap();
        let path = format!("{}/{SHARED_DIR}/{name}", client.job_id());
        assert!(
            referenced.contains(&path) || written_for >= oldest,
            "{name} is neither referenced by checkpoints {retained:?} nor newer"
        );
    }
}
