//! The worker: takes one job at a time off the queue and runs it under its lease; what
//! follows each attempt is `policy`'s to say.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{HasherRng, RetryPolicy};
use apalis::layers::tracing::TraceLayer;
use apalis::prelude::*;
use futures::FutureExt;
use sqlx::PgPool;

use super::lease::{self, Lease};
use super::orphans::reconcile_orphans;
use super::patient::PatientStorage;
use super::policy::{fail, policy, retry_later};
use super::wake_ups::wake_ups;
use super::{IngestTask, queue_config, task_id};
use crate::ingest::{self, Ingestor, JobError, Outcome};
use crate::shutdown::Shutdown;
use crate::store::ingestion_jobs::{self, JobRecord};
use crate::store::patience::patiently;

/// A job started this many times beyond `JOB_MAX_ATTEMPTS`, its hand-offs at shutdown
/// left out (every takeover after a crash starts it again), is failed rather than
/// started once more: it is probably what kills the process.
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
    /// `JOB_LEASE_SECS`.
    lease: Duration,
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
        lease: options.lease,
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
                // The policy decides when a job has failed too often (from its record,
                // where hand-offs are not failures), and ends it with an `AbortError`;
                // apalis's own count takes in every hand-off and must never stop a retry
                // the record announced. A hand-off is never retried here: it is for
                // another worker.
                .retry(
                    RetryPolicy::retries(usize::MAX)
                        .with_backoff(backoff)
                        .retry_if(|e: &BoxDynError| e.downcast_ref::<RetryAfterError>().is_none()),
                )
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

/// Waits while a job of the same coin cancelled lately is still held by a live worker:
/// one finishing the window it had begun when the cancel came (the cancel frees the coin at
/// once, as the API answers `cancelled`). Two jobs of one coin never run at the same time
/// (INTERFACE, "Durability"), and this one plans its windows knowing what that window
/// stored. Bounded by the lease: a worker silent that long holds nothing. False when the
/// stop came first.
async fn after_cancelled_attempts(state: &WorkerState, job: &JobRecord) -> bool {
    const LOOK_AGAIN: Duration = Duration::from_millis(250);
    let pool = &state.ingestor.pool;
    let mut said = false;
    loop {
        let held = patiently("the coin's cancelled jobs", || async {
            let cancelled =
                ingestion_jobs::cancelled_lately(pool, job.symbol, job.id, state.lease).await?;
            if cancelled.is_empty() {
                return Ok(Vec::new());
            }
            let tasks: Vec<String> = cancelled
                .iter()
                .map(|id| task_id(*id).to_string())
                .collect();
            lease::held_by_live_workers(pool, &tasks, state.lease).await
        });
        match held.await {
            Ok(held) if held.is_empty() => return true,
            Ok(_) => {}
            // Not an outage (those are waited out): the attempt goes on as before this rule.
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "could not tell whether a cancelled job of the coin still runs");
                return true;
            }
        }
        if !said {
            tracing::info!(job_id = %job.id, symbol = %job.symbol, "a cancelled job of the coin is finishing its window; this one starts after it");
            said = true;
        }
        tokio::select! {
            () = state.shutdown.recv() => return false,
            () = tokio::time::sleep(LOOK_AGAIN) => {}
        }
    }
}

/// `attempt`'s result, or, when it panics, a permanent failure quoting the panic.
async fn unless_it_panics<T>(
    attempt: impl Future<Output = Result<T, JobError>>,
) -> Result<T, JobError> {
    AssertUnwindSafe(attempt)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(JobError::Permanent(panicked(panic.as_ref()))))
}

/// What a job that panicked says: the panic's words, and what to do.
fn panicked(panic: &(dyn std::any::Any + Send)) -> String {
    let words = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!(
        "the worker met a bug and gave up on the job ({words}); what it stored is kept. Report it with the worker's log, then submit the job again."
    )
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
    // An unavailable database is waited out here as in the attempt: an error would spend
    // the queue's retries and leave the record active with no task to run it.
    let begin = || ingestion_jobs::begin_attempt(pool, id, attempt_no);
    let Some(job) = patiently("the job's start", begin)
        .await
        .map_err(retry_later)?
    else {
        tracing::info!(job_id = %id, "job is no longer active (cancelled or finished); nothing to do");
        return Ok(());
    };
    let starts = job.attempts.saturating_sub(job.handbacks).max(0) as u32;
    if starts > state.max_attempts + MAX_TAKEOVERS {
        let message = format!(
            "the job was started {starts} times (hand-offs at shutdown left out): its worker \
             died mid-run too often. Check the worker's logs for a crash, then submit the job again."
        );
        fail(&state.ingestor, &job, &lease, &message).await?;
        return Err(Box::new(AbortError::new(message)));
    }

    let attempt = ingest::Attempt {
        job: &job,
        fence: Some(&lease),
        stop: &state.shutdown,
    };
    let result = if after_cancelled_attempts(&state, &job).await {
        // A panic (a bug) would otherwise end the queue's task with the record left
        // `running`, then pending with no task to run it, and the coin refused every job
        // for good.
        unless_it_panics(state.ingestor.run(attempt)).await
    } else {
        Ok(Outcome::Interrupted)
    };
    let step = policy(result, job.failures.max(0) as u32, state.max_attempts);
    if !step.record(&state.ingestor, &job, &lease).await? {
        tracing::warn!(job_id = %id, "job was taken over by another worker before this attempt's end was written; its record is left to that worker");
        return Ok(());
    }
    step.log(id);
    step.next
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn a_panicking_attempt_becomes_a_permanent_failure_quoting_the_panic() {
        let attempt = async {
            let words = String::from("index out of bounds");
            if !words.is_empty() {
                panic!("{words}");
            }
            Ok::<(), JobError>(())
        };
        let result = unless_it_panics(attempt).await;
        let Err(JobError::Permanent(message)) = result else {
            panic!("a permanent failure");
        };
        assert!(message.contains("(index out of bounds)"), "{message}");
        assert!(panicked(&42_u8).contains("(no message)"));
    }
}
