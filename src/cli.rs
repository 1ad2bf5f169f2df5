//! The command line: one binary, a subcommand per role (see INTERFACE.md, "Processes").

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::{self, ApiState};
use crate::coingecko::{CallBudget, CoinGeckoClient};
use crate::config::Settings;
use crate::domain::{CoinGeckoId, DateRange, JobStatus, Symbol, Trigger, today_utc};
use crate::ingest::{Ingestor, Reach};
use crate::private_postgres;
use crate::queue::{self, SubmitError, WorkerOptions};
use crate::registry::{CoinRequest, Registered, Registry};
use crate::schedule::{self, CoinSync, Scheduler};
use crate::store::{self, coins, ingestion_jobs, ingestion_jobs::NewJob};
use crate::telemetry;

/// Connections per process: the worker needs a few (heartbeat, listener, the job), the
/// API the rest.
const POOL_SIZE: u32 = 10;

#[derive(Debug, Parser)]
#[command(
    name = "price-history",
    version,
    about = "A complete, trustworthy history of daily coin prices from CoinGecko, kept in PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
    /// Whether `DATABASE_URL` was left to its default (neither the variable nor the flag
    /// given), which alone allows a private PostgreSQL; set by [`Cli::parse_args`].
    #[arg(skip)]
    pub database_url_defaulted: bool,
}

