//! The CoinGecko client against the loopback fake: the cases every client passes
//! (`client_cases`: retries, the budget, the body cap, redaction...), then CoinGecko's
//! own: parsing, keys, its plan's limit and how its refusals are explained. No database.

#[macro_use]
mod client_cases;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use fake_upstream::coingecko::{
    CoinGecko, FakeCoinGecko, FakeOptions, RecordedCall, ScriptedResponse,
};
use price_history::coingecko::{CoinGeckoClient, CoinGeckoError, CoinGeckoSettings, MarketChart};
use price_history::domain::CreditMonth;
use price_history::upstream::{CallBudget, Caller};
use rust_decimal::Decimal;
use secrecy::SecretString;

use client_cases::{Source, Tweaks};

/// CoinGecko as the common cases see it: its usual call is two days of bitcoin.
struct CoinGeckoSource;

impl Source for CoinGeckoSource {
    const NAME: &'static str = "CoinGecko";
    type Upstream = CoinGecko;
    type Client = CoinGeckoClient;
    type Error = CoinGeckoError;

    fn client(base_url: String, tweaks: Tweaks) -> CoinGeckoClient {
        client_with(CoinGeckoSettings {
            calls_per_minute: NonZeroU32::new(tweaks.calls_per_minute).unwrap(),
            max_retries: tweaks.max_retries,
            retry_base_delay: tweaks.retry_base_delay,
            timeout: tweaks.timeout,
            ..settings(base_url)
        })
    }

    fn caller(client: &CoinGeckoClient) -> &Caller {
        client.caller()
    }

    fn hiding(client: CoinGeckoClient, secret: &'static str) -> CoinGeckoClient {
        client.hiding([secret])
    }

    async fn ask(client: &CoinGeckoClient) -> Result<(), CoinGeckoError> {
        two_days_of_2024(client).await.map(|chart| {
            assert_eq!(chart.prices.len(), 48, "two days of hourly points");
        })
    }

    fn is_transient(error: &CoinGeckoError) -> bool {
        !error.is_permanent()
    }

    fn arrival(call: &RecordedCall) -> (Instant, u16) {
        (call.at, call.status)
    }
}

client_cases!(CoinGeckoSource);

const SECRET_KEY: &str = "CG-k3y-that-must-never-show";

/// Settings for tests: quick retries and a budget too large to slow anything down.
fn settings(base_url: String) -> CoinGeckoSettings {
    CoinGeckoSettings {
        base_url,
        api_key: None,
        calls_per_minute: NonZeroU32::new(60_000).unwrap(),
        max_retries: 3,
        retry_base_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn client_for(fake: &FakeCoinGecko) -> CoinGeckoClient {
    client_with(settings(fake.base_url()))
}

/// A client with its own budget, as a single process has.
fn client_with(settings: CoinGeckoSettings) -> CoinGeckoClient {
    CoinGeckoClient::new(settings, CallBudget::ProcessLocal).unwrap()
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn two_days_of_2024(client: &CoinGeckoClient) -> Result<MarketChart, CoinGeckoError> {
    client
        .market_chart_range("bitcoin", utc(2024, 1, 1), utc(2024, 1, 3))
        .await
}

/// A fresh fake whose first answer is `refusal`, a client of it, and the error that
/// answer is to [`two_days_of_2024`].
async fn refused_with(
    refusal: ScriptedResponse,
) -> (FakeCoinGecko, CoinGeckoClient, CoinGeckoError) {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(refusal);

    let error = two_days_of_2024(&client).await.unwrap_err();
    (fake, client, error)
}

/// Bitcoin's chart of `from..to`, asked by a fresh client of `fake`.
async fn bitcoin_chart(
    fake: &FakeCoinGecko,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> MarketChart {
    client_for(fake)
        .market_chart_range("bitcoin", from, to)
        .await
        .unwrap()
}

fn permanent_parts(error: &CoinGeckoError) -> (Option<u16>, Option<i64>, &str) {
    match error {
        CoinGeckoError::Permanent {
            status,
            error_code,
            message,
            ..
        } => (*status, *error_code, message.as_str()),
        CoinGeckoError::PlanLimit {
            status, message, ..
        } => (Some(*status), Some(10012), message.as_str()),
        CoinGeckoError::BadAnswer { status, message } => (Some(*status), None, message.as_str()),
        _ => panic!("expected a permanent error, got {error:?}"),
    }
}

fn transient_message(error: &CoinGeckoError) -> &str {
    match error {
        CoinGeckoError::Transient { message } | CoinGeckoError::RateLimited { message } => message,
        _ => panic!("expected a transient error, got {error:?}"),
    }
}

#[tokio::test]
async fn an_hourly_window_comes_back_as_the_points_the_server_sent() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);

    let chart = two_days_of_2024(&client).await.unwrap();

    let expected: Vec<_> = [day(2024, 1, 1), day(2024, 1, 2)]
        .into_iter()
        .flat_map(|day| fake.points_for_day(day, true))
        .collect();
    assert_eq!(expected.len(), 48);
    assert_eq!(chart.prices.len(), 48);
    assert_eq!(chart.total_volumes.len(), 48);
    for ((at, price, volume), (p, v)) in expected
        .iter()
        .zip(chart.prices.iter().zip(&chart.total_volumes))
    {
        assert_eq!(p.at.timestamp_millis(), *at);
        assert_eq!(v.at, p.at);
        assert_eq!(p.value, *price);
        assert_eq!(v.value, *volume);
        assert_eq!(p.value, fake.price_at(*at));
    }
    assert!(chart.prices.windows(2).all(|w| w[0].at < w[1].at));
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].coin_id, "bitcoin");
    assert_eq!(calls[0].vs_currency.as_deref(), Some("usd"));
    assert_eq!(
        (calls[0].from, calls[0].to),
        (utc(2024, 1, 1), utc(2024, 1, 3))
    );
    assert!(!calls[0].api_key_present);
    assert_eq!(client.caller().calls_made(), 1);
}

