//! The shared call budget (issue 11): three coins on three worker replicas against one
//! budget, the same coins on one replica, and the limiter's own cost per slot. Runs in a
//! database of its own, created and dropped here.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions};
use price_history::domain::{Coin, CoinGeckoId, DateRange, JobStatus, Symbol, Trigger};
use price_history::queue;
use price_history::store::{coins, ingestion_jobs::JobFollower, ingestion_jobs::NewJob};
use price_history::upstream::{CallBudget, CallLimiter};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Bench, Report, Sizes, days_to_yesterday, ms, spawn, terminate, with_database};

/// The coins fetched side by side, with their first days on the fake.
const COINS: [(&str, &str, (i32, u32, u32)); 3] = [
    ("BTC", "bitcoin", (2013, 4, 28)),
    ("ETH", "ethereum", (2015, 8, 7)),
    ("DOGE", "dogecoin", (2013, 12, 15)),
];

struct BudgetSizes {
    days: u64,
    /// `COINGECKO_CHUNK_DAYS` of the workers.
    chunk_days: u64,
    calls_per_minute: u32,
    /// The fake's answer time: CoinGecko takes a few hundred milliseconds for a 90-day
    /// range, more than one slot at 120 calls/min, which is what replicas can hide.
    delay: Duration,
    limiter_samples: usize,
}

impl BudgetSizes {
    fn of(sizes: &Sizes) -> Self {
        // In full: 1461 days (the most one job takes) in windows of 36 days: 3 x 41 = 123
        // calls, just over a minute's budget, so that the busiest 60 s of the run is a
        // full minute at the budget.
        BudgetSizes {
            days: sizes.pick(1461, 180),
            chunk_days: sizes.pick(36, 90),
            calls_per_minute: sizes.pick(120, 1200),
            delay: Duration::from_millis(sizes.pick(600, 20)),
            limiter_samples: sizes.pick(2000, 200),
        }
    }
}

/// The rows of this file; called once from `Bench::all`.
pub(super) async fn rows(bench: &Bench, sizes: &Sizes, report: &mut Report) -> Result<()> {
    let name = format!("{}_budget", bench.database);
    let url = with_database(&bench.admin_url, &name)?;
    let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
    let sizes = BudgetSizes::of(sizes);
    // A fake of its own, answering 429 beyond the budget, as CoinGecko would.
    let fake = FakeCoinGecko::start_with(FakeOptions {
        calls_per_minute_limit: NonZeroU32::new(sizes.calls_per_minute),
        delay: sizes.delay,
        ..FakeOptions::default()
    })
    .await?;
    let result = measure(&fake, &url, &pool, &sizes, report).await;
    fake.shutdown().await;
    pool.close().await;
    bench.drop_database(&name).await;
    result
}

