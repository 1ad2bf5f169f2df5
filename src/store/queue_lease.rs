//! The one place outside the queue module that reads apalis's table: whether a worker
//! still holds a job. A worker that went silent past the lease may find its job taken
//! over; checking (and share-locking) the lease in the transaction that writes a window
//! makes sure two workers never both commit the same job's windows. apalis's orphan sweep
//! uses `FOR UPDATE ... SKIP LOCKED`, so it passes over a job while it is being written.

use sqlx::{Postgres, Transaction};

/// A job's queue entry and the worker that took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `apalis.jobs.id`.
    pub task_id: String,
    /// `apalis.jobs.lock_by`: the worker's name.
    pub worker: String,
}

/// True, and the queue entry share-locked until the transaction ends, when `lease.worker`
/// still holds the job.
pub async fn hold(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> sqlx::Result<bool> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM apalis.jobs WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Running') FOR SHARE",
    )
    .bind(&lease.task_id)
    .bind(&lease.worker)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(held.is_some())
}

/// Which of `task_ids` are held by a worker that was seen within `lease`.
pub async fn held_by_live_workers(
    pool: &sqlx::PgPool,
    task_ids: &[String],
    lease: std::time::Duration,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT j.id FROM apalis.jobs j JOIN apalis.workers w ON w.id = j.lock_by \
         WHERE j.id = ANY($1) AND j.status IN ('Queued', 'Running') \
           AND w.last_seen > now() - make_interval(secs => $2)",
    )
    .bind(task_ids)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}
