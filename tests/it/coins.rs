//! The coin registry and the plan's reach: coins are data, every coin is fetched with
//! its own id, and days older than the plan serves are out of plan, never a failure.

use chrono::Days;
use fake_upstream::coingecko::{FakeOptions, ScriptedResponse};
use price_history::domain::{JobStatus, Symbol, today_utc};
use price_history::store::{coins, daily_prices};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Harness, TestApi, assert_mentions, days_before_today, field_of_each, sql};

const TOKEN: &str = "coins-token-for-tests";

/// Registers (or re-registers) `symbol` with nothing but its CoinGecko id.
async fn put_id(api: &TestApi, symbol: &str, coingecko_id: &str) -> crate::support::Answer {
    api.put_coin(symbol, json!({ "coingecko_id": coingecko_id }))
        .await
}

/// Asserts that no coin `symbol` is registered: its page is a 404.
async fn assert_unregistered(api: &TestApi, symbol: &str) {
    let answer = api.get(&format!("/api/v1/coins/{symbol}")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{symbol}");
}

#[tokio::test]
async fn a_new_coin_is_checked_with_one_call_that_finds_its_first_day_and_is_listed() {
    let (h, api) = TestApi::with_harness().await;

    let answer = put_id(&api, "eth", "ethereum").await;

    answer.assert_status(StatusCode::CREATED);
    assert_eq!(answer.header("location"), Some("/api/v1/coins/ETH"));
    let coin = answer.json();
    assert_eq!(coin["symbol"], "ETH");
    assert_eq!(coin["coingecko_id"], "ethereum");
    assert_eq!(coin["first_day"], "2015-08-07");
    assert_eq!(coin["tracked"], false);
    assert_eq!(coin["last_complete_day"], serde_json::Value::Null);
    let calls = h.fake.calls();
    assert_eq!(calls.len(), 1, "exactly one call checks a new id");
    assert_eq!(calls[0].coin_id, "ethereum");

    let list = api.get("/api/v1/coins").await.json();
    let symbols = field_of_each(&list["coins"], "symbol");
    assert_eq!(symbols, vec!["BTC", "ETH"]);
    let btc = api.get("/api/v1/coins/btc").await;
    assert_eq!(btc.status, StatusCode::OK);
    assert_eq!(btc.json()["first_day"], "2013-04-28");
    assert_unregistered(&api, "DOGE").await;
}

#[tokio::test]
async fn an_unknown_coingecko_id_is_refused_after_one_call_and_nothing_is_stored() {
    let (h, api) = TestApi::with_harness().await;

    let answer = put_id(&api, "BCN", "bitcorn").await;

    answer.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "unknown_coingecko_id");
    assert!(answer.message().contains("bitcorn"));
    assert_eq!(h.fake.call_count(), 1);
    assert_unregistered(&api, "BCN").await;
}

/// A review's finding: any 404 was read as CoinGecko not knowing the id, so a wrong
/// `COINGECKO_BASE_URL` (or a proxy's 404 page) blamed every id the user gave. Only
/// CoinGecko's "coin not found" does; another 404 is a 502 that says what to check.
#[tokio::test]
async fn a_404_that_is_not_coingeckos_coin_not_found_blames_the_url_not_the_id() {
    let (h, api) = TestApi::with_harness().await;
    h.fake.push_response(ScriptedResponse::status(
        404,
        "<html><body>404 Not Found</body></html>",
    ));

    let answer = put_id(&api, "ETH", "ethereum").await;

    answer.assert_status(StatusCode::BAD_GATEWAY);
    assert_eq!(answer.error_code(), "coingecko_refused");
    assert_mentions(&answer.message(), &["COINGECKO_BASE_URL"]);
    assert!(
        !answer.message().contains("does not know"),
        "{}",
        answer.message()
    );
    assert_unregistered(&api, "ETH").await;
}

