//! Types that cannot be invalid: a request is parsed into them once, at the edge, and the
//! rest of the code never checks again.

mod candle;
mod date_range;
mod job_status;
mod symbol;

pub use candle::DailyCandle;
pub use date_range::{DateRange, MAX_RANGE_DAYS, RangeError, today_utc};
pub use job_status::{JobStatus, UnknownJobStatus};
pub use symbol::{Symbol, UnknownSymbol};
