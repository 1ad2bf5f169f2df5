//! Row 14 (issue 26): the four-year job of an hourly coin against its floor. The 1461 days of
//! BTC up to yesterday on a plan that serves 365, with the second source and BTC's hours on:
//! 5 CoinGecko calls for the plan's days, then on Coinbase's own budget (120 calls a minute,
//! the default) the product's check, 4 windows of the older days and 117 windows of 300
//! hours (35,064 hours), against a fake Coinbase Exchange at its public limit of 10
//! requests a second. The floor is each source's calls spaced at its own rate, one after
//! the other: the job cannot end sooner.

use std::time::Duration;

use anyhow::Result;
use fake_upstream::coinbase::{FakeCoinbase, FakeCoinbaseOptions};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions};
use price_history::store;

use super::coins::serve;
use super::{Bench, Report, Sizes, days_to_yesterday, terminate, with_database};

/// `COINBASE_CALLS_PER_MINUTE`'s default.
const COINBASE_CALLS_PER_MINUTE: u32 = 120;

impl Bench {
    /// Row 14; see the module's docs. The smoke run asks for fewer days, at a budget the
    /// fake answers without a rate limit.
    pub(crate) async fn hourly_job(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let url = with_database(&self.admin_url, &format!("{}_hourly", self.database))?;
        let fake = FakeCoinGecko::start_with(FakeOptions {
            history_limit_days: Some(365),
            ..FakeOptions::default()
        })
        .await?;
        let coinbase_per_minute = if sizes.smoke {
            6000
        } else {
            COINBASE_CALLS_PER_MINUTE
        };
        let coinbase = FakeCoinbase::start_with(FakeCoinbaseOptions {
            requests_per_second_limit: if sizes.smoke {
                None
            } else {
                FakeCoinbaseOptions::default().requests_per_second_limit
            },
            ..FakeCoinbaseOptions::default()
        })
        .await?;
        let (coinbase_url, per_minute) = (coinbase.base_url(), coinbase_per_minute.to_string());
        // No schedule: BTC turns hourly below, and a tick (the catch-up at start among
        // them) would queue its own job for BTC's hours before the one measured.
        let env: &[(&str, &str)] = &[
            ("SYNC_SCHEDULE", "off"),
            ("COINGECKO_HISTORY_DAYS", "365"),
            ("FALLBACK_SOURCE", "coinbase"),
            ("COINBASE_BASE_URL", &coinbase_url),
            ("COINBASE_CALLS_PER_MINUTE", &per_minute),
        ];
        let (mut serve, base) = serve(&url, &fake.base_url(), sizes, env).await?;
        let pool = store::connect(&url.parse()?, 2).await?;
        sqlx::query("UPDATE coins SET hourly = true WHERE symbol = 'BTC'")
            .execute(&pool)
            .await?;
        let (start, end) = days_to_yesterday(sizes.backfill_days);
        let (job, wall) = self
            .submit_and_finish(&base, &pool, start, end, Duration::from_secs(600))
            .await?;
        terminate(&mut serve).await?;
        pool.close().await;
        self.drop_database(&url_database(&url)).await;

        let hours = sizes.backfill_days as usize * 24;
        let hourly_calls = coinbase.hourly_calls();
        let (coingecko_calls, coinbase_calls) = (fake.call_count(), coinbase.call_count());
        let refused = coinbase.calls().iter().filter(|c| c.status != 200).count();
        let floor = coingecko_calls.saturating_sub(1) as f64 * 60.0
            / f64::from(sizes.calls_per_minute)
            + coinbase_calls.saturating_sub(1) as f64 * 60.0 / f64::from(coinbase_per_minute);
        let ratio = wall.as_secs_f64() / floor.max(f64::EPSILON);
        report.row(
            format!(
                "14. {} days of an hourly BTC on a 365-day plan, Coinbase at {coinbase_per_minute} calls/min: calls, wall time / floor",
                sizes.backfill_days
            ),
            format!(
                "{hourly_calls} hourly Coinbase calls for {} of {hours} hours ({} missing), {} more Coinbase (check, days), {coingecko_calls} CoinGecko, {refused} refused; {}; {:.2} s, floor {floor:.2} s, ratio {ratio:.3}",
                job.hours_fetched.unwrap_or_default(),
                job.hours_missing.unwrap_or_default(),
                coinbase_calls - hourly_calls,
                job.status,
                wall.as_secs_f64(),
            ),
            format!("{} hourly calls, ratio <= 1.05", hours.div_ceil(300)),
            Some(
                hourly_calls == hours.div_ceil(300)
                    && job.hours_fetched == i32::try_from(hours).ok()
                    // Smoke sizes make too few calls for a floor to mean anything.
                    && (sizes.smoke || ratio <= 1.05),
            ),
        );
        Ok(())
    }
}

/// The database name at the end of `url`.
fn url_database(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_owned()
}