#[tokio::test]
async fn a_symbol_keeps_its_id_and_an_id_its_symbol_and_tracking_changes_without_a_call() {
    let (h, api) = TestApi::with_harness().await;
    let created = put_id(&api, "ETH", "ethereum").await;
    assert_eq!(created.status, StatusCode::CREATED);

    let other_id = put_id(&api, "ETH", "solana").await;
    let other_symbol = put_id(&api, "ETH2", "ethereum").await;
    let tracked = api
        .put_coin(
            "eth",
            json!({"coingecko_id": "ethereum", "tracked": true, "track_since": "2024-01-01"}),
        )
        .await;

    assert_eq!(other_id.status, StatusCode::CONFLICT);
    assert_eq!(other_id.error_code(), "symbol_registered");
    assert_eq!(other_symbol.status, StatusCode::CONFLICT);
    assert_eq!(other_symbol.error_code(), "coingecko_id_registered");
    tracked.assert_status(StatusCode::OK);
    assert_eq!(tracked.json()["tracked"], true);
    assert_eq!(tracked.json()["track_since"], "2024-01-01");
    assert_eq!(
        h.fake.call_count(),
        1,
        "only the first registration called CoinGecko"
    );
    let stored = coins::get(h.pool(), Symbol::parse("ETH").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.coin.tracked);
}

#[tokio::test]
async fn malformed_symbols_ids_and_days_are_refused_with_400_and_no_call() {
    let (h, api) = TestApi::with_harness().await;
    let tomorrow = today_utc().checked_add_days(Days::new(1)).unwrap();
    let cases = [
        (
            "/api/v1/coins/ET-H",
            json!({"coingecko_id": "ethereum"}),
            "invalid_symbol",
        ),
        (
            "/api/v1/coins/ABCDEFGHIJKLMNOP",
            json!({"coingecko_id": "ethereum"}),
            "invalid_symbol",
        ),
        (
            "/api/v1/coins/ETH",
            json!({"coingecko_id": "Ethereum!"}),
            "invalid_coingecko_id",
        ),
        (
            "/api/v1/coins/ETH",
            json!({"coingecko_id": ""}),
            "invalid_request",
        ),
        ("/api/v1/coins/ETH", json!({}), "invalid_request"),
        (
            "/api/v1/coins/ETH",
            json!({"coingecko_id": "ethereum", "track_since": tomorrow.to_string()}),
            "track_since_in_future",
        ),
        (
            "/api/v1/coins/ETH",
            json!({"coingecko_id": "ethereum", "colour": "blue"}),
            "invalid_request",
        ),
    ];
    for (path, body, code) in cases {
        let answer = api.put(path, body.clone(), None).await;
        answer.assert_refused(code, &format!("{path} {body}"));
    }
    assert_eq!(
        api.get("/api/v1/coins/ET-H").await.error_code(),
        "invalid_symbol"
    );
    assert_eq!(h.fake.call_count(), 0);
}

#[tokio::test]
async fn a_coingecko_failure_during_the_check_is_a_503_that_stores_nothing() {
    let (h, api) = TestApi::with_harness().await;
    for _ in 0..=h.settings.coingecko_max_retries {
        h.fake.push_response(ScriptedResponse::server_error(503));
    }

    let answer = put_id(&api, "ETH", "ethereum").await;

    answer.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error_code(), "coingecko_unavailable");
    assert!(answer.message().contains("Try again"));
    assert_unregistered(&api, "ETH").await;

    let refused = {
        h.fake.push_response(ScriptedResponse::status(
            401,
            r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
        ));
        put_id(&api, "ETH", "ethereum").await
    };
    refused.assert_status(StatusCode::BAD_GATEWAY);
    assert_eq!(refused.error_code(), "coingecko_refused");
    assert_unregistered(&api, "ETH").await;
}

#[tokio::test]
async fn registering_a_coin_needs_the_bearer_token_when_one_is_set() {
    let h = Harness::new().await;
    let api = TestApi::start_with(h.api_state(Some(TOKEN))).await;

    let without = put_id(&api, "ETH", "ethereum").await;
    let wrong = api
        .put(
            "/api/v1/coins/ETH",
            json!({"coingecko_id": "ethereum"}),
            Some("nope"),
        )
        .await;
    let right = api
        .put(
            "/api/v1/coins/ETH",
            json!({"coingecko_id": "ethereum"}),
            Some(TOKEN),
        )
        .await;

    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    right.assert_status(StatusCode::CREATED);
    assert_eq!(h.fake.call_count(), 1);
}

