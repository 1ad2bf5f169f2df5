//! The second source's part of a job that does not depend on how the job is run: the
//! check of a coin's mapping before its first second-source row is stored, and the
//! guess of a new coin's product at registration.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::coinbase::{CandleWindow, CoinbaseClient, CoinbaseError};
use crate::domain::{
    DEVIATION_SAMPLE_DAYS, MappingVerdict, PriceSource, ProductId, Symbol, judge_mapping,
    median_deviation,
};
use crate::store::second_source;

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
/// from `plan_first_day` on, judged against `max_percent` and recorded on the coin. One
/// Coinbase call at most; none, and `Ok(None)`, when CoinGecko has no final row from
/// `plan_first_day` on yet (nothing to compare with: the caller checks later).
pub async fn check_mapping(
    pool: &PgPool,
    coinbase: &CoinbaseClient,
    symbol: Symbol,
    product: &ProductId,
    plan_first_day: NaiveDate,
    max_percent: Decimal,
) -> Result<Option<MappingVerdict>, CheckError> {
    let primary = second_source::earliest_closes(
        pool,
        symbol,
        PriceSource::CoinGecko,
        plan_first_day,
        DEVIATION_SAMPLE_DAYS,
    )
    .await?;
    let (Some((first, _)), Some((last, _))) = (primary.first(), primary.last()) else {
        return Ok(None);
    };
    // The days are the earliest stored ones: a window longer than a call allows means
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
    let verdict = judge_mapping(
        symbol,
        product,
        median_deviation(&primary, &second),
        max_percent,
    );
    second_source::record_check(pool, symbol, product, &verdict).await?;
    Ok(Some(verdict))
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
