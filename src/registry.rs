//! The coin registry's rules, shared by `PUT /api/v1/coins/{symbol}` and
//! `price-history coins add`: a symbol names one CoinGecko id for good, a new id is
//! checked with exactly one `market_chart/range` call (which also finds the coin's first
//! day), and nothing is stored for a coin that was not checked.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::coingecko::{CoinGeckoClient, CoinGeckoError};
use crate::domain::{Coin, CoinGeckoId, PlanReach, Symbol, today_utc};
use crate::ingest::Reach;
use crate::store::coins::{self, CoinRecord};

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
}

/// What the registry did.
#[derive(Debug, Clone)]
pub enum Registered {
    /// A new coin, checked with CoinGecko.
    Created(CoinRecord),
    /// A coin already registered with that id; its tracking is as asked now.
    /// `started_tracking` is true when `tracked` was off before.
    Changed {
        coin: CoinRecord,
        started_tracking: bool,
    },
}

/// Why a coin was not registered; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "track_since {0} is in the future (today is {1} UTC): pick a day on or before today, or leave it out"
    )]
    TrackSinceInFuture(NaiveDate, NaiveDate),
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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The registry: the database, and the client that checks new ids (it shares the
/// process's call budget).
#[derive(Debug, Clone)]
pub struct Registry {
    pub pool: PgPool,
    pub client: CoinGeckoClient,
    pub reach: Reach,
}

impl Registry {
    /// Registers a coin (checking a new id with CoinGecko) or changes its tracking.
    pub async fn put(&self, request: CoinRequest) -> Result<Registered, RegisterError> {
        let today = today_utc();
        if let Some(since) = request.track_since
            && since > today
        {
            return Err(RegisterError::TrackSinceInFuture(since, today));
        }
        if let Some(existing) = coins::get(&self.pool, request.symbol).await? {
            return self.change(existing, request).await;
        }
        if let Some(other) = coins::by_coingecko_id(&self.pool, &request.coingecko_id).await? {
            return Err(RegisterError::IdTaken {
                id: request.coingecko_id,
                symbol: other.coin.symbol,
            });
        }
        let first_day = self.first_day(&request.coingecko_id, today).await?;
        let coin = Coin {
            symbol: request.symbol,
            coingecko_id: request.coingecko_id.clone(),
            first_day,
            tracked: request.tracked,
            track_since: request.track_since,
        };
        if coins::insert(&self.pool, &coin).await? {
            tracing::info!(symbol = %coin.symbol, coingecko_id = %coin.coingecko_id, first_day = ?coin.first_day, "coin registered");
            let record = coins::get(&self.pool, coin.symbol)
                .await?
                .ok_or_else(|| sqlx::Error::RowNotFound)?;
            return Ok(Registered::Created(record));
        }
        // Registered by someone else while we checked: answer as if we had come second.
        match coins::get(&self.pool, request.symbol).await? {
            Some(existing) => self.change(existing, request).await,
            None => match coins::by_coingecko_id(&self.pool, &request.coingecko_id).await? {
                Some(other) => Err(RegisterError::IdTaken {
                    id: request.coingecko_id,
                    symbol: other.coin.symbol,
                }),
                None => Err(RegisterError::Database(sqlx::Error::RowNotFound)),
            },
        }
    }

    async fn change(
        &self,
        existing: CoinRecord,
        request: CoinRequest,
    ) -> Result<Registered, RegisterError> {
        if existing.coin.coingecko_id != request.coingecko_id {
            return Err(RegisterError::SymbolTaken {
                symbol: request.symbol,
                registered: existing.coin.coingecko_id,
                asked: request.coingecko_id,
            });
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
        Ok(Registered::Changed {
            started_tracking: coin.coin.tracked && !was_tracked,
            coin,
        })
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
