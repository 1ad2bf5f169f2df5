//! From CoinGecko's points to one candle per UTC day.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use super::Window;
use crate::coingecko::{MarketChart, Point};
use crate::domain::DailyCandle;

/// Builds the candles of `window` from `chart`: open = first price of the day, high = max,
/// low = min, close = last, volume = the day's last 24-hour volume, timestamp = the last
/// price point's time. Points outside the window's days are dropped; a day without a
/// price or without a volume point has no candle (it is a gap, not a guess). A day not
/// over at `fetched_at` is marked provisional.
pub fn daily_candles(
    chart: &MarketChart,
    window: &Window,
    fetched_at: DateTime<Utc>,
) -> Vec<DailyCandle> {
    let prices = by_day(&chart.prices, window);
    let volumes = by_day(&chart.total_volumes, window);
    prices
        .into_iter()
        .filter_map(|(date, points)| {
            let volume = volumes.get(&date)?.last()?.value;
            let first = points.first()?;
            let last = points.last()?;
            let (mut high, mut low) = (first.value, first.value);
            for point in &points {
                high = high.max(point.value);
                low = low.min(point.value);
            }
            let day_end = date
                .succ_opt()
                .map(|next| next.and_time(NaiveTime::MIN).and_utc());
            Some(DailyCandle {
                date,
                open: first.value,
                high,
                low,
                close: last.value,
                volume,
                timestamp: last.at,
                provisional: day_end.is_none_or(|end| fetched_at < end),
            })
        })
        .collect()
}

/// The window's points grouped by UTC day, each day's points in time order.
fn by_day<'a>(points: &'a [Point], window: &Window) -> BTreeMap<NaiveDate, Vec<&'a Point>> {
    let mut days: BTreeMap<NaiveDate, Vec<&Point>> = BTreeMap::new();
    for point in points {
        let date = point.at.date_naive();
        if window.contains(date) {
            days.entry(date).or_default().push(point);
        }
    }
    for points in days.values_mut() {
        points.sort_by_key(|p| p.at);
    }
    days
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn point(t: &str, v: i64) -> Point {
        Point {
            at: at(t),
            value: Decimal::from(v),
        }
    }

    fn chart(prices: Vec<Point>, volumes: Vec<Point>) -> MarketChart {
        MarketChart {
            prices,
            total_volumes: volumes,
        }
    }

    const LONG_AFTER: &str = "2030-01-01T00:00:00Z";

    #[test]
    fn jittered_hourly_points_make_first_max_min_last_and_last_volume() {
        let window = Window {
            start: day("2024-01-01"),
            end: day("2024-01-01"),
        };
        let prices = vec![
            point("2024-01-01T00:00:41.331Z", 100),
            point("2024-01-01T01:00:47.420Z", 130),
            point("2024-01-01T02:00:43.652Z", 90),
            point("2024-01-01T23:00:12.001Z", 110),
        ];
        let volumes = vec![
            point("2024-01-01T00:00:41.331Z", 5),
            point("2024-01-01T23:00:12.001Z", 7),
        ];
        let candles = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        assert_eq!(candles.len(), 1);
        let c = &candles[0];
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (100.into(), 130.into(), 90.into(), 110.into(), 7.into())
        );
        assert_eq!(c.timestamp, at("2024-01-01T23:00:12.001Z"));
        assert!(!c.provisional);
    }

    #[test]
    fn points_are_split_at_utc_midnight_and_those_outside_the_window_are_dropped() {
        let window = Window {
            start: day("2024-01-02"),
            end: day("2024-01-03"),
        };
        let prices = vec![
            point("2024-01-01T23:59:59.999Z", 1),
            point("2024-01-02T00:00:00.000Z", 2),
            point("2024-01-02T23:59:59.999Z", 3),
            point("2024-01-03T00:00:00.000Z", 4),
            point("2024-01-04T00:00:00.000Z", 5),
        ];
        let volumes = prices.clone();
        let candles = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        let summary: Vec<_> = candles.iter().map(|c| (c.date, c.open, c.close)).collect();
        assert_eq!(
            summary,
            vec![
                (day("2024-01-02"), 2.into(), 3.into()),
                (day("2024-01-03"), 4.into(), 4.into())
            ]
        );
    }

    #[test]
    fn a_day_without_points_is_a_gap_not_a_row() {
        let window = Window {
            start: day("2024-01-01"),
            end: day("2024-01-03"),
        };
        let prices = vec![
            point("2024-01-01T00:00:00Z", 1),
            point("2024-01-03T00:00:00Z", 3),
        ];
        let volumes = prices.clone();
        let dates: Vec<_> = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER))
            .iter()
            .map(|c| c.date)
            .collect();
        assert_eq!(dates, vec![day("2024-01-01"), day("2024-01-03")]);
    }

    #[test]
    fn the_live_last_point_makes_todays_candle_provisional() {
        // As in CoinGecko's own sample: two midnight points, then "now" at 15:01:22.
        let window = Window {
            start: day("2024-03-31"),
            end: day("2024-04-01"),
        };
        let prices = vec![
            point("2024-03-31T00:00:00Z", 69702),
            point("2024-04-01T00:00:00Z", 71246),
            point("2024-04-01T15:01:22Z", 68887),
        ];
        let volumes = prices.clone();
        let candles = daily_candles(&chart(prices, volumes), &window, at("2024-04-01T15:01:23Z"));
        assert_eq!(candles.len(), 2);
        assert!(!candles[0].provisional);
        assert!(candles[1].provisional);
        assert_eq!(candles[1].close, Decimal::from(68887));
    }

    #[test]
    fn unsorted_points_are_ordered_before_open_and_close_are_taken() {
        let window = Window {
            start: day("2024-01-01"),
            end: day("2024-01-01"),
        };
        let prices = vec![
            point("2024-01-01T12:00:00Z", 2),
            point("2024-01-01T01:00:00Z", 1),
            point("2024-01-01T20:00:00Z", 3),
        ];
        let volumes = prices.clone();
        let c = &daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER))[0];
        assert_eq!((c.open, c.close), (1.into(), 3.into()));
    }
}
