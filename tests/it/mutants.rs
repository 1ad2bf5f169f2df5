//! Tests written to kill mutants: bugs the rest of the suite let through (issue 14,
//! `TESTING.md`). Each names the mutant it kills.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{Days, NaiveDate};
use price_history::domain::{JobStatus, Symbol};
use price_history::fake_coingecko::{FakeOptions, ScriptedResponse};
use price_history::ingest::JobError;
use price_history::store::daily_prices;
use rust_decimal::Decimal;

use crate::support::{Harness, days_before_today};

/// `n` consecutive days from `first`.
fn run_of(first: NaiveDate, n: u64) -> Vec<NaiveDate> {
    (0..n)
        .map(|i| first.checked_add_days(Days::new(i)).unwrap())
        .collect()
}

/// A 200 body with the fake's hourly points for `start..=end`, except on `dropped` days:
/// an answer that misses days the next call will have.
fn chart_without(
    h: &Harness,
    start: NaiveDate,
    end: NaiveDate,
    dropped: &HashSet<NaiveDate>,
) -> String {
    let (mut prices, mut volumes) = (Vec::new(), Vec::new());
    for day in start.iter_days().take_while(|day| *day <= end) {
        if dropped.contains(&day) {
            continue;
        }
        for (ms, price, volume) in h.fake.points_for_day(day, true) {
            prices.push(format!("[{ms},{price}]"));
            volumes.push(format!("[{ms},{volume}]"));
        }
    }
    format!(
        r#"{{"prices":[{}],"market_caps":[],"total_volumes":[{}]}}"#,
        prices.join(","),
        volumes.join(",")
    )
}

/// The stored closes of the symbol, by day.
async fn closes(h: &Harness, start: NaiveDate, end: NaiveDate) -> Vec<(NaiveDate, Decimal)> {
    daily_prices::list(h.pool(), Symbol::BTC, start, end)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.date, row.close))
        .collect()
}

/// Kills `src/ingest/job.rs`: `windows_for_days(&fillable, self.chunk_days)` ->
/// `windows_for_days(&fillable, 1)` (one fill call per missing day).
#[tokio::test]
async fn runs_missing_from_the_first_answer_are_filled_with_one_call_per_run() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(30), days_before_today(1));
    let three = run_of(days_before_today(20), 3);
    let four = run_of(days_before_today(10), 4);
    let dropped: HashSet<NaiveDate> = three.iter().chain(&four).copied().collect();
    h.fake.push_response(ScriptedResponse::status(
        200,
        chart_without(&h, start, end, &dropped),
    ));

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.stored_days().await, 30, "the fills stored the 7 days");
    let calls: Vec<(NaiveDate, NaiveDate)> = h
        .fake
        .calls()
        .iter()
        .map(|c| (c.from.date_naive(), c.to.date_naive()))
        .collect();
    assert_eq!(
        calls,
        vec![(start, end), (three[0], three[2]), (four[0], four[3]),],
        "the window, then exactly one call per run of missing days"
    );
    assert_eq!((job.chunks_done, job.chunks_total), (3, 3));
    assert_eq!(job.records_fetched, 30);
}

