//! A coin opts in to hourly candles (issue 26) with `"hourly"` on
//! `PUT /api/v1/coins/{symbol}`: off for a new coin, kept when left out; turning hours on
//! queues the coin's hours at once, as turning tracking on queues its days; turning them
//! off keeps the stored hours and fetches no more. A coin says what its hours are
//! (`hourly_source`, `disputed_hours`, `hourly_median_deviation_percent`) from its kept
//! figures. The command line's and the import's ways in are in `cli` and `track_top`.

use chrono::{Days, NaiveDate, TimeDelta};
use price_history::config::FallbackSource;
use price_history::domain::{
    CheckPoint, DisputeRule, Hour, HourParts, HourlyCandle, JobStatus, PriceSource, Symbol,
    Trigger, today_utc,
};
use price_history::startup::Application;
use price_history::store::{coins, hourly_coins, hourly_prices};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{Harness, TestApi, count_rows, day, days_before_today};

/// The first day whose hours a coin keeps at most: 1461 days up to today.
fn four_years_back() -> NaiveDate {
    today_utc().checked_sub_days(Days::new(1460)).unwrap()
}

/// The hourly fields of a coin's JSON, in the order INTERFACE names them.
fn hourly_fields(coin: &Value) -> (Value, Value, Value, Value) {
    (
        coin["hourly"].clone(),
        coin["hourly_source"].clone(),
        coin["disputed_hours"].clone(),
        coin["hourly_median_deviation_percent"].clone(),
    )
}

/// 2024-01-01T00:00:00Z plus `n` hours.
fn hour(n: i64) -> Hour {
    Hour::from_unix(1_704_067_200 + n * 3_600).expect("on the grid")
}

