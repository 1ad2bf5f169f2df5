//! A database outage: the processes keep running, /readyz says 503 meanwhile, and the
//! job continues afterwards. PostgreSQL here is a private cluster the test starts and
//! stops itself (initdb / pg_ctl from the machine's PostgreSQL binaries).

use std::time::{Duration, Instant};

use chrono::Days;
use fake_upstream::coingecko::FakeCoinGecko;
use price_history::domain::{DateRange, JobStatus, Symbol, today_utc};
use price_history::queue;
use price_history::store::{
    self, ingestion_jobs::JobFollower, ingestion_jobs::JobRecord, ingestion_jobs::NewJob,
};
use uuid::Uuid;

use crate::cluster::{PrivateCluster, readyz, wait_until};
use crate::support::{count_rows, days_before_today, free_port, spawn_service};

/// Submits a BTC job over the 1461 days up to yesterday and waits until three of its
/// windows are stored, so that an outage strikes mid-job; returns the job as submitted.
async fn submit_four_years_and_await_three_windows(pool: &sqlx::PgPool) -> JobRecord {
    let end = days_before_today(1);
    let range = DateRange::for_coin(
        &price_history::domain::Coin::bitcoin(),
        end.checked_sub_days(Days::new(1460)).unwrap(),
        end,
        today_utc(),
    )
    .unwrap();
    let job = queue::submit(
        pool,
        NewJob {
            id: Uuid::now_v7(),
            symbol: Symbol::BTC,
            trigger: price_history::domain::Trigger::Api,
            range,
            force: false,
        },
        queue::Turn::InOrder,
    )
    .await
    .unwrap();
    let mut follower = JobFollower::new(pool, job.id).await.unwrap();
    let mut now: JobRecord = follower.current().await.unwrap().unwrap();
    while now.chunks_done < 3 {
        now = follower.next_change().await.unwrap().unwrap();
    }
    job
}

