//! The REST API (INTERFACE.md, "REST API"): poem with poem-openapi, so the OpenAPI
//! document is generated from the same types that serve the requests.
//!
//! # Layout
//!
//! - `jobs`, `coins`, `data`, `ops`: one module per tag, each an `*Api` struct with one
//!   `#[derive(ApiResponse)]` enum per operation; `budget` (tag `Ops`): `GET
//!   /api/v1/budget`, the call budgets and the month's credits.
//! - `responses`: `responses!`, which writes an operation's response enum from its list
//!   of statuses and docs, with what every operation answers alike.
//! - `error`: the one error body, and how every refusal becomes it (`refusal!` writes an
//!   operation's usual `Refusal`, `unavailable!` its answer when the database fails).
//! - `hours`: the `1h` and `4h` rows, coverage in hours and the hours of each day, which
//!   `data` answers with for `timeframe=1h|4h`.
//! - `day`: `YYYY-MM-DD` on the wire, documented as the standard `date` format;
//!   `timeframe`: `1d|4h|1h` on the wire; `wire`: the poem-openapi impls such types
//!   share (one string; a body of text; a domain enum shown variant for variant).
//! - `auth`: the `API_TOKEN` bearer check on every write (POST, PUT).
//! - `events`: one LISTEN on job changes per process, fanned out to the event streams.
//! - `page`: the page at `/` and its assets, embedded in the binary.
//! - `middleware`: access log with request id, time-out, body size and time limits,
//!   and the `Allow` header of a 405.
//! - `server`: the accept loop, with the limits on heads, silence and connections.
//!
//! Handlers parse the request into domain types once and call `queue` and `store`;
//! nothing below calls back up.

mod auth;
pub mod budget;
mod cache;
mod coins;
mod data;
mod day;
mod error;
mod events;
mod hours;
mod jobs;
mod middleware;
mod ops;
pub mod page;
mod responses;
mod server;
mod timeframe;
mod track_top;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::http::StatusCode;
use poem::middleware::CatchPanic;
use poem::{EndpointExt, Response, Route};
use poem_openapi::{OpenApiService, Tags};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::coingecko::CoinGeckoClient;
use crate::credits::Credits;
use crate::registry::Registry;
use crate::schedule::SyncSchedule;
use crate::shutdown::{Shutdown, Tasks};
use crate::track_top::TrackTop;

pub use budget::BudgetApi;
pub use cache::FinishedJobs;
pub use coins::CoinsApi;
pub use data::DataApi;
pub use jobs::JobsApi;
pub use ops::OpsApi;
pub use server::ConnectionLimits;
pub use track_top::TrackTopApi;

use auth::Authorized;
use error::ErrorBody;

/// The operations of the document, one `*Api` per tag.
pub type Apis = (JobsApi, CoinsApi, TrackTopApi, DataApi, OpsApi, BudgetApi);

/// What the handlers share. Cloning is cheap: the pool and the client are handles.
#[derive(Clone)]
pub struct ApiState {
    /// Data, job records and the queue.
    pub pool: PgPool,
    /// When set, every write (POST, PUT) needs `Authorization: Bearer <token>` (`API_TOKEN`).
    pub api_token: Option<SecretString>,
    /// The worker's CoinGecko client when a worker runs in this process (`serve`), so
    /// that `/metrics` can report its calls; `None` for `api`.
    pub coingecko: Option<CoinGeckoClient>,
    /// Jobs that have ended for good, served without a database read.
    pub finished_jobs: FinishedJobs,
    /// The coin registry, which checks new coins with CoinGecko and knows the plan's reach.
    pub registry: Registry,
    /// The import of the top coins, as the API starts it.
    pub track_top: TrackTop,
    /// `SYNC_SCHEDULE`, for the next tick that `/metrics` reports.
    pub sync_schedule: SyncSchedule,
    /// The month's CoinGecko credits: what a job costs, what is left, what tracking costs.
    pub credits: Credits,
}

/// The document's tags.
#[derive(Tags)]
pub enum ApiTags {
    /// Backfill jobs: submit, follow, list, cancel.
    Jobs,
    /// The coins the service fetches: register one, track it, see how fresh it is.
    Coins,
    /// The stored prices (daily, hourly, four-hourly) and how complete they are.
    Data,
    /// Liveness, readiness and metrics.
    Ops,
}

