//! `coingecko_plan_reach`: how far back a CoinGecko plan serves, as learned from its
//! 10012 answer, per API root and key fingerprint.

use sqlx::PgPool;

use crate::domain::PlanReach;

/// The reach learned for this root and key, if any.
pub async fn learned(
    pool: &PgPool,
    base_url: &str,
    key_fingerprint: &str,
) -> sqlx::Result<Option<PlanReach>> {
    let days: Option<i32> = sqlx::query_scalar(
        "SELECT history_days FROM coingecko_plan_reach WHERE base_url = $1 AND key_fingerprint = $2",
    )
    .bind(base_url)
    .bind(key_fingerprint)
    .fetch_optional(pool)
    .await?;
    Ok(days.map(|days| PlanReach::days(u32::try_from(days).unwrap_or(1))))
}

/// Remembers what CoinGecko said; the shorter reach wins if two jobs learn at once.
pub async fn learn(
    pool: &PgPool,
    base_url: &str,
    key_fingerprint: &str,
    history_days: u32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO coingecko_plan_reach (base_url, key_fingerprint, history_days) VALUES ($1, $2, $3) \
         ON CONFLICT (base_url, key_fingerprint) DO UPDATE \
         SET history_days = LEAST(coingecko_plan_reach.history_days, EXCLUDED.history_days), learned_at = now()",
    )
    .bind(base_url)
    .bind(key_fingerprint)
    .bind(i32::try_from(history_days).unwrap_or(i32::MAX))
    .execute(pool)
    .await?;
    Ok(())
}
