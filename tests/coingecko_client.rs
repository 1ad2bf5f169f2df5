//! The CoinGecko client against the loopback fake: parsing, keys, retries, the call
//! budget and how failures are sorted into transient and permanent. No database.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions, ScriptedResponse};
use price_history::coingecko::{
    CallBudget, CoinGeckoClient, CoinGeckoError, CoinGeckoSettings, MarketChart,
};
use rust_decimal::Decimal;
use secrecy::SecretString;

const SECRET_KEY: &str = "CG-k3y-that-must-never-show";

/// Settings for tests: quick retries and a budget too large to slow anything down.
fn settings(base_url: String) -> CoinGeckoSettings {
    CoinGeckoSettings {
        base_url,
        api_key: None,
        calls_per_minute: NonZeroU32::new(60_000).unwrap(),
        max_retries: 3,
        retry_base_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn client_for(fake: &FakeCoinGecko) -> CoinGeckoClient {
    client_with(settings(fake.base_url()))
}

/// A client with its own budget, as a single process has.
fn client_with(settings: CoinGeckoSettings) -> CoinGeckoClient {
    CoinGeckoClient::new(settings, CallBudget::ProcessLocal).unwrap()
}

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn two_days_of_2024(client: &CoinGeckoClient) -> Result<MarketChart, CoinGeckoError> {
    client
        .market_chart_range("bitcoin", utc(2024, 1, 1), utc(2024, 1, 3))
        .await
}

fn permanent_parts(error: &CoinGeckoError) -> (Option<u16>, Option<i64>, &str) {
    match error {
        CoinGeckoError::Permanent {
            status,
            error_code,
            message,
        } => (*status, *error_code, message.as_str()),
        CoinGeckoError::PlanLimit {
            status, message, ..
        } => (Some(*status), Some(10012), message.as_str()),
        CoinGeckoError::BadAnswer { status, message } => (Some(*status), None, message.as_str()),
        _ => panic!("expected a permanent error, got {error:?}"),
    }
}

fn transient_message(error: &CoinGeckoError) -> &str {
    match error {
        CoinGeckoError::Transient { message } | CoinGeckoError::RateLimited { message } => message,
        _ => panic!("expected a transient error, got {error:?}"),
    }
}

#[tokio::test]
async fn an_hourly_window_comes_back_as_the_points_the_server_sent() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);

    let chart = two_days_of_2024(&client).await.unwrap();

    let expected: Vec<_> = [day(2024, 1, 1), day(2024, 1, 2)]
        .into_iter()
        .flat_map(|day| fake.points_for_day(day, true))
        .collect();
    assert_eq!(expected.len(), 48);
    assert_eq!(chart.prices.len(), 48);
    assert_eq!(chart.total_volumes.len(), 48);
    for ((at, price, volume), (p, v)) in expected
        .iter()
        .zip(chart.prices.iter().zip(&chart.total_volumes))
    {
        assert_eq!(p.at.timestamp_millis(), *at);
        assert_eq!(v.at, p.at);
        assert_eq!(p.value, *price);
        assert_eq!(v.value, *volume);
        assert_eq!(p.value, fake.price_at(*at));
    }
    assert!(chart.prices.windows(2).all(|w| w[0].at < w[1].at));
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].coin_id, "bitcoin");
    assert_eq!(calls[0].vs_currency.as_deref(), Some("usd"));
    assert_eq!(
        (calls[0].from, calls[0].to),
        (utc(2024, 1, 1), utc(2024, 1, 3))
    );
    assert!(!calls[0].api_key_present);
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn a_window_longer_than_90_days_is_one_point_per_day_at_midnight() {
    let fake = FakeCoinGecko::start().await;

    let chart = client_for(&fake)
        .market_chart_range("bitcoin", utc(2020, 1, 1), utc(2020, 6, 1))
        .await
        .unwrap();

    assert_eq!(chart.prices.len(), 153);
    assert!(
        chart
            .prices
            .iter()
            .all(|p| p.at.timestamp_millis() % 86_400_000 == 0)
    );
    let (_, price, _) = fake.points_for_day(day(2020, 3, 1), false)[0];
    assert_eq!(chart.prices[60].value, price);
}

