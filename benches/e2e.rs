//! The end-to-end benchmark runner: the real `price-history` binary against the local
//! PostgreSQL and a loopback fake CoinGecko, measured side by side in one run, written
//! as a table to BENCHMARKS.md (with the machine, the date and the commit).
//!
//! `cargo bench --bench e2e` runs the full sizes. With `PH_BENCH_SMOKE=1` it runs tiny
//! sizes and writes `target/BENCHMARKS.smoke.md` instead, so that CI keeps it working.
//! `DATABASE_ADMIN_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) is the
//! server on which it creates, and at the end drops, its databases.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate, Utc};
use fake_upstream::coingecko::FakeCoinGecko;
use price_history::domain::{DailyCandle, JobStatus, Symbol};
use price_history::queue;
use price_history::store::{
    daily_prices, gaps, ingestion_jobs::JobFollower, ingestion_jobs::JobRecord,
};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, Command};
use uuid::Uuid;

#[path = "e2e/budget.rs"]
mod budget;
#[path = "e2e/coins.rs"]
mod coins;
#[path = "e2e/export.rs"]
mod export;
#[path = "e2e/hourly.rs"]
mod hourly;
#[path = "e2e/hours_read.rs"]
mod hours_read;
#[path = "e2e/page.rs"]
mod page;
#[path = "e2e/private_postgres.rs"]
mod private_postgres;
#[path = "e2e/scale.rs"]
mod scale;
#[path = "e2e/schedule.rs"]
mod schedule;
#[path = "e2e/year.rs"]
mod year;

/// How long a job of rows 1 to 3 may take before the run fails.
const JOB_LIMIT: Duration = Duration::from_secs(600);

/// Sizes of one run.
struct Sizes {
    smoke: bool,
    backfill_days: u64,
    calls_per_minute: u32,
    holes: [u64; 3],
    upsert_rows: usize,
    gap_symbols: usize,
    gap_years: u64,
    wrk_seconds: u64,
    lease_secs: u64,
    pickups: usize,
}

/// `full`, or in a smoke run `tiny`.
fn pick<T>(smoke: bool, full: T, tiny: T) -> T {
    if smoke { tiny } else { full }
}

impl Sizes {
    /// The full sizes, or with `smoke` the smoke run's tiny ones: each field names its
    /// full size first.
    fn new(smoke: bool) -> Self {
        Sizes {
            smoke,
            backfill_days: pick(smoke, 1461, 200),
            calls_per_minute: pick(smoke, 600, 6000),
            holes: pick(smoke, [1, 5, 120], [1, 2, 3]),
            upsert_rows: pick(smoke, 100_000, 2_000),
            gap_symbols: pick(smoke, 10, 2),
            gap_years: pick(smoke, 20, 1),
            wrk_seconds: pick(smoke, 10, 1),
            lease_secs: pick(smoke, 5, 3),
            pickups: pick(smoke, 10, 2),
        }
    }

    /// `full`, or in this smoke run `tiny`: for a piece's own sizes.
    fn pick<T>(&self, full: T, tiny: T) -> T {
        pick(self.smoke, full, tiny)
    }
}

/// One line of the table.
struct Row {
    what: String,
    figure: String,
    target: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn row(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            what: what.into(),
            figure: figure.into(),
            target: target.into(),
            met,
        };
        println!(
            "{:<70} {:<60} target {:<20} {}",
            row.what,
            row.figure,
            row.target,
            verdict(row.met)
        );
        self.rows.push(row);
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    }
}

fn main() -> Result<()> {
    let sizes = Sizes::new(std::env::var_os("PH_BENCH_SMOKE").is_some());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(sizes))
}

async fn run(sizes: Sizes) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report::default();
    let bench = Bench::new(&sizes).await?;
    let result = bench.all(&sizes, &mut report).await;
    bench.cleanup().await;
    result?;

    let out = if let Some(only) = only() {
        // A piece alone never replaces the whole table.
        PathBuf::from(format!("target/BENCHMARKS.{only}.md"))
    } else if sizes.smoke {
        PathBuf::from("target/BENCHMARKS.smoke.md")
    } else {
        PathBuf::from("BENCHMARKS.md")
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join(&out).parent().unwrap())?;
    std::fs::write(root.join(&out), markdown(&sizes, &report))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `PH_BENCH_ONLY`: the one piece to run, when set.
fn only() -> Option<String> {
    std::env::var("PH_BENCH_ONLY")
        .ok()
        .filter(|only| !only.is_empty())
}

/// The runner's world: its databases, the fake CoinGecko, an HTTP client.
struct Bench {
    admin_url: String,
    database: String,
    url: String,
    pool: PgPool,
    fake: FakeCoinGecko,
    http: reqwest::Client,
}

