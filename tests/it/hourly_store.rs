//! The hourly store on real PostgreSQL (issue 26), below any job: what a window's upsert
//! keeps and replaces, the checks beside exchange candles, the hours without trades, the
//! missing runs and the coverage in hours (`gaps`), the `4h` blocks and the calendar
//! (`reads`), and the per-coin figures the triggers keep (`figures`).

mod figures;
mod gaps;
mod reads;
mod writes;

use chrono::{DateTime, TimeDelta, Utc};
use price_history::domain::{
    CheckPoint, DisputeRule, Hour, HourParts, HourRange, HourlyCandle, PriceSource, Symbol,
};
use price_history::store::{hourly_prices, hours_without_trades};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::support::{TestDb, sql};

/// 2024-01-01T00:00:00Z plus `n` hours.
fn hour(n: i64) -> Hour {
    Hour::from_unix(1_704_067_200 + n * 3_600).expect("on the grid")
}

/// Hours `first..first + hours` from [`hour`] 0.
fn hours(first: i64, hours: i64) -> HourRange {
    HourRange::starting(hour(first), hours).expect("at least one hour")
}

fn rule() -> DisputeRule {
    DisputeRule::new(Decimal::from(5))
}

/// A final candle of hour `n` around `price`: open `price`, high `price + 2`, low
/// `price - 1`, close `price + 1`, volume `n + 1`; with one point if CoinGecko-built.
fn candle(n: i64, source: PriceSource, price: i64) -> HourlyCandle {
    HourlyCandle::new(HourParts {
        hour: hour(n),
        open: Decimal::from(price),
        high: Decimal::from(price + 2),
        low: Decimal::from(price - 1),
        close: Decimal::from(price + 1),
        volume: Decimal::from(n + 1),
        source,
        points: (source == PriceSource::CoinGecko).then_some(1),
        provisional: false,
        check: None,
    })
    .expect("a candle that holds together")
}

fn coinbase(n: i64, price: i64) -> HourlyCandle {
    candle(n, PriceSource::Coinbase, price)
}

/// Coinbase candles at 100 for the hours `ns`.
fn coinbase_hours(ns: std::ops::Range<i64>) -> Vec<HourlyCandle> {
    ns.map(|n| coinbase(n, 100)).collect()
}

fn coingecko(n: i64, price: i64) -> HourlyCandle {
    candle(n, PriceSource::CoinGecko, price)
}

fn provisional(candle: HourlyCandle) -> HourlyCandle {
    HourlyCandle::new(HourParts {
        provisional: true,
        ..candle.into_parts()
    })
    .expect("still a candle")
}

/// CoinGecko's point in hour `n`, 41 seconds after its start, at `price`.
fn point(n: i64, price: &str) -> (Hour, CheckPoint) {
    (
        hour(n),
        CheckPoint {
            at: hour(n).start() + TimeDelta::seconds(41),
            price: price.parse().expect("a price"),
        },
    )
}

/// Upserts `candles` of BTC in one transaction; how many rows were written.
async fn write(pool: &PgPool, candles: &[HourlyCandle], force: bool) -> u64 {
    write_for(pool, Symbol::BTC, candles, force).await
}

async fn write_for(pool: &PgPool, symbol: Symbol, candles: &[HourlyCandle], force: bool) -> u64 {
    let mut tx = pool.begin().await.expect("a transaction");
    let n = hourly_prices::upsert(&mut tx, symbol, candles, force, rule())
        .await
        .expect("the window is stored");
    tx.commit().await.expect("the window commits");
    n
}

/// Records BTC's hours `ns` as without trades.
async fn quiet(pool: &PgPool, ns: impl IntoIterator<Item = i64>) -> u64 {
    let hours: Vec<Hour> = ns.into_iter().map(hour).collect();
    let mut tx = pool.begin().await.expect("a transaction");
    let n = hours_without_trades::record(&mut tx, Symbol::BTC, &hours)
        .await
        .expect("the hours are recorded");
    tx.commit().await.expect("it commits");
    n
}

async fn attach(pool: &PgPool, points: &[(Hour, CheckPoint)]) -> u64 {
    let mut tx = pool.begin().await.expect("a transaction");
    let n = hourly_prices::attach_checks(&mut tx, Symbol::BTC, points, rule())
        .await
        .expect("the points are attached");
    tx.commit().await.expect("it commits");
    n
}

/// BTC's stored hours of `range`.
async fn stored(pool: &PgPool, range: HourRange) -> Vec<HourlyCandle> {
    hourly_prices::list(pool, Symbol::BTC, range)
        .await
        .expect("the hours read")
}

/// BTC's one stored candle of hour `n`.
async fn stored_hour(pool: &PgPool, n: i64) -> HourlyCandle {
    let mut rows = stored(pool, hours(n, 1)).await;
    assert_eq!(rows.len(), 1, "hour {n} is stored once");
    rows.remove(0)
}

/// A migrated database with a second coin, ETH, beside BTC.
async fn database() -> TestDb {
    let db = TestDb::new().await;
    sqlx::query("INSERT INTO coins (symbol, coingecko_id) VALUES ('ETH', 'ethereum')")
        .execute(&db.pool)
        .await
        .expect("ETH is registered");
    db
}

fn eth() -> Symbol {
    Symbol::parse("ETH").expect("a symbol")
}
