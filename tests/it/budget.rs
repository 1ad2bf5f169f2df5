//! One CoinGecko call budget for every process on the database: worker replicas fetch
//! different coins at the same time, and together never exceed the budget (issue 11).
//! These start the real binary as separate processes against a fake CoinGecko that
//! answers 429 beyond the same per-minute limit.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use fake_upstream::coingecko::FakeOptions;
use price_history::domain::{JobStatus, Symbol};
use price_history::store::daily_prices;
use uuid::Uuid;

use crate::support::{Harness, Service, assert_days_are_the_fakes, days_before_today, output_text};

/// Shared by the fake's limit and every process: 51 calls take about 12.5 s. Low enough
/// that three replicas with a budget each (the per-process limiter of earlier releases)
/// would clearly break the spacing even on a busy machine, where a window's database
/// work takes a few hundred milliseconds.
const BUDGET: u32 = 240;

/// Three coins of 1461 days: 17 windows each at 90 days, 51 calls.
const COINS: [(&str, &str); 3] = [("BTC", "bitcoin"), ("ETH", "ethereum"), ("SOL", "solana")];

fn four_years() -> (NaiveDate, NaiveDate) {
    let end = days_before_today(1);
    (end.checked_sub_days(Days::new(1460)).unwrap(), end)
}

