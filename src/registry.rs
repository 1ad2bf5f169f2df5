//! The coin registry's rules, shared by `PUT /api/v1/coins/{symbol}` and
//! `price-history coins add`: a symbol names one CoinGecko id for good, a new id is
//! checked with exactly one `market_chart/range` call (which also finds the coin's first
//! day), and nothing is stored for a coin that was not checked.
//!
//! The second source's product is part of the registration: an explicit product is
//! checked with one Coinbase call (`400` when Coinbase does not list it), a new coin
//! without one gets `{SYMBOL}-USD` when Coinbase lists it. A guess that cannot be made
//! (Coinbase unreachable) registers the coin without a product rather than refusing a
//! coin CoinGecko has just vouched for; the notes of [`Registered`] say so. With
//! `FALLBACK_SOURCE=off` there is no client: an explicit product is stored unchecked
//! (it is checked against CoinGecko's closes before its first use anyway, and a product
//! Coinbase does not list makes the job say so), and nothing is guessed.
//!
//! Each rule is written here once, for the API, the CLI and the import of the top coins:
//! `track_since` is never in the future ([`check_track_since`]), and turning tracking on
//! (a new tracked coin included) queues the coin's missing days at once, not at the next
//! tick ([`Registry::put`], through `tracking`). Hours likewise: a coin keeps hourly candles
//! only when asked (`hourly`, off for a new coin, kept when unsaid), turning them on queues
//! the coin's missing hours at once (through `hours`), and turning them off keeps every
//! stored hour (the job fetches no hour of a coin whose `hourly` is false).

mod hours;
mod tracking;

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::coinbase::{CoinbaseClient, CoinbaseError};
use crate::coingecko::{CoinGeckoClient, CoinGeckoError, FirstDay};
use crate::config::FallbackSource;
use crate::credits::Credits;
use crate::domain::{Coin, CoinGeckoId, PlanReach, ProductId, Symbol, Trigger, today_utc};
use crate::ingest::Reach;
use crate::ingest::fallback::guess_product;
use crate::store::coins::{self, CoinRecord};
use crate::store::hourly_coins::{self, HourlyCoin};
use crate::store::second_source;

pub use hours::{days_of_hours_to_keep, expected_hours, hours_to_keep, lagging_from};
pub use tracking::{
    CoinSync, SyncError, bring_up_to_date, days_to_keep, job_range, missing_days_known,
    schedule_job, tick_job,
};

/// What a caller asks the registry for.
#[derive(Debug, Clone)]
pub struct CoinRequest {
    pub symbol: Symbol,
    pub coingecko_id: CoinGeckoId,
    pub tracked: bool,
    pub track_since: Option<NaiveDate>,
    /// The coin's product on the second source.
    pub coinbase_product: ProductChoice,
    /// Whether the coin keeps hourly candles; `None` keeps a registered coin's setting
    /// (and a new coin keeps none).
    pub hourly: Option<bool>,
}

/// What a caller says about a coin's Coinbase product.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProductChoice {
    /// Nothing: a new coin gets `{SYMBOL}-USD` when Coinbase lists it; a registered coin
    /// keeps its product.
    #[default]
    Unsaid,
    /// No second source for the coin.
    Clear,
    /// This product, once Coinbase says it lists it.
    Set(ProductId),
}

/// What the registry did.
#[derive(Debug)]
pub struct Registered {
    /// The coin as it is now.
    pub coin: CoinRecord,
    /// Its hourly side as it is now: whether it keeps hours, and its hours' figures.
    pub hours: HourlyCoin,
    /// A new coin, checked with CoinGecko; else one registered already with that id,
    /// whose tracking (and product and hours, when given) is now as asked.
    pub created: bool,
    /// What a person should know that the coin does not show (the product of a new coin
    /// could not be guessed, say).
    pub notes: Vec<String>,
    /// When tracking or hours were turned on (a new coin included): the job queued for its
    /// missing days (and hours, for an hourly coin), or why none could be (already logged;
    /// the next tick of `SYNC_SCHEDULE` tries again). The coin is registered either way.
    pub synced: Option<Result<CoinSync, SyncError>>,
}

