//! The REST API over real HTTP on a random port, against the real PostgreSQL: every
//! endpoint, every documented status, the bearer token, CSV, the one-active-job race, and
//! that no malformed request gets anything but a JSON 4xx.

use std::time::Duration;

use chrono::NaiveDate;
use price_history::api::{self, ApiState};
use price_history::domain::{JobStatus, today_utc};
use price_history::store::ingestion_jobs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::support::{Answer, Harness, TestApi, day, days_before_today, field_of_each};

const TOKEN: &str = "s3cret-token-for-tests";

fn range(start: NaiveDate, end: NaiveDate) -> Value {
    json!({"start_date": start.to_string(), "end_date": end.to_string()})
}

/// Submits BTC from `days_ago` days ago to yesterday, and returns the accepted job's id.
async fn submit_from(api: &TestApi, days_ago: u64) -> String {
    let answer = api
        .submit(range(days_before_today(days_ago), days_before_today(1)))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    answer.json()["id"].as_str().unwrap().to_owned()
}

async fn job_count(h: &Harness) -> i64 {
    h.rows("ingestion_jobs").await
}

#[tokio::test]
async fn a_submitted_job_is_accepted_with_its_location_and_is_seen_completed_through_get() {
    let (h, api) = TestApi::with_harness().await;

    let submitted = api
        .submit(range(days_before_today(10), days_before_today(1)))
        .await;

    assert_eq!(
        submitted.status,
        StatusCode::ACCEPTED,
        "{}",
        submitted.text()
    );
    let job = submitted.json();
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7, "job ids are UUIDv7");
    assert_eq!(
        submitted.header("location"),
        Some(format!("/api/v1/ingestion-jobs/{id}").as_str())
    );
    assert_eq!(job["status"], "pending");
    assert_eq!(job["symbol"], "BTC");
    assert_eq!(job["start_date"], days_before_today(10).to_string());
    assert_eq!(job["force"], false);
    for field in [
        "id",
        "status",
        "symbol",
        "start_date",
        "end_date",
        "force",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "records_fetched",
        "gaps_detected",
        "gap_dates",
        "error_message",
        "attempts",
        "progress",
    ] {
        assert!(job.get(field).is_some(), "the job has {field}: {job}");
    }
    assert!(job["started_at"].is_null() && job["completed_at"].is_null());
    assert_eq!(
        job["progress"],
        json!({"chunks_done": 0, "chunks_total": 0})
    );

    let worker = h.start_worker();
    h.until_finished(id).await;
    worker.stop().await;
    let seen = api.get(&format!("/api/v1/ingestion-jobs/{id}")).await;

    assert_eq!(seen.status, StatusCode::OK);
    let job = seen.json();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["records_fetched"], 10);
    assert_eq!(
        job["progress"],
        json!({"chunks_done": 1, "chunks_total": 1})
    );
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["gap_dates"], json!([]));
    let started: chrono::DateTime<chrono::Utc> =
        job["started_at"].as_str().unwrap().parse().unwrap();
    let completed: chrono::DateTime<chrono::Utc> =
        job["completed_at"].as_str().unwrap().parse().unwrap();
    assert!(started <= completed);
    assert!(
        job["completed_at"].as_str().unwrap().ends_with("+00:00"),
        "timestamps are in UTC: {job}"
    );
    api.stop().await;
}

#[tokio::test]
async fn each_broken_rule_of_a_submission_has_its_own_400_code_and_queues_nothing() {
    let (h, api) = TestApi::with_harness().await;
    let today = today_utc();
    let cases = [
        (
            range(day("2024-02-02"), day("2024-02-01")),
            "end_before_start",
        ),
        (
            range(days_before_today(5), today.succ_opt().unwrap()),
            "end_in_future",
        ),
        (
            range(day("2020-01-01"), day("2024-01-01")),
            "range_too_long",
        ),
        (
            range(day("2013-04-27"), day("2013-05-01")),
            "before_first_day",
        ),
        (
            json!({"start_date": "2024-01-01", "end_date": "2024-01-02", "symbol": "DOGE"}),
            "unknown_symbol",
        ),
    ];

    for (body, code) in cases {
        let answer = api.submit(body.clone()).await;

        answer.assert_refused(code, &format!("{body}"));
    }
    assert_eq!(job_count(&h).await, 0);
}

