//! What every fake shares, whatever upstream it plays: listening on loopback, stopping,
//! the record of every call, scripted answers that jump the queue, a delay before every
//! answer, a rate limit over a sliding window, and the reading of a query.
//!
//! A fake is a [`Fake`] of an [`Upstream`]: the upstream says what it keeps (its
//! [`Upstream::Call`] record, its options, its world) and routes its endpoints to
//! [`Shared::respond`], which scripts, records and delays every answer the same way.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use poem::http::{HeaderValue, StatusCode, header};
use poem::listener::TcpAcceptor;
use poem::{Request, Response, Route, Server};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// What a fake upstream is: its options, its record of a call, its world and its routes.
/// Its `Default` is the world it starts with: prices, faults, whatever its answers
/// depend on.
pub trait Upstream: Default + Send + Sync + 'static {
    /// How to start it (where to listen, its limits).
    type Options: Default + Send + Sync;
    /// One request as recorded, before it was answered.
    type Call: Clone + Send + Sync;
    /// As messages name it: `CoinGecko`, `Coinbase`.
    const NAME: &'static str;

    /// Where `options` say to listen.
    fn bind(options: &Self::Options) -> SocketAddr;

    /// How long `options` say to wait before every answer, until told otherwise.
    fn delay(_options: &Self::Options) -> Duration {
        Duration::ZERO
    }

    /// Its endpoints, each answering through [`Shared::respond`].
    fn routes(shared: &Arc<Shared<Self>>) -> Route;
}

/// A running fake. Dropping it (or [`shutdown`](Self::shutdown)) stops it.
pub struct Fake<U: Upstream> {
    addr: SocketAddr,
    pub(crate) shared: Arc<Shared<U>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// What the server and the test share.
pub struct Shared<U: Upstream> {
    state: Mutex<State<U>>,
    /// The number of recorded calls, for `wait_for_calls` to wait on.
    call_count: watch::Sender<usize>,
    /// As started.
    pub(crate) options: U::Options,
}

/// The fake's state behind its lock.
pub struct State<U: Upstream> {
    /// Every request received so far, oldest first.
    pub calls: Vec<U::Call>,
    /// Answers for the next requests, in order, instead of deciding.
    pub scripted: VecDeque<ScriptedResponse>,
    /// Added before every response.
    pub delay: Duration,
    /// What the upstream's answers depend on.
    pub world: U,
}

impl<U: Upstream> Fake<U> {
    /// Starts with the defaults: loopback, a free port, the upstream's own limits.
    pub async fn start() -> Self {
        Self::start_with(U::Options::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a fake {} can listen on a free loopback port: {e:#}",
                    U::NAME
                )
            })
    }

