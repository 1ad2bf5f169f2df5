//! The HTTP server under the API: accepts connections and serves each with hyper, within
//! the limits a public endpoint needs (INTERFACE.md, "What the service never trusts").
//!
//! poem's own `Server` has neither a time limit on a request head nor a connection cap,
//! and its idle time-out waits politely for the request in progress, which a client that
//! stopped reading never finishes. So the accept loop is ours; the endpoint is poem's.
//!
//! - A request head must be complete within [`ConnectionLimits::head`]: from the
//!   connection's opening for its first request (a silent or half-open connection, or
//!   one that trickles its head, is closed), and from the previous answer for the next
//!   (hyper's header-read time-out, which therefore also closes a kept-alive connection
//!   left unused that long).
//! - A connection on which no byte has moved either way for [`ConnectionLimits::idle`]
//!   (a client that stopped reading its answer, say) is closed, request or not.
//! - At most [`ConnectionLimits::max_connections`] connections are served at once; more
//!   wait in the listen backlog until one closes. Event streams never end by themselves,
//!   so they are counted apart: a connection whose request became a stream gives its
//!   place back ([`ConnectionPlace`]) and holds one of the
//!   [`ConnectionLimits::event_streams`] places of the API's job-event listener instead,
//!   which refuses one more with `503`. However many clients ask for streams,
//!   `max_connections` places stay for every other request.
//! - An answer `503` with `Retry-After` closes its connection: a refused client is told
//!   to come back later, and does not keep a connection meanwhile.
//! - A request body must arrive whole within [`ConnectionLimits::body`]; that one is
//!   enforced by the API's body middleware, which answers `408` rather than closing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::http::StatusCode;
use poem::http::header::{self, HeaderValue};
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a client may cost the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after the connection opened (or after
    /// the previous answer).
    pub head: Duration,
    /// A connection with no byte moving either way this long is closed.
    pub idle: Duration,
    /// A request body must arrive whole within this, or the request gets `408`.
    pub body: Duration,
    /// Connections served at once besides the event streams; further ones wait to be
    /// accepted.
    pub max_connections: usize,
    /// Event streams (`GET /api/v1/job-events`) open at once (`EVENT_STREAMS_MAX`); one
    /// more is refused with `503`. Their connections are not counted in
    /// `max_connections`, so streams never take the places other requests need.
    pub event_streams: usize,
}

/// `EVENT_STREAMS_MAX` when not set: a page open in 256 browsers at once.
pub const DEFAULT_EVENT_STREAMS: usize = 256;

impl Default for ConnectionLimits {
    /// 10 s for a head or a body (a real client sends either in milliseconds), 60 s of
    /// silence, 1024 connections and 256 streams: far above what the API's users need,
    /// far below what the process's file descriptors (1280 sockets, a few more for the
    /// database pool and logs) and memory allow.
    fn default() -> Self {
        Self {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(10),
            max_connections: 1024,
            event_streams: DEFAULT_EVENT_STREAMS,
        }
    }
}

/// Sockets and files the process needs besides its connections: the listener, the
/// database pool, the event listener, the CoinGecko client, logs.
const OTHER_FILES: u64 = 128;

/// Raises the process's soft limit on open files to what `limits` need, up to the hard
/// limit: many systems start processes with a soft limit of 1024, under the 1024
/// connections and the streams the API serves, and a process may raise its own soft
/// limit. Says so at start when even the hard limit is too low, since the connections
/// over it would then be refused (the accept loop waits and goes on).
pub fn raise_open_files_limit(limits: &ConnectionLimits) {
    let needed = (limits.max_connections + limits.event_streams) as u64 + OTHER_FILES;
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return;
    }
    if current.rlim_cur >= needed {
        return;
    }
    let wanted = libc::rlimit {
        rlim_cur: needed.min(current.rlim_max),
        rlim_max: current.rlim_max,
    };
    // SAFETY: as above.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0;
    if !raised || wanted.rlim_cur < needed {
        tracing::warn!(
            needed,
            soft = if raised {
                wanted.rlim_cur
            } else {
                current.rlim_cur
            },
            hard = current.rlim_max,
            "the open-files limit (ulimit -n) is below what the API's connections and event streams need; raise it"
        );
    }
}

