//! Where completed checkpoints are kept, and how many.
//!
//! - [`JobManagerCheckpointStorage`] (the default, Flink's JobManager-heap storage): completed
//!   checkpoints stay in the job master's memory. They serve restarts within the process and
//!   are gone with it.
//! - [`FileSystemCheckpointStorage`] (`state.checkpoints.dir`): every completed checkpoint is a
//!   directory `<dir>/<job-id>/chk-<n>/` holding one file per operator subtask that has state
//!   (`<operator-id>-<subtask>`), one per source enumerator (`<operator-id>-coordinator`) and
//!   a `_metadata` file: JSON with a format version, the checkpoint's id, timestamp and kind,
//!   and for every operator its id, uid, name, parallelism and max parallelism and, per
//!   subtask, whether it had finished and its state file's name, size and CRC-32.
//!
//! A checkpoint is written into `chk-<n>.inprogress`, every file synced, and only then renamed
//! to `chk-<n>`: a crash leaves at worst an `.inprogress` directory, never a `chk-<n>` that
//! looks complete and is not. Reading one back checks every size and checksum; a missing,
//! short or corrupt file is an error naming the file.
//!
//! # Shared files
//!
//! Incremental snapshots (`state.backend.incremental`) write state that does not change between
//! checkpoints once, as immutable files under `<dir>/<job-id>/shared/`, and every later
//! checkpoint that still holds that state references the same file. An operator's state bytes
//! make their references visible to this layer by starting with a shared-file header
//! ([`with_shared_files`]): the paths (relative to `<dir>`), sizes and CRC-32s of the files,
//! then the operator's own bytes. The `_metadata` lists each subtask's shared files. The
//! operator reads the files back itself when it restores ([`read_shared_file`] checks size and
//! checksum, so a missing or corrupt file is an error naming it, and the restore falls back to
//! an older checkpoint as for any unreadable state).
//!
//! A shared file is deleted once no retained checkpoint references it: after each completed
//! checkpoint, the store sweeps `<dir>/<job-id>/shared/` and deletes the files that no retained
//! checkpoint references and that were written for a checkpoint older than the oldest retained
//! one (so files of checkpoints still in progress stay, and so do those of checkpoints that were
//! aborted until a newer one completes). Only the job's own `shared/` directory is swept: files of
//! another job that a restored checkpoint references are never deleted.
//!
//! [`CompletedCheckpointStore`] keeps the newest `state.checkpoints.num-retained` checkpoints
//! and discards older ones. A restore takes the newest that reads back intact and falls back
//! to older ones (with a warning) when it does not; when none does, the restore fails with
//! every reason rather than silently starting from wrong state.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_core::{CheckpointType, EddyError, Result};
use serde::{Deserialize, Serialize};

use super::{CompletedCheckpoint, OperatorState, SubtaskState};

/// The name of the metadata file inside a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";
/// The version of the `_metadata` format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "eddy-checkpoint";

/// A completed checkpoint as kept by a [`CheckpointStorage`].
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub id: u64,
    pub location: CheckpointLocation,
    /// The shared files its operators' state references (paths relative to the checkpoint
    /// directory).
    pub shared: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum CheckpointLocation {
    Memory(Arc<CompletedCheckpoint>),
    /// A `chk-<n>` directory.
    Directory(PathBuf),
}

/// Where completed checkpoints are written and read back (Flink's `CheckpointStorage`).
pub trait CheckpointStorage: Send {
    /// `jobmanager` or the job's checkpoint directory, for logs.
    fn describe(&self) -> String;
    /// Persists a completed checkpoint; returns where it is.
    fn store(&mut self, checkpoint: &Arc<CompletedCheckpoint>) -> Result<StoredCheckpoint>;
    /// Reads a stored checkpoint back, checking it is intact.
    fn load(&self, stored: &StoredCheckpoint) -> Result<Arc<CompletedCheckpoint>>;
    /// Deletes a checkpoint that is no longer retained.
    fn discard(&mut self, stored: &StoredCheckpoint) -> Result<()>;
    /// Deletes the job's shared files that `live` does not name and that were written for a
    /// checkpoint before `oldest_retained`.
    fn discard_shared(&mut self, _live: &HashSet<&str>, _oldest_retained: u64) -> Result<()> {
        Ok(())
    }
}

