//! The fake's market: deterministic BTC prices and volumes, and which timestamps
//! CoinGecko would serve for a range.
//!
//! Everything is a pure function of time (and of the price multiplier), so a test can
//! compute what a window should contain without asking the server.

use std::collections::HashSet;
use std::f64::consts::TAU;

use chrono::{DateTime, NaiveDate, Utc};

/// 2013-04-28 00:00 UTC: CoinGecko's first BTC point (`[1367107200000, 135.3]`).
pub(crate) const GENESIS_MS: i64 = 1_367_107_200_000;
/// 2018-01-30 00:00 UTC: CoinGecko has hourly data from here on, daily points before.
pub(crate) const HOURLY_FROM_MS: i64 = 1_517_270_400_000;
/// Ranges up to this long get hourly points, longer ones daily points.
pub(crate) const HOURLY_MAX_RANGE_SECS: i64 = 90 * 86_400;
pub(crate) const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// How far past the hour an hourly point lands: a few hundred ms to about 50 s, as in
/// CoinGecko's own example (`1704067241331` is 00:00:41.331).
const JITTER_MIN_MS: u64 = 200;
const JITTER_SPAN_MS: u64 = 50_000;

/// Keeps the noise of prices, volumes, rounding and jitter independent of each other.
const PRICE_SALT: u64 = 0x5052_4943_4500_0001;
const VOLUME_SALT: u64 = 0x564f_4c55_4d45_0002;
const ROUND_SALT: u64 = 0x524f_554e_4400_0003;
const JITTER_SALT: u64 = 0x4a49_5454_4552_0004;

/// One served point: time in ms, price, market cap, 24 h volume, as CoinGecko sends them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub at_ms: i64,
    pub price: f64,
    pub market_cap: f64,
    pub volume: f64,
}

/// A coin the fake knows: its CoinGecko id, its first point, and what sets its prices
/// apart from the others'.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeCoin {
    /// CoinGecko's id, as in `/coins/{id}/...`.
    pub id: &'static str,
    /// Its first point, at 00:00 UTC of its first day.
    pub genesis_ms: i64,
    /// Its prices are the reference series times this.
    pub scale: f64,
    /// Keeps its noise independent of the other coins'.
    pub salt: u64,
}

impl FakeCoin {
    /// The first UTC day the fake has a point for.
    pub fn first_day(&self) -> NaiveDate {
        day_of(self.genesis_ms)
    }
}

/// Bitcoin, exactly as the fake served it when it knew only Bitcoin.
pub const BITCOIN: FakeCoin = FakeCoin {
    id: "bitcoin",
    genesis_ms: GENESIS_MS,
    scale: 1.0,
    salt: 0,
};

/// Every coin the fake serves; any other id is "coin not found".
pub const COINS: [FakeCoin; 4] = [
    BITCOIN,
    FakeCoin {
        // 2015-08-07
        id: "ethereum",
        genesis_ms: 1_438_905_600_000,
        scale: 0.05,
        salt: 0x4554_4800,
    },
    FakeCoin {
        // 2020-04-10
        id: "solana",
        genesis_ms: 1_586_476_800_000,
        scale: 0.002,
        salt: 0x534f_4c00,
    },
    FakeCoin {
        // 2013-12-15
        id: "dogecoin",
        genesis_ms: 1_387_065_600_000,
        scale: 0.000_002,
        salt: 0x444f_4745,
    },
];

/// The coin with CoinGecko id `id`, if the fake knows it: one of [`COINS`] or one of
/// the [`listing`]'s.
pub fn coin(id: &str) -> Option<FakeCoin> {
    COINS
        .iter()
        .copied()
        .find(|coin| coin.id == id)
        .or_else(|| {
            listing()
                .iter()
                .map(|listed| listed.coin)
                .find(|coin| coin.id == id)
        })
}

/// How many coins `/coins/markets` lists, by market cap.
pub const LISTED: usize = 600;

/// The rank (from 1) of a listed coin whose ticker is Bitcoin's (`btc`, as a bridged
/// bitcoin's is on CoinGecko): tickers collide, and an import must skip it, not fail.
pub const COLLIDING_RANK: usize = 7;

/// The rank of a listed coin whose ticker is no symbol here (`usd+`, as CoinGecko has).
pub const UNSYMBOLIC_RANK: usize = 9;

/// One coin of the fake's `/coins/markets`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Listed {
    pub coin: FakeCoin,
    /// CoinGecko's ticker, lower case as it sends them.
    pub symbol: &'static str,
    pub name: &'static str,
    /// 1 for the largest market cap.
    pub rank: usize,
}

