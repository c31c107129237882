use std::collections::{BTreeMap, BTreeSet};

use eddy::prelude::*;
use eddy::state::{KeyedState, KeyedStateSnapshot, StateKind, SNAPSHOT_FORMAT_VERSION};
use eddy::testing::OneInputHarness;
use eddy_core::codec::{decode_value, encode_value};
use eddy_core::config::StateBackendConfig;
use eddy_core::keygroup::{assign_to_key_group, key_group_range_for_operator};
use eddy_core::Key;

/// Flink's default `pipeline.max-parallelism` for any parallelism up to 85.
const MAX_PARALLELISM: usize = 128;
const ALL_KEY_GROUPS: std::ops::RangeInclusive<usize> = 0..=127;

/// Empty keyed state on the backend under test.
fn state<K: Key>() -> KeyedState<K> {
    let config = StateBackendConfig { kind: BACKEND, ..StateBackendConfig::default() };
    KeyedState::new(std::sync::Arc::new(config), MAX_PARALLELISM).unwrap()
}

/// A job environment with the backend under test.
fn env_on_backend() -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    config.set("state.backend", BACKEND.to_string());
    StreamExecutionEnvironment::with_configuration(config)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn ttl(ms: u64) -> StateTtlConfig {
    StateTtlConfig::new(Duration::from_millis(ms))
}

