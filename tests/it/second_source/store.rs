//! The second source's store on real PostgreSQL, against the fake Coinbase: the migration
//! (an earlier release's rows all CoinGecko's, BTC mapped to BTC-USD), which source's row
//! may replace which, the mapping and its check, the product guessed at registration, and
//! one call budget per source.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use price_history::domain::{
    DailyCandle, Deviation, MappingVerdict, PriceSource, ProductId, Symbol, judge_mapping,
};
use price_history::store::{call_budget, daily_prices, second_source};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{TestDb, assert_mentions};

/// The last migration before the second source's.
const BEFORE_SECOND_SOURCE: i64 = 20261129000030;

/// A database as the release before the second source left it: apalis's tables and our
/// migrations up to [`BEFORE_SECOND_SOURCE`].
async fn previous_release() -> TestDb {
    let db = TestDb::empty().await;
    apalis_postgres::PostgresStorage::setup(&db.pool)
        .await
        .unwrap();
    sqlx::migrate!("./migrations")
        .run_to(BEFORE_SECOND_SOURCE, &db.pool)
        .await
        .unwrap();
    db
}

fn btc() -> Symbol {
    Symbol::parse("BTC").unwrap()
}

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2022, 1, 1).unwrap() + Days::new(n)
}

fn candle(date: NaiveDate, close: i64, provisional: bool) -> DailyCandle {
    let close = Decimal::from(close);
    DailyCandle {
        date,
        open: close,
        high: close,
        low: close,
        close,
        volume: Decimal::from(1000),
        timestamp: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
        provisional,
        points: Some(1),
    }
}

async fn write(pool: &PgPool, source: PriceSource, candles: &[DailyCandle], force: bool) -> u64 {
    let mut tx = pool.begin().await.unwrap();
    let n = daily_prices::upsert_from(&mut tx, btc(), source, candles, force)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    n
}

/// Writes one final candle for day `n`, closing at `close`; how many rows changed.
async fn write_day(pool: &PgPool, source: PriceSource, n: u64, close: i64, force: bool) -> u64 {
    write(pool, source, &[candle(day(n), close, false)], force).await
}

/// Asserts that day `n` is stored once, from `source`, closing at `close`.
async fn assert_stored(pool: &PgPool, n: u64, source: PriceSource, close: i64) {
    assert_eq!(stored(pool, day(n)).await, (source, Decimal::from(close)));
}

/// The symbol's mapping, which the migration or a registration has made.
async fn mapping_of(pool: &PgPool, symbol: Symbol) -> second_source::Mapping {
    second_source::mapping(pool, symbol).await.unwrap().unwrap()
}

async fn stored(pool: &PgPool, date: NaiveDate) -> (PriceSource, Decimal) {
    let rows = second_source::list_sourced(pool, btc(), date, date)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{date} is stored once");
    (rows[0].source, rows[0].candle.close)
}

#[tokio::test]
async fn an_earlier_releases_rows_all_become_coingeckos_and_btc_maps_to_btc_usd() {
    let db = previous_release().await;
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional)
           SELECT 'BTC', d::date, 100, 110, 90, 105, 1000, d, false
           FROM generate_series('2022-01-01'::date, '2022-12-31'::date, interval '1 day') AS d"#,
    )
    .execute(&db.pool)
    .await
    .unwrap();

    price_history::startup::migrate(&db.pool).await.unwrap();

    let by_source = second_source::days_by_source(&db.pool, btc(), day(0), day(364))
        .await
        .unwrap();
    assert_eq!(
        by_source,
        vec![(PriceSource::CoinGecko, 365), (PriceSource::Coinbase, 0)]
    );
    let mapping = mapping_of(&db.pool, btc()).await;
    assert_eq!(mapping.product, Some(ProductId::parse("BTC-USD").unwrap()));
    assert!(mapping.needs_check());
    assert_eq!(
        mapping.usable_product(),
        None,
        "not used before it is checked"
    );
    let fallback_days: i32 =
        sqlx::query_scalar("SELECT coalesce(sum(fallback_days), 0)::int FROM ingestion_jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(fallback_days, 0);
}