/// The coins `/coins/markets` lists, largest first: the four of [`COINS`], then
/// generated ones (`top-coin-0005`, ticker `tc5`, from 2021 on), [`LISTED`] in all.
pub fn listing() -> &'static [Listed] {
    static LISTING: std::sync::LazyLock<Vec<Listed>> = std::sync::LazyLock::new(|| {
        let named = [
            ("btc", "Bitcoin"),
            ("eth", "Ethereum"),
            ("sol", "Solana"),
            ("doge", "Dogecoin"),
        ];
        let mut listing: Vec<Listed> = COINS
            .iter()
            .zip(named)
            .enumerate()
            .map(|(i, (coin, (symbol, name)))| Listed {
                coin: *coin,
                symbol,
                name,
                rank: i + 1,
            })
            .collect();
        for rank in listing.len() + 1..=LISTED {
            // Leaked once, for the life of the process: ids and names are `&'static`.
            let (symbol, name): (&'static str, &'static str) = match rank {
                COLLIDING_RANK => ("btc", "Bridged Bitcoin"),
                UNSYMBOLIC_RANK => ("usd+", "USD+"),
                _ => (
                    format!("tc{rank}").leak(),
                    format!("Top Coin {rank}").leak(),
                ),
            };
            listing.push(Listed {
                coin: FakeCoin {
                    id: format!("top-coin-{rank:04}").leak(),
                    // 2021-01-01 plus a day per rank.
                    genesis_ms: 1_609_459_200_000 + rank as i64 * DAY_MS,
                    scale: 1.0 / rank as f64,
                    salt: 0x544f_5000_0000 + rank as u64,
                },
                symbol,
                name,
                rank,
            });
        }
        listing
    });
    &LISTING
}

/// The market as the fake serves it right now, for one coin.
#[derive(Debug, Clone)]
pub(crate) struct Market {
    /// Multiplies every price, cap and volume (1.0 = the reference series).
    pub multiplier: f64,
    /// Days with no point at all.
    pub missing_days: HashSet<NaiveDate>,
    /// Whose prices these are.
    pub coin: FakeCoin,
}

impl Default for Market {
    /// Bitcoin's reference series, every day served.
    fn default() -> Self {
        Market {
            multiplier: 1.0,
            missing_days: HashSet::new(),
            coin: BITCOIN,
        }
    }
}

impl Market {
    /// The same market, for another coin.
    pub(crate) fn of(&self, coin: FakeCoin) -> Market {
        Market {
            coin,
            ..self.clone()
        }
    }

    /// What `/market_chart/range?from=&to=` answers (bounds in ms, inclusive), `now_ms`
    /// being the present: granularity by range length, nothing before the genesis or
    /// after now, plus a live point at `now_ms` when the range reaches it.
    pub(crate) fn range(&self, from_ms: i64, to_ms: i64, now_ms: i64) -> Vec<Sample> {
        let hourly = to_ms - from_ms <= HOURLY_MAX_RANGE_SECS * 1000;
        let mut times = self.times(from_ms, to_ms.min(now_ms), hourly);
        let live = from_ms <= now_ms
            && now_ms <= to_ms
            && now_ms >= self.coin.genesis_ms
            && !self.is_missing(now_ms)
            && times.last().is_none_or(|last| *last < now_ms);
        if live {
            times.push(now_ms);
        }
        times.into_iter().map(|at_ms| self.sample(at_ms)).collect()
    }

    /// Every timestamp the fake has in `[from_ms, to_ms]` at one granularity, sorted.
    pub(crate) fn times(&self, from_ms: i64, to_ms: i64, hourly: bool) -> Vec<i64> {
        let from_ms = from_ms.max(self.coin.genesis_ms);
        if from_ms > to_ms {
            return Vec::new();
        }
        let daily_until = if hourly { HOURLY_FROM_MS } else { i64::MAX };
        let first_day = from_ms.div_euclid(DAY_MS);
        let last_day = to_ms.div_euclid(DAY_MS);
        let days = (first_day..=last_day)
            .map(|day| day * DAY_MS)
            .filter(|at| *at >= from_ms && *at < daily_until);
        let mut times: Vec<i64> = days.collect();
        if hourly && to_ms >= HOURLY_FROM_MS {
            let first_hour = from_ms.max(HOURLY_FROM_MS).div_euclid(HOUR_MS);
            let last_hour = to_ms.div_euclid(HOUR_MS);
            times.extend(
                (first_hour..=last_hour)
                    .map(|hour| hour * HOUR_MS + hour_jitter_ms(hour))
                    .filter(|at| (from_ms..=to_ms).contains(at)),
            );
        }
        times.retain(|at| !self.is_missing(*at));
        times
    }

    fn is_missing(&self, at_ms: i64) -> bool {
        !self.missing_days.is_empty() && self.missing_days.contains(&day_of(at_ms))
    }

