//! A job of an hourly coin, against the fake CoinGecko (a 365-day plan) and the fake
//! Coinbase Exchange: the hours it fills and what they cost in calls, the hours without
//! trades and before the product's first candle, the hours built from CoinGecko's points
//! for a coin without a product, the hour-by-hour check, the faults that leave the days
//! whole, and the schedule's ticks that keep the hours current.

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use fake_upstream::coinbase::{BadHour, COLLIDING, Outage, ScriptedResponse};
use fake_upstream::coingecko::FakeOptions;
use price_history::domain::{Hour, HourRange, JobStatus, PriceSource, ProductId, Symbol, Trigger};
use price_history::schedule::{Clock, Scheduler};
use price_history::shutdown::Shutdown;
use price_history::store::ingestion_jobs::JobRecord;
use price_history::store::sync_schedule::TickRecord;
use price_history::store::{
    coins, hourly_coins, hourly_figures, hourly_prices, job_hours, second_source,
};
use rust_decimal::Decimal;

use crate::support::{Harness, assert_completed, days_before_today};

const PLAN_DAYS: u32 = 365;

/// A harness whose CoinGecko serves the past 365 days only, whose settings know it, with
/// the second source on and BTC keeping hours.
async fn hourly_btc_on_a_365_day_plan() -> Harness {
    let mut h = Harness::with_fake(FakeOptions {
        history_limit_days: Some(PLAN_DAYS),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_history_days = Some(PLAN_DAYS);
    let h = h.with_coinbase();
    hourly_coins::set_hourly(h.pool(), Symbol::BTC, true)
        .await
        .unwrap();
    h
}

/// BTC's product marked checked and usable, as an earlier job's check would have.
async fn checked_product(h: &Harness) {
    sqlx::query(
        "UPDATE coins SET coinbase_product = 'BTC-USD', fallback_usable = true, \
             fallback_deviation_percent = 0.2, fallback_checked_at = now() WHERE symbol = 'BTC'",
    )
    .execute(h.pool())
    .await
    .unwrap();
}

/// The `days` days up to yesterday.
fn last_days(days: u64) -> (NaiveDate, NaiveDate) {
    (days_before_today(days), days_before_today(1))
}

/// The start of hour `n` of `day`.
fn hour_of(day: NaiveDate, n: i64) -> DateTime<Utc> {
    Hour::first_of(day).plus(n).start()
}

async fn stored_hours(h: &Harness) -> i64 {
    h.rows("hourly_prices WHERE symbol = 'BTC'").await
}

async fn hours_of(h: &Harness, job: &JobRecord) -> job_hours::JobHours {
    job_hours::of(h.pool(), job.id)
        .await
        .unwrap()
        .expect("a job of an hourly coin counts its hours")
}

async fn run(h: &Harness, (start, end): (NaiveDate, NaiveDate)) -> JobRecord {
    h.run_job(start, end, false).await
}

#[tokio::test]
async fn four_years_of_an_hourly_btc_on_a_365_day_plan_are_every_hour_at_one_call_per_300_and_no_extra_coingecko_call()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    let range = last_days(1461);
    let quiet_day = range.0 + Days::new(500);
    h.coinbase
        .set_hours_without_trades((3..8).map(|n| hour_of(quiet_day, n)));

    let job = run(&h, range).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    let all_hours = 1461 * 24;
    assert_eq!(all_hours, 35_064);
    assert_eq!(h.coinbase.hourly_calls(), 117, "ceil(35,064 / 300)");
    assert!(
        h.coinbase
            .hourly_requests()
            .iter()
            .all(|call| call.status == 200)
    );
    assert_eq!(
        h.fake.call_count(),
        364usize.div_ceil(90),
        "CoinGecko: the windows of the days the plan serves, not one more"
    );
    assert_eq!(stored_hours(&h).await, all_hours - 5);
    assert_eq!(
        (
            job.hours_fetched,
            job.hours_missing,
            job.hours_without_trades
        ),
        (Some(35_059), Some(0), Some(5)),
        "the job says its hours"
    );
    assert_eq!(
        hours_of(&h, &job).await,
        job_hours::JobHours {
            hours_fetched: 35_059,
            hours_missing: 0,
            hours_without_trades: 5,
        }
    );
    let figures = hourly_figures::of(h.pool(), Symbol::BTC).await.unwrap();
    assert_eq!(figures.hours_without_trades, 5);
    assert!(
        figures.checked_hours >= 363 * 24,
        "every hour of the plan's days is checked: {figures:?}"
    );
    assert_eq!(
        figures.disputed_hours, 0,
        "an honest product is not disputed"
    );

    // Nothing missing, the hours without trades included: the next job costs no call.
    let calls = (h.fake.call_count(), h.coinbase.call_count());
    let again = run(&h, range).await;
    assert_completed(&again);
    assert_eq!((h.fake.call_count(), h.coinbase.call_count()), calls);
    assert_eq!(hours_of(&h, &again).await.hours_fetched, 0);
}

#[tokio::test]
async fn holes_of_1_30_and_700_hours_cost_1_1_and_3_calls() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(60);
    assert_eq!(run(&h, range).await.status, JobStatus::Completed);
    let first = Hour::first_of(range.0);
    for (from, hours) in [(10, 1), (100, 30), (300, 700)] {
        sqlx::query("DELETE FROM hourly_prices WHERE symbol = 'BTC' AND hour >= $1 AND hour < $2")
            .bind(first.plus(from))
            .bind(first.plus(from + hours))
            .execute(h.pool())
            .await
            .unwrap();
    }
    let (coingecko, hourly) = (h.fake.call_count(), h.coinbase.hourly_calls());

    let job = run(&h, range).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.coinbase.hourly_calls() - hourly, 1 + 1 + 3);
    assert_eq!(h.fake.call_count(), coingecko, "the days are all there");
    assert_eq!(stored_hours(&h).await, 60 * 24);
    assert_eq!(hours_of(&h, &job).await.hours_fetched, 731);
}

