//! The page's side of hourly candles and volume (issue 26), in the real browser: the
//! "hourly" checkbox of a coin, the switch between 1d, 4h and 1h drawn from stored hours,
//! disputed candles marked, the missing hours shown, each source's volume a series (and a
//! pane) of its own, and a price axis that never runs below zero. What the chart holds is
//! read through `window.chartState()` (Lightweight Charts' own series, markers, panes and
//! price scale), after the page says it has drawn (`body[data-chart-candles]`).

use serde_json::{Value, json};

use super::page_errors;
use crate::browser::Browser;
use crate::support::{Harness, TestApi, days_before_today};

/// Days `first..=last` before today of BTC from `source`, closes swinging between about
/// 10,000 and 70,000 (the issue's series, whose axis ran down to -5,000), volume `volume`.
async fn store_days(h: &Harness, first: u64, last: u64, source: &str, volume: i64) {
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, source)
           SELECT 'BTC', d::date, o, GREATEST(o, c) * 1.01, LEAST(o, c) * 0.99, c, $4, d + interval '1 day', false, $3
           FROM (SELECT d, (40000 + 30000 * sin(extract(epoch FROM d) / 86400 / 5))::numeric(20, 2) AS o,
                           (40000 + 30000 * sin(extract(epoch FROM d) / 86400 / 5 + 0.2))::numeric(20, 2) AS c
                 FROM generate_series($1::date, $2::date, interval '1 day') AS d) AS days"#,
    )
    .bind(days_before_today(first))
    .bind(days_before_today(last))
    .bind(source)
    .bind(volume)
    .execute(h.pool())
    .await
    .expect("days are stored");
}

async fn chart_state(browser: &Browser) -> Value {
    browser.run("return window.chartState();", vec![]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_price_axis_stays_above_zero_and_each_sources_volume_is_a_series_of_its_own() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    // Coinbase's one-exchange volume for the older 30 days, CoinGecko's whole-market
    // volume (1000x more) for the 29 after them.
    store_days(&h, 59, 30, "coinbase", 1_000_000).await;
    store_days(&h, 29, 1, "coingecko", 1_000_000_000).await;
    let api = TestApi::start_with(h.api_state(None)).await;
    let (lowest, highest): (f64, f64) =
        sqlx::query_as("SELECT min(low)::float8, max(high)::float8 FROM daily_prices")
            .fetch_one(h.pool())
            .await
            .expect("the lowest low and the highest high");

    let (start, end) = (days_before_today(59), days_before_today(1));
    browser
        .client
        .goto(&format!(
            "{}/?symbol=BTC&start_date={start}&end_date={end}",
            api.base
        ))
        .await
        .expect("the page loads");
    browser
        .wait_for(
            "body[data-chart-timeframe='1d'][data-chart-candles='59']",
            "the chart",
        )
        .await;
    let state = chart_state(&browser).await;
    let (from, to) = (
        state["axis"]["from"].as_f64().expect("an axis"),
        state["axis"]["to"].as_f64().expect("an axis"),
    );
    assert!(
        lowest < 11_000.0,
        "the series reaches down to about 10,000: {lowest}"
    );
    assert!(
        from >= 0.0 && from <= lowest && to >= highest,
        "the axis shows every candle and no negative price: {state}"
    );
    assert_eq!(
        state["volumes"],
        json!([
            {"source": "coinbase", "points": 30, "pane": 1},
            {"source": "coingecko", "points": 29, "pane": 2}
        ]),
        "one volume series per source, each in a pane (and on a scale) of its own: {state}"
    );
    assert_eq!(state["panes"], json!(3), "{state}");
    let legend = browser
        .run(
            "return Object.fromEntries([...document.querySelectorAll('#chart-legend li[data-source]')]
               .map(li => [li.dataset.source, li.textContent + ' / ' + li.title]));",
            vec![],
        )
        .await;
    let says = |source: &str, words: &[&str]| {
        let text = legend[source].as_str().unwrap_or_default();
        words.iter().all(|w| text.contains(w))
    };
    assert!(
        says("coinbase", &["one exchange", "10-100x"])
            && says("coingecko", &["whole market", "24-hour"])
            && says("coinbase", &["change of source, not of the market"]),
        "the legend says what each volume measures: {legend}"
    );
    assert_eq!(
        page_errors(&browser).await,
        json!([]),
        "no errors on the page"
    );
    browser.close().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_checkbox_turns_a_coins_hours_on_and_off() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    store_days(&h, 10, 1, "coingecko", 1_000_000_000).await;
    let api = TestApi::start_with(h.api_state(None)).await;
    let (start, end) = (days_before_today(10), days_before_today(1));
    browser
        .client
        .goto(&format!(
            "{}/?symbol=BTC&start_date={start}&end_date={end}",
            api.base
        ))
        .await
        .expect("the page loads");
    // BTC keeps no hours and has none: days only.
    browser
        .wait_for("#view-timeframe[data-offered='false']", "the timeframes")
        .await;
    let checkbox = "#coins tr[data-symbol='BTC'] td.hours[data-hourly='false'] input.hourly";
    browser.wait_for(checkbox, "BTC's hourly checkbox").await;
    browser
        .client
        .find(fantoccini::Locator::Css(checkbox))
        .await
        .expect("the checkbox")
        .click()
        .await
        .expect("a click");
    browser
        .wait_for(
            "#coins tr[data-symbol='BTC'] td.hours[data-hourly='true'] input.hourly:checked",
            "hours on",
        )
        .await;
    assert_eq!(
        api.get("/api/v1/coins/BTC").await.json()["hourly"],
        json!(true),
        "the coin's JSON says hourly"
    );
    // A coin that keeps hours is offered 4h and 1h, and says where its hours come from.
    browser
        .wait_for("#view-timeframe[data-offered='true']", "4h and 1h offered")
        .await;
    let offered = browser
        .run(
            "return {options: [...document.querySelectorAll('#view-timeframe option')]
                       .filter(o => !o.disabled).map(o => o.value),
                     says: document.querySelector('#view-hours-source').textContent,
                     cell: document.querySelector(\"#coins tr[data-symbol='BTC'] td.hours\").textContent};",
            vec![],
        )
        .await;
    assert_eq!(offered["options"], json!(["1d", "4h", "1h"]), "{offered}");
    assert!(
        offered["says"]
            .as_str()
            .is_some_and(|t| t.starts_with("Hours: ")),
        "{offered}"
    );

    // And off again: the coin's JSON says so, and days are all it is offered.
    browser
        .client
        .find(fantoccini::Locator::Css(
            "#coins tr[data-symbol='BTC'] td.hours input.hourly",
        ))
        .await
        .expect("the checkbox")
        .click()
        .await
        .expect("a click");
    browser
        .wait_for(
            "#coins tr[data-symbol='BTC'] td.hours[data-hourly='false'] input.hourly:not(:checked)",
            "hours off",
        )
        .await;
    assert_eq!(
        api.get("/api/v1/coins/BTC").await.json()["hourly"],
        json!(false),
        "the coin's JSON says not hourly"
    );
    browser
        .wait_for("#view-timeframe[data-offered='false']", "days only again")
        .await;
    assert_eq!(
        page_errors(&browser).await,
        json!([]),
        "no errors on the page"
    );
    browser.close().await;
    api.stop().await;
}
