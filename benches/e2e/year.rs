//! Row 16 (issue 28): a year of operation. For 1,000 and 10,000 tracked coins, a year of
//! the daily schedule's finished work is loaded by SQL (a completed job a coin a day, with
//! its row on the queue, and a tick a day: 365 thousand and 3.65 million jobs), then, with
//! retention off and again after the first pruning: a tick with nothing to do, a tick that
//! queues a job for every coin, job submission, `GET /api/v1/ingestion-jobs`, `/metrics`,
//! and the tables' sizes; and how long the first pruning takes with the API's p99 while it
//! runs. `PH_BENCH_ONLY=year` runs it alone; `PH_BENCH_YEAR_COINS=1000` one size only.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Days, NaiveDate, TimeDelta, Timelike, Utc};
use price_history::queue;
use price_history::schedule::Scheduler;
use price_history::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Bench, Following, Report, Sizes, bench_scheduler, median, ms, register_coins, terminate,
    timed_tick,
};

/// Each latency is the median of this many.
const SAMPLES: usize = 9;

/// Each tick that queues a job for every coin is the median of this many (each queues a
/// job per coin: 10,000 at the larger size).
const QUEUING_SAMPLES: usize = 5;

/// Jobs a load statement inserts at once (with as many queue rows).
const LOAD_CHUNK: usize = 50_000;

/// The retention of the run: finished work older than this many days is pruned.
const RETENTION_DAYS: u32 = 30;

/// What one measurement round found.
struct Round {
    idle_tick: Duration,
    queuing_tick: Duration,
    hourly_tick: Duration,
    submit: Duration,
    list: Duration,
    /// The list of one coin that has no job: every job was read before it had an index.
    coin_list: Duration,
    metrics: Duration,
    sizes: String,
}

impl Bench {
    pub(super) async fn year(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let counts: Vec<i32> = match std::env::var("PH_BENCH_YEAR_COINS") {
            Ok(only) => vec![only.parse().context("PH_BENCH_YEAR_COINS is a number")?],
            Err(_) if sizes.smoke => vec![20, 50],
            Err(_) => vec![1_000, 10_000],
        };
        for coins in counts {
            self.in_own_database(&format!("year{coins}"), async |url| {
                self.year_run(url, sizes, coins, report).await
            })
            .await?;
        }
        Ok(())
    }

