//! The second source's part of a job that does not depend on how the job is run: its
//! settings ([`SecondSource`]), the windows of out-of-plan days, the check of a coin's
//! mapping before its first second-source row is stored, and the guess of a new coin's
//! product at registration.

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::coinbase::{CandleWindow, CoinbaseClient, CoinbaseError, MAX_CANDLES_PER_CALL};
use crate::domain::{
    DEVIATION_SAMPLE_DAYS, Deviation, MappingVerdict, PriceSource, ProductId, Symbol,
    judge_mapping, median_deviation,
};
use crate::store::second_source;

/// The second source as a job uses it (`FALLBACK_SOURCE=coinbase`).
#[derive(Debug, Clone)]
pub struct SecondSource {
    /// Coinbase Exchange's client, with its own call budget.
    pub client: CoinbaseClient,
    /// `FALLBACK_MAX_DEVIATION_PERCENT`: a mapping whose closes differ more is not used.
    pub max_deviation_percent: Decimal,
}

/// How many days without a candle at the start of a job's oldest window teach where a
/// product's candles begin. A listed product rarely goes a day without a trade and never
/// a week; fewer than this is taken as quiet days, so that one of them can never hide the
/// product's older history from later jobs.
pub const CANDLES_BEGIN_MIN_EMPTY_DAYS: i64 = 7;

/// The fewest candle windows that cover `days` (the out-of-plan days a job misses, in any
/// order), oldest first, leaving out the days before `candles_from` (where the product is
/// known to have no candle). Each window starts at a missing day and reaches as far as a
/// call allows (300 days) or to the last missing day it can hold, so stored days between
/// runs cost no extra call (their rows are not replaced: see `store::daily_prices`).
pub fn fallback_windows(
    days: impl IntoIterator<Item = NaiveDate>,
    candles_from: Option<NaiveDate>,
) -> Vec<CandleWindow> {
    let mut days: Vec<NaiveDate> = days
        .into_iter()
        .filter(|day| candles_from.is_none_or(|from| *day >= from))
        .collect();
    days.sort_unstable();
    days.dedup();
    let mut windows = Vec::new();
    let mut rest = days.as_slice();
    while let Some(first) = rest.first().copied() {
        let reach = first
            .checked_add_days(Days::new(u64::from(MAX_CANDLES_PER_CALL) - 1))
            .unwrap_or(NaiveDate::MAX);
        let held = rest.partition_point(|day| *day <= reach);
        let last = rest[held - 1];
        windows.push(CandleWindow::new(first, last).expect("within 300 days of its first"));
        rest = &rest[held..];
    }
    windows
}

/// Why a mapping check ended without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The second source did not answer usably; nothing was recorded, a later job checks again.
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
    #[error("while checking the second source's mapping: {0}")]
    Database(#[from] sqlx::Error),
}

/// Checks `product` for `symbol`: the median relative difference of Coinbase's closes
/// from CoinGecko's stored (final) closes on the earliest [`DEVIATION_SAMPLE_DAYS`] days
/// from `plan_first_day` on, judged against `max_percent` and recorded on the coin. When
/// Coinbase has no candle on any of those days (a product listed since, or halted then),
/// CoinGecko's latest final days are compared instead, so that a young product is judged
/// on days it has rather than found unusable for good. Two Coinbase calls at most; none,
/// and `Ok(None)`, when CoinGecko has no final row from `plan_first_day` on yet (nothing
/// to compare with: the caller checks later).
pub async fn check_mapping(
    pool: &PgPool,
    coinbase: &CoinbaseClient,
    symbol: Symbol,
    product: &ProductId,
    plan_first_day: NaiveDate,
    max_percent: Decimal,
) -> Result<Option<MappingVerdict>, CheckError> {
    let earliest = second_source::earliest_closes(
        pool,
        symbol,
        PriceSource::CoinGecko,
        plan_first_day,
        DEVIATION_SAMPLE_DAYS,
    )
    .await?;
    if earliest.is_empty() {
        return Ok(None);
    }
    let mut deviation = deviation_on(coinbase, product, &earliest).await?;
    if deviation.is_none() {
        let latest = second_source::latest_closes(
            pool,
            symbol,
            PriceSource::CoinGecko,
            DEVIATION_SAMPLE_DAYS,
        )
        .await?;
        if latest.first() != earliest.first() {
            deviation = deviation_on(coinbase, product, &latest).await?;
        }
    }
    let verdict = judge_mapping(symbol, product, deviation, max_percent);
    second_source::record_check(pool, symbol, product, &verdict).await?;
    Ok(Some(verdict))
}

/// The median difference of Coinbase's closes from `primary` (CoinGecko's final closes,
/// ascending, at least one), on the days both have: one Coinbase call.
async fn deviation_on(
    coinbase: &CoinbaseClient,
    product: &ProductId,
    primary: &[(NaiveDate, Decimal)],
) -> Result<Option<Deviation>, CoinbaseError> {
    let (Some((first, _)), Some((last, _))) = (primary.first(), primary.last()) else {
        return Ok(None);
    };
    // The days are consecutive stored ones: a window longer than a call allows means
    // CoinGecko has holes there; the first 300 days hold enough of them.
    let window = CandleWindow::new(*first, *last)
        .or_else(|| CandleWindow::split(*first, *last).into_iter().next())
        .expect("first <= last");
    let second: Vec<(NaiveDate, Decimal)> = coinbase
        .candles(product, window)
        .await?
        .into_iter()
        .filter(|candle| !candle.provisional)
        .map(|candle| (candle.date, candle.close))
        .collect();
    Ok(median_deviation(primary, &second))
}

/// The product a newly registered coin gets when none is given: `{SYMBOL}-USD` when
/// Coinbase Exchange lists it (one call), else `None` (no second source for the coin,
/// not an error).
pub async fn guess_product(
    coinbase: &CoinbaseClient,
    symbol: Symbol,
) -> Result<Option<ProductId>, CoinbaseError> {
    let guess = ProductId::usd_of(symbol);
    Ok(coinbase.product(&guess).await?.map(|_| guess))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 1, 1).unwrap() + Days::new(n)
    }

    #[test]
    fn a_run_of_out_of_plan_days_takes_one_call_per_300_days() {
        // 1461 - 365 = 1096 out-of-plan days: ceil(1096 / 300) = 4 calls.
        let windows = fallback_windows((0..1096).map(day), None);
        assert_eq!(windows.len(), 4);
        assert_eq!(windows.iter().map(CandleWindow::days).sum::<u32>(), 1096);
        assert_eq!((windows[0].first(), windows[3].last()), (day(0), day(1095)));
    }

    #[test]
    fn runs_apart_share_a_window_when_they_fit_in_one() {
        let days = [
            day(10),
            day(11),
            day(200),
            day(12),
            day(309),
            day(310),
            day(312),
        ];
        let windows = fallback_windows(days, None);
        let bounds: Vec<_> = windows.iter().map(|w| (w.first(), w.last())).collect();
        assert_eq!(bounds, vec![(day(10), day(309)), (day(310), day(312))]);
    }

    #[test]
    fn days_before_the_products_first_candle_cost_no_call() {
        assert!(fallback_windows((0..100).map(day), Some(day(100))).is_empty());
        let windows = fallback_windows((0..100).map(day), Some(day(40)));
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].first(), windows[0].last()), (day(40), day(99)));
        assert!(fallback_windows([], None).is_empty());
    }
}
