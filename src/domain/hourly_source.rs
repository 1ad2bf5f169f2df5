//! Where a coin's hours come from (INTERFACE "A coin": `hourly_source`), and so which of
//! them it can have ([`expected_hours`]). One rule each, read by the job (which source to
//! fill hours from, which hours are still missing at its end) and by every view of a coin
//! (what it says, what its coverage in hours expects), so that they cannot disagree. They
//! need only the coin's own columns, never its hours.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Coin, Hour, HourRange, PlanReach, PriceSource};

/// The first day CoinGecko has hourly points for; earlier days get one point a day, from
/// which no hour can be built.
pub const COINGECKO_HOURLY_FROM: NaiveDate = match NaiveDate::from_ymd_opt(2018, 1, 30) {
    Some(day) => day,
    None => panic!("a valid date"),
};

/// The hours of `days` (a read's or a job's range) that a coin can have at `now`, which
/// coverage in hours, the calendar's hours and a job's `hours_missing` count as expected:
/// from the coin's first day, from where its `source` of hours begins (Coinbase: its
/// product's first hourly candle, `coinbase_hours_from`; CoinGecko-built hours: the plan's
/// first served day, and never before CoinGecko's first hourly point), through the last
/// complete hour. With no source (the coin keeps no hours, or its product awaits its check)
/// only the first day and the last complete hour bound it. `None` when none is.
pub fn expected_hours(
    coin: &Coin,
    source: Option<PriceSource>,
    coinbase_hours_from: Option<Hour>,
    reach: PlanReach,
    days: (NaiveDate, NaiveDate),
    now: DateTime<Utc>,
) -> Option<HourRange> {
    let mut first = Hour::first_of(days.0);
    if let Some(first_day) = coin.first_day {
        first = first.max(Hour::first_of(first_day));
    }
    let from_source = match source {
        Some(PriceSource::Coinbase) => coinbase_hours_from,
        Some(PriceSource::CoinGecko) => Some(Hour::first_of(
            reach
                .first_served_day(now.date_naive())
                .unwrap_or(COINGECKO_HOURLY_FROM)
                .max(COINGECKO_HOURLY_FROM),
        )),
        None => None,
    };
    if let Some(from) = from_source {
        first = first.max(from);
    }
    HourRange::new(first, Hour::last_of(days.1).min(Hour::last_complete(now)))
}

/// What the coin has on the exchange, as far as hours are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeProduct {
    /// No product set, or `FALLBACK_SOURCE=off` (no Coinbase call at all).
    None,
    /// A product is set but its mapping check has not run yet: the next job checks it
    /// before its first candle.
    Unchecked,
    /// The product's closes agree with CoinGecko's: its candles are used.
    Usable,
    /// The product's closes disagree (another asset with the same ticker, or no shared
    /// day): it is not used.
    Unusable,
}

/// The source of a coin's hours: Coinbase's true candles when its product is usable,
/// CoinGecko-built hours when it has none (or none usable), `None` when the coin keeps no
/// hours or while its product awaits the check that decides.
pub fn hourly_source(hourly: bool, product: ExchangeProduct) -> Option<PriceSource> {
    if !hourly {
        return None;
    }
    match product {
        ExchangeProduct::Usable => Some(PriceSource::Coinbase),
        ExchangeProduct::None | ExchangeProduct::Unusable => Some(PriceSource::CoinGecko),
        ExchangeProduct::Unchecked => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, day};

    #[test]
    fn coingecko_built_hours_are_expected_from_its_first_hourly_point_on_any_plan() {
        let now = at("2026-11-28T10:20:00Z");
        let coin = Coin::bitcoin();
        let days = (day("2017-01-01"), day("2018-12-31"));
        let built =
            |reach| expected_hours(&coin, Some(PriceSource::CoinGecko), None, reach, days, now);
        assert_eq!(
            built(PlanReach::UNLIMITED).unwrap().first(),
            Hour::first_of(COINGECKO_HOURLY_FROM),
            "daily points before it build no hour"
        );
        let exchange = expected_hours(
            &coin,
            Some(PriceSource::Coinbase),
            None,
            PlanReach::UNLIMITED,
            days,
            now,
        );
        assert_eq!(exchange.unwrap().first(), Hour::first_of(day("2017-01-01")));
        assert_eq!(
            built(PlanReach::days(365)),
            None,
            "older than the plan serves"
        );
    }

    #[test]
    fn hours_come_from_the_exchange_only_when_its_product_is_usable() {
        use ExchangeProduct::*;
        let table = [
            (true, Usable, Some(PriceSource::Coinbase)),
            (true, None, Some(PriceSource::CoinGecko)),
            (true, Unusable, Some(PriceSource::CoinGecko)),
            (true, Unchecked, Option::None),
            (false, Usable, Option::None),
            (false, None, Option::None),
        ];
        for (hourly, product, source) in table {
            assert_eq!(
                hourly_source(hourly, product),
                source,
                "{hourly} {product:?}"
            );
        }
    }
}