#[tokio::test]
async fn a_job_for_an_unregistered_or_malformed_symbol_is_refused_with_how_to_register() {
    let (h, api) = TestApi::with_harness().await;
    let range = json!({"start_date": days_before_today(5).to_string(), "end_date": days_before_today(1).to_string()});
    let mut unknown = range.clone();
    unknown["symbol"] = json!("doge");
    let mut malformed = range.clone();
    malformed["symbol"] = json!("DO GE");

    let answer = api.submit(unknown).await;
    let bad = api.submit(malformed).await;

    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "unknown_symbol");
    let message = answer.message();
    assert!(message.contains("PUT /api/v1/coins/DOGE"), "{message}");
    assert_eq!(bad.error_code(), "invalid_symbol");
    assert_eq!(h.fake.call_count(), 0);
}

#[tokio::test]
async fn a_job_before_the_coins_first_day_is_refused() {
    let h = Harness::new().await;
    h.register("ETH", "ethereum").await;
    let api = TestApi::start(&h).await;

    let answer = api
        .submit(json!({"start_date": "2015-08-06", "end_date": "2015-09-01", "symbol": "ETH"}))
        .await;

    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "before_first_day");
    assert!(answer.message().contains("2015-08-07"));
}

#[tokio::test]
async fn a_job_for_eth_stores_eths_prices_and_leaves_btcs_rows_untouched() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(30), days_before_today(1));
    h.run_job(start, end, false).await;
    let btc_before = daily_prices::list(h.pool(), Symbol::BTC, start, end)
        .await
        .unwrap();
    let eth = h.register("ETH", "ethereum").await;
    let calls_before = h.fake.call_count();

    let job = h.submit_for(eth, start, end, false).await;
    let worker = h.start_worker();
    let job = h.until_finished(job.id).await;
    worker.stop().await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    assert_eq!(job.symbol, eth);
    let eth_rows = daily_prices::list(h.pool(), eth, start, end).await.unwrap();
    assert_eq!(eth_rows.len(), 30);
    let truth = h.fake.points_for_coin_day("ethereum", start, true);
    assert_eq!(
        eth_rows[0].close,
        truth.last().unwrap().1,
        "ETH's own close"
    );
    assert_ne!(eth_rows[0].close, btc_before[0].close);
    let btc_after = daily_prices::list(h.pool(), Symbol::BTC, start, end)
        .await
        .unwrap();
    assert_eq!(btc_after, btc_before, "BTC's rows are untouched");
    let eth_calls = &h.fake.calls()[calls_before..];
    assert!(!eth_calls.is_empty());
    assert!(eth_calls.iter().all(|c| c.coin_id == "ethereum"));
}

