//! Keeping tracked coins current (INTERFACE.md, "Keeping coins current"): every `serve`
//! and `worker` process runs a [`Scheduler`] on `SYNC_SCHEDULE`; at each tick exactly one
//! of them acts, and acting queues one job per hourly coin whose hours lag the last
//! complete hour, and one per tracked coin that misses days (none more for a coin that
//! just got one for its hours: its job fills the days of its range too).
//!
//! # How one process, and only one, acts on a tick
//!
//! Every process computes the same ticks from the expression, each from the last target
//! time (never from "now", which drifts). To act on tick `T` a process moves the single
//! row of `sync_schedule` forward, `UPDATE ... WHERE last_tick < T`, in a transaction it
//! keeps open while it queues the jobs: the first to get there wins, the others find the
//! row moved on (after waiting for the winner's commit). A process whose clock runs a
//! second or two ahead just wins earlier; one that runs behind finds the tick taken. A
//! winner that fails before its commit rolls its claim back, so the tick is not lost.
//!
//! # Catch-up
//!
//! At start a process claims the latest tick at or before now: if no process acted on it
//! (all were down), it is acted on at once. What a tick queues is computed from what is
//! missing in `daily_prices`, so a week down costs one job per coin, not seven.
//!
//! # What a tick costs
//!
//! O(coins), however much history is stored: the figures `coin_figures` keeps (by
//! triggers, so rows changed by plain SQL count too) say for each coin whether its
//! complete days are one unbroken run covering what it should have. Such a coin costs no
//! query. The others are looked at in batches of [`BATCH`]: one query reads their
//! records, one their active jobs, and one transaction queues all their jobs (one commit
//! for up to 500 jobs, not one each). A coin behind with an unbroken run (or no day at
//! all) misses exactly the days outside its run, known without a query; only a coin with
//! a hole gets the gap query (which finds a hole in the middle exactly as before). Hours likewise: one query
//! reads every hourly coin with its `hourly_figures` row (never `hourly_prices`); a coin
//! whose last hour accounted for is the last complete one costs nothing more.
//!
//! # Stopping
//!
//! The stop signal is looked at between two batches of coins. A tick stopped half done
//! rolls back its claim, so the next process to try the tick acts on it whole; the jobs of
//! the batches before the stop are on the queue already, and the one-active-job rule keeps that process from
//! queuing a second one for those coins.
//!
//! # Why not apalis-cron
//!
//! `apalis-cron` 1.0 turns a `cron::Schedule` into a stream of ticks in one process. Each
//! process's stream would push its own job per tick (no exclusion across processes),
//! ticks missed while nothing ran are lost, and each tick is computed from the system
//! clock's "now", which tests cannot shift. What it adds over the `cron` crate it is
//! built on is the stream, which is the part we cannot use; so this module uses `cron`
//! directly, with the claim and catch-up on the database. The storage's scheduled jobs
//! (`run_at`) do not fit either: a tick's work is decided when it is due, from the data.

use std::collections::{HashMap, HashSet};

mod credits;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::credits::Credits;
use crate::domain::PlanReach;
use crate::domain::{Hour, Symbol};
use crate::ingest::Reach;
use crate::queue;
use crate::registry::{
    CoinSync, SyncError, days_to_keep, lagging_from, missing_days_known, schedule_job, tick_job,
};
use crate::shutdown::Shutdown;
use crate::store::coin_figures::{self, CompleteDays, ToLookAt};
use crate::store::coins::{self, CoinRecord};
use crate::store::hourly_coins::{self, HourlyCoin};
use crate::store::ingestion_jobs::{self, NewJob};
use crate::store::{sync_schedule, sync_schedule::TickRecord};
use credits::Purse;

// The schedule's expression and clock are plain values (`config` parses them): `domain`.
pub use crate::domain::{Clock, DEFAULT_SCHEDULE, InvalidSchedule, SyncSchedule};

/// How many coins a tick looks at together: their records, active jobs and jobs queued
/// in one query each, and the stop signal looked at between two batches. Row 16 of
/// BENCHMARKS.md measured a tick queuing a job for each of 1,000 coins: batches of 100
/// 115-119 ms, 250 95-97 ms, 500 79-86 ms (a batch of 500 is about 40 ms, so a stop still
/// waits little).
const BATCH: usize = 500;

