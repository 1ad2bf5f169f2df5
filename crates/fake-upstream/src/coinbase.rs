//! A fake Coinbase Exchange on loopback, faithful to the two endpoints the service calls:
//! for integration tests and benchmarks of the second source.
//!
//! What it copies from Coinbase Exchange (see `research/second-source.md`):
//! `GET /products/{product}/candles?granularity=86400&start=<ISO 8601>&end=<ISO 8601>`
//! answered newest first as `[time, low, high, open, close, volume]` (time = the
//! candle's start in UNIX seconds, volume in the base asset), at most 300 candles per
//! request (a longer range is a 400, not a cut), no candle for a day without trades,
//! nothing before the product's first day or after now, today's candle while the day
//! runs, `{"message": ...}` error bodies, 429 `Public rate limit exceeded` over its rate
//! (10 requests a second by default), and `GET /products/{product}` with 404
//! `{"message":"NotFound"}` for a product it does not list.
//!
//! Its prices: each product trades the fake CoinGecko's coin of the same name
//! ([`PRODUCTS`]), hour by hour, a little off (within ±0.3 %, fixed per day), so a test can
//! tell the sources apart; [`COLLIDING`] is another asset under a ticker the service
//! could guess (`SOLX-USD`, a hundred times solana's price). What it adds for tests: it
//! records every call, can answer with scripted responses, be down or answer garbage
//! until told otherwise, have days without trades, answer candles outside the asked
//! range, and computes the candle it serves for a product and day ([`FakeCoinbase::candle`]),
//! as the service stores it ([`TruthCandle`]), without depending on the service.
//!
//! Hourly candles (`granularity=3600`) are served the same way: at most 300 a request
//! (more is the same 400), newest first, none for an hour without trades, none before the
//! product's first hour, the hour not over with its latest trade. For tests it can also
//! have hours without trades, move a product's first hour later, serve a candle a factor
//! off (20 % above CoinGecko's price, say), serve candles that break a rule, and fail
//! hourly requests alone while daily ones answer ([`FakeCoinbase::set_hours_outage`]).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use poem::http::StatusCode;
use poem::{Endpoint, Request, Response, Route, get};
use rust_decimal::Decimal;
use serde_json::json;

use crate::coingecko::market::{DAY_MS, Market};
use crate::coingecko::{FakeCoin, coin, wire_decimal};
pub use crate::server::ScriptedResponse;
use crate::server::{Answer, Fake, Shared, State, Upstream, query_param, wait_for_room};

const DAY_SECS: i64 = 86_400;
const HOUR_SECS: i64 = 3_600;
const HOUR_MS: i64 = 3_600_000;
/// Coinbase refuses a request for more candles than this.
pub const MAX_CANDLES: i64 = 300;
/// Coinbase's 400 body for more than 300 candles.
pub const TOO_MANY_CANDLES_BODY: &str = r#"{"message":"granularity too small for the requested time range. Count of aggregations requested exceeds 300"}"#;
/// Coinbase's 429 body.
pub const RATE_LIMIT_BODY: &str = r#"{"message":"Public rate limit exceeded"}"#;
/// Coinbase's 404 body for a product it does not list.
pub const NOT_FOUND_BODY: &str = r#"{"message":"NotFound"}"#;
/// Coinbase's public limit is per second.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// How far a product's prices lie from the fake CoinGecko's, at most (±0.3 %).
pub const PRICE_SPREAD: f64 = 0.003;
/// The share of CoinGecko's (all-exchange, USD) volume that trades on the fake Coinbase.
const VOLUME_SHARE: f64 = 0.02;

/// A product the fake lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeProduct {
    /// As in `/products/{id}`: `BTC-USD`.
    pub id: &'static str,
    /// The fake CoinGecko's id of the coin whose market it follows.
    pub coingecko_id: &'static str,
    /// 00:00 UTC of its first candle, UNIX seconds.
    pub first_candle_secs: i64,
    /// Its prices are the coin's times this (1: the same asset; 100: another one).
    pub factor: f64,
    /// Decimal places of its prices (Coinbase's `quote_increment`).
    pub quote_decimals: i32,
    /// Keeps its daily offset from CoinGecko independent of the other products'.
    pub salt: u64,
}

