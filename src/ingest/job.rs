//! One attempt of a job, from plan to outcome. The queue calls [`Ingestor::run`]; it
//! decides what to do with the outcome (finish, retry, hand back).

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Window, daily_candles, windows_for_days, windows_for_range};
use crate::coingecko::{CoinGeckoClient, CoinGeckoError};
use crate::domain::{JobStatus, today_utc};
use crate::store::{daily_prices, gaps, ingestion_jobs, ingestion_jobs::JobRecord};

/// How an attempt ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every window was tried; the job is `completed` or `completed_with_gaps`.
    Finished {
        status: JobStatus,
        gap_dates: Vec<NaiveDate>,
        message: Option<String>,
    },
    /// The job was cancelled (or ended elsewhere) while it ran; it stopped after a window.
    Cancelled,
    /// The process is shutting down; the last window was committed or not started, and
    /// the job should go back on the queue.
    Interrupted,
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
    fn from(e: sqlx::Error) -> Self {
        JobError::Transient(format!("database error: {e}"))
    }
}

impl From<CoinGeckoError> for JobError {
    fn from(e: CoinGeckoError) -> Self {
        if e.is_permanent() {
            JobError::Permanent(e.to_string())
        } else {
            JobError::Transient(e.to_string())
        }
    }
}

/// Everything a job needs: the database, the CoinGecko client and the window size.
#[derive(Clone)]
pub struct Ingestor {
    pub pool: PgPool,
    pub client: CoinGeckoClient,
    pub chunk_days: u32,
}

impl Ingestor {
    /// Runs one attempt of `job` (already marked running). Resumes from the checkpoint:
    /// not forced, the missing days are read again from the table, so windows already
    /// stored are not fetched again; forced, the windows before `chunks_done` are skipped.
    /// `stop` turning true ends the attempt after the current window.
    #[tracing::instrument(skip_all, fields(job_id = %job.id, attempt = job.attempts))]
    pub async fn run(
        &self,
        job: &JobRecord,
        stop: &watch::Receiver<bool>,
    ) -> Result<Outcome, JobError> {
        let (start, end) = (job.range.start(), job.range.end());
        let windows = if job.force {
            let all = windows_for_range(job.range, self.chunk_days);
            let done = usize::try_from(job.chunks_done).unwrap_or(0).min(all.len());
            all[done..].to_vec()
        } else {
            let missing = gaps::missing_days(&self.pool, job.symbol, start, end).await?;
            windows_for_days(&missing, self.chunk_days)
        };
        let mut planned = job.chunks_done + windows.len() as i32;
        ingestion_jobs::set_chunks_total(&self.pool, job.id, planned).await?;
        tracing::info!(
            windows = windows.len(),
            done_before = job.chunks_done,
            force = job.force,
            "fetching"
        );

        for window in &windows {
            if let Some(outcome) = self.should_stop(job.id, stop).await? {
                return Ok(outcome);
            }
            self.fetch_and_store(job, window).await?;
        }

        // Fill what is still missing: one call per run of consecutive days (split only
        // where a run is longer than a window). Days not over yet cannot be completed now,
        // so no call is spent on them.
        let today = today_utc();
        let fillable: Vec<NaiveDate> = gaps::missing_days(&self.pool, job.symbol, start, end)
            .await?
            .into_iter()
            .filter(|day| *day < today)
            .collect();
        let fills = windows_for_days(&fillable, self.chunk_days);
        if !fills.is_empty() {
            planned += fills.len() as i32;
            ingestion_jobs::set_chunks_total(&self.pool, job.id, planned).await?;
            tracing::info!(runs = fills.len(), days = fillable.len(), "filling gaps");
        }
        for window in &fills {
            if let Some(outcome) = self.should_stop(job.id, stop).await? {
                return Ok(outcome);
            }
            if let Err(e) = self.fetch_and_store(job, window).await {
                tracing::warn!(start = %window.start, end = %window.end, error = %e, "could not fill a gap; going on");
            }
        }

        let gap_dates = gaps::missing_days(&self.pool, job.symbol, start, end).await?;
        Ok(finished(gap_dates, today))
    }

    async fn should_stop(
        &self,
        id: Uuid,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Outcome>, JobError> {
        if *stop.borrow() {
            return Ok(Some(Outcome::Interrupted));
        }
        if !ingestion_jobs::is_still_active(&self.pool, id).await? {
            return Ok(Some(Outcome::Cancelled));
        }
        Ok(None)
    }

    /// One window: fetch, aggregate, and store its rows with the checkpoint in one
    /// transaction, so a crash leaves either both or neither.
    #[tracing::instrument(skip_all, fields(start = %window.start, end = %window.end))]
    async fn fetch_and_store(&self, job: &JobRecord, window: &Window) -> Result<(), JobError> {
        let chart = self
            .client
            .market_chart_range(job.symbol.coingecko_id(), window.from(), window.to())
            .await?;
        let candles = daily_candles(&chart, window, Utc::now());
        let mut tx = self.pool.begin().await?;
        let written = daily_prices::upsert(&mut tx, job.symbol, &candles, job.force).await?;
        ingestion_jobs::checkpoint(&mut tx, job.id, candles.len() as i32).await?;
        tx.commit().await?;
        tracing::info!(
            days = window.days(),
            fetched = candles.len(),
            written,
            "window stored"
        );
        Ok(())
    }
}

/// The final word on a job whose windows have all been tried.
fn finished(gap_dates: Vec<NaiveDate>, today: NaiveDate) -> Outcome {
    if gap_dates.is_empty() {
        return Outcome::Finished {
            status: JobStatus::Completed,
            gap_dates,
            message: None,
        };
    }
    let not_over = gap_dates.iter().filter(|day| **day >= today).count();
    let mut message = format!(
        "{} day(s) still have no final price: {}.",
        gap_dates.len(),
        describe_days(&gap_dates)
    );
    if not_over > 0 {
        message.push_str(" Today (UTC) is not over, so its row is provisional; run the job again after 00:40 UTC tomorrow to complete it.");
    }
    if not_over < gap_dates.len() {
        message.push_str(" CoinGecko returned no data for the other days even after a second try; run the job again later to retry them.");
    }
    Outcome::Finished {
        status: JobStatus::CompletedWithGaps,
        gap_dates,
        message: Some(message),
    }
}

/// Days as runs, e.g. `2024-01-01..2024-01-03, 2024-02-10`, at most a handful shown.
fn describe_days(days: &[NaiveDate]) -> String {
    const SHOWN: usize = 10;
    let runs = gaps::runs(days);
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect();
    if runs.len() > SHOWN {
        parts.push(format!("and {} more run(s)", runs.len() - SHOWN));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn no_gaps_is_completed_without_a_message() {
        assert_eq!(
            finished(vec![], day("2024-01-01")),
            Outcome::Finished {
                status: JobStatus::Completed,
                gap_dates: vec![],
                message: None
            }
        );
    }

    #[test]
    fn gaps_name_their_days_and_say_what_to_do() {
        let Outcome::Finished {
            status, message, ..
        } = finished(
            vec![day("2024-01-01"), day("2024-01-02"), day("2024-01-09")],
            day("2024-01-09"),
        )
        else {
            panic!("not finished");
        };
        assert_eq!(status, JobStatus::CompletedWithGaps);
        let message = message.unwrap();
        assert!(
            message.starts_with(
                "3 day(s) still have no final price: 2024-01-01..2024-01-02, 2024-01-09."
            ),
            "{message}"
        );
        assert!(message.contains("Today (UTC) is not over"), "{message}");
        assert!(message.contains("no data for the other days"), "{message}");
    }
}
