//! The success body of `/coins/{id}/market_chart/range`, read leniently.
//!
//! CoinGecko sends `{"prices":[[ms,v],…],"market_caps":[…],"total_volumes":[…]}`. We keep
//! prices and 24 h volumes; market caps are not stored, so their absence is no error.
//! Values are JSON numbers (binary floating point on CoinGecko's side), so the faithful
//! decimal is the shortest one that reads back as the same `f64`.
//!
//! What the body says is not trusted: a price must be above zero and a volume must not
//! be negative, and one instant may not carry two different values. An answer that
//! breaks any of these is refused whole ([`BodyError::is_bad_data`]), so that nothing of
//! it is stored.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::upstream::{decimal_from_f64, printable};

/// One window of CoinGecko data, each series sorted by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketChart {
    /// Prices in USD, one per CoinGecko point (hourly or daily, plus a live point when
    /// the window reaches the present).
    pub prices: Vec<Point>,
    /// 24 h trading volumes in USD, at the same times as `prices`.
    pub total_volumes: Vec<Point>,
}

/// One value of a series at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// When CoinGecko sampled the value (millisecond precision, as sent).
    pub at: DateTime<Utc>,
    /// The value, exactly as the shortest decimal form of the number CoinGecko sent.
    pub value: Decimal,
}

/// Why a 2xx body is not a market chart.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("it is not the expected JSON ({0})")]
    Json(#[from] serde_json::Error),
    #[error("it has a timestamp out of range ({0} ms)")]
    Timestamp(f64),
    #[error("it has a value that does not fit a decimal ({0})")]
    Value(f64),
    #[error("it has a price of {value} at {at}, and a price must be above zero")]
    PriceNotPositive { value: f64, at: DateTime<Utc> },
    #[error("it has a 24-hour volume of {value} at {at}, and a volume cannot be negative")]
    NegativeVolume { value: f64, at: DateTime<Utc> },
    #[error("it has two different {series} for {at} ({first} and {second})")]
    Conflict {
        series: &'static str,
        at: DateTime<Utc>,
        first: Decimal,
        second: Decimal,
    },
}

impl BodyError {
    /// The body is a market chart, but its data cannot be true: the fault is in
    /// CoinGecko's data, not in where the request went.
    pub(crate) fn is_bad_data(&self) -> bool {
        matches!(
            self,
            Self::PriceNotPositive { .. } | Self::NegativeVolume { .. } | Self::Conflict { .. }
        )
    }
}

/// Which series a point belongs to, for the rule its values must follow.
#[derive(Clone, Copy)]
enum Series {
    Prices,
    Volumes,
}

/// `[ms, value]`; a `null` value is a hole CoinGecko sometimes leaves, not an error.
type RawPoint = (f64, Option<f64>);

#[derive(Deserialize)]
struct RawChart {
    prices: Vec<RawPoint>,
    total_volumes: Vec<RawPoint>,
}

impl MarketChart {
    /// Reads a success body. Tolerates a missing `market_caps`, `null` values (the point
    /// is skipped), float timestamps, exponent notation and a point sent twice with the
    /// same value; anything else is an error, and so is a price that is not above zero,
    /// a negative volume, or one instant with two different values.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let raw: RawChart = serde_json::from_slice(body)?;
        Ok(Self {
            prices: points(raw.prices, Series::Prices)?,
            total_volumes: points(raw.total_volumes, Series::Volumes)?,
        })
    }
}

fn points(raw: Vec<RawPoint>, series: Series) -> Result<Vec<Point>, BodyError> {
    let mut points = raw
        .into_iter()
        .filter_map(|(ms, value)| value.map(|value| (ms, value)))
        .map(|(ms, raw)| {
            let at = millis_to_time(ms).ok_or(BodyError::Timestamp(ms))?;
            let value = decimal_from_f64(raw).ok_or(BodyError::Value(raw))?;
            // Checked on the decimal too: a tiny positive float can round to 0 in it.
            match series {
                Series::Prices if raw <= 0.0 || value <= Decimal::ZERO => {
                    Err(BodyError::PriceNotPositive { value: raw, at })
                }
                Series::Volumes if raw < 0.0 || value < Decimal::ZERO => {
                    Err(BodyError::NegativeVolume { value: raw, at })
                }
                _ => Ok(Point { at, value }),
            }
        })
        .collect::<Result<Vec<_>, BodyError>>()?;
    points.sort_by_key(|point| point.at);
    // The same instant twice: harmless when the values agree, a contradiction when not.
    for pair in points.windows(2) {
        if pair[0].at == pair[1].at && pair[0].value != pair[1].value {
            return Err(BodyError::Conflict {
                series: match series {
                    Series::Prices => "prices",
                    Series::Volumes => "24-hour volumes",
                },
                at: pair[0].at,
                first: pair[0].value,
                second: pair[1].value,
            });
        }
    }
    points.dedup_by_key(|point| point.at);
    Ok(points)
}