impl FakeProduct {
    /// The first UTC day it has a candle for.
    pub fn first_day(&self) -> NaiveDate {
        DateTime::from_timestamp(self.first_candle_secs, 0)
            .expect("a valid time")
            .date_naive()
    }

    fn coin(&self) -> FakeCoin {
        coin(self.coingecko_id).expect("each product follows a coin the fake CoinGecko knows")
    }

    fn base(&self) -> &'static str {
        self.id.split_once('-').map_or(self.id, |(base, _)| base)
    }
}

/// BTC-USD, from 2015-07-20, as on Coinbase Exchange.
pub const BTC_USD: FakeProduct = FakeProduct {
    id: "BTC-USD",
    coingecko_id: "bitcoin",
    first_candle_secs: 1_437_350_400,
    factor: 1.0,
    quote_decimals: 2,
    salt: 0x4254_4300,
};

/// Another asset under a ticker the service could guess: `SOLX-USD` trades at a hundred
/// times solana's price, as a coin registered as `SOLX` (CoinGecko id `solana`) would
/// meet it. Its mapping check must fail.
pub const COLLIDING: FakeProduct = FakeProduct {
    id: "SOLX-USD",
    coingecko_id: "solana",
    first_candle_secs: 1_640_995_200,
    factor: 100.0,
    quote_decimals: 2,
    salt: 0x534f_4c58,
};

/// Every product the fake lists; any other is `NotFound`.
pub const PRODUCTS: [FakeProduct; 5] = [
    BTC_USD,
    FakeProduct {
        // 2016-05-18
        id: "ETH-USD",
        coingecko_id: "ethereum",
        first_candle_secs: 1_463_529_600,
        factor: 1.0,
        quote_decimals: 2,
        salt: 0x4554_4800,
    },
    FakeProduct {
        // 2021-06-17
        id: "SOL-USD",
        coingecko_id: "solana",
        first_candle_secs: 1_623_888_000,
        factor: 1.0,
        quote_decimals: 3,
        salt: 0x534f_4c00,
    },
    FakeProduct {
        // 2021-06-03
        id: "DOGE-USD",
        coingecko_id: "dogecoin",
        first_candle_secs: 1_622_678_400,
        factor: 1.0,
        quote_decimals: 6,
        salt: 0x444f_4745,
    },
    COLLIDING,
];

/// The product with this id (case-insensitive, as Coinbase reads it), if the fake lists it.
pub fn product(id: &str) -> Option<FakeProduct> {
    PRODUCTS
        .iter()
        .copied()
        .find(|product| product.id.eq_ignore_ascii_case(id))
}

/// One candle as the fake sends it: `[time, low, high, open, close, volume]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedCandle {
    /// The candle's start, UNIX seconds (00:00 UTC of its day).
    pub time: i64,
    pub low: f64,
    pub high: f64,
    pub open: f64,
    pub close: f64,
    /// In the base asset.
    pub volume: f64,
}

/// A served candle as price-history stores it: prices as the decimals the JSON numbers
/// stand for, volume in USD (base volume × close, 8 decimal places), provisional while its
/// day runs. Restated here so that the fake does not depend on the service; a test
/// compares the service's rows with it field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruthCandle {
    pub date: NaiveDate,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// USD.
    pub volume: Decimal,
    pub provisional: bool,
}

impl ServedCandle {
    /// The UTC day it covers.
    pub fn date(&self) -> NaiveDate {
        DateTime::from_timestamp(self.time, 0)
            .expect("the fake serves valid times")
            .date_naive()
    }

