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

    /// Every source with its count among `counts` (rows of `source, count(*)` as a query
    /// grouped by the stored text gives them), 0 for a source without a row.
    pub fn each_counted(counts: &[(String, i64)]) -> Vec<(PriceSource, i64)> {
        PriceSource::ALL
            .into_iter()
            .map(|source| {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == source.as_str())
                    .map_or(0, |(_, n)| *n);
                (source, n)
            })
            .collect()
    }

    /// As a message to a person names it.
    pub fn display_name(self) -> &'static str {
        match self {
            PriceSource::CoinGecko => "CoinGecko",
            PriceSource::Coinbase => "Coinbase Exchange",
        }
    }
}

// Exactly `coingecko` or `coinbase`, as stored: no other spelling is guessed at.
stored_as_text!(PriceSource, UnknownPriceSource);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_no_release_writes_is_refused() {
        assert_eq!(
            "binance".parse::<PriceSource>(),
            Err(UnknownPriceSource("binance".to_owned()))
        );
        assert_eq!(PriceSource::Coinbase.to_string(), "coinbase");
    }
}
