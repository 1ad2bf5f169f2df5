//! Missing runs and coverage in hours: exact runs, never an hour without trades, never an
//! hour outside the range asked about.

use std::collections::HashSet;

use price_history::store::hourly_coverage::{self, MAX_LISTED_RUNS};
use price_history::store::hours_without_trades;

use crate::support::Churn;

use super::*;

/// Stores BTC's hours `first..first + n` from Coinbase, in windows of 300 as a job would.
async fn store_run(pool: &PgPool, first: i64, n: i64) {
    for window in coinbase_hours(first..first + n).chunks(300) {
        write(pool, window, false).await;
    }
}

/// BTC's missing runs in `range`, as [`shape`]s.
async fn runs_of(pool: &PgPool, symbol: Symbol, range: HourRange) -> Vec<(i64, i64)> {
    let runs = hourly_coverage::missing_runs(pool, symbol, range)
        .await
        .expect("the runs read");
    shape(&runs)
}

/// The runs as `(offset of their first hour from hour 0, hours)`.
fn shape(runs: &[HourRange]) -> Vec<(i64, i64)> {
    runs.iter()
        .map(|r| (hour(0).hours_until(r.first()), r.hours()))
        .collect()
}

#[tokio::test]
async fn holes_of_1_30_and_700_hours_are_found_exactly_and_hours_without_trades_never_are() {
    let db = database().await;
    // 1,000 hours with holes of 1 (hour 100), 30 (200..230) and 700 (300..1000); hours
    // 500..520 inside the big hole and 50..53 are without trades; hour 60 is provisional.
    let range = hours(0, 1_000);
    for (first, end) in [(0, 50), (53, 100), (101, 200), (230, 300)] {
        store_run(&db.pool, first, end - first).await;
    }
    quiet(&db.pool, (50..53).chain(500..520)).await;
    write(&db.pool, &[provisional(coinbase(60, 10))], true).await;

    let runs = hourly_coverage::missing_runs(&db.pool, Symbol::BTC, range)
        .await
        .unwrap();

    let expected = vec![(60, 1), (100, 1), (200, 30), (300, 200), (520, 480)];
    assert_eq!(shape(&runs), expected);
    let calls: usize = runs.iter().map(|run| run.windows(300).len()).sum();
    assert_eq!(
        calls,
        1 + 1 + 1 + 1 + 2,
        "one call per run, split at 300 hours"
    );
    let missing = hourly_coverage::missing_hours(&db.pool, Symbol::BTC, range)
        .await
        .unwrap();
    assert_eq!(missing, 1 + 1 + 30 + 200 + 480);
    // Without the hours without trades, those holes are missing too, the big one whole.
    sql(&db.pool, "DELETE FROM hours_without_trades").await;
    assert_eq!(
        runs_of(&db.pool, Symbol::BTC, range).await,
        vec![(50, 3), (60, 1), (100, 1), (200, 30), (300, 700)]
    );
}

#[tokio::test]
async fn a_range_with_nothing_stored_is_one_run_and_a_full_one_has_none() {
    let db = database().await;
    let range = hours(10, 48);
    assert_eq!(runs_of(&db.pool, Symbol::BTC, range).await, vec![(10, 48)]);

    store_run(&db.pool, 0, 100).await;

    assert!(runs_of(&db.pool, Symbol::BTC, range).await.is_empty());
    // Missing hours at the end of a range make a run that ends at its edge.
    assert_eq!(
        runs_of(&db.pool, Symbol::BTC, hours(90, 20)).await,
        vec![(100, 10)]
    );
    assert_eq!(
        runs_of(&db.pool, eth(), range).await,
        vec![(10, 48)],
        "BTC's hours are not ETH's"
    );
}

#[tokio::test]
async fn hours_before_the_products_first_candle_are_left_out_by_the_range_asked_about() {
    let db = database().await;
    store_run(&db.pool, 100, 50).await;
    let product = price_history::domain::ProductId::parse("BTC-USD").unwrap();
    price_history::store::second_source::learn_candles_from(
        &db.pool,
        Symbol::BTC,
        &product,
        hour(100),
    )
    .await
    .unwrap();
    let coin = price_history::store::hourly_coins::get(&db.pool, Symbol::BTC)
        .await
        .unwrap()
        .unwrap();

    let asked = hours(0, 200);
    let fetchable = asked.from_hour(coin.coinbase_hours_from.unwrap()).unwrap();

    assert_eq!(
        runs_of(&db.pool, Symbol::BTC, fetchable).await,
        vec![(150, 50)]
    );
    assert_eq!(
        runs_of(&db.pool, Symbol::BTC, asked).await,
        vec![(0, 100), (150, 50)]
    );
}