    /// What the service stores of it, its day judged at `now`.
    pub fn truth(&self, now: DateTime<Utc>) -> TruthCandle {
        let close = wire_decimal(self.close);
        TruthCandle {
            date: self.date(),
            open: wire_decimal(self.open),
            high: wire_decimal(self.high),
            low: wire_decimal(self.low),
            close,
            volume: (wire_decimal(self.volume) * close).round_dp(8).normalize(),
            provisional: self.time + DAY_SECS > now.timestamp(),
        }
    }
}

/// The candle of `product` for `day` as the fake serves it when nothing is scripted, up
/// to `now_ms` for a day not over: `None` before its first day or after now. Pure: a
/// test computes the truth without a server.
pub fn candle_of(product: FakeProduct, day: NaiveDate, now_ms: i64) -> Option<ServedCandle> {
    let start_ms = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    if start_ms < product.first_candle_secs * 1000 || start_ms > now_ms {
        return None;
    }
    let hours = (0..24).map(|hour| start_ms + hour * HOUR_MS);
    sampled_candle(product, day, start_ms, hours, now_ms, 1.0)
}

/// The candle of `product` starting at `start_ms`, a period of `day`: its prices the
/// market's at `instants` up to `now_ms`, a little off as the product's days are, rounded
/// to its quote's decimals; its volume the product's share of the day's, divided among
/// `periods_a_day`. `None` when no instant has come yet.
fn sampled_candle(
    product: FakeProduct,
    day: NaiveDate,
    start_ms: i64,
    instants: impl Iterator<Item = i64>,
    now_ms: i64,
    periods_a_day: f64,
) -> Option<ServedCandle> {
    let market = Market {
        multiplier: 1.0,
        missing_days: HashSet::new(),
        coin: product.coin(),
    };
    let offset = 1.0 + PRICE_SPREAD * unit_noise(day_number(day) as u64 ^ product.salt);
    let unit = 10f64.powi(product.quote_decimals);
    let round = |price: f64| ((price * unit).round() / unit).max(1.0 / unit);
    let prices: Vec<f64> = instants
        .take_while(|at| *at <= now_ms)
        .map(|at| round(market.price(at) * product.factor * offset))
        .collect();
    let open = *prices.first()?;
    let close = *prices.last()?;
    let high = prices.iter().copied().fold(f64::MIN, f64::max);
    let low = prices.iter().copied().fold(f64::MAX, f64::min);
    let volume = market.volume(start_ms) * VOLUME_SHARE / periods_a_day / close;
    Some(ServedCandle {
        time: start_ms / 1000,
        low,
        high,
        open,
        close,
        volume: (volume * 1e8).round() / 1e8,
    })
}

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct FakeCoinbaseOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Answer 429 to requests beyond this many in any second, as Coinbase's public
    /// limit does (10); `None` never rate-limits.
    pub requests_per_second_limit: Option<NonZeroU32>,
}

impl Default for FakeCoinbaseOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            requests_per_second_limit: NonZeroU32::new(10),
        }
    }
}

/// Which endpoint a call asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpointed {
    /// `/products/{product}/candles`.
    Candles,
    /// `/products/{product}`.
    Product,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub at: Instant,
    pub endpoint: Endpointed,
    /// As asked, case kept.
    pub product: String,
    /// The query as sent.
    pub granularity: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub status: u16,
}

/// How a candle served for one hour breaks a rule, for tests of what the service refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHour {
    /// Its low above its high.
    LowAboveHigh,
    /// A low of zero: not a price.
    ZeroLow,
    /// Stamped half an hour past the hour's start: off the hour grid.
    OffTheGrid,
}

/// A fault the fake keeps answering with until told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outage {
    /// Every request gets this status with `{"message":"Internal server error"}`.
    Status(u16),
    /// Every request gets 200 with an HTML page: not JSON.
    Garbage,
    /// Candle requests get 200 with a candle whose low is negative.
    BadCandles,
}

/// A running fake Coinbase Exchange. Dropping it (or `shutdown`) stops it.
pub type FakeCoinbase = Fake<Coinbase>;

