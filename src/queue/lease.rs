//! Who holds a job, read from apalis's tables: the fence of an attempt's checkpoints, and
//! which running jobs a live worker still holds (for the orphan sweep).
//!
//! A worker that went silent past the lease may find its job taken over; checking (and
//! share-locking) the lease in the transaction that writes a window makes sure two
//! workers never both commit the same job's windows. apalis's orphan sweep uses
//! `FOR UPDATE ... SKIP LOCKED`, so it passes over a job while it is being written.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use super::contract::holding_statuses;
use crate::ingest::Fence;

/// A job's queue entry and the worker that took it: the fence the queue hands each
/// attempt it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `apalis.jobs.id`.
    pub task_id: String,
    /// `apalis.jobs.lock_by`: the worker's name.
    pub worker: String,
}

impl Lease {
    /// Whether `self.worker` still holds the job, as last committed, without a lock: the
    /// fence of an attempt's final word. It never waits: when a worker stops, apalis may
    /// leave its own transaction on the entry (the lock of the task just fetched) open and
    /// unpolled until the worker's shutdown timeout, and a `FOR SHARE` would wait for it
    /// (25 s, then the attempt is dropped with its record still `running`). A takeover
    /// between this read and the final word's commit needs this worker silent past its
    /// lease in between.
    pub async fn still_held(&self, conn: &mut PgConnection) -> sqlx::Result<bool> {
        self.read(conn, "").await
    }

    async fn read(&self, conn: &mut PgConnection, lock: &str) -> sqlx::Result<bool> {
        let held: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM apalis.jobs WHERE id = $1 AND lock_by = $2 AND status = ANY($3) {lock}"
        )))
        .bind(&self.task_id)
        .bind(&self.worker)
        .bind(holding_statuses())
        .fetch_optional(conn)
        .await?;
        Ok(held.is_some())
    }
}

impl Fence for Lease {
    /// True, and the queue entry share-locked until the transaction ends, when
    /// `self.worker` still holds the job.
    fn holds<'c>(&'c self, tx: &'c mut PgConnection) -> BoxFuture<'c, sqlx::Result<bool>> {
        Box::pin(self.read(tx, "FOR SHARE"))
    }
}

/// Which of `task_ids` are held by a worker that was seen within `lease`.
pub async fn held_by_live_workers(
    pool: &PgPool,
    task_ids: &[String],
    lease: Duration,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT j.id FROM apalis.jobs j JOIN apalis.workers w ON w.id = j.lock_by \
         WHERE j.id = ANY($1) AND j.status = ANY($3) \
           AND w.last_seen > now() - make_interval(secs => $2)",
    )
    .bind(task_ids)
    .bind(lease.as_secs_f64())
    .bind(holding_statuses())
    .fetch_all(pool)
    .await
}
