use std::fmt;
use std::str::FromStr;

/// Where a stored day came from: CoinGecko (the primary source) or the second source
/// that fills the days CoinGecko's plan cannot reach. Stored as `daily_prices.source`
/// and shown on every read, and the key of each source's own call budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriceSource {
    CoinGecko,
    Coinbase,
}

/// A `source` value no release writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a price source: one of coingecko, coinbase")]
pub struct UnknownPriceSource(pub String);

impl PriceSource {
    /// Every source, the primary one first.
    pub const ALL: [PriceSource; 2] = [PriceSource::CoinGecko, PriceSource::Coinbase];

    /// As stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::CoinGecko => "coingecko",
            PriceSource::Coinbase => "coinbase",
        }
    }

    /// As a message to a person names it.
    pub fn display_name(self) -> &'static str {
        match self {
            PriceSource::CoinGecko => "CoinGecko",
            PriceSource::Coinbase => "Coinbase Exchange",
        }
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PriceSource {
    type Err = UnknownPriceSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PriceSource::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownPriceSource(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_reads_back_as_it_is_stored() {
        for source in PriceSource::ALL {
            assert_eq!(source.as_str().parse::<PriceSource>(), Ok(source));
        }
        assert_eq!(
            "binance".parse::<PriceSource>(),
            Err(UnknownPriceSource("binance".to_owned()))
        );
        assert_eq!(PriceSource::Coinbase.to_string(), "coinbase");
    }
}
