//! Connecting, creating the database when it is missing, and applying our migrations —
//! safely when several processes start at once.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::DatabaseUrl;

/// How long a query waits for a free connection before it fails: short, so that a
/// database outage surfaces as an error (and a 503 on /readyz) instead of a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLSTATEs a racing `CREATE DATABASE` may get when another process won the race.
const DUPLICATE_DATABASE: &str = "42P04";
const UNIQUE_VIOLATION: &str = "23505";

/// SQLSTATE of "the database system is starting up" (and shutting down, in recovery).
const CANNOT_CONNECT_NOW: &str = "57P03";

/// The longest pause between two attempts of [`wait_for_server`].
const MAX_WAIT_STEP: Duration = Duration::from_secs(5);

/// Waits until PostgreSQL at `url` accepts a connection, for at most `limit`: trying
/// again with back-off while the server cannot be reached or is still starting up, and
/// logging what it waits for (host and port only). Any other refusal (a wrong password, a
/// missing role) fails at once; so does the first attempt when `limit` is zero. Only for
/// start-up: a running process rides out an outage on its pool instead.
pub async fn wait_for_server(url: &DatabaseUrl, limit: Duration) -> anyhow::Result<()> {
    let options = url.options();
    // The configured database may not exist yet.
    let probe = maintenance(options);
    let target = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let remaining = limit.saturating_sub(started.elapsed());
        let outcome = tokio::time::timeout(
            remaining.clamp(Duration::from_secs(1), Duration::from_secs(10)),
            probe.connect(),
        )
        .await;
        let error = match outcome {
            Ok(Ok(connection)) => {
                connection.close().await.ok();
                if attempt > 1 {
                    tracing::info!(database = %target, waited_ms = started.elapsed().as_millis() as u64, "PostgreSQL is up");
                }
                return Ok(());
            }
            Ok(Err(e)) if !is_not_up_yet(&e) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("could not connect to PostgreSQL at {url}: is DATABASE_URL right?")
                });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer to the connection attempt".to_owned(),
        };
        let waited = started.elapsed();
        if waited >= limit {
            anyhow::bail!(
                "PostgreSQL at {target} did not accept a connection within {} s \
                 (DATABASE_CONNECT_TIMEOUT_SECS); the last attempt said: {error}. \
                 Is it running, and is DATABASE_URL ({url}) right?",
                limit.as_secs(),
            );
        }
        // A warning, so that a one-off command (whose own level is `warn`) says it waits.
        tracing::warn!(
            database = %target,
            attempt,
            waited_secs = waited.as_secs(),
            limit_secs = limit.as_secs(),
            %error,
            "waiting for PostgreSQL to accept connections"
        );
        tokio::time::sleep(pause.min(limit - waited)).await;
        pause = (pause * 2).min(MAX_WAIT_STEP);
        attempt += 1;
    }
}

/// Whether a failed connection attempt means "not reachable yet" rather than "refused".
fn is_not_up_yet(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(e) => e.code().as_deref() == Some(CANNOT_CONNECT_NOW),
        _ => false,
    }
}

/// Opens a pool on `url` without touching the schema.
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(url.options().clone())
        .await
        .with_context(|| unreachable(url))
}

/// What to say when the server at `url` cannot be reached.
fn unreachable(url: &DatabaseUrl) -> String {
    format!("could not connect to PostgreSQL at {url}: is it running, and is DATABASE_URL right?")
}

/// The server's maintenance database, `postgres`: there before the configured one is.
fn maintenance(options: &PgConnectOptions) -> PgConnectOptions {
    match options.get_database() {
        Some(_) => options.clone().database("postgres"),
        None => options.clone(),
    }
}

/// Applies price-history's migrations (`migrations/`). The queue's schema must be there
/// first, since one of them puts a trigger on its table: `startup::migrate` runs both, in
/// that order. PostgreSQL's advisory migration lock makes replicas starting together
/// apply each migration exactly once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("while applying price-history's migrations")?;
    Ok(())
}

/// Creates the database `url` names if it is missing, safely when several processes
/// race to create it.
pub async fn create_database_if_missing(url: &DatabaseUrl) -> anyhow::Result<()> {
    let Some(name) = url.options().get_database().map(str::to_owned) else {
        return Ok(()); // connecting to the user's default database, which exists
    };
    let mut admin = maintenance(url.options())
        .connect()
        .await
        .with_context(|| unreachable(url))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .context("while checking whether the database exists")?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote the configured name instead.
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            Err(sqlx::Error::Database(e))
                if matches!(
                    e.code().as_deref(),
                    Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
                ) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("could not create database {name:?}: does the user have CREATEDB?")
                });
            }
        }
    }
    admin.close().await.ok();
    Ok(())
}
