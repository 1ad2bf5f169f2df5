//! One call to `/coins/{id}/market_chart/range`: the request, the retry loop and its
//! back-off, and the sorting of failures into transient and permanent.
//!
//! The retry loop is ours rather than reqwest-retry's `RetryTransientMiddleware`: that
//! middleware takes every delay from its policy and cannot wait for what a 429's
//! `Retry-After` header says, nor for CoinGecko's one-minute window when the header is
//! absent. Its pieces are reused: the exponential back-off policy, and
//! `default_on_request_failure` to tell a dropped connection from a broken request.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use reqwest::Url;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable, default_on_request_failure};
use secrecy::{ExposeSecret, SecretString};

use super::budget::{BudgetMetrics, CallBudget, CallLimiter, RateLimit};
use super::error::{CoinGeckoError, ErrorBody};
use super::redact::Redactor;
use super::wire::{MarketChart, MarketCoin};
use crate::upstream::{read_capped, retry_after};

/// The host of CoinGecko's paid plans; keys for it go in a different header.
const PRO_HOST: &str = "pro-api.coingecko.com";
const DEMO_KEY_HEADER: HeaderName = HeaderName::from_static("x-cg-demo-api-key");
const PRO_KEY_HEADER: HeaderName = HeaderName::from_static("x-cg-pro-api-key");
/// CoinGecko's rate-limit window: after a 429 without `Retry-After`, waiting less than
/// this would most likely be refused again.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// Upper bound of one back-off delay, whatever the base and the retry count.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Upper bound of a `Retry-After` wait: a far-off date is better answered by handing the
/// job back to the queue than by holding the worker for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long to wait for a TCP/TLS connection, when the call's time-out is longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body read from CoinGecko. A 90-day hourly window is about 200 KB and the
/// longest daily one (365 days) about 30 KB; anything near this is not a market chart,
/// and reading it whole would cost the worker its memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How to reach CoinGecko, as configured (`COINGECKO_*`).
#[derive(Clone)]
pub struct CoinGeckoSettings {
    /// API root, such as `https://api.coingecko.com/api/v3`; a trailing slash is fine.
    pub base_url: String,
    /// Demo or paid key; which header carries it follows from `base_url`'s host.
    pub api_key: Option<SecretString>,
    /// The call budget, retries included, spread evenly over the minute.
    pub calls_per_minute: NonZeroU32,
    /// HTTP-level retries of one call, on 429, 408, 5xx, time-outs and connection errors.
    pub max_retries: u32,
    /// The first back-off delay; it doubles per retry, with jitter.
    pub retry_base_delay: Duration,
    /// One attempt's time limit, from connecting to the end of the body.
    pub timeout: Duration,
}

impl fmt::Debug for CoinGeckoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinGeckoSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("calls_per_minute", &self.calls_per_minute)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The CoinGecko client. Every attempt takes a slot of the [`CallBudget`] it is built
/// with: with [`CallBudget::Shared`], one budget for every process on the database.
/// Cloning is cheap and shares the budget and the counters.
#[derive(Clone)]
pub struct CoinGeckoClient {
    inner: Arc<Inner>,
    /// Removes the key (and whatever [`hiding`](Self::hiding) added) from every body,
    /// URL and error this client quotes.
    redactor: Arc<Redactor>,
}

struct Inner {
    /// reqwest with the rate limit as middleware, so every attempt waits its turn.
    http: ClientWithMiddleware,
    /// The API root, parsed once; paths are appended segment by segment.
    base_url: Url,
    /// The key's header (Demo or Pro) and value, marked sensitive so no Debug shows it.
    api_key: Option<(HeaderName, HeaderValue)>,
    /// Delays between attempts and the retry limit (`max_retries`).
    backoff: ExponentialBackoff,
    /// Attempts sent, counted by the rate-limit middleware.
    sent: Arc<AtomicU64>,
    /// The call budget every attempt takes its slot from.
    limiter: Arc<CallLimiter>,
    /// Attempts by how they ended, indexed by [`CallOutcome`] (as `usize`).
    outcomes: [AtomicU64; CallOutcome::ALL.len()],
}

