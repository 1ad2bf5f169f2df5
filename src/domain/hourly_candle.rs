//! One UTC hour of a coin: an exchange's true candle (Coinbase's `granularity=3600`), or a
//! candle built from CoinGecko's price points of that hour when the coin has no usable
//! exchange product. An [`HourlyCandle`] cannot be invalid: a time off the hour grid, a
//! price that is not a finite number above zero, a negative volume, a low above the high
//! or a band that does not hold the open and close are refused when it is made, and a
//! window's refusals are returned beside its candles so that the job can count and name
//! them, as it does for days.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{CheckPoint, DisputeRule, Hour, HourCheck, HourRange, OffTheHour, PriceSource};

/// CoinGecko's volume is the whole market's trailing 24 hours. A CoinGecko-built hour takes
/// the last such value of the hour divided by this: the hour's even share of the market's
/// day, in USD. Summed over a `4h` block or a day it then stays a volume of that span (the
/// raw 24-hour value would be counted 4 or 24 times over), and the raw value is this times
/// the stored one. Its `source` says it is the market's, not one exchange's.
pub const COINGECKO_VOLUME_HOURS: u32 = 24;

/// What an hourly candle is made of; [`HourlyCandle::new`] checks that it holds together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourParts {
    pub hour: Hour,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// In USD: for an exchange candle its base volume times its close; for a CoinGecko-built
    /// hour see [`COINGECKO_VOLUME_HOURS`].
    pub volume: Decimal,
    /// `Coinbase` for an exchange candle, `CoinGecko` for one built from points.
    pub source: PriceSource,
    /// How many CoinGecko points a CoinGecko-built hour was made from (at least 1);
    /// `None` for an exchange candle, which is a candle of its own.
    pub points: Option<i32>,
    /// The hour was not over when fetched: it counts as missing until replaced.
    pub provisional: bool,
    /// CoinGecko's point beside an exchange candle and what it found; `None` when no point
    /// could check it (and always for a CoinGecko-built hour).
    pub check: Option<HourCheck>,
}

/// An hourly candle that holds together (see the module's docs). Read its parts through
/// `Deref` (`candle.close`); make one with [`HourlyCandle::new`] or the builders below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyCandle(HourParts);

/// Why a candle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCandle {
    #[error("{0}")]
    OffTheHour(#[from] OffTheHour),
    #[error("its {name} price {value} is not a finite number above zero")]
    PriceNotPositive { name: &'static str, value: String },
    #[error("its volume {0} is not a finite number of zero or more")]
    BadVolume(String),
    #[error("its low {low} and high {high} do not hold its open {open} and close {close}")]
    BandBroken {
        low: String,
        high: String,
        open: String,
        close: String,
    },
    #[error("one of two candles for the same hour")]
    Twice,
    #[error(
        "a {origin} hour with {points:?} points: an exchange candle has none, a CoinGecko-built hour at least 1"
    )]
    PointsDoNotFitTheSource {
        /// The hour's source (not named `source`, which `thiserror` reads as a cause).
        origin: PriceSource,
        points: Option<i32>,
    },
    #[error("a check point {0} is not one of CoinGecko's prices inside an exchange candle's hour")]
    MisplacedCheck(String),
}

