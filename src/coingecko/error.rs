//! What went wrong with a call, in the two kinds the caller decides on, and the
//! lenient reading of CoinGecko's error bodies that makes the messages useful.
//!
//! CoinGecko's error bodies come in several shapes (`{"status":{…}}`,
//! `{"error":{"status":{…}}}`, `{"error_code":…,"status":{…}}`, `{"error":"…"}`, and
//! Cloudflare HTML pages), so they are read as loose JSON, never into one struct.

use http::StatusCode;
use serde_json::Value;

use super::wire::BodyError;
use crate::domain::CreditMonth;
use crate::upstream::{CallError, MAX_BODY_BYTES, NoSlot, Redactor, quote_at_most};

/// How much of an error body a message quotes: enough for CoinGecko's sentence, not a page.
const QUOTE_LIMIT: usize = 300;

/// Why a call to CoinGecko did not produce a market chart: one variant per decision a
/// caller makes (retry later, learn the plan's reach, fail), so none reads the prose.
///
/// Messages quote CoinGecko and say what to do; every quote has passed a [`Redactor`],
/// so they never contain the API key or another secret, whatever CoinGecko sent.
#[derive(Debug, thiserror::Error)]
pub enum CoinGeckoError {
    /// Worth trying again later: retries ran out on 5xx, time-outs or connection errors.
    /// The job goes back on the queue.
    #[error("{message}")]
    Transient {
        /// The last status or error, how many attempts were made, and what to do.
        message: String,
    },
    /// Worth trying again later: CoinGecko kept answering 429 until the retries ran out.
    /// The job goes back on the queue.
    #[error("{message}")]
    RateLimited {
        /// How many attempts were made, and what to do about the rate.
        message: String,
    },
    /// Error code 10012: the plan (public or Demo) serves only the past `days` days, and
    /// the window asked for older ones. Callers learn the reach from it.
    #[error("{message}")]
    PlanLimit {
        /// The HTTP status CoinGecko answered with (401 as documented).
        status: u16,
        /// How many days back the plan serves, read from CoinGecko's sentence (365 when
        /// it names no number).
        days: u32,
        /// CoinGecko's words, quoted, and what to do about them.
        message: String,
    },
    /// Will fail again whatever we do: another 4xx. The job fails.
    #[error("{message}")]
    Permanent {
        /// The HTTP status CoinGecko answered with, when there was an answer.
        status: Option<u16>,
        /// CoinGecko's own `error_code` (10002, 10010, …) when the body carried one.
        error_code: Option<i64>,
        /// CoinGecko said it does not know the coin (`{"error":"coin not found"}`); any
        /// other 404 is a URL that does not exist (a wrong `COINGECKO_BASE_URL`, a proxy).
        unknown_coin: bool,
        /// CoinGecko's words, quoted, and what to do about them.
        message: String,
    },
    /// The month's credits (`COINGECKO_CALLS_PER_MONTH`) are spent over every process: no
    /// call was made. Nothing more can be fetched until `resets_on`; a job stops and
    /// ends `completed_with_gaps`, a request is refused with 429.
    #[error("{message}")]
    OutOfCredits {
        /// The month, what was used of what, the reset day, and what to do.
        message: String,
        /// The first day of the next month (UTC).
        resets_on: chrono::NaiveDate,
    },
    /// A 2xx whose body is not a market chart, is too large, or holds data that cannot
    /// be true. The job fails; nothing of the window is stored.
    #[error("{message}")]
    BadAnswer {
        /// The HTTP status of the answer.
        status: u16,
        /// What was wrong with it, quoted where that helps, and what to do.
        message: String,
    },
}

/// What CoinGecko's refusal says of a coin id it does not know (`{"error":"coin not found"}`).
const UNKNOWN_COIN: &str = "coin not found";

/// CoinGecko's `error_code` for a window older than the plan serves.
const PLAN_LIMIT_CODE: i64 = 10012;

/// The reach assumed when a 10012 answer names no number: the public and Demo plans'.
const DOCUMENTED_PLAN_DAYS: u32 = 365;