/// Final Coinbase candles of `symbol` for `hours`: low 99, high 102, each checked against
/// the CoinGecko point at the same index of `points` (none where it has no point).
async fn store_checked_hours(pool: &PgPool, symbol: Symbol, hours: &[Hour], points: &[&str]) {
    let rule = DisputeRule::new(Decimal::from(5));
    let candles: Vec<HourlyCandle> = hours
        .iter()
        .map(|&hour| {
            HourlyCandle::new(HourParts {
                hour,
                open: Decimal::from(100),
                high: Decimal::from(102),
                low: Decimal::from(99),
                close: Decimal::from(101),
                volume: Decimal::from(5),
                source: PriceSource::Coinbase,
                points: None,
                provisional: false,
                check: None,
            })
            .expect("a candle that holds together")
        })
        .collect();
    let checks: Vec<(Hour, CheckPoint)> = hours
        .iter()
        .zip(points)
        .map(|(&hour, price)| {
            let at = hour.start() + TimeDelta::seconds(41);
            let price = price.parse().expect("a price");
            (hour, CheckPoint { at, price })
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    hourly_prices::upsert(&mut tx, symbol, &candles, false, rule)
        .await
        .expect("the hours are stored");
    hourly_prices::attach_checks(&mut tx, symbol, &checks, rule)
        .await
        .expect("the points are kept beside them");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_new_coin_keeps_no_hours_and_hourly_left_out_keeps_a_registered_coins_setting() {
    let (h, api) = TestApi::with_harness().await;
    let put = async |body: Value| {
        let answer = api.put_coin("ETH", body).await;
        assert!(answer.status.is_success(), "{}", answer.text());
        hourly_fields(&answer.json())
    };
    let off = (json!(false), Value::Null, json!(0), Value::Null);
    // FALLBACK_SOURCE=off here: no exchange, so hours are built from CoinGecko's points.
    let on = (json!(true), json!("coingecko"), json!(0), Value::Null);

    let new = put(json!({"coingecko_id": "ethereum"})).await;
    let turned_on = put(json!({"coingecko_id": "ethereum", "hourly": true})).await;
    let left_out = put(json!({"coingecko_id": "ethereum", "tracked": true})).await;
    let null = put(json!({"coingecko_id": "ethereum", "tracked": true, "hourly": null})).await;
    let read = hourly_fields(&api.get("/api/v1/coins/ETH").await.json());
    let turned_off = put(json!({"coingecko_id": "ethereum", "hourly": false})).await;
    let listed = api.get("/api/v1/coins").await.json();

    assert_eq!(new, off, "a new coin keeps no hours");
    assert_eq!(turned_on, on);
    assert_eq!(left_out, on, "left out, the setting stays");
    assert_eq!(null, on, "null is left out");
    assert_eq!(read, on);
    assert_eq!(turned_off, off);
    let coins = listed["coins"].as_array().unwrap();
    assert_eq!(coins.len(), 2, "{listed}");
    for coin in coins {
        assert_eq!(hourly_fields(coin), off, "{coin}");
    }
    assert_eq!(count_rows(h.pool(), "coins WHERE hourly").await, 0);
    api.stop().await;
}

#[tokio::test]
async fn turning_hours_on_queues_one_job_over_the_days_of_its_hours_through_today_as_tracking_does()
{
    let (h, api) = TestApi::with_harness().await;
    let hourly = |on: bool| json!({"coingecko_id": "bitcoin", "hourly": on});

    let turned_on = api.put_coin("BTC", hourly(true)).await;
    let again = api.put_coin("BTC", hourly(true)).await;
    let jobs = h.jobs_by(Trigger::Api).await;
    // Off and on again while its job waits: nothing more is queued, and no 409.
    let off = api.put_coin("BTC", hourly(false)).await;
    let on_while_busy = api.put_coin("BTC", hourly(true)).await;

    assert_eq!(turned_on.status, StatusCode::OK, "{}", turned_on.text());
    assert_eq!(turned_on.json()["hourly"], true);
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(jobs.len(), 1, "hours on, not hours kept on: {jobs:#?}");
    let job = &jobs[0];
    assert_eq!(
        (job.symbol, job.status, job.force),
        (Symbol::BTC, JobStatus::Pending, false)
    );
    assert_eq!(
        (job.range.start(), job.range.end()),
        (four_years_back(), today_utc()),
        "BTC's days reach back to 2013 on this unlimited plan: its hours, 1461 days to the last complete hour"
    );
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(
        on_while_busy.status,
        StatusCode::OK,
        "{}",
        on_while_busy.text()
    );
    assert_eq!(on_while_busy.json()["hourly"], true);
    assert_eq!(h.jobs_by(Trigger::Api).await.len(), 1);
    assert_eq!(h.fake.call_count(), 0, "the job runs on a worker");
    api.stop().await;
}

/// A review's finding: tracking and hours turned on together queued one job over the days
/// of the hours alone (1461 days back), and the coin's older days waited for the next tick,
/// where turning tracking on brings a coin up to date at once. The one job starts at the
/// first day the coin keeps now.
#[tokio::test]
async fn tracking_and_hours_turned_on_together_queue_one_job_from_the_first_day_kept() {
    let (h, api) = TestApi::with_harness().await;

    let both = api
        .put_coin(
            "BTC",
            json!({"coingecko_id": "bitcoin", "tracked": true, "hourly": true}),
        )
        .await;

    assert_eq!(both.status, StatusCode::OK, "{}", both.text());
    let jobs = h.jobs_by(Trigger::Api).await;
    assert_eq!(jobs.len(), 1, "one job for both: {jobs:#?}");
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (day("2013-04-28"), today_utc()),
        "BTC's first day on this unlimited plan, not the first of its hours ({})",
        four_years_back()
    );
    api.stop().await;
}

#[tokio::test]
async fn a_new_coin_tracked_and_hourly_from_a_day_gets_one_job_for_its_days_and_hours_since_then() {
    let (h, api) = TestApi::with_harness().await;
    let since = days_before_today(5);

    let created = api
        .put_coin(
            "ETH",
            json!({"coingecko_id": "ethereum", "tracked": true, "track_since": since.to_string(), "hourly": true}),
        )
        .await;

    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(hourly_fields(&created.json()).0, true);
    let jobs = h.jobs_by(Trigger::Api).await;
    assert_eq!(jobs.len(), 1, "one job for both: {jobs:#?}");
    assert_eq!(jobs[0].symbol.as_str(), "ETH");
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (since, today_utc())
    );
    assert_eq!(h.fake.call_count(), 1, "the check of the new id alone");
    api.stop().await;
}

#[tokio::test]
async fn turning_hours_on_when_every_hour_it_keeps_is_stored_queues_nothing() {
    let (h, api) = TestApi::with_harness().await;
    let since = days_before_today(1);
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(since))
        .await
        .unwrap();
    // Every hour from `since` through the one under way: whichever hour has just ended
    // when the PUT comes, it is stored.
    let first = Hour::first_of(since);
    let now = Hour::containing(chrono::Utc::now());
    let hours: Vec<Hour> = (0..=first.hours_until(now))
        .map(|n| first.plus(n))
        .collect();
    store_checked_hours(h.pool(), Symbol::BTC, &hours, &[]).await;

    let on = api
        .put_coin(
            "BTC",
            json!({"coingecko_id": "bitcoin", "tracked": true, "track_since": since.to_string(), "hourly": true}),
        )
        .await;

    assert_eq!(on.status, StatusCode::OK, "{}", on.text());
    assert_eq!(on.json()["hourly"], true);
    let jobs = h.jobs_by(Trigger::Api).await;
    assert!(jobs.is_empty(), "known from its figures: {jobs:#?}");
    api.stop().await;
}

