//! The plan's reach as the service knows it: configured (`COINGECKO_HISTORY_DAYS`, or
//! the public root's 365 days), or learned from CoinGecko's 10012 answer and kept in the
//! database for this API root and key, so that every process and every later job knows
//! it without spending a call.

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::coingecko::CoinGeckoSettings;
use crate::domain::PlanReach;
use crate::store::plan_reach;

/// Where a process looks up the reach of its CoinGecko plan.
#[derive(Debug, Clone)]
pub struct Reach {
    /// What the settings say.
    configured: PlanReach,
    /// The API root, as configured.
    base_url: String,
    /// A SHA-256 prefix of the key (`none` without one): a new key forgets what was
    /// learned of the old one. Never the key itself.
    key_fingerprint: String,
}

impl Reach {
    pub fn new(configured: PlanReach, coingecko: &CoinGeckoSettings) -> Self {
        use secrecy::ExposeSecret;
        let key_fingerprint = match &coingecko.api_key {
            Some(key) if !key.expose_secret().trim().is_empty() => {
                let digest = Sha256::new()
                    .chain_update(b"price-history plan reach\0")
                    .chain_update(key.expose_secret().trim().as_bytes())
                    .finalize();
                hex::encode(&digest[..8])
            }
            _ => "none".to_owned(),
        };
        Reach {
            configured,
            base_url: coingecko.base_url.trim().trim_end_matches('/').to_owned(),
            key_fingerprint,
        }
    }

    /// The reach in force: the narrower of the configured and the learned one.
    pub async fn current(&self, pool: &PgPool) -> sqlx::Result<PlanReach> {
        let learned = plan_reach::learned(pool, &self.base_url, &self.key_fingerprint).await?;
        Ok(narrower(self.configured, learned.unwrap_or_default()))
    }

    /// Remembers that CoinGecko serves this plan only `days` back (its 10012 answer), and
    /// returns the reach in force from now on. The one place a reach is learned: the job
    /// and the registry's check both come here.
    pub async fn learn(&self, pool: &PgPool, days: u32) -> sqlx::Result<PlanReach> {
        tracing::warn!(
            days,
            "CoinGecko answered 10012: this plan serves only the past {days} days; \
             older days are out of plan from now on"
        );
        plan_reach::learn(pool, &self.base_url, &self.key_fingerprint, days).await?;
        self.current(pool).await
    }
}

fn narrower(a: PlanReach, b: PlanReach) -> PlanReach {
    match (a.limit_days(), b.limit_days()) {
        (Some(a), Some(b)) => PlanReach::days(a.min(b)),
        (Some(days), None) | (None, Some(days)) => PlanReach::days(days),
        (None, None) => PlanReach::UNLIMITED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrower_reach_wins() {
        assert_eq!(
            narrower(PlanReach::days(365), PlanReach::days(30)),
            PlanReach::days(30)
        );
        assert_eq!(
            narrower(PlanReach::UNLIMITED, PlanReach::days(365)),
            PlanReach::days(365)
        );
        assert_eq!(
            narrower(PlanReach::UNLIMITED, PlanReach::UNLIMITED),
            PlanReach::UNLIMITED
        );
    }
}