#[tokio::test]
async fn a_window_longer_than_90_days_is_one_point_per_day_at_midnight() {
    let fake = FakeCoinGecko::start().await;

    let chart = bitcoin_chart(&fake, utc(2020, 1, 1), utc(2020, 6, 1)).await;

    assert_eq!(chart.prices.len(), 153);
    assert!(
        chart
            .prices
            .iter()
            .all(|p| p.at.timestamp_millis() % 86_400_000 == 0)
    );
    let (_, price, _) = fake.points_for_day(day(2020, 3, 1), false)[0];
    assert_eq!(chart.prices[60].value, price);
}

#[tokio::test]
async fn a_window_before_bitcoins_first_day_is_empty_and_not_an_error() {
    let fake = FakeCoinGecko::start().await;

    let chart = bitcoin_chart(&fake, utc(2012, 1, 1), utc(2013, 4, 28)).await;

    assert_eq!(chart.prices.len(), 1, "only 2013-04-28 00:00 itself");
    assert_eq!(chart.prices[0].at, utc(2013, 4, 28));
}

#[tokio::test]
async fn missing_days_and_price_shifts_show_in_what_the_client_gets() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    let before = two_days_of_2024(&client).await.unwrap();

    fake.set_missing_days([day(2024, 1, 2)]);
    fake.set_price_shift(Decimal::new(125, 2));
    let after = two_days_of_2024(&client).await.unwrap();

    assert_eq!(after.prices.len(), 24);
    assert!(
        after
            .prices
            .iter()
            .all(|p| p.at.date_naive() == day(2024, 1, 1))
    );
    assert!(after.prices[0].value > before.prices[0].value);
    assert_eq!(
        after.prices[0].value,
        fake.price_at(after.prices[0].at.timestamp_millis())
    );
}

#[tokio::test]
async fn a_window_reaching_now_ends_with_a_live_point() {
    let fake = FakeCoinGecko::start().await;
    let started = Utc::now();

    let chart = bitcoin_chart(
        &fake,
        started - chrono::Duration::days(2),
        started + chrono::Duration::days(1),
    )
    .await;

    let last = chart.prices.last().unwrap().at;
    assert!(
        last >= started - chrono::Duration::milliseconds(1) && last <= Utc::now(),
        "{last}"
    );
}

