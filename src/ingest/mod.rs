//! The job itself: plan windows from the gaps, ask a price source for each (CoinGecko,
//! whose points are aggregated into daily candles), store them with a checkpoint, fill
//! what is still missing, and say exactly what is left. Days older than the plan's reach
//! are never asked of CoinGecko: with `FALLBACK_SOURCE=coinbase` they are asked of the
//! second source (Coinbase Exchange), once its mapping has been checked.

mod aggregate;
pub mod fallback;
mod job;
mod plan;
mod reach;
pub mod source;

pub use aggregate::{
    DailyCandles, HOURLY_WINDOW_DAYS, HourlyPoints, MIN_HOURLY_POINTS, daily_candles,
};
pub use job::{Attempt, Fence, Ingestor, JobError, Outcome};
pub use plan::{Window, windows_for_days, windows_for_range};
pub use reach::Reach;
pub use source::{CoinGecko, Coinbase, PriceSource, SourceError};
