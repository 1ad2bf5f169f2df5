//! Calls to Coinbase Exchange: the request, the retry loop and its back-off, through the
//! source's own call budget.
//!
//! The loop is written like CoinGecko's (`coingecko/client.rs`), with Coinbase's own
//! numbers: its public limit is per second (10 requests, bursts to 15), so a 429 without
//! `Retry-After` waits a second or the back-off, not a minute.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use http::StatusCode;
use reqwest::Url;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable, default_on_request_failure};

use super::error::CoinbaseError;
use super::wire::{DAY_SECS, ProductInfo, parse_candles};
use crate::domain::{DailyCandle, PriceSource, ProductId};
use crate::upstream::{
    BudgetMetrics, CallBudget, CallLimiter, MAX_BODY_BYTES, RateLimit, Redactor, error_chain,
    read_capped, retry_after,
};

/// Coinbase answers at most this many candles per request, and refuses a longer range
/// with a 400 rather than cutting it.
pub const MAX_CANDLES_PER_CALL: u32 = 300;
/// Coinbase's rate-limit window is a second: after a 429 without `Retry-After`, wait at
/// least this.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// Upper bound of one back-off delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Upper bound of a `Retry-After` wait: longer is better left to a later job.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long to wait for a TCP/TLS connection, when the call's time-out is longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A run of whole UTC days one candle request may ask for: 1 to
/// [`MAX_CANDLES_PER_CALL`] days, so no request can meet Coinbase's 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleWindow {
    first: NaiveDate,
    last: NaiveDate,
}

impl CandleWindow {
    /// `None` when `last` is before `first` or the run is longer than 300 days.
    pub fn new(first: NaiveDate, last: NaiveDate) -> Option<Self> {
        let days = (last - first).num_days() + 1;
        (1..=i64::from(MAX_CANDLES_PER_CALL))
            .contains(&days)
            .then_some(Self { first, last })
    }

    /// `first..=last` cut into windows of at most 300 days, oldest first: the fewest
    /// calls that cover it. Empty when `last` is before `first`.
    pub fn split(first: NaiveDate, last: NaiveDate) -> Vec<Self> {
        let mut windows = Vec::new();
        let mut start = first;
        while start <= last {
            let end = start
                .checked_add_days(chrono::Days::new(u64::from(MAX_CANDLES_PER_CALL) - 1))
                .map_or(last, |end| end.min(last));
            windows.push(Self {
                first: start,
                last: end,
            });
            match end.succ_opt() {
                Some(next) => start = next,
                None => break,
            }
        }
        windows
    }

    pub fn first(&self) -> NaiveDate {
        self.first
    }

    pub fn last(&self) -> NaiveDate {
        self.last
    }

    /// How many days it covers (1 to 300).
    pub fn days(&self) -> u32 {
        u32::try_from((self.last - self.first).num_days() + 1).expect("1 to 300")
    }

    /// Where candles begin in this window, when its first day has none: the first day
    /// with a candle in `candles` (an answer to this window), or the day after the
    /// window when there is none. `None` when the first day has a candle. For a window
    /// that starts at (or before) the earliest day ever asked of the product, this is
    /// where the product's candles begin (`store::second_source::learn_candles_from`).
    pub fn candles_begin(&self, candles: &[DailyCandle]) -> Option<NaiveDate> {
        let first_with_candle = candles
            .iter()
            .map(|candle| candle.date)
            .filter(|day| (self.first..=self.last).contains(day))
            .min();
        match first_with_candle {
            Some(day) if day == self.first => None,
            Some(day) => Some(day),
            None => self.last.succ_opt(),
        }
    }