/// How long a process waits before trying a tick again when the database failed it. While
/// the database is away it tries at this pace; any other failure doubles the wait, up to
/// [`MAX_RETRY_AFTER`]: one that lasts (a broken row, a statement the database refuses)
/// would otherwise redo the tick's work every second, logging each time.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a failed tick.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One process's part in the schedule.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub pool: PgPool,
    /// Never `Off`: a process with the schedule off runs no scheduler.
    pub schedule: SyncSchedule,
    pub clock: Clock,
    /// The plan's reach, configured or learned: days older are never asked for.
    pub reach: Reach,
    /// Recorded in `sync_ticks.acted_by`: this process's worker name.
    pub name: String,
    /// The month's CoinGecko credits: a tick queues only what they pay for. `None`: no
    /// monthly limit is looked at.
    pub credits: Option<Credits>,
}

impl Scheduler {
    /// Acts on the ticks of the schedule until `shutdown` is raised: first on the latest
    /// past tick if no process did (catch-up), then on each tick as it comes.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(schedule = %self.schedule, "sync schedule running (UTC)");
        let mut due = self.schedule.latest_at_or_before(self.clock.now());
        let mut catch_up = true;
        let mut retry_after = RETRY_AFTER;
        loop {
            if let Some(tick) = due {
                match self.act_on(tick, catch_up, &shutdown).await {
                    // `act_on` logged its one line.
                    Ok(Acted::Done(_)) => {}
                    Ok(Acted::Taken) => {
                        tracing::debug!(%tick, "another process acted on this tick");
                    }
                    Ok(Acted::Stopped) => return,
                    Err(e) => {
                        tracing::warn!(%tick, error = format!("{e:#}"),
                            retry_in_secs = retry_after.as_secs(),
                            "could not act on a tick of the sync schedule; trying again");
                        if wait_or_stop(&shutdown, retry_after).await {
                            return;
                        }
                        // The database away is waited out at the first pace: its return
                        // is what the next try waits for.
                        let away = e.chain().any(|cause| {
                            let sync = cause.downcast_ref::<SyncError>();
                            let database = match sync {
                                Some(SyncError::Database(e)) => Some(e),
                                _ => cause.downcast_ref::<sqlx::Error>(),
                            };
                            database.is_some_and(crate::store::is_unavailable)
                        });
                        if !away {
                            retry_after = (retry_after * 2).min(MAX_RETRY_AFTER);
                        }
                        // A tick that passed meanwhile supersedes this one.
                        due = self.schedule.latest_at_or_before(self.clock.now()).max(due);
                        continue;
                    }
                }
            }
            catch_up = false;
            retry_after = RETRY_AFTER;
            // The next target follows the last one, not "now".
            let Some(next) = self
                .schedule
                .next_after(due.unwrap_or_else(|| self.clock.now()))
            else {
                tracing::info!(schedule = %self.schedule, "the sync schedule has no more ticks");
                shutdown.recv().await;
                return;
            };
            loop {
                let now = self.clock.now();
                if now >= next {
                    break;
                }
                let wait = (next - now).to_std().unwrap_or_default();
                if wait_or_stop(&shutdown, wait).await {
                    return;
                }
            }
            // After a long sleep (a suspended process), several ticks may have passed:
            // the latest stands for all of them.
            due = self
                .schedule
                .latest_at_or_before(self.clock.now())
                .max(Some(next));
        }
    }

    /// Acts on `tick` if no process has acted on it or on a later one: for each tracked
    /// coin that misses days and has no active job, queues one job. A database error fails
    /// the whole tick (its claim is rolled back, so it is tried again); any other error of
    /// one coin is logged and the other coins go on.
    ///
    /// Stops between two batches of coins when `shutdown` is raised: the claim is rolled back, so the
    /// next process to try the tick (one waiting on the claim at once, or any at its next
    /// tick) acts on it whole. The jobs queued before the stop stay queued, and the
    /// one-active-job rule keeps that process from queuing a second.
    pub async fn act_on(
        &self,
        tick: DateTime<Utc>,
        catch_up: bool,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Acted> {
        let mut tx = self.pool.begin().await?;
        // The claim waits while another process acts on the tick; a stop must not.
        let Some(claimed) = shutdown
            .unless_raised(sync_schedule::claim(&mut tx, tick))
            .await
        else {
            return Ok(Acted::Stopped);
        };
        if !claimed? {
            tx.rollback().await?;
            return Ok(Acted::Taken);
        }
        let now = self.clock.now();
        let reach = self.reach.current(&self.pool).await?;
        let mut acted = TickRecord {
            catch_up,
            ..TickRecord::default()
        };
        let mut purse = Purse::open(self.credits.as_ref()).await?;
        let today = now.date_naive();
        let (tracked, to_look_at) =
            coin_figures::tracked_needing_a_look(&self.pool, today, reach.first_served_day(today))
                .await?;
        acted.coins_tracked = i32::try_from(tracked).unwrap_or(i32::MAX);
        let done = match self
            .hours_of_tick((reach, now), &to_look_at, &mut purse, &mut acted, shutdown)
            .await?
        {
            Some(hours_queued) => {
                let to_look_at = to_look_at
                    .into_iter()
                    .filter(|coin| !hours_queued.contains(&coin.symbol))
                    .collect();
                self.days_of_tick((reach, today), to_look_at, &mut purse, &mut acted, shutdown)
                    .await?
            }
            None => None,
        };
        let Some(looked) = done else {
            tx.rollback().await?;
            tracing::info!(%tick, jobs_queued = acted.jobs_queued,
                "stopping in the middle of a tick: the next process to act finishes it");
            return Ok(Acted::Stopped);
        };
        sync_schedule::record(&mut tx, tick, &self.name, acted).await?;
        tx.commit().await?;
        purse.say_unaffordable(acted.coins_unaffordable);
        tracing::info!(%tick, catch_up, coins_tracked = acted.coins_tracked,
            coins_looked_at = looked.looked_at, gap_queries = looked.gap_queries,
            coins_behind = acted.coins_behind, jobs_queued = acted.jobs_queued,
            coins_busy = acted.coins_busy, coins_unaffordable = acted.coins_unaffordable,
            "acted on a tick of the sync schedule");
        Ok(Acted::Done(acted))
    }

    /// The hours of a tick: one query for every hourly coin and its figures; only those
    /// whose last complete hour is not accounted for are looked at, in batches: one query
    /// for their records and one transaction for their jobs. The coins behind (a job
    /// queued, one active, or one the month's credits cannot pay for), whose jobs fill
    /// their days too: from the first day a tracked one misses when that is further back
    /// (`days` holds those whose days need a look); `None` when `shutdown` came first.
    async fn hours_of_tick(
        &self,
        (reach, now): (PlanReach, DateTime<Utc>),
        days: &[ToLookAt],
        purse: &mut Purse,
        acted: &mut TickRecord,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Option<HashSet<Symbol>>> {
        let last_complete = Hour::last_complete(now);
        let behind: Vec<HourlyCoin> = hourly_coins::hourly(&self.pool)
            .await?
            .into_iter()
            .filter(|coin| coin.hourly)
            .filter(|coin| {
                coin.figures
                    .accounted
                    .is_none_or(|accounted| accounted.last() < last_complete)
            })
            .collect();
        let days: HashMap<Symbol, CompleteDays> = days
            .iter()
            .map(|coin| (coin.symbol, coin.complete))
            .collect();
        let mut hours_behind = HashSet::new();
        for batch in behind.chunks(BATCH) {
            if shutdown.is_shutdown() {
                return Ok(None);
            }
            let jobs = self
                .hour_jobs_of(batch, (reach, now), &days, purse, acted, &mut hours_behind)
                .await?;
            self.queue_all(&jobs, "hours", acted).await?;
            hours_behind.extend(jobs.iter().map(|job| job.symbol));
        }
        Ok(Some(hours_behind))
    }

    /// The jobs that would bring a batch of hourly coins' hours up to the last complete
    /// hour, from the first hour each lags by ([`lagging_from`]) or the first day it misses
    /// ([`Scheduler::first_day_behind`]) through today, counting in `acted` (and in
    /// `behind`) those the month's credits cannot pay for.
    async fn hour_jobs_of(
        &self,
        batch: &[HourlyCoin],
        (reach, now): (PlanReach, DateTime<Utc>),
        days: &HashMap<Symbol, CompleteDays>,
        purse: &mut Purse,
        acted: &mut TickRecord,
        behind: &mut HashSet<Symbol>,
    ) -> anyhow::Result<Vec<NewJob>> {
        let symbols: Vec<Symbol> = batch.iter().map(|coin| coin.symbol).collect();
        let records = self.records_of(&symbols).await?;
        let active = self.active_jobs_of(&symbols).await?;
        let today = now.date_naive();
        let mut jobs = Vec::new();
        for hourly in batch {
            let Some(record) = records.get(&hourly.symbol) else {
                continue;
            };
            // An active job first: it is paid for already, and the month's credits must
            // not be counted again for it, at the expense of the coins after it.
            if let Some(active) = active.get(&hourly.symbol) {
                let busy = Ok(CoinSync::Busy(Some(*active)));
                if count(hourly.symbol, "hours", busy, acted)? {
                    behind.insert(hourly.symbol);
                }
                continue;
            }
            let Some(from) = lagging_from(&record.coin, hourly, reach, now) else {
                continue;
            };
            let complete = days.get(&hourly.symbol).copied();
            let from = self
                .first_day_behind(record, complete, (reach, today), from.date())
                .await?;
            let paid = (record, from);
            if !purse
                .pay_for_hours(self.credits.as_ref(), paid, today)
                .await?
            {
                acted.coins_behind += 1;
                acted.coins_unaffordable += 1;
                behind.insert(hourly.symbol);
                tracing::debug!(symbol = %hourly.symbol, "hourly coin behind but the month's credits cannot pay for it; a later tick looks again");
                continue;
            }
            match schedule_job(&record.coin, (from, today), today) {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    count(hourly.symbol, "hours", Err(e.into()), acted)?;
                }
            }
        }
        Ok(jobs)
    }

    /// The first day of a tick's job for an hourly coin whose hours lag from `lagging`:
    /// that day, or the first day the coin misses when it is tracked, its figures show a
    /// hole (`complete`) and that day is further back (however far: the job fills hours of
    /// its newest [`MAX_RANGE_DAYS`](crate::domain::MAX_RANGE_DAYS) only). Without this, the days of a coin whose hours lag
    /// at every tick would never be looked at again.
    async fn first_day_behind(
        &self,
        record: &CoinRecord,
        complete: Option<CompleteDays>,
        (reach, today): (PlanReach, NaiveDate),
        lagging: NaiveDate,
    ) -> sqlx::Result<NaiveDate> {
        let (Some(complete), true) = (complete, record.coin.tracked) else {
            return Ok(lagging);
        };
        let Some(kept) = days_to_keep(&record.coin, reach, today) else {
            return Ok(lagging);
        };
        let (missing, _) =
            missing_days_known(&self.pool, record.coin.symbol, kept, complete).await?;
        Ok(missing
            .first()
            .map_or(lagging, |first| (*first).min(lagging)))
    }

    /// The days of a tick: the tracked coins not plainly complete (`to_look_at`, but for
    /// those whose hours' job was just queued), looked at in batches. `None` when
    /// `shutdown` came first.
    async fn days_of_tick(
        &self,
        (reach, today): (PlanReach, NaiveDate),
        to_look_at: Vec<ToLookAt>,
        purse: &mut Purse,
        acted: &mut TickRecord,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Option<Looked>> {
        let mut looked = Looked {
            looked_at: to_look_at.len(),
            gap_queries: 0,
        };
        for batch in to_look_at.chunks(BATCH) {
            if shutdown.is_shutdown() {
                return Ok(None);
            }
            let jobs = self
                .jobs_of(batch, (reach, today), purse, acted, &mut looked)
                .await?;
            self.queue_all(&jobs, "days", acted).await?;
        }
        Ok(Some(looked))
    }

    /// The jobs that would bring a batch of a tick's coins up to date, counting in `acted`
    /// the coins busy or unaffordable: a query for their records, one for their active jobs,
    /// and the gap query only for a coin whose figures show a hole. A coin gone or
    /// untracked since the tick's query is passed over. An error only when the database
    /// failed.
    async fn jobs_of(
        &self,
        batch: &[ToLookAt],
        (reach, today): (PlanReach, NaiveDate),
        purse: &mut Purse,
        acted: &mut TickRecord,
        looked: &mut Looked,
    ) -> anyhow::Result<Vec<NewJob>> {
        let symbols: Vec<Symbol> = batch.iter().map(|coin| coin.symbol).collect();
        let records = self.records_of(&symbols).await?;
        let active = self.active_jobs_of(&symbols).await?;
        let mut jobs = Vec::new();
        for coin in batch {
            let Some(record) = records.get(&coin.symbol).filter(|r| r.coin.tracked) else {
                continue;
            };
            let Some(kept) = days_to_keep(&record.coin, reach, today) else {
                continue;
            };
            // An active job first: its days may be missing only until it commits them.
            if let Some(active) = active.get(&coin.symbol) {
                count(
                    coin.symbol,
                    "days",
                    Ok(CoinSync::Busy(Some(*active))),
                    acted,
                )?;
                continue;
            }
            let (missing, queried) =
                missing_days_known(&self.pool, coin.symbol, kept, coin.complete).await?;
            looked.gap_queries += usize::from(queried);
            let (job, in_job) = match tick_job(&record.coin, &missing, today) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    count(coin.symbol, "days", Err(e.into()), acted)?;
                    continue;
                }
            };
            if purse.pay_for(self.credits.as_ref(), &in_job) {
                jobs.push(job);
            } else {
                acted.coins_behind += 1;
                acted.coins_unaffordable += 1;
                tracing::debug!(symbol = %coin.symbol, "tracked coin behind but the month's credits cannot pay for it; a later tick looks again");
            }
        }
        Ok(jobs)
    }

    /// The active job of each of `symbols` that has one, by symbol: one query.
    async fn active_jobs_of(&self, symbols: &[Symbol]) -> sqlx::Result<HashMap<Symbol, Uuid>> {
        Ok(ingestion_jobs::active_jobs_of(&self.pool, symbols)
            .await?
            .into_iter()
            .collect())
    }

    /// The records of those of `symbols` that are registered, by symbol: one query.
    async fn records_of(&self, symbols: &[Symbol]) -> sqlx::Result<HashMap<Symbol, CoinRecord>> {
        Ok(coins::get_many(&self.pool, symbols)
            .await?
            .into_iter()
            .map(|record| (record.coin.symbol, record))
            .collect())
    }

    /// Queues `jobs` in one transaction, counting in `acted` what came of each: queued, or
    /// busy when a job of its coin became active since the batch's query (the next tick
    /// looks again).
    async fn queue_all(
        &self,
        jobs: &[NewJob],
        what: &str,
        acted: &mut TickRecord,
    ) -> anyhow::Result<()> {
        let queued = queue::submit_all(&self.pool, jobs)
            .await
            .map_err(|e| anyhow::Error::from(SyncError::Queue(e)))?;
        let queued_symbols: HashSet<Symbol> = queued.iter().map(|job| job.symbol).collect();
        for record in queued {
            count(record.symbol, what, Ok(CoinSync::Queued(record)), acted)?;
        }
        for job in jobs
            .iter()
            .filter(|job| !queued_symbols.contains(&job.symbol))
        {
            count(job.symbol, what, Ok(CoinSync::Busy(None)), acted)?;
        }
        Ok(())
    }
}

