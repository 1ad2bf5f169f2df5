/// The longest side of a product id (`BTC` of `BTC-USD`), as `coins` allows it.
pub const MAX_PRODUCT_SIDE_LEN: usize = 15;

/// A product of the second source, Coinbase Exchange: base and quote currency joined by
/// a dash (`BTC-USD`), upper case. Parsed once so that it can stand in a URL path as it
/// is and match what `coins.coinbase_product` allows.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(String);

/// A text that cannot be a Coinbase product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a Coinbase product: a product is two currency codes of 1 to {MAX_PRODUCT_SIDE_LEN} \
     letters or digits joined by '-', such as BTC-USD"
)]
pub struct InvalidProductId(pub String);

impl ProductId {
    /// Case-insensitive, surrounding spaces ignored: ` btc-usd ` is `BTC-USD`.
    pub fn parse(s: &str) -> Result<Self, InvalidProductId> {
        let id = s.trim().to_ascii_uppercase();
        let side = |side: &str| {
            (1..=MAX_PRODUCT_SIDE_LEN).contains(&side.len())
                && side
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        match id.split_once('-') {
            Some((base, quote)) if side(base) && side(quote) => Ok(ProductId(id)),
            _ => Err(InvalidProductId(s.chars().take(40).collect())),
        }
    }

    /// The product a symbol is guessed to trade as against USD: `{SYMBOL}-USD`.
    pub fn usd_of(symbol: super::Symbol) -> Self {
        ProductId(format!("{}-USD", symbol.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(ProductId, InvalidProductId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Symbol;

    #[test]
    fn products_are_read_in_any_case_and_kept_upper_case() {
        assert_eq!(ProductId::parse(" btc-usd ").unwrap().as_str(), "BTC-USD");
        assert_eq!(ProductId::parse("1INCH-USD").unwrap().as_str(), "1INCH-USD");
        assert_eq!(
            ProductId::usd_of(Symbol::parse("eth").unwrap()).as_str(),
            "ETH-USD"
        );
    }

    #[test]
    fn anything_that_could_leave_the_url_path_is_refused() {
        for bad in [
            "",
            "BTC",
            "BTC-",
            "-USD",
            "BTC-USD-X",
            "BTC/USD",
            "../USD",
            "BTC-US D",
            "ABCDEFGHIJKLMNOP-USD",
        ] {
            assert!(ProductId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