impl Bench {
    async fn new(sizes: &Sizes) -> Result<Self> {
        let admin_url = std::env::var("DATABASE_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let database = format!("ph_bench_{}", Uuid::now_v7().simple());
        let url = with_database(&admin_url, &database)?;
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 8).await?;
        let fake = FakeCoinGecko::start().await;
        let _ = sizes;
        Ok(Bench {
            admin_url,
            database,
            url,
            pool,
            fake,
            http: reqwest::Client::new(),
        })
    }

    async fn cleanup(&self) {
        self.pool.close().await;
        // Every database of this run: its own and those the rows made beside it.
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            )
            .bind(&self.database)
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
            for name in names {
                drop_database(&mut admin, &name).await;
            }
        }
    }

    /// Runs `piece` on a database of its own beside the run's, `{run}_{name}` (its URL the
    /// argument), and drops that database when the piece is done, whatever it returned.
    async fn in_own_database<T>(
        &self,
        name: &str,
        piece: impl AsyncFnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let database = format!("{}_{name}", self.database);
        let url = with_database(&self.admin_url, &database)?;
        let result = piece(&url).await;
        self.drop_database(&database).await;
        result
    }

    /// Drops a database a piece made beside the run's own, as soon as the piece is done
    /// with it (the largest hold millions of rows).
    async fn drop_database(&self, name: &str) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            drop_database(&mut admin, name).await;
        }
    }

    async fn all(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        if let Some(only) = only() {
            // One piece alone (`PH_BENCH_ONLY=scale`), to measure a change without the rest.
            return match only.as_str() {
                "pipeline" => self.pipeline(sizes, report).await,
                "gaps" => self.gap_detection(sizes, report).await,
                "scale" => self.scale(sizes, report).await,
                "second-source" => self.second_source(sizes, report).await,
                "export" => self.export(sizes, report).await,
                "hourly-job" => self.hourly_job(sizes, report).await,
                "year" => self.year(sizes, report).await,
                "hourly" => self.hourly(sizes, report).await,
                "page" => self.page(sizes, report).await,
                other => {
                    bail!(
                        "PH_BENCH_ONLY={other}: the pieces run alone are: pipeline, gaps, scale, second-source, export, hourly-job, year, hourly, page"
                    )
                }
            };
        }
        self.pipeline(sizes, report).await?;
        self.bulk_upsert(sizes, report).await?;
        self.gap_detection(sizes, report).await?;
        self.takeover(sizes, report).await?;
        self.coins(sizes, report).await?;
        self.schedule(sizes, report).await?;
        budget::rows(self, sizes, report).await?;
        self.page(sizes, report).await?;
        private_postgres::rows(self, sizes, report).await?;
        self.scale(sizes, report).await?;
        self.export(sizes, report).await?;
        self.hourly_job(sizes, report).await?;
        self.year(sizes, report).await?;
        self.hourly(sizes, report).await?;
        Ok(())
    }

    /// Rows 1, 2, 3, 6, 7 and 8: one `serve` process, driven over HTTP.
    async fn pipeline(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut serve = spawn(
            &self.url,
            &self.fake.base_url(),
            &["serve"],
            &[
                ("BIND_ADDR", &format!("127.0.0.1:{port}")),
                (
                    "COINGECKO_CALLS_PER_MINUTE",
                    &sizes.calls_per_minute.to_string(),
                ),
            ],
        )?;
        self.wait_ready(&base).await?;
        let pid = serve.id().context("serve has a pid")?;
        let idle_rss = rss_kib(pid)?;

        // 1. The backfill, against the rate floor, on a warm service: one small job first,
        // so that the first connections and statements are not counted (row 8 measures
        // pick-up on its own), then a pause so that its call's budget slot has passed.
        let yesterday = Utc::now()
            .date_naive()
            .checked_sub_days(Days::new(1))
            .unwrap();
        let warm_up = yesterday
            .checked_sub_days(Days::new(sizes.backfill_days + 10))
            .unwrap();
        self.submit_and_finish(&base, &self.pool, warm_up, warm_up, JOB_LIMIT)
            .await?;
        tokio::time::sleep(Duration::from_secs_f64(
            2.0 * 60.0 / f64::from(sizes.calls_per_minute),
        ))
        .await;
        let (start, end) = days_to_yesterday(sizes.backfill_days);
        let calls_before = self.fake.call_count();
        let submitted = Instant::now();
        let (job, wall) = self
            .submit_and_finish(&base, &self.pool, start, end, JOB_LIMIT)
            .await?;
        let finished = submitted + wall;
        let calls = self.fake.call_count() - calls_before;
        let floor = (calls.saturating_sub(1)) as f64 * 60.0 / f64::from(sizes.calls_per_minute);
        let ratio = wall.as_secs_f64() / floor.max(f64::EPSILON);
        let expected_calls = sizes.backfill_days.div_ceil(90) as usize;
        let (first_call, last_call) = self.first_and_last_call(calls_before)?;
        let first_to_last = last_call - first_call;
        report.row(
            format!(
                "1. Backfill of {} days at {} calls/min: calls",
                sizes.backfill_days, sizes.calls_per_minute
            ),
            format!(
                "{calls} ({} of {} days stored, {})",
                job.records_fetched, sizes.backfill_days, job.status
            ),
            format!("{expected_calls}"),
            Some(calls == expected_calls && job.status == JobStatus::Completed),
        );
        report.row(
            "1. Backfill wall time (202 to completed) and wall / floor",
            format!(
                "{:.3} s; floor {:.3} s; ratio {:.3} (202 to first call {:.1} ms, first to last call {:.3} s, last call to completed {:.1} ms)",
                wall.as_secs_f64(),
                floor,
                ratio,
                ms(first_call - submitted),
                first_to_last.as_secs_f64(),
                ms(finished - last_call)
            ),
            "ratio <= 1.03",
            Some(ratio <= 1.03),
        );
        let peak_rss = peak_rss_kib(pid)?;

        // 2. A re-run with nothing missing.
        let calls_before = self.fake.call_count();
        let mut latencies = Vec::new();
        for _ in 0..3 {
            let (job, latency) = self
                .submit_and_finish(&base, &self.pool, start, end, JOB_LIMIT)
                .await?;
            anyhow::ensure!(
                job.status == JobStatus::Completed,
                "re-run ended {}",
                job.status
            );
            latencies.push(latency);
        }
        let calls = self.fake.call_count() - calls_before;
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        report.row(
            "2. Re-run with nothing missing: calls (3 runs)",
            calls.to_string(),
            "0",
            Some(calls == 0),
        );
        report.row(
            "2. Re-run: submit to completed latency (median of 3)",
            format!("{:.1} ms", ms(median)),
            "< 300 ms",
            Some(median < Duration::from_millis(300)),
        );

        // 3. Holes of 1, 5 and 120 days.
        let mut cursor = start.checked_add_days(Days::new(3)).unwrap();
        let mut deleted = 0;
        for hole in sizes.holes {
            deleted += sqlx::query("DELETE FROM daily_prices WHERE date BETWEEN $1 AND $2")
                .bind(cursor)
                .bind(cursor.checked_add_days(Days::new(hole - 1)).unwrap())
                .execute(&self.pool)
                .await?
                .rows_affected();
            cursor = cursor.checked_add_days(Days::new(hole + 10)).unwrap();
        }
        let calls_before = self.fake.call_count();
        let (job, _) = self
            .submit_and_finish(&base, &self.pool, start, end, JOB_LIMIT)
            .await?;
        let calls = self.fake.call_count() - calls_before;
        let expected = sizes.holes.iter().map(|h| h.div_ceil(90)).sum::<u64>() as usize;
        report.row(
            format!("3. Refill of holes of {:?} days: calls", sizes.holes),
            format!(
                "{calls} ({deleted} days deleted, {} fetched back, {})",
                job.records_fetched, job.status
            ),
            expected.to_string(),
            Some(calls == expected && job.status == JobStatus::Completed),
        );

        // 8. Pick-up latency of an idle worker: 202 to running.
        let mut pickups = Vec::new();
        for _ in 0..sizes.pickups {
            pickups.push(self.pickup_latency(&base, start, end).await?);
        }
        pickups.sort();
        let p50 = pickups[pickups.len() / 2];
        let max = *pickups.last().unwrap();
        report.row(
            "8. Pick-up latency, 202 to running, idle worker",
            format!(
                "median {:.1} ms, max {:.1} ms over {} jobs",
                ms(p50),
                ms(max),
                pickups.len()
            ),
            "< 250 ms",
            Some(max < Duration::from_millis(250)),
        );

        report.notes.push(format!(
            "Row 8: the queue wakes an idle worker by LISTEN/NOTIFY (apalis-postgres's channel `apalis::job::insert`, \
             also sent by our trigger when a job goes back to Pending), with a second wake-up 50 ms after each \
             notification for one that lands during a fetch already in flight. Polling remains only as the fallback on \
             each heartbeat, every JOB_LEASE_SECS / 3 ({} s with the default lease of 30 s).",
            30 / 3
        ));

        // 6. HTTP under load, beside a trivial endpoint.
        let job_url = format!("{base}/api/v1/ingestion-jobs/{}", job.id);
        let coverage_url =
            format!("{base}/api/v1/coverage?symbol=BTC&start_date={start}&end_date={end}");
        let trivial = wrk(&format!("{base}/healthz"), sizes.wrk_seconds).await?;
        for (name, url) in [
            ("GET /api/v1/ingestion-jobs/{id}", job_url),
            ("GET /api/v1/coverage (4 years)", coverage_url),
        ] {
            let load = wrk(&url, sizes.wrk_seconds).await?;
            let ratio = load.requests_per_sec / trivial.requests_per_sec;
            report.row(
                format!("6. {name} under load, beside GET /healthz"),
                format!(
                    "{:.0} req/s, p99 {}; /healthz {:.0} req/s, p99 {}; ratio {:.2}",
                    load.requests_per_sec, load.p99, trivial.requests_per_sec, trivial.p99, ratio
                ),
                "ratio >= 0.5",
                Some(ratio >= 0.5),
            );
        }

        // The uncached path of the job GET: a cancelled job is read from the database on
        // every request (only jobs that can never change again are kept in memory).
        let cancelled = self.post_job(&base, start, end, false).await?;
        self.http
            .post(format!("{base}/api/v1/ingestion-jobs/{cancelled}/cancel"))
            .send()
            .await?;
        let load = wrk(
            &format!("{base}/api/v1/ingestion-jobs/{cancelled}"),
            sizes.wrk_seconds,
        )
        .await?;
        report.row(
            "6. (for comparison) GET of a job read from the database every time (a cancelled one)",
            format!(
                "{:.0} req/s, p99 {}; ratio {:.2}",
                load.requests_per_sec,
                load.p99,
                load.requests_per_sec / trivial.requests_per_sec
            ),
            "-",
            None,
        );

        // 7. Memory of `serve`.
        let idle_after = rss_kib(pid)?;
        report.row(
            format!("7. RSS of serve: idle, and peak during the {}-day backfill", sizes.backfill_days),
            format!(
                "idle {:.1} MB before, {:.1} MB after all the above; peak {:.1} MB during the backfill",
                mib(idle_rss),
                mib(idle_after),
                mib(peak_rss)
            ),
            "< 40 MB",
            Some(peak_rss < 40 * 1024),
        );
        report.notes.push(
            "Row 6: finished jobs (`completed`, `completed_with_gaps`, `failed`) never change again, so the API keeps \
             them in memory after the first read; every other job, and every coverage, is read from PostgreSQL on each \
             request. Coverage is computed from the table every time on purpose: a cache invalidated by notifications \
             could answer from before a write that has already committed, and coverage must never overstate what is \
             stored. What bounds it is one PostgreSQL round trip plus the gap query (a 1,461-day `generate_series` \
             anti-joined to the primary key, about 0.4 ms of server time) per request, on 2 cores that wrk, the server \
             and PostgreSQL share; `/healthz` does no I/O at all."
                .to_owned(),
        );
        report.notes.push(format!(
            "Row 7's peak is the kernel's high-water mark (VmHWM) of the `serve` process read right after the backfill; \
             after the load test it was {:.1} MB.",
            mib(peak_rss_kib(pid)?)
        ));

        terminate(&mut serve).await?;
        Ok(())
    }

    /// Row 4: the project's upsert beside COPY, into the same table, in the same run.
    async fn bulk_upsert(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let url = with_database(&self.admin_url, &format!("{}_bulk", self.database))?;
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 2).await?;
        let first = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap();
        let candles: Vec<DailyCandle> = (0..sizes.upsert_rows)
            .map(|i| {
                let date = first.checked_add_days(Days::new(i as u64)).unwrap();
                let base = Decimal::new(4_000_000 + (i as i64 % 9973) * 37, 2);
                DailyCandle {
                    date,
                    open: base,
                    high: base + Decimal::new(12_345, 2),
                    low: base - Decimal::new(6_789, 2),
                    close: base + Decimal::new(1_111, 2),
                    volume: Decimal::new(2_500_000_000_000 + i as i64, 2),
                    timestamp: date.and_hms_opt(23, 0, 41).unwrap().and_utc(),
                    provisional: false,
                    points: Some(24),
                }
            })
            .collect();
        let mut csv = String::with_capacity(sizes.upsert_rows * 120);
        for c in &candles {
            let _ = writeln!(
                csv,
                "BTC,{},{},{},{},{},{},{},false",
                c.date,
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.timestamp.to_rfc3339()
            );
        }

        let mut upsert_best = Duration::MAX;
        let mut copy_best = Duration::MAX;
        for _ in 0..3 {
            sqlx::query("TRUNCATE daily_prices").execute(&pool).await?;
            let began = Instant::now();
            let mut tx = pool.begin().await?;
            let written = daily_prices::upsert(&mut tx, Symbol::BTC, &candles, false).await?;
            tx.commit().await?;
            upsert_best = upsert_best.min(began.elapsed());
            anyhow::ensure!(written as usize == candles.len(), "upsert wrote {written}");

            sqlx::query("TRUNCATE daily_prices").execute(&pool).await?;
            let began = Instant::now();
            let mut conn = pool.acquire().await?;
            let mut copy = conn
                .copy_in_raw(
                    r#"COPY daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional) FROM STDIN (FORMAT csv)"#,
                )
                .await?;
            copy.send(csv.as_bytes()).await?;
            let copied = copy.finish().await?;
            copy_best = copy_best.min(began.elapsed());
            anyhow::ensure!(copied as usize == candles.len(), "COPY wrote {copied}");
        }
        // Where the upsert's time goes, server side only: the same rows as arrays built
        // in PostgreSQL, inserted by UNNEST with and without the ON CONFLICT clause.
        let mut conn = pool.acquire().await?;
        sqlx::raw_sql(
            r#"CREATE TEMP TABLE arrays AS SELECT array_agg(date) d, array_agg(open) o, array_agg(high) h,
                   array_agg(low) l, array_agg(close) c, array_agg(volume) v, array_agg("timestamp") t,
                   array_agg(provisional) p FROM daily_prices"#,
        )
        .execute(&mut *conn)
        .await?;
        let mut server = Vec::new();
        for conflict in [
            r#"ON CONFLICT (symbol, date) DO UPDATE SET open = EXCLUDED.open WHERE daily_prices.provisional"#,
            "",
        ] {
            sqlx::raw_sql("TRUNCATE daily_prices")
                .execute(&mut *conn)
                .await?;
            let statement = format!(
                r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional)
                   SELECT 'BTC', x.* FROM arrays, UNNEST(d, o, h, l, c, v, t, p) AS x {conflict}"#
            );
            let began = Instant::now();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await?;
            server.push(began.elapsed());
        }
        drop(conn);
        pool.close().await;
        report.notes.push(format!(
            "Row 4, where the upsert's time goes (server side, arrays already in PostgreSQL): UNNEST insert with the \
             upsert's ON CONFLICT clause {:.0} ms, without it {:.0} ms, for {} rows; COPY over the wire took {:.0} ms. \
             The conflict arbitration (a speculative insertion and a unique-index check per row) is what the upsert \
             pays over COPY, and it is what makes a window idempotent: a window stored twice (a takeover, a forced \
             re-run) changes nothing or updates in place. A job writes at most 90 rows per statement, where the \
             difference is well under a millisecond.",
            ms(server[0]),
            ms(server[1]),
            sizes.upsert_rows,
            ms(copy_best)
        ));
        let upsert_rate = sizes.upsert_rows as f64 / upsert_best.as_secs_f64();
        let copy_rate = sizes.upsert_rows as f64 / copy_best.as_secs_f64();
        let ratio = upsert_rate / copy_rate;
        report.row(
            format!(
                "4. Bulk write of {} rows: the project's upsert vs COPY (best of 3)",
                sizes.upsert_rows
            ),
            format!(
                "upsert {:.0} rows/s; COPY {:.0} rows/s; ratio {:.2}",
                upsert_rate, copy_rate, ratio
            ),
            "ratio >= 0.5",
            Some(ratio >= 0.5),
        );
        Ok(())
    }

    /// Row 5: gap detection and coverage over many symbols and years, 1 % missing.
    async fn gap_detection(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let url = with_database(&self.admin_url, &format!("{}_gaps", self.database))?;
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 2).await?;
        let end = Utc::now()
            .date_naive()
            .checked_sub_days(Days::new(1))
            .unwrap();
        let start = end
            .checked_sub_days(Days::new(365 * sizes.gap_years + sizes.gap_years / 4))
            .unwrap();
        let symbols: Vec<String> = std::iter::once("BTC".to_owned())
            .chain((1..sizes.gap_symbols).map(|i| format!("COIN{i}")))
            .collect();
        // Every symbol registered (prices belong to a registered coin)...
        sqlx::query(
            "INSERT INTO coins (symbol, coingecko_id) SELECT s, lower(s) FROM unnest($1::text[]) AS s \
             ON CONFLICT DO NOTHING",
        )
        .bind(&symbols)
        .execute(&pool)
        .await?;
        // ... and every day, except a pseudo-random 1 %.
        sqlx::query(
            r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
               SELECT s, d::date, 100, 110, 90, 105, 1000, d
               FROM unnest($1::text[]) AS s, generate_series($2::date, $3::date, interval '1 day') AS d
               WHERE hashtext(s || d::text) % 100 <> 0"#,
        )
        .bind(&symbols)
        .bind(start)
        .bind(end)
        .execute(&pool)
        .await?;
        sqlx::query("ANALYZE daily_prices").execute(&pool).await?;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM daily_prices")
            .fetch_one(&pool)
            .await?;

        let mut gap_times = Vec::new();
        let mut coverage_times = Vec::new();
        let mut missing = 0;
        for _ in 0..20 {
            let began = Instant::now();
            missing = gaps::missing_days(&pool, Symbol::BTC, start, end)
                .await?
                .len();
            gap_times.push(began.elapsed());
            let began = Instant::now();
            gaps::coverage(
                &pool,
                &price_history::domain::Coin::bitcoin(),
                price_history::domain::PlanReach::UNLIMITED,
                end,
                start,
                end,
            )
            .await?;
            coverage_times.push(began.elapsed());
        }
        gap_times.sort();
        coverage_times.sort();
        let (gap_p50, coverage_p50) = (
            gap_times[gap_times.len() / 2],
            coverage_times[coverage_times.len() / 2],
        );
        report.row(
            format!(
                "5. Gap detection and coverage, {} symbols x {} years, 1 % missing ({rows} rows)",
                sizes.gap_symbols, sizes.gap_years
            ),
            format!(
                "missing days of one symbol over {} days: {:.2} ms; coverage {:.2} ms (medians of 20; {missing} gaps found)",
                (end - start).num_days() + 1,
                ms(gap_p50),
                ms(coverage_p50)
            ),
            "< 50 ms",
            Some(gap_p50.max(coverage_p50) < Duration::from_millis(50)),
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS) {}",
            &*gaps::MISSING_DAYS
        )))
        .bind("BTC")
        .bind(start)
        .bind(end)
        .fetch_all(&pool)
        .await?;
        report.notes.push(format!(
            "Row 5's plan (`EXPLAIN (ANALYZE, BUFFERS)` of the gap query for BTC):\n\n```\n{}\n```",
            plan.join("\n")
        ));
        pool.close().await;
        Ok(())
    }

    /// Row 9: two worker replicas; the busy one is killed, then another is stopped.
    async fn takeover(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        self.fake.set_delay(Duration::from_millis(300));
        let lease = sizes.lease_secs.to_string();
        let env = [
            ("JOB_LEASE_SECS", lease.as_str()),
            ("COINGECKO_CALLS_PER_MINUTE", "6000"),
        ];
        let mut workers = vec![
            spawn(&self.url, &self.fake.base_url(), &["worker"], &env)?,
            spawn(&self.url, &self.fake.base_url(), &["worker"], &env)?,
        ];
        let (start, end) = days_to_yesterday(1461);
        let mut figures = Vec::new();
        for signal in ["KILL", "TERM"] {
            let job = self.submit_direct(start, end, true).await?;
            let mut follower = JobFollower::new(&self.pool, job.id).await?;
            let mut now = follower.current().await?.context("the job exists")?;
            while now.chunks_done < 2 {
                now = follower.next_change().await?.context("the job exists")?;
            }
            let holder: String =
                sqlx::query_scalar("SELECT lock_by FROM apalis.jobs WHERE id = $1")
                    .bind(queue::task_id(job.id).to_string())
                    .fetch_one(&self.pool)
                    .await?;
            let busy = workers
                .iter()
                .position(|w| {
                    w.id()
                        .is_some_and(|pid| holder.contains(&format!("-{pid}-")))
                })
                .context("one of the workers holds the job")?;
            let attempts = now.attempts;
            let mut victim = workers.remove(busy);
            let pid = victim.id().context("a pid")?;
            let sent = Instant::now();
            std::process::Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status()?;
            while !(now.attempts > attempts && now.status == JobStatus::Running) {
                now = follower.next_change().await?.context("the job exists")?;
                anyhow::ensure!(
                    !now.status.is_terminal(),
                    "the job ended ({}) before it was taken over",
                    now.status
                );
            }
            let taken = sent.elapsed();
            let exit = tokio::time::timeout(Duration::from_secs(30), victim.wait()).await??;
            figures.push((signal, taken, exit.code()));
            while !now.status.is_terminal() {
                now = follower.next_change().await?.context("the job exists")?;
            }
            anyhow::ensure!(
                now.status == JobStatus::Completed,
                "the job ended {}",
                now.status
            );
            // A fresh replica replaces the one that went, as an orchestrator would.
            workers.push(spawn(&self.url, &self.fake.base_url(), &["worker"], &env)?);
        }
        for mut worker in workers {
            terminate(&mut worker).await?;
        }
        self.fake.set_delay(Duration::ZERO);
        let lease = Duration::from_secs(sizes.lease_secs);
        let (_, killed, _) = figures[0];
        let (_, termed, term_exit) = figures[1];
        report.row(
            format!(
                "9. Takeover after kill -9 of the busy worker (JOB_LEASE_SECS={})",
                sizes.lease_secs
            ),
            format!(
                "{:.2} s until the other replica runs the job",
                killed.as_secs_f64()
            ),
            format!("<= lease + 2 s = {} s", sizes.lease_secs + 2),
            Some(killed <= lease + Duration::from_secs(2)),
        );
        report.row(
            "9. Takeover after SIGTERM of the busy worker",
            format!(
                "{:.0} ms until the other replica runs the job; the stopped worker exited {:?}",
                ms(termed),
                term_exit
            ),
            "< 2 s",
            Some(termed < Duration::from_secs(2) && term_exit == Some(0)),
        );
        Ok(())
    }

    /// `samples` GETs of `url` after one to warm up, each answered 200 with a body that
    /// holds every one of `expect`: the median time (reading the body included) and the
    /// last body.
    async fn median_get(
        &self,
        url: &str,
        samples: usize,
        expect: &[&str],
    ) -> Result<(Duration, Vec<u8>)> {
        let mut times = Vec::new();
        let mut body = Vec::new();
        for i in 0..=samples {
            let began = Instant::now();
            let response = self.http.get(url).send().await?;
            let status = response.status();
            body = response.bytes().await?.to_vec();
            let took = began.elapsed();
            let text = String::from_utf8_lossy(&body);
            if status != 200 || !expect.iter().all(|part| text.contains(part)) {
                bail!(
                    "{url} answered {status}: {}",
                    text.chars().take(500).collect::<String>()
                );
            }
            if i > 0 {
                times.push(took);
            }
        }
        Ok((median(times), body))
    }

    /// POSTs a BTC job over `start..=end` to the `serve` at `base` and follows it in
    /// `pool` until it ends, for at most `limit`: the job and the time from sending the
    /// request to seeing it finished.
    async fn submit_and_finish(
        &self,
        base: &str,
        pool: &PgPool,
        start: NaiveDate,
        end: NaiveDate,
        limit: Duration,
    ) -> Result<(JobRecord, Duration)> {
        let began = Instant::now();
        let id = self.post_job(base, start, end, false).await?;
        let job = tokio::time::timeout(limit, JobFollower::new(pool, id).await?.until_finished())
            .await
            .with_context(|| format!("the job ended within {} s", limit.as_secs()))??
            .context("the job exists")?;
        Ok((job, began.elapsed()))
    }

    async fn pickup_latency(
        &self,
        base: &str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Duration> {
        // Listen before the job exists, so that no change is missed.
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener
            .listen(price_history::store::ingestion_jobs::CHANGES_CHANNEL)
            .await?;
        let id = self.post_job(base, start, end, false).await?.to_string();
        let accepted = Instant::now();
        let picked_up = loop {
            let notification =
                tokio::time::timeout(Duration::from_secs(10), listener.recv()).await??;
            if notification.payload() != id {
                continue;
            }
            let status: String =
                sqlx::query_scalar("SELECT status FROM ingestion_jobs WHERE id = $1::uuid")
                    .bind(&id)
                    .fetch_one(&self.pool)
                    .await?;
            if status != "pending" {
                break accepted.elapsed();
            }
        };
        let mut follower = JobFollower::new(&self.pool, id.parse()?).await?;
        follower.until_finished().await?;
        Ok(picked_up)
    }

    /// POSTs a BTC job over `start..=end` to the `serve` at `base`: its id, once answered
    /// 202.
    async fn post_job(
        &self,
        base: &str,
        start: NaiveDate,
        end: NaiveDate,
        force: bool,
    ) -> Result<Uuid> {
        let body = serde_json::json!({"start_date": start, "end_date": end, "force": force});
        let response = self
            .http
            .post(format!("{base}/api/v1/ingestion-jobs"))
            .json_body(&body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status != 202 {
            bail!(
                "submission answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let job: serde_json::Value = serde_json::from_slice(&bytes)?;
        Ok(job["id"].as_str().context("an id")?.parse()?)
    }

    /// Submits straight to the queue, as the CLI does (no API runs in row 9).
    async fn submit_direct(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        force: bool,
    ) -> Result<JobRecord> {
        let range = price_history::domain::DateRange::for_coin(
            &price_history::domain::Coin::bitcoin(),
            start,
            end,
            Utc::now().date_naive(),
        )?;
        let job = price_history::store::ingestion_jobs::NewJob {
            id: Uuid::now_v7(),
            symbol: Symbol::BTC,
            trigger: price_history::domain::Trigger::Api,
            range,
            force,
        };
        Ok(queue::submit(&self.pool, job, queue::Turn::InOrder).await?)
    }

    async fn wait_ready(&self, base: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(format!("{base}/readyz")).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("serve did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// When the fake received the first and the last of its calls after the `skip` first.
    fn first_and_last_call(&self, skip: usize) -> Result<(Instant, Instant)> {
        let calls: Vec<_> = self.fake.calls().into_iter().skip(skip).collect();
        let first = calls.first().context("calls were made")?.at;
        let last = calls.last().context("calls were made")?.at;
        Ok((first, last))
    }
}

trait JsonBody {
    fn json_body(self, body: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

fn spawn(
    database_url: &str,
    coingecko_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_price-history"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("COINGECKO_BASE_URL", coingecko_url)
        .env("COINGECKO_RETRY_BASE_DELAY_MS", "10")
        .env("COINBASE_RETRY_BASE_DELAY_MS", "10")
        // The second source only in the rows that measure it (with a fake Coinbase),
        // never the real Coinbase Exchange.
        .env("FALLBACK_SOURCE", "off")
        .env("RUST_LOG", "warn")
        .env_remove("API_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("the price-history binary starts")
}

async fn terminate(child: &mut Child) -> Result<()> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    tokio::time::timeout(Duration::from_secs(40), child.wait()).await??;
    Ok(())
}

/// wrk's figures for one URL.
struct Load {
    requests_per_sec: f64,
    p99: String,
}

async fn wrk(url: &str, seconds: u64) -> Result<Load> {
    let output = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .await
        .context("wrk runs (apt-get install wrk; scripts/bench.sh installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk printed no rate:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "?".into());
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers from {url}:\n{text}");
    }
    Ok(Load {
        requests_per_sec,
        p99,
    })
}

fn status_field(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmRSS:")
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmHWM:")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `DROP DATABASE ... WITH (FORCE)`, whatever is connected; a failure is left to `cleanup`.
async fn drop_database(admin: &mut PgConnection, name: &str) {
    let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(admin)
        .await;
}

/// How the coins a piece registers by SQL are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Following {
    /// Registered only: the schedule leaves them alone.
    Not,
    /// Tracked from their first day.
    Days,
    /// Tracked from their first day, their hours kept too.
    DaysAndHours,
}

/// Registers `count` coins in one statement for the piece `piece`: symbols `P000001`,
/// `P000002`, ... (`P` the piece's initial) with CoinGecko ids `{piece}-coin-1`, ..., each
/// with `first_day` as its first day and, when followed, as its `track_since`.
async fn register_coins(
    pool: &PgPool,
    piece: &str,
    count: i32,
    first_day: NaiveDate,
    following: Following,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since, hourly) \
         SELECT upper(left($3, 1)) || lpad(k::text, 6, '0'), $3 || '-coin-' || k, $2, $4, \
                CASE WHEN $4 THEN $2 END, $5 \
         FROM generate_series(1, $1) AS k",
    )
    .bind(count)
    .bind(first_day)
    .bind(piece)
    .bind(following != Following::Not)
    .bind(following == Following::DaysAndHours)
    .execute(pool)
    .await?;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The `days` days up to yesterday (UTC), as `(first, yesterday)`: a job's range that
/// ends on the last complete day.
fn days_to_yesterday(days: u64) -> (NaiveDate, NaiveDate) {
    let yesterday = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(1))
        .expect("yesterday is a date");
    let first = yesterday
        .checked_sub_days(Days::new(days - 1))
        .expect("a few thousand days ago is a date");
    (first, yesterday)
}

fn with_database(admin_url: &str, database: &str) -> Result<String> {
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(database);
    Ok(url.to_string())
}

/// The `name ... time: [...]` lines of a criterion run saved by scripts/bench.sh.
fn criterion_figures() -> Option<String> {
    let path = std::env::var_os("PH_CRITERION_OUTPUT")?;
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).ok()?;
    let all: Vec<&str> = text.lines().collect();
    let lines: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            let next_is_time = all
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("time:"));
            l.contains("time:")
                || next_is_time
                || l.starts_with("Testing ")
                || l.trim_start().starts_with("Success")
        })
        .map(|(_, l)| *l)
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn markdown(sizes: &Sizes, report: &Report) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let postgres = std::process::Command::new("psql")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "{} run of `scripts/bench.sh` (the real binary, built with the bench profile, against the local PostgreSQL \
         and a loopback fake CoinGecko), {} UTC, commit `{commit}`{}.\n",
        if sizes.smoke {
            "A smoke (tiny sizes)"
        } else {
            "A full"
        },
        Utc::now().format("%Y-%m-%d %H:%M"),
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Machine: {cpu}, {cores} cores, {memory} of memory; {postgres}.\n"
    );
    let _ = writeln!(
        out,
        "| row | figure | target | |\n| --- | --- | --- | --- |"
    );
    for row in &report.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.what,
            row.figure,
            row.target,
            verdict(row.met)
        );
    }
    if let Some(criterion) = criterion_figures() {
        let _ = writeln!(
            out,
            "\nIn-process parts (criterion, `cargo bench --bench pipeline`):\n\n```\n{criterion}\n```"
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "\n{note}");
    }
    out
}

