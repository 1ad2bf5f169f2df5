//! Per-coin figures kept by the database (`coin_figures`, issue 20): built at migration
//! from an earlier release's rows, and kept true by triggers whatever changes the rows,
//! plain SQL included, so that `/api/v1/coins`, `/metrics` and the schedule's ticks can
//! read them instead of scanning `daily_prices`.

use chrono::{TimeDelta, Timelike, Utc};
use price_history::domain::{Symbol, Trigger};
use price_history::schedule::{Clock, Scheduler};
use price_history::shutdown::Shutdown;
use price_history::store::ingestion_jobs::JobRecord;
use price_history::store::{self, coins, ingestion_jobs};
use sqlx::PgPool;

use crate::support::{Harness, TestApi, days_before_today, sql};
use crate::upgrade::{release_up_to, upgrade};

/// The last migration before the figures: the release being upgraded from (with the
/// second source's `source` column).
const BEFORE_FIGURES: i64 = 20261202000010;

/// The last migration whose figures three trigger functions kept, before one path kept
/// them (issue 25).
const BEFORE_ONE_PATH: i64 = 20261206100010;

/// What a full scan of `daily_prices` says, per coin and source, as text.
const SCAN: &str = r#"
SELECT (symbol, source,
        count(*) FILTER (WHERE NOT provisional), count(*) FILTER (WHERE provisional),
        min(date), min(date) FILTER (WHERE NOT provisional), max(date) FILTER (WHERE NOT provisional))::text
FROM daily_prices GROUP BY symbol, source ORDER BY symbol, source
"#;

/// What the kept figures say, in the same shape (rows emptied of every day left out).
const KEPT: &str = r#"
SELECT (symbol, source, complete_days, provisional_days, first_day, first_complete_day, last_complete_day)::text
FROM coin_figures WHERE complete_days + provisional_days > 0 ORDER BY symbol, source
"#;

async fn texts(pool: &PgPool, query: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_all(pool)
        .await
        .expect("the query reads")
}

async fn assert_kept_equals_scan(pool: &PgPool, after: &str) {
    let scan = texts(pool, SCAN).await;
    assert_eq!(texts(pool, KEPT).await, scan, "after {after}");
}

/// Rows for `symbol` from `days_ago` to `until_days_ago` days before today, of `source`,
/// the last `provisional_last` of them provisional.
fn rows(
    symbol: &str,
    days_ago: u64,
    until_days_ago: u64,
    source: &str,
    provisional_last: u64,
) -> String {
    let (first, last) = (
        days_before_today(days_ago),
        days_before_today(until_days_ago),
    );
    format!(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, source)
           SELECT '{symbol}', d::date, 100, 110, 90, 105, 1000, d + interval '23 hours',
                  d::date > '{last}'::date - {provisional_last}, '{source}'
           FROM generate_series('{first}'::date, '{last}'::date, interval '1 day') AS d"#
    )
}

/// BTC's last 800 days, the older from the second source and the last year from
/// CoinGecko with today provisional; ETH's last 100 days with the last three provisional.
async fn btc_of_both_sources_and_eth(pool: &PgPool) {
    sql(pool, &rows("BTC", 800, 366, "coinbase", 0)).await;
    sql(pool, &rows("BTC", 365, 0, "coingecko", 1)).await;
    sql(pool, &rows("ETH", 100, 0, "coingecko", 3)).await;
}

/// Tracks BTC from `since`, as a PUT would, without the PUT's own job.
async fn track_btc(h: &Harness, since: Option<chrono::NaiveDate>) {
    coins::set_tracking(h.pool(), Symbol::BTC, true, since)
        .await
        .expect("the database answers")
        .expect("BTC is registered");
}

/// A scheduler in this process that acts on a tick a second after the last one, each
/// tick whole (its stop signal is never raised).
struct Ticker {
    scheduler: Scheduler,
    running: Shutdown,
    _stop: price_history::shutdown::ShutdownTrigger,
    tick: chrono::DateTime<Utc>,
}

