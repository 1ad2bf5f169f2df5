//! A database written by the previous release (one coin, one job at a time) upgrades in
//! place at start: no row lost, every old job still readable, the new rules in force.

use chrono::Days;
use price_history::domain::JobStatus;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, TestApi, TestDb, count_rows, days_before_today};

/// The last migration of the release before the coin registry.
const PREVIOUS_RELEASE: i64 = 20261128000003;

/// A database as a release left it: the queue's schema and our migrations up to `last`.
pub async fn release_up_to(last: i64) -> TestDb {
    let db = TestDb::empty().await;
    apalis_postgres::PostgresStorage::setup(&db.pool)
        .await
        .expect("the queue's schema");
    sqlx::migrate!("./migrations")
        .run_to(last, &db.pool)
        .await
        .expect("the release's migrations");
    db
}

/// What a process of this release does first on a database a release left: migrate it.
pub async fn upgrade(db: &TestDb) -> sqlx::PgPool {
    price_history::startup::connect_and_migrate(&db.url.parse().expect("a valid URL"), 5)
        .await
        .expect("the upgrade applies")
}

/// The whole table as text, in key order, to compare before and after.
pub async fn snapshot(pool: &sqlx::PgPool, query: &str) -> Vec<String> {
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
    let db = release_up_to(PREVIOUS_RELEASE).await;
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
    let pool = upgrade(&db).await;

    // Assert: every row as it was, every job readable, the new rules in force.
    assert_eq!(snapshot(&pool, PRICES).await, prices_before);
    assert_eq!(snapshot(&pool, JOBS).await, jobs_before);
    assert_eq!(prices_before.len(), 121);
    let queue_after = count_rows(&pool, "apalis.jobs").await;
    assert_eq!(queue_after, queue_before);
    // The jobs it had ended are counted once by the count that only grows.
    let ended: Vec<(String, i64)> = price_history::store::stats::jobs_ended(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(status, n)| (status.to_string(), n))
        .collect();
    let expected = [("completed", 1), ("completed_with_gaps", 1), ("failed", 1)];
    assert_eq!(ended, expected.map(|(status, n)| (status.to_owned(), n)));

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

/// The last migration of the release whose queue entries ended at `JOB_MAX_ATTEMPTS` of
/// the queue's own count (hand-offs included).
const BEFORE_FAILURES_COUNTED: i64 = 20261220000000;

/// A job the previous release left stuck: its attempt failed transiently at shutdown, the
/// record said "will be retried", and apalis's entry, failed with `attempts` at its
/// `max_attempts` of 3 (two hand-offs before it), was never fetched again. The upgrade
/// gives the entries of active jobs the new limit, and a worker finishes the job.
#[tokio::test]
async fn a_job_the_previous_release_left_waiting_on_a_spent_queue_entry_runs_after_the_upgrade() {
    let db = release_up_to(BEFORE_FAILURES_COUNTED).await;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, error_message, attempts) \
         VALUES ($1, 'pending', 'BTC', $2, $3, 'attempt 1 of 3 failed and will be retried: HTTP 503', 3)",
    )
    .bind(id)
    .bind(days_before_today(5))
    .bind(days_before_today(1))
    .execute(&db.pool)
    .await
    .expect("the old job");
    sqlx::query(
        "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at) \
         VALUES (convert_to('{\"job_id\":\"' || $2 || '\"}', 'UTF8'), $1, $3, 'Failed', 3, 3, now() - interval '1 minute')",
    )
    .bind(price_history::queue::task_id(id).to_string())
    .bind(id)
    .bind(price_history::queue::QUEUE)
    .execute(&db.pool)
    .await
    .expect("its spent queue entry");

    let pool = upgrade(&db).await;

    let limit: i32 = sqlx::query_scalar("SELECT max_attempts FROM apalis.jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(limit, i32::MAX);
    let mut h = Harness::new().await;
    h.settings.database_url = db.url.parse().expect("a valid URL");
    let h = Harness { db, ..h };
    let worker = h.start_worker();
    let finished = h.until_finished(id).await;
    worker.stop().await;
    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "{:?}",
        finished.error_message
    );
    assert_eq!((finished.failures, finished.handbacks), (0, 0));
}

