//! "May I make this call?", per source: the call budget (`COINGECKO_CALLS_PER_MINUTE`,
//! `COINBASE_CALLS_PER_MINUTE`) for every process sharing the database, retries and coin
//! checks included, each attempt in a slot of its own, evenly spaced.
//!
//! An upstream counts every request against its limit, failed ones too, whichever
//! process sent it. So the [`Caller`](super::Caller) takes a slot before every attempt, and
//! the slot comes from one row per source and key in PostgreSQL (GCRA, see
//! `store::call_budget`), not from a limiter in this process: N worker replicas together
//! stay within one budget. This is the one place that decides whether a call may go: the
//! monthly credits (`COINGECKO_CALLS_PER_MONTH`, [`MonthlyCredits`]) are one more check in
//! [`CallLimiter::acquire`], taken before the minute's slot, and one more variant of
//! [`NoSlot`]. A credit is one statement on one row per UTC month, source and key
//! (`store::monthly_credits`), which never hands out more than the limit, however many
//! processes race for the last credit.
//!
//! governor, the in-process limiter of earlier releases, is gone: a process-local
//! limiter is blind to the other replicas, and in front of the shared one it would only
//! add a second wait for the same slot. [`CallBudget::ProcessLocal`] keeps the same GCRA
//! on the process's clock for tests and tools that have no database.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::domain::{Clock, CreditMonth, PriceSource};
use crate::shutdown::Shutdown;
use crate::store::{call_budget, monthly_credits, patiently};

/// The spacing is stretched by this fraction so that jitter in when requests reach
/// CoinGecko (a slower first request, a faster last one) cannot make it see N + 1 calls
/// in one minute: call N lands 0.3 s after the minute at any rate. It costs 0.5 % of a
/// long backfill's wall time.
const SPACING_MARGIN: f64 = 0.005;

/// How long after its slot a call may still go once the month's credit is taken. Later,
/// it could land closer to the next slot than the spacing allows (by more than the
/// [`SPACING_MARGIN`] of a minute), and the caller takes a slot again. A database slower
/// than this at every credit makes every call take two slots: slower, never over the
/// budget.
const LATE_CREDIT: Duration = Duration::from_millis(250);

/// The monthly credits of a source's key, counted per UTC calendar month over every
/// process on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyCredits {
    /// `COINGECKO_CALLS_PER_MONTH`; `None`: the calls are counted, never refused.
    pub limit: Option<NonZeroU32>,
    /// Whose month: the system's clock (shifted only in tests).
    pub clock: Clock,
}

/// A month's credits as they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthFigures {
    pub month: CreditMonth,
    /// Calls counted this month, over every process.
    pub used: i64,
    /// The limit; `None` when there is none.
    pub limit: Option<u32>,
    /// The source refused a call of the month for spent credits: nothing is left, whatever
    /// the count and the limit say.
    pub refused: bool,
}

impl MonthFigures {
    /// Credits left this month; `None` without a limit, none once the source refused.
    pub fn left(&self) -> Option<i64> {
        if self.refused {
            return Some(0);
        }
        self.limit
            .map(|limit| (i64::from(limit) - self.used).max(0))
    }
}

/// Where the slots come from.
#[derive(Clone)]
pub enum CallBudget {
    /// One budget for every process sharing this database: what the service runs with.
    Shared(PgPool),
    /// This process alone, on its own clock: for tests and tools without a database.
    ProcessLocal,
}

/// This process's figures of the budget, for `/metrics`. Clones share the counters.
#[derive(Clone)]
pub struct BudgetMetrics {
    /// `price_history_coingecko_slots_granted_total`.
    pub granted: IntCounter,
    /// `price_history_coingecko_slot_wait_seconds`: from asking for a slot to holding it.
    pub wait: Histogram,
    /// `price_history_coingecko_budget_calls_per_minute`: the configured budget.
    pub calls_per_minute: IntGauge,
}

