//! The `price-history` binary itself, as a user runs it.

use std::fmt::Display;
use std::process::Output;
use std::time::Duration;

use chrono::Days;
use fake_upstream::coingecko::ScriptedResponse;
use tokio::process::Command;

use crate::support::{
    Harness, Service, admin_url, assert_exited_saying, days_before_today, free_port, output_text,
    price_history_command, spawn_service, sql,
};

fn price_history(h: &Harness) -> Command {
    let mut command = price_history_command(&h.db.url, &h.fake.base_url());
    command
        .env("COINGECKO_API_KEY", "cg-secret-key-123")
        // As the in-process harness: the second source off, and never the real one.
        .env("FALLBACK_SOURCE", "off")
        .env("COINBASE_BASE_URL", h.coinbase.base_url())
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    command
}

/// Asserts that the process's output (stdout and stderr) contains `text`.
#[track_caller]
fn assert_says(output: &Output, text: &str) {
    assert!(
        output_text(output).contains(text),
        "{}",
        output_text(output)
    );
}

/// Runs `price-history` with `args`, to its end.
async fn run(h: &Harness, args: &[&str]) -> Output {
    price_history(h).args(args).output().await.unwrap()
}

/// Runs `price-history coins add` with `args`, to its end.
async fn coins_add(h: &Harness, args: &[&str]) -> Output {
    run(h, &[&["coins", "add"], args].concat()).await
}

/// Runs `price-history backfill` over the days from `start` to `end`, to its end.
async fn backfill(command: &mut Command, start: impl Display, end: impl Display) -> Output {
    let (start, end) = (start.to_string(), end.to_string());
    command
        .args(["backfill", "--start-date", &start, "--end-date", &end])
        .output()
        .await
        .unwrap()
}

/// A database name nobody uses, and the URL that points at it.
fn missing_database(prefix: &str) -> (String, url::Url) {
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(&name);
    (name, url)
}

async fn drop_database(admin: &mut sqlx::PgConnection, name: &str) {
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn backfill_stores_1461_days_with_17_calls_and_exits_0() {
    let h = Harness::new().await;
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(1460)).unwrap();

    // As a person runs it: no RUST_LOG, so only warnings are logged beside the summary.
    let output = backfill(price_history(&h).env_remove("RUST_LOG"), start, end).await;

    let printed = output_text(&output);
    assert!(output.status.success(), "{printed}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(": completed"), "{printed}");
    assert!(stdout.contains("windows: 17/17"), "{printed}");
    assert!(
        stdout.contains("days: 1461 from CoinGecko, 0 from Coinbase Exchange"),
        "{printed}"
    );
    assert!(
        !stdout.contains("hours:"),
        "a daily-only coin has no hours: {printed}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(" INFO "),
        "only warnings are logged unless RUST_LOG asks for more: {printed}"
    );
    assert_eq!(h.fake.call_count(), 17);
    assert_eq!(h.stored_days().await, 1461);
    assert!(
        h.fake.calls().iter().all(|c| c.api_key_present),
        "the key is sent"
    );
    assert!(
        !printed.contains("cg-secret-key-123"),
        "the key is never printed"
    );
}

#[tokio::test]
async fn backfill_of_an_hourly_coin_says_its_hours_in_the_summary() {
    let h = Harness::new().await;
    sql(
        h.pool(),
        "UPDATE coins SET hourly = true WHERE symbol = 'BTC'",
    )
    .await;

    let output = backfill(
        &mut price_history(&h),
        days_before_today(10),
        days_before_today(1),
    )
    .await;

    let printed = output_text(&output);
    assert!(output.status.success(), "{printed}");
    // FALLBACK_SOURCE=off: the hours are built from CoinGecko's points of the window.
    let stored = h.rows("hourly_prices WHERE symbol = 'BTC'").await;
    assert!(stored >= 24 * 10, "{stored} hours stored: {printed}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!("hours: {stored} stored")),
        "{printed}"
    );
}

#[tokio::test]
async fn backfill_exits_non_zero_with_coingeckos_reason_when_the_job_fails() {
    let h = Harness::new().await;
    h.fake.push_response(ScriptedResponse::status(
        401,
        r#"{"status":{"error_code":10002,"error_message":"API Key Missing."}}"#,
    ));

    let output = backfill(&mut price_history(&h), "2020-01-01", "2020-02-01").await;

    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(": failed") && stdout.contains("API Key Missing"),
        "{stdout}"
    );
}

