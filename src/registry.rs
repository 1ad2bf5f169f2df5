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
//! tick ([`Registry::put`], through `tracking`).

mod tracking;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::coinbase::{CoinbaseClient, CoinbaseError};
use crate::coingecko::{CoinGeckoClient, CoinGeckoError};
use crate::domain::{Coin, CoinGeckoId, PlanReach, ProductId, Symbol, Trigger, today_utc};
use crate::ingest::Reach;
use crate::ingest::fallback::guess_product;
use crate::store::coins::{self, CoinRecord};
use crate::store::second_source;

pub use tracking::{CoinSync, SyncError, bring_up_to_date};

/// Where the check asks from when the plan has no limit: before any coin's first price
/// (Bitcoin's genesis block), so that the answer starts at the coin's first day.
const BEFORE_ANY_COIN: &str = "2009-01-03T00:00:00Z";

/// What a caller asks the registry for.
#[derive(Debug, Clone)]
pub struct CoinRequest {
    pub symbol: Symbol,
    pub coingecko_id: CoinGeckoId,
    pub tracked: bool,
    pub track_since: Option<NaiveDate>,
    /// The coin's product on the second source.
    pub coinbase_product: ProductChoice,
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
    /// A new coin, checked with CoinGecko; else one registered already with that id,
    /// whose tracking (and product, when given) is now as asked.
    pub created: bool,
    /// What a person should know that the coin does not show (the product of a new coin
    /// could not be guessed, say).
    pub notes: Vec<String>,
    /// When tracking was turned on (a new tracked coin included): the job queued for its
    /// missing days, or why none could be (already logged; the next tick of
    /// `SYNC_SCHEDULE` tries again). The coin is registered either way.
    pub synced: Option<Result<CoinSync, SyncError>>,
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
    /// `JOB_MAX_ATTEMPTS`, for the job that brings a newly tracked coin up to date.
    pub job_max_attempts: u32,
}

impl Registry {
    /// Registers a coin (checking a new id with CoinGecko) or changes its tracking; when
    /// that turns tracking on, queues the coin's missing days at once, as asked by
    /// `trigger`.
    pub async fn put(
        &self,
        request: CoinRequest,
        trigger: Trigger,
    ) -> Result<Registered, RegisterError> {
        check_track_since(request.track_since)?;
        let (mut registered, started_tracking) =
            match coins::get(&self.pool, request.symbol).await? {
                Some(existing) => self.change(existing, request).await?,
                None => self.create(request).await?,
            };
        if started_tracking {
            let synced = self.tracking_started(&registered.coin.coin, trigger).await;
            registered.synced = Some(synced);
        }
        Ok(registered)
    }

    /// Turning tracking on brings the coin up to date at once. A failure is logged here;
    /// the next tick tries again.
    async fn tracking_started(&self, coin: &Coin, trigger: Trigger) -> Result<CoinSync, SyncError> {
        let synced = tracking::tracking_started(
            &self.pool,
            &self.reach,
            coin,
            trigger,
            self.job_max_attempts,
        )
        .await;
        if let Err(e) = &synced {
            tracing::warn!(symbol = %coin.symbol, error = %e, "tracking on, but the missing days could not be queued; the next tick of SYNC_SCHEDULE tries again");
        }
        synced
    }

    /// Registers a new coin, checked with CoinGecko (and its product with Coinbase). Also
    /// says whether it is tracked.
    async fn create(&self, request: CoinRequest) -> Result<(Registered, bool), RegisterError> {
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
        if !coins::insert(&self.pool, &coin).await? {
            return self.registered_meanwhile(request).await;
        }
        if product.is_some() {
            second_source::set_product(&self.pool, coin.symbol, product.as_ref()).await?;
        }
        tracing::info!(symbol = %coin.symbol, coingecko_id = %coin.coingecko_id, first_day = ?coin.first_day, coinbase_product = ?product, "coin registered");
        let record = coins::get(&self.pool, coin.symbol)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let registered = Registered {
            coin: record,
            created: true,
            notes,
            synced: None,
        };
        Ok((registered, coin.tracked))
    }

    /// Registered by someone else while we checked: answers as if we had come second.
    async fn registered_meanwhile(
        &self,
        request: CoinRequest,
    ) -> Result<(Registered, bool), RegisterError> {
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

    /// Changes a registered coin's tracking (and product, when given). Also says whether
    /// that turned tracking on.
    async fn change(
        &self,
        existing: CoinRecord,
        request: CoinRequest,
    ) -> Result<(Registered, bool), RegisterError> {
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
        if let Some(product) = product {
            second_source::set_product(&self.pool, request.symbol, product.as_ref()).await?;
        }
        let was_tracked = coins::set_tracking(
            &self.pool,
            request.symbol,
            request.tracked,
            request.track_since,
        )
        .await?
        .unwrap_or(existing.coin.tracked);
        let coin = coins::get(&self.pool, request.symbol)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let started_tracking = coin.coin.tracked && !was_tracked;
        let registered = Registered {
            coin,
            created: false,
            notes: Vec::new(),
            synced: None,
        };
        Ok((registered, started_tracking))
    }

    /// The check of a new id: one call over everything the plan serves. A range longer
    /// than 90 days is answered with one point per day from the coin's first day, so the
    /// first point is the first day. When that is the first day the plan serves, the coin
    /// may be older: its first day is not known (`None`).
    async fn first_day(
        &self,
        id: &CoinGeckoId,
        today: NaiveDate,
    ) -> Result<Option<NaiveDate>, RegisterError> {
        let mut reach = self.reach.current(&self.pool).await?;
        let mut learned = false;
        loop {
            let served_from = reach.first_served_day(today);
            let from = match served_from {
                Some(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
                None => BEFORE_ANY_COIN
                    .parse::<DateTime<Utc>>()
                    .expect("a valid timestamp"),
            };
            match self
                .client
                .market_chart_range(id.as_str(), from, Utc::now())
                .await
            {
                Ok(chart) => {
                    let Some(first) = chart.prices.first() else {
                        return Err(RegisterError::UnknownCoinGeckoId(id.clone()));
                    };
                    let first_day = first.at.date_naive();
                    return Ok((Some(first_day) != served_from).then_some(first_day));
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

    /// The reach in force, for callers that report coverage.
    pub async fn reach(&self) -> sqlx::Result<PlanReach> {
        self.reach.current(&self.pool).await
    }
}

fn check_failed(id: &CoinGeckoId, e: CoinGeckoError) -> RegisterError {
    match e {
        CoinGeckoError::Permanent {
            status: Some(404), ..
        }
        | CoinGeckoError::BadAnswer { status: 404, .. } => {
            RegisterError::UnknownCoinGeckoId(id.clone())
        }
        CoinGeckoError::Permanent { message, .. }
        | CoinGeckoError::PlanLimit { message, .. }
        | CoinGeckoError::BadAnswer { message, .. } => RegisterError::CoinGeckoRefused {
            id: id.clone(),
            cause: message,
        },
        CoinGeckoError::Transient { message } | CoinGeckoError::RateLimited { message } => {
            RegisterError::CoinGeckoUnavailable {
                id: id.clone(),
                cause: message,
            }
        }
    }
}
