//! Keeping tracked coins current: `SYNC_SCHEDULE` across real `worker` processes on one
//! database, with catch-up and skewed clocks; turning tracking on; the freshness metrics.
//! Waits are on events: the `sync_ticks` notification of each acted-on tick, job changes
//! and the fake's call count.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Days, TimeDelta, Timelike, Utc};
use price_history::domain::{JobStatus, Symbol, Trigger};
use price_history::schedule::{Clock, Scheduler, SyncSchedule};
use price_history::store::sync_schedule::{self, ActedTick, TICKS_CHANNEL};
use price_history::store::{coins, ingestion_jobs::JobRecord};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::support::{Harness, TestApi, days_before_today, price_history_command};

/// Every two seconds: a few ticks within a test.
const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";

/// Follows the ticks acted on, in order, as `sync_ticks` announces them.
struct Ticks {
    listener: PgListener,
    pool: PgPool,
    seen: Option<DateTime<Utc>>,
}

impl Ticks {
    async fn new(pool: &PgPool) -> Ticks {
        let mut listener = PgListener::connect_with(pool).await.expect("can listen");
        listener.listen(TICKS_CHANNEL).await.expect("can listen");
        Ticks {
            listener,
            pool: pool.clone(),
            seen: None,
        }
    }

    /// The next tick acted on after the last one returned.
    async fn next(&mut self) -> ActedTick {
        let wait = async {
            loop {
                let acted = sync_schedule::acted_ticks(&self.pool)
                    .await
                    .expect("the database answers");
                if let Some(tick) = acted.into_iter().find(|t| Some(t.tick) > self.seen) {
                    self.seen = Some(tick.tick);
                    return tick;
                }
                // A notification lost to a reconnection costs at most a second.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.listener.recv()).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("a tick is acted on within 30 s")
    }

    /// The next tick acted on that satisfies `condition`, and those skipped before it.
    async fn until(&mut self, condition: impl Fn(&ActedTick) -> bool) -> Vec<ActedTick> {
        let mut ticks = Vec::new();
        loop {
            let tick = self.next().await;
            let done = condition(&tick);
            ticks.push(tick);
            if done {
                return ticks;
            }
        }
    }
}

/// A scheduler in this process, on the system clock, acting as `name`.
fn scheduler(h: &Harness, schedule: &str, name: &str) -> Scheduler {
    Scheduler {
        pool: h.pool().clone(),
        schedule: schedule.parse().unwrap(),
        clock: Clock::SYSTEM,
        reach: h.ingestor().reach,
        name: name.to_owned(),
        credits: None,
    }
}

/// Tracks BTC from `days` days ago, as a PUT would, but without the PUT's own job: what
/// follows is the schedule's doing alone.
async fn track_btc_since(h: &Harness, days: u64) {
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(days_before_today(days)))
        .await
        .expect("the database answers")
        .expect("BTC is registered");
}

/// The job queued by `tick`: the newest scheduled job created after it.
async fn job_of(h: &Harness, tick: &ActedTick) -> JobRecord {
    h.jobs_by(Trigger::Schedule)
        .await
        .into_iter()
        .find(|job| job.created_at >= tick.acted_at - TimeDelta::seconds(1))
        .expect("the tick's job is recorded")
}

/// Consecutive ticks of a two-second schedule lie two seconds apart: none skipped, and
/// (the primary key) none acted on twice.
fn assert_consecutive(ticks: &[ActedTick]) {
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].tick - pair[0].tick,
            TimeDelta::seconds(2),
            "ticks {} and {}",
            pair[0].tick,
            pair[1].tick
        );
    }
}

