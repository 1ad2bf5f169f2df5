//! One attempt of a job, from plan to outcome. The queue calls [`Ingestor::run`]; it
//! decides what to do with the outcome (finish, retry, hand back).

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use sqlx::PgPool;

use super::fallback::{
    CANDLES_BEGIN_MIN_EMPTY_DAYS, CheckError, SecondSource, check_mapping, fallback_windows,
};
use super::source::{CoinGecko, Coinbase, PriceSource, SourceError};
use super::{DailyCandles, MIN_HOURLY_POINTS, Reach, Window, windows_for_days, windows_for_range};
use crate::coinbase::{CandleWindow, CoinbaseError};
use crate::coingecko::CoinGeckoClient;
use crate::domain::{self, Coin, DailyCandle, JobStatus, PlanReach, ProductId, today_utc};
use crate::shutdown::Shutdown;
use crate::store::queue_lease::{self, Lease};
use crate::store::{
    coins, daily_prices, gaps, ingestion_jobs, ingestion_jobs::JobRecord, is_unavailable,
    second_source,
};

/// How an attempt ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every window was tried; the job is `completed` or `completed_with_gaps`.
    Finished {
        status: JobStatus,
        /// Days the plan serves that are still missing.
        gap_dates: Vec<NaiveDate>,
        /// Days older than the plan's reach, not stored and never asked for.
        out_of_plan_days: i32,
        message: Option<String>,
    },
    /// The job was cancelled (or ended elsewhere) while it ran; it stopped after a window.
    Cancelled,
    /// The process is shutting down; the last window was committed or not started, and
    /// the job should go back on the queue.
    Interrupted,
    /// Another worker took the job over (this one was silent past the lease, say during
    /// a database outage); this attempt stopped without writing anything more.
    LeaseLost,
}

/// How one window ended.
enum WindowEnd {
    /// Fetched and stored (or nothing to store): what the source answered.
    Stored(DailyCandles),
    /// The attempt must stop.
    Stop(Outcome),
    /// The source refused the window as older than its plan serves (CoinGecko's 10012):
    /// the plan serves only this many days.
    BeyondReach(u32),
    /// The source failed for this window (after its own retries); nothing of it was
    /// stored. The caller decides whether that fails the attempt.
    Failed(SourceError),
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Trying again cannot help (CoinGecko refused the request, or answered nonsense).
    #[error("{0}")]
    Permanent(String),
    /// Trying again later may help (CoinGecko or the database was unavailable).
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for JobError {
    /// A row the table refuses (SQLSTATE class 22, data exception, or 23, a broken
    /// constraint) will be refused again however often the window is fetched: that is
    /// permanent, and said without PostgreSQL's own text. Anything else may pass.
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("22") || code.starts_with("23")) =>
            {
                let rule = db
                    .constraint()
                    .map(|name| format!(" ({name})"))
                    .unwrap_or_default();
                JobError::Permanent(format!(
                    "CoinGecko's data for a window broke a rule of the table{rule}; nothing of that \
                     window was stored. Run the job again later, when CoinGecko may have corrected it."
                ))
            }
            _ => JobError::Transient(format!("database error: {e}")),
        }
    }
}

impl From<SourceError> for JobError {
    fn from(e: SourceError) -> Self {
        if e.is_permanent() {
            JobError::Permanent(e.to_string())
        } else {
            JobError::Transient(e.to_string())
        }
    }
}

/// How long a running job waits for the database to come back before it gives the
/// attempt up: for as long as it takes. The worker's queue waits for it too
/// (`queue::patient`), so an outage of any length costs the job neither an attempt nor a
/// call; if another worker took the job over meanwhile, the checkpoint's lease check
/// refuses this attempt's late write.
const DATABASE_PATIENCE: Duration = Duration::MAX;

/// Everything a job needs: the database, the CoinGecko client, the window size, the
/// plan's reach and the second source.
#[derive(Clone)]
pub struct Ingestor {
    pub pool: PgPool,
    pub client: CoinGeckoClient,
    pub chunk_days: u32,
    pub reach: Reach,
    /// Where out-of-plan days come from; `None` with `FALLBACK_SOURCE=off`.
    pub second_source: Option<SecondSource>,
}

/// One attempt's view of its job: the record as it was when the attempt began, the
/// queue lease it runs under, and the process's stop signal.
pub struct Attempt<'a> {
    pub job: &'a JobRecord,
    /// `None` only where no queue is involved.
    pub lease: Option<&'a Lease>,
    /// Raised when the process shuts down.
    pub stop: &'a Shutdown,
}