    async fn year_run(
        &self,
        url: &str,
        sizes: &Sizes,
        coins: i32,
        report: &mut Report,
    ) -> Result<()> {
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
        let began = Instant::now();
        let jobs = load_a_year(&pool, coins).await?;
        let loaded = began.elapsed();
        let label = format!("{coins} coins, a year ({jobs} finished jobs + queue rows)");
        report.notes.push(format!(
            "Row 16, {label}: loaded by SQL (triggers off for the load) and VACUUM ANALYZE in {:.1} s.",
            loaded.as_secs_f64()
        ));

        let before = self.round(url, sizes, &pool, coins).await?;
        let (pruning, p99_during, p99_quiet, pruned) =
            self.first_pruning(url, sizes, &pool).await?;
        sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
        let after = self.round(url, sizes, &pool, coins).await?;
        pool.close().await;

        let target = |d: Duration| Some(d < Duration::from_millis(100));
        // A tick queuing 10,000 jobs has no target: the issue asks what it costs.
        let queuing = |what: &'static str, took: Duration| {
            if coins >= 10_000 {
                (what, took, None, "say what it costs")
            } else {
                (what, took, target(took), "< 100 ms")
            }
        };
        for (when, round) in [("retention off", &before), ("after pruning", &after)] {
            let rows = [
                (
                    "a tick with nothing to do",
                    round.idle_tick,
                    target(round.idle_tick),
                    "< 100 ms",
                ),
                queuing(
                    "a tick that queues a job for every coin",
                    round.queuing_tick,
                ),
                queuing(
                    "a tick that queues an hourly job for every coin (every coin hourly, no hour stored)",
                    round.hourly_tick,
                ),
                (
                    "POST /api/v1/ingestion-jobs",
                    round.submit,
                    target(round.submit),
                    "< 100 ms",
                ),
                (
                    "GET /api/v1/ingestion-jobs",
                    round.list,
                    target(round.list),
                    "< 100 ms",
                ),
                (
                    "GET /api/v1/ingestion-jobs?symbol= of a coin without a job",
                    round.coin_list,
                    target(round.coin_list),
                    "< 100 ms",
                ),
                (
                    "GET /metrics",
                    round.metrics,
                    target(round.metrics),
                    "< 100 ms",
                ),
            ];
            for (what, figure, met, goal) in rows {
                let per_coin = if what.contains("every coin") {
                    format!(" ({:.3} ms a coin)", ms(figure) / f64::from(coins))
                } else {
                    String::new()
                };
                let of = if what.contains("every coin") {
                    format!("median of {QUEUING_SAMPLES} ticks:")
                } else {
                    "median".to_owned()
                };
                report.row(
                    format!("16. {label}, {when}: {what}"),
                    format!("{of} {:.1} ms{per_coin}", ms(figure)),
                    goal,
                    met,
                );
            }
            report.row(
                format!("16. {label}, {when}: table sizes"),
                round.sizes.clone(),
                "-",
                None,
            );
        }
        report.row(
            format!("16. {label}: the first pruning (JOB_RETENTION_DAYS={RETENTION_DAYS}, batches of {})", queue::RETENTION_BATCH),
            format!(
                "{:.1} s for {} jobs (with their queue rows) and {} ticks; API p99 {:.1} ms during it, {:.1} ms without",
                pruning.as_secs_f64(),
                pruned.jobs,
                pruned.ticks,
                ms(p99_during),
                ms(p99_quiet)
            ),
            "API p99 < 100 ms during it",
            Some(p99_during < Duration::from_millis(100)),
        );
        Ok(())
    }

    /// One round of figures on a warm `serve` with retention and the schedule off, and the
    /// schedule's ticks in this process.
    async fn round(&self, url: &str, sizes: &Sizes, pool: &PgPool, coins: i32) -> Result<Round> {
        let env = [("JOB_RETENTION_DAYS", "0"), ("SYNC_SCHEDULE", "off")];
        let (mut serve, base) =
            super::coins::serve(url, &self.fake.base_url(), sizes, &env).await?;
        let (jobs_url, metrics_url) = (
            format!("{base}/api/v1/ingestion-jobs"),
            format!("{base}/metrics"),
        );
        let result = async {
            let (list, _) = self.median_get(&jobs_url, SAMPLES, &["\"jobs\""]).await?;
            let none_of = format!("{jobs_url}?symbol=NOJOBS");
            let (coin_list, _) = self.median_get(&none_of, SAMPLES, &["\"jobs\""]).await?;
            let up = ["price_history_database_up 1"];
            let (metrics, _) = self.median_get(&metrics_url, SAMPLES, &up).await?;
            let submit = self.median_submit(&base).await?;
            Ok::<_, anyhow::Error>((list, coin_list, metrics, submit))
        }
        .await;
        terminate(&mut serve).await?;
        let (list, coin_list, metrics, submit) = result?;
        finish_active_jobs(pool).await?;
        let (idle_tick, queuing_tick, hourly_tick) =
            ticks(pool, &self.fake.base_url(), coins).await?;
        Ok(Round {
            idle_tick,
            queuing_tick,
            hourly_tick,
            submit,
            list,
            coin_list,
            metrics,
            sizes: table_sizes(pool).await?,
        })
    }

    /// Submissions of a one-day forced job, each for another coin (one active job a coin).
    async fn median_submit(&self, base: &str) -> Result<Duration> {
        let day = Utc::now().date_naive() - TimeDelta::days(1);
        let mut times = Vec::new();
        for k in 1..=SAMPLES + 1 {
            let body = serde_json::json!({
                "start_date": day, "end_date": day, "force": true, "symbol": symbol(k as i32)
            });
            let began = Instant::now();
            let response = self
                .http
                .post(format!("{base}/api/v1/ingestion-jobs"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            let took = began.elapsed();
            if response.status() != 202 {
                bail!(
                    "submission answered {}: {}",
                    response.status(),
                    response.text().await?
                );
            }
            if k > 1 {
                times.push(took);
            }
        }
        Ok(median(times))
    }

    /// The first pruning, in this process as a `serve` would run it, while a client reads
    /// the job list and a coin over and over: how long it takes, the p99 of those reads
    /// during it and, for comparison, over as many reads without it.
    async fn first_pruning(
        &self,
        url: &str,
        sizes: &Sizes,
        pool: &PgPool,
    ) -> Result<(Duration, Duration, Duration, queue::Pruned)> {
        let env = [("JOB_RETENTION_DAYS", "0"), ("SYNC_SCHEDULE", "off")];
        let (mut serve, base) =
            super::coins::serve(url, &self.fake.base_url(), sizes, &env).await?;
        let result = async {
            let (_stop, live) = Shutdown::new();
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let reads = {
                let (http, base, done) = (self.http.clone(), base.clone(), done.clone());
                tokio::spawn(async move { read_until(&http, &base, &done, usize::MAX).await })
            };
            let began = Instant::now();
            let pruned = queue::prune(pool, RETENTION_DAYS, queue::RETENTION_BATCH, &live).await?;
            let took = began.elapsed();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let during = reads.await??;
            let quiet_done = std::sync::atomic::AtomicBool::new(false);
            let quiet = read_until(
                &self.http,
                &base,
                &quiet_done,
                during.len().clamp(200, 5_000),
            )
            .await?;
            Ok::<_, anyhow::Error>((took, p99(during), p99(quiet), pruned))
        }
        .await;
        terminate(&mut serve).await?;
        result
    }
}

/// Reads the job list and a coin in turn until `done` (or `most` reads); their latencies.
async fn read_until(
    http: &reqwest::Client,
    base: &str,
    done: &std::sync::atomic::AtomicBool,
    most: usize,
) -> Result<Vec<Duration>> {
    let urls = [
        format!("{base}/api/v1/ingestion-jobs"),
        format!("{base}/api/v1/coins/{}", symbol(1)),
    ];
    let mut times = Vec::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) && times.len() < most {
        let url = &urls[times.len() % 2];
        let began = Instant::now();
        let status = http.get(url).send().await?.status();
        if status != 200 {
            bail!("{url} answered {status} during the pruning");
        }
        times.push(began.elapsed());
    }
    Ok(times)
}

