//! Retention (`JOB_RETENTION_DAYS`, issue 28): finished jobs with their queue rows, ticks
//! and imports older than the limit are deleted, in batches, one process at a time; an
//! active job, a running import and every stored price stay.

use std::collections::BTreeSet;

use price_history::domain::Symbol;
use price_history::queue;
use price_history::shutdown::Shutdown;
use uuid::Uuid;

use crate::support::{Harness, days_before_today};

/// Makes job `id` look as if it ended `days_ago` days ago as `status`, queue row included.
async fn finished(h: &Harness, id: Uuid, status: &str, days_ago: i32) {
    sqlx::query(
        "UPDATE ingestion_jobs SET status = $2, completed_at = now() - make_interval(days => $3), \
         created_at = now() - make_interval(days => $3) WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(days_ago)
    .execute(h.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = now() WHERE id = $1")
        .bind(queue::task_id(id).to_string())
        .execute(h.pool())
        .await
        .unwrap();
}

/// The ids `table` holds.
async fn ids<T>(h: &Harness, table: &str) -> BTreeSet<T>
where
    T: Ord + Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}")))
        .fetch_all(h.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn job_ids(h: &Harness) -> BTreeSet<Uuid> {
    ids(h, "ingestion_jobs").await
}

async fn queue_ids(h: &Harness) -> BTreeSet<String> {
    ids(h, "apalis.jobs").await
}

/// Records a tick acted on `days_ago` days ago.
async fn tick(h: &Harness, days_ago: i32) {
    sqlx::query(
        "INSERT INTO sync_ticks (tick, acted_by, acted_at, catch_up, coins_tracked, coins_behind, jobs_queued, coins_busy) \
         VALUES (now() - make_interval(days => $1), 'test', now() - make_interval(days => $1), false, 0, 0, 0, 0)",
    )
    .bind(days_ago)
    .execute(h.pool())
    .await
    .unwrap();
}

/// Records an import of `status` that began (and, unless running, ended) `days_ago` ago.
async fn import(h: &Harness, status: &str, days_ago: i32) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO coin_imports (id, status, n, trigger, created_at, updated_at, completed_at) \
         VALUES ($1, $2, 10, 'cli', now() - make_interval(days => $3), now() - make_interval(days => $3), \
                 CASE WHEN $2 = 'running' THEN NULL ELSE now() - make_interval(days => $3) END)",
    )
    .bind(id)
    .bind(status)
    .bind(days_ago)
    .execute(h.pool())
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn pruning_deletes_exactly_the_old_finished_work_and_nothing_active() {
    let h = Harness::new().await;
    let eth = h.register("ETH", "ethereum").await;
    // A real job first: its prices must outlive its record.
    let stored = h.run_days_to_yesterday(10).await;
    finished(&h, stored.id, "completed", 40).await;
    let prices = h.rows("daily_prices").await;
    assert_eq!(prices, 10);

    let (start, end) = (days_before_today(5), days_before_today(1));
    let mut old = vec![stored.id];
    let mut kept = Vec::new();
    for (status, days_ago) in [
        ("completed_with_gaps", 31),
        ("failed", 90),
        ("cancelled", 400),
        ("completed", 29),
        ("failed", 1),
    ] {
        let job = h.submit_for(Symbol::BTC, start, end, false).await;
        finished(&h, job.id, status, days_ago).await;
        if days_ago > 30 { &mut old } else { &mut kept }.push(job.id);
    }
    // An active job, however old, is never deleted.
    let active = h.submit_for(eth, start, end, false).await;
    sqlx::query("UPDATE ingestion_jobs SET created_at = now() - interval '1 year' WHERE id = $1")
        .bind(active.id)
        .execute(h.pool())
        .await
        .unwrap();
    kept.push(active.id);
    for days_ago in [60, 45, 31, 10, 0] {
        tick(&h, days_ago).await;
    }
    let old_imports = [
        import(&h, "completed", 50).await,
        import(&h, "failed", 31).await,
    ];
    let running = import(&h, "running", 90).await;
    let recent = import(&h, "completed", 2).await;

    // Two of each a batch: several batches, each its own transaction.
    let (_stop, live) = Shutdown::new();
    let pruned = queue::prune(h.pool(), 30, 2, &live).await.unwrap();

    assert_eq!((pruned.jobs, pruned.ticks, pruned.imports), (4, 3, 2));
    assert!(pruned.batches >= 2, "{pruned:?}");
    let left = job_ids(&h).await;
    assert_eq!(
        left,
        kept.iter().copied().collect(),
        "exactly the old finished jobs go"
    );
    let queue_left = queue_ids(&h).await;
    let expected: BTreeSet<String> = kept
        .iter()
        .map(|id| queue::task_id(*id).to_string())
        .collect();
    assert_eq!(queue_left, expected, "their queue rows with them, no other");
    assert_eq!(h.rows("sync_ticks").await, 2);
    let imports: BTreeSet<Uuid> = sqlx::query_scalar("SELECT id FROM coin_imports")
        .fetch_all(h.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(imports, [running, recent].into_iter().collect());
    assert!(old_imports.iter().all(|id| !imports.contains(id)));
    assert_eq!(
        h.rows("daily_prices").await,
        prices,
        "prices are never touched"
    );

    // The status counts /metrics reads follow the deletions and every change before.
    let counted = price_history::store::stats::jobs_by_status(h.pool())
        .await
        .unwrap();
    let actual: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, count(*) FROM ingestion_jobs GROUP BY status ORDER BY status",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    let counted: Vec<(String, i64)> = counted
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(status, n)| (status.to_string(), n))
        .collect();
    assert_eq!(counted, actual);
    // The jobs that ever ended, which the alert on failures reads: retention lowers none
    // (before it counted them, a failure beside a deletion left the failed count flat).
    let ended = || async {
        let ended = price_history::store::stats::jobs_ended(h.pool())
            .await
            .unwrap();
        ended
            .into_iter()
            .map(|(status, n)| (status.to_string(), n))
            .collect::<Vec<_>>()
    };
    let every_end = [
        ("cancelled", 1),
        ("completed", 2),
        ("completed_with_gaps", 1),
        ("failed", 2),
    ]
    .map(|(status, n)| (status.to_owned(), n));
    assert_eq!(ended().await, every_end);
    price_history::store::stats::compact_job_counts(h.pool())
        .await
        .unwrap();
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM job_status_deltas")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(folded <= 6, "one row per status: {folded}");
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM job_endings")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(folded, 4, "one row per end");
    assert_eq!(ended().await, every_end);

    // Nothing more to do the second time.
    let again = queue::prune(h.pool(), 30, 2, &live).await.unwrap();
    assert_eq!((again.jobs, again.ticks, again.imports), (0, 0, 0));
}

#[tokio::test]
async fn one_process_prunes_at_a_time() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(5), days_before_today(1));
    for _ in 0..6 {
        let job = h.submit_for(Symbol::BTC, start, end, false).await;
        finished(&h, job.id, "completed", 40).await;
    }
    // Another process holds the lock: this one leaves the work to it.
    let mut holder = h.pool().begin().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(price_history::store::retention::LOCK_KEY)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(held);
    let (_stop, live) = Shutdown::new();
    let skipped = queue::prune(h.pool(), 30, 2, &live).await.unwrap();
    assert_eq!((skipped.jobs, skipped.locked), (0, false));
    holder.rollback().await.unwrap();

    // Two at once: each job is deleted once, by one or the other.
    let (a, b) = tokio::join!(
        queue::prune(h.pool(), 30, 2, &live),
        queue::prune(h.pool(), 30, 2, &live)
    );
    assert_eq!(a.unwrap().jobs + b.unwrap().jobs, 6);
    assert!(job_ids(&h).await.is_empty());
    assert!(queue_ids(&h).await.is_empty());
}

/// An audit's finding: the API kept finished jobs in memory with no end, so a job
/// retention had deleted was still answered `200` by a process that had read it once.
#[tokio::test]
async fn a_job_retention_deleted_is_404_even_where_it_was_read_before() {
    let (h, api) = crate::support::TestApi::with_harness().await;
    let job = h
        .run_job(days_before_today(3), days_before_today(1), false)
        .await;
    finished(&h, job.id, "completed", 40).await;
    let path = format!("/api/v1/ingestion-jobs/{}", job.id);
    api.get(&path).await.assert_status(reqwest::StatusCode::OK);
    let (_stop, live) = Shutdown::new();
    let pruned = queue::prune(h.pool(), 30, 10, &live).await.unwrap();
    assert_eq!(pruned.jobs, 1);

    api.get(&path)
        .await
        .assert_status(reqwest::StatusCode::NOT_FOUND);
    api.stop().await;
}