/// The error of a state access (handles do not implement `Debug`, so no `unwrap_err`).
fn access_error<T>(r: Result<T>) -> EddyError {
    match r {
        Ok(_) => panic!("the state access succeeded"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// The primitives
// ---------------------------------------------------------------------------------------------

#[test]
fn value_state_is_per_key_and_clears() {
    let d = ValueStateDescriptor::<i64>::new("v");
    let mut st = state::<String>();
    let (a, b) = (s("a"), s("b"));
    st.value_state(&d, &a, 0).unwrap().update(1);
    assert_eq!(st.value_state(&d, &b, 0).unwrap().value(), None);
    st.value_state(&d, &b, 0).unwrap().update(2);
    st.value_state(&d, &a, 0).unwrap().update(3);
    assert_eq!(st.value_state(&d, &a, 0).unwrap().value(), Some(&3));
    assert_eq!(st.value_state(&d, &b, 0).unwrap().value(), Some(&2));
    st.value_state(&d, &a, 0).unwrap().clear();
    assert_eq!(st.value_state(&d, &a, 0).unwrap().value(), None);
    assert_eq!(st.value_state(&d, &b, 0).unwrap().value(), Some(&2));
    st.value_state(&d, &b, 0).unwrap().clear();
    assert!(st.is_empty());
}

#[test]
fn list_state_appends_replaces_and_clears_per_key() {
    let d = ListStateDescriptor::<u32>::new("l");
    let mut st = state::<u8>();
    let mut l = st.list_state(&d, &1, 0).unwrap();
    assert!(l.get().is_empty());
    l.add(1);
    l.add_all(vec![2, 3]);
    l.add_all(Vec::new());
    assert_eq!(l.get(), &[1, 2, 3]);
    st.list_state(&d, &2, 0).unwrap().add(9);
    assert_eq!(st.list_state(&d, &1, 0).unwrap().get(), &[1, 2, 3]);
    assert_eq!(st.list_state(&d, &2, 0).unwrap().get(), &[9]);

    st.list_state(&d, &1, 0).unwrap().update(vec![7, 8]);
    assert_eq!(st.list_state(&d, &1, 0).unwrap().get(), &[7, 8]);
    // Flink: updating with an empty list clears the state.
    st.list_state(&d, &1, 0).unwrap().update(Vec::new());
    assert!(st.list_state(&d, &1, 0).unwrap().get().is_empty());
    st.list_state(&d, &2, 0).unwrap().clear();
    assert!(st.is_empty());
}

#[test]
fn map_state_puts_removes_and_iterates_per_key() {
    let d = MapStateDescriptor::<String, i64>::new("m");
    let mut st = state::<u8>();
    let mut m = st.map_state(&d, &1, 0).unwrap();
    assert!(m.is_empty());
    m.put(s("x"), 1);
    m.put_all(vec![(s("y"), 2), (s("z"), 3)]);
    m.put(s("x"), 10);
    assert_eq!(m.get("x"), Some(&10));
    assert!(m.contains("y"));
    assert!(!m.contains("w"));
    assert_eq!(m.remove("y"), Some(2));
    assert_eq!(m.remove("y"), None);
    let entries: BTreeMap<String, i64> = m.entries().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(entries, BTreeMap::from([(s("x"), 10), (s("z"), 3)]));
    let keys: BTreeSet<&String> = m.keys().collect();
    assert_eq!(keys, BTreeSet::from([&s("x"), &s("z")]));
    let mut values: Vec<i64> = m.values().copied().collect();
    values.sort();
    assert_eq!(values, vec![3, 10]);
    assert!(!m.is_empty());

    st.map_state(&d, &2, 0).unwrap().put(s("x"), -1);
    assert_eq!(st.map_state(&d, &1, 0).unwrap().get("x"), Some(&10));
    assert_eq!(st.map_state(&d, &2, 0).unwrap().get("x"), Some(&-1));
    st.map_state(&d, &1, 0).unwrap().clear();
    assert!(st.map_state(&d, &1, 0).unwrap().is_empty());
    // Removing the last entry removes the key's map altogether.
    let mut m = st.map_state(&d, &2, 0).unwrap();
    assert_eq!(m.remove("x"), Some(-1));
    assert!(m.is_empty());
    assert!(st.is_empty());
}

/// The average of the values added.
#[derive(Clone)]
struct Average;

impl AggregateFunction<i64, (i64, u64), f64> for Average {
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, u64), v: i64) {
        acc.0 += v;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, u64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, acc: &mut (i64, u64), other: (i64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
}

#[test]
fn reducing_and_aggregating_state_fold_what_is_added_per_key() {
    let max = ReducingStateDescriptor::new("max", |a: i64, b: i64| a.max(b));
    let avg = AggregatingStateDescriptor::new("avg", Average);
    let mut st = state::<u8>();
    assert_eq!(st.reducing_state(&max, &1, 0).unwrap().get(), None);
    assert_eq!(st.aggregating_state(&avg, &1, 0).unwrap().get(), None);
    for (k, v) in [(1, 3), (2, 10), (1, 7), (1, 5)] {
        st.reducing_state(&max, &k, 0).unwrap().add(v);
        st.aggregating_state(&avg, &k, 0).unwrap().add(v);
    }
    assert_eq!(st.reducing_state(&max, &1, 0).unwrap().get(), Some(&7));
    assert_eq!(st.reducing_state(&max, &2, 0).unwrap().get(), Some(&10));
    assert_eq!(st.aggregating_state(&avg, &1, 0).unwrap().get(), Some(5.0));
    assert_eq!(st.aggregating_state(&avg, &2, 0).unwrap().get(), Some(10.0));
    st.reducing_state(&max, &1, 0).unwrap().clear();
    st.aggregating_state(&avg, &1, 0).unwrap().clear();
    assert_eq!(st.reducing_state(&max, &1, 0).unwrap().get(), None);
    assert_eq!(st.aggregating_state(&avg, &1, 0).unwrap().get(), None);
    st.reducing_state(&max, &1, 0).unwrap().add(-4);
    assert_eq!(st.reducing_state(&max, &1, 0).unwrap().get(), Some(&-4));
}

#[test]
fn a_name_belongs_to_one_kind_and_one_type_of_state() {
    let mut st = state::<u8>();
    st.value_state(&ValueStateDescriptor::<i64>::new("x"), &1, 0).unwrap().update(1);

    let err = access_error(st.list_state(&ListStateDescriptor::<i64>::new("x"), &1, 0));
    assert!(matches!(err, EddyError::InvalidJob(_)), "{err:?}");
    assert!(err.to_string().contains("'x' is a value state, not a list state"), "{err}");
    let err = access_error(st.reducing_state(&ReducingStateDescriptor::new("x", |a: i64, b| a + b), &1, 0));
    assert!(err.to_string().contains("not a reducing state"), "{err}");

    let err = access_error(st.value_state(&ValueStateDescriptor::<String>::new("x"), &1, 0));
    assert!(matches!(err, EddyError::InvalidJob(_)), "{err:?}");
    assert!(err.to_string().contains("holds i64, not alloc::string::String"), "{err}");

    let err = access_error(st.value_state(
        &ValueStateDescriptor::<i64>::new("x").enable_time_to_live(ttl(5)),
        &1,
        0,
    ));
    assert!(err.to_string().contains("written without TTL and is now used with TTL"), "{err}");

    // The state itself is untouched by the failed accesses.
    assert_eq!(st.value_state(&ValueStateDescriptor::<i64>::new("x"), &1, 0).unwrap().value(), Some(&1));
}

// ---------------------------------------------------------------------------------------------
// Time to live
// ---------------------------------------------------------------------------------------------

#[test]
fn a_value_expires_ttl_after_its_last_write_and_is_cleaned_up_when_read() {
    let d = ValueStateDescriptor::<i64>::new("v").enable_time_to_live(ttl(10));
    let mut st = state::<u8>();
    st.value_state(&d, &1, 100).unwrap().update(1);
    // OnCreateAndWrite: reads do not extend the life of the value.
    assert_eq!(st.value_state(&d, &1, 105).unwrap().value(), Some(&1));
    assert_eq!(st.value_state(&d, &1, 109).unwrap().value(), Some(&1));
    // Expired once `last write + ttl <= now`; the read removed it.
    assert!(!st.is_empty());
    assert_eq!(st.value_state(&d, &1, 110).unwrap().value(), None);
    assert!(st.is_empty());
    // A write restarts the clock.
    st.value_state(&d, &1, 200).unwrap().update(2);
    st.value_state(&d, &1, 205).unwrap().update(3);
    assert_eq!(st.value_state(&d, &1, 214).unwrap().value(), Some(&3));
    assert_eq!(st.value_state(&d, &1, 215).unwrap().value(), None);
}

#[test]
fn on_read_and_write_reads_extend_the_life_of_what_they_return() {
    let d = ValueStateDescriptor::<i64>::new("v")
        .enable_time_to_live(ttl(10).update_type(UpdateType::OnReadAndWrite));
    let mut st = state::<u8>();
    st.value_state(&d, &1, 0).unwrap().update(1);
    assert_eq!(st.value_state(&d, &1, 9).unwrap().value(), Some(&1));
    assert_eq!(st.value_state(&d, &1, 18).unwrap().value(), Some(&1));
    // Only a read of a live value refreshes it: 18 + 10 = 28.
    assert_eq!(st.value_state(&d, &1, 28).unwrap().value(), None);
    // Handles that only write or clear do not count as reads.
    st.value_state(&d, &1, 100).unwrap().update(2);
    let _ = st.value_state(&d, &1, 105).unwrap();
    assert_eq!(st.value_state(&d, &1, 110).unwrap().value(), None);
}

#[test]
fn return_expired_if_not_cleaned_up_returns_an_expired_value_to_one_read() {
    let d = ValueStateDescriptor::<i64>::new("v").enable_time_to_live(
        ttl(10)
            .update_type(UpdateType::OnReadAndWrite)
            .state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp),
    );
    let mut st = state::<u8>();
    st.value_state(&d, &1, 0).unwrap().update(1);
    let mut v = st.value_state(&d, &1, 50).unwrap();
    assert_eq!(v.value(), Some(&1));
    // That read cleaned it up (and, being expired, it was not refreshed), as in Flink.
    assert_eq!(v.value(), None);
    assert!(st.is_empty());
    st.value_state(&d, &1, 60).unwrap().update(5);
    assert_eq!(st.value_state(&d, &1, 70).unwrap().value(), Some(&5));
    assert_eq!(st.value_state(&d, &1, 70).unwrap().value(), None);

    // An expired value read and then overwritten in the same handle keeps the new value.
    st.value_state(&d, &1, 100).unwrap().update(2);
    let mut v = st.value_state(&d, &1, 200).unwrap();
    assert_eq!(v.value(), Some(&2));
    v.update(3);
    assert_eq!(st.value_state(&d, &1, 201).unwrap().value(), Some(&3));
}

#[test]
fn list_elements_expire_one_by_one() {
    let d = ListStateDescriptor::<String>::new("l").enable_time_to_live(ttl(10));
    let mut st = state::<u8>();
    st.list_state(&d, &1, 0).unwrap().add(s("a"));
    st.list_state(&d, &1, 5).unwrap().add_all([s("b"), s("c")]);
    assert_eq!(st.list_state(&d, &1, 9).unwrap().get(), &["a", "b", "c"]);
    assert_eq!(st.list_state(&d, &1, 10).unwrap().get(), &["b", "c"]);
    assert_eq!(st.list_state(&d, &1, 15).unwrap().get(), &[] as &[&str]);
    assert!(st.is_empty());
    // update() stamps every element it writes.
    st.list_state(&d, &1, 20).unwrap().update(vec![s("d"), s("e")]);
    assert_eq!(st.list_state(&d, &1, 29).unwrap().get(), &["d", "e"]);
    assert_eq!(st.list_state(&d, &1, 30).unwrap().get(), &[] as &[&str]);

    let visible = ListStateDescriptor::<String>::new("r")
        .enable_time_to_live(ttl(10).state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp));
    st.list_state(&visible, &1, 0).unwrap().add(s("old"));
    st.list_state(&visible, &1, 5).unwrap().add(s("new"));
    assert_eq!(st.list_state(&visible, &1, 12).unwrap().get(), &["old", "new"]);
    assert_eq!(st.list_state(&visible, &1, 12).unwrap().get(), &["new"]);
}

#[test]
fn map_entries_expire_one_by_one() {
    let d = MapStateDescriptor::<u32, u32>::new("m")
        .enable_time_to_live(ttl(10).update_type(UpdateType::OnReadAndWrite));
    let mut st = state::<u8>();
    st.map_state(&d, &1, 0).unwrap().put(1, 10);
    st.map_state(&d, &1, 0).unwrap().put(2, 20);
    st.map_state(&d, &1, 5).unwrap().put(3, 30);
    // Reading entry 2 at 8 keeps it alive until 18; entry 1 is left to expire at 10.
    assert_eq!(st.map_state(&d, &1, 8).unwrap().get(&2), Some(&20));
    let mut m = st.map_state(&d, &1, 12).unwrap();
    assert_eq!(m.get(&1), None);
    assert!(!m.contains(&1));
    assert_eq!(m.remove(&1), None);
    let live: BTreeMap<u32, u32> = m.entries().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(live, BTreeMap::from([(2, 20), (3, 30)]));
    // Iterating at 12 read (and refreshed) both entries: they live until 22.
    assert!(!st.map_state(&d, &1, 21).unwrap().is_empty());
    assert!(st.map_state(&d, &1, 22).unwrap().is_empty());
    assert!(st.is_empty());
}

#[test]
fn map_entries_returned_expired_are_gone_from_the_next_read_and_from_snapshots() {
    let d = MapStateDescriptor::<u32, u32>::new("m")
        .enable_time_to_live(ttl(10).state_visibility(StateVisibility::ReturnExpiredIfNotCleanedUp));
    let mut st = state::<u8>();
    st.map_state(&d, &1, 0).unwrap().put(1, 10);
    st.map_state(&d, &1, 5).unwrap().put(2, 20);
    let mut m = st.map_state(&d, &1, 12).unwrap();
    assert_eq!(m.get(&1), Some(&10), "expired, not cleaned up yet");
    assert_eq!(m.get(&1), None, "cleaned up by the read that returned it");
    assert_eq!(m.entries().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), vec![(2, 20)]);
    let mut m = st.map_state(&d, &1, 20).unwrap();
    assert!(!m.is_empty(), "an expired entry not cleaned up is still visible");
    assert_eq!(m.entries().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), vec![(2, 20)]);
    // Entry 2 was returned expired: cleaned up, so no snapshot holds it, even without
    // `cleanup_full_snapshot`.
    let snapshot = st.snapshot(MAX_PARALLELISM, 20).unwrap();
    assert!(snapshot.state("m").unwrap().key_groups.is_empty());
    assert!(st.map_state(&d, &1, 20).unwrap().is_empty());
    assert!(st.is_empty());
}

