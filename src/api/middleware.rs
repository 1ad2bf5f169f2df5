//! What wraps every request: an access log line with a request id, a time-out, a body
//! size and time limit, the `Allow` header of a 405, and `Vary: Accept` where the body
//! depends on it. Each answers with the API's
//! JSON error body, never plain text.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::error::ReadBodyError;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OpenApi;
use tracing::Instrument;
use uuid::Uuid;

use super::error::ErrorBody;

/// The largest request body: a job submission is under 200 bytes, so 16 KiB is generous
/// and keeps a flood of large bodies from costing memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The longest a request may take. Every query is short; this only bounds a request stuck
/// behind a database that stopped answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying the request id, echoed or generated.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest incoming request id that is kept; a longer or odd one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Logs method, path, status and latency of every request, in a span carrying its
/// request id, and echoes the id in the response.
pub async fn access_log<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response> {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let span = tracing::info_span!("request", request_id = %request_id);
    let method = request.method().clone();
    // The path only: a query string is the caller's business, not the log's.
    let path = request.uri().path().to_owned();
    let started = Instant::now();

    let mut response = next.get_response(request).instrument(span.clone()).await;

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::warn!(%method, %path, status, latency_ms, "request");
        } else {
            tracing::info!(%method, %path, status, latency_ms, "request");
        }
    });
    Ok(response)
}

/// The path whose answer depends on `Accept`: JSON, CSV, Parquet or Feather.
const NEGOTIATED_PATH: &str = "/api/v1/prices";

/// Says `Vary: Accept` on every answer of the path whose body depends on `Accept`, so that
/// a cache in front of the service never hands one client's Parquet to another's JSON.
pub async fn vary_on_accept<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response> {
    let negotiated = request.uri().path() == NEGOTIATED_PATH;
    let mut response = next.get_response(request).await;
    if negotiated {
        let vary = HeaderValue::from_static("accept");
        response.headers_mut().append(header::VARY, vary);
    }
    Ok(response)
}

