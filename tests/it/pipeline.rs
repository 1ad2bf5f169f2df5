//! The job's algorithm end to end: windows, calls, aggregation, gaps, force, errors.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{Days, NaiveDate};
use fake_upstream::coingecko::{FakeOptions, ScriptedResponse};
use price_history::domain::{Coin, JobStatus, PlanReach, Symbol, today_utc};
use price_history::ingest::JobError;
use price_history::store::daily_prices;
use price_history::store::gaps::{self, Coverage};
use price_history::store::ingestion_jobs::JobRecord;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::support::{Churn, Harness, assert_mentions, days_before_today, sql};

/// The stored close of a day.
async fn close_of(h: &Harness, date: NaiveDate) -> Decimal {
    sqlx::query_scalar("SELECT close FROM daily_prices WHERE symbol = 'BTC' AND date = $1")
        .bind(date)
        .fetch_one(h.pool())
        .await
        .expect("the day is stored")
}

/// Checks that the job failed with a message saying each of `phrases`, and returns it.
fn assert_failed_saying(job: &JobRecord, phrases: &[&str]) -> String {
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error_message);
    let message = job.error_message.clone().unwrap_or_default();
    assert_mentions(&message, phrases);
    message
}

/// The statuses the fake answered with, in the order of the calls.
fn statuses(h: &Harness) -> Vec<u16> {
    h.fake.calls().iter().map(|c| c.status).collect()
}

async fn delete_days(h: &Harness, first: NaiveDate, days: u64) {
    let last = first.checked_add_days(Days::new(days - 1)).unwrap();
    let deleted = sqlx::query("DELETE FROM daily_prices WHERE date BETWEEN $1 AND $2")
        .bind(first)
        .bind(last)
        .execute(h.pool())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, days, "the hole was made");
}

/// BTC's coverage of `start..=end` with no plan limit, judged on `today`.
async fn btc_coverage(
    pool: &PgPool,
    today: NaiveDate,
    start: NaiveDate,
    end: NaiveDate,
) -> Coverage {
    gaps::coverage(
        pool,
        &Coin::bitcoin(),
        PlanReach::UNLIMITED,
        today,
        start,
        end,
    )
    .await
    .expect("the coverage reads")
}

#[tokio::test]
async fn a_1461_day_backfill_stores_every_day_with_17_calls() {
    let h = Harness::new().await;
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(1460)).unwrap();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.fake.call_count(), 17);
    assert_eq!(h.stored_days().await, 1461);
    assert_eq!(
        (job.chunks_done, job.chunks_total, job.records_fetched),
        (17, 17, 1461)
    );
    assert!(job.gap_dates.is_empty());
    for call in h.fake.calls() {
        assert!(
            call.to - call.from < chrono::Duration::days(90),
            "every call stays in the hourly band: {call:?}"
        );
    }
}

#[tokio::test]
async fn stored_candles_are_the_first_max_min_and_last_of_the_days_hourly_points() {
    let h = Harness::new().await;
    let day = days_before_today(10);

    h.run_job(day, day, false).await;

    let points = h.fake.points_for_day(day, true);
    assert!(points.len() >= 20, "an hourly day has about 24 points");
    let prices: Vec<Decimal> = points.iter().map(|p| p.1).collect();
    let stored = daily_prices::list(h.pool(), Symbol::BTC, day, day)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let row = &stored[0];
    assert_eq!(row.open, prices[0]);
    assert_eq!(row.close, *prices.last().unwrap());
    assert_eq!(row.high, *prices.iter().max().unwrap());
    assert_eq!(row.low, *prices.iter().min().unwrap());
    assert_eq!(row.volume, points.last().unwrap().2);
    assert!(!row.provisional);
}

#[tokio::test]
async fn a_rerun_with_nothing_missing_makes_no_calls() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(200), days_before_today(1));
    h.run_job(start, end, false).await;
    let calls_before = h.fake.call_count();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(h.fake.call_count(), calls_before, "no call at all");
    assert_eq!(
        (job.chunks_done, job.chunks_total, job.records_fetched),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn holes_of_1_5_and_120_days_are_refilled_with_exactly_4_calls() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(400), days_before_today(1));
    h.run_job(start, end, false).await;
    let truth = close_of(&h, days_before_today(300)).await;
    delete_days(&h, days_before_today(390), 1).await;
    delete_days(&h, days_before_today(350), 5).await;
    delete_days(&h, days_before_today(320), 120).await;
    let calls_before = h.fake.call_count();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.fake.call_count() - calls_before, 4);
    assert_eq!(h.stored_days().await, 400);
    assert_eq!(job.records_fetched, 126);
    assert_eq!(close_of(&h, days_before_today(300)).await, truth);
}

