use chrono::NaiveDate;

use super::Symbol;

/// The longest CoinGecko id accepted; CoinGecko's own are far shorter.
pub const MAX_COINGECKO_ID_LEN: usize = 100;

/// CoinGecko's id of a coin (`bitcoin`, `ethereum`, `wrapped-bitcoin`): lower-case
/// letters, digits, `-`, `_` and `.`, so it can stand in a URL path as it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoinGeckoId(String);

/// An id that cannot be one of CoinGecko's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a CoinGecko id: ids are 1 to {MAX_COINGECKO_ID_LEN} lower-case letters, digits, '-', '_' or '.', \
     such as bitcoin or ethereum (the \"API ID\" on the coin's CoinGecko page)"
)]
pub struct InvalidCoinGeckoId(pub String);

impl CoinGeckoId {
    pub fn parse(s: &str) -> Result<Self, InvalidCoinGeckoId> {
        let id = s.trim();
        let valid = (1..=MAX_COINGECKO_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && id != "."
            && id != "..";
        if valid {
            Ok(CoinGeckoId(id.to_owned()))
        } else {
            Err(InvalidCoinGeckoId(s.chars().take(120).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(CoinGeckoId, InvalidCoinGeckoId);

/// No coin has a price before this day, Bitcoin's first block (2009-01-03): the floor of a
/// coin's days when its first day is not known and the plan's reach has no limit.
pub const BEFORE_ANY_COIN: NaiveDate = NaiveDate::from_ymd_opt(2009, 1, 3).unwrap();

/// A registered coin: what the service fetches for a symbol, and from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    pub symbol: Symbol,
    pub coingecko_id: CoinGeckoId,
    /// The first UTC day CoinGecko has a price for. `None` when the check could not see
    /// it: the coin is older than the plan's reach.
    pub first_day: Option<NaiveDate>,
    /// Kept up to date by the schedule.
    pub tracked: bool,
    /// With `tracked`: the schedule fills from this day on (else from the first day).
    pub track_since: Option<NaiveDate>,
}

impl Coin {
    /// Bitcoin as the first migration registers it.
    pub fn bitcoin() -> Coin {
        Coin {
            symbol: Symbol::BTC,
            coingecko_id: CoinGeckoId("bitcoin".to_owned()),
            first_day: NaiveDate::from_ymd_opt(2013, 4, 28),
            tracked: false,
            track_since: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coingecko_ids_are_url_safe_words() {
        assert_eq!(
            CoinGeckoId::parse(" ethereum ").unwrap().as_str(),
            "ethereum"
        );
        assert!(CoinGeckoId::parse("wrapped-bitcoin").is_ok());
        assert!(CoinGeckoId::parse("usd-coin.e_2").is_ok());
        for bad in [
            "",
            "Bitcoin",
            "bit coin",
            "../x",
            "a/b",
            "..",
            "%2e",
            &"a".repeat(101),
        ] {
            let err = CoinGeckoId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("not a CoinGecko id"), "{bad}");
        }
    }
}
