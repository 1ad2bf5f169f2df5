//! Retention (`JOB_RETENTION_DAYS`) of the project's own tables: which finished jobs,
//! schedule ticks and track-top imports are old enough to go, a small batch at a time, in
//! the caller's transaction. Only finished work is ever picked: a pending or running job,
//! or a running import, never is; stored prices are in other tables and never touched.
//! The queue's rows of the same jobs are deleted beside them by `queue::retention`.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// The advisory lock (a transaction-level one) that lets one process at a time prune:
/// "ph-retn" in ASCII, an arbitrary key no other part of the service uses.
pub const LOCK_KEY: i64 = 0x0070_682d_7265_746e;

/// Takes the pruning lock for the rest of `tx`: false when another process holds it.
pub async fn try_lock(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut **tx)
        .await
}

/// Deletes up to `batch` jobs that finished more than `days` days ago, oldest first from
/// `from` (the latest end of the batch before, so that the index entries of the rows it
/// deleted, dead until vacuumed, are not read again), and returns their ids (for their
/// queue rows) and the latest end among them. Rows another transaction holds are skipped.
pub async fn delete_finished_jobs(
    tx: &mut Transaction<'_, Postgres>,
    days: u32,
    batch: i64,
    from: Option<DateTime<Utc>>,
) -> sqlx::Result<(Vec<Uuid>, Option<DateTime<Utc>>)> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
        "DELETE FROM ingestion_jobs WHERE id IN ( \
             SELECT id FROM ingestion_jobs \
             WHERE status IN ('completed', 'completed_with_gaps', 'failed', 'cancelled') \
               AND completed_at >= coalesce($3, '-infinity'::timestamptz) \
               AND completed_at < now() - make_interval(days => $1) \
             ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, completed_at",
    )
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .bind(batch)
    .bind(from)
    .fetch_all(&mut **tx)
    .await?;
    let latest = rows.iter().filter_map(|(_, at)| *at).max();
    Ok((rows.into_iter().map(|(id, _)| id).collect(), latest))
}

/// What retention deletes whole beside the jobs, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Old {
    /// Schedule ticks acted on more than `days` days ago.
    Ticks,
    /// Track-top imports that ended more than `days` days ago (a running one never).
    Imports,
}

/// Deletes up to `batch` of the `old` rows more than `days` days old; how many. Rows
/// another transaction holds are skipped.
pub async fn delete_old(
    tx: &mut Transaction<'_, Postgres>,
    old: Old,
    days: u32,
    batch: i64,
) -> sqlx::Result<u64> {
    let sql = match old {
        Old::Ticks => {
            "DELETE FROM sync_ticks WHERE tick IN ( \
                 SELECT tick FROM sync_ticks WHERE acted_at < now() - make_interval(days => $1) \
                 ORDER BY tick LIMIT $2 FOR UPDATE SKIP LOCKED)"
        }
        Old::Imports => {
            "DELETE FROM coin_imports WHERE id IN ( \
                 SELECT id FROM coin_imports \
                 WHERE status <> 'running' AND completed_at < now() - make_interval(days => $1) \
                 ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        }
    };
    let deleted = sqlx::query(sql)
        .bind(i32::try_from(days).unwrap_or(i32::MAX))
        .bind(batch)
        .execute(&mut **tx)
        .await?;
    Ok(deleted.rows_affected())
}
