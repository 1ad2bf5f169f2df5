//! The second source in a job, against the fake CoinGecko (a 365-day plan) and the fake
//! Coinbase Exchange: which days each source fills, what each costs in calls, the mapping
//! check, failures that never fail a job, and the days Coinbase has no candle for. The
//! second source's store and mapping check, below the job, are in `store`.

mod store;

use chrono::{Days, NaiveDate};
use fake_upstream::coinbase::{COLLIDING, Outage};
use fake_upstream::coingecko::FakeOptions;
use price_history::domain::{JobStatus, PriceSource, Symbol};
use price_history::store::ingestion_jobs::JobRecord;
use price_history::store::second_source::{self, SourcedCandle};
use rust_decimal::Decimal;

use crate::support::{Harness, day, days_before_today};

/// The public and Demo plans' reach.
const PLAN_DAYS: u32 = 365;

/// A harness whose CoinGecko serves the past 365 days only, as the free plans do, and
/// whose settings know it; the second source on unless `off`.
async fn on_a_365_day_plan(second_source: bool) -> Harness {
    let mut h = Harness::with_fake(FakeOptions {
        history_limit_days: Some(PLAN_DAYS),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_history_days = Some(PLAN_DAYS);
    if second_source { h.with_coinbase() } else { h }
}

/// Runs a job of `symbol` to its end with a worker of this process.
async fn run_job_for(
    h: &Harness,
    symbol: Symbol,
    start: NaiveDate,
    end: NaiveDate,
    force: bool,
) -> JobRecord {
    let job = h.submit_for(symbol, start, end, force).await;
    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;
    finished
}

async fn rows(h: &Harness, symbol: Symbol, start: NaiveDate, end: NaiveDate) -> Vec<SourcedCandle> {
    second_source::list_sourced(h.pool(), symbol, start, end)
        .await
        .unwrap()
}

async fn fallback_days(h: &Harness, job: &JobRecord) -> i32 {
    second_source::fallback_days(h.pool(), job.id)
        .await
        .unwrap()
        .unwrap()
}

/// The first day the plan serves.
fn plan_first_day() -> NaiveDate {
    days_before_today(u64::from(PLAN_DAYS) - 1)
}

/// The 1461 days up to yesterday: 364 the plan serves, 1097 older.
fn four_years() -> (NaiveDate, NaiveDate) {
    let end = days_before_today(1);
    (end - Days::new(1460), end)
}

/// Asserts that a stored row is exactly the fake CoinGecko's day: first, max, min and
/// last of its hourly points.
fn assert_is_coingeckos(h: &Harness, row: &SourcedCandle) {
    let points = h.fake.points_for_day(row.candle.date, true);
    let prices: Vec<Decimal> = points.iter().map(|p| p.1).collect();
    let c = &row.candle;
    assert_eq!(row.source, PriceSource::CoinGecko, "{}", c.date);
    assert_eq!(
        (c.open, c.high, c.low, c.close, c.volume),
        (
            prices[0],
            *prices.iter().max().unwrap(),
            *prices.iter().min().unwrap(),
            *prices.last().unwrap(),
            points.last().unwrap().2
        ),
        "{}",
        c.date
    );
}

/// Asserts that a stored row is exactly the fake Coinbase's candle of `product`.
fn assert_is_coinbases(h: &Harness, product: &str, row: &SourcedCandle) {
    let c = &row.candle;
    let truth = h
        .coinbase
        .candle(product, c.date)
        .expect("Coinbase has the day");
    assert_eq!(row.source, PriceSource::Coinbase, "{}", c.date);
    assert_eq!(
        (c.open, c.high, c.low, c.close, c.volume, c.provisional),
        (
            truth.open,
            truth.high,
            truth.low,
            truth.close,
            truth.volume,
            truth.provisional
        ),
        "{}",
        c.date
    );
}

/// Marks the coin's product as checked and usable, as an earlier job's check would have.
async fn checked_product(h: &Harness, symbol: Symbol, product: &str) {
    sqlx::query(
        "UPDATE coins SET coinbase_product = $2, fallback_usable = true, \
             fallback_deviation_percent = 0.2, fallback_checked_at = now() WHERE symbol = $1",
    )
    .bind(symbol.as_str())
    .bind(product)
    .execute(h.pool())
    .await
    .unwrap();
}

/// Asserts that the job completed, showing its message when it did not.
#[track_caller]
fn assert_completed(job: &JobRecord) {
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
}

/// Asserts that a job's message names Coinbase Exchange and says `also`; returns it.
#[track_caller]
fn message_naming_coinbase(message: Option<String>, also: &str) -> String {
    let message = message.unwrap();
    assert!(
        message.contains("Coinbase Exchange") && message.contains(also),
        "{message}"
    );
    message
}

#[tokio::test]
async fn four_years_on_a_365_day_plan_are_all_stored_each_from_its_source_with_5_coingecko_and_4_coinbase_calls_and_the_check()
 {
    let h = on_a_365_day_plan(true).await;
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    assert_completed(&job);
    assert_eq!(
        (job.out_of_plan_days, job.error_message.as_deref()),
        (0, None)
    );
    let out_of_plan = (plan_first_day() - start).num_days();
    assert_eq!(out_of_plan, 1097);
    assert_eq!(fallback_days(&h, &job).await, 1097);
    assert_eq!(h.fake.call_count(), 5, "364 days in windows of 90");
    assert_eq!(
        h.coinbase.candle_calls(),
        1 + 4,
        "the check, then ceil(1097 / 300) windows"
    );
    let stored = rows(&h, Symbol::BTC, start, end).await;
    assert_eq!(stored.len(), 1461);
    for row in &stored {
        if row.candle.date < plan_first_day() {
            assert_is_coinbases(&h, "BTC-USD", row);
        } else {
            assert_is_coingeckos(&h, row);
        }
    }
    let mapping = second_source::mapping(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.usable, Some(true));
    assert!(mapping.deviation_percent.unwrap() < Decimal::from(1));
    let check = &h.coinbase.calls()[0];
    assert_eq!(
        check.start.as_deref(),
        Some(format!("{}T00:00:00Z", plan_first_day()).as_str()),
        "the check reads the earliest days the plan serves"
    );

    // Nothing missing: the next job costs no call at all.
    let again = h.run_job(start, end, false).await;
    assert_eq!(again.status, JobStatus::Completed);
    assert_eq!((h.fake.call_count(), h.coinbase.call_count()), (5, 5));
}

/// An audit's finding: the check compared CoinGecko's earliest served days only, so a
/// product with no candle on them (listed since, or halted then) was found unusable for
/// good, and its coin's hours were built from CoinGecko's points, at a credit a window.
#[tokio::test]
async fn a_product_without_candles_on_the_plans_first_days_is_judged_on_its_latest_days() {
    let h = on_a_365_day_plan(true).await;
    h.coinbase
        .set_days_without_trades(plan_first_day().iter_days().take(60));
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    let mapping = second_source::mapping(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.usable, Some(true), "{:?}", mapping.unusable_reason);
    assert!(mapping.deviation_percent.unwrap() < Decimal::from(1));
    assert_eq!(fallback_days(&h, &job).await, 1097);
    assert_eq!(
        h.coinbase.candle_calls(),
        2 + 4,
        "two samples, then ceil(1097 / 300) windows"
    );
    let second_sample = &h.coinbase.calls()[1];
    let latest_first = end - Days::new(29);
    assert_eq!(
        second_sample.start.as_deref(),
        Some(format!("{latest_first}T00:00:00Z").as_str()),
        "the second sample is CoinGecko's latest 30 final days"
    );
}

#[tokio::test]
async fn a_product_that_is_another_asset_stores_nothing_and_the_job_says_why() {
    let h = on_a_365_day_plan(true).await;
    sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id, first_day, coinbase_product) \
         VALUES ('SOLX', 'solana', '2020-04-10', $1)",
    )
    .bind(COLLIDING.id)
    .execute(h.pool())
    .await
    .unwrap();
    let solx = Symbol::parse("SOLX").unwrap();
    let (start, end) = four_years();

    let job = run_job_for(&h, solx, start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.out_of_plan_days, 1097);
    assert_eq!(fallback_days(&h, &job).await, 0);
    assert_eq!(h.coinbase.candle_calls(), 1, "the check alone");
    let by_source = second_source::days_by_source(h.pool(), solx, start, end)
        .await
        .unwrap();
    assert_eq!(
        by_source,
        vec![(PriceSource::CoinGecko, 364), (PriceSource::Coinbase, 0)]
    );
    let message = job.error_message.unwrap();
    assert!(
        message.contains("SOLX-USD") && message.contains("another asset"),
        "{message}"
    );
    let mapping = second_source::mapping(h.pool(), solx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.usable, Some(false));
    assert!(mapping.deviation_percent.unwrap() > Decimal::from(5000));

    // Found out once: the next job asks Coinbase nothing.
    run_job_for(&h, solx, start, end, false).await;
    assert_eq!(h.coinbase.call_count(), 1);
}

