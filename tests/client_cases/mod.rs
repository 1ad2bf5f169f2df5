//! The cases every upstream client must pass, whatever its source: retries on 5xx, 429
//! with `Retry-After`, giving up, time-outs, refused connections, the body cap, the
//! redaction of secrets, the outcome counters and the spacing of the budget. Written once
//! over [`Source`]; `client_cases!(CoinGecko)` runs them all against one source, in each
//! client's test binary beside the source's own cases.

use std::future::Future;
use std::time::{Duration, Instant};

use fake_upstream::server::Upstream;
use fake_upstream::{Fake, ScriptedResponse};
use price_history::upstream::{CallOutcome, Caller};

/// Settings for tests: quick retries and a budget too large to slow anything down,
/// unless a case says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Tweaks {
    pub calls_per_minute: u32,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub timeout: Duration,
}

impl Tweaks {
    /// The defaults, with at most `max_retries` retries of a call.
    fn retries(max_retries: u32) -> Self {
        Self {
            max_retries,
            ..Self::default()
        }
    }
}

impl Default for Tweaks {
    fn default() -> Self {
        Self {
            calls_per_minute: 60_000,
            max_retries: 3,
            retry_base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A source as the common cases see it: its fake, its client, one usual call, and how
/// its errors say what they are.
pub trait Source: 'static {
    /// As its messages name it.
    const NAME: &'static str;
    /// The fake standing in for it.
    type Upstream: Upstream;
    type Client: Clone + Send + Sync + 'static;
    type Error: std::fmt::Debug + std::fmt::Display + Send + 'static;

    /// A client of `base_url` with its own budget, as a single process has.
    fn client(base_url: String, tweaks: Tweaks) -> Self::Client;

    fn caller(client: &Self::Client) -> &Caller;

    /// The client, also hiding `secret` from what it quotes.
    fn hiding(client: Self::Client, secret: &'static str) -> Self::Client;

    /// A usual call that the fake answers with data: a few days of bitcoin.
    fn ask(client: &Self::Client) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether a later try may succeed.
    fn is_transient(error: &Self::Error) -> bool;

    /// When a recorded call arrived, and the status it got.
    fn arrival(call: &<Self::Upstream as Upstream>::Call) -> (Instant, u16);
}

pub async fn start<S: Source>() -> Fake<S::Upstream> {
    Fake::<S::Upstream>::start().await
}

fn client_for<S: Source>(fake: &Fake<S::Upstream>, tweaks: Tweaks) -> S::Client {
    S::client(fake.base_url(), tweaks)
}

/// A fake of the source, and a client of it with `tweaks`.
async fn fake_and_client<S: Source>(tweaks: Tweaks) -> (Fake<S::Upstream>, S::Client) {
    let fake = start::<S>().await;
    let client = client_for::<S>(&fake, tweaks);
    (fake, client)
}

fn statuses<S: Source>(fake: &Fake<S::Upstream>) -> Vec<u16> {
    fake.calls().iter().map(|call| S::arrival(call).1).collect()
}

/// A 429 as the source sends it, with `Retry-After: 1`.
fn rate_limited() -> ScriptedResponse {
    ScriptedResponse::status(429, r#"{"message":"slow down"}"#).with_header("retry-after", "1")
}

pub async fn a_server_error_is_retried_and_the_second_answer_used<S: Source>() {
    let (fake, client) = fake_and_client::<S>(Tweaks::default()).await;
    fake.push_response(ScriptedResponse::server_error(500));

    S::ask(&client).await.unwrap();

    assert_eq!(statuses::<S>(&fake), vec![500, 200]);
    assert_eq!(S::caller(&client).calls_made(), 2);
}

pub async fn a_rate_limited_call_waits_for_retry_after_then_succeeds<S: Source>() {
    let (fake, client) = fake_and_client::<S>(Tweaks::default()).await;
    fake.push_response(rate_limited());

    S::ask(&client).await.unwrap();

    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let ((first, status), (second, _)) = (S::arrival(&calls[0]), S::arrival(&calls[1]));
    assert_eq!(status, 429);
    let waited = second.duration_since(first);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(3), "retried after {waited:?}");
}

pub async fn server_errors_that_persist_give_up_as_transient_after_the_last_retry<S: Source>() {
    let fake = start::<S>().await;
    let client = client_for::<S>(&fake, Tweaks::retries(2));
    for _ in 0..4 {
        fake.push_response(ScriptedResponse::server_error(503));
    }

    let error = S::ask(&client).await.unwrap_err();

    assert!(S::is_transient(&error), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("HTTP 503") && message.contains("3 attempts") && message.contains(S::NAME),
        "{message}"
    );
    assert_eq!(fake.call_count(), 3);
    assert_eq!(S::caller(&client).calls_made(), 3);
}

pub async fn a_slow_answer_times_out_and_counts_as_transient<S: Source>() {
    let fake = start::<S>().await;
    fake.set_delay(Duration::from_millis(500));
    let client = client_for::<S>(
        &fake,
        Tweaks {
            max_retries: 1,
            timeout: Duration::from_millis(100),
            ..Tweaks::default()
        },
    );

    let error = S::ask(&client).await.unwrap_err();

    assert!(S::is_transient(&error), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("2 attempts") && message.contains("timed out"),
        "{message}"
    );
    assert_eq!(fake.call_count(), 2);
}

pub async fn a_refused_connection_is_transient<S: Source>() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = S::client(format!("http://{closed}"), Tweaks::retries(1));

    let error = S::ask(&client).await.unwrap_err();

    assert!(S::is_transient(&error), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("could not reach {}", S::NAME)) && message.contains("2 attempts"),
        "{message}"
    );
    assert_eq!(S::caller(&client).calls_made(), 2);
}

pub async fn a_stopped_fake_refuses_connections<S: Source>() {
    let fake = start::<S>().await;
    let client = client_for::<S>(&fake, Tweaks::retries(0));
    S::ask(&client).await.unwrap();

    fake.shutdown().await;
    let error = S::ask(&client).await.unwrap_err();

    assert!(S::is_transient(&error), "{error}");
}

/// Calls from five clones at once, and a retry: each attempt took a slot of its own, one
/// interval after the one before by the limiter's own timestamps, and went no earlier
/// than its slot. When the calls arrived is only checked against their slots (arriving
/// late is no fault of the budget), so the machine's load cannot fail this.
pub async fn calls_and_retries_from_all_clones_are_spaced_by_the_budget<S: Source>() {
    let fake = start::<S>().await;
    let client = client_for::<S>(
        &fake,
        Tweaks {
            calls_per_minute: 600,
            retry_base_delay: Duration::ZERO,
            ..Tweaks::default()
        },
    );
    fake.push_response(ScriptedResponse::server_error(502));

    let calls = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { S::ask(&client).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }

    let (arrived, status): (Vec<Instant>, Vec<u16>) =
        fake.calls().iter().map(|call| S::arrival(call)).unzip();
    let budget = S::caller(&client).budget();
    let slots = budget.recent_slots();
    // Count: five calls and one retry, each in a slot of its own.
    assert_eq!(arrived.len(), 6, "five calls and one retry");
    assert_eq!(S::caller(&client).calls_made(), 6);
    assert_eq!(slots.len(), 6, "one slot per attempt");
    assert_eq!(budget.metrics().granted.get(), 6);
    assert_eq!(budget.metrics().calls_per_minute.get(), 600);
    // Order: the first call to arrive met the failure, every later one an answer, and
    // no call arrived before its slot began (the n-th arrival is not before the n-th slot).
    assert_eq!(status, vec![502, 200, 200, 200, 200, 200]);
    for (n, (arrived, slot)) in arrived.iter().zip(&slots).enumerate() {
        assert!(arrived >= slot, "call {n} arrived before its slot");
    }
    // Spacing: 600 a minute is a slot every 100 ms (and its 0.5 % margin).
    assert!(budget.interval() >= Duration::from_millis(100));
    for pair in slots.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= budget.interval(), "slots {gap:?} apart");
    }
}