async fn measure(
    fake: &FakeCoinGecko,
    url: &str,
    pool: &PgPool,
    sizes: &BudgetSizes,
    report: &mut Report,
) -> Result<()> {
    let mut coins_registered = Vec::new();
    for (symbol, id, (y, m, d)) in COINS {
        let coin = Coin {
            symbol: Symbol::parse(symbol)?,
            coingecko_id: CoinGeckoId::parse(id)?,
            first_day: NaiveDate::from_ymd_opt(y, m, d),
            tracked: false,
            track_since: None,
        };
        coins::insert(pool, &coin).await?;
        coins_registered.push(coin);
    }
    let cpm = sizes.calls_per_minute;
    let slot = 60.0 / f64::from(cpm);

    let mut runs = Vec::new();
    for replicas in [3, 1] {
        let run = fetch_all(fake, url, pool, sizes, &coins_registered, replicas).await?;
        runs.push((replicas, run));
        // Let the last slot handed out pass, so that the next run starts on an idle budget.
        tokio::time::sleep(Duration::from_secs_f64(2.0 * slot)).await;
    }
    let delay = ms(sizes.delay);
    for (replicas, run) in &runs {
        let floor = run.calls.saturating_sub(1) as f64 * slot;
        let ratio = run.wall.as_secs_f64() / floor.max(f64::EPSILON);
        let expected = 3 * sizes.days.div_ceil(sizes.chunk_days) as usize;
        let ok = run.calls == expected && run.completed;
        if *replicas == 3 {
            report.row(
                format!(
                    "Shared budget: 3 coins x {} days ({}-day windows) on 3 worker replicas at {cpm} calls/min (fake answers in {delay:.0} ms): wall / floor",
                    sizes.days, sizes.chunk_days
                ),
                format!(
                    "{:.2} s for {} calls; floor (calls - 1) x 60 / {cpm} = {floor:.2} s; ratio {ratio:.3}",
                    run.wall.as_secs_f64(),
                    run.calls
                ),
                "ratio <= 1.05",
                Some(ok && ratio <= 1.05),
            );
            report.row(
                "Shared budget: 3 replicas, most calls the fake saw in any 60 s (and 429s)",
                format!("{} ({} answered 429)", run.most_in_a_minute, run.refused),
                format!("<= {cpm}, no 429"),
                Some(run.most_in_a_minute <= cpm as usize && run.refused == 0),
            );
        } else {
            report.row(
                "Shared budget: the same 3 coins on 1 replica, for comparison",
                format!(
                    "{:.2} s for {} calls; ratio {ratio:.3}; most in 60 s {}",
                    run.wall.as_secs_f64(),
                    run.calls,
                    run.most_in_a_minute
                ),
                "-",
                None,
            );
        }
    }

    // The limiter's own cost: one slot from PostgreSQL when the budget has room (a budget
    // of its own, so that no slot waits), one round trip on loopback.
    let limiter = CallLimiter::new(
        price_history::domain::PriceSource::CoinGecko,
        CallBudget::Shared(pool.clone()),
        u32::MAX,
        Some("benchmark: the limiter's own cost"),
    );
    let mut costs = Vec::with_capacity(sizes.limiter_samples);
    for _ in 0..sizes.limiter_samples {
        let began = Instant::now();
        limiter.acquire().await?;
        costs.push(began.elapsed());
    }
    costs.sort();
    let p50 = costs[costs.len() / 2];
    let p99 = costs[costs.len() * 99 / 100];
    report.row(
        "Shared budget: the limiter's own cost per slot (one statement on the GCRA row), uncontended",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms over {} slots",
            ms(p50),
            ms(p99),
            costs.len()
        ),
        "-",
        None,
    );
    report.notes.push(
        "Shared budget rows: every attempt of every process takes a slot from one PostgreSQL row \
         (GCRA: `tat = greatest(tat, clock_timestamp()) + 60 s / COINGECKO_CALLS_PER_MINUTE x 1.005`), \
         then sleeps until it; the floor is (calls - 1) x 60 / budget. With one replica, each call's \
         answer time is added to its slot's wait when the answer is slower than a slot; several \
         replicas hide it."
            .to_owned(),
    );
    Ok(())
}

struct Run {
    wall: Duration,
    calls: usize,
    refused: usize,
    most_in_a_minute: usize,
    completed: bool,
}

/// Starts `replicas` workers, submits one job per coin (forced, so every day is fetched
/// again on the second run), waits for all three, stops the workers.
async fn fetch_all(
    fake: &FakeCoinGecko,
    url: &str,
    pool: &PgPool,
    sizes: &BudgetSizes,
    coins: &[Coin],
    replicas: usize,
) -> Result<Run> {
    let cpm = sizes.calls_per_minute.to_string();
    let chunk_days = sizes.chunk_days.to_string();
    let env = [
        ("COINGECKO_CALLS_PER_MINUTE", cpm.as_str()),
        ("COINGECKO_CHUNK_DAYS", chunk_days.as_str()),
    ];
    let mut workers = Vec::new();
    for _ in 0..replicas {
        workers.push(spawn(url, &fake.base_url(), &["worker"], &env)?);
    }
    // Wait until every worker has registered with the queue.
    let (spawned,): (chrono::DateTime<Utc>,) =
        sqlx::query_as("SELECT now()").fetch_one(pool).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ready,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM apalis.workers WHERE last_seen >= $1")
                .bind(spawned)
                .fetch_one(pool)
                .await?;
        if ready >= replicas as i64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers did not start within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (start, end) = days_to_yesterday(sizes.days);
    let calls_before = fake.call_count();
    let began = Instant::now();
    let mut ids = Vec::new();
    for coin in coins {
        let job = NewJob {
            id: Uuid::now_v7(),
            symbol: coin.symbol,
            trigger: Trigger::Api,
            range: DateRange::for_coin(coin, start, end, Utc::now().date_naive())?,
            force: true,
        };
        ids.push(queue::submit(pool, job, queue::Turn::InOrder).await?.id);
    }
    let mut completed = true;
    for id in ids {
        let mut follower = JobFollower::new(pool, id).await?;
        let job = tokio::time::timeout(Duration::from_secs(600), follower.until_finished())
            .await
            .context("the job ended within 10 minutes")??
            .context("the job exists")?;
        completed &= job.status == JobStatus::Completed;
    }
    let wall = began.elapsed();
    for mut worker in workers {
        terminate(&mut worker).await?;
    }
    let calls: Vec<_> = fake.calls().into_iter().skip(calls_before).collect();
    let mut at: Vec<Instant> = calls.iter().map(|call| call.at).collect();
    at.sort();
    Ok(Run {
        wall,
        calls: calls.len(),
        refused: calls.iter().filter(|call| call.status == 429).count(),
        most_in_a_minute: fake_upstream::most_within(&at, Duration::from_secs(60)),
        completed,
    })
}
