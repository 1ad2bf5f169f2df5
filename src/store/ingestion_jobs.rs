//! `ingestion_jobs`: the user-facing record of each job — what it was asked, how far it
//! got, how it ended. The queue's own bookkeeping lives in apalis's schema; this table is
//! what the API and the CLI report, so every transition of a job is written here.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Executor, FromRow, PgExecutor, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{DateRange, JobStatus, Symbol, Trigger};

/// `error_message` is `VARCHAR(2000)`.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

const COLUMNS: &str = "id, status, symbol, start_date, end_date, force, trigger, created_at, updated_at, started_at, \
     completed_at, records_fetched, gaps_detected, gap_dates, out_of_plan_days, error_message, attempts, chunks_done, \
     chunks_total, fallback_days, hours_fetched, hours_missing, hours_without_trades, failures, handbacks";

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct JobRecord {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    #[sqlx(try_from = "String")]
    pub symbol: Symbol,
    /// `start_date` and `end_date`.
    #[sqlx(flatten)]
    pub range: DateRange,
    pub force: bool,
    /// Who asked for it.
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Daily rows received from CoinGecko so far, over all windows.
    pub records_fetched: i32,
    pub gaps_detected: i32,
    pub gap_dates: Vec<NaiveDate>,
    /// Days of the range older than the plan's reach, not stored, not asked for.
    pub out_of_plan_days: i32,
    pub error_message: Option<String>,
    /// Attempts started so far, takeovers after a crash included.
    pub attempts: i32,
    pub chunks_done: i32,
    pub chunks_total: i32,
    /// Days this job stored from the second source.
    pub fallback_days: i32,
    /// Hours this job stored; `None` for a job of a coin that keeps no hours (the three
    /// are written together, see `store::job_hours`).
    pub hours_fetched: Option<i32>,
    /// Hours of its range still missing when it ended (0 while it runs).
    pub hours_missing: Option<i32>,
    /// Hours of its range recorded as without trades when it ended (0 while it runs).
    pub hours_without_trades: Option<i32>,
    /// Attempts that failed transiently and were retried; `JOB_MAX_ATTEMPTS` bounds them.
    pub failures: i32,
    /// Times a worker shutting down handed the job back; they cost no attempt.
    pub handbacks: i32,
}

/// A job's range as stored: `start_date` and `end_date`, in order (the table enforces it
/// too).
impl FromRow<'_, PgRow> for DateRange {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let (start, end) = (row.try_get("start_date")?, row.try_get("end_date")?);
        DateRange::stored(start, end).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "end_date".into(),
            source: "end before start".into(),
        })
    }
}

/// What a submission asks for, already validated.
#[derive(Debug, Clone, Copy)]
pub struct NewJob {
    pub id: Uuid,
    pub symbol: Symbol,
    pub range: DateRange,
    pub force: bool,
    pub trigger: Trigger,
}

/// What [`insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insertion {
    /// The job is recorded, pending.
    Inserted(JobRecord),
    /// Another job of the coin is pending or running; nothing was written.
    Busy { active_job_id: Uuid },
    /// Another job of the coin was active when the row was refused, but had ended by the
    /// time its id was read: nothing was written, and submitting again may succeed.
    LostRace,
}

/// Inserts a pending job, unless another job of the same coin is pending or running:
/// then nothing is written and the active job is named. The decision is the database's
/// (the partial unique index `ingestion_jobs_one_active_per_symbol`), so it holds across
/// processes.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, job: NewJob) -> sqlx::Result<Insertion> {
    let inserted: Option<JobRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, force, trigger) \
         VALUES ($1, 'pending', $2, $3, $4, $5, $6) \
         ON CONFLICT (symbol) WHERE status IN ('pending', 'running') DO NOTHING \
         RETURNING {COLUMNS}"
    )))
    .bind(job.id)
    .bind(job.symbol.as_str())
    .bind(job.range.start())
    .bind(job.range.end())
    .bind(job.force)
    .bind(job.trigger.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(record) = inserted {
        return Ok(Insertion::Inserted(record));
    }
    Ok(match active_job_id(&mut **tx, job.symbol).await? {
        Some(active_job_id) => Insertion::Busy { active_job_id },
        None => Insertion::LostRace,
    })
}

/// Records `jobs` as pending in one statement, except those whose coin has an active job
/// (the one-active-job rule): the records of those inserted, in no particular order.
pub async fn insert_many(
    tx: &mut Transaction<'_, Postgres>,
    jobs: &[NewJob],
) -> sqlx::Result<Vec<JobRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, force, trigger) \
         SELECT id, 'pending', symbol, start_date, end_date, force, trigger \
         FROM unnest($1::uuid[], $2::text[], $3::date[], $4::date[], $5::boolean[], $6::text[]) \
             AS j(id, symbol, start_date, end_date, force, trigger) \
         ON CONFLICT (symbol) WHERE status IN ('pending', 'running') DO NOTHING \
         RETURNING {COLUMNS}"
    )))
    .bind(jobs.iter().map(|job| job.id).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|job| job.symbol.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|job| job.range.start()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|job| job.range.end()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|job| job.force).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|job| job.trigger.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await
}

