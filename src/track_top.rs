//! Tracking the N largest coins by market cap in one command (`coins track-top N`,
//! `POST /api/v1/coins/track-top`): CoinGecko's `/coins/markets` read a page of 250 at a
//! time (one call per page), then each coin of the list registered with the registry's
//! usual rules (one check call per new coin, through the shared budget) and tracked.
//!
//! Tickers collide (a bridged bitcoin is `btc` too): a coin whose symbol is registered
//! with another id, or whose ticker is no symbol here, is skipped with the reason, and the
//! import goes on. The record in `coin_imports` says how far it got, like a job.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::coingecko::MarketCoin;
use crate::domain::{CoinGeckoId, ImportStatus, ImportTrigger, Symbol};
use crate::registry::{
    CoinRequest, RegisterError, Registry, TrackSinceInFuture, check_track_since,
};
use crate::shutdown::Shutdown;
use crate::store::coin_imports::{self, ImportRecord, Skipped, Start};
use crate::store::{coins, hourly_coins};

pub use crate::store::coin_imports::Ask;

/// CoinGecko's largest page of `/coins/markets`.
pub const PAGE_SIZE: u32 = 250;

/// The most coins one import takes: forty pages.
pub const MAX_N: u32 = 10_000;

/// How long the coin being registered when the process is told to stop may still take
/// (its checks are calls, which a 429 can hold for a minute or more) before it is dropped
/// where it stands: every process exits within 30 s of SIGTERM. Dropped, the registration
/// either never committed or did, and a tracked coin's job is then queued by the schedule.
const REGISTRATION_GRACE: Duration = Duration::from_secs(5);

/// How often a running import says it is alive (`coin_imports.updated_at`), whatever it
/// is waiting on: a page behind the call budget, a check held by 429s. Well within
/// `coin_imports::ABANDONED_AFTER_SECS`, after which another import may take its place.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The record is written at most this often while coins are registered (and at the end):
/// it holds every coin's outcome, so writing it after each of 10,000 coins would rewrite
/// megabytes thousands of times. The progress shown follows every coin.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What the import has learned on its way down the list, for the coins after.
#[derive(Debug, Default)]
struct Along {
    /// Tickers of coins that could not be checked this time (CoinGecko down or refusing,
    /// the month spent), by the id that ranks higher: a lower-ranked coin with the same
    /// ticker must not take the symbol meanwhile, for good.
    held: HashMap<Symbol, CoinGeckoId>,
    /// Why no new coin can be checked any more: the month's credits ran out.
    out_of_credits: Option<String>,
}

/// What an import needs besides its record; built by `startup`.
#[derive(Debug, Clone)]
pub struct TrackTop {
    /// Registers and tracks each coin, with the rules of any other registration.
    pub registry: Registry,
    /// Who asks: the API or the command line.
    pub trigger: ImportTrigger,
}

/// Why an import did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    TrackSinceInFuture(#[from] TrackSinceInFuture),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The calls an import of `n` coins makes to list them: one per page of 250.
pub fn pages_for(n: u32) -> u32 {
    n.div_ceil(PAGE_SIZE)
}

impl TrackTop {
    /// Records a new import of the `n` largest coins (tracked from `track_since`, with
    /// hourly candles when `hourly`), unless one runs already or `track_since` breaks the
    /// registry's rule.
    pub async fn start(&self, ask: Ask) -> Result<Start, StartError> {
        check_track_since(ask.track_since)?;
        let pool = &self.registry.pool;
        Ok(coin_imports::start(pool, Uuid::now_v7(), ask, self.trigger).await?)
    }