impl HourlyCandle {
    /// Checks that `parts` hold together: every price finite (a `Decimal` always is) and
    /// above zero, volume not negative, `low <= open, close <= high`, points only on a
    /// CoinGecko-built hour, a check only beside an exchange candle, inside its hour.
    pub fn new(parts: HourParts) -> Result<HourlyCandle, BadCandle> {
        for (name, value) in [
            ("open", parts.open),
            ("high", parts.high),
            ("low", parts.low),
            ("close", parts.close),
        ] {
            if value <= Decimal::ZERO {
                return Err(BadCandle::PriceNotPositive {
                    name,
                    value: value.to_string(),
                });
            }
        }
        if parts.volume < Decimal::ZERO {
            return Err(BadCandle::BadVolume(parts.volume.to_string()));
        }
        if parts.low > parts.open.min(parts.close) || parts.high < parts.open.max(parts.close) {
            return Err(BadCandle::BandBroken {
                low: parts.low.to_string(),
                high: parts.high.to_string(),
                open: parts.open.to_string(),
                close: parts.close.to_string(),
            });
        }
        let points_fit = match parts.source {
            PriceSource::Coinbase => parts.points.is_none(),
            PriceSource::CoinGecko => parts.points.is_some_and(|n| n >= 1),
        };
        if !points_fit {
            return Err(BadCandle::PointsDoNotFitTheSource {
                origin: parts.source,
                points: parts.points,
            });
        }
        if let Some(check) = parts.check {
            let fits = parts.source == PriceSource::Coinbase
                && parts.hour.contains(check.point.at)
                && check.point.price > Decimal::ZERO
                && check.deviation_percent >= Decimal::ZERO
                && (!check.disputed || check.deviation_percent > Decimal::ZERO);
            if !fits {
                return Err(BadCandle::MisplacedCheck(format!(
                    "at {} of {}",
                    check.point.at, check.point.price
                )));
            }
        }
        Ok(HourlyCandle(parts))
    }

    /// The same candle with CoinGecko's `point` of its hour beside it, judged by `rule`.
    /// Refused for a CoinGecko-built hour and for a point outside the hour.
    pub fn with_check(
        self,
        point: CheckPoint,
        rule: DisputeRule,
    ) -> Result<HourlyCandle, BadCandle> {
        let check = rule.judge(self.0.low, self.0.high, point);
        HourlyCandle::new(HourParts {
            check: Some(check),
            ..self.0
        })
    }

    pub fn into_parts(self) -> HourParts {
        self.0
    }
}

impl Deref for HourlyCandle {
    type Target = HourParts;

    fn deref(&self) -> &HourParts {
        &self.0
    }
}

/// One candle as an exchange sends it (Coinbase: `[time, low, high, open, close,
/// volume]`), before it is trusted: what an exchange client parses its answer into, hourly
/// or daily.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExchangeCandle {
    /// The candle's start, seconds since 1970.
    pub time: i64,
    pub low: f64,
    pub high: f64,
    pub open: f64,
    pub close: f64,
    /// In the base asset (BTC of BTC-USD), traded on that exchange alone.
    pub volume: f64,
}

/// A candle that was refused, and when it was said to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedHour {
    /// The time the source gave it, seconds since 1970.
    pub time: i64,
    pub why: BadCandle,
}

impl fmt::Display for RefusedHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_timestamp(self.time, 0) {
            Some(at) => write!(
                f,
                "the candle of {}: {}",
                at.format("%Y-%m-%dT%H:%M:%SZ"),
                self.why
            ),
            None => write!(f, "the candle of time {}: {}", self.time, self.why),
        }
    }
}

/// What a window's answer makes: the candles to store, ascending, and those refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hours {
    pub candles: Vec<HourlyCandle>,
    pub refused: Vec<RefusedHour>,
}

impl Hours {
    /// The hours of `window` over at `now` with neither a candle nor a refused one: where
    /// the exchange published none because nothing traded. Refused hours are not among
    /// them (they had trades, only not believable ones, and stay missing), nor is an hour
    /// not over yet (its first trade may still come).
    pub fn without_candles(&self, window: HourRange, now: DateTime<Utc>) -> Vec<Hour> {
        let refused = self
            .refused
            .iter()
            .filter_map(|r| DateTime::from_timestamp(r.time, 0).map(Hour::containing));
        let mut quiet = window.hours_not_in(self.candles.iter().map(|c| c.hour).chain(refused));
        quiet.retain(|hour| hour.is_over(now));
        quiet
    }
}

