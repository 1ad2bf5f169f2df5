//! What Coinbase Exchange sends: candles as `[time, low, high, open, close, volume]`,
//! newest first, and a product's description; read without trusting either. A daily list
//! is refused whole for one untrue candle ([`parse_candles`]); an hourly list is read for
//! its shape only ([`parse_hourly_candles`]), each candle then judged on its own
//! (`domain::hours_from_exchange`), so that one bad hour is refused and counted while
//! the others are kept.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::window::Granularity;
use crate::domain::{DailyCandle, ExchangeCandle};
use crate::upstream::decimal_from_f64;

/// One daily candle as sent, checked, before it becomes a [`DailyCandle`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireCandle(pub ExchangeCandle);

/// Why a candle list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandlesError {
    /// Not the shape Coinbase documents: the body is something else.
    #[error("{0}")]
    Shape(String),
    /// The shape is right but a value is one no market has.
    #[error("{0}")]
    BadData(String),
}

impl CandlesError {
    pub fn is_bad_data(&self) -> bool {
        matches!(self, CandlesError::BadData(_))
    }
}

/// Reads a candle list: an array of six-number arrays, each a candle of `granularity`
/// starting where one starts (00:00 UTC for a day), every price finite and above zero,
/// the volume finite and not negative, low ≤ open, close ≤ high, at most one candle per
/// period. Anything else refuses the whole list.
pub fn parse_candles(
    body: &[u8],
    granularity: Granularity,
) -> Result<Vec<WireCandle>, CandlesError> {
    let candles: Vec<WireCandle> = read_rows(body)?.into_iter().map(WireCandle).collect();
    for (i, candle) in candles.iter().enumerate() {
        candle.check(i, granularity)?;
    }
    let mut times: Vec<i64> = candles.iter().map(|c| c.0.time).collect();
    times.sort_unstable();
    if let Some(twice) = times.windows(2).find(|w| w[0] == w[1]) {
        return Err(CandlesError::BadData(format!(
            "two candles for the {} starting at {}",
            granularity.period(),
            twice[0]
        )));
    }
    Ok(candles)
}

/// Reads an hourly candle list for its shape only: an array of six-number arrays whose
/// time is whole seconds. Whether each candle is on the hour grid, above zero and holds
/// together is the domain's to judge, candle by candle.
pub fn parse_hourly_candles(body: &[u8]) -> Result<Vec<ExchangeCandle>, CandlesError> {
    read_rows(body)
}

/// The rows of a candle list, as numbers, without judging them.
fn read_rows(body: &[u8]) -> Result<Vec<ExchangeCandle>, CandlesError> {
    let rows: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| CandlesError::Shape(format!("not a JSON array of candles: {e}")))?;
    let mut candles = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let fields = row
            .as_array()
            .filter(|fields| fields.len() >= 6)
            .ok_or_else(|| {
                CandlesError::Shape(format!(
                    "candle {i} is not [time, low, high, open, close, volume]"
                ))
            })?;
        let number = |n: usize| {
            fields[n].as_f64().ok_or_else(|| {
                CandlesError::Shape(format!("candle {i}: field {n} is not a number"))
            })
        };
        let time = fields[0].as_i64().ok_or_else(|| {
            CandlesError::Shape(format!("candle {i}: its time is not whole seconds"))
        })?;
        let candle = ExchangeCandle {
            time,
            low: number(1)?,
            high: number(2)?,
            open: number(3)?,
            close: number(4)?,
            volume: number(5)?,
        };
        candles.push(candle);
    }
    Ok(candles)
}

impl WireCandle {
    fn check(&self, i: usize, granularity: Granularity) -> Result<(), CandlesError> {
        let c = &self.0;
        let bad = |why: String| Err(CandlesError::BadData(format!("candle {i}: {why}")));
        if c.time.rem_euclid(granularity.seconds()) != 0
            || DateTime::from_timestamp(c.time, 0).is_none()
        {
            return bad(format!(
                "{} is not the start of a {} (UTC)",
                c.time,
                granularity.period()
            ));
        }
        for (name, price) in [
            ("low", c.low),
            ("high", c.high),
            ("open", c.open),
            ("close", c.close),
        ] {
            if !(price.is_finite() && price > 0.0) {
                return bad(format!("its {name} price {price} is not above zero"));
            }
        }
        if !(c.volume.is_finite() && c.volume >= 0.0) {
            return bad(format!("its volume {} is negative", c.volume));
        }
        if c.low > c.high.min(c.open).min(c.close) || c.high < c.open.max(c.close) {
            return bad(format!(
                "its low {} and high {} do not hold its open {} and close {}",
                c.low, c.high, c.open, c.close
            ));
        }
        Ok(())
    }

    /// The UTC day the candle covers.
    pub fn day(&self) -> NaiveDate {
        DateTime::from_timestamp(self.0.time, 0)
            .expect("checked when read")
            .date_naive()
    }