#[tokio::test]
async fn backfill_on_a_365_day_plan_stores_the_last_year_and_reports_the_rest_out_of_plan() {
    let h = Harness::with_fake(fake_upstream::coingecko::FakeOptions {
        history_limit_days: Some(365),
        ..Default::default()
    })
    .await;
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(1460)).unwrap();

    let output = backfill(
        price_history(&h).env("COINGECKO_HISTORY_DAYS", "365"),
        start,
        end,
    )
    .await;

    let printed = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    assert!(printed.contains(": completed_with_gaps"), "{printed}");
    assert!(printed.contains("out of plan: 1097 day(s)"), "{printed}");
    assert!(printed.contains("a paid key reaches further"), "{printed}");
    assert!(
        h.fake.calls().iter().all(|c| c.status == 200),
        "no call refused"
    );
    assert_eq!(h.stored_days().await, 364);
}

#[tokio::test]
async fn coins_are_added_and_listed_from_the_shell_with_the_apis_rules() {
    let h = Harness::new().await;

    let added = coins_add(&h, &["eth", "ethereum", "--track", "--since", "2024-01-01"]).await;
    let unknown = coins_add(&h, &["BCN", "bitcorn"]).await;
    let taken = coins_add(&h, &["ETH", "solana"]).await;
    let listed = run(&h, &["coins", "list"]).await;

    assert_eq!(added.status.code(), Some(0), "{}", output_text(&added));
    assert_says(
        &added,
        "registered ETH (ethereum), first day 2015-08-07, tracked since 2024-01-01",
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert_says(&unknown, "does not know the coin id bitcorn");
    assert_eq!(taken.status.code(), Some(2));
    assert_says(&taken, "ETH is registered with coingecko_id ethereum");
    let list = String::from_utf8_lossy(&listed.stdout).into_owned();
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(
        rows[0].starts_with("BTC") && rows[0].contains("bitcoin"),
        "{list}"
    );
    assert!(
        rows[1].starts_with("ETH") && rows[1].contains("yes"),
        "{list}"
    );
    assert_eq!(h.fake.call_count(), 2, "one check per new id");
}

#[tokio::test]
async fn coins_add_takes_a_coinbase_product_or_none_and_refuses_a_malformed_one() {
    let h = Harness::new().await;

    let malformed = coins_add(&h, &["ETH", "ethereum", "--coinbase-product", "ETHUSD"]).await;
    // FALLBACK_SOURCE=off here: the product is stored as given, unchecked.
    let added = coins_add(&h, &["ETH", "ethereum", "--coinbase-product", "eth-usd"]).await;
    let listed = run(&h, &["coins", "list"]).await;
    let cleared = coins_add(&h, &["ETH", "ethereum", "--coinbase-product", "none"]).await;

    assert_exited_saying(&malformed, 2, &["is not a Coinbase product", "or none"]);
    assert_exited_saying(&added, 0, &["second source Coinbase Exchange ETH-USD"]);
    let list = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        list.lines().next().unwrap().contains("COINBASE_PRODUCT"),
        "{list}"
    );
    let eth = list
        .lines()
        .find(|l| l.starts_with("ETH"))
        .expect("ETH is listed");
    assert!(eth.contains("ETH-USD (unchecked)"), "{list}");
    assert_eq!(cleared.status.code(), Some(0), "{}", output_text(&cleared));
    assert!(
        output_text(&cleared).contains("updated ETH")
            && output_text(&cleared).contains("second source none"),
        "{}",
        output_text(&cleared)
    );
    assert_eq!(
        h.fake.call_count(),
        1,
        "one check of the new id, none for the product"
    );
}