#[tokio::test]
async fn with_the_second_source_off_a_job_behaves_as_before() {
    let h = on_a_365_day_plan(false).await;
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.out_of_plan_days, 1097);
    assert!(job.gap_dates.is_empty());
    assert_eq!(fallback_days(&h, &job).await, 0);
    assert_eq!(h.fake.call_count(), 5);
    assert_eq!(h.coinbase.call_count(), 0);
    let message = job.error_message.unwrap();
    assert!(message.contains("paid key reaches further"), "{message}");
    assert!(!message.contains("Coinbase"), "{message}");
    let by_source = second_source::days_by_source(h.pool(), Symbol::BTC, start, end)
        .await
        .unwrap();
    assert_eq!(
        by_source,
        vec![(PriceSource::CoinGecko, 364), (PriceSource::Coinbase, 0)]
    );
}

#[tokio::test]
async fn coinbase_down_at_the_check_ends_the_job_with_gaps_and_every_coingecko_day() {
    let h = on_a_365_day_plan(true).await;
    h.coinbase.set_outage(Some(Outage::Status(503)));
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.out_of_plan_days, 1097);
    assert!(job.gap_dates.is_empty());
    assert_eq!(h.stored_days().await, 364, "every day CoinGecko serves");
    message_naming_coinbase(job.error_message, "again later");
    assert!(
        second_source::mapping(h.pool(), Symbol::BTC)
            .await
            .unwrap()
            .unwrap()
            .needs_check(),
        "checked again by the next job"
    );
}

