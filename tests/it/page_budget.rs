//! The page's budget panel in a real headless Chromium: the month's CoinGecko credits as a
//! bar, the days until they reset, what the tracked coins cost a month and the warning
//! when that is more than the month has. Screenshot: `target/page-budget.png`.

use chrono::Utc;
use price_history::domain::CreditMonth;
use price_history::store::coins;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::{Harness, TestApi};

async fn panel(browser: &Browser) -> Value {
    browser
        .run(
            "const bar = document.getElementById('credits-bar');
             const text = id => document.getElementById(id).textContent;
             return {max: bar.max, value: bar.value, hidden: bar.hidden,
                     used: text('credits-used'), reset: text('credits-reset'),
                     estimate: text('credits-estimate'), warning: text('credits-warning'),
                     warning_hidden: document.getElementById('credits-warning').hidden,
                     minute: text('minute-budgets'), errors: window.pageErrors || []};",
            vec![],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_panel_shows_the_months_credits_as_a_bar_and_the_days_to_reset() {
    let browser = Browser::start(1280, 1600).await;
    let mut h = Harness::new().await;
    h.settings.coingecko_calls_per_month = Some("20".to_owned());
    h.set_credits_used(15).await;
    let month = CreditMonth::of(Utc::now());
    // BTC tracked on the daily schedule: 30 calls a month, more than the 20 credits.
    h.settings.sync_schedule = "0 40 0 * * *".parse().unwrap();
    coins::set_tracking(h.pool(), price_history::domain::Symbol::BTC, true, None)
        .await
        .unwrap()
        .unwrap();
    let api = TestApi::start(&h).await;

    browser
        .client
        .goto(&api.base)
        .await
        .expect("the page loads");
    browser
        .wait_for("#budget-section[data-used='15']", "the budget panel")
        .await;
    let shown = panel(&browser).await;
    let days = (month.resets_at() - Utc::now()).num_days();

    assert_eq!(
        (shown["max"].clone(), shown["value"].clone()),
        (json!(20), json!(15)),
        "{shown}"
    );
    assert_eq!(shown["hidden"], json!(false), "{shown}");
    let used = shown["used"].as_str().unwrap();
    assert!(
        used.contains("15 of 20") && used.contains("5 left"),
        "{shown}"
    );
    let reset = shown["reset"].as_str().unwrap();
    assert!(reset.contains(&format!("{days} day")), "{shown}");
    assert!(reset.contains(&month.resets_on().to_string()), "{shown}");
    let estimate = shown["estimate"].as_str().unwrap();
    assert!(
        estimate.contains("1 tracked coin costs about 30 calls"),
        "{shown}"
    );
    assert_eq!(
        shown["warning_hidden"],
        json!(false),
        "30 a month is over 20: {shown}"
    );
    assert!(
        shown["warning"]
            .as_str()
            .unwrap()
            .contains("COINGECKO_CALLS_PER_MONTH")
    );
    assert!(
        shown["minute"]
            .as_str()
            .unwrap()
            .contains("CoinGecko 6,000"),
        "{shown}"
    );
    assert_eq!(shown["errors"], json!([]), "{shown}");

    browser
        .run(
            "document.getElementById('budget-section').scrollIntoView();",
            vec![],
        )
        .await;
    let png = browser.client.screenshot().await.expect("a screenshot");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).expect("target/ exists");
    std::fs::write(dir.join("page-budget.png"), png).expect("the screenshot is saved");
    browser.close().await;
}