#[tokio::test]
async fn coverage_in_hours_counts_what_is_stored_by_source_without_trades_missing_and_disputed() {
    let db = database().await;
    // 48 hours: 30 from Coinbase (two of them disputed), 10 CoinGecko-built, 3 without
    // trades, 1 provisional, 4 missing (hours 44..48).
    let mut candles: Vec<HourlyCandle> = (0..30).map(|n| coinbase(n, 100)).collect();
    candles.extend((30..40).map(|n| coingecko(n, 100)));
    candles.push(provisional(coinbase(43, 100)));
    write(&db.pool, &candles, false).await;
    attach(
        &db.pool,
        &[point(3, "50"), point(4, "500"), point(5, "100")],
    )
    .await;
    quiet(&db.pool, 40..43).await;

    let coverage = hourly_coverage::coverage(&db.pool, Symbol::BTC, Some(hours(0, 48)))
        .await
        .unwrap();

    assert_eq!(coverage.total_expected_hours, 48);
    assert_eq!(coverage.total_stored_hours, 40);
    assert_eq!(coverage.hours_without_trades, 3);
    assert_eq!(shape(&coverage.missing_runs), vec![(43, 5)]);
    assert_eq!((coverage.missing_run_count, coverage.missing_hours), (1, 5));
    assert_eq!(coverage.coverage_percent, 89.58);
    assert_eq!(
        coverage.hours_by_source,
        vec![(PriceSource::CoinGecko, 10), (PriceSource::Coinbase, 30)]
    );
    assert_eq!(coverage.disputed_hours, 2);
    let without = hours_without_trades::count(&db.pool, Symbol::BTC, hours(41, 10))
        .await
        .unwrap();
    assert_eq!(without, 2);

    let nothing = hourly_coverage::coverage(&db.pool, Symbol::BTC, None)
        .await
        .unwrap();
    assert_eq!(
        (nothing.total_expected_hours, nothing.coverage_percent),
        (0, 100.0)
    );
}

/// A review's finding: an hour built from CoinGecko's points over one recorded without
/// trades counted as both, so stored, without trades and missing added up to more than the
/// hours expected.
#[tokio::test]
async fn an_hour_both_stored_and_without_trades_counts_once_as_stored() {
    let db = database().await;
    store_run(&db.pool, 0, 40).await;
    quiet(&db.pool, 40..43).await;
    write(&db.pool, &[coingecko(41, 100)], false).await;

    let coverage = hourly_coverage::coverage(&db.pool, Symbol::BTC, Some(hours(0, 48)))
        .await
        .unwrap();

    assert_eq!(
        (
            coverage.total_stored_hours,
            coverage.hours_without_trades,
            coverage.missing_hours
        ),
        (41, 2, 5)
    );
}

/// Hours 10..30 turn provisional and back, each time in a transaction of its own.
const FLIP_TWENTY_HOURS: &str = "UPDATE hourly_prices SET provisional = NOT provisional \
     WHERE symbol = 'BTC' AND hour >= '2024-01-01T10:00:00Z' AND hour < '2024-01-02T06:00:00Z'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_in_hours_read_while_a_job_writes_adds_up() {
    let db = database().await;
    store_run(&db.pool, 0, 40).await;
    quiet(&db.pool, 40..43).await;
    let churn = Churn::start(&db.pool, FLIP_TWENTY_HOURS).await;

    let mut stored_seen = HashSet::new();
    for _ in 0..200 {
        let coverage = hourly_coverage::coverage(&db.pool, Symbol::BTC, Some(hours(0, 48)))
            .await
            .unwrap();
        assert_eq!(
            coverage.total_stored_hours + coverage.hours_without_trades + coverage.missing_hours,
            coverage.total_expected_hours,
            "stored, without trades and missing add up to the hours expected: {coverage:?}"
        );
        stored_seen.insert(coverage.total_stored_hours);
    }
    churn
        .stop_where_each_read_saw_one_of(&stored_seen, [20, 40])
        .await;
}

#[tokio::test]
async fn coverage_lists_at_most_a_thousand_runs_and_counts_them_all() {
    let db = database().await;
    // Every other hour stored over 2,100 hours: 1,050 runs of one hour.
    let candles: Vec<HourlyCandle> = (0..1_050).map(|n| coinbase(2 * n, 100)).collect();
    for window in candles.chunks(300) {
        write(&db.pool, window, false).await;
    }

    let coverage = hourly_coverage::coverage(&db.pool, Symbol::BTC, Some(hours(0, 2_100)))
        .await
        .unwrap();

    assert_eq!(coverage.missing_runs.len() as i64, MAX_LISTED_RUNS);
    assert_eq!(coverage.missing_run_count, 1_050);
    assert_eq!(coverage.missing_hours, 1_050);
    assert_eq!(coverage.missing_runs[0], hours(1, 1));
    assert_eq!(coverage.coverage_percent, 50.0);
}