    pub async fn start_with(options: U::Options) -> anyhow::Result<Self> {
        let bind = U::bind(&options);
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("while binding the fake {} to {bind}", U::NAME))?;
        let addr = listener.local_addr()?;
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                calls: Vec::new(),
                scripted: VecDeque::new(),
                delay: U::delay(&options),
                world: U::default(),
            }),
            call_count: watch::Sender::new(0),
            options,
        });
        let routes = U::routes(&shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // A zero grace period: stopping the fake is the upstream going away, and open
            // connections are cut as they would be.
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async {
                        let _ = stopped.await;
                    },
                    Some(Duration::ZERO),
                )
                .await;
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`: a base URL for the client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn calls(&self) -> Vec<U::Call> {
        self.shared.state().calls.clone()
    }

    pub fn call_count(&self) -> usize {
        *self.shared.call_count.borrow()
    }

    /// Resolves once at least `n` requests have been received (and recorded).
    pub async fn wait_for_calls(&self, n: usize) {
        let mut count = self.shared.call_count.subscribe();
        count
            .wait_for(|count| *count >= n)
            .await
            .expect("the sender lives as long as the fake");
    }

    /// The next request gets this instead of the usual answer; several queue up in order.
    pub fn push_response(&self, scripted: ScriptedResponse) {
        self.shared.state().scripted.push_back(scripted);
    }

    /// Delays every response from now on (the call is recorded before the delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }

    /// Stops the server and waits until it has stopped listening.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl<U: Upstream> Drop for Fake<U> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl<U: Upstream> std::fmt::Debug for Fake<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(&format!("Fake{}", U::NAME))
            .field("addr", &self.addr)
            .field("calls", &self.call_count())
            .finish()
    }
}

impl<U: Upstream> Shared<U> {
    pub(crate) fn state(&self) -> MutexGuard<'_, State<U>> {
        // A test that panicked while holding the lock has failed already; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers one request as every endpoint does: the next scripted answer if one is
    /// queued, else `decide`'s (given the state and when the request arrived); the call
    /// recorded by `record` (given the status sent) before the delay and the answer.
    pub(crate) async fn respond(
        &self,
        decide: impl FnOnce(&State<U>, Instant) -> Answer,
        record: impl FnOnce(Instant, u16) -> U::Call,
    ) -> Response {
        let arrived = Instant::now();
        let (answer, delay) = {
            let mut state = self.state();
            let answer = match state.scripted.pop_front().and_then(|s| s.fixed) {
                Some(fixed) => fixed,
                None => decide(&state, arrived),
            };
            state.calls.push(record(arrived, answer.status.as_u16()));
            self.call_count.send_replace(state.calls.len());
            (answer, state.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        answer.into_response()
    }
}

/// What to answer one request with, instead of deciding; queued in the order pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedResponse {
    /// `None`: answer as usual (see [`passthrough`](Self::passthrough)).
    pub(crate) fixed: Option<Answer>,
}

impl ScriptedResponse {
    /// This status and body, such as `status(500, "oops")` or `status(200, "<html>")`.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            fixed: Some(Answer {
                status: StatusCode::from_u16(status)
                    .expect("a scripted status is a valid HTTP status"),
                body: body.into(),
                headers: Vec::new(),
            }),
        }
    }

    /// The usual answer, as if nothing were scripted: to let the first requests through
    /// before the scripted failures.
    pub fn passthrough() -> Self {
        Self { fixed: None }
    }

    /// Adds a header, such as `("retry-after", "1")`. No effect on a passthrough.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Some(fixed) = &mut self.fixed {
            fixed.headers.push((name.into(), value.into()));
        }
        self
    }

    /// A 5xx with a small JSON body.
    pub fn server_error(status: u16) -> Self {
        Self::status(status, r#"{"error":"Internal Server Error"}"#)
    }
}

/// The answer decided for one request, before it is recorded and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub(crate) status: StatusCode,
    /// Sent as is: as `text/html` when it begins with `<`, else as JSON, unless a
    /// `content-type` header says otherwise.
    pub(crate) body: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Answer {
    pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self::text(status, body.to_string())
    }

    pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let content_type = if self.body.starts_with('<') {
            "text/html"
        } else {
            "application/json; charset=utf-8"
        };
        let mut response = Response::builder().status(self.status).body(self.body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in self.headers {
            match (
                header::HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => panic!("scripted header {name:?}: {value:?} is not a valid header"),
            }
        }
        response
    }
}

/// How long until a call is allowed, when `limit` calls (of those that `arrived`) were
/// already made in the last `window`; `None` when one is allowed now. Every call counts,
/// refused ones too, as upstreams count them.
pub(crate) fn wait_for_room(
    arrived: impl IntoIterator<Item = Instant>,
    limit: NonZeroU32,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    let in_window: Vec<Instant> = arrived
        .into_iter()
        .filter(|at| now.duration_since(*at) < window)
        .collect();
    let limit = usize::try_from(limit.get()).expect("u32 fits usize");
    (in_window.len() >= limit).then(|| {
        let oldest_that_must_leave = in_window[in_window.len() - limit];
        window.saturating_sub(now.duration_since(oldest_that_must_leave))
    })
}

/// The most of the calls that `arrived` (in order) that fall within any one `window`: what
/// a caller's rate limit is judged by, read from a fake's record.
pub fn most_within(arrived: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in arrived.iter().enumerate() {
        while at.duration_since(arrived[first]) >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// The query parameter `name` of `request`, decoded.
pub(crate) fn query_param(request: &Request, name: &str) -> Option<String> {
    let query = request.uri().query().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_every_call_of_the_window_and_says_when_one_leaves() {
        let now = Instant::now();
        let ago = |secs: u64| now - Duration::from_secs(secs);
        let limit = NonZeroU32::new(2).unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(wait_for_room([ago(70), ago(30)], limit, minute, now), None);
        let wait = wait_for_room([ago(50), ago(30)], limit, minute, now).unwrap();
        assert_eq!(wait.as_secs(), 10);
    }

    #[test]
    fn the_most_within_a_window_counts_the_busiest_window() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let minute = Duration::from_secs(60);
        assert_eq!(most_within(&[], minute), 0);
        assert_eq!(
            most_within(&[at(0), at(30), at(59), at(60), at(61)], minute),
            4
        );
        assert_eq!(most_within(&[at(0), at(60), at(120)], minute), 1);
    }

    #[test]
    fn scripted_answers_keep_their_status_and_headers() {
        let scripted = ScriptedResponse::status(503, "<html>down</html>")
            .with_header("retry-after", "1")
            .fixed
            .unwrap();
        assert_eq!(scripted.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(scripted.headers, vec![("retry-after".into(), "1".into())]);
        assert_eq!(
            ScriptedResponse::passthrough().with_header("a", "b").fixed,
            None
        );
    }
}