    /// The candle as stored: volume in USD (base volume × close), provisional when its
    /// day was not over at `now`, time-stamped with the candle's end (or `now` for a
    /// day not over). `None` for a value a `Decimal` cannot hold.
    pub fn to_daily(&self, now: DateTime<Utc>) -> Option<DailyCandle> {
        let c = &self.0;
        let close = decimal_from_f64(c.close)?;
        let volume = decimal_from_f64(c.volume)?
            .checked_mul(close)?
            .round_dp(8)
            .normalize();
        let end = DateTime::from_timestamp(c.time + Granularity::Day.seconds(), 0)?;
        Some(DailyCandle {
            date: self.day(),
            open: decimal_from_f64(c.open)?,
            high: decimal_from_f64(c.high)?,
            low: decimal_from_f64(c.low)?,
            close,
            volume,
            timestamp: end.min(now),
            provisional: end > now,
            points: Some(1),
        })
    }
}

/// `GET /products/{product}`: the fields the service reads of a product.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProductInfo {
    /// `BTC-USD`.
    pub id: String,
    pub base_currency: String,
    pub quote_currency: String,
    /// `online`, `offline`, `delisted`, ...; candles of the past stay readable whatever it is.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub trading_disabled: Option<bool>,
}

/// Coinbase's error body, `{"message": "..."}`; anything else reads as no message.
pub fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        message: String,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .map(|b| b.message)
        .or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (!text.is_empty() && !text.starts_with('<')).then(|| text.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn candles_are_read_in_coinbases_field_order() {
        let body = br#"[[1704153600, 44000.5, 45500, 44100.25, 45000, 2.5],
                        [1704067200, 42000, 44200, 42300, 44100.25, 10]]"#;
        let candles = parse_candles(body, Granularity::Day).unwrap();
        assert_eq!(candles.len(), 2);
        assert_eq!(candles[0].0.low, 44000.5);
        assert_eq!(candles[0].0.high, 45500.0);
        assert_eq!(candles[0].0.open, 44100.25);
        assert_eq!(candles[0].0.close, 45000.0);
        assert_eq!(
            candles[0].day(),
            NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()
        );
        let now = DateTime::from_timestamp(1_704_200_000, 0).unwrap();
        let day = candles[0].to_daily(now).unwrap();
        assert_eq!(
            day.volume,
            Decimal::from(112_500),
            "2.5 BTC at a close of 45000 USD"
        );
        assert!(day.provisional, "2024-01-02 was not over at {now}");
        assert_eq!(day.timestamp, now);
        let before = candles[1].to_daily(now).unwrap();
        assert!(!before.provisional);
        assert_eq!(
            before.timestamp,
            DateTime::from_timestamp(1_704_153_600, 0).unwrap()
        );
    }

    #[test]
    fn untrustworthy_values_refuse_the_whole_list() {
        for (body, what) in [
            (&br#"[[1704067200, 0, 2, 1, 1, 1]]"#[..], "zero low"),
            (br#"[[1704067200, -1, 2, 1, 1, 1]]"#, "negative low"),
            (br#"[[1704067200, 1, 2, 1, 1, -0.5]]"#, "negative volume"),
            (br#"[[1704067200, 1, 2, 3, 1, 1]]"#, "open above high"),
            (br#"[[1704070800, 1, 2, 1, 1, 1]]"#, "not midnight"),
            (
                br#"[[1704067200, 1, 2, 1, 1, 1], [1704067200, 1, 2, 1, 1, 1]]"#,
                "a day twice",
            ),
        ] {
            let error = parse_candles(body, Granularity::Day).unwrap_err();
            assert!(error.is_bad_data(), "{what}: {error}");
        }
    }

    #[test]
    fn garbage_is_not_a_candle_list() {
        for body in [
            &b"<html>502</html>"[..],
            br#"{"message":"NotFound"}"#,
            br#"[[1704067200, 1, 2]]"#,
            br#"[["1704067200", 1, 2, 1, 1, 1]]"#,
            br#"[[1704067200, "1", 2, 1, 1, 1]]"#,
        ] {
            let error = parse_candles(body, Granularity::Day).unwrap_err();
            assert!(
                !error.is_bad_data(),
                "{}: {error}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_candles(b"[]", Granularity::Day).unwrap(), vec![]);
    }

    #[test]
    fn an_hourly_list_is_read_for_its_shape_and_its_values_left_to_judge() {
        let body = br#"[[1704070800, 5, 1, 2, 3, 4], [1704067230, 0, 2, 1, 1, 1]]"#;
        let candles = parse_hourly_candles(body).unwrap();
        assert_eq!(candles.len(), 2);
        assert_eq!(
            (candles[0].time, candles[0].low, candles[0].high),
            (1_704_070_800, 5.0, 1.0)
        );
        assert_eq!(candles[1].time, 1_704_067_230, "off the grid, still read");
        for garbage in [&b"<html>502</html>"[..], br#"[[1704067200, 1, 2]]"#] {
            assert!(!parse_hourly_candles(garbage).unwrap_err().is_bad_data());
        }
    }

    #[test]
    fn error_bodies_yield_their_message() {
        assert_eq!(
            error_message(br#"{"message":"NotFound"}"#).as_deref(),
            Some("NotFound")
        );
        assert_eq!(error_message(b"<html></html>"), None);
        assert_eq!(error_message(b" busy ").as_deref(), Some("busy"));
    }
}
