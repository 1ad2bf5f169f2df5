//! Jobs survive their processes: kill -9, SIGTERM, restarts in a loop, several replicas.
//! These start the real binary as separate processes (with a 5 s lease) against the
//! test's database and a fake CoinGecko slow enough to interrupt.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use price_history::domain::{JobStatus, Symbol};
use price_history::store::daily_prices;
use rust_decimal::Decimal;

use price_history::store::ingestion_jobs::JobRecord;
use uuid::Uuid;

use crate::support::{
    Harness, Service, assert_days_are_the_fakes, days_before_today, sql, until_ready,
};

const LEASE: Duration = Duration::from_secs(5);

/// A four-year range: 17 windows.
fn four_years() -> (NaiveDate, NaiveDate) {
    let end = days_before_today(1);
    (end.checked_sub_days(Days::new(1460)).unwrap(), end)
}

async fn stored_dates(h: &Harness) -> HashSet<NaiveDate> {
    sqlx::query_scalar::<_, NaiveDate>("SELECT date FROM daily_prices")
        .fetch_all(h.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Every stored day equals what the fake serves, and every day is there exactly once.
async fn assert_table_matches_the_truth(h: &Harness, start: NaiveDate, end: NaiveDate) {
    let rows = daily_prices::list(h.pool(), Symbol::BTC, start, end)
        .await
        .unwrap();
    assert_eq!(
        rows.len() as i64,
        (end - start).num_days() + 1,
        "every day stored once"
    );
    assert_eq!(
        h.stored_days().await,
        rows.len() as i64,
        "no row outside the range, none doubled"
    );
    assert_days_are_the_fakes(&h.fake, "bitcoin", Symbol::BTC, &rows);
}

/// Windows fetched more than once, by the day they start.
fn refetched_windows(h: &Harness) -> Vec<NaiveDate> {
    let mut per_window: HashMap<NaiveDate, usize> = HashMap::new();
    for call in h.calls_answered(200) {
        *per_window.entry(call.from.date_naive()).or_default() += 1;
    }
    per_window
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(day, _)| day)
        .collect()
}

/// Waits until a second attempt of the job is running: a takeover or a hand-off.
async fn second_attempt(h: &Harness, id: Uuid) -> JobRecord {
    h.wait_for(id, "a second attempt", |j| {
        j.attempts >= 2 && j.status == JobStatus::Running
    })
    .await
}

/// Waits for the second attempt that takes the job over after its worker was killed at
/// `killed_at`, then for the job to complete; prints the takeover's time as `what`, checks
/// that it came within the lease (and some slack) and returns that second attempt.
async fn taken_over(h: &Harness, id: Uuid, killed_at: Instant, what: &str) -> JobRecord {
    let resumed = second_attempt(h, id).await;
    let takeover = killed_at.elapsed();
    h.completes(id).await;
    println!("{what}: {takeover:.2?} (lease {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(10),
        "took {takeover:?}"
    );
    resumed
}

/// Two worker processes, and a job they are two windows into, its calls slowed so that
/// it can be interrupted: the job, the holder's name, the worker holding it, the other.
async fn two_workers_two_windows_into(
    h: &Harness,
    start: NaiveDate,
    end: NaiveDate,
) -> (JobRecord, String, Service, Service) {
    h.fake.set_delay(Duration::from_millis(250));
    let a = h.spawn(&["worker"], &[]);
    let b = h.spawn(&["worker"], &[]);
    let job = h.submit(start, end, false).await;
    h.wait_for(job.id, "2 windows stored", |j| j.chunks_done >= 2)
        .await;
    let holder = h.holder(job.id).await.expect("a worker holds the job");
    let (busy, other) = if a.owns(&holder) { (a, b) } else { (b, a) };
    (job, holder, busy, other)
}

/// A job of `start..=end` on a slowed fake, and one worker on it once it has stored
/// `windows` windows.
async fn one_worker_into(
    h: &Harness,
    start: NaiveDate,
    end: NaiveDate,
    windows: i32,
) -> (JobRecord, Service) {
    h.fake.set_delay(Duration::from_millis(250));
    let job = h.submit(start, end, false).await;
    let worker = h.spawn(&["worker"], &[]);
    h.wait_for(job.id, &format!("{windows} window(s) stored"), |j| {
        j.chunks_done >= windows
    })
    .await;
    (job, worker)
}

#[tokio::test]
async fn a_job_killed_with_its_worker_resumes_after_restart_without_refetching_stored_windows() {
    let h = Harness::new().await;
    let (start, end) = four_years();
    let (job, mut first) = one_worker_into(&h, start, end, 3).await;

    first.kill().await;
    let killed_at = Instant::now();
    let stored_at_kill = stored_dates(&h).await;
    let _second = h.spawn(&["worker"], &[]);
    let resumed = taken_over(&h, job.id, killed_at, "takeover after kill -9 and restart").await;

    assert!(resumed.chunks_done >= 3, "the checkpoint survived");
    for day in refetched_windows(&h) {
        assert!(
            !stored_at_kill.contains(&day),
            "window starting {day} was stored before the kill and fetched again"
        );
    }
    assert!(
        h.fake.call_count() <= 17 + 1,
        "at most the window in flight is fetched twice: {}",
        h.fake.call_count()
    );
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn when_the_busy_worker_of_two_is_killed_the_other_finishes_the_job() {
    let h = Harness::new().await;
    let (start, end) = four_years();
    let (job, holder, mut busy, mut idle) = two_workers_two_windows_into(&h, start, end).await;
    assert!(busy.owns(&holder));

    busy.kill().await;
    let killed_at = Instant::now();
    taken_over(
        &h,
        job.id,
        killed_at,
        "takeover by the other replica after kill -9",
    )
    .await;

    assert!(idle.is_running());
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn sigterm_hands_the_job_to_the_other_worker_at_once_and_exits_0() {
    let h = Harness::new().await;
    let (start, end) = four_years();
    let (job, _, mut busy, other) = two_workers_two_windows_into(&h, start, end).await;

    busy.signal("TERM");
    let signalled_at = Instant::now();
    let taken = second_attempt(&h, job.id).await;
    let handoff = signalled_at.elapsed();
    let code = busy.exit_code(Duration::from_secs(30)).await;
    let exited = signalled_at.elapsed();
    let finished = h.completes(job.id).await;

    println!(
        "hand-off after SIGTERM: {handoff:.2?}; the signalled worker exited after {exited:.2?}"
    );
    assert_eq!(code, Some(0), "{}", busy.output());
    // A hand-off happens at every rolling deploy: nothing an operator must look at.
    let errors: Vec<String> = busy
        .output()
        .lines()
        .filter(|line| line.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    assert!(errors.is_empty(), "ERROR lines at a hand-off: {errors:#?}");
    assert!(
        handoff < Duration::from_secs(3),
        "hand-off took {handoff:?}, well under the {LEASE:?} lease expected"
    );
    assert!(
        other.owns(&h.holder(job.id).await.unwrap_or_default()) || finished.status.is_terminal()
    );
    assert!(taken.chunks_done >= 2);
    // INTERFACE: "checkpoint the current window". The window in flight at the signal is
    // stored, not asked again by the next attempt (it was dropped before, a call paid for
    // twice at every rolling deploy).
    assert_eq!(refetched_windows(&h), Vec::<NaiveDate>::new());
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn restarts_under_load_leave_the_table_equal_to_coingeckos_truth() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(150));
    let (start, end) = four_years();
    let job = h.submit(start, end, false).await;

    for round in 0..4 {
        let mut worker = h.spawn(&["worker"], &[]);
        let done = h.job(job.id).await.chunks_done;
        h.wait_for(job.id, "one more window", |j| j.chunks_done > done)
            .await;
        if round % 2 == 0 {
            worker.kill().await;
        } else {
            worker.signal("TERM");
            worker.exits_0(Duration::from_secs(30)).await;
        }
    }
    let _last = h.spawn(&["worker"], &[]);
    let finished = h.completes(job.id).await;

    assert!(finished.attempts >= 5);
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn a_job_whose_only_worker_died_reads_pending_not_running() {
    let h = Harness::new().await;
    let (start, end) = four_years();
    let (job, mut worker) = one_worker_into(&h, start, end, 1).await;
    let api_port = crate::support::free_port().to_string();
    let _api = h.spawn(&["api"], &[("BIND_ADDR", &format!("127.0.0.1:{api_port}"))]);

    worker.kill().await;
    let killed_at = Instant::now();
    let orphan = h
        .wait_for(job.id, "the record to say pending", |j| {
            j.status == JobStatus::Pending
        })
        .await;
    let noticed = killed_at.elapsed();

    println!(
        "a job without a live worker read pending {noticed:.2?} after kill -9 (lease {LEASE:?})"
    );
    assert!(
        noticed <= LEASE + Duration::from_secs(10),
        "took {noticed:?}"
    );
    assert!(orphan.error_message.unwrap().contains("stopped answering"));
    let _worker = h.spawn(&["worker"], &[]);
    h.completes(job.id).await;
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn a_job_submitted_as_serve_comes_up_starts_at_once() {
    let h = Harness::new().await;
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    // A 60 s lease is a 20 s heartbeat: a job found only by polling would wait that long.
    let mut serve = h.spawn(
        &["serve"],
        &[
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("JOB_LEASE_SECS", "60"),
        ],
    );
    until_ready(&serve, &base).await;

    let day = days_before_today(3);
    let job = h.submit(day, day, false).await;
    let submitted = Instant::now();
    h.wait_for(job.id, "the job to start", |j| {
        j.status != JobStatus::Pending
    })
    .await;
    let picked_up = submitted.elapsed();

    println!("a job submitted as serve came up started after {picked_up:.2?}");
    assert!(picked_up < Duration::from_secs(2), "took {picked_up:?}");
    assert!(serve.is_running());
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

/// Kills `src/queue/lease.rs`: `Lease::holds` -> `Ok(true)` (the lease fence off). A worker
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

/// An audit's finding: the fence covered an attempt's windows but not its final word. A
/// worker that lost its job after its last window (silent past its lease while it counted
/// the job's gaps, another worker taking over) still wrote the job's end over the record
/// of the worker that now ran it. Here the take-over is made by a trigger, in the
/// transaction of the job's last checkpoint: the attempt has nothing left to fence but
/// its final word, which must then be left to the other worker.
#[tokio::test]
async fn a_worker_that_lost_its_job_after_its_last_window_leaves_the_jobs_end_to_the_other() {
    let h = Harness::new().await;
    sql(
        h.pool(),
        "CREATE FUNCTION take_over_at_the_last_window() RETURNS trigger AS $$ BEGIN \
           IF NEW.chunks_total > 0 AND NEW.chunks_done = NEW.chunks_total THEN \
             INSERT INTO apalis.workers (id, worker_type, storage_name) \
               VALUES ('the-worker-that-took-over', 'price-history::ingest', 'test') \
               ON CONFLICT DO NOTHING; \
             UPDATE apalis.jobs SET lock_by = 'the-worker-that-took-over' \
               WHERE lock_by IS NOT NULL AND lock_by <> 'the-worker-that-took-over'; \
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER take_over AFTER UPDATE OF chunks_done ON ingestion_jobs \
           FOR EACH ROW EXECUTE FUNCTION take_over_at_the_last_window();",
    )
    .await;
    let job = h.submit_days_to_yesterday(100).await;
    let worker = h.start_worker();
    h.wait_for(job.id, "the job's last window", |j| {
        j.chunks_total > 0 && j.chunks_done == j.chunks_total
    })
    .await;
    // The worker ends its attempt (its final word is all that is left) and stops.
    worker.stop().await;

    let after = h.job(job.id).await;
    assert_eq!(
        (after.status, after.completed_at),
        (JobStatus::Running, None),
        "the record is the other worker's to end: {:?}",
        after.error_message
    );
    assert_eq!(h.stored_days().await, 100, "the windows were stored");
}

/// Kills `src/queue/lease.rs`: `held_by_live_workers` -> `Ok(vec![])` (and the
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

/// Kills `src/queue/worker.rs`, `run_worker`: `restarts == 0` -> `!=`. A worker holds its
/// jobs under the name it was given; only a restarted one takes a new name (`-r1`...), so
/// that it never passes for the instance whose lock may still be held.
#[tokio::test]
async fn a_worker_holds_its_job_under_the_name_it_was_given() {
    let h = Harness::new().await;
    // The answer is held back, so that the job is held while the test looks.
    h.fake.set_delay(Duration::from_secs(1));
    let job = h.submit_days_to_yesterday(3).await;
    let name = format!("named-by-the-test-{}", job.id.simple());
    let worker = h.start_worker_named(name.clone());

    h.fake.wait_for_calls(1).await;
    let holder = h.holder(job.id).await;
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    assert_eq!(holder.as_deref(), Some(name.as_str()));
    assert_eq!(finished.status, JobStatus::Completed);
}