#[tokio::test]
async fn a_coin_without_a_product_gets_its_plans_year_of_hours_from_coingeckos_points_with_no_extra_call()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    second_source::set_product(h.pool(), Symbol::BTC, None)
        .await
        .unwrap();
    let range = last_days(1461);

    let job = run(&h, range).await;

    assert_eq!(h.coinbase.call_count(), 0);
    assert_eq!(h.fake.call_count(), 364usize.div_ceil(90));
    assert_eq!(
        job.status,
        JobStatus::CompletedWithGaps,
        "the days out of plan"
    );
    let hours = hours_of(&h, &job).await;
    assert_eq!((hours.hours_fetched, hours.hours_missing), (364 * 24, 0));
    let year = HourRange::of_days(days_before_today(364), days_before_today(1)).unwrap();
    let stored = hourly_prices::list(h.pool(), Symbol::BTC, year)
        .await
        .unwrap();
    assert_eq!(stored.len(), 364 * 24);
    for candle in &stored {
        assert_eq!(candle.source, PriceSource::CoinGecko);
        assert!(candle.points.is_some_and(|n| n >= 1), "{candle:?}");
        assert!(!candle.provisional && candle.check.is_none());
    }
    // An hour is its points: here one, a little past the hour.
    let day = days_before_today(100);
    let points = h.fake.points_for_day(day, true);
    let noon = stored
        .iter()
        .find(|c| c.hour.start() == hour_of(day, 12))
        .unwrap();
    let (_, price, _) = points
        .iter()
        .find(|(ms, _, _)| {
            Hour::containing(DateTime::from_timestamp_millis(*ms).unwrap()) == noon.hour
        })
        .unwrap();
    assert_eq!(
        (noon.open, noon.close, noon.points),
        (*price, *price, Some(1))
    );
}

#[tokio::test]
async fn with_the_second_source_off_hours_come_from_coingecko_and_no_coinbase_call_is_made() {
    let mut h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    h.settings.fallback_source = price_history::config::FallbackSource::Off;

    let job = run(&h, last_days(10)).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.coinbase.call_count(), 0);
    assert_eq!(h.fake.call_count(), 1);
    assert_eq!(hours_of(&h, &job).await.hours_fetched, 240);
    let coinbase_rows = h
        .rows("hourly_prices WHERE symbol = 'BTC' AND source = 'coinbase'")
        .await;
    assert_eq!(coinbase_rows, 0);
}

#[tokio::test]
async fn a_candle_20_percent_off_coingeckos_point_is_disputed_and_an_honest_one_is_not() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let day = days_before_today(5);
    h.coinbase.set_hour_off(hour_of(day, 9), 1.2);

    let job = run(&h, last_days(10)).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    let hours = HourRange::of_days(day, day).unwrap();
    let stored = hourly_prices::list(h.pool(), Symbol::BTC, hours)
        .await
        .unwrap();
    assert_eq!(stored.len(), 24);
    for candle in &stored {
        let check = candle.check.expect("CoinGecko has a point in every hour");
        assert!(candle.hour.contains(check.point.at));
        if candle.hour.start() == hour_of(day, 9) {
            assert!(check.disputed, "{candle:?}");
            assert!(check.deviation_percent > Decimal::from(16), "{check:?}");
        } else {
            assert!(!check.disputed, "{candle:?}");
            assert!(check.deviation_percent < Decimal::ONE, "{check:?}");
        }
    }
    let figures = hourly_figures::of(h.pool(), Symbol::BTC).await.unwrap();
    assert_eq!(figures.disputed_hours, 1);
}

