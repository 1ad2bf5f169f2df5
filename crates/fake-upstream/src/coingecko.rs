//! A fake CoinGecko on loopback, faithful to what the real one does with
//! `/coins/{id}/market_chart/range` and `/coins/markets` (the coins by market cap, in
//! pages, see [`listing`]): for integration tests, benchmarks and the
//! `fake-upstream coingecko` command.
//!
//! What it copies from CoinGecko (see the research notes): `from`/`to` in UNIX seconds;
//! a few coins ([`COINS`]: `bitcoin` from 2013-04-28, `ethereum` from 2015-08-07, ...),
//! each with its own first day and prices, and "coin not found" for any other id; hourly points with a few seconds of
//! jitter for ranges up to 90 days (from 2018-01-30 on, daily before), daily 00:00 UTC
//! points for longer ranges; nothing after now, and a live point at now when the range
//! reaches it; CoinGecko's error shapes. What it adds for tests: it records every call,
//! can be told to answer with scripted responses, to be slow, to leave days empty, to
//! change its prices, to rate-limit, and to refuse history older than N days (10012).
//!
//! Not copied: 5-minutely points for one-day ranges near now, the `interval` and
//! `precision` parameters, ISO dates in `from`/`to`, and currencies other than USD
//! (any `vs_currency` gets USD prices).

pub(crate) mod market;

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use poem::http::StatusCode;
use poem::{Endpoint, Request, Response, Route, get};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::json;

pub use crate::server::ScriptedResponse;
use crate::server::{Answer, Fake, Shared, State, Upstream, query_param, wait_for_room};
pub use market::{
    BITCOIN, COINS, COLLIDING_RANK, FakeCoin, LISTED, Listed, UNSYMBOLIC_RANK, coin, listing,
};
use market::{DAY_MS, Market};

const DEMO_KEY_HEADER: &str = "x-cg-demo-api-key";
const PRO_KEY_HEADER: &str = "x-cg-pro-api-key";
/// CoinGecko's 10012 body, from `samples/error_bodies.json`.
const HISTORY_LIMIT_BODY: &str = r#"{"error":{"status":{"timestamp":"2024-04-20T22:00:05.123+00:00","error_code":10012,"error_message":"Your request exceeds the allowed time range. Public API users are limited to querying historical data within the past 365 days. Upgrade to a paid plan to enjoy full historical data access: https://www.coingecko.com/en/api/pricing. "}}}"#;
/// CoinGecko's 429 body, from `samples/error_bodies.json`.
const RATE_LIMIT_BODY: &str = r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits."}}"#;
const MONTHLY_CREDITS_BODY: &str = r#"{"status":{"error_code":429,"error_message":"You've exceeded your monthly API call credits. Please visit https://www.coingecko.com/en/api/pricing to upgrade your plan."}}"#;
/// CoinGecko's window for its per-minute limit.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// A running fake CoinGecko. Dropping it (or `shutdown`) stops it.
pub type FakeCoinGecko = Fake<CoinGecko>;

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Added before every response (see [`FakeCoinGecko::set_delay`]).
    pub delay: Duration,
    /// Answer 429 (with `Retry-After`) to calls beyond this many in any 60 s, counting
    /// every call as CoinGecko does; `None` never rate-limits.
    pub calls_per_minute_limit: Option<NonZeroU32>,
    /// Answer 401 with error code 10012 when `from` is more than this many days ago, as
    /// the public and Demo plans do with 365; `None` serves all history, as paid plans do.
    pub history_limit_days: Option<u32>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            delay: Duration::ZERO,
            calls_per_minute_limit: None,
            history_limit_days: None,
        }
    }
}

/// One request the fake received, recorded before it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// When the request arrived (before any delay).
    pub at: Instant,
    /// The `{id}` of the path, such as `bitcoin`; [`MARKETS`] for a call of the list.
    pub coin_id: String,
    /// `vs_currency`, if given.
    pub vs_currency: Option<String>,
    /// `from`; the UNIX epoch when it was missing or not UNIX seconds (then `status` is 400).
    pub from: DateTime<Utc>,
    /// `to`; the UNIX epoch when it was missing or not UNIX seconds (then `status` is 400).
    pub to: DateTime<Utc>,
    /// Whether an API key header (Demo or Pro) came with it.
    pub api_key_present: bool,
    /// Which key header came with it: `x-cg-demo-api-key` or `x-cg-pro-api-key`.
    pub api_key_header: Option<&'static str>,
    /// That header's value (this is a test fake: tests check the right key was sent).
    pub api_key: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

