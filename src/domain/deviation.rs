//! The check of a coin's second-source mapping: how far the two sources' closes lie
//! apart on days both cover. A ticker that names another asset on the second source
//! (a collision) shows as a deviation far above any honest difference of price basis.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{ProductId, Symbol};

/// At most this many days both sources cover go into the median: enough that a few
/// odd days do not decide it, few enough for one call of either source.
pub const DEVIATION_SAMPLE_DAYS: usize = 30;

/// The median relative difference of the second source's closes from the primary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deviation {
    /// In percent of the primary source's close, rounded to 4 decimal places.
    pub percent: Decimal,
    /// How many days both sources cover went into it (1 to [`DEVIATION_SAMPLE_DAYS`]).
    pub days: usize,
}

/// How far `second` lies from `primary`, in percent of `primary` (above zero): the
/// largest there is when too large to compute (absurd prices that passed the wire's
/// checks), never a panic.
fn percent_apart(primary: Decimal, second: Decimal) -> Decimal {
    (second - primary)
        .abs()
        .checked_div(primary)
        .and_then(|ratio| ratio.checked_mul(Decimal::ONE_HUNDRED))
        .unwrap_or(Decimal::MAX)
}

/// The median relative difference, in percent, of `second`'s closes from `primary`'s on
/// the earliest [`DEVIATION_SAMPLE_DAYS`] days both have (each slice `(day, close)`, in
/// any order); `None` when they share no day. A primary close that is not above zero
/// cannot be compared and its day is skipped.
pub fn median_deviation(
    primary: &[(NaiveDate, Decimal)],
    second: &[(NaiveDate, Decimal)],
) -> Option<Deviation> {
    let mut shared: Vec<(NaiveDate, Decimal, Decimal)> = primary
        .iter()
        .filter(|(_, close)| *close > Decimal::ZERO)
        .filter_map(|(day, close)| {
            second
                .iter()
                .find(|(other, _)| other == day)
                .map(|(_, other_close)| (*day, *close, *other_close))
        })
        .collect();
    shared.sort_by_key(|(day, _, _)| *day);
    shared.dedup_by_key(|(day, _, _)| *day);
    shared.truncate(DEVIATION_SAMPLE_DAYS);
    let mut differences: Vec<Decimal> = shared
        .iter()
        .map(|(_, primary, second)| percent_apart(*primary, *second))
        .collect();
    if differences.is_empty() {
        return None;
    }
    differences.sort();
    let middle = differences.len() / 2;
    let median = if differences.len() % 2 == 1 {
        differences[middle]
    } else {
        // Halfway from the lower to the higher: their sum could overflow.
        differences[middle - 1] + (differences[middle] - differences[middle - 1]) / Decimal::TWO
    };
    Some(Deviation {
        percent: median.round_dp(4).normalize(),
        days: differences.len(),
    })
}

/// What the check concluded for one coin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingVerdict {
    /// `None` when the sources shared no day.
    pub deviation: Option<Deviation>,
    /// Whether the second source may be used for the coin.
    pub usable: bool,
    /// Why not, in a sentence a person can act on; `None` when usable.
    pub reason: Option<String>,
}