/// How an attempt ended, counted per client and shown on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// A market chart came back.
    Ok,
    /// A 2xx whose body was not a market chart, or was too large to read.
    Unreadable,
    /// A 429.
    RateLimited,
    /// A 5xx or a 408.
    ServerError,
    /// Another status: CoinGecko refused the request.
    Refused,
    /// No answer: the connection failed or broke, or timed out.
    TransportError,
}

impl CallOutcome {
    /// Every outcome, in the order `/metrics` lists them.
    pub const ALL: [CallOutcome; 6] = [
        Self::Ok,
        Self::Unreadable,
        Self::RateLimited,
        Self::ServerError,
        Self::Refused,
        Self::TransportError,
    ];

    /// The `outcome` label on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unreadable => "unreadable",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Refused => "refused",
            Self::TransportError => "transport_error",
        }
    }
}

impl fmt::Debug for CoinGeckoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinGeckoClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &self.inner.api_key.as_ref().map(|_| "***"))
            .field("calls_made", &self.calls_made())
            .finish()
    }
}

impl CoinGeckoClient {
    /// Builds the client, whose attempts draw from `budget`; fails on a base URL that is
    /// not http(s) or a key that cannot be a header value (the error never contains the key).
    pub fn new(settings: CoinGeckoSettings, budget: CallBudget) -> anyhow::Result<Self> {
        Self::build(settings, budget, None)
    }

    /// For the tests below: like [`new`](Self::new), but connections to `host` go to
    /// `addr`, so that a fake can stand in for `pro-api.coingecko.com` (the port of
    /// `base_url` is used). Test builds only: nothing else may redirect the client.
    #[cfg(test)]
    fn new_resolving(
        settings: CoinGeckoSettings,
        budget: CallBudget,
        host: &str,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::build(settings, budget, Some((host, addr)))
    }

    fn build(
        settings: CoinGeckoSettings,
        budget: CallBudget,
        resolve: Option<(&str, SocketAddr)>,
    ) -> anyhow::Result<Self> {
        let base_url = Url::parse(settings.base_url.trim())
            .with_context(|| format!("COINGECKO_BASE_URL {:?} is not a URL", settings.base_url))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            bail!(
                "COINGECKO_BASE_URL {:?} must be an http(s) URL such as https://api.coingecko.com/api/v3",
                settings.base_url
            );
        }
        let redactor = Redactor::new(settings.api_key.iter().map(|key| key.expose_secret()));
        let api_key = settings
            .api_key
            .as_ref()
            .map(|key| {
                let header = if base_url.host_str() == Some(PRO_HOST) {
                    PRO_KEY_HEADER
                } else {
                    DEMO_KEY_HEADER
                };
                let mut value =
                    HeaderValue::from_str(key.expose_secret().trim()).map_err(|_| {
                        anyhow::anyhow!(
                            "COINGECKO_API_KEY contains characters an HTTP header cannot carry"
                        )
                    })?;
                value.set_sensitive(true);
                anyhow::Ok((header, value))
            })
            .transpose()?;

