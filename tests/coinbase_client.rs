//! The Coinbase Exchange client against the loopback fake: the cases every client
//! passes (`client_cases`: retries, the budget, the body cap, redaction...), then
//! Coinbase's own: candles in its order and field order, the product check, its outages.
//! No database.

#[macro_use]
mod client_cases;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Utc};
use fake_upstream::coinbase::{
    BTC_USD, COLLIDING, Coinbase, FakeCoinbase, FakeCoinbaseOptions, NOT_FOUND_BODY, Outage,
    RATE_LIMIT_BODY, RecordedCall, TOO_MANY_CANDLES_BODY, TruthCandle,
};
use price_history::coinbase::{CandleWindow, CoinbaseClient, CoinbaseError, CoinbaseSettings};
use price_history::domain::{DailyCandle, Hour, HourRange, ProductId};
use price_history::upstream::{CallBudget, Caller};

use client_cases::{Source, Tweaks};

/// Coinbase as the common cases see it: its usual call is two days of BTC-USD candles.
struct CoinbaseSource;

impl Source for CoinbaseSource {
    const NAME: &'static str = "Coinbase Exchange";
    type Upstream = Coinbase;
    type Client = CoinbaseClient;
    type Error = CoinbaseError;

    fn client(base_url: String, tweaks: Tweaks) -> CoinbaseClient {
        let settings = CoinbaseSettings {
            calls_per_minute: NonZeroU32::new(tweaks.calls_per_minute).unwrap(),
            max_retries: tweaks.max_retries,
            retry_base_delay: tweaks.retry_base_delay,
            timeout: tweaks.timeout,
            ..settings(base_url)
        };
        CoinbaseClient::new(settings, CallBudget::ProcessLocal).unwrap()
    }

    fn caller(client: &CoinbaseClient) -> &Caller {
        client.caller()
    }

    fn hiding(client: CoinbaseClient, secret: &'static str) -> CoinbaseClient {
        client.hiding([secret])
    }

    async fn ask(client: &CoinbaseClient) -> Result<(), CoinbaseError> {
        let window = window(day(2024, 1, 1), day(2024, 1, 2));
        client.candles(&btc(), window).await.map(|candles| {
            assert_eq!(candles.len(), 2, "two days of candles");
        })
    }

    fn is_transient(error: &CoinbaseError) -> bool {
        error.is_transient()
    }

    fn arrival(call: &RecordedCall) -> (Instant, u16) {
        (call.at, call.status)
    }
}

client_cases!(CoinbaseSource);

/// Settings for tests: quick retries and a budget too large to slow anything down.
fn settings(base_url: String) -> CoinbaseSettings {
    CoinbaseSettings {
        base_url,
        calls_per_minute: NonZeroU32::new(60_000).unwrap(),
        max_retries: 3,
        retry_base_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn client_for(fake: &FakeCoinbase) -> CoinbaseClient {
    CoinbaseClient::new(settings(fake.base_url()), CallBudget::ProcessLocal).unwrap()
}

/// A plain GET, to see the fake's answer as Coinbase would send it: status and body.
async fn raw_get(url: &str) -> (u16, String) {
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The fake's raw answer to a call for `product`'s daily candles of `first..=last`.
async fn raw_daily_candles(
    fake: &FakeCoinbase,
    product: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> (u16, String) {
    raw_get(&format!(
        "{}/products/{product}/candles?granularity=86400&start={first}T00:00:00Z&end={last}T23:59:59Z",
        fake.base_url()
    ))
    .await
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn btc() -> ProductId {
    ProductId::parse("BTC-USD").unwrap()
}

/// A candle as the fake computes the truth: what the service's row must equal.
fn as_truth(candle: &DailyCandle) -> TruthCandle {
    TruthCandle {
        date: candle.date,
        open: candle.open,
        high: candle.high,
        low: candle.low,
        close: candle.close,
        volume: candle.volume,
        provisional: candle.provisional,
    }
}

fn window(first: NaiveDate, last: NaiveDate) -> CandleWindow {
    CandleWindow::new(first, last).expect("at most 300 days")
}

/// The first `n` hours of 2024, and the first of them.
fn hours_of_2024(n: i64) -> (Hour, HourRange) {
    let first = Hour::first_of(day(2024, 1, 1));
    (first, HourRange::starting(first, n).unwrap())
}

#[tokio::test]
async fn three_hundred_days_come_back_oldest_first_each_equal_to_the_fakes_candle() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    let first = day(2019, 1, 1);
    let last = first + Days::new(299);

    let candles = client.candles(&btc(), window(first, last)).await.unwrap();

    let read: Vec<TruthCandle> = candles.iter().map(as_truth).collect();
    assert_eq!(read, fake.candles_between("BTC-USD", first, last));
    assert_eq!(candles.len(), 300);
    assert_eq!(candles[0].date, first);
    assert_eq!(candles[299].date, last);
    for candle in &candles {
        assert_eq!(Some(as_truth(candle)), fake.candle("BTC-USD", candle.date));
        assert!(!candle.provisional);
    }
    assert_eq!(fake.candle_calls(), 1);
    let call = &fake.calls()[0];
    assert_eq!(call.granularity.as_deref(), Some("86400"));
    assert_eq!(call.start.as_deref(), Some("2019-01-01T00:00:00Z"));
    assert_eq!(call.end.as_deref(), Some("2019-10-27T23:59:59Z"));
    assert_eq!(client.caller().calls_made(), 1);
}

#[tokio::test]
async fn volume_is_stored_in_usd_as_base_volume_times_close() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    // The fake's raw answer, in Coinbase's field order: [time, low, high, open, close, volume].
    let (_, body) = raw_daily_candles(&fake, "BTC-USD", day(2024, 1, 1), day(2024, 1, 1)).await;
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = raw[0].as_array().unwrap().clone();

    let candle = client
        .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 1)))
        .await
        .unwrap()
        .remove(0);

    let number = |i: usize| rust_decimal::Decimal::try_from(row[i].as_f64().unwrap()).unwrap();
    assert_eq!(row[0].as_i64(), Some(1_704_067_200));
    assert_eq!(candle.low, number(1));
    assert_eq!(candle.high, number(2));
    assert_eq!(candle.open, number(3));
    assert_eq!(candle.close, number(4));
    let usd = number(5) * number(4);
    assert!(
        (candle.volume - usd).abs() < rust_decimal::Decimal::new(1, 6),
        "{} vs {usd}",
        candle.volume
    );
}