/// A harness whose fake allows `BUDGET` calls a minute and whose own client (used to
/// register coins) draws from the same budget as the workers.
async fn harness() -> Harness {
    let mut h = Harness::with_fake(FakeOptions {
        calls_per_minute_limit: NonZeroU32::new(BUDGET),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_calls_per_minute = NonZeroU32::new(BUDGET).unwrap();
    for (symbol, id) in COINS.iter().skip(1) {
        h.register(symbol, id).await;
    }
    h
}

fn workers(h: &Harness, n: usize) -> Vec<Service> {
    h.spawn_workers(n, &[("COINGECKO_CALLS_PER_MINUTE", &BUDGET.to_string())])
}

async fn submit_all(h: &Harness) -> Vec<(Symbol, &'static str, Uuid)> {
    let (start, end) = four_years();
    let mut jobs = Vec::new();
    for (symbol, id) in COINS {
        let symbol = Symbol::parse(symbol).unwrap();
        jobs.push((symbol, id, h.submit_for(symbol, start, end, false).await.id));
    }
    jobs
}

/// The fake's record of when calls arrived, sorted.
fn arrivals(h: &Harness) -> Vec<Instant> {
    let mut at: Vec<Instant> = h.fake.calls().iter().map(|call| call.at).collect();
    at.sort();
    at
}

/// The most calls the fake saw in any 60 s.
fn most_in_a_minute(at: &[Instant]) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, t) in at.iter().enumerate() {
        while t.duration_since(at[first]) >= Duration::from_secs(60) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// No stretch of the run holds more calls than the budget allows for its length: a call
/// may reach the fake late (a busy machine delays a process's wake-up) but never before
/// its slot, so calls i and j (i < j) are at least (j - i) slots apart, less the lateness
/// of call i. This is the minute's rule at every scale, so that a short test checks it
/// too. Up to 1 s of lateness is allowed: right after a build, with the suite's other
/// processes starting, a replica was seen waking 280 ms late (250 ms were allowed then,
/// and the test failed now and then). The defect this guards against still shows at
/// once: three replicas with a budget each send a call every 83 ms, and 12 calls then
/// arrive within about 1 s where the budget spaces them 3 s apart.
fn assert_evenly_spaced(at: &[Instant]) {
    assert_spaced_by(at, Duration::from_secs(60) / BUDGET, Duration::from_secs(1));
}

/// Calls i and j (i < j) at least (j - i) `slot`s apart, less `jitter` of lateness.
fn assert_spaced_by(at: &[Instant], slot: Duration, jitter: Duration) {
    for i in 0..at.len() {
        for j in i + 1..at.len() {
            let apart = at[j].duration_since(at[i]);
            let allowed = slot * u32::try_from(j - i).unwrap();
            assert!(
                apart + jitter >= allowed,
                "calls {i} and {j} arrived {apart:?} apart; the budget spaces them at least {allowed:?}"
            );
        }
    }
}

/// Every day of the coin stored once, equal to what the fake serves.
async fn assert_coin_matches_the_truth(h: &Harness, symbol: Symbol, coin_id: &str) {
    let (start, end) = four_years();
    let rows = daily_prices::list(h.pool(), symbol, start, end)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1461, "{symbol}: every day stored");
    let stored = h.stored_days_of(symbol).await;
    assert_eq!(
        stored, 1461,
        "{symbol}: no row outside the range, none doubled"
    );
    assert_days_are_the_fakes(&h.fake, coin_id, symbol, &rows);
}

fn assert_no_429(h: &Harness) {
    let refused = h.calls_answered(429);
    assert!(refused.is_empty(), "{} calls got 429", refused.len());
}

#[tokio::test]
async fn three_replicas_fetch_three_coins_at_once_within_one_budget() {
    let h = harness().await;
    let _workers = workers(&h, 3);
    let registered = h.fake.call_count();
    let jobs = submit_all(&h).await;
    let started = Instant::now();
    for (_, _, id) in &jobs {
        h.completes(*id).await;
    }
    let took = started.elapsed();

    assert_no_429(&h);
    let at = arrivals(&h);
    assert_eq!(
        at.len(),
        registered + 51,
        "one call per window, none repeated"
    );
    assert!(most_in_a_minute(&at) <= BUDGET as usize);
    assert_evenly_spaced(&at);
    // The replicas worked at the same time: every coin was being fetched in the first
    // few calls after the jobs were submitted.
    let first_calls: HashSet<String> = h
        .fake
        .calls()
        .into_iter()
        .skip(registered)
        .take(6)
        .map(|call| call.coin_id)
        .collect();
    assert_eq!(first_calls.len(), 3, "{first_calls:?}");
    let floor = Duration::from_secs(60) / BUDGET * 50;
    println!("3 coins on 3 replicas at {BUDGET}/min: {took:.2?} (floor {floor:.2?})");
    for (symbol, coin_id, _) in &jobs {
        assert_coin_matches_the_truth(&h, *symbol, coin_id).await;
    }
    let granted: i64 = sqlx::query_scalar("SELECT sum(granted)::bigint FROM coingecko_call_budget")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(
        granted as usize,
        at.len(),
        "every call took a slot of the shared budget"
    );

    // The workers serve no /metrics; an API process's shows their calls too.
    let api = crate::support::TestApi::start_with(h.api_state(None)).await;
    let every_call = format!(
        "price_history_coingecko_shared_requests_total{{outcome=\"ok\"}} {}",
        at.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = api.get("/metrics").await.text();
        if text.lines().any(|line| line == every_call) {
            break;
        }
        assert!(Instant::now() < deadline, "{every_call:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_replica_killed_mid_run_loses_its_coin_to_another_and_the_budget_holds() {
    let (_h, mut stopped) = stop_a_busy_replica("KILL").await;
    assert!(!stopped.is_running());
}

#[tokio::test]
async fn sigterm_of_a_replica_hands_its_coin_over_and_the_budget_holds() {
    let (_h, mut stopped) = stop_a_busy_replica("TERM").await;
    assert_eq!(
        stopped.exit_code(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        stopped.output()
    );
}

/// Three replicas, three coins: once every replica is busy, stops (`KILL` or `TERM`)
/// the one holding the second coin; the coin is taken over from its checkpoint and
/// every coin completes, within the budget, each window fetched once but the one in
/// flight. Returns the stopped replica.
async fn stop_a_busy_replica(signal: &str) -> (Harness, Service) {
    let h = harness().await;
    let mut workers = workers(&h, 3);
    let registered = h.fake.call_count();
    let jobs = submit_all(&h).await;
    // Every replica is busy with a coin of its own.
    for (_, _, id) in &jobs {
        h.wait_for(*id, "2 windows stored", |j| j.chunks_done >= 2)
            .await;
    }
    let mut holders = HashSet::new();
    for (_, _, id) in &jobs {
        if let Some(name) = h.holder(*id).await {
            holders.insert(name);
        }
    }
    assert_eq!(
        holders.len(),
        3,
        "each coin on a replica of its own: {holders:?}"
    );
    let (victim_symbol, _, victim_job) = jobs[1];
    let holder = h.holder(victim_job).await.expect("a worker holds the job");
    let victim = workers
        .iter()
        .position(|w| w.owns(&holder))
        .expect("one of the three holds it");
    let mut victim = workers.remove(victim);

    if signal == "KILL" {
        victim.kill().await;
    } else {
        victim.signal(signal);
    }
    let taken = h
        .wait_for(victim_job, "a takeover", |j| {
            j.attempts >= 2 && j.status == JobStatus::Running
        })
        .await;
    assert!(
        taken.chunks_done >= 2,
        "{victim_symbol}: the checkpoint survived"
    );
    let new_holder = h.holder(victim_job).await.expect("a worker holds the job");
    assert!(!victim.owns(&new_holder), "another replica took it");
    for (_, _, id) in &jobs {
        h.completes(*id).await;
    }

    assert_no_429(&h);
    let at = arrivals(&h);
    assert!(most_in_a_minute(&at) <= BUDGET as usize);
    assert_evenly_spaced(&at);
    // One job per coin at a time: each coin's windows were fetched once, but for the
    // stopped replica's window in flight.
    let calls = h.fake.calls();
    for (symbol, coin_id, _) in &jobs {
        let fetched: Vec<_> = calls
            .iter()
            .skip(registered)
            .filter(|call| call.coin_id == *coin_id && call.status == 200)
            .map(|call| call.from)
            .collect();
        let distinct: HashSet<_> = fetched.iter().collect();
        assert_eq!(distinct.len(), 17, "{symbol}: every window fetched");
        let allowed = if *symbol == victim_symbol { 1 } else { 0 };
        assert!(
            fetched.len() - distinct.len() <= allowed,
            "{symbol}: {} windows fetched twice",
            fetched.len() - distinct.len()
        );
        assert_coin_matches_the_truth(&h, *symbol, coin_id).await;
    }
    (h, victim)
}

/// `promtool check metrics` (Debian's `prometheus` package; `.ci/run` installs it)
/// accepts `/metrics` with every family present: the budget's, the jobs', the stored
/// candles'. A machine without promtool fails this test rather than skip it.
#[tokio::test]
async fn metrics_pass_promtool_check() {
    use std::io::Write;
    let mut h = Harness::new().await;
    h.run_days_to_yesterday(3).await;
    // The second source's families too (its client is built; it is not called here).
    h.settings.fallback_source = price_history::config::FallbackSource::Coinbase;
    let client = h.ingestor().client;
    let api = crate::support::TestApi::start_with(price_history::api::ApiState {
        coingecko: Some(client),
        ..h.api_state(None)
    })
    .await;
    let metrics = api.get("/metrics").await;
    let text = metrics.text();
    for family in [
        "price_history_coingecko_budget_granted_total{key=\"none\"} 1",
        "# TYPE price_history_coingecko_slot_wait_seconds histogram",
        "price_history_coingecko_budget_calls_per_minute 6000",
        "price_history_stored_candles{symbol=\"BTC\"} 3",
        "price_history_coinbase_requests_total{outcome=\"ok\"} 0",
        "# TYPE price_history_coinbase_slot_wait_seconds histogram",
        "price_history_coinbase_budget_calls_per_minute 6000",
    ] {
        assert!(text.lines().any(|l| l == family), "{family:?} in\n{text}");
    }

    let mut promtool = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed for this test and could not be started ({e}): \
             install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does"
        ),
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics refused /metrics:\n{}\n---\n{text}",
        output_text(&output)
    );
}

/// Two processes' limiters on one database: the slots of both interleave, evenly spaced;
/// the one that joins late gets the next slot, not a burst of its own; and after an idle
/// spell the budget has saved nothing up.
#[tokio::test]
async fn limiters_sharing_a_database_space_their_slots_and_a_newcomer_cannot_burst() {
    use price_history::domain::PriceSource;
    use price_history::upstream::{CallBudget, CallLimiter};
    let h = Harness::new().await;
    let limiter = || {
        CallLimiter::new(
            PriceSource::CoinGecko,
            CallBudget::Shared(h.pool().clone()),
            600,
            None,
        )
    };
    let (first, late) = (limiter(), limiter());
    let slot = first.interval();

    let taken = std::sync::Mutex::new(Vec::new());
    async fn take(limiter: &CallLimiter, n: usize, taken: &std::sync::Mutex<Vec<Instant>>) {
        for _ in 0..n {
            limiter.acquire().await.unwrap();
            taken.lock().unwrap().push(Instant::now());
        }
    }
    let started = Instant::now();
    tokio::join!(take(&first, 10, &taken), async {
        // Joins once the first one is under way.
        tokio::time::sleep(slot * 3).await;
        take(&late, 10, &taken).await;
    });
    let mut at = taken.into_inner().unwrap();
    at.sort();
    assert_eq!(at.len(), 20);
    // The limiters' own times, in this process: a wake-up late by 250 ms at most.
    assert_spaced_by(&at, slot, Duration::from_millis(250));
    assert!(started.elapsed() >= slot * 19, "{:?}", started.elapsed());

    // Idle for a while: the next slot is at once, the one after a full slot later.
    tokio::time::sleep(slot * 10).await;
    let idle = Instant::now();
    first.acquire().await.unwrap();
    assert!(idle.elapsed() < slot, "{:?}", idle.elapsed());
    late.acquire().await.unwrap();
    assert!(
        idle.elapsed() + Duration::from_millis(40) >= slot,
        "{:?}",
        idle.elapsed()
    );
}

/// A caller that takes a slot and goes away before using it (a process killed while it
/// waits, a job cancelled) wastes that one slot: the next caller waits one slot more,
/// not longer, and no credit of the month is spent on it (an audit's finding: the credit
/// was taken before the wait).
#[tokio::test]
async fn a_slot_taken_and_never_used_costs_that_slot_only() {
    use price_history::domain::{Clock, CreditMonth, PriceSource};
    use price_history::upstream::{CallBudget, CallLimiter, MonthlyCredits};
    let h = Harness::new().await;
    let limiter = CallLimiter::new(
        PriceSource::CoinGecko,
        CallBudget::Shared(h.pool().clone()),
        120,
        None,
    );
    limiter.count_month(MonthlyCredits {
        limit: None,
        clock: Clock::SYSTEM,
    });
    let slot = limiter.interval();
    let began = Instant::now();
    limiter.acquire().await.unwrap();
    // Takes the second slot, then gives up while waiting for it.
    let gave_up = tokio::time::timeout(slot / 2, limiter.acquire()).await;
    assert!(gave_up.is_err(), "the second slot is a slot away");
    limiter.acquire().await.unwrap();
    let waited = began.elapsed();
    assert!(
        waited + Duration::from_millis(40) >= slot * 2 && waited < slot * 3,
        "the third slot came after {waited:?}; one slot is {slot:?}"
    );
    assert_eq!(limiter.metrics().granted.get(), 2);
    let month = CreditMonth::of(chrono::Utc::now());
    let used = price_history::store::monthly_credits::used(
        h.pool(),
        PriceSource::CoinGecko,
        "none",
        month,
    )
    .await
    .unwrap();
    assert_eq!(used, 2, "the slot given up spent no credit");
}

/// Kills `src/upstream/budget.rs`, `CallLimiter::take`: the match guard
/// `is_unavailable(&e) && began.elapsed() < DATABASE_PATIENCE` -> `true`, and `&&` -> `||`.
/// A database error that is not an outage (here the budget's table is gone) must fail the
/// attempt at once, without a call; the mutants wait on it, forever or for two minutes.
#[tokio::test]
async fn a_budget_error_that_is_no_outage_fails_the_slot_at_once_without_a_call() {
    use price_history::domain::PriceSource;
    use price_history::upstream::{CallBudget, CallLimiter};
    let h = Harness::new().await;
    sqlx::query("DROP TABLE coingecko_call_budget")
        .execute(h.pool())
        .await
        .unwrap();
    let limiter = CallLimiter::new(
        PriceSource::CoinGecko,
        CallBudget::Shared(h.pool().clone()),
        600,
        None,
    );

    let taken = tokio::time::timeout(Duration::from_secs(10), limiter.acquire())
        .await
        .expect("a query that is wrong is not waited on like an outage");

    let error = format!(
        "{:#}",
        taken.expect_err("no slot without the budget's table")
    );
    assert!(error.contains("so no call was made"), "{error}");
    assert_eq!(limiter.metrics().granted.get(), 0);
}

/// A review's finding: a 429 held back only the call that got it, while every other
/// process went on with its slots and got a 429 of its own (each a credit of the month in
/// the count). The budget every process shares is held back as long as CoinGecko asked.
#[tokio::test]
async fn a_429_holds_back_every_process_sharing_the_budget_as_long_as_asked() {
    use fake_upstream::coingecko::ScriptedResponse;
    let h = Harness::new().await;
    let pause = Duration::from_secs(2);
    h.fake
        .push_response(ScriptedResponse::rate_limited(Some(pause.as_secs())));
    // Two clients on the database's budget, as in two processes.
    let (one, other) = (h.ingestor().client, h.ingestor().client);
    let asking = tokio::spawn(async move { one.first_day("bitcoin", None).await });
    held_back_by_at_least(&h, pause / 2).await;

    other.first_day("bitcoin", None).await.unwrap();
    asking.await.unwrap().unwrap();

    let calls = h.fake.calls();
    assert_eq!(
        calls.iter().map(|call| call.status).collect::<Vec<_>>(),
        [429, 200, 200]
    );
    for later in &calls[1..] {
        let after = later.at.duration_since(calls[0].at);
        assert!(after >= pause, "a call {after:?} after the 429");
    }
}

/// Waits until CoinGecko's shared budget hands out no slot for `at_least` from now.
async fn held_back_by_at_least(h: &Harness, at_least: Duration) {
    use price_history::store::call_budget;
    let held = async {
        loop {
            let figures = call_budget::figures(h.pool()).await.unwrap();
            if figures.iter().any(|budget| budget.backlog >= at_least) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the budget shared by every process is held back after the 429");
}