#[tokio::test]
async fn coinbase_down_or_garbage_for_hours_ends_completed_with_gaps_naming_it_and_the_days_are_stored()
 {
    // A 503 is retried three times; garbage is not worth another try.
    for (outage, attempts) in [(Outage::Status(503), 4), (Outage::Garbage, 1)] {
        let h = hourly_btc_on_a_365_day_plan().await;
        checked_product(&h).await;
        h.coinbase.set_hours_outage(Some(outage.clone()));

        let job = run(&h, last_days(10)).await;

        assert_eq!(job.status, JobStatus::CompletedWithGaps, "{outage:?}");
        let message = job.error_message.clone().unwrap();
        assert!(
            message.contains("240 hour(s)")
                && message.contains("Coinbase Exchange gave no hourly candles"),
            "{message}"
        );
        assert!(
            job.gap_dates.is_empty(),
            "the days are whole: {:?}",
            job.gap_dates
        );
        assert_eq!(h.stored_days_of(Symbol::BTC).await, 10);
        assert_eq!(stored_hours(&h).await, 0);
        assert_eq!(hours_of(&h, &job).await.hours_missing, 240);
        assert_eq!(
            h.coinbase.hourly_calls(),
            attempts,
            "{outage:?}: one call and its retries, then no more"
        );
        assert_eq!(h.rows("hours_without_trades").await, 0);
    }
}

#[tokio::test]
async fn hour_candles_that_break_a_rule_are_refused_counted_and_left_missing() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let day = days_before_today(3);
    h.coinbase
        .set_bad_hour(hour_of(day, 1), BadHour::LowAboveHigh);
    h.coinbase.set_bad_hour(hour_of(day, 2), BadHour::ZeroLow);
    h.coinbase
        .set_bad_hour(hour_of(day, 3), BadHour::OffTheGrid);

    let job = run(&h, last_days(5)).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    let message = job.error_message.clone().unwrap();
    assert!(
        message.contains("3 hour(s)")
            && message.contains("3 hourly candle(s) from Coinbase Exchange were refused"),
        "{message}"
    );
    assert!(message.contains("do not hold"), "{message}");
    assert!(message.contains("not the start of a UTC hour"), "{message}");
    assert_eq!(stored_hours(&h).await, 5 * 24 - 3);
    let hours = hours_of(&h, &job).await;
    assert_eq!((hours.hours_missing, hours.hours_without_trades), (3, 0));
}

#[tokio::test]
async fn hours_before_the_products_first_candle_cost_no_call_once_learned() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(40);
    let listed = hour_of(range.0 + Days::new(20), 0);
    h.coinbase.set_first_hour("BTC-USD", listed);

    let job = run(&h, range).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM hourly_prices WHERE symbol = 'BTC' AND hour < $1")
            .bind(listed)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(before, 0);
    assert_eq!(stored_hours(&h).await, 20 * 24);
    let learned = hourly_coins::get(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap()
        .coinbase_hours_from
        .expect("where the candles begin is learned");
    assert!(learned.start() <= listed && learned.start() > hour_of(range.0, 0));

    let calls = h.coinbase.call_count();
    let again = run(&h, range).await;
    assert_completed(&again);
    assert_eq!(
        h.coinbase.call_count(),
        calls,
        "no call for the hours before"
    );
}

#[tokio::test]
async fn turning_hours_off_keeps_them_and_a_later_job_makes_no_hourly_call() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    run(&h, last_days(3)).await;
    assert_eq!(stored_hours(&h).await, 72);
    hourly_coins::set_hourly(h.pool(), Symbol::BTC, false)
        .await
        .unwrap();
    let hourly = h.coinbase.hourly_calls();

    let job = run(&h, last_days(6)).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(h.coinbase.hourly_calls(), hourly);
    assert_eq!(stored_hours(&h).await, 72, "the stored hours stay");
    assert_eq!(job_hours::of(h.pool(), job.id).await.unwrap(), None);
    assert_eq!(
        job.hours_fetched, None,
        "a daily-only job says nothing of hours"
    );
}

/// A scheduler acting as the schedule does, on a clock `offset_minutes` from the system's:
/// behind it, its last complete hour is never later than the one a job just stored.
fn scheduler(h: &Harness, offset_minutes: i64) -> Scheduler {
    Scheduler {
        pool: h.pool().clone(),
        schedule: "0 0 * * * *".parse().unwrap(),
        clock: Clock::offset_by_ms(offset_minutes * 60_000),
        reach: h.ingestor().reach,
        name: "test".to_owned(),
        credits: Some(h.app().credits()),
    }
}

