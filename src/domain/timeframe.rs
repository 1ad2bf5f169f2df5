//! The three timeframes a read can ask for (INTERFACE "Timeframes"): days as stored, hours
//! as stored, and four-hour blocks made from the stored hours on read.

/// The length of the candles a read answers with, as a request spells it (`1d`, `4h`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Timeframe {
    /// `1d`: the daily candles (`daily_prices`), exactly as before hours existed.
    #[default]
    Day,
    /// `4h`: the stored hours of each block starting at 00, 04, 08, 12, 16 or 20 UTC,
    /// aggregated on read.
    FourHours,
    /// `1h`: the hourly candles (`hourly_prices`) as stored.
    Hour,
}

/// A `timeframe` no read answers; the message names the three that it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a timeframe: use one of 1d, 4h, 1h")]
pub struct UnknownTimeframe(pub String);

impl Timeframe {
    /// Every timeframe, the longest first.
    pub const ALL: [Timeframe; 3] = [Timeframe::Day, Timeframe::FourHours, Timeframe::Hour];

    /// As a request and a file name spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::Day => "1d",
            Timeframe::FourHours => "4h",
            Timeframe::Hour => "1h",
        }
    }

    /// How many UTC hours one candle of the timeframe spans.
    pub fn hours(self) -> u32 {
        match self {
            Timeframe::Day => 24,
            Timeframe::FourHours => 4,
            Timeframe::Hour => 1,
        }
    }

    /// Whether its candles are made from the stored hours (`4h`, `1h`) rather than days.
    pub fn is_hourly(self) -> bool {
        self != Timeframe::Day
    }
}

// Exactly `1d`, `4h` or `1h`, as INTERFACE writes them: no other spelling is guessed at.
stored_as_text!(Timeframe, UnknownTimeframe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_names_no_timeframe_gets_days() {
        assert_eq!(Timeframe::default(), Timeframe::Day);
    }

    #[test]
    fn anything_else_is_refused_naming_the_three() {
        for bad in ["", "1H", "2h", "1w", "60m", "daily", " 1h", "4h ", "1d1d"] {
            let error = bad.parse::<Timeframe>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{bad:?} is not a timeframe: use one of 1d, 4h, 1h")
            );
        }
        let long = "x".repeat(1000);
        assert_eq!(long.parse::<Timeframe>().unwrap_err().0.len(), 40);
    }

    #[test]
    fn a_candle_spans_its_timeframes_hours() {
        let spans: Vec<_> = Timeframe::ALL.iter().map(|t| t.hours()).collect();
        assert_eq!(spans, vec![24, 4, 1]);
        assert!(!Timeframe::Day.is_hourly());
        assert!(Timeframe::FourHours.is_hourly() && Timeframe::Hour.is_hourly());
    }
}
