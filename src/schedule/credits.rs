//! What a tick may spend: with monthly credits (`COINGECKO_CALLS_PER_MONTH`), a tick queues
//! a coin's job only while what is left of the month pays for its windows, counting down as
//! it queues. A coin it cannot afford is counted in the tick's record and logged; its days
//! stay missing, so the first tick of the next month (or after the limit is raised) takes
//! it up like any coin behind.

use chrono::NaiveDate;

use crate::credits::Credits;
use crate::domain::{CreditMonth, DateRange, PriceSource, hourly_source};
use crate::ingest::{HOURLY_WINDOW_DAYS, windows_for_days};
use crate::store::coins::CoinRecord;
use crate::store::gaps;

/// What is left to spend in one tick.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Purse {
    /// Credits left this month, less what the tick queued; `None`: no monthly limit.
    left: Option<i64>,
    /// The month counted, for the log line.
    month: Option<CreditMonth>,
}

impl Purse {
    /// What is left this month, as the credits stand when the tick begins.
    pub(super) async fn open(credits: Option<&Credits>) -> sqlx::Result<Purse> {
        let Some(figures) = (match credits {
            Some(credits) => credits.month().await?,
            None => None,
        }) else {
            return Ok(Purse::default());
        };
        Ok(Purse {
            left: figures.left(),
            month: Some(figures.month),
        })
    }

    /// Whether a job over the missing days `in_job` fits in what is left; if so, its
    /// windows are counted as spent.
    pub(super) fn pay_for(&mut self, credits: Option<&Credits>, in_job: &[NaiveDate]) -> bool {
        let (Some(left), Some(credits)) = (self.left, credits) else {
            return true;
        };
        let calls = windows_for_days(in_job, credits.chunk_days).len() as i64;
        if calls > left {
            return false;
        }
        self.left = Some(left - calls);
        true
    }

    /// Whether the job that would bring `coin`'s hours up from `from` fits in what is left;
    /// if so, its CoinGecko windows are counted as spent: the windows of the days it misses
    /// before today (a schedule job fetches no day of today for the day's sake), and, when
    /// its hours are built from CoinGecko's points (no usable product), every window of
    /// its lagging days. Hours from Coinbase cost no credit.
    pub(super) async fn pay_for_hours(
        &mut self,
        credits: Option<&Credits>,
        (record, from): (&CoinRecord, NaiveDate),
        today: NaiveDate,
    ) -> sqlx::Result<bool> {
        let (Some(left), Some(credits)) = (self.left, credits) else {
            return Ok(true);
        };
        let source = hourly_source(true, record.mapping.exchange_product(credits.fallback));
        let yesterday = today.pred_opt().unwrap_or(today);
        let mut days: Vec<NaiveDate> = if from > yesterday {
            Vec::new()
        } else {
            gaps::missing_days(&credits.pool, record.coin.symbol, from, yesterday).await?
        };
        if source != Some(PriceSource::Coinbase) {
            // Hours built from points: every day of the hours the job fills (its newest
            // 1461 days, `DateRange::days_of_hours`), besides the missing days before them.
            let hours_from =
                DateRange::stored(from, today).map_or(from, |range| range.days_of_hours().0);
            days.retain(|day| *day < hours_from);
            days.extend(hours_from.iter_days().take_while(|day| *day <= today));
        }
        // Hours built from points come in windows of 90 days at most (the job's rule).
        let window_days = match source {
            Some(PriceSource::Coinbase) => credits.chunk_days,
            _ => credits.chunk_days.min(HOURLY_WINDOW_DAYS),
        };
        let calls = windows_for_days(&days, window_days).len() as i64;
        if calls > left {
            return Ok(false);
        }
        self.left = Some(left - calls);
        Ok(true)
    }

    /// The line a tick logs when it left coins for lack of credits.
    pub(super) fn say_unaffordable(&self, coins: i32) {
        if coins == 0 {
            return;
        }
        let resets_on = self.month.map(CreditMonth::resets_on);
        tracing::warn!(
            coins_unaffordable = coins,
            credits_left = self.left,
            resets_on = ?resets_on,
            "the month's CoinGecko credits (COINGECKO_CALLS_PER_MONTH) cannot pay for these tracked \
             coins: each later tick looks again, and queues what the credits left then pay for \
             (all of them once the credits reset)"
        );
    }
}
