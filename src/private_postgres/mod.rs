//! A private PostgreSQL for a first run (issue 22): when `DATABASE_URL` is not set and
//! nothing answers at its default address, the process starts a server of its own from
//! the PostgreSQL binaries already on the machine, instead of waiting a minute for one
//! and exiting.
//!
//! - Data: `$XDG_DATA_HOME/price-history/postgres` (else `~/.local/share/...`), made by
//!   `initdb` once and kept across runs. `initdb` writes into a staging directory that is
//!   renamed into place only when it succeeded: there is never a half-made data directory.
//! - Listening: on a Unix socket in the data directory (mode 0700, so only this user
//!   reaches it, which is why `trust` authentication is safe), never on TCP.
//! - Sharing: every process of the service using the server holds a shared `flock` on
//!   `postgres.users` for as long as it runs; starting and stopping happen under an
//!   exclusive lock on `postgres.lock`. A process starts the server only when
//!   `pg_ctl status` says it is not running, and on the way out stops it only when it can
//!   take `postgres.users` exclusively, that is when no other process of the service
//!   still uses it: the last one out stops it. The kernel drops the locks of a process
//!   that dies (even `kill -9`), so a count never leaks; the server such a process leaves
//!   behind is found running and reused by the next one, which then stops it.
//! - Hand-written `initdb`/`pg_ctl` calls rather than the `postgresql_embedded` crate: the
//!   crate downloads binaries unless pointed at an installation by hand, finds none on the
//!   machine itself, does not share one server between processes, and would pull
//!   reqwest's JSON/stream stack, `tokio/full` and a build script into every build for
//!   what is a page of process calls here: added without its default features (tokio,
//!   rustls-ring), it rebuilt 45 crates, 200 CPU-seconds of a dev build on this 2-core
//!   machine (issue 22's note).
//!
//! # Layout
//!
//! - this file: choosing the database (the given URL, a server answering at the
//!   default, or the private server) — the module's one entry point.
//! - `server`: the private server as this process holds it: joining (starting it when
//!   it is not running) and leaving (the last one out stops it).
//! - `layout`: where its files are for this user, and the directories only this user may
//!   enter.
//! - `binaries`: finding PostgreSQL's programs, of the version the data needs.
//! - `locks`: the two lock files that let processes share one server.
//! - `programs`: `initdb` and `pg_ctl`, each run to its end.

mod binaries;
mod layout;
mod locks;
mod programs;
mod server;

use std::time::Duration;

use anyhow::Context;

use crate::config::{DEFAULT_DATABASE_URL, DatabaseUrl};

pub use server::PrivateServer;

/// The superuser `initdb` creates; the URL and the `psql` hint use it.
const SUPERUSER: &str = "postgres";

/// The database the service uses on the private server: the default URL's.
const DATABASE: &str = "price_history";

/// The port in the socket's name (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// How long the probe of the default address waits for a TCP connection: a server on
/// loopback answers in microseconds, and the no-binaries error must come within 2 s.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The database to connect to: `database_url` when it was given (`DATABASE_URL` or
/// `--database-url` set, rather than defaulted) or something answers there; else the URL
/// of the private server, started (or joined) here and held until the returned guard is
/// dropped. The one entry point of this module: the connect path calls it at start.
pub async fn resolve_database(
    database_url: &DatabaseUrl,
    url_given: bool,
) -> anyhow::Result<(DatabaseUrl, Option<PrivateServer>)> {
    if url_given || *database_url != default_url() || answers(database_url).await {
        return Ok((database_url.clone(), None));
    }
    let server = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .context("the private PostgreSQL's start-up panicked")??;
    // A warning, so that one-off commands (whose own level is `warn`) say it too.
    tracing::warn!(
        data_dir = %server.data_dir().display(),
        psql = %server.psql_command(),
        "{}",
        server.describe()
    );
    Ok((server.url()?, Some(server)))
}

/// Whether anything accepts a TCP connection at the URL's host and port (any of the
/// addresses the host resolves to): a server there, whatever it then says, means no
/// private server, exactly as before there was one.
async fn answers(database_url: &DatabaseUrl) -> bool {
    let (host, port) = database_url.tcp_address();
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// `DATABASE_URL`'s default.
fn default_url() -> DatabaseUrl {
    DatabaseUrl::parse(DEFAULT_DATABASE_URL).expect("the default DATABASE_URL is valid")
}

/// `localhost:5432`, as the default URL says.
fn default_address() -> String {
    let (host, port) = default_url().tcp_address();
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_url_or_one_other_than_the_default_is_used_as_it_is() {
        let other: DatabaseUrl = "postgres://x@127.0.0.1:1/db".parse().unwrap();
        let (url, server) = resolve_database(&other, false).await.unwrap();
        assert_eq!(url, other);
        assert!(server.is_none());
        let (url, server) = resolve_database(&default_url(), true).await.unwrap();
        assert_eq!(url, default_url());
        assert!(server.is_none());
    }
}