pub async fn secrets_echoed_in_an_error_body_are_masked<S: Source>() {
    let fake = start::<S>().await;
    let client = S::hiding(client_for::<S>(&fake, Tweaks::default()), "tok-9f8e7d");
    fake.push_response(ScriptedResponse::status(
        403,
        r#"{"message":"token tok-9f8e7d refused"}"#,
    ));

    let error = S::ask(&client).await.unwrap_err();

    assert!(!S::is_transient(&error), "{error:?}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("tok-9f8e7d"), "{shown}");
    assert!(error.to_string().contains("***"), "{error}");
}

/// Kills `src/upstream/caller.rs`: a wrong slot in the counter, a 429 labelled as a 5xx,
/// or a 404 as a refusal: `/metrics` counts every attempt under how it ended.
pub async fn every_attempt_is_counted_under_how_it_ended<S: Source>() {
    let (fake, client) = fake_and_client::<S>(Tweaks::default()).await;
    fake.push_response(ScriptedResponse::server_error(503));
    fake.push_response(ScriptedResponse::server_error(502));
    fake.push_response(rate_limited());
    fake.push_response(ScriptedResponse::passthrough());
    fake.push_response(ScriptedResponse::status(400, r#"{"error":"invalid from"}"#));
    fake.push_response(ScriptedResponse::status(
        404,
        r#"{"error":"coin not found"}"#,
    ));

    S::ask(&client).await.expect("the fourth attempt succeeds");
    S::ask(&client).await.expect_err("a 400 is refused");
    // A 404 (a mistyped coin id, an unlisted product) is an answer, not a refusal of the
    // key: the alert on refusals must not page anyone for it.
    S::ask(&client).await.expect_err("nothing is found");

    assert_eq!(
        S::caller(&client).calls_by_outcome(),
        [
            (CallOutcome::Ok, 1),
            (CallOutcome::Unreadable, 0),
            (CallOutcome::RateLimited, 1),
            (CallOutcome::ServerError, 2),
            (CallOutcome::NotFound, 1),
            (CallOutcome::Refused, 1),
            (CallOutcome::TransportError, 0),
        ]
    );
}

pub async fn a_scripted_passthrough_answers_as_usual_before_the_next_script<S: Source>() {
    let fake = start::<S>().await;
    let client = client_for::<S>(&fake, Tweaks::retries(0));
    fake.push_response(ScriptedResponse::passthrough());
    fake.push_response(ScriptedResponse::server_error(500));

    let first = S::ask(&client).await;
    let second = S::ask(&client).await;

    assert!(first.is_ok(), "{first:?}");
    assert!(S::is_transient(&second.unwrap_err()));
    assert_eq!(statuses::<S>(&fake), vec![200, 500]);
}

pub async fn wait_for_calls_resolves_when_a_slow_call_has_arrived<S: Source>() {
    let fake = start::<S>().await;
    fake.set_delay(Duration::from_secs(30));
    let client = client_for::<S>(&fake, Tweaks::default());
    let call = tokio::spawn(async move { S::ask(&client).await });

    tokio::time::timeout(Duration::from_secs(5), fake.wait_for_calls(1))
        .await
        .expect("the call arrives long before its answer");

    assert_eq!(fake.call_count(), 1);
    call.abort();
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
        let mut chunk = b"[1704067200,1,2,1,1,1],".repeat(64 * 1024 / 23);
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

pub async fn a_body_over_32_mib_is_refused_while_it_is_read<S: Source>() {
    let (base, server) = endless_body_server(None).await;
    let client = S::client(
        base,
        Tweaks {
            timeout: Duration::from_secs(60),
            ..Tweaks::default()
        },
    );

    let error = S::ask(&client).await.unwrap_err();

    assert!(!S::is_transient(&error), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("HTTP 200") && message.contains("over 32 MiB"),
        "{message}"
    );
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
        S::caller(&client).calls_made(),
        1,
        "a refused body is not fetched again"
    );
}

pub async fn a_body_announced_over_32_mib_is_refused_unread<S: Source>() {
    let (base, server) = endless_body_server(Some(40 * 1024 * 1024)).await;
    let client = S::client(base, Tweaks::default());

    let error = S::ask(&client).await.unwrap_err();

    assert!(!S::is_transient(&error), "{error:?}");
    assert!(error.to_string().contains("over 32 MiB"), "{error}");
    server.abort();
}

/// Runs every common case against `$source` (a [`Source`]), each as a test of its own.
macro_rules! client_cases {
    ($source:ty: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                client_cases::$case::<$source>().await
            }
        )*
    };
    ($source:ty) => {
        client_cases!($source:
            a_server_error_is_retried_and_the_second_answer_used,
            a_rate_limited_call_waits_for_retry_after_then_succeeds,
            server_errors_that_persist_give_up_as_transient_after_the_last_retry,
            a_slow_answer_times_out_and_counts_as_transient,
            a_refused_connection_is_transient,
            a_stopped_fake_refuses_connections,
            calls_and_retries_from_all_clones_are_spaced_by_the_budget,
            secrets_echoed_in_an_error_body_are_masked,
            every_attempt_is_counted_under_how_it_ended,
            a_scripted_passthrough_answers_as_usual_before_the_next_script,
            wait_for_calls_resolves_when_a_slow_call_has_arrived,
            a_body_over_32_mib_is_refused_while_it_is_read,
            a_body_announced_over_32_mib_is_refused_unread,
        );
    };
}
