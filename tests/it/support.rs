//! Shared arrangements, built on the service's own `startup`: a fresh database per test,
//! the fake CoinGecko and the fake Coinbase Exchange, a worker, the API on a random port, the binary as a child process.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use fake_upstream::coinbase::{FakeCoinbase, FakeCoinbaseOptions};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions, RecordedCall};
use price_history::api::{self, ApiState, ConnectionLimits};
use price_history::config::{LogFormat, Settings};
use price_history::domain::{DateRange, JobStatus, Symbol, today_utc};
use price_history::ingest::Ingestor;
use price_history::queue;
use price_history::shutdown::{Shutdown, ShutdownTrigger};
use price_history::startup::Application;
use price_history::store::{
    self, ingestion_jobs, ingestion_jobs::JobFollower, ingestion_jobs::JobRecord,
    ingestion_jobs::NewJob,
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The text `field` of each item of a JSON array, in order.
pub fn field_of_each<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item[field].as_str().expect("a text field"))
        .collect()
}

/// Each of `symbol`'s stored days is the fake's day of `coin_id`: opened at its first
/// point, closed at its last, and not provisional.
pub fn assert_days_are_the_fakes(
    fake: &FakeCoinGecko,
    coin_id: &str,
    symbol: Symbol,
    rows: &[price_history::domain::DailyCandle],
) {
    for row in rows {
        let points = fake.points_for_coin_day(coin_id, row.date, true);
        let (first, last) = (points.first().unwrap().1, points.last().unwrap().1);
        assert_eq!(
            (row.open, row.close),
            (first, last),
            "{symbol} open and close of {}",
            row.date
        );
        assert!(!row.provisional, "{symbol} {}", row.date);
    }
}

/// Asserts that `text` says each of `phrases`, showing the whole text when it does not.
#[track_caller]
pub fn assert_mentions(text: &str, phrases: &[&str]) {
    for phrase in phrases {
        assert!(text.contains(phrase), "{phrase:?} is not in: {text}");
    }
}

/// `job` completed; else its error message says why not.
pub fn assert_completed(job: &JobRecord) {
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
}

