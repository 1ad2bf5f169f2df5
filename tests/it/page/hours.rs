//! The page's side of hourly candles and volume (issue 26), in the real browser: the
//! "hourly" checkbox of a coin, the switch between 1d, 4h and 1h drawn from stored hours,
//! disputed candles marked, the missing hours shown, each source's volume a series (and a
//! pane) of its own, and a price axis that never runs below zero. What the chart holds is
//! read through `window.chartState()` (Lightweight Charts' own series, markers, panes and
//! price scale), after the page says it has drawn (`body[data-chart-candles]`).

use chrono::{NaiveTime, TimeDelta};
use price_history::domain::{
    CheckPoint, DisputeRule, Hour, HourParts, HourlyCandle, PriceSource, Symbol,
};
use price_history::store::hourly_prices;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{finish, open_btc, store_days, store_days_of_two_sources};
use crate::browser::Browser;
use crate::support::{Harness, TestApi, days_before_today};

/// The hours of the two days before yesterday and yesterday (`today - 2`, `today - 1`) that
/// are left missing, counted from the first's 00:00 UTC.
const HOLE: [i64; 3] = [10, 11, 12];
/// Coinbase candles that CoinGecko's point disputes.
const DISPUTED: [i64; 2] = [30, 40];

/// Hour `n` from `today - 2` at 00:00 UTC.
fn hour(n: i64) -> Hour {
    let midnight = days_before_today(2).and_time(NaiveTime::MIN).and_utc();
    Hour::from_unix(midnight.timestamp() + n * 3_600).expect("on the grid")
}

/// BTC's 48 hours of those two days but the hole: the first day's built from CoinGecko's
/// points, the second's Coinbase candles, two of them disputed. Through the store's upsert
/// and check, as a job stores them.
async fn store_hours(h: &Harness) {
    let rule = DisputeRule::new(Decimal::from(5));
    let candles: Vec<HourlyCandle> = (0..48)
        .filter(|n| !HOLE.contains(n))
        .map(|n| {
            let price = Decimal::from(30_000 + 40 * n);
            let source = if n < 24 {
                PriceSource::CoinGecko
            } else {
                PriceSource::Coinbase
            };
            HourlyCandle::new(HourParts {
                hour: hour(n),
                open: price,
                high: price + Decimal::from(60),
                low: price - Decimal::from(20),
                close: price + Decimal::from(20 * (n % 3) - 10),
                volume: Decimal::from(if n < 24 { 1_000_000_000 } else { 1_000_000 }),
                source,
                points: (source == PriceSource::CoinGecko).then_some(12),
                provisional: false,
                check: None,
            })
            .expect("a candle that holds together")
        })
        .collect();
    let points: Vec<(Hour, CheckPoint)> = DISPUTED
        .iter()
        .map(|&n| {
            let at = hour(n).start() + TimeDelta::seconds(41);
            (
                hour(n),
                CheckPoint {
                    at,
                    price: Decimal::from(1_000),
                },
            )
        })
        .collect();
    let mut tx = h.pool().begin().await.expect("a transaction");
    hourly_prices::upsert(&mut tx, Symbol::BTC, &candles, false, rule)
        .await
        .expect("the hours are stored");
    let disputed = hourly_prices::attach_checks(&mut tx, Symbol::BTC, &points, rule)
        .await
        .expect("the points are attached");
    assert_eq!(disputed, 2);
    tx.commit().await.expect("it commits");
}

/// Pixels of the chart in the disputed candles' colour (#c026d3): drawn, not only listed.
async fn disputed_pixels(browser: &Browser) -> u64 {
    browser
        .run(
            "let n = 0;
             for (const canvas of document.querySelectorAll('#chart canvas')) {
               if (!canvas.width || !canvas.height) continue;
               const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
               for (let i = 0; i < data.length; i += 4) {
                 if (data[i] === 192 && data[i + 1] === 38 && data[i + 2] === 211) n++;
               }
             }
             return n;",
            vec![],
        )
        .await
        .as_u64()
        .unwrap_or(0)
}

/// Sets the `<select>` `css` to `value` as a person would: the value, then `change`.
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser
        .run(
            "const select = document.querySelector(arguments[0]);
             select.value = arguments[1];
             select.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![json!(css), json!(value)],
        )
        .await;
}

/// Clicks BTC's hourly checkbox and waits until it shows hours `on` (or off), then checks
/// that the coin's JSON says so and waits until 4h and 1h are offered (or days only).
async fn click_btc_hours(browser: &Browser, api: &TestApi, on: bool) {
    let row = "#coins tr[data-symbol='BTC'] td.hours";
    browser
        .click(&format!("{row} input.hourly"), "the checkbox")
        .await;
    let checked = if on { ":checked" } else { ":not(:checked)" };
    browser
        .wait_for(
            &format!("{row}[data-hourly='{on}'] input.hourly{checked}"),
            &format!("hours on: {on}"),
        )
        .await;
    assert_eq!(
        api.get("/api/v1/coins/BTC").await.json()["hourly"],
        json!(on),
        "the coin's JSON says hourly: {on}"
    );
    browser
        .wait_for(
            &format!("#view-timeframe[data-offered='{on}']"),
            &format!("4h and 1h offered: {on}"),
        )
        .await;
}

/// Waits until the chart draws `candles` candles of `timeframe`, and returns its state.
async fn chart_of(browser: &Browser, timeframe: &str, candles: usize) -> Value {
    browser
        .wait_for(
            &format!("body[data-chart-timeframe='{timeframe}'][data-chart-candles='{candles}']"),
            &format!("{candles} candles of {timeframe}"),
        )
        .await;
    browser.run("return window.chartState();", vec![]).await
}