    /// `start` and `end` of the request: 00:00:00 of the first day to 23:59:59 of the
    /// last, so the last day's candle is in the range whether Coinbase reads `end` as
    /// inclusive or not, and `(end - start) / 86400` stays under 300.
    fn bounds(&self) -> (String, String) {
        let start = self.first.and_hms_opt(0, 0, 0).expect("midnight exists");
        let end = self.last.and_hms_opt(23, 59, 59).expect("a valid time");
        (
            start.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            end.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    }
}

/// How to reach Coinbase Exchange, as configured (`COINBASE_*`).
#[derive(Debug, Clone)]
pub struct CoinbaseSettings {
    /// API root, such as `https://api.exchange.coinbase.com`; a trailing slash is fine.
    pub base_url: String,
    /// The source's own call budget, retries included, spread evenly over the minute.
    pub calls_per_minute: NonZeroU32,
    /// HTTP-level retries of one call, on 429, 408, 5xx, time-outs and connection errors.
    pub max_retries: u32,
    /// The first back-off delay; it doubles per retry, with jitter.
    pub retry_base_delay: Duration,
    /// One attempt's time limit, from connecting to the end of the body.
    pub timeout: Duration,
}

/// How an attempt ended, as `/metrics` would label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Unreadable,
    RateLimited,
    ServerError,
    Refused,
    TransportError,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 6] = [
        CallOutcome::Ok,
        CallOutcome::Unreadable,
        CallOutcome::RateLimited,
        CallOutcome::ServerError,
        CallOutcome::Refused,
        CallOutcome::TransportError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Unreadable => "unreadable",
            CallOutcome::RateLimited => "rate_limited",
            CallOutcome::ServerError => "server_error",
            CallOutcome::Refused => "refused",
            CallOutcome::TransportError => "transport_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The Coinbase Exchange client. Every attempt takes a slot of Coinbase's own call
/// budget; cloning is cheap and shares the budget and the counters.
#[derive(Clone)]
pub struct CoinbaseClient {
    inner: Arc<Inner>,
    /// Removes the secrets the process holds from every body and error this client quotes.
    redactor: Arc<Redactor>,
}

struct Inner {
    /// reqwest with the budget as middleware, so every attempt waits its turn.
    http: ClientWithMiddleware,
    /// The API root, parsed once; paths are appended segment by segment.
    base_url: Url,
    /// Delays between attempts and the retry limit.
    backoff: ExponentialBackoff,
    /// Attempts sent, counted by the budget's middleware.
    sent: Arc<AtomicU64>,
    limiter: Arc<CallLimiter>,
    /// Attempts by how they ended, in the order of [`CallOutcome::ALL`].
    outcomes: [AtomicU64; CallOutcome::ALL.len()],
}

impl fmt::Debug for CoinbaseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinbaseClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("calls_made", &self.calls_made())
            .finish()
    }
}