impl Ticker {
    fn new(h: &Harness, name: &str) -> Ticker {
        let (stop, running) = Shutdown::new();
        Ticker {
            scheduler: Scheduler {
                pool: h.pool().clone(),
                schedule: "* * * * * *".parse().unwrap(),
                clock: Clock::SYSTEM,
                reach: h.ingestor().reach,
                name: name.to_owned(),
                credits: None,
            },
            running,
            _stop: stop,
            tick: Utc::now().with_nanosecond(0).unwrap(),
        }
    }

    /// Acts on the next tick, whole.
    async fn act(&mut self) -> price_history::store::sync_schedule::TickRecord {
        self.tick += TimeDelta::seconds(1);
        let acted = self.scheduler.act_on(self.tick, false, &self.running).await;
        acted
            .expect("the tick is acted on")
            .done()
            .expect("this process acts on the tick")
    }
}

#[tokio::test]
async fn the_figures_are_built_at_migration_from_a_populated_database_and_equal_a_scan() {
    // Arrange: the release before the figures, with coins, holes, provisional days and
    // rows of both sources.
    let db = release_up_to(BEFORE_FIGURES).await;
    sql(&db.pool, "INSERT INTO coins (symbol, coingecko_id) VALUES ('ETH', 'ethereum'), ('SOL', 'solana'), ('NONE', 'none-stored')").await;
    btc_of_both_sources_and_eth(&db.pool).await;
    sql(&db.pool, &rows("SOL", 50, 10, "coingecko", 0)).await;
    sql(
        &db.pool,
        &format!(
            "DELETE FROM daily_prices WHERE (symbol = 'ETH' AND date BETWEEN '{}' AND '{}') \
             OR (symbol = 'BTC' AND date = '{}')",
            days_before_today(60),
            days_before_today(50),
            days_before_today(500)
        ),
    )
    .await;
    let scan_before = texts(&db.pool, SCAN).await;
    assert_eq!(scan_before.len(), 4, "{scan_before:?}");

    // Act: a process of this release starts on it.
    let pool = upgrade(&db).await;

    // Assert: the figures say what a scan says, and the rows are as they were.
    assert_eq!(texts(&pool, KEPT).await, scan_before);
    assert_eq!(texts(&pool, SCAN).await, scan_before);
    let btc = store::coin_figures::of(&pool, Symbol::BTC).await.unwrap();
    assert_eq!(
        btc.complete_days,
        435 + 365 - 1,
        "both sources summed, the hole left out"
    );
    assert_eq!(btc.provisional_days, 1);
    assert_eq!(btc.last_complete_day, Some(days_before_today(1)));
    assert_eq!(btc.first_day, Some(days_before_today(800)));
}