#[test]
fn reducing_and_aggregating_state_start_afresh_once_expired() {
    let sum = ReducingStateDescriptor::new("sum", |a: i64, b: i64| a + b).enable_time_to_live(ttl(10));
    let avg = AggregatingStateDescriptor::new("avg", Average).enable_time_to_live(ttl(10));
    let mut st = state::<u8>();
    for (t, v) in [(0, 1), (5, 2)] {
        st.reducing_state(&sum, &1, t).unwrap().add(v);
        st.aggregating_state(&avg, &1, t).unwrap().add(v);
    }
    // Each add is a write: the accumulated value lives until 5 + 10.
    assert_eq!(st.reducing_state(&sum, &1, 14).unwrap().get(), Some(&3));
    assert_eq!(st.aggregating_state(&avg, &1, 14).unwrap().get(), Some(1.5));
    st.reducing_state(&sum, &1, 20).unwrap().add(7);
    st.aggregating_state(&avg, &1, 20).unwrap().add(7);
    assert_eq!(st.reducing_state(&sum, &1, 20).unwrap().get(), Some(&7));
    assert_eq!(st.aggregating_state(&avg, &1, 20).unwrap().get(), Some(7.0));
    assert_eq!(st.reducing_state(&sum, &1, 30).unwrap().get(), None);
}

