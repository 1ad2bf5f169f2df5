//! What the service never trusts (INTERFACE.md): CoinGecko's answers, clients, and the
//! secrets it holds. Each test feeds the service what a misbehaving upstream or a hostile
//! client would, and checks what a user would see.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use fake_upstream::coingecko::ScriptedResponse;
use price_history::api::{self, ConnectionLimits};
use price_history::domain::{DailyCandle, JobStatus, Symbol};
use price_history::store::daily_prices;
use price_history::store::ingestion_jobs::JobRecord;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    Harness, TestApi, assert_completed, assert_mentions, day, days_before_today, free_port,
    output_text, price_history_command, until_ready,
};

/// One point per hour of `day` at `price` (a little jitter past the hour, as CoinGecko
/// sends), each with `volume`, as `[ms, value]` pairs.
fn hourly_points(day: NaiveDate, price: f64, volume: f64) -> (Vec<Value>, Vec<Value>) {
    (0..24)
        .map(|hour| {
            let ms = day
                .and_time(NaiveTime::from_hms_opt(hour, 0, 41).unwrap())
                .and_utc()
                .timestamp_millis();
            (json!([ms, price + f64::from(hour)]), json!([ms, volume]))
        })
        .unzip()
}

/// A market chart body from series of `[ms, value]` pairs.
fn chart(prices: Vec<Value>, volumes: Vec<Value>) -> String {
    json!({"prices": prices, "market_caps": [], "total_volumes": volumes}).to_string()
}

/// Runs a job of `start..=end` whose one call is answered with `prices` and `volumes`,
/// asserting that it failed: the job and its message.
async fn failed_job_answered(
    h: &Harness,
    start: NaiveDate,
    end: NaiveDate,
    prices: Vec<Value>,
    volumes: Vec<Value>,
) -> (JobRecord, String) {
    h.fake
        .push_response(ScriptedResponse::status(200, chart(prices, volumes)));
    let job = h.run_job(start, end, false).await;
    assert_eq!(job.status, JobStatus::Failed);
    let message = job.error_message.clone().expect("a failed job says why");
    (job, message)
}

fn at(day: NaiveDate, hour: u32) -> i64 {
    day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap())
        .and_utc()
        .timestamp_millis()
}

// --- CoinGecko's answers -------------------------------------------------------------

#[tokio::test]
async fn a_price_not_above_zero_fails_the_job_at_once_quoting_it_and_stores_nothing() {
    let h = Harness::new().await;
    let (a, b) = (days_before_today(10), days_before_today(9));
    let (mut prices, mut volumes) = hourly_points(a, 100.0, 5.0);
    let (more_prices, more_volumes) = hourly_points(b, 100.0, 5.0);
    prices.extend(more_prices);
    volumes.extend(more_volumes);
    prices[30] = json!([at(b, 6), -5.5]);

    let (job, message) = failed_job_answered(&h, a, b, prices, volumes).await;

    assert_mentions(
        &message,
        &[
            "price of -5.5",
            "must be above zero",
            "Nothing of that window was stored",
        ],
    );
    assert_eq!(h.fake.call_count(), 1, "a bad answer is not fetched again");
    assert_eq!(job.attempts, 1);
    assert_eq!(
        h.stored_days().await,
        0,
        "not even the good day of that window"
    );
}

#[tokio::test]
async fn the_table_itself_refuses_a_price_not_above_zero() {
    let h = Harness::new().await;
    let insert = |price: i32| {
        sqlx::query(
            r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
               VALUES ('BTC', '2024-01-01', $1, $1, $1, $1, 1, now())"#,
        )
        .bind(price)
        .execute(h.pool())
    };

    for price in [0, -1] {
        let error = insert(price).await.unwrap_err();
        let constraint = error
            .as_database_error()
            .and_then(|e| e.constraint())
            .map(str::to_owned);
        assert_eq!(constraint.as_deref(), Some("daily_prices_prices_positive"));
    }
    insert(1).await.expect("a positive price is stored");
}