/// The fake Coinbase's world: the faults it is told to have.
#[derive(Default)]
pub struct Coinbase {
    outage: Option<Outage>,
    /// A fault of hourly requests alone (`granularity=3600`).
    hours_outage: Option<Outage>,
    days_without_trades: HashSet<NaiveDate>,
    /// Hours (their start, UNIX seconds) with no trade: no hourly candle for them.
    hours_without_trades: HashSet<i64>,
    /// Products whose first candle is later than their listing says (upper-case id).
    first_hours: HashMap<String, i64>,
    /// Hours whose hourly candle is served with every price times a factor.
    hours_off: HashMap<i64, f64>,
    /// Hours whose hourly candle breaks a rule.
    bad_hours: HashMap<i64, BadHour>,
    /// Also answer the candles of the day before and after the asked range.
    spill: bool,
}

impl Coinbase {
    /// `product` as this world has it: its first candle moved later when told so.
    fn effective(&self, product: FakeProduct) -> FakeProduct {
        match self.first_hours.get(&product.id.to_ascii_uppercase()) {
            Some(first) => FakeProduct {
                first_candle_secs: (*first).max(product.first_candle_secs),
                ..product
            },
            None => product,
        }
    }

    /// The hourly candle served for the hour starting at `hour_secs`, faults included.
    fn hour_candle(
        &self,
        product: FakeProduct,
        hour_secs: i64,
        now_ms: i64,
    ) -> Option<ServedCandle> {
        if self.hours_without_trades.contains(&hour_secs) {
            return None;
        }
        let mut candle = hour_candle_of(self.effective(product), hour_secs, now_ms)?;
        if let Some(factor) = self.hours_off.get(&hour_secs) {
            for price in [
                &mut candle.low,
                &mut candle.high,
                &mut candle.open,
                &mut candle.close,
            ] {
                *price = (*price * factor * 100.0).round() / 100.0;
            }
        }
        match self.bad_hours.get(&hour_secs) {
            Some(BadHour::LowAboveHigh) => {
                candle.low = candle.high + 1.0;
            }
            Some(BadHour::ZeroLow) => candle.low = 0.0,
            Some(BadHour::OffTheGrid) => candle.time += 1_800,
            None => {}
        }
        Some(candle)
    }
}

impl Upstream for Coinbase {
    type Options = FakeCoinbaseOptions;
    type Call = RecordedCall;
    const NAME: &'static str = "Coinbase";

    fn bind(options: &FakeCoinbaseOptions) -> SocketAddr {
        options.bind
    }

    fn routes(shared: &Arc<Shared<Self>>) -> Route {
        let endpoint = |endpoint| {
            get(Products {
                shared: shared.clone(),
                endpoint,
            })
        };
        Route::new()
            .at("/products/:product/candles", endpoint(Endpointed::Candles))
            .at("/products/:product", endpoint(Endpointed::Product))
    }
}

impl FakeCoinbase {
    /// Requests for candles so far (product checks not counted).
    pub fn candle_calls(&self) -> usize {
        self.shared
            .state()
            .calls
            .iter()
            .filter(|call| call.endpoint == Endpointed::Candles)
            .count()
    }

    /// Requests for hourly candles so far (`granularity=3600`).
    pub fn hourly_calls(&self) -> usize {
        self.hourly_requests().len()
    }

    /// The requests for hourly candles so far, oldest first.
    pub fn hourly_requests(&self) -> Vec<RecordedCall> {
        self.shared
            .state()
            .calls
            .iter()
            .filter(|call| {
                call.endpoint == Endpointed::Candles && call.granularity.as_deref() == Some("3600")
            })
            .cloned()
            .collect()
    }

    /// Every hourly request from now on meets this fault, while daily ones answer as usual
    /// (`None`: back to normal).
    pub fn set_hours_outage(&self, outage: Option<Outage>) {
        self.shared.state().world.hours_outage = outage;
    }

