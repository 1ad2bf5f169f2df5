//! Row 15 (issues 26 and 27): hours at scale. 1,000 hourly, tracked coins × four years of
//! hours (35 M rows of `hourly_prices`, 1461 days of `daily_prices` each), loaded by SQL
//! with one `INSERT ... SELECT` over `generate_series` per batch of coins, then:
//! - the load's time, and the tables' and indexes' bytes: rows and bytes per coin per
//!   timeframe, and what 1,000 and 10,000 hourly coins weigh;
//! - on a warm `serve`: one coin's four years of `1h` (35,064 rows) as JSON and as CSV,
//!   its coverage in hours, `/metrics`, the first page of the coins and the four-year `1h`
//!   Parquet download (time and size), each the median of several;
//! - a schedule tick with nothing to do, in process;
//! - `export --all --timeframe 1h` beside PostgreSQL's own `COPY ... TO` of the same rows.
//!
//! `PH_BENCH_ONLY=hourly` runs it alone; `PH_BENCH_SMOKE=1` with 4 coins × 30 days.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate, TimeDelta, Timelike, Utc};
use price_history::domain::Hour;
use sqlx::PgPool;

use super::export::copy_out;
use super::{
    Bench, Following, Report, Sizes, bench_scheduler, ms, register_coins, terminate, timed_tick,
};

/// Each figure is the median of this many (after one to warm up).
const SAMPLES: usize = 9;

/// Coins loaded per `INSERT`: 50 coins × 35,064 hours is 1.75 M rows a statement, which
/// the statement triggers on `hourly_prices` fold into the figures in one pass each.
const BATCH: i32 = 50;

/// The rows `export --timeframe 1h` writes, as PostgreSQL's own COPY writes them.
const COPY: &str = "COPY (SELECT symbol, hour, open::float8, high::float8, low::float8, \
    close::float8, volume::float8, source, disputed FROM hourly_prices WHERE NOT provisional \
    ORDER BY symbol, hour) TO STDOUT";

/// What was loaded.
struct Loaded {
    coins: i32,
    first: NaiveDate,
    yesterday: NaiveDate,
    hour_rows: u64,
    day_rows: u64,
    took: Duration,
}

impl Bench {
    pub(super) async fn hourly(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let (coins, days) = if sizes.smoke { (4, 30) } else { (1_000, 1461) };
        self.in_own_database("hourly", async |url| {
            let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
            let loaded = load(&pool, coins, days).await?;
            weigh(&pool, &loaded, report).await?;
            self.hourly_reads(url, sizes, &loaded, report).await?;
            idle_tick(self, &pool, &loaded, report).await?;
            let copy = copy_out(&pool, COPY, 1).await?;
            pool.close().await;
            self.hourly_export(url, &loaded, copy, report).await
        })
        .await
    }

    /// The reads of one coin on a warm `serve`, and the pages that must not slow down.
    async fn hourly_reads(
        &self,
        url: &str,
        sizes: &Sizes,
        loaded: &Loaded,
        report: &mut Report,
    ) -> Result<()> {
        // No schedule in the process measured: the idle tick is measured on its own below.
        let env = [("SYNC_SCHEDULE", "off")];
        let (mut serve, base) =
            super::coins::serve(url, &self.fake.base_url(), sizes, &env).await?;
        let range = format!(
            "symbol=H000001&start_date={}&end_date={}",
            loaded.first, loaded.yesterday
        );
        let hours = loaded.hour_rows_of_one_coin();
        let paths = [
            format!("/api/v1/prices?{range}&timeframe=1h"),
            format!("/api/v1/prices?{range}&timeframe=1h&format=csv"),
            format!("/api/v1/coverage?{range}&timeframe=1h"),
            format!("/api/v1/prices?{range}&timeframe=1h&format=parquet"),
            "/metrics".to_owned(),
            "/api/v1/coins".to_owned(),
        ];
        let result = async {
            let mut timed = Vec::new();
            for path in &paths {
                timed.push(
                    self.median_get(&format!("{base}{path}"), SAMPLES, &[])
                        .await?,
                );
            }
            Ok::<_, anyhow::Error>(timed)
        }
        .await;
        terminate(&mut serve).await?;
        let [json, csv, coverage, parquet, metrics, page]: [_; 6] =
            result?.try_into().expect("one timing a path");
        let csv_lines = csv.1.iter().filter(|b| **b == b'\n').count() as u64;
        if csv_lines != hours + 1 {
            bail!(
                "the 1h CSV holds {csv_lines} lines, not {} and its header",
                hours
            );
        }
        let label = format!("{} hourly coins × {} days", loaded.coins, loaded.days());
        let sized = |(took, body): &(Duration, Vec<u8>)| {
            format!(
                "median {:.1} ms of {SAMPLES}, {:.2} MB",
                ms(*took),
                body.len() as f64 / 1e6
            )
        };
        let cases = [
            (
                format!("1h prices of one coin, {hours} rows, JSON"),
                &json,
                300,
            ),
            (
                format!("1h prices of one coin, {hours} rows, CSV"),
                &csv,
                300,
            ),
            (
                format!("coverage in hours of one coin, {} days", loaded.days()),
                &coverage,
                100,
            ),
            ("GET /metrics".to_owned(), &metrics, 100),
            ("GET /api/v1/coins, first page".to_owned(), &page, 100),
        ];
        for (what, figure, limit) in cases {
            report.row(
                format!("15. {label}: {what}, loopback"),
                sized(figure),
                format!("< {limit} ms"),
                Some(figure.0 < Duration::from_millis(limit)),
            );
        }
        report.row(
            format!("15. {label}: GET /api/v1/prices?timeframe=1h&format=parquet, one coin, {hours} rows, loopback"),
            format!("{}; JSON of the same {:.2} MB", sized(&parquet), json.1.len() as f64 / 1e6),
            "-",
            None,
        );
        Ok(())
    }

