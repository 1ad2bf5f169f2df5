//! The worker: takes one job at a time off the queue and runs it, and decides from the
//! attempt's outcome what the queue and `ingestion_jobs` should say.

use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{HasherRng, RetryPolicy};
use apalis::layers::tracing::TraceLayer;
use apalis::prelude::*;
use sqlx::PgPool;

use super::patient::PatientStorage;
use super::{IngestTask, queue_config};
use crate::domain::{JobStatus, today_utc};
use crate::ingest::{self, Ingestor, JobError, Outcome};
use crate::shutdown::Shutdown;
use crate::store::gaps;
use crate::store::ingestion_jobs::{self, Ending, JobRecord};
use crate::store::queue_lease::{self, Lease};

/// A job started this many times beyond `JOB_MAX_ATTEMPTS` (every takeover after a crash
/// and every hand-off at shutdown starts it again) is failed rather than started once
/// more: it is probably what kills the process.
pub const MAX_TAKEOVERS: u32 = 10;

/// How long a shutting-down worker waits for its job to reach a window boundary.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique to this process incarnation; see [`worker_name`].
    pub name: String,
    /// `JOB_LEASE_SECS`: silence after which another worker takes the job over.
    pub lease: Duration,
    /// `JOB_MAX_ATTEMPTS`: attempts of a job that fails transiently.
    pub max_attempts: u32,
    /// First delay before a job is retried after a transient failure; doubles each time.
    pub retry_base_delay: Duration,
}

/// `price-history-<host>-<pid>-<ulid>`: readable, and never reused by a restarted process.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "price-history-{host}-{}-{}",
        std::process::id(),
        ulid::Ulid::generate()
    )
}

/// What every run of the handler shares.
#[derive(Clone)]
struct WorkerState {
    ingestor: Ingestor,
    max_attempts: u32,
    /// Raised when shutdown begins: the running job stops at its next window boundary.
    shutdown: Shutdown,
}

