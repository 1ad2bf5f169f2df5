//! Shared arrangements: a fresh database per test, the fake CoinGecko, a worker.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::NaiveDate;
use price_history::config::{LogFormat, Settings};
use price_history::domain::{DateRange, Symbol, today_utc};
use price_history::fake_coingecko::FakeCoinGecko;
use price_history::ingest::Ingestor;
use price_history::queue::{self, WorkerOptions};
use price_history::store::{
    self, ingestion_jobs, ingestion_jobs::JobFollower, ingestion_jobs::JobRecord,
    ingestion_jobs::NewJob,
};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Where the test databases are created: `TEST_DATABASE_URL`, or the local server.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, migrated, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
    name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("ph_test_{}", Uuid::now_v7().simple());
        let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        let url = url.to_string();
        // The service creates the database itself, as it does on a fresh machine.
        let pool = store::connect_and_migrate(&url, 10)
            .await
            .expect("the test database can be created and migrated");
        TestDb { url, pool, name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn days_before_today(n: u64) -> NaiveDate {
    today_utc()
        .checked_sub_days(chrono::Days::new(n))
        .expect("a date")
}

/// A test's world: its database, its fake CoinGecko and the settings pointing at both.
pub struct Harness {
    pub db: TestDb,
    pub fake: FakeCoinGecko,
    pub settings: Settings,
}

impl Harness {
    /// Fast settings: a generous call budget and millisecond back-offs, so tests measure
    /// behaviour, not waiting.
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let fake = FakeCoinGecko::start().await;
        let settings = Settings {
            database_url: db.url.clone(),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            coingecko_base_url: fake.base_url(),
            coingecko_api_key: None,
            coingecko_calls_per_minute: NonZeroU32::new(6000).expect("non-zero"),
            coingecko_chunk_days: 90,
            coingecko_max_retries: 3,
            coingecko_retry_base_delay_ms: 10,
            coingecko_timeout_secs: 5,
            job_max_attempts: 3,
            job_lease_secs: 30,
            api_token: None,
            log_format: LogFormat::Text,
        };
        Harness { db, fake, settings }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub fn ingestor(&self) -> Ingestor {
        Ingestor {
            pool: self.db.pool.clone(),
            client: price_history::coingecko::CoinGeckoClient::new(self.settings.coingecko())
                .expect("a client"),
            chunk_days: self.settings.coingecko_chunk_days,
        }
    }

    /// Submits a BTC job through the queue, as the API and the CLI do.
    pub async fn submit(&self, start: NaiveDate, end: NaiveDate, force: bool) -> JobRecord {
        let range =
            DateRange::for_symbol(Symbol::Btc, start, end, today_utc()).expect("a valid range");
        let job = NewJob {
            id: Uuid::now_v7(),
            symbol: Symbol::Btc,
            range,
            force,
        };
        queue::submit(self.pool(), job, self.settings.job_max_attempts)
            .await
            .expect("the job is queued")
    }

    /// Starts a worker in this process.
    pub fn start_worker(&self) -> RunningWorker {
        let (stop, stopped) = oneshot::channel::<()>();
        let options = WorkerOptions {
            name: queue::worker_name(),
            lease: self.settings.job_lease(),
            max_attempts: self.settings.job_max_attempts,
            retry_base_delay: Duration::from_millis(self.settings.coingecko_retry_base_delay_ms),
        };
        let handle = tokio::spawn(queue::run_worker(
            self.pool().clone(),
            self.ingestor(),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        RunningWorker {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Waits (on the job's change notifications) until the job has ended.
    pub async fn until_finished(&self, id: Uuid) -> JobRecord {
        let mut follower = JobFollower::new(self.pool(), id).await.expect("can listen");
        tokio::time::timeout(Duration::from_secs(60), follower.until_finished())
            .await
            .expect("the job ends within a minute")
            .expect("the database answers")
            .expect("the job exists")
    }

    /// Submits a job, runs a worker until the job ends, stops the worker.
    pub async fn run_job(&self, start: NaiveDate, end: NaiveDate, force: bool) -> JobRecord {
        let job = self.submit(start, end, force).await;
        let worker = self.start_worker();
        let finished = self.until_finished(job.id).await;
        worker.stop().await;
        finished
    }

    pub async fn stored_days(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM daily_prices")
            .fetch_one(self.pool())
            .await
            .expect("count")
    }

    pub async fn job(&self, id: Uuid) -> JobRecord {
        ingestion_jobs::get(self.pool(), id)
            .await
            .expect("the database answers")
            .expect("the job exists")
    }
}

pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningWorker {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the worker stops within 30 s")
                .expect("the worker does not panic")
                .expect("the worker stops cleanly");
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
