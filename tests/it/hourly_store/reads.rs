//! The reads: `4h` blocks equal to the aggregate of their hours, the calendar's hours per
//! day, and all of it cut on the UTC grid whatever time zone the session runs in.

use price_history::domain::{BlockSource, FourHourCandle};
use price_history::store::{hourly_coverage, hourly_prices};
use rust_decimal::Decimal;
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;

use super::*;
use crate::support::day;

/// Three days of BTC with every kind of block: full ones, partial ones (holes), mixed
/// sources, a disputed hour and a provisional last hour.
async fn three_days(pool: &PgPool) -> HourRange {
    let mut candles: Vec<HourlyCandle> = (0..72)
        .filter(|n| ![5, 6, 7, 13, 40, 41, 42, 43].contains(n))
        .map(|n| match n {
            20..=23 | 48..=51 => coingecko(n, 100 + n),
            _ => coinbase(n, 100 + (n * 37) % 23),
        })
        .collect();
    let last = candles.pop().expect("hour 71");
    candles.push(provisional(last));
    write(pool, &candles, false).await;
    attach(pool, &[point(9, "1")]).await;
    hours(0, 72)
}

#[tokio::test]
async fn four_hour_blocks_equal_the_aggregate_of_their_hours_including_partial_ones() {
    let db = database().await;
    let range = three_days(&db.pool).await;
    let hours_stored = hourly_prices::list(&db.pool, Symbol::BTC, range)
        .await
        .unwrap();

    let blocks = hourly_prices::four_hour_blocks(&db.pool, Symbol::BTC, range)
        .await
        .unwrap();

    assert_eq!(blocks, FourHourCandle::of_hours(&hours_stored));
    assert_eq!(
        blocks.len(),
        17,
        "18 blocks in three days, 40..44 has no hour"
    );
    let block = |n: i64| blocks.iter().find(|b| b.time == hour(n)).expect("a block");
    assert_eq!(block(4).hours, 1, "04:00 alone of 04..08");
    assert_eq!(block(12).hours, 3);
    assert_eq!(block(0).hours, 4);
    assert!(block(8).disputed && !block(0).disputed);
    assert_eq!(block(20).source, BlockSource::One(PriceSource::CoinGecko));
    assert_eq!(block(48).source, BlockSource::One(PriceSource::CoinGecko));
    assert_eq!(block(16).source, BlockSource::One(PriceSource::Coinbase));
    assert_eq!(block(52).source, BlockSource::One(PriceSource::Coinbase));
    assert!(block(68).provisional, "the last hour is not over");
    let sixteen = &hours_stored[hours_stored
        .iter()
        .position(|h| h.hour == hour(16))
        .unwrap()..][..4];
    assert_eq!(block(16).open, sixteen[0].open);
    assert_eq!(block(16).close, sixteen[3].close);
    assert_eq!(
        block(16).volume,
        sixteen.iter().map(|h| h.volume).sum::<Decimal>()
    );
    assert_eq!(
        block(16).high,
        sixteen.iter().map(|h| h.high).max().unwrap()
    );
    assert_eq!(block(16).low, sixteen.iter().map(|h| h.low).min().unwrap());
}

#[tokio::test]
async fn a_block_of_two_sources_is_mixed_and_a_range_is_widened_to_whole_blocks() {
    let db = database().await;
    write(
        &db.pool,
        &[
            coingecko(0, 100),
            coinbase(1, 100),
            coinbase(2, 100),
            coinbase(3, 100),
        ],
        false,
    )
    .await;

    // A range from 02:00 to 02:00 still reads the whole block of 00..04.
    let blocks = hourly_prices::four_hour_blocks(&db.pool, Symbol::BTC, hours(2, 1))
        .await
        .unwrap();

    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].source, blocks[0].hours), (BlockSource::Mixed, 4));
    assert_eq!(blocks[0].open, Decimal::from(100));
}