/// Runs a worker until `shutdown` is raised, then lets the current job reach a window
/// boundary, hands it back to the queue and returns.
pub async fn run_worker(
    pool: PgPool,
    ingestor: Ingestor,
    options: WorkerOptions,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    tokio::spawn(reconcile_orphans(
        pool.clone(),
        options.lease,
        shutdown.clone(),
    ));
    let state = Arc::new(WorkerState {
        ingestor,
        max_attempts: options.max_attempts,
        shutdown: shutdown.clone(),
    });
    let base_name = options.name.clone();
    tracing::info!(worker = %base_name, lease_secs = options.lease.as_secs(), "worker starting");
    let monitor = Monitor::new()
        .register(move |restarts| {
            let backoff = ExponentialBackoffMaker::new(
                options.retry_base_delay.max(Duration::from_millis(1)),
                Duration::from_secs(120).max(options.retry_base_delay),
                0.5,
                HasherRng::default(),
            )
            .expect("backoff bounds are ordered")
            .make_backoff();
            // A restarted worker takes a new name: the old one may still hold its lock.
            let name = if restarts == 0 { base_name.clone() } else { format!("{base_name}-r{restarts}") };
            WorkerBuilder::new(name)
                .backend(
                    PatientStorage::<IngestTask>::new(&pool, queue_config(options.lease))
                        .poll_with(wake_ups(pool.clone())),
                )
                .data(state.clone())
                .concurrency(1)
                .retry(RetryPolicy::retries(options.max_attempts.saturating_sub(1) as usize).with_backoff(backoff))
                .catch_panic()
                .layer(TraceLayer::new().on_failure(log_failure))
                .build(handle)
        })
        .should_restart(|ctx, error| {
            tracing::error!(worker = ctx.name(), %error, "worker stopped on an error; restarting it");
            true
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT);
    monitor
        .run_with_signal(async move {
            shutdown.recv().await;
            tracing::info!("shutting down: the current job stops after its window");
            Ok(())
        })
        .await?;
    Ok(())
}

/// apalis's tracing layer, except for the level of a failed attempt: its default logs every
/// one at ERROR, the hand-off of every SIGTERM included. Here a hand-off (the only
/// `RetryAfterError`) is DEBUG, a failure that will be retried WARN, and only the end of a
/// job for good (`AbortError`: a permanent failure, a panic, too many starts) ERROR. The
/// handler logs each outcome itself too, with the job's id.
fn log_failure(error: &BoxDynError, latency: Duration, _span: &tracing::Span) {
    let done_in_ms = latency.as_millis() as u64;
    if error.downcast_ref::<RetryAfterError>().is_some() {
        tracing::debug!(done_in_ms, result = %error, "task.failed");
    } else if error.downcast_ref::<AbortError>().is_some() {
        tracing::error!(done_in_ms, result = %error, "task.failed");
    } else {
        tracing::warn!(done_in_ms, result = %error, "task.failed");
    }
}

/// How long after a notification the worker is woken a second time.
const ECHO_AFTER: Duration = Duration::from_millis(50);

/// The channel apalis-postgres notifies on when a job is inserted (and ours when a job is
/// re-queued); the payload is JSON with the job's `job_type`.
const NEW_JOBS_CHANNEL: &str = "apalis::job::insert";

/// Wake-ups for an idle worker, each of which makes it look for a job:
/// - one as soon as it is listening, for jobs queued before it listened;
/// - one per new or re-queued job of our queue (LISTEN/NOTIFY), delivered twice, at once
///   and again [`ECHO_AFTER`] later: apalis consumes a notification even when it arrives
///   while a fetch is in flight, a fetch that cannot see the new job yet;
/// - one after the listener lost its connection, since notifications may have been lost.
///
/// The task ends with the worker that reads the stream.
pub fn wake_ups(pool: PgPool) -> impl futures::Stream<Item = ()> + Unpin + Send + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            if let Ok(mut listener) = sqlx::postgres::PgListener::connect_with(&pool).await
                && listener.listen(NEW_JOBS_CHANNEL).await.is_ok()
            {
                let _ = tx.send(());
                loop {
                    let notification = tokio::select! {
                        () = tx.closed() => return,
                        notification = listener.try_recv() => notification,
                    };
                    match notification {
                        Ok(Some(notification)) if is_for_our_queue(notification.payload()) => {
                            let _ = tx.send(());
                            let echo = tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(ECHO_AFTER).await;
                                let _ = echo.send(());
                            });
                        }
                        Ok(Some(_)) => {}
                        // The connection was lost; the next call reconnects.
                        Ok(None) => {
                            let _ = tx.send(());
                        }
                        Err(_) => break,
                    }
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    // apalis's StreamStrategy polls its stream once per poll of the worker and drops the
    // item; a stream that answered `Ready` has registered no waker, so a notification
    // sent afterwards would wake nobody (measured: a job waited 9.8 s, for the next
    // heartbeat). So every wake-up already sent is taken at once, and the stream is
    // polled until `Pending`, which leaves the worker's waker registered for the next.
    futures::stream::poll_fn(move |cx| {
        use std::task::Poll;
        let mut woken = false;
        loop {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(())) => woken = true,
                Poll::Ready(None) => return Poll::Ready(woken.then_some(())),
                Poll::Pending if woken => return Poll::Ready(Some(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
}

fn is_for_our_queue(payload: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .is_ok_and(|event| event.get("job_type").and_then(|t| t.as_str()) == Some(super::QUEUE))
}

/// One attempt of one job. The `Result` tells apalis what to do next: `Ok` ends the task,
/// a plain error retries it after a back-off, `AbortError` ends it for good, and
/// `RetryAfterError` puts it back as pending for any worker (a hand-off at shutdown).
async fn handle(
    task: IngestTask,
    attempt: Attempt,
    task_id: TaskId,
    worker: WorkerContext,
    state: Data<Arc<WorkerState>>,
) -> Result<(), BoxDynError> {
    let id = task.job_id;
    let lease = Lease {
        task_id: task_id.to_string(),
        worker: worker.name().to_owned(),
    };
    let pool = &state.ingestor.pool;
    let attempt_no = i32::try_from(attempt.current()).unwrap_or(i32::MAX);
    let Some(job) = ingestion_jobs::begin_attempt(pool, id, attempt_no)
        .await
        .map_err(retry_later)?
    else {
        tracing::info!(job_id = %id, "job is no longer active (cancelled or finished); nothing to do");
        return Ok(());
    };
    if job.attempts as u32 > state.max_attempts + MAX_TAKEOVERS {
        let message = format!(
            "the job was started {} times: its worker died or was stopped mid-run too often. \
             Check the worker's logs for a crash, then submit the job again.",
            job.attempts
        );
        fail(&state.ingestor, &job, &message).await?;
        return Err(Box::new(AbortError::new(message)));
    }

    let attempt = ingest::Attempt {
        job: &job,
        lease: Some(&lease),
        stop: &state.shutdown,
    };
    let result = state.ingestor.run(attempt).await;
    let step = policy(result, job.attempts as u32, state.max_attempts);
    step.record(&state.ingestor, &job).await?;
    step.log(id);
    step.next
}

/// What the worker does after an attempt, decided by [`policy`].
struct Step {
    /// What `ingestion_jobs` says of the job from now on.
    record: Record,
    /// The level and the words of the line logged, with the job's id and what the
    /// record says.
    log: (tracing::Level, &'static str),
    /// What apalis does with the task (see [`handle`]).
    next: Result<(), BoxDynError>,
}

/// A write of the job's record.
enum Record {
    /// Nothing: the job ended elsewhere (cancelled), or another worker owns it now.
    Untouched,
    /// The attempt's final word.
    Finish {
        status: JobStatus,
        gap_dates: Vec<chrono::NaiveDate>,
        out_of_plan_days: i32,
        message: Option<String>,
    },
    /// Pending again, saying why (a hand-off, or a retry to come).
    Release(String),
    /// Failed for good, saying why.
    Fail(String),
}

/// The worker's policy, one arm per result of an attempt: what the record says, what
/// is logged, and what apalis does next (`Ok` ends the task, `AbortError` ends it for
/// good, a plain error retries it after a back-off, `RetryAfterError` hands it back).
fn policy(result: Result<Outcome, JobError>, attempts: u32, max_attempts: u32) -> Step {
    use tracing::Level;
    let step = |record, log, next| Step { record, log, next };
    match result {
        Ok(Outcome::Finished {
            status,
            gap_dates,
            out_of_plan_days,
            message,
        }) => {
            let record = Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                message,
            };
            step(record, (Level::INFO, "job finished"), Ok(()))
        }
        // The record belongs to the worker that took over; apalis ignores this worker's
        // result because it no longer holds the lock.
        Ok(Outcome::LeaseLost) => step(
            Record::Untouched,
            (Level::WARN, "job was taken over by another worker; this attempt stopped"),
            Ok(()),
        ),
        Ok(Outcome::Cancelled) => step(
            Record::Untouched,
            (Level::INFO, "job was cancelled; stopped after its current window"),
            Ok(()),
        ),
        Ok(Outcome::Interrupted) => step(
            Record::Release(
                "handed back to the queue at shutdown; another worker resumes it from its checkpoint"
                    .to_owned(),
            ),
            (Level::INFO, "job handed back to the queue"),
            Err(Box::new(RetryAfterError::new(
                "worker shutting down",
                Duration::ZERO,
            ))),
        ),
        Err(JobError::Permanent(message)) => step(
            Record::Fail(message.clone()),
            (Level::ERROR, "job failed"),
            Err(Box::new(AbortError::new(message))),
        ),
        Err(JobError::Transient(reason)) if attempts < max_attempts => {
            let message = format!(
                "attempt {attempts} of {max_attempts} failed and will be retried: {reason}"
            );
            step(
                Record::Release(message.clone()),
                (Level::WARN, "job will be retried"),
                Err(message.into()),
            )
        }
        Err(JobError::Transient(reason)) => {
            let message = format!(
                "failed after {attempts} attempts; the last error was: {}. Submit the job again once the cause is fixed.",
                reason.trim_end_matches('.')
            );
            step(
                Record::Fail(message.clone()),
                (Level::ERROR, "job failed"),
                Err(Box::new(AbortError::new(message))),
            )
        }
    }
}

impl Step {
    /// Writes the record as the policy says; a database error lets the queue try again.
    async fn record(&self, ingestor: &Ingestor, job: &JobRecord) -> Result<(), BoxDynError> {
        let pool = &ingestor.pool;
        match &self.record {
            Record::Untouched => {}
            Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                message,
            } => {
                let ending = Ending {
                    status: *status,
                    gap_dates,
                    out_of_plan_days: *out_of_plan_days,
                    message: message.as_deref(),
                };
                ingestion_jobs::finish(pool, job.id, ending)
                    .await
                    .map_err(retry_later)?;
            }
            Record::Release(message) => {
                ingestion_jobs::release(pool, job.id, message)
                    .await
                    .map_err(retry_later)?;
            }
            Record::Fail(message) => fail(ingestor, job, message).await?,
        }
        Ok(())
    }

    /// Logs the policy's line, with the job's id and what the record says.
    fn log(&self, job_id: uuid::Uuid) {
        let (level, what) = self.log;
        let detail = match &self.record {
            Record::Untouched => String::new(),
            Record::Finish {
                status,
                gap_dates,
                out_of_plan_days,
                ..
            } => format!(
                "{status}; {} gap day(s), {out_of_plan_days} out of plan",
                gap_dates.len()
            ),
            Record::Release(message) | Record::Fail(message) => message.clone(),
        };
        match level {
            tracing::Level::ERROR => tracing::error!(%job_id, %detail, "{what}"),
            tracing::Level::WARN => tracing::warn!(%job_id, %detail, "{what}"),
            _ => tracing::info!(%job_id, %detail, "{what}"),
        }
    }
}

/// Ends the job as failed, with the days of its range still missing, so that a failed
/// job says what it left undone as a finished one does.
async fn fail(ingestor: &Ingestor, job: &JobRecord, message: &str) -> Result<(), BoxDynError> {
    let pool = &ingestor.pool;
    let missing = gaps::missing_days(pool, job.symbol, job.range.start(), job.range.end())
        .await
        .map_err(retry_later)?;
    let reach = ingestor.reach.current(pool).await.map_err(retry_later)?;
    let (gap_dates, out_of_plan) = reach.split(missing, today_utc());
    let ending = Ending {
        status: JobStatus::Failed,
        gap_dates: &gap_dates,
        out_of_plan_days: out_of_plan.len() as i32,
        message: Some(message),
    };
    ingestion_jobs::finish(pool, job.id, ending)
        .await
        .map_err(retry_later)?;
    Ok(())
}

/// A database error while recording the outcome: let the queue try the job again.
fn retry_later(e: sqlx::Error) -> BoxDynError {
    format!("could not update the job record: {e}").into()
}

/// Sets back to `pending` every job recorded as running that no live worker holds: its
/// process died and nobody has taken it over yet. Without this, a job whose only worker
/// was killed would read `running` until some worker came back. Runs until `shutdown`.
pub async fn reconcile_orphans(pool: PgPool, lease: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval((lease / 3).max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.recv() => return,
        }
        if let Err(e) = reconcile_once(&pool, lease).await {
            tracing::debug!(error = %e, "could not check for orphaned jobs; will try again");
        }
    }
}

async fn reconcile_once(pool: &PgPool, lease: Duration) -> sqlx::Result<()> {
    let quiet = ingestion_jobs::running_and_quiet(pool, lease).await?;
    if quiet.is_empty() {
        return Ok(());
    }
    let task_ids: Vec<String> = quiet
        .iter()
        .map(|id| super::task_id(*id).to_string())
        .collect();
    let live = queue_lease::held_by_live_workers(pool, &task_ids, lease).await?;
    let orphans: Vec<uuid::Uuid> = quiet
        .into_iter()
        .zip(task_ids)
        .filter(|(_, task)| !live.contains(task))
        .map(|(id, _)| id)
        .collect();
    if !orphans.is_empty() {
        let released = ingestion_jobs::release_quiet(
            pool,
            &orphans,
            lease,
            "its worker stopped answering; the job waits for a worker to take it over from its checkpoint",
        )
        .await?;
        if released > 0 {
            tracing::warn!(jobs = released, "jobs whose worker died are pending again");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is<E: std::error::Error + 'static>(next: &Result<(), BoxDynError>) -> bool {
        next.as_ref()
            .err()
            .is_some_and(|e| e.downcast_ref::<E>().is_some())
    }

    #[test]
    fn a_transient_failure_is_retried_until_the_last_attempt_then_fails_the_job() {
        let early = policy(Err(JobError::Transient("HTTP 503".into())), 1, 3);
        let Record::Release(message) = &early.record else {
            panic!("not released");
        };
        assert_eq!(
            message,
            "attempt 1 of 3 failed and will be retried: HTTP 503"
        );
        assert!(early.next.is_err());
        assert!(!is::<AbortError>(&early.next) && !is::<RetryAfterError>(&early.next));

        let last = policy(Err(JobError::Transient("HTTP 503.".into())), 3, 3);
        let Record::Fail(message) = &last.record else {
            panic!("not failed");
        };
        assert!(
            message.starts_with("failed after 3 attempts; the last error was: HTTP 503. Submit"),
            "{message}"
        );
        assert!(is::<AbortError>(&last.next));
    }

    #[test]
    fn a_permanent_failure_fails_the_job_at_once_and_a_shutdown_hands_it_back() {
        let permanent = policy(Err(JobError::Permanent("refused".into())), 1, 3);
        assert!(matches!(&permanent.record, Record::Fail(m) if m == "refused"));
        assert!(is::<AbortError>(&permanent.next));
        assert_eq!(permanent.log.0, tracing::Level::ERROR);

        let interrupted = policy(Ok(Outcome::Interrupted), 1, 3);
        assert!(matches!(interrupted.record, Record::Release(_)));
        assert!(is::<RetryAfterError>(&interrupted.next));
    }

    #[test]
    fn a_job_that_ended_elsewhere_is_left_as_it_is() {
        for outcome in [Outcome::Cancelled, Outcome::LeaseLost] {
            let step = policy(Ok(outcome), 1, 3);
            assert!(matches!(step.record, Record::Untouched));
            assert!(step.next.is_ok());
        }
        let finished = policy(
            Ok(Outcome::Finished {
                status: JobStatus::Completed,
                gap_dates: vec![],
                out_of_plan_days: 0,
                message: None,
            }),
            1,
            3,
        );
        assert!(matches!(
            finished.record,
            Record::Finish {
                status: JobStatus::Completed,
                ..
            }
        ));
        assert!(finished.next.is_ok());
    }

    /// Kills `delete !` in `worker_name`'s filter: the name shows the host it runs on,
    /// so that an operator can tell the replicas apart (`sync_ticks.acted_by`, the queue's
    /// `lock_by`).
    #[test]
    fn a_worker_is_named_after_its_host_and_process_and_never_twice_alike() {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let name = worker_name();
        let prefix = format!("price-history-{host}-{}-", std::process::id());
        assert!(
            name.starts_with(&prefix),
            "{name} should start with {prefix}"
        );
        assert_ne!(name, worker_name());
    }
}
