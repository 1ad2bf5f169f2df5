//! The checkpoint: a window's rows and the job's progress in one transaction, so that a
//! crash leaves both or neither, behind the fence that keeps two workers from both
//! writing the same job.

use std::future::Future;

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::Attempt;
use crate::domain;
use crate::ingest::DailyCandles;
use crate::store::{daily_prices, ingestion_jobs, ingestion_jobs::JobRecord, second_source};

/// Whether an attempt still owns its job, asked inside each checkpoint's transaction. A
/// worker silent past its lease may find its job taken over; the fence, checked and held
/// in the transaction that writes, makes sure that two workers never both commit the same
/// job's windows. The queue hands each attempt its lease as the fence (`queue::lease`);
/// the job knows nothing of how the lease is kept.
pub trait Fence: Send + Sync {
    /// True, and held until `tx` ends, while the attempt still owns its job.
    fn holds<'c>(&'c self, tx: &'c mut PgConnection) -> BoxFuture<'c, sqlx::Result<bool>>;
}

/// What a window stores with its checkpoint: a step's answer, written its way.
pub(super) trait Rows: Send + Sync {
    /// The rows the source answered with, counted into the job's `records_fetched`.
    fn fetched(&self) -> usize;

    /// Writes them in the checkpoint's transaction; returns how many rows were written.
    fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &JobRecord,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
}

/// Daily candles, marked with the source they came from; the days the second source
/// wrote are counted in the job's `fallback_days`.
pub(super) struct DailyRows {
    pub(super) origin: domain::PriceSource,
    pub(super) built: DailyCandles,
}

impl Rows for DailyRows {
    fn fetched(&self) -> usize {
        self.built.candles.len()
    }

    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &JobRecord,
    ) -> sqlx::Result<u64> {
        let candles = &self.built.candles;
        let written =
            daily_prices::upsert_from(tx, job.symbol, self.origin, candles, job.force).await?;
        if self.origin == domain::PriceSource::Coinbase && written > 0 {
            second_source::add_fallback_days(tx, job.id, written as i32).await?;
        }
        Ok(written)
    }
}

/// The checkpoint transaction: `rows` and the job's progress. `None` when the attempt no
/// longer holds its job: the fence is checked, and held, inside the same transaction.
pub(super) async fn checkpoint(
    pool: &PgPool,
    attempt: &Attempt<'_>,
    rows: &impl Rows,
) -> sqlx::Result<Option<u64>> {
    let job = attempt.job;
    let mut tx = pool.begin().await?;
    if let Some(fence) = attempt.fence
        && !fence.holds(&mut tx).await?
    {
        return Ok(None);
    }
    let written = rows.write(&mut tx, job).await?;
    ingestion_jobs::checkpoint(&mut tx, job.id, rows.fetched() as i32).await?;
    tx.commit().await?;
    Ok(Some(written))
}
