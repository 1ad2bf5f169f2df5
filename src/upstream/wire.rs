//! What every source's wire shares: its root URL, checked once, the capped reading of a
//! body, `Retry-After`, the quoting of an upstream's words, and the rule that turns a
//! JSON number into a `Decimal`.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use http::header::{HeaderMap, RETRY_AFTER};
use reqwest::Url;

/// The largest body read from any upstream: far above any honest answer (a 300-day
/// candle list is about 25 KB, a 90-day hourly chart about 200 KB), and small enough
/// that reading it cannot cost the worker its memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The API root of a source as configured in `setting` (`COINGECKO_BASE_URL`), parsed
/// once: an http(s) URL that paths can be appended to, such as `example`.
pub(crate) fn base_url(setting: &str, value: &str, example: &str) -> anyhow::Result<Url> {
    let url =
        Url::parse(value.trim()).with_context(|| format!("{setting} {value:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("{setting} {value:?} must be an http(s) URL such as {example}");
    }
    Ok(url)
}

/// `base` with `segments` appended as path segments (each escaped; a trailing slash of
/// `base` is no empty segment).
pub(crate) fn endpoint<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("checked in base_url: an http(s) URL can be a base")
        .pop_if_empty()
        .extend(segments);
    url
}

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

/// How many characters of an upstream's text a message quotes, unless the source says
/// otherwise ([`quote_at_most`]).
const QUOTE_LIMIT: usize = 200;

/// `"…"` around at most 200 characters of `text`: see [`quote_at_most`].
pub(crate) fn quote(text: &str) -> String {
    quote_at_most(text, QUOTE_LIMIT)
}

/// `"…"` around at most `limit` characters of `text`, on one line (its whitespace
/// folded, any other control character shown as `�`), cut on a character boundary: enough
/// of an upstream's sentence, never a page. A NUL in particular must not pass: PostgreSQL's
/// text refuses it, and the job's record could then never be ended.
pub(crate) fn quote_at_most(text: &str, limit: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = printable(&text);
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("\"{}…\"", &text[..cut]),
        None => format!("\"{text}\""),
    }
}

/// `text` with every control character (NUL, escapes, line breaks) shown as `�`: an
/// upstream's words as they may be stored and printed.
pub(crate) fn printable(text: &str) -> String {
    text.replace(char::is_control, "\u{FFFD}")
}

/// The decimal a JSON number stands for; kept in `domain`, where every candle's numbers
/// meet it, so that a source's wire and a candle convert alike.
pub use crate::domain::decimal_from_f64;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use rust_decimal::Decimal;

    /// The decimal written `text`, as `decimal_from_f64` should give it.
    fn written(text: &str) -> Option<Decimal> {
        Some(text.parse().expect("a decimal"))
    }

    #[test]
    fn a_root_must_be_http_and_paths_are_appended_to_it_with_or_without_its_slash() {
        for root in ["https://api.example.com/v3", "https://api.example.com/v3/"] {
            let base = base_url("X_BASE_URL", root, "https://api.example.com").unwrap();
            assert_eq!(
                endpoint(&base, ["coins", "a b"]).as_str(),
                "https://api.example.com/v3/coins/a%20b"
            );
        }
        for bad in ["api.example.com", "ftp://api.example.com", "mailto:x@y"] {
            let error = base_url("X_BASE_URL", bad, "https://api.example.com").unwrap_err();
            assert!(error.to_string().contains("X_BASE_URL"), "{error}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_ignores_words() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("119"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(119)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let soon = (Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let waited = retry_after(&headers).unwrap();
        assert!(
            waited > Duration::from_secs(27) && waited <= Duration::from_secs(30),
            "{waited:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn quotes_are_short_single_lines_cut_on_character_boundaries() {
        assert_eq!(quote(" a\n b "), "\"a b\"");
        assert_eq!(quote("a\0b\u{1b}[2Jc"), "\"a\u{FFFD}b\u{FFFD}[2Jc\"");
        let long = "é".repeat(300);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT + 3);
        assert!(quoted.ends_with("…\""));
        let longer = quote_at_most(&long, 250);
        assert_eq!(longer.chars().filter(|c| *c == 'é').count(), 250);
    }

    #[test]
    fn decimal_keeps_the_shortest_form_of_the_number_sent() {
        assert_eq!(
            decimal_from_f64(69702.3087473573),
            written("69702.3087473573")
        );
        assert_eq!(decimal_from_f64(0.1), written("0.1"));
        assert_eq!(decimal_from_f64(135.3), written("135.3"));
        assert_eq!(
            decimal_from_f64(1370247487960.09),
            written("1370247487960.09")
        );
        assert_eq!(decimal_from_f64(42.0), written("42"));
        assert_eq!(decimal_from_f64(-0.5), written("-0.5"));
    }

    #[test]
    fn decimal_reads_numbers_sent_in_exponent_form() {
        let from_json: f64 = serde_json::from_str("4.22610406175669e4").unwrap();
        assert_eq!(decimal_from_f64(from_json), written("42261.0406175669"));
        let tiny: f64 = serde_json::from_str("1.5e-7").unwrap();
        assert_eq!(decimal_from_f64(tiny), written("0.00000015"));
        let big: f64 = serde_json::from_str("1.9723005998215E10").unwrap();
        assert_eq!(decimal_from_f64(big), written("19723005998.215"));
    }

    #[test]
    fn decimal_refuses_what_it_cannot_hold() {
        assert_eq!(decimal_from_f64(f64::NAN), None);
        assert_eq!(decimal_from_f64(f64::INFINITY), None);
        assert_eq!(decimal_from_f64(1e30), None);
    }
}
