//! Wake-ups for an idle worker, from PostgreSQL's LISTEN/NOTIFY on apalis's channel
//! (`contract::NEW_JOBS_CHANNEL`). New jobs are announced by apalis-postgres's trigger;
//! jobs handed back or re-enqueued, by ours (migration 20261128000003, see
//! `queue::contract`): without it, such a job would wait for some worker's next
//! heartbeat.

use std::time::Duration;

use sqlx::PgPool;

use super::QUEUE;
use super::contract::NEW_JOBS_CHANNEL;

/// How long after a notification the worker is woken a second time.
const ECHO_AFTER: Duration = Duration::from_millis(50);

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

/// Whether a notification announces a job of our queue: its payload's `job_type`.
fn is_for_our_queue(payload: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(payload)
        .is_ok_and(|event| event.get("job_type").and_then(|t| t.as_str()) == Some(QUEUE))
}