#[tokio::test]
async fn the_symbol_is_read_case_insensitively_and_a_four_year_range_is_accepted() {
    let (_h, api) = TestApi::with_harness().await;

    let answer = api
        .submit(json!({"start_date": "2020-01-01", "end_date": "2023-12-31", "symbol": "btc", "force": true}))
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["symbol"], "BTC");
    assert_eq!(answer.json()["force"], true);
}

#[tokio::test]
async fn malformed_bodies_get_a_400_json_error_and_a_body_that_is_not_json_gets_415() {
    let (h, api) = TestApi::with_harness().await;
    let url = format!("{}/api/v1/ingestion-jobs", api.base);
    let bodies = [
        "{",
        "",
        "null",
        "[]",
        r#"{"start_date": 20240101, "end_date": "2024-01-02"}"#,
        r#"{"start_date": "2024-13-01", "end_date": "2024-01-02"}"#,
        r#"{"start_date": "2024-1-1", "end_date": "2024-01-02"}"#,
        r#"{"start_date": "+12024-01-01", "end_date": "2024-01-02"}"#,
        r#"{"start_date": "2024-01-01"}"#,
        r#"{"start_date": "2024-01-01", "end_date": "2024-01-02", "force": "yes"}"#,
        r#"{"start_date": "2024-01-01", "end_date": "2024-01-02", "symbol": ["BTC"]}"#,
        r#"{"start_date": "2024-01-01", "end_date": "2024-01-02", "forse": true}"#,
        "\u{0}\u{1}binary",
    ];

    for body in bodies {
        let answer = api
            .send(
                api.client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;

        answer.assert_refused("invalid_request", &format!("{body:?}"));
    }

    let not_json = [
        api.client
            .post(&url)
            .header("content-type", "text/plain")
            .body(r#"{"start_date": "2024-01-01"}"#),
        api.client.post(&url),
    ];
    for request in not_json {
        let answer = api.send(request).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{}",
            answer.text()
        );
        assert_eq!(answer.error_code(), "unsupported_media_type");
    }
    assert_eq!(job_count(&h).await, 0);
}

#[tokio::test]
async fn a_submission_while_a_job_is_active_gets_409_naming_the_active_job() {
    let (h, api) = TestApi::with_harness().await;
    let first = submit_from(&api, 10).await;

    let second = api
        .submit(range(days_before_today(20), days_before_today(11)))
        .await;

    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text());
    assert_eq!(second.error_code(), "job_in_progress");
    assert_eq!(second.json()["active_job_id"], first.as_str());
    assert!(second.json()["message"].as_str().unwrap().contains(&first));
    assert_eq!(job_count(&h).await, 1);
}

#[tokio::test]
async fn of_many_concurrent_posts_one_is_accepted_and_the_rest_get_409_naming_it() {
    let (h, api) = TestApi::with_harness().await;

    let answers = futures::future::join_all(
        (0..12).map(|i| api.submit(range(days_before_today(10 + i), days_before_today(1)))),
    )
    .await;

    let accepted: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let winner = accepted[0].json()["id"].clone();
    for answer in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text());
        assert_eq!(answer.json()["active_job_id"], winner);
    }
    assert_eq!(job_count(&h).await, 1);
}

