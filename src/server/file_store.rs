//! Shared files on disk: content-addressed under `<data_dir>/files`.
//!
//! An upload streams into a [`PartialFile`] in `files/tmp/`; only when its
//! size, type and SHA-256 check out is it moved to
//! `files/<sha[0:2]>/<sha[2:4]>/<sha>` (identical content is stored once).
//! A `PartialFile` that is dropped without being committed deletes itself,
//! so an interrupted upload (client gone, server shutting down, rejected
//! content) leaves nothing behind; leftovers of a crash are removed when the
//! server starts.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file store's root and its temp directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

/// An upload in progress, in the temp directory.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl FileStore {
    /// Opens (creating) `<data_dir>/files` and empties its temp directory.
    pub fn open(data_dir: &Path) -> io::Result<FileStore> {
        let root = data_dir.join("files");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            log::info!("removing an unfinished upload: {}", entry.path().display());
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(FileStore { root })
    }

    /// Where the content with this (hex) SHA-256 lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let a = sha256.get(0..2).unwrap_or("00");
        let b = sha256.get(2..4).unwrap_or("00");
        self.root.join(a).join(b).join(sha256)
    }

    /// Starts a new upload in the temp directory.
    pub fn begin(&self) -> io::Result<PartialFile> {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.root.join("tmp").join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(PartialFile {
            path,
            file: Some(BufWriter::with_capacity(64 * 1024, file)),
        })
    }

    /// Moves a verified upload into place (or drops it if the same content
    /// is already stored) and returns where the content is.
    pub fn commit(&self, mut partial: PartialFile, sha256: &str) -> io::Result<PathBuf> {
        let dest = self.path_of(sha256);
        let mut file = partial
            .file
            .take()
            .ok_or_else(|| io::Error::other("upload already committed"))?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.flush()?;
        // Durable before the database row that points at it is written.
        file.sync_all()?;
        drop(file);
        if dest.exists() {
            std::fs::remove_file(&partial.path)?;
        } else {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(&partial.path, &dest)?;
            let _ = std::fs::set_permissions(
                &dest,
                std::os::unix::fs::PermissionsExt::from_mode(0o640),
            );
        }
        partial.path = PathBuf::new();
        Ok(dest)
    }

    /// Stores content read from elsewhere (the database, for a node that
    /// did not receive the upload).
    pub fn put_content(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        let mut partial = self.begin()?;
        partial.write(bytes)?;
        self.commit(partial, sha256).map(drop)
    }

    /// Opens stored content for reading.
    pub fn open_content(&self, sha256: &str) -> io::Result<File> {
        File::open(self.path_of(sha256))
    }

    /// Removes stored content no file record uses any more (a missing file
    /// is not an error).
    pub fn remove_content(&self, sha256: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl PartialFile {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => Err(io::Error::other("upload already committed")),
        }
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_content_is_addressed_by_hash_and_dropped_uploads_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let mut p = store.begin().unwrap();
        p.write(b"hello").unwrap();
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let path = store.commit(p, sha).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(path.ends_with(format!("2c/f2/{sha}")));

        // Same content again: deduplicated, temp file gone.
        let mut p = store.begin().unwrap();
        p.write(b"hello").unwrap();
        store.commit(p, sha).unwrap();

        let mut p = store.begin().unwrap();
        p.write(b"half an upl").unwrap();
        drop(p);
        assert_eq!(
            std::fs::read_dir(dir.path().join("files/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let p = store.begin().unwrap();
        std::mem::forget(p); // as if the process died
        assert_eq!(
            std::fs::read_dir(dir.path().join("files/tmp"))
                .unwrap()
                .count(),
            1
        );
        FileStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("files/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}
