//! The Coinbase Exchange client: its root URL, its two calls (`/products/{id}/candles`,
//! `/products/{id}`) and how their answers read. The budget, the retries and the sorting
//! of failures are the shared [`Caller`]'s, with Coinbase's own numbers: its public limit
//! is per second (10 requests, bursts to 15), so a 429 without `Retry-After` waits a
//! second or the back-off, not a minute.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::Utc;
use http::StatusCode;
use reqwest::Url;

use super::error::{CoinbaseError, said};
use super::window::{CandleWindow, Span};
use super::wire::{ProductInfo, WireCandle, parse_candles, parse_hourly_candles};
use crate::config::{FallbackSource, Settings};
use crate::domain::{DailyCandle, ExchangeCandle, HourRange, PriceSource, ProductId};
use crate::upstream::{CallBudget, CallSettings, Caller, Profile, base_url, endpoint};

/// Coinbase Exchange as the caller sees it: its rate-limit window is a second, and a
/// back-off or a `Retry-After` longer than a minute is better left to a later job.
const PROFILE: Profile = Profile {
    source: PriceSource::Coinbase,
    rate_limit_window: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
    max_retry_after: Duration::from_secs(60),
    describe: |answer, what, redactor| {
        format!(
            "Coinbase Exchange answered {} with HTTP {}{}",
            what.unwrap_or("a request"),
            answer.status.as_u16(),
            said(&answer.body, redactor)
        )
    },
    // Coinbase's public candles have no credits to spend.
    spent: |_| false,
};

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

/// The Coinbase Exchange client. Every attempt takes a slot of Coinbase's own call
/// budget; cloning is cheap and shares the budget and the counters.
#[derive(Debug, Clone)]
pub struct CoinbaseClient {
    /// The budget, the retries, the counters and the redaction of the process's secrets.
    caller: Caller,
    /// The API root, parsed once; paths are appended segment by segment.
    base_url: Url,
}

impl CoinbaseSettings {
    /// How to reach the second source as configured (`COINBASE_*`); `None` with
    /// `FALLBACK_SOURCE=off`. Its retries and time limit are its own, under the same rule
    /// as CoinGecko's.
    pub fn from_config(config: &Settings) -> Option<Self> {
        (config.fallback_source == FallbackSource::Coinbase).then(|| Self {
            base_url: config.coinbase_base_url.clone(),
            calls_per_minute: config.coinbase_calls_per_minute,
            max_retries: config.coinbase_max_retries,
            retry_base_delay: Duration::from_millis(config.coinbase_retry_base_delay_ms),
            timeout: Duration::from_secs(config.coinbase_timeout_secs),
        })
    }
}

impl CoinbaseClient {
    /// Builds the client, whose attempts draw from Coinbase's budget in `budget`; fails on
    /// a base URL that is not http(s).
    pub fn new(settings: CoinbaseSettings, budget: CallBudget) -> anyhow::Result<Self> {
        let base_url = base_url(
            "COINBASE_BASE_URL",
            &settings.base_url,
            "https://api.exchange.coinbase.com",
        )?;
        let call = CallSettings {
            calls_per_minute: settings.calls_per_minute,
            max_retries: settings.max_retries,
            retry_base_delay: settings.retry_base_delay,
            timeout: settings.timeout,
        };
        let caller = Caller::new(PROFILE, call, budget, None, |http| http)?;
        Ok(Self { caller, base_url })
    }