/// The job once it has ended, within `within`, followed on a fresh connection each time
/// because the follower's connection died with the server.
async fn finished_after_outage(pool: &sqlx::PgPool, id: Uuid, within: Duration) -> JobRecord {
    tokio::time::timeout(within, async {
        loop {
            // The follower's connection died with the server; a fresh one follows on.
            if let Ok(mut follower) = JobFollower::new(pool, id).await
                && let Ok(Some(job)) = follower.until_finished().await
            {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the job ends after the database is back")
}

/// A private cluster, started, and a fake CoinGecko whose every answer takes `delay`.
async fn started_cluster_and_slow_fake(delay: Duration) -> (PrivateCluster, FakeCoinGecko) {
    let cluster = PrivateCluster::create();
    cluster.start();
    let fake = FakeCoinGecko::start().await;
    fake.set_delay(delay);
    (cluster, fake)
}

#[tokio::test]
async fn a_database_outage_stops_no_process_and_the_job_completes_afterwards() {
    let (cluster, fake) = started_cluster_and_slow_fake(Duration::from_millis(300)).await;
    let url = cluster.url("price_history");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let base = format!("http://{bind}");
    let mut serve = spawn_service(&url, &fake.base_url(), &["serve"], &[("BIND_ADDR", &bind)]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    // The process starts (and creates the database) on its own; its readiness is polled
    // because an outside process offers no event to wait on.
    wait_until("serve is ready", Duration::from_secs(30), async || {
        readyz(&client, &base).await == Some(200)
    })
    .await;
    let pool = store::connect(&url.parse().expect("a valid URL"), 4)
        .await
        .unwrap();
    let job = submit_four_years_and_await_three_windows(&pool).await;

    cluster.stop();
    let stopped_at = Instant::now();
    wait_until("/readyz says 503", Duration::from_secs(5), async || {
        readyz(&client, &base).await == Some(503)
    })
    .await;
    let noticed = stopped_at.elapsed();
    // The outage lasts a few seconds, longer than CoinGecko's call: the job must wait.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        serve.is_running(),
        "the process survived the outage:\n{}",
        serve.output()
    );
    assert_eq!(readyz(&client, &base).await, Some(503));
    cluster.start();
    let restarted_at = Instant::now();
    wait_until(
        "/readyz says 200 again",
        Duration::from_secs(30),
        async || readyz(&client, &base).await == Some(200),
    )
    .await;
    let ready_again = restarted_at.elapsed();
    let finished = finished_after_outage(&pool, job.id, Duration::from_secs(90)).await;

    if std::env::var_os("PH_SHOW_OUTPUT").is_some() {
        println!("{}", serve.output());
    }
    println!(
        "outage: /readyz 503 after {noticed:.2?}; 200 again {ready_again:.2?} after restart; job {} with {} attempt(s)",
        finished.status, finished.attempts
    );
    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "{:?}\n{}",
        finished.error_message,
        serve.output()
    );
    let stored = count_rows(&pool, "daily_prices").await;
    assert_eq!(stored, 1461);
    assert!(serve.is_running());
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(30)).await, Some(0));
}

/// A private cluster started and migrated (a pool of `connections`), a fake CoinGecko, and
/// a client of it without retries on the call budget the cluster holds, at
/// `calls_per_minute`.
async fn cluster_and_client(
    connections: u32,
    calls_per_minute: u32,
) -> (
    PrivateCluster,
    FakeCoinGecko,
    sqlx::PgPool,
    price_history::coingecko::CoinGeckoClient,
) {
    let cluster = PrivateCluster::create();
    cluster.start();
    let fake = FakeCoinGecko::start().await;
    let pool = cluster.migrated_pool(connections).await;
    let client = price_history::coingecko::CoinGeckoClient::new(
        price_history::coingecko::CoinGeckoSettings {
            base_url: fake.base_url(),
            api_key: None,
            calls_per_minute: std::num::NonZeroU32::new(calls_per_minute).unwrap(),
            max_retries: 0,
            retry_base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        },
        price_history::upstream::CallBudget::Shared(pool.clone()),
    )
    .unwrap();
    (cluster, fake, pool, client)
}

/// The shared call budget lives in the database: while it is away, a CoinGecko call waits
/// for its slot instead of going without one, and goes once the database is back.
#[tokio::test]
async fn without_the_database_a_call_waits_for_its_slot_and_goes_once_it_is_back() {
    let (cluster, fake, pool, client) = cluster_and_client(2, 6000).await;
    let to = chrono::Utc::now() - chrono::Duration::days(1);
    let from = to - chrono::Duration::days(2);
    client
        .market_chart_range("bitcoin", from, to)
        .await
        .unwrap();

    cluster.stop();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.market_chart_range("bitcoin", from, to).await }
    });
    // Nothing to await here: the point is that nothing happens for a while, longer than
    // the pool's 5 s acquire timeout, so that the database has failed the limiter's query
    // at least once and the limiter waits on (the match guard of `CallLimiter::acquire`
    // turned `false` gives the attempt up then, issue 14).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(fake.call_count(), 1, "no call without a slot");
    assert!(!call.is_finished(), "the call waits for the database");

    cluster.start();
    let chart = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call goes within 30 s of the database's return")
        .unwrap();
    assert!(chart.is_ok(), "{chart:?}");
    assert_eq!(fake.call_count(), 2);
    let granted: i64 = sqlx::query_scalar("SELECT granted FROM coingecko_call_budget")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(granted, 2, "each call took its slot from the database");
}

/// Calls that held slots through an outage do not all go the moment the database is back:
/// a call whose month's credit came later than its slot takes the next free slot instead,
/// so the calls stay a slot apart, and each is counted once.
#[tokio::test]
async fn calls_that_held_slots_through_an_outage_go_a_slot_apart_after_it() {
    use price_history::domain::{Clock, PriceSource};
    use price_history::upstream::MonthlyCredits;
    let (cluster, fake, pool, client) = cluster_and_client(4, 12).await;
    let budget = client.caller().budget();
    budget.count_month(MonthlyCredits {
        limit: None,
        clock: Clock::SYSTEM,
    });
    let slot = budget.interval();
    let to = chrono::Utc::now() - chrono::Duration::days(1);
    let from = to - chrono::Duration::days(2);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.market_chart_range("bitcoin", from, to).await })
        })
        .collect();
    fake.wait_for_calls(1).await;
    let first = Instant::now();
    wait_until("three slots taken", Duration::from_secs(10), async || {
        sqlx::query_scalar::<_, i64>("SELECT granted FROM coingecko_call_budget")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            == Some(3)
    })
    .await;
    // Blocks this test's only thread: the two calls waiting for their slots take their
    // credits only once the server is down.
    cluster.stop();
    // Both slots pass while the database is away.
    tokio::time::sleep_until((first + slot * 2 + Duration::from_secs(1)).into()).await;
    cluster.start();
    for call in calls {
        let chart = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("every call goes within a minute of the database's return")
            .unwrap();
        assert!(chart.is_ok(), "{chart:?}");
    }

    let at: Vec<Instant> = fake.calls().iter().map(|call| call.at).collect();
    assert_eq!(at.len(), 3);
    let apart = at[2].duration_since(at[1]);
    assert!(
        apart >= slot / 2,
        "the two calls that waited out the outage went {apart:?} apart; a slot is {slot:?}"
    );
    let granted: i64 = sqlx::query_scalar("SELECT granted FROM coingecko_call_budget")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(granted, 3, "a slot taken again is not a second grant");
    let recent = price_history::store::call_budget::calls_in_the_last_minute(
        &pool,
        PriceSource::CoinGecko,
        "none",
    )
    .await
    .unwrap();
    assert_eq!(
        recent, 3,
        "the slots let pass are no calls of the last minute"
    );
}

