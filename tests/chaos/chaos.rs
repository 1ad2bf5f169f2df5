//! Chaos: one API and three workers (the real binary) keep three tracked coins of 1461
//! days up to date under a budget the fake CoinGecko enforces, with the schedule ticking
//! every few seconds, while 50 random events hit them: `kill -9` or `SIGTERM` of a worker
//! (restarted at once) and two restarts of the database of 10 s or more.
//!
//! Takes two to three minutes and most of the machine, so it is a test binary of its own
//! (`tests/chaos.rs`): `cargo test` runs test binaries one after another, so it never
//! shares the machine with the other integration tests, and `cargo test --test chaos`
//! runs it alone. `PH_CHAOS_SEED=<n>` replays a run's events.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions};
use price_history::domain::Symbol;
use price_history::store::{self, daily_prices};
use serde_json::json;
use sqlx::PgPool;

use crate::cluster::{PrivateCluster, readyz, wait_until};
use crate::support::{
    Service, assert_days_are_the_fakes, days_before_today, free_port, spawn_service,
};

/// Calls a minute, the fake's limit and every process's setting: 51 windows take at least
/// 68 s, so the events land while the coins are being fetched.
const BUDGET: u32 = 45;

/// The coins, tracked from 1461 days before today: 17 windows of 90 days each.
const COINS: [(&str, &str); 3] = [("BTC", "bitcoin"), ("ETH", "ethereum"), ("SOL", "solana")];

const EVENTS: usize = 50;

/// A job as the end checks read it: symbol, status, created, completed, attempts.
type JobSpan = (String, String, DateTime<Utc>, Option<DateTime<Utc>>, i32);

/// Every worker start counts against `JOB_MAX_ATTEMPTS` + 10 (a hand-off or a takeover
/// is a start): with 48 interruptions shared by three jobs, the default 3 would fail a
/// job that did nothing wrong. The setting is the operator's answer to a flaky fleet.
const MAX_ATTEMPTS: &str = "60";

/// A small deterministic generator (xorshift64*), so that a seed replays a run.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What happened to the processes, for the report.
#[derive(Default, Debug)]
struct Tally {
    kills: usize,
    terms: usize,
    database_restarts: usize,
    /// The longest a worker took to exit after SIGTERM.
    slowest_exit: Duration,
}

struct Fleet {
    url: String,
    fake_url: String,
    workers: Vec<Service>,
    /// Every worker that ran, ended, with what it printed: for the report of a failure.
    ended: Vec<String>,
}

impl Fleet {
    fn spawn_worker(&self) -> Service {
        spawn_service(
            &self.url,
            &self.fake_url,
            &["worker"],
            &[
                ("COINGECKO_CALLS_PER_MINUTE", &BUDGET.to_string()),
                ("JOB_MAX_ATTEMPTS", MAX_ATTEMPTS),
                ("SYNC_SCHEDULE", "*/3 * * * * *"),
                ("RUST_LOG", "info,sqlx=warn"),
            ],
        )
    }

    fn output(&self) -> String {
        let mut all = self.ended.join("\n---\n");
        for worker in &self.workers {
            all.push_str("\n---\n");
            all.push_str(&worker.output());
        }
        all
    }
}

