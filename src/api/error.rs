//! Every error the API answers with, in one shape: `{"error": "<snake_case_code>",
//! "message": "<a sentence a person can act on>"}`, plus `active_job_id` for
//! `job_in_progress`.
//!
//! # Error policy
//!
//! - A handler answers with its operation's documented response variants; the bodies
//!   are built here, so codes and messages are written once.
//! - A request that poem-openapi refuses before the handler runs (malformed JSON, a
//!   wrong type, a bad UUID or date, a missing token) is turned into the operation's own
//!   variant by [`refused`], each operation's `bad_request_handler`.
//! - Anything else that escapes as a [`poem::Error`] (unknown route, wrong method) is
//!   turned into the same JSON body by [`catch_all`], the catch-all around the app.
//! - Causes (a database error, a panic) are logged, never returned: their text may name
//!   hosts, users or SQL.

use std::fmt::Display;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::Object;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use uuid::Uuid;

/// The value of `WWW-Authenticate` on every 401.
pub const BEARER_CHALLENGE: &str = "Bearer";

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Error", example)]
pub struct ErrorBody {
    /// A stable snake_case code to branch on, such as `end_before_start`,
    /// `unknown_symbol`, `invalid_request`, `unauthorized`, `not_found`,
    /// `job_in_progress`, `job_finished`, `monthly_credits_exhausted` or
    /// `database_unavailable`.
    pub error: String,
    /// What went wrong and what to do about it, for a person.
    pub message: String,
    /// With `job_in_progress` only: the job that is pending or running.
    #[oai(skip_serializing_if_is_none)]
    pub active_job_id: Option<Uuid>,
    /// With `monthly_credits_exhausted` only: the day (UTC) the monthly credits reset,
    /// `YYYY-MM-DD`.
    #[oai(skip_serializing_if_is_none)]
    pub resets_on: Option<chrono::NaiveDate>,
}

impl Example for ErrorBody {
    fn example() -> Self {
        ErrorBody::new(
            "end_before_start",
            "end_date 2024-01-01 is before start_date 2024-02-01: swap them or pick an end on or after the start",
        )
    }
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: error.to_owned(),
            message: message.into(),
            active_job_id: None,
            resets_on: None,
        }
    }

    /// As the JSON payload of a response variant.
    pub fn json(error: &str, message: impl Into<String>) -> Json<Self> {
        Json(Self::new(error, message))
    }

    /// A request that broke a rule not covered by a more precise code.
    pub fn invalid_request(message: impl Into<String>) -> Json<Self> {
        Self::json("invalid_request", message)
    }

    /// A ticker that breaks the shape rule.
    pub fn invalid_symbol(e: &crate::domain::InvalidSymbol) -> Json<Self> {
        Self::json("invalid_symbol", e.to_string())
    }

    /// A well-formed ticker that is not a registered coin.
    pub fn unknown_symbol(symbol: crate::domain::Symbol) -> Json<Self> {
        Self::json(
            "unknown_symbol",
            format!(
                "{symbol} is not a registered coin: register it with PUT /api/v1/coins/{symbol} and a body \
                 {{\"coingecko_id\": \"...\"}} (or `price-history coins add {symbol} COINGECKO_ID`), \
                 or pick one of GET /api/v1/coins"
            ),
        )
    }

    pub fn job_not_found(id: Uuid) -> Json<Self> {
        Self::json(
            "not_found",
            format!("there is no ingestion job {id}; list jobs with GET /api/v1/ingestion-jobs"),
        )
    }

    pub fn not_a_job_id() -> Json<Self> {
        Self::invalid_request(
            "the job id in the path is not a UUID; job ids look like 01943d9a-6c00-7a3b-8f5e-2b1c0d4e5f60",
        )
    }

    pub fn job_in_progress(active: Uuid) -> Json<Self> {
        Json(ErrorBody {
            active_job_id: Some(active),
            ..Self::new(
                "job_in_progress",
                format!(
                    "job {active} of the same coin is already pending or running and only one job per coin runs at a time; \
                     follow it with GET /api/v1/ingestion-jobs/{active} or cancel it, then submit again"
                ),
            )
        })
    }

    /// Work the month's CoinGecko credits cannot pay for: what it needs, what is left, and
    /// the day they reset.
    pub fn monthly_credits_exhausted(refused: &crate::credits::Unaffordable) -> Json<Self> {
        Json(ErrorBody {
            resets_on: Some(refused.resets_on()),
            ..Self::new("monthly_credits_exhausted", refused.to_string())
        })
    }

    /// The database failed while serving a request: not the request's fault. The cause
    /// is logged here and kept out of the body.
    pub fn database_unavailable(cause: &dyn Display) -> Json<Self> {
        tracing::error!(error = %cause, "the database failed while serving a request");
        Self::json(
            "database_unavailable",
            "the database is not answering right now; try again in a moment",
        )
    }

    /// A complete response, for the places outside any operation (middleware, the
    /// catch-all).
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = Json(self).with_status(status).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        response
    }
}

/// An operation's answer to a request that poem-openapi refused before the handler ran.
pub trait Refusal {
    /// `status` is what poem-openapi chose: 400 for a malformed request, 401 from the
    /// bearer check, 415 for a body that is not JSON.
    fn refusal(status: StatusCode, body: Json<ErrorBody>) -> Self;
}