fn p99(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times
        .get(times.len() * 99 / 100)
        .copied()
        .unwrap_or_default()
}

fn symbol(k: i32) -> String {
    format!("Y{k:06}")
}

/// Ticks with nothing to do, then (yesterday deleted for every coin) ticks that queue a
/// job for every coin, then (every coin made hourly, yesterday back) ticks that queue an
/// hourly job for every coin; all in this process, as `serve`'s scheduler would act, and
/// each figure the median of its ticks. The jobs a queuing tick queued are marked finished
/// before the next (as their workers would have), the coins made daily again at the end,
/// and yesterday stays missing for the next round.
async fn ticks(pool: &PgPool, fake: &str, coins: i32) -> Result<(Duration, Duration, Duration)> {
    let yesterday = Utc::now().date_naive() - TimeDelta::days(1);
    restore_day(pool, yesterday).await?;
    let scheduler = bench_scheduler(pool, fake.to_owned(), "0 40 0 * * *", "bench-year")?;
    let (_stop, running) = Shutdown::new();
    let mut next_tick = {
        let mut at = sync_tick_after(pool).await?;
        move || {
            at += TimeDelta::seconds(1);
            at
        }
    };
    let mut idle = Vec::new();
    for _ in 0..SAMPLES {
        let (acted, took) = timed_tick(&scheduler, next_tick(), &running).await?;
        idle.push(took);
        if acted.jobs_queued != 0 {
            bail!("an idle tick queued {} jobs", acted.jobs_queued);
        }
    }
    sqlx::query("DELETE FROM daily_prices WHERE date = $1")
        .bind(yesterday)
        .execute(pool)
        .await?;
    let coins = u64::try_from(coins)?;
    let queuing = queuing_ticks(&scheduler, pool, &mut next_tick, &running, coins).await?;

    restore_day(pool, yesterday).await?;
    let hourly_coins = sqlx::query("UPDATE coins SET hourly = TRUE WHERE tracked")
        .execute(pool)
        .await?
        .rows_affected();
    let hourly = queuing_ticks(&scheduler, pool, &mut next_tick, &running, hourly_coins).await;
    sqlx::query("UPDATE coins SET hourly = FALSE")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM daily_prices WHERE date = $1")
        .bind(yesterday)
        .execute(pool)
        .await?;
    Ok((median(idle), queuing, hourly?))
}

