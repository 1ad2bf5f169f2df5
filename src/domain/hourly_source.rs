//! Where a coin's hours come from (INTERFACE "A coin": `hourly_source`). One rule, read by
//! the job (which source to fill hours from) and by every view of a coin (what it says), so
//! that the two cannot disagree. It needs only the coin's own columns, never its hours.

use super::PriceSource;

/// What the coin has on the exchange, as far as hours are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeProduct {
    /// No product set, or `FALLBACK_SOURCE=off` (no Coinbase call at all).
    None,
    /// A product is set but its mapping check has not run yet: the next job checks it
    /// before its first candle.
    Unchecked,
    /// The product's closes agree with CoinGecko's: its candles are used.
    Usable,
    /// The product's closes disagree (another asset with the same ticker, or no shared
    /// day): it is not used.
    Unusable,
}

/// The source of a coin's hours: Coinbase's true candles when its product is usable,
/// CoinGecko-built hours when it has none (or none usable), `None` when the coin keeps no
/// hours or while its product awaits the check that decides.
pub fn hourly_source(hourly: bool, product: ExchangeProduct) -> Option<PriceSource> {
    if !hourly {
        return None;
    }
    match product {
        ExchangeProduct::Usable => Some(PriceSource::Coinbase),
        ExchangeProduct::None | ExchangeProduct::Unusable => Some(PriceSource::CoinGecko),
        ExchangeProduct::Unchecked => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_come_from_the_exchange_only_when_its_product_is_usable() {
        use ExchangeProduct::*;
        let table = [
            (true, Usable, Some(PriceSource::Coinbase)),
            (true, None, Some(PriceSource::CoinGecko)),
            (true, Unusable, Some(PriceSource::CoinGecko)),
            (true, Unchecked, Option::None),
            (false, Usable, Option::None),
            (false, None, Option::None),
        ];
        for (hourly, product, source) in table {
            assert_eq!(
                hourly_source(hourly, product),
                source,
                "{hourly} {product:?}"
            );
        }
    }
}