#[tokio::test]
async fn turning_hours_off_keeps_the_stored_hours_and_a_later_job_of_the_coin_records_none() {
    let (h, api) = TestApi::with_harness().await;
    let pool = h.pool();
    hourly_coins::set_hourly(pool, Symbol::BTC, true)
        .await
        .unwrap();
    // Half of yesterday's hours: a job that fetched hours would find the rest missing.
    let yesterday = Hour::first_of(days_before_today(1));
    let hours: Vec<Hour> = (0..12).map(|n| yesterday.plus(n)).collect();
    store_checked_hours(pool, Symbol::BTC, &hours, &[]).await;

    let off = api
        .put_coin("BTC", json!({"coingecko_id": "bitcoin", "hourly": false}))
        .await;
    let job = h.run_days_to_yesterday(3).await;

    assert_eq!(off.status, StatusCode::OK, "{}", off.text());
    assert_eq!(off.json()["hourly"], false);
    assert!(h.jobs_by(Trigger::Api).await.iter().all(|j| j.id == job.id));
    assert_eq!(
        count_rows(pool, "hourly_prices WHERE symbol = 'BTC'").await,
        12
    );
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    assert_eq!(job.records_fetched, 3, "its days as ever");
    let hour_counts: (Option<i32>, Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT hours_fetched, hours_missing, hours_without_trades FROM ingestion_jobs WHERE id = $1",
    )
    .bind(job.id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(hour_counts, (None, None, None), "a daily-only job");
    api.stop().await;
}

#[tokio::test]
async fn a_coin_says_where_its_hours_come_from_and_how_many_are_disputed_from_its_kept_figures() {
    let h = Harness::new().await.with_coinbase();
    let pool = h.pool();
    sqlx::raw_sql(
        "UPDATE coins SET hourly = true, coinbase_product = 'BTC-USD', fallback_usable = true, \
             fallback_deviation_percent = 0.1, fallback_checked_at = now() WHERE symbol = 'BTC'; \
         INSERT INTO coins (symbol, coingecko_id, hourly, coinbase_product) VALUES \
             ('SOL', 'solana', true, NULL), ('ADA', 'cardano', true, 'ADA-USD'), ('DOGE', 'dogecoin', false, NULL);",
    )
    .execute(pool)
    .await
    .unwrap();
    // One point 20 % under the low of 99 (disputed), one 1 % over the high of 102, two
    // inside, and a candle no point checked: the median of 0, 0, 1 and 20 is 0.5.
    let hours: Vec<Hour> = (0..5).map(hour).collect();
    store_checked_hours(pool, Symbol::BTC, &hours, &["79.2", "103.02", "100", "101"]).await;
    let api = TestApi::start(&h).await;
    let mut fallback_off = h.settings.clone();
    fallback_off.fallback_source = FallbackSource::Off;
    let state = Application::with_pool(fallback_off, pool.clone())
        .unwrap()
        .api_state(false)
        .unwrap();
    let api_without_coinbase = TestApi::start_with(state).await;

    let btc = api.get("/api/v1/coins/BTC").await.json();
    let listed = api.get("/api/v1/coins?limit=3").await.json();
    let next = api.get("/api/v1/coins?after=DOGE").await.json();
    let btc_without_coinbase = api_without_coinbase.get("/api/v1/coins/BTC").await.json();

    assert_eq!(
        hourly_fields(&btc),
        (json!(true), json!("coinbase"), json!(1), json!(0.5))
    );
    let by_symbol = |page: &Value| -> Vec<(String, (Value, Value, Value, Value))> {
        page["coins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["symbol"].as_str().unwrap().to_owned(), hourly_fields(c)))
            .collect()
    };
    let coingecko = (json!(true), json!("coingecko"), json!(0), Value::Null);
    assert_eq!(
        by_symbol(&listed),
        [
            // Its product awaits the check that decides.
            (
                "ADA".to_owned(),
                (json!(true), Value::Null, json!(0), Value::Null)
            ),
            ("BTC".to_owned(), hourly_fields(&btc)),
            (
                "DOGE".to_owned(),
                (json!(false), Value::Null, json!(0), Value::Null)
            ),
        ]
    );
    assert_eq!(by_symbol(&next), [("SOL".to_owned(), coingecko)]);
    assert_eq!(
        hourly_fields(&btc_without_coinbase),
        (json!(true), json!("coingecko"), json!(1), json!(0.5)),
        "FALLBACK_SOURCE=off makes no Coinbase call: its hours would be built from CoinGecko's"
    );
    api.stop().await;
    api_without_coinbase.stop().await;
}

#[tokio::test]
async fn a_malformed_hourly_is_refused_with_400_and_changes_nothing() {
    let (h, api) = TestApi::with_harness().await;

    let yes = api
        .put_coin("ETH", json!({"coingecko_id": "ethereum", "hourly": "yes"}))
        .await;
    let one = api
        .put_coin("BTC", json!({"coingecko_id": "bitcoin", "hourly": 1}))
        .await;
    let import = api
        .post(
            "/api/v1/coins/track-top",
            Some(json!({"n": 5, "hourly": "yes"})),
            None,
        )
        .await;

    for (answer, what) in [
        (&yes, "a string"),
        (&one, "a number"),
        (&import, "track-top"),
    ] {
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            answer.text()
        );
        assert!(
            answer.message().contains("Expected input type \"boolean\""),
            "{what}: {}",
            answer.text()
        );
    }
    assert_eq!(
        count_rows(h.pool(), "coins").await,
        1,
        "ETH is not registered"
    );
    assert_eq!(count_rows(h.pool(), "coins WHERE hourly").await, 0);
    assert_eq!(count_rows(h.pool(), "coin_imports").await, 0);
    assert_eq!(h.fake.call_count(), 0);
    api.stop().await;
}