#[tokio::test]
async fn a_second_source_row_never_replaces_coingeckos_even_forced() {
    let db = TestDb::new().await;
    write(
        &db.pool,
        PriceSource::CoinGecko,
        &[candle(day(0), 100, false), candle(day(1), 100, true)],
        false,
    )
    .await;

    let forced = write_day(&db.pool, PriceSource::Coinbase, 0, 200, true).await;
    let over_provisional = write_day(&db.pool, PriceSource::Coinbase, 1, 200, false).await;

    assert_eq!((forced, over_provisional), (0, 0));
    assert_stored(&db.pool, 0, PriceSource::CoinGecko, 100).await;
    assert_stored(&db.pool, 1, PriceSource::CoinGecko, 100).await;
}

#[tokio::test]
async fn a_forced_coingecko_window_replaces_a_second_source_row_and_an_unforced_one_does_not() {
    let db = TestDb::new().await;
    write(
        &db.pool,
        PriceSource::Coinbase,
        &[
            candle(day(0), 200, false),
            candle(day(1), 200, false),
            candle(day(2), 200, true),
        ],
        false,
    )
    .await;

    let unforced = write_day(&db.pool, PriceSource::CoinGecko, 0, 100, false).await;
    let forced = write_day(&db.pool, PriceSource::CoinGecko, 1, 100, true).await;
    let over_provisional = write_day(&db.pool, PriceSource::CoinGecko, 2, 100, false).await;

    assert_eq!((unforced, forced, over_provisional), (0, 1, 1));
    assert_stored(&db.pool, 0, PriceSource::Coinbase, 200).await;
    assert_stored(&db.pool, 1, PriceSource::CoinGecko, 100).await;
    assert_stored(&db.pool, 2, PriceSource::CoinGecko, 100).await;
}

#[tokio::test]
async fn the_second_source_replaces_its_own_provisional_row_and_keeps_its_final_one() {
    let db = TestDb::new().await;
    write(
        &db.pool,
        PriceSource::Coinbase,
        &[candle(day(0), 200, true), candle(day(1), 200, false)],
        false,
    )
    .await;

    let changed = write(
        &db.pool,
        PriceSource::Coinbase,
        &[candle(day(0), 210, false), candle(day(1), 210, false)],
        false,
    )
    .await;

    assert_eq!(changed, 1);
    assert_stored(&db.pool, 0, PriceSource::Coinbase, 210).await;
    assert_stored(&db.pool, 1, PriceSource::Coinbase, 200).await;
}

#[tokio::test]
async fn a_check_is_kept_for_its_product_and_forgotten_when_the_product_changes() {
    let db = TestDb::new().await;
    let btc_usd = ProductId::parse("BTC-USD").unwrap();
    let verdict = judge_mapping(
        btc(),
        &btc_usd,
        Some(Deviation {
            percent: Decimal::new(42, 2),
            days: 30,
        }),
        Decimal::from(5),
    );

    assert!(
        second_source::record_check(&db.pool, btc(), &btc_usd, &verdict)
            .await
            .unwrap()
    );
    assert!(
        second_source::learn_candles_from(&db.pool, btc(), &btc_usd, day(10))
            .await
            .unwrap()
    );
    second_source::learn_candles_from(&db.pool, btc(), &btc_usd, day(5))
        .await
        .unwrap();
    let checked = mapping_of(&db.pool, btc()).await;
    // The same product again keeps what is known of it.
    assert!(
        second_source::set_product(&db.pool, btc(), Some(&btc_usd))
            .await
            .unwrap()
    );
    let same = mapping_of(&db.pool, btc()).await;
    let other = ProductId::parse("XBT-USD").unwrap();
    second_source::set_product(&db.pool, btc(), Some(&other))
        .await
        .unwrap();
    let stale = second_source::record_check(&db.pool, btc(), &btc_usd, &verdict)
        .await
        .unwrap();
    let changed = mapping_of(&db.pool, btc()).await;
    second_source::set_product(&db.pool, btc(), None)
        .await
        .unwrap();
    let cleared = mapping_of(&db.pool, btc()).await;

    assert_eq!(checked.usable_product(), Some(&btc_usd));
    assert_eq!(checked.deviation_percent, Some(Decimal::new(42, 2)));
    assert_eq!(
        checked.candles_from,
        Some(day(10)),
        "the bound only moves later"
    );
    assert!(checked.checked_at.is_some());
    assert_eq!(same, checked);
    assert!(
        !stale,
        "a check of the old product is not recorded on the new one"
    );
    assert_eq!(changed.product, Some(other));
    assert!(changed.needs_check());
    assert_eq!(
        (changed.deviation_percent, changed.candles_from),
        (None, None)
    );
    assert_eq!(cleared.product, None);
    assert!(!cleared.needs_check());
}

