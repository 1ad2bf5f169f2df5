//! The `Coins` tag: the registry of coins the service fetches, with each coin's
//! freshness, and the one write that registers a coin or changes its tracking.

use std::collections::HashMap;

use chrono::NaiveDate;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Enum, Object, OpenApi};
use rust_decimal::prelude::ToPrimitive;

use super::budget::TrackingCost;
use super::day::Day;
use super::error::{ErrorBody, Unavailable, refused};
use super::responses::responses;
use super::{ApiState, ApiTags, Authorized};
use crate::config::FallbackSource;
use crate::domain::{
    CoinGeckoId, PriceSource, ProductId, Symbol, Trigger, hourly_source, today_utc,
};
use crate::registry::{CoinRequest, ProductChoice, RegisterError};
use crate::store::coins::{self, CoinRecord};
use crate::store::hourly_coins::{self, HourlyCoin};

pub struct CoinsApi;

#[OpenApi(tag = "ApiTags::Coins")]
impl CoinsApi {
    /// List coins
    ///
    /// Registered coins by symbol, a page at a time, with how fresh each one's history
    /// is. `next` is the symbol to pass as `after` for the following page, null on the
    /// last one. Each coin's figures are kept by the database as rows change, so a page
    /// costs the same however much history is stored.
    #[oai(path = "/api/v1/coins", method = "get", operation_id = "listCoins")]
    async fn list(
        &self,
        state: Data<&ApiState>,
        /// How many coins at most.
        #[oai(
            default = "default_page_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// Only the coins after this symbol (the previous page's `next`).
        after: Query<Option<String>>,
        /// Only the coins whose symbol or CoinGecko id contains this (case-insensitive).
        #[oai(validator(max_length = 100))]
        q: Query<Option<String>>,
        /// Only tracked coins (`true`) or untracked ones (`false`).
        tracked: Query<Option<bool>>,
    ) -> ListCoinsResponse {
        let after = match after.0.as_deref().map(Symbol::parse).transpose() {
            Ok(after) => after,
            Err(e) => return ListCoinsResponse::BadRequest(ErrorBody::invalid_symbol(&e)),
        };
        if q.0.as_deref().is_some_and(|q| q.contains('\0')) {
            // PostgreSQL's text holds no NUL, and no symbol or CoinGecko id has one.
            return ListCoinsResponse::BadRequest(ErrorBody::json(
                "invalid_request",
                "q must not contain a NUL character: give part of a symbol or a CoinGecko id",
            ));
        }
        let query = coins::PageQuery {
            limit: limit.0,
            after,
            q: q.0.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty()),
            tracked: tracked.0,
        };
        match page_with_hours(&state.pool, &query).await {
            Ok((page, hours, more)) => {
                let today = today_utc();
                let fallback = state.registry.fallback_source();
                let next = more
                    .then(|| page.last().map(|c| c.coin.symbol.to_string()))
                    .flatten();
                let view = |c: CoinRecord| {
                    let coin_hours = hours.get(&c.coin.symbol);
                    CoinView::of(c, coin_hours, fallback, today)
                };
                ListCoinsResponse::Ok(Json(CoinList {
                    coins: page.into_iter().map(view).collect(),
                    next,
                }))
            }
            Err(e) => ListCoinsResponse::unavailable(&e),
        }
    }

    /// Get a coin
    #[oai(
        path = "/api/v1/coins/:symbol",
        method = "get",
        operation_id = "getCoin"
    )]
    async fn get(
        &self,
        state: Data<&ApiState>,
        /// The coin's ticker, case-insensitive.
        symbol: Path<String>,
    ) -> GetCoinResponse {
        let symbol = match Symbol::parse(&symbol.0) {
            Ok(symbol) => symbol,
            Err(e) => return GetCoinResponse::BadRequest(ErrorBody::invalid_symbol(&e)),
        };
        match coin_with_hours(&state.pool, symbol).await {
            Ok(Some((coin, hours))) => {
                let fallback = state.registry.fallback_source();
                let view = CoinView::of(coin, hours.as_ref(), fallback, today_utc());
                GetCoinResponse::Ok(Json(view))
            }
            Ok(None) => GetCoinResponse::NotFound(ErrorBody::json(
                "not_found",
                format!(
                    "{symbol} is not a registered coin: register it with PUT /api/v1/coins/{symbol}, \
                     or list the coins with GET /api/v1/coins"
                ),
            )),
            Err(e) => GetCoinResponse::unavailable(&e),
        }
    }

    /// Register or change a coin
    ///
    /// Registers `symbol` for CoinGecko's `coingecko_id` (`201`), or changes whether a
    /// registered coin is tracked (`200`). A new id is checked with one CoinGecko call,
    /// which also finds the coin's first day of data; nothing is stored when the check
    /// fails. A symbol keeps its id for good. A tracked coin is kept up to date by the
    /// schedule (`SYNC_SCHEDULE`), from `track_since` when given; turning `tracked` on
    /// queues a job for its missing days at once, when the month's CoinGecko credits pay
    /// for it (else the schedule queues it once they can).
    ///
    /// `coinbase_product` names the coin's product on the second source (Coinbase
    /// Exchange), which fills the days older than the CoinGecko plan serves. A product
    /// given is checked with one Coinbase call; null clears it; left out, a new coin gets
    /// `{SYMBOL}-USD` when Coinbase lists it (else none, or none for now when Coinbase
    /// cannot be asked), and a registered coin keeps its product. With
    /// `FALLBACK_SOURCE=off` a product given is stored unchecked and none is guessed.
    ///
    /// `hourly` makes the coin keep hourly candles too (off for a new coin; left out, a
    /// registered coin keeps its setting). Turning it on queues a job for the coin's missing
    /// hours (and days) at once: the hours of the days it keeps (from `track_since`, its
    /// first day or the oldest day the plan serves, whichever is latest, and at most 1461
    /// days back) through the last complete hour, from Coinbase Exchange (one call per 300
    /// missing hours) or, without a usable product, built from CoinGecko's hourly points.
    /// Turning it off keeps the stored hours and fetches no more. While a job of the coin
    /// is active, or when the month's credits cannot pay for the job, nothing more is
    /// queued, as for `tracked`.
    #[oai(
        path = "/api/v1/coins/:symbol",
        method = "put",
        operation_id = "putCoin"
    )]
    async fn put(
        &self,
        _auth: Authorized,
        state: Data<&ApiState>,
        /// The coin's ticker: 1 to 15 letters A-Z or digits, case-insensitive.
        symbol: Path<String>,
        body: Json<PutCoinRequest>,
    ) -> PutCoinResponse {
        let symbol = match Symbol::parse(&symbol.0) {
            Ok(symbol) => symbol,
            Err(e) => return PutCoinResponse::BadRequest(ErrorBody::invalid_symbol(&e)),
        };
        let coingecko_id = match CoinGeckoId::parse(&body.0.coingecko_id) {
            Ok(id) => id,
            Err(e) => {
                return PutCoinResponse::BadRequest(ErrorBody::json(
                    "invalid_coingecko_id",
                    e.to_string(),
                ));
            }
        };
        let coinbase_product = match &body.0.coinbase_product {
            MaybeUndefined::Undefined => ProductChoice::Unsaid,
            MaybeUndefined::Null => ProductChoice::Clear,
            MaybeUndefined::Value(product) => match ProductId::parse(product) {
                Ok(product) => ProductChoice::Set(product),
                Err(e) => {
                    return PutCoinResponse::BadRequest(ErrorBody::json(
                        "invalid_coinbase_product",
                        e.to_string(),
                    ));
                }
            },
        };
        let request = CoinRequest {
            symbol,
            coingecko_id,
            tracked: body.0.tracked,
            track_since: body.0.track_since.map(|day| day.0),
            coinbase_product,
            hourly: body.0.hourly,
        };
        let registered = match state.registry.put(request, Trigger::Api).await {
            Ok(registered) => registered,
            Err(e) => return PutCoinResponse::from(e),
        };
        for note in &registered.notes {
            tracing::info!(symbol = %registered.coin.coin.symbol, note = %note, "coin registered with a note");
        }
        let fallback = state.registry.fallback_source();
        let hours = Some(&registered.hours);
        let mut view = CoinView::of(registered.coin, hours, fallback, today_utc());
        if registered.synced.is_some() {
            view.tracking_cost = TrackingCost::read(&state.credits, 0, false).await;
        }
        if registered.created {
            let location = format!("/api/v1/coins/{}", view.symbol);
            PutCoinResponse::Created(Json(view), location)
        } else {
            PutCoinResponse::Ok(Json(view))
        }
    }
}

