//! A file written under a temporary name in its directory and renamed into place once
//! whole: a reader of the path sees the previous file or the new one, never part of one,
//! and an export that stops half-way (a database gone, a signal) leaves the previous file
//! as it was. The writes are plain blocking writes to the page cache: the export is its
//! process's only task, and the one slow call, the fsync, comes once per file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file being written; removed when dropped before [`Staged::commit`].
pub(super) struct Staged {
    file: File,
    temporary: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    /// Starts `name` in `dir`, under a hidden temporary name of its own: the process id
    /// and a fresh UUID, opened only if new, so that two exports into one directory never
    /// write the same temporary file, even from two containers where both are process 1;
    /// and freqtrade, which lists `*.feather`, never sees it.
    pub(super) fn create(dir: &Path, name: &str) -> io::Result<Staged> {
        let unique = uuid::Uuid::now_v7().simple();
        let temporary = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        Ok(Staged {
            file,
            temporary,
            target: dir.join(name),
            committed: false,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Puts the file in place: its data on disk first, then the rename, so that after a
    /// crash the path holds either file, whole. The rename itself is made durable by
    /// syncing the directory, which the caller does once for all its files (until then, a
    /// crash may undo it, leaving the previous file).
    pub(super) fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.temporary, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "BTC_USD-1d.json";

    /// A directory holding the previous file, "old".
    fn with_previous_file() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ph-staged-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(NAME), "old").unwrap();
        dir
    }

    /// What the directory holds: the file's content, and how many entries in all.
    fn holds(dir: &Path) -> (Vec<u8>, usize) {
        let file = std::fs::read(dir.join(NAME)).unwrap();
        (file, std::fs::read_dir(dir).unwrap().count())
    }

    #[test]
    fn the_previous_file_stays_until_the_new_one_is_committed() {
        let dir = with_previous_file();
        let mut staged = Staged::create(&dir, NAME).unwrap();
        staged.write(b"[new").unwrap();
        assert_eq!(std::fs::read(dir.join(NAME)).unwrap(), b"old");
        staged.write(b"]").unwrap();
        staged.commit().unwrap();
        assert_eq!(
            holds(&dir),
            (b"[new]".to_vec(), 1),
            "no temporary file left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_abandoned_half_way_leaves_nothing_behind() {
        let dir = with_previous_file();
        let mut staged = Staged::create(&dir, NAME).unwrap();
        staged.write(b"[half").unwrap();
        drop(staged);
        assert_eq!(holds(&dir), (b"old".to_vec(), 1), "no temporary file left");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
