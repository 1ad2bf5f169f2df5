//! The per-coin hourly figures the triggers keep: equal to a scan of the hours whatever
//! changes the rows, and read one row per coin beside the coin's hourly columns; the job's
//! hour counts.

use price_history::domain::Trigger;
use price_history::store::{hourly_coins, hourly_figures, ingestion_jobs, job_hours};
use rust_decimal::Decimal;

use super::*;
use crate::support::{api_job, count_rows, day};
use crate::upgrade::snapshot;

/// What a full scan of the two tables says, per coin, as text; the median taken another
/// way than the triggers take it (the two middle values by `percentile_disc`).
const SCAN: &str = r#"
WITH p AS (
    SELECT symbol,
           count(*) FILTER (WHERE NOT provisional) AS complete,
           count(*) FILTER (WHERE provisional) AS provisional,
           count(*) FILTER (WHERE check_price IS NOT NULL) AS checked,
           count(*) FILTER (WHERE check_deviation_percent > 0) AS outside,
           count(*) FILTER (WHERE disputed) AS disputed,
           (percentile_disc(0.5) WITHIN GROUP (ORDER BY check_deviation_percent)
            + percentile_disc(0.5) WITHIN GROUP (ORDER BY check_deviation_percent DESC)) / 2 AS median
    FROM hourly_prices GROUP BY symbol
), q AS (
    SELECT symbol, count(*) AS quiet FROM hours_without_trades GROUP BY symbol
), b AS (
    SELECT symbol, min(hour) AS first, max(hour) AS last FROM (
        SELECT symbol, hour FROM hourly_prices WHERE NOT provisional
        UNION ALL SELECT symbol, hour FROM hours_without_trades) accounted
    GROUP BY symbol
)
SELECT (s.symbol, coalesce(complete, 0), coalesce(provisional, 0), coalesce(quiet, 0), first, last,
        coalesce(checked, 0), coalesce(outside, 0), coalesce(disputed, 0), trim_scale(round(median, 4)))::text
FROM (SELECT symbol FROM p UNION SELECT symbol FROM q) s
LEFT JOIN p USING (symbol) LEFT JOIN q USING (symbol) LEFT JOIN b USING (symbol)
ORDER BY s.symbol
"#;

/// What the triggers keep, in the same shape (rows emptied of every hour left out).
const KEPT: &str = r#"
SELECT (symbol, complete_hours, provisional_hours, hours_without_trades, first_hour, last_hour,
        checked_hours, outside_hours, disputed_hours, trim_scale(median_deviation_percent))::text
FROM hourly_figures
WHERE complete_hours + provisional_hours + hours_without_trades > 0
ORDER BY symbol
"#;

async fn assert_kept_equals_scan(pool: &PgPool, after: &str) {
    assert_eq!(
        snapshot(pool, KEPT).await,
        snapshot(pool, SCAN).await,
        "after {after}"
    );
}

