//! The two lock files that let processes share one private server: `postgres.lock`,
//! held exclusively while one of them starts the server or decides to stop it, and
//! `postgres.users`, held shared by every process using it. They are `flock`s: the
//! kernel drops those of a process that dies (even `kill -9`), so a count never leaks.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use anyhow::Context;

/// Opens (creating it when missing) and locks `path` exclusively, waiting for the lock,
/// and saying so when another process holds it (it is starting or stopping the server).
pub(super) fn lock_exclusive(path: &Path) -> anyhow::Result<File> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("could not lock {}", path.display()));
        }
    }
    // A warning, so that one-off commands (whose own level is `warn`) say it too.
    tracing::warn!(
        lock = %path.display(),
        "another process of the service is starting or stopping the private PostgreSQL; waiting for it"
    );
    file.lock()
        .with_context(|| format!("could not lock {}", path.display()))?;
    Ok(file)
}

fn open(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))
}

/// This process's place among the server's users: `postgres.users`, locked shared.
#[derive(Debug)]
pub(super) struct Users(File);

impl Users {
    /// Joins the users of the server (under the start lock).
    pub fn join(path: &Path) -> anyhow::Result<Users> {
        let file = open(path)?;
        file.lock_shared()
            .with_context(|| format!("could not lock {}", path.display()))?;
        Ok(Users(file))
    }

    /// Leaves the users (under the start lock). When no other process uses the server,
    /// this was the last one out: the file comes back locked exclusively, to be held
    /// while the server stops; `None` when others still use it.
    pub fn leave(self) -> anyhow::Result<Option<File>> {
        let Users(file) = self;
        file.unlock().context("could not unlock postgres.users")?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e).context("could not lock postgres.users"),
        }
    }
}