/// The median of [`QUEUING_SAMPLES`] ticks that each queue a job for each of `coins` coins,
/// the jobs marked finished after each (as their workers would have).
async fn queuing_ticks(
    scheduler: &Scheduler,
    pool: &PgPool,
    next_tick: &mut impl FnMut() -> DateTime<Utc>,
    running: &Shutdown,
    coins: u64,
) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..QUEUING_SAMPLES {
        let (acted, took) = timed_tick(scheduler, next_tick(), running).await?;
        if u64::try_from(acted.jobs_queued)? != coins {
            bail!(
                "the tick queued {} jobs for {coins} coins",
                acted.jobs_queued
            );
        }
        times.push(took);
        finish_active_jobs(pool).await?;
    }
    Ok(median(times))
}

/// A tick later than any acted on.
async fn sync_tick_after(pool: &PgPool) -> Result<DateTime<Utc>> {
    let last = price_history::store::sync_schedule::last_tick(pool).await?;
    let now = Utc::now().with_nanosecond(0).context("a time")?;
    Ok(last.map_or(now, |last| last.max(now)))
}

/// Every coin's candle of `day` stored (again).
async fn restore_day(pool: &PgPool, day: NaiveDate) -> Result<()> {
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
           SELECT symbol, $1::date, 100, 110, 90, 105, 1000, $1::date + interval '23 hours'
           FROM coins WHERE tracked ON CONFLICT DO NOTHING"#,
    )
    .bind(day)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends every pending or running job, as its worker would have (the round's submissions,
/// the queuing tick's jobs), so that the next measurement starts from finished work only.
async fn finish_active_jobs(pool: &PgPool) -> Result<()> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE ingestion_jobs SET status = 'completed', completed_at = now(), updated_at = now() \
         WHERE status IN ('pending', 'running') RETURNING id",
    )
    .fetch_all(pool)
    .await?;
    let task_ids: Vec<String> = ids
        .iter()
        .map(|id| queue::task_id(*id).to_string())
        .collect();
    sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = now(), lock_by = NULL WHERE id = ANY($1)")
        .bind(&task_ids)
        .execute(pool)
        .await?;
    Ok(())
}

/// The four tables retention keeps small: live rows and total size on disk (indexes and
/// TOAST included; a pruned table keeps its size until VACUUM FULL, and reuses the space).
async fn table_sizes(pool: &PgPool) -> Result<String> {
    let mut parts = Vec::new();
    for table in [
        "ingestion_jobs",
        "apalis.jobs",
        "sync_ticks",
        "coin_imports",
    ] {
        // The table names are the constants above.
        let (rows, bytes): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM {table}), pg_total_relation_size('{table}')"
        )))
        .fetch_one(pool)
        .await?;
        parts.push(format!("{table} {rows} rows, {:.1} MB", bytes as f64 / 1e6));
    }
    Ok(parts.join("; "))
}