impl CoinGeckoError {
    /// True when trying again cannot help, so the job should fail rather than be requeued.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Permanent { .. } | Self::PlanLimit { .. } | Self::BadAnswer { .. }
        )
    }

    /// With CoinGecko's 10012 answer: how many days the plan serves. `None` for every
    /// other error.
    pub fn history_limit_days(&self) -> Option<u32> {
        match self {
            Self::PlanLimit { days, .. } => Some(*days),
            _ => None,
        }
    }

    /// The message with `mask` applied to it, the variant and its figures kept.
    pub(crate) fn map_message(mut self, mask: impl FnOnce(&str) -> String) -> Self {
        let (Self::Transient { message }
        | Self::RateLimited { message }
        | Self::PlanLimit { message, .. }
        | Self::Permanent { message, .. }
        | Self::OutOfCredits { message, .. }
        | Self::BadAnswer { message, .. }) = &mut self;
        *message = mask(message);
        self
    }

    /// A refusal (non-retryable status) turned into the message a user can act on.
    pub(crate) fn refused(
        status: StatusCode,
        body: &[u8],
        coin_id: &str,
        redactor: &Redactor,
    ) -> Self {
        let said = ErrorBody::read_redacted(body, redactor);
        let message = format!(
            "{} {}",
            said.describe(status),
            advice(status, said.error_code, said.text.as_deref(), coin_id)
        );
        if said.names_spent_credits() {
            let resets_on = CreditMonth::of(chrono::Utc::now()).resets_on();
            return Self::OutOfCredits {
                message: format!(
                    "{} CoinGecko says this key's monthly credits are spent: nothing more can be \
                     fetched from it until {resets_on} (UTC), when the month resets (a later job \
                     or tick fetches the rest). Set COINGECKO_CALLS_PER_MONTH to the plan's \
                     credits so that calls stop before CoinGecko refuses them.",
                    said.describe(status)
                ),
                resets_on,
            };
        }
        if said.error_code == Some(PLAN_LIMIT_CODE) {
            return Self::PlanLimit {
                status: status.as_u16(),
                days: plan_days(said.text.as_deref().unwrap_or_default()),
                message,
            };
        }
        Self::Permanent {
            status: Some(status.as_u16()),
            error_code: said.error_code,
            unknown_coin: said.names_an_unknown_coin(),
            message,
        }
    }

    /// A 2xx whose body is not a market chart: CoinGecko changed or something in between
    /// (a proxy, a captive portal) answered instead.
    pub(crate) fn unreadable(
        status: StatusCode,
        body: &[u8],
        why: impl std::fmt::Display,
        redactor: &Redactor,
    ) -> Self {
        Self::BadAnswer {
            status: status.as_u16(),
            message: format!(
                "CoinGecko answered HTTP {} with a body that is not a market chart: {why}; \
                 it begins {}. Check COINGECKO_BASE_URL points at CoinGecko's API root \
                 (https://api.coingecko.com/api/v3 or https://pro-api.coingecko.com/api/v3).",
                status.as_u16(),
                quote(&redactor.apply(&String::from_utf8_lossy(body))),
            ),
        }
    }

    /// A market chart whose data cannot be true (a price not above zero, a negative
    /// volume, one instant with two values). Trying again within the attempt would most
    /// likely get the same answer, so the window is refused whole and the job fails.
    pub(crate) fn bad_data(status: StatusCode, why: BodyError) -> Self {
        Self::BadAnswer {
            status: status.as_u16(),
            message: format!(
                "CoinGecko's answer was refused: {why}. Nothing of that window was stored. \
                 The fault is in CoinGecko's data, not in a setting here: run the job again \
                 later, when CoinGecko may have corrected it."
            ),
        }
    }

    /// A body longer than any market chart: refused while it was being read.
    pub(crate) fn too_large(status: StatusCode, limit: usize) -> Self {
        Self::BadAnswer {
            status: status.as_u16(),
            message: format!(
                "CoinGecko answered HTTP {} with a body over {} MiB, far more than any market \
                 chart; it was refused unread. Check COINGECKO_BASE_URL points at CoinGecko's \
                 API root (https://api.coingecko.com/api/v3 or https://pro-api.coingecko.com/api/v3).",
                status.as_u16(),
                limit / (1024 * 1024),
            ),
        }
    }
}