/// How long shutdown waits for in-flight requests (a file still being sent, say) before
/// it ends them: well within the 30 s a process has to exit after SIGTERM, leaving time
/// for the worker's hand-back, an import's grace and a private PostgreSQL's stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// The OpenAPI service: the document and the routes of every operation. Its server URL
/// is relative (`/`), so the document is right wherever the API is reached. The document
/// is OpenAPI 3.0, so it carries nothing only 3.1 allows (such as `info.summary`).
pub fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new((JobsApi, CoinsApi, TrackTopApi, DataApi, OpsApi, BudgetApi), "price-history", env!("CARGO_PKG_VERSION"))
        .description(
            "A complete, trustworthy history of daily coin prices from CoinGecko.\n\n\
             Backfills daily open/high/low/close/volume candles from CoinGecko into PostgreSQL through a durable job \
             queue, and serves what is stored.\n\n\
             Dates are `YYYY-MM-DD` (UTC days), timestamps RFC 3339 in UTC, job ids UUIDv7. Prices and volumes are \
             decimal strings, so that no digit is lost to floating point. Every error is \
             `{\"error\": \"<snake_case_code>\", \"message\": \"...\"}`. Every response carries an `x-request-id` \
             header: the request's own, when it sent a short printable one, else a new one.",
        )
        .license("MIT")
        .server("/")
}

/// The document as `price-history openapi` prints it: pretty JSON, the same bytes on
/// every call, so a checked-in `openapi/openapi.json` can be compared byte for byte.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// Every route — the operations, `/openapi.json` and Swagger UI at `/docs` — wrapped in
/// the JSON error catch-all, the time-out, the body limits and the access log; with the
/// process's job-event listener, so that shutdown can end the streams, and the tasks the
/// requests start, so that shutdown can wait for them.
///
/// The stack is boxed: its full type is deep enough that the release build's layout
/// queries overflow the compiler's recursion limit, and one virtual call per request
/// costs nothing next to the work behind it.
fn app(
    state: ApiState,
    limits: ConnectionLimits,
    events: events::JobEvents,
    tasks: Tasks,
) -> poem::endpoint::BoxEndpoint<'static, Response> {
    let service = openapi_service();
    let routes = Route::new()
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service);
    let allowed = Arc::new(middleware::AllowedMethods::of::<Apis>());
    routes
        .data(state)
        .data(events)
        .data(tasks)
        .around(move |next, request| middleware::body_limit(next, request, limits.body))
        .around(middleware::time_limit)
        .around(page::serve)
        .catch_all_error(error::catch_all)
        .around(move |next, request| allowed.clone().add_to_405(next, request))
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            ErrorBody::new(
                "internal_error",
                "the server failed to answer this request; try again, and report it if it persists",
            )
            .into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
        }))
        .around(middleware::vary_on_accept)
        .around(middleware::access_log)
        .map_to_response()
        .boxed()
}

/// Serves on `listener` until `shutdown` is raised; then stops accepting, lets in-flight
/// requests finish (up to one request time-out), waits for the imports they started to
/// end their records, and returns. The one way to run the API:
/// `startup` binds `BIND_ADDR` with [`ConnectionLimits::default`]; tests bind
/// `127.0.0.1:0` to learn the port first, and some pass shorter limits, since they cannot
/// wait a minute to see a connection closed.
pub async fn serve(
    state: ApiState,
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("while taking over the API's listener")?;
    if state.api_token.is_none() {
        tracing::warn!("API_TOKEN is not set: the POST endpoints accept any caller");
    }
    server::raise_open_files_limit(&limits);
    tracing::info!(addr = %address, "REST API listening; documentation at /docs");
    let events = events::JobEvents::new(state.pool.clone(), limits.event_streams);
    let tasks = Tasks::new(shutdown.clone());
    let app = app(state, limits, events.clone(), tasks.clone());
    // Event streams never end by themselves: ending them lets shutdown wait only for the
    // requests that will finish.
    let shutdown = async move {
        shutdown.recv().await;
        events.close();
    };
    server::run(listener, app, limits, shutdown, SHUTDOWN_GRACE)
        .await
        .context("the REST API server failed")?;
    tasks.wait().await;
    tracing::info!("REST API stopped");
    Ok(())
}
