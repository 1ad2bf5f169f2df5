//! One window, as every step runs it: not started once the process stops or the job is
//! cancelled; at shutdown, its call given [`WINDOW_GRACE_AT_A_STOP`] to bring its answer,
//! which is stored (INTERFACE: "checkpoint the current window"; the call is paid for),
//! then dropped (nothing of it written); its rows stored with the checkpoint, unless
//! another worker holds the job now.

use std::future::Future;

use chrono::{Days, NaiveDate};

use super::checkpoint::{DailyRows, Rows, WindowHours, checkpoint};
use super::hours::HourSource;
use super::run::patiently;
use super::{JobError, Outcome, Run};
use crate::domain::{self, HourRange};
use crate::ingest::{DailyCandles, PriceSource, SourceError, Window};
use crate::store::{empty_days, ingestion_jobs};

/// How long a window's call in flight at a stop may go on: an answer on its way is stored
/// rather than asked again by the next attempt; a call held by back-offs or `Retry-After`
/// waits is dropped, well inside the worker's stop timeout.
pub(super) const WINDOW_GRACE_AT_A_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// How one window ended.
pub(super) enum WindowEnd<R> {
    /// Fetched and stored (or nothing to store): what the source answered.
    Stored(R),
    /// The attempt must stop.
    Stop(Outcome),
    /// The source refused the window as older than its plan serves (CoinGecko's 10012):
    /// the plan serves only this many days.
    BeyondReach(u32),
    /// The source failed for this window (after its own retries); nothing of it was
    /// stored. The caller decides whether that fails the attempt.
    Failed(SourceError),
}

impl<S: PriceSource> Run<'_, S> {
    /// One window of the job's own source; the days it had too few points for are noted.
    /// For an hourly coin, its hourly points check the hours or become them (see
    /// [`WindowHours`]), and are kept for the exchange's candles fetched later.
    pub(super) async fn window(
        &mut self,
        window: &Window,
    ) -> Result<WindowEnd<DailyCandles>, JobError> {
        let hours = self.window_hours(window);
        let end = self.daily_window(&self.source, window, hours).await?;
        if let WindowEnd::Stored(built) = &end {
            self.shortfalls
                .too_thin
                .extend(built.too_thin.iter().copied());
            if let Some(work) = &mut self.hours {
                work.points.extend(&built.hourly_points);
                work.asked.push(*window);
            }
        }
        Ok(end)
    }

    /// What `window`'s hourly points do for an hourly coin; `None` for a daily-only one.
    fn window_hours(&self, window: &Window) -> Option<WindowHours> {
        let work = self.hours.as_ref()?;
        let hours = HourRange::of_days(window.start, window.end)?;
        let build = work.source == HourSource::Points;
        Some(WindowHours {
            hours: if build {
                self.hours_from_points_expected()?.intersect(hours)?
            } else {
                hours
            },
            build,
            rule: self.ingestor.hour_check,
        })
    }
}