/// The last migration of the release before hourly candles (issue 26).
const BEFORE_HOURS: i64 = 20261202000030;

/// Every table of schema `public` (the migrations' own bookkeeping aside) with its
/// columns, in order.
async fn tables_and_columns(pool: &sqlx::PgPool) -> Vec<(String, Vec<String>)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .expect("the catalog reads");
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .expect("the catalog reads");
        out.push((table, columns));
    }
    out
}

/// Every row of each of `tables`, as text of the columns listed, in order.
async fn every_row(
    pool: &sqlx::PgPool,
    tables: &[(String, Vec<String>)],
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (table, columns) in tables {
        let row: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let query = format!(
            "SELECT ROW({})::text FROM \"{table}\" ORDER BY 1",
            row.join(", ")
        );
        out.push((table.clone(), snapshot(pool, &query).await));
    }
    out
}

/// Writes a release's `rows` into `db`, then reads every table with its columns, every
/// row of each (asserting that every table holds rows, so that the comparison after the
/// upgrade leaves no table untested) and how many jobs the queue holds.
async fn full_release(
    db: &TestDb,
    rows: &[&'static str],
) -> (Vec<(String, Vec<String>)>, Vec<(String, Vec<String>)>, i64) {
    for &rows in rows {
        sqlx::raw_sql(rows)
            .execute(&db.pool)
            .await
            .expect("the release's rows");
    }
    let pool = &db.pool;
    let tables = tables_and_columns(pool).await;
    let before = every_row(pool, &tables).await;
    let empty: Vec<&str> = before
        .iter()
        .filter(|(_, rows)| rows.is_empty())
        .map(|(table, _)| table.as_str())
        .collect();
    assert!(
        empty.is_empty(),
        "every table of the release holds rows: {empty:?}"
    );
    let queue = count_rows(pool, "apalis.jobs").await;
    (tables, before, queue)
}

/// What the release before hours writes: coins with and without a product and its check,
/// days of both sources (and the figures their triggers keep), jobs of every status, an
/// import, a schedule tick, a learned plan reach and the call budgets.
const BEFORE_HOURS_ROWS: &str = r#"
INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since, coinbase_product,
                   fallback_deviation_percent, fallback_checked_at, fallback_usable, coinbase_candles_from)
VALUES ('ETH', 'ethereum', '2015-08-07', true, '2024-01-01', 'ETH-USD', 0.4, now(), true, '2016-05-18'),
       ('SOLX', 'solx', NULL, false, NULL, 'SOLX-USD', 9900, now(), false, NULL),
       ('NEW', 'new-coin', '2026-01-01', false, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE coins SET fallback_unusable_reason = 'another asset' WHERE symbol = 'SOLX';
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, points, source)
SELECT s, d::date, 100 + i, 110 + i, 90 + i, 105 + i, 1000 * i, d + interval '23 hours',
       d::date = current_date, CASE WHEN d::date < current_date - 365 THEN 1 ELSE 24 END,
       CASE WHEN d::date < current_date - 365 THEN 'coinbase' ELSE 'coingecko' END
FROM unnest(ARRAY['BTC', 'ETH']) s,
     generate_series(current_date - 500, current_date, interval '1 day') WITH ORDINALITY AS g(d, i);
INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, records_fetched, gaps_detected, gap_dates,
                            error_message, attempts, chunks_done, chunks_total, completed_at, trigger,
                            out_of_plan_days, fallback_days)