/// Acts on the tick `minutes_ago` minutes back (later ticks must be fewer minutes back).
async fn tick(h: &Harness, offset_minutes: i64, minutes_ago: i64) -> TickRecord {
    let (_stop, shutdown) = Shutdown::new();
    scheduler(h, offset_minutes)
        .act_on(
            Utc::now() - TimeDelta::minutes(minutes_ago),
            false,
            &shutdown,
        )
        .await
        .unwrap()
        .done()
        .expect("the tick is acted on")
}

/// Runs the job the last tick queued to its end.
async fn run_the_ticks_job(h: &Harness) -> JobRecord {
    let job = h.jobs_by(Trigger::Schedule).await.remove(0);
    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;
    finished
}

/// The job a tick 30 minutes ago queues for BTC, behind, run to completion.
async fn the_one_job_a_tick_queues(h: &Harness) -> JobRecord {
    let acted = tick(h, 0, 30).await;
    assert_eq!((acted.coins_behind, acted.jobs_queued), (1, 1));
    let job = run_the_ticks_job(h).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    job
}

/// Deletes BTC's last three hours, as if the coin had fallen behind.
async fn drop_the_last_three_hours(h: &Harness) {
    sqlx::query(
        "DELETE FROM hourly_prices WHERE symbol = 'BTC' AND hour > \
         (SELECT max(hour) - interval '3 hours' FROM hourly_prices WHERE symbol = 'BTC')",
    )
    .execute(h.pool())
    .await
    .unwrap();
}

/// BTC tracked from two days ago, without the job tracking would queue at once.
async fn tracked_from_two_days_ago(h: &Harness) {
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(days_before_today(2)))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_tick_brings_an_hourly_coins_hours_to_the_last_complete_hour_with_no_coingecko_call_for_today()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    tracked_from_two_days_ago(&h).await;

    let job = the_one_job_a_tick_queues(&h).await;

    assert_eq!(
        (job.range.start(), job.range.end()),
        (days_before_today(2), days_before_today(0))
    );
    assert_eq!(
        h.fake.call_count(),
        1,
        "the two days before today, in one window"
    );
    assert!(h.fake.calls()[0].to < Hour::first_of(days_before_today(0)).start());
    assert_eq!(h.stored_days_of(Symbol::BTC).await, 2, "no row for today");
    let figures = hourly_figures::of(h.pool(), Symbol::BTC).await.unwrap();
    assert_eq!(
        figures.accounted.unwrap().first(),
        Hour::first_of(days_before_today(2))
    );
    assert_eq!(hours_of(&h, &job).await.hours_missing, 0);

    let current = tick(&h, -10, 20).await;
    assert_eq!((current.coins_behind, current.jobs_queued), (0, 0));

    drop_the_last_three_hours(&h).await;
    let (hourly, stored) = (h.coinbase.hourly_calls(), stored_hours(&h).await);
    let behind = tick(&h, -10, 10).await;
    assert_eq!(behind.jobs_queued, 1);
    let job = run_the_ticks_job(&h).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(
        h.fake.call_count(),
        1,
        "days complete: no CoinGecko call for today"
    );
    assert_eq!(h.coinbase.hourly_calls(), hourly + 1);
    assert!(stored_hours(&h).await >= stored + 3);
}

/// An audit's finding: `COINGECKO_CHUNK_DAYS` above 90 made windows CoinGecko answers
/// with daily points, of which no hour can be built, and every later job asked again.
#[tokio::test]
async fn hours_built_from_coingeckos_points_are_asked_90_days_at_most_whatever_the_chunk_setting() {
    let mut h = hourly_btc_on_a_365_day_plan().await;
    h.settings.coingecko_chunk_days = 365;
    second_source::set_product(h.pool(), Symbol::BTC, None)
        .await
        .unwrap();

    let job = run(&h, last_days(200)).await;

    assert_eq!(
        hours_of(&h, &job).await.hours_missing,
        0,
        "{:?}",
        job.error_message
    );
    let calls = h.fake.calls();
    assert_eq!(calls.len(), 3, "200 days in windows of 90");
    assert!(calls.iter().all(|c| c.to - c.from <= TimeDelta::days(90)));
}

/// An audit's finding: a tick queued an hourly coin's job over the days its hours lagged by
/// alone and left the coin out of the days it looks at, so a tracked hourly coin's day
/// missing further back (a window that failed) was never fetched again.
#[tokio::test]
async fn a_tick_fetches_a_tracked_hourly_coins_day_missing_further_back_than_its_hours_lag() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(days_before_today(20)))
        .await
        .unwrap()
        .unwrap();
    assert_completed(&run(&h, last_days(20)).await);
    let lost = days_before_today(10);
    sqlx::query("DELETE FROM daily_prices WHERE symbol = 'BTC' AND date = $1")
        .bind(lost)
        .execute(h.pool())
        .await
        .unwrap();
    drop_the_last_three_hours(&h).await;

    let job = the_one_job_a_tick_queues(&h).await;

    assert_eq!(
        (job.range.start(), job.range.end()),
        (lost, days_before_today(0))
    );
    assert_eq!(
        h.stored_days_of(Symbol::BTC).await,
        20,
        "the lost day is back"
    );
}

