//! Retention (`JOB_RETENTION_DAYS`): every long-running process prunes, but one at a time
//! (a transaction-level advisory lock, `store::retention::LOCK_KEY`), in small batches of
//! short transactions with a pause between them, so that the API and the worker never
//! wait on it for long. Each batch deletes finished jobs with their queue rows (here,
//! because this is the home of what knows apalis), then old ticks and imports. An active
//! job is never picked; prices are never touched.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{QUEUE, task_id};
use crate::shutdown::Shutdown;
use crate::store::{retention, stats};

/// Rows of each table one transaction deletes at most: a few milliseconds of locks.
pub const BATCH: i64 = 500;

/// The pause between two batches, so that a long first pruning leaves the database to the
/// API and the worker most of the time.
const PAUSE: Duration = Duration::from_millis(20);

/// How often a process looks for work to prune, after the first look at start.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// What a pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub ticks: u64,
    pub imports: u64,
    /// Batches run.
    pub batches: u64,
    /// False when another process held the lock: it prunes meanwhile.
    pub locked: bool,
}

/// Prunes at start and then every hour until `shutdown` (`None` days: keeps everything),
/// and each time folds the jobs' status counts (`store::stats::compact_job_counts`).
pub async fn run_retention(pool: PgPool, days: Option<u32>, shutdown: Shutdown) {
    if days.is_none() {
        tracing::info!(
            "JOB_RETENTION_DAYS is 0: finished jobs, ticks and imports are kept forever"
        );
    }
    loop {
        if let Err(e) = stats::compact_job_counts(&pool).await {
            tracing::warn!(error = %e, "could not fold the jobs' status counts; trying again later");
        }
        if let Some(days) = days {
            prune_logged(&pool, days, &shutdown).await;
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.recv() => return,
        }
    }
}

/// One pruning, its outcome logged.
async fn prune_logged(pool: &PgPool, days: u32, shutdown: &Shutdown) {
    let began = Instant::now();
    match prune(pool, days, BATCH, shutdown).await {
        Ok(pruned) if pruned.jobs + pruned.ticks + pruned.imports > 0 => {
            tracing::info!(
                days,
                jobs = pruned.jobs,
                ticks = pruned.ticks,
                imports = pruned.imports,
                batches = pruned.batches,
                took_ms = began.elapsed().as_millis() as u64,
                "deleted finished work older than JOB_RETENTION_DAYS"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not prune finished work; trying again later"),
    }
}

/// Deletes, `batch` rows of each table at a time, every finished job (with its queue row),
/// tick and import that ended more than `days` days ago, unless another process is pruning
/// (then it returns at once, `locked` false). Stops between two batches when `shutdown` is
/// raised.
pub async fn prune(
    pool: &PgPool,
    days: u32,
    batch: i64,
    shutdown: &Shutdown,
) -> sqlx::Result<Pruned> {
    let mut pruned = Pruned {
        locked: true,
        ..Pruned::default()
    };
    let mut from = None;
    while !shutdown.is_shutdown() {
        let Some((jobs, ticks, imports)) = one_batch(pool, days, batch, &mut from).await? else {
            pruned.locked = pruned.batches > 0;
            return Ok(pruned);
        };
        pruned.batches += 1;
        pruned.jobs += jobs;
        pruned.ticks += ticks;
        pruned.imports += imports;
        if jobs.max(ticks).max(imports) < batch.max(1) as u64 {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(pruned)
}

/// One batch in one transaction under the lock: `None` when another process holds it.
async fn one_batch(
    pool: &PgPool,
    days: u32,
    batch: i64,
    from: &mut Option<DateTime<Utc>>,
) -> sqlx::Result<Option<(u64, u64, u64)>> {
    let mut tx = pool.begin().await?;
    if !retention::try_lock(&mut tx).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let (jobs, latest) = retention::delete_finished_jobs(&mut tx, days, batch, *from).await?;
    let task_ids: Vec<String> = jobs.iter().map(|id| task_id(*id).to_string()).collect();
    sqlx::query("DELETE FROM apalis.jobs WHERE id = ANY($1) AND job_type = $2")
        .bind(&task_ids)
        .bind(QUEUE)
        .execute(&mut *tx)
        .await?;
    let ticks = retention::delete_old(&mut tx, retention::Old::Ticks, days, batch).await?;
    let imports = retention::delete_old(&mut tx, retention::Old::Imports, days, batch).await?;
    tx.commit().await?;
    *from = latest.or(*from);
    Ok(Some((jobs.len() as u64, ticks, imports)))
}
