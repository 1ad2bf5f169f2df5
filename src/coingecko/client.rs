//! The CoinGecko client: its root URL and key, its two calls
//! (`/coins/{id}/market_chart/range`, `/coins/markets`) and how their answers read. The
//! budget, the retries and the sorting of failures are the shared [`Caller`]'s.

use std::fmt;
#[cfg(test)]
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::error::{CoinGeckoError, ErrorBody};
use super::wire::{MarketChart, MarketCoin};
use crate::config::Settings;
use crate::domain::{BEFORE_ANY_COIN, PriceSource};
use crate::upstream::{
    Answer, CallBudget, CallSettings, Caller, Profile, Redactor, base_url, endpoint,
};

/// The host of CoinGecko's paid plans; keys for it go in a different header.
const PRO_HOST: &str = "pro-api.coingecko.com";
const DEMO_KEY_HEADER: HeaderName = HeaderName::from_static("x-cg-demo-api-key");
const PRO_KEY_HEADER: HeaderName = HeaderName::from_static("x-cg-pro-api-key");
/// Upper bound of one back-off delay, whatever the base and the retry count.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// CoinGecko as the caller sees it: its rate-limit window is a minute (after a 429
/// without `Retry-After`, waiting less would most likely be refused again), a back-off
/// or a `Retry-After` may last ten minutes, and its error bodies come in several shapes.
const PROFILE: Profile = Profile {
    source: PriceSource::CoinGecko,
    rate_limit_window: Duration::from_secs(60),
    max_backoff: MAX_BACKOFF,
    max_retry_after: Duration::from_secs(10 * 60),
    describe: |answer, _, redactor| {
        ErrorBody::read_redacted(&answer.body, redactor).describe(answer.status)
    },
    spent: |answer| {
        !answer.status.is_success() && ErrorBody::read(&answer.body).names_spent_credits()
    },
};

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

impl CoinGeckoSettings {
    /// As configured (`COINGECKO_*`); the key without the spaces around it, and a blank
    /// key no key (as the month's credits count it).
    pub fn from_config(config: &Settings) -> Self {
        Self {
            base_url: config.coingecko_base_url.clone(),
            api_key: config
                .coingecko_api_key
                .as_ref()
                .map(|key| key.expose_secret().trim())
                .filter(|key| !key.is_empty())
                .map(|key| SecretString::from(key.to_owned())),
            calls_per_minute: config.coingecko_calls_per_minute,
            max_retries: config.coingecko_max_retries,
            retry_base_delay: Duration::from_millis(config.coingecko_retry_base_delay_ms),
            timeout: Duration::from_secs(config.coingecko_timeout_secs),
        }
    }

    fn call(&self) -> CallSettings {
        CallSettings {
            calls_per_minute: self.calls_per_minute,
            max_retries: self.max_retries,
            retry_base_delay: self.retry_base_delay,
            timeout: self.timeout,
        }
    }
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

/// What CoinGecko's answer says of a coin's first day ([`CoinGeckoClient::first_day`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDay {
    /// Its first price is on this day.
    On(NaiveDate),
    /// It has prices on the plan's first day: it may be older, and how old is not seen.
    BeforeThePlan,
    /// CoinGecko has no price of it at all.
    NoPrice,
}

/// The CoinGecko client. Every attempt takes a slot of the [`CallBudget`] it is built
/// with: with [`CallBudget::Shared`], one budget for every process on the database.
/// Cloning is cheap and shares the budget and the counters.
#[derive(Clone)]
pub struct CoinGeckoClient {
    /// The budget, the retries, the counters, and the redaction of the key (and of
    /// whatever [`hiding`](Self::hiding) added) from everything quoted.
    caller: Caller,
    /// The API root, parsed once; paths are appended segment by segment.
    base_url: Url,
    /// The key's header (Demo or Pro) and value, marked sensitive so no Debug shows it;
    /// every request carries it.
    api_key: Option<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for CoinGeckoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinGeckoClient")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("calls_made", &self.caller.calls_made())
            .finish()
    }
}

impl CoinGeckoClient {
    /// Builds the client, whose attempts draw from `budget`; fails on a base URL that is
    /// not http(s) or a key that cannot be a header value (the error never contains the key).
    pub fn new(settings: CoinGeckoSettings, budget: CallBudget) -> anyhow::Result<Self> {
        Self::build(settings, budget, |http| http)
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
        Self::build(settings, budget, |http| http.resolve(host, addr))
    }

    fn build(
        settings: CoinGeckoSettings,
        budget: CallBudget,
        http: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> anyhow::Result<Self> {
        let base_url = base_url(
            "COINGECKO_BASE_URL",
            &settings.base_url,
            "https://api.coingecko.com/api/v3",
        )?;
        let key = settings.api_key.as_ref().map(|key| key.expose_secret());
        let api_key = key.map(|key| key_header(&base_url, key)).transpose()?;
        let headers: HeaderMap = api_key.clone().into_iter().collect();
        let caller = Caller::new(PROFILE, settings.call(), budget, key, |client| {
            http(client.default_headers(headers))
        })?;
        Ok(Self {
            caller,
            base_url,
            api_key,
        })
    }

    /// Also keeps these secrets (`API_TOKEN`, the database password) out of everything
    /// the client quotes, should CoinGecko or something in between ever echo them. The
    /// API key is always kept out.
    pub fn hiding<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        self.caller = self.caller.hiding(secrets);
        self
    }