/// Visible ASCII without spaces, at most [`MAX_REQUEST_ID_LEN`] long: safe to log and to
/// echo in a header.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Answers `503 timeout` when a request takes longer than [`REQUEST_TIMEOUT`].
pub async fn time_limit<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response> {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.call(request)).await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => {
            tracing::warn!(
                timeout_secs = REQUEST_TIMEOUT.as_secs(),
                "request timed out"
            );
            let body = ErrorBody::new(
                "timeout",
                format!(
                    "the request took longer than {} s and was abandoned; try again",
                    REQUEST_TIMEOUT.as_secs()
                ),
            );
            Ok(body.into_response_with(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// Answers `413 payload_too_large` for a body over [`MAX_BODY_BYTES`], whether it
/// announces its length or is sent in chunks, and `408 request_timeout` for a body that
/// has not arrived whole within `within`: a client that stalls its body is the one at
/// fault, so it gets a 4xx, not the 5xx of [`time_limit`]. A body that fits is read
/// here, once.
pub async fn body_limit<E: Endpoint>(
    next: Arc<E>,
    mut request: Request,
    within: Duration,
) -> poem::Result<Response> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Ok(too_large());
    }
    let read = tokio::time::timeout(within, request.take_body().into_bytes_limit(MAX_BODY_BYTES));
    let Ok(read) = read.await else {
        tracing::info!(timeout_secs = within.as_secs_f64(), "request body stalled");
        let mut response = ErrorBody::new(
            "request_timeout",
            format!(
                "the request body did not arrive whole within {} s; send it at once",
                within.as_secs_f64()
            ),
        )
        .into_response_with(StatusCode::REQUEST_TIMEOUT);
        // The rest of the body may still come; the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    };
    match read {
        Ok(bytes) => request.set_body(bytes),
        Err(ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
        Err(e) => {
            return Ok(ErrorBody::new(
                "invalid_request",
                format!("the request body could not be read: {e}"),
            )
            .into_response_with(StatusCode::BAD_REQUEST));
        }
    }
    next.call(request).await.map(IntoResponse::into_response)
}

fn too_large() -> Response {
    ErrorBody::new(
        "payload_too_large",
        format!(
            "the request body is over {} KiB; a job submission needs well under 1 KiB",
            MAX_BODY_BYTES / 1024
        ),
    )
    .into_response_with(StatusCode::PAYLOAD_TOO_LARGE)
}

/// The methods each documented path takes, for the `Allow` header RFC 9110 requires on
/// a 405 (the router knows the path matched, not which methods it has).
#[derive(Debug, Clone)]
pub struct AllowedMethods {
    /// Path templates split into segments (`{id}` matches any one segment), with methods.
    paths: Vec<(Vec<String>, BTreeSet<String>)>,
}

impl AllowedMethods {
    /// Read from the operations' own metadata, so it cannot drift from the routes.
    pub fn of<T: OpenApi>() -> Self {
        let paths = T::meta()
            .into_iter()
            .flat_map(|api| api.paths)
            .map(|path| {
                let segments = path.path.split('/').map(str::to_owned).collect();
                let mut methods: BTreeSet<String> = path
                    .operations
                    .iter()
                    .map(|operation| operation.method.to_string())
                    .collect();
                if methods.contains(Method::GET.as_str()) {
                    methods.insert(Method::HEAD.to_string());
                }
                (segments, methods)
            })
            .collect();
        AllowedMethods { paths }
    }

    /// `GET, HEAD`, say, for a path the API has; `None` for any other. As the router does,
    /// a literal segment wins over a template's (`/api/v1/coins/track-top` is not the
    /// coin `track-top` of `/api/v1/coins/{symbol}`).
    fn for_path(&self, path: &str) -> Option<String> {
        let wanted: Vec<&str> = path.split('/').collect();
        let is_template = |segment: &String| segment.starts_with('{') && segment.ends_with('}');
        self.paths
            .iter()
            .filter(|(segments, _)| {
                segments.len() == wanted.len()
                    && segments
                        .iter()
                        .zip(&wanted)
                        .all(|(segment, given)| is_template(segment) || segment == given)
            })
            .min_by_key(|(segments, _)| segments.iter().filter(|s| is_template(s)).count())
            .map(|(_, methods)| {
                methods
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
    }

    /// Adds `Allow` to every 405.
    pub async fn add_to_405<E: Endpoint>(
        self: Arc<Self>,
        next: Arc<E>,
        request: Request,
    ) -> poem::Result<Response> {
        let path = request.uri().path().to_owned();
        let mut response = next.call(request).await?.into_response();
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(value) = self
                .for_path(&path)
                .and_then(|allow| HeaderValue::from_str(&allow).ok())
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_405_lists_the_methods_of_the_matching_path_template() {
        let allowed = AllowedMethods::of::<super::super::Apis>();
        assert_eq!(
            allowed.for_path("/api/v1/ingestion-jobs").as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            allowed
                .for_path("/api/v1/ingestion-jobs/abc/cancel")
                .as_deref(),
            Some("POST")
        );
        assert_eq!(allowed.for_path("/healthz").as_deref(), Some("GET, HEAD"));
        assert_eq!(
            allowed.for_path("/api/v1/coins/track-top").as_deref(),
            Some("POST"),
            "the literal path, not a coin named track-top"
        );
        assert_eq!(
            allowed.for_path("/api/v1/coins/ETH").as_deref(),
            Some("GET, HEAD, PUT")
        );
        assert_eq!(allowed.for_path("/api/v1/nothing"), None);
    }

    #[test]
    fn only_short_printable_request_ids_are_echoed() {
        assert!(is_acceptable_request_id(
            "0191c4b2-7f3e-7a10-9c1d-5e2f3a4b5c6d"
        ));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id("line\nbreak"));
        assert!(!is_acceptable_request_id(&"x".repeat(129)));
    }
}