#[tokio::test]
async fn a_process_started_before_its_database_waits_for_it_saying_where_and_then_serves() {
    let cluster = PrivateCluster::create();
    // The password is never printed; trust authentication ignores it.
    let url = format!(
        "postgres://postgres:hunter2secret@127.0.0.1:{}/price_history",
        cluster.port
    );
    let fake = FakeCoinGecko::start().await;
    let bind = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{bind}");
    let mut api = spawn_service(
        &url,
        &fake.base_url(),
        &["api"],
        &[
            ("BIND_ADDR", &bind),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "60"),
        ],
    );
    let waiting = format!("127.0.0.1:{}", cluster.port);
    wait_until(
        "the api says it waits",
        Duration::from_secs(10),
        async || api.output().contains("waiting for PostgreSQL") && api.output().contains(&waiting),
    )
    .await;
    assert!(api.is_running(), "{}", api.output());

    cluster.start();
    let started = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    wait_until("the api is ready", Duration::from_secs(30), async || {
        readyz(&client, &base).await == Some(200)
    })
    .await;
    println!("ready {:.2?} after PostgreSQL came up", started.elapsed());
    // Back-off is capped at 5 s, so the next attempt comes soon after.
    assert!(started.elapsed() < Duration::from_secs(15));
    api.signal("TERM");
    let output = api.exits_0(Duration::from_secs(30)).await;
    assert!(!output.contains("hunter2secret"), "{output}");
    assert!(output.contains("PostgreSQL is up"), "{output}");
}

#[tokio::test]
async fn a_process_whose_database_never_comes_exits_1_after_the_limit_saying_why() {
    let port = free_port();
    let url = format!("postgres://postgres:hunter2secret@127.0.0.1:{port}/price_history");
    let started = Instant::now();
    let mut worker = spawn_service(
        &url,
        "http://127.0.0.1:9",
        &["worker"],
        &[("DATABASE_CONNECT_TIMEOUT_SECS", "2")],
    );
    let code = worker.exit_code(Duration::from_secs(20)).await;
    let took = started.elapsed();
    // The last line may still be on its way from the pipe.
    wait_until(
        "the reason is printed",
        Duration::from_secs(5),
        async || worker.output().contains("error: "),
    )
    .await;

    let output = worker.output();
    assert_eq!(code, Some(1), "{output}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "exited after {took:?}"
    );
    assert!(
        output.contains(&format!(
            "PostgreSQL at 127.0.0.1:{port} did not accept a connection within 2 s"
        )),
        "{output}"
    );
    assert!(output.contains("DATABASE_CONNECT_TIMEOUT_SECS"), "{output}");
    assert!(!output.contains("hunter2secret"), "{output}");
}

