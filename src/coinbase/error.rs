//! Coinbase Exchange's failures, sorted by what the caller does about them. None of them
//! fails a job: the days it would have filled stay out of plan, and the job says why.

use http::StatusCode;

use super::wire::{CandlesError, error_message};
use crate::upstream::{Answer, CallError, MAX_BODY_BYTES, NoSlot, Redactor, quote};

/// Why a call to Coinbase Exchange gave no answer to use. Each message names Coinbase
/// Exchange and says what to do; every quote of its bodies is redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinbaseError {
    /// Down, slow, rate-limiting or unreachable, after the retries: a later job may succeed.
    #[error("{message}")]
    Unavailable { message: String },
    /// A refusal (a 4xx other than 429): asking again the same way gets the same answer.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// An answer that is not what Coinbase documents, or values no market has: nothing
    /// of it is used.
    #[error("{message}")]
    BadAnswer { message: String },
}

impl CoinbaseError {
    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CoinbaseError::Unavailable { .. })
    }

    /// The message, for the job and the log.
    pub fn message(&self) -> &str {
        match self {
            CoinbaseError::Unavailable { message }
            | CoinbaseError::Refused { message, .. }
            | CoinbaseError::BadAnswer { message } => message,
        }
    }

    /// A refusal (a status not worth retrying) of `what`, with what to do about it.
    pub(crate) fn refused(answer: &Answer, what: &str, redactor: &Redactor) -> Self {
        let status = answer.status;
        let said = said(&answer.body, redactor);
        let advice = match status {
            StatusCode::NOT_FOUND => {
                "Coinbase Exchange does not list that product: set the coin's coinbase_product \
                 to one it lists (such as BTC-USD), or to null."
            }
            StatusCode::BAD_REQUEST => {
                "The request was refused as malformed; this is a bug of price-history if it \
                 persists: please report it with this message."
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                "Its public market data needs no key: check that COINBASE_BASE_URL is \
                 https://api.exchange.coinbase.com and that no proxy blocks it."
            }
            _ => {
                "Check COINBASE_BASE_URL; set FALLBACK_SOURCE=off to do without the second source."
            }
        };
        CoinbaseError::Refused {
            status: status.as_u16(),
            message: format!(
                "Coinbase Exchange refused {what} with HTTP {}{said}. {advice}",
                status.as_u16()
            ),
        }
    }

    /// A 2xx whose body is not what Coinbase documents.
    pub(crate) fn unreadable(answer: &Answer, what: &str, why: &str, redactor: &Redactor) -> Self {
        let status = answer.status;
        let text = String::from_utf8_lossy(&answer.body);
        CoinbaseError::BadAnswer {
            message: format!(
                "Coinbase Exchange answered {what} with HTTP {} and a body that is not what it \
                 documents ({}): {}. Nothing of it was stored; retry later, or set \
                 FALLBACK_SOURCE=off if it persists.",
                status.as_u16(),
                redactor.apply(why),
                quote(&redactor.apply(&text)),
            ),
        }
    }

    pub(crate) fn bad_data(what: &str, why: &CandlesError) -> Self {
        CoinbaseError::BadAnswer {
            message: format!(
                "Coinbase Exchange answered {what} with values no market has ({why}), so none \
                 of its candles was stored; retry later, or set FALLBACK_SOURCE=off if it persists."
            ),
        }
    }

    pub(crate) fn too_large(status: StatusCode, what: &str, limit: usize) -> Self {
        CoinbaseError::BadAnswer {
            message: format!(
                "Coinbase Exchange answered {what} with HTTP {} and a body over {} MiB, which \
                 no candle list is; it was not read. Retry later, or check COINBASE_BASE_URL.",
                status.as_u16(),
                limit / (1024 * 1024)
            ),
        }
    }
}

impl From<CallError> for CoinbaseError {
    /// A call that ended without an answer to read: unavailable for now (none of these
    /// fails a job), or, for a body too large to read, no candle list.
    fn from(error: CallError) -> Self {
        match error {
            // Coinbase has no monthly credits; were it ever given some, a spent month
            // makes it unavailable for now, like a database that cannot say.
            CallError::NoSlot {
                message,
                why:
                    NoSlot::Database { .. }
                    | NoSlot::MonthSpent { .. }
                    | NoSlot::RefusedBySource { .. }
                    | NoSlot::Stopping { .. },
            } => CoinbaseError::Unavailable { message },
            CallError::GaveUp(gave_up) => {
                let advice = if gave_up.rate_limited() {
                    "Coinbase Exchange is rate-limiting this address: lower \
                     COINBASE_CALLS_PER_MINUTE, or make sure nothing else on this address uses it."
                } else {
                    "The days it would have filled stay out of plan; a later job retries them \
                     (FALLBACK_SOURCE=off does without the second source)."
                };
                CoinbaseError::Unavailable {
                    message: gave_up.message(" on Coinbase Exchange", advice),
                }
            }
            CallError::TooLarge { status, what } => Self::too_large(
                status,
                what.as_deref().unwrap_or("a request"),
                MAX_BODY_BYTES,
            ),
        }
    }
}

/// What Coinbase said in an error body, quoted and masked, as `: "…"`; empty when it
/// said nothing readable.
pub(crate) fn said(body: &[u8], redactor: &Redactor) -> String {
    error_message(body)
        .map(|m| format!(": {}", quote(&redactor.apply(&m))))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_says;
    use crate::upstream::{Failure, GaveUp};

    fn answer(status: StatusCode, body: &[u8]) -> Answer {
        Answer {
            status,
            body: body.to_vec(),
        }
    }

    #[test]
    fn an_unknown_product_names_coinbase_and_says_what_to_do() {
        let error = CoinbaseError::refused(
            &answer(StatusCode::NOT_FOUND, br#"{"message":"NotFound"}"#),
            "the candles of FOO-USD",
            &Redactor::default(),
        );
        assert!(!error.is_transient());
        let message = error.message();
        assert_says(
            message,
            &[
                "Coinbase Exchange refused the candles of FOO-USD with HTTP 404: \"NotFound\"",
                "coinbase_product",
            ],
        );
    }

    #[test]
    fn giving_up_names_coinbase_and_what_to_do_about_its_rate() {
        let message = CoinbaseError::from(CallError::GaveUp(GaveUp {
            attempts: 4,
            last: Failure::rate_limited("Coinbase Exchange answered a call with HTTP 429."),
        }))
        .to_string();
        assert!(
            message.starts_with("Gave up on Coinbase Exchange after 4 attempts; the last one failed: Coinbase Exchange answered a call with HTTP 429. ")
                && message.contains("COINBASE_CALLS_PER_MINUTE"),
            "{message}"
        );
    }

    #[test]
    fn secrets_in_a_quoted_body_are_masked() {
        let redactor = Redactor::new(["tok-3141"]);
        let refused = CoinbaseError::refused(
            &answer(
                StatusCode::FORBIDDEN,
                br#"{"message":"bearer tok-3141 is not welcome"}"#,
            ),
            "a call",
            &redactor,
        );
        let garbage = CoinbaseError::unreadable(
            &answer(StatusCode::OK, b"echo tok-3141"),
            "a call",
            "not JSON",
            &redactor,
        );
        for error in [refused, garbage] {
            assert!(!error.message().contains("tok-3141"), "{error}");
            assert!(error.message().contains("***"), "{error}");
        }
    }
}