/// The release before kept the figures with three trigger functions, the update's a copy
/// of the other two; this one keeps them through one path. A populated database upgrades
/// with its figures as they were, and every kind of change after it keeps them equal to a
/// scan.
#[tokio::test]
async fn figures_kept_by_the_previous_release_stay_true_through_the_upgrade_and_every_change_after()
{
    // Arrange: the previous release, its figures kept by its triggers.
    let db = release_up_to(BEFORE_ONE_PATH).await;
    sql(
        &db.pool,
        "INSERT INTO coins (symbol, coingecko_id) VALUES ('ETH', 'ethereum'), ('SOL', 'solana')",
    )
    .await;
    btc_of_both_sources_and_eth(&db.pool).await;
    sql(
        &db.pool,
        &format!(
            "UPDATE daily_prices SET provisional = TRUE WHERE symbol = 'ETH' AND date = '{}'",
            days_before_today(50)
        ),
    )
    .await;
    let kept_before = texts(&db.pool, KEPT).await;
    assert_eq!(kept_before, texts(&db.pool, SCAN).await, "the old triggers");

    // Act: a process of this release starts on it.
    let pool = upgrade(&db).await;

    // Assert: the figures as they were, then true after each kind of change.
    assert_eq!(texts(&pool, KEPT).await, kept_before);
    sql(&pool, &rows("SOL", 50, 10, "coingecko", 0)).await;
    assert_kept_equals_scan(&pool, "an INSERT").await;
    let (d20, d40) = (days_before_today(20), days_before_today(40));
    sql(&pool, &format!("UPDATE daily_prices SET provisional = NOT provisional WHERE symbol = 'ETH' AND date > '{d20}'")).await;
    assert_kept_equals_scan(&pool, "an UPDATE turning days provisional and back").await;
    sql(&pool, &format!("UPDATE daily_prices SET symbol = 'ETH', source = 'coinbase' WHERE symbol = 'BTC' AND date < '{}'", days_before_today(500))).await;
    assert_kept_equals_scan(&pool, "an UPDATE moving rows to another coin and source").await;
    sql(
        &pool,
        &format!(
            "UPDATE daily_prices SET date = date - 1000 WHERE symbol = 'SOL' AND date = '{}'",
            days_before_today(10)
        ),
    )
    .await;
    assert_kept_equals_scan(&pool, "an UPDATE moving a last day far back").await;
    sql(
        &pool,
        "UPDATE daily_prices SET close = close WHERE symbol = 'NOBODY'",
    )
    .await;
    assert_kept_equals_scan(&pool, "an UPDATE of no row").await;
    sql(
        &pool,
        &format!("DELETE FROM daily_prices WHERE date BETWEEN '{d40}' AND '{d20}'"),
    )
    .await;
    assert_kept_equals_scan(&pool, "a DELETE across coins").await;
    sql(
        &pool,
        &format!(
            "{} ON CONFLICT (symbol, date) DO UPDATE SET provisional = FALSE",
            rows("BTC", 45, 0, "coingecko", 2)
        ),
    )
    .await;
    assert_kept_equals_scan(&pool, "an upsert").await;
    sql(&pool, "DELETE FROM daily_prices WHERE symbol = 'SOL'").await;
    assert_kept_equals_scan(&pool, "a DELETE of a whole coin").await;
}

/// `/metrics` counts `n` stored days of `symbol`.
async fn assert_stored_candles(api: &TestApi, symbol: &str, n: i64) {
    let metrics = api.get("/metrics").await.text();
    let line = format!("price_history_stored_candles{{symbol=\"{symbol}\"}} {n}\n");
    assert!(metrics.contains(&line), "{metrics}");
}

/// The coin list reads BTC's last complete day and how many days it is behind.
async fn assert_btc_listed(api: &TestApi, last_complete_day: chrono::NaiveDate, stale_days: i64) {
    let btc = api.get("/api/v1/coins/BTC").await.json();
    assert_eq!(btc["last_complete_day"], last_complete_day.to_string());
    assert_eq!(btc["stale_days"], stale_days);
}