impl Ingestor {
    /// Runs one attempt of a job (already marked running), in four steps: fetch what
    /// the plan asks for, fill what is still missing, fetch the days older than the plan
    /// serves from the second source, and say what is left. Resumes from
    /// the checkpoint: not forced, the missing days are read again from the table, so
    /// windows already stored are not fetched again; forced, the windows before
    /// `chunks_done` are skipped. Days older than the plan's reach are never asked for;
    /// a 10012 answer teaches the reach, and the rest of the range is planned again
    /// within it.
    #[tracing::instrument(skip_all, fields(job_id = %attempt.job.id, symbol = %attempt.job.symbol, attempt = attempt.job.attempts))]
    pub async fn run(&self, attempt: Attempt<'_>) -> Result<Outcome, JobError> {
        let mut run = self.begin(attempt, self.coingecko()).await?;
        if let ControlFlow::Break(outcome) = run.fetch().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.fill().await? {
            return Ok(outcome);
        }
        if let ControlFlow::Break(outcome) = run.out_of_plan().await? {
            return Ok(outcome);
        }
        run.finish().await
    }

    /// CoinGecko, as the source the job's windows are asked of.
    pub fn coingecko(&self) -> CoinGecko {
        CoinGecko::new(self.client.clone(), self.chunk_days)
    }

    /// What an attempt starts from: its coin (still registered) and the reach in force.
    async fn begin<'a, S: PriceSource>(
        &'a self,
        attempt: Attempt<'a>,
        source: S,
    ) -> Result<Run<'a, S>, JobError> {
        let job = attempt.job;
        let coin = self
            .patiently(|| coins::get(&self.pool, job.symbol))
            .await?
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "{} is no longer a registered coin: register it again (PUT /api/v1/coins/{}) and submit the job again",
                    job.symbol, job.symbol
                ))
            })?
            .coin;
        let reach = self.patiently(|| self.reach.current(&self.pool)).await?;
        Ok(Run {
            ingestor: self,
            attempt,
            source,
            coin,
            today: today_utc(),
            reach,
            planned: job.chunks_done,
            learned: false,
            shortfalls: Shortfalls::default(),
        })
    }

    /// The checkpoint transaction: the rows marked with their `origin`, the job's
    /// progress, and the days it stored from the second source. `None` when this worker
    /// no longer holds the job: the lease is checked, and held, inside the same
    /// transaction that writes.
    async fn store(
        &self,
        attempt: &Attempt<'_>,
        origin: domain::PriceSource,
        candles: &[DailyCandle],
    ) -> sqlx::Result<Option<u64>> {
        let job = attempt.job;
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = attempt.lease
            && !queue_lease::hold(&mut tx, lease).await?
        {
            return Ok(None);
        }
        let written =
            daily_prices::upsert_from(&mut tx, job.symbol, origin, candles, job.force).await?;
        ingestion_jobs::checkpoint(&mut tx, job.id, candles.len() as i32).await?;
        if origin == domain::PriceSource::Coinbase && written > 0 {
            second_source::add_fallback_days(&mut tx, job.id, written as i32).await?;
        }
        tx.commit().await?;
        Ok(Some(written))
    }

    /// Runs a database operation, waiting out an unavailable database (for up to
    /// [`DATABASE_PATIENCE`]) rather than failing the job over it.
    async fn patiently<T, F, Fut>(&self, mut operation: F) -> Result<T, JobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        let began = Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(e) if is_unavailable(&e) && began.elapsed() < DATABASE_PATIENCE => {
                    tracing::warn!(error = %e, retry_in = ?delay, "the database is unavailable; waiting for it");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One attempt under way: what it knows (the coin, today, the reach) and what it has
/// done so far (windows planned, whether it learned the reach, what fell short).
struct Run<'a, S> {
    ingestor: &'a Ingestor,
    attempt: Attempt<'a>,
    /// Where the windows are asked for.
    source: S,
    coin: Coin,
    /// Today (UTC) when the attempt began: days from it on are not over.
    today: NaiveDate,
    /// The reach in force: days older are never asked for.
    reach: PlanReach,
    /// The job's `chunks_total`: windows done before this attempt plus those it planned.
    planned: i32,
    /// True once this attempt learned the reach: a second refusal within the learned
    /// reach fails the attempt instead of planning again.
    learned: bool,
    shortfalls: Shortfalls,
}

/// How a batch of windows ended.
enum Batch {
    /// Every window was tried.
    Done,
    /// The attempt must stop.
    Stopped(Outcome),
    /// `window` was refused as beyond the plan's reach of `days`; `unfetched` windows
    /// (it included) were not fetched.
    BeyondReach {
        window: Window,
        days: u32,
        unfetched: usize,
    },
}