    pub(crate) fn sample(&self, at_ms: i64) -> Sample {
        let price = self.price(at_ms);
        Sample {
            at_ms,
            price,
            market_cap: round_like_coingecko(
                price * circulating_supply(at_ms) / self.coin.scale,
                at_ms ^ 1,
            ),
            volume: self.volume(at_ms),
        }
    }

    /// The price served at `at_ms`, exactly as it goes on the wire.
    pub(crate) fn price(&self, at_ms: i64) -> f64 {
        let coin = self.coin;
        round_like_coingecko(
            reference_price(at_ms, coin.salt) * coin.scale * self.multiplier,
            at_ms,
        )
    }

    /// The 24 h volume served at `at_ms`, exactly as it goes on the wire.
    pub(crate) fn volume(&self, at_ms: i64) -> f64 {
        let salt = self.coin.salt;
        round_like_coingecko(reference_volume(at_ms, salt) * self.multiplier, at_ms ^ 2)
    }
}

pub(crate) fn day_of(at_ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .expect("the fake's timestamps are within chrono's range")
        .date_naive()
}

/// Days since the genesis, fractional.
fn age_in_days(at_ms: i64) -> f64 {
    (at_ms - GENESIS_MS) as f64 / DAY_MS as f64
}

/// 135.3 at the genesis, growing about 500-fold over eleven years, with a four-year
/// cycle, a monthly wave, a daily wave and hourly noise of ±0.4 %. Always positive.
fn reference_price(at_ms: i64, salt: u64) -> f64 {
    let days = age_in_days(at_ms);
    let trend = 135.3 * (days * 500f64.ln() / 4_000.0).exp();
    let cycle = 1.0 + 0.3 * (TAU * days / 1_400.0).sin();
    let month = 1.0 + 0.04 * (TAU * days / 29.5).sin();
    let intraday = 1.0 + 0.006 * (TAU * days).sin();
    let noise = 1.0 + 0.004 * unit_noise(at_ms.div_euclid(HOUR_MS) as u64 ^ PRICE_SALT ^ salt);
    trend * cycle * month * intraday * noise
}

/// Tens of millions of USD a day at the start, tens of billions later; always positive.
fn reference_volume(at_ms: i64, salt: u64) -> f64 {
    let days = age_in_days(at_ms);
    let trend = 1.0e7 * (days * 3_000f64.ln() / 4_000.0).exp();
    let season = 1.0 + 0.35 * (TAU * days / 90.0).sin();
    let intraday = 1.0 + 0.1 * (TAU * days).sin();
    let noise = 1.0 + 0.05 * unit_noise(at_ms.div_euclid(HOUR_MS) as u64 ^ VOLUME_SALT ^ salt);
    trend * season * intraday * noise
}

fn circulating_supply(at_ms: i64) -> f64 {
    (11.0e6 + 2_000.0 * age_in_days(at_ms)).min(21.0e6)
}

/// CoinGecko sends at most 15 significant digits (`69702.3087473573`), and some values
/// are round cents. Fifteen digits also read back exactly as the same decimal.
fn round_like_coingecko(value: f64, at_ms: i64) -> f64 {
    // Cents only for values of a dollar or more: a coin worth a fraction of a cent would
    // round to a price of zero, which CoinGecko never sends.
    if value >= 1.0 && splitmix64(at_ms as u64 ^ ROUND_SALT).is_multiple_of(4) {
        (value * 100.0).round() / 100.0
    } else {
        format!("{value:.14e}")
            .parse()
            .expect("a formatted float parses")
    }
}

fn hour_jitter_ms(hour: i64) -> i64 {
    let jitter = JITTER_MIN_MS + splitmix64(hour as u64 ^ JITTER_SALT) % JITTER_SPAN_MS;
    i64::try_from(jitter).expect("under a minute")
}

/// A deterministic number in [-1, 1).
fn unit_noise(seed: u64) -> f64 {
    let bits = splitmix64(seed) >> 11;
    bits as f64 / (1u64 << 52) as f64 - 1.0
}

