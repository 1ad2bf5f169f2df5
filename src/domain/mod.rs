//! Types that cannot be invalid: a request is parsed into them once, at the edge, and the
//! rest of the code never checks again.

/// `Display` and `FromStr` for an enum stored as text, both read from its `as_str` and
/// its `ALL`, so that what is written is always what is read back.
macro_rules! stored_as_text {
    ($type:ty, $unknown:ident) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $type {
            type Err = $unknown;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| $unknown(s.to_owned()))
            }
        }
    };
}

mod candle;
mod coin;
mod date_range;
mod deviation;
mod job_status;
mod plan_reach;
mod product;
mod source;
mod symbol;
mod trigger;

pub use candle::DailyCandle;
pub use coin::{Coin, CoinGeckoId, InvalidCoinGeckoId, MAX_COINGECKO_ID_LEN};
pub use date_range::{DateRange, MAX_RANGE_DAYS, RangeError, day_runs, today_utc};
pub use deviation::{
    DEVIATION_SAMPLE_DAYS, Deviation, MappingVerdict, judge_mapping, median_deviation,
};
pub use job_status::{JobStatus, UnknownJobStatus};
pub use plan_reach::PlanReach;
pub use product::{InvalidProductId, MAX_PRODUCT_SIDE_LEN, ProductId};
pub use source::{PriceSource, UnknownPriceSource};
pub use symbol::{InvalidSymbol, MAX_SYMBOL_LEN, Symbol};
pub use trigger::{Trigger, UnknownTrigger};

/// A day written `YYYY-MM-DD`, for unit tests, which read best with their days as text.
#[cfg(test)]
pub(crate) fn day(s: &str) -> chrono::NaiveDate {
    s.parse().expect("a YYYY-MM-DD day")
}