#[tokio::test]
async fn rows_changed_by_plain_sql_show_at_once_in_the_figures_the_coin_list_the_metrics_and_the_next_tick()
 {
    let h = Harness::new().await;
    let pool = h.pool();
    track_btc(&h, Some(days_before_today(30))).await;
    let api = TestApi::start(&h).await;
    let mut ticker = Ticker::new(&h, "figures-test");

    // Loaded by SQL, complete from 40 days ago to yesterday, today provisional.
    sql(pool, &rows("BTC", 40, 0, "coingecko", 1)).await;
    assert_kept_equals_scan(pool, "an INSERT ... SELECT").await;
    assert_btc_listed(&api, days_before_today(1), 0).await;
    assert_stored_candles(&api, "BTC", 41).await;
    let acted = ticker.act().await;
    assert_eq!(
        (acted.coins_tracked, acted.coins_behind, acted.jobs_queued),
        (1, 0, 0),
        "nothing missing, nothing queued"
    );

    // An operator deletes a day in the middle and the last two days, to have them fetched again.
    sql(
        pool,
        &format!(
            "DELETE FROM daily_prices WHERE symbol = 'BTC' AND (date = '{}' OR date >= '{}')",
            days_before_today(20),
            days_before_today(2)
        ),
    )
    .await;
    assert_kept_equals_scan(pool, "a DELETE").await;
    assert_btc_listed(&api, days_before_today(3), 2).await;
    assert_stored_candles(&api, "BTC", 37).await;
    let acted = ticker.act().await;
    assert_eq!((acted.coins_behind, acted.jobs_queued), (1, 1));
    let jobs = ingestion_jobs::list(pool, None, None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].trigger, Trigger::Schedule);
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (days_before_today(20), days_before_today(1)),
        "the hole in the middle found exactly, as the gap query finds it"
    );
    sql(pool, "DELETE FROM ingestion_jobs").await;

    // Updates: the hole filled and the provisional day made complete by an upsert; a
    // complete day turned provisional; a symbol moved.
    sql(
        pool,
        &format!(
            "{} ON CONFLICT (symbol, date) DO UPDATE SET provisional = FALSE",
            rows("BTC", 20, 0, "coingecko", 0)
        ),
    )
    .await;
    assert_kept_equals_scan(pool, "an upsert").await;
    sql(
        pool,
        &format!(
            "UPDATE daily_prices SET provisional = TRUE WHERE symbol = 'BTC' AND date = '{}'",
            days_before_today(1)
        ),
    )
    .await;
    assert_kept_equals_scan(pool, "an UPDATE of provisional").await;
    sql(
        pool,
        "INSERT INTO coins (symbol, coingecko_id) VALUES ('ETH', 'ethereum')",
    )
    .await;
    sql(pool, &format!("UPDATE daily_prices SET symbol = 'ETH', source = 'coinbase' WHERE symbol = 'BTC' AND date < '{}'", days_before_today(35))).await;
    assert_kept_equals_scan(pool, "an UPDATE of symbol and source").await;
    assert_stored_candles(&api, "ETH", 5).await;
    let acted = ticker.act().await;
    assert_eq!(
        acted.jobs_queued, 1,
        "yesterday turned provisional is missing again"
    );
    sql(pool, "DELETE FROM ingestion_jobs").await;

    // TRUNCATE: every figure gone.
    sql(pool, "TRUNCATE daily_prices").await;
    assert_kept_equals_scan(pool, "a TRUNCATE").await;
    let btc = api.get("/api/v1/coins/BTC").await.json();
    assert_eq!(btc["last_complete_day"], serde_json::Value::Null);
    assert_stored_candles(&api, "BTC", 0).await;
    let acted = ticker.act().await;
    assert_eq!(acted.jobs_queued, 1);
    let jobs = ingestion_jobs::list(pool, None, None, 10).await.unwrap();
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (days_before_today(30), days_before_today(1))
    );
    api.stop().await;
}

/// A coin registered under a plan that did not reach its first day keeps none; under a
/// plan without a limit, the tick keeps its days from before any coin (2009-01-03), not
/// from the calendar's first day: the gap query asks for a date PostgreSQL can hold.
#[tokio::test]
async fn a_tracked_coin_whose_first_day_is_unknown_is_kept_from_before_any_coin_under_a_plan_without_limit()
 {
    let h = Harness::new().await;
    let pool = h.pool();
    assert_eq!(
        h.ingestor().reach.current(pool).await.unwrap().limit_days(),
        None
    );
    sql(
        pool,
        "UPDATE coins SET first_day = NULL WHERE symbol = 'BTC'",
    )
    .await;
    track_btc(&h, None).await;
    // Two runs with a hole between: the tick's gap query runs.
    sql(pool, &rows("BTC", 40, 21, "coingecko", 0)).await;
    sql(pool, &rows("BTC", 19, 1, "coingecko", 0)).await;
    let acted = Ticker::new(&h, "first-day-test").act().await;
    assert_eq!((acted.coins_behind, acted.jobs_queued), (1, 1));
    let jobs = ingestion_jobs::list(pool, None, None, 10).await.unwrap();
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (
            price_history::domain::BEFORE_ANY_COIN,
            days_before_today(20)
        ),
        "every missing day, the hole last"
    );
}

