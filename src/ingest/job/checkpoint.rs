//! The checkpoint: a window's rows and the job's progress in one transaction, so that a
//! crash leaves both or neither, behind the fence that keeps two workers from both
//! writing the same job.

use std::future::Future;

use chrono::NaiveDate;
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::Attempt;
use crate::domain::{self, DisputeRule, HourRange, check_points, hours_from_points};
use crate::ingest::DailyCandles;
use crate::store::{
    daily_prices, empty_days, hourly_prices, ingestion_jobs, ingestion_jobs::JobRecord,
    job_check_points, job_hours, second_source,
};

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
    /// The window's days CoinGecko's answer made no candle of (no point, or too few), long
    /// enough after they ended to be holes in its data ([`empty_days`]).
    pub(super) empty: Vec<NaiveDate>,
    /// For a CoinGecko window of an hourly coin: what its hourly points do to its hours.
    pub(super) hours: Option<WindowHours>,
}

/// What a CoinGecko window's hourly points do to an hourly coin's hours, in the window's
/// checkpoint: check the exchange candles stored for them, or, for a coin without a usable
/// product, become its hours.
#[derive(Debug, Clone, Copy)]
pub(super) struct WindowHours {
    /// The window's hours.
    pub(super) hours: HourRange,
    /// Build the coin's hours from the points (it has no usable exchange product).
    pub(super) build: bool,
    pub(super) rule: DisputeRule,
}

impl WindowHours {
    /// Checks the stored exchange candles of the window's hours with its points, or builds
    /// the hours from them; returns how many hours were stored.
    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &JobRecord,
        built: &DailyCandles,
    ) -> sqlx::Result<u64> {
        let points = &built.hourly_points;
        if points.is_empty() {
            return Ok(0);
        }
        if !self.build {
            let checks = check_points(&points.prices, self.hours);
            hourly_prices::attach_checks(tx, job.symbol, &checks, self.rule).await?;
            // For the candles fetched after this window, by this attempt or one resuming it.
            job_check_points::keep(tx, job.id, &checks).await?;
            return Ok(0);
        }
        let hours = hours_from_points(
            &points.prices,
            &points.volumes,
            self.hours,
            points.judged_at(),
        );
        let written =
            hourly_prices::upsert(tx, job.symbol, &hours.candles, job.force, self.rule).await?;
        job_hours::add_fetched(
            &mut **tx,
            job.id,
            i32::try_from(written).unwrap_or(i32::MAX),
        )
        .await?;
        Ok(written)
    }
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
        empty_days::note(tx, job.symbol, &self.empty).await?;
        if let Some(hours) = &self.hours {
            hours.write(tx, job, &self.built).await?;
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