/// The scheduler the scale, year and hours benchmarks tick by hand: `schedule`, the
/// system clock, a plan that reaches back without limit (learned from the fake CoinGecko
/// at `fake_base_url`: 600 calls a minute, no retry), no monthly credits.
fn bench_scheduler(
    pool: &PgPool,
    fake_base_url: String,
    schedule: &str,
    name: &str,
) -> Result<price_history::schedule::Scheduler> {
    let reach = price_history::ingest::Reach::new(
        price_history::domain::PlanReach::UNLIMITED,
        &price_history::coingecko::CoinGeckoSettings {
            base_url: fake_base_url,
            api_key: None,
            calls_per_minute: std::num::NonZeroU32::new(600).context("non-zero")?,
            max_retries: 0,
            retry_base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        },
    );
    Ok(price_history::schedule::Scheduler {
        pool: pool.clone(),
        schedule: schedule.parse()?,
        clock: price_history::schedule::Clock::SYSTEM,
        reach,
        name: name.to_owned(),
        credits: None,
    })
}

/// `scheduler` acts on `tick`: what it did, and how long that took.
async fn timed_tick(
    scheduler: &price_history::schedule::Scheduler,
    tick: chrono::DateTime<Utc>,
    running: &price_history::shutdown::Shutdown,
) -> Result<(price_history::store::sync_schedule::TickRecord, Duration)> {
    let began = Instant::now();
    let acted = scheduler
        .act_on(tick, false, running)
        .await?
        .done()
        .context("the tick is this scheduler's")?;
    Ok((acted, began.elapsed()))
}
