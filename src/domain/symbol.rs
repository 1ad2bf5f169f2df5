/// The longest ticker: 15 characters of `A-Z 0-9`.
pub const MAX_SYMBOL_LEN: usize = 15;

/// A coin's ticker as users write it and as rows store it: 1 to 15 of `A-Z 0-9`, read
/// case-insensitively. Whether the coin is registered is the registry's business
/// (`coins`); a `Symbol` only promises the shape. Stored inline, so it stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    bytes: [u8; MAX_SYMBOL_LEN],
    len: u8,
}

impl Symbol {
    /// Bitcoin, registered by the first migration and the default of every request.
    pub const BTC: Symbol = Symbol {
        bytes: *b"BTC\0\0\0\0\0\0\0\0\0\0\0\0",
        len: 3,
    };

    /// Reads a ticker: surrounding spaces are ignored and letters upper-cased.
    pub fn parse(s: &str) -> Result<Self, InvalidSymbol> {
        let trimmed = s.trim();
        let valid = (1..=MAX_SYMBOL_LEN).contains(&trimmed.len())
            && trimmed.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(InvalidSymbol(s.chars().take(40).collect()));
        }
        let mut bytes = [0; MAX_SYMBOL_LEN];
        for (slot, b) in bytes.iter_mut().zip(trimmed.bytes()) {
            *slot = b.to_ascii_uppercase();
        }
        Ok(Symbol {
            bytes,
            len: trimmed.len() as u8,
        })
    }

    /// The ticker, upper case.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Default for Symbol {
    fn default() -> Self {
        Symbol::BTC
    }
}

text_newtype!(Symbol, InvalidSymbol);

/// A ticker that breaks the shape rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a symbol: a symbol is 1 to {MAX_SYMBOL_LEN} letters A-Z or digits 0-9, such as BTC or ETH"
)]
pub struct InvalidSymbol(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_parse_case_insensitively() {
        assert_eq!("btc".parse::<Symbol>(), Ok(Symbol::BTC));
        assert_eq!(" BTC ".parse::<Symbol>(), Ok(Symbol::BTC));
        assert_eq!(Symbol::parse("eth2").unwrap().as_str(), "ETH2");
        assert_eq!(Symbol::parse("ABCDEFGHIJKLMNO").unwrap().as_str().len(), 15);
    }

    #[test]
    fn malformed_symbols_are_refused_with_the_rule() {
        for bad in ["", " ", "ABCDEFGHIJKLMNOP", "BT-C", "BTC/USD", "ÉTH", "a b"] {
            let err = Symbol::parse(bad).unwrap_err();
            assert!(err.to_string().contains("1 to 15 letters"), "{bad}: {err}");
        }
    }
}