/// A writer beside a reader: runs `statement` again and again, each time a transaction
/// of its own, until [`Churn::stop_where_each_read_saw_one_of`]. A read that must come from
/// one snapshot is made while it runs.
pub struct Churn {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Churn {
    /// Starts once `statement` has run once, so that the writer is at work before any read.
    pub async fn start(pool: &PgPool, statement: &'static str) -> Self {
        sql(pool, statement).await;
        let (stop, runs) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(1)),
        );
        let task = tokio::spawn({
            let (pool, stop, runs) = (pool.clone(), stop.clone(), runs.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    sql(&pool, statement).await;
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Churn { stop, runs, task }
    }

    /// Stops the writer, and asserts that it wrote while the reads ran and that each read
    /// `saw` one of the `states` a write leaves, never a mix of two.
    pub async fn stop_where_each_read_saw_one_of(self, saw: &HashSet<i64>, states: [i64; 2]) {
        let runs = self.runs.load(Ordering::Relaxed) - 1;
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer ran without a failure");
        assert!(runs > 0, "the writer wrote while the reads ran");
        assert!(
            saw.is_subset(&HashSet::from(states)),
            "{saw:?} against {states:?}"
        );
    }
}

/// Runs `statement` as it is (several statements allowed), panicking with it on failure.
pub async fn sql(pool: &PgPool, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

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
        let (name, url) = Self::fresh_name();
        // The service creates the database itself, as it does on a fresh machine.
        let pool =
            price_history::startup::connect_and_migrate(&url.parse().expect("a valid URL"), 10)
                .await
                .expect("the test database can be created and migrated");
        TestDb { url, pool, name }
    }

    /// An empty database, not migrated: for building what an earlier release left.
    pub async fn empty() -> Self {
        let (name, url) = Self::fresh_name();
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("the test server answers");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("a database can be created");
        let pool = store::connect(&url.parse().expect("a valid URL"), 10)
            .await
            .expect("the database answers");
        TestDb { url, pool, name }
    }

    fn fresh_name() -> (String, String) {
        let name = format!("ph_test_{}", Uuid::now_v7().simple());
        let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        (name, url.to_string())
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

/// A date written `YYYY-MM-DD`.
pub fn day(s: &str) -> NaiveDate {
    s.parse().expect("a YYYY-MM-DD date")
}

/// Rows of `from` (a table, with a `WHERE` clause if need be), counted.
pub async fn count_rows(pool: &PgPool, from: &str) -> i64 {
    let statement = format!("SELECT count(*) FROM {from}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("rows of {from} can be counted: {e}"))
}

pub fn days_before_today(n: u64) -> NaiveDate {
    today_utc()
        .checked_sub_days(chrono::Days::new(n))
        .expect("a date")
}

/// A job as the API would ask for it.
pub fn api_job(symbol: Symbol, range: DateRange, force: bool) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        symbol,
        trigger: price_history::domain::Trigger::Api,
        range,
        force,
    }
}

/// A test's world: its database, its fake CoinGecko, its fake Coinbase Exchange and the
/// settings pointing at them. The second source is off unless a test asks for it
/// ([`Harness::with_coinbase`]), so that the tests of CoinGecko alone count its calls only.
pub struct Harness {
    pub db: TestDb,
    pub fake: FakeCoinGecko,
    /// Started with every harness; used only with `FALLBACK_SOURCE=coinbase`.
    pub coinbase: FakeCoinbase,
    pub settings: Settings,
}

impl Harness {
    /// Fast settings: a generous call budget and millisecond back-offs, so tests measure
    /// behaviour, not waiting.
    pub async fn new() -> Self {
        Self::with_fake(FakeOptions::default()).await
    }

    /// With a fake CoinGecko started with `options` (a plan's reach, a rate limit...).
    pub async fn with_fake(options: FakeOptions) -> Self {
        let db = TestDb::new().await;
        let fake = FakeCoinGecko::start_with(options)
            .await
            .expect("a fake CoinGecko can listen on a free loopback port");
        // No rate limit of its own: the tests' budget (100 calls a second) would meet
        // Coinbase's 10 a second and measure retries instead of behaviour.
        let coinbase = FakeCoinbase::start_with(FakeCoinbaseOptions {
            requests_per_second_limit: None,
            ..FakeCoinbaseOptions::default()
        })
        .await
        .expect("a fake Coinbase can listen on a free loopback port");
        let settings = Settings {
            database_url: db.url.parse().expect("a valid URL"),
            database_connect_timeout_secs: 0,
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            coingecko_base_url: fake.base_url(),
            coingecko_api_key: None,
            coingecko_calls_per_minute: NonZeroU32::new(6000).expect("non-zero"),
            coingecko_calls_per_month: None,
            coingecko_history_days: None,
            coingecko_chunk_days: 90,
            coingecko_max_retries: 3,
            coingecko_retry_base_delay_ms: 10,
            coingecko_timeout_secs: 5,
            job_max_attempts: 3,
            job_lease_secs: 30,
            api_token: None,
            event_streams_max: 256,
            job_retention_days: "30".to_owned(),
            log_format: LogFormat::Text,
            // Off unless a test turns it on (`with_coinbase`).
            fallback_source: price_history::config::FallbackSource::Off,
            coinbase_base_url: coinbase.base_url(),
            coinbase_calls_per_minute: NonZeroU32::new(6000).expect("non-zero"),
            coinbase_max_retries: 3,
            coinbase_retry_base_delay_ms: 10,
            coinbase_timeout_secs: 5,
            fallback_max_deviation_percent: rust_decimal::Decimal::from(5),
            sync_schedule: price_history::schedule::SyncSchedule::Off,
            sync_clock_offset_ms: 0,
        };
        Harness {
            db,
            fake,
            coinbase,
            settings,
        }
    }

    /// The same world with the second source on (`FALLBACK_SOURCE=coinbase`), as it is
    /// by default in production.
    pub fn with_coinbase(mut self) -> Self {
        self.settings.fallback_source = price_history::config::FallbackSource::Coinbase;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The service as `startup` wires it from this test's settings (read at each call:
    /// a test may change them after the harness is built).
    pub fn app(&self) -> Application {
        Application::with_pool(self.settings.clone(), self.db.pool.clone())
            .expect("the service is wired")
    }

    pub fn ingestor(&self) -> Ingestor {
        self.app().ingestor()
    }

    /// The coin registry as the API and the CLI use it.
    pub fn registry(&self) -> price_history::registry::Registry {
        self.app().registry()
    }

    /// The API's state as `api` builds it, with `token` as `API_TOKEN`.
    pub fn api_state(&self, token: Option<&str>) -> ApiState {
        let mut settings = self.settings.clone();
        settings.api_token = token.map(|token| SecretString::from(token.to_owned()));
        Application::with_pool(settings, self.db.pool.clone())
            .expect("the service is wired")
            .api_state(false)
            .expect("a valid API_TOKEN")
    }

    /// Submits a BTC job through the queue, as the API and the CLI do.
    pub async fn submit(&self, start: NaiveDate, end: NaiveDate, force: bool) -> JobRecord {
        self.submit_for(Symbol::BTC, start, end, force).await
    }

    /// Submits a job for a registered coin.
    pub async fn submit_for(
        &self,
        symbol: Symbol,
        start: NaiveDate,
        end: NaiveDate,
        force: bool,
    ) -> JobRecord {
        let coin = price_history::store::coins::get(self.pool(), symbol)
            .await
            .expect("the database answers")
            .expect("the coin is registered")
            .coin;
        let range = DateRange::for_coin(&coin, start, end, today_utc()).expect("a valid range");
        queue::submit(
            self.pool(),
            api_job(symbol, range, force),
            queue::Turn::Waited,
        )
        .await
        .expect("the job is queued")
    }

    /// Starts a worker in this process.
    pub fn start_worker(&self) -> RunningWorker {
        self.start_worker_named(queue::worker_name())
    }

    /// Starts a worker in this process under the given name.
    pub fn start_worker_named(&self, name: String) -> RunningWorker {
        RunningWorker(Task::spawn(|shutdown| {
            self.app().spawn_worker(name, shutdown)
        }))
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

    /// Sets this month's (by the system clock) CoinGecko credits used, under the key
    /// `none`, to `used`, as other processes would have spent them.
    pub async fn set_credits_used(&self, used: i64) {
        let month = price_history::domain::CreditMonth::of(chrono::Utc::now()).first_day();
        store::monthly_credits::set_used(
            self.pool(),
            price_history::domain::PriceSource::CoinGecko,
            "none",
            month,
            used,
        )
        .await
        .expect("the credits are set");
    }

    /// Submits a job, runs a worker until the job ends, stops the worker.
    pub async fn run_job(&self, start: NaiveDate, end: NaiveDate, force: bool) -> JobRecord {
        let job = self.submit(start, end, force).await;
        let worker = self.start_worker();
        let finished = self.until_finished(job.id).await;
        worker.stop().await;
        finished
    }

    /// Runs a BTC job over the `days` days up to yesterday, unforced.
    pub async fn run_days_to_yesterday(&self, days: u64) -> JobRecord {
        self.run_job(days_before_today(days), days_before_today(1), false)
            .await
    }

    /// Submits a BTC job over the `days` days up to yesterday, unforced.
    pub async fn submit_days_to_yesterday(&self, days: u64) -> JobRecord {
        self.submit(days_before_today(days), days_before_today(1), false)
            .await
    }

    /// Scripts the fake CoinGecko's next `calls` answers as `status` with `body`.
    pub fn fail_next_calls(&self, calls: usize, status: u16, body: &str) {
        for _ in 0..calls {
            self.fake
                .push_response(fake_upstream::coingecko::ScriptedResponse::status(
                    status, body,
                ));
        }
    }

    /// Registers a coin the fake knows, through the registry (one CoinGecko call).
    pub async fn register(&self, symbol: &str, coingecko_id: &str) -> Symbol {
        let symbol = Symbol::parse(symbol).expect("a symbol");
        let request = price_history::registry::CoinRequest {
            symbol,
            coingecko_id: price_history::domain::CoinGeckoId::parse(coingecko_id).expect("an id"),
            tracked: false,
            track_since: None,
            coinbase_product: Default::default(),
            hourly: None,
        };
        self.registry()
            .put(request, price_history::domain::Trigger::Api)
            .await
            .expect("the coin is registered");
        symbol
    }

    /// Rows of `from` in this test's database; see [`count_rows`].
    pub async fn rows(&self, from: &str) -> i64 {
        count_rows(self.pool(), from).await
    }

    pub async fn stored_days(&self) -> i64 {
        self.rows("daily_prices").await
    }

    /// Days stored for one coin.
    pub async fn stored_days_of(&self, symbol: Symbol) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM daily_prices WHERE symbol = $1")
            .bind(symbol.as_str())
            .fetch_one(self.pool())
            .await
            .expect("rows can be counted")
    }

    pub async fn job(&self, id: Uuid) -> JobRecord {
        ingestion_jobs::get(self.pool(), id)
            .await
            .expect("the database answers")
            .expect("the job exists")
    }

    /// The jobs `trigger` asked for (the latest 100), newest first.
    pub async fn jobs_by(&self, trigger: price_history::domain::Trigger) -> Vec<JobRecord> {
        ingestion_jobs::list(self.pool(), None, None, 100)
            .await
            .expect("the database answers")
            .into_iter()
            .filter(|job| job.trigger == trigger)
            .collect()
    }
}

/// A worker in this process; stopped cleanly by [`RunningWorker::stop`].
pub struct RunningWorker(Task);

impl RunningWorker {
    pub async fn stop(self) {
        self.0.stop("the worker", Duration::from_secs(30)).await;
    }
}

/// A task of the test's own and its stop signal: stopped cleanly by [`Task::stop`],
/// aborted when dropped (a failing test does not leave it running).
struct Task {
    stop: Option<ShutdownTrigger>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Task {
    fn spawn(run: impl FnOnce(Shutdown) -> JoinHandle<anyhow::Result<()>>) -> Task {
        let (stop, shutdown) = Shutdown::new();
        Task {
            stop: Some(stop),
            handle: Some(run(shutdown)),
        }
    }

    /// Raises the stop signal and checks that the task ends cleanly `within`.
    async fn stop(mut self, what: &str, within: Duration) {
        if let Some(stop) = self.stop.take() {
            stop.raise();
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(within, handle)
                .await
                .unwrap_or_else(|_| panic!("{what} stops within {within:?}"))
                .unwrap_or_else(|_| panic!("{what} does not panic"))
                .unwrap_or_else(|e| panic!("{what} stops cleanly: {e:#}"));
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// A `price-history` process of the test's own, with its output kept for failure reports.
pub struct Service {
    child: tokio::process::Child,
    pub pid: u32,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    /// The tasks copying stdout and stderr into `output`; done once the process is.
    readers: Vec<JoinHandle<()>>,
    /// Lines printed so far; changes with every line, for [`Service::wait_for_output`].
    lines: tokio::sync::watch::Receiver<usize>,
}

impl Harness {
    /// Starts `price-history <args>` against this test's database and fake CoinGecko,
    /// with a short lease so takeovers happen within seconds.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Service {
        spawn_service(&self.db.url, &self.fake.base_url(), args, env)
    }

    /// Starts `n` `price-history worker` processes with `env` added.
    pub fn spawn_workers(&self, n: usize, env: &[(&str, &str)]) -> Vec<Service> {
        (0..n).map(|_| self.spawn(&["worker"], env)).collect()
    }

    /// Waits for the job's next change that satisfies `condition`, and returns it.
    pub async fn wait_for(
        &self,
        id: Uuid,
        what: &str,
        condition: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let mut follower = JobFollower::new(self.pool(), id).await.expect("can listen");
        let wait = async {
            let mut job = follower
                .current()
                .await
                .expect("the database answers")
                .expect("the job exists");
            while !condition(&job) {
                job = follower
                    .next_change()
                    .await
                    .expect("the database answers")
                    .expect("the job exists");
            }
            job
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
    }

    /// The calls the fake answered with `status`, in the order they came.
    pub fn calls_answered(&self, status: u16) -> Vec<RecordedCall> {
        self.fake
            .calls()
            .into_iter()
            .filter(|call| call.status == status)
            .collect()
    }

    /// Waits for the job to end, and checks that it completed.
    pub async fn completes(&self, id: Uuid) -> JobRecord {
        let finished = self
            .wait_for(id, "the job ends", |j| j.status.is_terminal())
            .await;
        assert_completed(&finished);
        finished
    }

    /// The name of the worker holding the job on the queue, if any.
    pub async fn holder(&self, id: Uuid) -> Option<String> {
        sqlx::query_scalar(
            "SELECT lock_by FROM apalis.jobs WHERE id = $1 AND status IN ('Queued', 'Running')",
        )
        .bind(queue::task_id(id).to_string())
        .fetch_optional(self.pool())
        .await
        .expect("the database answers")
        .flatten()
    }
}

/// Starts `price-history <args>` against a database and a CoinGecko, with a short lease
/// so takeovers happen within seconds.
pub fn spawn_service(
    database_url: &str,
    coingecko_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Service {
    let mut command = price_history_command(database_url, coingecko_url);
    command
        .args(args)
        .env("JOB_LEASE_SECS", "5")
        // As the in-process harness: the second source only where a test asks for it
        // (never the real Coinbase Exchange).
        .env("FALLBACK_SOURCE", "off")
        .env("RUST_LOG", "info,sqlx=warn")
        .envs(env.iter().copied());
    start_captured(command)
}

/// Starts `price-history <args>` with exactly `env` (and `PATH`), nothing added.
pub fn spawn_with_exact_env(args: &[&str], env: &[(String, String)]) -> Service {
    let mut command = bare_command();
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    start_captured(command)
}

/// `price-history` against a database and a CoinGecko, with a call budget no test waits
/// on and quick retries; nothing of the test's own environment but `PATH`. The second
/// source is off, so that no test reaches the real Coinbase Exchange (registering a coin
/// would guess its product there); a test of it sets `FALLBACK_SOURCE=coinbase` and
/// `COINBASE_BASE_URL` to its fake.
pub fn price_history_command(database_url: &str, coingecko_url: &str) -> tokio::process::Command {
    let mut command = bare_command();
    command
        .env("DATABASE_URL", database_url)
        .env("COINGECKO_BASE_URL", coingecko_url)
        .env("COINGECKO_CALLS_PER_MINUTE", "6000")
        .env("COINGECKO_RETRY_BASE_DELAY_MS", "10")
        .env("FALLBACK_SOURCE", "off");
    command
}

/// `price-history` with no environment but `PATH`.
fn bare_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_price-history"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// Starts the command with its stdout and stderr kept in the `Service`.
pub fn start_captured(mut command: tokio::process::Command) -> Service {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the binary starts");
    let pid = child.id().expect("a running child has a pid");
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut readers = Vec::new();
    let (lines_tx, lines) = tokio::sync::watch::channel(0usize);
    let lines_tx = std::sync::Arc::new(lines_tx);
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        let lines_tx = lines_tx.clone();
        readers.push(tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
                // Released the output first: a waiter reads it while it holds the channel.
                lines_tx.send_modify(|n| *n += 1);
            }
        }));
    }
    Service {
        child,
        pid,
        output,
        readers,
        lines,
    }
}

impl Service {
    /// `kill -9`.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("the process can be killed");
        self.child.wait().await.expect("the process is reaped");
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the process did not exit within {within:?}; it printed:\n{}",
                    self.output()
                )
            })
            .expect("the process is reaped");
        // Everything it printed is in `output` once its pipes have been read to the end.
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        status.code()
    }