/// Trusts what it can of an exchange's answer for `window`: candles outside the window are
/// dropped (Coinbase may send earlier ones), the rest become exchange candles, volume in
/// USD (base volume times close), provisional when their hour is not over at `now`. A
/// candle that does not hold together is refused, and so is every candle of an hour the
/// answer holds twice.
pub fn hours_from_exchange(
    answer: &[ExchangeCandle],
    window: HourRange,
    now: DateTime<Utc>,
) -> Hours {
    let mut out = Hours::default();
    let mut sorted: Vec<&ExchangeCandle> = answer
        .iter()
        .filter(|c| {
            DateTime::from_timestamp(c.time, 0)
                .is_some_and(|at| window.first().start() <= at && at < window.end())
        })
        .collect();
    sorted.sort_by_key(|c| c.time);
    for (i, raw) in sorted.iter().enumerate() {
        // Two candles for one hour: neither is trusted (which would be the true one?).
        let twice = (i > 0 && sorted[i - 1].time == raw.time)
            || sorted.get(i + 1).is_some_and(|next| next.time == raw.time);
        let made = if twice {
            Err(BadCandle::Twice)
        } else {
            exchange_candle(raw, now)
        };
        match made {
            Ok(candle) => out.candles.push(candle),
            Err(why) => out.refused.push(RefusedHour {
                time: raw.time,
                why,
            }),
        }
    }
    out
}

fn exchange_candle(raw: &ExchangeCandle, now: DateTime<Utc>) -> Result<HourlyCandle, BadCandle> {
    let hour = Hour::from_unix(raw.time)?;
    let price = |name: &'static str, value: f64| {
        decimal_from_f64(value)
            .filter(|d| *d > Decimal::ZERO)
            .ok_or_else(|| BadCandle::PriceNotPositive {
                name,
                value: value.to_string(),
            })
    };
    let close = price("close", raw.close)?;
    let volume = decimal_from_f64(raw.volume)
        .filter(|v| *v >= Decimal::ZERO)
        .and_then(|v| v.checked_mul(close))
        .ok_or_else(|| BadCandle::BadVolume(raw.volume.to_string()))?
        .round_dp(8)
        .normalize();
    HourlyCandle::new(HourParts {
        hour,
        open: price("open", raw.open)?,
        high: price("high", raw.high)?,
        low: price("low", raw.low)?,
        close,
        volume,
        source: PriceSource::Coinbase,
        points: None,
        provisional: !hour.is_over(now),
        check: None,
    })
}

/// Builds CoinGecko hours of `range` from its price and 24-hour volume points (each
/// `(time, value)`, in any order): per UTC hour, open = first price, high = max, low = min,
/// close = last, `points` = how many prices; volume = the hour's last 24-hour volume over
/// [`COINGECKO_VOLUME_HOURS`]. An hour without a price or without a volume point has no
/// candle (it stays missing, never guessed); one not over at `now` is provisional. A
/// price not above zero or a negative volume refuses its hour.
pub fn hours_from_points(
    prices: &[(DateTime<Utc>, Decimal)],
    volumes: &[(DateTime<Utc>, Decimal)],
    range: HourRange,
    now: DateTime<Utc>,
) -> Hours {
    let prices = by_hour(prices, range);
    let volumes = by_hour(volumes, range);
    let mut out = Hours::default();
    for (hour, points) in prices {
        let Some(day_volume) = volumes.get(&hour).and_then(|v| v.last()).map(|(_, v)| *v) else {
            continue;
        };
        let (open, close) = (points[0].1, points[points.len() - 1].1);
        let high = points.iter().map(|(_, p)| *p).max().unwrap_or(open);
        let low = points.iter().map(|(_, p)| *p).min().unwrap_or(open);
        let made = HourlyCandle::new(HourParts {
            hour,
            open,
            high,
            low,
            close,
            volume: (day_volume / Decimal::from(COINGECKO_VOLUME_HOURS))
                .round_dp(8)
                .normalize(),
            source: PriceSource::CoinGecko,
            points: Some(i32::try_from(points.len()).unwrap_or(i32::MAX)),
            provisional: !hour.is_over(now),
            check: None,
        });
        match made {
            Ok(candle) => out.candles.push(candle),
            Err(why) => out.refused.push(RefusedHour {
                time: hour.unix(),
                why,
            }),
        }
    }
    out
}