#[tokio::test]
async fn coins_add_hourly_keeps_hours_and_queues_them_and_no_hourly_turns_them_off() {
    let h = Harness::new().await;

    let hourly = coins_add(&h, &["ETH", "ethereum", "--hourly"]).await;
    let listed = run(&h, &["coins", "list"]).await;
    let left_out = coins_add(&h, &["ETH", "ethereum", "--track"]).await;
    let both = coins_add(&h, &["ETH", "ethereum", "--hourly", "--no-hourly"]).await;
    let off = coins_add(&h, &["ETH", "ethereum", "--no-hourly"]).await;

    assert_eq!(hourly.status.code(), Some(0), "{}", output_text(&hourly));
    // FALLBACK_SOURCE=off here: its hours are built from CoinGecko's points.
    assert_says(&hourly, "registered ETH (ethereum)");
    assert_says(&hourly, "hourly candles from CoinGecko");
    let jobs = price_history::store::ingestion_jobs::list(h.pool(), None, None, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job.trigger, price_history::domain::Trigger::Cli);
    let today = price_history::domain::today_utc();
    assert_eq!(
        (job.range.start(), job.range.end()),
        (today.checked_sub_days(Days::new(1460)).unwrap(), today)
    );
    assert_says(
        &hourly,
        &format!("job {} queued for ETH's missing days and hours", job.id),
    );
    let list = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(list.lines().next().unwrap().ends_with("HOURLY"), "{list}");
    let eth = list
        .lines()
        .find(|l| l.starts_with("ETH"))
        .expect("ETH is listed");
    assert_eq!(eth.split_whitespace().last(), Some("coingecko"), "{list}");
    let btc = list
        .lines()
        .find(|l| l.starts_with("BTC"))
        .expect("BTC is listed");
    assert_eq!(btc.split_whitespace().last(), Some("no"), "{list}");

    assert_eq!(
        left_out.status.code(),
        Some(0),
        "{}",
        output_text(&left_out)
    );
    assert_says(&left_out, "hourly candles from CoinGecko");
    assert_exited_saying(&both, 2, &["--no-hourly"]);
    assert_exited_saying(&off, 0, &["updated ETH", "no hourly candles"]);
    // Tracked since `left_out`, and not any more, as the API's PUT: said, since a user who
    // turns hours off seldom means to stop tracking too (a review's finding).
    assert_says(&off, "ETH is no longer tracked, since --track was left out");
    assert!(!output_text(&left_out).contains("no longer tracked"));
    let still_hourly = crate::support::count_rows(h.pool(), "coins WHERE hourly").await;
    assert_eq!(still_hourly, 0);
}

