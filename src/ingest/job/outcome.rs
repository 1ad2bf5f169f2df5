//! How an attempt ends: an [`Outcome`] when it ran its course (or was stopped), a
//! [`JobError`] when it failed, saying whether trying again may help.

use chrono::NaiveDate;

use crate::domain::JobStatus;
use crate::ingest::SourceError;

/// How an attempt ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every window was tried; the job is `completed` or `completed_with_gaps`.
    Finished {
        status: JobStatus,
        /// Days the plan serves that are still missing.
        gap_dates: Vec<NaiveDate>,
        /// Days older than the plan's reach, not stored and never asked for.
        out_of_plan_days: i32,
        message: Option<String>,
    },
    /// The job was cancelled (or ended elsewhere) while it ran; it stopped after a window.
    Cancelled,
    /// The process is shutting down; the last window was committed or not started, and
    /// the job should go back on the queue.
    Interrupted,
    /// Another worker took the job over (this one was silent past the lease, say during
    /// a database outage); this attempt stopped without writing anything more.
    LeaseLost,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Trying again cannot help (CoinGecko refused the request, or answered nonsense).
    #[error("{0}")]
    Permanent(String),
    /// Trying again later may help (CoinGecko or the database was unavailable).
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for JobError {
    /// A row the table refuses (SQLSTATE class 22, data exception, or 23, a broken
    /// constraint) will be refused again however often the window is fetched: that is
    /// permanent, and said without PostgreSQL's own text. Anything else may pass.
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("22") || code.starts_with("23")) =>
            {
                let rule = db
                    .constraint()
                    .map(|name| format!(" ({name})"))
                    .unwrap_or_default();
                JobError::Permanent(format!(
                    "CoinGecko's data for a window broke a rule of the table{rule}; nothing of that \
                     window was stored. Run the job again later, when CoinGecko may have corrected it."
                ))
            }
            _ => JobError::Transient(format!("database error: {e}")),
        }
    }
}

impl From<SourceError> for JobError {
    fn from(e: SourceError) -> Self {
        if e.is_permanent() {
            JobError::Permanent(e.to_string())
        } else {
            JobError::Transient(e.to_string())
        }
    }
}