#[tokio::test]
async fn a_demo_key_goes_in_the_demo_header_and_shows_nowhere() {
    let fake = FakeCoinGecko::start().await;
    let settings = CoinGeckoSettings {
        api_key: Some(SecretString::from(SECRET_KEY)),
        ..settings(fake.base_url())
    };
    let settings_shown = format!("{settings:?}");
    let client = client_with(settings);
    fake.push_response(ScriptedResponse::status(
        401,
        r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
    ));

    let error = two_days_of_2024(&client).await.unwrap_err();

    let calls = fake.calls();
    assert_eq!(calls[0].api_key_header, Some("x-cg-demo-api-key"));
    assert_eq!(calls[0].api_key.as_deref(), Some(SECRET_KEY));
    let (status, code, message) = permanent_parts(&error);
    assert_eq!((status, code), (Some(401), Some(10002)));
    assert!(message.contains("COINGECKO_API_KEY"), "{message}");
    for shown in [
        settings_shown,
        format!("{client:?}"),
        format!("{error}"),
        format!("{error:?}"),
    ] {
        assert!(!shown.contains(SECRET_KEY), "the key leaked into {shown}");
    }
}

#[tokio::test]
async fn the_365_day_limit_fails_at_once_and_says_what_to_do() {
    let (fake, client, error) = refused_with(ScriptedResponse::history_limit_exceeded()).await;

    assert!(error.is_permanent());
    let (status, code, message) = permanent_parts(&error);
    assert_eq!((status, code), (Some(401), Some(10012)));
    assert!(message.contains("365 days"), "{message}");
    assert!(
        message.contains("Public API users are limited"),
        "{message}"
    );
    assert!(
        message.contains("COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 1);
    assert_eq!(client.caller().calls_made(), 1);
}

#[tokio::test]
async fn a_refusal_naming_the_monthly_credits_is_not_retried_and_waits_for_the_month() {
    let (fake, client, error) = refused_with(ScriptedResponse::monthly_credits_spent()).await;

    let CoinGeckoError::OutOfCredits { message, resets_on } = &error else {
        panic!("out of credits, not {error:?}");
    };
    assert_eq!(*resets_on, CreditMonth::of(Utc::now()).resets_on());
    assert!(message.contains("monthly credits are spent"), "{message}");
    assert!(message.contains("COINGECKO_CALLS_PER_MONTH"), "{message}");
    assert!(message.contains(&resets_on.to_string()), "{message}");
    assert!(!error.is_permanent(), "the next month serves again");
    assert_eq!(
        fake.call_count(),
        1,
        "no retry: none succeeds before the month turns"
    );

    // The rate limit's 429 names no credits: it is still retried.
    fake.push_response(ScriptedResponse::rate_limited(Some(0)));
    two_days_of_2024(&client)
        .await
        .expect("the retry after the 429 succeeds");
    assert_eq!(fake.call_count(), 3);
}

#[tokio::test]
async fn the_fakes_own_history_limit_answers_like_coingecko() {
    let fake = FakeCoinGecko::start_with(FakeOptions {
        history_limit_days: Some(365),
        ..FakeOptions::default()
    })
    .await
    .unwrap();

    let error = two_days_of_2024(&client_for(&fake)).await.unwrap_err();

    assert_eq!(permanent_parts(&error).1, Some(10012));
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn a_success_with_a_garbage_body_fails_at_once() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(
        ScriptedResponse::status(200, "<html><body>Just a moment...</body></html>")
            .with_header("content-type", "text/html"),
    );

    let error = two_days_of_2024(&client).await.unwrap_err();

    let (status, _, message) = permanent_parts(&error);
    assert_eq!(status, Some(200));
    assert!(message.contains("Just a moment"), "{message}");
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn an_unknown_coin_fails_at_once_and_is_named() {
    let fake = FakeCoinGecko::start().await;

    let error = client_for(&fake)
        .market_chart_range("bitcorn", utc(2024, 1, 1), utc(2024, 1, 3))
        .await
        .unwrap_err();

    let (status, _, message) = permanent_parts(&error);
    assert_eq!(status, Some(404));
    assert!(
        message.contains("coin not found") && message.contains("bitcorn"),
        "{message}"
    );
    assert!(matches!(
        error,
        CoinGeckoError::Permanent {
            unknown_coin: true,
            ..
        }
    ));
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn the_fake_can_rate_limit_like_coingecko() {
    let fake = FakeCoinGecko::start_with(FakeOptions {
        calls_per_minute_limit: NonZeroU32::new(1),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let client = client_with(CoinGeckoSettings {
        max_retries: 0,
        ..settings(fake.base_url())
    });
    two_days_of_2024(&client).await.unwrap();

    let error = two_days_of_2024(&client).await.unwrap_err();

    let message = transient_message(&error);
    assert!(
        message.contains("HTTP 429") && message.contains("COINGECKO_CALLS_PER_MINUTE"),
        "{message}"
    );
    assert_eq!(fake.calls()[1].status, 429);
}