/// Kills `src/store/queue_lease.rs`: `hold` -> `Ok(true)` (the lease fence off). A worker
/// frozen (SIGSTOP) past its lease with its CoinGecko call in flight is taken over; the
/// worker that took over stores newer prices and ends the job; the frozen one is resumed
/// (SIGCONT), gets its stale answer and tries to write it: it must write nothing.
#[tokio::test]
async fn a_worker_frozen_past_its_lease_cannot_overwrite_what_the_worker_that_took_over_stored() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(10), days_before_today(1));
    // The first answer is held back 2 s, so that the worker is frozen with it in flight.
    h.fake.set_delay(Duration::from_secs(2));
    // Forced: a write replaces stored days, so a stale write would show in the prices.
    let job = h.submit(start, end, true).await;
    // The shortest lease (2 s) keeps the freeze under the pool's 5 s acquire timeout: a
    // query the worker had in flight when frozen must not time out when it is resumed
    // (that makes apalis restart the worker, which drops the attempt before it writes).
    let lease = ("JOB_LEASE_SECS", "2");
    let stale = h.spawn(&["worker"], &[lease, ("COINGECKO_TIMEOUT_SECS", "300")]);
    h.fake.wait_for_calls(1).await;
    stale.signal("STOP");
    let frozen_at = std::time::Instant::now();
    let stale_holder = h
        .holder(job.id)
        .await
        .expect("the frozen worker holds the job");
    assert!(stale.owns(&stale_holder));

    // From now on CoinGecko answers at once, with prices 25 % up.
    h.fake.set_delay(Duration::ZERO);
    h.fake.set_price_shift(Decimal::new(125, 2));
    let mut other = h.spawn(&["worker"], &[lease]);
    let finished = h
        .wait_for(job.id, "the other worker ends the job", |j| {
            j.status.is_terminal()
        })
        .await;
    assert_eq!(finished.status, JobStatus::Completed, "{}", other.output());
    assert_eq!(finished.attempts, 2, "taken over once");
    let stored = closes(&h, start, end).await;
    assert_eq!(stored.len(), 10);
    for (day, close) in &stored {
        let truth = h.fake.points_for_day(*day, true).last().unwrap().1;
        assert_eq!(
            *close, truth,
            "the new worker stored the new price of {day}"
        );
    }

    stale.signal("CONT");
    println!("the stale worker was frozen {:.2?}", frozen_at.elapsed());
    let said = stale
        .wait_for_output(
            "the resumed worker to end its window",
            Duration::from_secs(60),
            |out| out.contains("window stored") || out.contains("another worker holds this job"),
        )
        .await;

    assert_eq!(
        closes(&h, start, end).await,
        stored,
        "the stale answer overwrote the prices the new worker stored:\n{said}"
    );
    assert!(
        said.contains("another worker holds this job now; stopping without writing"),
        "{said}"
    );
    let after = h.job(job.id).await;
    assert_eq!(
        (after.status, after.chunks_done, after.records_fetched),
        (
            finished.status,
            finished.chunks_done,
            finished.records_fetched
        ),
        "the stale worker left the record alone"
    );
    assert!(other.is_running());
}

/// Kills `src/store/queue_lease.rs`: `held_by_live_workers` -> `Ok(vec![])` (and the
/// other made-up lists): the orphan sweep would take a job from a worker that is alive
/// but whose one call outlasts the lease, and the job would read `pending`, "its worker
/// stopped answering", while that worker still runs it.
#[tokio::test]
async fn a_live_worker_whose_call_outlasts_the_lease_keeps_its_job_running() {
    let h = Harness::new().await;
    // The one answer is held 9 s: past the 5 s lease and several of the sweep's 1.7 s ticks.
    h.fake.set_delay(Duration::from_secs(9));
    let day = days_before_today(3);
    let job = h.submit(day, day, false).await;
    let worker = h.spawn(&["worker"], &[]);
    let seen = std::sync::Mutex::new(Vec::new());

    let finished = h
        .wait_for(job.id, "the job ends", |j| {
            seen.lock().unwrap().push(j.status);
            j.status.is_terminal()
        })
        .await;

    assert_eq!(finished.status, JobStatus::Completed, "{}", worker.output());
    let seen = seen.into_inner().unwrap();
    let since_started: Vec<JobStatus> = seen
        .iter()
        .copied()
        .skip_while(|s| *s != JobStatus::Running)
        .collect();
    assert!(
        !since_started.contains(&JobStatus::Pending),
        "the running job read pending while its worker was alive: {seen:?}\n{}",
        worker.output()
    );
    assert_eq!(finished.attempts, 1);
    assert_eq!(h.fake.call_count(), 1);
}

/// Kills `src/store/gaps.rs`: `from > end` -> `from >= end` in `coverage`: a one-day
/// range would expect no day at all.
#[tokio::test]
async fn coverage_of_one_missing_day_expects_that_day() {
    let db = crate::support::TestDb::new().await;
    let day = days_before_today(5);

    let coverage = price_history::store::gaps::coverage(
        &db.pool,
        &price_history::domain::Coin::bitcoin(),
        price_history::domain::PlanReach::UNLIMITED,
        price_history::domain::today_utc(),
        day,
        day,
    )
    .await
    .unwrap();

    assert_eq!(
        (
            coverage.total_expected_days,
            coverage.total_stored_days,
            coverage.gap_dates,
            coverage.coverage_percent
        ),
        (1, 0, vec![day], 0.0)
    );
}