impl From<CallError> for CoinGeckoError {
    /// A call that ended without an answer to read: worth trying again later, as a
    /// rate limit when CoinGecko kept answering 429. A body too large to read is no
    /// market chart, and refused.
    fn from(error: CallError) -> Self {
        match error {
            // The database could not say: worth trying again later.
            CallError::NoSlot {
                message,
                why: NoSlot::Database { .. } | NoSlot::Stopping { .. },
            } => Self::Transient { message },
            CallError::NoSlot {
                message,
                why: why @ (NoSlot::MonthSpent { .. } | NoSlot::RefusedBySource { .. }),
            } => {
                // A limit of ours may be too low; CoinGecko's own refusal is final.
                let or_raise = match why {
                    NoSlot::MonthSpent { .. } => {
                        ", or raise COINGECKO_CALLS_PER_MONTH if the plan has more credits"
                    }
                    _ => "",
                };
                Self::OutOfCredits {
                    resets_on: why.resets_on().unwrap_or_default(),
                    message: format!(
                        "{message}. The rest waits for the new month (a later job or tick \
                         fetches it){or_raise}."
                    ),
                }
            }
            CallError::GaveUp(gave_up) if gave_up.rate_limited() => Self::RateLimited {
                message: gave_up.message(
                    "",
                    "CoinGecko is rate-limiting this address or key: lower \
                     COINGECKO_CALLS_PER_MINUTE, or make sure nothing else uses the same key or \
                     address.",
                ),
            },
            CallError::GaveUp(gave_up) => Self::Transient {
                message: gave_up.message("", "Trying again later may succeed."),
            },
            CallError::TooLarge { status, .. } => Self::too_large(status, MAX_BODY_BYTES),
        }
    }
}

/// How many days a 10012 answer says the plan serves ("… within the past 365 days …"),
/// [`DOCUMENTED_PLAN_DAYS`] when its sentence names no number (or zero, which is no plan).
fn plan_days(said: &str) -> u32 {
    let days = said.split("past ").skip(1).find_map(|rest| {
        let (number, after) = rest.split_once(' ')?;
        after
            .starts_with("day")
            .then(|| number.parse::<u32>().ok())
            .flatten()
    });
    days.filter(|days| *days > 0)
        .unwrap_or(DOCUMENTED_PLAN_DAYS)
}

/// What CoinGecko said in an error body, whichever shape it came in.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// `error_code` (such as 10012), wherever in the body it was.
    pub error_code: Option<i64>,
    /// CoinGecko's sentence, or the start of a body that had none we could find.
    pub text: Option<String>,
}

impl ErrorBody {
    /// [`read`](Self::read) with every secret masked: in the raw body (as is,
    /// percent-encoded or JSON-escaped) and again in the words found, which JSON escapes
    /// may have spelled differently. Both before any quote is cut short, so no part of
    /// a secret survives at the cut.
    pub(crate) fn read_redacted(body: &[u8], redactor: &Redactor) -> Self {
        let mut said = Self::read(&redactor.apply_bytes(body));
        said.text = said.text.map(|text| redactor.apply(&text));
        said
    }

