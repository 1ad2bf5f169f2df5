//! The queue backend: apalis-postgres's, except that its queries wait out a database
//! outage instead of killing the worker.
//!
//! A backend's table is driven through a [`Persistence`] (register the worker, beat the
//! heart, fetch, record locks and results, hand jobs back) inside apalis-core's
//! [`Persisted`] state machine. When one of those queries fails, the machine turns `Dead`,
//! the worker stream ends with a backend error, the monitor restarts the worker, and the
//! attempt in flight is dropped with it: its window is fetched again and the job waits
//! for a takeover (one more start against its crash-loop guard). Here each step's transaction is tried again while
//! the database is unavailable (`store::patience`), so the machine never sees the outage,
//! and the attempt, which waits for the database in its own queries, goes on. The lease
//! still fences: a heartbeat that cannot reach the database does not refresh the worker's
//! `last_seen`, so an outage longer than `JOB_LEASE_SECS` lets another worker take the job
//! over, and this one's late checkpoint is refused (`queue::lease`).
//!
//! Built from apalis's public parts: [`Persisted`] and its [`TaskPersistLayer`] (the lock
//! and ack events) from apalis-core, and every query from `apalis_postgres::queries`
//! (register, keep-alive, orphan re-enqueue, fetch, results, locks, hand-back), each in the
//! transaction apalis-postgres runs it in. No SQL of apalis is copied.
//!
//! What is still a copy, and why: apalis-postgres's own `Persistence` (`SqlxPersistence`)
//! and the storage that owns its `Persisted` are private to the crate, and its storage
//! reports a failed query only once its machine is dead, with the lock and result events
//! of the attempt gone with it; so it can be neither wrapped nor restarted. This file
//! repeats its wiring instead: which queries each step runs together, how the events split
//! into locks and results, and the three trait impls that hand the machine to a worker.

use std::marker::PhantomData;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::{Backend, PollWith, StreamStrategy, WorkerContext};
use apalis_codec::json::JsonCodec;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{BackendConfig, WireFormatBackend, finalize::Durable};
use apalis_postgres::{Config, Error, PgTask, queries};
use serde_json::Value;
use sqlx::PgPool;
use ulid::Ulid;

use crate::store::patience::{Unavailable, patiently};

impl Unavailable for Error {
    fn is_unavailable(&self) -> bool {
        matches!(self, Error::Database(e) if e.is_unavailable())
    }
}

/// apalis-postgres's storage, patient with the database; see the module's docs.
pub struct PatientStorage<Args> {
    persistence: Persisted<PatientPersistence>,
    codec: JsonCodec,
    _marker: PhantomData<Args>,
}

