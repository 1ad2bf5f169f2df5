//! The durable queue, and the one home of everything that knows apalis: apalis-postgres
//! storage in the `apalis` schema, the submission of a job (its record and its queue entry
//! in one transaction), and the worker that runs jobs one at a time, keeping
//! `ingestion_jobs` true at every step.
//!
//! - `contract`: what we rely on of apalis beyond its Rust API (its schema, channel and
//!   status strings, and our trigger on its table), checked by `tests/it/queue_contract.rs`;
//! - `patient`: the backend, built from apalis-postgres's public parts, whose queries
//!   wait out a database outage;
//! - `lease`: who holds a job (the fence each attempt's checkpoints pass);
//! - `wake_ups`: LISTEN/NOTIFY for idle workers; `orphans`: the sweep of jobs whose
//!   worker died;
//! - `worker`: the worker and its handler; `policy`: what follows each attempt;
//! - `retention`: deleting finished jobs with their queue rows (and old ticks and
//!   imports) after `JOB_RETENTION_DAYS`, one process at a time, in small batches.
//!
//! apalis-postgres 1.0's defaults are wrong for us, so each is set on purpose:
//! - batch size 1: a fetched-but-waiting job gets no heartbeat and can be run twice;
//! - heartbeat and missed beats from `JOB_LEASE_SECS` (the default is 300 s);
//! - a worker name unique to each process incarnation: a restart under the same name
//!   would leave its old job `Running` forever;
//! - LISTEN/NOTIFY pick-up, so an idle worker starts a job at once, not on its next beat;
//! - no `max_attempts` of its own (the backend's default is 25): its count takes in every
//!   hand-off at shutdown, so it would end a job that never failed; `policy` counts a
//!   job's failures in its record and ends it after `JOB_MAX_ATTEMPTS` of them;
//! - its queries wait out a database outage (`patient`): the worker would otherwise
//!   die of the first failed poll and drop the attempt in flight.

pub mod contract;
mod lease;
mod orphans;
mod patient;
mod policy;
mod retention;
mod wake_ups;
mod worker;

use std::time::{Duration, SystemTime};

use apalis::prelude::{TaskBuilder, TaskId};
use apalis_postgres::{Config, PgTask};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use ulid::Ulid;
use uuid::Uuid;

use crate::store::ingestion_jobs::{self, Insertion, JobRecord, NewJob};

pub use orphans::reconcile_orphans;
pub use retention::{BATCH as RETENTION_BATCH, Pruned, prune, run_retention};
pub use wake_ups::wake_ups;
pub use worker::{MAX_TAKEOVERS, WorkerOptions, run_worker, worker_name};

/// The queue's name in `apalis.jobs.job_type`.
pub const QUEUE: &str = "price-history::ingest";

/// What the queue carries: only the job's id. Everything else is read from
/// `ingestion_jobs`, the one place that is kept up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestTask {
    pub job_id: Uuid,
}

/// Heartbeats three times per lease, so a worker is declared dead after missing all
/// three: a lease of 30 s is a 10 s heartbeat.
pub(crate) fn queue_config(lease: Duration) -> Config {
    const MISSED_HEARTBEATS: u32 = 3;
    let heartbeat = (lease / MISSED_HEARTBEATS).max(Duration::from_secs(1));
    Config::default()
        .queue(QUEUE)
        .batch_size(1)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(MISSED_HEARTBEATS as usize)
}

/// A job's id on the queue: its UUIDv7 read as a ULID.
pub fn task_id(job_id: Uuid) -> TaskId {
    TaskId::from_ulid(Ulid::from(job_id.as_u128()))
}

/// Why a submission was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("job {0} is already pending or running; wait for it to finish or cancel it")]
    JobInProgress(Uuid),
    #[error("another job became active and finished while this one was submitted; submit again")]
    Contended,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("could not queue the job: {0}")]
    Queue(String),
}