impl ScriptedResponse {
    /// 429 with CoinGecko's body, and `Retry-After: <seconds>` when given.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        let response = Self::status(429, RATE_LIMIT_BODY);
        match retry_after_secs {
            Some(seconds) => response.with_header("retry-after", seconds.to_string()),
            None => response,
        }
    }

    /// 429 saying the key's monthly credits are spent. CoinGecko documents no wording for
    /// it (shared/research/hourly-and-export.md: plans with overage off stop serving when
    /// the credits run out); this is its usual error body naming the monthly credits, which
    /// is what the client keys on, unlike the rate limit's 429.
    pub fn monthly_credits_spent() -> Self {
        Self::status(429, MONTHLY_CREDITS_BODY)
    }

    /// 401 with CoinGecko's 10012 body: the 365-day limit of the public and Demo plans.
    pub fn history_limit_exceeded() -> Self {
        Self::status(401, HISTORY_LIMIT_BODY)
    }
}

/// The fake CoinGecko's world: the market it serves.
#[derive(Default)]
pub struct CoinGecko {
    market: Market,
    /// Coin ids whose charts answer 503, as CoinGecko does now and then for one coin.
    unavailable: std::collections::HashSet<String>,
}

impl Upstream for CoinGecko {
    type Options = FakeOptions;
    type Call = RecordedCall;
    const NAME: &'static str = "CoinGecko";

    fn bind(options: &FakeOptions) -> SocketAddr {
        options.bind
    }

    fn delay(options: &FakeOptions) -> Duration {
        options.delay
    }

    fn routes(shared: &Arc<Shared<Self>>) -> Route {
        let endpoint = MarketChartRange {
            shared: shared.clone(),
        };
        let markets = Markets {
            shared: shared.clone(),
        };
        Route::new()
            .at("/coins/markets", get(markets.clone()))
            .at("/api/v3/coins/markets", get(markets))
            .at("/coins/:id/market_chart/range", get(endpoint.clone()))
            .at("/api/v3/coins/:id/market_chart/range", get(endpoint))
            .at("/ping", get(Ping))
            .at("/api/v3/ping", get(Ping))
    }
}

impl FakeCoinGecko {
    /// Days the fake has no points for: served ranges skip them, as if CoinGecko had a hole.
    pub fn set_missing_days(&self, days: impl IntoIterator<Item = NaiveDate>) {
        self.shared.state().world.market.missing_days = days.into_iter().collect();
    }

    /// Coins whose charts answer 503 from now on (any other coin is served as before).
    pub fn set_unavailable_coins(&self, ids: impl IntoIterator<Item = &'static str>) {
        self.shared.state().world.unavailable = ids.into_iter().map(str::to_owned).collect();
    }

    /// Multiplies every price, market cap and volume served from now on (`1.25`: 25 %
    /// up; `1` restores the reference series), so that a forced re-run sees new values.
    pub fn set_price_shift(&self, multiplier: Decimal) {
        let multiplier = multiplier
            .to_f64()
            .expect("a Decimal is within f64's range");
        assert!(multiplier > 0.0, "prices stay positive");
        self.shared.state().world.market.multiplier = multiplier;
    }

    /// The price the fake serves for a point at `at_ms`, as the client reads it.
    pub fn price_at(&self, at_ms: i64) -> Decimal {
        wire_decimal(self.shared.state().world.market.price(at_ms))
    }

    /// The 24 h volume the fake serves for a point at `at_ms`, as the client reads it.
    pub fn volume_at(&self, at_ms: i64) -> Decimal {
        wire_decimal(self.shared.state().world.market.volume(at_ms))
    }

    /// `(ms, price, volume)` of every point the fake serves within `day`, hourly (a range
    /// of at most 90 days) or daily (a longer range); empty for a missing day or a day
    /// before the coin's first day (Bitcoin: 2013-04-28); up to now for today, without the live point a range reaching
    /// now also gets.
    pub fn points_for_day(&self, day: NaiveDate, hourly: bool) -> Vec<(i64, Decimal, Decimal)> {
        self.points_for_coin_day(BITCOIN.id, day, hourly)
    }

    /// [`points_for_day`](Self::points_for_day) of the coin with CoinGecko id `coin_id`.
    pub fn points_for_coin_day(
        &self,
        coin_id: &str,
        day: NaiveDate,
        hourly: bool,
    ) -> Vec<(i64, Decimal, Decimal)> {
        let coin = coin(coin_id).expect("a coin the fake knows");
        let start = day
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis();
        let end = (start + DAY_MS - 1).min(Utc::now().timestamp_millis());
        let market = self.shared.state().world.market.of(coin);
        market
            .times(start, end, hourly)
            .into_iter()
            .map(|at| {
                let sample = market.sample(at);
                (at, wire_decimal(sample.price), wire_decimal(sample.volume))
            })
            .collect()
    }
}