#[tokio::test]
async fn an_unusable_verdict_is_kept_with_its_reason() {
    let db = TestDb::new().await;
    let product = ProductId::parse("BTC-USD").unwrap();
    let verdict: MappingVerdict = judge_mapping(
        btc(),
        &product,
        Some(Deviation {
            percent: Decimal::from(9900),
            days: 30,
        }),
        Decimal::from(5),
    );

    second_source::record_check(&db.pool, btc(), &product, &verdict)
        .await
        .unwrap();

    let mapping = mapping_of(&db.pool, btc()).await;
    assert_eq!(mapping.usable, Some(false));
    assert_eq!(mapping.usable_product(), None);
    assert!(!mapping.needs_check());
    assert!(mapping.unusable_reason.unwrap().contains("9900 %"));
}

#[tokio::test]
async fn the_check_reads_the_earliest_final_closes_of_one_source() {
    let db = TestDb::new().await;
    write_day(&db.pool, PriceSource::Coinbase, 0, 1, false).await;
    write(
        &db.pool,
        PriceSource::CoinGecko,
        &[
            candle(day(1), 2, true),
            candle(day(2), 3, false),
            candle(day(3), 4, false),
            candle(day(4), 5, false),
        ],
        false,
    )
    .await;

    let closes = second_source::earliest_closes(&db.pool, btc(), PriceSource::CoinGecko, day(0), 2)
        .await
        .unwrap();

    assert_eq!(
        closes,
        vec![(day(2), Decimal::from(3)), (day(3), Decimal::from(4))]
    );
}

