//! The job's life on the queue: every status transition, retries, cancellation, and the
//! one-active-job rule.

use std::collections::HashSet;
use std::time::Duration;

use fake_upstream::coingecko::{FakeOptions, ScriptedResponse};
use price_history::domain::{DateRange, JobStatus, Symbol, today_utc};
use price_history::queue::{self, SubmitError, Turn};
use price_history::store::ingestion_jobs::{self, Cancelled, JobFollower, JobRecord, NewJob};
use uuid::Uuid;

use crate::support::{
    Harness, RunningWorker, api_job, assert_completed, assert_mentions, days_before_today, sql,
};

/// Sets how often the job has been started, as if its worker had died that often.
async fn set_attempts(h: &Harness, id: Uuid, attempts: i32) {
    sqlx::query("UPDATE ingestion_jobs SET attempts = $2 WHERE id = $1")
        .bind(id)
        .bind(attempts)
        .execute(h.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_job_goes_from_pending_to_running_to_completed() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(100));
    let job = h.submit_days_to_yesterday(200).await;
    assert_eq!(job.status, JobStatus::Pending);
    assert!(job.started_at.is_none());
    let mut follower = JobFollower::new(h.pool(), job.id).await.unwrap();

    let worker = h.start_worker();
    let mut seen = vec![job.status];
    let mut progress = vec![];
    let finished = loop {
        let now = follower.next_change().await.unwrap().unwrap();
        if seen.last() != Some(&now.status) {
            seen.push(now.status);
        }
        progress.push(now.chunks_done);
        if now.status.is_terminal() {
            break now;
        }
    };
    worker.stop().await;

    assert_eq!(
        seen,
        vec![JobStatus::Pending, JobStatus::Running, JobStatus::Completed]
    );
    assert!(
        progress.windows(2).all(|p| p[0] <= p[1]),
        "progress only grows: {progress:?}"
    );
    assert!(finished.started_at.is_some() && finished.completed_at.is_some());
    assert!(finished.completed_at >= finished.started_at);
    assert_eq!((finished.chunks_done, finished.chunks_total), (3, 3));
    assert_eq!(finished.attempts, 1);
}

#[tokio::test]
async fn a_transient_failure_goes_back_on_the_queue_and_the_next_attempt_completes() {
    let h = Harness::new().await;
    // The call and its 3 retries all fail: attempt 1 fails; attempt 2 finds CoinGecko well.
    h.fail_next_calls(4, 503, "Service Unavailable");

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(job.attempts, 2);
    assert_eq!(h.fake.call_count(), 5);
    assert_eq!(h.stored_days().await, 10);
}

#[tokio::test]
async fn a_job_that_keeps_failing_transiently_is_failed_after_job_max_attempts() {
    let h = Harness::new().await;
    h.fail_next_calls(3 * 4, 502, "Bad Gateway");

    let job = h.run_days_to_yesterday(10).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 3);
    assert_eq!(
        h.fake.call_count(),
        12,
        "3 attempts of 1 call and 3 retries"
    );
    let message = job.error_message.unwrap();
    assert_mentions(&message, &["failed after 3 attempts", "502"]);
}

/// An audit's finding: every hand-off at shutdown (each rolling deploy) counted as one of
/// the job's `JOB_MAX_ATTEMPTS`, in its record and in the queue's entry, so a job handed
/// back three times failed for good at its first CoinGecko 503.
#[tokio::test]
async fn hand_offs_at_shutdown_cost_a_job_none_of_its_attempts() {
    let h = Harness::new().await;
    h.fake.set_delay(Duration::from_millis(50));
    // Ten windows: each start below stops after at most two.
    let job = h.submit_days_to_yesterday(900).await;
    for handed in 1..=3 {
        let worker = h.start_worker();
        h.wait_for(job.id, "the job to run", |j| {
            j.status == JobStatus::Running && j.attempts == handed
        })
        .await;
        worker.stop().await;
        let back = h.job(job.id).await;
        assert_eq!((back.status, back.handbacks), (JobStatus::Pending, handed));
    }
    // The next attempt fails (the call and its 3 retries); the one after it finishes.
    h.fail_next_calls(4, 503, "Service Unavailable");

    let worker = h.start_worker();
    let job = h.until_finished(job.id).await;
    worker.stop().await;

    assert_completed(&job);
    assert_eq!((job.attempts, job.failures, job.handbacks), (5, 1, 3));
    assert_eq!(h.stored_days().await, 900);
}