    /// Runs the import `record` to its end (saving its progress after each step, and
    /// calling `progress` with it), or until `shutdown`: then it ends `failed`, saying so
    /// (the coin being registered when the signal came is finished first, unless that
    /// takes longer than [`REGISTRATION_GRACE`]); the coins registered so far stay
    /// registered and tracked.
    pub async fn run(
        &self,
        mut record: ImportRecord,
        shutdown: &Shutdown,
        mut progress: impl FnMut(&ImportRecord),
    ) -> sqlx::Result<ImportRecord> {
        let n = u32::try_from(record.n).unwrap_or(0);
        record.pages_total = pages_for(n) as i32;
        self.save(&record, &mut progress).await?;
        let _heartbeat = Heartbeat::start(self.registry.pool.clone(), record.id);
        let listed = match self.list(&mut record, n, shutdown).await {
            Ok(listed) => listed,
            Err(why) => return self.end(record, Err(why), &mut progress).await,
        };
        record.coins_total = listed.len() as i32;
        self.save(&record, &mut progress).await?;
        let mut saved = Instant::now();
        let mut along = Along::default();

        for coin in listed {
            if shutdown.is_shutdown() {
                let why = format!(
                    "interrupted after {} of {} coins: the coins registered so far are kept and tracked; run the import again for the rest",
                    record.coins_done, record.coins_total
                );
                return self.end(record, Err(why), &mut progress).await;
            }
            let ticker = coin.symbol.clone();
            let registering = self.one(&mut record, coin, &mut along);
            let stopped = async {
                shutdown.recv().await;
                tokio::time::sleep(REGISTRATION_GRACE).await;
            };
            let registered = tokio::select! {
                registered = registering => Some(registered),
                () = stopped => None,
            };
            let Some(registered) = registered else {
                let why = format!(
                    "interrupted after {} of {} coins, while registering {ticker:?} (CoinGecko or Coinbase was slow to answer): the coins registered so far are kept and tracked, that one perhaps too; run the import again for the rest",
                    record.coins_done, record.coins_total
                );
                return self.end(record, Err(why), &mut progress).await;
            };
            registered?;
            record.coins_done += 1;
            if saved.elapsed() >= SAVE_EVERY {
                self.save(&record, &mut progress).await?;
                saved = Instant::now();
            } else {
                progress(&record);
            }
        }
        let record = self.end(record, Ok(()), &mut progress).await?;
        tracing::info!(import = %record.id, registered = record.registered.len(), already = record.already.len(),
            skipped = record.skipped.len(), "top coins imported");
        Ok(record)
    }

    /// The `n` largest coins, a page at a time (counted in `record`); or, when a page
    /// cannot be read or the process is told to stop first, why the import ends with
    /// nothing registered.
    async fn list(
        &self,
        record: &mut ImportRecord,
        n: u32,
        shutdown: &Shutdown,
    ) -> Result<Vec<MarketCoin>, String> {
        let mut listed: Vec<MarketCoin> = Vec::new();
        for page in 1..=pages_for(n) {
            // Reading a page writes nothing: it may be left half done.
            let read = shutdown
                .unless_raised(self.registry.client.markets_page(page, PAGE_SIZE))
                .await;
            let coins = match read {
                Some(Ok(coins)) => coins,
                Some(Err(e)) => {
                    return Err(format!(
                        "could not read page {page} of CoinGecko's coins by market cap, so no coin was registered (the import registers once every page is read); run the import again: {e}"
                    ));
                }
                None => {
                    return Err(format!(
                        "interrupted while listing the coins (page {page} of {}): nothing was registered; run the import again",
                        pages_for(n)
                    ));
                }
            };
            let full = coins.len() == PAGE_SIZE as usize;
            listed.extend(coins);
            record.pages_done += 1;
            if !full {
                break;
            }
        }
        // Pages read seconds apart may overlap where a coin moved down a rank meanwhile:
        // each coin once, where it was first listed.
        let mut seen = HashSet::new();
        listed.retain(|coin| seen.insert(coin.id.clone()));
        listed.truncate(n as usize);
        Ok(listed)
    }

    /// Saves the record's progress (its heartbeat too) and shows it.
    async fn save(
        &self,
        record: &ImportRecord,
        progress: &mut impl FnMut(&ImportRecord),
    ) -> sqlx::Result<()> {
        coin_imports::save(&self.registry.pool, record).await?;
        progress(record);
        Ok(())
    }

    /// Ends the import: `completed`, or `failed` saying why.
    async fn end(
        &self,
        mut record: ImportRecord,
        outcome: Result<(), String>,
        progress: &mut impl FnMut(&ImportRecord),
    ) -> sqlx::Result<ImportRecord> {
        (record.status, record.error_message) = match outcome {
            Ok(()) => (ImportStatus::Completed, None),
            Err(why) => (ImportStatus::Failed, Some(why)),
        };
        self.save(&record, progress).await?;
        Ok(record)
    }