#[tokio::test]
async fn with_api_token_set_posts_need_the_bearer_token_and_gets_stay_open() {
    let h = Harness::new().await;
    let api = TestApi::start_with(h.api_state(Some(TOKEN))).await;
    let body = range(days_before_today(10), days_before_today(1));

    for token in [
        None,
        Some("wrong"),
        Some("s3cret-token-for-test"),
        Some("s3cret-token-for-tests!"),
    ] {
        let answer = api
            .post("/api/v1/ingestion-jobs", Some(body.clone()), token)
            .await;

        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{token:?}: {}",
            answer.text()
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        assert_eq!(answer.error_code(), "unauthorized");
        assert!(
            !answer.text().contains(TOKEN),
            "the token is never returned"
        );
    }
    // A refused caller learns nothing about its body either.
    let answer = api
        .post("/api/v1/ingestion-jobs", Some(json!({"nonsense": 1})), None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(job_count(&h).await, 0);

    let accepted = api
        .post("/api/v1/ingestion-jobs", Some(body), Some(TOKEN))
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    let id = accepted.json()["id"].as_str().unwrap().to_owned();

    assert_eq!(
        api.get("/api/v1/ingestion-jobs").await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/api/v1/ingestion-jobs/{id}"))
            .await
            .status,
        StatusCode::OK
    );
    let cancel = format!("/api/v1/ingestion-jobs/{id}/cancel");
    let refused = api.post(&cancel, None, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        api.post(&cancel, None, Some(TOKEN)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_job_is_404_when_unknown_and_400_when_the_id_is_not_a_uuid() {
    let (_h, api) = TestApi::with_harness().await;

    let unknown = api
        .get(&format!("/api/v1/ingestion-jobs/{}", Uuid::now_v7()))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");

    for id in [
        "not-a-uuid",
        "123",
        "0191c4b2-7f3e-7a10-9c1d-5e2f3a4b5c6dX",
        "%00",
    ] {
        api.get_refused(&format!("/api/v1/ingestion-jobs/{id}"), "invalid_request")
            .await;
    }
}

#[tokio::test]
async fn jobs_are_listed_newest_first_narrowed_by_status_and_limited() {
    let (_h, api) = TestApi::with_harness().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = submit_from(&api, 10 + i).await;
        if i < 2 {
            assert_eq!(
                api.post(&format!("/api/v1/ingestion-jobs/{id}/cancel"), None, None)
                    .await
                    .status,
                StatusCode::OK
            );
        }
        ids.push(id);
    }

    let all = api.get("/api/v1/ingestion-jobs").await.json();
    let listed = field_of_each(&all["jobs"], "id");
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );

    let cancelled = api
        .get("/api/v1/ingestion-jobs?status=cancelled")
        .await
        .json();
    assert_eq!(cancelled["jobs"].as_array().unwrap().len(), 2);
    assert!(
        cancelled["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|job| job["status"] == "cancelled")
    );
    let pending = api
        .get("/api/v1/ingestion-jobs?status=pending&limit=5")
        .await
        .json();
    assert_eq!(pending["jobs"][0]["id"], ids[2].as_str());
    let newest = api.get("/api/v1/ingestion-jobs?limit=1").await.json();
    assert_eq!(newest["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/api/v1/ingestion-jobs?limit=100").await.status,
        StatusCode::OK
    );

    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=ten",
        "limit=99999999999",
        "status=done",
        "status=PENDING",
    ] {
        api.get_refused(
            &format!("/api/v1/ingestion-jobs?{query}"),
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn cancelling_returns_the_job_cancelled_and_a_finished_job_is_409() {
    let (h, api) = TestApi::with_harness().await;
    let id = submit_from(&api, 10).await;
    let cancel = format!("/api/v1/ingestion-jobs/{id}/cancel");

    let cancelled = api.post(&cancel, None, None).await;

    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert!(cancelled.json()["completed_at"].is_string());
    let stored = ingestion_jobs::get(h.pool(), id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, JobStatus::Cancelled);

    let again = api.post(&cancel, None, None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "job_finished");

    let unknown = api
        .post(
            &format!("/api/v1/ingestion-jobs/{}/cancel", Uuid::now_v7()),
            None,
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
    let not_a_uuid = api
        .post("/api/v1/ingestion-jobs/nope/cancel", None, None)
        .await;
    assert_eq!(not_a_uuid.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_a_uuid.error_code(), "invalid_request");

    // The slot is free again.
    let next = api
        .submit(range(days_before_today(5), days_before_today(1)))
        .await;
    assert_eq!(next.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn prices_are_served_ascending_as_json_with_decimal_strings_or_as_csv() {
    let h = Harness::new().await;
    let (start, end) = (days_before_today(10), days_before_today(1));
    h.run_job(start, end, false).await;
    let api = TestApi::start(&h).await;
    let path = format!(
        "/api/v1/prices?start_date={}&end_date={}",
        days_before_today(15),
        end
    );

    let answer = api.get(&path).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let prices = answer.json()["prices"].as_array().unwrap().clone();
    assert_eq!(prices.len(), 10);
    let dates: Vec<&str> = prices.iter().map(|p| p["date"].as_str().unwrap()).collect();
    assert_eq!(dates.first(), Some(&start.to_string().as_str()));
    assert!(
        dates.windows(2).all(|w| w[0] < w[1]),
        "ascending: {dates:?}"
    );
    for field in ["open", "high", "low", "close", "volume"] {
        let value = prices[0][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is a string: {}", prices[0]));
        assert!(
            value.parse::<rust_decimal::Decimal>().is_ok(),
            "{field}: {value}"
        );
    }
    assert_eq!(prices[0]["provisional"], false);

    let csv = api
        .get_with(&format!("{path}&symbol=btc"), "accept", "text/csv")
        .await;

    assert_eq!(csv.status, StatusCode::OK);
    // One URL, a body per `Accept`: a cache in front must key on it (a review's finding).
    for answer in [&answer, &csv] {
        assert_eq!(answer.header("vary"), Some("accept"));
    }
    assert!(
        csv.header("content-type").unwrap().starts_with("text/csv"),
        "{:?}",
        csv.header("content-type")
    );
    let rows = csv.csv_rows("date,open,high,low,close,volume,provisional,source");
    assert_eq!(rows.len(), 10);
    let first: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(first[0], start.to_string());
    assert_eq!(first[6], "false");
    assert_eq!(
        first[4],
        prices[0]["close"].as_str().unwrap(),
        "CSV and JSON agree"
    );

    let empty = api
        .get("/api/v1/prices?start_date=2010-01-01&end_date=2010-12-31")
        .await;
    assert_eq!(empty.json(), json!({"prices": []}));
}

#[tokio::test]
async fn coverage_counts_stored_and_missing_days() {
    let h = Harness::new().await;
    h.run_days_to_yesterday(10).await;
    let api = TestApi::start(&h).await;

    let answer = api
        .get(&format!(
            "/api/v1/coverage?start_date={}&end_date={}",
            days_before_today(15),
            days_before_today(1)
        ))
        .await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let coverage = answer.json();
    assert_eq!(coverage["symbol"], "BTC");
    assert_eq!(coverage["start_date"], days_before_today(15).to_string());
    assert_eq!(coverage["total_expected_days"], 15);
    assert_eq!(coverage["total_stored_days"], 10);
    assert_eq!(coverage["gap_count"], 5);
    assert_eq!(coverage["gap_dates"].as_array().unwrap().len(), 5);
    assert_eq!(coverage["gap_dates"][0], days_before_today(15).to_string());
    assert_eq!(coverage["coverage_percent"], 66.67);
}

#[tokio::test]
async fn reads_refuse_bad_ranges_symbols_and_dates_with_400() {
    let (_h, api) = TestApi::with_harness().await;
    let cases = [
        (
            "start_date=2024-02-02&end_date=2024-02-01",
            "end_before_start",
        ),
        (
            "start_date=2000-01-01&end_date=2024-01-01",
            "range_too_long",
        ),
        (
            "start_date=2024-01-01&end_date=2024-01-02&symbol=DOGE",
            "unknown_symbol",
        ),
        ("start_date=2024-01-01", "invalid_request"),
        ("end_date=2024-01-01", "invalid_request"),
        (
            "start_date=yesterday&end_date=2024-01-01",
            "invalid_request",
        ),
        (
            "start_date=-5000-01-01&end_date=2024-01-01",
            "invalid_request",
        ),
        (
            "start_date=99999-01-01&end_date=99999-01-02",
            "invalid_request",
        ),
    ];

    for endpoint in ["/api/v1/prices", "/api/v1/coverage"] {
        for (query, code) in cases {
            api.get_refused(&format!("{endpoint}?{query}"), code).await;
        }
    }
    // Far but well-formed dates are simply not stored.
    let far = api
        .get("/api/v1/coverage?start_date=9990-01-01&end_date=9999-12-31")
        .await;
    assert_eq!(far.status, StatusCode::OK, "{}", far.text());
    assert_eq!(far.json()["total_stored_days"], 0);
    let ancient = api
        .get("/api/v1/prices?start_date=0001-01-01&end_date=0001-12-31")
        .await;
    assert_eq!(ancient.status, StatusCode::OK, "{}", ancient.text());
}

/// Stores BTC's days `first..=last` days before today as the second source would (by
/// SQL: the reads are tested here, not the job), with a close of 1000 that no CoinGecko
/// day of the fake has.
async fn store_from_the_second_source(h: &Harness, first: u64, last: u64) {
    sqlx::query(
        r#"INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", provisional, source)
           SELECT 'BTC', d::date, 990, 1010, 980, 1000, 5000000, d + interval '1 day', false, 'coinbase'
           FROM generate_series($1::date, $2::date, interval '1 day') AS d"#,
    )
    .bind(days_before_today(first))
    .bind(days_before_today(last))
    .execute(h.pool())
    .await
    .expect("the second source's rows are stored");
}

#[tokio::test]
async fn every_read_says_which_source_each_day_came_from() {
    let h = Harness::new().await;
    let job = h.run_days_to_yesterday(10).await;
    assert_eq!(job.fallback_days, 0, "{job:?}");
    store_from_the_second_source(&h, 20, 13).await;
    let api = TestApi::start(&h).await;
    let range = format!(
        "start_date={}&end_date={}",
        days_before_today(20),
        days_before_today(1)
    );

    let prices = api.get(&format!("/api/v1/prices?{range}")).await.json();
    let prices = prices["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 18);
    let sources: Vec<&str> = prices
        .iter()
        .map(|p| p["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources[..8], ["coinbase"; 8], "{sources:?}");
    assert_eq!(sources[8..], ["coingecko"; 10], "{sources:?}");
    assert_eq!(prices[0]["close"], "1000");
    assert_ne!(prices[8]["close"], "1000");

    let rows = api
        .get_with(&format!("/api/v1/prices?{range}"), "accept", "text/csv")
        .await
        .csv_rows("date,open,high,low,close,volume,provisional,source");
    assert_eq!(
        rows[0],
        format!(
            "{},990,1010,980,1000,5000000,false,coinbase",
            days_before_today(20)
        )
    );
    assert!(rows[17].ends_with(",false,coingecko"), "{rows:?}");

    let coverage = api.get(&format!("/api/v1/coverage?{range}")).await.json();
    assert_eq!(coverage["total_expected_days"], 20, "{coverage}");
    assert_eq!(coverage["total_stored_days"], 18, "{coverage}");
    assert_eq!(
        coverage["days_by_source"],
        json!({"coingecko": 10, "coinbase": 8}),
        "{coverage}"
    );
    assert_eq!(coverage["gap_count"], 2, "{coverage}");

    let days = api.get(&format!("/api/v1/days?{range}")).await.json();
    assert_eq!(
        days["statuses"],
        format!("{}mm{}", "f".repeat(8), "s".repeat(10)),
        "{days}"
    );
    assert_eq!(days["counts"]["second_source"], 8, "{days}");
    assert_eq!(days["counts"]["stored"], 10, "{days}");

    // The job says how many days it stored from the second source.
    sqlx::query("UPDATE ingestion_jobs SET fallback_days = 8 WHERE id = $1")
        .bind(job.id)
        .execute(h.pool())
        .await
        .unwrap();
    let read = api
        .get(&format!("/api/v1/ingestion-jobs/{}", job.id))
        .await
        .json();
    assert_eq!(read["fallback_days"], 8, "{read}");
    let listed = api.get("/api/v1/ingestion-jobs").await.json();
    assert_eq!(listed["jobs"][0]["fallback_days"], 8, "{listed}");
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let h = Harness::new().await;
    h.run_days_to_yesterday(3).await;
    let api = TestApi::start_with(ApiState {
        coingecko: Some(h.ingestor().client),
        ..h.api_state(None)
    })
    .await;

    let health = api.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    let metrics = api.get("/metrics").await;

    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for line in [
        "# TYPE price_history_jobs gauge",
        "price_history_jobs{status=\"completed\"} 1",
        "price_history_jobs{status=\"failed\"} 0",
        "price_history_jobs_queued 0",
        "price_history_stored_candles{symbol=\"BTC\"} 3",
        "price_history_coingecko_requests_total{outcome=\"ok\"} 0",
        "price_history_database_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
}

#[tokio::test]
async fn without_a_database_readiness_is_503_and_requests_get_503_json_without_the_cause() {
    let h = Harness::new().await;
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres:pg-password-xyz@127.0.0.1:1/nowhere")
        .unwrap();
    let api = TestApi::start_with(ApiState {
        pool,
        ..h.api_state(None)
    })
    .await;

    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "database_unavailable");
    assert_eq!(api.get("/healthz").await.status, StatusCode::OK);

    for answer in [
        api.get(&format!("/api/v1/ingestion-jobs/{}", Uuid::now_v7()))
            .await,
        api.get("/api/v1/ingestion-jobs").await,
        api.submit(range(days_before_today(3), days_before_today(1)))
            .await,
        api.get("/api/v1/coverage?start_date=2024-01-01&end_date=2024-01-31")
            .await,
    ] {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text()
        );
        assert_eq!(answer.error_code(), "database_unavailable");
        assert!(
            !answer.text().contains("pg-password-xyz") && !answer.text().contains("127.0.0.1"),
            "{}",
            answer.text()
        );
    }
    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.text().contains("price_history_database_up 0"));
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_oversized_bodies_get_json_errors() {
    let (_h, api) = TestApi::with_harness().await;

    let missing = api.get("/api/v1/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");

    let wrong_method = api
        .send(
            api.client
                .delete(format!("{}/api/v1/ingestion-jobs", api.base)),
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_code(), "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET, HEAD, POST"));

    let huge = format!(
        r#"{{"start_date": "2024-01-01", "end_date": "2024-01-02", "symbol": "{}"}}"#,
        "x".repeat(20_000)
    );
    let too_large = api
        .send(
            api.client
                .post(format!("{}/api/v1/ingestion-jobs", api.base))
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error_code(), "payload_too_large");

    // A chunked body, without Content-Length, is limited all the same.
    let chunked = raw_http(
        &api,
        &format!(
            "POST /api/v1/ingestion-jobs HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n{}0\r\n\r\n",
            format!("400\r\n{}\r\n", " ".repeat(1024)).repeat(20)
        ),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("\"payload_too_large\""), "{chunked}");
}

/// Sends bytes as they are and reads the whole answer: for requests reqwest will not make.
async fn raw_http(api: &TestApi, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://"))
        .await
        .expect("connects");
    // The server may answer before it has read everything; a refused write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn every_response_carries_a_request_id_echoing_a_sensible_one() {
    let (_h, api) = TestApi::with_harness().await;

    let echoed = api
        .get_with("/healthz", "x-request-id", "trace-abc-123")
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-abc-123"));

    let generated = api.get("/api/v1/nothing-here").await;
    let id = generated.header("x-request-id").expect("a request id");
    assert!(id.parse::<Uuid>().is_ok(), "{id}");

    let replaced = api
        .get_with("/healthz", "x-request-id", &"x".repeat(500))
        .await;
    assert!(
        replaced
            .header("x-request-id")
            .unwrap()
            .parse::<Uuid>()
            .is_ok()
    );
}

#[tokio::test]
async fn the_document_and_swagger_ui_are_served_and_the_document_is_what_openapi_prints() {
    let (_h, api) = TestApi::with_harness().await;

    let document = api.get("/openapi.json").await;

    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.text(), api::openapi_json());
    assert_eq!(
        api::openapi_json(),
        api::openapi_json(),
        "the document is the same bytes every time"
    );
    let spec = document.json();
    assert_eq!(spec["servers"], json!([{"url": "/"}]));
    for path in [
        "/api/v1/ingestion-jobs",
        "/api/v1/ingestion-jobs/{id}",
        "/api/v1/ingestion-jobs/{id}/cancel",
        "/api/v1/prices",
        "/api/v1/coverage",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is documented");
    }
    let docs = api.get("/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("swagger"), "Swagger UI");
}

#[tokio::test]
async fn on_shutdown_a_request_in_flight_still_gets_its_answer() {
    let h = Harness::new().await;
    // A "database" that accepts connections and never answers: a request waits for the
    // pool's acquire time-out, long enough to be in flight when shutdown begins.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(1500))
        .connect_lazy(&format!("postgres://postgres@{silent_addr}/nowhere"))
        .unwrap();
    let api = TestApi::start_with(ApiState {
        pool,
        ..h.api_state(None)
    })
    .await;
    let url = format!("{}/api/v1/ingestion-jobs", api.base);
    let client = api.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let base = api.base.clone();
    api.stop().await;

    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered, not cut off");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "no new connection is taken after shutdown"
    );
}

#[tokio::test]
async fn the_checked_in_document_is_exactly_what_price_history_openapi_prints() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();

    assert!(
        checked_in == format!("{}\n", api::openapi_json()),
        "openapi/openapi.json is missing or stale: regenerate it with \
         `cargo run -q -- openapi > openapi/openapi.json` and review the diff"
    );
}

/// An audit's finding: a body without a required field was refused in poem-openapi's words,
/// which name the type and never the field (`Expected input type "string_date", found
/// null`), so the message did not say what to add.
#[tokio::test]
async fn a_body_without_a_required_field_is_refused_naming_the_field() {
    let (h, api) = TestApi::with_harness().await;
    let jobs = "/api/v1/ingestion-jobs";
    let refused = |path: &'static str, body: Value, says: &'static str| {
        let api = &api;
        async move {
            let answer = api.post(path, Some(body.clone()), None).await;
            answer.assert_status(StatusCode::BAD_REQUEST);
            let message = answer.message();
            assert!(message.contains(says), "{body}: {message}");
        }
    };
    refused(
        jobs,
        json!({"start_date": "2024-01-01"}),
        "`end_date` is missing",
    )
    .await;
    refused(
        jobs,
        json!({"end_date": "2024-01-01"}),
        "`start_date` is missing",
    )
    .await;
    refused(
        jobs,
        json!({"start_date": 5, "end_date": "2024-01-01"}),
        "`start_date`:",
    )
    .await;
    refused(
        "/api/v1/coins/track-top",
        json!({"hourly": true}),
        "`n` is missing",
    )
    .await;
    let answer = api.put_coin("ETH", json!({"tracked": true})).await;
    answer.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        answer.message().contains("`coingecko_id` is missing"),
        "{}",
        answer.message()
    );
    assert_eq!(h.rows("ingestion_jobs").await, 0);
    assert_eq!(h.rows("coins").await, 1, "only BTC");
}