#[test]
fn cleanup_full_snapshot_leaves_expired_entries_out_of_snapshots_only() {
    let kept = ValueStateDescriptor::<i64>::new("kept").enable_time_to_live(ttl(10));
    let cleaned =
        ValueStateDescriptor::<i64>::new("cleaned").enable_time_to_live(ttl(10).cleanup_full_snapshot());
    let list = ListStateDescriptor::<i64>::new("list").enable_time_to_live(ttl(10).cleanup_full_snapshot());
    let mut st = state::<u32>();
    for k in 0..20u32 {
        // Even keys are written at 0 and have expired by 15; odd keys are written at 10.
        let t = if k % 2 == 0 { 0 } else { 10 };
        st.value_state(&kept, &k, t).unwrap().update(k as i64);
        st.value_state(&cleaned, &k, t).unwrap().update(k as i64);
        st.list_state(&list, &k, 0).unwrap().add(0);
        st.list_state(&list, &k, t).unwrap().add(k as i64);
    }
    let snap = st.snapshot(MAX_PARALLELISM, 15).unwrap();
    let mut restored = state::<u32>();
    restored.restore(vec![snap], ALL_KEY_GROUPS).unwrap();
    for k in 0..20u32 {
        // Read at 9, when nothing has expired yet.
        let got = restored.value_state(&kept, &k, 9).unwrap().value().copied();
        assert_eq!(got, Some(k as i64), "key {k}: not cleaned in snapshots");
        let got = restored.value_state(&cleaned, &k, 9).unwrap().value().copied();
        assert_eq!(got, (k % 2 == 1).then_some(k as i64), "key {k}");
        let got = restored.list_state(&list, &k, 9).unwrap().get().to_vec();
        assert_eq!(got, if k % 2 == 1 { vec![k as i64] } else { vec![] }, "key {k}");
    }
    // The live state still holds the expired entries until they are read.
    let even = 4;
    let mut v = st.value_state(&cleaned, &even, 15).unwrap();
    assert_eq!(v.value(), None);
}

