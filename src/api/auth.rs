//! `API_TOKEN`: when it is set, every write (POST, PUT) needs `Authorization: Bearer <token>`.
//!
//! [`Authorized`] is an extractor written by hand rather than derived with
//! `#[derive(SecurityScheme)]`: the derived bearer scheme refuses a request without the
//! header before any checker runs, so it cannot express "required only when a token is
//! configured". By hand it still registers the `ApiToken` scheme in the document, and an
//! operation is protected simply by taking an `Authorized` argument — first, so that a
//! caller without the token learns nothing about the body.

use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use secrecy::ExposeSecret;

use super::ApiState;

/// The scheme's name in the document (`components.securitySchemes`).
const SCHEME: &str = "ApiToken";

/// Proof that the request may write: it carried the configured token, or none is
/// configured.
#[derive(Debug, Clone, Copy)]
pub struct Authorized;

/// Why a request was refused; the body and the `WWW-Authenticate` header are added by the
/// operation's refusal variant.
#[derive(Debug, thiserror::Error)]
#[error("the bearer token is missing or wrong")]
struct Unauthorized;

impl poem::error::ResponseError for Unauthorized {
    fn status(&self) -> poem::http::StatusCode {
        poem::http::StatusCode::UNAUTHORIZED
    }
}

impl<'a> ApiExtractor<'a> for Authorized {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "`Authorization: Bearer <API_TOKEN>`. Needed by every write (POST, PUT) when the server runs with `API_TOKEN` set; \
                     without it the writes are open.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // Without the state (a wiring mistake) nothing may write: fail closed.
        let state = request.data::<ApiState>().ok_or(Unauthorized)?;
        let Some(expected) = &state.api_token else {
            return Ok(Authorized);
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), expected.expose_secret().as_bytes()) {
            Ok(Authorized)
        } else {
            Err(Unauthorized.into())
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in a time that depends only on the length of `expected` (the secret's length
/// is fixed for a deployment), so a caller cannot find the token byte by byte by timing
/// refusals.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_equal() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3creT", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3crett", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret\0", b"s3cret"));
    }

    #[test]
    fn the_bearer_scheme_is_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
