//! The month's CoinGecko credits, said before they are spent (INTERFACE.md, "Budgets and
//! retention"): what is used and left this month over every process, what a job will
//! cost (its planned windows), whether it can be afforded, and what the tracked coins
//! cost a month under `SYNC_SCHEDULE`. The API, the CLI and the schedule ask here; the
//! credits themselves are taken, one per attempt, by the source's budget
//! (`upstream::budget`), which never lets the month be exceeded.

use std::fmt;

use chrono::{DateTime, Duration as TimeDelta, NaiveDate, NaiveTime, Timelike, Utc};
use sqlx::PgPool;

use crate::coingecko::CoinGeckoClient;
use crate::config::FallbackSource;
use crate::domain::{
    Coin, CreditMonth, DateRange, PriceSource, Symbol, SyncSchedule, expected_hours, hourly_source,
};
use crate::ingest::{HOURLY_WINDOW_DAYS, Reach, windows_for_days};
use crate::store::{gaps, hourly_coins, hourly_coverage, monthly_credits, second_source};
use crate::upstream::MonthFigures;

/// Over how many days the tracked coins' cost is estimated: a month.
const ESTIMATE_DAYS: i64 = 30;

/// Everything needed to price work in credits.
#[derive(Debug, Clone)]
pub struct Credits {
    pub pool: PgPool,
    /// The CoinGecko client whose budget counts the month.
    pub client: CoinGeckoClient,
    /// `COINGECKO_CHUNK_DAYS`: a window's days, so a call's.
    pub chunk_days: u32,
    pub reach: Reach,
    pub schedule: SyncSchedule,
    /// With `off`, every hourly coin's hours come from CoinGecko.
    pub fallback: FallbackSource,
}

/// A job the month's credits cannot pay for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unaffordable {
    pub needed: u32,
    pub left: i64,
    /// `COINGECKO_CALLS_PER_MONTH`, when set.
    pub limit: Option<u32>,
    /// CoinGecko itself refused a call of the month for spent credits.
    pub refused: bool,
    pub month: CreditMonth,
}

impl fmt::Display for Unaffordable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (needed, month, resets_on) = (self.needed, self.month.label(), self.resets_on());
        match self.limit {
            Some(limit) if !self.refused => write!(
                f,
                "this job needs about {needed} CoinGecko calls, but only {} of {limit} monthly \
                 credits (COINGECKO_CALLS_PER_MONTH) are left for {month} (UTC). The credits \
                 reset on {resets_on}: submit it then, ask for a shorter range, or raise \
                 COINGECKO_CALLS_PER_MONTH if the plan has more.",
                self.left
            ),
            _ => write!(
                f,
                "this job needs about {needed} CoinGecko calls, but CoinGecko said this key's \
                 monthly credits of {month} (UTC) are spent. The credits reset on {resets_on}: \
                 submit it then."
            ),
        }
    }
}

impl std::error::Error for Unaffordable {}

impl Unaffordable {
    /// The first day of the next month, when the credits reset.
    pub fn resets_on(&self) -> NaiveDate {
        self.month.resets_on()
    }
}

/// What the tracked coins cost a month under `SYNC_SCHEDULE`, in CoinGecko calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    /// Tracked coins that keep only days.
    pub daily_coins: i64,
    /// Hourly coins (tracked or not: the schedule keeps their hours current) whose hours
    /// come from Coinbase (free of CoinGecko credits).
    pub hourly_coinbase_coins: i64,
    /// Hourly coins (tracked or not) whose hours are built from CoinGecko's points.
    pub hourly_coingecko_coins: i64,
    /// Ticks of the schedule in 30 days, at most one an hour counted.
    pub ticks: i64,
    /// Days of those 30 with a tick.
    pub days_with_a_tick: i64,
    /// The calls: a call per coin per day with a tick (a day's candle), except for a
    /// CoinGecko-hourly coin, a call per tick (its lagging hours' days, the new day among
    /// them, come in one window).
    pub calls: i64,
}