#[tokio::test]
async fn a_negative_volume_fails_at_once_without_refetching_and_without_postgres_text() {
    let h = Harness::new().await;
    let day = days_before_today(10);
    let (prices, mut volumes) = hourly_points(day, 100.0, 5.0);
    volumes[23] = json!([at(day, 23), -2]);

    let (job, message) = failed_job_answered(&h, day, day, prices, volumes).await;

    assert!(message.contains("volume of -2"), "{message}");
    for postgres in ["violates", "check constraint", "database error", "SQLSTATE"] {
        assert!(!message.contains(postgres), "{message}");
    }
    assert_eq!(h.fake.call_count(), 1, "the window is not fetched again");
    assert_eq!(job.attempts, 1, "a bad answer is not retried by the queue");
    assert_eq!(h.stored_days().await, 0);
}

#[tokio::test]
async fn a_gap_fill_refused_by_coingecko_is_reported_as_the_refusal() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(20), days_before_today(11));
    let hole = [days_before_today(15), days_before_today(14)];
    h.fake.set_missing_days(hole);
    h.fake.push_response(ScriptedResponse::passthrough());
    h.fake.push_response(ScriptedResponse::status(
        401,
        r#"{"status":{"error_code":10002,"error_message":"Invalid API Key."}}"#,
    ));

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.gap_dates, hole.to_vec());
    let message = job.error_message.unwrap();
    assert_mentions(
        &message,
        &["Asking CoinGecko again for", "HTTP 401", "Invalid API Key"],
    );
    assert!(!message.contains("returned no data"), "{message}");
}

#[tokio::test]
async fn a_gap_fill_that_met_only_server_errors_says_so() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(20), days_before_today(11));
    h.fake.set_missing_days([days_before_today(15)]);
    h.fake.push_response(ScriptedResponse::passthrough());
    for _ in 0..=h.settings.coingecko_max_retries {
        h.fake.push_response(ScriptedResponse::server_error(503));
    }

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    let message = job.error_message.unwrap();
    assert_mentions(&message, &["HTTP 503", "Gave up after 4 attempts"]);
    assert!(!message.contains("returned no data"), "{message}");
}

#[tokio::test]
async fn a_failed_job_counts_its_missing_days_and_its_message_reads_cleanly() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(12), days_before_today(10));
    let calls = (h.settings.coingecko_max_retries + 1) * h.settings.job_max_attempts;
    for _ in 0..calls {
        h.fake.push_response(ScriptedResponse::server_error(500));
    }

    let job = h.run_job(start, end, false).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.gaps_detected, 3);
    assert_eq!(job.gap_dates, vec![start, days_before_today(11), end]);
    let message = job.error_message.unwrap();
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(!message.contains(".."), "{message}");
}

#[tokio::test]
async fn a_nul_in_coingeckos_refusal_fails_the_job_with_a_record_and_frees_the_coin() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(12), days_before_today(10));
    h.fail_next_calls(1, 404, r#"{"error":"coin\u0000not found"}"#);

    let refused = h.run_job(start, end, false).await;

    assert_eq!(refused.status, JobStatus::Failed);
    let message = refused.error_message.unwrap();
    assert!(message.contains("coin\u{FFFD}not found"), "{message}");
    let again = h.run_job(start, end, false).await;
    assert_completed(&again);
}

/// An audit's finding: a key of spaces alone counted as no key for the month's credits but
/// went out as an empty key header, which CoinGecko refuses.
#[tokio::test]
async fn a_coingecko_key_of_spaces_is_no_key_and_sends_no_header() {
    let mut h = Harness::new().await;
    h.settings.coingecko_api_key = Some(secrecy::SecretString::from("   ".to_owned()));

    let job = h
        .run_job(days_before_today(3), days_before_today(1), false)
        .await;

    assert_completed(&job);
    assert!(h.fake.calls().iter().all(|call| !call.api_key_present));
}

