//! Monthly credits (`COINGECKO_CALLS_PER_MONTH`, issue 28): shared by every process on the
//! database, counted per UTC calendar month, never exceeded; what cannot be paid for is
//! refused (429), stopped cleanly (`completed_with_gaps`) or left to the next month.

use chrono::{Datelike, Days, NaiveDate, TimeDelta, Utc};
use fake_upstream::coingecko::ScriptedResponse;
use price_history::domain::{Clock, CreditMonth, JobStatus, PriceSource, Symbol, Trigger};
use price_history::schedule::Scheduler;
use price_history::shutdown::Shutdown;
use price_history::store::ingestion_jobs::JobRecord;
use price_history::store::sync_schedule::TickRecord;
use price_history::store::{coins, monthly_credits, sync_schedule};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    Harness, TestApi, assert_exited_saying, assert_mentions, days_before_today,
    price_history_command,
};

/// Four years to yesterday: 17 windows of 90 days, so 17 calls.
fn four_years() -> (NaiveDate, NaiveDate) {
    let end = days_before_today(1);
    (end.checked_sub_days(Days::new(1460)).unwrap(), end)
}

/// A harness whose processes share `limit` calls a month.
async fn harness(limit: u32) -> Harness {
    let mut h = Harness::new().await;
    h.settings.coingecko_calls_per_month = Some(limit.to_string());
    h
}

/// CoinGecko calls counted this month (by the system clock), over every process.
async fn used(h: &Harness) -> i64 {
    let month = CreditMonth::of(Utc::now());
    monthly_credits::used(h.pool(), PriceSource::CoinGecko, "none", month)
        .await
        .unwrap()
}

fn first_of_next_month() -> NaiveDate {
    CreditMonth::of(Utc::now()).resets_on()
}

/// The job stopped with gaps, its message saying `why` and the day the credits come back.
fn assert_stopped_for_the_month(job: &JobRecord, why: &str) {
    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    let message = job.error_message.clone().unwrap_or_default();
    assert_mentions(&message, &[why, &first_of_next_month().to_string()]);
    // Days never asked for are not days CoinGecko had nothing for.
    assert!(!message.contains("even after a second try"), "{message}");
}

