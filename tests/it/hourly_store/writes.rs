//! What a window's upsert keeps and replaces, the checks beside exchange candles, the
//! hours without trades, and the candles the table refuses whoever writes them.

use futures::TryStreamExt;
use price_history::domain::{ExchangeCandle, PriceSource, hours_from_exchange};
use rust_decimal::Decimal;

use super::*;
use crate::support::count_rows;

#[tokio::test]
async fn a_window_of_exchange_candles_reads_back_exactly_as_it_was_stored() {
    let db = database().await;
    // An answer as Coinbase sends it: newest first, one hour without trades, the last
    // hour not over yet.
    let now: DateTime<Utc> = "2024-01-01T05:30:00Z".parse().unwrap();
    let answer: Vec<ExchangeCandle> = [5, 4, 3, 1, 0]
        .into_iter()
        .map(|n| ExchangeCandle {
            time: hour(n).unix(),
            low: 42_000.5 + n as f64,
            high: 42_300.25 + n as f64,
            open: 42_100.0 + n as f64,
            close: 42_200.75 + n as f64,
            volume: 1.25,
        })
        .collect();
    let window = hours(0, 6);
    let built = hours_from_exchange(&answer, window, now);
    let checked: Vec<HourlyCandle> = built
        .candles
        .iter()
        .cloned()
        .map(|c| match c.hour == hour(1) {
            true => c.with_check(point(1, "42100.1").1, rule()).unwrap(),
            false => c,
        })
        .collect();

    let written = write(&db.pool, &checked, false).await;

    assert_eq!(written, 5);
    let back = stored(&db.pool, window).await;
    assert_eq!(back, checked);
    let streamed: Vec<HourlyCandle> = hourly_prices::stream(&db.pool, Symbol::BTC, window)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, back);
    assert_eq!(back[1].check.unwrap().deviation_percent, Decimal::ZERO);
    assert!(back[4].provisional, "05:00 was not over when fetched");
    assert_eq!(back[0].volume, "52750.9375".parse::<Decimal>().unwrap());
    assert_eq!(built.without_candles(window, now), vec![hour(2)]);
    // Other coins' hours are not BTC's.
    write_for(&db.pool, eth(), &[coinbase(2, 7)], false).await;
    assert_eq!(stored(&db.pool, window).await.len(), 5);
}

#[tokio::test]
async fn a_final_exchange_candle_is_never_replaced_by_a_coingecko_built_hour() {
    let db = database().await;
    write(&db.pool, &[coinbase(0, 100)], false).await;

    let unforced = write(&db.pool, &[coingecko(0, 200)], false).await;
    let forced = write(&db.pool, &[coingecko(0, 200)], true).await;

    assert_eq!((unforced, forced), (0, 0));
    let kept = stored_hour(&db.pool, 0).await;
    assert_eq!(
        (kept.source, kept.open),
        (PriceSource::Coinbase, Decimal::from(100))
    );
}

#[tokio::test]
async fn an_exchange_candle_replaces_a_coingecko_built_hour_unforced() {
    let db = database().await;
    write(&db.pool, &[coingecko(0, 100), coingecko(1, 100)], false).await;

    let written = write(&db.pool, &[coinbase(0, 200)], false).await;

    assert_eq!(written, 1);
    let replaced = stored_hour(&db.pool, 0).await;
    assert_eq!(
        (replaced.source, replaced.points, replaced.open),
        (PriceSource::Coinbase, None, Decimal::from(200))
    );
    assert_eq!(
        stored_hour(&db.pool, 1).await.source,
        PriceSource::CoinGecko
    );
}

#[tokio::test]
async fn a_final_hour_of_the_same_source_is_replaced_only_when_forced_and_a_provisional_one_always()
{
    let db = database().await;
    write(
        &db.pool,
        &[coinbase(0, 100), provisional(coinbase(1, 100))],
        false,
    )
    .await;

    let unforced = write(&db.pool, &[coinbase(0, 200), coinbase(1, 200)], false).await;
    assert_eq!(unforced, 1, "only the provisional hour is replaced");
    assert_eq!(stored_hour(&db.pool, 0).await.open, Decimal::from(100));
    let final_now = stored_hour(&db.pool, 1).await;
    assert_eq!(
        (final_now.open, final_now.provisional),
        (Decimal::from(200), false)
    );

    let forced = write(&db.pool, &[coinbase(0, 300)], true).await;
    assert_eq!(forced, 1);
    assert_eq!(stored_hour(&db.pool, 0).await.open, Decimal::from(300));
}