    pub(crate) fn read(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => Self::from_json(&json),
            Err(_) => Self {
                error_code: None,
                text: plain_text(&String::from_utf8_lossy(body)),
            },
        }
    }

    fn from_json(json: &Value) -> Self {
        let nested_error = json.get("error").filter(|error| error.is_object());
        let status = json
            .get("status")
            .filter(|status| status.is_object())
            .or_else(|| nested_error.and_then(|error| error.get("status")));
        let places = [Some(json), status, nested_error];
        let error_code = places
            .iter()
            .flatten()
            .find_map(|place| place.get("error_code").and_then(as_code));
        let text = places
            .iter()
            .flatten()
            .find_map(|place| {
                ["error_message", "message", "error"]
                    .iter()
                    .find_map(|key| place.get(*key).and_then(Value::as_str))
            })
            .map(str::to_owned)
            .or_else(|| plain_text(&json.to_string()).filter(|_| !is_empty_json(json)));
        Self { error_code, text }
    }

    /// Whether the refusal says CoinGecko does not know the coin asked for.
    pub(crate) fn names_an_unknown_coin(&self) -> bool {
        self.text
            .as_deref()
            .is_some_and(|text| text.to_ascii_lowercase().contains(UNKNOWN_COIN))
    }

    /// Whether CoinGecko's words name its monthly credits or limit (research:
    /// hourly-and-export.md, plans with overage off refuse calls once the month's credits
    /// are spent; what the words are is not documented, so any refusal that names credits
    /// or a monthly limit counts). The rate limit's 429 names neither.
    pub(crate) fn names_spent_credits(&self) -> bool {
        if self.error_code == Some(PLAN_LIMIT_CODE) {
            return false;
        }
        self.text.as_deref().is_some_and(|text| {
            let text = text.to_lowercase();
            text.contains("credit") || text.contains("monthly")
        })
    }

    /// `CoinGecko answered HTTP 401 (error code 10012): "…".`
    pub(crate) fn describe(&self, status: StatusCode) -> String {
        let code = self
            .error_code
            .filter(|code| i64::from(status.as_u16()) != *code)
            .map(|code| format!(" (error code {code})"))
            .unwrap_or_default();
        match &self.text {
            Some(text) => format!(
                "CoinGecko answered HTTP {}{code}: {}.",
                status.as_u16(),
                quote(text)
            ),
            None => format!("CoinGecko answered HTTP {}{code}.", status.as_u16()),
        }
    }
}

