//! CoinGecko as a price source: one `market_chart/range` call per window, its points
//! made into one candle per UTC day (see `ingest::aggregate`).

use chrono::Utc;

use super::{PriceSource, SourceError};
use crate::coingecko::{CoinGeckoClient, CoinGeckoError};
use crate::domain::Coin;
use crate::ingest::{DailyCandles, Window, daily_candles};

/// The CoinGecko client, seen as a [`PriceSource`]. Cloning is cheap (the client's
/// budget and counters are shared).
#[derive(Debug, Clone)]
pub struct CoinGecko {
    /// The client every call goes through, with its budget, retries and redaction.
    client: CoinGeckoClient,
    /// `COINGECKO_CHUNK_DAYS`: at most 90 keeps hourly points.
    window_days: u32,
}

impl CoinGecko {
    pub fn new(client: CoinGeckoClient, window_days: u32) -> Self {
        Self {
            client,
            window_days,
        }
    }
}

impl PriceSource for CoinGecko {
    fn name(&self) -> &'static str {
        "CoinGecko"
    }

    fn origin(&self) -> crate::domain::PriceSource {
        crate::domain::PriceSource::CoinGecko
    }

    fn window_days(&self) -> u32 {
        self.window_days
    }

    async fn daily_candles(
        &self,
        coin: &Coin,
        window: Window,
    ) -> Result<DailyCandles, SourceError> {
        // Taken before the call: a day still running when it was asked for is provisional,
        // even when the answer comes after midnight.
        let asked_at = Utc::now();
        let chart = self
            .client
            .market_chart_range(coin.coingecko_id.as_str(), window.from(), window.to())
            .await?;
        Ok(daily_candles(&chart, &window, asked_at))
    }
}

impl From<CoinGeckoError> for SourceError {
    fn from(e: CoinGeckoError) -> Self {
        match e {
            CoinGeckoError::PlanLimit { days, message, .. } => SourceError::PlanLimit {
                reach_days: days,
                message,
            },
            CoinGeckoError::RateLimited { message } => SourceError::RateLimited(message),
            CoinGeckoError::Transient { message } => SourceError::Transient(message),
            CoinGeckoError::Permanent { message, .. } => SourceError::Permanent(message),
            CoinGeckoError::BadAnswer { message, .. } => SourceError::BadAnswer(message),
            CoinGeckoError::OutOfCredits { message, .. } => SourceError::OutOfCredits(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_coingecko_error_keeps_its_kind_its_permanence_and_its_words() {
        let said = || "words".to_owned();
        let errors = [
            CoinGeckoError::Transient { message: said() },
            CoinGeckoError::RateLimited { message: said() },
            CoinGeckoError::PlanLimit {
                status: 401,
                days: 30,
                message: said(),
            },
            CoinGeckoError::Permanent {
                status: Some(400),
                error_code: None,
                unknown_coin: false,
                message: said(),
            },
            CoinGeckoError::BadAnswer {
                status: 200,
                message: said(),
            },
        ];
        let mut kinds = Vec::new();
        for error in errors {
            let permanent = error.is_permanent();
            let source = SourceError::from(error);
            assert_eq!(source.is_permanent(), permanent, "{source:?}");
            assert_eq!(source.to_string(), "words");
            kinds.push(std::mem::discriminant(&source));
        }
        kinds.dedup();
        assert_eq!(kinds.len(), 5, "each kind maps to its own");
        assert!(matches!(
            SourceError::from(CoinGeckoError::PlanLimit {
                status: 401,
                days: 30,
                message: said()
            }),
            SourceError::PlanLimit { reach_days: 30, .. }
        ));
    }
}
