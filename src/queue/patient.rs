//! The queue backend: apalis-postgres's, except that it waits out a database outage
//! instead of dying of it.
//!
//! apalis-postgres drives its table through a [`Persistence`] (register the worker, beat
//! the heart, fetch, record results) inside apalis-core's [`Persisted`] state machine.
//! When one of those queries fails, the machine turns `Dead`, the worker stream ends with
//! a backend error, the monitor restarts the worker, and the attempt in flight is dropped
//! with it: its window is fetched again and the outage costs one of the job's
//! `JOB_MAX_ATTEMPTS`. Here each query is retried while the database is unavailable
//! (connection lost, server shutting down or starting), so the machine never sees the
//! outage, and the attempt, which waits for the database in its own queries, goes on.
//!
//! The lease still fences: a heartbeat that cannot reach the database does not refresh
//! the worker's `last_seen`, so an outage longer than `JOB_LEASE_SECS` lets another
//! worker take the job over, and this one's late checkpoint is refused
//! (`store::queue_lease`).
//!
//! The queries are apalis-postgres's own (`apalis_postgres::queries`), in the same
//! transactions; only the worker's registration is written out here, since its query
//! takes a type the crate does not export. apalis-postgres's `SqlxPersistence` is not
//! public, which is why this is a copy rather than a wrapper.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{Backend, PollWith, StreamStrategy, WorkerContext};
use apalis_codec::json::JsonCodec;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{BackendConfig, WireFormatBackend, finalize::Durable};
use apalis_postgres::{Config, Error, PgTask, queries};
use serde_json::Value;
use sqlx::PgPool;
use ulid::Ulid;

use crate::store::database::is_unavailable;

/// The first wait before a query is tried again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest wait between two tries: the database is noticed back within seconds.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// apalis-postgres's storage, patient with the database; see the module's docs.
pub struct PatientStorage<Args> {
    persistence: Persisted<PatientPersistence>,
    codec: JsonCodec,
    _marker: PhantomData<Args>,
}

impl<Args> PatientStorage<Args> {
    pub fn new(pool: &PgPool, config: Config) -> Self {
        PatientStorage {
            persistence: Persisted::new(PatientPersistence {
                pool: pool.clone(),
                config,
            }),
            codec: JsonCodec::default(),
            _marker: PhantomData,
        }
    }

    /// Woken by `wake_ups` (LISTEN/NOTIFY) as apalis-postgres's `with_pubsub` is.
    pub fn poll_with<S>(self, wake_ups: S) -> PollWith<Self, StreamStrategy<S>>
    where
        S: futures::Stream<Item = ()> + Unpin + Send + 'static,
    {
        PollWith::new(self, StreamStrategy::new(wake_ups))
    }
}

impl<Args> Backend for PatientStorage<Args> {
    type Task = PgTask;
    type Error = Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let heartbeat = self.persistence.config.heartbeat_interval;
        self.persistence.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<PgTask, Self::Error>>> {
        self.persistence.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.persistence.poll_close(cx, worker)
    }
}

impl<Args> BackendConfig for PatientStorage<Args> {
    type Args = Args;
    type Kind = Durable;
    type Id = Ulid;
    type Config = Config;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Config {
        &self.persistence.config
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        let config = self.persistence.config.clone();
        self.persistence
            .layer(JsonCodec::<Value>::default(), config.batch_size)
            .persist_results(config.persist_results)
            .lock_tasks(config.lock_tasks)
    }
}

impl<Args> WireFormatBackend for PatientStorage<Args> {
    type Codec = JsonCodec;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

/// apalis-postgres's queries, each retried while the database is unavailable.
#[derive(Debug, Clone)]
pub struct PatientPersistence {
    pool: PgPool,
    config: Config,
}

impl PatientPersistence {
    fn queue(&self) -> &str {
        self.config.queue.as_ref()
    }