/// Kills `src/coingecko/budget.rs`, `CallLimiter::acquire`: the match guard
/// `is_unavailable(&e) && began.elapsed() < DATABASE_PATIENCE` -> `true`, and `&&` -> `||`.
/// A database error that is not an outage (here the budget's table is gone) must fail the
/// attempt at once, without a call; the mutants wait on it, forever or for two minutes.
#[tokio::test]
async fn budget_error_that_is_no_outage_fails_the_slot_at_once_without_a_call() {
    use price_history::coingecko::{CallBudget, CallLimiter};
    let h = Harness::new().await;
    sqlx::query("DROP TABLE coingecko_call_budget")
        .execute(h.pool())
        .await
        .unwrap();
    let limiter = CallLimiter::new(CallBudget::Shared(h.pool().clone()), 600, None);

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

/// Kills `src/schedule/mod.rs`, `Scheduler::run`: `now >= next` -> `now < next` (the wait
/// for a tick's time skipped: every tick to come acted on at once, the schedule run
/// ahead of the clock). Ticks are acted on one by one, each at or after its time.
#[tokio::test]
async fn schedule_acts_on_no_tick_before_it_is_due() {
    use chrono::TimeDelta;
    use price_history::schedule::{Clock, Scheduler};
    use price_history::store::sync_schedule;
    let h = Harness::new().await;
    let scheduler = Scheduler {
        pool: h.pool().clone(),
        schedule: "* * * * * *".parse().unwrap(),
        clock: Clock::SYSTEM,
        reach: h.ingestor().reach,
        max_attempts: 3,
        name: "in-process".to_owned(),
    };
    let (stop, stopped) = price_history::shutdown::Shutdown::new();
    let began = chrono::Utc::now();
    let running = tokio::spawn(scheduler.run(stopped));

    // Three ticks: the catch-up one and the two that follow.
    let acted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let acted = sync_schedule::acted_ticks(h.pool()).await.unwrap();
            if acted.len() >= 3 {
                return acted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("three ticks of a one-second schedule within 30 s");
    let ended = chrono::Utc::now();
    stop.raise();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the scheduler stops when told")
        .unwrap();

    for tick in &acted {
        assert!(
            tick.tick <= tick.acted_at + TimeDelta::milliseconds(100),
            "tick {} acted on at {}, before its time: {acted:#?}",
            tick.tick,
            tick.acted_at
        );
        assert!(tick.tick <= ended, "{acted:#?}");
    }
    assert!(ended - began >= TimeDelta::seconds(1), "{acted:#?}");
}

/// Kills `src/schedule/mod.rs`, `Scheduler::act_on`: the match guard
/// `e.downcast_ref::<sqlx::Error>().is_some() || e.downcast_ref::<SubmitError>().is_some()`
/// -> `false`, and `||` -> `&&`. A database error while queuing a coin's job must fail the
/// whole tick and roll its claim back, so that the tick is tried again; the mutants log
/// it, record the tick as acted on, and the coin waits for the next tick.
#[tokio::test]
async fn schedule_a_database_error_fails_the_whole_tick_and_frees_it_for_a_retry() {
    use chrono::{Timelike, Utc};
    use price_history::schedule::{Clock, Scheduler};
    use price_history::store::{coins, sync_schedule};
    let h = Harness::new().await;
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(days_before_today(3)))
        .await
        .unwrap()
        .unwrap();
    sqlx::query(
        "CREATE FUNCTION refuse_jobs() RETURNS trigger AS $$ \
         BEGIN RAISE EXCEPTION 'no job today'; END $$ LANGUAGE plpgsql",
    )
    .execute(h.pool())
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_jobs BEFORE INSERT ON ingestion_jobs \
         FOR EACH ROW EXECUTE FUNCTION refuse_jobs()",
    )
    .execute(h.pool())
    .await
    .unwrap();
    let scheduler = Scheduler {
        pool: h.pool().clone(),
        schedule: "* * * * * *".parse().unwrap(),
        clock: Clock::SYSTEM,
        reach: h.ingestor().reach,
        max_attempts: 3,
        name: "in-process".to_owned(),
    };
    let tick = Utc::now().with_nanosecond(0).unwrap();

    let acted = scheduler.act_on(tick, false).await;

    assert!(acted.is_err(), "the tick fails: {acted:?}");
    assert_eq!(
        sync_schedule::last_tick(h.pool()).await.unwrap(),
        None,
        "its claim is rolled back"
    );
    assert!(
        sync_schedule::acted_ticks(h.pool())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Kills `src/ingest/job.rs`, `From<sqlx::Error> for JobError`: the guard on SQLSTATE
/// class 22/23 -> `true` or `false`, and `||` -> `&&`. A row the table refuses is refused
/// again however often it is fetched (permanent, said without PostgreSQL's text); any
/// other database error may pass (transient: the job goes back on the queue).
#[tokio::test]
async fn a_row_the_table_refuses_fails_the_job_and_other_database_errors_retry_it() {
    let h = Harness::new().await;
    let pool = h.pool();
    let error_of = |sql: &'static str| async move {
        sqlx::query(sql)
            .execute(pool)
            .await
            .expect_err("PostgreSQL refuses it")
    };

    let broken_rule = JobError::from(
        error_of(
            r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
               VALUES ('BTC', '2024-01-01', 0, 0, 0, 0, 1, now())"#,
        )
        .await,
    );
    let bad_value = JobError::from(error_of("SELECT 1 / 0").await);
    let no_table = JobError::from(error_of("SELECT * FROM no_such_table").await);

    let JobError::Permanent(message) = broken_rule else {
        panic!("class 23 (a CHECK broken) is permanent: {broken_rule:?}");
    };
    assert!(
        message.contains("broke a rule of the table (daily_prices_prices_positive)"),
        "{message}"
    );
    assert!(!message.contains("violates"), "{message}");
    assert!(
        matches!(bad_value, JobError::Permanent(_)),
        "class 22 (division by zero) is permanent: {bad_value:?}"
    );
    assert!(
        matches!(no_table, JobError::Transient(_)),
        "class 42 is no fault of the data: {no_table:?}"
    );
}

/// Kills `src/ingest/job.rs`, `Ingestor::run`: the plan loop's guard `!learned` -> `true`.
/// A 10012 answer within the reach the first 10012 taught must fail the job at once; with
/// the guard gone it would learn the same reach again and again, a refused call each time.
#[tokio::test]
async fn a_second_10012_within_the_reach_it_taught_fails_the_job_after_two_calls() {
    // The fake refuses `from` older than 30 days, but its 10012 sentence says 365: a plan
    // narrower than CoinGecko's own words.
    let h = Harness::with_fake(FakeOptions {
        history_limit_days: Some(30),
        ..FakeOptions::default()
    })
    .await;
    let (start, end) = (days_before_today(100), days_before_today(1));

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error_message);
    let message = job.error_message.unwrap_or_default();
    assert!(
        message.contains("even within the reach it taught before (365 days)"),
        "{message}"
    );
    assert!(message.contains("COINGECKO_HISTORY_DAYS"), "{message}");
    let statuses: Vec<u16> = h.fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![401, 401],
        "one call to learn, one to find it wrong"
    );
    assert_eq!(h.stored_days().await, 0);
}

