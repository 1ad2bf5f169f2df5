//! The orphan sweep of `ingestion_jobs`: a job recorded as running whose worker died
//! reads `pending` again once no live worker holds it, even while no worker is left to
//! take it over (apalis's own sweep runs only in a live worker's heartbeat).

use std::time::Duration;

use sqlx::PgPool;

use super::{lease, task_id};
use crate::shutdown::Shutdown;
use crate::store::ingestion_jobs;

/// Sets back to `pending` every job recorded as running that no live worker holds: its
/// process died and nobody has taken it over yet. Without this, a job whose only worker
/// was killed would read `running` until some worker came back. Runs until `shutdown`.
pub async fn reconcile_orphans(pool: PgPool, lease: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval((lease / 3).max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.recv() => return,
        }
        if let Err(e) = reconcile_once(&pool, lease).await {
            tracing::debug!(error = %e, "could not check for orphaned jobs; will try again");
        }
    }
}

async fn reconcile_once(pool: &PgPool, lease: Duration) -> sqlx::Result<()> {
    let quiet = ingestion_jobs::running_and_quiet(pool, lease).await?;
    if quiet.is_empty() {
        return Ok(());
    }
    let task_ids: Vec<String> = quiet.iter().map(|id| task_id(*id).to_string()).collect();
    let live = lease::held_by_live_workers(pool, &task_ids, lease).await?;
    let orphans: Vec<uuid::Uuid> = quiet
        .into_iter()
        .zip(task_ids)
        .filter(|(_, task)| !live.contains(task))
        .map(|(id, _)| id)
        .collect();
    if !orphans.is_empty() {
        let released = ingestion_jobs::release_quiet(
            pool,
            &orphans,
            lease,
            "its worker stopped answering; the job waits for a worker to take it over from its checkpoint",
        )
        .await?;
        if released > 0 {
            tracing::warn!(jobs = released, "jobs whose worker died are pending again");
        }
    }
    Ok(())
}