/// The number of jobs of one coin pending or running at once, checked every 200 ms.
async fn most_active_jobs_of_one_coin(
    pool: &PgPool,
    until: tokio::sync::watch::Receiver<bool>,
) -> i64 {
    let mut most = 0;
    while !*until.borrow() {
        let active: Option<i64> = sqlx::query_scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM ingestion_jobs \
             WHERE status IN ('pending', 'running') GROUP BY symbol) per_coin",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(None);
        most = most.max(active.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    most
}

/// The most calls the fake saw in any 60 s.
fn most_in_a_minute(mut at: Vec<Instant>) -> usize {
    at.sort();
    let (mut most, mut first) = (0, 0);
    for (last, t) in at.iter().enumerate() {
        while t.duration_since(at[first]) >= Duration::from_secs(60) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[tokio::test]
async fn chaos_of_fifty_kills_terms_and_database_restarts_leaves_every_coin_complete_and_true() {
    let seed = std::env::var("PH_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| u64::from(Utc::now().timestamp_subsec_nanos()) | 1);
    println!("chaos seed {seed} (PH_CHAOS_SEED={seed} replays the events)");
    let mut dice = Dice(seed);
    let began = Instant::now();

    let cluster = PrivateCluster::create();
    cluster.start();
    let url = cluster.url("price_history");
    let fake = FakeCoinGecko::start_with(FakeOptions {
        calls_per_minute_limit: NonZeroU32::new(BUDGET),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    // An answer takes a while, so that a kill often lands while a window is in flight.
    fake.set_delay(Duration::from_millis(400));
    let pool = cluster.migrated_pool(4).await;

    let bind = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{bind}");
    let api = spawn_service(
        &url,
        &fake.base_url(),
        &["api"],
        &[
            ("BIND_ADDR", &bind),
            ("COINGECKO_CALLS_PER_MINUTE", &BUDGET.to_string()),
            ("JOB_MAX_ATTEMPTS", MAX_ATTEMPTS),
            ("RUST_LOG", "warn"),
        ],
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    wait_until("the API is ready", Duration::from_secs(30), async || {
        readyz(&client, &base).await == Some(200)
    })
    .await;
    let mut fleet = Fleet {
        url: url.clone(),
        fake_url: fake.base_url(),
        workers: Vec::new(),
        ended: Vec::new(),
    };
    for _ in 0..3 {
        let worker = fleet.spawn_worker();
        fleet.workers.push(worker);
    }
    let track_since = days_before_today(1461);
    let (start, end) = (days_before_today(1461), days_before_today(1));
    for (symbol, id) in COINS {
        let answer = client
            .put(format!("{base}/api/v1/coins/{symbol}"))
            .header("content-type", "application/json")
            .body(
                json!({"coingecko_id": id, "tracked": true, "track_since": track_since})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "{symbol}: {}",
            answer.status()
        );
    }

    let (stop_sampling, until) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn({
        let pool = store::connect(&url.parse().expect("a valid URL"), 2)
            .await
            .unwrap();
        async move { most_active_jobs_of_one_coin(&pool, until).await }
    });

    // The two database restarts fall among the first two thirds of the events.
    let restarts = [dice.below(15) as usize + 3, dice.below(15) as usize + 20];
    let mut tally = Tally::default();
    for event in 0..EVENTS {
        tokio::time::sleep(Duration::from_millis(300 + dice.below(1700))).await;
        if restarts.contains(&event) {
            cluster.stop();
            tokio::time::sleep(Duration::from_secs(10) + Duration::from_millis(dice.below(3000)))
                .await;
            cluster.start();
            tally.database_restarts += 1;
            continue;
        }
        let which = dice.below(3) as usize;
        let mut worker = fleet.workers.swap_remove(which);
        if dice.below(2) == 0 {
            worker.kill().await;
            tally.kills += 1;
        } else {
            let signalled = Instant::now();
            worker.signal("TERM");
            let code = worker.exit_code(Duration::from_secs(30)).await;
            let took = signalled.elapsed();
            tally.slowest_exit = tally.slowest_exit.max(took);
            if took > Duration::from_secs(10) {
                let output = worker.output();
                let tail: Vec<&str> = output.lines().rev().take(30).collect();
                println!(
                    "a worker took {took:.1?} to exit after SIGTERM; its last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            assert_eq!(
                code,
                Some(0),
                "SIGTERM ends a worker with 0:\n{}",
                worker.output()
            );
            tally.terms += 1;
        }
        fleet.ended.push(worker.output());
        let restarted = fleet.spawn_worker();
        fleet.workers.push(restarted);
    }
    let chaos_ended = began.elapsed();

    // Done: every coin's days stored and no job active (the schedule keeps ticking).
    let done = tokio::time::timeout(Duration::from_secs(150), async {
        loop {
            let stored: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM daily_prices WHERE date BETWEEN $1 AND $2",
            )
            .bind(start)
            .bind(end)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ingestion_jobs WHERE status IN ('pending', 'running')",
            )
            .fetch_one(&pool)
            .await
            .unwrap_or(1);
            if stored == 3 * 1461 && active == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let _ = stop_sampling.send(true);
    let most_active = sampler.await.unwrap();
    let took = began.elapsed();
    assert!(
        done.is_ok(),
        "every coin completes within 150 s of the last event ({tally:?}, seed {seed}):\n{}",
        fleet.output()
    );

    // No job failed, and jobs of one coin never overlapped in time.
    let jobs: Vec<JobSpan> = sqlx::query_as(
        "SELECT symbol, status, created_at, completed_at, attempts FROM ingestion_jobs ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (symbol, status, _, _, _) in &jobs {
        assert!(
            status == "completed",
            "no job failed or ended with gaps: a {symbol} job is {status} (seed {seed}):\n{}",
            fleet.output()
        );
    }
    let mut last_end: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for (symbol, _, created, completed, _) in &jobs {
        if let Some(previous) = last_end.get(symbol.as_str()) {
            assert!(
                previous <= created,
                "two {symbol} jobs were active at once (seed {seed})"
            );
        }
        last_end.insert(symbol, completed.expect("a completed job has its end"));
    }
    assert!(
        most_active <= 1,
        "at most one job of a coin is active at a time, seen {most_active}"
    );

    // Every day stored once, equal to what the fake serves.
    for (symbol, id) in COINS {
        let symbol = Symbol::parse(symbol).unwrap();
        let rows = daily_prices::list(&pool, symbol, start, end).await.unwrap();
        assert_eq!(rows.len(), 1461, "{symbol}: every day stored");
        let all: i64 = sqlx::query_scalar("SELECT count(*) FROM daily_prices WHERE symbol = $1")
            .bind(symbol.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(all, 1461, "{symbol}: no day outside the range, none twice");
        assert_days_are_the_fakes(&fake, id, symbol, &rows);
    }

    // The budget: the fake never refused a call, and no 60 s held more than it allows.
    let calls = fake.calls();
    let refused = calls.iter().filter(|call| call.status == 429).count();
    assert_eq!(refused, 0, "calls refused by the fake's limit");
    let busiest = most_in_a_minute(calls.iter().map(|call| call.at).collect());
    assert!(busiest <= BUDGET as usize, "{busiest} calls in one minute");

    let mut windows: HashMap<(String, i64, i64), usize> = HashMap::new();
    for call in calls.iter().filter(|call| call.status == 200) {
        *windows
            .entry((
                call.coin_id.clone(),
                call.from.timestamp(),
                call.to.timestamp(),
            ))
            .or_default() += 1;
    }
    let fetched_twice = windows.values().filter(|n| **n > 1).count();
    let attempts: i32 = jobs.iter().map(|job| job.4).sum();
    println!(
        "chaos: {} kill -9, {} SIGTERM (slowest exit {:.1?}), {} database restarts; events over after {chaos_ended:.1?}, \
         all complete after {took:.1?}; {} calls ({} windows, {fetched_twice} fetched twice), \
         busiest minute {busiest}/{BUDGET}; {} jobs, {attempts} attempts",
        tally.kills,
        tally.terms,
        tally.slowest_exit,
        tally.database_restarts,
        calls.len(),
        windows.len(),
        jobs.len(),
    );
    assert!(
        took < Duration::from_secs(300),
        "the chaos run takes under 5 minutes: {took:?}"
    );
    drop(api);
}