    /// Hours (each given by its start) in which nothing traded: no hourly candle is served
    /// for them.
    pub fn set_hours_without_trades(&self, hours: impl IntoIterator<Item = DateTime<Utc>>) {
        self.shared.state().world.hours_without_trades =
            hours.into_iter().map(|at| at.timestamp()).collect();
    }

    /// `product_id` has no candle, daily or hourly, before `first` (an hour's start): as a
    /// product listed later than the range asked.
    pub fn set_first_hour(&self, product_id: &str, first: DateTime<Utc>) {
        self.shared
            .state()
            .world
            .first_hours
            .insert(product_id.to_ascii_uppercase(), first.timestamp());
    }

    /// The hourly candle of the hour starting at `hour` is served with every price times
    /// `factor` (1.2: 20 % above the market).
    pub fn set_hour_off(&self, hour: DateTime<Utc>, factor: f64) {
        self.shared
            .state()
            .world
            .hours_off
            .insert(hour.timestamp(), factor);
    }

    /// The hourly candle of the hour starting at `hour` is served broken as `how`.
    pub fn set_bad_hour(&self, hour: DateTime<Utc>, how: BadHour) {
        self.shared
            .state()
            .world
            .bad_hours
            .insert(hour.timestamp(), how);
    }

    /// The hourly candle served for the hour starting at `hour`, faults included; `None`
    /// when none is (no trades, before the product's first hour, not begun).
    pub fn hour_candle(&self, product_id: &str, hour: DateTime<Utc>) -> Option<ServedCandle> {
        let product = product(product_id).expect("a product the fake lists");
        self.shared.state().world.hour_candle(
            product,
            hour.timestamp(),
            Utc::now().timestamp_millis(),
        )
    }

    /// Every request from now on meets this fault (`None`: back to normal).
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.shared.state().world.outage = outage;
    }

    /// Days on which no product traded: no candle is served for them.
    pub fn set_days_without_trades(&self, days: impl IntoIterator<Item = NaiveDate>) {
        self.shared.state().world.days_without_trades = days.into_iter().collect();
    }

    /// Also answer the candles of the day before and the day after the asked range, as
    /// Coinbase sometimes does, so a client must drop what it did not ask for.
    pub fn set_spill(&self, spill: bool) {
        self.shared.state().world.spill = spill;
    }

    /// The candle the fake serves for `product` on `day`, as the client stores it (volume
    /// in USD, provisional while the day runs); `None` when it serves none (before the
    /// product's first day, a day without trades, a future day).
    pub fn candle(&self, product_id: &str, day: NaiveDate) -> Option<TruthCandle> {
        let product = product(product_id).expect("a product the fake lists");
        let product = self.shared.state().world.effective(product);
        if self.shared.state().world.days_without_trades.contains(&day) {
            return None;
        }
        let now = Utc::now();
        Some(candle_of(product, day, now.timestamp_millis())?.truth(now))
    }

    /// [`candle`](Self::candle) of every day from `first` to `last` that has one, oldest first.
    pub fn candles_between(
        &self,
        product_id: &str,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Vec<TruthCandle> {
        first
            .iter_days()
            .take_while(|day| *day <= last)
            .filter_map(|day| self.candle(product_id, day))
            .collect()
    }
}

#[derive(Clone)]
struct Products {
    shared: Arc<Shared<Coinbase>>,
    endpoint: Endpointed,
}

/// The request's parts the fake looks at.
struct Asked {
    product: String,
    granularity: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

impl Asked {
    fn read(request: &Request) -> Self {
        let param = |name: &str| query_param(request, name);
        Self {
            product: request
                .raw_path_param("product")
                .unwrap_or_default()
                .to_owned(),
            granularity: param("granularity"),
            start: param("start"),
            end: param("end"),
        }
    }
}

impl Endpoint for Products {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let asked = Asked::read(&request);
        let record = |at, status| RecordedCall {
            at,
            endpoint: self.endpoint,
            product: asked.product.clone(),
            granularity: asked.granularity.clone(),
            start: asked.start.clone(),
            end: asked.end.clone(),
            status,
        };
        let response = self
            .shared
            .respond(|state, arrived| self.answer(state, &asked, arrived), record)
            .await;
        Ok(response)
    }
}