/// Kills `src/ingest/job.rs`, `Ingestor::run`: `delete !` in the gap fill's `if !learned`.
/// A 10012 first met by a gap-fill call must teach the reach like one met by a window,
/// or every later job spends a refused call to learn it again.
#[tokio::test]
async fn a_10012_met_first_by_a_gap_fill_teaches_the_reach() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(30), days_before_today(1));
    let three = run_of(days_before_today(20), 3);
    let dropped: HashSet<NaiveDate> = three.iter().copied().collect();
    h.fake.push_response(ScriptedResponse::status(
        200,
        chart_without(&h, start, end, &dropped),
    ));
    h.fake
        .push_response(ScriptedResponse::history_limit_exceeded());

    let job = h.run_job(start, end, false).await;

    let statuses: Vec<u16> = h.fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![200, 401],
        "the window, then the refused fill"
    );
    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(
        job.gap_dates, three,
        "within 365 days: gaps, not out of plan"
    );
    let reach = h.ingestor().reach.current(h.pool()).await.unwrap();
    assert_eq!(
        reach.limit_days(),
        Some(365),
        "the fill's 10012 taught the reach"
    );
}

/// Kills `src/ingest/job.rs`, `Ingestor::patiently`: the guard
/// `is_unavailable(&e) && began.elapsed() < DATABASE_PATIENCE` -> `true` (and `&&` ->
/// `||`). Only an unavailable database is waited for; a write the table refuses fails the
/// job at once, with the rule's name and without PostgreSQL's text.
#[tokio::test]
async fn a_write_the_table_refuses_fails_the_job_at_once_instead_of_being_waited_on() {
    let h = Harness::new().await;
    sqlx::raw_sql(
        r#"CREATE FUNCTION refuse_prices() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation',
                   CONSTRAINT = 'a_rule_of_the_test';
           END $$;
           CREATE TRIGGER refuse_prices BEFORE INSERT ON daily_prices
               FOR EACH ROW EXECUTE FUNCTION refuse_prices();"#,
    )
    .execute(h.pool())
    .await
    .unwrap();
    let (start, end) = (days_before_today(10), days_before_today(1));

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error_message);
    let message = job.error_message.unwrap_or_default();
    assert!(
        message.contains("broke a rule of the table (a_rule_of_the_test)"),
        "{message}"
    );
    assert!(!message.contains("refused by the test"), "{message}");
    assert_eq!(job.attempts, 1, "a refused row is not retried");
    assert_eq!(h.fake.call_count(), 1, "the window is not fetched again");
    assert_eq!(h.stored_days().await, 0);
}