/// A review's finding: the mapping check was the one call of a job that did not watch the
/// stop. Held by Coinbase's back-offs, it kept the attempt until the worker's stop timeout
/// dropped it, leaving the job `running` until its lease ran out, and counted as a crash.
/// Now the stop breaks the check off (after a few seconds' grace, which an answer on its way
/// would use) and the job is handed back.
#[tokio::test]
async fn a_stop_while_the_mapping_check_waits_out_coinbase_hands_the_job_back() {
    let mut h = on_a_365_day_plan(true).await;
    h.settings.coinbase_retry_base_delay_ms = 60_000;
    h.coinbase.set_outage(Some(Outage::Status(503)));
    let (start, end) = four_years();
    let job = h.submit(start, end, false).await;
    let worker = h.start_worker();
    let asked = h.coinbase.wait_for_calls(1);
    tokio::time::timeout(std::time::Duration::from_secs(60), asked)
        .await
        .expect("the job checks the product with Coinbase");

    worker.stop().await;

    let back = h.job(job.id).await;
    assert_eq!(
        (back.status, back.handbacks),
        (JobStatus::Pending, 1),
        "{:?}",
        back.error_message
    );
    assert_eq!(h.coinbase.call_count(), 1, "no retry after the stop");
}

#[tokio::test]
async fn coinbase_answering_garbage_ends_the_job_with_gaps_after_one_window() {
    let h = on_a_365_day_plan(true).await;
    checked_product(&h, Symbol::BTC, "BTC-USD").await;
    h.coinbase.set_outage(Some(Outage::Garbage));
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.out_of_plan_days, 1097);
    assert_eq!(h.stored_days().await, 364);
    assert_eq!(
        h.coinbase.candle_calls(),
        1,
        "a garbage answer is not retried, and the other windows are not asked"
    );
    message_naming_coinbase(job.error_message, "again later");

    // Coinbase back: the next job fills the out-of-plan days and nothing else.
    h.coinbase.set_outage(None);
    let again = h.run_job(start, end, false).await;
    assert_completed(&again);
    assert_eq!(fallback_days(&h, &again).await, 1097);
    assert_eq!(h.fake.call_count(), 5);
}

/// An audit's finding: a job whose oldest missing day began a halt (weeks without a
/// candle in the middle of a product's history) took the halt's end for where the
/// product's candles begin, and every later job left the older days out of plan without
/// asking Coinbase, which has them.
#[tokio::test]
async fn a_halt_in_the_middle_of_a_products_history_never_hides_the_days_before_it() {
    let h = on_a_365_day_plan(true).await;
    let eth = h.register("ETH", "ethereum").await;
    checked_product(&h, eth, "ETH-USD").await;
    let halt = day("2017-01-01").iter_days().take(90);
    h.coinbase.set_days_without_trades(halt);
    let (start, end) = (day("2016-12-01"), day("2017-06-30"));
    run_job_for(&h, eth, start, end, false).await;
    // Again: its oldest missing day is the halt's first, and its window starts empty.
    run_job_for(&h, eth, start, end, false).await;
    let mapping = second_source::mapping(h.pool(), eth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mapping.candles_from, None,
        "a halt is not where the candles begin"
    );

    let older = run_job_for(&h, eth, day("2016-06-01"), day("2016-11-30"), false).await;

    assert_completed(&older);
    assert_eq!(
        fallback_days(&h, &older).await,
        183,
        "every day before the halt"
    );
}