/// The pending or running job of each of `symbols` that has one: one query for a tick's
/// batch. Written as one look-up per symbol in the partial unique index of active jobs
/// (`ingestion_jobs_one_active_per_symbol`; `LIMIT 1` keeps the planner from flattening
/// it): `symbol = ANY($1) AND status IN (...)` was planned on the index of `status`, which
/// the statistics say holds almost no active job, so each batch walked every job a tick
/// had queued so far (and the dead entries of jobs finished since the last vacuum), and a
/// tick of 10,000 coins cost 0.22 ms a coin against 0.08 at 1,000 (BENCHMARKS.md, row 16).
pub async fn active_jobs_of(
    pool: &PgPool,
    symbols: &[Symbol],
) -> sqlx::Result<Vec<(Symbol, Uuid)>> {
    let symbols: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
    let rows: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT s.symbol, j.id FROM unnest($1::text[]) AS s(symbol) \
         CROSS JOIN LATERAL (SELECT id FROM ingestion_jobs \
             WHERE ingestion_jobs.symbol = s.symbol AND status IN ('pending', 'running') \
             LIMIT 1) AS j",
    )
    .bind(symbols)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(symbol, id)| Some((Symbol::parse(&symbol).ok()?, id)))
        .collect())
}

/// The pending or running job of `symbol`, if any.
pub async fn active_job_id<'e, E: Executor<'e, Database = Postgres>>(
    executor: E,
    symbol: Symbol,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM ingestion_jobs WHERE symbol = $1 AND status IN ('pending', 'running') LIMIT 1",
    )
    .bind(symbol.as_str())
    .fetch_optional(executor)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<JobRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ingestion_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Newest first; `status` and `symbol` narrow when given. A coin's jobs are read from
/// its own index (`ingestion_jobs_by_coin`), so their cost does not grow with the other
/// coins' jobs: a statement of their own, since a plan for "any coin or this one" could
/// not use that index.
pub async fn list(
    pool: &PgPool,
    status: Option<JobStatus>,
    symbol: Option<Symbol>,
    limit: i64,
) -> sqlx::Result<Vec<JobRecord>> {
    let of_coin = if symbol.is_some() {
        "symbol = $3"
    } else {
        "$3::text IS NULL"
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM ingestion_jobs WHERE {of_coin} AND ($1::text IS NULL OR status = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(status.map(JobStatus::as_str))
    .bind(limit)
    .bind(symbol.as_ref().map(Symbol::as_str))
    .fetch_all(pool)
    .await
}

/// Marks a job running for attempt number `attempt`. Returns `None` when the job is not
/// pending or running any more (cancelled, finished) or does not exist.
pub async fn begin_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
) -> sqlx::Result<Option<JobRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ingestion_jobs SET status = 'running', attempts = GREATEST(attempts + 1, $2), \
             started_at = COALESCE(started_at, now()), updated_at = now() \
         WHERE id = $1 AND status IN ('pending', 'running') RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(attempt)
    .fetch_optional(pool)
    .await
}

/// Records how many windows this attempt will fetch on top of those already done.
pub async fn set_chunks_total(pool: &PgPool, id: Uuid, chunks_total: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE ingestion_jobs SET chunks_total = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(chunks_total)
        .execute(pool)
        .await?;
    Ok(())
}

/// The checkpoint: one more window done and its rows counted, in the caller's
/// transaction, the same one that stored the rows.
pub async fn checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    records: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE ingestion_jobs SET chunks_done = chunks_done + 1, records_fetched = records_fetched + $2, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(records)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether the job was cancelled (or otherwise ended) behind the worker's back.
pub async fn is_still_active(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM ingestion_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(matches!(status.as_deref(), Some("pending" | "running")))
}

/// The jobs of `symbol`, `except` this one, cancelled within `within`: a worker may still
/// be fetching the window it had begun when the cancel came. Read by the coin's index.
pub async fn cancelled_lately(
    pool: &PgPool,
    symbol: Symbol,
    except: Uuid,
    within: std::time::Duration,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM ingestion_jobs WHERE symbol = $1 AND id <> $2 AND status = 'cancelled' \
         AND completed_at > now() - make_interval(secs => $3)",
    )
    .bind(symbol.as_str())
    .bind(except)
    .bind(within.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// How a job ended, as its record keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    pub status: JobStatus,
    /// Days of the range the plan serves that are still missing.
    pub gap_dates: &'a [NaiveDate],
    /// Days of the range older than the plan's reach and not stored.
    pub out_of_plan_days: i32,
    pub message: Option<&'a str>,
}