/// `{"message": text}` with `status`, as Coinbase words its errors.
fn message(status: u16, text: &str) -> Answer {
    Answer::json(
        StatusCode::from_u16(status).expect("a valid HTTP status"),
        json!({ "message": text }),
    )
}

impl Products {
    /// What Coinbase would answer, in the order it seems to check things.
    fn answer(&self, state: &State<Coinbase>, asked: &Asked, arrived: Instant) -> Answer {
        if let Some(limit) = self.shared.options.requests_per_second_limit {
            let arrivals = state.calls.iter().map(|call| call.at);
            if wait_for_room(arrivals, limit, RATE_LIMIT_WINDOW, arrived).is_some() {
                return Answer::text(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_BODY);
            }
        }
        let hourly = asked.granularity.as_deref() == Some("3600");
        let outage = match &state.world.hours_outage {
            Some(outage) if hourly && self.endpoint == Endpointed::Candles => Some(outage),
            _ => state.world.outage.as_ref(),
        };
        match outage {
            Some(Outage::Status(status)) => return message(*status, "Internal server error"),
            Some(Outage::Garbage) => {
                return Answer::text(StatusCode::OK, "<html><body>Bad gateway</body></html>");
            }
            Some(Outage::BadCandles) if self.endpoint == Endpointed::Candles => {
                return Answer::text(StatusCode::OK, "[[1704067200, -1, 2, 1, 1, 5]]");
            }
            _ => {}
        }
        let Some(product) = product(&asked.product) else {
            return Answer::text(StatusCode::NOT_FOUND, NOT_FOUND_BODY);
        };
        match self.endpoint {
            Endpointed::Product => Answer::text(StatusCode::OK, describe(product)),
            Endpointed::Candles => candles(&state.world, product, asked),
        }
    }
}

/// `/products/{product}` as Coinbase describes one.
fn describe(product: FakeProduct) -> String {
    json!({
        "id": product.id,
        "base_currency": product.base(),
        "quote_currency": "USD",
        "quote_increment": format!("{}", 10f64.powi(-product.quote_decimals)),
        "base_increment": "0.00000001",
        "display_name": product.id.replace('-', "/"),
        "min_market_funds": "1",
        "margin_enabled": false,
        "post_only": false,
        "limit_only": false,
        "cancel_only": false,
        "status": "online",
        "status_message": "",
        "trading_disabled": false,
        "fx_stablecoin": false,
        "max_slippage_percentage": "0.02000000",
        "auction_mode": false,
        "high_bid_limit_percentage": ""
    })
    .to_string()
}

/// An ISO 8601 time as Coinbase takes it (`2024-01-01T00:00:00Z`, with or without the
/// zone, or a bare date), or UNIX seconds.
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            value
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
        })
}

