//! The sentences that say what is missing and why: the days older than the plan serves
//! (and what the second source made of them), and the gaps, each explained by what
//! happened to it.

use chrono::NaiveDate;

use super::hours::{HourSource, HourWork};
use super::report::{SecondSourceEnd, Shortfalls};
use crate::domain::PlanReach;
use crate::ingest::MIN_HOURLY_POINTS;
use crate::store::{empty_days, gaps};

/// What to say of `count` days from `first` to `last` older than the plan serves (the
/// reach, from `served_from` on), and the way to them.
pub(super) fn out_of_plan_message(
    count: usize,
    (first, last): (NaiveDate, NaiveDate),
    reach: PlanReach,
    served_from: NaiveDate,
) -> String {
    format!(
        "{count} day(s) from {first} to {last} are older than CoinGecko's plan serves (the past {} days, \
         from {served_from} on) and were not asked for; a paid key reaches further: set \
         COINGECKO_API_KEY and COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3 (and \
         COINGECKO_HISTORY_DAYS=0), then run the job again.",
        reach.limit_days().unwrap_or_default(),
    )
}

/// What to say of the second source, when days older than the plan serves are still missing.
pub(super) fn second_source_message(end: &SecondSourceEnd) -> String {
    match end {
        SecondSourceEnd::Asked => "Coinbase Exchange, the second source, has no candle for them \
            either (days without trades, or before its product's first candle)."
            .to_owned(),
        SecondSourceEnd::Failed { why, retry: true } => format!(
            "Coinbase Exchange, the second source, could not fill them: {} Run the job again \
             later to fill them from it.",
            why.trim_end()
        ),
        SecondSourceEnd::Failed { why, retry: false } => format!(
            "Coinbase Exchange, the second source, could not fill them: {}",
            why.trim_end()
        ),
        SecondSourceEnd::Unusable(reason) => format!(
            "The second source (Coinbase Exchange) is not used for this coin: {}",
            reason.trim_end()
        ),
        SecondSourceEnd::Unchecked(from) => format!(
            "The second source (Coinbase Exchange) was not used: its prices are first compared \
             with CoinGecko's on the earliest days the plan serves (from {from} on), and none is \
             stored yet; run a job that includes them, then this one again."
        ),
    }
}