#[tokio::test]
async fn one_instant_with_two_prices_is_a_bad_answer_not_a_silent_merge() {
    let h = Harness::new().await;
    let day = days_before_today(10);
    let (mut prices, volumes) = hourly_points(day, 100.0, 5.0);
    let twin = prices[5][0].clone();
    prices.push(json!([twin, 250.0]));

    let (_, message) = failed_job_answered(&h, day, day, prices, volumes).await;

    assert_mentions(&message, &["two different prices", "and 250"]);
    assert_eq!(h.stored_days().await, 0);
}

#[tokio::test]
async fn a_day_of_hourly_data_with_too_few_points_is_not_stored_and_is_named() {
    let h = Harness::new().await;
    let (full, thin) = (days_before_today(10), days_before_today(9));
    let (mut prices, mut volumes) = hourly_points(full, 100.0, 5.0);
    prices.push(json!([at(thin, 12), 120.0]));
    volumes.push(json!([at(thin, 12), 6.0]));
    let body = chart(prices, volumes);
    // The window, then the gap fill of the thin day, both thin.
    h.fake
        .push_response(ScriptedResponse::status(200, body.clone()));
    h.fake.push_response(ScriptedResponse::status(200, body));

    let job = h.run_job(full, thin, false).await;

    assert_eq!(job.status, JobStatus::CompletedWithGaps);
    assert_eq!(job.gap_dates, vec![thin]);
    let message = job.error_message.unwrap();
    assert_mentions(&message, &["too few points", "at least 12 points"]);
    let stored = daily_prices::list(h.pool(), Symbol::BTC, full, thin)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].date, stored[0].points), (full, Some(24)));

    // A later job gets the day whole from the fake's usual answer.
    let job = h.run_job(full, thin, false).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error_message);
    let stored = daily_prices::list(h.pool(), Symbol::BTC, thin, thin)
        .await
        .unwrap();
    assert!(stored[0].points.unwrap() >= 20, "{:?}", stored[0].points);
}