/// SplitMix64: a good, tiny, stable hash, so the fake serves the same data on every run
/// and every platform (std's hasher is randomly seeded).
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_millis()
    }

    const FAR_FUTURE: i64 = i64::MAX / 2;

    #[test]
    fn the_constants_are_the_dates_they_claim() {
        assert_eq!(GENESIS_MS, ms(2013, 4, 28, 0));
        assert_eq!(HOURLY_FROM_MS, ms(2018, 1, 30, 0));
    }

    #[test]
    fn short_ranges_are_hourly_with_jitter_past_the_hour() {
        let times = Market::default().times(ms(2024, 1, 1, 0), ms(2024, 1, 2, 0), true);
        assert_eq!(times.len(), 24, "the 2024-01-02 00:xx point lies past `to`");
        for (hour, at) in times.iter().enumerate() {
            let past = at - ms(2024, 1, 1, 0) - hour as i64 * HOUR_MS;
            assert!((200..50_200).contains(&past), "{past} ms past the hour");
        }
    }

    #[test]
    fn long_ranges_are_daily_at_midnight() {
        let samples = Market::default().range(ms(2020, 1, 1, 0), ms(2020, 6, 1, 0), FAR_FUTURE);
        assert_eq!(samples.len(), 153);
        assert!(samples.iter().all(|s| s.at_ms % DAY_MS == 0));
    }

    #[test]
    fn before_hourly_data_short_ranges_are_daily() {
        let times = Market::default().times(ms(2018, 1, 28, 0), ms(2018, 1, 31, 0), true);
        let daily: Vec<_> = times.iter().filter(|at| **at < HOURLY_FROM_MS).collect();
        assert_eq!(daily, vec![&ms(2018, 1, 28, 0), &ms(2018, 1, 29, 0)]);
        assert_eq!(times.len(), 2 + 24);
    }

    #[test]
    fn nothing_before_the_genesis() {
        assert!(
            Market::default()
                .range(0, GENESIS_MS - 1, FAR_FUTURE)
                .is_empty()
        );
        let first = Market::default().range(0, GENESIS_MS + 200 * DAY_MS, FAR_FUTURE)[0];
        assert_eq!(first.at_ms, GENESIS_MS);
        assert!((first.price - 135.3).abs() < 1.0, "{}", first.price);
    }

    #[test]
    fn a_range_reaching_now_ends_with_a_live_point() {
        let now = ms(2024, 4, 1, 15) + 82_000;
        let samples = Market::default().range(ms(2024, 3, 31, 0), now + DAY_MS, now);
        let times: Vec<i64> = samples.iter().map(|s| s.at_ms).collect();
        assert_eq!(*times.last().unwrap(), now);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(times.iter().all(|at| *at <= now));
    }

    #[test]
    fn missing_days_have_no_points() {
        let mut market = Market::default();
        market
            .missing_days
            .insert(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap());
        let times = market.times(ms(2024, 1, 1, 0), ms(2024, 1, 4, 0) - 1, true);
        assert_eq!(times.len(), 48);
        assert!(
            times
                .iter()
                .all(|at| day_of(*at) != NaiveDate::from_ymd_opt(2024, 1, 2).unwrap())
        );
    }

    #[test]
    fn values_are_positive_and_read_back_as_sent() {
        let market = Market::default();
        for at in market
            .times(GENESIS_MS, ms(2026, 1, 1, 0), false)
            .into_iter()
            .step_by(7)
        {
            let sample = market.sample(at);
            assert!(sample.price > 0.0 && sample.volume > 0.0 && sample.market_cap > 0.0);
            for value in [sample.price, sample.volume, sample.market_cap] {
                let wire = serde_json::to_string(&value).unwrap();
                let read: f64 = serde_json::from_str(&wire).unwrap();
                assert_eq!(read.to_bits(), value.to_bits(), "{wire}");
                assert!(
                    value.to_string().trim_start_matches(['0', '.']).len() <= 16,
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn each_coin_starts_on_its_own_first_day_with_its_own_prices() {
        let ethereum = coin("ethereum").unwrap();
        assert_eq!(
            ethereum.first_day(),
            NaiveDate::from_ymd_opt(2015, 8, 7).unwrap()
        );
        let market = Market::default().of(ethereum);
        let first = market.range(0, ethereum.genesis_ms + 200 * DAY_MS, FAR_FUTURE)[0];
        assert_eq!(first.at_ms, ethereum.genesis_ms);
        let at = ms(2024, 1, 1, 0);
        assert_ne!(market.price(at), market_of_bitcoin_price(at));
        assert!(coin("bitcorn").is_none());
        for coin in COINS {
            assert_eq!(coin.genesis_ms % DAY_MS, 0, "{}", coin.id);
        }
    }

    fn market_of_bitcoin_price(at: i64) -> f64 {
        Market::default().price(at)
    }

    #[test]
    fn every_coin_has_prices_above_zero_from_its_first_day() {
        for coin in COINS {
            let market = Market::default().of(coin);
            for at in market
                .times(coin.genesis_ms, ms(2026, 1, 1, 0), false)
                .into_iter()
                .step_by(3)
            {
                let sample = market.sample(at);
                assert!(
                    sample.price > 0.0 && sample.volume > 0.0,
                    "{} at {at}",
                    coin.id
                );
            }
        }
    }

    #[test]
    fn the_multiplier_changes_every_price() {
        let shifted = Market {
            multiplier: 1.1,
            ..Market::default()
        };
        let at = ms(2024, 1, 1, 0);
        assert!(shifted.price(at) > Market::default().price(at) * 1.09);
    }
}