#[tokio::test]
async fn a_tick_gives_an_hourly_coin_without_a_product_its_coingecko_window() {
    let h = hourly_btc_on_a_365_day_plan().await;
    second_source::set_product(h.pool(), Symbol::BTC, None)
        .await
        .unwrap();
    tracked_from_two_days_ago(&h).await;
    assert_eq!(tick(&h, 0, 30).await.jobs_queued, 1);
    let job = run_the_ticks_job(&h).await;
    assert_eq!(
        hours_of(&h, &job).await.hours_missing,
        0,
        "{:?}",
        job.error_message
    );
    let calls = h.fake.call_count();

    drop_the_last_three_hours(&h).await;
    let stored = stored_hours(&h).await;
    assert_eq!(tick(&h, -10, 10).await.jobs_queued, 1);
    let job = run_the_ticks_job(&h).await;

    assert_eq!(
        hours_of(&h, &job).await.hours_missing,
        0,
        "{:?}",
        job.error_message
    );
    assert_eq!(h.fake.call_count(), calls + 1, "one window, for its hours");
    assert_eq!(h.coinbase.call_count(), 0);
    assert!(stored_hours(&h).await >= stored + 3);
}

#[tokio::test]
async fn each_window_of_hours_is_kept_once_stored_and_a_later_job_asks_only_for_the_rest() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(60);
    // Two windows of 300 hours answer, then Coinbase is down (a call and its 3 retries).
    for _ in 0..2 {
        h.coinbase.push_response(ScriptedResponse::passthrough());
    }
    for _ in 0..4 {
        h.coinbase
            .push_response(ScriptedResponse::server_error(503));
    }

    let job = run(&h, range).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(stored_hours(&h).await, 600);
    assert_eq!(
        (hours_of(&h, &job).await.hours_missing, job.chunks_done),
        (60 * 24 - 600, 1 + 2),
        "the day window and the two windows of hours were checkpointed"
    );
    let hourly = h.coinbase.hourly_calls();

    let again = run(&h, range).await;

    assert_completed(&again);
    assert_eq!(h.coinbase.hourly_calls() - hourly, 3, "ceil(840 / 300)");
    assert_eq!(stored_hours(&h).await, 60 * 24);
}

#[tokio::test]
async fn hours_before_the_products_first_daily_candle_cost_no_call_even_the_first_time() {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(1461);
    let listed_day = range.0 + Days::new(800);
    h.coinbase.set_first_hour("BTC-USD", hour_of(listed_day, 0));

    let job = run(&h, range).await;

    assert_eq!(
        job.status,
        JobStatus::CompletedWithGaps,
        "days before the listing"
    );
    let hours_after = (1461 - 800) * 24;
    assert_eq!(
        h.coinbase.hourly_calls(),
        (hours_after as usize).div_ceil(300),
        "no call for the hours before its first daily candle"
    );
    assert_eq!(stored_hours(&h).await, hours_after);
    assert_eq!(hours_of(&h, &job).await.hours_missing, 0);
    let coin = hourly_coins::get(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        coin.coinbase_hours_from.map(|hour| hour.start()),
        Some(hour_of(listed_day, 0)),
        "kept for every reader of the coin's hours"
    );
}

#[tokio::test]
async fn a_tick_leaves_an_hourly_coin_whose_coingecko_windows_the_months_credits_cannot_pay_for() {
    let mut h = hourly_btc_on_a_365_day_plan().await;
    h.settings.coingecko_calls_per_month = Some("10".to_owned());
    second_source::set_product(h.pool(), Symbol::BTC, None)
        .await
        .unwrap();
    tracked_from_two_days_ago(&h).await;
    h.set_credits_used(10).await;

    let acted = tick(&h, 0, 30).await;

    assert_eq!(
        (
            acted.jobs_queued,
            acted.coins_behind,
            acted.coins_unaffordable
        ),
        (0, 1, 1),
        "its hours are built from CoinGecko's windows: none is left this month"
    );
    assert!(h.jobs_by(Trigger::Schedule).await.is_empty());
}