#[tokio::test]
async fn jobs_of_different_coins_are_active_at_once_but_two_of_one_coin_never() {
    let h = Harness::new().await;
    h.register("ETH", "ethereum").await;
    let api = TestApi::start(&h).await;
    let body = |symbol: &str| json!({"start_date": days_before_today(10).to_string(), "end_date": days_before_today(1).to_string(), "symbol": symbol});

    let btc = api.submit(body("BTC")).await;
    let eth = api.submit(body("ETH")).await;
    let btc_again = api.submit(body("btc")).await;

    assert_eq!(btc.status, StatusCode::ACCEPTED);
    eth.assert_status(StatusCode::ACCEPTED);
    assert_eq!(btc_again.status, StatusCode::CONFLICT);
    assert_eq!(btc_again.json()["active_job_id"], btc.json()["id"]);
    let eth_jobs = api.get("/api/v1/ingestion-jobs?symbol=eth").await.json();
    assert_eq!(eth_jobs["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(eth_jobs["jobs"][0]["symbol"], "ETH");
    assert_eq!(eth_jobs["jobs"][0]["trigger"], "api");
}

/// A plan that serves the past 365 days, as the public and Demo plans do.
fn demo_plan() -> FakeOptions {
    FakeOptions {
        history_limit_days: Some(365),
        ..FakeOptions::default()
    }
}

fn four_years_to_yesterday() -> (chrono::NaiveDate, chrono::NaiveDate) {
    let end = days_before_today(1);
    (end.checked_sub_days(Days::new(1460)).unwrap(), end)
}

#[tokio::test]
async fn with_the_reach_configured_four_years_store_the_last_year_without_a_wasted_call() {
    let mut h = Harness::with_fake(demo_plan()).await;
    h.settings.coingecko_history_days = Some(365);
    let (start, end) = four_years_to_yesterday();

    let job = h.run_job(start, end, false).await;

    assert_eq!(
        job.status,
        JobStatus::CompletedWithGaps,
        "{:?}",
        job.error_message
    );
    let served_from = today_utc().checked_sub_days(Days::new(364)).unwrap();
    let served_days = (end - served_from).num_days() + 1;
    assert_eq!(h.stored_days().await, served_days);
    assert!(
        job.gap_dates.is_empty(),
        "out-of-plan days are not gaps: {:?}",
        job.gap_dates
    );
    assert_eq!(i64::from(job.out_of_plan_days), 1461 - served_days);
    let message = job.error_message.unwrap();
    assert!(
        message.contains(&format!("from {served_from} on")),
        "{message}"
    );
    assert!(message.contains("paid key reaches further"), "{message}");
    let calls = h.fake.calls();
    assert!(calls.iter().all(|c| c.status == 200), "no call was refused");
    assert_eq!(calls.len(), 5, "364 days in windows of 90");

    let api = TestApi::start(&h).await;
    let coverage = api
        .get(&format!(
            "/api/v1/coverage?start_date={start}&end_date={end}"
        ))
        .await
        .json();
    assert_eq!(coverage["gap_count"], 0);
    assert_eq!(coverage["out_of_plan_days"], 1461 - served_days);
    assert_eq!(coverage["plan_first_day"], served_from.to_string());
}

#[tokio::test]
async fn a_reach_learned_from_10012_costs_one_refused_call_in_the_service_lifetime() {
    let h = Harness::with_fake(demo_plan()).await;
    let (start, end) = four_years_to_yesterday();

    let first = h.run_job(start, end, false).await;
    let refused_after_first = h.calls_answered(401).len();
    let second = h.run_job(start, end, true).await;
    h.register("ETH", "ethereum").await;

    assert_eq!(
        first.status,
        JobStatus::CompletedWithGaps,
        "{:?}",
        first.error_message
    );
    assert_eq!(refused_after_first, 1, "one 10012 teaches the reach");
    assert_eq!(
        (first.chunks_done, first.chunks_total),
        (5, 5),
        "the windows refused are planned again within the reach, not counted twice"
    );
    assert_eq!(first.attempts, 1, "learning the reach costs no attempt");
    let served_from = today_utc().checked_sub_days(Days::new(364)).unwrap();
    let served_days = (end - served_from).num_days() + 1;
    assert_eq!(i64::from(first.out_of_plan_days), 1461 - served_days);
    assert!(first.gap_dates.is_empty(), "{:?}", first.gap_dates);
    assert_eq!(h.stored_days().await, served_days);
    assert_eq!(second.status, JobStatus::CompletedWithGaps);
    assert_eq!(second.out_of_plan_days, first.out_of_plan_days);
    let calls = h.fake.calls();
    assert_eq!(
        calls.iter().filter(|c| c.status == 401).count(),
        1,
        "later jobs and coin checks spend no call on out-of-plan days"
    );
    let check = calls.last().unwrap();
    assert_eq!(check.coin_id, "ethereum");
    assert!(
        check.from.date_naive() >= served_from,
        "the check stays inside the reach"
    );
    let eth = coins::get(h.pool(), Symbol::parse("ETH").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        eth.coin.first_day, None,
        "older than the reach: its first day is not known"
    );
}

// --- The second source's product ------------------------------------------------------

#[tokio::test]
async fn without_the_second_source_a_product_is_stored_unchecked_kept_when_unsaid_and_cleared_by_null()
 {
    // The harness runs with FALLBACK_SOURCE=off: there is no Coinbase client to ask.
    let (h, api) = TestApi::with_harness().await;

    let created = api
        .put_coin(
            "eth",
            json!({"coingecko_id": "ethereum", "coinbase_product": " eth-usd "}),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let coin = created.json();
    assert_eq!(coin["coinbase_product"], "ETH-USD", "{coin}");
    assert_eq!(coin["fallback_deviation_percent"], serde_json::Value::Null);
    assert_eq!(coin["fallback_usable"], serde_json::Value::Null);
    assert_eq!(coin["fallback_unusable_reason"], serde_json::Value::Null);

    let unsaid = api
        .put_coin("ETH", json!({"coingecko_id": "ethereum", "tracked": false}))
        .await;
    unsaid.assert_status(StatusCode::OK);
    assert_eq!(unsaid.json()["coinbase_product"], "ETH-USD");

    let cleared = api
        .put_coin(
            "ETH",
            json!({"coingecko_id": "ethereum", "coinbase_product": null}),
        )
        .await;
    cleared.assert_status(StatusCode::OK);
    assert_eq!(cleared.json()["coinbase_product"], serde_json::Value::Null);
    assert_eq!(
        api.get("/api/v1/coins/ETH").await.json()["coinbase_product"],
        serde_json::Value::Null
    );

    // Nothing is guessed without the second source; BTC has its product by migration.
    let sol = put_id(&api, "SOL", "solana").await;
    sol.assert_status(StatusCode::CREATED);
    assert_eq!(sol.json()["coinbase_product"], serde_json::Value::Null);
    assert_eq!(
        api.get("/api/v1/coins/BTC").await.json()["coinbase_product"],
        "BTC-USD"
    );
    assert_eq!(h.fake.call_count(), 2, "one CoinGecko check per new id");
}

#[tokio::test]
async fn a_malformed_product_is_refused_with_400_before_any_call() {
    let (h, api) = TestApi::with_harness().await;

    for product in ["ETHUSD", "ETH-", "eth/usd", "ETH-USD-X", "ÉTH-USD"] {
        let answer = api
            .put_coin(
                "ETH",
                json!({"coingecko_id": "ethereum", "coinbase_product": product}),
            )
            .await;
        answer.assert_refused("invalid_coinbase_product", product);
        assert!(
            answer.message().contains("BTC-USD"),
            "the message shows a product's form: {}",
            answer.text()
        );
    }
    let too_long = api
        .put_coin(
            "ETH",
            json!({"coingecko_id": "ethereum", "coinbase_product": "A".repeat(41)}),
        )
        .await;
    too_long.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(h.fake.call_count(), 0);
    assert_unregistered(&api, "ETH").await;
}

#[tokio::test]
async fn coinbase_unreachable_refuses_a_given_product_with_503_but_a_guess_registers_without_one() {
    let mut h = Harness::new().await;
    // A port nothing listens on: every call to Coinbase fails to connect.
    h.settings.fallback_source = price_history::config::FallbackSource::Coinbase;
    h.settings.coinbase_base_url = "http://127.0.0.1:9".to_owned();
    let api = TestApi::start_with(h.api_state(None)).await;

    let given = api
        .put_coin(
            "ETH",
            json!({"coingecko_id": "ethereum", "coinbase_product": "ETH-USD"}),
        )
        .await;
    given.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(given.error_code(), "coinbase_unavailable");
    assert!(
        given.message().contains("Coinbase Exchange"),
        "{}",
        given.text()
    );
    assert_eq!(
        api.get("/api/v1/coins/ETH").await.status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );

    let guessed = put_id(&api, "ETH", "ethereum").await;
    guessed.assert_status(StatusCode::CREATED);
    assert_eq!(guessed.json()["coinbase_product"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_new_coin_gets_symbol_usd_when_coinbase_lists_it_and_none_when_it_does_not() {
    let h = Harness::new().await.with_coinbase();
    let api = TestApi::start_with(h.api_state(None)).await;

    let eth = put_id(&api, "eth", "ethereum").await;
    let sol = put_id(&api, "SOLANA", "solana").await;

    eth.assert_status(StatusCode::CREATED);
    assert_eq!(eth.json()["coinbase_product"], "ETH-USD");
    assert_eq!(
        eth.json()["fallback_usable"],
        serde_json::Value::Null,
        "not checked yet"
    );
    sol.assert_status(StatusCode::CREATED);
    assert_eq!(
        sol.json()["coinbase_product"],
        serde_json::Value::Null,
        "Coinbase does not list SOLANA-USD: no second source, not an error"
    );
    let asked: Vec<String> = h
        .coinbase
        .calls()
        .iter()
        .map(|c| c.product.clone())
        .collect();
    assert_eq!(asked, vec!["ETH-USD", "SOLANA-USD"], "one call per guess");
    assert_eq!(h.coinbase.candle_calls(), 0);
}

#[tokio::test]
async fn a_given_product_is_checked_once_an_unknown_one_is_400_and_a_new_one_forgets_the_old_check()
{
    let h = Harness::new().await.with_coinbase();
    let api = TestApi::start_with(h.api_state(None)).await;
    let put = |product: serde_json::Value| {
        let api = &api;
        async move {
            api.put_coin(
                "SOL",
                json!({"coingecko_id": "solana", "coinbase_product": product}),
            )
            .await
        }
    };

    // An unknown product on registration: 400, nothing stored, CoinGecko not asked.
    let unknown = put(json!("NOPE-USD")).await;
    unknown.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(unknown.error_code(), "unknown_coinbase_product");
    assert!(unknown.text().contains("NOPE-USD"), "{}", unknown.text());
    assert_unregistered(&api, "SOL").await;
    assert_eq!(h.fake.call_count(), 0);

    let created = put(json!("sol-usd")).await;
    created.assert_status(StatusCode::CREATED);
    assert_eq!(created.json()["coinbase_product"], "SOL-USD");
    assert_eq!(h.coinbase.call_count(), 2);

    // Its check, as a job would record it; the same product again keeps it, at no call.
    sql(
        h.pool(),
        "UPDATE coins SET fallback_deviation_percent = 0.3, fallback_usable = true, \
         fallback_checked_at = now() WHERE symbol = 'SOL'",
    )
    .await;
    let again = put(json!("SOL-USD")).await;
    again.assert_status(StatusCode::OK);
    assert_eq!(again.json()["fallback_deviation_percent"], 0.3);
    assert_eq!(again.json()["fallback_usable"], true);
    assert_eq!(h.coinbase.call_count(), 2, "the same product costs no call");

    // An unknown product on a change: 400, the product stays.
    let refused = put(json!("NOPE-USD")).await;
    assert_eq!(refused.error_code(), "unknown_coinbase_product");
    assert_eq!(
        api.get("/api/v1/coins/SOL").await.json()["coinbase_product"],
        "SOL-USD"
    );

    // Another product: checked, and the old product's check is forgotten.
    let changed = put(json!("SOLX-USD")).await;
    changed.assert_status(StatusCode::OK);
    let coin = changed.json();
    assert_eq!(coin["coinbase_product"], "SOLX-USD");
    assert_eq!(coin["fallback_deviation_percent"], serde_json::Value::Null);
    assert_eq!(coin["fallback_usable"], serde_json::Value::Null);
    assert_eq!(h.coinbase.call_count(), 4);
}

#[tokio::test]
async fn coinbase_failing_refuses_a_given_product_with_503_and_registers_a_guess_without_one() {
    let h = Harness::new().await.with_coinbase();
    let api = TestApi::start_with(h.api_state(None)).await;
    // Every attempt of the first call (and its three retries) is a 502.
    for _ in 0..4 {
        h.coinbase
            .push_response(ScriptedResponse::status(502, "<html>bad gateway</html>"));
    }

    let given = api
        .put_coin(
            "ETH",
            json!({"coingecko_id": "ethereum", "coinbase_product": "ETH-USD"}),
        )
        .await;
    given.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(given.error_code(), "coinbase_unavailable");
    assert_unregistered(&api, "ETH").await;

    for _ in 0..4 {
        h.coinbase
            .push_response(ScriptedResponse::status(503, "{\"message\":\"down\"}"));
    }
    let guessed = put_id(&api, "ETH", "ethereum").await;
    guessed.assert_status(StatusCode::CREATED);
    assert_eq!(guessed.json()["coinbase_product"], serde_json::Value::Null);
    assert_eq!(h.coinbase.call_count(), 8);
}
