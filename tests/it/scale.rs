//! Many coins (issue 20): shutdown wins over a busy scheduler, and the coin list pages.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{Harness, TestApi, count_rows, days_before_today};

/// Registers `n` tracked coins by SQL, `C0001`..., each tracked since three days ago and
/// with nothing stored: every one of them is behind.
async fn many_tracked_coins(h: &Harness, n: usize) {
    sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since) \
         SELECT 'C' || lpad(k::text, 4, '0'), 'coin-' || k, $2::date - 30, TRUE, $2::date - 3 \
         FROM generate_series(1, $1) AS k",
    )
    .bind(i32::try_from(n).unwrap())
    .bind(days_before_today(0))
    .execute(h.pool())
    .await
    .expect("coins inserted");
}

#[tokio::test]
async fn sigterm_stops_a_busy_scheduler_within_30_s_and_the_next_process_finishes_its_tick_without_a_second_job()
 {
    // Arrange: 1,500 tracked coins all behind, a tick every second, and a CoinGecko that
    // holds every call, so no job ends during the test (a failed one would rightly be
    // queued again, and blur the count).
    let h = Harness::new().await;
    let coins = 1500;
    many_tracked_coins(&h, coins).await;
    // Each coin has a hole (its days three and one before yesterday stored, two before
    // not), so each needs its own gap query: a tick long enough to be stopped half done.
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
           SELECT symbol, d, 100, 110, 90, 105, 1000, d + interval '23 hours'
           FROM coins, unnest(ARRAY[$1::date, $2::date]) AS d"#,
    )
    .bind(days_before_today(4))
    .bind(days_before_today(2))
    .execute(h.pool())
    .await
    .expect("days with a hole stored");
    h.fake.set_delay(Duration::from_secs(600));
    let env = [
        ("SYNC_SCHEDULE", "* * * * * *"),
        ("COINGECKO_TIMEOUT_SECS", "900"),
        ("RUST_LOG", "info,sqlx=warn,price_history::schedule=debug"),
    ];
    // The first process queues jobs in its tick.
    let mut first = h.spawn(&["worker"], &env);
    first
        .wait_for_printed("coin behind: job queued", Duration::from_secs(60))
        .await;

    // Act: SIGTERM in the middle of the tick.
    first.signal("TERM");
    let signalled = Instant::now();
    let code = first.exit_code(Duration::from_secs(30)).await;
    let exited = signalled.elapsed();

    // Assert: it stopped between two coins and left the tick unrecorded, half done.
    assert_eq!(code, Some(0), "{}", first.output());
    assert!(exited < Duration::from_secs(30));
    let queued_by_first = count_rows(h.pool(), "ingestion_jobs").await;
    assert!(
        (1..coins as i64).contains(&queued_by_first),
        "half a tick: {queued_by_first} jobs"
    );
    assert_eq!(count_rows(h.pool(), "sync_ticks").await, 0);
    assert!(
        first
            .output()
            .contains("stopping in the middle of a tick: the next process to act finishes it"),
        "{}",
        first.output()
    );

    // The next process acts and finishes the tick: one job per coin, never two.
    let mut next = h.spawn(&["worker"], &env);
    next.wait_for_printed(
        "acted on a tick of the sync schedule",
        Duration::from_secs(120),
    )
    .await;
    let (jobs, coins_with_a_job): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT symbol) FROM ingestion_jobs")
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!((jobs, coins_with_a_job), (coins as i64, coins as i64));
    next.signal("TERM");
    let signalled = Instant::now();
    assert_eq!(
        next.exit_code(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        next.output()
    );
    println!(
        "first process exited {exited:.2?} after SIGTERM, {queued_by_first} of {coins} jobs queued; the next one {:.2?}",
        signalled.elapsed()
    );
    let one_line_per_tick = next
        .output()
        .lines()
        .filter(|line| line.contains("coin behind: job queued"))
        .count();
    assert!(
        one_line_per_tick > 0,
        "at DEBUG, one line per job: {}",
        next.output()
    );
}

