//! `upstream_requests`: every process's HTTP requests to each source, by how they ended,
//! so that `/metrics` of any process counts the calls of all (a `worker` serves none).

use sqlx::PgPool;

use crate::domain::PriceSource;

/// Counts one request to `source` that ended as `outcome`.
pub async fn count(pool: &PgPool, source: PriceSource, outcome: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO upstream_requests AS r (source, outcome, count) VALUES ($1, $2, 1) \
         ON CONFLICT (source, outcome) DO UPDATE SET count = r.count + 1",
    )
    .bind(source.as_str())
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// The requests to `source` by outcome, over every process: a row per outcome seen.
pub async fn by_outcome(pool: &PgPool, source: PriceSource) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT outcome::text, count FROM upstream_requests WHERE source = $1")
        .bind(source.as_str())
        .fetch_all(pool)
        .await
}
