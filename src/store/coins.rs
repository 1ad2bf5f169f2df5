//! `coins`: the registry of coins the service fetches, with what a user of the list
//! wants beside each one: its last complete day.

use chrono::NaiveDate;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, PgPool, Row};

use super::decode::{parsed, refused};
use super::second_source::Mapping;
use crate::domain::{Coin, CoinGeckoId, Symbol};

/// A registered coin and how far its history reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinRecord {
    pub coin: Coin,
    /// The latest stored day that is not provisional; `None` when there is none.
    pub last_complete_day: Option<NaiveDate>,
    /// Its second source's product and what checking it found.
    pub mapping: Mapping,
}

impl CoinRecord {
    /// Days from the last complete day to yesterday (UTC) on `today`: 0 when yesterday is
    /// stored; `None` when nothing is.
    pub fn stale_days(&self, today: NaiveDate) -> Option<i64> {
        let yesterday = today.pred_opt().unwrap_or(today);
        self.last_complete_day
            .map(|last| (yesterday - last).num_days().max(0))
    }
}

const SELECT: &str = r#"
SELECT c.symbol, c.coingecko_id, c.first_day, c.tracked, c.track_since,
       c.coinbase_product, c.fallback_deviation_percent, c.fallback_checked_at,
       c.fallback_usable, c.fallback_unusable_reason, c.coinbase_candles_from,
       -- Kept by triggers (store::coin_figures): one index probe, however long the history.
       (SELECT max(f.last_complete_day) FROM coin_figures f WHERE f.symbol = c.symbol)
           AS last_complete_day
FROM coins c
"#;

impl FromRow<'_, PgRow> for CoinRecord {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        Ok(CoinRecord {
            coin: Coin {
                symbol: parsed(row, "symbol")?,
                coingecko_id: parsed(row, "coingecko_id")?,
                first_day: row.try_get("first_day")?,
                tracked: row.try_get("tracked")?,
                track_since: row.try_get("track_since")?,
            },
            last_complete_day: row.try_get("last_complete_day")?,
            mapping: Mapping::from_row(row)?,
        })
    }
}

/// Every coin, by symbol.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<CoinRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY c.symbol")))
        .fetch_all(pool)
        .await
}

/// Which coins a page of the list holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// At most this many.
    pub limit: u32,
    /// Only symbols after this one: the previous page's last.
    pub after: Option<Symbol>,
    /// Only coins whose symbol or CoinGecko id contains this, case-insensitive.
    pub q: Option<String>,
    /// Only tracked coins (`true`) or untracked ones (`false`).
    pub tracked: Option<bool>,
}

/// One page of coins by symbol, and whether more follow it.
pub async fn page(pool: &PgPool, query: &PageQuery) -> sqlx::Result<(Vec<CoinRecord>, bool)> {
    // One more than asked tells whether a next page exists.
    let mut coins: Vec<CoinRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE ($1::text IS NULL OR c.symbol > $1) \
           AND ($2::text IS NULL OR strpos(c.symbol, upper($2)) > 0 OR strpos(c.coingecko_id, lower($2)) > 0) \
           AND ($3::boolean IS NULL OR c.tracked = $3) \
         ORDER BY c.symbol LIMIT $4"
    )))
    .bind(query.after.map(|s| s.as_str().to_owned()))
    .bind(query.q.as_deref())
    .bind(query.tracked)
    .bind(i64::from(query.limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = coins.len() > query.limit as usize;
    coins.truncate(query.limit as usize);
    Ok((coins, more))
}

pub async fn get(pool: &PgPool, symbol: Symbol) -> sqlx::Result<Option<CoinRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE c.symbol = $1")))
        .bind(symbol.as_str())
        .fetch_optional(pool)
        .await
}

/// The coins of `symbols` that are registered, in no particular order: one query for a
/// tick's coins.
pub async fn get_many(pool: &PgPool, symbols: &[Symbol]) -> sqlx::Result<Vec<CoinRecord>> {
    let symbols: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.symbol = ANY($1)"
    )))
    .bind(symbols)
    .fetch_all(pool)
    .await
}

/// The coin registered under CoinGecko's `id`, whatever its symbol.
pub async fn by_coingecko_id(pool: &PgPool, id: &CoinGeckoId) -> sqlx::Result<Option<CoinRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.coingecko_id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
}

/// Registers a checked coin. `false` when its symbol or its id was registered meanwhile
/// (the caller reads again and says which).
pub async fn insert(executor: impl PgExecutor<'_>, coin: &Coin) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(coin.symbol.as_str())
    .bind(coin.coingecko_id.as_str())
    .bind(coin.first_day)
    .bind(coin.tracked)
    .bind(coin.track_since)
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records the first day of a coin whose first day was not known (registered under a plan
/// that did not reach it); a known one is left as it is. True when it was recorded.
pub async fn learn_first_day(pool: &PgPool, symbol: Symbol, day: NaiveDate) -> sqlx::Result<bool> {
    let query = sqlx::query(
        "UPDATE coins SET first_day = $2, updated_at = now() \
         WHERE symbol = $1 AND first_day IS NULL",
    );
    let done = query.bind(symbol.as_str()).bind(day).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

/// Changes whether a coin is tracked and from when. Returns the coin as it was before,
/// `None` when the symbol is not registered.
pub async fn set_tracking(
    executor: impl PgExecutor<'_>,
    symbol: Symbol,
    tracked: bool,
    track_since: Option<NaiveDate>,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "UPDATE coins n SET tracked = $2, track_since = $3, updated_at = now() \
         FROM coins o WHERE n.symbol = $1 AND o.symbol = n.symbol RETURNING o.tracked",
    )
    .bind(symbol.as_str())
    .bind(tracked)
    .bind(track_since)
    .fetch_optional(executor)
    .await
}

/// Up to `limit` registered symbols after `after`, by symbol (only tracked coins when
/// `tracked_only`): what walks every coin a page at a time, without holding them all.
pub async fn symbols_after(
    pool: &PgPool,
    tracked_only: bool,
    after: Option<Symbol>,
    limit: i64,
) -> sqlx::Result<Vec<Symbol>> {
    let symbols: Vec<String> = sqlx::query_scalar(
        "SELECT symbol FROM coins WHERE ($1::text IS NULL OR symbol > $1) AND (tracked OR NOT $2) \
         ORDER BY symbol LIMIT $3",
    )
    .bind(after.map(|s| s.as_str().to_owned()))
    .bind(tracked_only)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    symbols.iter().map(|s| decode_symbol(s)).collect()
}

/// How many coins are registered (only tracked ones when `tracked_only`).
pub async fn count(pool: &PgPool, tracked_only: bool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM coins WHERE tracked OR NOT $1")
        .bind(tracked_only)
        .fetch_one(pool)
        .await
}

/// The symbols of `symbols` that are not registered, in the order given.
pub async fn unregistered(pool: &PgPool, symbols: &[Symbol]) -> sqlx::Result<Vec<Symbol>> {
    let asked: Vec<String> = symbols.iter().map(|s| s.as_str().to_owned()).collect();
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS a(s, n) \
         WHERE NOT EXISTS (SELECT 1 FROM coins c WHERE c.symbol = a.s) ORDER BY n",
    )
    .bind(asked)
    .fetch_all(pool)
    .await?;
    missing.iter().map(|s| decode_symbol(s)).collect()
}

fn decode_symbol(symbol: &str) -> sqlx::Result<Symbol> {
    Symbol::parse(symbol).map_err(|e| refused("symbol", e))
}