impl Estimate {
    /// The estimate for these coins on a schedule with `ticks` ticks on `days_with_a_tick` days.
    pub fn of(
        (daily_coins, hourly_coinbase_coins, hourly_coingecko_coins): (i64, i64, i64),
        (ticks, days_with_a_tick): (i64, i64),
    ) -> Self {
        Estimate {
            daily_coins,
            hourly_coinbase_coins,
            hourly_coingecko_coins,
            ticks,
            days_with_a_tick,
            calls: (daily_coins + hourly_coinbase_coins) * days_with_a_tick
                + hourly_coingecko_coins * ticks,
        }
    }

    /// The same with `more` coins tracked (all hourly with CoinGecko-built hours when
    /// `hourly`, the dearer case): what an import of `more` coins may cost at most.
    pub fn with_more(self, more: i64, hourly: bool) -> Self {
        let (daily, hours) = if hourly { (0, more) } else { (more, 0) };
        Estimate::of(
            (
                self.daily_coins + daily,
                self.hourly_coinbase_coins,
                self.hourly_coingecko_coins + hours,
            ),
            (self.ticks, self.days_with_a_tick),
        )
    }

    /// The tracked coins, all kinds.
    pub fn coins(&self) -> i64 {
        self.daily_coins + self.hourly_coinbase_coins + self.hourly_coingecko_coins
    }

    /// A warning when the estimate is more than `calls_per_month`.
    pub fn warning(&self, calls_per_month: Option<u32>) -> Option<String> {
        let limit = i64::from(calls_per_month?);
        (self.calls > limit).then(|| {
            format!(
                "Keeping the {} tracked coins current costs about {} CoinGecko calls a month under \
                 SYNC_SCHEDULE, more than the {limit} monthly credits (COINGECKO_CALLS_PER_MONTH): \
                 coins the month cannot pay for wait for the next month. Track fewer coins, keep \
                 hours only where Coinbase has the product, tick less often, or use a plan with more credits.",
                self.coins(),
                self.calls
            )
        })
    }
}

impl Credits {
    /// Now, by the clock the month is counted on.
    pub fn now(&self) -> DateTime<Utc> {
        let monthly = self.client.caller().budget().monthly();
        monthly.map_or_else(Utc::now, |credits| credits.clock.now())
    }

    /// This month's credits over every process; `None` when no month is counted (no
    /// database behind the client).
    pub async fn month(&self) -> sqlx::Result<Option<MonthFigures>> {
        self.client
            .caller()
            .budget()
            .month_figures()
            .await
            .transpose()
    }

    /// The calls a job of `coin` over `range` is planned to make, as the job plans them
    /// (`ingest::job`'s first step): its windows over the missing days the plan serves
    /// (over every day it serves when forced), and for a coin whose hours are built from
    /// CoinGecko's points the days of its missing hours too, in windows of at most
    /// [`HOURLY_WINDOW_DAYS`]. The gap fill may add a few; the job stops cleanly should the
    /// month run out on them.
    pub async fn job_calls(
        &self,
        coin: &Coin,
        range: DateRange,
        force: bool,
        today: NaiveDate,
    ) -> sqlx::Result<u32> {
        let reach = self.reach.current(&self.pool).await?;
        let Some((from, to)) = reach.served_part(range.start(), range.end(), today) else {
            return Ok(0);
        };
        let points = self.builds_hours_from_points(coin.symbol).await?;
        let window_days = if points {
            self.chunk_days.min(HOURLY_WINDOW_DAYS)
        } else {
            self.chunk_days
        };
        let windows = if force {
            let served: Vec<NaiveDate> = from.iter_days().take_while(|day| *day <= to).collect();
            windows_for_days(&served, window_days).len()
        } else {
            let mut days = gaps::missing_days(&self.pool, coin.symbol, from, to).await?;
            let built = Some(PriceSource::CoinGecko);
            let (hours_from, _) = range.days_of_hours();
            let days_of_hours = (from.max(hours_from), to);
            let hours = expected_hours(coin, built, None, reach, days_of_hours, self.now());
            if let Some(hours) = hours.filter(|_| points) {
                let pool = &self.pool;
                days.extend(
                    hourly_coverage::days_of_missing_hours(pool, coin.symbol, hours).await?,
                );
                days.sort_unstable();
                days.dedup();
            }
            windows_for_days(&days, window_days).len()
        };
        Ok(u32::try_from(windows).unwrap_or(u32::MAX))
    }