fn candles(world: &Coinbase, product: FakeProduct, asked: &Asked) -> Answer {
    let period = match asked.granularity.as_deref() {
        None | Some("86400") => DAY_SECS,
        Some("3600") => HOUR_SECS,
        Some("60" | "300" | "900" | "21600") => {
            return message(
                400,
                "this fake serves daily and hourly candles only (granularity=86400 or 3600)",
            );
        }
        Some(_) => return message(400, "Unsupported granularity"),
    };
    let now = Utc::now();
    let (start, end) = match (asked.start.as_deref(), asked.end.as_deref()) {
        (None, None) => (
            now - chrono::Duration::seconds(period * (MAX_CANDLES - 1)),
            now,
        ),
        (Some(start), Some(end)) => match (parse_time(start), parse_time(end)) {
            (Some(start), Some(end)) => (start, end),
            _ => return message(400, "Invalid start or end: expected an ISO 8601 time"),
        },
        _ => return message(400, "start and end must be given together"),
    };
    if end < start {
        return message(400, "start must be before end");
    }
    if (end - start).num_seconds() / period > MAX_CANDLES
        || ((end - start).num_seconds() / period == MAX_CANDLES
            && (end - start).num_seconds() % period > 0)
    {
        return Answer::text(StatusCode::BAD_REQUEST, TOO_MANY_CANDLES_BODY);
    }
    if period == HOUR_SECS {
        return hourly_candles(world, product, start, end);
    }
    let product = world.effective(product);
    // Candles whose start lies in [start, end]; with `spill`, one more on each side.
    let spill = i64::from(world.spill);
    let first = start.timestamp().div_euclid(DAY_SECS)
        + i64::from(start.timestamp().rem_euclid(DAY_SECS) != 0)
        - spill;
    let last = end.timestamp().div_euclid(DAY_SECS) + spill;
    let now_ms = now.timestamp_millis();
    let rows: Vec<serde_json::Value> = (first..=last)
        .rev()
        .filter_map(|n| DateTime::from_timestamp(n * DAY_SECS, 0))
        .map(|t| t.date_naive())
        .filter(|day| !world.days_without_trades.contains(day))
        .filter_map(|day| candle_of(product, day, now_ms))
        .map(|c| json!([c.time, c.low, c.high, c.open, c.close, c.volume]))
        .collect();
    Answer::json(StatusCode::OK, serde_json::Value::Array(rows))
}