impl From<RegisterError> for PutCoinResponse {
    fn from(e: RegisterError) -> Self {
        let message = e.to_string();
        match e {
            RegisterError::TrackSinceInFuture(..) => {
                Self::BadRequest(ErrorBody::json("track_since_in_future", message))
            }
            RegisterError::UnknownCoinGeckoId(_) => {
                Self::BadRequest(ErrorBody::json("unknown_coingecko_id", message))
            }
            RegisterError::SymbolTaken { .. } => {
                Self::Conflict(ErrorBody::json("symbol_registered", message))
            }
            RegisterError::IdTaken { .. } => {
                Self::Conflict(ErrorBody::json("coingecko_id_registered", message))
            }
            RegisterError::CoinGeckoRefused { .. } => {
                tracing::warn!(%message, "a coin check was refused by CoinGecko");
                Self::BadGateway(ErrorBody::json("coingecko_refused", message))
            }
            RegisterError::OutOfCredits { resets_on, .. } => {
                Self::TooManyRequests(Json(ErrorBody {
                    resets_on: Some(resets_on),
                    ..ErrorBody::new("monthly_credits_exhausted", message)
                }))
            }
            RegisterError::CoinGeckoUnavailable { .. } => {
                tracing::warn!(%message, "a coin check could not reach CoinGecko");
                Self::ServiceUnavailable(ErrorBody::json("coingecko_unavailable", message))
            }
            RegisterError::UnknownCoinbaseProduct(_) => {
                Self::BadRequest(ErrorBody::json("unknown_coinbase_product", message))
            }
            RegisterError::CoinbaseRefused { .. } => {
                tracing::warn!(%message, "a product check was refused by Coinbase Exchange");
                Self::BadGateway(ErrorBody::json("coinbase_refused", message))
            }
            RegisterError::CoinbaseUnavailable { .. } => {
                tracing::warn!(%message, "a product check could not reach Coinbase Exchange");
                Self::ServiceUnavailable(ErrorBody::json("coinbase_unavailable", message))
            }
            RegisterError::Database(e) => Self::unavailable(&e),
        }
    }
}