/// `coins` tracked coins with two stored days each, and a year of the daily schedule's
/// finished work: for each of the past 365 days, a completed job per coin (its row on the
/// queue `Done`) and the day's tick. Returns the jobs loaded.
async fn load_a_year(pool: &PgPool, coins: i32) -> Result<usize> {
    let today = Utc::now().date_naive();
    let since = today.checked_sub_days(Days::new(2)).context("a date")?;
    register_coins(pool, "year", coins, since, Following::Days).await?;
    for day in [since, since + TimeDelta::days(1)] {
        restore_day(pool, day).await?;
    }
    let mut conn = pool.acquire().await?;
    // The load only: no notification per row, no trigger (the queue's wake-ups).
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    let mut jobs = 0;
    let mut chunk = Chunk::default();
    for days_ago in (1..=365u64).rev() {
        let day = today
            .checked_sub_days(Days::new(days_ago))
            .context("a date")?;
        let finished = day.and_hms_opt(0, 41, 0).context("a time")?.and_utc();
        for k in 1..=coins {
            chunk.push(k, day, finished + TimeDelta::milliseconds(i64::from(k)));
            if chunk.ids.len() == LOAD_CHUNK {
                jobs += chunk.insert(&mut conn).await?;
            }
        }
        sqlx::query(
            "INSERT INTO sync_ticks (tick, acted_by, acted_at, catch_up, coins_tracked, coins_behind, jobs_queued, coins_busy) \
             VALUES ($1, 'bench-year', $1, false, $2, $2, $2, 0)",
        )
        .bind(day.and_hms_opt(0, 40, 0).context("a time")?.and_utc())
        .bind(coins)
        .execute(&mut *conn)
        .await?;
    }
    jobs += chunk.insert(&mut conn).await?;
    sqlx::query("SET session_replication_role = DEFAULT")
        .execute(&mut *conn)
        .await?;
    // The status counts' triggers were off for the load: count once, as the migration
    // does for the jobs of an earlier release.
    sqlx::raw_sql(
        "DELETE FROM job_status_deltas; \
         INSERT INTO job_status_deltas (status, delta) \
         SELECT status, count(*) FROM ingestion_jobs GROUP BY status",
    )
    .execute(&mut *conn)
    .await?;
    drop(conn);
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
    Ok(jobs)
}

/// Jobs waiting to be inserted, with what their rows need.
#[derive(Default)]
struct Chunk {
    ids: Vec<Uuid>,
    task_ids: Vec<String>,
    symbols: Vec<String>,
    days: Vec<NaiveDate>,
    finished: Vec<DateTime<Utc>>,
}

impl Chunk {
    fn push(&mut self, k: i32, day: NaiveDate, finished: DateTime<Utc>) {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            finished.timestamp() as u64,
            finished.timestamp_subsec_nanos(),
        );
        let id = Uuid::new_v7(ts);
        self.task_ids.push(queue::task_id(id).to_string());
        self.ids.push(id);
        self.symbols.push(symbol(k));
        self.days.push(day);
        self.finished.push(finished);
    }

    /// Inserts the chunk's jobs and their queue rows; empties it.
    async fn insert(&mut self, conn: &mut sqlx::PgConnection) -> Result<usize> {
        let n = self.ids.len();
        if n == 0 {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date, trigger, started_at, \
                 completed_at, records_fetched, chunks_done, chunks_total, attempts, created_at, updated_at) \
             SELECT id, 'completed', symbol, day, day, 'schedule', at - interval '1 second', at, 1, 1, 1, 1, \
                    at - interval '1 second', at \
             FROM UNNEST($1::uuid[], $2::text[], $3::date[], $4::timestamptz[]) AS t(id, symbol, day, at)",
        )
        .bind(&self.ids)
        .bind(&self.symbols)
        .bind(&self.days)
        .bind(&self.finished)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at) \
             SELECT convert_to('{\"job_id\":\"' || job_id || '\"}', 'UTF8'), id, $3, 'Done', 1, 3, at, at \
             FROM UNNEST($1::text[], $2::uuid[], $4::timestamptz[]) AS t(id, job_id, at)",
        )
        .bind(&self.task_ids)
        .bind(&self.ids)
        .bind(queue::QUEUE)
        .bind(&self.finished)
        .execute(&mut *conn)
        .await?;
        *self = Chunk::default();
        Ok(n)
    }
}
