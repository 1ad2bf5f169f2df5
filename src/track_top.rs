//! Tracking the N largest coins by market cap in one command (`coins track-top N`,
//! `POST /api/v1/coins/track-top`): CoinGecko's `/coins/markets` read a page of 250 at a
//! time (one call per page), then each coin of the list registered with the registry's
//! usual rules (one check call per new coin, through the shared budget) and tracked.
//!
//! Tickers collide (a bridged bitcoin is `btc` too): a coin whose symbol is registered
//! with another id, or whose ticker is no symbol here, is skipped with the reason, and the
//! import goes on. The record in `coin_imports` says how far it got, like a job.

use chrono::NaiveDate;
use uuid::Uuid;

use crate::coingecko::MarketCoin;
use crate::domain::{CoinGeckoId, Symbol, Trigger};
use crate::registry::{CoinRequest, RegisterError, Registered, Registry};
use crate::schedule;
use crate::shutdown::Shutdown;
use crate::store::coin_imports::{self, ImportRecord, Skipped, Start};
use crate::store::coins;

/// CoinGecko's largest page of `/coins/markets`.
pub const PAGE_SIZE: u32 = 250;

/// The most coins one import takes: forty pages.
pub const MAX_N: u32 = 10_000;

/// What an import needs besides its record.
#[derive(Debug, Clone)]
pub struct TrackTop {
    pub registry: Registry,
    /// `JOB_MAX_ATTEMPTS`, for the jobs that bring each newly tracked coin up to date.
    pub job_max_attempts: u32,
    /// Who asked: `Api` or `Cli`.
    pub trigger: Trigger,
}

/// The calls an import of `n` coins makes to list them: one per page of 250.
pub fn pages_for(n: u32) -> u32 {
    n.div_ceil(PAGE_SIZE)
}

impl TrackTop {
    /// Records a new import of the `n` largest coins, unless one runs already.
    pub async fn start(&self, n: u32, track_since: Option<NaiveDate>) -> sqlx::Result<Start> {
        let trigger = match self.trigger {
            Trigger::Cli => "cli",
            _ => "api",
        };
        coin_imports::start(&self.registry.pool, Uuid::now_v7(), n, track_since, trigger).await
    }

    /// Runs the import `record` to its end (saving its progress after each step, and
    /// calling `progress` with it), or until `shutdown`: then it ends `failed`, saying
    /// so; the coins registered so far stay registered and tracked.
    pub async fn run(
        &self,
        mut record: ImportRecord,
        shutdown: Option<&Shutdown>,
        mut progress: impl FnMut(&ImportRecord),
    ) -> sqlx::Result<ImportRecord> {
        let pool = &self.registry.pool;
        let n = u32::try_from(record.n).unwrap_or(0);
        record.pages_total = pages_for(n) as i32;
        coin_imports::save(pool, &record).await?;
        progress(&record);

        let mut listed: Vec<MarketCoin> = Vec::new();
        for page in 1..=pages_for(n) {
            match self.registry.client.markets_page(page, PAGE_SIZE).await {
                Ok(coins) => {
                    let full = coins.len() == PAGE_SIZE as usize;
                    listed.extend(coins);
                    record.pages_done += 1;
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    record.status = "failed".to_owned();
                    record.error_message = Some(format!(
                        "could not read page {page} of CoinGecko's coins by market cap, so nothing was registered from it: {e}"
                    ));
                    coin_imports::save(pool, &record).await?;
                    progress(&record);
                    return Ok(record);
                }
            }
        }
        listed.truncate(n as usize);
        record.coins_total = listed.len() as i32;
        coin_imports::save(pool, &record).await?;
        progress(&record);

        for coin in listed {
            if shutdown.is_some_and(Shutdown::is_shutdown) {
                record.status = "failed".to_owned();
                record.error_message = Some(format!(
                    "interrupted after {} of {} coins: the coins registered so far are kept and tracked; run the import again for the rest",
                    record.coins_done, record.coins_total
                ));
                coin_imports::save(pool, &record).await?;
                return Ok(record);
            }
            self.one(&mut record, coin).await?;
            record.coins_done += 1;
            coin_imports::save(pool, &record).await?;
            progress(&record);
        }
        record.status = "completed".to_owned();
        coin_imports::save(pool, &record).await?;
        progress(&record);
        tracing::info!(import = %record.id, registered = record.registered.len(), already = record.already.len(),
            skipped = record.skipped.len(), "top coins imported");
        Ok(record)
    }

    /// Registers and tracks one coin of the list, or says why it is skipped. Only a
    /// database failure stops the import.
    async fn one(&self, record: &mut ImportRecord, coin: MarketCoin) -> sqlx::Result<()> {
        let mut skip = |reason: String| {
            record.skipped.0.push(Skipped {
                symbol: coin.symbol.clone(),
                coingecko_id: coin.id.clone(),
                reason,
            });
        };
        let symbol = match Symbol::parse(&coin.symbol) {
            Ok(symbol) => symbol,
            Err(e) => {
                skip(format!("CoinGecko's ticker is no symbol here: {e}"));
                return Ok(());
            }
        };
        let id = match CoinGeckoId::parse(&coin.id) {
            Ok(id) => id,
            Err(e) => {
                skip(e.to_string());
                return Ok(());
            }
        };
        // Registered already with this id and tracked: nothing to change (its own
        // track_since stays).
        if let Some(existing) = coins::get(&self.registry.pool, symbol).await?
            && existing.coin.coingecko_id == id
            && existing.coin.tracked
        {
            record.already.push(symbol.to_string());
            return Ok(());
        }
        let request = CoinRequest {
            symbol,
            coingecko_id: id,
            tracked: true,
            track_since: record.track_since,
            // As any new coin: `{SYMBOL}-USD` when Coinbase lists it (one call).
            coinbase_product: Default::default(),
        };
        let (coin, started_tracking) = match self.registry.put(request).await {
            Ok(Registered::Created { coin, .. }) => {
                record.registered.push(symbol.to_string());
                (coin, true)
            }
            Ok(Registered::Changed {
                coin,
                started_tracking,
            }) => {
                record.already.push(symbol.to_string());
                (coin, started_tracking)
            }
            Err(RegisterError::Database(e)) => return Err(e),
            Err(e) => {
                skip(e.to_string());
                return Ok(());
            }
        };
        if started_tracking
            && let Err(e) = schedule::tracking_started(
                &self.registry.pool,
                &self.registry.reach,
                &coin.coin,
                self.trigger,
                self.job_max_attempts,
            )
            .await
        {
            tracing::warn!(%symbol, error = format!("{e:#}"), "tracked, but the missing days could not be queued; the next tick of SYNC_SCHEDULE tries again");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_call_per_page_of_250() {
        assert_eq!(pages_for(1), 1);
        assert_eq!(pages_for(250), 1);
        assert_eq!(pages_for(251), 2);
        assert_eq!(pages_for(300), 2);
        assert_eq!(pages_for(MAX_N), 40);
    }
}