/// Keeps completed checkpoints in memory (Flink's JobManager-heap storage).
#[derive(Debug, Default)]
pub struct JobManagerCheckpointStorage;

impl CheckpointStorage for JobManagerCheckpointStorage {
    fn describe(&self) -> String {
        "jobmanager (in memory)".to_string()
    }

    fn store(&mut self, checkpoint: &Arc<CompletedCheckpoint>) -> Result<StoredCheckpoint> {
        let location = CheckpointLocation::Memory(checkpoint.clone());
        Ok(StoredCheckpoint { id: checkpoint.id, location, shared: Vec::new() })
    }

    fn load(&self, stored: &StoredCheckpoint) -> Result<Arc<CompletedCheckpoint>> {
        match &stored.location {
            CheckpointLocation::Memory(c) => Ok(c.clone()),
            CheckpointLocation::Directory(dir) => read_checkpoint(dir).map(Arc::new),
        }
    }

    fn discard(&mut self, _: &StoredCheckpoint) -> Result<()> {
        Ok(())
    }
}

/// Writes completed checkpoints under `<dir>/<job-id>/chk-<n>/`.
#[derive(Debug, Clone)]
pub struct FileSystemCheckpointStorage {
    job_dir: PathBuf,
    job_id: String,
}

impl FileSystemCheckpointStorage {
    /// Checkpoints of job `job_id` under `dir` (`state.checkpoints.dir`).
    pub fn new(dir: &Path, job_id: &str) -> Self {
        FileSystemCheckpointStorage { job_dir: dir.join(job_id), job_id: job_id.to_string() }
    }

    /// `<dir>/<job-id>`.
    pub fn job_dir(&self) -> &Path {
        &self.job_dir
    }

    /// The directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.job_dir.join(format!("chk-{id}"))
    }
}

impl CheckpointStorage for FileSystemCheckpointStorage {
    fn describe(&self) -> String {
        self.job_dir.display().to_string()
    }

    fn store(&mut self, checkpoint: &Arc<CompletedCheckpoint>) -> Result<StoredCheckpoint> {
        let target = self.checkpoint_dir(checkpoint.id);
        let temp = self.job_dir.join(format!("chk-{}.inprogress", checkpoint.id));
        fs::create_dir_all(&self.job_dir)
            .map_err(|e| EddyError::io("cannot create checkpoint directory", &self.job_dir, e))?;
        if temp.exists() {
            fs::remove_dir_all(&temp)
                .map_err(|e| EddyError::io("cannot remove the unfinished checkpoint", &temp, e))?;
        }
        fs::create_dir(&temp).map_err(|e| EddyError::io("cannot create checkpoint directory", &temp, e))?;
        let written = write_checkpoint(&temp, checkpoint).and_then(|()| {
            if target.exists() {
                fs::remove_dir_all(&target)
                    .map_err(|e| EddyError::io("cannot replace checkpoint directory", &target, e))?;
            }
            fs::rename(&temp, &target)
                .map_err(|e| EddyError::io("cannot move the written checkpoint to", &target, e))?;
            sync_dir(&self.job_dir)
        });
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&temp);
            return Err(e);
        }
        let location = CheckpointLocation::Directory(target);
        Ok(StoredCheckpoint { id: checkpoint.id, location, shared: Vec::new() })
    }

    fn load(&self, stored: &StoredCheckpoint) -> Result<Arc<CompletedCheckpoint>> {
        match &stored.location {
            CheckpointLocation::Memory(c) => Ok(c.clone()),
            CheckpointLocation::Directory(dir) => read_checkpoint(dir).map(Arc::new),
        }
    }

    fn discard(&mut self, stored: &StoredCheckpoint) -> Result<()> {
        match &stored.location {
            CheckpointLocation::Directory(dir) => {
                fs::remove_dir_all(dir).map_err(|e| EddyError::io("cannot delete old checkpoint", dir, e))
            }
            CheckpointLocation::Memory(_) => Ok(()),
        }
    }

    fn discard_shared(&mut self, live: &HashSet<&str>, oldest_retained: u64) -> Result<()> {
        let shared = self.job_dir.join(SHARED_DIR);
        let entries = match fs::read_dir(&shared) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EddyError::io("cannot list shared state files in", &shared, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| EddyError::io("cannot list shared state files in", &shared, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = format!("{}/{SHARED_DIR}/{name}", self.job_id);
            let written_for = shared_file_checkpoint(&name);
            if live.contains(relative.as_str()) || written_for.is_none_or(|id| id >= oldest_retained) {
                continue;
            }
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| EddyError::io("cannot delete shared state file", &path, e))?;
        }
        Ok(())
    }
}