/// A coin tracked from years back that holds only its last year, yesterday missing (as at
/// every tick): one scheduled job spans every missing day, more than the 1461 a job asked
/// for may, and leaves none missing. Cut to the newest 1461 days, the older ones were
/// never fetched: yesterday is the newest missing day at every tick.
#[tokio::test]
async fn a_coin_tracked_from_years_back_gets_every_missing_day_from_one_scheduled_job() {
    let h = Harness::new().await;
    track_btc(&h, Some(days_before_today(2000))).await;
    h.run_job(days_before_today(365), days_before_today(2), false)
        .await;
    let mut ticker = Ticker::new(&h, "backlog-test");
    assert_eq!(ticker.act().await.jobs_queued, 1);
    let job = h.jobs_by(Trigger::Schedule).await.remove(0);
    assert_eq!(
        (job.range.start(), job.range.end()),
        (days_before_today(2000), days_before_today(1))
    );
    let calls_before = h.fake.call_count();
    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;
    crate::support::assert_completed(&finished);
    assert_eq!(h.stored_days_of(Symbol::BTC).await, 2000);
    // The missing days only: 1635 older days in windows of 90 (19), yesterday (1).
    assert_eq!(h.fake.call_count() - calls_before, 20);
    let acted = ticker.act().await;
    assert_eq!((acted.coins_behind, acted.jobs_queued), (0, 0));
}

/// Acts on `ticker`'s next tick, which queues one job, and waits for the job to end: the
/// job, and the CoinGecko calls made meanwhile.
async fn tick_and_its_job(h: &Harness, ticker: &mut Ticker) -> (JobRecord, usize) {
    let calls = h.fake.call_count();
    assert_eq!(ticker.act().await.jobs_queued, 1);
    let queued = h.jobs_by(Trigger::Schedule).await.remove(0);
    let job = h.until_finished(queued.id).await;
    (job, h.fake.call_count() - calls)
}

/// `ticker`'s next tick queues one job, which makes one CoinGecko call (`why`) and ends
/// with `hole` its one gap: the job.
async fn job_leaving_the_hole(
    h: &Harness,
    ticker: &mut Ticker,
    hole: chrono::NaiveDate,
    why: &str,
) -> JobRecord {
    let (job, calls) = tick_and_its_job(h, ticker).await;
    assert_eq!(job.gap_dates, vec![hole], "{job:?}");
    assert_eq!(calls, 1, "{why}");
    job
}

async fn delete_btc_day(pool: &PgPool, day: chrono::NaiveDate) {
    sql(
        pool,
        &format!("DELETE FROM daily_prices WHERE symbol = 'BTC' AND date = '{day}'"),
    )
    .await;
}