// ---------------------------------------------------------------------------------------------
// Snapshots and restore
// ---------------------------------------------------------------------------------------------

/// One descriptor of each kind, and what each key holds in them.
struct AllKinds {
    value: ValueStateDescriptor<String>,
    list: ListStateDescriptor<u64>,
    map: MapStateDescriptor<String, Vec<u8>>,
    reducing: ReducingStateDescriptor<u64>,
    aggregating: AggregatingStateDescriptor<i64, (i64, u64), f64>,
}

type Contents = (Option<String>, Vec<u64>, BTreeMap<String, Vec<u8>>, Option<u64>, Option<f64>);

impl AllKinds {
    fn new() -> Self {
        AllKinds {
            value: ValueStateDescriptor::new("value"),
            list: ListStateDescriptor::new("list"),
            map: MapStateDescriptor::new("map"),
            reducing: ReducingStateDescriptor::new("reducing", |a: u64, b: u64| a * 31 + b),
            aggregating: AggregatingStateDescriptor::new("aggregating", Average),
        }
    }

    /// Fills every state for `key`, differently per key; key 0 has only a value.
    fn fill(&self, st: &mut KeyedState<u64>, key: u64) {
        st.value_state(&self.value, &key, 0).unwrap().update(format!("v{key}"));
        if key == 0 {
            return;
        }
        st.list_state(&self.list, &key, 0).unwrap().add_all(0..key % 5 + 1);
        let mut m = st.map_state(&self.map, &key, 0).unwrap();
        for i in 0..key % 3 + 1 {
            m.put(format!("k{i}"), vec![key as u8; i as usize]);
        }
        for i in 0..3 {
            st.reducing_state(&self.reducing, &key, 0).unwrap().add(key + i);
            st.aggregating_state(&self.aggregating, &key, 0).unwrap().add(key as i64 * i as i64);
        }
    }

    fn read(&self, st: &mut KeyedState<u64>, key: u64) -> Contents {
        (
            st.value_state(&self.value, &key, 0).unwrap().value().cloned(),
            st.list_state(&self.list, &key, 0).unwrap().get().to_vec(),
            st.map_state(&self.map, &key, 0)
                .unwrap()
                .entries()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            st.reducing_state(&self.reducing, &key, 0).unwrap().get().copied(),
            st.aggregating_state(&self.aggregating, &key, 0).unwrap().get(),
        )
    }

    fn is_absent(&self, st: &mut KeyedState<u64>, key: u64) -> bool {
        self.read(st, key) == (None, vec![], BTreeMap::new(), None, None)
    }
}

fn filled(keys: impl IntoIterator<Item = u64>) -> (AllKinds, KeyedState<u64>) {
    let kinds = AllKinds::new();
    let mut st = state();
    for k in keys {
        kinds.fill(&mut st, k);
    }
    (kinds, st)
}

/// Through the codec and back, as a checkpoint stores it.
fn stored(snapshot: &KeyedStateSnapshot) -> KeyedStateSnapshot {
    let mut bytes = Vec::new();
    encode_value(snapshot, &mut bytes).unwrap();
    decode_value(&bytes).unwrap()
}

fn key_groups_of(snapshot: &KeyedStateSnapshot) -> BTreeSet<usize> {
    snapshot.states.iter().flat_map(|s| s.key_groups.iter().map(|kg| kg.key_group)).collect()
}

#[test]
fn every_kind_of_state_survives_a_snapshot_and_restore() {
    let keys = 0..300u64;
    let (kinds, mut original) = filled(keys.clone());
    let snapshot = stored(&original.snapshot(MAX_PARALLELISM, 0).unwrap());
    assert_eq!(snapshot.format_version, SNAPSHOT_FORMAT_VERSION);
    let kinds_in_snapshot: Vec<(&str, StateKind)> =
        snapshot.states.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        kinds_in_snapshot,
        vec![
            ("value", StateKind::Value),
            ("list", StateKind::List),
            ("map", StateKind::Map),
            ("reducing", StateKind::Reducing),
            ("aggregating", StateKind::Aggregating),
        ]
    );
    // Each key group's bytes hold exactly the keys of that group.
    let expected_groups: BTreeSet<usize> =
        keys.clone().map(|k| assign_to_key_group(&k, MAX_PARALLELISM)).collect();
    let value_groups: BTreeSet<usize> =
        snapshot.state("value").unwrap().key_groups.iter().map(|kg| kg.key_group).collect();
    assert_eq!(value_groups, expected_groups);

    let mut restored = state();
    restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap();
    for k in keys {
        assert_eq!(kinds.read(&mut restored, k), kinds.read(&mut original, k), "key {k}");
    }
    assert!(kinds.is_absent(&mut restored, 1_000));
    // A restored state snapshots to the same bytes, whether its states were used or not.
    let mut untouched = state::<u64>();
    untouched.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap();
    assert_eq!(untouched.snapshot(MAX_PARALLELISM, 0).unwrap(), snapshot);
    assert_eq!(key_groups_of(&restored.snapshot(MAX_PARALLELISM, 0).unwrap()), key_groups_of(&snapshot));
}