#[tokio::test]
async fn backfill_refuses_a_range_the_rules_forbid_and_says_why() {
    let h = Harness::new().await;
    let cases = [
        (["2020-01-01", "2024-12-31"], "at most 1461"),
        (["2024-02-01", "2024-01-01"], "before start_date"),
        (["2013-01-01", "2013-06-01"], "2013-04-28"),
    ];
    for ([start, end], reason) in cases {
        let output = backfill(&mut price_history(&h), start, end).await;
        assert_eq!(output.status.code(), Some(2));
        assert_says(&output, reason);
    }
    let output = run(
        &h,
        &[
            "backfill",
            "--start-date",
            "2024-01-01",
            "--end-date",
            "2024-01-02",
            "--symbol",
            "DOGE",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert_says(&output, "DOGE is not a registered coin");
    assert_eq!(h.fake.call_count(), 0);
}

/// An audit's finding: the command line read days as chrono does, signed and five-digit
/// years included, which the API refuses; a year before PostgreSQL's dates failed inside
/// the database (exit 1, "run the export again"), after `--out` was created and, for
/// `coins add`, after a credit was spent on the check.
#[tokio::test]
async fn a_day_that_is_not_yyyy_mm_dd_is_refused_by_every_command_before_anything_is_done() {
    let h = Harness::new().await;
    let out = std::env::temp_dir().join(format!("price-history-{}", uuid::Uuid::now_v7()));
    let out = out.to_str().unwrap();
    let export = [
        "export",
        "--all",
        "--timeframe",
        "1d",
        "--format",
        "csv",
        "--out",
        out,
    ];
    let commands: [&[&str]; 4] = [
        &[&export[..], &["--start-date=-5000-01-01"]].concat(),
        &[
            "backfill",
            "--start-date",
            "+2024-01-01",
            "--end-date",
            "2024-01-02",
        ],
        &[
            "coins",
            "add",
            "ETH",
            "ethereum",
            "--track",
            "--since=-5000-01-01",
        ],
        &["coins", "track-top", "3", "--since", "12024-01-01"],
    ];
    for args in commands {
        let output = run(&h, args).await;
        assert_exited_saying(&output, 2, &["is not a day written as YYYY-MM-DD"]);
    }
    assert!(!std::path::Path::new(out).exists(), "--out is left alone");
    assert_eq!(h.fake.call_count(), 0, "no check, no call");
    assert_eq!(h.rows("coins").await, 1, "only BTC");
}

/// A review's finding: `--help` printed `DATABASE_URL`'s value, password and all (the
/// key and the token were hidden already), into terminals and CI logs.
#[tokio::test]
async fn help_shows_no_secret_of_the_environment() {
    let secrets = ["db-pass-456", "cg-secret-key-123", "api-token-789"];
    let database_url = format!("postgres://u:{}@db.invalid/x", secrets[0]);
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["coins", "add", "--help"],
    ] {
        let output = price_history_command(&database_url, "http://127.0.0.1:9")
            .env("COINGECKO_API_KEY", secrets[1])
            .env("API_TOKEN", secrets[2])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = output_text(&output);
        assert!(
            output.status.success() && text.contains("DATABASE_URL"),
            "{text}"
        );
        for secret in secrets {
            assert!(!text.contains(secret), "{args:?} shows {secret}: {text}");
        }
    }
}

#[tokio::test]
async fn migrate_creates_the_database_when_it_is_missing() {
    let h = Harness::new().await;
    let (name, url) = missing_database("ph_test_missing");

    let output = price_history(&h)
        .env("DATABASE_URL", url.as_str())
        .arg("migrate")
        .output()
        .await
        .unwrap();

    assert!(output.status.success(), "{}", output_text(&output));
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url())
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(exists);
    drop_database(&mut admin, &name).await;
}

#[tokio::test]
async fn migrate_twice_at_once_is_safe() {
    let h = Harness::new().await;
    let (name, url) = missing_database("ph_test_race");

    let runs = (0..3).map(|_| {
        price_history(&h)
            .env("DATABASE_URL", url.as_str())
            .arg("migrate")
            .output()
    });
    let outputs = futures::future::join_all(runs).await;

    for output in outputs {
        let output = output.unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
    }
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url())
        .await
        .unwrap();
    drop_database(&mut admin, &name).await;
}