#[tokio::test]
async fn hours_per_day_say_what_each_day_holds() {
    let db = database().await;
    three_days(&db.pool).await;
    quiet(&db.pool, [5, 6]).await;

    let days = (day("2023-12-31"), day("2024-01-05"));
    let days = hourly_coverage::hours_per_day(&db.pool, Symbol::BTC, days, None)
        .await
        .unwrap();

    let seen: Vec<(String, i64, i64, i64, i64)> = days
        .iter()
        .map(|d| {
            (
                d.date.to_string(),
                d.stored,
                d.provisional,
                d.without_trades,
                d.disputed,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("2024-01-01".to_owned(), 20, 0, 2, 1),
            ("2024-01-02".to_owned(), 20, 0, 0, 0),
            ("2024-01-03".to_owned(), 23, 1, 0, 0),
        ]
    );
}

/// A review's finding: a day's missing hours were its expected hours less every hour it
/// stored or recorded without trades, so hours stored outside those expected (before they
/// begin), or an hour both built from CoinGecko's points and recorded without trades, hid
/// missing ones. Each expected hour counts once now.
#[tokio::test]
async fn a_days_accounted_hours_are_the_expected_ones_each_counted_once() {
    let db = database().await;
    three_days(&db.pool).await;
    // Hours 5 and 6 without trades; hour 5 then built from CoinGecko's points too. Hours
    // 7 and 13 of the first day are missing.
    quiet(&db.pool, [5, 6]).await;
    write(&db.pool, &[coingecko(5, 100)], false).await;
    let (first_day, pool) = ((day("2024-01-01"), day("2024-01-01")), &db.pool);
    let accounted = |expected| async move {
        let days = hourly_coverage::hours_per_day(pool, Symbol::BTC, first_day, expected);
        days.await.unwrap()[0].accounted
    };

    let whole_day = accounted(Some(hours(0, 24))).await;
    let from_ten = accounted(Some(hours(10, 14))).await;
    let none = accounted(None).await;

    assert_eq!(whole_day, 22, "24 less hours 7 and 13; hour 5 once");
    assert_eq!(from_ten, 13, "hours 10 to 23 less hour 13");
    assert_eq!(none, 0);
}

#[tokio::test]
async fn every_read_cuts_hours_days_and_blocks_in_utc_whatever_the_sessions_time_zone() {
    let db = database().await;
    let range = three_days(&db.pool).await;
    quiet(&db.pool, [5, 6]).await;
    // Kolkata is 5:30 ahead of UTC, so its hours and days start elsewhere; Lord Howe runs
    // 10:30 or 11 ahead and changes its clocks by half an hour. (sqlx itself asks for UTC
    // at connection: these sessions are what an operator's psql, or a pooler, may use.)
    let days = (day("2024-01-01"), day("2024-01-03"));
    for zone in ["Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns"] {
        let zoned = in_zone(&db.url, zone).await;
        let said: String = sqlx::query_scalar("SHOW TimeZone")
            .fetch_one(&zoned)
            .await
            .unwrap();
        assert_eq!(said, zone);

        assert_eq!(
            hourly_prices::four_hour_blocks(&zoned, Symbol::BTC, range)
                .await
                .unwrap(),
            hourly_prices::four_hour_blocks(&db.pool, Symbol::BTC, range)
                .await
                .unwrap(),
            "{zone}"
        );
        assert_eq!(
            hourly_coverage::hours_per_day(&zoned, Symbol::BTC, days, Some(range))
                .await
                .unwrap(),
            hourly_coverage::hours_per_day(&db.pool, Symbol::BTC, days, Some(range))
                .await
                .unwrap(),
            "{zone}"
        );
        assert_eq!(
            hourly_coverage::coverage(&zoned, Symbol::BTC, Some(range))
                .await
                .unwrap(),
            hourly_coverage::coverage(&db.pool, Symbol::BTC, Some(range))
                .await
                .unwrap(),
            "{zone}"
        );
        // A half hour is off the grid in every zone.
        let off = sqlx::query(
            "INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source) \
             VALUES ('BTC', '2024-02-01 10:30:00+05:30', 1, 1, 1, 1, 1, 'coinbase')",
        )
        .execute(&zoned)
        .await;
        assert!(
            off.is_ok(),
            "10:30 in Kolkata is 05:00 UTC, on the grid: {off:?}"
        );
        sqlx::query("DELETE FROM hourly_prices WHERE hour = '2024-02-01 05:00:00+00'")
            .execute(&zoned)
            .await
            .unwrap();
        let off = sqlx::query(
            "INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source) \
             VALUES ('BTC', '2024-02-01 10:00:00+05:30', 1, 1, 1, 1, 1, 'coinbase')",
        )
        .execute(&zoned)
        .await;
        assert!(off.is_err(), "10:00 in Kolkata is 04:30 UTC");
    }
}

/// A pool whose one session runs in `zone`.
async fn in_zone(url: &str, zone: &'static str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .after_connect(move |connection, _| {
            Box::pin(async move {
                let statement = format!("SET TIME ZONE '{zone}'");
                connection.execute(sqlx::AssertSqlSafe(statement)).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("a session in another zone")
}
