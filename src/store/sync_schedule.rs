//! `sync_schedule` and `sync_ticks`: which tick of `SYNC_SCHEDULE` was acted on last, and
//! what each acted-on tick did. The row of `sync_schedule` is the lock that lets exactly
//! one process act on a tick.

use std::ops::Deref;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// How many rows of `sync_ticks` are kept: plenty to read a schedule's recent history,
/// bounded however often it ticks.
const TICKS_KEPT: i64 = 1000;

/// The channel on which every acted-on tick is announced (payload: the tick).
pub const TICKS_CHANNEL: &str = "sync_ticks";

/// Claims `tick` for this process, in `tx`: true when no process has acted on it, nor on
/// a later one. The row stays locked until `tx` ends, so a process that claims the same
/// tick meanwhile waits, and then finds it taken; if `tx` rolls back (the acting process
/// failed or died), the tick is free again for the next process that tries.
pub async fn claim(tx: &mut Transaction<'_, Postgres>, tick: DateTime<Utc>) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE sync_schedule SET last_tick = $1, updated_at = now() \
         WHERE last_tick IS NULL OR last_tick < $1",
    )
    .bind(tick)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// What one acted-on tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct TickRecord {
    /// Acted on at start, for a tick that passed while no process ran.
    pub catch_up: bool,
    pub coins_tracked: i32,
    /// Tracked coins not up to date: days missing, or a job of theirs active.
    pub coins_behind: i32,
    pub jobs_queued: i32,
    /// Coins left to the next tick because a job of theirs was active.
    pub coins_busy: i32,
    /// Coins left for next month because the month's credits could not pay for them.
    pub coins_unaffordable: i32,
}

/// Records what the claimed `tick` did, in the claim's transaction, and forgets old ticks.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    tick: DateTime<Utc>,
    acted_by: &str,
    what: TickRecord,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sync_ticks (tick, acted_by, catch_up, coins_tracked, coins_behind, jobs_queued, coins_busy, coins_unaffordable) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tick)
    .bind(acted_by)
    .bind(what.catch_up)
    .bind(what.coins_tracked)
    .bind(what.coins_behind)
    .bind(what.jobs_queued)
    .bind(what.coins_busy)
    .bind(what.coins_unaffordable)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM sync_ticks WHERE tick < (SELECT tick FROM sync_ticks ORDER BY tick DESC OFFSET $1 LIMIT 1)",
    )
    .bind(TICKS_KEPT)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The last tick acted on, by any process; `None` before the first.
pub async fn last_tick(pool: &PgPool) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT last_tick FROM sync_schedule")
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
}

/// An acted-on tick as `sync_ticks` keeps it: what it did, read through it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActedTick {
    pub tick: DateTime<Utc>,
    pub acted_by: String,
    pub acted_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub what: TickRecord,
}

impl Deref for ActedTick {
    type Target = TickRecord;

    fn deref(&self) -> &TickRecord {
        &self.what
    }
}

/// The ticks kept, oldest first.
pub async fn acted_ticks(pool: &PgPool) -> sqlx::Result<Vec<ActedTick>> {
    sqlx::query_as(
        "SELECT tick, acted_by, acted_at, catch_up, coins_tracked, coins_behind, jobs_queued, coins_busy, coins_unaffordable \
         FROM sync_ticks ORDER BY tick",
    )
    .fetch_all(pool)
    .await
}
