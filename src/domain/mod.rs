//! Types that cannot be invalid: a request is parsed into them once, at the edge, and the
//! rest of the code never checks again.

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
pub use date_range::{DateRange, MAX_RANGE_DAYS, RangeError, today_utc};
pub use deviation::{
    DEVIATION_SAMPLE_DAYS, Deviation, MappingVerdict, judge_mapping, median_deviation,
};
pub use job_status::{JobStatus, UnknownJobStatus};
pub use plan_reach::PlanReach;
pub use product::{InvalidProductId, MAX_PRODUCT_SIDE_LEN, ProductId};
pub use source::{PriceSource, UnknownPriceSource};
pub use symbol::{InvalidSymbol, MAX_SYMBOL_LEN, Symbol};
pub use trigger::{Trigger, UnknownTrigger};