#[tokio::test]
async fn a_provisional_exchange_candle_gives_way_to_a_final_coingecko_built_hour() {
    let db = database().await;
    write(
        &db.pool,
        &[provisional(coinbase(0, 100)), provisional(coinbase(1, 100))],
        false,
    )
    .await;

    let written = write(
        &db.pool,
        &[coingecko(0, 200), provisional(coingecko(1, 200))],
        false,
    )
    .await;

    assert_eq!(
        written, 1,
        "a provisional built hour does not replace anything"
    );
    assert_eq!(
        stored_hour(&db.pool, 0).await.source,
        PriceSource::CoinGecko
    );
    assert_eq!(stored_hour(&db.pool, 1).await.source, PriceSource::Coinbase);
}

#[tokio::test]
async fn a_candle_twenty_percent_off_coingeckos_point_is_disputed_and_an_honest_one_is_not() {
    let db = database().await;
    // Hour 0 honest (100..102, point 100.5); hour 1 a fake 20 % above the market (the
    // point is at 100, the candle's low at 119).
    write(
        &db.pool,
        &[coinbase(0, 100), coinbase(1, 120), coinbase(2, 100)],
        false,
    )
    .await;

    let changed = attach(
        &db.pool,
        &[point(0, "100.5"), point(1, "100"), point(5, "1")],
    )
    .await;

    assert_eq!(changed, 2, "hour 5 has no candle to check");
    let honest = stored_hour(&db.pool, 0).await.check.unwrap();
    assert_eq!(
        (honest.deviation_percent, honest.disputed),
        (Decimal::ZERO, false)
    );
    let fake = stored_hour(&db.pool, 1).await.check.unwrap();
    assert_eq!(
        fake.deviation_percent,
        "15.9664".parse::<Decimal>().unwrap()
    );
    assert!(fake.disputed);
    assert_eq!(fake.point, point(1, "100").1);
    assert_eq!(
        stored_hour(&db.pool, 2).await.check,
        None,
        "no point, no check"
    );
    assert_eq!(
        attach(&db.pool, &[point(0, "100.5")]).await,
        0,
        "the same point again changes nothing"
    );
}

#[tokio::test]
async fn a_coingecko_built_hour_takes_no_check() {
    let db = database().await;
    write(&db.pool, &[coingecko(0, 100)], false).await;

    assert_eq!(attach(&db.pool, &[point(0, "50")]).await, 0);
    assert_eq!(stored_hour(&db.pool, 0).await.check, None);
}

#[tokio::test]
async fn an_exchange_candle_replacing_a_provisional_one_keeps_its_point_judged_against_the_new_band()
 {
    let db = database().await;
    write(&db.pool, &[provisional(coinbase(0, 100))], false).await;
    attach(&db.pool, &[point(0, "110")]).await;
    let before = stored_hour(&db.pool, 0).await.check.unwrap();
    assert!(
        before.disputed,
        "110 is 7.8 % above the provisional high of 102"
    );

    // The hour ends with a high of 112: the point is now inside the band.
    write(&db.pool, &[coinbase(0, 110)], false).await;

    let after = stored_hour(&db.pool, 0).await;
    assert!(!after.provisional);
    let check = after.check.expect("the point is kept");
    assert_eq!(check.point, point(0, "110").1);
    assert_eq!(
        (check.deviation_percent, check.disputed),
        (Decimal::ZERO, false)
    );
}

#[tokio::test]
async fn hours_without_trades_are_recorded_once_and_give_way_to_a_candle_that_comes_later() {
    let db = database().await;
    write(&db.pool, &[coinbase(0, 100)], false).await;

    let recorded = quiet(&db.pool, [0, 1, 2]).await;
    let again = quiet(&db.pool, [1, 2]).await;

    assert_eq!(
        (recorded, again),
        (2, 0),
        "hour 0 has a candle: it had trades"
    );
    write(&db.pool, &[coingecko(1, 100)], false).await;
    assert_eq!(
        count_rows(&db.pool, "hours_without_trades").await,
        2,
        "a CoinGecko-built hour says nothing of the exchange's trades"
    );
    write(&db.pool, &[coinbase(2, 100)], true).await;
    let left: Vec<Hour> = sqlx::query_scalar("SELECT hour FROM hours_without_trades ORDER BY hour")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![hour(1)]);
}

