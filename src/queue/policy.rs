//! What the worker does after an attempt: what `ingestion_jobs` says of the job from then
//! on, what is logged, and what apalis does with the task, decided by [`policy`].

use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, RetryAfterError};
use chrono::Utc;
use sqlx::PgConnection;
use tracing::Level;

use super::lease::Lease;
use crate::config::FallbackSource;
use crate::domain::{HourRange, JobStatus, today_utc};
use crate::ingest::{Ingestor, JobError, Outcome};
use crate::store::ingestion_jobs::{self, Ending, JobRecord, Requeue};
use crate::store::patience::patiently;
use crate::store::{coins, gaps, hourly_coverage, hours_without_trades, job_hours};

/// What the worker does after an attempt, decided by [`policy`].
pub(super) struct Step {
    /// What `ingestion_jobs` says of the job from now on.
    pub(super) record: Record,
    /// The level and the words of the line logged, with the job's id and what the
    /// record says.
    pub(super) log: (tracing::Level, &'static str),
    /// What apalis does with the task: `Ok` ends it, `AbortError` ends it for good, a
    /// plain error retries it after a back-off, `RetryAfterError` hands it back.
    pub(super) next: Result<(), BoxDynError>,
}

/// A write of the job's record.
pub(super) enum Record {
    /// Nothing: the job ended elsewhere (cancelled), or another worker owns it now.
    Untouched,
    /// The attempt's final word.
    Finish {
        status: JobStatus,
        gap_dates: Vec<chrono::NaiveDate>,
        out_of_plan_days: i32,
        message: Option<String>,
    },
    /// Pending again, saying why: a retry to come, or a hand-off (counted apart).
    Release(Requeue, String),
    /// Failed for good, saying why.
    Fail(String),
}

/// The worker's policy, one arm per result of an attempt: what the record says, what
/// is logged, and what apalis does next. `failed_before` is how many of the job's
/// attempts failed transiently before this one: only failures count against
/// `max_attempts`, never a hand-off at shutdown or a takeover after a crash.
pub(super) fn policy(
    result: Result<Outcome, JobError>,
    failed_before: u32,
    max_attempts: u32,
) -> Step {
    let attempts = failed_before + 1;
    match result {
        Ok(outcome) => after(outcome),
        Err(JobError::Permanent(message)) => Step::give_up(message),
        Err(JobError::Transient(reason)) if attempts < max_attempts => {
            let message = format!(
                "attempt {attempts} of {max_attempts} failed and will be retried: {reason}"
            );
            Step {
                record: Record::Release(Requeue::Retry, message.clone()),
                log: (Level::WARN, "job will be retried"),
                next: Err(message.into()),
            }
        }
        Err(JobError::Transient(reason)) => Step::give_up(format!(
            "failed after {attempts} attempts; the last error was: {}. Submit the job again once the cause is fixed.",
            reason.trim_end_matches('.')
        )),
    }
}

/// The policy for an attempt that ended without an error.
fn after(outcome: Outcome) -> Step {
    match outcome {
        Outcome::Finished {
            status,
            gap_dates,
            out_of_plan_days,
            message,
        } => Step {
            record: Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                message,
            },
            log: (Level::INFO, "job finished"),
            next: Ok(()),
        },
        // The record belongs to the worker that took over; apalis ignores this worker's
        // result because it no longer holds the lock.
        Outcome::LeaseLost => Step::untouched(
            Level::WARN,
            "job was taken over by another worker; this attempt stopped",
        ),
        Outcome::Cancelled => Step::untouched(
            Level::INFO,
            "job was cancelled; stopped after its current window",
        ),
        Outcome::Interrupted => Step {
            record: Record::Release(
                Requeue::HandBack,
                "handed back to the queue at shutdown; another worker resumes it from its checkpoint"
                    .to_owned(),
            ),
            log: (Level::INFO, "job handed back to the queue"),
            next: Err(Box::new(RetryAfterError::new(
                "worker shutting down",
                Duration::ZERO,
            ))),
        },
    }
}