    /// Waits for the process to exit, asserts that it exited 0 (showing what it printed
    /// when not), and returns what it printed.
    pub async fn exits_0(&mut self, within: Duration) -> String {
        let code = self.exit_code(within).await;
        let printed = self.output();
        assert_eq!(code, Some(0), "{printed}");
        printed
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until what the process printed so far satisfies `condition` (checked at
    /// every new line), and returns it.
    pub async fn wait_for_output(
        &self,
        what: &str,
        within: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> String {
        let mut lines = self.lines.clone();
        let output = self.output.clone();
        let printed = tokio::time::timeout(
            within,
            lines.wait_for(|_| condition(&output.lock().unwrap())),
        )
        .await;
        match printed {
            Ok(Ok(_)) => self.output(),
            Ok(Err(_)) => panic!(
                "the process closed its output before {what}; it printed:\n{}",
                self.output()
            ),
            Err(_) => panic!(
                "timed out after {within:?} waiting for {what}; it printed:\n{}",
                self.output()
            ),
        }
    }

    /// Waits until the process has printed `text`, and returns all it printed so far.
    pub async fn wait_for_printed(&self, text: &str, within: Duration) -> String {
        self.wait_for_output(&format!("{text:?} in its output"), within, |out| {
            out.contains(text)
        })
        .await
    }

    /// Whether a worker name belongs to this process.
    pub fn owns(&self, worker: &str) -> bool {
        worker.contains(&format!("-{}-", self.pid))
    }
}

/// What a finished process printed, stdout then stderr, for assertions and failure reports.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that a finished process exited with `code` and printed each of `phrases`.
#[track_caller]
pub fn assert_exited_saying(output: &std::process::Output, code: i32, phrases: &[&str]) {
    let text = output_text(output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    assert_mentions(&text, phrases);
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("can bind")
        .local_addr()
        .expect("an address")
        .port()
}

/// Waits until the process serving `base` answers `/readyz` with 200, and returns a
/// client for it. Polls: readiness of an outside process has no event to wait on.
pub async fn until_ready(service: &Service, base: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "{base} never became ready:\n{}",
            service.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
}

/// A running API on `127.0.0.1:<random port>` and a client for it.
pub struct TestApi {
    /// Where it listens, for tests that speak raw TCP to it.
    pub addr: SocketAddr,
    pub base: String,
    /// A client with a 30 s time-out, for requests the helpers do not build.
    pub client: reqwest::Client,
    server: Task,
}

/// What came back: status, headers and the body read once.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error body's `message`, which tests read for what it tells the user.
    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap().to_owned()
    }

    /// Asserts the status, showing the body when it is another.
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text());
    }