    /// `export --all --timeframe 1h` in Feather and Parquet, beside COPY.
    async fn hourly_export(
        &self,
        url: &str,
        loaded: &Loaded,
        copy: Duration,
        report: &mut Report,
    ) -> Result<()> {
        let rows = loaded.hour_rows;
        let copy_rate = rows as f64 / copy.as_secs_f64();
        report.notes.push(format!(
            "Row 15: COPY (SELECT symbol, hour, open::float8, ..., source, disputed FROM hourly_prices \
             WHERE NOT provisional ORDER BY symbol, hour) TO STDOUT of the {rows} rows the 1h export \
             writes took {:.1} s ({copy_rate:.0} rows/s), once: at this size one run is minutes.",
            copy.as_secs_f64()
        ));
        for format in ["feather", "parquet"] {
            let (took, bytes) = self.export_to_directory(url, "1h", format).await?;
            let rate = rows as f64 / took.as_secs_f64();
            report.row(
                format!("15. export --all --timeframe 1h --format {format}, {} coins × {} days ({rows} rows)", loaded.coins, loaded.days()),
                format!(
                    "{:.1} s, {rate:.0} rows/s, {:.0} MB; COPY ... TO {copy_rate:.0} rows/s; ratio {:.2}",
                    took.as_secs_f64(),
                    bytes as f64 / 1e6,
                    rate / copy_rate
                ),
                "-",
                None,
            );
        }
        Ok(())
    }
}

impl Loaded {
    /// The days read: `first..=yesterday`.
    fn days(&self) -> i64 {
        (self.yesterday - self.first).num_days() + 1
    }

    /// One coin's hours of the days read, `first..=yesterday`: 35,064 for 1461 days.
    fn hour_rows_of_one_coin(&self) -> u64 {
        ((self.yesterday - self.first).num_days() as u64 + 1) * 24
    }
}

/// Registers `coins` hourly, tracked coins `H000001`... whose days start `days` days ago,
/// stores every day through yesterday and every hour through the last complete one, a
/// batch of coins per statement, each coin's hours together (as a backfill writes them,
/// 300 hours a window); then VACUUM ANALYZE. Hours written an hour at a time for every
/// coin (years of ticks) lie interleaved instead: BENCHMARKS.md says what that costs.
async fn load(pool: &PgPool, coins: i32, days: u64) -> Result<Loaded> {
    let now = Utc::now();
    let today = now.date_naive();
    let first = today.checked_sub_days(Days::new(days)).context("a date")?;
    let yesterday = today.pred_opt().context("a date")?;
    let began = Instant::now();
    register_coins(pool, "hourly", coins, first, Following::DaysAndHours).await?;
    let day_rows = sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
           SELECT c.symbol, d::date, 100, 110, 90, 105, 1000, d + interval '23 hours'
           FROM coins c CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d
           WHERE c.hourly"#,
    )
    .bind(first)
    .bind(yesterday)
    .execute(pool)
    .await?
    .rows_affected();
    let mut hour_rows = 0;
    let last = Hour::last_complete(now);
    for from in (1..=coins).step_by(BATCH as usize) {
        let to = (from + BATCH - 1).min(coins);
        hour_rows += sqlx::query(
            r#"INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source)
               SELECT c.symbol, h, round(p, 8), round(p * 1.0041, 8), round(p * 0.9962, 8),
                      round(p * 1.0013, 8), round(p * 4321.123, 4), 'coinbase'
               FROM coins c CROSS JOIN generate_series($1::timestamptz, $2::timestamptz, interval '1 hour') AS h,
                    LATERAL (SELECT (100 * (2 + sin(extract(epoch FROM h) / 3e5 + hashtext(c.symbol))))::numeric AS p) AS price
               WHERE c.symbol BETWEEN 'H' || lpad($3::text, 6, '0') AND 'H' || lpad($4::text, 6, '0')
               ORDER BY c.symbol, h"#,
        )
        .bind(Hour::first_of(first))
        .bind(last)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?
        .rows_affected();
    }
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    Ok(Loaded {
        coins,
        first,
        yesterday,
        hour_rows,
        day_rows,
        took: began.elapsed(),
    })
}