impl<Args> PatientStorage<Args> {
    pub fn new(pool: &PgPool, config: Config) -> Self {
        let pool = pool.clone();
        PatientStorage {
            persistence: Persisted::new(PatientPersistence { pool, config }),
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
    ) -> Poll<Result<(), Error>> {
        let heartbeat = self.persistence.config.heartbeat_interval;
        self.persistence.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<PgTask, Error>>> {
        self.persistence.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
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

    fn codec(&self) -> &JsonCodec {
        &self.codec
    }
}

/// apalis-postgres's queries, each step in one transaction tried again while the database
/// is unavailable.
#[derive(Debug, Clone)]
pub struct PatientPersistence {
    pool: PgPool,
    config: Config,
}

/// A transaction on the queue's tables, handed to a step and back for the commit.
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

impl PatientPersistence {
    /// Runs `step` in a transaction of its own, the whole transaction tried again while
    /// the database is unavailable; `step` hands the transaction back to be committed.
    /// `what` names the step in the log. (Each step borrows the persistence as `this`, a
    /// shared reference every try can copy.)
    ///
    /// The commit runs to its end in a task of its own, even when the step's future is
    /// dropped: apalis drops its fetch, ack and heartbeat futures when a worker stops, and
    /// a commit cut off after PostgreSQL applied it left sqlx to send a ROLLBACK outside
    /// any transaction (PostgreSQL's warning "there is no transaction in progress" at
    /// SIGTERM).
    async fn transaction<T, F, Fut>(&self, what: &str, step: F) -> Result<T, Error>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, T), Error>>,
    {
        patiently(&format!("the queue's {what}"), || async {
            let (tx, value) = step(self.pool.begin().await?).await?;
            tokio::spawn(tx.commit())
                .await
                .map_err(|e| Error::Database(sqlx::Error::Protocol(e.to_string())))??;
            Ok(value)
        })
        .await
    }

    fn queue(&self) -> &str {
        self.config.queue.as_ref()
    }

    /// The sweep apalis-postgres runs at registration and with every heartbeat: jobs held
    /// by workers silent for the orphan timeout go back to `Pending`.
    async fn reenqueue_orphaned(&self, tx: &mut Tx) -> Result<u64, Error> {
        let dead_for = self.config.orphaned_duration().as_secs();
        queries::reenqueue_orphaned(&mut **tx, self.queue(), dead_for).await
    }
}

impl Persistence for PatientPersistence {
    type Compact = Vec<u8>;
    type Error = Error;
    type Response = Value;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The query's `last_seen` is a type apalis-postgres does not export; it converts
        // from Unix seconds.
        let last_seen = &From::from(now.as_secs() as i64);
        let this = &*self;
        this.transaction("registration", |mut tx| async move {
            this.reenqueue_orphaned(&mut tx).await?;
            queries::register_worker(&mut *tx, this.queue(), worker, last_seen, "PgStorage")
                .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let this = &*self;
        this.transaction("heartbeat", |mut tx| async move {
            queries::keep_alive(&mut *tx, this.queue(), worker).await?;
            this.reenqueue_orphaned(&mut tx).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<PgTask>, Error> {
        let this = &*self;
        this.transaction("fetch", |mut tx| async move {
            let tasks = queries::fetch_next(&mut *tx, &this.config, worker).await?;
            Ok((tx, tasks))
        })
        .await
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<PgTask>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let ids: Vec<String> = tasks
            .iter()
            .filter_map(|task| task.task_id().map(ToString::to_string))
            .collect();
        let (ids, queued) = (&ids, tasks.len());
        let this = &*self;
        this.transaction("hand-back", |mut tx| async move {
            let count =
                queries::reenqueue_abandoned(&mut *tx, this.queue(), worker.name(), ids).await?;
            if count as usize != queued {
                let abandoned = count as usize;
                return Err(Error::ReenqueueMismatch { queued, abandoned });
            }
            Ok((tx, count))
        })
        .await
    }

    /// Locks and results, as apalis-postgres records them (a result wins over a lock of
    /// the same job): a result that could not be written is written once the database is
    /// back, not lost.
    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), Error> {
        let (mut results, mut locks) = (Vec::new(), Vec::new());
        for event in &events {
            match event {
                TaskEvent::Complete(result) => results.push(result),
                TaskEvent::Lock { task_id } => locks.push(task_id.to_string()),
                _ => {}
            }
        }
        locks.retain(|id| {
            !results
                .iter()
                .any(|result| result.task_id().to_string() == *id)
        });
        if locks.is_empty() && results.is_empty() {
            return Ok(());
        }
        let (results, locks) = (&results, &locks);
        let this = &*self;
        this.transaction("record of results", |mut tx| async move {
            if !results.is_empty() {
                queries::handle_results(&mut *tx, results, worker.name()).await?;
            }
            if !locks.is_empty() {
                queries::lock_tasks(&mut *tx, locks, worker.name()).await?;
            }
            Ok((tx, ()))
        })
        .await
    }

    /// Only a sink of the storage would push; jobs are pushed by `queue::submit`.
    async fn push_tasks(&mut self, tasks: Vec<PgTask>) -> Result<(), Error> {
        let tasks = &tasks;
        let this = &*self;
        this.transaction("push", |mut tx| async move {
            queries::push_tasks(&mut *tx, this.queue(), tasks.clone()).await?;
            Ok((tx, ()))
        })
        .await
    }
}