/// What a registration turned on, each of which brings the coin up to date at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TurnedOn {
    tracking: bool,
    hours: bool,
}

/// The rule on `track_since`: a day on or before today (UTC), or none.
pub fn check_track_since(track_since: Option<NaiveDate>) -> Result<(), TrackSinceInFuture> {
    let today = today_utc();
    match track_since {
        Some(since) if since > today => Err(TrackSinceInFuture { since, today }),
        _ => Ok(()),
    }
}

/// A `track_since` after today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "track_since {since} is in the future (today is {today} UTC): pick a day on or before today, or leave it out"
)]
pub struct TrackSinceInFuture {
    pub since: NaiveDate,
    pub today: NaiveDate,
}

/// Why a coin was not registered; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    TrackSinceInFuture(#[from] TrackSinceInFuture),
    #[error(
        "{symbol} is registered with coingecko_id {registered}, not {asked}: a symbol keeps its id; \
         use another symbol for {asked}"
    )]
    SymbolTaken {
        symbol: Symbol,
        registered: CoinGeckoId,
        asked: CoinGeckoId,
    },
    #[error(
        "coingecko_id {id} is already registered as {symbol}: use that symbol (GET /api/v1/coins/{symbol})"
    )]
    IdTaken { id: CoinGeckoId, symbol: Symbol },
    #[error(
        "CoinGecko does not know the coin id {0}, or has no prices for it: find the coin's \"API ID\" on its \
         CoinGecko page (for example bitcoin, ethereum) and try again"
    )]
    UnknownCoinGeckoId(CoinGeckoId),
    /// CoinGecko could not answer the check now; nothing was stored.
    #[error(
        "could not check {id} with CoinGecko, so nothing was registered: {cause} Try again in a minute."
    )]
    CoinGeckoUnavailable { id: CoinGeckoId, cause: String },
    /// The month's CoinGecko credits are spent, so the check could not be made; nothing
    /// was stored.
    #[error("could not check {id} with CoinGecko, so nothing was registered: {cause}")]
    OutOfCredits {
        id: CoinGeckoId,
        cause: String,
        resets_on: NaiveDate,
    },
    /// CoinGecko refused the check for a reason that is not the id; nothing was stored.
    #[error("CoinGecko refused the check of {id}, so nothing was registered: {cause}")]
    CoinGeckoRefused { id: CoinGeckoId, cause: String },
    #[error(
        "Coinbase Exchange does not list the product {0}: give one it lists (such as BTC-USD; \
         see https://api.exchange.coinbase.com/products), or null for no second source"
    )]
    UnknownCoinbaseProduct(ProductId),
    /// Coinbase could not answer the check of an explicit product; nothing was stored.
    #[error(
        "could not check the product {product} with Coinbase Exchange, so nothing was changed: {cause} \
         Try again in a minute, or leave coinbase_product out."
    )]
    CoinbaseUnavailable { product: ProductId, cause: String },
    /// Coinbase refused the check for a reason that is not the product; nothing was stored.
    #[error("Coinbase Exchange refused the check of {product}, so nothing was changed: {cause}")]
    CoinbaseRefused { product: ProductId, cause: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The registry: the database, and the clients that check new ids and products (they
/// share the process's call budgets).
#[derive(Debug, Clone)]
pub struct Registry {
    pub pool: PgPool,
    pub client: CoinGeckoClient,
    pub reach: Reach,
    /// The second source's client; `None` with `FALLBACK_SOURCE=off`.
    pub coinbase: Option<CoinbaseClient>,
    /// The month's CoinGecko credits: that job is queued only when they pay for it.
    pub credits: Credits,
}

impl Registry {
    /// Registers a coin (checking a new id with CoinGecko) or changes its tracking, product
    /// and hours; when that turns tracking or hours on, queues the coin's missing days and
    /// hours at once, as asked by `trigger`.
    pub async fn put(
        &self,
        request: CoinRequest,
        trigger: Trigger,
    ) -> Result<Registered, RegisterError> {
        check_track_since(request.track_since)?;
        let (mut registered, turned_on) = match coins::get(&self.pool, request.symbol).await? {
            Some(existing) => self.change(existing, request).await?,
            None => self.create(request).await?,
        };
        registered.synced = self.bring_up(&registered, turned_on, trigger).await;
        Ok(registered)
    }

    /// Turning hours or tracking on brings the coin up to date at once, in one job: the job
    /// over the days of its hours fills its missing days too, so tracking asks for its own
    /// only when the hours needed none. A failure is logged here; the next tick tries again.
    async fn bring_up(
        &self,
        registered: &Registered,
        turned_on: TurnedOn,
        trigger: Trigger,
    ) -> Option<Result<CoinSync, SyncError>> {
        let coin = &registered.coin.coin;
        if !turned_on.hours && !turned_on.tracking {
            return None;
        }
        let reach = match self.reach().await {
            Ok(reach) => reach,
            Err(e) => {
                let failed = Err(e.into());
                log_sync(coin, "tracking or hours on", "days", &failed);
                return Some(failed);
            }
        };
        let (pool, today) = ((&self.pool, &self.credits), today_utc());
        let mut synced = None;
        if turned_on.hours {
            let started = (coin, &registered.hours.figures);
            // Both on at once: one job for the days older than the hours too.
            let days_from = turned_on
                .tracking
                .then(|| tracking::first_day_to_keep(coin, reach, today));
            let hours = hours::hours_started(pool, reach, started, days_from, trigger).await;
            log_sync(coin, "hours on", "hours", &hours);
            if matches!(hours, Ok(CoinSync::Queued(_) | CoinSync::Busy(_))) {
                return Some(hours);
            }
            synced = Some(hours);
        }
        if turned_on.tracking {
            let days = bring_up_to_date(pool, coin, reach, today, trigger).await;
            log_sync(coin, "tracking on", "days", &days);
            synced = Some(days);
        }
        synced
    }

    /// Registers a new coin, checked with CoinGecko (and its product with Coinbase), in one
    /// transaction with its product and hours. Also says what it turned on.
    async fn create(&self, request: CoinRequest) -> Result<(Registered, TurnedOn), RegisterError> {
        if let Some(other) = coins::by_coingecko_id(&self.pool, &request.coingecko_id).await? {
            return Err(RegisterError::IdTaken {
                id: request.coingecko_id,
                symbol: other.coin.symbol,
            });
        }
        if let ProductChoice::Set(product) = &request.coinbase_product {
            self.check_product(product).await?;
        }
        let first_day = self.first_day(&request.coingecko_id, today_utc()).await?;
        let mut notes = Vec::new();
        let product = match &request.coinbase_product {
            ProductChoice::Set(product) => Some(product.clone()),
            ProductChoice::Clear => None,
            ProductChoice::Unsaid => self.guess(request.symbol, &mut notes).await,
        };
        let coin = Coin {
            symbol: request.symbol,
            coingecko_id: request.coingecko_id.clone(),
            first_day,
            tracked: request.tracked,
            track_since: request.track_since,
        };
        let hourly = request.hourly.unwrap_or(false);
        let mut tx = self.pool.begin().await?;
        if !coins::insert(&mut *tx, &coin).await? {
            drop(tx);
            return self.registered_meanwhile(request).await;
        }
        if product.is_some() {
            second_source::set_product(&mut *tx, coin.symbol, product.as_ref()).await?;
        }
        if hourly {
            hourly_coins::set_hourly(&mut *tx, coin.symbol, true).await?;
        }
        tx.commit().await?;
        tracing::info!(symbol = %coin.symbol, coingecko_id = %coin.coingecko_id, first_day = ?coin.first_day, coinbase_product = ?product, hourly, "coin registered");
        let (record, hours) = self.read(coin.symbol).await?;
        let registered = Registered {
            coin: record,
            hours,
            created: true,
            notes,
            synced: None,
        };
        let turned_on = TurnedOn {
            tracking: coin.tracked,
            hours: hourly,
        };
        Ok((registered, turned_on))
    }

    /// Registered by someone else while we checked: answers as if we had come second.
    async fn registered_meanwhile(
        &self,
        request: CoinRequest,
    ) -> Result<(Registered, TurnedOn), RegisterError> {
        if let Some(existing) = coins::get(&self.pool, request.symbol).await? {
            return self.change(existing, request).await;
        }
        match coins::by_coingecko_id(&self.pool, &request.coingecko_id).await? {
            Some(other) => Err(RegisterError::IdTaken {
                id: request.coingecko_id,
                symbol: other.coin.symbol,
            }),
            None => Err(RegisterError::Database(sqlx::Error::RowNotFound)),
        }
    }

    /// Changes a registered coin's tracking (and product and hours, when given) in one
    /// transaction. Also says what that turned on.
    async fn change(
        &self,
        existing: CoinRecord,
        request: CoinRequest,
    ) -> Result<(Registered, TurnedOn), RegisterError> {
        if existing.coin.coingecko_id != request.coingecko_id {
            return Err(RegisterError::SymbolTaken {
                symbol: request.symbol,
                registered: existing.coin.coingecko_id,
                asked: request.coingecko_id,
            });
        }
        let product = match request.coinbase_product {
            ProductChoice::Unsaid => None,
            ProductChoice::Clear => Some(None),
            ProductChoice::Set(product) => {
                // The same product again costs no call: it was checked when it was set.
                if existing.mapping.product.as_ref() != Some(&product) {
                    self.check_product(&product).await?;
                }
                Some(Some(product))
            }
        };
        let symbol = request.symbol;
        let mut tx = self.pool.begin().await?;
        if let Some(product) = product {
            second_source::set_product(&mut *tx, symbol, product.as_ref()).await?;
        }
        let was_tracked =
            coins::set_tracking(&mut *tx, symbol, request.tracked, request.track_since).await?;
        let was_hourly = match request.hourly {
            Some(hourly) => hourly_coins::set_hourly(&mut *tx, symbol, hourly).await?,
            None => None,
        };
        tx.commit().await?;
        let (coin, hours) = self.read(symbol).await?;
        let turned_on = TurnedOn {
            tracking: coin.coin.tracked && !was_tracked.unwrap_or(existing.coin.tracked),
            hours: hours.hourly && was_hourly == Some(false),
        };
        if was_hourly == Some(true) && !hours.hourly {
            tracing::info!(%symbol, "hours off: the stored hours are kept, and no job fetches more");
        }
        let registered = Registered {
            coin,
            hours,
            created: false,
            notes: Vec::new(),
            synced: None,
        };
        Ok((registered, turned_on))
    }

    /// The coin as it is now, with its hourly side.
    async fn read(&self, symbol: Symbol) -> Result<(CoinRecord, HourlyCoin), RegisterError> {
        let coin = coins::get(&self.pool, symbol).await?;
        let hours = hourly_coins::get(&self.pool, symbol).await?;
        Ok(coin.zip(hours).ok_or(sqlx::Error::RowNotFound)?)
    }

    /// The check of a new id: one call over everything the plan serves
    /// ([`CoinGeckoClient::first_day`]). When its first price is on the first day the plan
    /// serves, the coin may be older: its first day is not known (`None`); a job learns it
    /// once the plan has no limit.
    async fn first_day(
        &self,
        id: &CoinGeckoId,
        today: NaiveDate,
    ) -> Result<Option<NaiveDate>, RegisterError> {
        let mut reach = self.reach.current(&self.pool).await?;
        let mut learned = false;
        loop {
            let served_from = reach.first_served_day(today);
            match self.client.first_day(id.as_str(), served_from).await {
                Ok(FirstDay::On(day)) => return Ok(Some(day)),
                Ok(FirstDay::BeforeThePlan) => return Ok(None),
                Ok(FirstDay::NoPrice) => {
                    return Err(RegisterError::UnknownCoinGeckoId(id.clone()));
                }
                Err(CoinGeckoError::PlanLimit { days, .. }) if !learned => {
                    learned = true;
                    reach = self.reach.learn(&self.pool, days).await?;
                }
                Err(e) => return Err(check_failed(id, e)),
            }
        }
    }

    /// Whether Coinbase lists an explicitly given `product`: one call. Without a client
    /// (`FALLBACK_SOURCE=off`) the product is taken unchecked.
    async fn check_product(&self, product: &ProductId) -> Result<(), RegisterError> {
        let Some(coinbase) = &self.coinbase else {
            return Ok(());
        };
        match coinbase.product(product).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(RegisterError::UnknownCoinbaseProduct(product.clone())),
            Err(CoinbaseError::Unavailable { message }) => {
                Err(RegisterError::CoinbaseUnavailable {
                    product: product.clone(),
                    cause: message,
                })
            }
            Err(CoinbaseError::Refused { message, .. } | CoinbaseError::BadAnswer { message }) => {
                Err(RegisterError::CoinbaseRefused {
                    product: product.clone(),
                    cause: message,
                })
            }
        }
    }

    /// The product of a new coin registered without one: `{SYMBOL}-USD` when Coinbase
    /// lists it. A guess that fails leaves the coin without a product and adds a note:
    /// CoinGecko has vouched for the coin, and the product can be set later.
    async fn guess(&self, symbol: Symbol, notes: &mut Vec<String>) -> Option<ProductId> {
        let coinbase = self.coinbase.as_ref()?;
        match guess_product(coinbase, symbol).await {
            Ok(product) => product,
            Err(e) => {
                let guess = ProductId::usd_of(symbol);
                tracing::warn!(%symbol, error = %e, "registered without a Coinbase product: the guess could not be checked");
                notes.push(format!(
                    "{symbol} has no second source for now: Coinbase Exchange could not be asked whether it lists \
                     {guess} ({}). Set it later with coinbase_product.",
                    e.message().trim_end_matches('.')
                ));
                None
            }
        }
    }

    /// `FALLBACK_SOURCE` as the registry was wired: without a Coinbase client, `off`. Says,
    /// with a coin's mapping, where its hours come from.
    pub fn fallback_source(&self) -> FallbackSource {
        match self.coinbase {
            Some(_) => FallbackSource::Coinbase,
            None => FallbackSource::Off,
        }
    }

    /// The reach in force, for callers that report coverage.
    pub async fn reach(&self) -> sqlx::Result<PlanReach> {
        self.reach.current(&self.pool).await
    }
}

/// Logs what turning `what` on did (`"tracking on"`, `"hours on"`), for the coin's missing
/// `missing` (`"days"`, `"hours"`).
fn log_sync(coin: &Coin, what: &str, missing: &str, synced: &Result<CoinSync, SyncError>) {
    let symbol = coin.symbol;
    match synced {
        Ok(CoinSync::UpToDate) => tracing::info!(%symbol, "{what}: nothing missing"),
        Ok(CoinSync::Queued(job)) => {
            tracing::info!(%symbol, job_id = %job.id, start = %job.range.start(), end = %job.range.end(), "{what}: job queued for the missing {missing}")
        }
        Ok(CoinSync::Busy(active)) => {
            tracing::info!(%symbol, active_job = ?active, "{what}: a job of the coin is active already")
        }
        Ok(CoinSync::Unaffordable(resets_on)) => {
            tracing::info!(%symbol, %resets_on, "{what}: the month's credits cannot pay for the missing {missing}; the schedule queues them once they can")
        }
        Err(e) => {
            tracing::warn!(%symbol, error = %e, "{what}, but the missing {missing} could not be queued; the next tick of SYNC_SCHEDULE tries again")
        }
    }
}

fn check_failed(id: &CoinGeckoId, e: CoinGeckoError) -> RegisterError {
    match e {
        // Only CoinGecko's own word: any other 404 (a wrong COINGECKO_BASE_URL, a proxy)
        // is no fault of the id, and says what to check.
        CoinGeckoError::Permanent {
            unknown_coin: true, ..
        } => RegisterError::UnknownCoinGeckoId(id.clone()),
        CoinGeckoError::Permanent { message, .. }
        | CoinGeckoError::PlanLimit { message, .. }
        | CoinGeckoError::BadAnswer { message, .. } => RegisterError::CoinGeckoRefused {
            id: id.clone(),
            cause: message,
        },
        CoinGeckoError::OutOfCredits { message, resets_on } => RegisterError::OutOfCredits {
            id: id.clone(),
            cause: message,
            resets_on,
        },
        CoinGeckoError::Transient { message } | CoinGeckoError::RateLimited { message } => {
            RegisterError::CoinGeckoUnavailable {
                id: id.clone(),
                cause: message,
            }
        }
    }
}