fn as_code(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

fn is_empty_json(json: &Value) -> bool {
    match json {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// The useful words of a non-JSON body: an HTML page's `<title>` (Cloudflare puts the
/// reason there), else the text with its whitespace collapsed. `None` when blank.
fn plain_text(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let title = lower.find("<title>").and_then(|start| {
        let start = start + "<title>".len();
        let end = start + lower[start..].find("</title>")?;
        body.get(start..end)
    });
    let text = title
        .unwrap_or(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

/// `"…"` around at most [`QUOTE_LIMIT`] characters of `text`, on one line.
fn quote(text: &str) -> String {
    quote_at_most(text, QUOTE_LIMIT)
}

/// What the user should do about a refusal; each case is one CoinGecko documents or
/// that users run into (see the research notes on error codes).
fn advice(
    status: StatusCode,
    error_code: Option<i64>,
    text: Option<&str>,
    coin_id: &str,
) -> String {
    let text = text.unwrap_or_default().to_ascii_lowercase();
    match (status.as_u16(), error_code) {
        (_, Some(PLAN_LIMIT_CODE)) => {
            "CoinGecko's public and Demo plans serve only the past 365 days: \
             pick a start date within the last 365 days, or use a paid key by setting \
             COINGECKO_API_KEY and COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3."
                .to_owned()
        }
        (_, Some(10010)) => "That is a paid (Pro) key on the public root URL: set \
             COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3."
            .to_owned(),
        (_, Some(10011)) => "That is a Demo key on the Pro root URL: set \
             COINGECKO_BASE_URL=https://api.coingecko.com/api/v3."
            .to_owned(),
        (_, Some(10005)) => "This endpoint is not included in your CoinGecko plan: \
             use a key whose plan includes /coins/{id}/market_chart/range."
            .to_owned(),
        (_, Some(10002)) | (401, _) => "The API key is missing or invalid: check \
             COINGECKO_API_KEY (a Demo key goes with https://api.coingecko.com/api/v3, a paid \
             key with https://pro-api.coingecko.com/api/v3 in COINGECKO_BASE_URL)."
            .to_owned(),
        (403, _) => "Access was denied: check COINGECKO_API_KEY and COINGECKO_BASE_URL; \
             if CoinGecko's firewall (Cloudflare error 1020) blocked this address, try \
             another network or a key."
            .to_owned(),
        _ if text.contains(UNKNOWN_COIN) => format!(
            "CoinGecko does not know the coin id \"{coin_id}\": check the CoinGecko id \
             of the symbol."
        ),
        (404, _) => "The URL was not found: check that COINGECKO_BASE_URL is CoinGecko's \
             API root (https://api.coingecko.com/api/v3 or https://pro-api.coingecko.com/api/v3)."
            .to_owned(),
        (400, _) => "CoinGecko rejected the request itself: check the date range, and \
             report it as a bug of price-history if the range is valid."
            .to_owned(),
        _ => "Retrying will not change that answer.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_says;
    use crate::upstream::{Failure, GaveUp};

    fn refused(status: u16, body: &str) -> CoinGeckoError {
        CoinGeckoError::refused(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            "bitcoin",
            &Redactor::default(),
        )
    }

    /// The message of a permanent refusal.
    fn message(status: u16, body: &str) -> String {
        parts(&refused(status, body)).2.to_owned()
    }

    fn parts(error: &CoinGeckoError) -> (Option<u16>, Option<i64>, &str) {
        match error {
            CoinGeckoError::Permanent {
                status,
                error_code,
                message,
                ..
            } => (*status, *error_code, message),
            CoinGeckoError::PlanLimit {
                status, message, ..
            } => (Some(*status), Some(PLAN_LIMIT_CODE), message),
            _ => panic!("expected a refusal, got {error:?}"),
        }
    }

    const BODY_10012: &str = r#"{"error":{"status":{"timestamp":"2024-04-20T22:00:05.123+00:00","error_code":10012,"error_message":"Your request exceeds the allowed time range. Public API users are limited to querying historical data within the past 365 days. Upgrade to a paid plan to enjoy full historical data access: https://www.coingecko.com/en/api/pricing. "}}}"#;

    #[test]
    fn the_365_day_limit_is_permanent_and_says_what_to_do() {
        let error = refused(401, BODY_10012);
        let (status, code, message) = parts(&error);
        assert!(error.is_permanent());
        assert_eq!((status, code), (Some(401), Some(10012)));
        assert_says(
            message,
            &[
                "error code 10012",
                "Public API users are limited",
                "past 365 days",
                "COINGECKO_API_KEY",
                "https://pro-api.coingecko.com/api/v3",
            ],
        );
        assert!(!message.contains("missing or invalid"), "{message}");
    }

    #[test]
    fn only_words_naming_the_monthly_credits_say_the_month_is_spent() {
        let said = |body: &str| ErrorBody::read(body.as_bytes()).names_spent_credits();
        assert!(said(
            r#"{"status":{"error_code":429,"error_message":"You've exceeded your monthly API call credits."}}"#
        ));
        assert!(said(r#"{"error":"Monthly limit reached"}"#));
        assert!(!said(
            r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits."}}"#
        ));
        assert!(!said(BODY_10012));
        assert!(!said("<html>Too Many Requests</html>"));
    }

    #[test]
    fn the_reach_is_read_from_the_10012_answer() {
        assert_eq!(refused(401, BODY_10012).history_limit_days(), Some(365));
        let thirty = BODY_10012.replace("past 365 days", "past 30 days");
        assert_eq!(refused(401, &thirty).history_limit_days(), Some(30));
        let bare = r#"{"status":{"error_code":10012,"error_message":"too old"}}"#;
        assert_eq!(refused(401, bare).history_limit_days(), Some(365));
        assert_eq!(
            refused(401, r#"{"status":{"error_code":10002}}"#).history_limit_days(),
            None
        );
        // A plan of 0 days is no plan: read as the documented 365, not as "serves nothing".
        let zero = BODY_10012.replace("past 365 days", "past 0 days");
        assert_eq!(refused(401, &zero).history_limit_days(), Some(365));
    }

    #[test]
    fn only_a_refusal_is_permanent() {
        assert!(refused(400, "").is_permanent());
        let transient = CoinGeckoError::Transient {
            message: "CoinGecko answered HTTP 503 three times".to_owned(),
        };
        assert!(!transient.is_permanent());
        assert_eq!(transient.history_limit_days(), None);
    }

    #[test]
    fn every_documented_body_shape_yields_its_code_and_words() {
        let cases = [
            (
                BODY_10012,
                Some(10012),
                "Your request exceeds the allowed time range.",
            ),
            (
                r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#,
                Some(429),
                "You've exceeded the Rate Limit.",
            ),
            (
                r#"{"status":{"timestamp":"2026-05-17T01:39:44.892+00:00","error_code":10002,"error_message":"API Key Missing."}}"#,
                Some(10002),
                "API Key Missing.",
            ),
            (
                r#"{"timestamp":"2025-09-01T13:07:05.880+00:00","error_code":10011,"status":{"error_message":"If you are using Demo API key, please change your root URL"}}"#,
                Some(10011),
                "If you are using Demo API key, please change your root URL",
            ),
            (r#"{"error":"coin not found"}"#, None, "coin not found"),
            (
                r#"{"error_code":"10010","error_message":"wrong root"}"#,
                Some(10010),
                "wrong root",
            ),
        ];
        for (body, code, text) in cases {
            let said = ErrorBody::read(body.as_bytes());
            assert_eq!(said.error_code, code, "{body}");
            assert!(
                said.text.as_deref().unwrap().starts_with(text),
                "{body}: {said:?}"
            );
        }
    }

    #[test]
    fn giving_up_on_429s_is_a_rate_limit_that_names_the_setting_to_lower() {
        let gave_up = |rate_limited| {
            CoinGeckoError::from(CallError::GaveUp(GaveUp {
                attempts: 4,
                last: Failure {
                    rate_limited,
                    ..Failure::rate_limited("CoinGecko answered HTTP 429.")
                },
            }))
        };
        let error = gave_up(true);
        assert!(
            matches!(error, CoinGeckoError::RateLimited { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "Gave up after 4 attempts; the last one failed: CoinGecko answered HTTP 429. "
            ) && message.contains("COINGECKO_CALLS_PER_MINUTE"),
            "{message}"
        );
        let other = gave_up(false);
        assert!(
            matches!(other, CoinGeckoError::Transient { .. }),
            "{other:?}"
        );
        assert!(
            other
                .to_string()
                .ends_with("Trying again later may succeed.")
        );
    }

    #[test]
    fn html_bodies_are_quoted_by_their_title() {
        let body = "<!DOCTYPE html>\n<html><head><title>Access denied | api.coingecko.com used \
                    Cloudflare to restrict access</title></head><body>…</body></html>";
        let message = message(403, body);
        assert_says(
            &message,
            &[
                "\"Access denied | api.coingecko.com used Cloudflare to restrict access\"",
                "COINGECKO_API_KEY",
            ],
        );
    }

    #[test]
    fn long_bodies_are_cut_to_a_short_quote() {
        let body = "x".repeat(5_000);
        let message = message(418, &body);
        assert!(message.len() < 600, "{} chars", message.len());
        assert!(message.contains(&"x".repeat(QUOTE_LIMIT)));
        assert!(message.contains("…"));
    }

    #[test]
    fn quotes_cut_on_character_boundaries() {
        let quoted = quote(&"é".repeat(QUOTE_LIMIT + 10));
        assert_eq!(quoted.chars().filter(|c| *c == 'é').count(), QUOTE_LIMIT);
    }

    #[test]
    fn unknown_coins_are_named() {
        let error = CoinGeckoError::refused(
            StatusCode::NOT_FOUND,
            br#"{"error":"coin not found"}"#,
            "bitcorn",
            &Redactor::default(),
        );
        let (status, code, message) = parts(&error);
        assert_eq!((status, code), (Some(404), None));
        assert_says(message, &["\"coin not found\"", "\"bitcorn\""]);
    }

    #[test]
    fn keys_and_root_urls_get_their_own_advice() {
        let missing = message(
            401,
            r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
        );
        assert_says(&missing, &["missing or invalid"]);
        let bare_401 = message(401, "");
        assert_says(&bare_401, &["check COINGECKO_API_KEY"]);
        assert_eq!(bare_401.matches("HTTP 401").count(), 1, "{bare_401}");
        let demo_on_pro = message(
            400,
            r#"{"error_code":10011,"status":{"error_message":"use api.coingecko.com"}}"#,
        );
        assert_says(
            &demo_on_pro,
            &["COINGECKO_BASE_URL=https://api.coingecko.com/api/v3"],
        );
        let pro_on_public = message(
            401,
            r#"{"error_code":10010,"status":{"error_message":"use pro-api"}}"#,
        );
        assert_says(
            &pro_on_public,
            &["COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3"],
        );
    }

    #[test]
    fn plans_urls_and_bad_requests_get_their_own_advice() {
        let plan = message(
            401,
            r#"{"status":{"error_code":10005,"error_message":"You need to upgrade."}}"#,
        );
        assert_says(&plan, &["not included in your CoinGecko plan"]);
        let no_such_url = message(404, "<html><title>404 Not Found</title></html>");
        assert_says(&no_such_url, &["The URL was not found"]);
        assert!(!no_such_url.contains("coin id"), "{no_such_url}");
        let bad_request = message(400, r#"{"error":"invalid from"}"#);
        assert_says(&bad_request, &["rejected the request itself"]);
        assert!(!bad_request.contains("coin id"), "{bad_request}");
        let teapot = message(418, "I'm a teapot");
        assert!(
            teapot.ends_with("Retrying will not change that answer."),
            "{teapot}"
        );
    }

    #[test]
    fn a_key_echoed_in_any_spelling_is_masked_even_where_the_quote_is_cut() {
        let redactor = Redactor::new(["CG-secret-key", "api-token"]);
        let bodies = [
            r#"{"status":{"error_code":10002,"error_message":"Invalid key CG-secret-key"}}"#
                .to_owned(),
            r#"{"error":"CG-secret-key and api-token"}"#.to_owned(),
            "<html><title>Key CG-secret-key refused</title></html>".to_owned(),
            format!("{}CG-secret-key", "x".repeat(QUOTE_LIMIT - 5)),
            "GET /coins?x_cg_demo_api_key=CG-secret-key".to_owned(),
        ];
        for body in bodies {
            for status in [400, 401, 404] {
                let error = CoinGeckoError::refused(
                    StatusCode::from_u16(status).unwrap(),
                    body.as_bytes(),
                    "bitcoin",
                    &redactor,
                );
                let message = error.to_string();
                assert!(!message.contains("CG-s"), "{message}");
                assert!(!message.contains("api-token"), "{message}");
            }
            let error =
                CoinGeckoError::unreadable(StatusCode::OK, body.as_bytes(), "not JSON", &redactor);
            assert!(!error.to_string().contains("CG-s"), "{error}");
            let said = ErrorBody::read_redacted(body.as_bytes(), &redactor);
            let described = said.describe(StatusCode::BAD_GATEWAY);
            assert!(!described.contains("CG-s"), "{described}");
        }
    }

    #[test]
    fn a_status_code_repeated_as_error_code_is_not_said_twice() {
        let said = ErrorBody::read(br#"{"status":{"error_code":429,"error_message":"slow down"}}"#);
        assert_eq!(
            said.describe(StatusCode::TOO_MANY_REQUESTS),
            "CoinGecko answered HTTP 429: \"slow down\"."
        );
    }

    #[test]
    fn json_without_words_is_quoted_whole_and_empty_bodies_not_at_all() {
        let said = ErrorBody::read(br#"{"weird":true}"#);
        assert_eq!(said.text.as_deref(), Some(r#"{"weird":true}"#));
        for empty in ["{}", "  \n", "null", "[]", r#""  ""#] {
            assert_eq!(
                ErrorBody::read(empty.as_bytes()),
                ErrorBody::default(),
                "{empty}"
            );
        }
        assert_eq!(
            message(418, "null"),
            "CoinGecko answered HTTP 418. Retrying will not change that answer."
        );
    }
}
