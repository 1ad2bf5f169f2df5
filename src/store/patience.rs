//! The one way a running process waits out the database: an operation that failed because
//! the database is not there right now (connection lost, server shutting down or
//! starting, too many connections) is tried again until it is back, for as long as the
//! outage lasts. Any other failure is returned at once. The queue's own queries
//! (`queue::patient`) and a job's (`ingest::job`) both wait through it, so that an outage
//! of any length costs a job neither an attempt nor a call.
//!
//! Waiting forever is safe because the queue's lease still fences: a worker silent past
//! `JOB_LEASE_SECS` may find its job taken over, and its late checkpoint is refused.
//! Start-up is different: a process that cannot reach its database at all gives up after
//! `DATABASE_CONNECT_TIMEOUT_SECS` (`store::database::wait_for_server`).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// The first wait before an operation is tried again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest wait between two tries: the database is noticed back within seconds.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Errors that can say "the database is not there right now", as opposed to "this query
/// is wrong": the only ones [`patiently`] waits out.
pub trait Unavailable {
    fn is_unavailable(&self) -> bool;
}

impl Unavailable for sqlx::Error {
    fn is_unavailable(&self) -> bool {
        is_unavailable(self)
    }
}

/// Errors that mean "the database is not there right now".
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        // 08: connection exceptions; 57P0x: the server is shutting down or starting;
        // 53300: too many connections.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P0") || code == "53300"
        }),
        _ => false,
    }
}

/// Runs `operation` until it succeeds or fails for another reason than an unavailable
/// database, waiting a little longer each time (up to [`MAX_RETRY_DELAY`]). `what` says
/// what waits, for the two lines logged: one when the wait begins, one when it ends.
pub async fn patiently<T, E, F, Fut>(what: &str, mut operation: F) -> Result<T, E>
where
    E: Unavailable + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_RETRY_DELAY;
    let mut waited = false;
    loop {
        match operation().await {
            Err(e) if e.is_unavailable() => {
                if !waited {
                    tracing::warn!(error = %e, "{what} waits: the database is unavailable");
                    waited = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            result => {
                if waited && result.is_ok() {
                    tracing::info!("{what} goes on: the database is back");
                }
                return result;
            }
        }
    }
}