/// Judges a measured deviation against `FALLBACK_MAX_DEVIATION_PERCENT`: usable only when
/// the two sources shared a day and differ by at most `max_percent`.
pub fn judge_mapping(
    symbol: Symbol,
    product: &ProductId,
    deviation: Option<Deviation>,
    max_percent: Decimal,
) -> MappingVerdict {
    let reason = match deviation {
        None => Some(format!(
            "Coinbase's {product} has no close on the days CoinGecko serves for {symbol}, so \
             the mapping could not be checked and the second source is not used for {symbol}; \
             set coinbase_product to the right product, or null."
        )),
        Some(Deviation { percent, days }) if percent > max_percent => Some(format!(
            "Coinbase's {product} closes differ from CoinGecko's {symbol} by a median {percent} % \
             on {days} days both cover, over the limit of {max_percent} % \
             (FALLBACK_MAX_DEVIATION_PERCENT): {product} is probably another asset with the \
             same ticker, so the second source is not used for {symbol}; set coinbase_product \
             to the right product, or null."
        )),
        Some(_) => None,
    };
    MappingVerdict {
        deviation,
        usable: reason.is_none(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dec;

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(u64::from(n))
    }

    /// An audit's finding: closes that pass the wire's checks (finite, above zero) but are
    /// absurdly far apart overflowed the division and panicked the job that checked the
    /// mapping; the second source answering garbage must never fail a job.
    #[test]
    fn closes_too_far_apart_to_compute_are_the_largest_deviation_not_a_panic() {
        let primary = [(day(0), dec("0.000001")), (day(1), dec("0.000001"))];
        let second = [(day(0), dec("1e21")), (day(1), dec("1e21"))];
        let deviation = median_deviation(&primary, &second).expect("two shared days");
        assert_eq!(deviation.percent, Decimal::MAX);
        assert_eq!(deviation.days, 2);
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_difference() {
        let primary = [
            (day(0), dec("100")),
            (day(1), dec("100")),
            (day(2), dec("100")),
        ];
        let second = [
            (day(2), dec("150")),
            (day(0), dec("101")),
            (day(1), dec("98")),
        ];
        let deviation = median_deviation(&primary, &second).unwrap();
        assert_eq!(
            deviation,
            Deviation {
                percent: dec("2"),
                days: 3
            }
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_ones() {
        let primary = [(day(0), dec("200")), (day(1), dec("100"))];
        let second = [(day(0), dec("202")), (day(1), dec("103"))];
        assert_eq!(
            median_deviation(&primary, &second).unwrap().percent,
            dec("2")
        );
    }

    #[test]
    fn only_days_both_cover_count_and_at_most_the_earliest_thirty() {
        let primary: Vec<_> = (0..40).map(|n| (day(n), dec("100"))).collect();
        // Days 0..30 differ by 1 %, the later ones by 50 %; day 5 only on one side.
        let second: Vec<_> = (0..40)
            .filter(|n| *n != 5)
            .map(|n| (day(n), if n <= 30 { dec("101") } else { dec("150") }))
            .collect();
        let deviation = median_deviation(&primary, &second).unwrap();
        assert_eq!(deviation.days, DEVIATION_SAMPLE_DAYS);
        assert_eq!(deviation.percent, dec("1"));
    }

    #[test]
    fn no_shared_day_means_no_deviation() {
        assert_eq!(
            median_deviation(&[(day(0), dec("1"))], &[(day(1), dec("1"))]),
            None
        );
        assert_eq!(
            median_deviation(&[(day(0), dec("0"))], &[(day(0), dec("1"))]),
            None
        );
        assert_eq!(median_deviation(&[], &[]), None);
    }

    #[test]
    fn a_hundredfold_price_is_judged_another_asset_and_says_what_to_do() {
        let symbol = Symbol::parse("SOLX").unwrap();
        let product = ProductId::parse("SOLX-USD").unwrap();
        let primary = [(day(0), dec("1.5"))];
        let second = [(day(0), dec("150"))];
        let deviation = median_deviation(&primary, &second);
        assert_eq!(deviation.unwrap().percent, dec("9900"));
        let verdict = judge_mapping(symbol, &product, deviation, dec("5"));
        assert!(!verdict.usable);
        let reason = verdict.reason.unwrap();
        assert!(
            reason.contains("SOLX-USD") && reason.contains("9900 %"),
            "{reason}"
        );
        assert!(reason.contains("coinbase_product"), "{reason}");
    }

    #[test]
    fn a_deviation_at_the_limit_is_usable_and_above_it_is_not() {
        let symbol = Symbol::parse("BTC").unwrap();
        let product = ProductId::parse("BTC-USD").unwrap();
        let at = |percent: &str| {
            Some(Deviation {
                percent: dec(percent),
                days: 30,
            })
        };
        assert!(judge_mapping(symbol, &product, at("5"), dec("5")).usable);
        assert_eq!(
            judge_mapping(symbol, &product, at("5"), dec("5")).reason,
            None
        );
        assert!(!judge_mapping(symbol, &product, at("5.0001"), dec("5")).usable);
        let unchecked = judge_mapping(symbol, &product, None, dec("5"));
        assert!(!unchecked.usable && unchecked.reason.unwrap().contains("could not be checked"));
    }
}