#[tokio::test]
async fn force_updates_changed_prices_without_duplicating_rows() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(30), days_before_today(1));
    h.run_job(start, end, false).await;
    let day = days_before_today(15);
    let old_close = close_of(&h, day).await;
    h.fake.set_price_shift(Decimal::new(125, 2)); // prices move 25 % up

    let unforced = h.run_job(start, end, false).await;
    assert_eq!(unforced.records_fetched, 0);
    assert_eq!(
        close_of(&h, day).await,
        old_close,
        "not forced: stored days are left alone"
    );
    let job = h.run_job(start, end, true).await;

    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(h.stored_days().await, 30, "no row doubled");
    let new_close = close_of(&h, day).await;
    assert_ne!(new_close, old_close);
    assert_eq!(
        new_close,
        h.fake.points_for_day(day, true).last().unwrap().1
    );
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_job_completes() {
    let h = Harness::new().await;
    h.fake.push_response(ScriptedResponse::status(
        503,
        r#"{"error":"upstream unavailable"}"#,
    ));

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(h.fake.call_count(), 2);
    assert_eq!(job.attempts, 1, "retried inside the call, not by the queue");
    assert_eq!(h.stored_days().await, 10);
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_then_succeeds() {
    let h = Harness::new().await;
    h.fake.push_response(
        ScriptedResponse::status(
            429,
            r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#,
        )
        .with_header("retry-after", "1"),
    );

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Completed);
    let calls = h.fake.calls();
    assert_eq!(calls.len(), 2);
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "waited {waited:?}, Retry-After said 1 s"
    );
}

#[tokio::test]
async fn error_10012_teaches_the_reach_and_the_job_ends_out_of_plan_without_retries() {
    let h = Harness::new().await;
    h.fake
        .push_response(ScriptedResponse::history_limit_exceeded());

    let job = h
        .run_job(days_before_today(500), days_before_today(450), false)
        .await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(h.fake.call_count(), 1, "no retry of any kind");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.out_of_plan_days, 51);
    assert!(job.gap_dates.is_empty(), "{:?}", job.gap_dates);
    let message = job.error_message.expect("a reason");
    assert!(
        message.contains("past 365 days") && message.contains("COINGECKO_API_KEY"),
        "says what to do: {message}"
    );
    assert_eq!(h.stored_days().await, 0);
}

#[tokio::test]
async fn a_body_that_does_not_parse_fails_the_job_with_what_coingecko_sent() {
    let h = Harness::new().await;
    h.fake.push_response(ScriptedResponse::status(
        200,
        "<html>Just a moment...</html>",
    ));

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(h.fake.call_count(), 1);
    assert!(job.error_message.unwrap().contains("Just a moment"));
    assert_eq!(h.stored_days().await, 0, "nothing half-written");
}

#[tokio::test]
async fn calls_are_spaced_by_at_least_60_over_the_rate() {
    let mut h = Harness::new().await;
    h.settings.coingecko_calls_per_minute = std::num::NonZeroU32::new(600).unwrap(); // one call per 100 ms

    h.run_days_to_yesterday(450).await;

    // Each call waits for its own slot, 100 ms after the one before: a call is never
    // early, though one woken a little late shortens the gap to the next (which is on
    // time). So any k calls span at least (k - 1) slots, less one late wake-up.
    const LATE_WAKE_UP: Duration = Duration::from_millis(60);
    let calls = h.fake.calls();
    assert_eq!(calls.len(), 5);
    for (i, first) in calls.iter().enumerate() {
        for (k, later) in calls.iter().enumerate().skip(i + 1) {
            let span = later.at - first.at;
            let slots = Duration::from_millis(100) * (k - i) as u32;
            assert!(
                span + LATE_WAKE_UP >= slots,
                "calls {i} and {k} came {span:?} apart, the budget allows one per 100 ms"
            );
        }
    }
}

#[tokio::test]
async fn a_day_coingecko_has_no_data_for_is_asked_once_more_then_reported_as_a_gap() {
    let h = Harness::new().await;
    let hole = days_before_today(12);
    h.fake.set_missing_days([hole]);

    let job = h.run_days_to_yesterday(30).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.gap_dates, vec![hole]);
    assert_eq!(job.gaps_detected, 1);
    assert_eq!(
        h.fake.call_count(),
        2,
        "the window, then one call for the one-day run"
    );
    let retry = &h.fake.calls()[1];
    assert_eq!(retry.from.date_naive(), hole);
    assert!(job.error_message.unwrap().contains(&hole.to_string()));
}

#[tokio::test]
async fn a_range_ending_today_stores_a_provisional_row_that_still_counts_as_missing() {
    let h = Harness::new().await;
    let today = today_utc();

    let job = h.run_job(days_before_today(2), today, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.gap_dates, vec![today]);
    assert_eq!(
        h.fake.call_count(),
        1,
        "no call is spent refilling a day that is not over"
    );
    let rows = daily_prices::list(h.pool(), Symbol::BTC, today, today)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].provisional);
    let coverage = btc_coverage(h.pool(), today, days_before_today(2), today).await;
    assert_eq!(
        (coverage.total_expected_days, coverage.total_stored_days),
        (3, 2)
    );
}

#[tokio::test]
async fn coverage_counts_stored_days_and_lists_the_gaps() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(40), days_before_today(1));
    h.run_job(start, end, false).await;
    delete_days(&h, days_before_today(20), 3).await;

    let coverage = btc_coverage(h.pool(), today_utc(), start, end).await;

    assert_eq!(coverage.total_expected_days, 40);
    assert_eq!(coverage.total_stored_days, 37);
    assert_eq!(
        coverage.gap_dates,
        vec![
            days_before_today(20),
            days_before_today(19),
            days_before_today(18)
        ]
    );
    assert_eq!(coverage.coverage_percent, 92.5);
}