    /// Registers and tracks one coin of the list, or says why it is skipped. Only a
    /// database failure stops the import. A coin registered already under another symbol
    /// is tracked under that one; a ticker held by a higher-ranked coin that could not be
    /// checked is not given to this one; once the month's credits are spent, no new coin
    /// is checked (each would be refused), but coins registered already are still tracked.
    async fn one(
        &self,
        record: &mut ImportRecord,
        coin: MarketCoin,
        along: &mut Along,
    ) -> sqlx::Result<()> {
        let skipped = |reason: String| Skipped {
            symbol: coin.symbol.clone(),
            coingecko_id: coin.id.clone(),
            reason,
        };
        let (listed_as, id) = match ids_of(&coin) {
            Ok(ids) => ids,
            Err(reason) => {
                record.skipped.0.push(skipped(reason));
                return Ok(());
            }
        };
        let pool = &self.registry.pool;
        // Registered under its own ticker, or else under another symbol (its id is):
        // then tracked under that one. A ticker registered for another id is the
        // collision the registry refuses.
        let by_symbol = coins::get(pool, listed_as).await?;
        let registered = match by_symbol {
            Some(registered) if registered.coin.coingecko_id == id => Some(registered),
            _ => coins::by_coingecko_id(pool, &id).await?.or(by_symbol),
        };
        // The symbol the coin has here: its own when it is registered under another.
        let symbol = registered
            .as_ref()
            .filter(|r| r.coin.coingecko_id == id)
            .map_or(listed_as, |r| r.coin.symbol);
        if registered.is_none() {
            if let Some(holder) = along.held.get(&symbol) {
                record.skipped.0.push(skipped(format!(
                    "the symbol {symbol} is held for {holder}, which ranks higher and could not \
                     be checked this time; run the import again"
                )));
                return Ok(());
            }
            if let Some(why) = &along.out_of_credits {
                record
                    .skipped
                    .0
                    .push(skipped(format!("not checked: {why}")));
                return Ok(());
            }
        }
        // Tracked already with this id: its own track_since stays.
        let tracked_since = registered
            .as_ref()
            .filter(|c| c.coin.coingecko_id == id && c.coin.tracked)
            .map(|c| c.coin.track_since);
        // And hourly already, or not asked to be: nothing to change.
        if tracked_since.is_some()
            && (!record.hourly
                || hourly_coins::get(pool, symbol)
                    .await?
                    .is_some_and(|c| c.hourly))
        {
            record.already.push(symbol.to_string());
            return Ok(());
        }
        let request = CoinRequest {
            symbol,
            coingecko_id: id.clone(),
            tracked: true,
            track_since: tracked_since.unwrap_or(record.track_since),
            // As any new coin: `{SYMBOL}-USD` when Coinbase lists it (one call).
            coinbase_product: Default::default(),
            // Hours are only ever turned on here: a coin that keeps them keeps them.
            hourly: record.hourly.then_some(true),
        };
        match self.registry.put(request, self.trigger.job_trigger()).await {
            Ok(registered) if registered.created => record.registered.push(symbol.to_string()),
            Ok(_) => record.already.push(symbol.to_string()),
            Err(RegisterError::Database(e)) => return Err(e),
            Err(e) => {
                if let RegisterError::OutOfCredits { resets_on, .. } = &e {
                    along.out_of_credits = Some(format!(
                        "the month's CoinGecko credits (COINGECKO_CALLS_PER_MONTH) ran out \
                         earlier in this import; they reset on {resets_on}"
                    ));
                }
                if matches!(
                    e,
                    RegisterError::CoinGeckoUnavailable { .. }
                        | RegisterError::OutOfCredits { .. }
                        | RegisterError::CoinGeckoRefused { .. }
                ) {
                    along.held.entry(symbol).or_insert(id);
                }
                record.skipped.0.push(skipped(e.to_string()));
            }
        }
        Ok(())
    }
}

/// Keeps a running import's record alive (its `updated_at`) every [`HEARTBEAT`] until
/// dropped, so that a long wait is never taken for a dead process.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(pool: sqlx::PgPool, id: Uuid) -> Heartbeat {
        Heartbeat(tokio::spawn(async move {
            let mut beats = tokio::time::interval(HEARTBEAT);
            beats.tick().await;
            loop {
                beats.tick().await;
                if let Err(e) = coin_imports::beat(&pool, id).await {
                    tracing::warn!(error = %e, import = %id, "could not say the import is alive");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The coin's symbol and id here, or why CoinGecko's are none.
fn ids_of(coin: &MarketCoin) -> Result<(Symbol, CoinGeckoId), String> {
    let symbol = Symbol::parse(&coin.symbol)
        .map_err(|e| format!("CoinGecko's ticker is no symbol here: {e}"))?;
    let id = CoinGeckoId::parse(&coin.id).map_err(|e| e.to_string())?;
    Ok((symbol, id))
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