/// What to say of days the plan serves that are still missing: each day explained by
/// what happened to it (not over, too few points, a failed call, or no data at all).
pub(super) fn gap_message(
    gap_dates: &[NaiveDate],
    today: NaiveDate,
    shortfalls: &Shortfalls,
) -> String {
    let mut message = format!(
        "{} day(s) still have no final price: {}.",
        gap_dates.len(),
        describe_days(gap_dates)
    );
    let (not_over, past): (Vec<NaiveDate>, Vec<NaiveDate>) =
        gap_dates.iter().partition(|day| **day >= today);
    if !not_over.is_empty() {
        message.push_str(" Today (UTC) is not over, so its row is provisional; run the job again after 00:40 UTC tomorrow to complete it.");
    }
    let (thin, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past
        .into_iter()
        .partition(|day| shortfalls.too_thin.contains_key(day));
    if !thin.is_empty() {
        message.push_str(&too_thin_sentence(&thin, shortfalls));
    }
    let (rested, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past
        .into_iter()
        .partition(|day| shortfalls.rested.binary_search(day).is_ok());
    if !rested.is_empty() {
        message.push_str(&rested_sentence(&rested));
    }
    let (failed, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past.into_iter().partition(|day| {
        shortfalls
            .failed_fills
            .iter()
            .any(|(window, _)| window.contains(*day))
    });
    if !failed.is_empty() {
        message.push_str(&failed_fills_sentences(shortfalls));
    }
    let (unasked, past): (Vec<NaiveDate>, Vec<NaiveDate>) = past.into_iter().partition(|day| {
        shortfalls.out_of_credits.is_some()
            && !shortfalls
                .answered
                .iter()
                .any(|window| window.contains(*day))
    });
    if !unasked.is_empty() {
        message.push_str(&format!(
            " {} ({} day(s)) were not asked of CoinGecko once the month's credits ran out; a job \
             after they reset fetches them.",
            describe_days(&unasked),
            unasked.len()
        ));
    }
    if !past.is_empty() {
        let others = if past.len() == gap_dates.len() {
            "these"
        } else {
            "the other"
        };
        // Asked twice only when the gap fill ran, which credits running out prevent.
        let again = match shortfalls.out_of_credits {
            Some(_) => "",
            None => " even after a second try",
        };
        message.push_str(&format!(
            " CoinGecko returned no data for {others} {} day(s){again}; run the job again later to retry them.",
            past.len()
        ));
    }
    message
}

/// The days a scheduled job did not ask for, CoinGecko having answered them empty before.
fn rested_sentence(rested: &[NaiveDate]) -> String {
    format!(
        " CoinGecko answered {} ({} day(s)) with no data (or too few points) at least {} \
         times, a day apart and days after they ended, so the schedule does not ask for them \
         again until {} days after the last answer; a job asked for with POST \
         /api/v1/ingestion-jobs or `backfill` asks at once.",
        describe_days(rested),
        rested.len(),
        empty_days::ANSWERS_TO_REST,
        empty_days::REST_DAYS,
    )
}

/// The days CoinGecko sent too few points for, with the fewest and the rule.
fn too_thin_sentence(thin: &[NaiveDate], shortfalls: &Shortfalls) -> String {
    let fewest = thin
        .iter()
        .filter_map(|day| shortfalls.too_thin.get(day))
        .min()
        .copied()
        .unwrap_or_default();
    format!(
        " CoinGecko sent too few points for {} ({} day(s), as few as {fewest}): a day of hourly data is stored from at least {MIN_HOURLY_POINTS} points, so they were not stored; run the job again later to retry them.",
        describe_days(thin),
        thin.len(),
    )
}

/// The gap-fill calls that failed, the first three with why, the rest counted.
fn failed_fills_sentences(shortfalls: &Shortfalls) -> String {
    let mut sentences = String::new();
    for (window, why) in shortfalls.failed_fills.iter().take(3) {
        sentences.push_str(&format!(
            " Asking CoinGecko again for {}..{} failed: {}.",
            window.start,
            window.end,
            why.trim_end_matches('.')
        ));
    }
    if shortfalls.failed_fills.len() > 3 {
        sentences.push_str(&format!(
            " {} more call(s) failed the same way.",
            shortfalls.failed_fills.len() - 3
        ));
    }
    sentences.push_str(" Run the job again once that is fixed.");
    sentences
}

/// Days as runs, e.g. `2024-01-01..2024-01-03, 2024-02-10`, at most a handful shown.
pub(super) fn describe_days(days: &[NaiveDate]) -> String {
    const SHOWN: usize = 10;
    let runs = gaps::runs(days);
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect();
    if runs.len() > SHOWN {
        parts.push(format!("and {} more run(s)", runs.len() - SHOWN));
    }
    parts.join(", ")
}

/// What to say of an hourly coin's hours still `missing` at the end, and of the candles
/// refused on the way.
pub(super) fn hours_message(missing: i64, work: &HourWork) -> String {
    let mut message = if missing > 0 {
        format!("{missing} hour(s) of the range still have no final candle.")
    } else {
        String::new()
    };
    if let Some(why) = &work.failed {
        message.push_str(&format!(
            " Coinbase Exchange gave no hourly candles: {} Run the job again later to fill them.",
            why.trim_end()
        ));
    } else if work.source == HourSource::Undecided {
        message.push_str(
            " The coin's Coinbase product has not been checked against CoinGecko yet, so its \
             hours were not fetched; a job that stores days the plan serves checks it.",
        );
    }
    if work.refused_count > 0 {
        let named: Vec<String> = work.refused.iter().map(ToString::to_string).collect();
        message.push_str(&format!(
            " {} hourly candle(s) from Coinbase Exchange were refused, their hours left missing: {}{}.",
            work.refused_count,
            named.join("; "),
            if work.refused_count > named.len() {
                format!("; and {} more", work.refused_count - named.len())
            } else {
                String::new()
            }
        ));
    }
    message.trim_start().to_owned()
}
