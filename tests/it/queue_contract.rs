//! The queue's contract with apalis (`src/queue/contract.rs`), checked against a freshly
//! migrated database: the tables and columns our SQL reads, the status strings it
//! compares, and the channel idle workers listen on, with our trigger on it. apalis is
//! pinned to `=1.0.0`; before the pins move, these tests say what a new release changed.

use std::time::Duration;

use apalis_core::task::status::Status;
use apalis_core::worker::context::WorkerContext;
use apalis_postgres::{Config, InsertEvent, queries};
use price_history::domain::{Coin, DateRange, Symbol, today_utc};
use price_history::queue::{self, QUEUE, Turn, contract};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::support::{TestDb, api_job, days_before_today};

/// What apalis should have done; names the contract in the failure.
const UPDATE_HINT: &str = "apalis changed its contract with this service: see src/queue/contract.rs \
                           before moving the `=1.0.0` pins in Cargo.toml";

async fn status_of(pool: &PgPool, task_id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM apalis.jobs WHERE id = $1")
        .bind(task_id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("the job's status can be read ({e}); {UPDATE_HINT}"))
}

/// The next notification on the channel, as apalis-postgres's own `InsertEvent`.
async fn announced(listener: &mut PgListener, after: &str) -> InsertEvent {
    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "nothing was announced on {:?} after {after}: the channel or the trigger changed; {UPDATE_HINT}",
                contract::NEW_JOBS_CHANNEL
            )
        })
        .expect("the listener's connection holds");
    serde_json::from_str(notification.payload()).unwrap_or_else(|e| {
        panic!(
            "the payload {:?} is not an InsertEvent ({e}); {UPDATE_HINT}",
            notification.payload()
        )
    })
}

/// The columns `queue::lease` and our trigger read, and the function the trigger calls.
#[tokio::test]
async fn apalis_tables_have_every_column_the_service_reads() {
    let db = TestDb::new().await;

    let notify_function: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'apalis' AND p.proname = 'notify_new_jobs')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        notify_function,
        "apalis.notify_new_jobs(), which migration 20261128000003's trigger calls, is gone; {UPDATE_HINT}"
    );
    for (table, columns) in contract::READS {
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'apalis' AND table_name = $1",
        )
        .bind(table)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let missing: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|column| !present.iter().any(|p| p == column))
            .collect();

        assert!(
            !present.is_empty(),
            "apalis-postgres's migrations no longer create apalis.{table}; {UPDATE_HINT}"
        );
        assert!(
            missing.is_empty(),
            "apalis.{table} has no column {missing:?} any more (it has {present:?}); {UPDATE_HINT}"
        );
    }
}

/// A worker named `name`, registered through apalis-postgres's own query, with the
/// connection its queries go through.
async fn registered_worker(
    pool: &PgPool,
    name: &str,
) -> (sqlx::pool::PoolConnection<sqlx::Postgres>, WorkerContext) {
    let worker = WorkerContext::new(name);
    let mut conn = pool.acquire().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    queries::register_worker(&mut *conn, QUEUE, &worker, &From::from(now), "PgStorage")
        .await
        .unwrap();
    (conn, worker)
}

/// A job through apalis-postgres's own queries: pushed (announced on the channel), fetched
/// and started (the statuses our lease check takes for "held"), then handed back (our
/// trigger announces it again, on apalis's `Pending`).
#[tokio::test]
async fn apalis_writes_the_statuses_the_service_compares_and_announces_on_its_channel() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut listener = PgListener::connect_with(pool).await.unwrap();
    listener.listen(contract::NEW_JOBS_CHANNEL).await.unwrap();
    let day = days_before_today(2);
    let range = DateRange::for_coin(&Coin::bitcoin(), day, day, today_utc()).unwrap();
    let job = queue::submit(pool, api_job(Symbol::BTC, range, false), Turn::InOrder)
        .await
        .unwrap();
    let task = queue::task_id(job.id).to_string();
    let (mut conn, worker) = registered_worker(pool, "contract-test-worker").await;

    let pushed = announced(&mut listener, "a push").await;
    let pending = status_of(pool, &task).await;
    let config = Config::default().queue(QUEUE).batch_size(1);
    let fetched = queries::fetch_next(&mut *conn, &config, &worker)
        .await
        .unwrap();
    let queued = status_of(pool, &task).await;
    queries::lock_tasks(&mut *conn, std::slice::from_ref(&task), worker.name())
        .await
        .unwrap();
    let running = status_of(pool, &task).await;
    let handed_back = queries::reenqueue_abandoned(
        &mut *conn,
        QUEUE,
        worker.name(),
        std::slice::from_ref(&task),
    )
    .await
    .unwrap();
    let requeued = announced(&mut listener, "a hand-back (our trigger)").await;
    let pending_again = status_of(pool, &task).await;

    assert_eq!(pushed.job_type, QUEUE, "{UPDATE_HINT}");
    assert_eq!(pushed.id.to_string(), task, "{UPDATE_HINT}");
    assert_eq!(
        pending,
        Status::Pending.to_string(),
        "a pushed job; {UPDATE_HINT}"
    );
    assert_eq!(fetched.len(), 1, "the job is fetched; {UPDATE_HINT}");
    let holding = contract::holding_statuses();
    assert!(
        queued == Status::Queued.to_string() && holding.contains(&queued),
        "a fetched job reads {queued:?}, not one of {holding:?}; {UPDATE_HINT}"
    );
    assert!(
        running == Status::Running.to_string() && holding.contains(&running),
        "a started job reads {running:?}, not one of {holding:?}; {UPDATE_HINT}"
    );
    assert_eq!(handed_back, 1, "{UPDATE_HINT}");
    assert_eq!(
        pending_again,
        Status::Pending.to_string(),
        "a handed-back job; migration 20261128000003's trigger fires on 'Pending'; {UPDATE_HINT}"
    );
    assert_eq!(
        (requeued.job_type.as_str(), requeued.id.to_string()),
        (QUEUE, task),
        "{UPDATE_HINT}"
    );
}

/// apalis-postgres's fetch takes the entry due first (`run_at`), which puts a job someone
/// waits on (`queue::Turn::Waited`: `POST /api/v1/ingestion-jobs`, `backfill`) ahead of
/// the jobs the schedule and tracking queued before it.
#[tokio::test]
async fn a_job_someone_waits_on_is_fetched_before_those_queued_before_it() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    crate::support::sql(
        pool,
        "INSERT INTO coins (symbol, coingecko_id) VALUES ('ETH', 'ethereum')",
    )
    .await;
    let day = days_before_today(2);
    let range = DateRange::for_coin(&Coin::bitcoin(), day, day, today_utc()).unwrap();
    let eth = Symbol::parse("ETH").unwrap();
    let in_order = queue::submit(pool, api_job(eth, range, false), Turn::InOrder)
        .await
        .unwrap();
    let waited = queue::submit(pool, api_job(Symbol::BTC, range, false), Turn::Waited)
        .await
        .unwrap();
    let (mut conn, worker) = registered_worker(pool, "order-test-worker").await;

    let config = Config::default().queue(QUEUE).batch_size(1);
    let fetched = queries::fetch_next(&mut *conn, &config, &worker)
        .await
        .unwrap();

    assert_eq!(fetched.len(), 1, "{UPDATE_HINT}");
    let status = async |id| status_of(pool, &queue::task_id(id).to_string()).await;
    assert_eq!(
        (status(waited.id).await, status(in_order.id).await),
        (Status::Queued.to_string(), Status::Pending.to_string()),
        "the job waited on first; {UPDATE_HINT}"
    );
}