/// What to register, or how to change a registered coin. A PUT replaces: `tracked` and
/// `track_since` left out mean `false` and `null`; `coinbase_product` left out is kept
/// (or guessed, for a new coin), and so is `hourly` (off for a new coin).
#[derive(Debug, Clone, Object)]
#[oai(rename = "PutCoin", example, deny_unknown_fields)]
pub struct PutCoinRequest {
    /// CoinGecko's id of the coin (the "API ID" on its CoinGecko page), such as
    /// `ethereum`. A registered coin keeps its id.
    #[oai(
        validator(min_length = 1, max_length = 100),
        deserialize_with = "required_coingecko_id"
    )]
    pub coingecko_id: String,
    /// Keep the coin up to date every day (`SYNC_SCHEDULE`). Absent or null: `false`.
    #[oai(default, nullable)]
    pub tracked: bool,
    /// With `tracked`: the first day to keep, `YYYY-MM-DD`; absent or null: the coin's
    /// first day (or the oldest day the CoinGecko plan serves, whichever is later).
    #[oai(nullable)]
    pub track_since: Option<Day>,
    /// The coin's product on Coinbase Exchange, the second source (`ETH-USD`: two
    /// currency codes joined by `-`, case-insensitive). Null: no second source for the
    /// coin. Absent: a new coin gets `{SYMBOL}-USD` when Coinbase lists it; a registered
    /// coin keeps its product.
    #[oai(validator(max_length = 40), nullable)]
    pub coinbase_product: MaybeUndefined<String>,
    /// Keep hourly candles too. `true` brings the coin's hours up to date at once;
    /// `false` keeps the stored hours and fetches no more. Absent or null: a registered
    /// coin keeps its setting; a new coin keeps no hours.
    #[oai(nullable)]
    pub hourly: Option<bool>,
}

