//! Jobs survive their processes: kill -9, SIGTERM, restarts in a loop, several replicas.
//! These start the real binary as separate processes (with a 5 s lease) against the
//! test's database and a fake CoinGecko slow enough to interrupt.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use price_history::domain::{JobStatus, Symbol};
use price_history::store::daily_prices;

use price_history::store::ingestion_jobs::JobRecord;
use uuid::Uuid;

use crate::support::{Harness, Service, days_before_today};

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
    for row in rows {
        let points = h.fake.points_for_day(row.date, true);
        assert_eq!(row.open, points.first().unwrap().1, "open of {}", row.date);
        assert_eq!(row.close, points.last().unwrap().1, "close of {}", row.date);
        assert!(!row.provisional);
    }
}

/// Windows fetched more than once, by the day they start.
fn refetched_windows(h: &Harness) -> Vec<NaiveDate> {
    let mut per_window: HashMap<NaiveDate, usize> = HashMap::new();
    for call in h.fake.calls().into_iter().filter(|c| c.status == 200) {
        *per_window.entry(call.from.date_naive()).or_default() += 1;
    }
    per_window
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(day, _)| day)
        .collect()
}

/// Waits for the job to end, and checks that it completed.
async fn completes(h: &Harness, id: Uuid) -> JobRecord {
    let finished = h
        .wait_for(id, "the job ends", |j| j.status.is_terminal())
        .await;
    assert_eq!(
        finished.status,
        JobStatus::Completed,
        "{:?}",
        finished.error_message
    );
    finished
}

/// Waits until a second attempt of the job is running: a takeover or a hand-off.
async fn second_attempt(h: &Harness, id: Uuid) -> JobRecord {
    h.wait_for(id, "a second attempt", |j| {
        j.attempts >= 2 && j.status == JobStatus::Running
    })
    .await
}

/// Of two workers, the one holding the job and the other, with the holder's name.
async fn busy_and_other<'w>(
    h: &Harness,
    id: Uuid,
    a: &'w mut Service,
    b: &'w mut Service,
) -> (String, &'w mut Service, &'w mut Service) {
    let holder = h.holder(id).await.expect("a worker holds the job");
    if a.owns(&holder) {
        (holder, a, b)
    } else {
        (holder, b, a)
    }
}

#[tokio::test]
async fn a_job_killed_with_its_worker_resumes_after_restart_without_refetching_stored_windows() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(250));
    let (start, end) = four_years();
    let job = h.submit(start, end, false).await;
    let mut first = h.spawn(&["worker"], &[]);
    h.wait_for(job.id, "3 windows stored", |j| j.chunks_done >= 3)
        .await;

    first.kill().await;
    let killed_at = Instant::now();
    let stored_at_kill = stored_dates(&h).await;
    let _second = h.spawn(&["worker"], &[]);
    let resumed = second_attempt(&h, job.id).await;
    let takeover = killed_at.elapsed();
    completes(&h, job.id).await;

    println!("takeover after kill -9 and restart: {takeover:.2?} (lease {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(10),
        "took {takeover:?}"
    );
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
    h.fake.set_delay(Duration::from_millis(250));
    let (start, end) = four_years();
    let mut a = h.spawn(&["worker"], &[]);
    let mut b = h.spawn(&["worker"], &[]);
    let job = h.submit(start, end, false).await;
    h.wait_for(job.id, "2 windows stored", |j| j.chunks_done >= 2)
        .await;
    let (holder, busy, idle) = busy_and_other(&h, job.id, &mut a, &mut b).await;
    assert!(busy.owns(&holder));

    busy.kill().await;
    let killed_at = Instant::now();
    second_attempt(&h, job.id).await;
    let takeover = killed_at.elapsed();
    completes(&h, job.id).await;

    println!("takeover by the other replica after kill -9: {takeover:.2?} (lease {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(10),
        "took {takeover:?}"
    );
    assert!(idle.is_running());
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn sigterm_hands_the_job_to_the_other_worker_at_once_and_exits_0() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(250));
    let (start, end) = four_years();
    let mut a = h.spawn(&["worker"], &[]);
    let mut b = h.spawn(&["worker"], &[]);
    let job = h.submit(start, end, false).await;
    h.wait_for(job.id, "2 windows stored", |j| j.chunks_done >= 2)
        .await;
    let (_, busy, other) = busy_and_other(&h, job.id, &mut a, &mut b).await;

    busy.signal("TERM");
    let signalled_at = Instant::now();
    let taken = second_attempt(&h, job.id).await;
    let handoff = signalled_at.elapsed();
    let code = busy.exit_code(Duration::from_secs(30)).await;
    let exited = signalled_at.elapsed();
    let finished = completes(&h, job.id).await;

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
    assert!(
        refetched_windows(&h).len() <= 1,
        "at most the dropped window is fetched again"
    );
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
            assert_eq!(
                worker.exit_code(Duration::from_secs(30)).await,
                Some(0),
                "{}",
                worker.output()
            );
        }
    }
    let _last = h.spawn(&["worker"], &[]);
    let finished = completes(&h, job.id).await;

    assert!(finished.attempts >= 5);
    assert_table_matches_the_truth(&h, start, end).await;
}

#[tokio::test]
async fn a_job_whose_only_worker_died_reads_pending_not_running() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(250));
    let (start, end) = four_years();
    let job = h.submit(start, end, false).await;
    let mut worker = h.spawn(&["worker"], &[]);
    h.wait_for(job.id, "a window stored", |j| j.chunks_done >= 1)
        .await;
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
    completes(&h, job.id).await;
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    // Readiness of an outside process has no event to wait on: poll it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "serve never became ready:\n{}",
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