impl BudgetMetrics {
    /// The figures of `source`'s budget, named after it (`price_history_coingecko_...`,
    /// `price_history_coinbase_...`).
    fn new(source: PriceSource, calls_per_minute: u32) -> Self {
        let prefix = source.as_str();
        let name = source.display_name();
        let granted = IntCounter::new(
            format!("price_history_{prefix}_slots_granted_total"),
            format!("Slots of the shared {name} call budget this process took, one per attempt."),
        )
        .expect("a valid metric name");
        let wait = Histogram::with_opts(
            HistogramOpts::new(
                format!("price_history_{prefix}_slot_wait_seconds"),
                "Time from asking for a slot of the call budget to holding it, database round trip included.",
            )
            .buckets(vec![
                0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )
        .expect("valid histogram options");
        let gauge = IntGauge::new(
            format!("price_history_{prefix}_budget_calls_per_minute"),
            format!(
                "{}_CALLS_PER_MINUTE of this process: the budget every process sharing the database draws from.",
                prefix.to_ascii_uppercase()
            ),
        )
        .expect("a valid metric name");
        gauge.set(i64::from(calls_per_minute));
        Self {
            granted,
            wait,
            calls_per_minute: gauge,
        }
    }
}

/// How many of the latest slots a limiter remembers (see [`CallLimiter::recent_slots`]):
/// a minute's worth at the highest budget a source is usually given.
const RECENT_SLOTS: usize = 256;

/// Hands out slots of one source's budget: one per attempt, `interval` apart.
pub struct CallLimiter {
    /// Whose budget.
    upstream: PriceSource,
    source: Source,
    interval: Duration,
    calls_per_minute: u32,
    metrics: BudgetMetrics,
    /// When the latest slots began, as this limiter scheduled them (not when the calls
    /// arrived anywhere): what shows the spacing the budget kept.
    recent: std::sync::Mutex<VecDeque<Instant>>,
    /// The monthly credits, for a source that has them (set once, at start).
    monthly: OnceLock<MonthlyCredits>,
    /// The process's stop signal, once a worker runs: no slot is given after it is raised,
    /// so that no call starts in the grace an attempt gives the call it has in flight.
    stop: OnceLock<Shutdown>,
}

/// Why the budget gave no slot: no request was sent.
#[derive(Debug, thiserror::Error)]
pub enum NoSlot {
    /// The database failed the budget's query in a way that is no outage (an outage is
    /// waited out): a broken table, a refused statement.
    #[error(
        "could not take a slot of the {upstream} call budget from the database, so no call was made: {cause}"
    )]
    Database {
        /// The source's name, as messages say it.
        upstream: &'static str,
        cause: sqlx::Error,
    },
    /// The month's credits are spent, over every process: `used` of `limit` in `month`.
    #[error(
        "the {upstream} calls of {} (UTC) are spent: {used} of {limit} (COINGECKO_CALLS_PER_MONTH) used, \
         so no call was made; the credits reset on {} (UTC)",
        month.label(),
        month.resets_on()
    )]
    MonthSpent {
        /// The source's name, as messages say it.
        upstream: &'static str,
        month: CreditMonth,
        used: i64,
        limit: u32,
    },
    /// The source itself refused a call of `month` for spent credits (a process noted it):
    /// none is made with the key until the month turns.
    #[error(
        "{upstream} said this key's credits of {} (UTC) are spent, so no call was made; \
         they reset on {} (UTC)",
        month.label(),
        month.resets_on()
    )]
    RefusedBySource {
        /// The source's name, as messages say it.
        upstream: &'static str,
        month: CreditMonth,
    },
    /// The process is stopping: no call starts any more.
    #[error("the process is stopping, so no call was made to {upstream}")]
    Stopping {
        /// The source's name, as messages say it.
        upstream: &'static str,
    },
}

impl NoSlot {
    /// With [`NoSlot::MonthSpent`] or [`NoSlot::RefusedBySource`]: the day the credits reset.
    pub fn resets_on(&self) -> Option<NaiveDate> {
        match self {
            Self::MonthSpent { month, .. } | Self::RefusedBySource { month, .. } => {
                Some(month.resets_on())
            }
            Self::Database { .. } | Self::Stopping { .. } => None,
        }
    }
}

enum Source {
    /// Each upstream (the limiter's) has its own row per key.
    Shared {
        pool: PgPool,
        key_fingerprint: String,
    },
    /// The theoretical arrival time of the next call.
    ProcessLocal(Mutex<Option<tokio::time::Instant>>),
}

impl CallLimiter {
    /// A limiter of `calls_per_minute` for `source`'s budget and the key `api_key`, for a
    /// source that has keys (only a fingerprint of it is kept: each key has its own
    /// budget). Every source is limited on its own, by the same rule.
    pub fn new(
        upstream: PriceSource,
        budget: CallBudget,
        calls_per_minute: u32,
        api_key: Option<&str>,
    ) -> Self {
        let calls_per_minute = calls_per_minute.max(1);
        let interval =
            Duration::from_secs_f64(60.0 / f64::from(calls_per_minute) * (1.0 + SPACING_MARGIN));
        let source = match budget {
            CallBudget::Shared(pool) => Source::Shared {
                pool,
                key_fingerprint: key_fingerprint(api_key),
            },
            CallBudget::ProcessLocal => Source::ProcessLocal(Mutex::new(None)),
        };
        Self {
            upstream,
            source,
            interval,
            calls_per_minute,
            metrics: BudgetMetrics::new(upstream, calls_per_minute),
            recent: Default::default(),
            monthly: OnceLock::new(),
            stop: OnceLock::new(),
        }
    }