impl Example for PutCoinRequest {
    fn example() -> Self {
        PutCoinRequest {
            coingecko_id: "ethereum".to_owned(),
            tracked: true,
            track_since: Some(Day(
                NaiveDate::from_ymd_opt(2024, 1, 1).expect("a valid date")
            )),
            coinbase_product: MaybeUndefined::Value("ETH-USD".to_owned()),
            hourly: Some(true),
        }
    }
}

/// A registered coin.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Coin", example)]
pub struct CoinView {
    /// The ticker, upper case.
    pub symbol: String,
    /// CoinGecko's id of the coin.
    pub coingecko_id: String,
    /// The first UTC day CoinGecko has a price for; null when the plan's reach hid it
    /// (the coin is older than the oldest day the plan serves).
    #[oai(nullable)]
    pub first_day: Option<Day>,
    /// Kept up to date every day by the schedule.
    pub tracked: bool,
    /// The first day the schedule keeps, when set.
    #[oai(nullable)]
    pub track_since: Option<Day>,
    /// The latest stored day that is not provisional; null when none is stored.
    #[oai(nullable)]
    pub last_complete_day: Option<Day>,
    /// Days from `last_complete_day` to yesterday (UTC): 0 when yesterday is stored;
    /// null when nothing is stored.
    #[oai(nullable)]
    pub stale_days: Option<i64>,
    /// The coin's product on Coinbase Exchange, the second source that fills the days
    /// older than the CoinGecko plan serves; null: none.
    #[oai(nullable)]
    pub coinbase_product: Option<String>,
    /// The median difference of the two sources' closes on up to 30 days both cover, in
    /// percent (two decimals); null until the product has been checked (before its
    /// first row is stored), or when the check found no day to compare.
    #[oai(nullable)]
    pub fallback_deviation_percent: Option<f64>,
    /// Whether the second source is used for the coin: null until checked, false when
    /// the deviation is over `FALLBACK_MAX_DEVIATION_PERCENT` (see
    /// `fallback_unusable_reason`).
    #[oai(nullable)]
    pub fallback_usable: Option<bool>,
    /// Why the second source is not used for the coin, when `fallback_usable` is false.
    #[oai(nullable)]
    pub fallback_unusable_reason: Option<String>,
    /// Whether the coin keeps hourly candles: its jobs fill its missing hours beside its
    /// days. Off, its stored hours stay and no more are fetched.
    pub hourly: bool,
    /// Where the coin's hours come from; null when it keeps no hours, or while its
    /// product awaits the check that decides (before its first candle is stored).
    #[oai(nullable)]
    pub hourly_source: Option<HourlySource>,
    /// Of its stored Coinbase candles, how many are disputed: CoinGecko's price point in
    /// the hour lies outside the candle's low–high band by more than
    /// `FALLBACK_MAX_DEVIATION_PERCENT`. 0 when none is, or none was checked.
    pub disputed_hours: i64,
    /// The median, over its checked hours (Coinbase candles with a CoinGecko point in the
    /// hour), of the point's distance outside the candle's low–high band, in percent of the
    /// band's edge (0 inside it); null while no hour has been checked.
    #[oai(nullable)]
    pub hourly_median_deviation_percent: Option<f64>,
    /// How many of the coin's hours are stored (final or provisional), whether or not it
    /// keeps hours now: `timeframe=1h` and `4h` have something to read when this is over 0.
    pub stored_hours: i64,
    /// Only in the answer of a `PUT` that turned `tracked` (or `hourly`) on: what the
    /// tracked coins now cost a month under `SYNC_SCHEDULE`, with a warning when it is more
    /// than the month's credits.
    #[oai(skip_serializing_if_is_none)]
    pub tracking_cost: Option<TrackingCost>,
}