/// Counts in `acted` what bringing `symbol`'s `what` (days, hours) up to date did; true when
/// it was behind (a job queued, or one active). An error only when the database or the queue failed (the tick fails
/// whole); a fault of the coin alone is logged.
fn count(
    symbol: Symbol,
    what: &str,
    synced: Result<CoinSync, SyncError>,
    acted: &mut TickRecord,
) -> anyhow::Result<bool> {
    match synced {
        Err(e) if e.is_unavailable() => Err(e.into()),
        Err(e) => {
            tracing::error!(%symbol, what, error = format!("{e:#}"), "could not bring a coin up to date");
            Ok(false)
        }
        Ok(CoinSync::UpToDate) => Ok(false),
        Ok(CoinSync::Queued(job)) => {
            acted.coins_behind += 1;
            acted.jobs_queued += 1;
            tracing::debug!(%symbol, what, job_id = %job.id, start = %job.range.start(), end = %job.range.end(), "coin behind: job queued");
            Ok(true)
        }
        // Not a tick's: a tick pays for its jobs from its own purse.
        Ok(CoinSync::Unaffordable(_)) => {
            acted.coins_behind += 1;
            acted.coins_unaffordable += 1;
            Ok(true)
        }
        Ok(CoinSync::Busy(active)) => {
            acted.coins_behind += 1;
            acted.coins_busy += 1;
            tracing::debug!(%symbol, what, active_job = ?active, "coin behind but a job of it is active; left to the next tick");
            Ok(true)
        }
    }
}

