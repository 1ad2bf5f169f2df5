//! From CoinGecko's points to one candle per UTC day.
//!
//! # Days with too few points
//!
//! CoinGecko answers a window of up to [`HOURLY_MAX_WINDOW_DAYS`] days with hourly points
//! (from [`HOURLY_DATA_FROM`] on; one point a day before), and a longer window with one
//! point a day. A finished day of hourly data built from a handful of points would look
//! like a full candle while its high, low and close are guesses, so such a day needs at
//! least [`MIN_HOURLY_POINTS`] points (half its hours) to be stored. A thinner day is not
//! stored: it stays missing, the gap fill asks for it again, and the job names it when it
//! is still thin. A day of daily data needs its one point. A day not over yet is stored
//! as provisional whatever its count, since it counts as missing anyway.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;

use super::Window;
use crate::coingecko::{MarketChart, Point};
use crate::domain::{DailyCandle, Hour};

/// The longest window CoinGecko answers with hourly points (its auto-granularity).
pub const HOURLY_MAX_WINDOW_DAYS: i64 = 90;

/// [`HOURLY_MAX_WINDOW_DAYS`] as a window's length in days: the most a window of a coin
/// whose hours are built from CoinGecko's points may span.
pub const HOURLY_WINDOW_DAYS: u32 = HOURLY_MAX_WINDOW_DAYS as u32;

/// The first day CoinGecko has hourly points for; earlier days get one point a day.
pub const HOURLY_DATA_FROM: NaiveDate = crate::domain::COINGECKO_HOURLY_FROM;

/// The fewest points a finished day of hourly data is stored from: half its hours.
pub const MIN_HOURLY_POINTS: usize = 12;

/// What one window's points make: the candles to store, and the finished days that had
/// points but too few of them (see the module's docs), which are not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyCandles {
    pub candles: Vec<DailyCandle>,
    /// Finished days left out for having too few points, with how many they had.
    pub too_thin: Vec<(NaiveDate, usize)>,
    /// The window's hourly points, kept for the hours of an hourly coin.
    pub hourly_points: HourlyPoints,
}

/// CoinGecko's hourly price and 24-hour volume points of a window, as sent (only those of
/// its days, and only where CoinGecko answered hourly): the hours of an hourly coin are
/// built from them, or checked with them, at no extra call. Empty for a window CoinGecko
/// answers with daily points, and for every other source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourlyPoints {
    pub prices: Vec<(DateTime<Utc>, Decimal)>,
    pub volumes: Vec<(DateTime<Utc>, Decimal)>,
    /// When they were asked for (the earliest, of points of several windows): an hour
    /// built from them that had not ended then is provisional, however late it is built.
    pub asked_at: Option<DateTime<Utc>>,
}

