//! [`TimeframeParam`]: the `timeframe` of a read on the wire, exactly `1d`, `4h` or `1h`
//! (INTERFACE "Timeframes"), documented as an enum of the three; anything else is refused
//! with a 400 that names them ([`crate::domain::UnknownTimeframe`]'s sentence).

use poem_openapi::registry::MetaSchema;
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult};
use serde_json::Value;

use super::wire::string_type;
use crate::domain::Timeframe;

/// A read's timeframe; absent means `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeframeParam(pub Timeframe);

string_type!(
    TimeframeParam,
    "string_timeframe",
    MetaSchema {
        enum_items: Timeframe::ALL
            .iter()
            .map(|t| Value::String(t.as_str().to_owned()))
            .collect(),
        default: Some(Value::String(Timeframe::Day.as_str().to_owned())),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for TimeframeParam {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value
            .parse()
            .map(TimeframeParam)
            .map_err(|e: crate::domain::UnknownTimeframe| ParseError::custom(e.to_string()))
    }
}

/// The timeframe of an optional parameter: `1d` when absent.
pub fn or_days(param: Option<TimeframeParam>) -> Timeframe {
    param.map_or(Timeframe::Day, |t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_are_read_and_anything_else_is_refused_naming_them() {
        for timeframe in Timeframe::ALL {
            assert_eq!(
                TimeframeParam::parse_from_parameter(timeframe.as_str()).unwrap(),
                TimeframeParam(timeframe)
            );
        }
        let refused = TimeframeParam::parse_from_parameter("2h").unwrap_err();
        assert!(
            refused.message().contains("use one of 1d, 4h, 1h"),
            "{}",
            refused.message()
        );
        assert_eq!(or_days(None), Timeframe::Day);
    }
}
