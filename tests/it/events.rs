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

/// Opens `n` event streams, each answered 200, and keeps them open.
async fn open_streams(address: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut open = Vec::new();
    for _ in 0..n {
        let (socket, head) = ask_for_a_stream(address).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        open.push(socket);
    }
    open
}

/// Opens a connection and asks for the event stream; returns the socket and the answer's
/// head (status line and headers), read as soon as it comes.
async fn ask_for_a_stream(address: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("the API accepts");
    socket
        .write_all(
            b"GET /api/v1/job-events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("the request is sent");
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = socket.read(&mut byte).await.expect("the answer reads");
            assert_eq!(n, 1, "the head is complete before the connection ends");
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the answer's head comes at once");
    (socket, String::from_utf8_lossy(&head).to_lowercase())
}

#[tokio::test]
async fn eleven_hundred_streams_leave_the_api_answering_and_the_two_hundred_fifty_seventh_is_refused()
 {
    use tokio::io::AsyncReadExt;
    let h = Harness::new().await;
    let job = h.submit_days_to_yesterday(10).await;
    let api = TestApi::start(&h).await;
    let address = api.base.trim_start_matches("http://").to_owned();

    let mut open = open_streams(&address, 256).await;
    let (mut refused, head) = ask_for_a_stream(&address).await;
    assert!(head.starts_with("http/1.1 503"), "stream 257: {head}");
    assert!(head.contains("\r\nretry-after: 30\r\n"), "{head}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the refused connection is closed, not kept: {closed:?}"
    );
    assert!(
        String::from_utf8_lossy(&rest).contains("too_many_streams"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // The attacker goes on: 843 more ask, all at once, and keep their sockets.
    let more = futures::future::join_all((0..843).map(|_| ask_for_a_stream(&address))).await;
    for (socket, head) in more {
        assert!(head.starts_with("http/1.1 503"), "{head}");
        open.push(socket);
    }

    for path in [
        "/healthz".to_owned(),
        format!("/api/v1/ingestion-jobs/{}", job.id),
    ] {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), api.get(&path))
            .await
            .unwrap_or_else(|_| panic!("{path} answers within a second"));
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    // A stream that closes gives its place back.
    drop(open.swap_remove(0));
    let reopened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (socket, head) = ask_for_a_stream(&address).await;
            if head.starts_with("http/1.1 200") {
                return socket;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reopened.is_ok(),
        "a freed place is given to the next stream"
    );
    drop(open);
    api.stop().await;
}

/// An API serving `max_connections` connections and 16 streams, and its address.
async fn api_with_connections(h: &Harness, max_connections: usize) -> (TestApi, String) {
    let limits = price_history::api::ConnectionLimits {
        max_connections,
        event_streams: 16,
        ..Default::default()
    };
    let api = TestApi::start_with_limits(h.api_state(None), limits).await;
    let address = api.base.trim_start_matches("http://").to_owned();
    (api, address)
}

#[tokio::test]
async fn streams_do_not_count_among_the_connections_of_ordinary_requests() {
    let h = Harness::new().await;
    let (api, address) = api_with_connections(&h, 4).await;

    let open = open_streams(&address, 16).await;
    let (_, head) = ask_for_a_stream(&address).await;
    assert!(head.starts_with("http/1.1 503"), "stream 17: {head}");

    // Four times the ordinary cap in streams, and the four places are all free.
    let answers = tokio::time::timeout(
        Duration::from_secs(1),
        futures::future::join_all((0..4).map(|_| {
            let client = reqwest::Client::new();
            let url = format!("{}/healthz", api.base);
            async move { client.get(url).send().await.map(|r| r.status()) }
        })),
    )
    .await
    .expect("four requests at once answer within a second");
    for answer in answers {
        assert_eq!(answer.expect("an answer"), 200);
    }
    drop(open);
    api.stop().await;
}

/// An audit's finding: poem answers HEAD by running the GET handler and dropping the body,
/// and the handler gave the connection's place back before the body was ever served, so a
/// HEAD of the stream took its keep-alive connection out of the cap for good.
#[tokio::test]
async fn a_head_of_the_event_stream_keeps_its_connection_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new().await;
    let (api, address) = api_with_connections(&h, 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"HEAD /api/v1/job-events HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(socket.read(&mut byte).await.unwrap(), 1, "a whole head");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        held.push(socket);
    }

    // Both places are taken by the two open connections: a third waits for one.
    let healthz = reqwest::get(format!("{}/healthz", api.base));
    let mut healthz = Box::pin(healthz);
    let early = tokio::time::timeout(Duration::from_secs(1), &mut healthz).await;
    assert!(
        early.is_err(),
        "a third connection was served with both places taken"
    );
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(5), healthz)
        .await
        .expect("served once a connection closes")
        .unwrap();
    assert_eq!(answer.status(), 200);
    api.stop().await;
}

/// An audit's finding: when the listener lost its database connection, the changes
/// announced meanwhile were lost while every stream stayed open, so a page never knew to
/// read the list again. Now every stream ends, and its client reconnects.
#[tokio::test]
async fn a_stream_ends_when_the_listener_loses_its_connection_so_the_client_reads_the_list_again() {
    use tokio::io::AsyncReadExt;
    let h = Harness::new().await;
    let api = TestApi::start_with(h.api_state(None)).await;
    let address = api.base.trim_start_matches("http://").to_owned();
    let (mut stream, head) = ask_for_a_stream(&address).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let ended = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND query ILIKE 'LISTEN%') AS t",
    )
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(ended, 1, "the listener's connection");

    // The answer is chunked: its end is the last chunk (or the connection closing).
    let read_to_the_end = async {
        let mut sent = Vec::new();
        let mut buf = [0u8; 256];
        while !sent.ends_with(b"\r\n0\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sent.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_to_the_end)
        .await
        .expect("the stream ends once its listener lost the connection");
    // A new follower gets a new listener at once.
    let (_again, head) = ask_for_a_stream(&address).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    api.stop().await;
}