    /// Counts this source's calls against `credits` from now on (once; a second call is
    /// ignored). Only a limiter on the shared budget counts: one of its own has no month.
    pub fn count_month(&self, credits: MonthlyCredits) {
        let _ = self.monthly.set(credits);
    }

    /// Gives no slot once `stop` is raised (once; a second call is ignored).
    pub fn stop_with(&self, stop: Shutdown) {
        let _ = self.stop.set(stop);
    }

    /// Refuses a slot once the process stops: the slot waited for passes unused.
    fn unless_stopped(&self) -> Result<(), NoSlot> {
        match self.stop.get() {
            Some(stop) if stop.is_shutdown() => Err(NoSlot::Stopping {
                upstream: self.upstream.display_name(),
            }),
            _ => Ok(()),
        }
    }

    /// The monthly credits counted, if any.
    pub fn monthly(&self) -> Option<MonthlyCredits> {
        self.monthly.get().copied()
    }

    /// This month's credits, over every process: one row read. `None` when this source has
    /// no monthly credits or no database.
    pub async fn month_figures(&self) -> Option<sqlx::Result<MonthFigures>> {
        let credits = self.monthly()?;
        let (pool, source, key_fingerprint) = self.shared()?;
        let month = CreditMonth::of(credits.clock.now());
        let of_month = monthly_credits::of_month(pool, source, key_fingerprint, month).await;
        Some(of_month.map(|of_month| MonthFigures {
            month,
            used: of_month.used,
            limit: credits.limit.map(NonZeroU32::get),
            refused: of_month.refused,
        }))
    }

