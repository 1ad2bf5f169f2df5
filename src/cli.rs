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
use crate::coingecko::CoinGeckoClient;
use crate::config::Settings;
use crate::domain::{DateRange, JobStatus, Symbol, today_utc};
use crate::ingest::Ingestor;
use crate::queue::{self, SubmitError, WorkerOptions};
use crate::store::{self, ingestion_jobs, ingestion_jobs::NewJob};
use crate::telemetry;

/// Connections per process: the worker needs a few (heartbeat, listener, the job), the
/// API the rest.
const POOL_SIZE: u32 = 10;

#[derive(Debug, Parser)]
#[command(
    name = "price-history",
    version,
    about = "A complete, trustworthy history of daily Bitcoin prices from CoinGecko, kept in PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
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

/// Runs the parsed command line; errors are printed by `main` with their causes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    telemetry::init(cli.settings.log_format);
    let settings = cli.settings;
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
            queue::run_worker(pool, ingestor, worker_options(&settings), shutdown_signal()).await?;
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
            let worker = queue::run_worker(
                pool,
                ingestor,
                worker_options(&settings),
                stopped(stop.clone()),
            );
            let api = api::serve(state, settings.bind_addr, stopped(stop));
            let (worker, api) = tokio::join!(worker, api);
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
        client: CoinGeckoClient::new(settings.coingecko())
            .context("while building the CoinGecko client")?,
        chunk_days: settings.coingecko_chunk_days,
    })
}

fn api_state(
    settings: &Settings,
    pool: &PgPool,
    coingecko: Option<CoinGeckoClient>,
) -> anyhow::Result<ApiState> {
    use secrecy::ExposeSecret;
    // An empty API_TOKEN means "not set", as an unset one does: that is what compose's
    // `${API_TOKEN:-}` passes when the user set none. A token of only blanks is a mistake
    // no default produces, and it would quietly guard the POSTs with a guessable token.
    let api_token = settings
        .api_token
        .clone()
        .filter(|token| !token.expose_secret().is_empty());
    if api_token
        .as_ref()
        .is_some_and(|token| token.expose_secret().trim().is_empty())
    {
        anyhow::bail!(
            "API_TOKEN is set but blank: unset it (or set it empty) to leave the POST endpoints open, or give it a value"
        );
    }
    Ok(ApiState {
        pool: pool.clone(),
        api_token,
        job_max_attempts: settings.job_max_attempts,
        coingecko,
        finished_jobs: Default::default(),
    })
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
    let range = match DateRange::for_symbol(symbol, start, end, today_utc()) {
        Ok(range) => range,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let pool = open_database(settings, POOL_SIZE).await?;
    let job = NewJob {
        id: Uuid::now_v7(),
        symbol,
        range,
        force,
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
