//! What an audit of the page found, each in the real browser: the jobs shown when the
//! event stream is refused, the running job kept in sight behind many pending ones, the
//! coin form showing a registered coin's settings (saving it no longer untracks the coin),
//! the second source's line of a coin not on the list's page, hours read over their
//! longest range however long the view, and a malformed day in the address.

use chrono::{Days, NaiveDate};
use price_history::api::ConnectionLimits;
use price_history::domain::Symbol;
use price_history::store::coins;
use serde_json::json;

use super::{finish, open_btc, set_value};
use crate::browser::Browser;
use crate::support::{Harness, TestApi, days_before_today};

/// Puts `value` into the field `css` names and fires `event` on it, as typing does.
async fn type_into(browser: &Browser, css: &str, value: &str, event: &str) {
    set_value(browser, css, value).await;
    let script = "document.querySelector(arguments[0]).dispatchEvent(new Event(arguments[1]));";
    browser.run(script, vec![json!(css), json!(event)]).await;
}

/// The text of the element `css` names.
async fn text_of(browser: &Browser, css: &str) -> serde_json::Value {
    let script = "return document.querySelector(arguments[0]).textContent;";
    browser.run(script, vec![json!(css)]).await
}

/// Pending jobs queued after the running one: more than the 20 the list shows.
const PENDING: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_refused_the_page_lists_the_jobs_and_keeps_the_running_one_in_sight() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    let (start, end) = (days_before_today(10), days_before_today(1));
    let running = h.submit(start, end, false).await;
    sqlx::query("UPDATE ingestion_jobs SET status = 'running', started_at = now() WHERE id = $1")
        .bind(running.id)
        .execute(h.pool())
        .await
        .unwrap();
    for i in 0..PENDING {
        let symbol = Symbol::parse(&format!("C{i}")).unwrap();
        sqlx::query(
            "INSERT INTO coins (symbol, coingecko_id, first_day) VALUES ($1, $2, '2020-01-01')",
        )
        .bind(symbol.as_str())
        .bind(format!("coin-{i}"))
        .execute(h.pool())
        .await
        .unwrap();
        h.submit_for(symbol, start, end, false).await;
    }
    // No event stream at all: every one is refused (503), as on a server whose streams
    // are all taken.
    let limits = ConnectionLimits {
        event_streams: 0,
        ..ConnectionLimits::default()
    };
    let api = TestApi::start_with_limits(h.api_state(None), limits).await;

    open_btc(&browser, &api, start, end, "").await;

    let css = format!(
        "#jobs li.job[data-id='{}'][data-status='running']",
        running.id
    );
    browser
        .wait_for(&css, "the running job, listed without a stream")
        .await;
    let listed = browser
        .run(
            "return document.querySelectorAll('#jobs li.job').length;",
            vec![],
        )
        .await;
    assert_eq!(
        listed,
        json!(21),
        "the running job and the 20 newest others"
    );
    let live = text_of(&browser, "#live").await;
    assert_eq!(live, json!("reconnecting…"));
    finish(browser, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coin_form_shows_a_registered_coins_settings_and_saving_it_keeps_them() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    let eth = h.register("ETH", "ethereum").await;
    let since = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    coins::set_tracking(h.pool(), eth, true, Some(since))
        .await
        .unwrap()
        .unwrap();
    let api = TestApi::start_with(h.api_state(None)).await;
    open_btc(
        &browser,
        &api,
        days_before_today(30),
        days_before_today(1),
        "",
    )
    .await;
    let eth_listed = "#coins tbody tr[data-symbol='ETH']";
    browser.wait_for(eth_listed, "ETH in the list").await;

    // The list filtered to ETH: BTC, the coin viewed, is not on it.
    type_into(&browser, "#coin-search", "eth", "input").await;
    browser
        .wait_for(
            "#coins tbody tr:only-child[data-symbol='ETH']",
            "the list filtered",
        )
        .await;
    let line = text_of(&browser, "#view-fallback").await;
    assert!(
        line.as_str().unwrap().starts_with("Second source:"),
        "the viewed coin's second source, though it is not on the list: {line}"
    );

    type_into(&browser, "#coin-symbol", "eth", "change").await;
    browser
        .wait_for("#coin-tracked:checked", "the form showing ETH tracked")
        .await;
    let form = browser
        .run(
            "return [document.querySelector('#coin-id').value, document.querySelector('#coin-since').value];",
            vec![],
        )
        .await;
    assert_eq!(form, json!(["ethereum", "2024-01-01"]));
    browser
        .click(
            "#coin-form button[type='submit'], #coin-form button",
            "Save",
        )
        .await;
    browser
        .wait_for("#coin-result.ok:not(:empty)", "the answer")
        .await;
    browser
        .client
        .wait()
        .for_element(fantoccini::Locator::XPath(
            "//p[@id='coin-result'][starts-with(., 'Updated ETH')]",
        ))
        .await
        .expect("the coin is updated");
    let record = coins::get(h.pool(), eth).await.unwrap().unwrap();
    assert!(
        record.coin.tracked,
        "saving the form as shown keeps ETH tracked"
    );
    assert_eq!(record.coin.track_since, Some(since));
    finish(browser, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_over_a_view_longer_than_1461_days_draw_its_last_1461_days() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    // A coin that keeps hours: the page offers 1h for it (for one that keeps none it
    // switches the view to days).
    sqlx::query("UPDATE coins SET hourly = true WHERE symbol = 'BTC'")
        .execute(h.pool())
        .await
        .unwrap();
    let api = TestApi::start_with(h.api_state(None)).await;
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(2000)).unwrap();

    open_btc(&browser, &api, start, end, "&timeframe=1h").await;

    browser
        .wait_for("body[data-chart-timeframe='1h']", "the hours drawn")
        .await;
    let error = text_of(&browser, "#chart-error").await;
    assert_eq!(error, json!(""), "no refused read");
    finish(browser, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_day_in_the_address_leaves_the_page_working() {
    let browser = Browser::start(1280, 1600).await;
    let h = Harness::new().await;
    let api = TestApi::start_with(h.api_state(None)).await;

    // A review's finding: with hours asked for, the page reckoned their first day from
    // the end given, and the date that is none threw before the coin list was read.
    for view in ["", "&timeframe=1h"] {
        let url = format!("{}/?end_date=2026-13-01{view}", api.base);
        browser.client.goto(&url).await.expect("the page loads");

        browser
            .wait_for("#coins tbody tr[data-symbol='BTC']", "the coin list")
            .await;
        browser
            .wait_for("#calendar-summary:not(:empty)", "the view's word")
            .await;
        let said = text_of(&browser, "#calendar-summary").await;
        assert!(
            said.as_str().unwrap().contains("2026-13-01"),
            "{view}: the API's 400 names the day: {said}"
        );
    }
    finish(browser, api).await;
}