    /// Whether a job of `symbol` builds its hours from CoinGecko's points: the coin keeps
    /// hours and has no usable product on the second source (the job's rule).
    async fn builds_hours_from_points(&self, symbol: Symbol) -> sqlx::Result<bool> {
        let hourly = hourly_coins::get(&self.pool, symbol).await?;
        if !hourly.is_some_and(|coin| coin.hourly) {
            return Ok(false);
        }
        let mapping = second_source::mapping(&self.pool, symbol).await?;
        let product = mapping.unwrap_or_default().exchange_product(self.fallback);
        Ok(hourly_source(true, product) == Some(PriceSource::CoinGecko))
    }

    /// What the tracked coins cost a month, in a sentence (and the warning when it is more
    /// than the month has), for the command line; `None` when the database cannot say.
    pub async fn tracking_cost_sentence(&self) -> Option<String> {
        let estimate = self.tracked_estimate(self.now()).await.ok()?;
        let limit = self.month().await.ok()?.and_then(|m| m.limit);
        let of = limit.map_or_else(
            || " (no monthly limit set)".to_owned(),
            |limit| format!(" of the {limit} monthly credits"),
        );
        let mut sentence = format!(
            "the {} tracked coins cost about {} CoinGecko calls a month under SYNC_SCHEDULE{of}",
            estimate.coins(),
            estimate.calls
        );
        if let Some(warning) = estimate.warning(limit) {
            sentence = format!("{sentence}\nwarning: {warning}");
        }
        Some(sentence)
    }

    /// Whether `calls` more fit in what is left of this month.
    pub async fn afford(&self, calls: u32) -> sqlx::Result<Result<(), Unaffordable>> {
        Ok(match self.month().await? {
            Some(figures) => fits(&figures, calls),
            None => Ok(()),
        })
    }

    /// Whether a job of `coin` over `range` can be paid for this month: the one rule the
    /// API and the CLI apply before queuing one.
    pub async fn afford_job(
        &self,
        coin: &Coin,
        range: DateRange,
        force: bool,
        today: NaiveDate,
    ) -> sqlx::Result<Result<(), Unaffordable>> {
        // Without a limit (and no refusal from CoinGecko) any job is affordable: its
        // planned calls are not worked out.
        if self.month().await?.and_then(|m| m.left()).is_none() {
            return Ok(Ok(()));
        }
        let calls = self.job_calls(coin, range, force, today).await?;
        self.afford(calls).await
    }

    /// What the tracked coins cost a month under `SYNC_SCHEDULE`: one row of counts, and
    /// the schedule's ticks over the next 30 days.
    pub async fn tracked_estimate(&self, now: DateTime<Utc>) -> sqlx::Result<Estimate> {
        let coinbase_on = self.fallback == FallbackSource::Coinbase;
        let counts = monthly_credits::tracked_coins(&self.pool, coinbase_on).await?;
        Ok(Estimate::of(counts, ticks_in_a_month(&self.schedule, now)))
    }
}

/// Whether `calls` fit in what `figures` leave.
pub fn fits(figures: &MonthFigures, calls: u32) -> Result<(), Unaffordable> {
    match figures.left() {
        Some(left) if i64::from(calls) > left => Err(Unaffordable {
            needed: calls,
            left,
            limit: figures.limit,
            refused: figures.refused,
            month: figures.month,
        }),
        _ => Ok(()),
    }
}