#[test]
fn ttl_stamps_survive_a_snapshot() {
    let d = ListStateDescriptor::<u8>::new("l").enable_time_to_live(ttl(10));
    let mut st = state::<u8>();
    st.list_state(&d, &1, 0).unwrap().add(1);
    st.list_state(&d, &1, 5).unwrap().add(2);
    let snapshot = stored(&st.snapshot(MAX_PARALLELISM, 5).unwrap());
    assert!(snapshot.states[0].ttl);
    let mut restored = state::<u8>();
    restored.restore(vec![snapshot.clone()], ALL_KEY_GROUPS).unwrap();
    assert_eq!(restored.list_state(&d, &1, 12).unwrap().get(), &[2]);

    // TTL is part of the format, as in Flink.
    let mut without = state::<u8>();
    without.restore(vec![snapshot], ALL_KEY_GROUPS).unwrap();
    let err = access_error(without.list_state(&ListStateDescriptor::<u8>::new("l"), &1, 0));
    assert!(err.to_string().contains("written with TTL and is now used without TTL"), "{err}");
}

/// The state of `parallelism` subtasks, each holding the keys the keyed exchange sends it.
fn subtasks(keys: &[u64], parallelism: usize) -> Vec<KeyedState<u64>> {
    let kinds = AllKinds::new();
    (0..parallelism)
        .map(|i| {
            let range = key_group_range_for_operator(MAX_PARALLELISM, parallelism, i);
            let mut st = state();
            for &k in keys.iter().filter(|k| range.contains(&assign_to_key_group(*k, MAX_PARALLELISM))) {
                kinds.fill(&mut st, k);
            }
            st
        })
        .collect()
}

/// Restores the snapshots of `old` subtasks into `new` subtasks, and checks that every key ends
/// up in exactly the new subtask that owns its key group, with its contents intact.
fn rescale(old: usize, new: usize) {
    let keys: Vec<u64> = (0..500).map(|i| i * 7919 % 100_003).collect();
    let kinds = AllKinds::new();
    let mut before = subtasks(&keys, old);
    let snapshots: Vec<KeyedStateSnapshot> =
        before.iter_mut().map(|st| stored(&st.snapshot(MAX_PARALLELISM, 0).unwrap())).collect();
    let mut after: Vec<KeyedState<u64>> = (0..new)
        .map(|i| {
            let mut st = state();
            st.restore(snapshots.clone(), key_group_range_for_operator(MAX_PARALLELISM, new, i)).unwrap();
            st
        })
        .collect();

    // The key groups of the new subtasks are disjoint and together are those of the old ones.
    let old_groups: BTreeSet<usize> = snapshots.iter().flat_map(key_groups_of).collect();
    let mut new_groups = BTreeSet::new();
    for st in &mut after {
        for kg in key_groups_of(&st.snapshot(MAX_PARALLELISM, 0).unwrap()) {
            assert!(new_groups.insert(kg), "key group {kg} restored twice");
        }
    }
    assert_eq!(new_groups, old_groups);

    for &k in &keys {
        let kg = assign_to_key_group(&k, MAX_PARALLELISM);
        let owner_before =
            (0..old).find(|&i| key_group_range_for_operator(MAX_PARALLELISM, old, i).contains(&kg));
        let expected = kinds.read(&mut before[owner_before.unwrap()], k);
        let holders: Vec<usize> = (0..new).filter(|&i| !kinds.is_absent(&mut after[i], k)).collect();
        let owner = (0..new).find(|&i| key_group_range_for_operator(MAX_PARALLELISM, new, i).contains(&kg));
        assert_eq!(holders, vec![owner.unwrap()], "key {k} (key group {kg})");
        assert_eq!(kinds.read(&mut after[holders[0]], k), expected, "key {k}");
    }
}

#[test]
fn rescaling_from_2_to_3_splits_state_by_key_group() {
    rescale(2, 3);
}

#[test]
fn rescaling_from_2_to_1_merges_state() {
    rescale(2, 1);
}

#[test]
fn rescaling_from_3_to_2_moves_key_groups_between_subtasks() {
    rescale(3, 2);
}

// ---------------------------------------------------------------------------------------------
// Bad snapshots
// ---------------------------------------------------------------------------------------------

fn one_list_snapshot() -> (ListStateDescriptor<String>, KeyedStateSnapshot) {
    let d = ListStateDescriptor::<String>::new("words");
    let mut st = state::<u64>();
    for k in 0..50 {
        st.list_state(&d, &k, 0).unwrap().add_all([format!("w{k}"), s("x")]);
    }
    (d, st.snapshot(MAX_PARALLELISM, 0).unwrap())
}

