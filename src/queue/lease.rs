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

impl Fence for Lease {
    /// True, and the queue entry share-locked until the transaction ends, when
    /// `self.worker` still holds the job.
    fn holds<'c>(&'c self, tx: &'c mut PgConnection) -> BoxFuture<'c, sqlx::Result<bool>> {
        Box::pin(async move {
            let held: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM apalis.jobs WHERE id = $1 AND lock_by = $2 AND status = ANY($3) FOR SHARE",
            )
            .bind(&self.task_id)
            .bind(&self.worker)
            .bind(holding_statuses())
            .fetch_optional(tx)
            .await?;
            Ok(held.is_some())
        })
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