#[tokio::test]
async fn a_day_without_trades_is_absent_and_days_before_the_first_candle_are_empty() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    fake.set_days_without_trades([day(2020, 3, 2)]);

    let around_a_quiet_day = client
        .candles(&btc(), window(day(2020, 3, 1), day(2020, 3, 3)))
        .await
        .unwrap();
    let before_the_product = client
        .candles(&btc(), window(day(2015, 7, 1), day(2015, 7, 22)))
        .await
        .unwrap();

    let days: Vec<NaiveDate> = around_a_quiet_day.iter().map(|c| c.date).collect();
    assert_eq!(days, vec![day(2020, 3, 1), day(2020, 3, 3)]);
    let days: Vec<NaiveDate> = before_the_product.iter().map(|c| c.date).collect();
    assert_eq!(
        days,
        vec![day(2015, 7, 20), day(2015, 7, 21), day(2015, 7, 22)]
    );
    assert_eq!(BTC_USD.first_day(), day(2015, 7, 20));
}

#[tokio::test]
async fn candles_outside_the_asked_days_are_dropped() {
    let fake = FakeCoinbase::start().await;
    fake.set_spill(true);

    let candles = client_for(&fake)
        .candles(&btc(), window(day(2022, 5, 10), day(2022, 5, 12)))
        .await
        .unwrap();

    let days: Vec<NaiveDate> = candles.iter().map(|c| c.date).collect();
    assert_eq!(
        days,
        vec![day(2022, 5, 10), day(2022, 5, 11), day(2022, 5, 12)]
    );
}

#[tokio::test]
async fn todays_candle_is_provisional() {
    let fake = FakeCoinbase::start().await;
    let today = Utc::now().date_naive();

    let candles = client_for(&fake)
        .candles(&btc(), window(today - Days::new(1), today))
        .await
        .unwrap();

    assert_eq!(candles.len(), 2);
    assert!(!candles[0].provisional);
    assert!(candles[1].provisional, "today is not over");
    assert!(candles[1].timestamp <= Utc::now());
}

#[tokio::test]
async fn the_fake_refuses_more_than_300_candles_as_coinbase_does() {
    let fake = FakeCoinbase::start().await;

    let (status, body) =
        raw_daily_candles(&fake, "BTC-USD", day(2019, 1, 1), day(2019, 10, 28)).await;

    assert_eq!(status, 400);
    assert_eq!(body, TOO_MANY_CANDLES_BODY);
}

#[tokio::test]
async fn the_fake_answers_newest_first() {
    let fake = FakeCoinbase::start().await;

    let (_, body) = raw_daily_candles(&fake, "ETH-USD", day(2023, 1, 1), day(2023, 1, 5)).await;
    let rows: Vec<Vec<f64>> = serde_json::from_str(&body).unwrap();

    let times: Vec<f64> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(times.len(), 5);
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
}

#[tokio::test]
async fn a_listed_product_is_described_and_an_unknown_one_is_none() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);

    let listed = client.product(&btc()).await.unwrap().unwrap();
    let collision = client
        .product(&ProductId::parse(COLLIDING.id).unwrap())
        .await
        .unwrap();
    let unknown = client
        .product(&ProductId::parse("NOPE-USD").unwrap())
        .await
        .unwrap();

    assert_eq!(listed.id, "BTC-USD");
    assert_eq!(
        (
            listed.base_currency.as_str(),
            listed.quote_currency.as_str()
        ),
        ("BTC", "USD")
    );
    assert!(
        collision.is_some(),
        "a colliding ticker is listed: only the check finds it out"
    );
    assert_eq!(unknown, None);
    assert_eq!(fake.calls().last().unwrap().status, 404);
    assert_eq!(fake.call_count(), 3);
    let (status, body) = raw_get(&format!("{}/products/NOPE-USD", fake.base_url())).await;
    assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY));
}