impl<S: PriceSource> Run<'_, S> {
    /// Step 1: fetch what the plan asks for. When the source teaches a reach, the
    /// windows not fetched are planned again within it, once.
    async fn fetch(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        loop {
            let windows = self.plan().await?;
            match self.fetch_all(&windows).await? {
                Batch::Done => return Ok(ControlFlow::Continue(())),
                Batch::Stopped(outcome) => return Ok(ControlFlow::Break(outcome)),
                Batch::BeyondReach { window, .. } if self.learned => {
                    return Err(self.beyond_learned_reach(&window));
                }
                Batch::BeyondReach {
                    days, unfetched, ..
                } => {
                    self.learn_reach(days).await?;
                    self.planned -= unfetched as i32;
                }
            }
        }
    }

    /// The windows to fetch within the reach, counted into the job's `chunks_total`:
    /// forced, the range's windows after the checkpoint; otherwise the missing days'.
    async fn plan(&mut self) -> Result<Vec<Window>, JobError> {
        let job = self.attempt.job;
        let window_days = self.source.window_days();
        let windows = match self.served_part() {
            None => Vec::new(),
            Some((from, _)) if job.force => {
                let all = windows_for_range(job.range, window_days);
                let done = usize::try_from(job.chunks_done).unwrap_or(0).min(all.len());
                all[done..]
                    .iter()
                    .filter(|w| w.end >= from)
                    .map(|w| Window {
                        start: w.start.max(from),
                        end: w.end,
                    })
                    .collect()
            }
            Some((from, to)) => windows_for_days(&self.missing_days(from, to).await?, window_days),
        };
        self.count_planned(windows.len()).await?;
        tracing::info!(
            windows = windows.len(),
            done_before = job.chunks_done,
            force = job.force,
            reach_days = self.reach.limit_days(),
            "fetching"
        );
        Ok(windows)
    }

    /// Fetches `windows` in order, until one stops the attempt or is beyond the reach.
    async fn fetch_all(&mut self, windows: &[Window]) -> Result<Batch, JobError> {
        for (i, window) in windows.iter().enumerate() {
            match self.window(window).await? {
                WindowEnd::Stored(_) => {}
                WindowEnd::Failed(e) => return Err(e.into()),
                WindowEnd::Stop(outcome) => return Ok(Batch::Stopped(outcome)),
                WindowEnd::BeyondReach(days) => {
                    return Ok(Batch::BeyondReach {
                        window: *window,
                        days,
                        unfetched: windows.len() - i,
                    });
                }
            }
        }
        Ok(Batch::Done)
    }

    /// Step 2: fill what is still missing: one call per run of consecutive days (split
    /// only where a run is longer than a window). Days not over yet cannot be completed
    /// now, so no call is spent on them. A failed call does not end the attempt: it is
    /// said in the job's message.
    async fn fill(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        let fillable: Vec<NaiveDate> = match self.served_part() {
            None => Vec::new(),
            Some((from, to)) => self
                .missing_days(from, to)
                .await?
                .into_iter()
                .filter(|day| *day < self.today)
                .collect(),
        };
        let fills = windows_for_days(&fillable, self.source.window_days());
        if !fills.is_empty() {
            self.count_planned(fills.len()).await?;
            tracing::info!(runs = fills.len(), days = fillable.len(), "filling gaps");
        }
        for window in &fills {
            let failed = match self.window(window).await {
                Ok(WindowEnd::Stored(_)) => None,
                Ok(WindowEnd::Stop(outcome)) => return Ok(ControlFlow::Break(outcome)),
                Ok(WindowEnd::BeyondReach(days)) => {
                    self.learn_reach(days).await?;
                    None
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

    /// Step 3: the days older than the plan serves, from the second source, for a coin
    /// whose product passed the mapping check (checked here first, once, against the
    /// CoinGecko rows just stored). The windows are planned from the missing days'
    /// runs, at most 300 days each, skipping days before the product's first candle;
    /// each is stored with the checkpoint. Nothing the second source does fails the job:
    /// what it could not fill stays out of plan, and the final message says why.
    async fn out_of_plan(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        let Some(second) = self.ingestor.second_source.clone() else {
            return Ok(ControlFlow::Continue(()));
        };
        let days = self.out_of_plan_days().await?;
        if days.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let Some((product, candles_from)) = self.usable_product(&second).await? else {
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
        for (i, candle_window) in windows.iter().enumerate() {
            let window = Window {
                start: candle_window.first(),
                end: candle_window.last(),
            };
            let end = match self.window_from(&source, &window).await {
                Ok(end) => end,
                // Rows the table refuses: the source's data, not the job, is at fault.
                Err(JobError::Permanent(_)) => WindowEnd::Failed(SourceError::BadAnswer(format!(
                    "its candles for {}..{} broke a rule of the table, and nothing of them was \
                     stored.",
                    window.start, window.end
                ))),
                Err(e) => return Err(e),
            };
            match end {
                WindowEnd::Stored(built) if i == 0 => {
                    self.learn_candles_begin(&product, candle_window, &built.candles)
                        .await?;
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

    /// Remembers where `product`'s candles begin when the job's oldest window found none
    /// on its first days, for at least [`CANDLES_BEGIN_MIN_EMPTY_DAYS`] (fewer are quiet
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
        let (ingestor, symbol) = (self.ingestor, self.attempt.job.symbol);
        ingestor
            .patiently(|| second_source::learn_candles_from(&ingestor.pool, symbol, product, begin))
            .await?;
        Ok(())
    }

    /// The job's days older than the plan serves that the second source may fill: those
    /// missing, or every one when forced (its own rows are then replaced, CoinGecko's never).
    async fn out_of_plan_days(&self) -> Result<Vec<NaiveDate>, JobError> {
        let range = self.attempt.job.range;
        let days = if self.attempt.job.force {
            range
                .start()
                .iter_days()
                .take_while(|day| *day <= range.end())
                .collect()
        } else {
            self.missing_days(range.start(), range.end()).await?
        };
        Ok(self.reach.split(days, self.today).1)
    }

    /// The coin's product if the second source may be used for it, with the day its
    /// candles begin when known. A product not checked yet is checked now (one call);
    /// when the check cannot be made or finds the product unusable, the shortfall says why.
    async fn usable_product(
        &mut self,
        second: &SecondSource,
    ) -> Result<Option<(ProductId, Option<NaiveDate>)>, JobError> {
        let (ingestor, symbol) = (self.ingestor, self.attempt.job.symbol);
        let read = || second_source::mapping(&ingestor.pool, symbol);
        let Some(mut mapping) = ingestor.patiently(read).await? else {
            return Ok(None);
        };
        if let Some(product) = mapping.product.clone().filter(|_| mapping.needs_check()) {
            let Some(plan_first_day) = self.reach.first_served_day(self.today) else {
                return Ok(None);
            };
            let checked = check_mapping(
                &ingestor.pool,
                &second.client,
                symbol,
                &product,
                plan_first_day,
                second.max_deviation_percent,
            )
            .await;
            let end = match checked {
                Ok(Some(_)) => None,
                Ok(None) => Some(SecondSourceEnd::Unchecked(plan_first_day)),
                Err(CheckError::Coinbase(e)) => Some(SecondSourceEnd::Failed {
                    retry: !matches!(e, CoinbaseError::Refused { .. }),
                    why: e.message().to_owned(),
                }),
                Err(CheckError::Database(e)) => return Err(e.into()),
            };
            if end.is_some() {
                self.shortfalls.second_source = end;
                return Ok(None);
            }
            match ingestor.patiently(read).await? {
                Some(checked) => mapping = checked,
                None => return Ok(None),
            }
        }
        if mapping.usable == Some(false) {
            self.shortfalls.second_source = Some(SecondSourceEnd::Unusable(
                mapping.unusable_reason.clone().unwrap_or_default(),
            ));
        }
        Ok(mapping
            .usable_product()
            .cloned()
            .map(|product| (product, mapping.candles_from)))
    }

    /// Step 4: the final word, from the days of the range still missing.
    async fn finish(self) -> Result<Outcome, JobError> {
        let range = self.attempt.job.range;
        let missing = self.missing_days(range.start(), range.end()).await?;
        Ok(finished(missing, self.reach, self.today, &self.shortfalls))
    }

    /// The one place an attempt learns the reach: what the source's refusal taught is
    /// remembered (once per attempt, for every process and later job), and the reach in
    /// force is read again.
    async fn learn_reach(&mut self, days: u32) -> Result<(), JobError> {
        let ingestor = self.ingestor;
        self.reach = if self.learned {
            ingestor
                .patiently(|| ingestor.reach.current(&ingestor.pool))
                .await?
        } else {
            self.learned = true;
            ingestor
                .patiently(|| ingestor.reach.learn(&ingestor.pool, days))
                .await?
        };
        Ok(())
    }

    /// A refusal within the reach this attempt learned: the plan serves less than the
    /// source said, and only the settings can say how much.
    fn beyond_learned_reach(&self, window: &Window) -> JobError {
        JobError::Permanent(format!(
            "CoinGecko refused {}..{} as older than the plan serves (error 10012), even \
             within the reach it taught before ({} days). Set COINGECKO_HISTORY_DAYS to what \
             the plan serves and submit the job again.",
            window.start,
            window.end,
            self.reach.limit_days().unwrap_or_default()
        ))
    }

    /// Adds `windows` to the job's `chunks_total`.
    async fn count_planned(&mut self, windows: usize) -> Result<(), JobError> {
        self.planned += windows as i32;
        let (ingestor, id, planned) = (self.ingestor, self.attempt.job.id, self.planned);
        ingestor
            .patiently(|| ingestion_jobs::set_chunks_total(&ingestor.pool, id, planned))
            .await
    }

    /// The part of the job's range the reach serves, if any.
    fn served_part(&self) -> Option<(NaiveDate, NaiveDate)> {
        let range = self.attempt.job.range;
        self.reach
            .served_part(range.start(), range.end(), self.today)
    }

    /// The coin's days from `from` to `to` that have no final row.
    async fn missing_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<NaiveDate>, JobError> {
        let (ingestor, symbol) = (self.ingestor, self.attempt.job.symbol);
        ingestor
            .patiently(|| gaps::missing_days(&ingestor.pool, symbol, from, to))
            .await
    }

    /// One window of the job's own source; see [`window_from`](Self::window_from).
    async fn window(&mut self, window: &Window) -> Result<WindowEnd, JobError> {
        let end = self.window_from(&self.source, window).await?;
        if let WindowEnd::Stored(built) = &end {
            self.shortfalls
                .too_thin
                .extend(built.too_thin.iter().copied());
        }
        Ok(end)
    }

    /// One window: ask `source` for it, and store its candles (marked with its origin)
    /// with the checkpoint in one transaction, so a crash leaves either both or neither.
    /// A shutdown during the call drops the window (nothing of it was written); a
    /// shutdown during the commit lets the commit finish.
    #[tracing::instrument(skip_all, fields(source = source.name(), start = %window.start, end = %window.end))]
    async fn window_from<T: PriceSource>(
        &self,
        source: &T,
        window: &Window,
    ) -> Result<WindowEnd, JobError> {
        let (ingestor, attempt) = (self.ingestor, &self.attempt);
        let job = attempt.job;
        if attempt.stop.is_shutdown() {
            return Ok(WindowEnd::Stop(Outcome::Interrupted));
        }
        if !ingestor
            .patiently(|| ingestion_jobs::is_still_active(&ingestor.pool, job.id))
            .await?
        {
            return Ok(WindowEnd::Stop(Outcome::Cancelled));
        }
        let answer = tokio::select! {
            biased;
            () = attempt.stop.recv() => return Ok(WindowEnd::Stop(Outcome::Interrupted)),
            answer = source.daily_candles(&self.coin, *window) => answer,
        };
        let built = match answer {
            Ok(built) => built,
            Err(SourceError::PlanLimit { reach_days, .. }) => {
                return Ok(WindowEnd::BeyondReach(reach_days));
            }
            Err(e) => return Ok(WindowEnd::Failed(e)),
        };
        if !built.too_thin.is_empty() {
            tracing::warn!(days = ?built.too_thin, "days with too few points were not stored");
        }
        let written = ingestor
            .patiently(|| ingestor.store(&self.attempt, source.origin(), &built.candles))
            .await?;
        match written {
            Some(written) => {
                tracing::info!(
                    days = window.days(),
                    fetched = built.candles.len(),
                    written,
                    "window stored"
                );
                Ok(WindowEnd::Stored(built))
            }
            None => {
                tracing::warn!("another worker holds this job now; stopping without writing");
                Ok(WindowEnd::Stop(Outcome::LeaseLost))
            }
        }
    }
}

/// Why days are still missing, beyond "CoinGecko had nothing": gathered over an attempt
/// so that the final message says what happened.
#[derive(Debug, Default)]
struct Shortfalls {
    /// Finished days CoinGecko sent too few points for, with the latest count.
    too_thin: BTreeMap<NaiveDate, usize>,
    /// Gap-fill calls that failed, with why.
    failed_fills: Vec<(Window, String)>,
    /// What became of the second source, when it had out-of-plan days to fill.
    second_source: Option<SecondSourceEnd>,
}

/// How the second source's step ended, for the final message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SecondSourceEnd {
    /// It was asked; what is still out of plan, it has no candle for.
    Asked,
    /// It failed (down, refusing or answering garbage), saying why; `retry` when a later
    /// run may fill the days as things are (its own words say what to do otherwise).
    Failed { why: String, retry: bool },
    /// Its mapping check found the product to be another asset: the coin's reason.
    Unusable(String),
    /// Its mapping could not be checked: CoinGecko has no final row from this day on yet.
    Unchecked(NaiveDate),
}

/// The final word on a job whose windows have all been tried, from the days of its
/// range still missing: those the plan serves are gaps, each explained by what happened
/// to it (not over, too few points, a failed call, or no data at all); the older ones are
/// out of plan.
fn finished(
    missing: Vec<NaiveDate>,
    reach: PlanReach,
    today: NaiveDate,
    shortfalls: &Shortfalls,
) -> Outcome {
    let (gap_dates, out_of_plan) = reach.split(missing, today);
    if gap_dates.is_empty() && out_of_plan.is_empty() {
        return Outcome::Finished {
            status: JobStatus::Completed,
            gap_dates,
            out_of_plan_days: 0,
            message: None,
        };
    }
    let mut sentences = Vec::new();
    if let (Some(first), Some(last), Some(served_from)) = (
        out_of_plan.first(),
        out_of_plan.last(),
        reach.first_served_day(today),
    ) {
        sentences.push(format!(
            "{} day(s) from {first} to {last} are older than CoinGecko's plan serves (the past {} days, \
             from {served_from} on) and were not asked for; a paid key reaches further: set \
             COINGECKO_API_KEY and COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3 (and \
             COINGECKO_HISTORY_DAYS=0), then run the job again.",
            out_of_plan.len(),
            reach.limit_days().unwrap_or_default(),
        ));
        if let Some(end) = &shortfalls.second_source {
            sentences.push(second_source_message(end));
        }
    }
    if !gap_dates.is_empty() {
        sentences.push(gap_message(&gap_dates, today, shortfalls));
    }
    Outcome::Finished {
        status: JobStatus::CompletedWithGaps,
        gap_dates,
        out_of_plan_days: out_of_plan.len() as i32,
        message: Some(sentences.join(" ")),
    }
}

/// What to say of the second source, when days older than the plan serves are still missing.
fn second_source_message(end: &SecondSourceEnd) -> String {
    match end {
        SecondSourceEnd::Asked => "Coinbase Exchange, the second source, has no candle for them \
            either (days without trades, or before its product's first candle)."
            .to_owned(),
        SecondSourceEnd::Failed { why, retry: true } => format!(
            "Coinbase Exchange, the second source, could not fill them: {} Run the job again \
             later to fill them from it.",
            why.trim_end()
        ),
        SecondSourceEnd::Failed { why, retry: false } => format!(
            "Coinbase Exchange, the second source, could not fill them: {}",
            why.trim_end()
        ),
        SecondSourceEnd::Unusable(reason) => format!(
            "The second source (Coinbase Exchange) is not used for this coin: {}",
            reason.trim_end()
        ),
        SecondSourceEnd::Unchecked(from) => format!(
            "The second source (Coinbase Exchange) was not used: its prices are first compared \
             with CoinGecko's on the earliest days the plan serves (from {from} on), and none is \
             stored yet; run a job that includes them, then this one again."
        ),
    }
}

/// What to say of days the plan serves that are still missing.
fn gap_message(gap_dates: &[NaiveDate], today: NaiveDate, shortfalls: &Shortfalls) -> String {
    let mut message = format!(
        "{} day(s) still have no final price: {}.",
        gap_dates.len(),
        describe_days(gap_dates)
    );
    let (not_over, past): (Vec<NaiveDate>, Vec<NaiveDate>) =
        gap_dates.iter().partition(|day| **day >= today);
    if !not_over.is_empty() {
        message.push_str(" Today (UTC) is not over, so its row is provisional; run the job again after 00:40 UTC tomorrow to complete it.");
    }
    let (thin, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past
        .into_iter()
        .partition(|day| shortfalls.too_thin.contains_key(day));
    if !thin.is_empty() {
        let fewest = thin
            .iter()
            .filter_map(|day| shortfalls.too_thin.get(day))
            .min()
            .copied()
            .unwrap_or_default();
        message.push_str(&format!(
            " CoinGecko sent too few points for {} ({} day(s), as few as {fewest}): a day of hourly data is stored from at least {MIN_HOURLY_POINTS} points, so they were not stored; run the job again later to retry them.",
            describe_days(&thin),
            thin.len(),
        ));
    }
    let (failed, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past.into_iter().partition(|day| {
        shortfalls
            .failed_fills
            .iter()
            .any(|(window, _)| window.contains(*day))
    });
    if !failed.is_empty() {
        for (window, why) in shortfalls.failed_fills.iter().take(3) {
            message.push_str(&format!(
                " Asking CoinGecko again for {}..{} failed: {}",
                window.start,
                window.end,
                why.trim_end_matches('.')
            ));
            message.push('.');
        }
        if shortfalls.failed_fills.len() > 3 {
            message.push_str(&format!(
                " {} more call(s) failed the same way.",
                shortfalls.failed_fills.len() - 3
            ));
        }
        message.push_str(" Run the job again once that is fixed.");
    }
    if !past.is_empty() {
        let others = if past.len() == gap_dates.len() {
            "these"
        } else {
            "the other"
        };
        message.push_str(&format!(
            " CoinGecko returned no data for {others} {} day(s) even after a second try; run the job again later to retry them.",
            past.len()
        ));
    }
    message
}

/// Days as runs, e.g. `2024-01-01..2024-01-03, 2024-02-10`, at most a handful shown.
fn describe_days(days: &[NaiveDate]) -> String {
    const SHOWN: usize = 10;
    let runs = gaps::runs(days);
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect();
    if runs.len() > SHOWN {
        parts.push(format!("and {} more run(s)", runs.len() - SHOWN));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn message_of(outcome: Outcome) -> String {
        let Outcome::Finished {
            status, message, ..
        } = outcome
        else {
            panic!("not finished");
        };
        assert_eq!(status, JobStatus::CompletedWithGaps);
        message.unwrap()
    }

    #[test]
    fn no_gaps_is_completed_without_a_message() {
        assert_eq!(
            finished(
                vec![],
                PlanReach::UNLIMITED,
                day("2024-01-01"),
                &Shortfalls::default()
            ),
            Outcome::Finished {
                status: JobStatus::Completed,
                gap_dates: vec![],
                out_of_plan_days: 0,
                message: None
            }
        );
    }

    #[test]
    fn gaps_name_their_days_and_say_what_to_do() {
        let message = message_of(finished(
            vec![day("2024-01-01"), day("2024-01-02"), day("2024-01-09")],
            PlanReach::UNLIMITED,
            day("2024-01-09"),
            &Shortfalls::default(),
        ));
        assert!(
            message.starts_with(
                "3 day(s) still have no final price: 2024-01-01..2024-01-02, 2024-01-09."
            ),
            "{message}"
        );
        assert!(message.contains("Today (UTC) is not over"), "{message}");
        assert!(
            message.contains("no data for the other 2 day(s)"),
            "{message}"
        );
    }

    #[test]
    fn a_failed_gap_fill_is_said_as_what_it_was_not_as_no_data() {
        let shortfalls = Shortfalls {
            too_thin: BTreeMap::new(),
            failed_fills: vec![(
                Window {
                    start: day("2024-01-01"),
                    end: day("2024-01-02"),
                },
                "CoinGecko answered HTTP 401: \"Invalid API key\". The API key is missing or invalid.".to_owned(),
            )],
            second_source: None,
        };
        let message = message_of(finished(
            vec![day("2024-01-01"), day("2024-01-02")],
            PlanReach::UNLIMITED,
            day("2024-02-01"),
            &shortfalls,
        ));
        assert!(
            message.contains("Asking CoinGecko again for 2024-01-01..2024-01-02 failed: CoinGecko answered HTTP 401"),
            "{message}"
        );
        assert!(!message.contains("no data"), "{message}");
        let without_ranges = message.replace("2024-01-01..2024-01-02", "");
        assert!(!without_ranges.contains(".."), "{without_ranges}");
    }

    #[test]
    fn days_with_too_few_points_are_named_with_the_rule() {
        let shortfalls = Shortfalls {
            too_thin: BTreeMap::from([(day("2024-01-05"), 1)]),
            failed_fills: vec![],
            second_source: None,
        };
        let message = message_of(finished(
            vec![day("2024-01-05"), day("2024-01-07")],
            PlanReach::UNLIMITED,
            day("2024-02-01"),
            &shortfalls,
        ));
        assert!(
            message.contains("too few points for 2024-01-05 (1 day(s), as few as 1)"),
            "{message}"
        );
        assert!(message.contains("at least 12 points"), "{message}");
        assert!(
            message.contains("no data for the other 1 day(s)"),
            "{message}"
        );
    }

    #[test]
    fn days_beyond_the_reach_are_out_of_plan_not_gaps_and_the_message_names_the_way_out() {
        let today = day("2026-11-28");
        let Outcome::Finished {
            status,
            gap_dates,
            out_of_plan_days,
            message,
        } = finished(
            vec![day("2025-11-27"), day("2025-11-28"), day("2026-01-05")],
            PlanReach::days(365),
            today,
            &Shortfalls::default(),
        )
        else {
            panic!("not finished");
        };
        assert_eq!(status, JobStatus::CompletedWithGaps);
        assert_eq!(gap_dates, vec![day("2026-01-05")]);
        assert_eq!(out_of_plan_days, 2);
        let message = message.unwrap();
        assert!(
            message.contains("2 day(s) from 2025-11-27 to 2025-11-28 are older"),
            "{message}"
        );
        assert!(message.contains("from 2025-11-29 on"), "{message}");
        assert!(message.contains("paid key reaches further"), "{message}");
        assert!(
            message.contains("1 day(s) still have no final price: 2026-01-05."),
            "{message}"
        );
    }

    #[test]
    fn what_became_of_the_second_source_is_said_after_the_out_of_plan_days() {
        let today = day("2026-11-28");
        let said = |end: SecondSourceEnd| {
            message_of(finished(
                vec![day("2025-01-01"), day("2025-01-02")],
                PlanReach::days(365),
                today,
                &Shortfalls {
                    second_source: Some(end),
                    ..Shortfalls::default()
                },
            ))
        };

        let failed = said(SecondSourceEnd::Failed {
            why: "Coinbase Exchange did not answer: connection refused.".to_owned(),
            retry: true,
        });
        let refused = said(SecondSourceEnd::Failed {
            why: "Coinbase Exchange refused it: set the coin's coinbase_product.".to_owned(),
            retry: false,
        });
        let unusable = said(SecondSourceEnd::Unusable(
            "SOLX-USD's closes differ from CoinGecko's by 9900 %: another asset.".to_owned(),
        ));
        let asked = said(SecondSourceEnd::Asked);
        let unchecked = said(SecondSourceEnd::Unchecked(day("2025-11-29")));

        assert!(
            failed.starts_with("2 day(s) from 2025-01-01 to 2025-01-02 are older"),
            "{failed}"
        );
        assert!(
            failed.contains("could not fill them: Coinbase Exchange did not answer")
                && failed.contains("Run the job again later"),
            "{failed}"
        );
        assert!(
            refused.contains("set the coin's coinbase_product") && !refused.contains("later"),
            "{refused}"
        );
        assert!(
            unusable.contains("not used for this coin: SOLX-USD"),
            "{unusable}"
        );
        assert!(asked.contains("has no candle for them either"), "{asked}");
        assert!(unchecked.contains("from 2025-11-29 on"), "{unchecked}");
        let none = message_of(finished(
            vec![day("2025-01-01")],
            PlanReach::days(365),
            today,
            &Shortfalls::default(),
        ));
        assert!(!none.contains("second source"), "{none}");
    }

    /// Kills `runs.len() > SHOWN` -> `==` / `>=` in `describe_days`, and
    /// `failed_fills.len() > 3` -> `==` / `>=` in `gap_message`: what is left out is
    /// counted, and nothing is said to be left out when nothing is.
    #[test]
    fn long_lists_of_runs_and_failed_calls_are_cut_and_the_rest_counted() {
        let every_other_day = |n: u64| -> Vec<NaiveDate> {
            (0..n)
                .map(|i| day("2024-01-01") + chrono::Days::new(2 * i))
                .collect()
        };
        assert!(!describe_days(&every_other_day(10)).contains("more run(s)"));
        let twelve = describe_days(&every_other_day(12));
        assert!(twelve.ends_with(", and 2 more run(s)"), "{twelve}");
        assert_eq!(twelve.matches(", ").count(), 10, "{twelve}");

        let failed = |n: u64| Shortfalls {
            too_thin: BTreeMap::new(),
            failed_fills: every_other_day(n)
                .into_iter()
                .map(|d| (Window { start: d, end: d }, "HTTP 401".to_owned()))
                .collect(),
            second_source: None,
        };
        let three = message_of(finished(
            every_other_day(3),
            PlanReach::UNLIMITED,
            day("2024-02-01"),
            &failed(3),
        ));
        assert_eq!(three.matches("failed: HTTP 401").count(), 3, "{three}");
        assert!(!three.contains("more call(s)"), "{three}");
        let five = message_of(finished(
            every_other_day(5),
            PlanReach::UNLIMITED,
            day("2024-02-01"),
            &failed(5),
        ));
        assert_eq!(five.matches("failed: HTTP 401").count(), 3, "{five}");
        assert!(
            five.contains(" 2 more call(s) failed the same way."),
            "{five}"
        );
    }
}