/// The usual [`Refusal`] of an operation's response enum. `refusal!(R)`: every refusal
/// is its `BadRequest`. `refusal!(R, body)`, for a write that takes a JSON body: 401 is
/// its `Unauthorized` (with the bearer challenge), 415 its `UnsupportedMediaType`, and
/// the rest its `BadRequest`. An operation whose refusals differ implements it by hand.
macro_rules! refusal {
    ($response:ty) => {
        impl $crate::api::error::Refusal for $response {
            fn refusal(
                _: poem::http::StatusCode,
                body: poem_openapi::payload::Json<$crate::api::error::ErrorBody>,
            ) -> Self {
                Self::BadRequest(body)
            }
        }
    };
    ($response:ty, body) => {
        impl $crate::api::error::Refusal for $response {
            fn refusal(
                status: poem::http::StatusCode,
                body: poem_openapi::payload::Json<$crate::api::error::ErrorBody>,
            ) -> Self {
                match status {
                    poem::http::StatusCode::UNAUTHORIZED => {
                        Self::Unauthorized(body, $crate::api::error::BEARER_CHALLENGE.to_owned())
                    }
                    poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        Self::UnsupportedMediaType(body)
                    }
                    _ => Self::BadRequest(body),
                }
            }
        }
    };
}
pub(super) use refusal;

/// An operation's answer when the database fails while serving it: its
/// `ServiceUnavailable`, with [`ErrorBody::database_unavailable`]'s body (the cause logged,
/// never returned).
pub trait Unavailable {
    fn unavailable(cause: &dyn Display) -> Self;
}

/// `unavailable!(R, ...)`: [`Unavailable`] for each response enum named, as its
/// `ServiceUnavailable` variant.
macro_rules! unavailable {
    ($($response:ty),+ $(,)?) => {
        $(
            impl $crate::api::error::Unavailable for $response {
                fn unavailable(cause: &dyn std::fmt::Display) -> Self {
                    Self::ServiceUnavailable($crate::api::error::ErrorBody::database_unavailable(cause))
                }
            }
        )+
    };
}
pub(super) use unavailable;

/// Each operation's `bad_request_handler`: the refusal as that operation's variant.
pub fn refused<T: Refusal>(error: poem::Error) -> T {
    let (status, body) = describe(&error);
    T::refusal(status, body)
}

/// The catch-all around the whole app: any error becomes the JSON error body with the
/// same status, so no client ever gets a plain-text error.
pub async fn catch_all(error: poem::Error) -> Response {
    if error.is_from_response() {
        let response = error.into_response();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if is_json {
            return response;
        }
        let status = response.status();
        return ErrorBody::new(&code_for(status), message_for(status, ""))
            .into_response_with(status);
    }
    let (status, Json(body)) = describe(&error);
    body.into_response_with(status)
}

/// The status and body of a poem or poem-openapi error.
fn describe(error: &poem::Error) -> (StatusCode, Json<ErrorBody>) {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(error = %error, status = status.as_u16(), "request failed inside the server");
    }
    (
        status,
        ErrorBody::json(&code_for(status), message_for(status, &error.to_string())),
    )
}

/// A code for any status: the ones the API documents by name, else the reason phrase in
/// snake_case (`405` → `method_not_allowed`).
fn code_for(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request".to_owned(),
        StatusCode::INTERNAL_SERVER_ERROR => "internal_error".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace([' ', '-'], "_"),
    }
}

/// A message that says what to do. `detail` is poem's own description: for 4xx it only
/// echoes the request, so it is kept; for 5xx it may carry internals, so it is dropped.
fn message_for(status: StatusCode, detail: &str) -> String {
    match status {
        StatusCode::BAD_REQUEST if !detail.is_empty() => {
            format!("{detail}; the request's shape is described at /openapi.json")
        }
        StatusCode::UNAUTHORIZED => {
            "this endpoint needs the header `Authorization: Bearer <API_TOKEN>`; the token is missing or wrong".to_owned()
        }
        StatusCode::NOT_FOUND => "there is no such endpoint; the API is described at /openapi.json and /docs".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this endpoint does not take that method; the API is described at /openapi.json and /docs".to_owned()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            format!("{detail}; send the body as JSON with `Content-Type: application/json`")
        }
        _ if status.is_server_error() => "the server failed to answer this request; try again, and report it if it persists".to_owned(),
        _ if !detail.is_empty() => detail.to_owned(),
        _ => status.canonical_reason().unwrap_or("the request was refused").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_reason_phrases_except_the_documented_ones() {
        assert_eq!(code_for(StatusCode::BAD_REQUEST), "invalid_request");
        assert_eq!(
            code_for(StatusCode::METHOD_NOT_ALLOWED),
            "method_not_allowed"
        );
        assert_eq!(code_for(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");
        assert_eq!(
            code_for(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            "unsupported_media_type"
        );
    }

    #[test]
    fn server_errors_never_carry_their_cause() {
        let message = message_for(
            StatusCode::INTERNAL_SERVER_ERROR,
            "password=hunter2 at db:5432",
        );
        assert!(!message.contains("hunter2"), "{message}");
    }
}
