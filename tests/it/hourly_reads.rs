//! Reads in three timeframes (issue 26, item 4) through the API on real PostgreSQL, hours
//! stored by the store's own upsert (no job): `4h` rows equal the aggregate of the `1h`
//! rows the same API answers, the timeframe and its 1461-day limit are refused with a 400
//! that says why, coverage in hours names the missing runs, the hours without trades,
//! the hours by source and the disputed ones, and the calendar gets the hours of each day.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use price_history::domain::{
    CheckPoint, DisputeRule, Hour, HourParts, HourlyCandle, PriceSource, Symbol,
};
use price_history::store::{hourly_prices, hours_without_trades};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{TestApi, assert_mentions};

/// 2024-01-01T00:00:00Z plus `n` hours.
pub fn hour(n: i64) -> Hour {
    Hour::from_unix(1_704_067_200 + n * 3_600).expect("on the grid")
}

/// A final candle of BTC's hour `n` from `source`, prices around `price` with many
/// digits (so that decimal and float64 both matter), volume growing with `n`.
pub fn candle(n: i64, source: PriceSource, price: &str) -> HourlyCandle {
    let price: Decimal = price.parse().expect("a price");
    let step = Decimal::new(123_456_789, 9);
    HourlyCandle::new(HourParts {
        hour: hour(n),
        open: price,
        high: price + step * Decimal::from(3),
        low: price - step,
        close: price + step,
        volume: Decimal::new(987_654_321 + n * 1_000_003, 4),
        source,
        points: (source == PriceSource::CoinGecko).then_some(12),
        provisional: false,
        check: None,
    })
    .expect("a candle that holds together")
}

/// The same candle, not over when fetched.
pub fn provisional(candle: HourlyCandle) -> HourlyCandle {
    HourlyCandle::new(HourParts {
        provisional: true,
        ..candle.into_parts()
    })
    .expect("still a candle")
}

/// Stores `candles` of BTC through the store's upsert, as a job's window would.
pub async fn store(pool: &PgPool, candles: &[HourlyCandle]) {
    let mut tx = pool.begin().await.expect("a transaction");
    hourly_prices::upsert(&mut tx, Symbol::BTC, candles, false, rule())
        .await
        .expect("the hours are stored");
    tx.commit().await.expect("it commits");
}

fn rule() -> DisputeRule {
    DisputeRule::new(Decimal::from(5))
}

/// Puts a CoinGecko point far below hour `n`'s band beside it: the candle is disputed.
pub async fn dispute(pool: &PgPool, n: i64) {
    let point = CheckPoint {
        at: hour(n).start() + chrono::TimeDelta::seconds(41),
        price: Decimal::ONE,
    };
    let mut tx = pool.begin().await.expect("a transaction");
    let changed = hourly_prices::attach_checks(&mut tx, Symbol::BTC, &[(hour(n), point)], rule())
        .await
        .expect("the point is attached");
    tx.commit().await.expect("it commits");
    assert_eq!(changed, 1, "hour {n} has an exchange candle to dispute");
}

/// Records BTC's hours `ns` as without trades.
async fn quiet(pool: &PgPool, ns: &[i64]) {
    let hours: Vec<Hour> = ns.iter().copied().map(hour).collect();
    let mut tx = pool.begin().await.expect("a transaction");
    hours_without_trades::record(&mut tx, Symbol::BTC, &hours)
        .await
        .expect("recorded");
    tx.commit().await.expect("it commits");
}

/// Three days of BTC from 2024-01-01 with every kind of block: full ones, blocks of 1 and
/// 3 hours (holes), a block of both sources, a disputed hour and a provisional last hour.
async fn three_days(pool: &PgPool) {
    let holes = [5, 6, 7, 13, 40, 41, 42, 43];
    let candles: Vec<HourlyCandle> = (0..72)
        .filter(|n| !holes.contains(n))
        .map(|n| {
            let price = format!("{}.{:09}", 42_000 + (n * 37) % 23, n * 7_654_321);
            let source = match n {
                20 | 21 | 48..=51 => PriceSource::CoinGecko,
                _ => PriceSource::Coinbase,
            };
            let made = candle(n, source, &price);
            if n == 71 { provisional(made) } else { made }
        })
        .collect();
    store(pool, &candles).await;
    dispute(pool, 9).await;
}

