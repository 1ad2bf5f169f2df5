//! Types that cannot be invalid: a request is parsed into them once, at the edge, and the
//! rest of the code never checks again.

/// One way in and out for a type written as text: `Display` as its `as_str` gives it,
/// `FromStr` through `$parse`, and `TryFrom<String>` (for sqlx's
/// `#[sqlx(try_from = "String")]`) through `FromStr`, so that what is written is always
/// what is read back, and a value the type refuses is an error, never a default.
macro_rules! text_form {
    ($type:ty, $error:ty, $parse:expr) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $type {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ($parse)(s)
            }
        }

        impl TryFrom<String> for $type {
            type Error = $error;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

/// [`text_form!`] for an enum stored as text: read back from its `ALL` and `as_str`. What
/// cannot be read is quoted in the error up to 40 characters: enough to recognise, never a
/// request's worth.
macro_rules! stored_as_text {
    ($type:ty, $unknown:ident) => {
        text_form!($type, $unknown, |s: &str| {
            Self::ALL
                .into_iter()
                .find(|value| value.as_str() == s)
                .ok_or_else(|| $unknown(s.chars().take(40).collect()))
        });
    };
}

/// [`text_form!`] for a newtype whose `parse` checks the text, with a `Debug` of
/// `Type(text)`.
macro_rules! text_newtype {
    ($type:ident, $invalid:ty) => {
        text_form!($type, $invalid, $type::parse);

        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($type), self.as_str())
            }
        }
    };
}
/// For the other modules' enums written as text (the export's formats).
pub(crate) use {stored_as_text, text_form};

mod candle;
mod clock;
mod coin;
mod credit_month;
mod date_range;
mod deviation;
mod dispute;
mod four_hours;
mod hour;
mod hourly_candle;
mod hourly_source;
mod import;
mod job_status;
mod plan_reach;
mod product;
mod source;
mod symbol;
mod sync_schedule;
mod timeframe;
mod trigger;

pub use candle::DailyCandle;
pub use clock::Clock;
pub use coin::{BEFORE_ANY_COIN, Coin, CoinGeckoId, InvalidCoinGeckoId, MAX_COINGECKO_ID_LEN};
pub use credit_month::CreditMonth;
pub use date_range::{DateRange, MAX_RANGE_DAYS, RangeError, day_runs, parse_day, today_utc};
pub use deviation::{
    DEVIATION_SAMPLE_DAYS, Deviation, MappingVerdict, judge_mapping, median_deviation,
};
pub use dispute::{CheckPoint, DisputeRule, HourCheck, check_points, distance_outside_band};
pub use four_hours::{BlockSource, FourHourCandle, UnknownBlockSource};
pub use hour::{HOUR_SECS, HOURS_PER_BLOCK, HOURS_PER_DAY, Hour, HourRange, OffTheHour};
pub use hourly_candle::{
    BadCandle, COINGECKO_VOLUME_HOURS, ExchangeCandle, HourParts, HourlyCandle, Hours, RefusedHour,
    decimal_from_f64, hours_from_exchange, hours_from_points,
};
pub use hourly_source::{COINGECKO_HOURLY_FROM, ExchangeProduct, expected_hours, hourly_source};
pub use import::{ImportStatus, ImportTrigger, UnknownImportStatus, UnknownImportTrigger};
pub use job_status::{JobStatus, UnknownJobStatus};
pub use plan_reach::PlanReach;
pub use product::{InvalidProductId, MAX_PRODUCT_SIDE_LEN, ProductId};
pub use source::{PriceSource, UnknownPriceSource};
pub use symbol::{InvalidSymbol, MAX_SYMBOL_LEN, Symbol};
pub use sync_schedule::{DEFAULT_SCHEDULE, InvalidSchedule, SyncSchedule};
pub use timeframe::{Timeframe, UnknownTimeframe};
pub use trigger::{Trigger, UnknownTrigger};

/// A day written `YYYY-MM-DD`, for unit tests, which read best with their days as text.
#[cfg(test)]
pub(crate) fn day(s: &str) -> chrono::NaiveDate {
    s.parse().expect("a YYYY-MM-DD day")
}

/// A time written in RFC 3339, for unit tests.
#[cfg(test)]
pub(crate) fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().expect("an RFC 3339 time")
}

/// Fails, quoting `message`, unless it says each of `parts`: for unit tests of the
/// sentences the service writes, which check what a sentence says, not all its words.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

/// Fails unless each of `all` reads back as itself from the text it writes, and `other`
/// (a word that is not one of them) is refused: for the unit tests of the enums written as
/// text ([`stored_as_text!`]).
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_reads_back<T>(all: &[T], other: &str)
where
    T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
    T::Err: std::fmt::Debug,
{
    for &value in all {
        assert_eq!(value.to_string().parse::<T>().unwrap(), value);
    }
    assert!(other.parse::<T>().is_err(), "{other:?} read as a value");
}

/// A decimal written as text, for unit tests.
#[cfg(test)]
pub(crate) fn dec(s: &str) -> rust_decimal::Decimal {
    s.parse().expect("a decimal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_stored_as_text_reads_back_what_it_writes_and_nothing_else() {
        assert_reads_back(&PriceSource::ALL, "binance");
        assert_reads_back(&BlockSource::ALL, "binance");
        assert_reads_back(&Timeframe::ALL, "1w");
        assert_reads_back(&JobStatus::ALL, "mixed");
        assert_reads_back(&Trigger::ALL, "cron");
        // What a job's status or trigger may be, an import's may not.
        assert_reads_back(&ImportStatus::ALL, "cancelled");
        assert_reads_back(&ImportTrigger::ALL, "schedule");
        assert_eq!(ImportTrigger::Cli.to_string(), "cli");
    }
}