#[tokio::test]
async fn a_limit_of_20_lets_a_17_call_job_finish_and_refuses_the_next_with_429_naming_the_reset_day()
 {
    let h = harness(20).await;
    let api = TestApi::start(&h).await;
    let _worker = h.start_worker();
    let (start, end) = four_years();
    let body = json!({"start_date": start, "end_date": end});

    let first = api.submit(body).await;
    first.assert_status(StatusCode::ACCEPTED);
    let id = first.json()["id"].as_str().unwrap().parse().unwrap();
    h.completes(id).await;
    assert_eq!(h.fake.call_count(), 17);
    assert_eq!(used(&h).await, 17);

    let budget = api.get("/api/v1/budget").await.json();
    let coingecko = &budget["coingecko"];
    assert_eq!(coingecko["calls_per_month"], 20, "{budget}");
    assert_eq!(coingecko["used_this_month"], 17, "{budget}");
    assert_eq!(coingecko["left_this_month"], 3, "{budget}");
    // The worker made the calls, the API none: the minute is every process's.
    assert_eq!(coingecko["calls_last_minute"], 17, "{budget}");
    let resets = format!("{}T00:00:00+00:00", first_of_next_month());
    assert_eq!(coingecko["month_resets_at"], resets.as_str(), "{budget}");

    let forced = json!({"start_date": start, "end_date": end, "force": true});
    let refused = api.submit(forced).await;
    refused.assert_status(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "monthly_credits_exhausted");
    let reset_day = first_of_next_month().to_string();
    assert_eq!(refused.json()["resets_on"], reset_day.as_str());
    let message = refused.message();
    assert!(message.contains(&reset_day), "{message}");
    assert!(message.contains("17") && message.contains('3'), "{message}");
    assert_eq!(h.fake.call_count(), 17, "a refused job costs nothing");
    // What still fits is taken: one window of three days.
    let small = json!({"start_date": days_before_today(3), "end_date": end, "force": true});
    api.submit(small).await.assert_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_running_job_that_reaches_the_limit_stops_cleanly_with_gaps_saying_why() {
    let h = harness(20).await;
    // Seventeen credits left: the job's 17 windows, and not the call that fills its hole.
    h.set_credits_used(3).await;
    h.fake.set_missing_days([days_before_today(30)]);
    let (start, end) = four_years();
    let finished = h.run_job(start, end, false).await;

    assert_stopped_for_the_month(&finished, "COINGECKO_CALLS_PER_MONTH");
    assert_eq!(h.fake.call_count(), 17, "seventeen credits were left");
    assert_eq!(used(&h).await, 20, "never more than the limit");
    assert_eq!(finished.records_fetched, 1460, "every window stored");
    assert_eq!(finished.gaps_detected, 1);
}

#[tokio::test]
async fn a_job_the_month_can_no_longer_pay_for_when_it_starts_asks_nothing_and_says_so() {
    let h = harness(20).await;
    let (start, end) = four_years();
    // Queued while the month could pay for its 17 windows, as the API checks...
    let job = h.submit(start, end, false).await;
    // ...and then other work spent all but ten credits before a worker took it up.
    h.set_credits_used(10).await;
    let _worker = h.start_worker();
    let finished = h.until_finished(job.id).await;

    assert_stopped_for_the_month(&finished, "COINGECKO_CALLS_PER_MONTH");
    let message = finished.error_message.clone().unwrap_or_default();
    assert_mentions(
        &message,
        &[
            "17 CoinGecko windows",
            "only 10 of the 20",
            "none was asked",
        ],
    );
    assert_eq!(
        h.fake.call_count(),
        0,
        "a job is never started beyond what is left"
    );
    assert_eq!(
        used(&h).await,
        10,
        "the ten credits are still there for work that fits"
    );
    assert_eq!(finished.records_fetched, 0);
    assert_eq!(finished.gaps_detected, 1461);
}

#[tokio::test]
async fn a_job_coingecko_refuses_for_spent_monthly_credits_stops_after_that_call_with_gaps_saying_why()
 {
    // No limit configured here: CoinGecko's own refusal is what says the month is spent.
    let h = Harness::new().await;
    h.fake
        .push_response(ScriptedResponse::monthly_credits_spent());
    let (start, end) = four_years();
    let job = h.submit(start, end, false).await;
    let _worker = h.start_worker();
    let finished = h
        .wait_for(job.id, "the job ends", |j| j.status.is_terminal())
        .await;

    assert_stopped_for_the_month(&finished, "monthly credits are spent");
    assert_eq!(h.fake.call_count(), 1, "no retry and no other window");
    assert_eq!(finished.records_fetched, 0);
}

/// A review's finding: CoinGecko's refusal for spent credits was forgotten at once, so every
/// later job, tick and coin check made one more refused call for the rest of the month. It
/// is noted for every process now: nothing more is asked with the key until the month
/// turns, and the API refuses what it cannot do, naming the reset day.
#[tokio::test]
async fn once_coingecko_says_the_credits_are_spent_no_process_calls_it_again_this_month() {
    // No limit configured: CoinGecko's word is all there is.
    let h = Harness::new().await;
    h.fake
        .push_response(ScriptedResponse::monthly_credits_spent());
    let (start, end) = four_years();
    let first = h.run_job(start, end, false).await;
    assert_stopped_for_the_month(&first, "monthly credits are spent");
    assert_eq!(h.fake.call_count(), 1);

    let next = h.run_job(start, end, false).await;
    let api = TestApi::start(&h).await;
    let job = api
        .submit(json!({"start_date": start, "end_date": end}))
        .await;
    let coin = api
        .put_coin("ETH", json!({"coingecko_id": "ethereum"}))
        .await;

    assert_stopped_for_the_month(&next, "said this key's monthly credits");
    for refused in [job, coin] {
        refused.assert_status(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.error_code(), "monthly_credits_exhausted");
        assert_mentions(
            &refused.message(),
            &["spent", &first_of_next_month().to_string()],
        );
    }
    assert_eq!(h.fake.call_count(), 1, "no call after CoinGecko's refusal");
}

/// A review's finding: a refusal for spent credits in a month's first hour was kept for
/// the whole month, though it may be the month before's (a call answered after midnight)
/// or CoinGecko's own reset running late. It is not kept then: the next call is made.
#[tokio::test]
async fn a_refusal_for_spent_credits_in_a_months_first_hour_is_not_kept_for_the_month() {
    let mut h = Harness::new().await;
    let now = Utc::now();
    // Ten minutes into next month, by this process's clock.
    let early = first_of_next_month()
        .and_hms_opt(0, 10, 0)
        .unwrap()
        .and_utc();
    h.settings.sync_clock_offset_ms = (early - now).num_milliseconds();
    h.fake
        .push_response(ScriptedResponse::monthly_credits_spent());
    let (start, end) = four_years();

    let refused = h.run_job(start, end, false).await;
    let next = h.run_job(start, end, false).await;

    assert_eq!(refused.status, JobStatus::CompletedWithGaps);
    let kept = monthly_credits::of_month(
        h.pool(),
        PriceSource::CoinGecko,
        "none",
        CreditMonth::of(early),
    )
    .await
    .unwrap();
    assert!(!kept.refused, "{kept:?}");
    assert_eq!(
        next.status,
        JobStatus::Completed,
        "{:?}",
        next.error_message
    );
}

/// An audit's finding: the API priced a job of a coin whose hours are built from CoinGecko's
/// points by its missing days alone, so a job over stored days with missing hours cost
/// "nothing" and was queued whatever was left.
#[tokio::test]
async fn a_job_of_a_coin_building_hours_from_points_is_priced_with_its_missing_hours_windows() {
    let h = harness(20).await;
    let (start, end) = (days_before_today(200), days_before_today(1));
    let days = h.run_job(start, end, false).await;
    assert_eq!(days.status, JobStatus::Completed);
    assert_eq!(h.fake.call_count(), 3, "200 days: three windows");
    sqlx::query("UPDATE coins SET hourly = true WHERE symbol = 'BTC'")
        .execute(h.pool())
        .await
        .unwrap();
    // Two credits left; the 200 days' hours, built from points, are three windows of 90 days.
    h.set_credits_used(18).await;
    let api = TestApi::start(&h).await;

    let refused = api
        .submit(json!({"start_date": start, "end_date": end}))
        .await;

    refused.assert_status(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "monthly_credits_exhausted");
    assert_mentions(
        &refused.message(),
        &["about 3 CoinGecko calls", "only 2 of 20"],
    );
    assert_eq!(h.fake.call_count(), 3, "a refused job costs nothing");
}

#[tokio::test]
async fn three_processes_never_spend_more_than_the_month_together() {
    let h = Harness::new().await;
    for (symbol, id) in [("ETH", "ethereum"), ("SOL", "solana")] {
        h.register(symbol, id).await;
    }
    // The two checks above count too (this process has no limit, but counts).
    assert_eq!(used(&h).await, 2);
    let (start, end) = four_years();
    // A hole every 30 days: each job wants its 17 windows and 48 calls to fill the holes,
    // so whichever starts first spends what is left, however the three interleave (a job
    // that starts after the rest is spent asks nothing).
    let holes = start
        .iter_days()
        .step_by(30)
        .skip(1)
        .take_while(|d| *d < end);
    h.fake.set_missing_days(holes);
    let _workers = h.spawn_workers(3, &[("COINGECKO_CALLS_PER_MONTH", "30")]);
    let mut jobs = Vec::new();
    for symbol in ["BTC", "ETH", "SOL"] {
        let symbol = Symbol::parse(symbol).unwrap();
        jobs.push(h.submit_for(symbol, start, end, false).await.id);
    }
    let mut ended = Vec::new();
    for id in jobs {
        let job = h
            .wait_for(id, "the job ends", |j| j.status.is_terminal())
            .await;
        ended.push(job.status);
    }

    assert_eq!(h.fake.call_count(), 30, "195 calls wanted, 30 allowed");
    assert_eq!(used(&h).await, 30);
    assert!(
        ended.iter().all(|s| *s == JobStatus::CompletedWithGaps),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_tick_over_budget_queues_only_what_fits_and_takes_up_the_rest_next_month() {
    let mut h = harness(10).await;
    let symbols = [
        Symbol::BTC,
        h.register("ETH", "ethereum").await,
        h.register("SOL", "solana").await,
    ];
    for symbol in symbols {
        coins::set_tracking(h.pool(), symbol, true, Some(days_before_today(3)))
            .await
            .unwrap()
            .unwrap();
    }
    // Two of ten credits left: each coin's three missing days are one call.
    h.set_credits_used(8).await;
    let acted = tick_now(&h, Clock::SYSTEM).await;
    assert_eq!(
        (
            acted.jobs_queued,
            acted.coins_unaffordable,
            acted.coins_behind
        ),
        (2, 1, 3)
    );
    let ticks = sync_schedule::acted_ticks(h.pool()).await.unwrap();
    assert_eq!(ticks.last().unwrap().coins_unaffordable, 1);

    // The clock moves an hour into the next month: its credits are whole again.
    let next_month = first_of_next_month()
        .and_hms_opt(1, 0, 0)
        .unwrap()
        .and_utc();
    let offset = (next_month - Utc::now()).num_milliseconds();
    h.settings.sync_clock_offset_ms = offset;
    let clock = Clock::offset_by_ms(offset);
    let acted = tick_now(&h, clock).await;
    assert_eq!(
        (
            acted.jobs_queued,
            acted.coins_busy,
            acted.coins_unaffordable
        ),
        (1, 2, 0),
        "the coin left over is queued; the others' jobs are still pending"
    );
    let mut queued: Vec<Symbol> = h
        .jobs_by(Trigger::Schedule)
        .await
        .into_iter()
        .map(|job| job.symbol)
        .collect();
    queued.sort();
    queued.dedup();
    assert_eq!(queued.len(), 3, "one job per coin: {queued:?}");
    assert_eq!(
        next_month.date_naive().month(),
        first_of_next_month().month()
    );
}

/// BTC, ETH and SOL: hourly, untracked coins whose hours (built from CoinGecko's points: no
/// second source here) stop three hours ago, so that each one's hours job is one CoinGecko
/// window.
async fn three_hourly_coins_three_hours_behind(h: &Harness) {
    let symbols = [
        Symbol::BTC,
        h.register("ETH", "ethereum").await,
        h.register("SOL", "solana").await,
    ];
    for symbol in symbols {
        sqlx::query("UPDATE coins SET hourly = true WHERE symbol = $1")
            .bind(symbol.as_str())
            .execute(h.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO hourly_prices (symbol, hour, open, high, low, close, volume, source, points) \
             SELECT $1, hour, 1, 1, 1, 1, 0, 'coingecko', 1 FROM generate_series( \
                 date_trunc('hour', now()) - interval '30 hours', \
                 date_trunc('hour', now()) - interval '3 hours', interval '1 hour') hour",
        )
        .bind(symbol.as_str())
        .execute(h.pool())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_tick_over_budget_pays_for_the_hours_of_hourly_coins_too() {
    let h = harness(10).await;
    three_hourly_coins_three_hours_behind(&h).await;
    h.set_credits_used(8).await;

    let acted = tick_now(&h, Clock::SYSTEM).await;

    assert_eq!(
        (acted.jobs_queued, acted.coins_unaffordable),
        (2, 1),
        "two credits pay for two coins' hours, the third waits: {acted:?}"
    );
    assert_eq!(h.jobs_by(Trigger::Schedule).await.len(), 2);
}

/// An audit's finding: the hours part of a tick paid for a coin before finding that a job
/// of it was active, so a busy coin took the credits of the coins after it.
#[tokio::test]
async fn a_tick_pays_nothing_for_an_hourly_coin_whose_job_is_active() {
    let h = harness(10).await;
    three_hourly_coins_three_hours_behind(&h).await;
    let busy = h
        .submit(days_before_today(3), days_before_today(1), false)
        .await;
    h.set_credits_used(8).await;

    let acted = tick_now(&h, Clock::SYSTEM).await;

    assert_eq!(
        (
            acted.jobs_queued,
            acted.coins_busy,
            acted.coins_unaffordable
        ),
        (2, 1, 0),
        "BTC's job is active; two credits pay for ETH's and SOL's hours: {acted:?}"
    );
    assert_eq!(busy.symbol, Symbol::BTC);
}

/// An audit's finding: turning tracking on queued the coin's job whatever the month's
/// credits, though "a job is never started beyond what is left" (INTERFACE). The job waits
/// for the schedule now, as a scheduled coin's does, and `coins add` says so.
#[tokio::test]
async fn turning_tracking_on_beyond_the_months_credits_queues_no_job_and_says_so() {
    let h = harness(10).await;
    h.set_credits_used(9).await;
    let since = days_before_today(700).to_string();

    // The check of a new coin takes the last credit; its eight windows cannot be paid for.
    let output = price_history_command(&h.db.url, &h.fake.base_url())
        .env("COINGECKO_CALLS_PER_MONTH", "10")
        .args([
            "coins", "add", "ETH", "ethereum", "--track", "--since", &since,
        ])
        .output()
        .await
        .unwrap();
    let api = TestApi::start(&h).await;
    let tracked = api
        .put_coin(
            "BTC",
            json!({"coingecko_id": "bitcoin", "tracked": true, "track_since": since}),
        )
        .await;

    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("cannot pay for ETH's missing days now"),
        "{text}"
    );
    tracked.assert_status(StatusCode::OK);
    assert_eq!(h.rows("ingestion_jobs").await, 0, "no job queued");
    assert_eq!(h.fake.call_count(), 1, "ETH's check alone");
    api.stop().await;
}

/// Acts on a tick due now on `clock`, as [`scheduler`] does.
async fn tick_now(h: &Harness, clock: Clock) -> TickRecord {
    let (_stop, running) = Shutdown::new();
    scheduler(h, clock)
        .act_on(clock.now(), false, &running)
        .await
        .unwrap()
        .done()
        .expect("acted on")
}

/// A scheduler on `clock` whose credits are counted on the same clock (as `startup` wires
/// them, from `PH_SYNC_CLOCK_OFFSET_MS`).
fn scheduler(h: &Harness, clock: Clock) -> Scheduler {
    let app = h.app();
    Scheduler {
        pool: h.pool().clone(),
        schedule: "0 40 0 * * *".parse().unwrap(),
        clock,
        reach: h.ingestor().reach,
        name: "credits-test".to_owned(),
        credits: Some(app.credits()),
    }
}

#[tokio::test]
async fn a_clock_moving_into_a_new_month_mid_job_counts_the_new_month() {
    let mut h = harness(20).await;
    let now = Utc::now();
    // A minute before the month ends, by this process's clock.
    let last_minute = first_of_next_month()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - TimeDelta::seconds(60);
    h.settings.sync_clock_offset_ms = (last_minute - now).num_milliseconds();
    let month = CreditMonth::of(last_minute);
    monthly_credits::set_used(
        h.pool(),
        PriceSource::CoinGecko,
        "none",
        month.first_day(),
        20,
    )
    .await
    .unwrap();
    let (start, end) = four_years();
    let spent = h.run_job(start, end, false).await;
    assert_eq!(
        spent.status,
        JobStatus::CompletedWithGaps,
        "the old month is spent"
    );
    assert_eq!(h.fake.call_count(), 0);

    // An hour later by the same clock, the new month counts from zero.
    h.settings.sync_clock_offset_ms += 3_600_000;
    let job = h.submit(start, end, false).await;
    let _worker = h.start_worker();
    h.completes(job.id).await;
    let next = CreditMonth::containing(month.resets_on());
    let used_next = monthly_credits::used(h.pool(), PriceSource::CoinGecko, "none", next)
        .await
        .unwrap();
    assert_eq!(used_next, 17);
}

#[tokio::test]
async fn bad_monthly_credits_or_retention_stop_the_process_with_a_sentence() {
    let h = Harness::new().await;
    for (name, value) in [
        ("COINGECKO_CALLS_PER_MONTH", "-5"),
        ("COINGECKO_CALLS_PER_MONTH", "lots"),
        ("JOB_RETENTION_DAYS", "-1"),
        ("JOB_RETENTION_DAYS", "a month"),
    ] {
        let mut process = h.spawn(&["worker"], &[(name, value)]);
        let code = process.exit_code(std::time::Duration::from_secs(30)).await;
        assert_eq!(code, Some(1), "{name}={value}: {}", process.output());
        let output = process.output();
        assert_mentions(&output, &[name, "whole number"]);
    }
}

/// An audit's finding: these settings were read only after the wait for the database (and
/// a private PostgreSQL's start, and the migrations), so a bad value behind a database that
/// is down was never said: the process waited out the database and blamed it.
#[tokio::test]
async fn bad_settings_are_refused_before_the_database_is_waited_for() {
    let h = Harness::new().await;
    let nothing_there = "postgres://postgres@127.0.0.1:9/price_history";
    for (command, name, value) in [
        ("worker", "JOB_RETENTION_DAYS", "-1"),
        ("migrate", "COINGECKO_CALLS_PER_MONTH", "lots"),
        ("api", "API_TOKEN", " s3cret"),
    ] {
        let settings = [
            (name, value),
            ("DATABASE_URL", nothing_there),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "600"),
        ];
        let mut process = h.spawn(&[command], &settings);
        let code = process.exit_code(std::time::Duration::from_secs(30)).await;
        assert_eq!(
            code,
            Some(1),
            "{command} with {name}={value:?}: {}",
            process.output()
        );
        assert_mentions(&process.output(), &[name]);
    }
}

#[tokio::test]
async fn backfill_exits_2_naming_the_reset_day_when_the_month_cannot_pay() {
    let h = Harness::new().await;
    h.set_credits_used(20).await;
    let (start, end) = four_years();
    let output = crate::support::price_history_command(&h.db.url, &h.fake.base_url())
        .env("COINGECKO_CALLS_PER_MONTH", "20")
        .args(["backfill", "--start-date", &start.to_string()])
        .args(["--end-date", &end.to_string()])
        .output()
        .await
        .unwrap();
    assert_exited_saying(
        &output,
        2,
        &[
            "monthly_credits_exhausted",
            &first_of_next_month().to_string(),
        ],
    );
    assert_eq!(h.fake.call_count(), 0);
    assert_eq!(h.rows("ingestion_jobs").await, 0, "nothing queued");
}

#[tokio::test]
async fn a_coin_check_the_month_cannot_pay_for_is_a_429_and_nothing_is_registered() {
    let h = harness(20).await;
    h.set_credits_used(20).await;
    let api = TestApi::start(&h).await;
    let refused = api
        .put_coin("ETH", json!({"coingecko_id": "ethereum"}))
        .await;
    refused.assert_status(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "monthly_credits_exhausted");
    let reset_day = first_of_next_month().to_string();
    assert_eq!(refused.json()["resets_on"], reset_day.as_str());
    assert_eq!(h.fake.call_count(), 0);
    assert_eq!(h.rows("coins").await, 1, "only BTC");
}

#[tokio::test]
async fn turning_tracking_on_and_track_top_answer_with_the_monthly_cost_and_warn_over_the_month() {
    let mut h = harness(100).await;
    h.settings.sync_schedule = "0 40 0 * * *".parse().unwrap();
    let api = TestApi::start(&h).await;

    let tracked = api
        .put_coin("BTC", json!({"coingecko_id": "bitcoin", "tracked": true}))
        .await;
    tracked.assert_status(StatusCode::OK);
    let cost = &tracked.json()["tracking_cost"];
    assert_eq!(cost["tracked_coins"], 1, "{cost}");
    assert_eq!(cost["tracked_monthly_estimate"], 30, "a call a day: {cost}");
    assert_eq!(cost["calls_per_month"], 100, "{cost}");
    assert!(cost["warning"].is_null(), "{cost}");
    let untouched = api
        .put_coin("BTC", json!({"coingecko_id": "bitcoin", "tracked": true}))
        .await;
    assert!(
        untouched.json().get("tracking_cost").is_none(),
        "only when turned on"
    );

    let import = api
        .post("/api/v1/coins/track-top", Some(json!({"n": 5})), None)
        .await;
    import.assert_status(StatusCode::ACCEPTED);
    let cost = &import.json()["tracking_cost"];
    assert_eq!(cost["tracked_coins"], 6, "at most five more: {cost}");
    assert_eq!(cost["tracked_monthly_estimate"], 180, "{cost}");
    let warning = cost["warning"].as_str().expect("over the month");
    assert!(
        warning.contains("180") && warning.contains("100"),
        "{warning}"
    );
}

/// An audit's finding: the estimate left out hourly coins that are not tracked (the schedule
/// keeps their hours current all the same) and charged a coin whose hours are built from
/// CoinGecko's points a call a day on top of its call a tick, where its job makes one.
#[tokio::test]
async fn the_monthly_estimate_counts_every_coin_the_schedule_keeps_current_at_what_its_jobs_cost() {
    let mut h = harness(100_000).await;
    h.settings.sync_schedule = "0 5 * * * *".parse().unwrap();
    let api = TestApi::start(&h).await;
    let estimate = || async {
        let budget = api.get("/api/v1/budget").await.json();
        let coingecko = &budget["coingecko"];
        (
            coingecko["tracked_coins"].as_i64().unwrap(),
            coingecko["tracked_monthly_estimate"].as_i64().unwrap(),
        )
    };
    assert_eq!(estimate().await, (0, 0));

    // BTC keeps hours, untracked, built from CoinGecko's points (no second source here).
    let hours = api
        .put_coin("BTC", json!({"coingecko_id": "bitcoin", "hourly": true}))
        .await;
    hours.assert_status(StatusCode::OK);
    assert_eq!(
        estimate().await,
        (1, 720),
        "a call a tick, 720 ticks in 30 days"
    );

    let eth = h.register("ETH", "ethereum").await;
    coins::set_tracking(h.pool(), eth, true, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(estimate().await, (2, 750), "a daily coin: a call a day");
}