/// Submits a job of BTC over `range` (forced or not), Coinbase's answers slowed by `delay`,
/// and stops its worker once `chunks` windows are checkpointed: the job, handed back.
async fn stopped_after(
    h: &Harness,
    (start, end): (NaiveDate, NaiveDate),
    force: bool,
    chunks: i32,
    delay: std::time::Duration,
) -> JobRecord {
    h.coinbase.set_delay(delay);
    let job = h.submit(start, end, force).await;
    let worker = h.start_worker();
    h.wait_for(job.id, "windows checkpointed", |j| j.chunks_done >= chunks)
        .await;
    worker.stop().await;
    let handed_back = h.job(job.id).await;
    assert_eq!(
        handed_back.status,
        JobStatus::Pending,
        "handed back at the stop"
    );
    handed_back
}

/// Runs a job of BTC over `range` (forced or not) whose worker is stopped once `chunks`
/// windows are checkpointed, Coinbase's answers slowed so that the stop lands among the
/// windows of hours, then resumed by another worker to its end: Coinbase's hourly calls at
/// the stop, and the job as it finished (its second attempt, completed).
async fn stopped_and_resumed(
    h: &Harness,
    range: (NaiveDate, NaiveDate),
    force: bool,
    chunks: i32,
) -> (usize, JobRecord) {
    let delay = std::time::Duration::from_millis(400);
    let job = stopped_after(h, range, force, chunks, delay).await;
    let calls_at_the_stop = h.coinbase.hourly_calls();
    let _next = h.start_worker();
    let finished = h.completes(job.id).await;
    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "{:?}",
        finished.error_message
    );
    assert_eq!(finished.attempts, 2);
    assert_eq!(stored_hours(h).await, 60 * 24);
    (calls_at_the_stop, finished)
}

#[tokio::test]
async fn a_forced_job_stopped_among_its_hours_asks_its_next_attempt_only_for_the_hours_not_stored_yet()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(60);
    let stored = run(&h, range).await;
    assert_eq!(
        stored.status,
        JobStatus::Completed,
        "{:?}",
        stored.error_message
    );
    let before = h.coinbase.hourly_calls();
    assert_eq!(before, (60 * 24usize).div_ceil(300));

    let (at_the_stop, _) = stopped_and_resumed(&h, range, true, 3).await;

    assert!(
        at_the_stop - before < 5,
        "stopped among the five windows of hours: {} calls",
        at_the_stop - before
    );
    let forced = h.coinbase.hourly_calls() - before;
    assert!(
        forced <= 5 + 1,
        "five windows, and at most the one in flight at the stop asked again: {forced} calls"
    );
}

/// An audit's finding: the check a CoinGecko window attaches to stored hours marked them
/// written, so a forced job stopped among its hours took every hour its first window had
/// checked for fetched, and its next attempt asked Coinbase for none of them.
#[tokio::test]
async fn a_forced_job_resumed_after_its_window_checked_the_hours_still_asks_for_those_it_did_not_fetch()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;
    let range = last_days(60);
    run(&h, range).await;
    // The hours as hours turned on over stored days leave them: not checked yet.
    sqlx::query("UPDATE hourly_prices SET check_price = NULL, check_at = NULL, check_deviation_percent = NULL")
        .execute(h.pool())
        .await
        .unwrap();
    let before = h.coinbase.hourly_calls();

    let (at_the_stop, _) = stopped_and_resumed(&h, range, true, 3).await;

    assert!(
        at_the_stop - before < 5,
        "stopped among the five windows of hours"
    );
    let forced = h.coinbase.hourly_calls() - before;
    assert!(
        (5..=6).contains(&forced),
        "every window of hours asked once over the two attempts (one more at most, in flight \
         at the stop): {forced} calls"
    );
}

#[tokio::test]
async fn an_attempt_resumed_after_its_coingecko_window_checks_the_hours_it_fetches_against_the_points_read_before()
 {
    let h = hourly_btc_on_a_365_day_plan().await;
    checked_product(&h).await;

    // Stopped after the one CoinGecko window whose hourly points check the hours.
    stopped_and_resumed(&h, last_days(60), false, 2).await;

    assert_eq!(h.fake.call_count(), 1, "the CoinGecko window, read once");
    let unchecked = h
        .rows("hourly_prices WHERE symbol = 'BTC' AND source = 'coinbase' AND check_price IS NULL")
        .await;
    assert_eq!(
        unchecked, 0,
        "every hour checked, those of the second attempt too"
    );
    assert_eq!(
        h.rows("job_check_points").await,
        0,
        "the points are forgotten when the job ends"
    );
}

/// BTC's product set to another asset's, not checked yet: the job's own check finds it
/// unusable.
async fn product_of_another_asset(h: &Harness) {
    let product = ProductId::parse(COLLIDING.id).unwrap();
    second_source::set_product(h.pool(), Symbol::BTC, Some(&product))
        .await
        .unwrap();
}