impl<S: Sync> Run<'_, S> {
    /// One window of `source`'s daily candles, stored marked with its origin.
    #[tracing::instrument(skip_all, fields(source = source.name(), start = %window.start, end = %window.end, days = window.days()))]
    pub(super) async fn daily_window<T: PriceSource>(
        &self,
        source: &T,
        window: &Window,
        hours: Option<WindowHours>,
    ) -> Result<WindowEnd<DailyCandles>, JobError> {
        let origin = source.origin();
        let ask = async {
            let built = source.daily_candles(&self.coin, *window).await?;
            if !built.too_thin.is_empty() {
                tracing::warn!(days = ?built.too_thin, "days with too few points were not stored");
            }
            let empty = match origin {
                domain::PriceSource::CoinGecko => empty_days_of(window, &built, self.today),
                domain::PriceSource::Coinbase => Vec::new(),
            };
            Ok(DailyRows {
                origin,
                built,
                empty,
                hours,
            })
        };
        Ok(match self.ask_and_store(ask).await? {
            WindowEnd::Stored(rows) => WindowEnd::Stored(rows.built),
            WindowEnd::Stop(outcome) => WindowEnd::Stop(outcome),
            WindowEnd::BeyondReach(days) => WindowEnd::BeyondReach(days),
            WindowEnd::Failed(e) => WindowEnd::Failed(e),
        })
    }

    /// Asks for a window's rows with `ask` and stores them with the checkpoint; see the
    /// module's docs.
    pub(super) async fn ask_and_store<R: Rows>(
        &self,
        ask: impl Future<Output = Result<R, SourceError>>,
    ) -> Result<WindowEnd<R>, JobError> {
        let (pool, attempt) = (&self.ingestor.pool, &self.attempt);
        if attempt.stop.is_shutdown() {
            return Ok(WindowEnd::Stop(Outcome::Interrupted));
        }
        if !patiently(|| ingestion_jobs::is_still_active(pool, attempt.job.id)).await? {
            return Ok(WindowEnd::Stop(Outcome::Cancelled));
        }
        let Some(answer) = attempt
            .stop
            .unless_raised_for(WINDOW_GRACE_AT_A_STOP, ask)
            .await
        else {
            return Ok(WindowEnd::Stop(Outcome::Interrupted));
        };
        // A failure after the stop (no slot given any more, a retry not made) is the
        // stop's, not the job's: handed back, not counted against it.
        if answer.is_err() && attempt.stop.is_shutdown() {
            return Ok(WindowEnd::Stop(Outcome::Interrupted));
        }
        let rows = match answer {
            Ok(rows) => rows,
            Err(SourceError::PlanLimit { reach_days, .. }) => {
                return Ok(WindowEnd::BeyondReach(reach_days));
            }
            Err(e) => return Ok(WindowEnd::Failed(e)),
        };
        match patiently(|| checkpoint(pool, attempt, &rows)).await? {
            Some(written) => {
                tracing::info!(fetched = rows.fetched(), written, "window stored");
                Ok(WindowEnd::Stored(rows))
            }
            None => {
                tracing::warn!("another worker holds this job now; stopping without writing");
                Ok(WindowEnd::Stop(Outcome::LeaseLost))
            }
        }
    }
}

/// The days of `window` its answer made no candle of (not a single point, or too few),
/// among those that ended at least [`empty_days::OVER_FOR_DAYS`] days before `today`:
/// holes in the source's data.
fn empty_days_of(window: &Window, built: &DailyCandles, today: NaiveDate) -> Vec<NaiveDate> {
    let Some(last_over) = today.checked_sub_days(Days::new(empty_days::OVER_FOR_DAYS + 1)) else {
        return Vec::new();
    };
    window
        .start
        .iter_days()
        .take_while(|day| *day <= window.end.min(last_over))
        .filter(|day| !built.candles.iter().any(|candle| candle.date == *day))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate};
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::DailyCandle;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn candle(date: &str) -> DailyCandle {
        DailyCandle {
            date: day(date),
            open: Decimal::ONE,
            high: Decimal::ONE,
            low: Decimal::ONE,
            close: Decimal::ONE,
            volume: Decimal::ONE,
            timestamp: DateTime::UNIX_EPOCH,
            provisional: false,
            points: Some(24),
        }
    }

    /// Only days the answer made no candle of count (without a point, or too thin), and
    /// only those that ended two days before today: CoinGecko may not have caught up with
    /// a more recent one yet.
    #[test]
    fn a_window_notes_the_days_without_a_candle_that_ended_two_days_before_today() {
        let window = Window {
            start: day("2026-03-01"),
            end: day("2026-03-10"),
        };
        let built = DailyCandles {
            candles: [
                "2026-03-01",
                "2026-03-03",
                "2026-03-04",
                "2026-03-05",
                "2026-03-06",
            ]
            .into_iter()
            .map(candle)
            .collect(),
            too_thin: vec![(day("2026-03-02"), 3)],
            hourly_points: Default::default(),
        };
        let noted = |today: &str| empty_days_of(&window, &built, day(today));
        assert_eq!(
            noted("2026-03-10"),
            ["2026-03-02", "2026-03-07"].map(day),
            "03-07 ended on 03-08, two days before 03-10; 03-08 and 03-09 are too recent"
        );
        assert_eq!(
            noted("2026-03-20"),
            [
                "2026-03-02",
                "2026-03-07",
                "2026-03-08",
                "2026-03-09",
                "2026-03-10"
            ]
            .map(day)
        );
        assert!(
            noted("2026-03-04").is_empty(),
            "03-02 ended on 03-03, a day before"
        );
        assert_eq!(noted("2026-03-05"), vec![day("2026-03-02")]);
    }
}