fn millis_to_time(ms: f64) -> Option<DateTime<Utc>> {
    if !ms.is_finite() {
        return None;
    }
    // Range-checked by `from_timestamp_millis`; the cast saturates, it cannot wrap.
    DateTime::from_timestamp_millis(ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dec;

    #[test]
    fn the_daily_sample_parses_with_its_live_point() {
        // samples/market_chart_range_daily_btc.coingecko-net-fixture.json
        let body = br#"{
          "prices": [
            [1711843200000, 69702.3087473573],
            [1711929600000, 71246.9514406015],
            [1711983682000, 68887.7495158568]
          ],
          "market_caps": [
            [1711843200000, 1370247487960.09],
            [1711929600000, 1401370211582.37],
            [1711983682000, 1355701979725.16]
          ],
          "total_volumes": [
            [1711843200000, 16408802301.8374],
            [1711929600000, 19723005998.215],
            [1711983682000, 30137418199.6431]
          ]
        }"#;
        let chart = MarketChart::parse(body).unwrap();
        assert_eq!(chart.prices.len(), 3);
        assert_eq!(chart.total_volumes.len(), 3);
        assert_eq!(chart.prices[0].at.to_rfc3339(), "2024-03-31T00:00:00+00:00");
        assert_eq!(chart.prices[0].value, dec("69702.3087473573"));
        assert_eq!(chart.prices[2].at.to_rfc3339(), "2024-04-01T15:01:22+00:00");
        assert_eq!(chart.total_volumes[1].value, dec("19723005998.215"));
    }

    #[test]
    fn the_hourly_sample_keeps_its_millisecond_jitter() {
        // samples/market_chart_range_hourly_btc.openapi-example.json
        let body = br#"{
          "prices": [
            [1704067241331, 42261.0406175669],
            [1704070847420, 42493.2764087546],
            [1704074443652, 42654.0731066594]
          ],
          "market_caps": [
            [1704067241331, 827596236151.196],
            [1704070847420, 831531023621.411],
            [1704074443652, 835499399014.932]
          ],
          "total_volumes": [
            [1704067241331, 14305769170.9498],
            [1704070847420, 14130205376.1709],
            [1704074443652, 13697382902.2424]
          ]
        }"#;
        let chart = MarketChart::parse(body).unwrap();
        assert_eq!(chart.prices[0].at.timestamp_millis(), 1_704_067_241_331);
        assert_eq!(chart.prices[0].value, dec("42261.0406175669"));
    }

    #[test]
    fn missing_market_caps_null_values_and_float_timestamps_are_tolerated() {
        let body = br#"{"prices":[[1711929600000.0,2.5e4],[1711843200000,null],[1711843200000,1]],
                        "total_volumes":[[1711843200000,null]]}"#;
        let chart = MarketChart::parse(body).unwrap();
        assert_eq!(chart.prices.len(), 2);
        assert_eq!(chart.total_volumes, vec![]);
        assert_eq!(chart.prices[1].value, dec("25000"));
    }

    #[test]
    fn points_come_out_sorted_by_time() {
        let body = br#"{"prices":[[3000,3],[1000,1],[2000,2]],"total_volumes":[]}"#;
        let chart = MarketChart::parse(body).unwrap();
        let times: Vec<i64> = chart
            .prices
            .iter()
            .map(|p| p.at.timestamp_millis())
            .collect();
        assert_eq!(times, vec![1000, 2000, 3000]);
    }

    #[test]
    fn prices_not_above_zero_and_negative_volumes_are_bad_data_quoting_the_value() {
        for (body, quoted) in [
            (
                r#"{"prices":[[1711843200000,-5.5]],"total_volumes":[]}"#,
                "price of -5.5",
            ),
            (
                r#"{"prices":[[1711843200000,0]],"total_volumes":[]}"#,
                "price of 0",
            ),
            (
                r#"{"prices":[[1711843200000,1e-40]],"total_volumes":[]}"#,
                "price of 0.0000",
            ),
            (
                r#"{"prices":[[1711843200000,1]],"total_volumes":[[1711843200000,-2]]}"#,
                "volume of -2",
            ),
        ] {
            let error = MarketChart::parse(body.as_bytes()).unwrap_err();
            assert!(error.is_bad_data(), "{body}: {error}");
            assert!(error.to_string().contains(quoted), "{body}: {error}");
        }
        let zero_volume = r#"{"prices":[[1711843200000,1]],"total_volumes":[[1711843200000,0]]}"#;
        assert!(MarketChart::parse(zero_volume.as_bytes()).is_ok());
    }

    #[test]
    fn one_instant_with_two_values_is_bad_data_and_a_repeated_point_is_kept_once() {
        let conflicting =
            br#"{"prices":[[1711843200000,100],[1711843200000,101]],"total_volumes":[]}"#;
        let error = MarketChart::parse(conflicting).unwrap_err();
        assert!(error.is_bad_data(), "{error}");
        assert!(
            error
                .to_string()
                .contains("2024-03-31 00:00:00 UTC (100 and 101)"),
            "{error}"
        );
        let conflicting_volumes =
            br#"{"prices":[],"total_volumes":[[1711843200000,5],[1711843200000,6]]}"#;
        assert!(
            MarketChart::parse(conflicting_volumes)
                .unwrap_err()
                .is_bad_data()
        );
        let repeated =
            br#"{"prices":[[1711843200000,100],[1711843200000,100.0]],"total_volumes":[]}"#;
        assert_eq!(MarketChart::parse(repeated).unwrap().prices.len(), 1);
    }

    #[test]
    fn an_empty_chart_is_a_chart() {
        let chart =
            MarketChart::parse(br#"{"prices":[],"market_caps":[],"total_volumes":[]}"#).unwrap();
        assert!(chart.prices.is_empty());
    }

    #[test]
    fn bodies_that_are_not_a_chart_are_errors() {
        for body in [
            &b"<html>oops</html>"[..],
            br#"{"error":"coin not found"}"#,
            br#"{"prices":[[1,"abc"]],"total_volumes":[]}"#,
            br#"{"prices":[[1]],"total_volumes":[]}"#,
            br#"{"prices":[[1e300,1]],"total_volumes":[]}"#,
            br#"{"prices":[[1,1e40]],"total_volumes":[]}"#,
            b"",
        ] {
            assert!(
                MarketChart::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// One coin of `/coins/markets` (the fields the top-N import reads; CoinGecko sends
/// many more, ignored): its id, its ticker as CoinGecko writes it (lower case), its name
/// and its rank by market cap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MarketCoin {
    pub id: String,
    pub symbol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub market_cap_rank: Option<u32>,
}

impl MarketCoin {
    /// A page of `/coins/markets`: a JSON array of coins. Their words become printable
    /// (see [`printable`]): a skipped coin's ticker and id are stored and shown as listed.
    pub(crate) fn parse_page(body: &[u8]) -> Result<Vec<MarketCoin>, serde_json::Error> {
        let mut coins: Vec<MarketCoin> = serde_json::from_slice(body)?;
        for coin in &mut coins {
            for text in [&mut coin.id, &mut coin.symbol, &mut coin.name] {
                *text = printable(text);
            }
        }
        Ok(coins)
    }
}

#[cfg(test)]
mod market_tests {
    use super::*;

    #[test]
    fn a_listed_coins_control_characters_become_printable() {
        let page = br#"[{"id":"bit\u0000coin","symbol":"bt\u001bc","name":"Bit\ncoin"}]"#;
        let coins = MarketCoin::parse_page(page).unwrap();
        assert_eq!(coins[0].id, "bit\u{FFFD}coin");
        assert_eq!(coins[0].symbol, "bt\u{FFFD}c");
        assert_eq!(coins[0].name, "Bit\u{FFFD}coin");
    }
}
