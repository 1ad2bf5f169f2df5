//! `backfill`: puts a job on the same durable queue as the API, runs it with a worker in
//! this process, follows it (by its change notifications) with a progress bar, and prints
//! the outcome. Exit codes: INTERFACE.md, "Processes".

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use super::{interrupted, refuse};
use crate::config::Settings;
use crate::domain::{DateRange, JobStatus, Symbol, Trigger, today_utc};
use crate::queue::{self, SubmitError, Turn};
use crate::shutdown::Shutdown;
use crate::startup::{self, Application};
use crate::store::coins;
use crate::store::ingestion_jobs::{self, JobFollower, JobRecord, NewJob};
use crate::store::job_hours::{self, JobHours};

/// How long to wait before following the job again after the database failed to answer.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Gap dates printed at most; more are shown as `...`.
const GAPS_SHOWN: usize = 20;

pub(super) async fn run(
    settings: Settings,
    symbol: &str,
    (start, end): (NaiveDate, NaiveDate),
    force: bool,
    shutdown: Shutdown,
) -> anyhow::Result<ExitCode> {
    let symbol: Symbol = match symbol.parse() {
        Ok(symbol) => symbol,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let Some(app) = super::build(settings, startup::POOL_SIZE, &shutdown).await? else {
        return Ok(interrupted("the job was queued: nothing was queued"));
    };
    let job = match new_job(&app, symbol, (start, end), force).await? {
        Ok(job) => job,
        Err(refused) => return Ok(refuse(&refused)),
    };
    let submitted = queue::submit(&app.pool, job, Turn::Waited);
    let record = match submitted.await {
        Ok(record) => record,
        Err(SubmitError::JobInProgress(active)) => {
            return Ok(refuse(&format!(
                "job {active} is already pending or running; wait for it (GET /api/v1/ingestion-jobs/{active}) or cancel it, then run the backfill again"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let range = job.range;
    eprintln!(
        "job {} queued: {} {}..{} ({} days{})",
        record.id,
        symbol,
        range.start(),
        range.end(),
        range.days(),
        if force { ", forced" } else { "" }
    );
    let job = run_here(&app, record.id, &shutdown).await?;
    let hours = job_hours::of(&app.pool, job.id).await?;
    report(&job, hours);
    Ok(exit_code(job.status))
}

/// The job `backfill` asks for, or why it is refused: the coin must be registered, and
/// the range fit its rules.
async fn new_job(
    app: &Application,
    symbol: Symbol,
    (start, end): (NaiveDate, NaiveDate),
    force: bool,
) -> anyhow::Result<Result<NewJob, String>> {
    let Some(coin) = coins::get(&app.pool, symbol).await? else {
        return Ok(Err(format!(
            "{symbol} is not a registered coin: register it with `price-history coins add {symbol} COINGECKO_ID`, \
             or pick one of `price-history coins list`"
        )));
    };
    let today = today_utc();
    let range = match DateRange::for_coin(&coin.coin, start, end, today) {
        Ok(range) => range,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let credits = app.credits();
    if let Err(refused) = credits.afford_job(&coin.coin, range, force, today).await? {
        return Ok(Err(format!("monthly_credits_exhausted: {refused}")));
    }
    Ok(Ok(NewJob {
        id: Uuid::now_v7(),
        symbol,
        range,
        force,
        trigger: Trigger::Cli,
    }))
}

/// Runs job `id` with a worker in this process, following it with a progress bar, until
/// it ends or the process is told to stop; returns the job as it then stands. On
/// SIGTERM/SIGINT the worker hands the job back at a window boundary, and the job reads
/// pending again.
async fn run_here(app: &Application, id: Uuid, shutdown: &Shutdown) -> anyhow::Result<JobRecord> {
    let (stop, worker_shutdown) = shutdown.child();
    let mut follower = JobFollower::new(&app.pool, id)
        .await
        .context("while listening for the job's changes")?;
    let mut worker = app.spawn_worker(queue::worker_name(), worker_shutdown);
    let (job, stopped) = match follow(&mut follower, &mut worker).await {
        Followed::Ended(job) => {
            stop.raise();
            (job, worker.await)
        }
        // Read once more after the worker stopped: its hand-off is what it did last.
        Followed::WorkerStopped(stopped) => (ingestion_jobs::get(&app.pool, id).await?, stopped),
    };
    stopped.context("the in-process worker panicked")??;
    job.with_context(|| format!("job {id} disappeared from ingestion_jobs"))
}

/// How following the job ended.
enum Followed {
    /// The job ended (or disappeared, `None`); the worker still runs.
    Ended(Option<JobRecord>),
    /// The worker stopped first: shut down (the job handed back), or failed.
    WorkerStopped(Result<anyhow::Result<()>, tokio::task::JoinError>),
}

/// Shows the job's progress at each of its changes until it ends or the worker stops.
async fn follow(
    follower: &mut JobFollower,
    worker: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> Followed {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} windows, {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut change = follower.current().await;
    let finished = loop {
        match change {
            Ok(Some(job)) => {
                bar.set_length(job.chunks_total.max(0) as u64);
                bar.set_position(job.chunks_done.max(0) as u64);
                bar.set_message(format!("{} rows, {}", job.records_fetched, job.status));
                if job.status.is_terminal() {
                    break Followed::Ended(Some(job));
                }
            }
            Ok(None) => break Followed::Ended(None),
            Err(e) => {
                bar.set_message(format!("database unavailable ({e}); waiting"));
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        change = tokio::select! {
            change = follower.next_change() => change,
            stopped = &mut *worker => break Followed::WorkerStopped(stopped),
        };
    };
    bar.finish_and_clear();
    finished
}

/// The closing summary: the days by source, the hours for an hourly coin, and what is
/// missing and why.
fn report(job: &JobRecord, hours: Option<JobHours>) {
    println!("job {}: {}", job.id, job.status);
    println!(
        "windows: {}/{}, attempts: {}",
        job.chunks_done, job.chunks_total, job.attempts
    );
    println!(
        "days: {} from CoinGecko, {} from Coinbase Exchange (the second source)",
        job.records_fetched, job.fallback_days
    );
    if let Some(hours) = hours {
        println!(
            "hours: {} stored, {} without trades (never fetched again), {} missing",
            hours.hours_fetched, hours.hours_without_trades, hours.hours_missing
        );
    }
    if job.out_of_plan_days > 0 {
        println!(
            "out of plan: {} day(s) older than the CoinGecko plan reaches, and no second source had them",
            job.out_of_plan_days
        );
    }
    if !job.gap_dates.is_empty() {
        println!(
            "missing ({} day(s)): {}",
            job.gaps_detected,
            gap_list(&job.gap_dates)
        );
    }
    if let Some(message) = &job.error_message {
        println!("why: {message}");
    }
    match job.status {
        JobStatus::Pending => println!(
            "the job was handed back to the queue; any worker (price-history worker) resumes it from its checkpoint"
        ),
        // Handed back, and already taken up by a worker sharing the database.
        JobStatus::Running => println!(
            "the job was handed back and another worker has taken it up; follow it with GET /api/v1/ingestion-jobs/{}",
            job.id
        ),
        _ => {}
    }
}

/// The first [`GAPS_SHOWN`] gap dates, `...` for the rest.
fn gap_list(dates: &[NaiveDate]) -> String {
    let shown: Vec<String> = dates
        .iter()
        .take(GAPS_SHOWN)
        .map(NaiveDate::to_string)
        .collect();
    let more = if dates.len() > GAPS_SHOWN {
        ", ..."
    } else {
        ""
    };
    format!("{}{more}", shown.join(", "))
}

fn exit_code(status: JobStatus) -> ExitCode {
    match status {
        JobStatus::Completed | JobStatus::CompletedWithGaps => ExitCode::SUCCESS,
        JobStatus::Pending | JobStatus::Running => ExitCode::from(3),
        JobStatus::Failed | JobStatus::Cancelled => ExitCode::FAILURE,
    }
}
