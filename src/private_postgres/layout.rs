//! Where the private server's files are for this user, and the directories only this
//! user may enter.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::PORT;

/// The longest socket path the kernel takes (`sun_path` is 108 bytes on Linux, 104 on
/// macOS, the terminating NUL included); longer, the socket goes to a short directory.
const MAX_SOCKET_PATH: usize = 100;

/// Where the private server's files are, for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// `$XDG_DATA_HOME/price-history`, or `~/.local/share/price-history`.
    pub base: PathBuf,
    /// The data directory: `base/postgres`.
    pub data: PathBuf,
    /// Where the server's socket is: the data directory, unless its path is too long
    /// for a socket.
    pub socket_dir: PathBuf,
    /// The server's log: `base/postgres.log`.
    pub log: PathBuf,
    /// Held exclusively while starting, or deciding to stop, the server.
    pub lock: PathBuf,
    /// Held shared by every process using the server.
    pub users: PathBuf,
}

impl Layout {
    pub fn for_this_user() -> anyhow::Result<Self> {
        let data_home = data_home(
            std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
        .context(
            "neither XDG_DATA_HOME nor HOME is set, so there is no place for a private \
             PostgreSQL's data: set one of them, or set DATABASE_URL",
        )?;
        Ok(Self::under(&data_home.join("price-history"), uid()))
    }

    pub fn under(base: &Path, uid: u32) -> Self {
        let data = base.join("postgres");
        let socket_in_data = data.join(format!(".s.PGSQL.{PORT}"));
        let socket_dir = if socket_in_data.as_os_str().len() <= MAX_SOCKET_PATH {
            data.clone()
        } else {
            std::env::temp_dir().join(format!("price-history-{uid}"))
        };
        Self {
            base: base.to_owned(),
            socket_dir,
            log: base.join("postgres.log"),
            lock: base.join("postgres.lock"),
            users: base.join("postgres.users"),
            data,
        }
    }
}

/// The XDG data directory: `$XDG_DATA_HOME` when set to an absolute path (the spec says
/// to ignore a relative one), else `$HOME/.local/share`.
fn data_home(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    xdg_data_home.filter(|dir| dir.is_absolute()).or_else(|| {
        home.filter(|home| !home.as_os_str().is_empty())
            .map(|home| home.join(".local").join("share"))
    })
}

pub(super) fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A directory only this user may enter (PostgreSQL insists on it for its data).
pub(super) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("could not create {}", dir.display()))
}

/// A socket directory under the shared temporary directory may have been made by
/// someone else before us: use it only when it is this user's and closed to others.
pub(super) fn ensure_only_ours(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("could not read {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid() || meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is not a directory only this user can enter, so the private PostgreSQL's \
             socket cannot go there: remove it, or set XDG_DATA_HOME to a shorter path",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_lives_under_xdg_data_home_when_absolute_else_under_home() {
        let home = Some(PathBuf::from("/home/ann"));
        assert_eq!(
            data_home(Some(PathBuf::from("/data")), home.clone()),
            Some(PathBuf::from("/data"))
        );
        assert_eq!(
            data_home(Some(PathBuf::from("relative")), home.clone()),
            Some(PathBuf::from("/home/ann/.local/share"))
        );
        assert_eq!(
            data_home(None, home),
            Some(PathBuf::from("/home/ann/.local/share"))
        );
        assert_eq!(data_home(None, Some(PathBuf::new())), None);
        assert_eq!(data_home(None, None), None);
    }

    #[test]
    fn the_socket_is_in_the_data_directory_unless_its_path_is_too_long() {
        let short = Layout::under(Path::new("/home/ann/.local/share/price-history"), 1000);
        assert_eq!(
            short.data,
            PathBuf::from("/home/ann/.local/share/price-history/postgres")
        );
        assert_eq!(short.socket_dir, short.data);
        let deep = format!("/home/{}/price-history", "d".repeat(80));
        let long = Layout::under(Path::new(&deep), 1000);
        assert_eq!(
            long.socket_dir,
            std::env::temp_dir().join("price-history-1000")
        );
        assert!(long.socket_dir.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH);
    }
}
