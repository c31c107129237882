//! Savepoints: checkpoints taken on demand, owned by the user, in a relocatable format.
//!
//! A savepoint is triggered through the [`CheckpointCoordinator`](super::CheckpointCoordinator)
//! like a checkpoint, with a barrier of kind `SAVEPOINT` (or, for stop-with-savepoint,
//! `SAVEPOINT_SUSPEND` / `SAVEPOINT_TERMINATE`), and the tasks take it exactly as they take a
//! checkpoint. What differs is where it goes and who owns it:
//!
//! - It is written to a directory the user names (or `state.savepoints.dir`) as one folder
//!   `savepoint-<first 6 digits of the job id>-<12 random hex digits>/` holding a single file,
//!   `_metadata`, with every operator's state inside it. Nothing in it names a path, so the
//!   folder can be moved or copied anywhere and still be restored.
//! - Checkpoint retention never deletes it; the job never touches it again.
//! - A job starts from it with `execution.savepoint.path` (the folder, its `_metadata`, or a
//!   retained `chk-<n>` checkpoint folder), at the same or another parallelism. State of an
//!   operator the job no longer has is an error naming the operator, unless
//!   `execution.savepoint.ignore-unclaimed-state` is set.
//!
//! `_metadata` is JSON: `format` (`eddy-savepoint`), `version` (1), `job_id`, `checkpoint_id`,
//! `timestamp`, `kind`, and per operator its `id`, `uid`, `name`, `parallelism`,
//! `max_parallelism`, `coordinator` state and per subtask `finished` and `state`. Each state is
//! `{size, crc32, data}` with the bytes in base64; reading checks every size and checksum.
//! The folder is written under a hidden temporary name and renamed when complete, so a crash
//! never leaves a folder that looks like a savepoint and is not.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use eddy_core::config::options;
use eddy_core::{CheckpointType, Configuration, EddyError, Result};
use serde::{Deserialize, Serialize};

use super::storage::{crc32, read_checkpoint, METADATA_FILE};
use super::{CompletedCheckpoint, OperatorState, SubtaskState};

const FORMAT_NAME: &str = "eddy-savepoint";
const FORMAT_VERSION: u32 = 1;
/// The `format` of a checkpoint's `_metadata` (see [`super::storage`]).
const CHECKPOINT_FORMAT_NAME: &str = "eddy-checkpoint";

/// Where a job starts from: Flink's `execution.savepoint.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointRestoreSettings {
    /// `execution.savepoint.path`: a savepoint folder, its `_metadata`, or a `chk-<n>` folder.
    pub path: PathBuf,
    /// `execution.savepoint.ignore-unclaimed-state`.
    pub ignore_unclaimed_state: bool,
}