#[tokio::test]
async fn a_jobs_fallback_days_add_up() {
    let db = TestDb::new().await;
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO ingestion_jobs (id, status, symbol, start_date, end_date) VALUES ($1, 'running', 'BTC', $2, $3)")
        .bind(id)
        .bind(day(0))
        .bind(day(9))
        .execute(&db.pool)
        .await
        .unwrap();

    for days in [300, 65] {
        let mut tx = db.pool.begin().await.unwrap();
        second_source::add_fallback_days(&mut tx, id, days)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    assert_eq!(
        second_source::fallback_days(&db.pool, id).await.unwrap(),
        Some(365)
    );
}

#[tokio::test]
async fn each_source_has_its_own_call_budget() {
    let db = TestDb::new().await;
    let interval = Duration::from_secs(10);

    // CoinGecko's budget is booked ahead; Coinbase's first slot is still free now.
    let cg_first = call_budget::take_slot(&db.pool, "none", interval, 6)
        .await
        .unwrap();
    let cg_second = call_budget::take_slot(&db.pool, "none", interval, 6)
        .await
        .unwrap();
    let cb_first =
        call_budget::take_source_slot(&db.pool, PriceSource::Coinbase, "none", interval, 6)
            .await
            .unwrap();
    let cb_second =
        call_budget::take_source_slot(&db.pool, PriceSource::Coinbase, "none", interval, 6)
            .await
            .unwrap();

    assert_eq!(cg_first, Duration::ZERO);
    assert!(cg_second > Duration::from_secs(9), "{cg_second:?}");
    assert_eq!(
        cb_first,
        Duration::ZERO,
        "Coinbase does not wait for CoinGecko's slots"
    );
    assert!(cb_second > Duration::from_secs(9), "{cb_second:?}");
    let coingecko = call_budget::figures(&db.pool).await.unwrap();
    let coinbase = call_budget::source_figures(&db.pool, PriceSource::Coinbase)
        .await
        .unwrap();
    assert_eq!((coingecko.len(), coingecko[0].granted), (1, 2));
    assert_eq!((coinbase.len(), coinbase[0].granted), (1, 2));
}

mod check {
    use super::*;
    use fake_upstream::coinbase::{COLLIDING, FakeCoinbase, Outage};
    use fake_upstream::coingecko::FakeCoinGecko;
    use price_history::coinbase::{CoinbaseClient, CoinbaseSettings};
    use price_history::ingest::fallback::{CheckError, check_mapping, guess_product};
    use price_history::upstream::CallBudget;
    use std::num::NonZeroU32;

    fn client(fake: &FakeCoinbase) -> CoinbaseClient {
        CoinbaseClient::new(
            CoinbaseSettings {
                base_url: fake.base_url(),
                calls_per_minute: NonZeroU32::new(60_000).unwrap(),
                max_retries: 1,
                retry_base_delay: Duration::from_millis(10),
                timeout: Duration::from_secs(5),
            },
            CallBudget::ProcessLocal,
        )
        .unwrap()
    }

    /// Checks `product` for `symbol` as the service does: against the plan's first day,
    /// within the default 5 %.
    async fn check(
        pool: &PgPool,
        fake: &FakeCoinbase,
        symbol: Symbol,
        product: &ProductId,
    ) -> Result<Option<MappingVerdict>, CheckError> {
        check_mapping(
            pool,
            &client(fake),
            symbol,
            product,
            plan_first_day(),
            Decimal::from(5),
        )
        .await
    }

    fn plan_first_day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()
    }

    /// Stores `days` days of CoinGecko's rows for `symbol` from the plan's first day on,
    /// each closing at the fake CoinGecko's last hourly price of the day.
    async fn store_coingecko_days(pool: &PgPool, symbol: Symbol, coin_id: &str, days: u64) {
        let fake = FakeCoinGecko::start().await;
        let candles: Vec<DailyCandle> = (0..days)
            .map(|n| {
                let date = plan_first_day() + Days::new(n);
                let (_, close, _) = *fake
                    .points_for_coin_day(coin_id, date, true)
                    .last()
                    .unwrap();
                DailyCandle {
                    open: close,
                    high: close,
                    low: close,
                    close,
                    ..candle(date, 1, false)
                }
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        daily_prices::upsert(&mut tx, symbol, &candles, false)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// The fake's products against the check the service runs (median of the close
    /// differences on 30 days both cover): each faithful product well within the default
    /// 5 % but not equal, the colliding one far beyond it.
    #[tokio::test]
    async fn the_fakes_products_pass_the_check_and_the_collision_fails_it() {
        use fake_upstream::coinbase::{BTC_USD, candle_of, product};
        use price_history::domain::median_deviation;
        let coingecko = FakeCoinGecko::start().await;
        let days: Vec<NaiveDate> = (0..30u64)
            .map(|n| NaiveDate::from_ymd_opt(2024, 3, 1).unwrap() + Days::new(n))
            .collect();
        for (product, within) in [
            (BTC_USD, true),
            (product("ETH-USD").unwrap(), true),
            (product("SOL-USD").unwrap(), true),
            (product("DOGE-USD").unwrap(), true),
            (COLLIDING, false),
        ] {
            let theirs: Vec<(NaiveDate, Decimal)> = days
                .iter()
                .map(|d| {
                    let (_, close, _) = *coingecko
                        .points_for_coin_day(product.coingecko_id, *d, true)
                        .last()
                        .unwrap();
                    (*d, close)
                })
                .collect();
            let ours: Vec<(NaiveDate, Decimal)> = days
                .iter()
                .map(|d| {
                    let served = candle_of(product, *d, i64::MAX / 2).unwrap();
                    (*d, served.truth(Utc::now()).close)
                })
                .collect();

            let deviation = median_deviation(&theirs, &ours).unwrap();

            assert_eq!(deviation.days, 30);
            if within {
                assert!(
                    deviation.percent < Decimal::new(5, 1) && deviation.percent > Decimal::ZERO,
                    "{}: {deviation:?}",
                    product.id
                );
            } else {
                assert!(
                    deviation.percent > Decimal::from(5000),
                    "{}: {deviation:?}",
                    product.id
                );
            }
        }
    }

    #[tokio::test]
    async fn btc_usd_agrees_with_coingecko_within_the_limit_with_one_call() {
        let db = TestDb::new().await;
        let fake = FakeCoinbase::start().await;
        store_coingecko_days(&db.pool, btc(), "bitcoin", 40).await;
        let product = ProductId::parse("BTC-USD").unwrap();

        let verdict = check(&db.pool, &fake, btc(), &product)
            .await
            .unwrap()
            .expect("CoinGecko's rows are there to compare with");

        assert!(verdict.usable, "{verdict:?}");
        let deviation = verdict.deviation.unwrap();
        assert_eq!(deviation.days, 30);
        assert!(deviation.percent < Decimal::new(5, 1), "{deviation:?}");
        assert_eq!(fake.candle_calls(), 1);
        let call = &fake.calls()[0];
        assert_eq!(call.start.as_deref(), Some("2024-02-01T00:00:00Z"));
        assert_eq!(
            call.end.as_deref(),
            Some("2024-03-01T23:59:59Z"),
            "the earliest 30 days only"
        );
        let mapping = mapping_of(&db.pool, btc()).await;
        assert_eq!(mapping.usable_product(), Some(&product));
        assert_eq!(mapping.deviation_percent, Some(deviation.percent));
    }

    #[tokio::test]
    async fn a_colliding_ticker_is_found_out_and_the_coin_says_why() {
        let db = TestDb::new().await;
        let fake = FakeCoinbase::start().await;
        sqlx::query("INSERT INTO coins (symbol, coingecko_id, coinbase_product) VALUES ('SOLX', 'solana', $1)")
            .bind(COLLIDING.id)
            .execute(&db.pool)
            .await
            .unwrap();
        let solx = Symbol::parse("SOLX").unwrap();
        store_coingecko_days(&db.pool, solx, "solana", 30).await;
        let product = ProductId::parse(COLLIDING.id).unwrap();

        let verdict = check(&db.pool, &fake, solx, &product)
            .await
            .unwrap()
            .unwrap();

        assert!(!verdict.usable);
        assert!(verdict.deviation.unwrap().percent > Decimal::from(5000));
        let mapping = mapping_of(&db.pool, solx).await;
        assert_eq!(mapping.usable, Some(false));
        assert_eq!(mapping.usable_product(), None);
        let reason = mapping.unusable_reason.unwrap();
        assert_mentions(&reason, &["SOLX-USD", "another asset"]);
    }

    #[tokio::test]
    async fn without_coingecko_rows_to_compare_no_call_is_made_and_nothing_recorded() {
        let db = TestDb::new().await;
        let fake = FakeCoinbase::start().await;
        let product = ProductId::parse("BTC-USD").unwrap();

        let verdict = check(&db.pool, &fake, btc(), &product).await.unwrap();

        assert_eq!(verdict, None);
        assert_eq!(fake.call_count(), 0);
        assert!(mapping_of(&db.pool, btc()).await.needs_check());
    }

    #[tokio::test]
    async fn coinbase_down_leaves_the_mapping_unchecked_and_names_coinbase() {
        let db = TestDb::new().await;
        let fake = FakeCoinbase::start().await;
        fake.set_outage(Some(Outage::Status(503)));
        store_coingecko_days(&db.pool, btc(), "bitcoin", 30).await;
        let product = ProductId::parse("BTC-USD").unwrap();

        let error = check(&db.pool, &fake, btc(), &product).await.unwrap_err();

        let CheckError::Coinbase(error) = error else {
            panic!("expected Coinbase's error, got {error:?}");
        };
        assert!(error.is_transient());
        assert!(error.message().contains("Coinbase Exchange"), "{error}");
        assert!(mapping_of(&db.pool, btc()).await.needs_check());
    }

    #[tokio::test]
    async fn a_new_coins_product_is_guessed_from_its_symbol_with_one_call_each() {
        let fake = FakeCoinbase::start().await;
        let client = client(&fake);

        let eth = guess_product(&client, Symbol::parse("eth").unwrap())
            .await
            .unwrap();
        let unknown = guess_product(&client, Symbol::parse("NOPE").unwrap())
            .await
            .unwrap();

        assert_eq!(eth, Some(ProductId::parse("ETH-USD").unwrap()));
        assert_eq!(
            unknown, None,
            "not listed means no second source, not an error"
        );
        assert_eq!(fake.call_count(), 2);
    }
}
