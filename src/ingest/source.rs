//! The seat of a price source: what the job asks a source (a coin's whole UTC days in a
//! window) and what the source answers (daily candles for those days, or a typed reason
//! why not). The job plans, stores and reports; it never knows whose wire it went over.
//! CoinGecko is the first source ([`CoinGecko`]), Coinbase Exchange the second
//! ([`Coinbase`], for the days older than CoinGecko's plan serves); another is a new
//! module beside them that implements [`PriceSource`].

mod coinbase;
mod coingecko;

use std::future::Future;

use super::{DailyCandles, Window};
use crate::domain::{self, Coin};

pub use coinbase::Coinbase;
pub use coingecko::CoinGecko;

/// A place daily candles come from.
pub trait PriceSource: Send + Sync {
    /// The source's name, as messages and logs say it.
    fn name(&self) -> &'static str;

    /// What every row stored from it says in `source`.
    fn origin(&self) -> domain::PriceSource;

    /// The most days one call may ask for: the job plans its windows to this size.
    fn window_days(&self) -> u32;

    /// The candles of `coin` for `window`'s days: one per day the source has, none for a
    /// day it has not (that day stays missing); a day not over yet is provisional.
    /// Finished days it had too little data for are named in `too_thin`, not stored.
    fn daily_candles(
        &self,
        coin: &Coin,
        window: Window,
    ) -> impl Future<Output = Result<DailyCandles, SourceError>> + Send;
}

/// Why a source gave no candles for a window: one variant per decision the job makes.
/// Each message says what happened and what to do, with no secret in it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's plan does not serve days this old: it serves the past `reach_days`.
    /// The job learns that reach and plans the rest within it.
    #[error("{message}")]
    PlanLimit { reach_days: u32, message: String },
    /// The source kept refusing for its rate until its retries ran out: try again later.
    #[error("{0}")]
    RateLimited(String),
    /// The source could not be reached or failed for now: try again later.
    #[error("{0}")]
    Transient(String),
    /// The source refused the request, and will again whatever we do.
    #[error("{0}")]
    Permanent(String),
    /// The month's credits are spent: nothing more is asked of the source until the month
    /// turns. The job stops fetching and ends `completed_with_gaps`, saying so.
    #[error("{0}")]
    OutOfCredits(String),
    /// The source answered with something that is not candles, or data that cannot be
    /// true: nothing of the window is stored.
    #[error("{0}")]
    BadAnswer(String),
}

impl SourceError {
    /// True when trying again later cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::PlanLimit { .. } | Self::Permanent(_) | Self::BadAnswer(_)
        )
    }
}
