//! Types that cannot be invalid: a request is parsed into them once, at the edge, and the
//! rest of the code never checks again.

mod candle;
mod coin;
mod date_range;
mod job_status;
mod plan_reach;
mod symbol;
mod trigger;

pub use candle::DailyCandle;
pub use coin::{Coin, CoinGeckoId, InvalidCoinGeckoId, MAX_COINGECKO_ID_LEN};
pub use date_range::{DateRange, MAX_RANGE_DAYS, RangeError, today_utc};
pub use job_status::{JobStatus, UnknownJobStatus};
pub use plan_reach::PlanReach;
pub use symbol::{InvalidSymbol, MAX_SYMBOL_LEN, Symbol};
pub use trigger::{Trigger, UnknownTrigger};

/// A day written `YYYY-MM-DD`, for unit tests, which read best with their days as text.
#[cfg(test)]
pub(crate) fn day(s: &str) -> chrono::NaiveDate {
    s.parse().expect("a YYYY-MM-DD day")
}