#[tokio::test]
async fn a_window_before_bitcoins_first_day_is_empty_and_not_an_error() {
    let fake = FakeCoinGecko::start().await;

    let chart = client_for(&fake)
        .market_chart_range("bitcoin", utc(2012, 1, 1), utc(2013, 4, 28))
        .await
        .unwrap();

    assert_eq!(chart.prices.len(), 1, "only 2013-04-28 00:00 itself");
    assert_eq!(chart.prices[0].at, utc(2013, 4, 28));
}

#[tokio::test]
async fn missing_days_and_price_shifts_show_in_what_the_client_gets() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    let before = two_days_of_2024(&client).await.unwrap();

    fake.set_missing_days([day(2024, 1, 2)]);
    fake.set_price_shift(Decimal::new(125, 2));
    let after = two_days_of_2024(&client).await.unwrap();

    assert_eq!(after.prices.len(), 24);
    assert!(
        after
            .prices
            .iter()
            .all(|p| p.at.date_naive() == day(2024, 1, 1))
    );
    assert!(after.prices[0].value > before.prices[0].value);
    assert_eq!(
        after.prices[0].value,
        fake.price_at(after.prices[0].at.timestamp_millis())
    );
}

#[tokio::test]
async fn a_window_reaching_now_ends_with_a_live_point() {
    let fake = FakeCoinGecko::start().await;
    let started = Utc::now();

    let chart = client_for(&fake)
        .market_chart_range(
            "bitcoin",
            started - chrono::Duration::days(2),
            started + chrono::Duration::days(1),
        )
        .await
        .unwrap();

    let last = chart.prices.last().unwrap().at;
    assert!(
        last >= started - chrono::Duration::milliseconds(1) && last <= Utc::now(),
        "{last}"
    );
}

#[tokio::test]
async fn a_demo_key_goes_in_the_demo_header_and_shows_nowhere() {
    let fake = FakeCoinGecko::start().await;
    let settings = CoinGeckoSettings {
        api_key: Some(SecretString::from(SECRET_KEY)),
        ..settings(fake.base_url())
    };
    let settings_shown = format!("{settings:?}");
    let client = client_with(settings);
    fake.push_response(ScriptedResponse::status(
        401,
        r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
    ));

    let error = two_days_of_2024(&client).await.unwrap_err();

    let calls = fake.calls();
    assert_eq!(calls[0].api_key_header, Some("x-cg-demo-api-key"));
    assert_eq!(calls[0].api_key.as_deref(), Some(SECRET_KEY));
    let (status, code, message) = permanent_parts(&error);
    assert_eq!((status, code), (Some(401), Some(10002)));
    assert!(message.contains("COINGECKO_API_KEY"), "{message}");
    for shown in [
        settings_shown,
        format!("{client:?}"),
        format!("{error}"),
        format!("{error:?}"),
    ] {
        assert!(!shown.contains(SECRET_KEY), "the key leaked into {shown}");
    }
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_second_answer_used() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(ScriptedResponse::server_error(500));

    let chart = two_days_of_2024(&client).await.unwrap();

    assert_eq!(chart.prices.len(), 48);
    let statuses: Vec<u16> = fake.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![500, 200]);
    assert_eq!(client.calls_made(), 2);
}

#[tokio::test]
async fn a_rate_limited_call_waits_for_retry_after_then_succeeds() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(ScriptedResponse::rate_limited(Some(1)));

    let chart = two_days_of_2024(&client).await.unwrap();

    assert_eq!(chart.prices.len(), 48);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, 429);
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(3), "retried after {waited:?}");
}