/// Serves `endpoint` on `listener` until `shutdown` resolves; then stops accepting, lets
/// the requests in flight finish for up to `grace`, and returns.
pub async fn run<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let local = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (socket, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: not a reason to stop serving the others.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            socket,
            (local, remote),
            endpoint.clone(),
            limits,
            closed.clone(),
            permit,
        ));
    }

    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The connection's place among [`ConnectionLimits::max_connections`], reachable from
/// its requests (as a request extension): a request that turns into an endless stream,
/// counted by a cap of its own, gives the place back for other clients.
#[derive(Clone)]
pub struct ConnectionPlace(Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>);

impl ConnectionPlace {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    /// Gives the place back for another connection; this one is served on regardless.
    pub fn release(&self) {
        if let Ok(mut place) = self.0.lock() {
            place.take();
        }
    }
}

/// One connection, from accept to close: hyper with a header-read time-out, watched for
/// a first head that never completes and for silence.
async fn serve_connection<E>(
    socket: TcpStream,
    addrs: (SocketAddr, SocketAddr),
    endpoint: Arc<E>,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let _ = socket.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: socket,
        activity: activity.clone(),
    });
    // Dropped with the connection, unless a stream gave it back earlier.
    let place = ConnectionPlace::new(permit);
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request: http::Request<Incoming>| {
            activity.requested.store(true, Ordering::Relaxed);
            let answered = answer(endpoint.clone(), request, addrs, place.clone());
            async move { Ok::<_, Infallible>(hyper::Response::from(answered.await)) }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head);
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);

    let mut shutting_down = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = closing.changed(), if !shutting_down => {
                if changed.is_err() || *closing.borrow() {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= activity.deadline(&limits) {
                    tracing::debug!(remote = %addrs.1, "closing a connection that stalled");
                    return;
                }
            }
        }
    }
}

/// One request of a connection, answered by poem's endpoint. An answer `503` with
/// `Retry-After` closes the connection.
async fn answer<E>(
    endpoint: Arc<E>,
    request: http::Request<Incoming>,
    (local, remote): (SocketAddr, SocketAddr),
    place: ConnectionPlace,
) -> Response
where
    E: Endpoint<Output = Response> + 'static,
{
    let mut request = poem::Request::from((
        request,
        LocalAddr(Addr::SocketAddr(local)),
        RemoteAddr(Addr::SocketAddr(remote)),
        Scheme::HTTP,
    ));
    request.extensions_mut().insert(place);
    let mut response = endpoint.get_response(request).await;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response.headers().contains_key(header::RETRY_AFTER)
    {
        // hyper ends the connection after an answer that says so.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What the watchdog of one connection knows: when it opened, when a byte last moved,
/// whether a request head has arrived.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last byte read or written.
    last_io_ms: AtomicU64,
    /// A complete request head has arrived (hyper called the service).
    requested: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            requested: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        let idle_until = self.opened
            + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
            + limits.idle;
        if self.requested.load(Ordering::Relaxed) {
            idle_until
        } else {
            idle_until.min(self.opened + limits.head)
        }
    }
}

/// The socket, noting every byte that moves.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.head, Duration::from_secs(10));
        assert_eq!(limits.idle, Duration::from_secs(60));
        assert_eq!(limits.body, Duration::from_secs(10));
        assert_eq!(limits.max_connections, 1024);
        assert_eq!(limits.event_streams, 256);
    }

    #[test]
    fn the_open_files_limit_is_raised_to_what_the_connections_need() {
        let limits = ConnectionLimits::default();
        raise_open_files_limit(&limits);
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct passed to it.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert!(now.rlim_cur >= (1024 + 256 + OTHER_FILES).min(now.rlim_max));
    }

    #[tokio::test]
    async fn a_connection_without_a_request_has_until_the_head_limit_then_until_idle() {
        let limits = ConnectionLimits::default();
        let activity = Activity::new();
        assert_eq!(activity.deadline(&limits), activity.opened + limits.head);
        activity.requested.store(true, Ordering::Relaxed);
        assert_eq!(activity.deadline(&limits), activity.opened + limits.idle);
        tokio::time::sleep(Duration::from_millis(20)).await;
        activity.touch();
        assert!(
            activity.deadline(&limits) >= activity.opened + limits.idle + Duration::from_millis(20)
        );
    }
}