#[tokio::test]
async fn the_coin_list_pages_by_symbol_and_filters_by_text_and_tracking() {
    let h = Harness::new().await;
    many_tracked_coins(&h, 250).await;
    sqlx::query("UPDATE coins SET tracked = FALSE WHERE symbol > 'C0200'")
        .execute(h.pool())
        .await
        .unwrap();
    let api = TestApi::start(&h).await;

    // The default page: 100, by symbol, BTC first, and where to go on.
    let page = api.get("/api/v1/coins").await.json();
    let symbols: Vec<&str> = page["coins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols.len(), 100);
    assert_eq!(
        (symbols[0], symbols[1], symbols[99]),
        ("BTC", "C0001", "C0099")
    );
    assert_eq!(page["next"], "C0099");

    // Following `next` to the end walks every coin once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/api/v1/coins?limit=70".to_owned(),
            Some(after) => format!("/api/v1/coins?limit=70&after={after}"),
        };
        let page = api.get(&path).await.json();
        for coin in page["coins"].as_array().unwrap() {
            seen.push(coin["symbol"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no coin twice");
    assert_eq!(seen.len(), 251);
    let tail = api.get("/api/v1/coins?after=c0240&limit=100").await.json();
    assert_eq!(tail["coins"].as_array().unwrap().len(), 10);
    assert_eq!(tail["next"], serde_json::Value::Null);

    // `q` on symbol or id, case-insensitive; `tracked`.
    let found = api.get("/api/v1/coins?q=BITCO").await.json();
    assert_eq!(found["coins"].as_array().unwrap().len(), 1);
    assert_eq!(found["coins"][0]["symbol"], "BTC");
    let found = api.get("/api/v1/coins?q=c012").await.json();
    assert_eq!(found["coins"].as_array().unwrap().len(), 10, "C0120..C0129");
    let untracked = api
        .get("/api/v1/coins?tracked=false&limit=1000")
        .await
        .json();
    assert_eq!(
        untracked["coins"].as_array().unwrap().len(),
        51,
        "BTC and C0201..C0250"
    );
    let tracked = api
        .get("/api/v1/coins?tracked=true&limit=1000")
        .await
        .json();
    assert_eq!(tracked["coins"].as_array().unwrap().len(), 200);

    // Bad input: a clear 400.
    for bad in [
        "/api/v1/coins?limit=0",
        "/api/v1/coins?limit=1001",
        "/api/v1/coins?after=not-a-symbol",
        "/api/v1/coins?tracked=maybe",
        // PostgreSQL's text cannot hold a NUL: refused before the query, never a 503.
        "/api/v1/coins?q=bit%00coin",
    ] {
        let answer = api.get(bad).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text()
        );
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_coin_list_shows_a_page_of_ten_thousand_coins_and_finds_one_as_it_is_typed() {
    let browser = crate::browser::Browser::start(1280, 1000).await;
    let h = Harness::new().await;
    sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id) \
         SELECT 'X' || lpad(k::text, 5, '0'), 'x-coin-' || k FROM generate_series(1, 10000) AS k",
    )
    .execute(h.pool())
    .await
    .unwrap();
    let api = TestApi::start(&h).await;

    browser
        .client
        .goto(&format!("{}/?symbol=BTC", api.base))
        .await
        .expect("the page loads");
    browser
        .wait_for(
            "#coins tbody tr[data-symbol='X00099']",
            "the first page of coins",
        )
        .await;
    let shown = browser
        .run(
            "return [document.querySelectorAll('#coins tbody tr').length, document.querySelector('#coins-more').hidden];",
            vec![],
        )
        .await;
    assert_eq!(
        shown,
        serde_json::json!([100, false]),
        "one page, and more to come"
    );

    let search = browser
        .client
        .find(fantoccini::Locator::Css("#coin-search"))
        .await
        .expect("the search field");
    let typed = Instant::now();
    search.send_keys("X-COIN-4242").await.expect("typing");
    browser
        .wait_for(
            "#coins tbody tr[data-symbol='X04242']:only-child",
            "the coin typed",
        )
        .await;
    let found_in = typed.elapsed();
    println!(
        "found one coin of 10,001 {found_in:.2?} after typing (200 ms of it waiting for the typing to pause)"
    );
    assert!(found_in < Duration::from_secs(5));
    let more = browser
        .run(
            "return document.querySelector('#coins-more').hidden;",
            vec![],
        )
        .await;
    assert_eq!(more, serde_json::json!(true), "nothing more to show");
    assert_eq!(
        browser.run("return window.pageErrors;", vec![]).await,
        serde_json::json!([])
    );
    api.stop().await;
    browser.close().await;
}
