//! [`Day`]: a UTC day on the wire, exactly `YYYY-MM-DD`.
//!
//! poem-openapi's own `NaiveDate` is documented with the non-standard format
//! `naive-date` and accepts whatever chrono parses (five-digit and signed years among
//! them). `Day` is documented as the standard `date` format, so clients and test
//! generators know what to send, and it accepts only four-digit years — which also keeps
//! every date inside what PostgreSQL's `date` can hold.

use chrono::NaiveDate;
use poem_openapi::registry::MetaSchema;
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON};
use serde_json::Value;

use super::wire::string_type;
use crate::domain::parse_day;

/// The only shape a day is written in.
const FORMAT: &str = "%Y-%m-%d";

/// A UTC day, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub NaiveDate);

impl Day {
    fn parse(value: &str) -> ParseResult<Self> {
        parse_day(value).map(Day).map_err(ParseError::custom)
    }
}

impl From<NaiveDate> for Day {
    fn from(date: NaiveDate) -> Self {
        Day(date)
    }
}

string_type!(
    Day,
    "string_date",
    MetaSchema::new_with_format("string", "date")
);

impl ParseFromJSON for Day {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(value) => Day::parse(&value),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ParseFromParameter for Day {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Day::parse(value)
    }
}

impl ToJSON for Day {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.format(FORMAT).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_four_digit_years_in_the_iso_shape_are_days() {
        assert_eq!(
            Day::parse("2024-02-29").unwrap().0,
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        for bad in [
            "2023-02-29",
            "2024-2-29",
            "+2024-02-29",
            "12024-02-29",
            "2024/02/29",
            " 2024-02-29",
            "2024-02-29T00:00:00Z",
            "",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_day_is_written_as_it_is_read() {
        let day = Day::parse("0999-01-05").unwrap();
        assert_eq!(day.to_json(), Some(Value::String("0999-01-05".to_owned())));
    }
}