fn bad_input(e: &EddyError) -> (&str, &str) {
    match e {
        EddyError::BadInput { location, reason } => (location, reason),
        other => panic!("not BadInput: {other:?}"),
    }
}

#[test]
fn corrupt_key_group_bytes_are_an_error_naming_the_state_and_key_group() {
    let (d, snapshot) = one_list_snapshot();
    let first = snapshot.states[0].key_groups[0].key_group;
    type Corruption = fn(&mut Vec<u8>);
    let corruptions: Vec<(&str, Corruption)> = vec![
        ("truncated", |b| b.truncate(b.len() - 3)),
        ("trailing byte", |b| b.push(0)),
        ("huge length", |b| b[..8].copy_from_slice(&u64::MAX.to_le_bytes())),
        ("empty", |b| b.clear()),
    ];
    for (what, corrupt) in corruptions {
        let mut bad = snapshot.clone();
        corrupt(&mut bad.states[0].key_groups[0].bytes);
        let mut st = state::<u64>();
        // Restore only checks the layout; the entries are decoded on first use.
        st.restore(vec![bad], ALL_KEY_GROUPS).unwrap();
        let err = access_error(st.list_state(&d, &0, 0));
        let (location, _) = bad_input(&err);
        assert_eq!(location, format!("keyed state 'words', key group {first}"), "{what}");
        // The error stays: the state is not half restored.
        assert!(matches!(access_error(st.list_state(&d, &0, 0)), EddyError::BadInput { .. }), "{what}");
    }
}

#[test]
fn entries_stored_under_the_wrong_key_group_are_an_error() {
    let (d, mut snapshot) = one_list_snapshot();
    let groups = &mut snapshot.states[0].key_groups;
    let (a, b) = (groups[0].key_group, groups[1].key_group);
    groups[0].key_group = b;
    groups[1].key_group = a;
    let mut st = state::<u64>();
    st.restore(vec![snapshot], ALL_KEY_GROUPS).unwrap();
    let err = access_error(st.list_state(&d, &0, 0));
    assert!(bad_input(&err).1.contains("holds a key of key group"), "{err}");
}