VALUES (gen_random_uuid(), 'completed', 'BTC', current_date - 500, current_date - 1, 500, 0, '{}', NULL, 1, 7, 7, now(), 'api', 0, 135),
       (gen_random_uuid(), 'completed_with_gaps', 'ETH', current_date - 30, current_date - 1, 28, 2,
        ARRAY[current_date - 3, current_date - 2], '2 day(s) still missing', 2, 1, 1, now(), 'schedule', 0, 0),
       (gen_random_uuid(), 'failed', 'SOLX', current_date - 30, current_date - 1, 0, 0, '{}', 'CoinGecko said no', 3, 0, 1, now(), 'cli', 0, 0),
       (gen_random_uuid(), 'cancelled', 'NEW', current_date - 3, current_date - 1, 0, 0, '{}', NULL, 1, 0, 1, now(), 'api', 0, 0),
       (gen_random_uuid(), 'running', 'ETH', current_date - 3, current_date - 1, 0, 0, '{}', NULL, 1, 0, 1, NULL, 'api', 0, 0),
       (gen_random_uuid(), 'pending', 'BTC', current_date - 3, current_date - 1, 0, 0, '{}', NULL, 0, 0, 0, NULL, 'schedule', 0, 0);
INSERT INTO coin_imports (id, status, n, trigger, registered, skipped, completed_at)
VALUES (gen_random_uuid(), 'completed', 3, 'cli', ARRAY['ETH'], '[{"symbol": "X", "reason": "taken"}]', now());
INSERT INTO sync_ticks (tick, acted_by, catch_up, coins_tracked, coins_behind, jobs_queued, coins_busy)
VALUES (date_trunc('day', now()) + interval '40 minutes', 'worker-1', false, 1, 1, 1, 0);
UPDATE sync_schedule SET last_tick = date_trunc('day', now()) + interval '40 minutes';
INSERT INTO coingecko_plan_reach (base_url, key_fingerprint, history_days) VALUES ('https://api.coingecko.com/api/v3', 'none', 365);
INSERT INTO coingecko_call_budget (source, key_fingerprint, tat, granted, calls_per_minute)
VALUES ('coingecko', 'none', now(), 12, 25), ('coinbase', 'none', now(), 4, 120);
"#;

#[tokio::test]
async fn a_populated_database_of_the_release_before_hours_upgrades_with_every_row_and_job_kept() {
    // Arrange: the release before hours, with something in every table.
    let db = release_up_to(BEFORE_HOURS).await;
    let (tables, before, queue_before) = full_release(&db, &[BEFORE_HOURS_ROWS]).await;

    // Act: a process of this release starts on it.
    let pool = upgrade(&db).await;

    // Assert: every row of every table as it was, and nothing hourly about any of it.
    assert_eq!(every_row(&pool, &tables).await, before);
    assert_eq!(count_rows(&pool, "ingestion_jobs").await, 6);
    assert_eq!(count_rows(&pool, "apalis.jobs").await, queue_before);
    assert_eq!(
        count_rows(
            &pool,
            "coins WHERE hourly OR coinbase_hours_from IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count_rows(
            &pool,
            "ingestion_jobs WHERE hours_fetched IS NOT NULL OR hours_missing IS NOT NULL \
                           OR hours_without_trades IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count_rows(&pool, "coin_imports WHERE hourly").await,
        0,
        "an earlier import left hours alone"
    );
    for table in ["hourly_prices", "hours_without_trades", "hourly_figures"] {
        assert_eq!(count_rows(&pool, table).await, 0, "{table}");
    }
    // The new tables work on the upgraded database, and the old rules still hold.
    sqlx::query(
        "INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source) \
         VALUES ('ETH', date_trunc('hour', now()) - interval '1 hour', 1, 2, 1, 2, 3, 'coinbase')",
    )
    .execute(&pool)
    .await
    .expect("an hour is stored");
    let eth = price_history::domain::Symbol::parse("ETH").unwrap();
    let figures = price_history::store::hourly_figures::of(&pool, eth)
        .await
        .unwrap();
    assert_eq!(figures.complete_hours, 1);
    let second_active = sqlx::query(
        "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date) \
         VALUES (gen_random_uuid(), 'pending', 'BTC', current_date, current_date)",
    )
    .execute(&pool)
    .await;
    assert!(
        second_active.is_err(),
        "BTC's pending job still holds its one active slot"
    );
}

/// The last migration of the release with hourly candles stored and opted into (the
/// release before the hourly job, monthly credits and retention).
const HOURS_RELEASE: i64 = 20261207100000;

/// What that release writes besides [`BEFORE_HOURS_ROWS`]: an hourly coin with its
/// product's first hour, hours of both sources (checked, disputed, provisional), hours
/// without trades, a job of an hourly coin with its hour counts, and an hourly import.
const HOURS_RELEASE_ROWS: &str = r#"
UPDATE coins SET hourly = true, coinbase_hours_from = date_trunc('day', now()) - interval '30 days'
WHERE symbol = 'ETH';
UPDATE coins SET hourly = true WHERE symbol = 'NEW';
INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source, points, provisional,
                           check_price, check_at, check_deviation_percent, disputed)