/// Kills `src/store/ingestion_jobs.rs`, `finish`: `rows_affected() == 1` -> `!= 1`. Ending
/// a job says whether it did; a job cancelled meanwhile keeps its `cancelled`.
#[tokio::test]
async fn finishing_a_job_cancelled_meanwhile_changes_nothing_and_says_so() {
    use price_history::store::ingestion_jobs::{self, Cancelled, Ending};
    let h = Harness::new().await;
    let ending = Ending {
        status: JobStatus::Completed,
        gap_dates: &[],
        out_of_plan_days: 0,
        message: None,
    };
    let cancelled = h
        .submit(days_before_today(3), days_before_today(1), false)
        .await;
    let Cancelled::Now(_) = ingestion_jobs::cancel(h.pool(), cancelled.id)
        .await
        .unwrap()
    else {
        panic!("a pending job can be cancelled");
    };
    let active = h
        .submit(days_before_today(3), days_before_today(1), false)
        .await;

    let ended_cancelled = ingestion_jobs::finish(h.pool(), cancelled.id, ending)
        .await
        .unwrap();
    let ended_active = ingestion_jobs::finish(h.pool(), active.id, ending)
        .await
        .unwrap();

    assert!(!ended_cancelled, "a cancelled job is not ended again");
    assert_eq!(h.job(cancelled.id).await.status, JobStatus::Cancelled);
    assert!(ended_active, "an active job is ended");
    assert_eq!(h.job(active.id).await.status, JobStatus::Completed);
}

/// Kills `src/store/ingestion_jobs.rs`: `release -> Ok(())`. An attempt that failed and
/// will be retried hands its job back as `pending`, saying why, before the next attempt
/// takes it. Every state the record passes through is kept by a trigger, since the
/// retry follows too fast for a listener to be sure to see it.
#[tokio::test]
async fn a_failed_attempt_hands_its_job_back_as_pending_saying_why() {
    let h = Harness::new().await;
    sqlx::raw_sql(
        r#"CREATE TABLE job_states (n bigserial PRIMARY KEY, status text, attempts int, error_message text);
           CREATE FUNCTION keep_job_state() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO job_states (status, attempts, error_message)
                   VALUES (NEW.status, NEW.attempts, NEW.error_message);
               RETURN NEW;
           END $$;
           CREATE TRIGGER keep_job_state AFTER UPDATE OF status ON ingestion_jobs
               FOR EACH ROW EXECUTE FUNCTION keep_job_state();"#,
    )
    .execute(h.pool())
    .await
    .unwrap();
    // The call and its 3 retries fail: attempt 1 fails; attempt 2 finds CoinGecko well.
    for _ in 0..4 {
        h.fake
            .push_response(ScriptedResponse::status(503, "Service Unavailable"));
    }

    let job = h
        .run_job(days_before_today(10), days_before_today(1), false)
        .await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    let states: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT status, attempts, error_message FROM job_states ORDER BY n")
            .fetch_all(h.pool())
            .await
            .unwrap();
    let handed_back = states
        .iter()
        .position(|(status, attempts, _)| status == "pending" && *attempts == 1)
        .unwrap_or_else(|| panic!("attempt 1 handed the job back: {states:?}"));
    let message = states[handed_back].2.clone().unwrap_or_default();
    assert!(
        message.starts_with("attempt 1 of 3 failed and will be retried") && message.contains("503"),
        "{message}"
    );
    assert!(
        states[handed_back + 1..]
            .iter()
            .any(|(status, attempts, _)| status == "running" && *attempts == 2),
        "{states:?}"
    );
}