#[test]
fn inconsistent_snapshots_are_refused_at_restore() {
    let (_, snapshot) = one_list_snapshot();
    let refuse = |snapshots: &[KeyedStateSnapshot], range, expected: &str| {
        let err = state::<u64>().restore(snapshots.to_vec(), range).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    };
    let mut v2 = snapshot.clone();
    v2.format_version = SNAPSHOT_FORMAT_VERSION + 1;
    refuse(&[v2], ALL_KEY_GROUPS, &format!("format version {}", SNAPSHOT_FORMAT_VERSION + 1));
    let mut other_max = snapshot.clone();
    other_max.max_parallelism = 256;
    refuse(&[snapshot.clone(), other_max], ALL_KEY_GROUPS, "max parallelism 128 and 256");
    refuse(&[snapshot.clone(), snapshot.clone()], ALL_KEY_GROUPS, "twice");
    let mut out_of_range = snapshot.clone();
    out_of_range.states[0].key_groups[0].key_group = 128;
    refuse(&[out_of_range], ALL_KEY_GROUPS, "key group 128 of max parallelism 128");
    let mut other_kind = snapshot.clone();
    other_kind.states[0].kind = StateKind::Value;
    refuse(&[snapshot.clone(), other_kind], ALL_KEY_GROUPS, "differs in kind, types or TTL");
    refuse(std::slice::from_ref(&snapshot), 0..=128, "do not exist");

    // A restored state read as another kind.
    let mut st = state::<u64>();
    st.restore(vec![snapshot], ALL_KEY_GROUPS).unwrap();
    let err = access_error(st.value_state(&ValueStateDescriptor::<String>::new("words"), &0, 0));
    assert!(err.to_string().contains("is a list state, not a value state"), "{err}");
    // Or as a list of another type, even one whose bytes would decode.
    let err = access_error(st.list_state(&ListStateDescriptor::<Vec<u8>>::new("words"), &0, 0));
    assert!(matches!(err, EddyError::InvalidJob(_)), "{err:?}");
    assert!(
        err.to_string().contains(
            "was written holding a list of alloc::string::String and is now read as a list of alloc::vec::Vec<u8>"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the public API: keyed process functions
// ---------------------------------------------------------------------------------------------

/// Per key: every value in a list, and how many values fell in each bucket (value % 4) in a
/// map. Once the input ends (the final watermark fires the timer), emits both.
#[derive(Clone)]
struct Buckets {
    values: ListStateDescriptor<u64>,
    buckets: MapStateDescriptor<u64, u32>,
}

type BucketReport = (u64, Vec<u64>, Vec<(u64, u32)>);

impl KeyedProcessFunction<u64, u64, BucketReport> for Buckets {
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<u64>,
        _: &mut Collector<BucketReport>,
    ) -> Result<()> {
        ctx.list_state(&self.values).add(v);
        let mut buckets = ctx.map_state(&self.buckets);
        let n = buckets.get(&(v % 4)).copied().unwrap_or(0);
        buckets.put(v % 4, n + 1);
        ctx.timer_service().register_event_time_timer(i64::MAX);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<BucketReport>,
    ) -> Result<()> {
        let key = *ctx.current_key();
        let mut values = ctx.list_state(&self.values).get().to_vec();
        values.sort();
        let mut buckets: Vec<(u64, u32)> =
            ctx.map_state(&self.buckets).entries().map(|(b, n)| (*b, *n)).collect();
        buckets.sort();
        ctx.list_state(&self.values).clear();
        ctx.map_state(&self.buckets).clear();
        out.collect((key, values, buckets));
        Ok(())
    }
}

#[test]
fn list_and_map_state_in_a_parallel_job() {
    let env = env_on_backend().with_parallelism(3);
    let mut got = env
        .from_generator(2_000, |i| i * 37 % 1_009)
        .key_by(|v: &u64| v % 13)
        .process(Buckets {
            values: ListStateDescriptor::new("values"),
            buckets: MapStateDescriptor::new("buckets"),
        })
        .execute_and_collect()
        .unwrap();
    got.sort();

    let mut expected: BTreeMap<u64, (Vec<u64>, BTreeMap<u64, u32>)> = BTreeMap::new();
    for v in (0..2_000u64).map(|i| i * 37 % 1_009) {
        let (values, buckets) = expected.entry(v % 13).or_default();
        values.push(v);
        *buckets.entry(v % 4).or_default() += 1;
    }
    let expected: Vec<BucketReport> = expected
        .into_iter()
        .map(|(k, (mut values, buckets))| {
            values.sort();
            (k, values, buckets.into_iter().collect())
        })
        .collect();
    assert_eq!(got, expected);
}

/// Counts records per key in a value state with a TTL; emits the count after each record.
#[derive(Clone)]
struct CountWithTtl {
    count: ValueStateDescriptor<u32>,
}

impl KeyedProcessFunction<String, String, (String, u32)> for CountWithTtl {
    fn process_element(
        &mut self,
        v: String,
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<(String, u32)>,
    ) -> Result<()> {
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect((v, n));
        Ok(())
    }
}

#[test]
fn ttl_follows_the_operators_processing_time_clock() {
    let count = ValueStateDescriptor::new("count").enable_time_to_live(ttl(1_000));
    let mut h =
        OneInputHarness::build_configured(&env_on_backend().configuration(), |s: DataStream<String>| {
            s.key_by(|w: &String| w.clone()).process(CountWithTtl { count })
        })
        .unwrap();
    let counts = |h: &mut OneInputHarness<String, (String, u32)>, w: &str| {
        h.process_element_without_timestamp(s(w)).unwrap();
        h.take_records().into_iter().map(|(r, _)| r.1).collect::<Vec<_>>()
    };
    h.set_processing_time(0).unwrap();
    assert_eq!(counts(&mut h, "a"), vec![1]);
    h.set_processing_time(999).unwrap();
    assert_eq!(counts(&mut h, "a"), vec![2]);
    assert_eq!(counts(&mut h, "b"), vec![1]);
    // "a" was last written at 999: it lives until 1999.
    h.set_processing_time(1_998).unwrap();
    assert_eq!(counts(&mut h, "a"), vec![3]);
    h.set_processing_time(2_997).unwrap();
    assert_eq!(counts(&mut h, "b"), vec![1], "b expired at 1999");
    assert_eq!(counts(&mut h, "a"), vec![4], "a was rewritten at 1998");
}

/// Uses one name for two kinds of state.
#[derive(Clone)]
struct Confused;

impl KeyedProcessFunction<u8, u8, usize> for Confused {
    fn process_element(
        &mut self,
        v: u8,
        ctx: &mut KeyedContext<u8>,
        out: &mut Collector<usize>,
    ) -> Result<()> {
        ctx.state(&ValueStateDescriptor::new("x")).update(v);
        let mut list = ctx.list_state(&ListStateDescriptor::<u8>::new("x"));
        // A detached handle: reads as empty, ignores writes.
        list.add(v);
        out.collect(list.get().len());
        Ok(())
    }
}

#[test]
fn misusing_a_state_name_fails_the_function_call() {
    let mut h = OneInputHarness::build_configured(&env_on_backend().configuration(), |s: DataStream<u8>| {
        s.key_by(|v: &u8| *v).process(Confused)
    })
    .unwrap();
    // The operator reports the function's error as a task failure, with its text.
    let err = h.process_element_without_timestamp(1).unwrap_err();
    let EddyError::Task { message, .. } = &err else { panic!("not a task failure: {err:?}") };
    assert_eq!(message, "invalid job: keyed state 'x' is a value state, not a list state");
}