#[tokio::test]
async fn the_365_day_limit_fails_at_once_and_says_what_to_do() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(ScriptedResponse::history_limit_exceeded());

    let error = two_days_of_2024(&client).await.unwrap_err();

    assert!(error.is_permanent());
    let (status, code, message) = permanent_parts(&error);
    assert_eq!((status, code), (Some(401), Some(10012)));
    assert!(message.contains("365 days"), "{message}");
    assert!(
        message.contains("Public API users are limited"),
        "{message}"
    );
    assert!(
        message.contains("COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 1);
    assert_eq!(client.calls_made(), 1);
}

#[tokio::test]
async fn the_fakes_own_history_limit_answers_like_coingecko() {
    let fake = FakeCoinGecko::start_with(FakeOptions {
        history_limit_days: Some(365),
        ..FakeOptions::default()
    })
    .await
    .unwrap();

    let error = two_days_of_2024(&client_for(&fake)).await.unwrap_err();

    assert_eq!(permanent_parts(&error).1, Some(10012));
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn a_success_with_a_garbage_body_fails_at_once() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(
        ScriptedResponse::status(200, "<html><body>Just a moment...</body></html>")
            .with_header("content-type", "text/html"),
    );

    let error = two_days_of_2024(&client).await.unwrap_err();

    let (status, _, message) = permanent_parts(&error);
    assert_eq!(status, Some(200));
    assert!(message.contains("Just a moment"), "{message}");
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn an_unknown_coin_fails_at_once_and_is_named() {
    let fake = FakeCoinGecko::start().await;

    let error = client_for(&fake)
        .market_chart_range("bitcorn", utc(2024, 1, 1), utc(2024, 1, 3))
        .await
        .unwrap_err();

    let (status, _, message) = permanent_parts(&error);
    assert_eq!(status, Some(404));
    assert!(
        message.contains("coin not found") && message.contains("bitcorn"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn server_errors_that_persist_give_up_as_transient_after_the_last_retry() {
    let fake = FakeCoinGecko::start().await;
    let client = client_with(CoinGeckoSettings {
        max_retries: 2,
        ..settings(fake.base_url())
    });
    for _ in 0..4 {
        fake.push_response(ScriptedResponse::server_error(503));
    }

    let error = two_days_of_2024(&client).await.unwrap_err();

    assert!(!error.is_permanent());
    let message = transient_message(&error);
    assert!(
        message.contains("HTTP 503") && message.contains("3 attempts"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 3);
    assert_eq!(client.calls_made(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_counts_as_transient() {
    let fake = FakeCoinGecko::start().await;
    fake.set_delay(Duration::from_millis(500));
    let client = client_with(CoinGeckoSettings {
        max_retries: 1,
        timeout: Duration::from_millis(100),
        ..settings(fake.base_url())
    });

    let error = two_days_of_2024(&client).await.unwrap_err();

    let message = transient_message(&error);
    assert!(
        message.contains("2 attempts") && message.contains("timed out"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = client_with(CoinGeckoSettings {
        max_retries: 1,
        ..settings(format!("http://{closed}"))
    });

    let error = two_days_of_2024(&client).await.unwrap_err();

    let message = transient_message(&error);
    assert!(
        message.contains("could not reach CoinGecko") && message.contains("2 attempts"),
        "{message}"
    );
    assert_eq!(client.calls_made(), 2);
}

#[tokio::test]
async fn calls_and_retries_from_all_clones_are_spaced_by_the_budget() {
    let fake = FakeCoinGecko::start().await;
    let client = client_with(CoinGeckoSettings {
        calls_per_minute: NonZeroU32::new(600).unwrap(),
        retry_base_delay: Duration::ZERO,
        ..settings(fake.base_url())
    });
    fake.push_response(ScriptedResponse::server_error(502));

    let calls = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { two_days_of_2024(&client).await.map(|_| ()) })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }

    let at: Vec<_> = fake.calls().iter().map(|call| call.at).collect();
    assert_eq!(at.len(), 6, "five calls and one retry");
    assert_eq!(client.calls_made(), 6);
    for pair in at.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(97),
            "calls {gap:?} apart, budget says 100 ms"
        );
    }
}

#[tokio::test]
async fn the_fake_can_rate_limit_like_coingecko() {
    let fake = FakeCoinGecko::start_with(FakeOptions {
        calls_per_minute_limit: NonZeroU32::new(1),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let client = client_with(CoinGeckoSettings {
        max_retries: 0,
        ..settings(fake.base_url())
    });
    two_days_of_2024(&client).await.unwrap();

    let error = two_days_of_2024(&client).await.unwrap_err();

    let message = transient_message(&error);
    assert!(
        message.contains("HTTP 429") && message.contains("COINGECKO_CALLS_PER_MINUTE"),
        "{message}"
    );
    assert_eq!(fake.calls()[1].status, 429);
}

#[tokio::test]
async fn wait_for_calls_resolves_when_a_slow_call_has_arrived() {
    let fake = FakeCoinGecko::start().await;
    fake.set_delay(Duration::from_secs(30));
    let client = client_for(&fake);
    let call = tokio::spawn(async move { two_days_of_2024(&client).await });

    tokio::time::timeout(Duration::from_secs(5), fake.wait_for_calls(1))
        .await
        .expect("the call arrives long before its answer");

    assert_eq!(fake.call_count(), 1);
    call.abort();
}

#[tokio::test]
async fn a_stopped_fake_refuses_connections() {
    let fake = FakeCoinGecko::start().await;
    let client = client_with(CoinGeckoSettings {
        max_retries: 0,
        ..settings(fake.base_url())
    });
    two_days_of_2024(&client).await.unwrap();

    fake.shutdown().await;
    let error = two_days_of_2024(&client).await.unwrap_err();

    assert!(!error.is_permanent(), "{error}");
}

#[tokio::test]
async fn a_scripted_passthrough_answers_as_usual_before_the_next_script() {
    let fake = FakeCoinGecko::start().await;
    let client = client_with(CoinGeckoSettings {
        max_retries: 0,
        ..settings(fake.base_url())
    });
    fake.push_response(ScriptedResponse::passthrough());
    fake.push_response(ScriptedResponse::server_error(500));

    let first = two_days_of_2024(&client).await;
    let second = two_days_of_2024(&client).await;

    assert_eq!(first.unwrap().prices.len(), 48);
    assert!(!second.unwrap_err().is_permanent());
    let statuses: Vec<u16> = fake.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![200, 500]);
}

/// A server that answers every request with a 200 whose body never ends (no
/// `Content-Length`, cut only by the client), or announces `announced` bytes; it returns
/// how many body bytes it managed to send.
async fn endless_body_server(announced: Option<u64>) -> (String, tokio::task::JoinHandle<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client sent a whole request");
            head.extend_from_slice(&buf[..n]);
        }
        let length = announced.map_or_else(String::new, |n| format!("Content-Length: {n}\r\n"));
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        let mut chunk = b"[1,2],".repeat(64 * 1024 / 6);
        chunk.insert(0, b'[');
        let mut sent = 0;
        // Up to 256 MiB: far past the limit, and past what a test should hold in memory.
        while sent < 256 * 1024 * 1024 {
            match socket.write_all(&chunk).await {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    });
    (base, server)
}

#[tokio::test]
async fn a_body_over_32_mib_is_refused_while_it_is_read() {
    let (base, server) = endless_body_server(None).await;
    let client = client_with(CoinGeckoSettings {
        timeout: Duration::from_secs(60),
        ..settings(base)
    });

    let error = two_days_of_2024(&client).await.unwrap_err();

    let (status, _, message) = permanent_parts(&error);
    assert_eq!(status, Some(200));
    assert!(message.contains("over 32 MiB"), "{message}");
    let sent = server.await.unwrap();
    println!(
        "the server got {} MiB out before the client hung up",
        sent >> 20
    );
    assert!(
        sent < 48 * 1024 * 1024,
        "the client read {} MiB instead of stopping at 32",
        sent >> 20
    );
    assert_eq!(
        client.calls_made(),
        1,
        "a refused body is not fetched again"
    );
}

#[tokio::test]
async fn a_body_announced_over_32_mib_is_refused_unread() {
    let (base, server) = endless_body_server(Some(40 * 1024 * 1024)).await;
    let client = client_with(settings(base));

    let error = two_days_of_2024(&client).await.unwrap_err();

    assert!(permanent_parts(&error).2.contains("over 32 MiB"), "{error}");
    server.abort();
}

/// Kills `src/coingecko/client.rs`, `attempt`: `*o == outcome` -> `!=` in the counter, and
/// `status == StatusCode::TOO_MANY_REQUESTS` -> `!=` in its label: `/metrics` counts
/// every attempt under how it ended, a 429 apart from a 5xx.
#[tokio::test]
async fn every_attempt_is_counted_under_how_it_ended() {
    let fake = FakeCoinGecko::start().await;
    let client = client_for(&fake);
    fake.push_response(ScriptedResponse::server_error(503));
    fake.push_response(ScriptedResponse::server_error(502));
    fake.push_response(ScriptedResponse::rate_limited(Some(1)));
    fake.push_response(ScriptedResponse::passthrough());
    fake.push_response(ScriptedResponse::status(400, r#"{"error":"invalid from"}"#));

    two_days_of_2024(&client)
        .await
        .expect("the fourth attempt succeeds");
    two_days_of_2024(&client)
        .await
        .expect_err("a 400 is refused");

    assert_eq!(
        client.calls_by_outcome(),
        [
            ("ok", 1),
            ("unreadable", 0),
            ("rate_limited", 1),
            ("server_error", 2),
            ("refused", 1),
            ("transport_error", 0),
        ]
    );
}