    /// Keeps these secrets (`API_TOKEN`, the CoinGecko key, the database password) out of
    /// everything the client quotes, should Coinbase or something in between echo them.
    pub fn hiding<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        self.caller = self.caller.hiding(secrets);
        self
    }

    /// The calls as made: their budget, their counters, their redaction.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The daily candles of `product` on the days of `window`, oldest first: one call
    /// (retries aside). Candles outside the window are dropped; a day without one
    /// (no trades, or before the product's first candle) is absent, never zero; a day
    /// not over yet is provisional. Volume is in USD (base volume × close).
    #[tracing::instrument(skip_all, fields(product = %product, first = %window.first(), last = %window.last()))]
    pub async fn candles(
        &self,
        product: &ProductId,
        window: CandleWindow,
    ) -> Result<Vec<DailyCandle>, CoinbaseError> {
        let what = format!(
            "the candles of {product} from {} to {}",
            window.first(),
            window.last()
        );
        // Taken before the call: a day still running when it was asked for is provisional.
        let now = Utc::now();
        let candles = self.wire_candles(product, window.span(), &what).await?;
        let mut days = Vec::with_capacity(candles.len());
        for candle in candles {
            let day = candle.day();
            if day < window.first() || day > window.last() {
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

    /// The hourly candles of `product` over `hours` (at most 300), as sent, newest first:
    /// one call (retries aside) at `granularity=3600`. Only the list's shape is checked
    /// here; which candles are true, and which hours lie in `hours`, is for
    /// `domain::hours_from_exchange` to judge (Coinbase may answer hours before `start`,
    /// and publishes none for an hour without trades).
    #[tracing::instrument(skip_all, fields(product = %product, hours = %hours))]
    pub async fn hourly_candles(
        &self,
        product: &ProductId,
        hours: HourRange,
    ) -> Result<Vec<ExchangeCandle>, CoinbaseError> {
        let span = Span::of_hours(hours).ok_or_else(|| CoinbaseError::Refused {
            status: 400,
            message: format!(
                "{hours} is longer than the {} hours Coinbase Exchange answers in one call; \
                 this is a bug of price-history: please report it.",
                super::MAX_CANDLES_PER_CALL
            ),
        })?;
        let what = format!("the hourly candles of {product} from {hours}");
        let url = self.candles_url(product, span);
        self.caller
            .get(&url, Some(&what), |answer, redactor| {
                if !answer.status.is_success() {
                    return Err(CoinbaseError::refused(answer, &what, redactor));
                }
                parse_hourly_candles(&answer.body).map_err(|why| {
                    CoinbaseError::unreadable(answer, &what, &why.to_string(), redactor)
                })
            })
            .await
    }

    /// The candles of `product` over `span`, as sent and checked against its granularity
    /// (one call, retries aside): what every candle size shares.
    async fn wire_candles(
        &self,
        product: &ProductId,
        span: Span,
        what: &str,
    ) -> Result<Vec<WireCandle>, CoinbaseError> {
        let url = self.candles_url(product, span);
        self.caller
            .get(&url, Some(what), |answer, redactor| {
                if !answer.status.is_success() {
                    return Err(CoinbaseError::refused(answer, what, redactor));
                }
                parse_candles(&answer.body, span.granularity).map_err(|why| {
                    if why.is_bad_data() {
                        CoinbaseError::bad_data(what, &why)
                    } else {
                        CoinbaseError::unreadable(answer, what, &why.to_string(), redactor)
                    }
                })
            })
            .await
    }

    /// Whether Coinbase Exchange lists `product` (one call, retries aside): its
    /// description, or `None` for Coinbase's 404 (`{"message":"NotFound"}`).
    #[tracing::instrument(skip_all, fields(product = %product))]
    pub async fn product(&self, product: &ProductId) -> Result<Option<ProductInfo>, CoinbaseError> {
        let what = format!("the product {product}");
        let url = endpoint(&self.base_url, ["products", product.as_str()]);
        self.caller
            .get(&url, Some(&what), |answer, redactor| {
                if answer.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !answer.status.is_success() {
                    return Err(CoinbaseError::refused(answer, &what, redactor));
                }
                serde_json::from_slice::<ProductInfo>(&answer.body)
                    .map(Some)
                    .map_err(|e| CoinbaseError::unreadable(answer, &what, &e.to_string(), redactor))
            })
            .await
    }

    fn candles_url(&self, product: &ProductId, span: Span) -> Url {
        let (start, end) = span.bounds();
        let mut url = endpoint(&self.base_url, ["products", product.as_str(), "candles"]);
        url.query_pairs_mut()
            .append_pair("granularity", &span.granularity.seconds().to_string())
            .append_pair("start", &start)
            .append_pair("end", &end);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Settings as `price-history` reads them from `args`.
    fn configured(args: &[&str]) -> Settings {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let argv = std::iter::once("price-history").chain(args.iter().copied());
        <Cli as clap::Parser>::parse_from(argv).settings
    }

    #[test]
    fn the_second_source_is_coinbase_by_default_and_off_turns_it_off() {
        let defaults = configured(&[]);
        let coinbase = CoinbaseSettings::from_config(&defaults).expect("on by default");
        assert_eq!(coinbase.base_url, "https://api.exchange.coinbase.com");
        assert_eq!(coinbase.calls_per_minute.get(), 120);
        assert_eq!(
            (
                coinbase.max_retries,
                coinbase.retry_base_delay,
                coinbase.timeout
            ),
            (3, Duration::from_millis(2000), Duration::from_secs(30))
        );
        assert!(
            CoinbaseSettings::from_config(&configured(&["--fallback-source", "off"])).is_none()
        );
        let set = configured(&["--coinbase-calls-per-minute", "30"]);
        assert_eq!(
            CoinbaseSettings::from_config(&set)
                .unwrap()
                .calls_per_minute
                .get(),
            30
        );
    }

    #[test]
    fn coinbase_has_retries_and_a_time_limit_of_its_own_not_coingeckos() {
        let set = configured(&[
            "--coingecko-max-retries",
            "9",
            "--coingecko-retry-base-delay-ms",
            "7",
            "--coingecko-timeout-secs",
            "99",
            "--coinbase-max-retries",
            "1",
            "--coinbase-retry-base-delay-ms",
            "250",
            "--coinbase-timeout-secs",
            "12",
        ]);
        let coinbase = CoinbaseSettings::from_config(&set).unwrap();
        assert_eq!(
            (
                coinbase.max_retries,
                coinbase.retry_base_delay,
                coinbase.timeout
            ),
            (1, Duration::from_millis(250), Duration::from_secs(12))
        );
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
    fn the_url_asks_for_daily_candles_in_iso_8601_and_a_root_that_is_no_url_is_refused() {
        let client = |base| CoinbaseClient::new(settings(base), CallBudget::ProcessLocal);
        for bad in [
            "api.exchange.coinbase.com",
            "ftp://api.exchange.coinbase.com",
        ] {
            let error = client(bad).unwrap_err();
            assert!(error.to_string().contains("COINBASE_BASE_URL"), "{error}");
        }
        for base in [
            "https://api.exchange.coinbase.com",
            "https://api.exchange.coinbase.com/",
        ] {
            let client = client(base).unwrap();
            let window = CandleWindow::new(day(2024, 1, 1), day(2024, 1, 31)).unwrap();
            assert_eq!(
                client
                    .candles_url(&ProductId::parse("BTC-USD").unwrap(), window.span())
                    .as_str(),
                "https://api.exchange.coinbase.com/products/BTC-USD/candles\
                 ?granularity=86400&start=2024-01-01T00%3A00%3A00Z&end=2024-01-31T23%3A59%3A59Z"
            );
        }
    }

    #[test]
    fn the_url_asks_for_hourly_candles_from_the_first_hours_start_to_the_last_ones_end() {
        let client = CoinbaseClient::new(
            settings("https://api.exchange.coinbase.com"),
            CallBudget::ProcessLocal,
        )
        .unwrap();
        let first = crate::domain::Hour::first_of(day(2024, 1, 1)).plus(5);
        let hours = HourRange::starting(first, 300).unwrap();
        assert_eq!(
            client
                .candles_url(
                    &ProductId::parse("BTC-USD").unwrap(),
                    Span::of_hours(hours).unwrap()
                )
                .as_str(),
            "https://api.exchange.coinbase.com/products/BTC-USD/candles\
             ?granularity=3600&start=2024-01-01T05%3A00%3A00Z&end=2024-01-13T16%3A59%3A59Z"
        );
    }

    #[test]
    fn a_429_waits_what_it_is_told_or_at_least_coinbases_second() {
        let waits = PROFILE.waits_after_a_429(Duration::from_millis(10));
        assert_eq!(waits, [3, 60, 1].map(Duration::from_secs));
    }
}
