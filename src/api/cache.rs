//! Finished jobs, kept in memory: a job that ended `completed`, `completed_with_gaps` or
//! `failed` never changes again (the worker's last write ends it, the lease fence stops
//! any other worker, and cancelling touches only active jobs), so reading it once is
//! enough, until retention may delete it. Pending, running and cancelled jobs are always
//! read from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use crate::domain::JobStatus;
use crate::store::ingestion_jobs::JobRecord;

/// Bound on the entries; past it the cache starts over, which costs one read per job.
const CAPACITY: usize = 10_000;

#[derive(Clone, Default)]
pub struct FinishedJobs(Arc<Mutex<HashMap<Uuid, JobRecord>>>);

impl FinishedJobs {
    /// The job, when it is kept and finished less than a day ago: retention (in whole
    /// days, whatever `JOB_RETENTION_DAYS` any process runs with) may have deleted an
    /// older one since, so that one is read from the database again.
    pub fn get(&self, id: Uuid) -> Option<JobRecord> {
        let job = self.0.lock().ok()?.get(&id).cloned()?;
        let finished_lately = job
            .completed_at
            .is_some_and(|at| Utc::now() - at < TimeDelta::days(1));
        finished_lately.then_some(job)
    }

    /// Keeps `job` if it can no longer change.
    pub fn remember(&self, job: &JobRecord) {
        let immutable = matches!(
            job.status,
            JobStatus::Completed | JobStatus::CompletedWithGaps | JobStatus::Failed
        );
        if let (true, Ok(mut jobs)) = (immutable, self.0.lock()) {
            if jobs.len() >= CAPACITY {
                jobs.clear();
            }
            jobs.insert(job.id, job.clone());
        }
    }
}