    /// The calls as made: their budget, their counters, their redaction.
    pub fn caller(&self) -> &Caller {
        &self.caller
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
        self.call(&url, coin_id, |status, body, redactor| {
            MarketChart::parse(body).map_err(|why| {
                if why.is_bad_data() {
                    CoinGeckoError::bad_data(status, why)
                } else {
                    CoinGeckoError::unreadable(status, body, why, redactor)
                }
            })
        })
        .await
    }

    /// The first UTC day CoinGecko has a price of `coin_id` for, as far as a plan that
    /// serves from `served_from` (`None`: no limit) can see: one call over everything it
    /// serves. A range longer than 90 days is answered with one point a day from the
    /// coin's first, so the first point is the first day; when that is `served_from`
    /// itself, the coin may be older.
    pub async fn first_day(
        &self,
        coin_id: &str,
        served_from: Option<NaiveDate>,
    ) -> Result<FirstDay, CoinGeckoError> {
        // Without a limit, from before any coin's first price, so that the answer starts
        // at the coin's first day.
        let from = served_from
            .unwrap_or(BEFORE_ANY_COIN)
            .and_time(NaiveTime::MIN)
            .and_utc();
        let chart = self.market_chart_range(coin_id, from, Utc::now()).await?;
        Ok(
            match chart.prices.first().map(|first| first.at.date_naive()) {
                None => FirstDay::NoPrice,
                Some(first) if Some(first) == served_from => FirstDay::BeforeThePlan,
                Some(first) => FirstDay::On(first),
            },
        )
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
        let mut url = endpoint(&self.base_url, ["coins", "markets"]);
        url.query_pairs_mut()
            .append_pair("vs_currency", "usd")
            .append_pair("order", "market_cap_desc")
            .append_pair("per_page", &per_page.to_string())
            .append_pair("page", &page.to_string());
        self.call(&url, "markets", |status, body, redactor| {
            MarketCoin::parse_page(body)
                .map_err(|why| CoinGeckoError::unreadable(status, body, why, redactor))
        })
        .await
    }

    /// One call through the caller: `parse` reads a success body; any other answer is a
    /// refusal, explained for `subject` (the coin id asked about).
    async fn call<T>(
        &self,
        url: &Url,
        subject: &str,
        parse: impl FnOnce(http::StatusCode, &[u8], &Redactor) -> Result<T, CoinGeckoError>,
    ) -> Result<T, CoinGeckoError> {
        let read = |answer: &Answer, redactor: &Redactor| {
            if answer.status.is_success() {
                parse(answer.status, &answer.body, redactor)
            } else {
                Err(CoinGeckoError::refused(
                    answer.status,
                    &answer.body,
                    subject,
                    redactor,
                ))
            }
        };
        // The last guard before a message leaves the client: the quotes were masked
        // before they were cut, this catches the rest.
        self.caller
            .get(url, None, read)
            .await
            .map_err(|error| error.map_message(|message| self.caller.redact(message)))
    }

    fn market_chart_range_url(&self, coin_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Url {
        let mut url = endpoint(&self.base_url, ["coins", coin_id, "market_chart", "range"]);
        url.query_pairs_mut()
            .append_pair("vs_currency", "usd")
            .append_pair("from", &from.timestamp().to_string())
            .append_pair("to", &to.timestamp().to_string());
        url
    }
}

/// The header that carries `key`: the Pro one on the Pro host, the Demo one elsewhere.
fn key_header(base_url: &Url, key: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let header = if base_url.host_str() == Some(PRO_HOST) {
        PRO_KEY_HEADER
    } else {
        DEMO_KEY_HEADER
    };
    let mut value = HeaderValue::from_str(key.trim()).map_err(|_| {
        anyhow::anyhow!("COINGECKO_API_KEY contains characters an HTTP header cannot carry")
    })?;
    value.set_sensitive(true);
    Ok((header, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest_retry::{RetryDecision, RetryPolicy};
    use std::time::SystemTime;

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
        assert_eq!(pro.api_key.as_ref().unwrap().0, PRO_KEY_HEADER);
        let demo = CoinGeckoClient::new(
            settings("https://api.coingecko.com/api/v3", Some("k")),
            CallBudget::ProcessLocal,
        )
        .unwrap();
        assert_eq!(demo.api_key.as_ref().unwrap().0, DEMO_KEY_HEADER);
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
    fn a_429_waits_what_it_is_told_or_coingeckos_whole_minute() {
        let waits = PROFILE.waits_after_a_429(Duration::from_secs(8));
        assert_eq!(waits, [3, 600, 60].map(Duration::from_secs));
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
                client.caller.backoff().should_retry(now, retry)
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
            client.caller.backoff().should_retry(now, 3),
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
                    client.caller.backoff().should_retry(SystemTime::now(), 20)
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