/// Where a coin's hourly candles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "HourlySource", rename_all = "lowercase")]
pub enum HourlySource {
    /// Coinbase Exchange's true hourly candles (OHLCV) of the coin's product, each checked
    /// against CoinGecko's price point in the hour where the plan serves one.
    Coinbase,
    /// Built from CoinGecko's hourly price points within the plan's reach (the coin has no
    /// usable product); each row says how many points it was built from.
    Coingecko,
}

impl From<PriceSource> for HourlySource {
    fn from(source: PriceSource) -> Self {
        match source {
            PriceSource::Coinbase => HourlySource::Coinbase,
            PriceSource::CoinGecko => HourlySource::Coingecko,
        }
    }
}

impl CoinView {
    /// The coin as the API shows it, with its hourly side (`None`: keeps no hours and has
    /// none stored) and `FALLBACK_SOURCE`, which says with its mapping where its hours come
    /// from.
    fn of(
        record: CoinRecord,
        hours: Option<&HourlyCoin>,
        fallback: FallbackSource,
        today: NaiveDate,
    ) -> Self {
        let stale_days = record.stale_days(today);
        let hourly = hours.is_some_and(|h| h.hourly);
        let figures = hours.map(|h| h.figures).unwrap_or_default();
        let hourly_source = hourly_source(hourly, record.mapping.exchange_product(fallback));
        let mapping = record.mapping;
        CoinView {
            symbol: record.coin.symbol.as_str().to_owned(),
            coingecko_id: record.coin.coingecko_id.as_str().to_owned(),
            first_day: record.coin.first_day.map(Day),
            tracked: record.coin.tracked,
            track_since: record.coin.track_since.map(Day),
            last_complete_day: record.last_complete_day.map(Day),
            stale_days,
            coinbase_product: mapping.product.map(|p| p.as_str().to_owned()),
            fallback_deviation_percent: mapping
                .deviation_percent
                .and_then(|d| d.round_dp(2).to_f64()),
            fallback_usable: mapping.usable,
            fallback_unusable_reason: mapping
                .unusable_reason
                .filter(|_| mapping.usable == Some(false)),
            hourly,
            hourly_source: hourly_source.map(HourlySource::from),
            disputed_hours: figures.disputed_hours,
            hourly_median_deviation_percent: figures
                .median_deviation_percent
                .and_then(|d| d.round_dp(4).to_f64()),
            stored_hours: figures.complete_hours + figures.provisional_hours,
            tracking_cost: None,
        }
    }
}

/// The coin with its hourly side; `None` when it is not registered.
async fn coin_with_hours(
    pool: &sqlx::PgPool,
    symbol: Symbol,
) -> sqlx::Result<Option<(CoinRecord, Option<HourlyCoin>)>> {
    let Some(coin) = coins::get(pool, symbol).await? else {
        return Ok(None);
    };
    Ok(Some((coin, hourly_coins::get(pool, symbol).await?)))
}

/// A page of coins with the hourly side of each (one query more, reading one row of kept
/// figures per coin), and whether more coins follow.
async fn page_with_hours(
    pool: &sqlx::PgPool,
    query: &coins::PageQuery,
) -> sqlx::Result<(Vec<CoinRecord>, HashMap<Symbol, HourlyCoin>, bool)> {
    let (page, more) = coins::page(pool, query).await?;
    let symbols: Vec<Symbol> = page.iter().map(|c| c.coin.symbol).collect();
    let hours = hourly_coins::of_coins(pool, &symbols).await?;
    let hours = hours.into_iter().map(|h| (h.symbol, h)).collect();
    Ok((page, hours, more))
}

impl Example for CoinView {
    fn example() -> Self {
        let day = |s: &str| Day(s.parse().expect("a valid date"));
        CoinView {
            symbol: "BTC".to_owned(),
            coingecko_id: "bitcoin".to_owned(),
            first_day: Some(day("2013-04-28")),
            tracked: true,
            track_since: Some(day("2022-01-01")),
            last_complete_day: Some(day("2026-11-27")),
            stale_days: Some(0),
            coinbase_product: Some("BTC-USD".to_owned()),
            fallback_deviation_percent: Some(0.12),
            fallback_usable: Some(true),
            fallback_unusable_reason: None,
            hourly: true,
            hourly_source: Some(HourlySource::Coinbase),
            disputed_hours: 3,
            hourly_median_deviation_percent: Some(0.0),
            stored_hours: 35_064,
            tracking_cost: None,
        }
    }
}