/// Asserts that the chart draws one volume series per source, in this order, each with
/// its points, in a pane (and on a scale) of its own.
fn assert_volumes(state: &Value, series: &[(&str, usize)]) {
    let expected: Vec<Value> = series
        .iter()
        .enumerate()
        .map(|(i, (source, points))| json!({"source": source, "points": points, "pane": i + 1}))
        .collect();
    assert_eq!(
        state["volumes"],
        Value::from(expected),
        "one volume series per source, each in a pane (and on a scale) of its own: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_price_axis_stays_above_zero_and_each_sources_volume_is_a_series_of_its_own() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    store_days_of_two_sources(&h).await;
    let api = TestApi::start_with(h.api_state(None)).await;
    let (lowest, highest): (f64, f64) =
        sqlx::query_as("SELECT min(low)::float8, max(high)::float8 FROM daily_prices")
            .fetch_one(h.pool())
            .await
            .expect("the lowest low and the highest high");

    let (start, end) = (days_before_today(59), days_before_today(1));
    open_btc(&browser, &api, start, end, "").await;
    let state = chart_of(&browser, "1d", 59).await;
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
    assert_volumes(&state, &[("coinbase", 30), ("coingecko", 29)]);
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
    finish(browser, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_checkbox_turns_a_coins_hours_on_and_off() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    store_days(&h, 10, 1, "coingecko", 1_000_000_000).await;
    let api = TestApi::start_with(h.api_state(None)).await;
    let (start, end) = (days_before_today(10), days_before_today(1));
    open_btc(&browser, &api, start, end, "").await;
    // BTC keeps no hours and has none: days only.
    browser
        .wait_for("#view-timeframe[data-offered='false']", "the timeframes")
        .await;
    let checkbox = "#coins tr[data-symbol='BTC'] td.hours[data-hourly='false'] input.hourly";
    browser.wait_for(checkbox, "BTC's hourly checkbox").await;
    // A coin that keeps hours is offered 4h and 1h, and says where its hours come from.
    click_btc_hours(&browser, &api, true).await;
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
    click_btc_hours(&browser, &api, false).await;
    finish(browser, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_switches_to_hours_and_four_hour_blocks_marks_disputed_ones_and_shows_missing_hours()
 {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    store_days(&h, 2, 1, "coingecko", 1_000_000_000).await;
    store_hours(&h).await;
    let api = TestApi::start_with(h.api_state(None)).await;
    // BTC keeps no hours now, but has some: 1h and 4h are offered all the same.
    let coin = api.get("/api/v1/coins/BTC").await.json();
    assert_eq!(
        (&coin["hourly"], &coin["stored_hours"]),
        (&json!(false), &json!(45))
    );

    let (start, end) = (days_before_today(2), days_before_today(1));
    open_btc(&browser, &api, start, end, "").await;
    chart_of(&browser, "1d", 2).await;
    browser
        .wait_for("#view-timeframe[data-offered='true']", "4h and 1h offered")
        .await;

    choose(&browser, "#view-timeframe", "1h").await;
    let state = chart_of(&browser, "1h", 45).await;
    assert_eq!(
        state["disputed"],
        json!(2),
        "the disputed hours are marked: {state}"
    );
    assert_volumes(&state, &[("coingecko", 21), ("coinbase", 24)]);
    assert!(state["axis"]["from"].as_f64() >= Some(0.0), "{state}");
    assert!(disputed_pixels(&browser).await > 0, "the marks are drawn");
    assert!(
        browser
            .run("return location.search;", vec![])
            .await
            .as_str()
            .is_some_and(|q| q.contains("timeframe=1h")),
        "the address keeps the timeframe"
    );

    choose(&browser, "#view-timeframe", "4h").await;
    let state = chart_of(&browser, "4h", 12).await;
    // Hours 28-31 and 40-43 hold the disputed ones.
    assert_eq!(state["disputed"], json!(2), "{state}");
    assert_volumes(&state, &[("coingecko", 6), ("coinbase", 6)]);

    // The missing hours, day by day, as the calendar's data in hours says.
    browser
        .wait_for(
            &format!("#hours-calendar[data-range='{start}/{end}']"),
            "the hours",
        )
        .await;
    let hours = browser
        .run(
            "const calendar = document.querySelector('#hours-calendar');
             return {cells: [...calendar.querySelectorAll('.day')].map(c => [c.dataset.date, Number(c.dataset.missing), c.className, c.title]),
                     missing: calendar.dataset.missing, disputed: calendar.dataset.disputed,
                     summary: document.querySelector('#hours-summary').textContent};",
            vec![],
        )
        .await;
    assert_eq!(hours["missing"], json!("3"), "{hours}");
    assert_eq!(hours["disputed"], json!("2"), "{hours}");
    let cells = hours["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "{hours}");
    assert_eq!(cells[0][0], json!(start.to_string()), "{hours}");
    assert_eq!(cells[0][1], json!(3), "{hours}");
    assert_eq!(cells[0][2], json!("day hours-partial"), "{hours}");
    assert!(
        cells[0][3]
            .as_str()
            .is_some_and(|t| t.contains("3 missing")),
        "{hours}"
    );
    assert_eq!(
        (&cells[1][1], &cells[1][2]),
        (&json!(0), &json!("day hours-complete")),
        "{hours}"
    );

    // The address alone opens the chart in hours.
    open_btc(&browser, &api, start, end, "&timeframe=1h").await;
    chart_of(&browser, "1h", 45).await;
    assert_eq!(
        browser
            .run(
                "return document.querySelector('#view-timeframe').value;",
                vec![]
            )
            .await,
        json!("1h")
    );
    finish(browser, api).await;
}
