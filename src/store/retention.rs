//! Retention (`JOB_RETENTION_DAYS`) of the project's own tables: which finished jobs,
//! schedule ticks and track-top imports are old enough to go, a small batch at a time, in
//! the caller's transaction. Only finished work is ever picked: a pending or running job,
//! or a running import, never is; stored prices are in other tables and never touched.
//! The queue's rows of the same jobs are deleted beside them by `queue::retention`.

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

/// Deletes up to `batch` jobs that finished more than `days` days ago, oldest first, and
/// returns their ids (for their queue rows). Rows another transaction holds are skipped.
pub async fn delete_finished_jobs(
    tx: &mut Transaction<'_, Postgres>,
    days: u32,
    batch: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "DELETE FROM ingestion_jobs WHERE id IN ( \
             SELECT id FROM ingestion_jobs \
             WHERE status IN ('completed', 'completed_with_gaps', 'failed', 'cancelled') \
               AND completed_at < now() - make_interval(days => $1) \
             ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .bind(batch)
    .fetch_all(&mut **tx)
    .await
}

/// Deletes up to `batch` schedule ticks acted on more than `days` days ago; how many.
pub async fn delete_old_ticks(
    tx: &mut Transaction<'_, Postgres>,
    days: u32,
    batch: i64,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM sync_ticks WHERE tick IN ( \
             SELECT tick FROM sync_ticks WHERE acted_at < now() - make_interval(days => $1) \
             ORDER BY tick LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .bind(batch)
    .execute(&mut **tx)
    .await?;
    Ok(deleted.rows_affected())
}

/// Deletes up to `batch` track-top imports that ended more than `days` days ago; how many.
pub async fn delete_old_imports(
    tx: &mut Transaction<'_, Postgres>,
    days: u32,
    batch: i64,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM coin_imports WHERE id IN ( \
             SELECT id FROM coin_imports \
             WHERE status <> 'running' AND completed_at < now() - make_interval(days => $1) \
             ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .bind(batch)
    .execute(&mut **tx)
    .await?;
    Ok(deleted.rows_affected())
}
