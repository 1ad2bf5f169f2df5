//! A database written by the previous release (one coin, one job at a time) upgrades in
//! place at start: no row lost, every old job still readable, the new rules in force.

use chrono::Days;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, TestApi, TestDb, count_rows, days_before_today};

/// The last migration of the release before the coin registry.
const PREVIOUS_RELEASE: i64 = 20261128000003;

/// The whole table as text, in key order, to compare before and after.
async fn snapshot(pool: &sqlx::PgPool, query: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_all(pool)
        .await
        .expect("the table reads")
}

const PRICES: &str = "SELECT (symbol, date, open, high, low, close, volume, \"timestamp\", provisional, created_at)::text \
                      FROM daily_prices ORDER BY symbol, date";
const JOBS: &str = "SELECT (id, status, symbol, start_date, end_date, force, records_fetched, gaps_detected, gap_dates, \
                    error_message, attempts, chunks_done, chunks_total, created_at)::text FROM ingestion_jobs ORDER BY id";

#[tokio::test]
async fn a_populated_database_of_the_previous_release_upgrades_with_no_row_lost() {
    // Arrange: the previous release's schema, with what it would have written.
    let db = TestDb::at_release(PREVIOUS_RELEASE).await;
    let first = days_before_today(120);
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional)
           SELECT 'BTC', d::date, 100 + i, 110 + i, 90 + i, 105 + i, 1000 * i, d + interval '23 hours', d::date = $2
           FROM generate_series($1::date, $2::date, interval '1 day') WITH ORDINALITY AS g(d, i)"#,
    )
    .bind(first)
    .bind(days_before_today(0))
    .execute(&db.pool)
    .await
    .expect("old rows");
    let (completed, gaps, failed, pending) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    sqlx::query(
        "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, records_fetched, gaps_detected, gap_dates, \
             error_message, attempts, chunks_done, chunks_total, completed_at) VALUES \
         ($1, 'completed', 'BTC', $5, $6, 121, 0, '{}', NULL, 1, 2, 2, now()), \
         ($2, 'completed_with_gaps', 'BTC', $5, $6, 119, 2, ARRAY[$6::date - 3, $6::date - 2], '2 day(s) still have no final price', 1, 2, 3, now()), \
         ($3, 'failed', 'BTC', $5, $6, 0, 0, '{}', 'CoinGecko answered HTTP 401 (error code 10012)', 1, 0, 2, now()), \
         ($4, 'pending', 'BTC', $5, $6, 0, 0, '{}', NULL, 0, 0, 0, NULL)",
    )
    .bind(completed)
    .bind(gaps)
    .bind(failed)
    .bind(pending)
    .bind(first)
    .bind(days_before_today(1))
    .execute(&db.pool)
    .await
    .expect("old jobs");
    let prices_before = snapshot(&db.pool, PRICES).await;
    let jobs_before = snapshot(&db.pool, JOBS).await;
    let queue_before = count_rows(&db.pool, "apalis.jobs").await;

    // Act: a process of this release starts on it.
    let pool =
        price_history::startup::connect_and_migrate(&db.url.parse().expect("a valid URL"), 5)
            .await
            .expect("the upgrade applies");

    // Assert: every row as it was, every job readable, the new rules in force.
    assert_eq!(snapshot(&pool, PRICES).await, prices_before);
    assert_eq!(snapshot(&pool, JOBS).await, jobs_before);
    assert_eq!(prices_before.len(), 121);
    let queue_after = count_rows(&pool, "apalis.jobs").await;
    assert_eq!(queue_after, queue_before);

    let mut h = Harness::new().await;
    h.settings.database_url = db.url.parse().expect("a valid URL");
    let h = Harness { db, ..h };
    let api = TestApi::start(&h).await;
    for (id, status) in [
        (completed, "completed"),
        (gaps, "completed_with_gaps"),
        (failed, "failed"),
        (pending, "pending"),
    ] {
        let answer = api.get(&format!("/api/v1/ingestion-jobs/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let job = answer.json();
        assert_eq!(job["status"], status);
        assert_eq!(job["symbol"], "BTC");
        assert_eq!(job["trigger"], "api");
        assert_eq!(job["out_of_plan_days"], 0);
    }
    let gap_job = api
        .get(&format!("/api/v1/ingestion-jobs/{gaps}"))
        .await
        .json();
    assert_eq!(gap_job["gap_dates"].as_array().unwrap().len(), 2);
    let btc = api.get("/api/v1/coins/BTC").await.json();
    assert_eq!(btc["coingecko_id"], "bitcoin");
    assert_eq!(btc["last_complete_day"], days_before_today(1).to_string());
    let coverage = api
        .get(&format!(
            "/api/v1/coverage?start_date={first}&end_date={}",
            days_before_today(1)
        ))
        .await
        .json();
    assert_eq!(coverage["total_stored_days"], 120);

    // The old pending job still holds BTC's one active slot; another coin has its own.
    let again = api
        .submit(json!({"start_date": days_before_today(3).to_string(), "end_date": days_before_today(1).to_string()}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["active_job_id"], pending.to_string());
    h.register("ETH", "ethereum").await;
    let eth = api
        .submit(json!({
            "start_date": days_before_today(3).to_string(),
            "end_date": days_before_today(1).checked_sub_days(Days::new(0)).unwrap().to_string(),
            "symbol": "ETH"
        }))
        .await;
    assert_eq!(eth.status, StatusCode::ACCEPTED, "{}", eth.text());
}
