//! The private server as one process holds it: joining it (making its data and starting
//! it when need be, under the start lock) and leaving it (the last process out stops it).

use std::fs;
use std::path::Path;

use anyhow::bail;

use super::binaries::Binaries;
use super::layout::{Layout, create_private_dir, ensure_only_ours, uid};
use super::locks::{Users, lock_exclusive};
use super::programs::{initdb, is_running, pg_ctl_start, pg_ctl_stop};
use super::{DATABASE, SUPERUSER, default_address};
use crate::config::DatabaseUrl;

/// The private server, held by this process: dropping it leaves the server, stopping it
/// when this was the last process of the service using it.
#[derive(Debug)]
pub struct PrivateServer {
    layout: Layout,
    binaries: Binaries,
    /// This process's place among the server's users; `None` once left.
    users: Option<Users>,
    /// Whether this process ran `initdb` (the first start on this machine).
    created: bool,
    /// Whether this process started the server (rather than finding it running).
    started: bool,
}

impl PrivateServer {
    /// Finds the binaries, refuses root, makes the data directory when there is none and
    /// starts the server when it is not running: blocking, for `spawn_blocking`.
    pub(super) fn start() -> anyhow::Result<Self> {
        let layout = Layout::for_this_user()?;
        let made_by = fs::read_to_string(layout.data.join("PG_VERSION"))
            .ok()
            .map(|version| version.trim().to_owned());
        let binaries = Binaries::find(made_by.as_deref(), &layout)?;
        refuse_root()?;

        create_private_dir(&layout.base)?;
        let start_lock = lock_exclusive(&layout.lock)?;
        let users = Users::join(&layout.users)?;
        let created = made_by.is_none() && !layout.data.join("PG_VERSION").exists();
        if created {
            initdb(&binaries, &layout, &start_lock)?;
        }
        if layout.socket_dir != layout.data {
            create_private_dir(&layout.socket_dir)?;
            ensure_only_ours(&layout.socket_dir)?;
        }
        let started = !is_running(&binaries, &layout)?;
        if started {
            pg_ctl_start(&binaries, &layout)?;
        }
        drop(start_lock);
        Ok(Self {
            layout,
            binaries,
            users: Some(users),
            created,
            started,
        })
    }

    /// The URL of the service's database on the private server: its socket directory as
    /// `host`, which sqlx reads as a Unix socket.
    pub fn url(&self) -> anyhow::Result<DatabaseUrl> {
        let mut url = url::Url::parse(&format!("postgres://{SUPERUSER}@localhost/{DATABASE}"))
            .expect("a valid URL");
        url.query_pairs_mut()
            .append_pair("host", &self.layout.socket_dir.to_string_lossy());
        Ok(DatabaseUrl::from_url(url)?)
    }

    /// Where its data lives.
    pub fn data_dir(&self) -> &Path {
        &self.layout.data
    }

    /// How a person connects to it.
    pub fn psql_command(&self) -> String {
        format!(
            "psql -h {} -U {SUPERUSER} {DATABASE}",
            shell_quoted(&self.layout.socket_dir.to_string_lossy())
        )
    }

    /// The start-up note: what was done, where the data lives, how to connect, and how
    /// to use another server instead.
    pub(super) fn describe(&self) -> String {
        let what = match (self.created, self.started) {
            (true, _) => "created and started a private PostgreSQL",
            (false, true) => "started the private PostgreSQL",
            (false, false) => "uses the private PostgreSQL another price-history process started",
        };
        format!(
            "DATABASE_URL is not set and nothing answers at {}, so price-history {what} \
             ({} from {}). Its data lives in {} and is kept across runs; connect with `{}`. \
             Set DATABASE_URL to use another server",
            default_address(),
            self.binaries.version_label(),
            self.binaries.dir.display(),
            self.layout.data.display(),
            self.psql_command()
        )
    }

    /// Stops using the server: the last process of the service out stops it.
    fn leave(&mut self) -> anyhow::Result<()> {
        let Some(users) = self.users.take() else {
            return Ok(());
        };
        let _start_lock = lock_exclusive(&self.layout.lock)?;
        match users.leave()? {
            Some(_last_out) => {
                pg_ctl_stop(&self.binaries, &self.layout)?;
                tracing::info!(data_dir = %self.layout.data.display(), "stopped the private PostgreSQL");
            }
            None => tracing::info!(
                "the private PostgreSQL keeps running: other price-history processes use it"
            ),
        }
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::warn!(error = %format!("{e:#}"), "could not stop the private PostgreSQL cleanly");
        }
    }
}

/// PostgreSQL will not run as root; refuse before anything is made on disk.
fn refuse_root() -> anyhow::Result<()> {
    if uid() == 0 {
        bail!(
            "DATABASE_URL is not set and nothing answers at {}, but a private PostgreSQL \
             cannot be started as root: PostgreSQL refuses to run as root, since a \
             compromised database server would own the machine. Run price-history as an \
             ordinary user, or set DATABASE_URL to a PostgreSQL server (or run \
             `docker compose -f docker/compose.yaml up`). Nothing was created.",
            default_address()
        );
    }
    Ok(())
}

/// `text` as one shell word.
fn shell_quoted(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@%:,=".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_url_names_the_socket_directory_and_psql_gets_a_quoted_path() {
        let server = PrivateServer {
            layout: Layout::under(Path::new("/home/a b/.local/share/price-history"), 1),
            binaries: Binaries {
                dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
                version: Some("15.14".to_owned()),
            },
            users: None,
            created: true,
            started: true,
        };
        let url = server.url().unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://postgres@localhost/price_history?host=%2Fhome%2Fa+b%2F.local%2Fshare%2Fprice-history%2Fpostgres"
        );
        assert_eq!(
            url.options().get_socket().map(PathBuf::as_path),
            Some(Path::new("/home/a b/.local/share/price-history/postgres"))
        );
        assert_eq!(
            server.psql_command(),
            "psql -h '/home/a b/.local/share/price-history/postgres' -U postgres price_history"
        );
        let note = server.describe();
        assert!(
            note.contains("created and started a private PostgreSQL"),
            "{note}"
        );
        assert!(
            note.contains("Set DATABASE_URL to use another server"),
            "{note}"
        );
    }
}