#[tokio::test]
async fn a_day_without_a_candle_stays_out_of_plan_and_days_before_the_first_candle_cost_no_call_again()
 {
    let h = on_a_365_day_plan(true).await;
    let eth = h.register("ETH", "ethereum").await;
    checked_product(&h, eth, "ETH-USD").await;
    let quiet = day("2016-06-10");
    h.coinbase.set_days_without_trades([quiet]);
    let calls_before = h.fake.call_count();

    // ETH-USD's first candle is 2016-05-18: 47 days of this range come before it.
    let job = run_job_for(&h, eth, day("2016-04-01"), day("2016-07-01"), false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(fallback_days(&h, &job).await, 44);
    assert_eq!(job.out_of_plan_days, 47 + 1);
    assert_eq!(h.coinbase.candle_calls(), 1);
    assert_eq!(h.fake.call_count(), calls_before, "all older than the plan");
    let stored = rows(&h, eth, day("2016-04-01"), day("2016-07-01")).await;
    assert_eq!(stored.first().unwrap().candle.date, day("2016-05-18"));
    assert!(stored.iter().all(|row| row.candle.date != quiet));
    for row in &stored {
        assert_is_coinbases(&h, "ETH-USD", row);
    }
    let message = job.error_message.unwrap();
    assert!(message.contains("no candle"), "{message}");
    let mapping = second_source::mapping(h.pool(), eth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.candles_from, Some(day("2016-05-18")));

    // The days before the first candle, and the stored ones, cost no call now.
    let before = run_job_for(&h, eth, day("2016-04-01"), day("2016-06-09"), false).await;
    assert_eq!(before.status, JobStatus::CompletedWithGaps);
    assert_eq!(before.out_of_plan_days, 47);
    assert_eq!(h.coinbase.candle_calls(), 1);
}

#[tokio::test]
async fn a_forced_job_whose_plan_reaches_coinbases_days_replaces_them_with_coingeckos() {
    // A plan of 5 days first: days 20..5 before today come from Coinbase.
    let mut h = Harness::new().await.with_coinbase();
    h.settings.coingecko_history_days = Some(5);
    let (start, end) = (days_before_today(20), days_before_today(1));
    let first = h.run_job(start, end, false).await;
    assert_completed(&first);
    assert_eq!(fallback_days(&h, &first).await, 16);

    // Then a plan reaching all of them.
    h.settings.coingecko_history_days = Some(PLAN_DAYS);
    let calls = h.fake.call_count();
    let unforced = h.run_job(start, end, false).await;
    let unforced_calls = h.fake.call_count() - calls;
    let kept = rows(&h, Symbol::BTC, start, end).await;
    let forced = h.run_job(start, end, true).await;

    assert_eq!(unforced.status, JobStatus::Completed);
    assert_eq!(
        unforced_calls, 0,
        "nothing is missing: Coinbase's rows count as stored"
    );
    assert_eq!(
        kept.iter()
            .filter(|row| row.source == PriceSource::Coinbase)
            .count(),
        16
    );
    assert_completed(&forced);
    assert_eq!(fallback_days(&h, &forced).await, 0);
    let replaced = rows(&h, Symbol::BTC, start, end).await;
    assert_eq!(replaced.len(), 20);
    for row in &replaced {
        assert_is_coingeckos(&h, row);
    }
}

#[tokio::test]
async fn a_forced_job_beyond_the_plan_never_replaces_coingeckos_rows_with_coinbases() {
    // A plan without a limit first: every day is CoinGecko's.
    let mut h = Harness::new().await.with_coinbase();
    let (start, end) = (days_before_today(20), days_before_today(1));
    h.run_job(start, end, false).await;
    let before = rows(&h, Symbol::BTC, start, end).await;

    // Then a plan of 5 days, forced: days 20..5 before today are out of plan.
    h.settings.coingecko_history_days = Some(5);
    let forced = h.run_job(start, end, true).await;

    assert_completed(&forced);
    assert_eq!(fallback_days(&h, &forced).await, 0);
    assert_eq!(
        h.coinbase.candle_calls(),
        0,
        "no call for days whose rows the second source may not replace"
    );
    let after = rows(&h, Symbol::BTC, start, end).await;
    assert_eq!(after.len(), 20);
    assert_eq!(before.len(), 20);
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(is.source, PriceSource::CoinGecko, "{}", is.candle.date);
        if is.candle.date < days_before_today(4) {
            assert_eq!(was.candle, is.candle, "kept as it was");
        }
    }
}

#[tokio::test]
async fn a_product_coinbase_does_not_list_is_said_once_with_what_to_set_and_no_call_is_repeated() {
    let h = on_a_365_day_plan(true).await;
    checked_product(&h, Symbol::BTC, "NOPE-USD").await;
    let (start, end) = four_years();

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!((job.out_of_plan_days, h.stored_days().await), (1097, 364));
    assert_eq!(
        h.coinbase.candle_calls(),
        1,
        "a refusal is neither retried nor repeated"
    );
    let message = message_naming_coinbase(job.error_message, "coinbase_product");
    assert!(!message.contains("again later"), "{message}");
}