/// Kills `src/queue/worker.rs`, `run_worker`: `restarts == 0` -> `!=`. A worker holds its
/// jobs under the name it was given; only a restarted one takes a new name (`-r1`...), so
/// that it never passes for the instance whose lock may still be held.
#[tokio::test]
async fn a_worker_holds_its_job_under_the_name_it_was_given() {
    let h = Harness::new().await;
    // The answer is held back, so that the job is held while the test looks.
    h.fake.set_delay(Duration::from_secs(1));
    let job = h
        .submit(days_before_today(3), days_before_today(1), false)
        .await;
    let name = format!("named-by-the-test-{}", job.id.simple());
    let worker = h.start_worker_named(name.clone());

    h.fake.wait_for_calls(1).await;
    let holder = h.holder(job.id).await;
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    assert_eq!(holder.as_deref(), Some(name.as_str()));
    assert_eq!(finished.status, JobStatus::Completed);
}

/// Kills `src/queue/worker.rs`, `wake_ups`: `Poll::Pending if woken` -> `true` (an idle
/// worker would poll the database in a loop) and -> `false` (a wake-up would be taken
/// and lost, the job left for the next heartbeat), the guard `is_for_our_queue(..)` ->
/// `true` and `is_for_our_queue -> true` (another queue's jobs would wake it). The stream
/// is read directly: once when listening, once per job of our queue, never otherwise.
#[tokio::test]
async fn an_idle_worker_is_woken_once_listening_and_then_only_by_jobs_of_its_queue() {
    use futures::StreamExt;
    let h = Harness::new().await;
    let notify = |job_type: &'static str| {
        sqlx::query("SELECT pg_notify('apalis::job::insert', $1)")
            .bind(serde_json::json!({ "job_type": job_type }).to_string())
            .execute(h.pool())
    };
    let mut wake_ups = price_history::queue::wake_ups(h.pool().clone());
    // Absence is asserted over a bounded wait: long beside a wake-up, which comes at once.
    let quiet = Duration::from_millis(300);

    let listening = tokio::time::timeout(Duration::from_secs(5), wake_ups.next()).await;
    let uncaused = tokio::time::timeout(quiet, wake_ups.next()).await;
    notify("another-queue").await.unwrap();
    let by_another_queue = tokio::time::timeout(quiet, wake_ups.next()).await;
    notify(price_history::queue::QUEUE).await.unwrap();
    let by_ours = tokio::time::timeout(Duration::from_secs(5), wake_ups.next()).await;

    assert_eq!(listening, Ok(Some(())), "woken once listening");
    assert!(uncaused.is_err(), "no wake-up without a cause");
    assert!(
        by_another_queue.is_err(),
        "another queue's job wakes nobody"
    );
    assert_eq!(by_ours, Ok(Some(())), "a job of our queue wakes the worker");
}

/// Kills `src/queue/worker.rs`, `handle`: `attempts > max_attempts + MAX_TAKEOVERS` ->
/// `>=`. A job started exactly as often as allowed still runs; only one more is refused
/// (`jobs::a_job_started_too_many_times_...`).
#[tokio::test]
async fn a_job_started_as_often_as_allowed_still_runs() {
    let h = Harness::new().await;
    let job = h
        .submit(days_before_today(3), days_before_today(1), false)
        .await;
    let limit = h.settings.job_max_attempts + price_history::queue::MAX_TAKEOVERS;
    // This start will be number `limit`.
    sqlx::query("UPDATE ingestion_jobs SET attempts = $2 WHERE id = $1")
        .bind(job.id)
        .bind(limit as i32 - 1)
        .execute(h.pool())
        .await
        .unwrap();

    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "{:?}",
        finished.error_message
    );
    assert_eq!(finished.attempts, limit as i32);
}