impl CoinbaseClient {
    /// Builds the client, whose attempts draw from Coinbase's budget in `budget`; fails on
    /// a base URL that is not http(s).
    pub fn new(settings: CoinbaseSettings, budget: CallBudget) -> anyhow::Result<Self> {
        let base_url = Url::parse(settings.base_url.trim())
            .with_context(|| format!("COINBASE_BASE_URL {:?} is not a URL", settings.base_url))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            bail!(
                "COINBASE_BASE_URL {:?} must be an http(s) URL such as https://api.exchange.coinbase.com",
                settings.base_url
            );
        }
        // reqwest is built with `rustls-no-provider`: it needs a process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("price-history/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT))
            .build()
            .context("while building the HTTP client for Coinbase Exchange")?;
        let sent = Arc::new(AtomicU64::new(0));
        let limiter = Arc::new(CallLimiter::for_source(
            PriceSource::Coinbase,
            budget,
            settings.calls_per_minute.get(),
            None,
        ));
        let http = reqwest_middleware::ClientBuilder::new(http)
            .with(RateLimit {
                limiter: limiter.clone(),
                sent: sent.clone(),
            })
            .build();
        let backoff = ExponentialBackoff::builder()
            .retry_bounds(
                settings.retry_base_delay,
                settings.retry_base_delay.max(MAX_BACKOFF),
            )
            .jitter(Jitter::Bounded)
            .base(2)
            .build_with_max_retries(settings.max_retries);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                backoff,
                sent,
                limiter,
                outcomes: Default::default(),
            }),
            redactor: Arc::new(Redactor::default()),
        })
    }

    /// Keeps these secrets (`API_TOKEN`, the CoinGecko key, the database password) out of
    /// everything the client quotes, should Coinbase or something in between echo them.
    pub fn hiding<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut redactor = (*self.redactor).clone();
        for secret in secrets {
            redactor.add(secret);
        }
        self.redactor = Arc::new(redactor);
        self
    }

    /// Attempts sent so far by this client and its clones, retries included.
    pub fn calls_made(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// This process's figures of Coinbase's call budget.
    pub fn budget_metrics(&self) -> &BudgetMetrics {
        self.inner.limiter.metrics()
    }

    /// Attempts so far by how they ended.
    pub fn calls_by_outcome(&self) -> [(CallOutcome, u64); CallOutcome::ALL.len()] {
        std::array::from_fn(|i| {
            (
                CallOutcome::ALL[i],
                self.inner.outcomes[i].load(Ordering::Relaxed),
            )
        })
    }

    /// The daily candles of `product` on the days of `window`, oldest first: one call
    /// (retries aside). Candles outside the window are dropped; a day without one
    /// (no trades, or before the product's first candle) is absent, never zero; a day
    /// not over yet is provisional. Volume is in USD (base volume × close).
    #[tracing::instrument(skip_all, fields(product = %product, first = %window.first, last = %window.last))]
    pub async fn candles(
        &self,
        product: &ProductId,
        window: CandleWindow,
    ) -> Result<Vec<DailyCandle>, CoinbaseError> {
        let what = format!(
            "the candles of {product} from {} to {}",
            window.first, window.last
        );
        let url = self.candles_url(product, window);
        let (status, body) = self.get(&url, &what).await?;
        if !status.is_success() {
            return Err(CoinbaseError::refused(status, &body, &what, &self.redactor));
        }
        let candles = parse_candles(&body).map_err(|why| {
            self.count(CallOutcome::Unreadable);
            if why.is_bad_data() {
                CoinbaseError::bad_data(&what, &why)
            } else {
                CoinbaseError::unreadable(status, &body, &what, &why.to_string(), &self.redactor)
            }
        })?;
        self.count(CallOutcome::Ok);
        let now = Utc::now();
        let mut days = Vec::with_capacity(candles.len());
        for candle in candles {
            let day = candle.day();
            if day < window.first || day > window.last {
                continue;
            }
            let daily = candle
                .to_daily(now)
                .ok_or_else(|| CoinbaseError::BadAnswer {
                    message: format!(
                        "Coinbase Exchange answered {what} with a value no decimal holds; nothing \
                     was stored. Retry later, or set FALLBACK_SOURCE=off if it persists."
                    ),
                })?;
            days.push(daily);
        }
        days.sort_by_key(|candle| candle.date);
        Ok(days)
    }

    /// Whether Coinbase Exchange lists `product` (one call, retries aside): its
    /// description, or `None` for Coinbase's 404 (`{"message":"NotFound"}`).
    #[tracing::instrument(skip_all, fields(product = %product))]
    pub async fn product(&self, product: &ProductId) -> Result<Option<ProductInfo>, CoinbaseError> {
        let what = format!("the product {product}");
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new: an http(s) URL can be a base")
            .pop_if_empty()
            .extend(["products", product.as_str()]);
        let (status, body) = self.get(&url, &what).await?;
        if status == StatusCode::NOT_FOUND {
            self.count(CallOutcome::Ok);
            return Ok(None);
        }
        if !status.is_success() {
            return Err(CoinbaseError::refused(status, &body, &what, &self.redactor));
        }
        match serde_json::from_slice::<ProductInfo>(&body) {
            Ok(info) => {
                self.count(CallOutcome::Ok);
                Ok(Some(info))
            }
            Err(e) => {
                self.count(CallOutcome::Unreadable);
                Err(CoinbaseError::unreadable(
                    status,
                    &body,
                    &what,
                    &e.to_string(),
                    &self.redactor,
                ))
            }
        }
    }

    fn candles_url(&self, product: &ProductId, window: CandleWindow) -> Url {
        let (start, end) = window.bounds();
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new: an http(s) URL can be a base")
            .pop_if_empty()
            .extend(["products", product.as_str(), "candles"]);
        url.query_pairs_mut()
            .append_pair("granularity", &DAY_SECS.to_string())
            .append_pair("start", &start)
            .append_pair("end", &end);
        url
    }

    fn count(&self, outcome: CallOutcome) {
        self.inner.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `GET url`, retried as configured: the status and body of the first answer that is
    /// not worth retrying (a success or a refusal), or why there was none.
    async fn get(&self, url: &Url, what: &str) -> Result<(StatusCode, Vec<u8>), CoinbaseError> {
        let started = SystemTime::now();
        let mut retries = 0;
        loop {
            let failure = match self.attempt(url, what).await? {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            let attempts = retries + 1;
            let backoff = match (
                failure.retryable,
                self.inner.backoff.should_retry(started, retries),
            ) {
                (true, RetryDecision::Retry { execute_after }) => execute_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
                _ => return Err(failure.give_up(attempts)),
            };
            let delay = failure.delay(backoff);
            retries += 1;
            tracing::warn!(
                error = %failure.what,
                retry = retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "Coinbase Exchange call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: an answer to read (`Ok(Ok)`), a failure another attempt may not
    /// repeat (`Ok(Err)`), or an error that ends the call (`Err`).
    async fn attempt(
        &self,
        url: &Url,
        what: &str,
    ) -> Result<Result<(StatusCode, Vec<u8>), Failure>, CoinbaseError> {
        let response = match self.inner.http.get(url.clone()).send().await {
            Ok(response) => response,
            // No slot of the budget, so no request was sent.
            Err(reqwest_middleware::Error::Middleware(error)) => {
                return Err(CoinbaseError::Unavailable {
                    message: self.redactor.apply(&format!("{error:#}")),
                });
            }
            Err(error) => {
                self.count(CallOutcome::TransportError);
                let retryable = matches!(
                    default_on_request_failure(&error),
                    Some(Retryable::Transient)
                );
                return Ok(Err(Failure {
                    what: self.redactor.apply(&format!(
                        "could not reach Coinbase Exchange for {what}: {}",
                        error_chain(&error)
                    )),
                    retryable,
                    rate_limited: false,
                    retry_after: None,
                }));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                self.count(CallOutcome::Unreadable);
                return Err(CoinbaseError::too_large(status, what, MAX_BODY_BYTES));
            }
            Err(error) => {
                self.count(CallOutcome::TransportError);
                return Ok(Err(Failure {
                    what: self.redactor.apply(&format!(
                        "the body of Coinbase Exchange's HTTP {} answer to {what} did not arrive: {}",
                        status.as_u16(),
                        error_chain(&error)
                    )),
                    retryable: true,
                    rate_limited: false,
                    retry_after: None,
                }));
            }
        };
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
        if rate_limited || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            self.count(if rate_limited {
                CallOutcome::RateLimited
            } else {
                CallOutcome::ServerError
            });
            let said = super::wire::error_message(&body)
                .map(|m| format!(": {}", crate::upstream::quote(&self.redactor.apply(&m))))
                .unwrap_or_default();
            return Ok(Err(Failure {
                what: format!(
                    "Coinbase Exchange answered {what} with HTTP {}{said}",
                    status.as_u16()
                ),
                retryable: true,
                rate_limited,
                retry_after,
            }));
        }
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            self.count(CallOutcome::Refused);
        }
        Ok(Ok((status, body)))
    }
}

/// A failed attempt, described for the log and for the final error.
struct Failure {
    /// What happened, in words, already redacted.
    what: String,
    /// False for transport errors not worth retrying (a broken request).
    retryable: bool,
    /// A 429: wait for Coinbase's window rather than less.
    rate_limited: bool,
    /// What the `Retry-After` header asked for, if anything.
    retry_after: Option<Duration>,
}

impl Failure {
    fn delay(&self, backoff: Duration) -> Duration {
        match (self.retry_after, self.rate_limited) {
            (Some(asked), _) => asked.min(MAX_RETRY_AFTER),
            (None, true) => backoff.max(RATE_LIMIT_WINDOW),
            (None, false) => backoff,
        }
    }

    fn give_up(self, attempts: u32) -> CoinbaseError {
        let tries = if attempts == 1 {
            "1 attempt".to_owned()
        } else {
            format!("{attempts} attempts")
        };
        let advice = if self.rate_limited {
            "Coinbase Exchange is rate-limiting this address: lower COINBASE_CALLS_PER_MINUTE, \
             or make sure nothing else on this address uses it."
        } else {
            "The days it would have filled stay out of plan; a later job retries them \
             (FALLBACK_SOURCE=off does without the second source)."
        };
        CoinbaseError::Unavailable {
            message: format!(
                "Gave up on Coinbase Exchange after {tries}; the last one failed: {}. {advice}",
                self.what.trim_end_matches('.'),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn settings(base_url: &str) -> CoinbaseSettings {
        CoinbaseSettings {
            base_url: base_url.to_owned(),
            calls_per_minute: NonZeroU32::new(120).unwrap(),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_window_holds_one_to_three_hundred_days() {
        assert!(CandleWindow::new(day(2024, 1, 1), day(2024, 1, 1)).is_some());
        let longest = CandleWindow::new(day(2024, 1, 1), day(2024, 10, 26)).unwrap();
        assert_eq!(longest.days(), 300);
        assert!(CandleWindow::new(day(2024, 1, 1), day(2024, 10, 27)).is_none());
        assert!(CandleWindow::new(day(2024, 1, 2), day(2024, 1, 1)).is_none());
    }

    #[test]
    fn a_range_splits_into_the_fewest_windows_oldest_first() {
        // 1096 days: ceil(1096 / 300) = 4 windows.
        let windows = CandleWindow::split(day(2021, 1, 1), day(2023, 12, 31));
        assert_eq!(windows.len(), 4);
        assert_eq!(windows[0].first(), day(2021, 1, 1));
        assert_eq!(windows[3].last(), day(2023, 12, 31));
        assert_eq!(windows.iter().map(CandleWindow::days).sum::<u32>(), 1095);
        for pair in windows.windows(2) {
            assert_eq!(pair[0].last().succ_opt(), Some(pair[1].first()));
        }
        assert!(CandleWindow::split(day(2024, 1, 2), day(2024, 1, 1)).is_empty());
    }

    #[test]
    fn where_candles_begin_is_read_from_an_answer_whose_first_days_are_empty() {
        let window = CandleWindow::new(day(2015, 7, 1), day(2015, 7, 31)).unwrap();
        let candle = |date| DailyCandle {
            date,
            open: rust_decimal::Decimal::ONE,
            high: rust_decimal::Decimal::ONE,
            low: rust_decimal::Decimal::ONE,
            close: rust_decimal::Decimal::ONE,
            volume: rust_decimal::Decimal::ONE,
            timestamp: Utc::now(),
            provisional: false,
            points: Some(1),
        };
        let from_the_20th = [candle(day(2015, 7, 21)), candle(day(2015, 7, 20))];
        assert_eq!(window.candles_begin(&from_the_20th), Some(day(2015, 7, 20)));
        assert_eq!(window.candles_begin(&[]), Some(day(2015, 8, 1)));
        assert_eq!(window.candles_begin(&[candle(day(2015, 7, 1))]), None);
    }

    #[test]
    fn the_url_asks_for_daily_candles_in_iso_8601() {
        for base in [
            "https://api.exchange.coinbase.com",
            "https://api.exchange.coinbase.com/",
        ] {
            let client = CoinbaseClient::new(settings(base), CallBudget::ProcessLocal).unwrap();
            let window = CandleWindow::new(day(2024, 1, 1), day(2024, 1, 31)).unwrap();
            assert_eq!(
                client
                    .candles_url(&ProductId::parse("BTC-USD").unwrap(), window)
                    .as_str(),
                "https://api.exchange.coinbase.com/products/BTC-USD/candles\
                 ?granularity=86400&start=2024-01-01T00%3A00%3A00Z&end=2024-01-31T23%3A59%3A59Z"
            );
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for base in [
            "api.exchange.coinbase.com",
            "ftp://api.exchange.coinbase.com",
        ] {
            let error = CoinbaseClient::new(settings(base), CallBudget::ProcessLocal).unwrap_err();
            assert!(error.to_string().contains("COINBASE_BASE_URL"), "{error}");
        }
    }

    #[test]
    fn a_429_waits_what_it_is_told_or_at_least_a_second() {
        let mut failure = Failure {
            what: String::new(),
            retryable: true,
            rate_limited: true,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            failure.delay(Duration::from_millis(10)),
            Duration::from_secs(3)
        );
        failure.retry_after = None;
        assert_eq!(failure.delay(Duration::from_millis(10)), RATE_LIMIT_WINDOW);
        failure.rate_limited = false;
        assert_eq!(
            failure.delay(Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        let message = failure.give_up(4).to_string();
        assert!(
            message.contains("after 4 attempts") && message.contains("Coinbase"),
            "{message}"
        );
    }
}