/// The verdict of BTC's product check: `None` until a check ends.
async fn product_usable(h: &Harness) -> Option<bool> {
    second_source::mapping(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap()
        .usable
}

/// Every hour of `job` over `range` fetched, none missing, and all built from CoinGecko's
/// points.
async fn assert_hours_built_from_points(
    h: &Harness,
    job: &JobRecord,
    (start, end): (NaiveDate, NaiveDate),
) {
    let hours = HourRange::of_days(start, end).unwrap();
    let counts = hours_of(h, job).await;
    assert_eq!(
        (
            i64::from(counts.hours_fetched),
            i64::from(counts.hours_missing)
        ),
        (hours.hours(), 0)
    );
    let stored = hourly_prices::list(h.pool(), Symbol::BTC, hours)
        .await
        .unwrap();
    assert_eq!(stored.len() as i64, hours.hours());
    assert!(
        stored.iter().all(|c| c.source == PriceSource::CoinGecko),
        "every hour from CoinGecko's points"
    );
}

#[tokio::test]
async fn an_hourly_coin_whose_product_the_job_finds_unusable_gets_its_hours_from_coingeckos_points()
{
    let h = hourly_btc_on_a_365_day_plan().await;
    product_of_another_asset(&h).await;
    let range = last_days(60);

    let job = run(&h, range).await;

    assert_eq!(
        h.coinbase.hourly_calls(),
        0,
        "no hour asked of another asset"
    );
    assert_eq!(product_usable(&h).await, Some(false));
    assert_hours_built_from_points(&h, &job, range).await;
}

/// The stop lands while the job's check of the product is in flight (Coinbase slowed): the
/// check ends and its verdict is kept, so the resumed attempt knows the hours come from
/// CoinGecko's points and asks again for the window whose points the stopped attempt held.
#[tokio::test]
async fn an_attempt_stopped_while_it_finds_the_product_unusable_builds_the_hours_when_resumed() {
    let h = hourly_btc_on_a_365_day_plan().await;
    product_of_another_asset(&h).await;
    let range = last_days(60);
    // The stop is sent once the check's call has reached Coinbase, which answers it a
    // second and a half later, within the grace a call in flight is given at a stop.
    h.coinbase.set_delay(std::time::Duration::from_millis(1500));
    let job = h.submit(range.0, range.1, false).await;
    let worker = h.start_worker();
    h.coinbase.wait_for_calls(1).await;
    worker.stop().await;
    let job = h.job(job.id).await;
    assert_eq!(job.status, JobStatus::Pending, "handed back at the stop");
    assert_eq!(
        product_usable(&h).await,
        Some(false),
        "the check ended before the stop"
    );
    assert_eq!(
        stored_hours(&h).await,
        0,
        "no hour stored by the stopped attempt"
    );
    assert_eq!(h.fake.call_count(), 1);

    let _next = h.start_worker();
    let finished = h.completes(job.id).await;

    assert_resumed_from_the_points(&h, &finished, range).await;
}

/// `finished` completed by its second attempt, which asked CoinGecko once more for the
/// window whose points the first held (two calls in all), asked Coinbase for no hour, and
/// built every hour from the points.
async fn assert_resumed_from_the_points(
    h: &Harness,
    finished: &JobRecord,
    range: (NaiveDate, NaiveDate),
) {
    assert_completed(finished);
    assert_eq!(finished.attempts, 2, "taken over once");
    assert_eq!(
        h.fake.call_count(),
        2,
        "the window asked again for its points, once"
    );
    assert_eq!(
        h.coinbase.hourly_calls(),
        0,
        "no hour asked of another asset"
    );
    assert_hours_built_from_points(h, finished, range).await;
}

/// The same, but the worker is killed (`kill -9`) while the check is in flight, so no
/// verdict is kept and the window's points are lost with the process: the attempt that
/// takes the job over after the lease checks the product again, finds it unusable, asks
/// CoinGecko again for the window whose days are stored but whose hours are not, and
/// builds every hour from its points.
#[tokio::test]
async fn a_worker_killed_while_it_checks_the_product_leaves_no_hour_missing_once_taken_over() {
    let h = hourly_btc_on_a_365_day_plan().await;
    product_of_another_asset(&h).await;
    let range = last_days(60);
    // Long enough that the kill, sent as soon as the window is seen checkpointed, lands
    // before the check ends, however loaded the machine; the next attempt is not slowed.
    h.coinbase.set_delay(std::time::Duration::from_secs(3));
    let job = h.submit(range.0, range.1, false).await;
    let plan_days = PLAN_DAYS.to_string();
    let coinbase_url = h.coinbase.base_url();
    let env = [
        ("COINGECKO_HISTORY_DAYS", plan_days.as_str()),
        ("FALLBACK_SOURCE", "coinbase"),
        ("COINBASE_BASE_URL", coinbase_url.as_str()),
        ("COINBASE_CALLS_PER_MINUTE", "6000"),
        ("COINBASE_RETRY_BASE_DELAY_MS", "10"),
    ];
    let mut first = h.spawn(&["worker"], &env);
    h.wait_for(job.id, "the CoinGecko window checkpointed", |j| {
        j.chunks_done >= 1
    })
    .await;
    first.kill().await;
    assert_eq!(
        product_usable(&h).await,
        None,
        "killed before the check ended"
    );
    assert_eq!(stored_hours(&h).await, 0, "no hour stored before the kill");
    let checks_before = h.coinbase.call_count();
    h.coinbase.set_delay(std::time::Duration::ZERO);

    let _second = h.spawn(&["worker"], &env);
    let finished = h
        .wait_for(job.id, "the job ends", |j| j.status.is_terminal())
        .await;

    assert_eq!(
        product_usable(&h).await,
        Some(false),
        "checked again by the next attempt"
    );
    assert!(
        h.coinbase.call_count() > checks_before,
        "the next attempt asked Coinbase again"
    );
    assert_resumed_from_the_points(&h, &finished, range).await;
}

/// Days stored while the coin kept no hours, then hours turned on with a product that the
/// job finds unusable: the job asks CoinGecko again for the stored days' window, for its
/// points, and builds the hours from them rather than leaving them to a later job.
#[tokio::test]
async fn hours_turned_on_over_stored_days_with_an_unusable_product_are_built_by_the_first_job() {
    let h = hourly_btc_on_a_365_day_plan().await;
    hourly_coins::set_hourly(h.pool(), Symbol::BTC, false)
        .await
        .unwrap();
    let range = last_days(60);
    assert_completed(&run(&h, range).await);
    assert_eq!(h.fake.call_count(), 1);
    hourly_coins::set_hourly(h.pool(), Symbol::BTC, true)
        .await
        .unwrap();
    product_of_another_asset(&h).await;

    let job = run(&h, range).await;

    assert_completed(&job);
    assert_eq!(h.fake.call_count(), 2, "the stored days' window, once more");
    assert_eq!(h.coinbase.hourly_calls(), 0);
    assert_hours_built_from_points(&h, &job, range).await;
}

/// An audit's finding: a job that failed left `hours_missing` at the 0 it started from,
/// though a failed job says which days it left undone.
#[tokio::test]
async fn a_failed_job_of_an_hourly_coin_counts_the_hours_it_left_missing() {
    let h = crate::support::Harness::new().await;
    sqlx::query("UPDATE coins SET hourly = true WHERE symbol = 'BTC'")
        .execute(h.pool())
        .await
        .unwrap();
    h.fake
        .push_response(fake_upstream::coingecko::ScriptedResponse::status(
            401,
            r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
        ));

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error_message);
    assert_eq!(
        job.hours_missing,
        Some(10 * 24),
        "every hour of its ten days"
    );
    assert_eq!(job.hours_without_trades, Some(0));
    assert_eq!(job.hours_fetched, Some(0));
}