#[tokio::test]
async fn backfill_interrupted_by_sigterm_hands_its_job_back_and_exits_3() {
    let h = Harness::new().await;
    h.fake.set_delay(std::time::Duration::from_millis(250));
    let end = days_before_today(1);
    let start = end.checked_sub_days(Days::new(1460)).unwrap();
    let mut backfill = h.spawn(
        &[
            "backfill",
            "--start-date",
            &start.to_string(),
            "--end-date",
            &end.to_string(),
        ],
        &[],
    );
    let queued = backfill
        .wait_for_printed(" queued: BTC ", std::time::Duration::from_secs(30))
        .await;
    let id: uuid::Uuid = queued
        .lines()
        .find_map(|line| line.strip_prefix("job "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a job id in: {queued}"));
    h.wait_for(id, "2 windows stored", |j| j.chunks_done >= 2)
        .await;

    backfill.signal("TERM");
    let code = backfill.exit_code(std::time::Duration::from_secs(30)).await;

    let printed = backfill.output();
    assert_eq!(code, Some(3), "{printed}");
    assert!(
        printed.contains("the job was handed back to the queue"),
        "{printed}"
    );
    let job = h.job(id).await;
    assert_eq!(
        job.status,
        price_history::domain::JobStatus::Pending,
        "{printed}"
    );
    assert!(job.chunks_done >= 2, "the checkpoint is kept");
}

/// A review's finding: `coins add` did not watch the stop signal once the database was
/// reached, so a check held by CoinGecko's 429s (a minute's wait each) kept it for minutes
/// after SIGTERM. It exits 1 at once, saying what may have happened.
#[tokio::test]
async fn coins_add_held_by_429s_exits_1_at_once_on_sigterm() {
    let h = Harness::new().await;
    for _ in 0..4 {
        h.fake.push_response(ScriptedResponse::rate_limited(None));
    }
    let mut add = h.spawn(&["coins", "add", "ETH", "ethereum", "--track"], &[]);
    let asked = h.fake.wait_for_calls(1);
    tokio::time::timeout(Duration::from_secs(30), asked)
        .await
        .expect("the coin is checked with CoinGecko");

    add.signal("TERM");
    let code = add.exit_code(Duration::from_secs(10)).await;

    let printed = add.output();
    assert_eq!(code, Some(1), "{printed}");
    assert!(
        printed.contains("interrupted before the registry answered"),
        "{printed}"
    );
    assert_eq!(h.fake.call_count(), 1, "no retry after the stop");
}

/// `args` run against a port where no PostgreSQL listens, once the process says it waits
/// for one (for up to a minute).
async fn waiting_for_postgresql(args: &[&str], env: &[(&str, &str)]) -> Service {
    let nobody = format!(
        "postgres://postgres@127.0.0.1:{}/price_history",
        free_port()
    );
    let env = [&[("DATABASE_CONNECT_TIMEOUT_SECS", "60")][..], env].concat();
    let service = spawn_service(&nobody, "http://127.0.0.1:1", args, &env);
    service
        .wait_for_printed(
            "waiting for PostgreSQL to accept connections",
            Duration::from_secs(20),
        )
        .await;
    service
}

/// Issue 25: the signal handlers were installed only once the service was up, so a SIGTERM
/// while the process waited for PostgreSQL (or migrated) killed it, exit 143. They are
/// installed first thing now: the process stops waiting and exits 0, like any other.
#[tokio::test]
async fn a_sigterm_while_the_process_waits_for_postgresql_at_start_exits_0() {
    let bind = format!("127.0.0.1:{}", free_port());
    let mut api = waiting_for_postgresql(&["api"], &[("BIND_ADDR", &bind)]).await;

    api.signal("TERM");

    api.exits_0(Duration::from_secs(10)).await;
}

/// An audit's finding: a one-off command stopped while it waited for PostgreSQL exited 0,
/// so a script took a backfill that queued nothing for done. It exits 1 and says so; a
/// service still exits 0 (above). And another: at a one-off command's own log level
/// (`warn`), the wait was silent until it gave up; it says that it waits.
#[tokio::test]
async fn a_backfill_stopped_before_it_could_queue_its_job_exits_1_saying_nothing_was_queued() {
    let dates = ["--start-date", "2024-01-01", "--end-date", "2024-01-31"];
    let args = [&["backfill"][..], &dates].concat();
    let mut backfill = waiting_for_postgresql(&args, &[("RUST_LOG", "warn")]).await;

    backfill.signal("TERM");

    let code = backfill.exit_code(Duration::from_secs(10)).await;
    let printed = backfill.output();
    assert!(
        code == Some(1) && printed.contains("interrupted before the job was queued"),
        "{code:?}: {printed}"
    );
}
