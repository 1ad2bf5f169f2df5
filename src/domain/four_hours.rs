//! The `4h` timeframe: candles made on read from the stored hours of each block starting at
//! 00, 04, 08, 12, 16 or 20 UTC, never stored themselves, so they can never disagree with
//! the hours. A block holds the hours that are stored (1 to 4), and says how many.
//!
//! The store computes blocks in SQL (`store::hourly_prices::four_hour_blocks`), so that a
//! read moves a quarter of the rows; [`FourHourCandle::of_hours`] is the same rule over
//! hours in memory, and the store's tests hold the two equal.

use rust_decimal::Decimal;

use super::{Hour, HourlyCandle, PriceSource};

/// Where a block's hours came from: one source when all agree, else `mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockSource {
    One(PriceSource),
    Mixed,
}

/// A block source no read writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a block's source: one of coingecko, coinbase, mixed")]
pub struct UnknownBlockSource(pub String);

impl BlockSource {
    /// Every block source, as [`crate::domain::PriceSource::ALL`] orders the sources.
    pub const ALL: [BlockSource; 3] = [
        BlockSource::One(PriceSource::CoinGecko),
        BlockSource::One(PriceSource::Coinbase),
        BlockSource::Mixed,
    ];

    /// As the API and the files spell it: `coinbase`, `coingecko` or `mixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockSource::One(source) => source.as_str(),
            BlockSource::Mixed => "mixed",
        }
    }
}

stored_as_text!(BlockSource, UnknownBlockSource);

/// One `4h` candle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourHourCandle {
    /// The block's first hour: 00, 04, 08, 12, 16 or 20 UTC.
    pub time: Hour,
    /// The open of its first stored hour.
    pub open: Decimal,
    /// The highest high of its hours.
    pub high: Decimal,
    /// The lowest low of its hours.
    pub low: Decimal,
    /// The close of its last stored hour.
    pub close: Decimal,
    /// Its hours' volumes summed, in USD.
    pub volume: Decimal,
    pub source: BlockSource,
    /// Whether any of its hours is disputed.
    pub disputed: bool,
    /// Whether any of its hours is provisional (not over when fetched).
    pub provisional: bool,
    /// How many of its four hours are stored: 1 to 4.
    pub hours: u8,
}

impl FourHourCandle {
    /// The blocks of `hours` (in any order; one candle per hour), ascending.
    pub fn of_hours(hours: &[HourlyCandle]) -> Vec<FourHourCandle> {
        let mut sorted: Vec<&HourlyCandle> = hours.iter().collect();
        sorted.sort_by_key(|h| h.hour);
        let mut blocks: Vec<FourHourCandle> = Vec::new();
        for hour in sorted {
            let time = hour.hour.block_start();
            match blocks.last_mut() {
                Some(block) if block.time == time => block.take(hour),
                _ => blocks.push(FourHourCandle {
                    time,
                    open: hour.open,
                    high: hour.high,
                    low: hour.low,
                    close: hour.close,
                    volume: hour.volume,
                    source: BlockSource::One(hour.source),
                    disputed: hour.check.is_some_and(|c| c.disputed),
                    provisional: hour.provisional,
                    hours: 1,
                }),
            }
        }
        blocks
    }

    /// Adds the block's next hour.
    fn take(&mut self, hour: &HourlyCandle) {
        self.high = self.high.max(hour.high);
        self.low = self.low.min(hour.low);
        self.close = hour.close;
        // Saturating: two absurd volumes that passed the wire's checks must not panic a read.
        self.volume = self.volume.saturating_add(hour.volume);
        if self.source != BlockSource::One(hour.source) {
            self.source = BlockSource::Mixed;
        }
        self.disputed |= hour.check.is_some_and(|c| c.disputed);
        self.provisional |= hour.provisional;
        self.hours += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CheckPoint, DisputeRule, HourParts};

    fn dec(n: i64) -> Decimal {
        Decimal::from(n)
    }

    /// 2024-01-01T00:00:00Z plus `n` hours.
    fn hour(n: i64) -> Hour {
        Hour::from_unix(1_704_067_200 + n * 3_600).unwrap()
    }

    fn candle(n: i64, source: PriceSource, price: i64) -> HourlyCandle {
        HourlyCandle::new(HourParts {
            hour: hour(n),
            open: dec(price),
            high: dec(price + 2),
            low: dec(price - 1),
            close: dec(price + 1),
            volume: dec(10 * n + 1),
            source,
            points: (source == PriceSource::CoinGecko).then_some(1),
            provisional: false,
            check: None,
        })
        .unwrap()
    }

    #[test]
    fn a_full_block_takes_first_open_last_close_extremes_and_summed_volume() {
        let hours: Vec<HourlyCandle> = [(3, 50), (0, 100), (2, 80), (1, 120)]
            .into_iter()
            .map(|(n, price)| candle(n, PriceSource::Coinbase, price))
            .collect();
        let blocks = FourHourCandle::of_hours(&hours);
        assert_eq!(
            blocks,
            vec![FourHourCandle {
                time: hour(0),
                open: dec(100),
                high: dec(122),
                low: dec(49),
                close: dec(51),
                volume: dec(1 + 11 + 21 + 31),
                source: BlockSource::One(PriceSource::Coinbase),
                disputed: false,
                provisional: false,
                hours: 4,
            }]
        );
    }

    #[test]
    fn partial_blocks_say_how_many_hours_they_hold_and_blocks_split_at_every_fourth_hour() {
        let hours = vec![
            candle(2, PriceSource::Coinbase, 10),
            candle(3, PriceSource::Coinbase, 20),
            candle(4, PriceSource::Coinbase, 30),
            candle(11, PriceSource::Coinbase, 40),
        ];
        let blocks = FourHourCandle::of_hours(&hours);
        let shape: Vec<(Hour, u8, Decimal, Decimal)> = blocks
            .iter()
            .map(|b| (b.time, b.hours, b.open, b.close))
            .collect();
        assert_eq!(
            shape,
            vec![
                (hour(0), 2, dec(10), dec(21)),
                (hour(4), 1, dec(30), dec(31)),
                (hour(8), 1, dec(40), dec(41)),
            ]
        );
    }

    #[test]
    fn a_block_of_two_sources_is_mixed_and_one_disputed_hour_disputes_it() {
        let rule = DisputeRule::new(dec(5));
        let disputed = candle(5, PriceSource::Coinbase, 100)
            .with_check(
                CheckPoint {
                    at: hour(5).start(),
                    price: dec(50),
                },
                rule,
            )
            .unwrap();
        let hours = vec![
            candle(4, PriceSource::CoinGecko, 100),
            disputed,
            candle(8, PriceSource::CoinGecko, 100),
        ];
        let blocks = FourHourCandle::of_hours(&hours);
        assert_eq!(blocks[0].source, BlockSource::Mixed);
        assert_eq!(blocks[0].source.to_string(), "mixed");
        assert!(blocks[0].disputed);
        assert_eq!(blocks[1].source, BlockSource::One(PriceSource::CoinGecko));
        assert!(!blocks[1].disputed);
        assert!(FourHourCandle::of_hours(&[]).is_empty());
    }
}
