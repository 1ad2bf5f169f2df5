//! The hour-by-hour check (INTERFACE "Timeframes"): CoinGecko's price point inside an hour
//! that has an exchange candle is kept beside the candle, and the candle is disputed when
//! the point lies outside the candle's low–high band by more than
//! `FALLBACK_MAX_DEVIATION_PERCENT`. An honest candle holds every trade of its hour, so
//! an independent price of that hour should fall inside its band, give or take the two
//! sources' price basis; a bad tick or a product that names another asset falls far out.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{Hour, HourRange};

/// One CoinGecko price sampled inside an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPoint {
    pub at: DateTime<Utc>,
    pub price: Decimal,
}

/// What the check of one exchange candle found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourCheck {
    /// CoinGecko's point, inside the candle's hour.
    pub point: CheckPoint,
    /// How far the point lies outside the candle's band, in percent of the band's edge it
    /// passed; 0 inside the band. See [`distance_outside_band`].
    pub deviation_percent: Decimal,
    /// Whether `deviation_percent` was over the limit when the check was made.
    pub disputed: bool,
}

/// `FALLBACK_MAX_DEVIATION_PERCENT` as the hourly check applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputeRule {
    max_percent: Decimal,
}

impl DisputeRule {
    /// A candle is disputed when its point lies more than `max_percent` outside its band;
    /// a negative limit counts as 0.
    pub fn new(max_percent: Decimal) -> DisputeRule {
        DisputeRule {
            max_percent: max_percent.max(Decimal::ZERO),
        }
    }

    pub fn max_percent(&self) -> Decimal {
        self.max_percent
    }

    /// Judges `point` against the band `low..=high` of its hour's candle.
    pub fn judge(&self, low: Decimal, high: Decimal, point: CheckPoint) -> HourCheck {
        let deviation_percent = distance_outside_band(low, high, point.price);
        HourCheck {
            point,
            deviation_percent,
            disputed: deviation_percent > self.max_percent,
        }
    }
}

/// How far `price` lies outside `low..=high`, in percent of the edge it passed (below the
/// low: of the low; above the high: of the high), rounded to 4 decimal places; 0 inside.
/// "More than 5 % outside the band" thus means below 95 % of the low or above 105 % of the
/// high: the band widened by the limit on both sides. A distance too large to compute (an
/// absurd price that passed the wire's checks) is the largest there is, never a panic.
pub fn distance_outside_band(low: Decimal, high: Decimal, price: Decimal) -> Decimal {
    let (edge, distance) = if price < low {
        (low, low - price)
    } else if price > high {
        (high, price - high)
    } else {
        return Decimal::ZERO;
    };
    if edge <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    distance
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|d| d.checked_div(edge))
        .unwrap_or(Decimal::MAX)
        .round_dp(4)
        .normalize()
}

/// One point per hour of `range` to check a candle with: the first of CoinGecko's prices
/// inside each hour (`prices` in any order; hours without one are left out), ascending.
/// CoinGecko's hourly series has one point a little after each hour's start, so the first
/// is the one nearest the hour's own open on every granularity it answers with.
pub fn check_points(
    prices: &[(DateTime<Utc>, Decimal)],
    range: HourRange,
) -> Vec<(Hour, CheckPoint)> {
    let mut sorted: Vec<&(DateTime<Utc>, Decimal)> = prices
        .iter()
        .filter(|(at, _)| range.contains(Hour::containing(*at)))
        .collect();
    sorted.sort_by_key(|(at, _)| *at);
    let mut points: Vec<(Hour, CheckPoint)> = Vec::new();
    for &&(at, price) in &sorted {
        let hour = Hour::containing(at);
        if points.last().is_none_or(|(last, _)| *last != hour) {
            points.push((hour, CheckPoint { at, price }));
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, dec};

    fn point(price: &str) -> CheckPoint {
        CheckPoint {
            at: at("2024-01-01T10:00:41Z"),
            price: dec(price),
        }
    }

    /// An audit's finding: a CoinGecko point that passed the wire's checks but lay
    /// absurdly far above a candle overflowed the percentage and panicked the job's
    /// checkpoint (the window's hours were never stored).
    #[test]
    fn a_price_too_far_outside_to_compute_is_the_largest_distance_not_a_panic() {
        let distance = distance_outside_band(dec("1"), dec("2"), Decimal::MAX);
        assert_eq!(distance, Decimal::MAX);
        let judged = DisputeRule::new(dec("5")).judge(dec("1"), dec("2"), point("1e27"));
        assert!(judged.disputed);
    }

    #[test]
    fn inside_the_band_and_on_its_edges_the_distance_is_zero() {
        for price in ["90", "95.5", "110"] {
            assert_eq!(
                distance_outside_band(dec("90"), dec("110"), dec(price)),
                Decimal::ZERO
            );
        }
    }

    #[test]
    fn outside_the_band_the_distance_is_in_percent_of_the_edge_passed() {
        assert_eq!(
            distance_outside_band(dec("100"), dec("110"), dec("95")),
            dec("5")
        );
        assert_eq!(
            distance_outside_band(dec("100"), dec("110"), dec("121")),
            dec("10")
        );
        assert_eq!(
            distance_outside_band(dec("3"), dec("4"), dec("2")),
            dec("33.3333"),
            "rounded to 4 places"
        );
    }

    #[test]
    fn a_candle_is_disputed_only_when_its_point_is_further_out_than_the_limit() {
        let rule = DisputeRule::new(dec("5"));
        let (low, high) = (dec("100"), dec("110"));
        assert!(!rule.judge(low, high, point("105")).disputed);
        let at_limit = rule.judge(low, high, point("95"));
        assert_eq!(
            (at_limit.deviation_percent, at_limit.disputed),
            (dec("5"), false)
        );
        let beyond = rule.judge(low, high, point("94.99"));
        assert!(beyond.disputed);
        assert_eq!(beyond.point, point("94.99"));
        // A candle 20 % above CoinGecko's price: its low is 1.2 times the point.
        let fake = rule.judge(dec("120"), dec("132"), point("100"));
        assert_eq!(fake.deviation_percent, dec("16.6667"));
        assert!(fake.disputed);
        assert_eq!(DisputeRule::new(dec("-1")).max_percent(), Decimal::ZERO);
    }

    #[test]
    fn each_hour_is_checked_with_its_first_point() {
        let range = HourRange::starting(Hour::containing(at("2024-01-01T10:00:00Z")), 3).unwrap();
        let prices = [
            (at("2024-01-01T11:40:00Z"), dec("3")),
            (at("2024-01-01T10:59:59Z"), dec("2")),
            (at("2024-01-01T10:00:41Z"), dec("1")),
            (at("2024-01-01T09:59:59Z"), dec("0.5")),
            (at("2024-01-01T13:00:00Z"), dec("9")),
        ];
        let points = check_points(&prices, range);
        let seen: Vec<(String, Decimal)> = points
            .iter()
            .map(|(hour, p)| (hour.to_string(), p.price))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("2024-01-01T10:00:00Z".to_owned(), dec("1")),
                ("2024-01-01T11:00:00Z".to_owned(), dec("3")),
            ]
        );
    }
}