/// The tables' bytes, per coin and per timeframe, and what 1,000 and 10,000 coins weigh.
async fn weigh(pool: &PgPool, loaded: &Loaded, report: &mut Report) -> Result<()> {
    let size = |table: &'static str| async move {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT pg_table_size($1::regclass), pg_indexes_size($1::regclass)",
        )
        .bind(table)
        .fetch_one(pool)
        .await
    };
    let (hour_table, hour_index) = size("hourly_prices").await?;
    let (day_table, day_index) = size("daily_prices").await?;
    let coins = f64::from(loaded.coins);
    let per_coin = |bytes: i64| bytes as f64 / coins;
    let hour_coin = per_coin(hour_table + hour_index);
    let day_coin = per_coin(day_table + day_index);
    let hours_per_coin = loaded.hour_rows as f64 / coins;
    report.row(
        format!(
            "15. Load of {} hourly coins × {} days by SQL ({} hour rows, {} day rows; one INSERT per {BATCH} coins)",
            loaded.coins, loaded.days(), loaded.hour_rows, loaded.day_rows
        ),
        format!("{:.0} s with VACUUM ANALYZE ({:.0} hour rows/s)", loaded.took.as_secs_f64(), loaded.hour_rows as f64 / loaded.took.as_secs_f64()),
        "-",
        None,
    );
    report.row(
        format!("15. Bytes per coin per timeframe ({} days): 1h stored, 4h made on read, 1d stored", loaded.days()),
        format!(
            "1h: {hours_per_coin:.0} rows, {:.2} MB (table {:.2} + primary key {:.2}; {:.0} B a row); \
             4h: {:.0} rows, 0 B stored; 1d: {:.0} rows, {:.0} KB",
            hour_coin / 1e6,
            per_coin(hour_table) / 1e6,
            per_coin(hour_index) / 1e6,
            (hour_table + hour_index) as f64 / loaded.hour_rows as f64,
            hours_per_coin / 4.0,
            loaded.day_rows as f64 / coins,
            day_coin / 1e3,
        ),
        "-",
        None,
    );
    report.row(
        format!("15. What hourly coins weigh ({} days of 1h and 1d), measured at this size and × 10", loaded.days()),
        format!(
            "{} coins: {:.2} GB (hourly_prices {:.2} GB); 10,000 coins: {:.1} GB (extrapolated, linear in coins)",
            loaded.coins,
            (hour_table + hour_index + day_table + day_index) as f64 / 1e9,
            (hour_table + hour_index) as f64 / 1e9,
            (hour_coin + day_coin) * 10_000.0 / 1e9
        ),
        "-",
        None,
    );
    Ok(())
}

/// A schedule tick with every coin's days and hours stored: the median of [`SAMPLES`].
async fn idle_tick(
    bench: &Bench,
    pool: &PgPool,
    loaded: &Loaded,
    report: &mut Report,
) -> Result<()> {
    let scheduler = bench_scheduler(pool, bench.fake.base_url(), "* * * * * *", "bench-hourly")?;
    let (_stop, running) = price_history::shutdown::Shutdown::new();
    let base_tick = Utc::now().with_nanosecond(0).context("a time")?;
    let mut ticks = Vec::new();
    let mut queued = 0;
    for i in 0..SAMPLES {
        let tick = base_tick + TimeDelta::seconds(i as i64);
        let (acted, took) = timed_tick(&scheduler, tick, &running).await?;
        ticks.push(took);
        queued += acted.jobs_queued;
    }
    ticks.sort();
    let tick = ticks[ticks.len() / 2];
    report.row(
        format!(
            "15. {} hourly coins × {} days: a schedule tick with nothing to do",
            loaded.coins,
            loaded.days()
        ),
        format!(
            "median {:.1} ms of {SAMPLES} ({queued} jobs queued)",
            ms(tick)
        ),
        "< 100 ms, 0 jobs",
        Some(tick < Duration::from_millis(100) && queued == 0),
    );
    Ok(())
}