#[tokio::test]
async fn a_tick_is_acted_on_once_and_never_after_a_later_one() {
    let h = Harness::new().await;
    track_btc_since(&h, 3).await;
    let (a, b) = (
        scheduler(&h, EVERY_TWO_SECONDS, "a"),
        scheduler(&h, EVERY_TWO_SECONDS, "b"),
    );
    let tick = Utc::now().with_nanosecond(0).unwrap();
    let (_stop, running) = price_history::shutdown::Shutdown::new();

    let (by_a, by_b) = tokio::join!(
        a.act_on(tick, false, &running),
        b.act_on(tick, false, &running)
    );
    let earlier = a
        .act_on(tick - TimeDelta::seconds(2), false, &running)
        .await
        .unwrap()
        .done();
    let later = b
        .act_on(tick + TimeDelta::seconds(2), false, &running)
        .await
        .unwrap()
        .done();

    let acted: Vec<_> = [by_a.unwrap().done(), by_b.unwrap().done()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(acted.len(), 1, "one of two processes acts: {acted:?}");
    assert_eq!((acted[0].jobs_queued, acted[0].coins_behind), (1, 1));
    assert_eq!(earlier, None, "never a tick older than one acted on");
    let later = later.expect("a later tick is acted on");
    assert_eq!(
        (later.jobs_queued, later.coins_busy, later.coins_behind),
        (0, 1, 1),
        "the first job is still pending"
    );
    let jobs = h.jobs_by(Trigger::Schedule).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (days_before_today(3), days_before_today(1))
    );
    assert_eq!(
        sync_schedule::last_tick(h.pool()).await.unwrap(),
        Some(tick + TimeDelta::seconds(2))
    );
}

#[tokio::test]
async fn three_workers_queue_exactly_one_job_per_tick_that_finds_missing_days() {
    let h = Harness::new().await;
    track_btc_since(&h, 10).await;
    let mut ticks = Ticks::new(h.pool()).await;

    let mut processes = h.spawn_workers(3, &[("SYNC_SCHEDULE", EVERY_TWO_SECONDS)]);
    // The first tick finds the 10 days missing and queues one job for them.
    let mut seen = ticks.until(|t| t.jobs_queued > 0).await;
    let first = job_of(&h, seen.last().unwrap()).await;
    let first = h.until_finished(first.id).await;
    h.fake.wait_for_calls(1).await;
    // Ticks while the job runs leave the coin alone; then two find nothing missing.
    seen.extend(ticks.until(|t| t.coins_behind == 0).await);
    seen.push(ticks.next().await);
    let calls_when_current = h.fake.call_count();
    // Three days go missing, in two runs: the next tick queues one job, which makes one
    // call per run.
    sqlx::query("DELETE FROM daily_prices WHERE symbol = 'BTC' AND date = ANY($1)")
        .bind(vec![
            days_before_today(2),
            days_before_today(5),
            days_before_today(6),
        ])
        .execute(h.pool())
        .await
        .unwrap();
    seen.extend(ticks.until(|t| t.jobs_queued > 0).await);
    let second = job_of(&h, seen.last().unwrap()).await;
    let second = h.until_finished(second.id).await;
    seen.extend(ticks.until(|t| t.coins_behind == 0).await);
    let calls = h.fake.call_count();
    for process in &mut processes {
        assert!(process.is_running(), "{}", process.output());
    }

    assert_eq!(first.status, JobStatus::Completed, "{first:?}");
    assert_eq!(
        (first.range.start(), first.range.end()),
        (days_before_today(10), days_before_today(1))
    );
    assert_eq!(calls_when_current, 1, "ten days in one call");
    assert_eq!(second.status, JobStatus::Completed, "{second:?}");
    assert_eq!(
        (second.range.start(), second.range.end()),
        (days_before_today(6), days_before_today(2))
    );
    assert_eq!(
        calls - calls_when_current,
        2,
        "one call per run of missing days"
    );
    assert_consecutive(&seen);
    assert!(seen.iter().all(|t| t.jobs_queued <= 1), "{seen:#?}");
    assert!(
        seen.iter().all(|t| t.coins_tracked == 1
            && (t.coins_behind == 0) == (t.jobs_queued + t.coins_busy == 0)),
        "{seen:#?}"
    );
    let scheduled = h.jobs_by(Trigger::Schedule).await;
    let queued: i32 = sync_schedule::acted_ticks(h.pool())
        .await
        .unwrap()
        .iter()
        .map(|t| t.jobs_queued)
        .sum();
    assert_eq!(scheduled.len(), 2, "{scheduled:#?}");
    assert_eq!(queued, 2, "every scheduled job is one tick's");
    // Never two active jobs of the coin: the second was created after the first ended.
    assert!(second.created_at > first.completed_at.unwrap());
    assert_eq!(h.stored_days().await, 10);
    // Every tick was acted on by one of the three processes.
    for tick in &seen {
        assert!(
            processes.iter().any(|p| p.owns(&tick.acted_by)),
            "{}",
            tick.acted_by
        );
    }
}