impl Step {
    /// The job ended elsewhere (cancelled), or another worker owns it now: nothing to
    /// write, and the task ends.
    fn untouched(level: Level, what: &'static str) -> Step {
        Step {
            record: Record::Untouched,
            log: (level, what),
            next: Ok(()),
        }
    }

    /// The job fails for good, saying why.
    fn give_up(message: String) -> Step {
        Step {
            record: Record::Fail(message.clone()),
            log: (Level::ERROR, "job failed"),
            next: Err(Box::new(AbortError::new(message))),
        }
    }

    /// Writes the record as the policy says, behind `lease`: returns false, writing
    /// nothing, when another worker has taken the job over meanwhile (this one went silent
    /// past its lease between its last checkpoint and now), since the record is that
    /// worker's to write. An unavailable database is waited out: a record left `running`
    /// would keep the coin refused every job for good. Any other database error lets the
    /// queue try again.
    pub(super) async fn record(
        &self,
        ingestor: &Ingestor,
        job: &JobRecord,
        lease: &Lease,
    ) -> Result<bool, BoxDynError> {
        if matches!(self.record, Record::Untouched) {
            return Ok(true);
        }
        patiently("the job's final word", || self.write(ingestor, job, lease))
            .await
            .map_err(retry_later)
    }

    /// One try of [`Step::record`], in one transaction, when the lease is still held.
    async fn write(
        &self,
        ingestor: &Ingestor,
        job: &JobRecord,
        lease: &Lease,
    ) -> sqlx::Result<bool> {
        let mut tx = ingestor.pool.begin().await?;
        if !lease.still_held(&mut tx).await? {
            return Ok(false);
        }
        match &self.record {
            Record::Untouched => {}
            Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                message,
            } => {
                let ending = Ending {
                    status: *status,
                    gap_dates,
                    out_of_plan_days: *out_of_plan_days,
                    message: message.as_deref(),
                };
                ingestion_jobs::finish(&mut *tx, job.id, ending).await?;
            }
            Record::Release(why, message) => {
                ingestion_jobs::release(&mut *tx, job.id, *why, message).await?;
            }
            Record::Fail(message) => fail_record(ingestor, &mut tx, job, message).await?,
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Logs the policy's line, with the job's id and what the record says.
    pub(super) fn log(&self, job_id: uuid::Uuid) {
        let (level, what) = self.log;
        let detail = match &self.record {
            Record::Untouched => String::new(),
            Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                ..
            } => format!(
                "{status}; {} gap day(s), {out_of_plan_days} out of plan",
                gap_dates.len()
            ),
            Record::Release(_, message) | Record::Fail(message) => message.clone(),
        };
        match level {
            tracing::Level::ERROR => tracing::error!(%job_id, %detail, "{what}"),
            tracing::Level::WARN => tracing::warn!(%job_id, %detail, "{what}"),
            _ => tracing::info!(%job_id, %detail, "{what}"),
        }
    }
}

/// Ends the job as failed, with the days of its range still missing, so that a failed
/// job says what it left undone as a finished one does (see [`Step::record`]).
pub(super) async fn fail(
    ingestor: &Ingestor,
    job: &JobRecord,
    lease: &Lease,
    message: &str,
) -> Result<bool, BoxDynError> {
    Step::give_up(message.to_owned())
        .record(ingestor, job, lease)
        .await
}

async fn fail_record(
    ingestor: &Ingestor,
    tx: &mut PgConnection,
    job: &JobRecord,
    message: &str,
) -> sqlx::Result<()> {
    let pool = &ingestor.pool;
    let record = coins::get(pool, job.symbol).await?;
    // From the coin's first day, as a finished job reports.
    let first_day = record.as_ref().and_then(|record| record.coin.first_day);
    let start = job.range.first_day_of(first_day);
    let missing = gaps::missing_days(pool, job.symbol, start, job.range.end()).await?;
    let reach = ingestor.reach.current(pool).await?;
    let (gap_dates, out_of_plan) = reach.split(missing, today_utc());
    let ending = Ending {
        status: JobStatus::Failed,
        gap_dates: &gap_dates,
        out_of_plan_days: out_of_plan.len() as i32,
        message: Some(message),
    };
    // The hours first (of a job that began counting them, as the record now says):
    // whoever follows the job reads it whole once it is failed.
    if let Some(record) = record
        && job_hours::of(pool, job.id).await?.is_some()
    {
        count_hours_left(ingestor, tx, job, &record).await?;
    }
    ingestion_jobs::finish(tx, job.id, ending).await?;
    Ok(())
}

