//! `coin_imports`: the record of each import of the top N coins (see `track_top`), read
//! like a job; at most one runs at a time across every process.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{ImportStatus, ImportTrigger};

/// A running import whose heartbeat is older than this is taken for dead (its process
/// went away) and no longer blocks a new one.
pub const ABANDONED_AFTER_SECS: i64 = 120;

/// One coin of the list left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// CoinGecko's ticker, as it sends it.
    pub symbol: String,
    pub coingecko_id: String,
    pub reason: String,
}

/// An import, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ImportRecord {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: ImportStatus,
    pub n: i32,
    pub track_since: Option<NaiveDate>,
    /// Whether every coin of the import keeps hourly candles too.
    pub hourly: bool,
    #[sqlx(try_from = "String")]
    pub trigger: ImportTrigger,
    pub pages_done: i32,
    pub pages_total: i32,
    pub coins_done: i32,
    pub coins_total: i32,
    /// New coins registered (each checked with one CoinGecko call), tracked.
    pub registered: Vec<String>,
    /// Coins registered before with the same id: tracked now (or already), and hourly
    /// when the import asks for hours.
    pub already: Vec<String>,
    pub skipped: Json<Vec<Skipped>>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Whether an import could start.
#[derive(Debug, Clone)]
pub enum Start {
    Started(Box<ImportRecord>),
    /// Another import is running: its id.
    Running(Uuid),
}

/// What an import asks for: the `n` largest coins, tracked from `track_since`, and with
/// hourly candles when `hourly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub n: u32,
    pub track_since: Option<NaiveDate>,
    pub hourly: bool,
}

/// Records a new running import, unless one runs already (one left by a process that
/// died is marked failed first).
pub async fn start(
    pool: &PgPool,
    id: Uuid,
    ask: Ask,
    trigger: ImportTrigger,
) -> sqlx::Result<Start> {
    end_abandoned(pool).await?;
    loop {
        let started: Option<ImportRecord> = sqlx::query_as(
            "INSERT INTO coin_imports (id, status, n, track_since, hourly, trigger) \
             VALUES ($1, 'running', $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING *",
        )
        .bind(id)
        .bind(i32::try_from(ask.n).unwrap_or(i32::MAX))
        .bind(ask.track_since)
        .bind(ask.hourly)
        .bind(trigger.as_str())
        .fetch_optional(pool)
        .await?;
        if let Some(record) = started {
            return Ok(Start::Started(Box::new(record)));
        }
        let running: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM coin_imports WHERE status = 'running'")
                .fetch_optional(pool)
                .await?;
        // None: the running one ended between the two statements, and the insert is tried
        // again (a refusal naming no import would send the caller to a URL that is 404).
        if let Some(running) = running {
            return Ok(Start::Running(running));
        }
    }
}

/// Says that the running import `id` is alive: its `updated_at` is now.
pub async fn beat(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE coin_imports SET updated_at = now() WHERE id = $1 AND status = 'running'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Saves the progress and lists of `record` (and its heartbeat), while it is still
/// running: one ended as abandoned meanwhile (its heartbeat stopped for two minutes, the
/// database away, say) stays ended as readers were told, the coins it registers kept.
pub async fn save(pool: &PgPool, record: &ImportRecord) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE coin_imports SET status = $2, pages_done = $3, pages_total = $4, coins_done = $5, \
           coins_total = $6, registered = $7, already = $8, skipped = $9, error_message = $10, \
           updated_at = now(), completed_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(record.id)
    .bind(record.status.as_str())
    .bind(record.pages_done)
    .bind(record.pages_total)
    .bind(record.coins_done)
    .bind(record.coins_total)
    .bind(&record.registered)
    .bind(&record.already)
    .bind(&record.skipped)
    .bind(record.error_message.as_deref())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<ImportRecord>> {
    end_abandoned(pool).await?;
    sqlx::query_as("SELECT * FROM coin_imports WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Ends, as failed, the running import whose process has not saved or beaten for
/// [`ABANDONED_AFTER_SECS`]: it died, or met an error it could not record. Done before an
/// import starts and before one is read, so that none reads `running` for ever.
async fn end_abandoned(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE coin_imports SET status = 'failed', completed_at = now(), updated_at = now(), \
           error_message = 'abandoned: the process running it stopped answering; the coins it registered are kept' \
         WHERE status = 'running' AND updated_at < now() - make_interval(secs => $1)",
    )
    .bind(ABANDONED_AFTER_SECS as f64)
    .execute(pool)
    .await?;
    Ok(())
}