/// A job's attempt waits out a database outage instead of failing: the window fetched
/// while the database was away is stored once it is back, with no second call. Runs the
/// attempt directly (no queue), so that only the job's own patience is tested. Kills
/// `store::patience::patiently`'s guard `e.is_unavailable()` -> `false` (issue 14).
#[tokio::test]
async fn an_attempt_waits_out_a_database_outage_and_stores_the_window_it_fetched() {
    use price_history::coingecko::{CoinGeckoClient, CoinGeckoSettings};
    use price_history::domain::PlanReach;
    use price_history::ingest::{Attempt, Ingestor, Outcome, Reach};
    use price_history::upstream::CallBudget;

    // The answer is held back 2 s, so that the database goes away while it is in flight.
    let (cluster, fake) = started_cluster_and_slow_fake(Duration::from_secs(2)).await;
    let pool = cluster.migrated_pool(2).await;
    let settings = CoinGeckoSettings {
        base_url: fake.base_url(),
        api_key: None,
        calls_per_minute: std::num::NonZeroU32::new(6000).unwrap(),
        max_retries: 0,
        retry_base_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
    };
    let ingestor = Ingestor {
        pool: pool.clone(),
        // A budget of this process's own: the database's absence tests the job, not it.
        client: CoinGeckoClient::new(settings.clone(), CallBudget::ProcessLocal).unwrap(),
        chunk_days: 90,
        reach: Reach::new(PlanReach::UNLIMITED, &settings),
        second_source: None,
        hour_check: price_history::domain::DisputeRule::new(5.into()),
    };
    let (start, end) = (days_before_today(10), days_before_today(1));
    let job = queue::submit(
        &pool,
        NewJob {
            id: Uuid::now_v7(),
            symbol: Symbol::BTC,
            trigger: price_history::domain::Trigger::Api,
            range: DateRange::for_coin(
                &price_history::domain::Coin::bitcoin(),
                start,
                end,
                today_utc(),
            )
            .unwrap(),
            force: false,
        },
        queue::Turn::InOrder,
    )
    .await
    .unwrap();
    let (_stop_tx, stop) = price_history::shutdown::Shutdown::new();

    let attempt = ingestor.run(Attempt {
        job: &job,
        fence: None,
        stop: &stop,
    });
    let outage = async {
        fake.wait_for_calls(1).await;
        cluster.stop();
        // Nothing to await: the answer arrives (at 2 s) while the database is away, and
        // the write waits in the pool until its 5 s acquire timeout fails it (at 7 s); the
        // database stays away past that, so that the job itself must wait for it.
        tokio::time::sleep(Duration::from_secs(9)).await;
        cluster.start();
    };
    let (outcome, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(attempt, outage)
    })
    .await
    .expect("the attempt ends within a minute");

    let Ok(Outcome::Finished { status, .. }) = outcome else {
        panic!("the attempt waits for the database and finishes: {outcome:?}");
    };
    assert_eq!(status, JobStatus::Completed);
    assert_eq!(
        fake.call_count(),
        1,
        "the window fetched is not fetched again"
    );
    let stored = count_rows(&pool, "daily_prices").await;
    assert_eq!(stored, 10);
}

/// Runs a 1461-day job on one `worker` process and takes the database away for `outage`
/// once three windows are stored; returns the job as it ended and the calls made.
async fn a_job_through_an_outage_of(outage: Duration) -> (JobRecord, usize, String) {
    // Each answer takes a while, so that the job is mid-window when the database goes.
    let (cluster, fake) = started_cluster_and_slow_fake(Duration::from_millis(400)).await;
    let url = cluster.url("price_history");
    let pool = cluster.migrated_pool(4).await;
    let mut worker = spawn_service(
        &url,
        &fake.base_url(),
        &["worker"],
        // A heartbeat every 5 s: any outage of 10 s holds one, which fails after the pool's
        // 5 s acquire time-out while the database is still away.
        &[("JOB_LEASE_SECS", "15"), ("SYNC_SCHEDULE", "off")],
    );
    let job = submit_four_years_and_await_three_windows(&pool).await;
    // A window is in flight: its call has gone, its answer comes while the database is away.
    fake.wait_for_calls(4).await;
    cluster.stop();
    tokio::time::sleep(outage).await;
    assert!(
        worker.is_running(),
        "the worker survived the outage:\n{}",
        worker.output()
    );
    cluster.start();
    let finished = finished_after_outage(&pool, job.id, Duration::from_secs(120)).await;
    let stored = count_rows(&pool, "daily_prices").await;
    assert_eq!(stored, 1461);
    worker.signal("TERM");
    assert_eq!(worker.exit_code(Duration::from_secs(30)).await, Some(0));
    (finished, fake.call_count(), worker.output())
}

fn assert_rode_it_out(job: &JobRecord, calls: usize, output: &str) {
    assert_eq!(
        job.status,
        JobStatus::Completed,
        "{:?}\n{output}",
        job.error_message
    );
    assert_eq!(job.attempts, 1, "the outage cost no attempt:\n{output}");
    assert_eq!(
        calls,
        1461usize.div_ceil(90),
        "the outage cost no call: every window fetched once:\n{output}"
    );
    assert!(
        !output.contains("restarting it"),
        "the worker was not restarted:\n{output}"
    );
}

#[tokio::test]
async fn a_ten_second_outage_mid_job_costs_no_attempt_and_no_call() {
    let (job, calls, output) = a_job_through_an_outage_of(Duration::from_secs(10)).await;
    assert_rode_it_out(&job, calls, &output);
}

#[tokio::test]
async fn a_thirty_second_outage_mid_job_costs_no_attempt_and_no_call() {
    let (job, calls, output) = a_job_through_an_outage_of(Duration::from_secs(30)).await;
    assert_rode_it_out(&job, calls, &output);
}