/// The decimal a client reads from a served value: the same rule as price-history's
/// `coingecko::decimal_from_f64` (the shortest decimal that reads back as the same `f64`),
/// restated here so that the fake does not depend on the service it stands in for.
pub(crate) fn wire_decimal(value: f64) -> Decimal {
    assert!(value.is_finite(), "the fake serves finite values");
    value
        .to_string()
        .parse()
        .expect("the fake serves values a Decimal holds")
}

#[derive(Clone)]
struct MarketChartRange {
    shared: Arc<Shared<CoinGecko>>,
}

/// The request's parts the fake looks at.
struct Asked {
    coin_id: String,
    vs_currency: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    api_key_header: Option<&'static str>,
    api_key: Option<String>,
}

impl Asked {
    fn read(request: &Request) -> Self {
        let param = |name: &str| query_param(request, name);
        let seconds = |name: &str| {
            param(name)
                .and_then(|value| value.parse::<i64>().ok())
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        };
        let (api_key_header, api_key) = [DEMO_KEY_HEADER, PRO_KEY_HEADER]
            .into_iter()
            .find_map(|name| Some((name, request.header(name)?.to_owned())))
            .map_or((None, None), |(name, key)| (Some(name), Some(key)));
        Self {
            coin_id: request.raw_path_param("id").unwrap_or_default().to_owned(),
            vs_currency: param("vs_currency"),
            from: seconds("from"),
            to: seconds("to"),
            api_key_header,
            api_key,
        }
    }

    /// The call as recorded, answered with `status` (`coin_id` for the path's id).
    fn recorded(&self, at: Instant, status: u16) -> RecordedCall {
        RecordedCall {
            at,
            coin_id: self.coin_id.clone(),
            vs_currency: self.vs_currency.clone(),
            from: self.from.unwrap_or(DateTime::UNIX_EPOCH),
            to: self.to.unwrap_or(DateTime::UNIX_EPOCH),
            api_key_present: self.api_key_header.is_some(),
            api_key_header: self.api_key_header,
            api_key: self.api_key.clone(),
            status,
        }
    }
}

impl Endpoint for MarketChartRange {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let asked = Asked::read(&request);
        let response = self
            .shared
            .respond(
                |state, arrived| self.answer(state, &asked, arrived),
                |at, status| asked.recorded(at, status),
            )
            .await;
        Ok(response)
    }
}

impl MarketChartRange {
    /// What CoinGecko would answer, in the order it seems to check things.
    fn answer(&self, state: &State<CoinGecko>, asked: &Asked, arrived: Instant) -> Answer {
        if let Some(limited) = rate_limited(&self.shared.options, state, arrived) {
            return limited;
        }
        if asked.vs_currency.as_deref().is_none_or(str::is_empty) {
            return Answer::json(
                StatusCode::BAD_REQUEST,
                json!({"error": "Missing parameter vs_currency"}),
            );
        }
        let (Some(from), Some(to)) = (asked.from, asked.to) else {
            return Answer::json(
                StatusCode::BAD_REQUEST,
                json!({"error": "Invalid from or to: expected UNIX timestamps in seconds"}),
            );
        };
        let Some(coin) = coin(&asked.coin_id) else {
            return Answer::json(StatusCode::NOT_FOUND, json!({"error": "coin not found"}));
        };
        if state.world.unavailable.contains(&asked.coin_id) {
            return Answer::text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        let now = Utc::now();
        if let Some(days) = self.shared.options.history_limit_days
            && from < now - chrono::Duration::days(i64::from(days))
        {
            return Answer::text(StatusCode::UNAUTHORIZED, HISTORY_LIMIT_BODY);
        }
        let samples = state.world.market.of(coin).range(
            from.timestamp_millis(),
            to.timestamp_millis(),
            now.timestamp_millis(),
        );
        let series = |value: fn(&market::Sample) -> f64| {
            samples
                .iter()
                .map(|sample| json!([sample.at_ms, value(sample)]))
                .collect::<Vec<_>>()
        };
        Answer::json(
            StatusCode::OK,
            json!({
                "prices": series(|s| s.price),
                "market_caps": series(|s| s.market_cap),
                "total_volumes": series(|s| s.volume),
            }),
        )
    }
}

/// 429 with CoinGecko's body and a `Retry-After`, when `options` set a limit and it is
/// reached: CoinGecko counts every call of the last minute, whatever its endpoint.
fn rate_limited(
    options: &FakeOptions,
    state: &State<CoinGecko>,
    arrived: Instant,
) -> Option<Answer> {
    let limit = options.calls_per_minute_limit?;
    let arrivals = state.calls.iter().map(|call| call.at);
    let wait =
        wait_for_room(arrivals, limit, RATE_LIMIT_WINDOW, arrived)? + Duration::from_millis(999);
    let mut answer = Answer::text(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_BODY);
    answer
        .headers
        .push(("retry-after".to_owned(), wait.as_secs().max(1).to_string()));
    Some(answer)
}

/// The [`RecordedCall::coin_id`] of a call of `/coins/markets`.
pub const MARKETS: &str = "coins/markets";

/// `/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=&page=`: the coins of
/// [`listing`], largest market cap first, a page at a time, as CoinGecko pages them
/// (`per_page` 1 to 250, default 100; `page` from 1, default 1; a page past the end is
/// `[]`). Calls count toward the rate limit and are recorded like the others.
#[derive(Clone)]
struct Markets {
    shared: Arc<Shared<CoinGecko>>,
}

impl Endpoint for Markets {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let asked = Asked {
            coin_id: MARKETS.to_owned(),
            from: None,
            to: None,
            ..Asked::read(&request)
        };
        let param = |name: &str| query_param(&request, name);
        let decide = |state: &State<CoinGecko>, arrived| {
            rate_limited(&self.shared.options, state, arrived).unwrap_or_else(|| {
                markets_page(
                    asked.vs_currency.as_deref(),
                    param("order").as_deref(),
                    param("per_page").as_deref(),
                    param("page").as_deref(),
                )
            })
        };
        let response = self
            .shared
            .respond(decide, |at, status| asked.recorded(at, status))
            .await;
        Ok(response)
    }
}

