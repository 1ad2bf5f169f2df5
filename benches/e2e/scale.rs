//! Row 12 (issue 20): many coins with long histories. Tracked coins × days of complete
//! history, loaded with SQL in one `INSERT ... SELECT` over `generate_series` (as a
//! newcomer's database would hold them after tracking them), then, on a warm `serve`:
//! `GET /api/v1/coins` (the first page), `GET /metrics`, and a schedule tick that finds
//! nothing to do, each the median of several. Run at two sizes to show the cost is flat
//! in the history stored.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Days, TimeDelta, Timelike, Utc};

use super::{
    Bench, Following, Report, Sizes, bench_scheduler, median, ms, register_coins, terminate,
    timed_tick,
};

/// Each figure is the median of this many.
const SAMPLES: usize = 15;

impl Bench {
    pub(super) async fn scale(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let (days, coin_counts) = if sizes.smoke {
            (30, [20, 50])
        } else {
            (1461, [1_000, 10_000])
        };
        for coins in coin_counts {
            self.in_own_database(&format!("scale{coins}"), async |url| {
                self.scale_run(url, sizes, coins, days, report).await
            })
            .await?;
        }
        Ok(())
    }

    async fn scale_run(
        &self,
        url: &str,
        sizes: &Sizes,
        coins: i32,
        days: u64,
        report: &mut Report,
    ) -> Result<()> {
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
        let today = Utc::now().date_naive();
        let first = today.checked_sub_days(Days::new(days)).context("a date")?;
        let began = Instant::now();
        register_coins(&pool, "scale", coins, first, Following::Days).await?;
        // One statement: the triggers see it as one, and build the figures in one pass.
        let rows = sqlx::query(
            r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
               SELECT c.symbol, d::date, 100, 110, 90, 105, 1000, d + interval '23 hours'
               FROM coins c CROSS JOIN generate_series($1::date, $2::date - 1, interval '1 day') AS d
               WHERE c.tracked"#,
        )
        .bind(first)
        .bind(today)
        .execute(&pool)
        .await?
        .rows_affected();
        sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
        let loaded = began.elapsed();

        let (mut serve, base) = super::coins::serve(url, &self.fake.base_url(), sizes, &[]).await?;
        let result = async {
            let (coins_page, _) = self
                .median_get(&format!("{base}/api/v1/coins"), SAMPLES, &["\"next\""])
                .await?;
            let metrics_holds = [
                "price_history_database_up 1",
                "price_history_stored_candles{symbol=\"S000001\"}",
            ];
            let (metrics, _) = self
                .median_get(&format!("{base}/metrics"), SAMPLES, &metrics_holds)
                .await?;
            Ok::<_, anyhow::Error>((coins_page, metrics))
        }
        .await;
        terminate(&mut serve).await?;
        let (coins_page, metrics) = result?;

        let scheduler = bench_scheduler(&pool, self.fake.base_url(), "* * * * * *", "bench-scale")?;
        // Never raised: every tick is acted on whole.
        let (_stop, running) = price_history::shutdown::Shutdown::new();
        let base_tick = Utc::now().with_nanosecond(0).context("a time")?;
        let mut ticks = Vec::new();
        for i in 0..SAMPLES {
            let tick = base_tick + TimeDelta::seconds(i as i64);
            let (acted, took) = timed_tick(&scheduler, tick, &running).await?;
            ticks.push(took);
            if acted.jobs_queued != 0 || acted.coins_tracked != coins {
                bail!(
                    "a tick with nothing to do queued {} jobs",
                    acted.jobs_queued
                );
            }
        }
        let tick = median(ticks);
        let rested_tick = rested_holes_tick(&pool, &scheduler, base_tick, coins, first).await?;
        pool.close().await;

        let label = format!("{coins} coins × {days} days ({rows} rows)");
        report.notes.push(format!(
            "Row 12, {label}: loaded with one INSERT ... SELECT (figures built by the statement triggers) and VACUUM ANALYZE in {:.1} s.",
            loaded.as_secs_f64()
        ));
        for (what, figure) in [
            ("GET /api/v1/coins, first page (100)", coins_page),
            ("GET /metrics", metrics),
            ("a schedule tick with nothing to do", tick),
            (
                "a schedule tick with nothing to do, every coin with a day CoinGecko has no data for (rested)",
                rested_tick,
            ),
        ] {
            report.row(
                format!("12. {label}: {what}"),
                format!("median {:.1} ms of {SAMPLES}", ms(figure)),
                "< 100 ms",
                Some(figure < Duration::from_millis(100)),
            );
        }
        Ok(())
    }
}

/// Every coin loses a day in the middle of its history that CoinGecko has no data for,
/// answered empty twice (as a scheduled job's window and gap fill leave it): the ticks
/// after `base_tick`'s must queue nothing and, counting the rested day as part of the
/// coin's run, need no gap query. The median of their times.
async fn rested_holes_tick(
    pool: &sqlx::PgPool,
    scheduler: &price_history::schedule::Scheduler,
    base_tick: chrono::DateTime<Utc>,
    coins: i32,
    first: chrono::NaiveDate,
) -> Result<Duration> {
    let hole = first.checked_add_days(Days::new(100)).context("a date")?;
    sqlx::query("DELETE FROM daily_prices WHERE date = $1")
        .bind(hole)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO empty_days (symbol, date, answers, last_answer_at) \
         SELECT symbol, $1, 2, now() FROM coins WHERE tracked",
    )
    .bind(hole)
    .execute(pool)
    .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    let (_stop, running) = price_history::shutdown::Shutdown::new();
    let mut ticks = Vec::new();
    for i in 0..SAMPLES {
        let tick = base_tick + TimeDelta::seconds((SAMPLES + i) as i64);
        let (acted, took) = timed_tick(scheduler, tick, &running).await?;
        ticks.push(took);
        if acted.jobs_queued != 0 || acted.coins_tracked != coins {
            bail!(
                "a tick with only rested holes queued {} jobs",
                acted.jobs_queued
            );
        }
    }
    Ok(median(ticks))
}
