//! What a job of an hourly coin knows of its hours, and the final word on them.
//!
//! The coin's `hourly` flag and its product are read when the attempt begins: a coin whose
//! hours were turned off fetches none (its stored hours stay). Its hours come from
//! ([`HourSource`], the rule of `domain::hourly_source`):
//! - its exchange product, when usable: Coinbase's true candles, fetched by the
//!   `hour_windows` step, each beside CoinGecko's point of its hour (the check);
//! - CoinGecko's hourly points otherwise (no product, an unusable one, or
//!   `FALLBACK_SOURCE=off`): built with each CoinGecko window as it is stored, in its
//!   checkpoint, at no extra call. Such a coin's days with missing hours are fetched from
//!   CoinGecko like missing days ([`Run::days_to_fetch`]).
//!
//! Every CoinGecko window of the job keeps its hourly points here, so that the exchange's
//! candles fetched after them are stored beside their check.

use chrono::NaiveDate;

use super::run::patiently;
use super::{Ingestor, JobError, Outcome, Run};
use crate::config::FallbackSource;
use crate::domain::{
    CheckPoint, ExchangeProduct, Hour, HourRange, JobStatus, PriceSource, ProductId, RefusedHour,
    check_points, expected_hours, hours_from_points,
};
use crate::ingest::{HourlyPoints, Window};
use crate::store::ingestion_jobs::JobRecord;
use crate::store::{
    hourly_coins, hourly_coverage, hourly_prices, hours_without_trades, job_check_points,
    job_hours, second_source,
};

/// How many refused candles the final message names; the rest are counted.
const REFUSED_SHOWN: usize = 3;

/// Where a coin's hours come from, as far as the attempt knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HourSource {
    /// Its exchange product's candles.
    Exchange(ProductId),
    /// CoinGecko's points.
    Points,
    /// Its product awaits the check that decides (made by the job, before its first
    /// candle of the second source).
    Undecided,
}

/// The hours of one attempt.
#[derive(Debug)]
pub(super) struct HourWork {
    pub(super) source: HourSource,
    /// CoinGecko's hourly points of the windows this attempt stored.
    pub(super) points: HourlyPoints,
    /// The CoinGecko windows this attempt stored, whose points are in `points`.
    pub(super) asked: Vec<Window>,
    /// Whether this attempt found the product unusable itself: `source` became `Points`
    /// after step 1, which therefore did not ask for the days of missing hours.
    pub(super) found_unusable: bool,
    /// Exchange candles refused, the first few kept to be named.
    pub(super) refused: Vec<RefusedHour>,
    pub(super) refused_count: usize,
    /// Why the exchange gave no hours (down, refusing, garbage), when it did not.
    pub(super) failed: Option<String>,
    /// CoinGecko's points that attempts before this one read (`job_check_points`), by
    /// hour: the check of the exchange candles this one fetches for windows it does not
    /// ask CoinGecko again. Empty on a first attempt.
    pub(super) kept: Vec<(Hour, CheckPoint)>,
}

impl HourWork {
    /// The hours of `job`'s coin, when it keeps them: its source, and its job's hour
    /// counts started (0, not NULL, from now on).
    pub(super) async fn begin(
        ingestor: &Ingestor,
        job: &JobRecord,
    ) -> Result<Option<HourWork>, JobError> {
        let pool = &ingestor.pool;
        let coin = patiently(|| hourly_coins::get(pool, job.symbol)).await?;
        if !coin.is_some_and(|coin| coin.hourly) {
            return Ok(None);
        }
        let mapping = patiently(|| second_source::mapping(pool, job.symbol))
            .await?
            .unwrap_or_default();
        let fallback = match ingestor.second_source {
            Some(_) => FallbackSource::Coinbase,
            None => FallbackSource::Off,
        };
        let source = match mapping.exchange_product(fallback) {
            ExchangeProduct::Usable => mapping
                .usable_product()
                .cloned()
                .map_or(HourSource::Points, HourSource::Exchange),
            ExchangeProduct::Unchecked => HourSource::Undecided,
            ExchangeProduct::None | ExchangeProduct::Unusable => HourSource::Points,
        };
        patiently(|| job_hours::begin(pool, job.id)).await?;
        let kept = if job.attempts > 1 {
            let range = HourRange::of_range(job.range);
            patiently(|| job_check_points::of(pool, job.id, range)).await?
        } else {
            Vec::new()
        };
        Ok(Some(HourWork {
            source,
            points: HourlyPoints::default(),
            asked: Vec::new(),
            found_unusable: false,
            refused: Vec::new(),
            refused_count: 0,
            failed: None,
            kept,
        }))
    }

    /// Counts `refused` candles, keeping the first few to name.
    pub(super) fn note_refused(&mut self, refused: &[RefusedHour]) {
        self.refused_count += refused.len();
        let room = REFUSED_SHOWN.saturating_sub(self.refused.len());
        self.refused.extend(refused.iter().take(room).cloned());
    }
}

