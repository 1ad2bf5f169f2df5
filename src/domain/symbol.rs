use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

/// A coin the service knows how to fetch. Only BTC for now; adding a coin is adding a
/// variant with its CoinGecko id and its first day of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Symbol {
    #[default]
    Btc,
}

impl Symbol {
    pub const ALL: [Symbol; 1] = [Symbol::Btc];

    /// The ticker as users write it and as rows store it.
    pub fn as_str(self) -> &'static str {
        match self {
            Symbol::Btc => "BTC",
        }
    }

    /// CoinGecko's id for the coin, used in `/coins/{id}/...`.
    pub fn coingecko_id(self) -> &'static str {
        match self {
            Symbol::Btc => "bitcoin",
        }
    }

    /// The first UTC day CoinGecko has data for; nothing earlier can ever be fetched.
    pub fn first_day(self) -> NaiveDate {
        match self {
            Symbol::Btc => NaiveDate::from_ymd_opt(2013, 4, 28).expect("a valid date"),
        }
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown symbol {0:?}: the symbols this service knows are {known}", known = Symbol::ALL.map(Symbol::as_str).join(", "))]
pub struct UnknownSymbol(pub String);

impl FromStr for Symbol {
    type Err = UnknownSymbol;

    /// Case-insensitive, so `btc` and `BTC` are the same coin.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::ALL
            .into_iter()
            .find(|symbol| symbol.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSymbol(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!("btc".parse::<Symbol>(), Ok(Symbol::Btc));
        assert_eq!(" BTC ".parse::<Symbol>(), Ok(Symbol::Btc));
        let err = "DOGE".parse::<Symbol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown symbol \"DOGE\": the symbols this service knows are BTC"
        );
    }
}