#[tokio::test]
async fn candles_of_an_unknown_product_are_refused_at_once_naming_coinbase() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);

    let error = client
        .candles(
            &ProductId::parse("NOPE-USD").unwrap(),
            window(day(2024, 1, 1), day(2024, 1, 2)),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(error, CoinbaseError::Refused { status: 404, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert!(error.message().contains("Coinbase Exchange"), "{error}");
    assert!(error.message().contains("NotFound"), "{error}");
    assert_eq!(fake.call_count(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn coinbase_down_gives_up_as_unavailable_after_the_last_retry() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    fake.set_outage(Some(Outage::Status(502)));

    let error = client
        .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 2)))
        .await
        .unwrap_err();

    assert!(error.is_transient(), "{error:?}");
    assert!(error.message().contains("after 4 attempts"), "{error}");
    assert!(error.message().contains("Coinbase Exchange"), "{error}");
    assert_eq!(fake.call_count(), 4);
    fake.set_outage(None);
    assert!(
        client
            .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 2)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn garbage_and_impossible_prices_fail_at_once_without_a_retry() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);

    fake.set_outage(Some(Outage::Garbage));
    let garbage = client
        .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 2)))
        .await
        .unwrap_err();
    fake.set_outage(Some(Outage::BadCandles));
    let negative = client
        .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 2)))
        .await
        .unwrap_err();

    assert!(
        matches!(garbage, CoinbaseError::BadAnswer { .. }),
        "{garbage:?}"
    );
    assert!(garbage.message().contains("Bad gateway"), "{garbage}");
    assert!(
        matches!(negative, CoinbaseError::BadAnswer { .. }),
        "{negative:?}"
    );
    assert!(negative.message().contains("not above zero"), "{negative}");
    assert_eq!(fake.call_count(), 2);
}

#[tokio::test]
async fn the_fake_rate_limits_like_coinbase_and_names_it() {
    let fake = FakeCoinbase::start_with(FakeCoinbaseOptions {
        requests_per_second_limit: NonZeroU32::new(2),
        ..FakeCoinbaseOptions::default()
    })
    .await
    .unwrap();
    let url = format!("{}/products/BTC-USD", fake.base_url());

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(raw_get(&url).await);
    }

    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(answers[2].1, RATE_LIMIT_BODY);
}

#[tokio::test]
async fn three_hundred_hourly_candles_come_in_one_call_newest_first_and_301_are_refused() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    let (first, hours) = hours_of_2024(300);

    let candles = client.hourly_candles(&btc(), hours).await.unwrap();

    assert_eq!(candles.len(), 300);
    assert_eq!(candles[0].time, hours.last().unix(), "newest first");
    assert_eq!(candles[299].time, first.unix());
    let served = fake.hour_candle("BTC-USD", first.start()).unwrap();
    assert_eq!(
        (candles[299].low, candles[299].high, candles[299].close),
        (served.low, served.high, served.close)
    );
    let call = &fake.calls()[0];
    assert_eq!(call.granularity.as_deref(), Some("3600"));
    assert_eq!(call.start.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(call.end.as_deref(), Some("2024-01-13T11:59:59Z"));

    let base = format!("{}/products/BTC-USD/candles", fake.base_url());
    let (status, body) = raw_get(&format!(
        "{base}?granularity=3600&start=2024-01-01T00:00:00Z&end=2024-01-13T12:00:01Z"
    ))
    .await;
    assert_eq!((status, body.as_str()), (400, TOO_MANY_CANDLES_BODY));
    let (status, body) = raw_get(&format!(
        "{base}?granularity=7200&start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z"
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Unsupported granularity"), "{body}");
}

#[tokio::test]
async fn an_hour_without_trades_has_no_hourly_candle_and_an_answer_that_is_not_candles_is_bad() {
    let fake = FakeCoinbase::start().await;
    let client = client_for(&fake);
    let (first, hours) = hours_of_2024(24);
    fake.set_hours_without_trades([first.plus(5).start()]);

    let candles = client.hourly_candles(&btc(), hours).await.unwrap();
    assert_eq!(candles.len(), 23);
    assert!(candles.iter().all(|c| c.time != first.plus(5).unix()));

    fake.set_hours_outage(Some(Outage::Garbage));
    let error = client.hourly_candles(&btc(), hours).await.unwrap_err();
    assert!(
        matches!(error, CoinbaseError::BadAnswer { .. }),
        "{error:?}"
    );
    assert!(
        client
            .candles(&btc(), window(day(2024, 1, 1), day(2024, 1, 1)))
            .await
            .is_ok(),
        "daily candles still answer"
    );
}