impl<S> Run<'_, S> {
    /// Whether this attempt builds the coin's hours from CoinGecko's points.
    pub(super) fn builds_hours_from_points(&self) -> bool {
        self.hours
            .as_ref()
            .is_some_and(|work| work.source == HourSource::Points)
    }

    /// The hours of the job's range (its newest 1461 days, `DateRange::days_of_hours`) the
    /// coin can have now from `source`: the rule coverage in hours follows too
    /// ([`expected_hours`]), so that a job's `hours_missing` and its coin's coverage count
    /// alike.
    fn expected(&self, source: Option<PriceSource>, hours_from: Option<Hour>) -> Option<HourRange> {
        expected_hours(
            &self.coin,
            source,
            hours_from,
            self.reach,
            self.attempt.job.range.days_of_hours(),
            self.began,
        )
    }

    /// The hours CoinGecko's points can build: the complete hours of the days the plan
    /// serves, from the first day CoinGecko has hourly points for.
    pub(super) fn hours_from_points_expected(&self) -> Option<HourRange> {
        self.expected(Some(PriceSource::CoinGecko), None)
    }

    /// The hours the exchange can have: the complete hours of the range from the product's
    /// first candle, as far as it is known (hourly, or daily: no hour before the first day).
    pub(super) async fn exchange_hours_expected(&self) -> Result<Option<HourRange>, JobError> {
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let hours_from = patiently(|| hourly_coins::get(pool, symbol))
            .await?
            .and_then(|coin| coin.coinbase_hours_from);
        let days_from = patiently(|| second_source::mapping(pool, symbol))
            .await?
            .and_then(|mapping| mapping.candles_from)
            .map(Hour::first_of);
        Ok(self.expected(Some(PriceSource::Coinbase), hours_from.max(days_from)))
    }

    /// The days of `from..=to` (served by the plan) whose hours CoinGecko's points should
    /// build and are missing: a coin without a usable product fetches them like missing
    /// days.
    pub(super) async fn days_of_missing_hours(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, JobError> {
        let Some(expected) = self
            .hours_from_points_expected()
            .and_then(|hours| HourRange::of_days(from, to)?.intersect(hours))
        else {
            return Ok(Vec::new());
        };
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        patiently(|| hourly_coverage::days_of_missing_hours(pool, symbol, expected)).await
    }
}

impl<S: Sync> Run<'_, S> {
    /// Builds the hours of an hourly coin whose product the job found unusable from the
    /// points its CoinGecko windows brought, in one checkpoint. Nothing when none did.
    pub(super) async fn hours_from_kept_points(&mut self) -> Result<Option<Outcome>, JobError> {
        let (Some(work), Some(range)) = (&self.hours, self.hours_from_points_expected()) else {
            return Ok(None);
        };
        let points = &work.points;
        let built = hours_from_points(&points.prices, &points.volumes, range, points.judged_at());
        if built.candles.is_empty() {
            return Ok(None);
        }
        self.count_planned(1).await?;
        let rows = super::hour_windows::HourRows::built(built.candles, self.ingestor.hour_check);
        match self.ask_and_store(async { Ok(rows) }).await? {
            super::window::WindowEnd::Stop(outcome) => Ok(Some(outcome)),
            _ => Ok(None),
        }
    }

    /// The final word on the hours, added to `outcome`: the job's hour counts recorded, and
    /// hours still missing make it `completed_with_gaps`, saying why.
    pub(super) async fn finish_hours(&self, outcome: Outcome) -> Result<Outcome, JobError> {
        let Some(work) = &self.hours else {
            return Ok(outcome);
        };
        let expected = match &work.source {
            HourSource::Exchange(_) => self.exchange_hours_expected().await?,
            HourSource::Points => self.hours_from_points_expected(),
            HourSource::Undecided => self.expected(None, None),
        };
        let (pool, job) = (&self.ingestor.pool, self.attempt.job);
        let missing = match expected {
            Some(hours) => {
                patiently(|| hourly_coverage::missing_hours(pool, job.symbol, hours)).await?
            }
            None => 0,
        };
        let quiet = patiently(|| {
            hours_without_trades::count(pool, job.symbol, HourRange::of_job(job.range))
        })
        .await?;
        patiently(|| job_hours::finish(pool, job.id, missing, quiet)).await?;
        patiently(|| job_check_points::forget(pool, job.id)).await?;
        // A CoinGecko window stored after the candles it checks (a later job's) checks them now.
        if matches!(work.source, HourSource::Exchange(_)) && !work.points.is_empty() {
            let points = check_points(&work.points.prices, HourRange::of_range(job.range));
            let rule = self.ingestor.hour_check;
            patiently(|| async {
                let mut tx = pool.begin().await?;
                hourly_prices::attach_checks(&mut tx, job.symbol, &points, rule).await?;
                tx.commit().await
            })
            .await?;
        }
        Ok(with_hours(outcome, missing, work))
    }
}

/// `outcome` with what is said of the hours: `missing` hours make a finished job
/// `completed_with_gaps`, with a sentence on why.
fn with_hours(outcome: Outcome, missing: i64, work: &HourWork) -> Outcome {
    let Outcome::Finished {
        status,
        gap_dates,
        out_of_plan_days,
        message,
    } = outcome
    else {
        return outcome;
    };
    if missing == 0 && work.refused_count == 0 {
        return Outcome::Finished {
            status,
            gap_dates,
            out_of_plan_days,
            message,
        };
    }
    let said = super::messages::hours_message(missing, work);
    Outcome::Finished {
        status: if missing > 0 {
            JobStatus::CompletedWithGaps
        } else {
            status
        },
        gap_dates,
        out_of_plan_days,
        message: Some(match message {
            Some(days) => format!("{days} {said}"),
            None => said,
        }),
    }
}
