//! Step 3: the days older than the plan serves, from the second source, for a coin whose
//! product passed the mapping check (checked here first, once, against the CoinGecko rows
//! just stored). The windows are planned from the missing days' runs, at most 300 days
//! each, skipping days before the product's first candle; each is stored with the
//! checkpoint. Nothing the second source does fails the job: what it could not fill stays
//! out of plan, and the final message says why (`SecondSourceEnd`).

use std::ops::ControlFlow;

use chrono::NaiveDate;

use super::report::SecondSourceEnd;
use super::run::patiently;
use super::window::WindowEnd;
use super::{JobError, Outcome, Run};
use crate::coinbase::{CandleWindow, CoinbaseError};
use crate::domain::{self, DailyCandle, ProductId};
use crate::ingest::fallback::{
    CANDLES_BEGIN_MIN_EMPTY_DAYS, CheckError, SecondSource, check_mapping, fallback_windows,
};
use crate::ingest::{Coinbase, DailyCandles, SourceError, Window};
use crate::store::{daily_prices, ingestion_jobs, second_source};

/// How long a product check in flight at a stop may go on: an answer on its way is worth
/// it, well inside the worker's stop timeout.
const CHECK_GRACE_AT_A_STOP: std::time::Duration = std::time::Duration::from_secs(5);