    fn orphaned_after(&self) -> u64 {
        self.config.orphaned_duration().as_secs()
    }
}

/// Runs `query` until it succeeds or fails for another reason than an unavailable
/// database, waiting a little longer each time (up to [`MAX_RETRY_DELAY`]).
async fn patiently<T, F, Fut>(what: &'static str, mut query: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut delay = FIRST_RETRY_DELAY;
    let mut waited = false;
    loop {
        match query().await {
            Err(Error::Database(e)) if is_unavailable(&e) => {
                if !waited {
                    tracing::warn!(error = %e, "the queue cannot {what}: the database is unavailable; waiting for it");
                    waited = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            result => {
                if waited && result.is_ok() {
                    tracing::info!("the queue can {what} again: the database is back");
                }
                return result;
            }
        }
    }
}

impl Persistence for PatientPersistence {
    type Compact = Vec<u8>;
    type Error = Error;
    type Response = Value;

    /// apalis-postgres's registration (`queries/worker/register.sql`), after the same
    /// sweep of orphaned jobs.
    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        patiently("register its worker", || async {
            let mut tx = self.pool.begin().await?;
            queries::reenqueue_orphaned(&mut *tx, self.queue(), self.orphaned_after()).await?;
            let registered = sqlx::query(
                "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
                 VALUES ($1, $2, 'PgStorage', $3, now()) ON CONFLICT (id) DO UPDATE \
                 SET worker_type = EXCLUDED.worker_type, storage_name = EXCLUDED.storage_name, \
                     layers = EXCLUDED.layers, last_seen = now() \
                 WHERE pg_try_advisory_lock(hashtext(workers.id))",
            )
            .bind(worker.name())
            .bind(self.queue())
            .bind(worker.get_service())
            .execute(&mut *tx)
            .await?;
            if registered.rows_affected() == 0 {
                return Err(Error::WorkerAlreadyExists(worker.name().to_owned()));
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        patiently("beat its heart", || async {
            let mut tx = self.pool.begin().await?;
            queries::keep_alive(&mut *tx, self.queue(), worker).await?;
            queries::reenqueue_orphaned(&mut *tx, self.queue(), self.orphaned_after()).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<PgTask>, Error> {
        patiently("fetch a job", || async {
            let mut tx = self.pool.begin().await?;
            let tasks = queries::fetch_next(&mut *tx, &self.config, worker).await?;
            tx.commit().await?;
            Ok(tasks)
        })
        .await
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<PgTask>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let task_ids: Vec<String> = tasks
            .iter()
            .filter_map(|task| task.task_id().map(ToString::to_string))
            .collect();
        patiently("hand back its jobs", || async {
            let mut tx = self.pool.begin().await?;
            let count =
                queries::reenqueue_abandoned(&mut *tx, self.queue(), worker.name(), &task_ids)
                    .await?;
            if count as usize != tasks.len() {
                return Err(Error::ReenqueueMismatch {
                    queued: tasks.len(),
                    abandoned: count as usize,
                });
            }
            tx.commit().await?;
            Ok(count)
        })
        .await
    }

    /// Locks and results, as apalis-postgres records them: a result that could not be
    /// written is written once the database is back, not lost.
    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), Error> {
        let results: Vec<&queries::ResultPayload> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Complete(payload) => Some(payload),
                _ => None,
            })
            .collect();
        let finished: HashSet<String> = results
            .iter()
            .map(|payload| payload.task_id().to_string())
            .collect();
        let locks: Vec<String> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Lock { task_id, .. } => Some(task_id.to_string()),
                _ => None,
            })
            .filter(|id| !finished.contains(id))
            .collect();
        if locks.is_empty() && results.is_empty() {
            return Ok(());
        }
        patiently("record a job's result", || async {
            let mut tx = self.pool.begin().await?;
            if !results.is_empty() {
                queries::handle_results(&mut *tx, &results, worker.name()).await?;
            }
            if !locks.is_empty() {
                queries::lock_tasks(&mut *tx, &locks, worker.name()).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn push_tasks(&mut self, tasks: Vec<PgTask>) -> Result<(), Error> {
        // Only the queue's sink calls this, and jobs are pushed by `queue::submit`.
        let mut tx = self.pool.begin().await?;
        queries::push_tasks(&mut *tx, self.queue(), tasks).await?;
        tx.commit().await?;
        Ok(())
    }
}