/// Ends a job that is still active. A job cancelled meanwhile keeps its `cancelled`.
/// Returns whether the row changed.
pub async fn finish(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    ending: Ending<'_>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE ingestion_jobs SET status = $2, gaps_detected = $3, gap_dates = $4, error_message = $5, \
             out_of_plan_days = $6, completed_at = now(), updated_at = now() \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .bind(ending.status.as_str())
    .bind(ending.gap_dates.len() as i32)
    .bind(ending.gap_dates)
    .bind(ending.message.map(truncate_message))
    .bind(ending.out_of_plan_days)
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Why a job goes back to the queue's care, counted apart (`failures`, `handbacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The attempt failed transiently and will be retried.
    Retry,
    /// A worker shutting down handed it back.
    HandBack,
}

/// Hands an active job back to the queue's care: `pending`, with the reason it stopped,
/// counted as `why`.
pub async fn release(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    why: Requeue,
    message: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE ingestion_jobs SET status = 'pending', error_message = $2, updated_at = now(), \
             failures = failures + $3, handbacks = handbacks + $4 \
         WHERE id = $1 AND status IN ('pending', 'running')",
    )
    .bind(id)
    .bind(truncate_message(message))
    .bind(i32::from(why == Requeue::Retry))
    .bind(i32::from(why == Requeue::HandBack))
    .execute(executor)
    .await?;
    Ok(())
}

/// Jobs marked running whose record has not moved for `quiet`.
pub async fn running_and_quiet(
    pool: &PgPool,
    quiet: std::time::Duration,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM ingestion_jobs WHERE status = 'running' AND updated_at < now() - make_interval(secs => $1)",
    )
    .bind(quiet.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Sets running jobs back to pending, when they are still running and still quiet.
pub async fn release_quiet(
    pool: &PgPool,
    ids: &[Uuid],
    quiet: std::time::Duration,
    message: &str,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "UPDATE ingestion_jobs SET status = 'pending', error_message = $3, updated_at = now() \
         WHERE id = ANY($1) AND status = 'running' AND updated_at < now() - make_interval(secs => $2)",
    )
    .bind(ids)
    .bind(quiet.as_secs_f64())
    .bind(truncate_message(message))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// What cancelling did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    Now(JobRecord),
    AlreadyFinished(JobRecord),
    NotFound,
}

/// Cancels a pending or running job. A pending job will never run; a running one stops
/// after its current window.
pub async fn cancel(pool: &PgPool, id: Uuid) -> sqlx::Result<Cancelled> {
    let cancelled: Option<JobRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ingestion_jobs SET status = 'cancelled', completed_at = now(), updated_at = now(), \
             error_message = 'cancelled by request' \
         WHERE id = $1 AND status IN ('pending', 'running') RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(match cancelled {
        Some(record) => Cancelled::Now(record),
        None => match get(pool, id).await? {
            Some(record) => Cancelled::AlreadyFinished(record),
            None => Cancelled::NotFound,
        },
    })
}

/// The channel on which every change of a job is announced (payload: the job's id).
pub const CHANGES_CHANNEL: &str = "ingestion_jobs";

/// Follows one job's changes as they are committed, without polling.
pub struct JobFollower {
    listener: sqlx::postgres::PgListener,
    pool: PgPool,
    id: Uuid,
}

impl JobFollower {
    /// Starts listening before the first read, so no change can slip between the two.
    pub async fn new(pool: &PgPool, id: Uuid) -> sqlx::Result<Self> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(JobFollower {
            listener,
            pool: pool.clone(),
            id,
        })
    }

    /// The job as it is now.
    pub async fn current(&self) -> sqlx::Result<Option<JobRecord>> {
        get(&self.pool, self.id).await
    }

    /// Waits for the next change of this job and returns it. Notifications sent while
    /// the listener was reconnecting are lost, so after a quiet second the job is read
    /// again anyway.
    pub async fn next_change(&mut self) -> sqlx::Result<Option<JobRecord>> {
        const QUIET: std::time::Duration = std::time::Duration::from_secs(1);
        loop {
            match tokio::time::timeout(QUIET, self.listener.recv()).await {
                Ok(Ok(notification)) if notification.payload() != self.id.to_string() => continue,
                Ok(Ok(_)) | Err(_) => return self.current().await,
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Waits until the job has ended, and returns it.
    pub async fn until_finished(&mut self) -> sqlx::Result<Option<JobRecord>> {
        let mut job = self.current().await?;
        while let Some(record) = &job {
            if record.status.is_terminal() {
                break;
            }
            job = self.next_change().await?;
        }
        Ok(job)
    }
}

/// Cuts a message to what the column holds, on a character boundary, with any NUL (which
/// PostgreSQL's text refuses, so that the record could never be written) shown as `�`.
pub fn truncate_message(message: &str) -> String {
    let message = &message.replace('\0', "\u{FFFD}");
    match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        None => message.to_owned(),
        Some((cut, _)) => {
            let ellipsis = '…';
            let keep = message[..cut]
                .char_indices()
                .nth(MAX_ERROR_MESSAGE_CHARS - 1)
                .map_or(cut, |(i, _)| i);
            format!("{}{ellipsis}", &message[..keep])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_the_column_on_a_character_boundary() {
        let message = "é".repeat(2500);
        let cut = truncate_message(&message);
        assert_eq!(cut.chars().count(), MAX_ERROR_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_message("short"), "short");
    }
}