#[tokio::test]
async fn an_untracked_coin_gets_no_job_and_no_call() {
    let h = Harness::new().await;
    let mut ticks = Ticks::new(h.pool()).await;

    let _worker = h.spawn(&["worker"], &[("SYNC_SCHEDULE", "* * * * * *")]);
    let seen = [ticks.next().await, ticks.next().await, ticks.next().await];

    assert!(
        seen.iter()
            .all(|t| t.coins_tracked == 0 && t.jobs_queued == 0),
        "{seen:#?}"
    );
    assert!(h.jobs_by(Trigger::Schedule).await.is_empty());
    assert_eq!(h.fake.call_count(), 0);
}

#[tokio::test]
async fn with_the_schedule_off_a_tracked_coin_gets_nothing() {
    let h = Harness::new().await;
    track_btc_since(&h, 10).await;

    let mut off = h.spawn(&["worker"], &[("SYNC_SCHEDULE", "off")]);
    // Nothing to wait for but time: three ticks of a one-second schedule.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(off.is_running(), "{}", off.output());
    assert!(
        off.output().contains("SYNC_SCHEDULE is off"),
        "{}",
        off.output()
    );
    assert_eq!(sync_schedule::last_tick(h.pool()).await.unwrap(), None);
    assert!(
        sync_schedule::acted_ticks(h.pool())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.jobs_by(Trigger::Schedule).await.is_empty());
    assert_eq!(h.fake.call_count(), 0);
}

#[tokio::test]
async fn a_tick_missed_while_no_process_ran_is_made_up_at_the_next_start() {
    let h = Harness::new().await;
    let mut ticks = Ticks::new(h.pool()).await;
    // A daily schedule whose tick today is a few seconds away.
    let tick = (Utc::now() + TimeDelta::seconds(5))
        .with_nanosecond(0)
        .unwrap();
    let daily = format!("{} {} {} * * *", tick.second(), tick.minute(), tick.hour());

    // The first process acts on yesterday's tick at start (nothing tracked), then stops.
    let mut first = h.spawn(&["worker"], &[("SYNC_SCHEDULE", &daily)]);
    let yesterdays = ticks.next().await;
    first.signal("TERM");
    assert_eq!(first.exit_code(Duration::from_secs(30)).await, Some(0));
    // While nothing runs, BTC is tracked and today's tick passes.
    track_btc_since(&h, 10).await;
    let wait = (tick - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    let _second = h.spawn(&["worker"], &[("SYNC_SCHEDULE", &daily)]);
    let made_up = ticks.next().await;
    let job = job_of(&h, &made_up).await;
    let job = h.until_finished(job.id).await;

    assert_eq!(
        yesterdays.tick,
        tick.checked_sub_days(Days::new(1)).unwrap()
    );
    assert_eq!(yesterdays.jobs_queued, 0);
    assert_eq!(made_up.tick, tick);
    assert!(made_up.catch_up);
    assert_eq!(made_up.jobs_queued, 1);
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.trigger, Trigger::Schedule);
    assert_eq!(h.stored_days().await, 10);
}