/// Attaches to `symbol`'s hours `0..` the points at `prices`, one an hour.
async fn attach_to(pool: &PgPool, symbol: Symbol, prices: &[&str]) {
    let points: Vec<(Hour, CheckPoint)> = prices
        .iter()
        .enumerate()
        .map(|(n, price)| point(n as i64, price))
        .collect();
    let mut tx = pool.begin().await.unwrap();
    hourly_prices::attach_checks(&mut tx, symbol, &points, rule())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// BTC's first `btc` exchange hours and ETH's first `eth`, final.
async fn btc_and_eth_hours(pool: &PgPool, btc: i64, eth_hours: i64) {
    write(pool, &coinbase_hours(0..btc), false).await;
    write_for(pool, eth(), &coinbase_hours(0..eth_hours), false).await;
}

#[tokio::test]
async fn the_kept_figures_equal_a_scan_whatever_changes_the_rows() {
    let db = database().await;
    let pool = &db.pool;
    btc_and_eth_hours(pool, 100, 50).await;
    assert_kept_equals_scan(pool, "two windows").await;

    // BTC: 10 checked, 2 outside the band (median 0); ETH: 10 checked, 9 outside.
    attach_to(
        pool,
        Symbol::BTC,
        &[
            "100", "101", "50", "100", "120", "99", "99", "102", "100", "100",
        ],
    )
    .await;
    attach_to(
        pool,
        eth(),
        &["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"],
    )
    .await;
    assert_kept_equals_scan(pool, "checks").await;
    quiet(pool, 200..210).await;
    write(pool, &[provisional(coinbase(300, 10))], false).await;
    assert_kept_equals_scan(pool, "hours without trades and a provisional hour").await;

    let steps = [
        "UPDATE hourly_prices SET provisional = true WHERE symbol = 'BTC' AND hour = '2024-01-01 00:00:00+00'",
        "DELETE FROM hourly_prices WHERE symbol = 'BTC' AND hour >= '2024-01-03 02:00:00+00' AND hour < '2024-01-05'",
        "DELETE FROM hours_without_trades WHERE hour = '2024-01-09 17:00:00+00'",
        "UPDATE hourly_prices SET check_price = NULL, check_at = NULL, check_deviation_percent = NULL, disputed = false \
         WHERE symbol = 'ETH' AND hour < '2024-01-01 03:00:00+00'",
        "INSERT INTO coins (symbol, coingecko_id) VALUES ('SOL', 'solana'), ('ADA', 'cardano')",
        "INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source, points) \
         SELECT s, h, 1, 1, 1, 1, 1, 'coingecko', 1 FROM unnest(ARRAY['SOL', 'ADA']) s, \
         generate_series('2024-01-01'::timestamptz, '2024-01-03'::timestamptz, interval '1 hour') h",
        "DELETE FROM hourly_prices WHERE symbol = 'SOL' AND hour > '2024-01-02'",
    ];
    for step in steps {
        sql(pool, step).await;
        assert_kept_equals_scan(pool, step).await;
    }
    write(pool, &[coinbase(205, 100)], false).await;
    assert_kept_equals_scan(pool, "a candle for an hour without trades").await;
    sql(pool, "TRUNCATE hours_without_trades").await;
    assert_kept_equals_scan(pool, "TRUNCATE hours_without_trades").await;
    sql(pool, "TRUNCATE hourly_prices").await;
    assert_kept_equals_scan(pool, "TRUNCATE hourly_prices").await;
    assert!(snapshot(pool, KEPT).await.is_empty());
}

#[tokio::test]
async fn a_coin_shows_its_disputed_hours_and_median_deviation_from_one_row_of_figures() {
    let db = database().await;
    let pool = &db.pool;
    btc_and_eth_hours(pool, 48, 10).await;
    // BTC: one point 20 % under the low of 99 (disputed), one 1 % over the high of 102,
    // two inside: the median of 0, 0, 1 and 20 is 0.5.
    attach_to(pool, Symbol::BTC, &["79.2", "103.02", "100", "101"]).await;
    // ETH: five points, all inside: median 0, nothing disputed.
    attach_to(pool, eth(), &["100", "100", "100", "100", "100"]).await;
    quiet(pool, 48..50).await;

    let coins = hourly_coins::of_coins(pool, &[eth(), Symbol::BTC, Symbol::parse("NONE").unwrap()])
        .await
        .unwrap();

    assert_eq!(
        coins.iter().map(|c| c.symbol).collect::<Vec<_>>(),
        vec![Symbol::BTC, eth()]
    );
    let btc = coins[0].figures;
    assert_eq!((btc.checked_hours, btc.disputed_hours), (4, 1));
    assert_eq!(
        btc.median_deviation_percent,
        Some("0.5".parse::<Decimal>().unwrap())
    );
    assert_eq!((btc.complete_hours, btc.hours_without_trades), (48, 2));
    assert_eq!(btc.accounted, Some(hours(0, 50)));
    assert!(btc.is_unbroken());
    assert!(btc.covers(hours(10, 40)));
    assert!(!btc.covers(hours(10, 41)));
    let eth_figures = coins[1].figures;
    assert_eq!(
        (
            eth_figures.disputed_hours,
            eth_figures.median_deviation_percent
        ),
        (0, Some(Decimal::ZERO))
    );
    assert_eq!(hourly_figures::of(pool, Symbol::BTC).await.unwrap(), btc);
    assert_eq!(
        hourly_figures::stored_hours(pool).await.unwrap(),
        vec![("BTC".to_owned(), 48), ("ETH".to_owned(), 10)]
    );

    // A hole breaks the run; a coin without hours reads as all zero.
    sql(
        pool,
        "DELETE FROM hourly_prices WHERE symbol = 'BTC' AND hour = '2024-01-01 10:00:00+00'",
    )
    .await;
    let btc = hourly_figures::of(pool, Symbol::BTC).await.unwrap();
    assert!(!btc.is_unbroken() && !btc.covers(hours(20, 5)));
    sql(
        pool,
        "INSERT INTO coins (symbol, coingecko_id) VALUES ('SOL', 'solana')",
    )
    .await;
    let sol = hourly_figures::of(pool, Symbol::parse("SOL").unwrap())
        .await
        .unwrap();
    assert_eq!(sol, hourly_figures::HourlyFigures::default());
    assert_eq!(sol.median_deviation_percent, None);
}

#[tokio::test]
async fn hours_are_turned_on_and_off_per_coin_and_off_keeps_every_stored_hour() {
    let db = database().await;
    let pool = &db.pool;
    write(pool, &[coinbase(0, 100)], false).await;

    assert_eq!(
        hourly_coins::set_hourly(pool, Symbol::BTC, true)
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        hourly_coins::set_hourly(pool, Symbol::BTC, true)
            .await
            .unwrap(),
        Some(true)
    );
    let unknown = Symbol::parse("NONE").unwrap();
    assert_eq!(
        hourly_coins::set_hourly(pool, unknown, true).await.unwrap(),
        None
    );
    let on = hourly_coins::hourly(pool).await.unwrap();
    assert_eq!(
        on.iter().map(|c| c.symbol).collect::<Vec<_>>(),
        vec![Symbol::BTC]
    );
    assert_eq!(on[0].figures.complete_hours, 1);

    assert_eq!(
        hourly_coins::set_hourly(pool, Symbol::BTC, false)
            .await
            .unwrap(),
        Some(true)
    );
    assert!(hourly_coins::hourly(pool).await.unwrap().is_empty());
    assert_eq!(count_rows(pool, "hourly_prices").await, 1);
    let btc = hourly_coins::get(pool, Symbol::BTC).await.unwrap().unwrap();
    assert!(!btc.hourly);
    assert_eq!(btc.figures.complete_hours, 1);
    assert_eq!(hourly_coins::get(pool, unknown).await.unwrap(), None);
}

#[tokio::test]
async fn a_job_counts_hours_only_when_its_coin_keeps_them() {
    let db = database().await;
    let pool = &db.pool;
    let range =
        price_history::domain::DateRange::stored(day("2024-01-01"), day("2024-01-02")).unwrap();
    let daily = api_job(Symbol::BTC, range, false);
    let hourly = price_history::store::ingestion_jobs::NewJob {
        symbol: eth(),
        trigger: Trigger::Schedule,
        ..api_job(eth(), range, false)
    };
    for job in [&daily, &hourly] {
        let mut tx = pool.begin().await.unwrap();
        ingestion_jobs::insert(&mut tx, *job).await.unwrap();
        tx.commit().await.unwrap();
    }

    job_hours::begin(pool, hourly.id).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    job_hours::add_fetched(&mut *tx, hourly.id, 300)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    job_hours::add_fetched(pool, hourly.id, 48).await.unwrap();
    job_hours::begin(pool, hourly.id).await.unwrap();
    job_hours::finish(pool, hourly.id, 5, 2).await.unwrap();

    assert_eq!(job_hours::of(pool, daily.id).await.unwrap(), None);
    assert_eq!(
        job_hours::of(pool, hourly.id).await.unwrap(),
        Some(job_hours::JobHours {
            hours_fetched: 348,
            hours_missing: 5,
            hours_without_trades: 2
        })
    );
    let refused = sqlx::query("UPDATE ingestion_jobs SET hours_missing = NULL WHERE id = $1")
        .bind(hourly.id)
        .execute(pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("ingestion_jobs_hours_counted_together"),
        "{refused}"
    );
}