impl Cli {
    /// Parses the command line as `Cli::parse` does, and notes whether `DATABASE_URL` was
    /// given: the parsed settings alone cannot tell it from its default.
    pub fn parse_args() -> Self {
        Self::parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_args`] of the given arguments (the program's name first).
    pub fn parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.database_url_defaulted =
            matches.value_source("database_url") == Some(ValueSource::DefaultValue);
        Ok(cli)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// REST API and one worker in one process: the single-machine default.
    Serve,
    /// REST API only.
    Api,
    /// Worker only; run any number of replicas against one database.
    Worker,
    /// Create the database if missing, apply all migrations, exit.
    Migrate,
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Register or list coins (the same rules as the API).
    Coins {
        #[command(subcommand)]
        command: CoinsCommand,
    },
    /// Queue a backfill on the durable queue, run it here with a progress bar, print the outcome.
    Backfill {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        start_date: NaiveDate,
        /// Last day, YYYY-MM-DD (UTC), at most today.
        #[arg(long)]
        end_date: NaiveDate,
        /// Fetch every day again and update stored rows.
        #[arg(long)]
        force: bool,
        /// A registered coin (`price-history coins list`).
        #[arg(long, default_value = "BTC")]
        symbol: String,
    },
    /// A loopback CoinGecko stand-in with deterministic prices, for trials and benchmarks.
    #[command(hide = true)]
    FakeCoingecko {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
        /// Delay added to every response, in milliseconds.
        #[arg(long, default_value = "0")]
        delay_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CoinsCommand {
    /// Register a coin (checked with one CoinGecko call), or change whether it is tracked.
    Add {
        /// The ticker: 1 to 15 letters A-Z or digits, case-insensitive.
        symbol: String,
        /// CoinGecko's id of the coin (the "API ID" on its CoinGecko page), such as ethereum.
        coingecko_id: String,
        /// Keep the coin up to date every day (SYNC_SCHEDULE).
        #[arg(long)]
        track: bool,
        /// With --track: the first day to keep, YYYY-MM-DD.
        #[arg(long)]
        since: Option<NaiveDate>,
    },
    /// List the registered coins with their freshness.
    List,
}

/// Runs the parsed command line; errors are printed by `main` with their causes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    telemetry::init(cli.settings.log_format);
    let mut settings = cli.settings;
    // Held until this function returns, after every pool of the command is closed.
    let (database_url, _private_postgres) = match &cli.command {
        Command::Openapi | Command::FakeCoingecko { .. } => (settings.database_url.clone(), None),
        _ => {
            private_postgres::resolve_database(&settings.database_url, !cli.database_url_defaulted)
                .await?
        }
    };
    settings.database_url = database_url;
    match cli.command {
        Command::Migrate => {
            open_database(&settings, 2).await?;
            eprintln!(
                "database {} is ready",
                store::database::redact(&settings.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            let pool = open_database(&settings, POOL_SIZE).await?;
            let ingestor = ingestor(&settings, &pool)?;
            // One signal, broadcast to the worker and the scheduler.
            let (stop_tx, stop) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let scheduler = start_scheduler(&settings, &pool, stop.clone());
            let worker =
                queue::run_worker(pool, ingestor, worker_options(&settings), stopped(stop)).await;
            if let (Ok(()), Some(scheduler)) = (&worker, scheduler) {
                let _ = scheduler.await;
            }
            worker?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let pool = open_database(&settings, POOL_SIZE).await?;
            let ingestor = ingestor(&settings, &pool)?;
            let state = api_state(&settings, &pool, Some(ingestor.client.clone()))?;
            // One signal, broadcast to the API and the worker.
            let (stop_tx, stop) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let scheduler = start_scheduler(&settings, &pool, stop.clone());
            let worker = queue::run_worker(
                pool,
                ingestor,
                worker_options(&settings),
                stopped(stop.clone()),
            );
            let api = api::serve(state, settings.bind_addr, stopped(stop));
            let (worker, api) = tokio::join!(worker, api);
            if let (Ok(()), Ok(()), Some(scheduler)) = (&worker, &api, scheduler) {
                let _ = scheduler.await;
            }
            worker?;
            api?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Api => {
            let pool = open_database(&settings, POOL_SIZE).await?;
            let (stop_tx, stop) = watch::channel(false);
            // No worker here, but jobs whose worker died are still set back to pending.
            tokio::spawn(queue::reconcile_orphans(
                pool.clone(),
                settings.job_lease(),
                stop.clone(),
            ));
            api::serve(
                api_state(&settings, &pool, None)?,
                settings.bind_addr,
                async move {
                    shutdown_signal().await;
                    let _ = stop_tx.send(true);
                },
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            println!("{}", api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Coins { command } => coins_command(&settings, command).await,
        Command::Backfill {
            start_date,
            end_date,
            force,
            symbol,
        } => backfill(&settings, &symbol, start_date, end_date, force).await,
        Command::FakeCoingecko { bind, delay_ms } => {
            crate::fake_coingecko::run_standalone(bind, Duration::from_millis(delay_ms)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Waits for PostgreSQL (up to `DATABASE_CONNECT_TIMEOUT_SECS`), then creates and
/// migrates the database and opens the pool.
async fn open_database(settings: &Settings, max_connections: u32) -> anyhow::Result<PgPool> {
    store::database::wait_for_server(&settings.database_url, settings.database_connect_timeout())
        .await?;
    store::connect_and_migrate(&settings.database_url, max_connections).await
}

fn ingestor(settings: &Settings, pool: &PgPool) -> anyhow::Result<Ingestor> {
    Ok(Ingestor {
        pool: pool.clone(),
        client: coingecko_client(settings, pool)?,
        chunk_days: settings.coingecko_chunk_days,
        reach: reach(settings),
    })
}

/// The CoinGecko client, keeping every secret of the process out of what it quotes: the
/// key, `API_TOKEN` and the database password, should an answer ever echo them.
/// Every attempt takes a slot of the call budget shared by every process on this database.
fn coingecko_client(settings: &Settings, pool: &PgPool) -> anyhow::Result<CoinGeckoClient> {
    use secrecy::ExposeSecret;
    // As written in the URL, and decoded (`%40` for `@`, say).
    let database_password: Vec<String> = url::Url::parse(&settings.database_url)
        .ok()
        .and_then(|url| url.password().map(str::to_owned))
        .map(|password| vec![percent_decoded(&password), password])
        .unwrap_or_default();
    let client = CoinGeckoClient::new(settings.coingecko(), CallBudget::Shared(pool.clone()))
        .context("while building the CoinGecko client")?
        .hiding(
            settings
                .api_token
                .iter()
                .map(|token| token.expose_secret())
                .chain(database_password.iter().map(String::as_str)),
        );
    Ok(client)
}

/// `%XX` sequences as the bytes they stand for (lossy where that is not UTF-8).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reach(settings: &Settings) -> Reach {
    Reach::new(settings.plan_reach(), &settings.coingecko())
}

/// The registry, checking new coins with `client` (the worker's, where there is one, so
/// that both share one call budget).
fn registry(settings: &Settings, pool: &PgPool, client: CoinGeckoClient) -> Registry {
    Registry {
        pool: pool.clone(),
        client,
        reach: reach(settings),
    }
}

/// The API's state. `coingecko` is the worker's client when a worker runs in this
/// process (`serve`); `api` makes its own for coin checks.
fn api_state(
    settings: &Settings,
    pool: &PgPool,
    coingecko: Option<CoinGeckoClient>,
) -> anyhow::Result<ApiState> {
    use secrecy::ExposeSecret;
    // An empty API_TOKEN means "not set", as an unset one does: that is what compose's
    // `${API_TOKEN:-}` passes when the user set none. A token of only blanks, or one with
    // spaces around it, is a mistake no default produces: the first would guard the writes
    // with a guessable token, the second would lock every write out (the presented token
    // is read trimmed).
    let api_token = settings
        .api_token
        .clone()
        .filter(|token| !token.expose_secret().is_empty());
    if let Some(token) = &api_token {
        let token = token.expose_secret();
        if token.trim().is_empty() {
            anyhow::bail!(
                "API_TOKEN is set but blank: unset it (or set it empty) to leave the writes open, or give it a value"
            );
        }
        if token.trim() != token {
            anyhow::bail!(
                "API_TOKEN begins or ends with whitespace, which no client can send in a bearer token: remove it"
            );
        }
    }
    let checker = match &coingecko {
        Some(client) => client.clone(),
        None => coingecko_client(settings, pool)?,
    };
    Ok(ApiState {
        pool: pool.clone(),
        api_token,
        job_max_attempts: settings.job_max_attempts,
        coingecko,
        finished_jobs: Default::default(),
        registry: registry(settings, pool, checker),
        sync_schedule: settings.sync_schedule.clone(),
    })
}

/// Starts this process's part in `SYNC_SCHEDULE` (serve and worker), until `stop`.
fn start_scheduler(
    settings: &Settings,
    pool: &PgPool,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.sync_schedule.is_off() {
        tracing::info!(
            "SYNC_SCHEDULE is off: tracked coins are brought up to date only when tracking is turned on"
        );
        return None;
    }
    let scheduler = Scheduler {
        pool: pool.clone(),
        schedule: settings.sync_schedule.clone(),
        clock: settings.sync_clock(),
        reach: reach(settings),
        max_attempts: settings.job_max_attempts,
        name: queue::worker_name(),
    };
    Some(tokio::spawn(scheduler.run(stop)))
}

/// Resolves once the broadcast stop signal is raised.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn worker_options(settings: &Settings) -> WorkerOptions {
    WorkerOptions {
        name: queue::worker_name(),
        lease: settings.job_lease(),
        max_attempts: settings.job_max_attempts,
        retry_base_delay: Duration::from_millis(settings.coingecko_retry_base_delay_ms),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// `backfill`: the same queue as the API, run in this process.
async fn backfill(
    settings: &Settings,
    symbol: &str,
    start: NaiveDate,
    end: NaiveDate,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let symbol: Symbol = match symbol.parse() {
        Ok(symbol) => symbol,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let pool = open_database(settings, POOL_SIZE).await?;
    let Some(coin) = coins::get(&pool, symbol).await? else {
        return Ok(refuse(&format!(
            "{symbol} is not a registered coin: register it with `price-history coins add {symbol} COINGECKO_ID`, \
             or pick one of `price-history coins list`"
        )));
    };
    let range = match DateRange::for_coin(&coin.coin, start, end, today_utc()) {
        Ok(range) => range,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let job = NewJob {
        id: Uuid::now_v7(),
        symbol,
        range,
        force,
        trigger: Trigger::Cli,
    };
    let record = match queue::submit(&pool, job, settings.job_max_attempts).await {
        Ok(record) => record,
        Err(SubmitError::JobInProgress(active)) => {
            return Ok(refuse(&format!(
                "job {active} is already pending or running; wait for it (GET /api/v1/ingestion-jobs/{active}) or cancel it, then run the backfill again"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "job {} queued: {} {}..{} ({} days{})",
        record.id,
        symbol,
        range.start(),
        range.end(),
        range.days(),
        if force { ", forced" } else { "" }
    );

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(queue::run_worker(
        pool.clone(),
        ingestor(settings, &pool)?,
        worker_options(settings),
        async move {
            tokio::select! {
                _ = done_rx => {},
                () = shutdown_signal() => {},
            }
        },
    ));

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} windows, {msg}",
        )
        .expect("a valid template"),
    );
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let finished = loop {
        ticker.tick().await;
        if worker.is_finished() {
            break ingestion_jobs::get(&pool, record.id).await?;
        }
        match ingestion_jobs::get(&pool, record.id).await {
            Ok(Some(job)) => {
                bar.set_length(job.chunks_total.max(0) as u64);
                bar.set_position(job.chunks_done.max(0) as u64);
                bar.set_message(format!("{} rows, {}", job.records_fetched, job.status));
                if job.status.is_terminal() {
                    break Some(job);
                }
            }
            Ok(None) => break None,
            Err(e) => bar.set_message(format!("database unavailable ({e}); waiting")),
        }
    };
    bar.finish_and_clear();
    let _ = done_tx.send(());
    worker.await.context("the in-process worker panicked")??;

    let Some(job) = finished else {
        anyhow::bail!("job {} disappeared from ingestion_jobs", record.id);
    };
    println!("job {}: {}", job.id, job.status);
    println!(
        "windows: {}/{}, rows fetched: {}, attempts: {}",
        job.chunks_done, job.chunks_total, job.records_fetched, job.attempts
    );
    if job.out_of_plan_days > 0 {
        println!("out of plan: {} day(s)", job.out_of_plan_days);
    }
    if !job.gap_dates.is_empty() {
        let shown: Vec<String> = job
            .gap_dates
            .iter()
            .take(20)
            .map(NaiveDate::to_string)
            .collect();
        println!(
            "gaps ({}): {}{}",
            job.gaps_detected,
            shown.join(", "),
            if job.gap_dates.len() > 20 {
                ", ..."
            } else {
                ""
            }
        );
    }
    if let Some(message) = &job.error_message {
        println!("{message}");
    }
    Ok(match job.status {
        JobStatus::Completed | JobStatus::CompletedWithGaps => ExitCode::SUCCESS,
        JobStatus::Pending | JobStatus::Running => {
            println!(
                "the job was handed back to the queue; any worker (price-history worker) resumes it from its checkpoint"
            );
            ExitCode::from(3)
        }
        JobStatus::Failed | JobStatus::Cancelled => ExitCode::FAILURE,
    })
}

/// Bad input: say why and exit 2, as command-line tools do.
fn refuse(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// `coins add` and `coins list`.
async fn coins_command(settings: &Settings, command: CoinsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CoinsCommand::Add {
            symbol,
            coingecko_id,
            track,
            since,
        } => {
            let symbol = match Symbol::parse(&symbol) {
                Ok(symbol) => symbol,
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            let coingecko_id = match CoinGeckoId::parse(&coingecko_id) {
                Ok(id) => id,
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            let pool = open_database(settings, 2).await?;
            let registry = registry(settings, &pool, coingecko_client(settings, &pool)?);
            let request = CoinRequest {
                symbol,
                coingecko_id,
                tracked: track,
                track_since: since,
            };
            let (coin, started_tracking) = match registry.put(request).await {
                Ok(Registered::Created(coin)) => {
                    println!("registered {}", describe_coin(&coin));
                    let tracked = coin.coin.tracked;
                    (coin, tracked)
                }
                Ok(Registered::Changed {
                    coin,
                    started_tracking,
                }) => {
                    println!("updated {}", describe_coin(&coin));
                    (coin, started_tracking)
                }
                Err(crate::registry::RegisterError::Database(e)) => return Err(e.into()),
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            if started_tracking {
                // Up to date at once, not at the next tick.
                let synced = schedule::tracking_started(
                    &pool,
                    &registry.reach,
                    &coin.coin,
                    Trigger::Cli,
                    settings.job_max_attempts,
                )
                .await
                .context("the coin is registered, but its missing days could not be queued")?;
                let symbol = coin.coin.symbol;
                match synced {
                    CoinSync::UpToDate => println!("{symbol} is up to date"),
                    CoinSync::Queued(job) => println!(
                        "job {} queued for {symbol}'s missing days, {}..{}: any worker (price-history worker or serve) runs it",
                        job.id,
                        job.range.start(),
                        job.range.end()
                    ),
                    CoinSync::Busy(_) => {
                        println!(
                            "a job of {symbol} is active already; the schedule looks again at its next tick"
                        )
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CoinsCommand::List => {
            let pool = open_database(settings, 2).await?;
            let list = coins::list(&pool).await?;
            println!(
                "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10}",
                "SYMBOL", "COINGECKO_ID", "FIRST_DAY", "TRACKED", "SINCE", "LAST_DAY"
            );
            for coin in &list {
                let day =
                    |d: Option<NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
                println!(
                    "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10}",
                    coin.coin.symbol.as_str(),
                    coin.coin.coingecko_id.as_str(),
                    day(coin.coin.first_day),
                    if coin.coin.tracked { "yes" } else { "no" },
                    day(coin.coin.track_since),
                    day(coin.last_complete_day),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe_coin(coin: &crate::store::coins::CoinRecord) -> String {
    format!(
        "{} ({}), first day {}, {}",
        coin.coin.symbol,
        coin.coin.coingecko_id,
        coin.coin.first_day.map_or_else(
            || "older than the plan serves".to_owned(),
            |d| d.to_string()
        ),
        match (coin.coin.tracked, coin.coin.track_since) {
            (true, Some(since)) => format!("tracked since {since}"),
            (true, None) => "tracked".to_owned(),
            (false, _) => "not tracked".to_owned(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(database_url: &str, api_token: Option<&str>) -> Settings {
        let mut args = vec!["price-history", "--database-url", database_url];
        if let Some(token) = api_token {
            args.extend(["--api-token", token]);
        }
        args.push("migrate");
        Cli::try_parse_from(args).expect("valid arguments").settings
    }

    #[test]
    fn database_url_counts_as_given_as_a_flag_before_or_after_the_subcommand() {
        let url = "postgres://u@db:5432/x";
        for args in [
            vec!["price-history", "--database-url", url, "migrate"],
            vec!["price-history", "migrate", "--database-url", url],
        ] {
            let cli = Cli::parse_args_from(args).expect("valid arguments");
            assert!(!cli.database_url_defaulted);
            assert_eq!(cli.settings.database_url, url);
        }
        // Without the flag it is the default, unless the environment sets it.
        let cli = Cli::parse_args_from(["price-history", "migrate"]).expect("valid arguments");
        assert_eq!(
            cli.database_url_defaulted,
            std::env::var_os("DATABASE_URL").is_none()
        );
    }

    #[test]
    fn percent_escapes_are_decoded_and_the_rest_kept() {
        assert_eq!(percent_decoded("p%40ss%2Fw0rd"), "p@ss/w0rd");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }

    #[tokio::test]
    async fn the_token_is_refused_when_blank_or_padded_and_the_message_does_not_show_it_but_empty_means_unset()
     {
        let pool = PgPool::connect_lazy("postgres://localhost/none").expect("a lazy pool");
        for token in ["   ", " padded-secret", "padded-secret\n"] {
            let error = api_state(
                &settings("postgres://localhost/x", Some(token)),
                &pool,
                None,
            )
            .err()
            .unwrap_or_else(|| panic!("{token:?} was accepted"));
            assert!(error.to_string().contains("API_TOKEN"), "{error}");
            assert!(!error.to_string().contains("padded-secret"), "{error}");
        }
        assert!(api_state(&settings("postgres://localhost/x", Some("ok")), &pool, None).is_ok());
        let empty = api_state(&settings("postgres://localhost/x", Some("")), &pool, None)
            .expect("an empty token means not set");
        assert!(empty.api_token.is_none());
    }

    #[tokio::test]
    async fn the_coingecko_client_is_built_hiding_the_token_and_the_database_password() {
        let settings = settings(
            "postgres://u:p%40ss-w0rd-99@localhost/x",
            Some("tok-123456"),
        );
        let pool = PgPool::connect_lazy("postgres://localhost/none").expect("a lazy pool");
        let client = coingecko_client(&settings, &pool).expect("a client");
        let quoted = client.redact("echo: tok-123456, p@ss-w0rd-99 and p%40ss-w0rd-99");
        assert_eq!(quoted, "echo: ***, *** and ***");
    }
}
