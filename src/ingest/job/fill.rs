//! Step 2: fill what is still missing, one call per run of consecutive days (split only
//! where a run is longer than a window). Days not over yet cannot be completed now, so no
//! call is spent on them. A failed call does not end the attempt: it is said in the job's
//! message.

use std::ops::ControlFlow;

use chrono::NaiveDate;

use super::window::WindowEnd;
use super::{JobError, Outcome, Run};
use crate::ingest::{PriceSource, SourceError};

impl<S: PriceSource> Run<'_, S> {
    /// Step 2; see the module's docs.
    pub(super) async fn fill(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        if self.shortfalls.out_of_credits.is_some() {
            return Ok(ControlFlow::Continue(()));
        }
        let fillable: Vec<NaiveDate> = match self.served_part() {
            None => Vec::new(),
            Some((from, to)) => self
                .missing_days(from, to)
                .await?
                .into_iter()
                .filter(|day| *day < self.today)
                .collect(),
        };
        let fills = self.windows_to_ask(&fillable, self.window_days()).await?;
        if !fills.is_empty() {
            self.count_planned(fills.len()).await?;
            tracing::info!(runs = fills.len(), days = fillable.len(), "filling gaps");
        }
        for window in &fills {
            let failed = match self.window(window).await {
                Ok(WindowEnd::Stored(_)) => {
                    self.shortfalls.answered.push(*window);
                    None
                }
                Ok(WindowEnd::Stop(outcome)) => return Ok(ControlFlow::Break(outcome)),
                Ok(WindowEnd::BeyondReach(days)) => {
                    self.learn_reach(days).await?;
                    None
                }
                Ok(WindowEnd::Failed(SourceError::OutOfCredits(why))) => {
                    self.shortfalls.out_of_credits = Some(why);
                    break;
                }
                Ok(WindowEnd::Failed(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failed {
                tracing::warn!(start = %window.start, end = %window.end, error = %e, "could not fill a gap; going on");
                self.shortfalls.failed_fills.push((*window, e));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}
