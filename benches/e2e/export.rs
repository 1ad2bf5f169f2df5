//! Row 13 (issue 27): `price-history export` of many coins × four years of days, in every
//! format, beside PostgreSQL's own `COPY (SELECT ...) TO STDOUT` of the same rows; and a
//! four-year Parquet download over HTTP, in time and size, beside the JSON of the same
//! range. Days only: hours are not stored yet (issue 26), and their rows come with them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::{Bench, Following, Report, Sizes, ms, register_coins, spawn, terminate};

/// Each download figure is the median of this many.
const DOWNLOADS: usize = 15;

/// The rows the export writes, as PostgreSQL's own COPY writes them.
const COPY: &str = "COPY (SELECT symbol, date, open::float8, high::float8, low::float8, \
    close::float8, volume::float8, source FROM daily_prices WHERE NOT provisional \
    ORDER BY symbol, date) TO STDOUT";

impl Bench {
    pub(super) async fn export(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let (coins, days) = if sizes.smoke { (20, 60) } else { (1_000, 1461) };
        self.in_own_database("export", async |url| {
            let pool = price_history::startup::connect_and_migrate(&url.parse()?, 2).await?;
            let last = NaiveDate::from_ymd_opt(2024, 12, 31).context("a date")?;
            let first = last
                .checked_sub_days(Days::new(days - 1))
                .context("a date")?;
            let rows = load(&pool, coins, first, last).await?;
            let copy = copy_out(&pool, COPY, 3).await?;
            let copy_rate = rows as f64 / copy.as_secs_f64();
            report.notes.push(format!(
                "Row 13: {coins} coins × {days} days ({rows} rows) loaded by SQL, prices with up to 15 significant \
                 digits. COPY (SELECT ...) TO STDOUT of the same rows (the casts to float8 included, ordered by \
                 coin and day) took {:.2} s: {copy_rate:.0} rows/s, the best of 3. Each export is one process \
                 from start to exit (connecting and checking migrations included), into an empty directory; \
                 every file is fsynced before its rename, the next coin read meanwhile.",
                copy.as_secs_f64()
            ));
            for format in ["feather", "parquet", "json", "jsongz", "csv"] {
                let (took, bytes) = self.export_to_directory(url, "1d", format).await?;
                let rate = rows as f64 / took.as_secs_f64();
                report.row(
                    format!("13. export --all --format {format}, {coins} coins × {days} days of 1d ({rows} rows)"),
                    format!(
                        "{:.2} s, {rate:.0} rows/s, {:.1} MB; COPY ... TO {copy_rate:.0} rows/s; ratio {:.2}",
                        took.as_secs_f64(),
                        bytes as f64 / 1e6,
                        rate / copy_rate
                    ),
                    "-",
                    None,
                );
            }
            pool.close().await;
            self.download(url, sizes, first, last, report).await
        })
        .await
    }

    /// Runs `export --all --timeframe TIMEFRAME --format FORMAT` into an empty directory;
    /// its wall time and the bytes it wrote.
    pub(super) async fn export_to_directory(
        &self,
        url: &str,
        timeframe: &str,
        format: &str,
    ) -> Result<(Duration, u64)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("target/bench-export-{timeframe}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.to_str().context("a UTF-8 path")?;
        let args = [
            "export",
            "--out",
            out,
            "--timeframe",
            timeframe,
            "--format",
            format,
            "--all",
        ];
        let began = Instant::now();
        let mut child = spawn(url, &self.fake.base_url(), &args, &[("RUST_LOG", "warn")])?;
        let status = child.wait().await?;
        let took = began.elapsed();
        if !status.success() {
            bail!("export --timeframe {timeframe} --format {format} exited {status}");
        }
        let mut bytes = 0;
        for entry in std::fs::read_dir(&dir)? {
            bytes += entry?.metadata()?.len();
        }
        std::fs::remove_dir_all(&dir)?;
        Ok((took, bytes))
    }

    /// The four-year Parquet answer of one coin over HTTP, beside its JSON.
    async fn download(
        &self,
        url: &str,
        sizes: &Sizes,
        first: NaiveDate,
        last: NaiveDate,
        report: &mut Report,
    ) -> Result<()> {
        let (mut serve, base) = super::coins::serve(url, &self.fake.base_url(), sizes, &[]).await?;
        let prices =
            format!("{base}/api/v1/prices?symbol=E000001&start_date={first}&end_date={last}");
        let result = async {
            let parquet = self
                .median_get(&format!("{prices}&format=parquet"), DOWNLOADS, &[])
                .await?;
            let json = self.median_get(&prices, DOWNLOADS, &[]).await?;
            Ok::<_, anyhow::Error>((parquet, json))
        }
        .await;
        terminate(&mut serve).await?;
        let ((parquet, parquet_body), (json, json_body)) = result?;
        report.row(
            format!(
                "13. GET /api/v1/prices?format=parquet, {first}..{last} of one coin (1d), loopback"
            ),
            format!(
                "median {:.1} ms of {DOWNLOADS}, {:.1} KiB; the same as JSON: {:.1} ms, {:.1} KiB",
                ms(parquet),
                parquet_body.len() as f64 / 1024.0,
                ms(json),
                json_body.len() as f64 / 1024.0
            ),
            "-",
            None,
        );
        Ok(())
    }
}

/// Registers `coins` coins `E000001`... and stores every day from `first` to `last` for
/// each, by SQL; returns the rows stored. Not tracked, so that `serve`'s schedule leaves
/// them alone while the download is measured.
async fn load(pool: &PgPool, coins: i32, first: NaiveDate, last: NaiveDate) -> Result<u64> {
    register_coins(pool, "export", coins, first, Following::Not).await?;
    let rows = sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", source)
           SELECT c.symbol, d::date, round(p, 10), round(p * 1.031234, 10), round(p * 0.971234, 10),
                  round(p * 1.003456, 10), round(p * 712345.678901, 4), d + interval '23 hours',
                  CASE WHEN d < $1::date + 365 THEN 'coinbase' ELSE 'coingecko' END
           FROM coins c CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d,
                LATERAL (SELECT (100 * (2 + sin(extract(epoch FROM d) / 3e6 + hashtext(c.symbol))))::numeric AS p) AS price
           WHERE c.symbol LIKE 'E%'"#,
    )
    .bind(first)
    .bind(last)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    Ok(rows)
}

/// The best of `runs` runs of `copy` (a `COPY ... TO STDOUT`), read to the end: what an
/// export is measured against.
pub(super) async fn copy_out(pool: &PgPool, copy: &str, runs: u32) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let mut conn = pool.acquire().await?;
        let began = Instant::now();
        let mut stream = conn.copy_out_raw(copy).await?;
        let mut bytes = 0;
        while let Some(chunk) = stream.try_next().await? {
            bytes += chunk.len();
        }
        best = best.min(began.elapsed());
        if bytes == 0 {
            bail!("COPY sent nothing");
        }
    }
    Ok(best)
}
