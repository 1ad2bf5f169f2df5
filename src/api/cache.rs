//! Finished jobs, kept in memory: a job that ended `completed`, `completed_with_gaps` or
//! `failed` never changes again (the worker's last write ends it, the lease fence stops
//! any other worker, and cancelling touches only active jobs), so reading it once is
//! enough. Pending, running and cancelled jobs are always read from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::domain::JobStatus;
use crate::store::ingestion_jobs::JobRecord;

/// Bound on the entries; past it the cache starts over, which costs one read per job.
const CAPACITY: usize = 10_000;

#[derive(Clone, Default)]
pub struct FinishedJobs(Arc<Mutex<HashMap<Uuid, JobRecord>>>);

impl FinishedJobs {
    pub fn get(&self, id: Uuid) -> Option<JobRecord> {
        self.0.lock().ok()?.get(&id).cloned()
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