/// The coins listed when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

fn default_page_limit() -> u32 {
    DEFAULT_PAGE_LIMIT
}

/// A page of registered coins, by symbol.
#[derive(Debug, Clone, Object)]
#[oai(rename = "CoinList")]
pub struct CoinList {
    pub coins: Vec<CoinView>,
    /// The last symbol of this page when more coins follow (pass it as `after`); null on
    /// the last page.
    #[oai(nullable)]
    pub next: Option<String>,
}

responses! {
    pub enum ListCoinsResponse refused {
        /// A page of coins, by symbol.
        200 Ok(Json<CoinList>),
        /// The query is malformed: `limit` not between 1 and 1000, `after` not a symbol
        /// (`invalid_symbol`), `tracked` not true or false.
        400 BadRequest,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

responses! {
    pub enum GetCoinResponse refused {
        /// The coin.
        200 Ok(Json<CoinView>),
        /// `invalid_symbol`: the symbol is not 1 to 15 letters or digits.
        400 BadRequest,
        /// No coin is registered under this symbol.
        404 NotFound,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

responses! {
    pub enum PutCoinResponse refused(body) {
        /// The coin was registered already; its tracking, product and hours are now as asked.
        200 Ok(Json<CoinView>),
        /// The coin is registered, checked with CoinGecko; `Location` is where to read it.
        201 Created(Json<CoinView>, #[oai(header = "Location")] String),
        /// The body is malformed or breaks a rule: `invalid_symbol`, `invalid_coingecko_id`,
        /// `unknown_coingecko_id` (CoinGecko does not know it), `invalid_coinbase_product`,
        /// `unknown_coinbase_product` (Coinbase Exchange does not list it),
        /// `track_since_in_future`, `invalid_request`.
        400 BadRequest,
        401 Unauthorized,
        /// `symbol_registered`: the symbol is registered with another id;
        /// `coingecko_id_registered`: the id is registered under another symbol.
        409 Conflict,
        415 UnsupportedMediaType,
        /// `coingecko_refused`: CoinGecko refused the check for a reason other than the id
        /// (a key problem, say); `coinbase_refused`: Coinbase Exchange refused the check of
        /// the product for a reason other than the product. Nothing was stored.
        /// `monthly_credits_exhausted`: the month's CoinGecko credits
        /// (`COINGECKO_CALLS_PER_MONTH`) are spent, so a new id could not be checked;
        /// `resets_on` names the day they reset. Nothing was stored.
        429 TooManyRequests,
        502 BadGateway,
        /// `coingecko_unavailable`: CoinGecko did not answer the check;
        /// `coinbase_unavailable`: Coinbase Exchange did not answer the check of the product
        /// given; `database_unavailable`. Nothing was stored: try again.
        503 ServiceUnavailable,
    }
}

fn required_coingecko_id(
    value: Option<serde_json::Value>,
) -> poem_openapi::types::ParseResult<String> {
    super::wire::required(
        value,
        "coingecko_id",
        "CoinGecko's id of the coin, such as \"ethereum\"",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Coin;

    #[test]
    fn stale_days_count_from_the_last_complete_day_to_yesterday() {
        let today: NaiveDate = "2026-11-28".parse().unwrap();
        let record = |last: Option<&str>| CoinRecord {
            coin: Coin::bitcoin(),
            last_complete_day: last.map(|d| d.parse().unwrap()),
            mapping: Default::default(),
        };
        let view = |last| CoinView::of(record(last), None, FallbackSource::Coinbase, today);
        assert_eq!(view(Some("2026-11-27")).stale_days, Some(0));
        assert_eq!(view(Some("2026-11-20")).stale_days, Some(7));
        assert_eq!(view(None).stale_days, None);
    }
}