/// The hourly candles whose start lies in `[start, end]` (one more on each side with
/// `spill`), newest first.
fn hourly_candles(
    world: &Coinbase,
    product: FakeProduct,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Answer {
    let spill = i64::from(world.spill);
    let first = start.timestamp().div_euclid(HOUR_SECS)
        + i64::from(start.timestamp().rem_euclid(HOUR_SECS) != 0)
        - spill;
    let last = end.timestamp().div_euclid(HOUR_SECS) + spill;
    let now_ms = Utc::now().timestamp_millis();
    let rows: Vec<serde_json::Value> = (first..=last)
        .rev()
        .filter_map(|n| world.hour_candle(product, n * HOUR_SECS, now_ms))
        .map(|c| json!([c.time, c.low, c.high, c.open, c.close, c.volume]))
        .collect();
    Answer::json(StatusCode::OK, serde_json::Value::Array(rows))
}

/// The hourly candle of `product` for the hour starting at `hour_secs`, as the fake serves
/// it when nothing is scripted, up to `now_ms` for the hour not over: `None` before its
/// first candle or after now. Its prices are the market's at four instants of the hour,
/// a little off as the product's days are; its volume the product's share of the hour.
pub fn hour_candle_of(product: FakeProduct, hour_secs: i64, now_ms: i64) -> Option<ServedCandle> {
    let start_ms = hour_secs * 1000;
    if hour_secs.rem_euclid(HOUR_SECS) != 0
        || hour_secs < product.first_candle_secs
        || start_ms > now_ms
    {
        return None;
    }
    let day = DateTime::from_timestamp(hour_secs, 0)?.date_naive();
    let instants = [0, 15, 30, 45, 59].map(|minute| start_ms + minute * 60_000);
    sampled_candle(product, day, start_ms, instants.into_iter(), now_ms, 24.0)
}

fn day_number(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
        / DAY_MS
}

/// A deterministic number in [-1, 1) (SplitMix64, as the fake CoinGecko's noise).
fn unit_noise(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let bits = (z ^ (z >> 31)) >> 11;
    bits as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    const FAR_FUTURE: i64 = i64::MAX / 2;

    #[test]
    fn the_first_days_are_the_dates_they_claim() {
        assert_eq!(BTC_USD.first_day(), day(2015, 7, 20));
        assert_eq!(product("eth-usd").unwrap().first_day(), day(2016, 5, 18));
        assert!(product("BTC-EUR").is_none());
        for product in PRODUCTS {
            assert_eq!(product.first_candle_secs % DAY_SECS, 0, "{}", product.id);
            assert!(coin(product.coingecko_id).is_some(), "{}", product.id);
        }
    }

    #[test]
    fn nothing_before_the_first_day_or_after_now() {
        assert!(candle_of(BTC_USD, day(2015, 7, 19), FAR_FUTURE).is_none());
        assert!(candle_of(BTC_USD, day(2015, 7, 20), FAR_FUTURE).is_some());
        let noon = day(2024, 1, 1).and_hms_opt(12, 30, 0).unwrap().and_utc();
        assert!(candle_of(BTC_USD, day(2024, 1, 2), noon.timestamp_millis()).is_none());
        let today = candle_of(BTC_USD, day(2024, 1, 1), noon.timestamp_millis()).unwrap();
        let whole = candle_of(BTC_USD, day(2024, 1, 1), FAR_FUTURE).unwrap();
        assert_eq!(today.open, whole.open);
        assert_ne!(
            today.close, whole.close,
            "today's close is the latest trade"
        );
    }

    #[test]
    fn prices_lie_within_the_spread_of_coingeckos_and_the_collision_a_hundred_times_off() {
        let solana = Market {
            multiplier: 1.0,
            missing_days: HashSet::new(),
            coin: coin("solana").unwrap(),
        };
        let sol = product("SOL-USD").unwrap();
        for n in 0..60u64 {
            let d = day(2023, 1, 1) + chrono::Days::new(n * 5);
            let at = d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
            let reference = solana.price(at);
            let open = candle_of(sol, d, FAR_FUTURE).unwrap().open;
            let off = (open / reference - 1.0).abs();
            assert!(off <= PRICE_SPREAD + 0.001, "{d}: {off}");
            let collision = candle_of(COLLIDING, d, FAR_FUTURE).unwrap().open;
            assert!((collision / reference - 100.0).abs() < 1.0, "{d}");
        }
    }

    #[test]
    fn candles_hold_their_open_and_close_and_are_read_back_as_sent() {
        for product in PRODUCTS {
            for n in 0..30u64 {
                let d = day(2024, 1, 1) + chrono::Days::new(n * 11);
                let c = candle_of(product, d, FAR_FUTURE).unwrap();
                assert!(c.low > 0.0 && c.volume > 0.0, "{}", product.id);
                assert!(c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close));
                let wire = serde_json::to_string(&c.close).unwrap();
                assert_eq!(serde_json::from_str::<f64>(&wire).unwrap(), c.close);
            }
        }
    }

    #[test]
    fn hourly_candles_start_on_the_hour_hold_their_open_and_close_and_begin_with_the_product() {
        let first = BTC_USD.first_candle_secs;
        assert!(hour_candle_of(BTC_USD, first - 3_600, FAR_FUTURE).is_none());
        assert!(hour_candle_of(BTC_USD, first + 1_800, FAR_FUTURE).is_none());
        for n in 0..200 {
            let hour = 1_704_067_200 + n * 7 * 3_600;
            let c = hour_candle_of(BTC_USD, hour, FAR_FUTURE).unwrap();
            assert_eq!(c.time, hour);
            assert!(c.low > 0.0 && c.volume > 0.0);
            assert!(c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close));
        }
        let running = hour_candle_of(BTC_USD, 1_704_067_200, 1_704_067_200_000 + 60_000).unwrap();
        assert_eq!(
            running.open, running.close,
            "only its first minute has traded"
        );
    }

    #[test]
    fn times_are_read_in_every_form_coinbase_takes() {
        let t = day(2024, 1, 1).and_hms_opt(0, 0, 0).unwrap().and_utc();
        for value in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "1704067200",
        ] {
            assert_eq!(parse_time(value), Some(t), "{value}");
        }
        assert_eq!(parse_time("yesterday"), None);
    }
}