/// Takes a migrated database back to the schema before the price rules, with `rows`
/// (`date`, price) stored as that release could store them.
async fn as_an_earlier_release_left_it(pool: &sqlx::PgPool, rows: &[(&str, i32)]) {
    sqlx::raw_sql(
        "ALTER TABLE daily_prices DROP CONSTRAINT daily_prices_prices_positive, \
             DROP CONSTRAINT daily_prices_points_positive, DROP COLUMN points; \
         DELETE FROM _sqlx_migrations WHERE version = 20261129000010",
    )
    .execute(pool)
    .await
    .unwrap();
    for (date, price) in rows {
        sqlx::query(
            r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
               VALUES ('BTC', $1::date, $2, $2, $2, $2, 0, now())"#,
        )
        .bind(date)
        .bind(price)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn prices_rule_is_validated(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'daily_prices_prices_positive'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// BTC's stored days of 2024.
async fn btc_days_of_2024(pool: &sqlx::PgPool) -> Vec<DailyCandle> {
    daily_prices::list(pool, Symbol::BTC, day("2024-01-01"), day("2024-12-31"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_database_of_an_earlier_release_upgrades_in_place_even_with_a_bad_price() {
    let clean = crate::support::TestDb::new().await;
    as_an_earlier_release_left_it(&clean.pool, &[("2024-01-01", 100)]).await;
    price_history::startup::migrate(&clean.pool)
        .await
        .expect("a database with valid rows upgrades");
    assert!(prices_rule_is_validated(&clean.pool).await);
    let kept = btc_days_of_2024(&clean.pool).await;
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].points, kept[0].provisional), (None, false));

    let dirty = crate::support::TestDb::new().await;
    as_an_earlier_release_left_it(&dirty.pool, &[("2024-01-01", 100), ("2024-01-02", -1)]).await;
    price_history::startup::migrate(&dirty.pool)
        .await
        .expect("a database with a bad price from the earlier release still starts");

    let rows = btc_days_of_2024(&dirty.pool).await;
    let flags: Vec<_> = rows
        .iter()
        .map(|r| (r.date.to_string(), r.provisional))
        .collect();
    assert_eq!(
        flags,
        vec![
            ("2024-01-01".to_owned(), false),
            ("2024-01-02".to_owned(), true)
        ],
        "no row lost; the bad one counts as missing until a job replaces it"
    );
    let refused = sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
           VALUES ('BTC', '2024-01-03', 0, 0, 0, 0, 0, now())"#,
    )
    .execute(&dirty.pool)
    .await;
    assert!(
        refused.is_err(),
        "new rows are checked even before validation"
    );
}

// --- Secrets -------------------------------------------------------------------------

const KEY: &str = "CG-canary-key-7f3a9c2e";
const TOKEN: &str = "api-canary-token-91b2d4";

/// Every kind of answer, each quoting the key and the token in its own way.
fn echoing_answers() -> Vec<(&'static str, Vec<ScriptedResponse>)> {
    let escaped_key = format!("\\u0043{}", &KEY[1..]);
    vec![
        (
            "a 401 in JSON",
            vec![ScriptedResponse::status(
                401,
                format!(
                    r#"{{"status":{{"error_code":10002,"error_message":"Invalid API key {KEY} (token {TOKEN})"}}}}"#
                ),
            )],
        ),
        (
            "a 400 in plain text with the query echoed",
            vec![
                ScriptedResponse::status(
                    400,
                    format!("bad request: x_cg_demo_api_key={KEY}&token={TOKEN}"),
                )
                .with_header("content-type", "text/plain"),
            ],
        ),
        (
            "a 403 whose JSON escapes the key",
            vec![ScriptedResponse::status(
                403,
                format!(r#"{{"error":"key {escaped_key} refused"}}"#),
            )],
        ),
        (
            "500s, retried",
            vec![
                ScriptedResponse::status(500, format!(r#"{{"error":"{KEY} {TOKEN}"}}"#));
                2
            ],
        ),
        (
            "429s, retried",
            vec![
                ScriptedResponse::status(429, format!("slow down, {KEY} / {TOKEN}"))
                    .with_header("retry-after", "0");
                2
            ],
        ),
        (
            "an HTML 200",
            vec![
                ScriptedResponse::status(
                    200,
                    format!(
                        "<html><head><title>Welcome {KEY} {TOKEN}</title></head><body>{KEY}</body></html>"
                    ),
                )
                .with_header("content-type", "text/html"),
            ],
        ),
    ]
}

/// Runs every echoing answer through a `serve` process logging at debug level in
/// `format`, and returns the process's output.
async fn run_echoing_jobs(h: &Harness, format: &str) -> String {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = h.spawn(
        &["serve"],
        &[
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("COINGECKO_API_KEY", KEY),
            ("API_TOKEN", TOKEN),
            ("COINGECKO_MAX_RETRIES", "1"),
            ("JOB_MAX_ATTEMPTS", "1"),
            ("RUST_LOG", "debug"),
            ("LOG_FORMAT", format),
        ],
    );
    let client = until_ready(&serve, &base).await;
    let day = days_before_today(10);
    for (kind, answers) in echoing_answers() {
        for answer in answers {
            h.fake.push_response(answer);
        }
        let submitted = client
            .post(format!("{base}/api/v1/ingestion-jobs"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"start_date": day, "end_date": day}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(submitted.status(), StatusCode::ACCEPTED, "{kind}");
        let body: Value = serde_json::from_str(&submitted.text().await.unwrap()).unwrap();
        let id = body["id"].as_str().unwrap().parse().unwrap();
        let job = h.until_finished(id).await;
        assert_eq!(job.status, JobStatus::Failed, "{kind}");
        let message = job.error_message.unwrap_or_default();
        assert!(
            message.contains("***"),
            "{kind}: the quote was kept, masked: {message}"
        );
    }
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(30)).await, Some(0));
    serve.output()
}

#[tokio::test]
async fn a_key_or_token_echoed_by_coingecko_shows_in_no_response_row_log_or_metric() {
    let h = Harness::new().await;

    let text_logs = run_echoing_jobs(&h, "text").await;
    let json_logs = run_echoing_jobs(&h, "json").await;

    let mut seen = vec![
        ("the text logs".to_owned(), text_logs),
        ("the JSON logs".to_owned(), json_logs),
    ];
    // What any caller reads, through an API of its own on the same database.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = h.spawn(&["api"], &[("BIND_ADDR", &format!("127.0.0.1:{port}"))]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        if let Ok(answer) = client
            .get(format!("{base}/api/v1/ingestion-jobs?limit=100"))
            .send()
            .await
        {
            break answer.text().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "api never answered:\n{}",
            api.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let listed: Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 12, "{jobs}");
    for job in listed["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let one = client
            .get(format!("{base}/api/v1/ingestion-jobs/{id}"))
            .send()
            .await
            .unwrap();
        seen.push((format!("GET job {id}"), one.text().await.unwrap()));
    }
    seen.push(("the job list".to_owned(), jobs));
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    seen.push(("/metrics".to_owned(), metrics.text().await.unwrap()));
    api.kill().await;
    // Every text column of both tables, and every table of the queue.
    for table in ["ingestion_jobs", "daily_prices"] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(h.pool())
        .await
        .unwrap();
        seen.push((table.to_owned(), rows.join("\n")));
    }
    let queue_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'apalis' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(queue_tables.iter().any(|t| t == "jobs"), "{queue_tables:?}");
    for table in queue_tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM apalis.\"{table}\" t"
        )))
        .fetch_all(h.pool())
        .await
        .unwrap();
        seen.push((format!("apalis.{table}"), rows.join("\n")));
    }

    let last_results: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_result::text FROM apalis.jobs")
            .fetch_all(h.pool())
            .await
            .unwrap();
    assert!(
        last_results.iter().flatten().any(|r| r.contains("***")),
        "the queue kept the masked reasons: {last_results:?}"
    );
    for (place, text) in &seen {
        assert!(
            !text.is_empty() || place == "daily_prices",
            "{place} was read"
        );
        for secret in [KEY, TOKEN, &KEY[3..], &TOKEN[4..]] {
            assert!(
                !text.contains(secret),
                "{secret} shows in {place}:\n{}",
                text.lines()
                    .filter(|line| line.contains(secret))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// A token no client can send is refused at start, rather than make every write a 401.
/// A review's finding: one with a character that is not ASCII (`ä`) was taken, and no
/// `Authorization` header could ever match it.
#[tokio::test]
async fn an_api_token_no_client_can_send_is_refused_at_start() {
    let h = Harness::new().await;
    let refused = [
        ("api", " s3cret-with-spaces ", "whitespace"),
        ("serve", " s3cret-with-spaces ", "whitespace"),
        ("api", "s3cret-pässwort", "not printable ASCII"),
    ];
    for (command, token, why) in refused {
        let run = price_history_command(&h.db.url, &h.fake.base_url())
            .arg(command)
            .env("BIND_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("API_TOKEN", token)
            .kill_on_drop(true)
            .output();

        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{command} started with the token instead of refusing it"))
            .unwrap();

        let printed = output_text(&output);
        assert_eq!(output.status.code(), Some(1), "{command}: {printed}");
        assert_mentions(&printed, &["API_TOKEN", why]);
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}

// --- Clients -------------------------------------------------------------------------

/// A test's world and its API on a random port with `limits`.
async fn limited_api(limits: ConnectionLimits) -> (Harness, TestApi) {
    let h = Harness::new().await;
    let api = TestApi::start_with_limits(h.api_state(None), limits).await;
    (h, api)
}

/// A connection to the API that has sent `bytes`.
async fn connect_sending(api: &TestApi, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// A request whose body stops after a few bytes of the 80 it announced.
const STALLED_POST: &[u8] = b"POST /api/v1/ingestion-jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{\"start";

/// Reads until the server closes the connection; what it sent before closing.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the server kept the connection open for {within:?}; it sent: {}",
            String::from_utf8_lossy(&received)
        )
    });
    String::from_utf8_lossy(&received).into_owned()
}

/// Waits (up to 8 s) for the server to close `stream`, asserting that it held it open at
/// least `at_least`: what it sent, and how long it held it.
async fn closed_after_at_least(stream: &mut TcpStream, at_least: Duration) -> (String, Duration) {
    let began = Instant::now();
    let sent = until_closed(stream, Duration::from_secs(8)).await;
    let held = began.elapsed();
    assert!(held >= at_least, "{held:?}");
    (sent, held)
}

fn short_limits() -> ConnectionLimits {
    ConnectionLimits {
        head: Duration::from_secs(1),
        idle: Duration::from_secs(2),
        body: Duration::from_secs(1),
        max_connections: 1024,
        ..ConnectionLimits::default()
    }
}

#[tokio::test]
async fn half_open_silent_and_trickling_connections_are_closed_while_healthz_answers() {
    let (_h, api) = limited_api(short_limits()).await;
    let mut half_open = Vec::new();
    for _ in 0..300 {
        half_open.push(connect_sending(&api, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await);
    }
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    let mut trickling = TcpStream::connect(api.addr).await.unwrap();
    let (mut trickle_read, mut trickle_write) = trickling.split();
    let trickle = async {
        // One byte of a never-ending header every 100 ms: never idle, never complete.
        let _ = trickle_write
            .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            .await;
        for _ in 0..100 {
            if trickle_write.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    let began = Instant::now();
    let health = reqwest::get(api.url("/healthz")).await.unwrap();
    println!(
        "/healthz answered in {:?} beside 300 half-open connections",
        began.elapsed()
    );
    assert_eq!(health.status(), StatusCode::OK);

    let closed = async {
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(8), async {
            while !matches!(trickle_read.read(&mut buf).await, Ok(0) | Err(_)) {}
        })
        .await
        .expect("the trickling connection is closed although it keeps sending");
    };
    tokio::join!(trickle, closed);
    until_closed(&mut silent, Duration::from_secs(8)).await;
    let all = futures::future::join_all(
        half_open
            .iter_mut()
            .map(|stream| until_closed(stream, Duration::from_secs(8))),
    )
    .await;
    assert_eq!(all.len(), 300);
    assert!(
        all.iter().all(|sent| !sent.contains("200 OK")),
        "no half-open request was answered as if complete"
    );
    println!(
        "300 half-open connections closed {:?} after they opened",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_kept_alive_connection_left_unused_is_closed_after_the_head_limit() {
    let (_h, api) = limited_api(short_limits()).await;
    let mut stream = connect_sending(&api, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;

    let (sent, _) = closed_after_at_least(&mut stream, Duration::from_millis(900)).await;

    assert!(sent.starts_with("HTTP/1.1 200 OK"), "{sent}");
}

#[tokio::test]
async fn a_connection_silent_mid_request_is_closed_after_the_idle_limit() {
    let (_h, api) = limited_api(ConnectionLimits {
        head: Duration::from_secs(30),
        idle: Duration::from_secs(1),
        body: Duration::from_secs(30),
        max_connections: 1024,
        ..ConnectionLimits::default()
    })
    .await;
    let mut stream = connect_sending(&api, STALLED_POST).await;

    let (_, held) = closed_after_at_least(&mut stream, Duration::from_millis(900)).await;

    assert!(held < Duration::from_secs(8));
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (_h, api) = limited_api(ConnectionLimits {
        max_connections: 8,
        ..short_limits()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(api.addr).await.unwrap());
    }

    let began = Instant::now();
    let health = reqwest::get(api.url("/healthz")).await.unwrap();

    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        began.elapsed() >= Duration::from_millis(700),
        "the ninth connection was served before a slot was free: {:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_not_a_5xx() {
    let (h, api) = limited_api(short_limits()).await;
    let mut stream = connect_sending(&api, STALLED_POST).await;

    let sent = until_closed(&mut stream, Duration::from_secs(8)).await;

    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains(r#""error":"request_timeout""#), "{sent}");
    assert_eq!(h.rows("ingestion_jobs").await, 0);
}

#[tokio::test]
async fn null_symbol_and_force_mean_the_defaults_and_the_document_says_so() {
    let (_h, api) = TestApi::with_harness().await;
    let day = days_before_today(3);

    let answer = reqwest::Client::new()
        .post(api.url("/api/v1/ingestion-jobs"))
        .header("content-type", "application/json")
        .body(
            json!({"start_date": day, "end_date": day, "symbol": null, "force": null}).to_string(),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let job: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(
        (job["symbol"].as_str(), job["force"].as_bool()),
        (Some("BTC"), Some(false))
    );
    let document: Value = serde_json::from_str(&api::openapi_json()).unwrap();
    let properties = &document["components"]["schemas"]["NewIngestionJob"]["properties"];
    assert_eq!(properties["symbol"]["nullable"], true, "{properties}");
    assert_eq!(properties["force"]["nullable"], true, "{properties}");
}

#[tokio::test]
async fn csv_marks_todays_partial_candle_provisional_and_json_counts_points() {
    let h = Harness::new().await;
    let (start, today) = (days_before_today(2), days_before_today(0));
    h.run_job(start, today, false).await;
    let api = TestApi::start(&h).await;
    let path = format!("/api/v1/prices?start_date={start}&end_date={today}");

    let rows = api
        .get_with(&path, "accept", "text/csv")
        .await
        .csv_rows("date,open,high,low,close,volume,provisional,source");
    let json: Value = serde_json::from_str(
        &reqwest::get(api.url(&path))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();

    assert!(rows[0].ends_with(",false,coingecko"), "{rows:?}");
    let last = rows.last().unwrap();
    assert!(last.starts_with(&today.to_string()), "{rows:?}");
    assert!(
        last.ends_with(",true,coingecko"),
        "today's row is provisional: {rows:?}"
    );
    let prices = json["prices"].as_array().unwrap();
    assert_eq!(prices[0]["points"], 24, "{json}");
}

// --- The document --------------------------------------------------------------------

/// What OpenAPI 3.0 forbids and 3.1 allows, looked for anywhere in the document; the
/// full check is `openapi-spec-validator`, run by `scripts/schemathesis.sh` in CI.
#[test]
fn the_document_is_openapi_3_0_without_anything_only_3_1_allows() {
    let document: Value = serde_json::from_str(&api::openapi_json()).unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.0."),
        "{}",
        document["openapi"]
    );
    assert!(
        document["info"].get("summary").is_none(),
        "info.summary is 3.1 only"
    );
    assert!(document["info"]["license"].get("identifier").is_none());
    assert!(document.get("webhooks").is_none());
    assert!(document.get("jsonSchemaDialect").is_none());
    fn walk(value: &Value, path: &str) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let here = format!("{path}/{key}");
                    assert!(
                        !(key == "type" && child.is_array()),
                        "{here}: a list of types is 3.1 only"
                    );
                    assert!(
                        !matches!(key.as_str(), "const" | "$schema" | "prefixItems"),
                        "{here} is 3.1 only"
                    );
                    walk(child, &here);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, path)),
            _ => {}
        }
    }
    walk(&document["components"], "#/components");
    walk(&document["paths"], "#/paths");
}