/// Points of `range` grouped by UTC hour, each hour's in time order.
fn by_hour(
    points: &[(DateTime<Utc>, Decimal)],
    range: HourRange,
) -> BTreeMap<Hour, Vec<(DateTime<Utc>, Decimal)>> {
    let mut hours: BTreeMap<Hour, Vec<(DateTime<Utc>, Decimal)>> = BTreeMap::new();
    for &(at, value) in points {
        let hour = Hour::containing(at);
        if range.contains(hour) {
            hours.entry(hour).or_default().push((at, value));
        }
    }
    for points in hours.values_mut() {
        points.sort_by_key(|(at, _)| *at);
    }
    hours
}

/// The decimal a JSON number stands for: the shortest decimal that reads back as the
/// same `f64` (Rust's `Display` for floats), so `69702.3087473573` stays exactly that
/// and `0.1` does not become `0.1000000000000000055…`. `None` for NaN, infinities and
/// magnitudes beyond `Decimal` (about 7.9e28); digits past 28 decimal places are rounded.
/// The one conversion every source's numbers go through on their way into a candle
/// (`upstream::decimal_from_f64` is this one).
///
/// serde_json (without its `float_roundtrip` feature) reads numbers of up to 15
/// significant digits exactly, which is what CoinGecko sends; about one 17-digit number
/// in ten would come out one bit off, and so as a different 17-digit decimal.
pub fn decimal_from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    // `Display` never uses exponent form; `Decimal::from_str` would accept it anyway.
    value.to_string().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, dec};

    const TEN: i64 = 1_704_103_200; // 2024-01-01T10:00:00Z
    const LONG_AFTER: &str = "2030-01-01T00:00:00Z";

    fn window(hours: i64) -> HourRange {
        HourRange::starting(Hour::from_unix(TEN).unwrap(), hours).unwrap()
    }

    fn raw(time: i64, low: f64, high: f64, open: f64, close: f64, volume: f64) -> ExchangeCandle {
        ExchangeCandle {
            time,
            low,
            high,
            open,
            close,
            volume,
        }
    }

    fn parts(hour: Hour) -> HourParts {
        HourParts {
            hour,
            open: dec("10"),
            high: dec("12"),
            low: dec("9"),
            close: dec("11"),
            volume: dec("5"),
            source: PriceSource::Coinbase,
            points: None,
            provisional: false,
            check: None,
        }
    }

    #[test]
    fn an_exchange_answer_becomes_usd_candles_in_order_and_drops_what_lies_outside() {
        let answer = [
            raw(TEN + 3_600, 99.5, 101.25, 100.0, 101.0, 2.5),
            raw(TEN, 98.0, 100.5, 99.0, 100.0, 0.1),
            raw(TEN - 3_600, 1.0, 1.0, 1.0, 1.0, 1.0),
            raw(TEN + 7_200, 1.0, 1.0, 1.0, 1.0, 1.0),
        ];
        let hours = hours_from_exchange(&answer, window(2), at(LONG_AFTER));
        assert!(hours.refused.is_empty());
        let seen: Vec<(i64, Decimal, Decimal, Decimal)> = hours
            .candles
            .iter()
            .map(|c| (c.hour.unix(), c.open, c.low, c.volume))
            .collect();
        assert_eq!(
            seen,
            vec![
                (TEN, dec("99"), dec("98"), dec("10")),
                (TEN + 3_600, dec("100"), dec("99.5"), dec("252.5")),
            ]
        );
        let first = &hours.candles[0];
        assert_eq!(
            (first.source, first.points, first.check),
            (PriceSource::Coinbase, None, None)
        );
        assert!(!first.provisional);
    }

    #[test]
    fn bad_exchange_candles_are_refused_and_counted_and_the_good_ones_kept() {
        let answer = [
            raw(TEN, 98.0, 100.5, 99.0, 100.0, 1.0),
            raw(TEN + 3_600, 101.0, 100.0, 100.0, 100.5, 1.0), // low > high
            raw(TEN + 7_200, 0.0, 100.0, 50.0, 50.0, 1.0),     // low 0
            raw(TEN + 10_800, 1.0, f64::INFINITY, 2.0, 2.0, 1.0),
            raw(TEN + 14_400, 1.0, f64::NAN, 2.0, 2.0, 1.0),
            raw(TEN + 18_000, 1.0, 3.0, 2.0, 2.0, -1.0), // negative volume
            raw(TEN + 21_600, 1.0, 3.0, 0.5, 2.0, 1.0),  // open below the low
            raw(TEN + 25_200 + 1_800, 1.0, 3.0, 2.0, 2.0, 1.0), // off the grid
            raw(TEN, 98.0, 100.5, 99.0, 100.0, 1.0),     // the first hour again
        ];
        let hours = hours_from_exchange(&answer, window(9), at(LONG_AFTER));
        assert_eq!(
            hours.candles.len(),
            0,
            "neither candle of the hour sent twice"
        );
        assert_eq!(hours.refused.len(), 9);
        let said: Vec<String> = hours.refused.iter().map(ToString::to_string).collect();
        // What each refusal says, in the order of the answer's bad candles.
        let reasons = [
            "one of two candles",
            "one of two candles",
            "low 101 and high 100 do not hold",
            "low price 0 is not a finite number above zero",
            "high price inf",
            "high price NaN",
            "volume -1",
            "do not hold its open 0.5",
            "is not the start of a UTC hour",
        ];
        for (refusal, reason) in said.iter().zip(reasons) {
            assert!(refusal.contains(reason), "{said:?}");
        }
        assert!(
            said[8].starts_with("the candle of 2024-01-01T17:30:00Z"),
            "{said:?}"
        );
        // Hours with a refused candle had trades: they are not "without trades".
        let quiet = hours.without_candles(window(9), at(LONG_AFTER));
        assert_eq!(quiet, vec![Hour::from_unix(TEN + 28_800).unwrap()]);
    }

    #[test]
    fn the_hour_not_over_yet_is_provisional() {
        let answer = [
            raw(TEN, 1.0, 2.0, 1.0, 2.0, 1.0),
            raw(TEN + 3_600, 1.0, 2.0, 1.0, 2.0, 1.0),
        ];
        let hours = hours_from_exchange(&answer, window(2), at("2024-01-01T11:00:00Z"));
        let provisional: Vec<bool> = hours.candles.iter().map(|c| c.provisional).collect();
        assert_eq!(provisional, vec![false, true]);
        // Neither hour is without trades; a third, not over, is not either.
        assert!(
            hours
                .without_candles(window(3), at("2024-01-01T11:00:00Z"))
                .is_empty()
        );
        let later = at("2024-01-01T13:00:00Z");
        assert_eq!(hours.without_candles(window(3), later).len(), 1);
    }

    #[test]
    fn a_candle_that_does_not_hold_together_cannot_be_made() {
        let hour = Hour::from_unix(TEN).unwrap();
        assert!(HourlyCandle::new(parts(hour)).is_ok());
        let cases = [
            HourParts {
                low: dec("13"),
                ..parts(hour)
            },
            HourParts {
                high: dec("10.5"),
                ..parts(hour)
            },
            HourParts {
                open: dec("0"),
                ..parts(hour)
            },
            HourParts {
                close: dec("-1"),
                ..parts(hour)
            },
            HourParts {
                volume: dec("-0.01"),
                ..parts(hour)
            },
            HourParts {
                points: Some(3),
                ..parts(hour)
            },
            HourParts {
                source: PriceSource::CoinGecko,
                ..parts(hour)
            },
            HourParts {
                source: PriceSource::CoinGecko,
                points: Some(0),
                ..parts(hour)
            },
        ];
        for case in cases {
            assert!(HourlyCandle::new(case.clone()).is_err(), "{case:?}");
        }
        let built = HourParts {
            source: PriceSource::CoinGecko,
            points: Some(1),
            ..parts(hour)
        };
        assert!(HourlyCandle::new(built).is_ok());
    }

    #[test]
    fn a_check_sits_only_beside_an_exchange_candle_and_inside_its_hour() {
        let hour = Hour::from_unix(TEN).unwrap();
        let rule = DisputeRule::new(dec("5"));
        let candle = HourlyCandle::new(parts(hour)).unwrap();
        let inside = CheckPoint {
            at: at("2024-01-01T10:00:41Z"),
            price: dec("8"),
        };
        let checked = candle.clone().with_check(inside, rule).unwrap();
        let check = checked.check.unwrap();
        assert_eq!(check.deviation_percent, dec("11.1111"));
        assert!(check.disputed);
        let next_hour = CheckPoint {
            at: at("2024-01-01T11:00:00Z"),
            ..inside
        };
        assert!(matches!(
            candle.clone().with_check(next_hour, rule),
            Err(BadCandle::MisplacedCheck(_))
        ));
        let built = HourlyCandle::new(HourParts {
            source: PriceSource::CoinGecko,
            points: Some(1),
            ..parts(hour)
        })
        .unwrap();
        assert!(built.with_check(inside, rule).is_err());
    }

    #[test]
    fn coingecko_points_make_first_max_min_last_with_their_count_and_the_hours_share_of_volume() {
        let prices = [
            (at("2024-01-01T10:59:00Z"), dec("105")),
            (at("2024-01-01T10:00:41Z"), dec("100")),
            (at("2024-01-01T10:20:00Z"), dec("110")),
            (at("2024-01-01T10:40:00Z"), dec("95")),
            (at("2024-01-01T11:00:43Z"), dec("106")),
            (at("2024-01-01T12:00:40Z"), dec("107")), // no volume point in its hour
            (at("2024-01-01T09:59:59Z"), dec("1")),   // outside the range
        ];
        let volumes = [
            (at("2024-01-01T10:00:41Z"), dec("2400")),
            (at("2024-01-01T10:59:00Z"), dec("4800")),
            (at("2024-01-01T11:00:43Z"), dec("1000")),
        ];
        let hours = hours_from_points(&prices, &volumes, window(3), at("2024-01-01T11:30:00Z"));
        assert!(hours.refused.is_empty());
        assert_eq!(
            hours.candles.len(),
            2,
            "12:00 has no volume point: no candle"
        );
        let ten = &hours.candles[0];
        assert_eq!(
            (
                ten.open, ten.high, ten.low, ten.close, ten.volume, ten.points
            ),
            (
                dec("100"),
                dec("110"),
                dec("95"),
                dec("105"),
                dec("200"),
                Some(4)
            )
        );
        assert_eq!(
            (ten.source, ten.provisional),
            (PriceSource::CoinGecko, false)
        );
        let eleven = &hours.candles[1];
        assert_eq!(
            (eleven.open, eleven.close, eleven.points),
            (dec("106"), dec("106"), Some(1))
        );
        assert_eq!(eleven.volume, dec("41.66666667"));
        assert!(eleven.provisional);
    }

    #[test]
    fn a_coingecko_price_not_above_zero_refuses_its_hour() {
        let prices = [(at("2024-01-01T10:00:41Z"), dec("0"))];
        let volumes = [(at("2024-01-01T10:00:41Z"), dec("1"))];
        let hours = hours_from_points(&prices, &volumes, window(1), at(LONG_AFTER));
        assert!(hours.candles.is_empty());
        assert_eq!(hours.refused.len(), 1);
        assert_eq!(hours.refused[0].time, TEN);
    }
}
