//! What every upstream HTTP client shares (CoinGecko's in `coingecko/`, Coinbase
//! Exchange's in `coinbase/`): the call budget kept per source in PostgreSQL, the
//! redaction of secrets, the capped reading of a body, `Retry-After`, and the rule that
//! turns a JSON number into a `Decimal`.
//!
//! The budget and the redactor still live in `coingecko/`, where they were written; they
//! are reached through here so that moving them is a change of this file alone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::header::{HeaderMap, RETRY_AFTER};

pub use crate::coingecko::{BudgetMetrics, CallBudget, CallLimiter, decimal_from_f64};
pub(crate) use crate::coingecko::{RateLimit, Redactor};

/// The largest body read from any upstream: far above any honest answer (a 300-day
/// candle list is about 25 KB, a 90-day hourly chart about 200 KB), and small enough
/// that reading it cannot cost the worker its memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The body, read chunk by chunk and given up as soon as it is over `limit` bytes
/// (`Ok(None)`), so that an endless or huge answer never sits whole in memory. A
/// `Content-Length` over the limit is refused before anything is read.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|announced| announced > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `Retry-After` as seconds or as an HTTP date; `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // An HTTP date (IMF-fixdate, `GMT`) is valid RFC 2822.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// An error with its causes, `a: b: c`, because reqwest keeps the useful part
/// ("Connection refused") in its sources.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How many characters of an upstream's text a message quotes.
const QUOTE_LIMIT: usize = 200;

/// `"…"` around at most 200 characters of `text`, cut on a character boundary.
pub(crate) fn quote(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("\"{}…\"", &text[..cut]),
        None => format!("\"{text}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_ignores_words() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn quotes_are_short_single_lines_cut_on_character_boundaries() {
        assert_eq!(quote(" a\n b "), "\"a b\"");
        let long = "é".repeat(300);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT + 3);
        assert!(quoted.ends_with("…\""));
    }
}