/// Records `jobs` and puts them on the queue in one transaction, a statement for each
/// table, as [`submit`] does one: a tick's jobs cost one commit, not one each. A job whose
/// coin has an active job is left out; the records of those queued are returned.
pub async fn submit_all(pool: &PgPool, jobs: &[NewJob]) -> Result<Vec<JobRecord>, SubmitError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let records = ingestion_jobs::insert_many(&mut tx, jobs).await?;
    let tasks = records
        .iter()
        .map(|record| task(record.id, Turn::InOrder))
        .collect::<Result<Vec<_>, _>>()?;
    apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, tasks)
        .await
        .map_err(|e| SubmitError::Queue(e.to_string()))?;
    tx.commit().await?;
    Ok(records)
}

/// Where a job's entry stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// After every entry before it: the schedule's jobs, and those tracking queues.
    InOrder,
    /// Ahead of every `InOrder` entry, in the order asked among its kind: a job someone
    /// waits on (`POST /api/v1/ingestion-jobs`, `backfill`).
    Waited,
}

/// How far back the entry of a [`Turn::Waited`] job is dated. Workers take the entry due
/// first (apalis-postgres's fetch orders by `run_at`), so a job someone waits on does not
/// wait behind a tick's or an import's thousand, and `backfill`'s own worker runs its own
/// job first.
const WAITED_AHEAD_BY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// An entry's `max_attempts`: the largest the column holds. apalis-postgres never fetches
/// a failed entry past it again, and its count of attempts takes in every hand-off at
/// shutdown; the worker's policy ends a job after `JOB_MAX_ATTEMPTS` failures instead,
/// counted in its record. Migration `20261221000000` gives it to entries queued earlier.
pub const ENTRY_MAX_ATTEMPTS: usize = i32::MAX as usize;

/// The queue's entry for job `job_id`.
fn task(job_id: Uuid, turn: Turn) -> Result<PgTask, SubmitError> {
    let payload = serde_json::to_vec(&IngestTask { job_id })
        .map_err(|e| SubmitError::Queue(e.to_string()))?;
    let entry = TaskBuilder::new(payload)
        .task_id(task_id(job_id))
        .max_attempts(ENTRY_MAX_ATTEMPTS);
    let entry = match turn {
        Turn::InOrder => entry,
        Turn::Waited => entry.run_at_time(SystemTime::now() - WAITED_AHEAD_BY),
    };
    Ok(entry.build())
}

/// Records the job and puts it on the queue, in its `turn`, in one transaction: a crash
/// between the two leaves neither. The job's queue id is its own UUIDv7 read as a ULID
/// (both are 128 bits led by a millisecond timestamp), so the two tables are joined by one
/// id. A lost race with an active job that ended meanwhile is tried again once, the slot
/// being free then: [`SubmitError::Contended`] only when that is lost too.
pub async fn submit(pool: &PgPool, job: NewJob, turn: Turn) -> Result<JobRecord, SubmitError> {
    match submit_once(pool, job, turn).await {
        Err(SubmitError::Contended) => submit_once(pool, job, turn).await,
        outcome => outcome,
    }
}

async fn submit_once(pool: &PgPool, job: NewJob, turn: Turn) -> Result<JobRecord, SubmitError> {
    let mut tx = pool.begin().await?;
    let record = match ingestion_jobs::insert(&mut tx, job).await? {
        Insertion::Inserted(record) => record,
        Insertion::Busy { active_job_id } => return Err(SubmitError::JobInProgress(active_job_id)),
        Insertion::LostRace => return Err(SubmitError::Contended),
    };
    let entry = task(job.id, turn)?;
    apalis_postgres::queries::push_tasks(&mut *tx, QUEUE, vec![entry])
        .await
        .map_err(|e| SubmitError::Queue(e.to_string()))?;
    tx.commit().await?;
    tracing::info!(job_id = %record.id, symbol = %record.symbol, start = %record.range.start(), end = %record.range.end(), force = record.force, "job submitted");
    Ok(record)
}