impl<S: Sync> Run<'_, S> {
    /// Step 3; see the module's docs.
    pub(super) async fn out_of_plan(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        let Some(second) = self.ingestor.second_source.clone() else {
            return Ok(ControlFlow::Continue(()));
        };
        let days = self.out_of_plan_days().await?;
        if days.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let usable = match self.usable_product(&second).await? {
            ControlFlow::Continue(usable) => usable,
            ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
        };
        let Some((product, candles_from)) = usable else {
            return Ok(ControlFlow::Continue(()));
        };
        let windows = fallback_windows(days, candles_from);
        if windows.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        self.count_planned(windows.len()).await?;
        tracing::info!(windows = windows.len(), %product, "fetching out-of-plan days from the second source");
        self.shortfalls.second_source = Some(SecondSourceEnd::Asked);
        let source = Coinbase::new(second.client, product.clone());
        // The oldest window is at the edge of what the product is known to have unless a
        // day before it is stored (then an empty start is a halt, a hole in the middle of
        // the product's history); so is the next one while every window before it had no
        // candle at all.
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let first = windows[0].first();
        let mut at_the_edge =
            !patiently(|| daily_prices::stored_before(pool, symbol, first)).await?;
        for candle_window in &windows {
            match self.second_source_window(&source, candle_window).await? {
                WindowEnd::Stored(built) if at_the_edge => {
                    self.learn_candles_begin(&product, candle_window, &built.candles)
                        .await?;
                    at_the_edge = built.candles.is_empty();
                }
                WindowEnd::Stored(_) | WindowEnd::BeyondReach(_) => {}
                WindowEnd::Stop(outcome) => return Ok(ControlFlow::Break(outcome)),
                WindowEnd::Failed(e) => {
                    tracing::warn!(error = %e, "the second source failed; its days stay out of plan");
                    self.shortfalls.second_source = Some(SecondSourceEnd::Failed {
                        // A refusal stays one; garbage may be a passing fault.
                        retry: !matches!(e, SourceError::Permanent(_)),
                        why: e.to_string(),
                    });
                    break;
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// One window of the second source. Rows the table refuses are the source's fault,
    /// not the job's: the window failed, and the job goes on.
    async fn second_source_window(
        &self,
        source: &Coinbase,
        candle_window: &CandleWindow,
    ) -> Result<WindowEnd<DailyCandles>, JobError> {
        let window = Window {
            start: candle_window.first(),
            end: candle_window.last(),
        };
        match self.daily_window(source, &window, None).await {
            Err(JobError::Permanent(_)) => Ok(WindowEnd::Failed(SourceError::BadAnswer(format!(
                "its candles for {}..{} broke a rule of the table, and nothing of them was \
                 stored.",
                window.start, window.end
            )))),
            end => end,
        }
    }

    /// Remembers where `product`'s candles begin when the job's oldest window (or one after
    /// windows that found nothing) found none on its first days, for at least [`CANDLES_BEGIN_MIN_EMPTY_DAYS`] (fewer are quiet
    /// days of a listed product): later jobs then spend no call on the days before.
    async fn learn_candles_begin(
        &self,
        product: &ProductId,
        oldest: &CandleWindow,
        candles: &[DailyCandle],
    ) -> Result<(), JobError> {
        let Some(begin) = oldest
            .candles_begin(candles)
            .filter(|begin| (*begin - oldest.first()).num_days() >= CANDLES_BEGIN_MIN_EMPTY_DAYS)
        else {
            return Ok(());
        };
        tracing::info!(%product, %begin, "the second source's candles begin later than asked");
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        patiently(|| second_source::learn_candles_from(pool, symbol, product, begin)).await?;
        Ok(())
    }

    /// The job's days older than the plan serves that the second source may fill: those
    /// missing, or when forced every one it may replace that no attempt of the job has
    /// written yet (its own rows are replaced, CoinGecko's never, so those are not asked).
    async fn out_of_plan_days(&self) -> Result<Vec<NaiveDate>, JobError> {
        let (start, end) = (self.attempt.job.range.start(), self.last_day());
        let days = if self.attempt.job.force {
            self.days_to_force((start, end), domain::PriceSource::Coinbase)
                .await?
        } else {
            self.missing_days(start, end).await?
        };
        Ok(self.reach.split(days, self.today).1)
    }

    /// The coin's product if the second source may be used for it, with the day its
    /// candles begin when known. A product not checked yet is checked now (one call);
    /// when the check cannot be made or finds the product unusable, the shortfall says why.
    /// A stop during the check breaks off the attempt, which is handed back.
    pub(super) async fn usable_product(
        &mut self,
        second: &SecondSource,
    ) -> Result<ControlFlow<Outcome, Option<(ProductId, Option<NaiveDate>)>>, JobError> {
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let read = || second_source::mapping(pool, symbol);
        let Some(mut mapping) = patiently(read).await? else {
            return Ok(ControlFlow::Continue(None));
        };
        if let Some(product) = mapping.product.clone().filter(|_| mapping.needs_check()) {
            if self.product_checked {
                return Ok(ControlFlow::Continue(None));
            }
            self.product_checked = true;
            // The earliest days the plan serves; a plan with no known limit serves from the
            // coin's first day (the check falls back to the latest days when Coinbase has
            // nothing that old).
            let plan_first_day = self
                .reach
                .first_served_day(self.today)
                .or(self.coin.first_day)
                .unwrap_or(self.attempt.job.range.start());
            match self.check_product(second, &product, plan_first_day).await? {
                ControlFlow::Continue(None) => {}
                ControlFlow::Continue(Some(end)) => {
                    self.shortfalls.second_source = Some(end);
                    return Ok(ControlFlow::Continue(None));
                }
                ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
            }
            match patiently(read).await? {
                Some(checked) => mapping = checked,
                None => return Ok(ControlFlow::Continue(None)),
            }
        }
        if mapping.usable == Some(false) {
            self.shortfalls.second_source = Some(SecondSourceEnd::Unusable(
                mapping.unusable_reason.clone().unwrap_or_default(),
            ));
        }
        Ok(ControlFlow::Continue(
            mapping
                .usable_product()
                .cloned()
                .map(|product| (product, mapping.candles_from)),
        ))
    }

    /// Checks `product` against CoinGecko's rows from `plan_first_day` on (the check
    /// records its verdict); `Some` says why the second source cannot be used for now when
    /// the check could not be made. A check in flight at a stop is given
    /// [`CHECK_GRACE_AT_A_STOP`] to end, so that its verdict spares the next attempt the
    /// calls; one held by back-offs or `Retry-After` waits is then dropped, and the attempt
    /// breaks off to be handed back, rather than be cut short by the worker's stop timeout.
    async fn check_product(
        &self,
        second: &SecondSource,
        product: &ProductId,
        plan_first_day: NaiveDate,
    ) -> Result<ControlFlow<Outcome, Option<SecondSourceEnd>>, JobError> {
        let checking = check_mapping(
            &self.ingestor.pool,
            &second.client,
            self.attempt.job.symbol,
            product,
            plan_first_day,
            second.max_deviation_percent,
        );
        // A job cancelled while it ran stops before a call, as at a window.
        let (pool, id) = (&self.ingestor.pool, self.attempt.job.id);
        if !patiently(|| ingestion_jobs::is_still_active(pool, id)).await? {
            return Ok(ControlFlow::Break(Outcome::Cancelled));
        }
        let stop = self.attempt.stop;
        let Some(checked) = stop
            .unless_raised_for(CHECK_GRACE_AT_A_STOP, checking)
            .await
        else {
            return Ok(ControlFlow::Break(Outcome::Interrupted));
        };
        if matches!(checked, Err(CheckError::Coinbase(_))) && stop.is_shutdown() {
            // The stop's doing (no slot given any more): the next attempt checks.
            return Ok(ControlFlow::Break(Outcome::Interrupted));
        }
        let end = match checked {
            Ok(Some(_)) => None,
            Ok(None) => Some(SecondSourceEnd::Unchecked(plan_first_day)),
            Err(CheckError::Coinbase(e)) => Some(SecondSourceEnd::Failed {
                retry: !matches!(e, CoinbaseError::Refused { .. }),
                why: e.message().to_owned(),
            }),
            Err(CheckError::Database(e)) => return Err(e.into()),
        };
        Ok(ControlFlow::Continue(end))
    }
}