/// A decimal field, normalized: the API writes each as the store's numeric reads back, so
/// `1.50` and `1.5` are the same number.
fn decimal(row: &Value, field: &str) -> Decimal {
    row[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a decimal string: {row}"))
        .parse::<Decimal>()
        .expect("a decimal")
        .normalize()
}

fn time(row: &Value) -> DateTime<Utc> {
    time_of(&row["time"])
}

fn time_of(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

/// The JSON rows of `GET /api/v1/prices` for `query`.
async fn rows(api: &TestApi, query: &str) -> Vec<Value> {
    let answer = api.get(&format!("/api/v1/prices?{query}")).await;
    answer.assert_status(StatusCode::OK);
    answer.json()["prices"].as_array().expect("prices").clone()
}

/// What a `4h` row must be, from the `1h` rows the API answers: grouped by block of four
/// UTC hours, first open, last close, extremes, summed volume, one source or `mixed`.
fn blocks_of(hours: &[Value]) -> Vec<Value> {
    let mut blocks: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for row in hours {
        let start = time(row).timestamp().div_euclid(4 * 3600) * 4 * 3600;
        blocks.entry(start).or_default().push(row);
    }
    blocks
        .into_iter()
        .map(|(start, hours)| {
            let sources: Vec<&Value> = hours.iter().map(|h| &h["source"]).collect();
            let at = DateTime::from_timestamp(start, 0).unwrap();
            serde_json::json!({
                "time": at,
                "open": decimal(hours[0], "open"),
                "high": hours.iter().map(|h| decimal(h, "high")).max(),
                "low": hours.iter().map(|h| decimal(h, "low")).min(),
                "close": decimal(hours[hours.len() - 1], "close"),
                "volume": hours.iter().map(|h| decimal(h, "volume")).sum::<Decimal>().normalize(),
                "source": if sources.iter().all(|s| *s == sources[0]) { sources[0].clone() } else { "mixed".into() },
                "disputed": hours.iter().any(|h| h["disputed"] == true),
                "hours": hours.len(),
                "provisional": hours.iter().any(|h| h["provisional"] == true),
            })
        })
        .collect()
}

/// A `4h` row in the shape [`blocks_of`] builds: decimals parsed, time parsed.
fn as_built(row: &Value) -> Value {
    serde_json::json!({
        "time": time(row),
        "open": decimal(row, "open"),
        "high": decimal(row, "high"),
        "low": decimal(row, "low"),
        "close": decimal(row, "close"),
        "volume": decimal(row, "volume"),
        "source": row["source"],
        "disputed": row["disputed"],
        "hours": row["hours"],
        "provisional": row["provisional"],
    })
}

const THREE_DAYS: &str = "symbol=BTC&start_date=2024-01-01&end_date=2024-01-03";

#[tokio::test]
async fn four_hour_rows_equal_the_aggregate_of_the_hour_rows_including_partial_and_mixed_blocks() {
    let (h, api) = TestApi::with_harness().await;
    three_days(h.pool()).await;

    let hours = rows(&api, &format!("{THREE_DAYS}&timeframe=1h")).await;
    let blocks = rows(&api, &format!("{THREE_DAYS}&timeframe=4h")).await;

    assert_eq!(hours.len(), 72 - 8);
    assert_eq!(
        hours[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "close",
            "disputed",
            "high",
            "low",
            "open",
            "points",
            "provisional",
            "source",
            "time",
            "volume"
        ]
    );
    assert_eq!(
        blocks[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "close",
            "disputed",
            "high",
            "hours",
            "low",
            "open",
            "provisional",
            "source",
            "time",
            "volume"
        ]
    );
    let expected = blocks_of(&hours);
    assert_eq!(blocks.len(), expected.len());
    for (block, expected) in blocks.iter().zip(&expected) {
        assert_eq!(&as_built(block), expected);
    }
    assert_eq!(
        blocks.len(),
        17,
        "18 blocks in three days; 40..44 holds no hour"
    );
    let block = |n: i64| {
        blocks
            .iter()
            .find(|b| time(b) == hour(n).start())
            .unwrap_or_else(|| panic!("a block at hour {n}"))
    };
    assert_eq!(block(4)["hours"], 1, "04:00 alone of 04..08");
    assert_eq!(block(12)["hours"], 3, "13:00 is a hole");
    assert_eq!(block(0)["hours"], 4);
    assert_eq!(
        block(20)["source"],
        "mixed",
        "two CoinGecko hours, two Coinbase"
    );
    assert_eq!(block(48)["source"], "coingecko");
    assert_eq!(block(52)["source"], "coinbase");
    assert!(block(8)["disputed"] == true && block(0)["disputed"] == false);
    assert_eq!(
        block(68)["provisional"],
        true,
        "its last hour is provisional"
    );
    assert_eq!(block(64)["provisional"], false);
    let nine = hours.iter().find(|h| time(h) == hour(9).start()).unwrap();
    assert_eq!(nine["disputed"], true);
    assert_eq!(nine["points"], Value::Null, "an exchange candle");
    let twenty = hours.iter().find(|h| time(h) == hour(20).start()).unwrap();
    assert_eq!(
        twenty["points"], 12,
        "a CoinGecko-built hour says its points"
    );

    // CSV: the same rows, hours and provisional spelled out.
    let csv = api
        .get_with(
            &format!("/api/v1/prices?{THREE_DAYS}&timeframe=4h"),
            "accept",
            "text/csv",
        )
        .await;
    csv.assert_status(StatusCode::OK);
    let rows = csv.csv_rows("time,open,high,low,close,volume,source,disputed,hours,provisional");
    assert_eq!(rows.len(), 17);
    assert!(rows[0].starts_with("2024-01-01T00:00:00Z,"), "{}", rows[0]);
    assert!(rows[1].starts_with("2024-01-01T04:00:00Z,"), "{}", rows[1]);
    assert!(rows[1].ends_with(",coinbase,false,1,false"), "{}", rows[1]);
    let hour_csv = api
        .get(&format!(
            "/api/v1/prices?{THREE_DAYS}&timeframe=1h&format=csv"
        ))
        .await
        .text();
    assert_eq!(hour_csv.lines().count(), 1 + 64);
    assert!(
        hour_csv.lines().any(
            |l| l.starts_with("2024-01-01T09:00:00Z,") && l.ends_with(",coinbase,true,1,false")
        )
    );
    assert!(
        hour_csv
            .lines()
            .last()
            .unwrap()
            .ends_with(",coinbase,false,1,true")
    );
    api.stop().await;
}

#[tokio::test]
async fn a_timeframe_other_than_the_three_or_an_hourly_read_over_1461_days_is_a_400_saying_so() {
    let (h, api) = TestApi::with_harness().await;
    three_days(h.pool()).await;
    for path in ["prices", "coverage", "days"] {
        for bad in ["2h", "1H", "daily", "5m"] {
            let answer = api
                .get_refused(
                    &format!("/api/v1/{path}?{THREE_DAYS}&timeframe={bad}"),
                    "invalid_request",
                )
                .await;
            assert_mentions(&answer.message(), &["use one of 1d, 4h, 1h"]);
        }
        for timeframe in ["1h", "4h"] {
            let too_long = api
                .get_refused(
                    &format!(
                        "/api/v1/{path}?symbol=BTC&start_date=2020-01-01&end_date=2024-01-01&timeframe={timeframe}"
                    ),
                    "range_too_long",
                )
                .await;
            assert_mentions(&too_long.message(), &["at most 1461 days"]);
            let longest = api
                .get(&format!(
                    "/api/v1/{path}?symbol=BTC&start_date=2020-01-01&end_date=2023-12-31&timeframe={timeframe}"
                ))
                .await;
            longest.assert_status(StatusCode::OK);
        }
        let days = api
            .get(&format!(
                "/api/v1/{path}?symbol=BTC&start_date=2020-01-01&end_date=2024-01-01&timeframe=1d"
            ))
            .await;
        days.assert_status(StatusCode::OK);
        let default = api
            .get(&format!(
                "/api/v1/{path}?symbol=BTC&start_date=2020-01-01&end_date=2024-01-01"
            ))
            .await;
        assert_eq!(default.text(), days.text(), "{path}: 1d is the default");
    }
    api.stop().await;
}

/// Two days of BTC from 2024-01-01: Coinbase 0..10, a hole 10..13, no trades at 13 and
/// 14, Coinbase 15..20, CoinGecko-built 20..30, a hole at 30, Coinbase 31..48 with 47
/// provisional (so missing) and 2 disputed.
async fn two_days(pool: &PgPool) {
    let source = |n: i64| match n {
        20..=29 => PriceSource::CoinGecko,
        _ => PriceSource::Coinbase,
    };
    let candles: Vec<HourlyCandle> = (0..48)
        .filter(|n| !matches!(n, 10..=14 | 30))
        .map(|n| {
            let made = candle(n, source(n), "100");
            if n == 47 { provisional(made) } else { made }
        })
        .collect();
    store(pool, &candles).await;
    quiet(pool, &[13, 14]).await;
    dispute(pool, 2).await;
}

#[tokio::test]
async fn coverage_in_hours_names_the_missing_runs_the_hours_without_trades_by_source_and_disputed()
{
    let (h, api) = TestApi::with_harness().await;
    two_days(h.pool()).await;
    let query = "symbol=btc&start_date=2024-01-01&end_date=2024-01-02";

    let answer = api
        .get(&format!("/api/v1/coverage?{query}&timeframe=1h"))
        .await;
    answer.assert_status(StatusCode::OK);
    let coverage = answer.json();

    assert_eq!(coverage["timeframe"], "1h");
    assert_eq!(coverage["symbol"], "BTC");
    assert_eq!(coverage["total_expected_hours"], 48);
    assert_eq!(coverage["total_stored_hours"], 48 - 6 - 1);
    assert_eq!(coverage["hours_without_trades"], 2);
    assert_eq!(coverage["missing_hours"], 5);
    assert_eq!(coverage["missing_run_count"], 3);
    let runs: Vec<(DateTime<Utc>, i64)> = coverage["missing_runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| (time_of(&run["start"]), run["hours"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [
            (hour(10).start(), 3),
            (hour(30).start(), 1),
            (hour(47).start(), 1)
        ],
        "{coverage}"
    );
    assert_eq!(
        coverage["hours_by_source"],
        serde_json::json!({"coinbase": 31, "coingecko": 10})
    );
    assert_eq!(coverage["disputed_hours"], 1);
    assert_eq!(
        coverage["coverage_percent"], 89.58,
        "43 of 48 accounted for"
    );

    let four = api
        .get(&format!("/api/v1/coverage?{query}&timeframe=4h"))
        .await
        .json();
    assert_eq!(four["timeframe"], "4h");
    assert_eq!(
        four["missing_runs"], coverage["missing_runs"],
        "4h blocks are made of the hours"
    );

    let days = api.get(&format!("/api/v1/coverage?{query}")).await.json();
    assert!(days.get("total_expected_days").is_some() && days.get("missing_runs").is_none());
    api.stop().await;
}

#[tokio::test]
async fn the_calendars_days_carry_the_hours_of_each_day_for_hours_and_nothing_more_for_days() {
    let (h, api) = TestApi::with_harness().await;
    two_days(h.pool()).await;
    let query = "symbol=BTC&start_date=2023-12-31&end_date=2024-01-02";

    let with_hours = api.get(&format!("/api/v1/days?{query}&timeframe=1h")).await;
    with_hours.assert_status(StatusCode::OK);
    let hours = &with_hours.json()["hours"];

    assert_eq!(hours["expected"], serde_json::json!([24, 24, 24]));
    assert_eq!(hours["stored"], serde_json::json!([0, 19, 22]));
    assert_eq!(hours["without_trades"], serde_json::json!([0, 2, 0]));
    assert_eq!(hours["provisional"], serde_json::json!([0, 0, 1]));
    assert_eq!(hours["missing"], serde_json::json!([24, 3, 2]));
    assert_eq!(hours["disputed"], serde_json::json!([0, 1, 0]));
    let days = api.get(&format!("/api/v1/days?{query}")).await.json();
    assert!(days.get("hours").is_none(), "1d answers as before: {days}");
    assert_eq!(days["statuses"], with_hours.json()["statuses"]);
    api.stop().await;
}
