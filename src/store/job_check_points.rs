//! `job_check_points`: CoinGecko's hourly points a job has read, kept until it ends, so
//! that a resumed attempt checks the exchange candles it fetches against the points an
//! earlier attempt read (see the migration).

use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{CheckPoint, Hour, HourRange};

/// Keeps `points` for `job_id`, in the caller's transaction (the CoinGecko window's
/// checkpoint); a point kept already is replaced.
pub async fn keep(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    points: &[(Hour, CheckPoint)],
) -> sqlx::Result<()> {
    let points: Vec<&(Hour, CheckPoint)> = points
        .iter()
        .filter(|(hour, point)| {
            hour.contains(point.at) && point.price > rust_decimal::Decimal::ZERO
        })
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO job_check_points (job_id, hour, at, price) \
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::numeric[]) \
         ON CONFLICT (job_id, hour) DO UPDATE SET at = EXCLUDED.at, price = EXCLUDED.price",
    )
    .bind(job_id)
    .bind(points.iter().map(|(hour, _)| *hour).collect::<Vec<_>>())
    .bind(points.iter().map(|(_, point)| point.at).collect::<Vec<_>>())
    .bind(
        points
            .iter()
            .map(|(_, point)| point.price)
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The points kept for `job_id` in `range`, by hour.
pub async fn of(
    executor: impl PgExecutor<'_>,
    job_id: Uuid,
    range: HourRange,
) -> sqlx::Result<Vec<(Hour, CheckPoint)>> {
    let rows: Vec<(Hour, chrono::DateTime<chrono::Utc>, rust_decimal::Decimal)> = sqlx::query_as(
        "SELECT hour, at, price FROM job_check_points \
         WHERE job_id = $1 AND hour BETWEEN $2 AND $3 ORDER BY hour",
    )
    .bind(job_id)
    .bind(range.first())
    .bind(range.last())
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(hour, at, price)| (hour, CheckPoint { at, price }))
        .collect())
}

/// Forgets the points of `job_id`: its job has ended.
pub async fn forget(executor: impl PgExecutor<'_>, job_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM job_check_points WHERE job_id = $1")
        .bind(job_id)
        .execute(executor)
        .await?;
    Ok(())
}
