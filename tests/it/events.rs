//! The two endpoints the page reads besides the old ones: the status of every day
//! (`GET /api/v1/days`) and the job changes as server-sent events (`GET /api/v1/job-events`).

use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::support::{Harness, TestApi, day, days_before_today};

async fn store(h: &Harness, day: NaiveDate, provisional: bool) {
    sqlx::query(
        "INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, timestamp, provisional) \
         VALUES ('BTC', $1, 10, 12, 9, 11, 100, $1::timestamptz + interval '23 hours', $2)",
    )
    .bind(day)
    .bind(provisional)
    .execute(h.pool())
    .await
    .expect("a row is stored");
}

#[tokio::test]
async fn every_day_of_a_range_has_one_letter_and_the_counts_add_up() {
    let mut h = Harness::new().await;
    h.settings.coingecko_history_days = Some(365);
    let today = days_before_today(0);
    store(&h, day("2013-04-29"), false).await;
    store(&h, days_before_today(2), false).await;
    store(&h, today, true).await;
    let api = TestApi::start_with(h.api_state(None)).await;

    // BTC's first day is 2013-04-28; the plan serves only the past 365 days.
    let answer = api
        .get("/api/v1/days?symbol=btc&start_date=2013-04-26&end_date=2013-04-30")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["statuses"], json!("--oso"), "{body}");
    assert_eq!(body["symbol"], json!("BTC"));
    assert_eq!(body["first_day"], json!("2013-04-28"));
    assert_eq!(
        body["plan_first_day"],
        json!(days_before_today(364).to_string())
    );
    assert_eq!(
        body["counts"],
        json!({"stored": 1, "second_source": 0, "provisional": 0, "missing": 0, "out_of_plan": 2, "not_expected": 2})
    );

    // Yesterday missing, today provisional, tomorrow not expected yet.
    let tomorrow = today.succ_opt().expect("a date");
    let answer = api
        .get(&format!(
            "/api/v1/days?symbol=BTC&start_date={}&end_date={tomorrow}",
            days_before_today(2)
        ))
        .await;
    assert_eq!(answer.json()["statuses"], json!("smp-"));

    // Twenty years at most, a registered coin only.
    let too_long = api
        .get("/api/v1/days?symbol=BTC&start_date=2000-01-01&end_date=2020-01-01")
        .await;
    assert_eq!(too_long.status, 400);
    assert_eq!(too_long.error_code(), "range_too_long");
    let twenty_years = api
        .get(&format!(
            "/api/v1/days?symbol=BTC&start_date={}&end_date={today}",
            days_before_today(7304)
        ))
        .await;
    assert_eq!(
        twenty_years.json()["statuses"].as_str().map(str::len),
        Some(7305)
    );
    let unknown = api
        .get("/api/v1/days?symbol=DOGE&start_date=2024-01-01&end_date=2024-01-02")
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error_code(), "unknown_symbol");
    api.stop().await;
}

/// Reads server-sent events from `response` until one satisfies `wanted`.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let read = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let job: Value = serde_json::from_str(&data).expect("each event is a job");
                if wanted(&job) {
                    return job;
                }
            }
            let chunk = response
                .chunk()
                .await
                .expect("the stream reads")
                .expect("the stream stays open");
            buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the event comes within a minute")
}

#[tokio::test]
async fn each_change_of_a_job_is_pushed_to_every_follower_and_shutdown_ends_the_streams() {
    let h = Harness::new().await;
    let api = TestApi::start(&h).await;
    let client = reqwest::Client::new();
    let follow = |query: &str| {
        client
            .get(format!("{}/api/v1/job-events{query}", api.base))
            .send()
    };
    let mut all = follow("").await.expect("the stream opens");
    assert_eq!(all.status(), 200);
    assert!(
        all.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream"),
        "{:?}",
        all.headers()
    );
    let mut btc = follow("?symbol=btc").await.expect("the stream opens");
    let bad = follow("?symbol=not-a-symbol").await.expect("an answer");
    assert_eq!(bad.status(), 400);

    let submitted = api
        .submit(json!({"start_date": days_before_today(100).to_string(), "end_date": days_before_today(1).to_string()}))
        .await;
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    let id = submitted.json()["id"].clone();
    let worker = h.start_worker();

    let (mut all_buffer, mut btc_buffer) = (String::new(), String::new());
    let first = next_event(&mut all, &mut all_buffer, |job| job["id"] == id).await;
    assert!(
        first["status"] == json!("pending") || first["status"] == json!("running"),
        "{first}"
    );
    // Progress moves event by event, and the last event is the ending.
    let mut done = 0;
    let finished = loop {
        let job = next_event(&mut all, &mut all_buffer, |job| job["id"] == id).await;
        let now = job["progress"]["chunks_done"].as_i64().expect("a count");
        assert!(now >= done, "progress never goes back: {job}");
        done = now;
        if job["status"] == json!("completed") {
            break job;
        }
    };
    assert_eq!(finished["progress"]["chunks_done"], json!(2), "{finished}");
    let seen_by_btc = next_event(&mut btc, &mut btc_buffer, |job| {
        job["id"] == id && job["status"] == json!("completed")
    })
    .await;
    assert_eq!(seen_by_btc["symbol"], json!("BTC"));
    worker.stop().await;

    // Streams never end by themselves; shutdown ends them (TestApi::stop waits 10 s).
    api.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while all.chunk().await.expect("the stream reads").is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends at shutdown");
}