SELECT 'ETH', h, 100 + i, 102 + i, 99 + i, 101 + i, 10 * i, 'coinbase', NULL, h = date_trunc('hour', now()),
       CASE WHEN i % 3 = 0 THEN 100 + i END, CASE WHEN i % 3 = 0 THEN h + interval '5 minutes' END,
       CASE WHEN i % 3 = 0 THEN CASE WHEN i % 9 = 0 THEN 25 ELSE 0 END END, i % 9 = 0
FROM generate_series(date_trunc('hour', now()) - interval '47 hours', date_trunc('hour', now()), interval '1 hour')
     WITH ORDINALITY AS g(h, i);
INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source, points)
SELECT 'NEW', h, 5, 6, 4, 5, 1, 'coingecko', 1 + i % 3
FROM generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()) - interval '1 hour',
                     interval '1 hour') WITH ORDINALITY AS g(h, i);
INSERT INTO hours_without_trades (symbol, hour)
SELECT 'ETH', h FROM generate_series(date_trunc('hour', now()) - interval '60 hours',
                                     date_trunc('hour', now()) - interval '50 hours', interval '1 hour') h;
INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, records_fetched, gaps_detected, gap_dates,
                            attempts, chunks_done, chunks_total, completed_at, trigger, out_of_plan_days,
                            fallback_days, hours_fetched, hours_missing, hours_without_trades)
VALUES (gen_random_uuid(), 'completed_with_gaps', 'NEW', current_date - 2, current_date - 1, 2, 0, '{}',
        1, 1, 1, now(), 'api', 0, 0, 47, 1, 11);
INSERT INTO coin_imports (id, status, n, trigger, registered, skipped, completed_at, hourly)
VALUES (gen_random_uuid(), 'completed', 2, 'api', ARRAY['NEW'], '[]', now(), true);
"#;

#[tokio::test]
async fn a_populated_database_of_the_release_with_stored_hours_upgrades_with_every_row_and_job_kept()
 {
    // Arrange: that release, with something in every table, hours included.
    let db = release_up_to(HOURS_RELEASE).await;
    let (tables, before, queue_before) =
        full_release(&db, &[BEFORE_HOURS_ROWS, HOURS_RELEASE_ROWS]).await;
    let eth = price_history::domain::Symbol::parse("ETH").unwrap();
    let figures_before = price_history::store::hourly_figures::of(&db.pool, eth)
        .await
        .unwrap();

    // Act: a process of this release starts on it.
    let pool = upgrade(&db).await;

    // Assert: every row of every table of that release as it was (columns added since
    // are not compared), every job, and the figures the triggers keep.
    assert_eq!(every_row(&pool, &tables).await, before);
    assert_eq!(count_rows(&pool, "ingestion_jobs").await, 7);
    assert_eq!(count_rows(&pool, "apalis.jobs").await, queue_before);
    assert_eq!(count_rows(&pool, "hourly_prices").await, 48 + 23);
    let figures_after = price_history::store::hourly_figures::of(&pool, eth)
        .await
        .unwrap();
    assert_eq!(figures_after, figures_before);
    assert_eq!(figures_after.disputed_hours, 5, "{figures_after:?}");
}