impl SavepointRestoreSettings {
    /// The restore `config` asks for; `None` when `execution.savepoint.path` is unset.
    pub fn from_configuration(config: &Configuration) -> Result<Option<Self>> {
        let Some(path) = config.get_optional(&options::SAVEPOINT_PATH)? else { return Ok(None) };
        Ok(Some(SavepointRestoreSettings {
            path: PathBuf::from(path),
            ignore_unclaimed_state: config.get(&options::SAVEPOINT_IGNORE_UNCLAIMED_STATE)?,
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Metadata {
    format: String,
    version: u32,
    job_id: String,
    checkpoint_id: u64,
    timestamp: i64,
    kind: CheckpointType,
    operators: Vec<OperatorMetadata>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OperatorMetadata {
    id: String,
    uid: Option<String>,
    name: String,
    parallelism: usize,
    max_parallelism: usize,
    coordinator: Option<StateBlob>,
    subtasks: Vec<SubtaskMetadata>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubtaskMetadata {
    subtask: usize,
    finished: bool,
    state: Option<StateBlob>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateBlob {
    size: u64,
    /// CRC-32 (IEEE) of the bytes, 8 hex digits.
    crc32: String,
    /// The bytes, base64 (standard alphabet, padded).
    data: String,
}

/// Just enough of a `_metadata` file to tell a savepoint from a checkpoint.
#[derive(Deserialize)]
struct FormatProbe {
    format: String,
}

impl StateBlob {
    fn new(bytes: &[u8]) -> Self {
        StateBlob {
            size: bytes.len() as u64,
            crc32: format!("{:08x}", crc32(bytes)),
            data: base64_encode(bytes),
        }
    }

    /// The bytes, checked against size and checksum; `what` names the state in errors.
    fn bytes(&self, what: &str, bad: &dyn Fn(String) -> EddyError) -> Result<Vec<u8>> {
        let bytes =
            base64_decode(&self.data).map_err(|e| bad(format!("the state of {what} is not base64: {e}")))?;
        if bytes.len() as u64 != self.size {
            return Err(bad(format!(
                "the state of {what} has {} bytes, the metadata says {}",
                bytes.len(),
                self.size
            )));
        }
        let actual = format!("{:08x}", crc32(&bytes));
        if !actual.eq_ignore_ascii_case(&self.crc32) {
            return Err(bad(format!(
                "the state of {what} has checksum {actual}, the metadata says {}: it is corrupt",
                self.crc32
            )));
        }
        Ok(bytes)
    }
}

/// Writes `checkpoint` as a new savepoint folder under `target`; returns the folder's path.
pub fn write_savepoint(target: &Path, checkpoint: &CompletedCheckpoint) -> Result<PathBuf> {
    fs::create_dir_all(target).map_err(|e| EddyError::io("cannot create savepoint directory", target, e))?;
    let prefix: String = checkpoint.job_id.chars().take(6).collect();
    let random = eddy_core::random::random_seed() & 0xffff_ffff_ffff;
    let name = format!("savepoint-{prefix}-{random:012x}");
    let folder = target.join(&name);
    let temp = target.join(format!(".{name}.inprogress"));
    fs::create_dir(&temp).map_err(|e| EddyError::io("cannot create savepoint directory", &temp, e))?;
    let written = write_metadata(&temp, checkpoint).and_then(|()| {
        fs::rename(&temp, &folder)
            .map_err(|e| EddyError::io("cannot move the written savepoint to", &folder, e))
    });
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    sync_dir(target);
    Ok(folder)
}

fn write_metadata(dir: &Path, c: &CompletedCheckpoint) -> Result<()> {
    let operators = c
        .operators
        .iter()
        .map(|op| OperatorMetadata {
            id: op.id.clone(),
            uid: op.uid.clone(),
            name: op.name.clone(),
            parallelism: op.parallelism,
            max_parallelism: op.max_parallelism,
            coordinator: op.coordinator.as_deref().map(StateBlob::new),
            subtasks: op
                .subtasks
                .iter()
                .enumerate()
                .map(|(i, s)| SubtaskMetadata {
                    subtask: i,
                    finished: s.finished,
                    state: s.state.as_deref().map(StateBlob::new),
                })
                .collect(),
        })
        .collect();
    let metadata = Metadata {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        job_id: c.job_id.clone(),
        checkpoint_id: c.id,
        timestamp: c.timestamp,
        kind: c.kind,
        operators,
    };
    let json = serde_json::to_vec_pretty(&metadata).map_err(EddyError::user)?;
    let path = dir.join(METADATA_FILE);
    let mut f =
        fs::File::create(&path).map_err(|e| EddyError::io("cannot create savepoint file", &path, e))?;
    std::io::Write::write_all(&mut f, &json)
        .map_err(|e| EddyError::io("cannot write savepoint file", &path, e))?;
    f.sync_all().map_err(|e| EddyError::io("cannot sync savepoint file", &path, e))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes new entries and renames durable where the platform allows it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads what `path` names: a savepoint folder, a savepoint's `_metadata` file, or a retained
/// checkpoint's `chk-<n>` folder (or its `_metadata`). Every state is checked; a missing,
/// unreadable or corrupt file is an error naming it.
pub fn read_savepoint(path: &Path) -> Result<CompletedCheckpoint> {
    let meta = fs::metadata(path).map_err(|e| EddyError::io("cannot read savepoint", path, e))?;
    let (folder, metadata_path) = if meta.is_dir() {
        (path.to_path_buf(), path.join(METADATA_FILE))
    } else {
        (path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf), path.to_path_buf())
    };
    let text = fs::read(&metadata_path)
        .map_err(|e| EddyError::io("cannot read savepoint metadata", &metadata_path, e))?;
    let location = metadata_path.display().to_string();
    let bad = |reason: String| EddyError::BadInput { location: location.clone(), reason };
    let probe: FormatProbe = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not the metadata of a savepoint or checkpoint: {e}")))?;
    match probe.format.as_str() {
        FORMAT_NAME => {}
        CHECKPOINT_FORMAT_NAME => return read_checkpoint(&folder),
        other => {
            return Err(bad(format!(
                "format {other:?}: not a savepoint ({FORMAT_NAME}) or checkpoint ({CHECKPOINT_FORMAT_NAME})"
            )))
        }
    }
    let m: Metadata =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a savepoint metadata file: {e}")))?;
    if m.version != FORMAT_VERSION {
        return Err(bad(format!(
            "{FORMAT_NAME} version {}, this build reads version {FORMAT_VERSION}",
            m.version
        )));
    }
    let mut operators = Vec::with_capacity(m.operators.len());
    for op in m.operators {
        if op.subtasks.len() != op.parallelism || op.subtasks.iter().enumerate().any(|(i, s)| s.subtask != i)
        {
            return Err(bad(format!(
                "operator {} lists {} subtasks for parallelism {}",
                op.id,
                op.subtasks.len(),
                op.parallelism
            )));
        }
        let coordinator = match &op.coordinator {
            Some(b) => Some(b.bytes(&format!("the split enumerator of {} ({})", op.name, op.id), &bad)?),
            None => None,
        };
        let mut subtasks = Vec::with_capacity(op.subtasks.len());
        for s in &op.subtasks {
            let state = match &s.state {
                Some(b) => Some(b.bytes(&format!("{} ({}) subtask {}", op.name, op.id, s.subtask), &bad)?),
                None => None,
            };
            subtasks.push(SubtaskState { finished: s.finished, state, in_flight: None });
        }
        operators.push(OperatorState {
            id: op.id,
            uid: op.uid,
            name: op.name,
            parallelism: op.parallelism,
            max_parallelism: op.max_parallelism,
            coordinator,
            subtasks,
        });
    }
    Ok(CompletedCheckpoint {
        job_id: m.job_id,
        id: m.checkpoint_id,
        timestamp: m.timestamp,
        kind: m.kind,
        operators,
    })
}

/// Checks that every operator with state in `restored` (read from `path`) is one of the job's
/// `operator_ids`. State nobody claims is an [`EddyError::InvalidJob`] naming the operator,
/// unless `ignore_unclaimed` (then it is dropped, with a warning).
pub fn check_unclaimed_state(
    restored: &CompletedCheckpoint,
    operator_ids: &HashSet<String>,
    path: &Path,
    ignore_unclaimed: bool,
) -> Result<()> {
    let has_state =
        |op: &OperatorState| op.coordinator.is_some() || op.subtasks.iter().any(|s| s.state.is_some());
    let unclaimed: Vec<&OperatorState> =
        restored.operators.iter().filter(|op| has_state(op) && !operator_ids.contains(&op.id)).collect();
    if unclaimed.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unclaimed
        .iter()
        .map(|op| match &op.uid {
            Some(uid) => format!("'{}' (uid {uid}, id {})", op.name, op.id),
            None => format!("'{}' (id {})", op.name, op.id),
        })
        .collect();
    if ignore_unclaimed {
        tracing::warn!(savepoint = %path.display(), operators = %names.join(", "),
            "dropping the state of operators the job does not have (execution.savepoint.ignore-unclaimed-state)");
        return Ok(());
    }
    Err(EddyError::InvalidJob(format!(
        "cannot restore {}: it holds state of operator{} {} that the job does not have; give the operator \
         its old uid, or set execution.savepoint.ignore-unclaimed-state: true to drop that state",
        path.display(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )))
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> std::result::Result<Vec<u8>, String> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return Err(format!("length {} is not a multiple of 4", text.len()));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (q, quad) in text.chunks(4).enumerate() {
        let last = q + 1 == text.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(format!("misplaced padding at offset {}", q * 4));
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err(format!("invalid character {:?} at offset {}", c as char, q * 4 + i)),
            };
            n |= (v as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn savepoint() -> CompletedCheckpoint {
        CompletedCheckpoint {
            job_id: "0123456789abcdef0123456789abcdef".into(),
            id: 7,
            timestamp: 1_700_000_000_000,
            kind: CheckpointType::Savepoint,
            operators: vec![
                OperatorState {
                    id: "aaaa".into(),
                    uid: Some("source".into()),
                    name: "Source: numbers".into(),
                    parallelism: 2,
                    max_parallelism: 128,
                    coordinator: Some(vec![9, 9]),
                    subtasks: vec![
                        SubtaskState { finished: false, state: Some((0..=255).collect()), in_flight: None },
                        SubtaskState { finished: true, ..Default::default() },
                    ],
                },
                OperatorState {
                    id: "bbbb".into(),
                    uid: None,
                    name: "Map".into(),
                    parallelism: 1,
                    max_parallelism: 128,
                    coordinator: None,
                    subtasks: vec![SubtaskState {
                        finished: false,
                        state: Some(Vec::new()),
                        in_flight: None,
                    }],
                },
            ],
        }
    }

    #[test]
    fn base64_roundtrips_and_rejects_garbage() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes, "{len} bytes");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm9v!mFy").unwrap_err().contains("invalid character"));
        assert!(base64_decode("Zm8").unwrap_err().contains("multiple of 4"));
        assert!(base64_decode("Zm==Zm9v").unwrap_err().contains("padding"));
    }

    #[test]
    fn a_savepoint_is_one_relocatable_folder_that_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = write_savepoint(&tmp.path().join("sp"), &savepoint()).unwrap();
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("savepoint-012345-") && name.len() == "savepoint-012345-".len() + 12,
            "{name}"
        );
        let entries: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("_metadata")]);
        assert_eq!(fs::read_dir(tmp.path().join("sp")).unwrap().count(), 1, "no temporary folder is left");
        let moved = tmp.path().join("elsewhere");
        fs::rename(&folder, &moved).unwrap();
        assert_eq!(read_savepoint(&moved).unwrap(), savepoint());
        assert_eq!(read_savepoint(&moved.join("_metadata")).unwrap(), savepoint());
    }

    #[test]
    fn corrupt_metadata_is_an_error_naming_the_file_and_the_state() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = write_savepoint(tmp.path(), &savepoint()).unwrap();
        let meta = folder.join("_metadata");
        let text = fs::read_to_string(&meta).unwrap();
        fs::write(&meta, &text[..text.len() / 2]).unwrap();
        let err = read_savepoint(&folder).unwrap_err().to_string();
        assert!(err.contains(&meta.display().to_string()) && err.contains("not the metadata"), "{err}");

        let blob = base64_encode(&(0..=255).collect::<Vec<u8>>());
        let mut flipped = blob.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        fs::write(&meta, text.replace(&blob, std::str::from_utf8(&flipped).unwrap())).unwrap();
        let err = read_savepoint(&folder).unwrap_err().to_string();
        assert!(
            err.contains("_metadata")
                && err.contains("Source: numbers (aaaa) subtask 0")
                && err.contains("corrupt"),
            "{err}"
        );

        fs::write(&meta, text.replace("\"version\": 1", "\"version\": 9")).unwrap();
        let err = read_savepoint(&folder).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");

        let err = read_savepoint(&tmp.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn a_retained_checkpoint_folder_restores_too() {
        use super::super::storage::{CheckpointStorage, FileSystemCheckpointStorage};
        let tmp = tempfile::tempdir().unwrap();
        let mut storage = FileSystemCheckpointStorage::new(tmp.path(), "job");
        let mut c = savepoint();
        c.kind = CheckpointType::Checkpoint;
        storage.store(&std::sync::Arc::new(c.clone())).unwrap();
        assert_eq!(read_savepoint(&storage.checkpoint_dir(7)).unwrap(), c);
    }

    #[test]
    fn state_of_a_missing_operator_is_an_error_unless_ignored() {
        let sp = savepoint();
        let path = Path::new("/sp");
        let all: HashSet<String> = ["aaaa".to_string(), "bbbb".to_string()].into();
        check_unclaimed_state(&sp, &all, path, false).unwrap();
        let without_source: HashSet<String> = ["bbbb".to_string()].into();
        let err = check_unclaimed_state(&sp, &without_source, path, false).unwrap_err().to_string();
        assert!(err.contains("'Source: numbers' (uid source, id aaaa)"), "{err}");
        assert!(err.contains("execution.savepoint.ignore-unclaimed-state"), "{err}");
        check_unclaimed_state(&sp, &without_source, path, true).unwrap();
    }
}
