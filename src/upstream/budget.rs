//! "May I make this call?", per source: the call budget (`COINGECKO_CALLS_PER_MINUTE`,
//! `COINBASE_CALLS_PER_MINUTE`) for every process sharing the database, retries and coin
//! checks included, each attempt in a slot of its own, evenly spaced.
//!
//! An upstream counts every request against its limit, failed ones too, whichever
//! process sent it. So the [`Caller`](super::Caller) takes a slot before every attempt, and
//! the slot comes from one row per source and key in PostgreSQL (GCRA, see
//! `store::call_budget`), not from a limiter in this process: N worker replicas together
//! stay within one budget. This is the one place that decides whether a call may go: a
//! limit of another kind (a monthly quota) is one more check in [`CallLimiter::acquire`]
//! and one more variant of [`NoSlot`].
//!
//! governor, the in-process limiter of earlier releases, is gone: a process-local
//! limiter is blind to the other replicas, and in front of the shared one it would only
//! add a second wait for the same slot. [`CallBudget::ProcessLocal`] keeps the same GCRA
//! on the process's clock for tests and tools that have no database.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::domain::PriceSource;
use crate::store::{call_budget, is_unavailable};

/// The spacing is stretched by this fraction so that jitter in when requests reach
/// CoinGecko (a slower first request, a faster last one) cannot make it see N + 1 calls
/// in one minute: call N lands 0.3 s after the minute at any rate. It costs 0.5 % of a
/// long backfill's wall time.
const SPACING_MARGIN: f64 = 0.005;

/// How long a caller waits for the database to hand out a slot before it gives the
/// attempt up (without calling): as long as a job waits for its own queries, which is
/// for as long as the outage lasts. (An API request that checks a coin is bounded by the
/// request's own time limit.)
const DATABASE_PATIENCE: Duration = Duration::MAX;

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

/// How many of the latest slots a limiter remembers (see [`CallLimiter::recent_slots`]).
const RECENT_SLOTS: usize = 64;

/// Hands out slots of one source's budget: one per attempt, `interval` apart.
pub struct CallLimiter {
    source: Source,
    interval: Duration,
    calls_per_minute: u32,
    metrics: BudgetMetrics,
    /// When the latest slots began, as this limiter scheduled them (not when the calls
    /// arrived anywhere): what shows the spacing the budget kept.
    recent: std::sync::Mutex<VecDeque<Instant>>,
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
}

enum Source {
    Shared {
        pool: PgPool,
        /// Whose budget: each upstream has its own row.
        source: PriceSource,
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
                source: upstream,
                key_fingerprint: key_fingerprint(api_key),
            },
            CallBudget::ProcessLocal => Source::ProcessLocal(Mutex::new(None)),
        };
        Self {
            source,
            interval,
            calls_per_minute,
            metrics: BudgetMetrics::new(upstream, calls_per_minute),
            recent: Default::default(),
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

    /// When the latest slots (up to 64) began, oldest first, as this limiter scheduled
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

    /// Takes the next slot and waits for it. While the database is away it waits for it
    /// to come back; it never returns `Ok` without a slot.
    pub async fn acquire(&self) -> Result<(), NoSlot> {
        let began = Instant::now();
        let slot = self.take().await?;
        {
            let mut recent = self.recent();
            if recent.len() == RECENT_SLOTS {
                recent.pop_front();
            }
            recent.push_back(slot.into_std());
        }
        tokio::time::sleep_until(slot).await;
        self.metrics.granted.inc();
        self.metrics.wait.observe(began.elapsed().as_secs_f64());
        Ok(())
    }

    /// Takes the next slot: when it begins.
    async fn take(&self) -> Result<tokio::time::Instant, NoSlot> {
        let began = Instant::now();
        Ok(match &self.source {
            Source::Shared {
                pool,
                source,
                key_fingerprint,
            } => {
                let mut delay = Duration::from_millis(250);
                loop {
                    match call_budget::take_source_slot(
                        pool,
                        *source,
                        key_fingerprint,
                        self.interval,
                        self.calls_per_minute,
                    )
                    .await
                    {
                        Ok(wait) => break tokio::time::Instant::now() + wait,
                        Err(e) if is_unavailable(&e) && began.elapsed() < DATABASE_PATIENCE => {
                            tracing::warn!(error = %e, retry_in = ?delay, source = %source, "no slot of the call budget: the database is unavailable; waiting for it");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                        Err(cause) => {
                            return Err(NoSlot::Database {
                                upstream: source.display_name(),
                                cause,
                            });
                        }
                    }
                }
            }
            Source::ProcessLocal(tat) => {
                let mut tat = tat.lock().await;
                let now = tokio::time::Instant::now();
                let slot = tat.map_or(now, |tat| tat.max(now));
                *tat = Some(slot + self.interval);
                slot
            }
        })
    }
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
