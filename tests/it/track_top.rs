//! Tracking the top N coins by market cap (issue 20) against the fake CoinGecko, which
//! lists its coins at `/coins/markets` in pages of 250, with a ticker that collides with
//! Bitcoin's and one that is no symbol here; with `hourly`, each keeps hourly candles too
//! (issue 26).

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use fake_upstream::coingecko::{
    COLLIDING_RANK, FakeOptions, MARKETS, ScriptedResponse, UNSYMBOLIC_RANK,
};
use price_history::domain::{ImportStatus, Symbol, Trigger, today_utc};
use price_history::store::{coin_imports, coins, ingestion_jobs};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Harness, TestApi, assert_mentions, count_rows, days_before_today, free_port, until_ready,
};

/// The budget of these tests, and the fake's own limit: a call over it would be a 429.
const CALLS_PER_MINUTE: u32 = 1200;

async fn harness() -> Harness {
    let limit = NonZeroU32::new(CALLS_PER_MINUTE).unwrap();
    let mut h = Harness::with_fake(FakeOptions {
        calls_per_minute_limit: Some(limit),
        ..FakeOptions::default()
    })
    .await;
    h.settings.coingecko_calls_per_minute = limit;
    h
}

/// Follows the import at `location` until it has ended.
async fn until_ended(api: &TestApi, location: &str) -> Value {
    let wait = async {
        loop {
            let import = api.get(location).await.json();
            if import["status"] != "running" {
                return import;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .expect("the import ends within two minutes")
}

#[tokio::test]
async fn tracking_the_top_300_registers_the_listed_coins_skips_a_colliding_symbol_and_stays_in_the_budget()
 {
    let h = harness().await;
    let api = TestApi::start(&h).await;
    let began = Instant::now();

    let answer = api
        .post("/api/v1/coins/track-top", Some(json!({"n": 300})), None)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let location = answer.header("location").expect("a Location").to_owned();
    let second = api
        .post("/api/v1/coins/track-top", Some(json!({"n": 5})), None)
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text());
    assert_eq!(second.json()["error"], "import_in_progress");
    assert_eq!(second.json()["active_import_id"], answer.json()["id"]);
    let import = until_ended(&api, &location).await;
    let took = began.elapsed();

    // The listed coins: BTC was registered (now tracked), 297 are new, two are skipped.
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(
        import["progress"],
        json!({"pages_done": 2, "pages_total": 2, "coins_done": 300, "coins_total": 300})
    );
    assert_eq!(import["already_registered"], json!(["BTC"]));
    let registered: Vec<&str> = import["registered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(registered.len(), 297, "{import}");
    assert_eq!(&registered[..4], ["ETH", "SOL", "DOGE", "TC5"]);
    let skipped = import["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{import}");
    assert_eq!(skipped[0]["symbol"], "btc");
    assert_eq!(
        skipped[0]["coingecko_id"],
        format!("top-coin-{COLLIDING_RANK:04}")
    );
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("BTC is registered with coingecko_id bitcoin"),
        "{}",
        skipped[0]
    );
    assert_eq!(
        skipped[1]["coingecko_id"],
        format!("top-coin-{UNSYMBOLIC_RANK:04}")
    );
    assert_eq!(count_rows(h.pool(), "coins WHERE tracked").await, 298);
    let sol = api.get("/api/v1/coins/SOL").await.json();
    assert_eq!(
        (sol["coingecko_id"].as_str(), sol["tracked"].as_bool()),
        (Some("solana"), Some(true))
    );

    // The calls: ceil(300/250) list calls, then one check per new coin, none refused.
    let calls = h.fake.calls();
    let lists = calls.iter().filter(|c| c.coin_id == MARKETS).count();
    let checks: HashSet<&str> = calls
        .iter()
        .filter(|c| c.coin_id != MARKETS)
        .map(|c| c.coin_id.as_str())
        .collect();
    assert_eq!(lists, 2);
    assert_eq!(calls.len(), 2 + 297, "one call per page and per new coin");
    assert_eq!(checks.len(), 297);
    assert!(
        calls.iter().all(|c| c.status == 200),
        "no 429: within the budget"
    );
    for (i, call) in calls.iter().enumerate() {
        let in_a_minute = calls[i..]
            .iter()
            .take_while(|later| later.at - call.at < Duration::from_secs(60))
            .count();
        assert!(in_a_minute <= CALLS_PER_MINUTE as usize);
    }
    println!(
        "track-top 300: {} calls in {took:.2?} (budget {CALLS_PER_MINUTE}/min)",
        calls.len()
    );
    api.stop().await;
}

/// Runs `price-history coins track-top <args>` within the test's call budget, checks that
/// it exits 0, and returns what it printed.
async fn track_top_on_the_command_line(h: &Harness, args: &[&str]) -> String {
    let budget = CALLS_PER_MINUTE.to_string();
    let args = [&["coins", "track-top"], args].concat();
    let mut cli = h.spawn(&args, &[("COINGECKO_CALLS_PER_MINUTE", &budget)]);

    let code = cli.exit_code(Duration::from_secs(60)).await;

    let out = cli.output();
    assert_eq!(code, Some(0), "{out}");
    out
}

#[tokio::test]
async fn coins_track_top_on_the_command_line_shows_what_it_registered_and_what_it_skipped() {
    let h = harness().await;

    let out = track_top_on_the_command_line(&h, &["10"]).await;

    assert_mentions(
        &out,
        &[
            "registered and tracked: 7 new, 1 already registered",
            "skipped 2:",
            "btc (top-coin-0007): BTC is registered with coingecko_id bitcoin",
        ],
    );
    assert_eq!(
        h.fake.calls().len(),
        1 + 7,
        "one list call, one check per new coin"
    );

    // Bad input is refused before any call.
    let mut bad = h.spawn(&["coins", "track-top", "0"], &[]);
    assert_eq!(bad.exit_code(Duration::from_secs(30)).await, Some(2));
    assert_eq!(h.fake.calls().len(), 8);
}

#[tokio::test]
async fn tracking_the_top_coins_hourly_keeps_each_ones_hours_and_turns_them_on_for_a_coin_tracked_already()
 {
    let h = harness().await;
    let since = days_before_today(30);
    coins::set_tracking(h.pool(), Symbol::BTC, true, Some(since))
        .await
        .unwrap();
    let api = TestApi::start(&h).await;

    let answer = api
        .post(
            "/api/v1/coins/track-top",
            Some(json!({"n": 10, "hourly": true})),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["hourly"], true);
    let location = answer.header("location").expect("a Location").to_owned();
    let import = until_ended(&api, &location).await;
    let without_hours = api
        .post("/api/v1/coins/track-top", Some(json!({"n": 10})), None)
        .await;
    let location = without_hours
        .header("location")
        .expect("a Location")
        .to_owned();
    let again = until_ended(&api, &location).await;

    // BTC was tracked already, not hourly: now it is, its own track_since kept.
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(import["hourly"], true);
    assert_eq!(import["already_registered"], json!(["BTC"]));
    assert_eq!(
        import["registered"].as_array().unwrap().len(),
        7,
        "{import}"
    );
    assert_eq!(
        count_rows(h.pool(), "coins WHERE hourly AND tracked").await,
        8
    );
    let btc = api.get("/api/v1/coins/BTC").await.json();
    assert_eq!(
        (&btc["hourly"], &btc["track_since"]),
        (&json!(true), &json!(since.to_string()))
    );
    // Each coin's hours queued at once, with its days: one job a coin.
    let jobs = ingestion_jobs::list(h.pool(), None, None, 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 8, "{jobs:#?}");
    assert!(
        jobs.iter()
            .all(|j| j.trigger == Trigger::Api && j.range.end() == today_utc())
    );
    let btc_job = jobs.iter().find(|j| j.symbol == Symbol::BTC).unwrap();
    assert_eq!(btc_job.range.start(), since);
    // An import without hours leaves them as they are.
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["hourly"], false);
    assert_eq!(count_rows(h.pool(), "coins WHERE hourly").await, 8);
    api.stop().await;
}

#[tokio::test]
async fn coins_track_top_hourly_on_the_command_line_registers_the_coins_hourly() {
    let h = harness().await;

    let out = track_top_on_the_command_line(&h, &["3", "--hourly"]).await;

    assert!(
        out.contains("registered and tracked, with hourly candles: 2 new, 1 already registered"),
        "{out}"
    );
    assert_eq!(
        count_rows(h.pool(), "coins WHERE hourly AND tracked").await,
        3
    );
    assert_eq!(
        count_rows(h.pool(), "coin_imports WHERE hourly AND trigger = 'cli'").await,
        1
    );
    let jobs = ingestion_jobs::list(h.pool(), None, None, 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    assert!(jobs.iter().all(|j| j.trigger == Trigger::Cli), "{jobs:#?}");
}

#[tokio::test]
async fn an_import_whose_process_died_stops_blocking_a_new_one_but_a_live_one_blocks_the_command_line()
 {
    let h = harness().await;
    let live = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO coin_imports (id, status, n, trigger) VALUES ($1, 'running', 5, 'api')",
    )
    .bind(live)
    .execute(h.pool())
    .await
    .unwrap();

    // A live import (its heartbeat fresh) refuses the command line, before any call.
    let mut refused = h.spawn(&["coins", "track-top", "5"], &[]);
    assert_eq!(refused.exit_code(Duration::from_secs(30)).await, Some(2));
    assert!(
        refused.output().contains(&live.to_string()),
        "{}",
        refused.output()
    );
    assert_eq!(h.fake.calls().len(), 0);

    // Its process died: two minutes without a heartbeat, and a new import may start.
    sqlx::query("UPDATE coin_imports SET updated_at = now() - interval '3 minutes'")
        .execute(h.pool())
        .await
        .unwrap();
    let api = TestApi::start(&h).await;
    let answer = api
        .post("/api/v1/coins/track-top", Some(json!({"n": 5})), None)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let location = answer.header("location").expect("a Location").to_owned();
    let import = until_ended(&api, &location).await;
    assert_eq!(import["status"], "completed", "{import}");
    let dead = api
        .get(&format!("/api/v1/coins/track-top/{live}"))
        .await
        .json();
    assert_eq!(dead["status"], "failed");
    assert!(
        dead["error_message"]
            .as_str()
            .unwrap()
            .starts_with("abandoned"),
        "{dead}"
    );
    api.stop().await;
}

/// Starts an import of the top `n` through another process's API at `base`: its id.
async fn import_started(client: &reqwest::Client, base: &str, n: u32) -> uuid::Uuid {
    let answer = client
        .post(format!("{base}/api/v1/coins/track-top"))
        .header("content-type", "application/json")
        .body(json!({"n": n}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Issue 25: the API's import ran with no stop signal, so SIGTERM abandoned it `running`
/// until an import started two minutes later swept it. Now it stops between two coins,
/// ends its record `failed` saying how far it got, and the process exits 0.
#[tokio::test]
async fn an_import_the_api_started_stops_on_sigterm_and_ends_its_record_saying_so() {
    let h = harness().await;
    // Each check takes a moment, so that the import is midway when the signal comes.
    h.fake.set_delay(Duration::from_millis(50));
    let bind = format!("127.0.0.1:{}", free_port());
    let budget = CALLS_PER_MINUTE.to_string();
    let mut api = h.spawn(
        &["api"],
        &[
            ("BIND_ADDR", &bind),
            ("COINGECKO_CALLS_PER_MINUTE", &budget),
        ],
    );
    let base = format!("http://{bind}");
    let client = until_ready(&api, &base).await;
    let id = import_started(&client, &base, 300).await;
    let import = async || {
        coin_imports::get(h.pool(), id)
            .await
            .expect("the database answers")
            .expect("the import is recorded")
    };
    // Another process's progress has no event to wait on: its record is read until it
    // has registered a few coins.
    tokio::time::timeout(Duration::from_secs(60), async {
        while import().await.coins_done < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the import gets going");

    api.signal("TERM");

    api.exits_0(Duration::from_secs(30)).await;
    let ended = import().await;
    assert_eq!(
        ended.status,
        ImportStatus::Failed,
        "ended at once, not left running"
    );
    let message = ended.error_message.expect("it says why");
    let (done, total) = (ended.coins_done, ended.coins_total);
    assert!(
        message.starts_with(&format!("interrupted after {done} of {total} coins")),
        "{message}"
    );
    assert!((3..total).contains(&done), "{done} of {total}");
    let tracked = count_rows(h.pool(), "coins WHERE tracked").await;
    assert!(
        tracked as usize >= ended.registered.len() && !ended.registered.is_empty(),
        "the coins registered before the signal stay registered and tracked: {tracked} tracked, {:?}",
        ended.registered
    );
}

/// A coin's check held by 429s (a minute's wait each, without `Retry-After`) kept the
/// import, and so the process, from stopping for minutes after SIGTERM. Now the coin being
/// registered is dropped a few seconds after the signal, and the record says which it was.
#[tokio::test]
async fn an_import_whose_check_is_held_by_429s_still_stops_within_30_s_of_sigterm() {
    let h = harness().await;
    let bind = format!("127.0.0.1:{}", free_port());
    let mut api = h.spawn(&["api"], &[("BIND_ADDR", &bind)]);
    let base = format!("http://{bind}");
    let client = until_ready(&api, &base).await;
    // The list is read; every check after it is refused, each refusal a minute's wait.
    h.fake.push_response(ScriptedResponse::passthrough());
    for _ in 0..4 {
        h.fake.push_response(ScriptedResponse::rate_limited(None));
    }
    let before = h.fake.call_count();
    let id = import_started(&client, &base, 3).await;
    tokio::time::timeout(Duration::from_secs(30), h.fake.wait_for_calls(before + 2))
        .await
        .expect("the list is read and a check refused");
    assert_eq!(h.calls_answered(429).len(), 1);

    api.signal("TERM");

    api.exits_0(Duration::from_secs(30)).await;
    let ended = coin_imports::get(h.pool(), id).await.unwrap().unwrap();
    assert_eq!(ended.status, ImportStatus::Failed);
    let message = ended.error_message.expect("it says why");
    let (said, of) = ("interrupted after ", " of 3 coins, while registering");
    assert!(
        message.starts_with(said) && message.contains(of),
        "{message}"
    );
}

/// Schemathesis's finding: `OPTIONS /api/v1/coins/track-top` answered as if `track-top`
/// were a coin's symbol, `Allow: GET, HEAD, PUT`.
#[tokio::test]
async fn options_on_the_import_path_answers_that_it_takes_post_alone() {
    let (_h, api) = TestApi::with_harness().await;
    let options = |path: &str| api.client.request(reqwest::Method::OPTIONS, api.url(path));

    let import = api.send(options("/api/v1/coins/track-top")).await;
    let coin = api.send(options("/api/v1/coins/ETH")).await;

    assert_eq!(import.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(import.header("allow"), Some("POST"));
    assert_eq!(coin.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(coin.header("allow"), Some("GET, HEAD, PUT"));
    api.stop().await;
}

/// Whether the registered coin `symbol` is tracked.
async fn is_tracked(h: &Harness, symbol: Symbol) -> bool {
    let record = coins::get(h.pool(), symbol).await.unwrap();
    record.expect("registered").coin.tracked
}

/// Runs an import of the top `n` coins through the API to its end: the record.
async fn imported(api: &TestApi, n: u32) -> Value {
    let answer = api
        .post("/api/v1/coins/track-top", Some(json!({"n": n})), None)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let location = answer.header("location").expect("a Location").to_owned();
    until_ended(api, &location).await
}

/// An audit's finding: a top coin registered already under another symbol was skipped
/// ("already registered as ...") and never tracked.
#[tokio::test]
async fn a_top_coin_registered_under_another_symbol_is_tracked_under_it() {
    let h = harness().await;
    let ethx = h.register("ETHX", "ethereum").await;
    // The bridged bitcoin, whose ticker `btc` is BTC's here, registered as WBTC.
    let bridged = format!("top-coin-{COLLIDING_RANK:04}");
    h.register("WBTC", &bridged).await;
    let api = TestApi::start(&h).await;

    let import = imported(&api, 10).await;

    assert_eq!(import["status"], "completed", "{import}");
    let already = import["already_registered"].as_array().unwrap();
    assert!(already.contains(&json!("ETHX")), "{import}");
    assert!(already.contains(&json!("WBTC")), "{import}");
    let skipped = import["skipped"].as_array().unwrap();
    assert_eq!(
        skipped.len(),
        1,
        "only the ticker that is no symbol: {import}"
    );
    assert!(is_tracked(&h, ethx).await);
    assert_eq!(
        count_rows(h.pool(), "coins WHERE coingecko_id = 'ethereum'").await,
        1
    );
}

/// An audit's finding: a coin that could not be checked (CoinGecko down for it) gave its
/// ticker to a lower-ranked coin with the same one, which then kept the symbol for good.
#[tokio::test]
async fn a_ticker_whose_coin_could_not_be_checked_is_not_given_to_a_lower_ranked_coin() {
    let h = harness().await;
    sqlx::query("DELETE FROM coins WHERE symbol = 'BTC'")
        .execute(h.pool())
        .await
        .unwrap();
    h.fake.set_unavailable_coins(["bitcoin"]);
    let api = TestApi::start(&h).await;

    let import = imported(&api, 10).await;

    assert_eq!(import["status"], "completed", "{import}");
    let skipped = import["skipped"].as_array().unwrap();
    let reason_of = |id: &str| {
        skipped
            .iter()
            .find(|s| s["coingecko_id"] == id)
            .map(|s| s["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{id} is not skipped: {import}"))
    };
    assert!(reason_of("bitcoin").contains("could not check bitcoin"));
    let bridged = format!("top-coin-{COLLIDING_RANK:04}");
    assert!(reason_of(&bridged).contains("held for bitcoin"), "{import}");
    assert_eq!(count_rows(h.pool(), "coins WHERE symbol = 'BTC'").await, 0);
}

/// An audit's finding: once the month's credits were spent, every remaining new coin still
/// waited for a slot of the minute's budget to be refused, one by one.
#[tokio::test]
async fn once_the_months_credits_run_out_the_import_checks_no_new_coin_but_tracks_those_registered()
{
    let mut h = harness().await;
    h.settings.coingecko_calls_per_month = Some("3".to_owned());
    let sol = h.register("SOLANA", "solana").await;
    h.set_credits_used(0).await;
    let api = TestApi::start(&h).await;

    // One call lists the coins, two check ETH and DOGE; then the month is spent.
    let import = imported(&api, 20).await;

    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(import["registered"], json!(["ETH", "DOGE"]), "{import}");
    let already = import["already_registered"].as_array().unwrap();
    assert!(
        already.contains(&json!("SOLANA")),
        "tracked without a call: {import}"
    );
    let skipped = import["skipped"].as_array().unwrap();
    let unchecked = skipped
        .iter()
        .filter(|s| {
            s["reason"]
                .as_str()
                .unwrap()
                .starts_with("not checked: the month's CoinGecko credits")
        })
        .count();
    // Ranks 6 to 20, but for the colliding ticker and the one that is no symbol.
    assert_eq!(
        unchecked,
        15 - 2,
        "the new coins after the refusal are not asked: {import}"
    );
    let checks = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.coin_id != MARKETS)
        .count();
    assert_eq!(
        checks,
        1 + 2,
        "SOLANA's registration, then ETH's and DOGE's checks"
    );
    assert!(is_tracked(&h, sol).await);
}

/// An import whose process stopped answering (it died, or met a database error it could
/// not record) reads `failed` once its heartbeat is two minutes old, not `running` until
/// another import happens to start.
#[tokio::test]
async fn an_import_whose_process_stopped_answering_reads_failed_without_waiting_for_another() {
    let h = Harness::new().await;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO coin_imports (id, status, n, hourly, trigger, updated_at) \
         VALUES ($1, 'running', 5, false, 'api', now() - interval '3 minutes')",
    )
    .bind(id)
    .execute(h.pool())
    .await
    .unwrap();
    let api = TestApi::start(&h).await;
    let read = api
        .get(&format!("/api/v1/coins/track-top/{id}"))
        .await
        .json();
    assert_eq!(read["status"], "failed", "{read}");
    assert!(
        read["error_message"]
            .as_str()
            .unwrap()
            .starts_with("abandoned"),
        "{read}"
    );
    // Its process was alive after all (the database away): its late save leaves the
    // record as readers were told, not running or completed again.
    let mut late = coin_imports::get(h.pool(), id).await.unwrap().unwrap();
    late.status = ImportStatus::Completed;
    coin_imports::save(h.pool(), &late).await.unwrap();
    let read = api
        .get(&format!("/api/v1/coins/track-top/{id}"))
        .await
        .json();
    assert_eq!(read["status"], "failed", "{read}");
    api.stop().await;
}