/// What CoinGecko answers for one page of `/coins/markets`.
fn markets_page(
    vs_currency: Option<&str>,
    order: Option<&str>,
    per_page: Option<&str>,
    page: Option<&str>,
) -> Answer {
    if vs_currency.is_none_or(str::is_empty) {
        return Answer::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "Missing parameter vs_currency"}),
        );
    }
    if order.is_some_and(|order| order != "market_cap_desc") {
        return Answer::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "the fake orders by market_cap_desc only"}),
        );
    }
    let per_page = per_page.map_or(Some(100), |n| n.parse::<usize>().ok());
    let page = page.map_or(Some(1), |n| n.parse::<usize>().ok());
    let (Some(per_page @ 1..=250), Some(page @ 1..)) = (per_page, page) else {
        return Answer::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "per_page must be 1 to 250 and page at least 1"}),
        );
    };
    let now = Utc::now();
    let coins: Vec<serde_json::Value> = listing()
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|listed| {
            let market_cap = 2.0e12 / listed.rank as f64;
            let price = market_cap / 2.0e7;
            json!({
                "id": listed.coin.id,
                "symbol": listed.symbol,
                "name": listed.name,
                "image": format!("https://coin-images.coingecko.com/coins/images/{}/large/{}.png", listed.rank, listed.coin.id),
                "current_price": price,
                "market_cap": market_cap,
                "market_cap_rank": listed.rank,
                "fully_diluted_valuation": market_cap,
                "total_volume": market_cap / 50.0,
                "high_24h": price * 1.02,
                "low_24h": price * 0.98,
                "price_change_24h": 0.0,
                "price_change_percentage_24h": 0.0,
                "circulating_supply": 2.0e7,
                "total_supply": 2.0e7,
                "max_supply": null,
                "ath": price * 1.5,
                "atl": price * 0.1,
                "roi": null,
                "last_updated": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
        })
        .collect();
    Answer::json(StatusCode::OK, serde_json::Value::Array(coins))
}

/// `GET /ping`, as CoinGecko answers it.
struct Ping;

impl Endpoint for Ping {
    type Output = Response;

    async fn call(&self, _request: Request) -> poem::Result<Response> {
        Ok(
            Answer::json(StatusCode::OK, json!({"gecko_says": "(V3) To the Moon!"}))
                .into_response(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_helpers_match_coingeckos_bodies() {
        let limited = ScriptedResponse::rate_limited(Some(1)).fixed.unwrap();
        assert_eq!(limited.status, 429);
        assert_eq!(limited.headers, vec![("retry-after".into(), "1".into())]);
        let history = ScriptedResponse::history_limit_exceeded().fixed.unwrap();
        let body: serde_json::Value = serde_json::from_str(&history.body).unwrap();
        assert_eq!(body["error"]["status"]["error_code"], 10012);
    }
}