/// The completed checkpoints a job keeps: the newest `num_retained`, oldest first.
pub struct CompletedCheckpointStore {
    storage: Box<dyn CheckpointStorage>,
    retained: VecDeque<StoredCheckpoint>,
    num_retained: usize,
}

impl CompletedCheckpointStore {
    pub fn new(storage: Box<dyn CheckpointStorage>, num_retained: usize) -> Self {
        CompletedCheckpointStore { storage, retained: VecDeque::new(), num_retained: num_retained.max(1) }
    }

    pub fn describe(&self) -> String {
        self.storage.describe()
    }

    /// Stores `checkpoint` and discards what is no longer retained: older checkpoints, and the
    /// shared files no retained checkpoint references.
    pub fn add(&mut self, checkpoint: CompletedCheckpoint) -> Result<StoredCheckpoint> {
        let shared = referenced_shared_files(&checkpoint)?;
        let mut stored = self.storage.store(&Arc::new(checkpoint))?;
        stored.shared = shared;
        self.retained.push_back(stored.clone());
        while self.retained.len() > self.num_retained {
            if let Some(old) = self.retained.pop_front() {
                if let Err(e) = self.storage.discard(&old) {
                    tracing::warn!(checkpoint_id = old.id, error = %e, "cannot discard an old checkpoint");
                }
            }
        }
        let live: HashSet<&str> =
            self.retained.iter().flat_map(|c| c.shared.iter().map(String::as_str)).collect();
        let oldest = self.retained.front().map_or(stored.id, |c| c.id);
        if let Err(e) = self.storage.discard_shared(&live, oldest) {
            tracing::warn!(checkpoint_id = stored.id, error = %e, "cannot delete unreferenced shared state files");
        }
        Ok(stored)
    }

    /// The ids of the retained checkpoints, oldest first.
    pub fn retained_ids(&self) -> Vec<u64> {
        self.retained.iter().map(|c| c.id).collect()
    }

    pub fn retained(&self) -> impl Iterator<Item = &StoredCheckpoint> {
        self.retained.iter()
    }

    /// The newest retained checkpoint that reads back intact, falling back to older ones;
    /// `None` when there is none. When checkpoints are retained but none reads back, the error
    /// names every one and why.
    pub fn latest_restorable(&self) -> Result<Option<Arc<CompletedCheckpoint>>> {
        let mut failures = Vec::new();
        for stored in self.retained.iter().rev() {
            match self.storage.load(stored) {
                Ok(c) => {
                    if !failures.is_empty() {
                        tracing::warn!(checkpoint_id = c.id, skipped = %failures.join("; "),
                            "restoring from an older checkpoint: the newer ones cannot be read");
                    }
                    return Ok(Some(c));
                }
                Err(e) => failures.push(format!("checkpoint {}: {e}", stored.id)),
            }
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(EddyError::user(format!(
                "cannot restore the job: no retained checkpoint can be read ({})",
                failures.join("; ")
            )))
        }
    }
}

