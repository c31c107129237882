//! Job artifacts: the job binaries a JobManager accepts and TaskManagers run, stored by the
//! SHA-256 of their content.
//!
//! An artifact is written to a temporary file while its hash is computed, checked (size limit,
//! an ELF or Mach-O executable), and only then renamed to its hash: a reader never sees a half
//! written artifact, and the same binary uploaded twice is stored once.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use eddy_core::{EddyError, Result};
use sha2::{Digest, Sha256};

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact is larger than the limit of {limit} bytes (rest.upload.max-size)")]
    TooLarge { limit: u64 },
    #[error("the artifact is empty")]
    Empty,
    #[error("the artifact is not an executable for this platform (it starts with {magic}): upload the job binary itself")]
    NotExecutable { magic: String },
    #[error("the artifact's content hashes to {actual}, not to the expected {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("{0}")]
    Io(#[from] EddyError),
}

/// A directory of artifacts named by their SHA-256 (64 lower-case hex digits).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
    max_bytes: u64,
}

/// Whether `id` looks like an artifact id, so that it can be used as a file name.
pub fn is_artifact_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> EddyError {
    EddyError::Io { action, path: path.to_path_buf(), source }
}

/// The SHA-256 of a file, as 64 hex digits.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An artifact being written: feed it chunks, then [`finish`](ArtifactWriter::finish).
pub struct ArtifactWriter {
    store: ArtifactStore,
    tmp: tempfile_path::TempPath,
    file: File,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl ArtifactWriter {
    pub fn write(&mut self, chunk: &[u8]) -> std::result::Result<(), ArtifactError> {
        self.size += chunk.len() as u64;
        if self.size > self.store.max_bytes {
            return Err(ArtifactError::TooLarge { limit: self.store.max_bytes });
        }
        if self.head.len() < 4 {
            let take = (4 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(|e| io("cannot write", &self.tmp.0, e))?;
        Ok(())
    }

    /// Checks the artifact and stores it under its hash; returns the id and the size.
    pub fn finish(self, expected: Option<&str>) -> std::result::Result<(String, u64), ArtifactError> {
        if self.size == 0 {
            return Err(ArtifactError::Empty);
        }
        check_executable(&self.head)?;
        let id = hex(&self.hasher.finalize());
        if let Some(expected) = expected {
            if expected != id {
                return Err(ArtifactError::HashMismatch { expected: expected.to_string(), actual: id });
            }
        }
        self.file.sync_all().map_err(|e| io("cannot sync", &self.tmp.0, e))?;
        let path = self.store.path(&id);
        set_executable(&self.tmp.0)?;
        std::fs::rename(&self.tmp.0, &path).map_err(|e| io("cannot store the artifact as", &path, e))?;
        self.tmp.forget();
        Ok((id, self.size))
    }
}

/// Executables start with `\x7fELF` (Linux) or a Mach-O magic (macOS).
fn check_executable(head: &[u8]) -> std::result::Result<(), ArtifactError> {
    const MAGICS: [&[u8]; 5] =
        [b"\x7fELF", &[0xcf, 0xfa, 0xed, 0xfe], &[0xce, 0xfa, 0xed, 0xfe], &[0xca, 0xfe, 0xba, 0xbe], b"MZ"];
    if MAGICS.iter().any(|m| head.starts_with(m)) {
        Ok(())
    } else {
        Err(ArtifactError::NotExecutable { magic: format!("{:02x?}", head) })
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("cannot make executable", path, e))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

impl ArtifactStore {
    /// Opens (creating it) the store in `dir`, accepting artifacts up to `max_bytes`.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create the artifact directory", &dir, e))?;
        Ok(ArtifactStore { dir, max_bytes })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where artifact `id` is (or would be) stored.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The stored artifact `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<PathBuf> {
        if !is_artifact_id(id) {
            return None;
        }
        let path = self.path(id);
        path.is_file().then_some(path)
    }

    pub fn size(&self, id: &str) -> Option<u64> {
        self.get(id).and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len())
    }

    /// Starts writing a new artifact.
    pub fn writer(&self) -> Result<ArtifactWriter> {
        let name = format!(".upload-{:016x}", eddy_core::random::random_seed());
        let path = self.dir.join(name);
        let file = File::create(&path).map_err(|e| io("cannot create", &path, e))?;
        Ok(ArtifactWriter {
            store: self.clone(),
            tmp: tempfile_path::TempPath(path),
            file,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::with_capacity(4),
        })
    }
}

/// A path deleted when dropped, unless forgotten.
mod tempfile_path {
    use std::path::PathBuf;

    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn forget(self) {
            std::mem::forget(self);
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(limit: u64) -> (tempfile::TempDir, ArtifactStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts"), limit).unwrap();
        (dir, store)
    }

    #[test]
    fn an_executable_is_stored_under_its_hash() {
        let (_dir, store) = store(1 << 20);
        let mut w = store.writer().unwrap();
        w.write(b"\x7fELF").unwrap();
        w.write(b" and the rest").unwrap();
        let (id, size) = w.finish(None).unwrap();
        assert_eq!(size, 17);
        assert!(is_artifact_id(&id));
        let path = store.get(&id).expect("stored");
        assert_eq!(sha256_file(&path).unwrap(), id);
        assert_eq!(std::fs::read(&path).unwrap(), b"\x7fELF and the rest");
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn too_large_empty_non_executable_and_wrong_hash_are_refused_and_leave_nothing() {
        let (_dir, store) = store(8);
        let mut w = store.writer().unwrap();
        w.write(b"\x7fELF1234").unwrap();
        assert!(matches!(w.write(b"5"), Err(ArtifactError::TooLarge { limit: 8 })));
        drop(w);
        assert!(matches!(store.writer().unwrap().finish(None), Err(ArtifactError::Empty)));
        let mut w = store.writer().unwrap();
        w.write(b"#!/bin").unwrap();
        let err = w.finish(None).unwrap_err();
        assert!(err.to_string().contains("not an executable"), "{err}");
        let mut w = store.writer().unwrap();
        w.write(b"\x7fELF").unwrap();
        let err = w.finish(Some(&"0".repeat(64))).unwrap_err();
        assert!(matches!(err, ArtifactError::HashMismatch { .. }), "{err}");
        // Every refused upload removed its temporary file.
        assert_eq!(std::fs::read_dir(&store.dir).unwrap().count(), 0);
        assert!(store.get("../etc/passwd").is_none());
    }
}
