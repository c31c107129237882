//! Checks every source connector passes: reading with checkpoints and restores in between
//! gives exactly the records of an uninterrupted read.

use eddy_core::codec;
use eddy_runtime::source::{
    ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SplitAssignment,
};

const BATCH: usize = 5;

/// Encodes and decodes state as a checkpoint does.
fn through_codec<T: serde::Serialize + serde::de::DeserializeOwned>(value: Vec<T>) -> Vec<T> {
    let mut bytes = Vec::new();
    codec::encode_value(&value, &mut bytes).unwrap();
    codec::decode_value(&bytes).unwrap()
}

/// Reads a bounded `source` with `parallelism` readers taking turns. After every `restore_every`
/// polls it checkpoints the enumerator and every reader, throws them away, and goes on with a
/// new enumerator and new readers restored from that checkpoint (as a restarted job does).
/// `restore_every == 0` never restores.
pub(crate) fn read_with_restores<S: Source>(
    source: &S,
    parallelism: usize,
    restore_every: usize,
) -> Vec<S::Output> {
    let ctx = |i| ReaderContext { subtask_index: i, parallelism, batch_size: BATCH };
    let fresh_readers =
        || -> Vec<S::Reader> { (0..parallelism).map(|i| source.create_reader(&ctx(i)).unwrap()).collect() };
    let mut enumerator = source.create_enumerator(parallelism).unwrap();
    let mut readers = fresh_readers();
    let mut done = vec![false; parallelism];
    let mut records = Vec::new();
    let mut out = SourceOutput::new(BATCH);
    let mut polls = 0;
    while done.iter().any(|d| !d) {
        for (i, reader) in readers.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let status = reader.poll_next(&mut out).unwrap();
            records.extend(out.take().values);
            match status {
                ReaderStatus::NeedsSplit => match enumerator.request_split(i).unwrap() {
                    SplitAssignment::Split(s) => reader.add_split(s).unwrap(),
                    SplitAssignment::NoMoreSplits => done[i] = true,
                    SplitAssignment::NotYet => panic!("bounded sources know all their splits"),
                },
                ReaderStatus::EndOfInput => done[i] = true,
                ReaderStatus::MoreAvailable | ReaderStatus::NothingAvailable => {}
            }
        }
        polls += 1;
        let finished = done.iter().all(|d| *d);
        if !finished && restore_every > 0 && polls % restore_every == 0 {
            let remaining = through_codec(enumerator.snapshot_state(polls as u64).unwrap());
            let states: Vec<_> =
                readers.iter_mut().map(|r| through_codec(r.snapshot_state(polls as u64).unwrap())).collect();
            enumerator = source.restore_enumerator(parallelism, remaining).unwrap();
            readers = fresh_readers();
            for (reader, splits) in readers.iter_mut().zip(states) {
                for split in splits {
                    reader.add_split(split).unwrap();
                }
            }
            done = vec![false; parallelism];
        }
    }
    records
}

/// Asserts that restores every 1, 2, 3 and 7 polls, with 1 to 3 readers, change nothing.
pub(crate) fn assert_restores_change_nothing<S: Source>(source: &S)
where
    S::Output: Ord + std::fmt::Debug,
{
    for parallelism in 1..=3 {
        let mut want = read_with_restores(source, parallelism, 0);
        want.sort();
        for every in [1, 2, 3, 7] {
            let mut got = read_with_restores(source, parallelism, every);
            got.sort();
            assert_eq!(got, want, "{parallelism} readers, a restore every {every} polls");
        }
    }
}