/// What a tick's look at the days came to, for its log line.
#[derive(Debug, Clone, Copy)]
struct Looked {
    /// Tracked coins not plainly complete by their figures.
    looked_at: usize,
    /// Of those, the coins with a hole, which needed the gap query.
    gap_queries: usize,
}

/// What trying to act on a tick came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    /// This process acted on the tick: what it did.
    Done(TickRecord),
    /// Another process had acted on it, or on a later one.
    Taken,
    /// The stop signal came first; the tick is left, unclaimed, to the next process.
    Stopped,
}

impl Acted {
    /// What this process did on the tick, when it acted on it.
    pub fn done(self) -> Option<TickRecord> {
        match self {
            Acted::Done(record) => Some(record),
            Acted::Taken | Acted::Stopped => None,
        }
    }
}

/// Sleeps for `wait`; true when `shutdown` was raised first.
async fn wait_or_stop(shutdown: &Shutdown, wait: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown.recv() => true,
    };
    stopped || shutdown.is_shutdown()
}

/// Freshness to alert on, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// Every coin with a complete day stored, and every tracked coin without one and
    /// without a job under way, by symbol.
    pub coins: Vec<CoinFreshness>,
    /// The last tick acted on, by any process.
    pub last_tick: Option<DateTime<Utc>>,
    /// The next tick of this process's `SYNC_SCHEDULE`; `None` when it is off.
    pub next_tick: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinFreshness {
    pub symbol: Symbol,
    pub tracked: bool,
    /// The latest stored day that is not provisional; `None` for a tracked coin with none.
    pub last_complete_day: Option<NaiveDate>,
    /// Days from it to yesterday (UTC); for a tracked coin with none, from the day before
    /// the first day it keeps, as if that were its last: every day it keeps is missing.
    pub stale_days: i64,
}

/// The figures of [`Freshness`], judged at `now` under `reach`.
pub async fn freshness(
    pool: &PgPool,
    schedule: &SyncSchedule,
    reach: PlanReach,
    now: DateTime<Utc>,
) -> sqlx::Result<Freshness> {
    let today = now.date_naive();
    let yesterday = today.pred_opt().unwrap_or(today);
    let coins = coin_figures::last_complete_days(pool, reach.first_served_day(today))
        .await?
        .into_iter()
        .filter_map(|(symbol, tracked, last_complete_day, before_kept)| {
            let behind_from = last_complete_day.or(before_kept)?;
            Some(CoinFreshness {
                symbol: Symbol::parse(&symbol).ok()?,
                tracked,
                last_complete_day,
                stale_days: (yesterday - behind_from).num_days().max(0),
            })
        })
        .collect();
    let last_tick = sync_schedule::last_tick(pool).await?;
    let next_tick = schedule.next_after(last_tick.map_or(now, |last| last.max(now)));
    Ok(Freshness {
        coins,
        last_tick,
        next_tick,
    })
}