/// A failed job of an hourly coin: the hours of its range still missing and those without
/// trades, counted as a finished job's are (`ingest::job`'s last step), not left at 0.
async fn count_hours_left(
    ingestor: &Ingestor,
    tx: &mut PgConnection,
    job: &JobRecord,
    record: &coins::CoinRecord,
) -> sqlx::Result<()> {
    let pool = &ingestor.pool;
    let fallback = match ingestor.second_source {
        Some(_) => FallbackSource::Coinbase,
        None => FallbackSource::Off,
    };
    let reach = ingestor.reach.current(pool).await?;
    let days = job.range.days_of_hours();
    let expected =
        hourly_coverage::expected_of(pool, record, fallback, reach, days, Utc::now()).await?;
    let missing = match expected {
        Some(hours) => hourly_coverage::missing_hours(pool, job.symbol, hours).await?,
        None => 0,
    };
    let quiet = hours_without_trades::count(pool, job.symbol, HourRange::of_job(job.range)).await?;
    job_hours::finish(tx, job.id, missing, quiet).await
}

/// A database error while recording the outcome: let the queue try the job again.
pub(super) fn retry_later(e: sqlx::Error) -> BoxDynError {
    format!("could not update the job record: {e}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is<E: std::error::Error + 'static>(next: &Result<(), BoxDynError>) -> bool {
        next.as_ref()
            .err()
            .is_some_and(|e| e.downcast_ref::<E>().is_some())
    }

    #[test]
    fn a_transient_failure_is_retried_until_the_last_attempt_then_fails_the_job() {
        let early = policy(Err(JobError::Transient("HTTP 503".into())), 0, 3);
        let Record::Release(Requeue::Retry, message) = &early.record else {
            panic!("not released");
        };
        assert_eq!(
            message,
            "attempt 1 of 3 failed and will be retried: HTTP 503"
        );
        assert!(early.next.is_err());
        assert!(!is::<AbortError>(&early.next) && !is::<RetryAfterError>(&early.next));

        let last = policy(Err(JobError::Transient("HTTP 503.".into())), 2, 3);
        let Record::Fail(message) = &last.record else {
            panic!("not failed");
        };
        assert!(
            message.starts_with("failed after 3 attempts; the last error was: HTTP 503. Submit"),
            "{message}"
        );
        assert!(is::<AbortError>(&last.next));
    }

    #[test]
    fn a_permanent_failure_fails_the_job_at_once_and_a_shutdown_hands_it_back() {
        let permanent = policy(Err(JobError::Permanent("refused".into())), 0, 3);
        assert!(matches!(&permanent.record, Record::Fail(m) if m == "refused"));
        assert!(is::<AbortError>(&permanent.next));
        assert_eq!(permanent.log.0, tracing::Level::ERROR);

        let interrupted = policy(Ok(Outcome::Interrupted), 0, 3);
        assert!(matches!(
            interrupted.record,
            Record::Release(Requeue::HandBack, _)
        ));
        assert!(is::<RetryAfterError>(&interrupted.next));
    }

    #[test]
    fn a_job_that_ended_elsewhere_is_left_as_it_is() {
        for outcome in [Outcome::Cancelled, Outcome::LeaseLost] {
            let step = policy(Ok(outcome), 0, 3);
            assert!(matches!(step.record, Record::Untouched));
            assert!(step.next.is_ok());
        }
        let finished = policy(
            Ok(Outcome::Finished {
                status: JobStatus::Completed,
                gap_dates: vec![],
                out_of_plan_days: 0,
                message: None,
            }),
            0,
            3,
        );
        assert!(matches!(
            finished.record,
            Record::Finish {
                status: JobStatus::Completed,
                ..
            }
        ));
        assert!(finished.next.is_ok());
    }
}