    /// Asserts a 400 with the error `code`; `what` names the request in the messages.
    #[track_caller]
    pub fn assert_refused(&self, code: &str, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            self.text()
        );
        assert_eq!(self.error_code(), code, "{what}");
    }

    /// The rows of a CSV body, after checking that its first line is `header`.
    pub fn csv_rows(&self, header: &str) -> Vec<String> {
        let text = self.text();
        let mut lines = text.lines().map(str::to_owned);
        assert_eq!(lines.next().as_deref(), Some(header), "{text}");
        lines.collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the documented error shape and returns its code.
    pub fn error_code(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "an error is JSON: {:?} {}",
            self.header("content-type"),
            self.text()
        );
        let body = self.json();
        let message = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("a message: {body}"));
        assert!(!message.is_empty(), "{body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error code: {body}"))
            .to_owned()
    }
}

impl TestApi {
    /// A fresh harness and its API, the arrangement most API tests start from.
    pub async fn with_harness() -> (Harness, TestApi) {
        let h = Harness::new().await;
        let api = TestApi::start(&h).await;
        (h, api)
    }

    pub async fn start(h: &Harness) -> TestApi {
        Self::start_with(h.api_state(None)).await
    }

    pub async fn start_with(state: ApiState) -> TestApi {
        Self::start_with_limits(state, ConnectionLimits::default()).await
    }