#[tokio::test]
async fn a_new_product_forgets_which_hours_the_old_one_had_no_trades_in_and_where_it_began() {
    let db = database().await;
    quiet(&db.pool, [0, 1]).await;
    assert!(learn_hours_from(&db.pool, 0).await);
    sql(
        &db.pool,
        "INSERT INTO hours_without_trades VALUES ('ETH', '2024-01-01 00:00:00+00')",
    )
    .await;

    // The same product set again forgets nothing; another one forgets BTC's hours only.
    sql(
        &db.pool,
        "UPDATE coins SET coinbase_product = 'BTC-USD' WHERE symbol = 'BTC'",
    )
    .await;
    assert_eq!(count_rows(&db.pool, "hours_without_trades").await, 3);
    sql(
        &db.pool,
        "UPDATE coins SET coinbase_product = 'BTC-USDC' WHERE symbol = 'BTC'",
    )
    .await;

    assert_eq!(quiet_hours_of(&db.pool, "BTC").await, 0);
    assert_eq!(quiet_hours_of(&db.pool, "ETH").await, 1);
    let coin = price_history::store::hourly_coins::get(&db.pool, Symbol::BTC)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(coin.coinbase_hours_from, None);
    assert!(
        !learn_hours_from(&db.pool, 5).await,
        "what BTC-USD's answer taught is not kept for BTC-USDC"
    );
    // A product judged unusable after all forgets what it taught too.
    sql(
        &db.pool,
        "UPDATE coins SET fallback_checked_at = now(), fallback_usable = true WHERE symbol = 'BTC'",
    )
    .await;
    quiet(&db.pool, [7]).await;
    sql(
        &db.pool,
        "UPDATE coins SET fallback_usable = false WHERE symbol = 'BTC'",
    )
    .await;
    assert_eq!(quiet_hours_of(&db.pool, "BTC").await, 0);
}

/// How many hours of `symbol` are recorded as without trades.
async fn quiet_hours_of(pool: &PgPool, symbol: &str) -> i64 {
    count_rows(
        pool,
        &format!("hours_without_trades WHERE symbol = '{symbol}'"),
    )
    .await
}

/// Teaches that BTC-USD has no hourly candle before hour `n`; whether it was still BTC's.
async fn learn_hours_from(pool: &PgPool, n: i64) -> bool {
    let product = price_history::domain::ProductId::parse("BTC-USD").unwrap();
    price_history::store::second_source::learn_candles_from(pool, Symbol::BTC, &product, hour(n))
        .await
        .expect("the coin is updated")
}

/// The columns of an honest Coinbase candle of BTC's hour `$1`, as SQL.
const HONEST: [(&str, &str); 13] = [
    ("symbol", "'BTC'"),
    ("hour", "$1"),
    ("open", "100"),
    ("high", "102"),
    ("low", "99"),
    ("close", "101"),
    ("volume", "1"),
    ("source", "'coinbase'"),
    ("points", "NULL"),
    ("check_price", "NULL"),
    ("check_at", "NULL"),
    ("check_deviation_percent", "NULL"),
    ("disputed", "false"),
];

/// Inserts by plain SQL the honest row of hour `n` with the columns of `changes` set to
/// other SQL values (the last change of a column wins); the table's answer.
async fn raw_insert(pool: &PgPool, n: i64, changes: &[(&str, &str)]) -> Result<(), String> {
    let value = |column: &str, honest: &str| {
        changes
            .iter()
            .rfind(|(c, _)| *c == column)
            .map_or(honest.to_owned(), |(_, v)| (*v).to_owned())
    };
    let columns: Vec<&str> = HONEST.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = HONEST.iter().map(|(c, v)| value(c, v)).collect();
    let statement = format!(
        "INSERT INTO hourly_prices ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(hour(n))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_table_refuses_a_candle_that_does_not_hold_together_whoever_writes_it() {
    let db = database().await;
    assert_eq!(
        raw_insert(&db.pool, 0, &[]).await,
        Ok(()),
        "the honest row is stored"
    );
    let check = [
        ("check_price", "100"),
        ("check_at", "$1 + interval '41 seconds'"),
        ("check_deviation_percent", "0"),
    ];
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "hour_on_the_grid",
            vec![("hour", "$1 + interval '30 minutes'")],
        ),
        ("candle_is_consistent", vec![("low", "103")]),
        ("candle_is_consistent", vec![("open", "98")]),
        (
            "prices_positive",
            vec![("low", "0"), ("open", "0"), ("close", "0")],
        ),
        ("volume_not_negative", vec![("volume", "-1")]),
        ("points_say_how_it_was_built", vec![("points", "3")]),
        (
            "points_say_how_it_was_built",
            vec![("source", "'coingecko'")],
        ),
        ("source_is_known", vec![("source", "'binance'")]),
        ("check_is_whole", vec![("check_price", "100")]),
        (
            "check_beside_an_exchange_candle",
            [&check[..], &[("source", "'coingecko'"), ("points", "1")]].concat(),
        ),
        (
            "check_beside_an_exchange_candle",
            [&check[..], &[("check_at", "$1 + interval '1 hour'")]].concat(),
        ),
        ("disputed_only_when_checked", vec![("disputed", "true")]),
        (
            "disputed_only_when_checked",
            [&check[..], &[("disputed", "true")]].concat(),
        ),
    ];
    for (constraint, changes) in refused {
        let error = raw_insert(&db.pool, 1, &changes).await.unwrap_err();
        assert!(error.contains(constraint), "{changes:?}: {error}");
    }
    assert_eq!(
        raw_insert(&db.pool, 1, &check).await,
        Ok(()),
        "a whole check is stored"
    );
    assert_eq!(count_rows(&db.pool, "hourly_prices").await, 2);
}
