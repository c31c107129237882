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
use eddy_core::{Configuration, EddyError, Result};
use serde::{Deserialize, Serialize};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::storage::{crc32, read_checkpoint, Metadata, METADATA_FILE};
use super::{CompletedCheckpoint, OperatorState};

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
            data: BASE64.encode(bytes),
        }
    }

    /// The bytes, checked against size and checksum; `what` names the state in errors.
    fn bytes(&self, what: &str, bad: &dyn Fn(String) -> EddyError) -> Result<Vec<u8>> {
        let bytes =
            BASE64.decode(&self.data).map_err(|e| bad(format!("the state of {what} is not base64: {e}")))?;
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
    let metadata = Metadata::of(c, FORMAT_NAME, FORMAT_VERSION, |_, bytes| Ok(StateBlob::new(bytes)))?;
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
    let m: Metadata<StateBlob> =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a savepoint metadata file: {e}")))?;
    if m.version != FORMAT_VERSION {
        return Err(bad(format!(
            "{FORMAT_NAME} version {}, this build reads version {FORMAT_VERSION}",
            m.version
        )));
    }
    m.into_checkpoint(|blob, what| blob.bytes(what, &bad), &bad)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SubtaskState;
    use eddy_core::CheckpointType;

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

        let blob = BASE64.encode((0..=255).collect::<Vec<u8>>());
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