    /// With other limits than the documented ones, for tests that cannot wait a minute to
    /// see a connection closed.
    pub async fn start_with_limits(state: ApiState, limits: ConnectionLimits) -> TestApi {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let base = format!("http://{addr}");
        let server =
            Task::spawn(|shutdown| tokio::spawn(api::serve(state, listener, limits, shutdown)));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client");
        TestApi {
            addr,
            base,
            client,
            server,
        }
    }

    /// `path` on this API, as a full URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path))).await
    }

    /// A GET with the header `name: value` (an `Accept`, a request id...).
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> Answer {
        self.send(self.client.get(self.url(path)).header(name, value))
            .await
    }

    /// A GET that must be refused with a 400 and the error `code`; see [`Answer::assert_refused`].
    pub async fn get_refused(&self, path: &str, code: &str) -> Answer {
        let answer = self.get(path).await;
        answer.assert_refused(code, path);
        answer
    }

    /// A POST with a JSON body and, when given, a bearer token.
    pub async fn post(&self, path: &str, body: Option<Value>, token: Option<&str>) -> Answer {
        let mut request = self.client.post(self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request).await
    }

    /// A PUT with a JSON body and, when given, a bearer token.
    pub async fn put(&self, path: &str, body: Value, token: Option<&str>) -> Answer {
        let mut request = self
            .client
            .put(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request).await
    }

    /// `PUT /api/v1/coins/{symbol}` with `body`, without a token.
    pub async fn put_coin(&self, symbol: &str, body: Value) -> Answer {
        self.put(&format!("/api/v1/coins/{symbol}"), body, None)
            .await
    }

    pub async fn submit(&self, body: Value) -> Answer {
        self.post("/api/v1/ingestion-jobs", Some(body), None).await
    }

    pub async fn stop(self) {
        self.server
            .stop("the server", Duration::from_secs(10))
            .await;
    }
}

/// The fake upstream's own program (`crates/fake-upstream`), for a test that needs the fake
/// in another process (inside a network namespace, say). `cargo test --workspace` builds
/// it beside the service's binary; a narrower `cargo test` does not, so it is built here
/// once when missing.
pub fn fake_upstream_program() -> std::path::PathBuf {
    static PROGRAM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let service = std::path::Path::new(env!("CARGO_BIN_EXE_price-history"));
            let program = service.with_file_name("fake-upstream");
            if !program.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
                let status = std::process::Command::new(cargo)
                    .args(["build", "--workspace", "--bin", "fake-upstream"])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .status()
                    .expect("cargo runs");
                assert!(status.success(), "cargo built the fake upstream");
            }
            program
        })
        .clone()
}