/// The `_metadata` of a checkpoint or savepoint, where `B` says where each state's bytes are: a
/// file beside it ([`FileMetadata`], checkpoints) or the bytes themselves (savepoints).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Metadata<B> {
    pub format: String,
    pub version: u32,
    job_id: String,
    checkpoint_id: u64,
    timestamp: i64,
    kind: CheckpointType,
    operators: Vec<OperatorMetadata<B>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OperatorMetadata<B> {
    id: String,
    uid: Option<String>,
    name: String,
    parallelism: usize,
    max_parallelism: usize,
    coordinator: Option<B>,
    subtasks: Vec<SubtaskMetadata<B>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubtaskMetadata<B> {
    subtask: usize,
    finished: bool,
    state: Option<B>,
    /// Unaligned checkpoints: the records in flight on the subtask's inputs.
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    in_flight: Option<B>,
    /// The shared files its state references, relative to the checkpoint directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared: Vec<String>,
}

impl<B> Metadata<B> {
    /// Describes `c` in format `format`/`version`, storing every state with
    /// `store(file name, bytes)`.
    pub(super) fn of(
        c: &CompletedCheckpoint,
        format: &str,
        version: u32,
        mut store: impl FnMut(&str, &[u8]) -> Result<B>,
    ) -> Result<Self> {
        let mut operators = Vec::with_capacity(c.operators.len());
        for op in &c.operators {
            let coordinator = match &op.coordinator {
                Some(bytes) => Some(store(&format!("{}-coordinator", op.id), bytes)?),
                None => None,
            };
            let mut subtasks = Vec::with_capacity(op.subtasks.len());
            for (i, s) in op.subtasks.iter().enumerate() {
                let (state, shared) = match &s.state {
                    Some(bytes) => {
                        let shared = split_shared_files(bytes)?.0.into_iter().map(|f| f.path).collect();
                        (Some(store(&format!("{}-{i}", op.id), bytes)?), shared)
                    }
                    None => (None, Vec::new()),
                };
                let in_flight = match &s.in_flight {
                    Some(bytes) => Some(store(&format!("{}-{i}-in-flight", op.id), bytes)?),
                    None => None,
                };
                subtasks.push(SubtaskMetadata { subtask: i, finished: s.finished, state, in_flight, shared });
            }
            operators.push(OperatorMetadata {
                id: op.id.clone(),
                uid: op.uid.clone(),
                name: op.name.clone(),
                parallelism: op.parallelism,
                max_parallelism: op.max_parallelism,
                coordinator,
                subtasks,
            });
        }
        Ok(Metadata {
            format: format.to_string(),
            version,
            job_id: c.job_id.clone(),
            checkpoint_id: c.id,
            timestamp: c.timestamp,
            kind: c.kind,
            operators,
        })
    }

    /// The checkpoint described, every state read with `load(where, what)` (`what` names the
    /// state for errors); `bad` makes the error of a malformed description.
    pub(super) fn into_checkpoint(
        self,
        mut load: impl FnMut(&B, &str) -> Result<Vec<u8>>,
        bad: &dyn Fn(String) -> EddyError,
    ) -> Result<CompletedCheckpoint> {
        let mut operators = Vec::with_capacity(self.operators.len());
        for op in self.operators {
            if op.subtasks.len() != op.parallelism
                || op.subtasks.iter().enumerate().any(|(i, s)| s.subtask != i)
            {
                return Err(bad(format!(
                    "operator {} lists {} subtasks for parallelism {}",
                    op.id,
                    op.subtasks.len(),
                    op.parallelism
                )));
            }
            let mut read = |b: &Option<B>, what: String| b.as_ref().map(|b| load(b, &what)).transpose();
            let coordinator =
                read(&op.coordinator, format!("the split enumerator of {} ({})", op.name, op.id))?;
            let mut subtasks = Vec::with_capacity(op.subtasks.len());
            for s in &op.subtasks {
                let what = format!("{} ({}) subtask {}", op.name, op.id, s.subtask);
                let state = read(&s.state, what.clone())?;
                let in_flight = read(&s.in_flight, format!("the in-flight records of {what}"))?;
                subtasks.push(SubtaskState { finished: s.finished, state, in_flight });
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
            job_id: self.job_id,
            id: self.checkpoint_id,
            timestamp: self.timestamp,
            kind: self.kind,
            operators,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FileMetadata {
    file: String,
    size: u64,
    /// CRC-32 (IEEE) of the file's bytes, 8 hex digits.
    crc32: String,
}

fn write_checkpoint(dir: &Path, c: &CompletedCheckpoint) -> Result<()> {
    let metadata =
        Metadata::of(c, FORMAT_NAME, FORMAT_VERSION, |name, bytes| write_state_file(dir, name, bytes))?;
    let json = serde_json::to_vec_pretty(&metadata).map_err(EddyError::user)?;
    write_synced(&dir.join(METADATA_FILE), &json)?;
    sync_dir(dir)
}

fn write_state_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileMetadata> {
    write_synced(&dir.join(name), bytes)?;
    Ok(FileMetadata {
        file: name.to_string(),
        size: bytes.len() as u64,
        crc32: format!("{:08x}", crc32(bytes)),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| EddyError::io("cannot create checkpoint file", path, e))?;
    f.write_all(bytes).map_err(|e| EddyError::io("cannot write checkpoint file", path, e))?;
    f.sync_all().map_err(|e| EddyError::io("cannot sync checkpoint file", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the directory entries (new files, a rename) durable; not possible on every
    // platform, where the data files' own sync has to do.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads the checkpoint in directory `dir` (a `chk-<n>`), checking every file.
pub fn read_checkpoint(dir: &Path) -> Result<CompletedCheckpoint> {
    let metadata_path = dir.join(METADATA_FILE);
    let text = fs::read(&metadata_path)
        .map_err(|e| EddyError::io("cannot read checkpoint metadata", &metadata_path, e))?;
    let bad = |reason: String| EddyError::BadInput { location: metadata_path.display().to_string(), reason };
    let m: Metadata<FileMetadata> =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a checkpoint metadata file: {e}")))?;
    if m.format != FORMAT_NAME || m.version != FORMAT_VERSION {
        return Err(bad(format!(
            "format {} version {}, this build reads {FORMAT_NAME} version {FORMAT_VERSION}",
            m.format, m.version
        )));
    }
    m.into_checkpoint(|f, _| read_state_file(dir, f, &metadata_path), &bad)
}

fn read_state_file(dir: &Path, f: &FileMetadata, metadata_path: &Path) -> Result<Vec<u8>> {
    let plain = !f.file.is_empty()
        && !f.file.starts_with('.')
        && !f.file.contains(['/', '\\'])
        && f.file != METADATA_FILE;
    if !plain {
        return Err(EddyError::BadInput {
            location: metadata_path.display().to_string(),
            reason: format!("{:?} is not the name of a state file", f.file),
        });
    }
    let path = dir.join(&f.file);
    let bytes = fs::read(&path).map_err(|e| EddyError::io("cannot read checkpoint state file", &path, e))?;
    let bad = |reason: String| EddyError::BadInput { location: path.display().to_string(), reason };
    if bytes.len() as u64 != f.size {
        return Err(bad(format!("{} bytes, the metadata says {}", bytes.len(), f.size)));
    }
    let actual = format!("{:08x}", crc32(&bytes));
    if !actual.eq_ignore_ascii_case(&f.crc32) {
        return Err(bad(format!("checksum {actual}, the metadata says {}: the file is corrupt", f.crc32)));
    }
    Ok(bytes)
}

/// The directory of a job's shared files, under `<dir>/<job-id>/`.
pub const SHARED_DIR: &str = "shared";
/// The first bytes of operator state that references shared files.
const SHARED_MAGIC: &[u8; 8] = b"EDDYSHR1";

/// A shared file an operator's state references: where it is, relative to the checkpoint
/// directory (`state.checkpoints.dir`, with `/` between components), and its size and CRC-32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    pub path: String,
    pub size: u64,
    pub crc32: u32,
}

/// The path (relative to the checkpoint directory) for a shared file of job `job_id` written for
/// checkpoint `checkpoint_id`; `name` must make it unique among that checkpoint's files.
pub fn shared_file_path(job_id: &str, checkpoint_id: u64, name: &str) -> String {
    format!("{job_id}/{SHARED_DIR}/chk-{checkpoint_id}-{name}")
}

/// The checkpoint a shared file (by file name) was written for.
fn shared_file_checkpoint(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.split('-').next()?.parse().ok()
}

/// Operator state bytes that reference `files`: a header listing them, then `payload`.
pub fn with_shared_files(files: &[SharedFile], payload: &[u8]) -> Result<Vec<u8>> {
    let list = serde_json::to_vec(files).map_err(EddyError::user)?;
    let mut bytes = Vec::with_capacity(SHARED_MAGIC.len() + 8 + list.len() + payload.len());
    bytes.extend_from_slice(SHARED_MAGIC);
    bytes.extend_from_slice(&(list.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&list);
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// The shared files operator state bytes reference, and the operator's own bytes (all of
/// `bytes` when there is no shared-file header).
pub fn split_shared_files(bytes: &[u8]) -> Result<(Vec<SharedFile>, &[u8])> {
    let Some(rest) = bytes.strip_prefix(SHARED_MAGIC.as_slice()) else {
        return Ok((Vec::new(), bytes));
    };
    let bad = |reason: &str| EddyError::BadInput {
        location: "operator state".into(),
        reason: format!("shared-file header: {reason}"),
    };
    let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(|| bad("truncated"))?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad("bad length"))?;
    if len > rest.len() {
        return Err(bad("truncated"));
    }
    let files = serde_json::from_slice(&rest[..len]).map_err(|e| bad(&e.to_string()))?;
    Ok((files, &rest[len..]))
}

/// The shared files every operator subtask of `checkpoint` references, without repeats.
fn referenced_shared_files(checkpoint: &CompletedCheckpoint) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    for op in &checkpoint.operators {
        for bytes in op.subtasks.iter().filter_map(|s| s.state.as_deref()) {
            seen.extend(split_shared_files(bytes)?.0.into_iter().map(|f| f.path));
        }
    }
    let mut shared: Vec<String> = seen.into_iter().collect();
    shared.sort();
    Ok(shared)
}

/// Checks that `relative` stays inside the checkpoint directory.
fn shared_path(checkpoints_dir: &Path, relative: &str) -> Result<PathBuf> {
    let plain = relative.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
    if !plain {
        return Err(EddyError::BadInput {
            location: format!("checkpoint directory {}", checkpoints_dir.display()),
            reason: format!("{relative:?} is not the path of a shared state file"),
        });
    }
    Ok(checkpoints_dir.join(relative))
}

/// Writes the shared file `relative` (see [`shared_file_path`]) under `checkpoints_dir`, synced;
/// the file appears whole or not at all.
pub fn write_shared_file(checkpoints_dir: &Path, relative: &str, bytes: &[u8]) -> Result<SharedFile> {
    let path = shared_path(checkpoints_dir, relative)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| EddyError::io("cannot create shared state directory", parent, e))?;
    }
    let temp = path.with_extension("inprogress");
    write_synced(&temp, bytes)?;
    fs::rename(&temp, &path)
        .map_err(|e| EddyError::io("cannot move the written shared file to", &path, e))?;
    Ok(SharedFile { path: relative.to_string(), size: bytes.len() as u64, crc32: crc32(bytes) })
}

/// Reads the shared file `file` under `checkpoints_dir`, checking its size and checksum: a
/// missing, short or corrupt file is an error naming it.
pub fn read_shared_file(checkpoints_dir: &Path, file: &SharedFile) -> Result<Vec<u8>> {
    let path = shared_path(checkpoints_dir, &file.path)?;
    let bytes = fs::read(&path).map_err(|e| EddyError::io("cannot read shared state file", &path, e))?;
    let bad = |reason: String| EddyError::BadInput { location: path.display().to_string(), reason };
    if bytes.len() as u64 != file.size {
        return Err(bad(format!("{} bytes, the checkpoint says {}", bytes.len(), file.size)));
    }
    let actual = crc32(&bytes);
    if actual != file.crc32 {
        return Err(bad(format!(
            "checksum {actual:08x}, the checkpoint says {:08x}: the file is corrupt",
            file.crc32
        )));
    }
    Ok(bytes)
}

/// CRC-32 (IEEE 802.3, as zlib and gzip compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(id: u64) -> CompletedCheckpoint {
        CompletedCheckpoint {
            job_id: "job".into(),
            id,
            timestamp: 1_700_000_000_000 + id as i64,
            kind: CheckpointType::Checkpoint,
            operators: vec![
                OperatorState {
                    id: "aaaa".into(),
                    uid: Some("source".into()),
                    name: "Source: numbers".into(),
                    parallelism: 2,
                    max_parallelism: 128,
                    coordinator: Some(vec![9, 9, id as u8]),
                    subtasks: vec![
                        SubtaskState {
                            finished: false,
                            state: Some(vec![1, 2, 3, id as u8]),
                            in_flight: Some(vec![9]),
                        },
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

    fn file_store(dir: &Path, retained: usize) -> CompletedCheckpointStore {
        CompletedCheckpointStore::new(Box::new(FileSystemCheckpointStorage::new(dir, "job")), retained)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_checkpoint_is_a_directory_of_state_files_and_metadata_that_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = file_store(tmp.path(), 1);
        store.add(checkpoint(3)).unwrap();
        let chk = tmp.path().join("job").join("chk-3");
        assert_eq!(names(&tmp.path().join("job")), vec!["chk-3"]);
        assert_eq!(
            names(&chk),
            vec!["_metadata", "aaaa-0", "aaaa-0-in-flight", "aaaa-coordinator", "bbbb-0"]
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(chk.join("_metadata")).unwrap()).unwrap();
        assert_eq!(meta["version"], 1);
        assert_eq!(meta["checkpoint_id"], 3);
        assert_eq!(meta["operators"][0]["uid"], "source");
        assert_eq!(meta["operators"][0]["max_parallelism"], 128);
        assert_eq!(meta["operators"][0]["subtasks"][0]["state"]["size"], 4);
        assert_eq!(meta["operators"][0]["subtasks"][1]["finished"], true);
        let back = store.latest_restorable().unwrap().unwrap();
        assert_eq!(*back, checkpoint(3));
    }

    #[test]
    fn only_the_newest_checkpoints_are_retained() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = file_store(tmp.path(), 2);
        for id in 1..=4 {
            store.add(checkpoint(id)).unwrap();
        }
        assert_eq!(store.retained_ids(), vec![3, 4]);
        assert_eq!(names(&tmp.path().join("job")), vec!["chk-3", "chk-4"]);
        let mut memory = CompletedCheckpointStore::new(Box::new(JobManagerCheckpointStorage), 1);
        memory.add(checkpoint(1)).unwrap();
        memory.add(checkpoint(2)).unwrap();
        assert_eq!(memory.latest_restorable().unwrap().unwrap().id, 2);
        assert_eq!(memory.retained_ids(), vec![2]);
    }

    #[test]
    fn a_corrupt_newest_checkpoint_falls_back_to_an_older_one() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = file_store(tmp.path(), 2);
        store.add(checkpoint(1)).unwrap();
        store.add(checkpoint(2)).unwrap();
        let state = tmp.path().join("job/chk-2/aaaa-0");
        fs::write(&state, [1, 2, 3, 7]).unwrap();
        let err = read_checkpoint(&tmp.path().join("job/chk-2")).unwrap_err().to_string();
        assert!(err.contains("aaaa-0") && err.contains("corrupt"), "{err}");
        assert_eq!(store.latest_restorable().unwrap().unwrap().id, 1);
    }

    #[test]
    fn a_missing_state_file_or_bad_metadata_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = file_store(tmp.path(), 1);
        store.add(checkpoint(5)).unwrap();
        let chk = tmp.path().join("job/chk-5");
        fs::remove_file(chk.join("aaaa-coordinator")).unwrap();
        let err = store.latest_restorable().unwrap_err().to_string();
        assert!(err.contains("aaaa-coordinator") && err.contains("checkpoint 5"), "{err}");

        let mut store = file_store(tmp.path(), 1);
        store.add(checkpoint(6)).unwrap();
        let meta = tmp.path().join("job/chk-6/_metadata");
        let text = fs::read_to_string(&meta).unwrap();
        fs::write(&meta, &text[..text.len() / 2]).unwrap();
        let err = store.latest_restorable().unwrap_err().to_string();
        assert!(err.contains("_metadata") && err.contains("not a checkpoint metadata file"), "{err}");

        fs::write(&meta, text.replace("\"aaaa-0\"", "\"../../escape\"")).unwrap();
        let err = read_checkpoint(&tmp.path().join("job/chk-6")).unwrap_err().to_string();
        assert!(err.contains("not the name of a state file"), "{err}");

        fs::write(&meta, text.replace("\"size\": 4", "\"size\": 5")).unwrap();
        let err = read_checkpoint(&tmp.path().join("job/chk-6")).unwrap_err().to_string();
        assert!(err.contains("aaaa-0") && err.contains("4 bytes, the metadata says 5"), "{err}");

        fs::remove_file(&meta).unwrap();
        let err = read_checkpoint(&tmp.path().join("job/chk-6")).unwrap_err().to_string();
        assert!(err.contains("_metadata"), "{err}");
    }

    /// Checkpoint `id` whose one stateful subtask references the shared files `shared` (names
    /// under the job's shared directory).
    fn checkpoint_referencing(id: u64, shared: &[&str]) -> CompletedCheckpoint {
        let files: Vec<SharedFile> = shared
            .iter()
            .map(|name| SharedFile { path: format!("job/{SHARED_DIR}/{name}"), size: 1, crc32: crc32(&[7]) })
            .collect();
        let mut c = checkpoint(id);
        c.operators[1].subtasks[0].state = Some(with_shared_files(&files, &[id as u8]).unwrap());
        c
    }

    #[test]
    fn shared_files_are_deleted_once_no_retained_checkpoint_references_them() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("job").join(SHARED_DIR);
        let other_job = tmp.path().join("other").join(SHARED_DIR);
        fs::create_dir_all(&shared).unwrap();
        fs::create_dir_all(&other_job).unwrap();
        for name in ["chk-1-a", "chk-1-b", "chk-2-c", "chk-2-aborted", "chk-4-in-progress"] {
            fs::write(shared.join(name), [7]).unwrap();
        }
        fs::write(other_job.join("chk-1-x"), [7]).unwrap();
        let mut store = file_store(tmp.path(), 1);
        store.add(checkpoint_referencing(1, &["chk-1-a", "chk-1-b"])).unwrap();
        assert_eq!(names(&shared), ["chk-1-a", "chk-1-b", "chk-2-aborted", "chk-2-c", "chk-4-in-progress"]);
        // Checkpoint 3 keeps referencing chk-1-a: only chk-1-b and the aborted checkpoint 2's
        // files go; checkpoint 4's (still in progress) stay, and so does the other job's file.
        store.add(checkpoint_referencing(3, &["chk-1-a", "chk-3-d"])).unwrap();
        assert_eq!(names(&shared), ["chk-1-a", "chk-4-in-progress"]);
        assert_eq!(names(&other_job), ["chk-1-x"]);
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(tmp.path().join("job/chk-3/_metadata")).unwrap()).unwrap();
        assert_eq!(meta["operators"][1]["subtasks"][0]["shared"][0], "job/shared/chk-1-a");
        // The operator gets its own bytes back behind the header.
        let back = store.latest_restorable().unwrap().unwrap();
        let bytes = back.operators[1].subtasks[0].state.as_deref().unwrap();
        let (files, payload) = split_shared_files(bytes).unwrap();
        assert_eq!((files.len(), payload), (2, &[3u8][..]));
    }

    #[test]
    fn a_shared_file_reads_back_only_whole_and_inside_the_checkpoint_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = shared_file_path("job", 7, "kg3");
        assert_eq!(path, "job/shared/chk-7-kg3");
        let file = write_shared_file(tmp.path(), &path, b"entries").unwrap();
        assert_eq!(read_shared_file(tmp.path(), &file).unwrap(), b"entries");
        fs::write(tmp.path().join(&path), b"entriez").unwrap();
        let err = read_shared_file(tmp.path(), &file).unwrap_err().to_string();
        assert!(err.contains("chk-7-kg3") && err.contains("corrupt"), "{err}");
        let escape = SharedFile { path: "../x".into(), ..file };
        assert!(read_shared_file(tmp.path(), &escape).unwrap_err().to_string().contains("not the path"));
    }

    #[test]
    fn an_unfinished_write_never_looks_like_a_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job");
        // What a crash half-way through writing checkpoint 8 leaves.
        fs::create_dir_all(job.join("chk-8.inprogress")).unwrap();
        fs::write(job.join("chk-8.inprogress/aaaa-0"), [1]).unwrap();
        let mut store = file_store(tmp.path(), 1);
        assert!(store.latest_restorable().unwrap().is_none());
        store.add(checkpoint(8)).unwrap();
        assert_eq!(names(&job), vec!["chk-8"]);
        assert_eq!(store.latest_restorable().unwrap().unwrap().id, 8);
    }
}