    /// Holds back every caller's next slot of this budget (every process's, when it is
    /// shared) until `pause` from now: the source answered 429 and said, or is known, to
    /// want that long; the other callers' calls meanwhile would be refused too. A hold that
    /// cannot be written is said in the log: the callers then find out one 429 each.
    pub(crate) async fn hold_back(&self, pause: Duration) {
        if pause.is_zero() {
            return;
        }
        match &self.source {
            Source::Shared {
                pool,
                key_fingerprint,
            } => {
                let source = self.upstream;
                match call_budget::hold_back(pool, source, key_fingerprint, pause).await {
                    Ok(true) => {}
                    // A 429 comes after a slot, whose row it is.
                    Ok(false) => tracing::debug!(
                        upstream = source.display_name(),
                        "no call budget to hold back"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, upstream = source.display_name(), "could not hold back the shared call budget after a 429")
                    }
                }
            }
            Source::ProcessLocal(tat) => {
                let mut tat = tat.lock().await;
                let until = tokio::time::Instant::now() + pause;
                *tat = Some(tat.map_or(until, |tat| tat.max(until)));
            }
        }
    }

    /// Notes, for every process, that the source refused a call for spent credits: no
    /// call is made with this key again until the month turns. Only a limiter that counts
    /// its month keeps the note; one that cannot write it says so in the log.
    pub(crate) async fn refused_for_spent_credits(&self) {
        let (Some(credits), Some((pool, source, key_fingerprint))) =
            (self.monthly.get(), self.shared())
        else {
            return;
        };
        let now = credits.clock.now();
        let month = CreditMonth::of(now);
        // In a month's first hour the refusal may be the month before's, answered after
        // midnight, or the source's own reset running late: it would shut the whole new
        // month. Those calls are refused one by one instead.
        let into_the_month = now - month.starts_at();
        if into_the_month < chrono::TimeDelta::hours(1) {
            tracing::warn!(
                upstream = source.display_name(),
                "the source says the credits are spent in the month's first hour: not kept for the month"
            );
            return;
        }
        if let Err(e) = monthly_credits::refused(pool, source, key_fingerprint, month).await {
            tracing::warn!(error = %e, upstream = source.display_name(), "could not note that the month's credits are spent: the next call may be refused too");
        }
    }

    /// This limiter's figures.
    pub fn metrics(&self) -> &BudgetMetrics {
        &self.metrics
    }

    /// The spacing between two slots.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The budget per minute.
    pub fn calls_per_minute(&self) -> u32 {
        self.calls_per_minute
    }

    /// Slots this process began in the last 60 seconds (of the latest it remembers).
    pub fn calls_in_the_last_minute(&self) -> u32 {
        let now = Instant::now();
        let minute_ago = now.checked_sub(Duration::from_secs(60));
        let recent = self.recent();
        let within = recent
            .iter()
            .filter(|slot| **slot <= now && minute_ago.is_none_or(|ago| **slot > ago))
            .count();
        u32::try_from(within).unwrap_or(u32::MAX)
    }

    /// Slots every process on the database began in the last 60 seconds, one row read;
    /// this process's own without a shared budget.
    pub async fn shared_calls_in_the_last_minute(&self) -> sqlx::Result<u32> {
        let Some((pool, source, key_fingerprint)) = self.shared() else {
            return Ok(self.calls_in_the_last_minute());
        };
        let calls = call_budget::calls_in_the_last_minute(pool, source, key_fingerprint).await?;
        Ok(u32::try_from(calls).unwrap_or(u32::MAX))
    }

    /// The database of a budget shared by every process; `None` for one of this
    /// process's own.
    pub(crate) fn pool(&self) -> Option<&PgPool> {
        self.shared().map(|(pool, _, _)| pool)
    }

    /// The database, source and key of a budget shared by every process; `None` for one
    /// of this process's own.
    fn shared(&self) -> Option<(&PgPool, PriceSource, &str)> {
        match &self.source {
            Source::Shared {
                pool,
                key_fingerprint,
            } => Some((pool, self.upstream, key_fingerprint)),
            Source::ProcessLocal(_) => None,
        }
    }

    /// When the latest slots (up to 256) began, oldest first, as this limiter scheduled
    /// them: the spacing the budget kept, whatever the network did to the calls after.
    pub fn recent_slots(&self) -> Vec<Instant> {
        let mut slots: Vec<Instant> = self.recent().iter().copied().collect();
        slots.sort_unstable();
        slots
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next slot, waits for it, then takes a credit of the month: a caller that
    /// goes away while it waits (a stop, a cancelled job) spends no credit, and a call
    /// made after midnight on the last day counts in the new month. While the database is
    /// away it waits for it to come back; it never returns `Ok` without a slot.
    ///
    /// A credit that comes more than [`LATE_CREDIT`] after the slot (the database went
    /// away, or was slow) leaves the slot unused and takes the next free
    /// one, once: the processes that held slots through an outage would otherwise all call
    /// the moment it ends, beside the slots handed out since. The credit is taken by then:
    /// a caller that goes away during that second wait has spent it without a call.
    pub async fn acquire(&self) -> Result<(), NoSlot> {
        let began = Instant::now();
        self.unless_stopped()?;
        // A month spent already is said at once, without taking a slot from every
        // process's minute for a call that cannot be made.
        self.month_left().await?;
        let slot = self.take(None).await?;
        tokio::time::sleep_until(slot.at).await;
        self.unless_stopped()?;
        self.take_credit().await?;
        if slot.at.elapsed() > LATE_CREDIT {
            let again = self.take(Some(&slot)).await?;
            tokio::time::sleep_until(again.at).await;
            self.unless_stopped()?;
        }
        self.metrics.granted.inc();
        self.metrics.wait.observe(began.elapsed().as_secs_f64());
        Ok(())
    }

    /// Refuses when this month's credits are spent already, by the count or by the
    /// source's word (one row read); a credit is still taken after the wait, where two
    /// processes may race for the last one.
    async fn month_left(&self) -> Result<(), NoSlot> {
        let (Some(credits), Some((pool, source, key_fingerprint))) =
            (self.monthly.get(), self.shared())
        else {
            return Ok(());
        };
        let (month, upstream) = (CreditMonth::of(credits.clock.now()), source.display_name());
        let of_month = patiently("the monthly budget", || {
            monthly_credits::of_month(pool, source, key_fingerprint, month)
        })
        .await
        .map_err(|cause| NoSlot::Database { upstream, cause })?;
        if of_month.refused {
            return Err(NoSlot::RefusedBySource { upstream, month });
        }
        match credits.limit.map(NonZeroU32::get) {
            Some(limit) if of_month.used >= i64::from(limit) => Err(NoSlot::MonthSpent {
                upstream,
                month,
                used: of_month.used,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Takes a credit of this month, when the source counts its month: the month of the
    /// clock now, so a call after midnight on the last day counts in the new month. Waits
    /// out the database as [`take`](Self::take) does.
    async fn take_credit(&self) -> Result<(), NoSlot> {
        let (Some(credits), Some((pool, source, key_fingerprint))) =
            (self.monthly.get(), self.shared())
        else {
            return Ok(());
        };
        let month = CreditMonth::of(credits.clock.now());
        let limit = credits.limit.map(NonZeroU32::get);
        let taken = patiently("a credit of the monthly budget", || {
            monthly_credits::take(pool, source, key_fingerprint, month, limit)
        })
        .await
        .map_err(|cause| NoSlot::Database {
            upstream: source.display_name(),
            cause,
        })?;
        let (Some(limit), None) = (limit, taken) else {
            return match taken {
                Some(_) => Ok(()),
                // Without a limit, only the source's refusal keeps a credit from being taken.
                None => Err(NoSlot::RefusedBySource {
                    upstream: source.display_name(),
                    month,
                }),
            };
        };
        // The count is spent, or the source refused meanwhile (noted by another process
        // while this one waited for its slot): said as what it is.
        let of_month = monthly_credits::of_month(pool, source, key_fingerprint, month).await;
        if of_month.is_ok_and(|of_month| of_month.refused) {
            return Err(NoSlot::RefusedBySource {
                upstream: source.display_name(),
                month,
            });
        }
        Err(NoSlot::MonthSpent {
            upstream: source.display_name(),
            month,
            used: i64::from(limit),
            limit,
        })
    }

    /// Takes the next slot, or with `instead_of` one in place of a slot let pass unused,
    /// and remembers it. While the database is away it waits for it, for as long as the
    /// outage lasts (`store::patiently`, as a job waits for its own queries); an API
    /// request that checks a coin is bounded by its own time limit.
    async fn take(&self, instead_of: Option<&Taken>) -> Result<Taken, NoSlot> {
        let taken = match &self.source {
            Source::Shared {
                pool,
                key_fingerprint,
            } => {
                let source = self.upstream;
                let budget = call_budget::Budget {
                    source,
                    key_fingerprint,
                    interval: self.interval,
                    calls_per_minute: self.calls_per_minute,
                };
                let unused = instead_of.and_then(|taken| taken.shared);
                let slot = patiently("a slot of the call budget", || budget.slot(pool, unused))
                    .await
                    .map_err(|cause| NoSlot::Database {
                        upstream: source.display_name(),
                        cause,
                    })?;
                Taken {
                    at: tokio::time::Instant::now() + slot.wait,
                    shared: Some(slot),
                }
            }
            Source::ProcessLocal(tat) => {
                let mut tat = tat.lock().await;
                let now = tokio::time::Instant::now();
                let slot = tat.map_or(now, |tat| tat.max(now));
                *tat = Some(slot + self.interval);
                Taken {
                    at: slot,
                    shared: None,
                }
            }
        };
        let mut recent = self.recent();
        if let Some(unused) = instead_of {
            recent.retain(|slot| *slot != unused.at.into_std());
        }
        if recent.len() == RECENT_SLOTS {
            recent.pop_front();
        }
        recent.push_back(taken.at.into_std());
        Ok(taken)
    }
}

/// A slot this process holds.
struct Taken {
    /// When it begins, on this process's clock.
    at: tokio::time::Instant,
    /// The slot as the shared budget handed it out.
    shared: Option<call_budget::Slot>,
}

/// A SHA-256 prefix of the key, `none` without one: each key has a budget of its own,
/// and the key itself is never stored.
fn key_fingerprint(api_key: Option<&str>) -> String {
    match api_key.map(str::trim) {
        Some(key) if !key.is_empty() => {
            let digest = Sha256::new()
                .chain_update(b"price-history call budget\0")
                .chain_update(key.as_bytes())
                .finalize();
            hex::encode(&digest[..8])
        }
        _ => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_never_shows_the_key_and_tells_keys_apart() {
        let a = key_fingerprint(Some("CG-secret-a"));
        let b = key_fingerprint(Some(" CG-secret-b "));
        assert_ne!(a, b);
        assert!(!a.contains("secret"));
        assert_eq!(a.len(), 16);
        assert_eq!(key_fingerprint(None), "none");
        assert_eq!(key_fingerprint(Some("  ")), "none");
    }

    #[tokio::test]
    async fn process_local_slots_are_spaced_without_a_burst() {
        let limiter =
            CallLimiter::new(PriceSource::CoinGecko, CallBudget::ProcessLocal, 6000, None);
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire().await.unwrap();
        }
        // Slots 0..4: the first at once, each next one an interval later.
        let spent = started.elapsed();
        assert!(spent >= limiter.interval() * 4, "{spent:?}");
        assert_eq!(limiter.metrics().granted.get(), 5);
        let slots = limiter.recent_slots();
        assert_eq!(slots.len(), 5);
        for pair in slots.windows(2) {
            assert!(pair[1] - pair[0] >= limiter.interval(), "{pair:?}");
        }
    }
}