/// An audit's finding: days after today were expected and listed as gaps, which no job
/// may fetch (`end_in_future`), while `/api/v1/days` marks them `-` (not expected).
#[tokio::test]
async fn coverage_reaching_past_today_expects_no_day_after_it() {
    let h = Harness::new().await;
    let today = today_utc();
    h.run_job(days_before_today(9), days_before_today(1), false)
        .await;
    let later = today.checked_add_days(Days::new(10)).unwrap();

    let coverage = btc_coverage(h.pool(), today, days_before_today(9), later).await;

    assert_eq!(
        (coverage.total_expected_days, coverage.total_stored_days),
        (10, 9),
        "up to today, which is not over"
    );
    assert_eq!(coverage.gap_dates, vec![today]);
    assert_eq!(coverage.end, later, "the range as asked");
}

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

/// Kills `src/ingest/job/fill.rs`: `windows_for_days(&fillable, self.source.window_days())`
/// -> `windows_for_days(&fillable, 1)` (one fill call per missing day).
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

/// Ten of the coin's days turn provisional and back, each time in a transaction of its own.
const FLIP_TEN_DAYS: &str = "UPDATE daily_prices SET provisional = NOT provisional \
     WHERE symbol = 'BTC' AND date BETWEEN (now() AT TIME ZONE 'UTC')::date - 30 \
     AND (now() AT TIME ZONE 'UTC')::date - 21";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_read_while_a_job_writes_adds_up() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(40), days_before_today(1));
    h.run_job(start, end, false).await;
    let churn = Churn::start(h.pool(), FLIP_TEN_DAYS).await;

    let mut stored_seen = HashSet::new();
    for _ in 0..300 {
        let coverage = btc_coverage(h.pool(), today_utc(), start, end).await;
        let by_source: i64 = coverage.days_by_source.iter().map(|(_, n)| n).sum();
        assert_eq!(
            (by_source, coverage.gap_dates.len() as i64),
            (
                coverage.total_stored_days,
                coverage.total_expected_days - coverage.total_stored_days
            ),
            "the days by source and the gaps add up to the days stored and missing: {coverage:?}"
        );
        stored_seen.insert(coverage.total_stored_days);
    }
    churn
        .stop_where_each_read_saw_one_of(&stored_seen, [30, 40])
        .await;
}

/// Kills `src/store/gaps.rs`: `from > end` -> `from >= end` in `coverage`: a one-day
/// range would expect no day at all.
#[tokio::test]
async fn coverage_of_one_missing_day_expects_that_day() {
    let db = crate::support::TestDb::new().await;
    let day = days_before_today(5);

    let coverage = btc_coverage(&db.pool, today_utc(), day, day).await;

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

/// Kills `src/ingest/job/outcome.rs`, `From<sqlx::Error> for JobError`: the guard on SQLSTATE
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

/// Kills `src/ingest/job/fetch.rs`, `Run::fetch`: the plan loop's guard `learned` -> `false`.
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

    assert_failed_saying(
        &job,
        &[
            "even within the reach it taught before (365 days)",
            "COINGECKO_HISTORY_DAYS",
        ],
    );
    let statuses = statuses(&h);
    assert_eq!(
        statuses,
        vec![401, 401],
        "one call to learn, one to find it wrong"
    );
    assert_eq!(h.stored_days().await, 0);
}

/// Kills `src/ingest/job/run.rs`, `Run::learn_reach`: `if self.learned` -> `true`, and
/// `src/ingest/job/fill.rs`: the gap fill's `learn_reach` call deleted.
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

    let statuses = statuses(&h);
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

/// Kills `src/store/patience.rs`, `patiently`: the guard `e.is_unavailable()` -> `true`. Only an unavailable database is waited for; a write the table refuses fails the
/// job at once, with the rule's name and without PostgreSQL's text.
#[tokio::test]
async fn a_write_the_table_refuses_fails_the_job_at_once_instead_of_being_waited_on() {
    let h = Harness::new().await;
    sql(
        h.pool(),
        r#"CREATE FUNCTION refuse_prices() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation',
                   CONSTRAINT = 'a_rule_of_the_test';
           END $$;
           CREATE TRIGGER refuse_prices BEFORE INSERT ON daily_prices
               FOR EACH ROW EXECUTE FUNCTION refuse_prices();"#,
    )
    .await;
    let (start, end) = (days_before_today(10), days_before_today(1));

    let job = h.run_job(start, end, false).await;

    let message = assert_failed_saying(&job, &["broke a rule of the table (a_rule_of_the_test)"]);
    assert!(!message.contains("refused by the test"), "{message}");
    assert_eq!(job.attempts, 1, "a refused row is not retried");
    assert_eq!(h.fake.call_count(), 1, "the window is not fetched again");
    assert_eq!(h.stored_days().await, 0);
}