        // reqwest is built with `rustls-no-provider`: it needs a process-wide provider.
        // Another part of the program may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("price-history/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT));
        if let Some((host, addr)) = resolve {
            http = http.resolve(host, addr);
        }
        let http = http
            .build()
            .context("while building the HTTP client for CoinGecko")?;
        let sent = Arc::new(AtomicU64::new(0));
        let limiter = Arc::new(CallLimiter::new(
            budget,
            settings.calls_per_minute.get(),
            settings.api_key.as_ref().map(|key| key.expose_secret()),
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
                api_key,
                backoff,
                sent,
                limiter,
                outcomes: Default::default(),
            }),
            redactor: Arc::new(redactor),
        })
    }

    /// Also keeps these secrets (`API_TOKEN`, the database password) out of everything
    /// the client quotes, should CoinGecko or something in between ever echo them. The
    /// API key is always kept out.
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

    /// This process's figures of the call budget: slots taken, time spent waiting.
    pub fn budget_metrics(&self) -> &BudgetMetrics {
        self.inner.limiter.metrics()
    }

    /// Attempts so far by how they ended, labelled as on `/metrics`, in the order of
    /// [`CallOutcome::ALL`].
    pub fn calls_by_outcome(&self) -> [(&'static str, u64); CallOutcome::ALL.len()] {
        CallOutcome::ALL.map(|outcome| {
            let count = self.inner.outcomes[outcome as usize].load(Ordering::Relaxed);
            (outcome.label(), count)
        })
    }

    /// `GET {base}/coins/{coin_id}/market_chart/range?vs_currency=usd&from=…&to=…`, with
    /// `from` and `to` in UNIX seconds, retried as configured.
    #[tracing::instrument(skip_all, fields(coin_id = %coin_id, from = %from, to = %to))]
    pub async fn market_chart_range(
        &self,
        coin_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<MarketChart, CoinGeckoError> {
        let url = self.market_chart_range_url(coin_id, from, to);
        self.call(&url, coin_id, parse_chart).await
    }

    /// `GET {base}/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=…&page=…`:
    /// one page of coins by market cap, largest first (`page` from 1; CoinGecko serves at
    /// most 250 a page). Through the same budget and retries as every call.
    #[tracing::instrument(skip_all, fields(page = page, per_page = per_page))]
    pub async fn markets_page(
        &self,
        page: u32,
        per_page: u32,
    ) -> Result<Vec<MarketCoin>, CoinGeckoError> {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new: an http(s) URL can be a base")
            .pop_if_empty()
            .extend(["coins", "markets"]);
        url.query_pairs_mut()
            .append_pair("vs_currency", "usd")
            .append_pair("order", "market_cap_desc")
            .append_pair("per_page", &per_page.to_string())
            .append_pair("page", &page.to_string());
        self.call(&url, "markets", parse_markets).await
    }

    /// One call, retried as configured: `parse` reads a success body.
    async fn call<T>(
        &self,
        url: &Url,
        subject: &str,
        parse: Parse<T>,
    ) -> Result<T, CoinGeckoError> {
        let started = SystemTime::now();
        let mut retries = 0;
        loop {
            let mut failure = match self.attempt(url, subject, parse).await {
                Outcome::Done(result) => return result.map_err(|e| self.redacted(e)),
                Outcome::Retry(failure) => failure,
            };
            failure.what = self.redactor.apply(&failure.what);
            let attempts = retries + 1;
            if !failure.retryable {
                return Err(self.redacted(failure.give_up(attempts)));
            }
            let backoff = match self.inner.backoff.should_retry(started, retries) {
                RetryDecision::DoNotRetry => return Err(self.redacted(failure.give_up(attempts))),
                RetryDecision::Retry { execute_after } => execute_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            };
            let delay = failure.delay(backoff);
            retries += 1;
            tracing::warn!(
                status = failure.status,
                error = %failure.what,
                retry = retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "CoinGecko call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// `text` with every secret this client hides replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.apply(text)
    }

    /// The error with every secret masked: the last guard before a message leaves the
    /// client (the quotes were masked before they were cut, this catches the rest).
    fn redacted(&self, error: CoinGeckoError) -> CoinGeckoError {
        error.map_message(|message| self.redactor.apply(message))
    }

    fn market_chart_range_url(&self, coin_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Url {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new: an http(s) URL can be a base")
            .pop_if_empty()
            .extend(["coins", coin_id, "market_chart", "range"]);
        url.query_pairs_mut()
            .append_pair("vs_currency", "usd")
            .append_pair("from", &from.timestamp().to_string())
            .append_pair("to", &to.timestamp().to_string());
        url
    }

    /// One attempt: through the rate limit, to an answer or a failure worth retrying.
    async fn attempt<T>(&self, url: &Url, coin_id: &str, parse: Parse<T>) -> Outcome<T> {
        let mut request = self.inner.http.get(url.clone());
        if let Some((header, value)) = &self.inner.api_key {
            request = request.header(header, value.clone());
        }
        let count = |outcome: CallOutcome| {
            self.inner.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        };
        let response = match request.send().await {
            Ok(response) => response,
            // No slot of the budget, so no request was sent: nothing to count or retry.
            Err(reqwest_middleware::Error::Middleware(error)) => {
                return Outcome::Done(Err(CoinGeckoError::Transient {
                    message: format!("{error:#}"),
                }));
            }
            Err(error) => {
                count(CallOutcome::TransportError);
                return Outcome::Retry(Failure::transport(&error));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                count(CallOutcome::Unreadable);
                return Outcome::Done(Err(CoinGeckoError::too_large(status, MAX_BODY_BYTES)));
            }
            Err(error) => {
                count(CallOutcome::TransportError);
                return Outcome::Retry(Failure::body(status, &error));
            }
        };
        let redactor = &*self.redactor;

        if status.is_success() {
            let chart = parse(status, &body, redactor);
            count(if chart.is_ok() {
                CallOutcome::Ok
            } else {
                CallOutcome::Unreadable
            });
            Outcome::Done(chart)
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            count(if status == StatusCode::TOO_MANY_REQUESTS {
                CallOutcome::RateLimited
            } else {
                CallOutcome::ServerError
            });
            Outcome::Retry(Failure {
                what: ErrorBody::read_redacted(&body, redactor).describe(status),
                status: Some(status.as_u16()),
                retryable: true,
                rate_limited: status == StatusCode::TOO_MANY_REQUESTS,
                retry_after,
            })
        } else {
            count(CallOutcome::Refused);
            Outcome::Done(Err(CoinGeckoError::refused(
                status, &body, coin_id, redactor,
            )))
        }
    }
}

/// Reads a success body of one endpoint.
type Parse<T> = fn(StatusCode, &[u8], &Redactor) -> Result<T, CoinGeckoError>;

fn parse_chart(
    status: StatusCode,
    body: &[u8],
    redactor: &Redactor,
) -> Result<MarketChart, CoinGeckoError> {
    MarketChart::parse(body).map_err(|why| {
        if why.is_bad_data() {
            CoinGeckoError::bad_data(status, why)
        } else {
            CoinGeckoError::unreadable(status, body, why, redactor)
        }
    })
}

fn parse_markets(
    status: StatusCode,
    body: &[u8],
    redactor: &Redactor,
) -> Result<Vec<MarketCoin>, CoinGeckoError> {
    MarketCoin::parse_page(body)
        .map_err(|why| CoinGeckoError::unreadable(status, body, why, redactor))
}

enum Outcome<T> {
    /// An answer to hand back: the body read, or a permanent refusal.
    Done(Result<T, CoinGeckoError>),
    /// A failure that another attempt may not repeat.
    Retry(Failure),
}

/// A failed attempt, described for the log and for the final error.
struct Failure {
    /// What happened, in words: `CoinGecko answered HTTP 503: "…".` or the transport error.
    what: String,
    /// The HTTP status, when there was a response.
    status: Option<u16>,
    /// False for transport errors that are not worth retrying right away (a broken
    /// request rather than a broken connection); the job still goes back on the queue.
    retryable: bool,
    /// A 429: wait for CoinGecko's window rather than the usual back-off.
    rate_limited: bool,
    /// What the `Retry-After` header asked for, if anything.
    retry_after: Option<Duration>,
}

impl Failure {
    fn transport(error: &reqwest_middleware::Error) -> Self {
        let retryable = matches!(
            default_on_request_failure(error),
            Some(Retryable::Transient)
        );
        Self {
            what: format!("could not reach CoinGecko: {}", error_chain(error)),
            status: None,
            retryable,
            rate_limited: false,
            retry_after: None,
        }
    }

    /// The connection broke or timed out while the body was arriving.
    fn body(status: StatusCode, error: &reqwest::Error) -> Self {
        Self {
            what: format!(
                "the body of CoinGecko's HTTP {} answer did not arrive: {}",
                status.as_u16(),
                error_chain(error)
            ),
            status: Some(status.as_u16()),
            retryable: true,
            rate_limited: false,
            retry_after: None,
        }
    }

    /// How long to wait before the next attempt, given the policy's back-off.
    fn delay(&self, backoff: Duration) -> Duration {
        match (self.retry_after, self.rate_limited) {
            (Some(asked), _) => asked.min(MAX_RETRY_AFTER),
            (None, true) => backoff.max(RATE_LIMIT_WINDOW),
            (None, false) => backoff,
        }
    }

    fn give_up(self, attempts: u32) -> CoinGeckoError {
        let tries = if attempts == 1 {
            "1 attempt".to_owned()
        } else {
            format!("{attempts} attempts")
        };
        let advice = if self.rate_limited {
            " CoinGecko is rate-limiting this address or key: lower COINGECKO_CALLS_PER_MINUTE, \
             or make sure nothing else uses the same key or address."
        } else {
            " Trying again later may succeed."
        };
        let message = format!(
            "Gave up after {tries}; the last one failed: {}.{advice}",
            self.what.trim_end_matches('.'),
        );
        if self.rate_limited {
            CoinGeckoError::RateLimited { message }
        } else {
            CoinGeckoError::Transient { message }
        }
    }
}

/// An error with its causes, `a: b: c`, because reqwest keeps the useful part
/// ("Connection refused") in its sources.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, RETRY_AFTER};

    #[test]
    fn every_outcome_is_counted_in_its_own_slot_under_its_own_label() {
        for (i, outcome) in CallOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
        let mut labels = CallOutcome::ALL.map(CallOutcome::label).to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), CallOutcome::ALL.len());
    }

    fn settings(base_url: &str, key: Option<&str>) -> CoinGeckoSettings {
        CoinGeckoSettings {
            base_url: base_url.to_owned(),
            api_key: key.map(|key| SecretString::from(key.to_owned())),
            calls_per_minute: NonZeroU32::new(25).unwrap(),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn settings_debug_hides_the_key() {
        let shown = format!(
            "{:?}",
            settings("https://api.coingecko.com/api/v3", Some("CG-secret"))
        );
        assert!(!shown.contains("CG-secret"), "{shown}");
        assert!(shown.contains("\"***\""), "{shown}");
    }

    #[test]
    fn the_pro_host_gets_the_pro_header_and_any_other_the_demo_one() {
        let pro = CoinGeckoClient::new(
            settings("https://pro-api.coingecko.com/api/v3/", Some("k")),
            CallBudget::ProcessLocal,
        )
        .unwrap();
        assert_eq!(pro.inner.api_key.as_ref().unwrap().0, PRO_KEY_HEADER);
        let demo = CoinGeckoClient::new(
            settings("https://api.coingecko.com/api/v3", Some("k")),
            CallBudget::ProcessLocal,
        )
        .unwrap();
        assert_eq!(demo.inner.api_key.as_ref().unwrap().0, DEMO_KEY_HEADER);
        assert!(!format!("{pro:?}{demo:?}").contains("\"k\""));
    }

    /// Over the wire: the Pro host (resolved to the fake) receives the key in the Pro header.
    #[tokio::test]
    async fn a_paid_key_goes_in_the_pro_header_on_the_pro_host() {
        const SECRET_KEY: &str = "CG-k3y-that-must-never-show";
        let fake = fake_upstream::coingecko::FakeCoinGecko::start().await;
        let port = fake.addr().port();
        let client = CoinGeckoClient::new_resolving(
            settings(
                &format!("http://pro-api.coingecko.com:{port}/api/v3/"),
                Some(SECRET_KEY),
            ),
            CallBudget::ProcessLocal,
            "pro-api.coingecko.com",
            fake.addr(),
        )
        .unwrap();
        let day = |d| DateTime::parse_from_rfc3339(d).unwrap().to_utc();

        client
            .market_chart_range(
                "bitcoin",
                day("2024-01-01T00:00:00Z"),
                day("2024-01-03T00:00:00Z"),
            )
            .await
            .unwrap();

        let calls = fake.calls();
        assert_eq!(calls[0].api_key_header, Some("x-cg-pro-api-key"));
        assert_eq!(calls[0].api_key.as_deref(), Some(SECRET_KEY));
        assert!(!format!("{client:?}").contains(SECRET_KEY));
    }

    #[test]
    fn the_url_has_unix_seconds_and_tolerates_a_trailing_slash() {
        let from = DateTime::parse_from_rfc3339("2024-03-31T00:00:00Z")
            .unwrap()
            .to_utc();
        let to = DateTime::parse_from_rfc3339("2024-04-01T00:00:00Z")
            .unwrap()
            .to_utc();
        for base in [
            "https://api.coingecko.com/api/v3",
            "https://api.coingecko.com/api/v3/",
        ] {
            let client =
                CoinGeckoClient::new(settings(base, None), CallBudget::ProcessLocal).unwrap();
            assert_eq!(
                client.market_chart_range_url("bitcoin", from, to).as_str(),
                "https://api.coingecko.com/api/v3/coins/bitcoin/market_chart/range\
                 ?vs_currency=usd&from=1711843200&to=1711929600"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_without_showing_the_key() {
        assert!(
            CoinGeckoClient::new(
                settings("api.coingecko.com/api/v3", None),
                CallBudget::ProcessLocal
            )
            .is_err()
        );
        assert!(
            CoinGeckoClient::new(
                settings("ftp://api.coingecko.com", None),
                CallBudget::ProcessLocal
            )
            .is_err()
        );
        let error = CoinGeckoClient::new(
            settings("https://api.coingecko.com", Some("bad\nkey-123")),
            CallBudget::ProcessLocal,
        )
        .unwrap_err();
        assert!(!format!("{error:?}").contains("key-123"), "{error:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("119"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(119)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let soon = (Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let waited = retry_after(&headers).unwrap();
        assert!(
            waited > Duration::from_secs(27) && waited <= Duration::from_secs(30),
            "{waited:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_429_waits_what_it_is_told_or_a_whole_window() {
        let mut failure = Failure {
            what: String::new(),
            status: Some(429),
            retryable: true,
            rate_limited: true,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(
            failure.delay(Duration::from_secs(8)),
            Duration::from_secs(1)
        );
        failure.retry_after = None;
        assert_eq!(failure.delay(Duration::from_secs(8)), RATE_LIMIT_WINDOW);
        assert_eq!(
            failure.delay(Duration::from_secs(90)),
            Duration::from_secs(90)
        );
        failure.rate_limited = false;
        assert_eq!(
            failure.delay(Duration::from_secs(8)),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn backoff_doubles_within_its_jitter() {
        let client = CoinGeckoClient::new(
            CoinGeckoSettings {
                retry_base_delay: Duration::from_secs(2),
                ..settings("https://api.coingecko.com", None)
            },
            CallBudget::ProcessLocal,
        )
        .unwrap();
        let now = SystemTime::now();
        for retry in 0..3 {
            let RetryDecision::Retry { execute_after } =
                client.inner.backoff.should_retry(now, retry)
            else {
                panic!("retry {retry} should be allowed");
            };
            let delay = execute_after
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let ceiling = Duration::from_secs(2 << retry);
            assert!(
                delay <= ceiling && delay >= Duration::from_millis(900),
                "{retry}: {delay:?}"
            );
        }
        assert!(matches!(
            client.inner.backoff.should_retry(now, 3),
            RetryDecision::DoNotRetry
        ));
    }

    /// Kills `MAX_BACKOFF`'s `10 * 60` -> `10 + 60` and `10 / 60`: back-offs grow up to
    /// ten minutes and no further. Jitter draws each delay between half the base and the
    /// ceiling, so the ceiling shows over many draws.
    #[test]
    fn backoff_stops_growing_at_ten_minutes() {
        let client = CoinGeckoClient::new(
            CoinGeckoSettings {
                retry_base_delay: Duration::from_secs(2),
                max_retries: 30,
                ..settings("https://api.coingecko.com", None)
            },
            CallBudget::ProcessLocal,
        )
        .unwrap();
        let delays: Vec<Duration> = (0..200)
            .map(|_| {
                let RetryDecision::Retry { execute_after } =
                    client.inner.backoff.should_retry(SystemTime::now(), 20)
                else {
                    panic!("retry 20 of 30 should be allowed");
                };
                execute_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
            })
            .collect();
        let longest = delays.iter().max().copied().unwrap_or_default();
        assert!(longest <= Duration::from_secs(600), "{longest:?}");
        assert!(longest > Duration::from_secs(300), "{longest:?}");
    }
}