#[tokio::test]
async fn processes_whose_clocks_differ_still_act_once_per_tick() {
    let h = Harness::new().await;
    track_btc_since(&h, 10).await;
    let mut ticks = Ticks::new(h.pool()).await;

    // 1.5 s apart: one runs 1.2 s ahead, the other 0.3 s behind.
    let ahead = h.spawn(
        &["worker"],
        &[
            ("SYNC_SCHEDULE", EVERY_TWO_SECONDS),
            ("PH_SYNC_CLOCK_OFFSET_MS", "1200"),
        ],
    );
    let behind = h.spawn(
        &["worker"],
        &[
            ("SYNC_SCHEDULE", EVERY_TWO_SECONDS),
            ("PH_SYNC_CLOCK_OFFSET_MS", "-300"),
        ],
    );
    let mut seen = ticks.until(|t| t.jobs_queued > 0).await;
    let job = job_of(&h, seen.last().unwrap()).await;
    h.until_finished(job.id).await;
    seen.extend(ticks.until(|t| t.coins_behind == 0).await);
    for _ in 0..3 {
        seen.push(ticks.next().await);
    }

    assert_consecutive(&seen);
    assert_eq!(
        h.jobs_by(Trigger::Schedule).await.len(),
        1,
        "{seen:#?}\n{}\n{}",
        ahead.output(),
        behind.output()
    );
    assert_eq!(seen.iter().map(|t| t.jobs_queued).sum::<i32>(), 1);
    assert_eq!(h.fake.call_count(), 1);
    let actors: HashSet<&str> = seen.iter().map(|t| t.acted_by.as_str()).collect();
    assert!(
        actors.iter().all(|a| ahead.owns(a) || behind.owns(a)),
        "{actors:?}"
    );
    for process in [&ahead, &behind] {
        assert!(
            !process.output().contains("could not act on a tick"),
            "{}",
            process.output()
        );
    }
}

#[tokio::test]
async fn a_malformed_schedule_stops_the_process_at_start_saying_what_is_wrong() {
    let h = Harness::new().await;

    let mut worker = h.spawn(&["worker"], &[("SYNC_SCHEDULE", "0 40 * * *")]);
    let code = worker.exit_code(Duration::from_secs(30)).await;

    let output = worker.output();
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("\"0 40 * * *\""), "{output}");
    assert!(
        output.contains("5 fields where 6 or 7 are needed"),
        "{output}"
    );
}

#[tokio::test]
async fn turning_tracking_on_queues_the_missing_days_at_once() {
    let h = Harness::new().await;
    let api = TestApi::start(&h).await;

    let track = json!({"coingecko_id": "bitcoin", "tracked": true, "track_since": days_before_today(5).to_string()});
    let tracked = api.put_coin("BTC", track.clone()).await;
    let again = api.put_coin("BTC", track).await;

    assert_eq!(tracked.status, StatusCode::OK, "{}", tracked.text());
    assert_eq!(again.status, StatusCode::OK);
    let jobs = h.jobs_by(Trigger::Api).await;
    assert_eq!(
        jobs.len(),
        1,
        "tracking on, not tracking kept on: {jobs:#?}"
    );
    assert_eq!(jobs[0].status, JobStatus::Pending);
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (days_before_today(5), days_before_today(1))
    );
    assert_eq!(h.fake.call_count(), 0, "the job runs on a worker");
}

