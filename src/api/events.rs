//! Job changes as they are committed, for `GET /api/v1/job-events`: one LISTEN on the
//! `ingestion_jobs` channel per API process, however many clients follow, each change
//! read once and fanned out to every follower.
//!
//! The listener holds one database connection; it is opened with the first follower and
//! closed once nobody follows any more, so an idle API holds none.
//!
//! A stream holds its connection for as long as the client stays: the followers are
//! counted here, up to `EVENT_STREAMS_MAX`, and not among the server's connections for
//! every other request (`server::ConnectionPlace`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use uuid::Uuid;

use crate::store::ingestion_jobs::{self, CHANGES_CHANNEL, JobRecord};

/// Changes a slow follower may fall behind by before it misses some.
const BACKLOG: usize = 256;

/// How often the listener checks whether anybody still follows, when no change comes.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The process's one listener, started on demand.
#[derive(Clone)]
pub struct JobEvents {
    pool: PgPool,
    sender: Arc<Mutex<Option<broadcast::Sender<JobRecord>>>>,
    /// Set on shutdown: every stream ends, so that in-flight requests can finish.
    closed: watch::Sender<bool>,
    /// One permit per open stream, held by the stream until its client goes.
    streams: Arc<Semaphore>,
}

impl JobEvents {
    /// A listener serving at most `max_streams` followers at once.
    pub fn new(pool: PgPool, max_streams: usize) -> Self {
        JobEvents {
            pool,
            sender: Arc::new(Mutex::new(None)),
            closed: watch::Sender::new(false),
            streams: Arc::new(Semaphore::new(max_streams)),
        }
    }

    /// A place for one more stream, kept until the permit drops; `None` when all are
    /// taken (never waits: a client over the cap is told at once).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// Ends every stream and the listener; later subscribers get a stream that ends at
    /// once. Called when the server shuts down, since an event stream never ends by itself.
    pub fn close(&self) {
        let mut slot = self.sender.lock().expect("not poisoned");
        self.closed.send_replace(true);
        *slot = None;
    }

    /// Every job change from now on. Listening starts before this returns, so a client
    /// that reads the job list after subscribing misses nothing.
    pub async fn subscribe(&self) -> sqlx::Result<broadcast::Receiver<JobRecord>> {
        if *self.closed.borrow() {
            return Ok(broadcast::channel(1).1);
        }
        if let Some(sender) = self.sender.lock().expect("not poisoned").as_ref() {
            return Ok(sender.subscribe());
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        let mut slot = self.sender.lock().expect("not poisoned");
        if *self.closed.borrow() {
            return Ok(broadcast::channel(1).1);
        }
        if let Some(sender) = slot.as_ref() {
            // Another follower started one meanwhile; this listener is dropped.
            return Ok(sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(BACKLOG);
        *slot = Some(sender.clone());
        tokio::spawn(forward(
            listener,
            self.pool.clone(),
            sender,
            self.sender.clone(),
            self.closed.subscribe(),
        ));
        Ok(receiver)
    }
}

/// Reads each announced job once and sends it to the followers, until none is left.
async fn forward(
    mut listener: PgListener,
    pool: PgPool,
    sender: broadcast::Sender<JobRecord>,
    slot: Arc<Mutex<Option<broadcast::Sender<JobRecord>>>>,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        {
            // Deciding under the lock that subscribers take: nobody can join a listener
            // that is about to stop.
            let mut slot = slot.lock().expect("not poisoned");
            if *closed.borrow() {
                return;
            }
            if sender.receiver_count() == 0 {
                *slot = None;
                return;
            }
        }
        let next = tokio::select! {
            next = tokio::time::timeout(IDLE_CHECK, listener.try_recv()) => next,
            _ = closed.changed() => continue,
        };
        let notification = match next {
            Err(_) => continue,
            Ok(Ok(Some(notification))) => notification,
            Ok(lost) => {
                // A change announced while the connection was down is lost: every stream
                // ends (this listener goes with them), so that each follower reconnects
                // and reads the list again; the next follower starts a new listener.
                let error = lost.err().map(|e| e.to_string());
                tracing::warn!(
                    ?error,
                    "job events: the listener lost its connection; ending the streams"
                );
                let mut slot = slot.lock().expect("not poisoned");
                if slot
                    .as_ref()
                    .is_some_and(|current| current.same_channel(&sender))
                {
                    *slot = None;
                }
                return;
            }
        };
        let Ok(id) = notification.payload().parse::<Uuid>() else {
            continue;
        };
        match ingestion_jobs::get(&pool, id).await {
            Ok(Some(job)) => {
                let _ = sender.send(job);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %id, "job events: could not read a changed job"),
        }
    }
}
