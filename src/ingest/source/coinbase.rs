//! Coinbase Exchange as a price source, the second one: one `/products/{product}/candles`
//! call per window of at most 300 days, its candles already daily (see `coinbase::wire`).
//! Asked only for days older than CoinGecko's plan serves, of a coin whose product passed
//! the mapping check (see `ingest::fallback`).

use super::{PriceSource, SourceError};
use crate::coinbase::{CandleWindow, CoinbaseClient, CoinbaseError, MAX_CANDLES_PER_CALL};
use crate::domain::{self, Coin, ProductId};
use crate::ingest::{DailyCandles, Window};

/// The Coinbase client and the product of the job's coin, seen as a [`PriceSource`].
#[derive(Debug, Clone)]
pub struct Coinbase {
    /// The client every call goes through, with its own budget, retries and redaction.
    client: CoinbaseClient,
    /// The coin's checked product (`BTC-USD`): Coinbase knows products, not coins.
    product: ProductId,
}

impl Coinbase {
    pub fn new(client: CoinbaseClient, product: ProductId) -> Self {
        Self { client, product }
    }
}

impl PriceSource for Coinbase {
    fn name(&self) -> &'static str {
        "Coinbase Exchange"
    }

    fn origin(&self) -> domain::PriceSource {
        domain::PriceSource::Coinbase
    }

    fn window_days(&self) -> u32 {
        MAX_CANDLES_PER_CALL
    }

    async fn daily_candles(
        &self,
        _coin: &Coin,
        window: Window,
    ) -> Result<DailyCandles, SourceError> {
        let window = CandleWindow::new(window.start, window.end).ok_or_else(|| {
            SourceError::Permanent(format!(
                "{}..{} is longer than the {MAX_CANDLES_PER_CALL} days Coinbase Exchange answers \
                 in one call; this is a bug of price-history: please report it.",
                window.start, window.end
            ))
        })?;
        let candles = self.client.candles(&self.product, window).await?;
        Ok(DailyCandles {
            candles,
            ..DailyCandles::default()
        })
    }
}

impl From<CoinbaseError> for SourceError {
    fn from(e: CoinbaseError) -> Self {
        match e {
            CoinbaseError::Unavailable { message } => SourceError::Transient(message),
            CoinbaseError::Refused { message, .. } => SourceError::Permanent(message),
            CoinbaseError::BadAnswer { message } => SourceError::BadAnswer(message),
        }
    }
}