#[tokio::test]
async fn coins_add_with_track_queues_the_missing_days_at_once() {
    let h = Harness::new().await;

    let output = price_history_command(&h.db.url, &h.fake.base_url())
        .args([
            "coins",
            "add",
            "ETH",
            "ethereum",
            "--track",
            "--since",
            &days_before_today(3).to_string(),
        ])
        .output()
        .await
        .unwrap();

    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let jobs = h.jobs_by(Trigger::Cli).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].symbol.as_str(), "ETH");
    assert_eq!(
        (jobs[0].range.start(), jobs[0].range.end()),
        (days_before_today(3), days_before_today(1))
    );
    assert!(
        text.contains(&format!("job {} queued for ETH's missing days", jobs[0].id)),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_each_coins_freshness_and_the_schedules_ticks() {
    let h = Harness::new().await;
    h.run_job(days_before_today(3), days_before_today(2), false)
        .await;
    // ETH tracked from ten days ago with nothing stored yet (its job failing, say); SOL
    // registered, untracked, with nothing stored.
    // DOGE tracked too, nothing stored, its first job pending: a backfill under way.
    let eth = h.register("ETH", "ethereum").await;
    h.register("SOL", "solana").await;
    let doge = h.register("DOGE", "dogecoin").await;
    for coin in [eth, doge] {
        coins::set_tracking(h.pool(), coin, true, Some(days_before_today(10)))
            .await
            .expect("the database answers")
            .expect("the coin is registered");
    }
    h.submit_for(doge, days_before_today(10), days_before_today(1), false)
        .await;
    let schedule: SyncSchedule = "0 40 0 * * *".parse().unwrap();
    let api = TestApi::start_with(price_history::api::ApiState {
        sync_schedule: schedule.clone(),
        ..h.api_state(None)
    })
    .await;

    let text = api.get("/metrics").await.text();

    let midnight = days_before_today(2)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    assert!(
        text.contains(&format!(
            "price_history_coin_last_complete_day_timestamp_seconds{{symbol=\"BTC\",tracked=\"false\"}} {midnight}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("price_history_coin_stale_seconds{symbol=\"BTC\",tracked=\"false\"} 86400\n"),
        "{text}"
    );
    // Every day it keeps is missing: as far behind as if the day before them were its last.
    assert!(
        text.contains(&format!(
            "price_history_coin_stale_seconds{{symbol=\"ETH\",tracked=\"true\"}} {}\n",
            10 * 86_400
        )),
        "{text}"
    );
    for no_series in [
        "price_history_coin_last_complete_day_timestamp_seconds{symbol=\"ETH\"",
        "price_history_coin_stale_seconds{symbol=\"SOL\"",
        "price_history_coin_stale_seconds{symbol=\"DOGE\"",
    ] {
        assert!(!text.contains(no_series), "{no_series}: {text}");
    }
    let next = schedule.next_after(Utc::now()).unwrap().timestamp();
    assert!(
        text.contains(&format!(
            "price_history_sync_next_tick_timestamp_seconds {next}\n"
        )),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("price_history_sync_last_tick_timestamp_seconds ")),
        "no tick acted on yet: {text}"
    );
}

/// Kills `src/schedule/mod.rs`, `Scheduler::run`: `now >= next` -> `now < next` (the wait
/// for a tick's time skipped: every tick to come acted on at once, the schedule run
/// ahead of the clock). Ticks are acted on one by one, each at or after its time.
#[tokio::test]
async fn no_tick_is_acted_on_before_it_is_due() {
    let h = Harness::new().await;
    let scheduler = scheduler(&h, "* * * * * *", "in-process");
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

/// Kills `src/schedule/mod.rs`, `Scheduler::look_at`: the match guard
/// `e.is_unavailable()` -> `false`. A database error while queuing a coin's job must fail the
/// whole tick and roll its claim back, so that the tick is tried again; the mutant logs
/// it, records the tick as acted on, and the coin waits for the next tick.
#[tokio::test]
async fn a_database_error_while_queuing_fails_the_whole_tick_and_frees_it_for_a_retry() {
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
    let scheduler = scheduler(&h, "* * * * * *", "in-process");
    let tick = Utc::now().with_nanosecond(0).unwrap();
    let (_stop, running) = price_history::shutdown::Shutdown::new();

    let acted = scheduler.act_on(tick, false, &running).await;

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