/// The ticks of `schedule` in the 30 whole UTC days from today (at most one an hour counted: a
/// second tick in an hour finds nothing new to fetch), and the days with a tick.
pub fn ticks_in_a_month(schedule: &SyncSchedule, now: DateTime<Utc>) -> (i64, i64) {
    if schedule.is_off() {
        return (0, 0);
    }
    // Whole UTC days, from the start of today.
    let start = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let end = start + TimeDelta::days(ESTIMATE_DAYS);
    let (mut ticks, mut days) = (0, 0);
    let mut last_day = None;
    let mut after = start - TimeDelta::seconds(1);
    while let Some(tick) = schedule.next_after(after) {
        if tick >= end {
            break;
        }
        ticks += 1;
        if last_day != Some(tick.date_naive()) {
            days += 1;
            last_day = Some(tick.date_naive());
        }
        // On to the end of the tick's hour: later ticks in it are not counted.
        let hour = tick
            .with_minute(59)
            .and_then(|t| t.with_second(59))
            .unwrap_or(tick);
        after = hour.max(tick);
    }
    (ticks, days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{at, day};

    #[test]
    fn a_daily_schedule_ticks_thirty_times_a_month_and_an_hourly_one_720() {
        let now = at("2026-12-06T12:00:00Z");
        let daily = SyncSchedule::parse_arg("0 40 0 * * *").unwrap();
        assert_eq!(ticks_in_a_month(&daily, now), (30, 30));
        let hourly = SyncSchedule::parse_arg("0 5 * * * *").unwrap();
        assert_eq!(ticks_in_a_month(&hourly, now), (720, 30));
        let every_second = SyncSchedule::parse_arg("* * * * * *").unwrap();
        assert_eq!(ticks_in_a_month(&every_second, now).0, 720);
        let off = SyncSchedule::parse_arg("off").unwrap();
        assert_eq!(ticks_in_a_month(&off, now), (0, 0));
    }

    #[test]
    fn three_hundred_daily_coins_cost_9000_calls_and_warn_on_a_demo_key() {
        let estimate = Estimate::of((300, 0, 0), (30, 30));
        assert_eq!(estimate.calls, 9000);
        assert!(estimate.warning(Some(10_000)).is_none());
        assert!(estimate.warning(None).is_none());
        let more = Estimate::of((300, 20, 20), (30, 30));
        assert_eq!(
            more.calls,
            340 * 30,
            "a daily tick: one window a coin, hours or not"
        );
        let hourly = Estimate::of((300, 20, 20), (720, 30));
        assert_eq!(
            hourly.calls,
            320 * 30 + 20 * 720,
            "hours from points: a call a tick"
        );
        let warning = more.warning(Some(10_000)).expect("over the month");
        assert!(warning.contains("10000"), "{warning}");
    }

    #[test]
    fn a_job_fits_only_in_what_is_left() {
        let figures = MonthFigures {
            month: CreditMonth::containing(day("2026-12-06")),
            used: 17,
            limit: Some(20),
            refused: false,
        };
        assert!(fits(&figures, 3).is_ok());
        let refused = fits(&figures, 17).unwrap_err();
        assert_eq!(refused.left, 3);
        assert_eq!(refused.resets_on(), day("2027-01-01"));
        assert!(refused.to_string().contains("2027-01-01"), "{refused}");
        let unlimited = MonthFigures {
            limit: None,
            ..figures
        };
        assert!(fits(&unlimited, 1_000_000).is_ok());
        let refused_by_coingecko = MonthFigures {
            refused: true,
            ..unlimited
        };
        let refused = fits(&refused_by_coingecko, 1).unwrap_err();
        assert_eq!(refused.left, 0);
        assert_eq!(
            refused.to_string(),
            "this job needs about 1 CoinGecko calls, but CoinGecko said this key's monthly \
             credits of 2026-12 (UTC) are spent. The credits reset on 2027-01-01: submit it then."
        );
    }
}