/// A review's finding: a product check Coinbase failed (down) in the step of the days
/// older than the plan was made again by the hours' step of the same attempt, twice the
/// calls and back-offs for the same answer. It is made once an attempt; the next job
/// checks again.
#[tokio::test]
async fn a_product_check_coinbase_fails_is_made_once_an_attempt() {
    let h = hourly_btc_on_a_365_day_plan().await;
    h.coinbase.set_outage(Some(Outage::Status(503)));

    let job = h
        .run_job(days_before_today(400), days_before_today(1), false)
        .await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    let one_call_and_its_retries = h.settings.coinbase_max_retries as usize + 1;
    assert_eq!(h.coinbase.call_count(), one_call_and_its_retries);
    let mapping = second_source::mapping(h.pool(), Symbol::BTC).await.unwrap();
    assert!(mapping.unwrap().needs_check(), "the next job checks again");
}

/// An audit's finding: on a plan with no known history limit (a Pro key, or
/// `COINGECKO_HISTORY_DAYS=0`) the product's check was never made, so an hourly coin whose
/// product awaited it got no hours at all, job after job.
#[tokio::test]
async fn on_a_plan_without_a_history_limit_an_unchecked_product_is_checked_and_gives_the_hours() {
    let h = Harness::new().await.with_coinbase();
    hourly_coins::set_hourly(h.pool(), Symbol::BTC, true)
        .await
        .unwrap();

    let job = h.run_days_to_yesterday(10).await;

    assert_completed(&job);
    let mapping = second_source::mapping(h.pool(), Symbol::BTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.usable, Some(true), "{:?}", mapping.unusable_reason);
    let from_coinbase = h
        .rows("hourly_prices WHERE symbol = 'BTC' AND source = 'coinbase'")
        .await;
    assert_eq!(from_coinbase, 10 * 24);
}