/// A day CoinGecko has no data for, a hole in its own history, is asked at two ticks a day
/// apart; then the schedule leaves it alone, and asks once again 30 days after its last
/// empty answer. Before, every tick queued a job for it, two calls each.
#[tokio::test]
async fn a_day_coingecko_has_no_data_for_is_not_asked_again_at_every_tick() {
    let h = Harness::new().await;
    let pool = h.pool();
    let hole = days_before_today(30);
    h.fake.set_missing_days([hole]);
    track_btc(&h, Some(days_before_today(60))).await;
    let mut ticker = Ticker::new(&h, "hole-test");
    let worker = h.start_worker();
    let days_pass = |interval: &'static str| async move {
        let moved = format!("UPDATE empty_days SET last_answer_at = now() - interval '{interval}'");
        sql(pool, &moved).await;
    };

    let (first, calls) = tick_and_its_job(&h, &mut ticker).await;
    assert_eq!(first.gap_dates, vec![hole], "{first:?}");
    assert_eq!(calls, 2, "the 60 days' window, then the gap fill");

    // A day later: the second empty answer, a day after the first, rests the day, so the
    // job's gap fill leaves it alone and says why. (The gap fill's answer, minutes after
    // the window's, counted once: a short outage of CoinGecko's data rests nothing.)
    days_pass("21 hours").await;
    let second =
        job_leaving_the_hole(&h, &mut ticker, hole, "the hole's window, no gap fill").await;
    let message = second.error_message.unwrap_or_default();
    assert!(message.contains("does not ask for them again"), "{message}");

    let acted = ticker.act().await;
    assert_eq!(
        (acted.coins_behind, acted.jobs_queued),
        (0, 0),
        "only the hole is missing, and it rests"
    );
    let today = Utc::now().date_naive();
    let (_, to_look_at) = store::coin_figures::tracked_needing_a_look(pool, today, None)
        .await
        .expect("the database answers");
    assert!(
        to_look_at.is_empty(),
        "its figures and its rested hole cover its days, so no gap query: {to_look_at:?}"
    );

    // The days beside the hole go missing (an operator deleted them): one window asks for
    // the three, not two windows around the resting day, and no gap fill follows.
    let (before, after) = (days_before_today(31), days_before_today(29));
    sql(
        pool,
        &format!(
            "DELETE FROM daily_prices WHERE symbol = 'BTC' AND date IN ('{before}', '{after}')"
        ),
    )
    .await;
    job_leaving_the_hole(&h, &mut ticker, hole, "one window over the three days").await;

    // Thirty days after the last empty answer the schedule asks once more: one call.
    days_pass("31 days").await;
    job_leaving_the_hole(&h, &mut ticker, hole, "the hole's window, no gap fill").await;
    assert_eq!(ticker.act().await.jobs_queued, 0, "it rests again");

    // The hole stored after all (from the second source, once older than a Demo plan
    // serves), another day deleted: the noted hole is not counted twice, so the tick still
    // sees the missing day and queues its job.
    sql(pool, &rows("BTC", 30, 30, "coinbase", 0)).await;
    delete_btc_day(pool, days_before_today(5)).await;
    assert_eq!(
        ticker.act().await.jobs_queued,
        1,
        "the deleted day is missing"
    );
    worker.stop().await;
}

/// A tracked coin whose first day is not known (registered under a plan that did not
/// reach it), now under a plan without a limit: its job learns the first day with one
/// call, as registration would, asks for no window before it, and ends with nothing
/// missing; the next tick queues nothing. Without it, every tick asked again for the
/// years between 2009 and the coin's first price, and got nothing.
#[tokio::test]
async fn a_job_learns_the_first_day_a_coin_registered_under_a_limited_plan_did_not_know() {
    let h = Harness::new().await;
    let pool = h.pool();
    sql(
        pool,
        "INSERT INTO coins (symbol, coingecko_id, tracked) VALUES ('ETH', 'ethereum', true)",
    )
    .await;
    let eth = Symbol::parse("ETH").unwrap();
    let mut ticker = Ticker::new(&h, "first-day-learner");
    assert_eq!(ticker.act().await.jobs_queued, 1);
    let job = h.jobs_by(Trigger::Schedule).await.remove(0);
    assert_eq!(job.range.start(), price_history::domain::BEFORE_ANY_COIN);
    let calls_before = h.fake.call_count();
    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    crate::support::assert_completed(&finished);
    let first_day = crate::support::day("2015-08-07");
    let coin = coins::get(pool, eth).await.unwrap().unwrap().coin;
    assert_eq!(
        coin.first_day,
        Some(first_day),
        "ethereum's first price, in the fake"
    );
    let calls = &h.fake.calls()[calls_before..];
    assert!(
        calls[1..]
            .iter()
            .all(|call| call.to.date_naive() >= first_day),
        "no window before the first day: {:?}",
        calls
            .iter()
            .map(|call| (call.from, call.to))
            .collect::<Vec<_>>()
    );
    let days = (days_before_today(1) - first_day).num_days() + 1;
    assert_eq!(h.stored_days_of(eth).await, days);
    assert_eq!(
        calls.len() as i64,
        1 + (days + 89) / 90,
        "the check, then windows of 90 days"
    );
    assert_eq!(ticker.act().await.jobs_queued, 0);
}