impl HourlyPoints {
    /// The points of `chart`, asked for at `asked_at`, that are hourly data of `window`'s
    /// days.
    pub fn of(chart: &MarketChart, window: &Window, asked_at: DateTime<Utc>) -> HourlyPoints {
        if window.days() > HOURLY_MAX_WINDOW_DAYS {
            return HourlyPoints::default();
        }
        let from = Hour::first_of(HOURLY_DATA_FROM.max(window.start)).start();
        let keep = |points: &[Point]| -> Vec<(DateTime<Utc>, Decimal)> {
            points
                .iter()
                .filter(|p| p.at >= from && window.contains(p.at.date_naive()))
                .map(|p| (p.at, p.value))
                .collect()
        };
        HourlyPoints {
            prices: keep(&chart.prices),
            volumes: keep(&chart.total_volumes),
            asked_at: Some(asked_at),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Adds `other`'s points to these.
    pub fn extend(&mut self, other: &HourlyPoints) {
        self.prices.extend_from_slice(&other.prices);
        self.volumes.extend_from_slice(&other.volumes);
        self.asked_at = match (self.asked_at, other.asked_at) {
            (Some(mine), Some(theirs)) => Some(mine.min(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
    }

    /// The time their hours are judged at: when they were asked for, or now for points
    /// of no call.
    pub fn judged_at(&self) -> DateTime<Utc> {
        self.asked_at.unwrap_or_else(Utc::now)
    }
}

/// Builds the candles of `window` from `chart`: open = first price of the day, high = max,
/// low = min, close = last, volume = the day's last 24-hour volume, timestamp = the last
/// price point's time, points = how many prices the day had. Points outside the window's
/// days are dropped; a day without a price or without a volume point has no candle (it
/// is a gap, not a guess), and neither has a finished day with too few points. A day not
/// over at `fetched_at`, when the window was asked for (not when its answer came: an answer
/// to a call made before midnight holds nothing of the day's last moments), is marked
/// provisional.
pub fn daily_candles(
    chart: &MarketChart,
    window: &Window,
    fetched_at: DateTime<Utc>,
) -> DailyCandles {
    let prices = by_day(&chart.prices, window);
    let volumes = by_day(&chart.total_volumes, window);
    let mut out = DailyCandles {
        hourly_points: HourlyPoints::of(chart, window, fetched_at),
        ..DailyCandles::default()
    };
    for (date, points) in prices {
        let Some(volume) = volumes.get(&date).and_then(|v| v.last()).map(|p| p.value) else {
            continue;
        };
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            continue;
        };
        let day_end = date
            .succ_opt()
            .map(|next| next.and_time(NaiveTime::MIN).and_utc());
        let provisional = day_end.is_none_or(|end| fetched_at < end);
        if !provisional && points.len() < min_points(window, date) {
            out.too_thin.push((date, points.len()));
            continue;
        }
        let (mut high, mut low) = (first.value, first.value);
        for point in &points {
            high = high.max(point.value);
            low = low.min(point.value);
        }
        out.candles.push(DailyCandle {
            date,
            open: first.value,
            high,
            low,
            close: last.value,
            volume,
            timestamp: last.at,
            provisional,
            points: Some(i32::try_from(points.len()).unwrap_or(i32::MAX)),
        });
    }
    out
}

/// How many points a finished `date` fetched in `window` must have to be stored.
pub fn min_points(window: &Window, date: NaiveDate) -> usize {
    if window.days() <= HOURLY_MAX_WINDOW_DAYS && date >= HOURLY_DATA_FROM {
        MIN_HOURLY_POINTS
    } else {
        1
    }
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
    use crate::domain::{at, day};

    fn point(t: &str, v: i64) -> Point {
        Point {
            at: at(t),
            value: Decimal::from(v),
        }
    }

    /// `points` plus a point of value `filler` at half past each hour not listed, so the
    /// day has the points of a full day of hourly data.
    fn hourly(date: &str, points: Vec<Point>, filler: i64) -> Vec<Point> {
        let mut all = points.clone();
        for hour in 0..24 {
            if !points
                .iter()
                .any(|p| p.at.format("%H").to_string() == format!("{hour:02}"))
            {
                all.push(point(&format!("{date}T{hour:02}:30:00Z"), filler));
            }
        }
        all.sort_by_key(|p| p.at);
        all
    }

    fn chart(prices: Vec<Point>, volumes: Vec<Point>) -> MarketChart {
        MarketChart {
            prices,
            total_volumes: volumes,
        }
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: day(start),
            end: day(end),
        }
    }

    const LONG_AFTER: &str = "2030-01-01T00:00:00Z";

    #[test]
    fn jittered_hourly_points_make_first_max_min_last_and_last_volume_and_count() {
        let window = window("2024-01-01", "2024-01-01");
        let prices = hourly(
            "2024-01-01",
            vec![
                point("2024-01-01T00:00:41.331Z", 100),
                point("2024-01-01T01:00:47.420Z", 130),
                point("2024-01-01T02:00:43.652Z", 90),
                point("2024-01-01T23:00:12.001Z", 110),
            ],
            105,
        );
        let volumes = vec![
            point("2024-01-01T00:00:41.331Z", 5),
            point("2024-01-01T23:00:12.001Z", 7),
        ];
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        assert_eq!(built.candles.len(), 1);
        assert!(built.too_thin.is_empty());
        let c = &built.candles[0];
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (100.into(), 130.into(), 90.into(), 110.into(), 7.into())
        );
        assert_eq!(c.timestamp, at("2024-01-01T23:00:12.001Z"));
        assert_eq!(c.points, Some(24));
        assert!(!c.provisional);
    }

    #[test]
    fn points_are_split_at_utc_midnight_and_those_outside_the_window_are_dropped() {
        // Before 2018-01-30 CoinGecko has one point a day, so one point makes a day.
        let window = window("2017-01-02", "2017-01-03");
        let prices = vec![
            point("2017-01-01T23:59:59.999Z", 1),
            point("2017-01-02T00:00:00.000Z", 2),
            point("2017-01-02T23:59:59.999Z", 3),
            point("2017-01-03T00:00:00.000Z", 4),
            point("2017-01-04T00:00:00.000Z", 5),
        ];
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        let summary: Vec<_> = built
            .candles
            .iter()
            .map(|c| (c.date, c.open, c.close, c.points))
            .collect();
        assert_eq!(
            summary,
            vec![
                (day("2017-01-02"), 2.into(), 3.into(), Some(2)),
                (day("2017-01-03"), 4.into(), 4.into(), Some(1))
            ]
        );
    }

    #[test]
    fn a_day_without_points_is_a_gap_not_a_row() {
        let window = window("2024-01-01", "2024-01-03");
        let prices = [
            hourly("2024-01-01", vec![], 1),
            hourly("2024-01-03", vec![], 3),
        ]
        .concat();
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        let dates: Vec<_> = built.candles.iter().map(|c| c.date).collect();
        assert_eq!(dates, vec![day("2024-01-01"), day("2024-01-03")]);
        assert!(built.too_thin.is_empty(), "no point is not a thin day");
    }

    #[test]
    fn a_finished_day_of_hourly_data_with_too_few_points_is_not_a_candle() {
        let window = window("2024-01-01", "2024-01-02");
        let mut prices = hourly("2024-01-01", vec![], 10);
        prices.extend((0..11).map(|h| point(&format!("2024-01-02T{h:02}:00:00Z"), 20)));
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        assert_eq!(
            built.candles.iter().map(|c| c.date).collect::<Vec<_>>(),
            vec![day("2024-01-01")]
        );
        assert_eq!(built.too_thin, vec![(day("2024-01-02"), 11)]);

        // Twelve points, half the day's hours, are enough.
        let mut prices = hourly("2024-01-01", vec![], 10);
        prices.extend((0..12).map(|h| point(&format!("2024-01-02T{h:02}:00:00Z"), 20)));
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        assert_eq!(built.candles.len(), 2);
        assert_eq!(built.candles[1].points, Some(12));
    }

    #[test]
    fn one_point_is_a_day_in_daily_data_and_in_windows_too_long_for_hourly_points() {
        assert_eq!(
            min_points(&window("2018-01-01", "2018-01-29"), day("2018-01-29")),
            1
        );
        assert_eq!(
            min_points(&window("2018-01-01", "2018-03-01"), day("2018-01-30")),
            MIN_HOURLY_POINTS
        );
        assert_eq!(
            min_points(&window("2024-01-01", "2024-03-30"), day("2024-02-01")),
            12
        );
        assert_eq!(
            min_points(&window("2024-01-01", "2024-03-31"), day("2024-02-01")),
            1
        );
        let long = window("2024-01-01", "2024-12-31");
        let prices = vec![point("2024-06-01T00:00:00Z", 7)];
        let built = daily_candles(&chart(prices.clone(), prices), &long, at(LONG_AFTER));
        assert_eq!(built.candles.len(), 1);
    }

    #[test]
    fn the_live_last_point_makes_todays_candle_provisional_however_few_its_points() {
        // As in CoinGecko's own sample: midnight points, then "now" at 15:01:22.
        let window = window("2024-03-31", "2024-04-01");
        let mut prices = hourly("2024-03-31", vec![], 69702);
        prices.push(point("2024-04-01T00:00:00Z", 71246));
        prices.push(point("2024-04-01T15:01:22Z", 68887));
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at("2024-04-01T15:01:23Z"));
        let candles = built.candles;
        assert_eq!(candles.len(), 2);
        assert!(!candles[0].provisional);
        assert!(candles[1].provisional);
        assert_eq!(candles[1].close, Decimal::from(68887));
        assert_eq!(candles[1].points, Some(2));
        assert!(built.too_thin.is_empty());
    }

    /// Kills `fetched_at < end` -> `fetched_at <= end`: a day fetched at the next
    /// midnight is over, so its candle is final, not provisional.
    #[test]
    fn a_day_fetched_at_the_next_midnight_is_over() {
        let window = window("2024-01-01", "2024-01-01");
        let prices = hourly("2024-01-01", vec![], 5);
        let volumes = prices.clone();
        let chart = chart(prices, volumes);
        let at_midnight = daily_candles(&chart, &window, at("2024-01-02T00:00:00Z"));
        assert!(!at_midnight.candles[0].provisional);
        let just_before = daily_candles(&chart, &window, at("2024-01-01T23:59:59.999Z"));
        assert!(just_before.candles[0].provisional);
    }

    #[test]
    fn a_windows_hourly_points_are_kept_and_a_long_windows_daily_points_are_not() {
        let prices = [
            hourly("2024-01-01", vec![], 5),
            vec![point("2024-01-02T00:00:10Z", 6)],
        ]
        .concat();
        let chart = chart(prices.clone(), prices);
        let one_day = window("2024-01-01", "2024-01-01");
        let kept = daily_candles(&chart, &one_day, at(LONG_AFTER)).hourly_points;
        assert_eq!(
            kept.prices.len(),
            24,
            "the next day's point is not the window's"
        );
        assert_eq!(kept.volumes.len(), 24);
        let long = window("2024-01-01", "2024-12-31");
        assert!(HourlyPoints::of(&chart, &long, Utc::now()).is_empty());
    }

    #[test]
    fn unsorted_points_are_ordered_before_open_and_close_are_taken() {
        let window = window("2024-01-01", "2024-01-01");
        let mut prices = hourly("2024-01-01", vec![point("2024-01-01T00:00:00Z", 1)], 2);
        prices.push(point("2024-01-01T23:59:00Z", 3));
        prices.reverse();
        let volumes = prices.clone();
        let built = daily_candles(&chart(prices, volumes), &window, at(LONG_AFTER));
        let c = &built.candles[0];
        assert_eq!((c.open, c.close), (1.into(), 3.into()));
    }
}