#[tokio::test]
async fn a_resumed_job_does_not_fetch_the_windows_it_already_stored() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(270), days_before_today(1));
    // Window 1 succeeds; window 2 fails with every retry; attempt 2 resumes.
    h.fake.push_response(ScriptedResponse::passthrough());
    h.fail_next_calls(4, 500, "oops");

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(job.attempts, 2);
    let successful = h.calls_answered(200);
    assert_eq!(successful.len(), 3, "each of the 3 windows fetched once");
    let distinct: HashSet<_> = successful.iter().map(|c| c.from).collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(h.stored_days().await, 270);
}

/// An audit's finding: a forced job resumed by skipping `chunks_done` windows of its whole
/// range, although it had fetched only those the plan serves (and counts every step's
/// windows there), so it fetched its stored windows again.
#[tokio::test]
async fn a_resumed_forced_job_beyond_the_plans_reach_does_not_fetch_the_windows_it_already_stored()
{
    let mut h = Harness::with_fake(FakeOptions {
        history_limit_days: Some(365),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_history_days = Some(365);
    let (start, end) = (days_before_today(1000), days_before_today(1));
    h.fake.push_response(ScriptedResponse::passthrough());
    h.fail_next_calls(4, 500, "oops");

    let job = h.run_job(start, end, true).await;

    assert_eq!(job.attempts, 2, "{:?}", job.error_message);
    let successful = h.calls_answered(200);
    let distinct: HashSet<_> = successful.iter().map(|c| c.from).collect();
    assert_eq!(distinct.len(), successful.len(), "each window fetched once");
    assert_eq!(
        h.stored_days().await,
        364,
        "every day the plan serves, but today"
    );
}

/// An audit's finding: a forced job cut its windows from the range's first day, so where
/// the plan's reach cut the range, its first window was a stub of a few days: 6 calls for
/// the 364 days a 365-day plan serves, where the same range unforced takes 5.
#[tokio::test]
async fn a_forced_job_beyond_the_plans_reach_asks_for_the_days_it_serves_in_full_windows() {
    let mut h = Harness::with_fake(FakeOptions {
        history_limit_days: Some(365),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_history_days = Some(365);

    let job = h
        .run_job(days_before_today(451), days_before_today(1), true)
        .await;

    assert_eq!(
        job.status,
        JobStatus::CompletedWithGaps,
        "{:?}",
        job.error_message
    );
    assert_eq!(h.stored_days().await, 364);
    assert_eq!(h.fake.call_count(), 5, "364 days in windows of 90");
    assert_eq!((job.chunks_done, job.chunks_total), (5, 5));
}

#[tokio::test]
async fn a_cancelled_pending_job_never_runs() {
    let h = Harness::new().await;
    let cancelled = h
        .submit(days_before_today(300), days_before_today(200), false)
        .await;
    let Cancelled::Now(record) = ingestion_jobs::cancel(h.pool(), cancelled.id)
        .await
        .unwrap()
    else {
        panic!("a pending job can be cancelled");
    };
    assert_eq!(record.status, JobStatus::Cancelled);
    // The queue takes jobs in order: once the next one is done, the cancelled one was seen.
    let next = h.run_days_to_yesterday(5).await;

    assert_eq!(next.status, JobStatus::Completed);
    let after = h.job(cancelled.id).await;
    assert_eq!(after.status, JobStatus::Cancelled);
    assert!(after.started_at.is_none());
    assert_eq!(after.attempts, 0);
    assert!(
        h.fake
            .calls()
            .iter()
            .all(|c| c.from.date_naive() >= days_before_today(5)),
        "no call for the cancelled range"
    );
}

/// Cancels the job, which must be pending or running.
async fn cancel_active(h: &Harness, id: Uuid) {
    let cancelled = ingestion_jobs::cancel(h.pool(), id).await.unwrap();
    assert!(
        matches!(cancelled, Cancelled::Now(_)),
        "an active job can be cancelled: {cancelled:?}"
    );
}

/// A job of the 270 days to yesterday (three windows), CoinGecko answering each call
/// `delay` after it arrives, and a worker on it whose first call has arrived.
async fn first_window_in_flight(h: &Harness, delay: Duration) -> (JobRecord, RunningWorker) {
    h.fake.set_delay(delay);
    let job = h.submit_days_to_yesterday(270).await;
    let worker = h.start_worker();
    h.fake.wait_for_calls(1).await;
    (job, worker)
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_after_its_current_window() {
    let h = Harness::new().await;
    let (job, worker) = first_window_in_flight(&h, Duration::from_millis(300)).await;
    let mut follower = JobFollower::new(h.pool(), job.id).await.unwrap();

    cancel_active(&h, job.id).await;
    // The window in flight is still stored and checkpointed; then the attempt stops. Its
    // end is awaited on the queue (the task done), not guessed, so that a worker that
    // goes on fetching after the cancel would be seen doing it (`is_still_active`
    // -> `Ok(true)`, a mutant).
    let mut now = follower.current().await.unwrap().unwrap();
    while now.chunks_done < 1 {
        now = follower.next_change().await.unwrap().unwrap();
    }
    let task = price_history::queue::task_id(job.id).to_string();
    let ended = async {
        loop {
            let status: String = sqlx::query_scalar("SELECT status FROM apalis.jobs WHERE id = $1")
                .bind(&task)
                .fetch_one(h.pool())
                .await
                .unwrap();
            if status == "Done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .expect("the cancelled attempt ends on the queue");
    worker.stop().await;

    let after = h.job(job.id).await;
    assert_eq!(after.status, JobStatus::Cancelled);
    assert_eq!(after.chunks_done, 1);
    assert_eq!(h.fake.call_count(), 1, "no window after the cancel");
    assert_eq!(h.stored_days().await, 90);
}

/// Cancelling frees the coin at once (the API answers `cancelled`), while the cancelled
/// job's worker still fetches the window it had begun. A job of the same coin submitted
/// then ran beside it for that window, breaking "two jobs of one coin never run at the
/// same time", and planned without the window being stored: a call asked twice. It starts
/// after that window now, and asks only for what is still missing.
#[tokio::test]
async fn a_job_submitted_while_a_cancelled_one_finishes_its_window_starts_after_it() {
    let h = Harness::new().await;
    let delay = Duration::from_millis(1500);
    let (cancelled, _busy) = first_window_in_flight(&h, delay).await;
    let _idle = h.start_worker();

    cancel_active(&h, cancelled.id).await;
    let next = h.submit_days_to_yesterday(270).await;
    let finished = h.until_finished(next.id).await;

    assert_eq!(finished.status, JobStatus::Completed);
    assert_eq!(h.stored_days().await, 270);
    let calls = h.fake.calls();
    assert_eq!(
        calls.len(),
        3,
        "the cancelled job's window, then the two the next one still missed: {calls:#?}"
    );
    assert!(
        calls[1].at.duration_since(calls[0].at) >= delay,
        "the next job's first call came while the cancelled one's was answered"
    );
}

/// INTERFACE: at SIGTERM, "checkpoint the current window". The window whose call was in
/// flight was dropped, and asked again by the next attempt: a call paid twice per running
/// job at every rolling deploy. Its answer, on its way, is stored now before the hand-back.
#[tokio::test]
async fn a_stop_while_a_windows_answer_is_on_its_way_stores_it_before_handing_the_job_back() {
    let h = Harness::new().await;
    let (job, worker) = first_window_in_flight(&h, Duration::from_millis(1000)).await;

    worker.stop().await;

    let back = h.job(job.id).await;
    assert_eq!((back.status, back.handbacks), (JobStatus::Pending, 1));
    assert_eq!(back.chunks_done, 1, "the window in flight is stored");
    assert_eq!(h.stored_days().await, 90);
    assert_eq!(h.fake.call_count(), 1, "and no other is started");
}

/// A review's finding: the grace a window's call in flight is given at a stop also let a
/// call start that only waited for its slot, or for a back-off, when the stop came: a
/// credit spent on an answer the attempt then dropped. No call starts after the stop.
#[tokio::test]
async fn a_stop_while_a_window_waits_for_its_slot_starts_no_call() {
    let mut h = Harness::new().await;
    // A slot every 4 s: the second window waits for its slot when the stop comes, inside
    // the 5 s grace.
    h.settings.coingecko_calls_per_minute = std::num::NonZeroU32::new(15).unwrap();
    let job = h.submit_days_to_yesterday(270).await;
    let worker = h.start_worker();
    h.wait_for(job.id, "the first window stored", |j| j.chunks_done >= 1)
        .await;

    worker.stop().await;

    let back = h.job(job.id).await;
    assert_eq!(
        (back.status, back.chunks_done, back.failures),
        (JobStatus::Pending, 1, 0)
    );
    assert_eq!(h.fake.call_count(), 1, "no call after the stop");
}

#[tokio::test]
async fn a_finished_job_cannot_be_cancelled() {
    let h = Harness::new().await;
    let job = h.run_days_to_yesterday(3).await;

    let outcome = ingestion_jobs::cancel(h.pool(), job.id).await.unwrap();

    assert!(
        matches!(outcome, Cancelled::AlreadyFinished(ref r) if r.status == JobStatus::Completed),
        "{outcome:?}"
    );
    assert_eq!(
        ingestion_jobs::cancel(h.pool(), Uuid::now_v7())
            .await
            .unwrap(),
        Cancelled::NotFound
    );
}

fn new_job(start_days_ago: u64) -> NewJob {
    let range = DateRange::for_coin(
        &price_history::domain::Coin::bitcoin(),
        days_before_today(start_days_ago),
        days_before_today(1),
        today_utc(),
    )
    .unwrap();
    api_job(Symbol::BTC, range, false)
}

#[tokio::test]
async fn only_one_job_can_be_pending_or_running() {
    let h = Harness::new().await;
    let first = h.submit_days_to_yesterday(10).await;

    let second = queue::submit(h.pool(), new_job(20), Turn::InOrder).await;

    assert!(
        matches!(second, Err(SubmitError::JobInProgress(id)) if id == first.id),
        "{second:?}"
    );
    // The rule is the database's, not the process's: a raw insert is refused too.
    let raw = sqlx::query("INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date) VALUES ($1, 'running', 'BTC', '2024-01-01', '2024-01-02')")
        .bind(Uuid::now_v7())
        .execute(h.pool())
        .await;
    assert!(
        raw.unwrap_err()
            .to_string()
            .contains("ingestion_jobs_one_active")
    );
    let queued = h.rows("apalis.jobs").await;
    assert_eq!(
        queued, 1,
        "the refused submission left nothing on the queue"
    );
    ingestion_jobs::cancel(h.pool(), first.id).await.unwrap();
    assert!(
        queue::submit(h.pool(), new_job(20), Turn::InOrder)
            .await
            .is_ok(),
        "once the first ended, a new job is accepted"
    );
}

#[tokio::test]
async fn of_many_concurrent_submissions_exactly_one_is_accepted() {
    let h = Harness::new().await;

    let attempts = (0..8).map(|i| {
        let pool = h.pool().clone();
        tokio::spawn(async move { queue::submit(&pool, new_job(10 + i), Turn::InOrder).await })
    });
    let results = futures::future::join_all(attempts).await;

    let accepted = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(SubmitError::JobInProgress(_)))))
        .count();
    assert_eq!((accepted, refused), (1, 7));
    let active = h
        .rows("ingestion_jobs WHERE status IN ('pending','running')")
        .await;
    assert_eq!(active, 1);
}

#[tokio::test]
async fn a_job_started_too_many_times_is_failed_instead_of_taken_over_again() {
    let h = Harness::new().await;
    let job = h.submit_days_to_yesterday(10).await;
    // As if its worker had died mid-run every time so far.
    let limit = h.settings.job_max_attempts + price_history::queue::MAX_TAKEOVERS;
    set_attempts(&h, job.id, limit as i32).await;

    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    assert_eq!(finished.status, JobStatus::Failed);
    assert_eq!(h.fake.call_count(), 0);
    let message = finished.error_message.unwrap();
    assert!(
        message.contains(&format!("started {} times", limit + 1)),
        "{message}"
    );
}

#[tokio::test]
async fn an_idle_worker_starts_each_new_job_at_once_not_at_its_next_heartbeat() {
    let mut h = Harness::new().await;
    // A 60 s lease is a 20 s heartbeat: a job picked up by polling would wait seconds.
    h.settings.job_lease_secs = 60;
    let worker = h.start_worker();

    // Back to back, as a script submitting one range after another does: each job is
    // submitted the moment the previous one is seen finished.
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let day = days_before_today(10 + i);
        let job = h.submit(day, day, false).await;
        let submitted = std::time::Instant::now();
        h.wait_for(job.id, "the job to start", |j| {
            j.status != JobStatus::Pending
        })
        .await;
        slowest = slowest.max(submitted.elapsed());
        h.until_finished(job.id).await;
    }
    worker.stop().await;

    assert!(
        slowest < Duration::from_secs(2),
        "the slowest pick-up took {slowest:?}"
    );
}

/// Kills `src/store/ingestion_jobs.rs`, `finish`: `rows_affected() == 1` -> `!= 1`. Ending
/// a job says whether it did; a job cancelled meanwhile keeps its `cancelled`.
#[tokio::test]
async fn finishing_a_job_cancelled_meanwhile_changes_nothing_and_says_so() {
    use price_history::store::ingestion_jobs::{self, Ending};
    let h = Harness::new().await;
    let ending = Ending {
        status: JobStatus::Completed,
        gap_dates: &[],
        out_of_plan_days: 0,
        message: None,
    };
    let cancelled = h.submit_days_to_yesterday(3).await;
    cancel_active(&h, cancelled.id).await;
    let active = h.submit_days_to_yesterday(3).await;

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
    sql(
        h.pool(),
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
    .await;
    // The call and its 3 retries fail: attempt 1 fails; attempt 2 finds CoinGecko well.
    h.fail_next_calls(4, 503, "Service Unavailable");

    let job = h.run_days_to_yesterday(10).await;

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

/// Kills `src/queue/wake_ups.rs`, `wake_ups`: `Poll::Pending if woken` -> `true` (an idle
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

/// Kills `src/queue/worker.rs`, `handle`: `starts > max_attempts + MAX_TAKEOVERS` ->
/// `>=`. A job started exactly as often as allowed still runs; only one more is refused
/// (`jobs::a_job_started_too_many_times_...`).
#[tokio::test]
async fn a_job_started_as_often_as_allowed_still_runs() {
    let h = Harness::new().await;
    let job = h.submit_days_to_yesterday(3).await;
    let limit = h.settings.job_max_attempts + price_history::queue::MAX_TAKEOVERS;
    // This start will be number `limit`.
    set_attempts(&h, job.id, limit as i32 - 1).await;

    let worker = h.start_worker();
    let finished = h.until_finished(job.id).await;
    worker.stop().await;

    assert_completed(&finished);
    assert_eq!(finished.attempts, limit as i32);
}

#[tokio::test]
async fn a_batchs_active_jobs_are_each_coins_pending_or_running_one_and_no_other() {
    let h = Harness::new().await;
    let eth = h.register("ETH", "ethereum").await;
    let sol = h.register("SOL", "solana").await;
    let (start, end) = (days_before_today(3), days_before_today(1));
    let btc = h.submit(start, end, false).await;
    let cancelled = h.submit_for(eth, start, end, false).await;
    ingestion_jobs::cancel(h.pool(), cancelled.id)
        .await
        .unwrap();
    let eth_again = h.submit_for(eth, start, end, false).await;
    sql(
        h.pool(),
        &format!(
            "UPDATE ingestion_jobs SET status = 'running' WHERE id = '{}'",
            eth_again.id
        ),
    )
    .await;

    let mut active = ingestion_jobs::active_jobs_of(
        h.pool(),
        &[Symbol::BTC, eth, sol, Symbol::parse("XRP").unwrap()],
    )
    .await
    .unwrap();
    active.sort();

    let mut expected = vec![(Symbol::BTC, btc.id), (eth, eth_again.id)];
    expected.sort();
    assert_eq!(
        active, expected,
        "the pending and the running job, not the cancelled one; nothing for a coin without one"
    );
}
