//! The page at `/`, in a real headless Chromium driven over WebDriver: the calendar, the
//! chart, a job submitted from the form and followed live, the API's 401 message, both
//! widths, no page errors. Screenshots go to `target/page-1280.png` and `target/page-390.png`.

mod coins_and_jobs;
mod hours;

use std::path::PathBuf;

use chrono::NaiveDate;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::TestApi;
use crate::support::{Harness, days_before_today};

const TOKEN: &str = "page-test-token";

/// The days of the view, `today - 399 ..= today`, and what the seed makes of them with a
/// plan that serves 365 days: 19 out of plan (never stored, older than the reach), 374
/// stored, 6 missing in two runs, today provisional.
const VIEW_DAYS: u64 = 400;
const HOLE: std::ops::RangeInclusive<u64> = 196..=200;
const LONE_HOLE: u64 = 50;
const FIRST_STORED: u64 = 380;

/// Stores the fake CoinGecko's candles from `today - 380` to today (today provisional),
/// through a job as in production, then cuts the holes.
async fn seed(h: &Harness) {
    let job = h
        .run_job(days_before_today(FIRST_STORED), days_before_today(0), false)
        .await;
    // Today is stored, but provisional: the job says so.
    assert_eq!(job.records_fetched, 381, "{job:?}");
    assert_eq!(job.gap_dates, vec![days_before_today(0)], "{job:?}");
    for (first, last) in [(*HOLE.end(), *HOLE.start()), (LONE_HOLE, LONE_HOLE)] {
        sqlx::query("DELETE FROM daily_prices WHERE date BETWEEN $1 AND $2")
            .bind(days_before_today(first))
            .bind(days_before_today(last))
            .execute(h.pool())
            .await
            .expect("the holes are cut");
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

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

/// BTC's 59 days up to yesterday: the older 30 from Coinbase with its one-exchange
/// volume, the 29 after them from CoinGecko with its whole-market volume (1000x more).
async fn store_days_of_two_sources(h: &Harness) {
    store_days(h, 59, 30, "coinbase", 1_000_000).await;
    store_days(h, 29, 1, "coingecko", 1_000_000_000).await;
}

/// Waits for the calendar of `start..=end`, and returns how many of its cells have each
/// status.
async fn calendar_cells(browser: &Browser, start: NaiveDate, end: NaiveDate) -> Value {
    browser
        .wait_for(
            &format!("#calendar[data-range='{start}/{end}']"),
            "the calendar",
        )
        .await;
    cell_counts(browser).await
}

/// How many calendar cells have each status.
async fn cell_counts(browser: &Browser) -> Value {
    browser
        .run(
            "const counts = {};
             for (const cell of document.querySelectorAll('#calendar .day')) {
               const status = cell.dataset.status;
               if (!cell.title.includes(status.replace(/-/g, ' '))) return 'a cell whose title does not say its status: ' + cell.title;
               counts[status] = (counts[status] || 0) + 1;
             }
             return counts;",
            vec![],
        )
        .await
}

/// Pixels of the chart in the candles' own colours: the chart has drawn them.
async fn candle_pixels(browser: &Browser) -> Value {
    browser
        .run(
            "let up = 0, down = 0, sized = 0;
             for (const canvas of document.querySelectorAll('#chart canvas')) {
               if (!canvas.width || !canvas.height) continue;
               sized++;
               const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
               for (let i = 0; i < data.length; i += 4) {
                 if (data[i] === 21 && data[i + 1] === 128 && data[i + 2] === 61) up++;
                 if (data[i] === 220 && data[i + 1] === 38 && data[i + 2] === 38) down++;
               }
             }
             return {sized, up, down, candles: Number(document.body.dataset.chartCandles)};",
            vec![],
        )
        .await
}

async fn set_value(browser: &Browser, css: &str, value: &str) {
    browser
        .run(
            "document.querySelector(arguments[0]).value = arguments[1];",
            vec![json!(css), json!(value)],
        )
        .await;
}

/// Opens the page on BTC's days `start..=end`; `more` is added to the query
/// (`&timeframe=1h`).
async fn open_btc(browser: &Browser, api: &TestApi, start: NaiveDate, end: NaiveDate, more: &str) {
    let url = format!(
        "{}/?symbol=BTC&start_date={start}&end_date={end}{more}",
        api.base
    );
    browser.client.goto(&url).await.expect("the page loads");
}

/// How every page test ends: no errors on the page, the browser closed, the API stopped.
async fn finish(browser: Browser, api: TestApi) {
    let errors = browser.run("return window.pageErrors;", vec![]).await;
    assert_eq!(errors, json!([]), "no errors on the page");
    browser.close().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_calendar_the_chart_and_a_job_followed_live() {
    // The browser first: without Chromium the test fails at once, saying what to install.
    let browser = Browser::start(1280, 1600).await;
    let mut h = Harness::new().await;
    seed(&h).await;
    // From now on the plan serves the past 365 days: the 19 oldest days are out of plan.
    h.settings.coingecko_history_days = Some(365);
    let api = TestApi::start_with(h.api_state(Some(TOKEN))).await;
    let worker = h.start_worker();

    let today = days_before_today(0);
    let start = days_before_today(VIEW_DAYS - 1);
    open_btc(&browser, &api, start, today, "").await;
    browser.run("window.notReloaded = true;", vec![]).await;

    // The calendar: one cell per day, each with the status the seed gives it.
    assert_eq!(
        calendar_cells(&browser, start, today).await,
        json!({"stored": 374, "missing": 6, "provisional": 1, "out-of-plan": 19}),
        "the calendar's cells"
    );
    let runs: Vec<String> = browser
        .run(
            "return [...document.querySelectorAll('#gap-runs li')].map(li => li.textContent);",
            vec![],
        )
        .await
        .as_array()
        .expect("a list")
        .iter()
        .map(|run| run.as_str().unwrap_or_default().to_owned())
        .collect();
    let day = |n: u64| days_before_today(n).to_string();
    assert_eq!(
        runs,
        vec![
            format!(
                "{} to {} (19 days, out of plan)",
                start,
                day(FIRST_STORED + 1)
            ),
            format!("{} to {} (5 days, missing)", day(200), day(196)),
            format!("{} (1 day, missing)", day(LONE_HOLE)),
            format!("{today} (1 day, missing)"),
        ],
        "the gap runs, the provisional day among them"
    );

    // The chart: every stored day a candle, drawn in the candles' colours.
    browser
        .wait_for("body[data-chart-candles]", "the chart")
        .await;
    let pixels = candle_pixels(&browser).await;
    assert_eq!(pixels["candles"], json!(375), "{pixels}");
    assert!(pixels["sized"].as_u64() > Some(0), "{pixels}");
    assert!(
        pixels["up"].as_u64() > Some(100) && pixels["down"].as_u64() > Some(100),
        "candles of both colours are drawn: {pixels}"
    );

    // A wrong token: the API's own 401 message, shown by the form.
    let refused = api
        .post(
            "/api/v1/ingestion-jobs",
            Some(json!({"start_date": day(60), "end_date": day(1)})),
            Some("wrong"),
        )
        .await;
    assert_eq!(refused.status, 401);
    let message = refused.json()["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    let token = browser
        .client
        .find(fantoccini::Locator::Css("#token"))
        .await
        .expect("the token field");
    token.send_keys("wrong-token").await.expect("typing");
    // The last 60 days: the lone hole is in them, the run of five is not.
    set_value(&browser, "#job-start", &day(60)).await;
    set_value(&browser, "#job-end", &day(1)).await;
    browser
        .click("#job-form button[type=submit]", "the submit button")
        .await;
    browser.wait_for("#job-result.error", "the refusal").await;
    let shown = browser
        .client
        .find(fantoccini::Locator::Css("#job-result"))
        .await
        .expect("the result")
        .text()
        .await
        .expect("its text");
    assert!(
        shown.contains("401") && shown.contains(&message),
        "the form shows the API's 401 message {message:?}: {shown:?}"
    );
    assert_eq!(
        browser
            .run(
                "return sessionStorage.getItem('price-history.api-token');",
                vec![]
            )
            .await,
        json!("wrong-token"),
        "the token is kept in the tab's session storage"
    );

    // The right token: the job appears, runs on the worker and its progress reaches the
    // end, all without a reload.
    token.clear().await.expect("clearing");
    token.send_keys(TOKEN).await.expect("typing");
    browser
        .click("#job-form button[type=submit]", "the submit button")
        .await;
    browser.wait_for("#job-result.ok", "the job queued").await;
    browser
        .wait_for("#jobs li.job[data-status='completed']", "the job completed")
        .await;
    let progress = browser
        .run(
            "const job = document.querySelector('#jobs li.job');
             const bar = job.querySelector('progress');
             return {status: job.dataset.status, value: bar.value, max: bar.max,
                     text: job.querySelector('.progress-text').textContent,
                     notReloaded: window.notReloaded === true};",
            vec![],
        )
        .await;
    assert_eq!(progress["status"], json!("completed"), "{progress}");
    assert_eq!(progress["value"], progress["max"], "{progress}");
    assert_eq!(progress["text"], json!("1 of 1 window"), "{progress}");
    assert_eq!(
        progress["notReloaded"],
        json!(true),
        "no reload: {progress}"
    );
    // The job of the coin on view ended: the calendar is read again, the hole filled.
    browser
        .wait_for("#calendar[data-missing='5']", "the calendar after the job")
        .await;
    assert_eq!(
        cell_counts(&browser).await,
        json!({"stored": 375, "missing": 5, "provisional": 1, "out-of-plan": 19}),
        "the calendar after the job"
    );

    browser.resize(1280, 1800).await;
    browser.run("window.scrollTo(0, 0);", vec![]).await;
    let screenshots = target_dir();
    std::fs::create_dir_all(&screenshots).expect("target/ exists");
    let png = browser.client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots.join("page-1280.png"), png).expect("the screenshot is saved");

    // A phone's width: everything fits, nothing scrolls sideways. The chart follows its
    // container on the next frame: wait until it has been drawn at the container's width.
    browser.resize(390, 1800).await;
    let width = browser
        .run(
            "return document.querySelector('#chart').clientWidth;",
            vec![],
        )
        .await;
    browser
        .wait_for(
            &format!("#chart[data-drawn-width='{width}']"),
            "the chart at the phone's width",
        )
        .await;
    let fits = browser
        .run(
            "return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                     chart: document.querySelector('#chart > div').getBoundingClientRect().width};",
            vec![],
        )
        .await;
    assert_eq!(fits["inner"], json!(390), "{fits}");
    assert!(
        fits["scroll"].as_u64() <= fits["inner"].as_u64(),
        "no sideways scrolling at 390 px: {fits}"
    );
    assert!(
        fits["chart"]
            .as_f64()
            .is_some_and(|w| w > 300.0 && w <= 390.0),
        "the chart fits the width: {fits}"
    );
    browser.run("window.scrollTo(0, 0);", vec![]).await;
    let png = browser.client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots.join("page-390.png"), png).expect("the screenshot is saved");

    worker.stop().await;
    finish(browser, api).await;
}

/// The second source on the page: its days have their own colour on the calendar (and a
/// legend entry), and each coin shows its product, its deviation and whether it is used,
/// with the reason when not. Rows and checks are stored by SQL: the page is tested here,
/// not the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_marks_second_source_days_and_shows_each_coins_deviation() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    store_days_of_two_sources(&h).await;
    let reason = "XYZ-USD closes 9876.5 % away from CoinGecko's: another asset";
    sqlx::query(
        "UPDATE coins SET fallback_deviation_percent = 0.4213, fallback_usable = true, \
         fallback_checked_at = now() WHERE symbol = 'BTC'",
    )
    .execute(h.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO coins (symbol, coingecko_id, first_day, coinbase_product, \
             fallback_deviation_percent, fallback_usable, fallback_checked_at, fallback_unusable_reason) \
         VALUES ('XYZ', 'xyz-coin', '2020-01-01', 'XYZ-USD', 9876.5, false, now(), $1)",
    )
    .bind(reason)
    .execute(h.pool())
    .await
    .unwrap();
    let api = TestApi::start_with(h.api_state(None)).await;

    let (start, end) = (days_before_today(59), days_before_today(1));
    open_btc(&browser, &api, start, end, "").await;
    assert_eq!(
        calendar_cells(&browser, start, end).await,
        json!({"stored": 29, "second-source": 30}),
        "the calendar's cells"
    );
    let looks = browser
        .run(
            "const colour = css => getComputedStyle(document.querySelector(css)).backgroundColor;
             return {stored: colour('#calendar .day.stored'),
                     second: colour('#calendar .day.second-source'),
                     legend: colour('.legend .day.second-source'),
                     legendText: document.querySelector('.legend .day.second-source').parentElement.textContent,
                     summary: document.querySelector('#calendar-summary').textContent,
                     counted: document.querySelector('#calendar').dataset.secondSource};",
            vec![],
        )
        .await;
    assert_ne!(
        looks["stored"], looks["second"],
        "a colour of its own: {looks}"
    );
    assert_eq!(
        looks["second"], looks["legend"],
        "the legend shows it: {looks}"
    );
    assert!(
        looks["legendText"]
            .as_str()
            .is_some_and(|t| t.contains("second source")),
        "{looks}"
    );
    assert!(
        looks["summary"]
            .as_str()
            .is_some_and(|t| t.contains("30 from the second source")),
        "{looks}"
    );
    assert_eq!(looks["counted"], json!("30"), "{looks}");

    // Each coin's second source: product, deviation, used or not and why.
    browser
        .wait_for("#coins tr[data-symbol='XYZ'] td.fallback", "the coins")
        .await;
    let coins = browser
        .run(
            "const cell = symbol => document.querySelector(`#coins tr[data-symbol='${symbol}'] td.fallback`);
             return {btc: cell('BTC').textContent, xyz: cell('XYZ').textContent,
                     xyzFlagged: cell('XYZ').classList.contains('unusable'),
                     view: document.querySelector('#view-fallback').textContent};",
            vec![],
        )
        .await;
    assert_eq!(
        coins["btc"],
        json!("BTC-USD, 0.42 % from CoinGecko, used"),
        "{coins}"
    );
    assert_eq!(
        coins["xyz"],
        json!(format!(
            "XYZ-USD, 9876.5 % from CoinGecko, not used: {reason}"
        )),
        "{coins}"
    );
    assert_eq!(coins["xyzFlagged"], json!(true), "{coins}");
    assert_eq!(
        coins["view"],
        json!("Second source: BTC-USD, 0.42 % from CoinGecko, used."),
        "{coins}"
    );

    // The chart draws every stored day, whichever its source.
    browser
        .wait_for("body[data-chart-candles]", "the chart")
        .await;
    assert_eq!(candle_pixels(&browser).await["candles"], json!(59));
    finish(browser, api).await;
}

/// Each file of the page carries an `ETag`; asked again with it, the answer is `304`
/// without a body (the browser keeps its copy, and Chromium the chart library's compiled
/// code); with another tag, the file.
#[tokio::test]
async fn a_file_of_the_page_the_browser_holds_is_not_sent_again() {
    let (_h, api) = TestApi::with_harness().await;
    for path in [
        "/",
        "/assets/app.js",
        "/assets/lightweight-charts.standalone.production.js",
    ] {
        let first = api.get(path).await;
        assert_eq!(first.status, 200, "{path}");
        let etag = first.header("etag").expect("an ETag").to_owned();
        let held = api.get_with(path, "If-None-Match", &etag).await;
        assert_eq!(held.status, 304, "{path}");
        assert!(held.body.is_empty(), "{path}: no body");
        assert_eq!(held.header("etag"), Some(etag.as_str()), "{path}");
        let stale = api
            .get_with(path, "If-None-Match", "\"an-older-version\"")
            .await;
        assert_eq!(stale.status, 200, "{path}");
        assert_eq!(stale.body, first.body, "{path}: the file again");
    }
    api.stop().await;
}
