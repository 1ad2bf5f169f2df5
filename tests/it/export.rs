//! `price-history export` and the prices' Parquet and Feather answers (issue 27): every
//! format, read back by readers that are not ours, holds the API's prices; a file is never
//! seen half-written; an export cut short leaves every file whole; memory stays flat over
//! 1,000 coins; and what cannot be done is refused before anything is written.

mod hours;
mod proxy;
mod python;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    Harness, Service, TestApi, admin_url, assert_exited_saying, assert_mentions, output_text,
    price_history_command, start_captured,
};
use proxy::DbProxy;
use python::read_back;

/// The days loaded for BTC: six years, with coinbase days before the CoinGecko ones.
const FIRST: &str = "2019-01-01";
const LAST: &str = "2024-12-31";

/// One candle as compared: start in ms, open, high, low, close, volume, source.
type Row = (i64, [f64; 5], Option<String>);

/// Loads BTC from [`FIRST`] to [`LAST`] and a coin of tiny prices, TINY, by SQL: prices
/// with up to 15 significant digits (so float64 rounding matters), a gap of five days,
/// coinbase days before 2021-06-01, and a provisional last day that no file may hold.
async fn load_history(h: &Harness) {
    sqlx::raw_sql(
        r#"
INSERT INTO coins (symbol, coingecko_id, first_day) VALUES ('TINY', 'tiny-coin', '2022-06-01');
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", source)
SELECT 'BTC', d::date, round(p, 10), round(p * 1.0312345678, 10), round(p * 0.9712345678, 10),
       round(p * 1.0034567891, 10), round(p * 712345.678901, 4), d + interval '23 hours',
       CASE WHEN d < '2021-06-01' THEN 'coinbase' ELSE 'coingecko' END
FROM generate_series('2019-01-01'::date, '2024-12-31'::date, interval '1 day') AS d,
     LATERAL (SELECT (30000 + 20000 * sin(extract(epoch FROM d) / 4e6) + extract(doy FROM d) * 0.0123456789)::numeric AS p) AS price
WHERE d NOT BETWEEN '2020-03-10' AND '2020-03-14';
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp", source)
SELECT 'TINY', d::date, round(p, 14), round(p * 1.1, 14), round(p * 0.9, 14), round(p * 1.01, 14),
       round(p * 1e12, 2), d + interval '23 hours', 'coingecko'
FROM generate_series('2022-06-01'::date, '2024-12-31'::date, interval '1 day') AS d,
     LATERAL (SELECT (0.00001 * (1.5 + sin(extract(epoch FROM d) / 3e6)))::numeric AS p) AS price;
UPDATE daily_prices SET provisional = TRUE WHERE date = '2024-12-31';
"#,
    )
    .execute(h.pool())
    .await
    .expect("the history is loaded");
}

/// The API's JSON prices of `symbol` over the loaded days, provisional ones left out.
async fn api_rows(api: &TestApi, symbol: &str) -> Vec<Row> {
    let answer = api
        .get(&format!(
            "/api/v1/prices?symbol={symbol}&start_date={FIRST}&end_date={LAST}"
        ))
        .await;
    answer.assert_status(StatusCode::OK);
    let number = |price: &Value, field: &str| -> f64 {
        price[field]
            .as_str()
            .expect("a decimal string")
            .parse()
            .unwrap()
    };
    answer.json()["prices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|price| price["provisional"] == false)
        .map(|price| {
            let day: chrono::NaiveDate = price["date"].as_str().unwrap().parse().unwrap();
            (
                day.and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_millis(),
                ["open", "high", "low", "close", "volume"].map(|field| number(price, field)),
                Some(price["source"].as_str().unwrap().to_owned()),
            )
        })
        .collect()
}

/// The rows a reader saw.
fn file_rows(read: &Value) -> Vec<Row> {
    read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let value = |i: usize| row[i].as_f64().unwrap();
            (
                row[0].as_i64().unwrap(),
                [value(1), value(2), value(3), value(4), value(5)],
                row[6].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// `rows` without their source, for the formats that have none (JSON).
fn without_source(rows: &[Row]) -> Vec<Row> {
    rows.iter().map(|(t, v, _)| (*t, *v, None)).collect()
}

/// A scratch directory of the test's own (removed when dropped).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("ph-export-{}", uuid::Uuid::now_v7()));
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `price-history export` against `database_url` with `args`.
fn export_command(h: &Harness, database_url: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = price_history_command(database_url, &h.fake.base_url());
    command
        .arg("export")
        .args(args)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// Runs `price-history export` with `args` to its end.
async fn export(h: &Harness, args: &[&str]) -> Output {
    export_command(h, &h.db.url, args).output().await.unwrap()
}

/// `export`'s arguments for daily candles in `format` into `dir`, then `rest`.
fn daily<'a>(dir: &'a str, format: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--out", dir, "--timeframe", "1d", "--format", format];
    args.extend(rest);
    args
}

/// Asserts exit 0, showing the output when not.
#[track_caller]
fn assert_exported(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", output_text(output));
}

/// The entries of `dir`, by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_format_read_back_by_readers_that_are_not_ours_holds_the_apis_prices_row_for_row() {
    let (h, api) = TestApi::with_harness().await;
    load_history(&h).await;
    let btc = api_rows(&api, "BTC").await;
    let tiny = api_rows(&api, "TINY").await;
    assert_eq!(
        btc.len(),
        2192 - 5 - 1,
        "six years, a gap of five, one provisional"
    );
    let out = Scratch::new();

    for format in ["feather", "parquet", "json", "jsongz", "csv"] {
        let dir = out.text(format);
        let output = export(&h, &daily(&dir, format, &["--symbols", "BTC,tiny"])).await;
        assert_exported(&output);
        let extension = if format == "jsongz" {
            "json.gz"
        } else {
            format
        };
        assert_eq!(
            entries(&out.path(format)),
            [
                format!("BTC_USD-1d.{extension}"),
                format!("TINY_USD-1d.{extension}")
            ],
            "freqtrade's names, and nothing else left in the directory"
        );
        for (symbol, expected) in [("BTC", &btc), ("TINY", &tiny)] {
            let file = out
                .path(format)
                .join(format!("{symbol}_USD-1d.{extension}"));
            let read = read_back(format, file.to_str().unwrap()).await;
            let rows = file_rows(&read);
            match format {
                "json" | "jsongz" => {
                    assert_eq!(rows, without_source(expected), "{format} {symbol}")
                }
                _ => assert_eq!(&rows, expected, "{format} {symbol}"),
            }
            if matches!(format, "feather" | "parquet") {
                assert_eq!(
                    read["columns"],
                    serde_json::json!(["date", "open", "high", "low", "close", "volume", "source"])
                );
                assert_eq!(read["types"][0], "timestamp[ms, tz=UTC]", "{format}");
                assert_eq!(read["types"][1], "double", "{format}");
            }
            if format != "csv" {
                assert_eq!(
                    read["freqtrade_rows"].as_u64(),
                    Some(expected.len() as u64),
                    "freqtrade 2026.9 itself loads every row of the {format} file"
                );
            }
            if format == "feather" {
                assert_eq!(
                    read["lz4"], true,
                    "Feather is LZ4-compressed, as freqtrade writes it"
                );
            }
            if format == "csv" {
                assert_eq!(
                    read["columns"],
                    serde_json::json!(["date", "open", "high", "low", "close", "volume", "source"])
                );
            }
        }
    }

    // A range: only its days, the provisional one still left out.
    let dir = out.text("range");
    let range = [
        "--symbols",
        "BTC",
        "--start-date",
        "2020-03-01",
        "--end-date",
        "2024-12-31",
    ];
    let output = export(&h, &daily(&dir, "csv", &range)).await;
    assert_exported(&output);
    let read = read_back(
        "csv",
        out.path("range").join("BTC_USD-1d.csv").to_str().unwrap(),
    )
    .await;
    let from = chrono::NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
    let since: Vec<Row> = btc
        .iter()
        .filter(|(t, _, _)| {
            *t >= from
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        })
        .cloned()
        .collect();
    assert_eq!(file_rows(&read), since);
    api.stop().await;
}

#[tokio::test]
async fn the_prices_answer_parquet_and_feather_as_export_writes_them_by_format_or_accept_and_406_names_the_types_served()
 {
    let (h, api) = TestApi::with_harness().await;
    load_history(&h).await;
    let btc = api_rows(&api, "BTC").await;
    let out = Scratch::new();
    std::fs::create_dir_all(&out.0).unwrap();
    let prices = format!("/api/v1/prices?symbol=BTC&start_date={FIRST}&end_date={LAST}");

    // The URL alone: what pandas.read_parquet(url) and pandas.read_feather(url) send.
    for format in ["parquet", "feather"] {
        let url = api.url(&format!("{prices}&format={format}"));
        let read = read_back(format, &url).await;
        assert_eq!(file_rows(&read), btc, "{format} over HTTP");
    }

    // Accept, and format over Accept; each answer the file export writes.
    let files = out.text("files");
    // A coin named twice is written once (two writers of one file raced for its name).
    let output = export(&h, &daily(&files, "feather", &["--symbols", "BTC,btc"])).await;
    assert_exported(&output);
    assert_eq!(entries(&out.path("files")), ["BTC_USD-1d.feather"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("1 feather file(s)"),
        "{}",
        output_text(&output)
    );
    let exported = std::fs::read(out.path("files").join("BTC_USD-1d.feather")).unwrap();
    for (accept, query, media_type) in [
        (
            "application/vnd.apache.arrow.file",
            "",
            "application/vnd.apache.arrow.file",
        ),
        (
            "text/csv",
            "&format=feather",
            "application/vnd.apache.arrow.file",
        ),
        (
            "application/vnd.apache.parquet;q=0.9, */*;q=0.1",
            "",
            "application/vnd.apache.parquet",
        ),
        (
            "application/vnd.apache.parquet",
            "&format=json",
            "application/json",
        ),
        ("*/*", "", "application/json"),
    ] {
        let answer = api
            .get_with(&format!("{prices}{query}"), "accept", accept)
            .await;
        answer.assert_status(StatusCode::OK);
        assert!(
            answer
                .header("content-type")
                .unwrap()
                .starts_with(media_type),
            "{accept} {query}: {:?}",
            answer.header("content-type")
        );
        if media_type == "application/vnd.apache.arrow.file" {
            assert_eq!(answer.body, exported, "the same bytes as the export's file");
            assert_eq!(
                answer.header("content-disposition"),
                Some("attachment; filename=\"BTC_USD-1d.feather\"")
            );
        }
        if media_type == "application/vnd.apache.parquet" {
            let file = out.path("answer.parquet");
            std::fs::write(&file, &answer.body).unwrap();
            assert_eq!(
                file_rows(&read_back("parquet", file.to_str().unwrap()).await),
                btc
            );
        }
    }

    // What cannot be served: 406 with the usual body, listing what can; a bad format: 400.
    let answer = api.get_with(&prices, "accept", "text/html").await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_ACCEPTABLE,
        "{}",
        answer.text()
    );
    assert_eq!(answer.error_code(), "not_acceptable");
    assert_mentions(
        &answer.message(),
        &[
            "application/json",
            "text/csv",
            "application/vnd.apache.parquet",
            "application/vnd.apache.arrow.file",
        ],
    );
    api.get(&format!("{prices}&format=xlsx"))
        .await
        .assert_refused("invalid_request", "format=xlsx");
    api.stop().await;
}

/// Loads one coin, BTC, with every day from 1800 to 2024 (82,180 rows, about 7 MB from
/// PostgreSQL): an export long enough to be caught in the middle.
async fn load_long_history(h: &Harness) {
    sqlx::raw_sql(
        r#"
UPDATE coins SET first_day = '1800-01-01' WHERE symbol = 'BTC';
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
SELECT 'BTC', d::date, 100 + k % 97, 110 + k % 97, 90 + k % 97, 95 + k % 97 + k % 11, 1000 + k, d
FROM generate_series('1800-01-01'::date, '2024-12-31'::date, interval '1 day') WITH ORDINALITY AS g(d, k);
"#,
    )
    .execute(h.pool())
    .await
    .expect("the history is loaded");
}

/// The test database's URL through `proxy`.
fn through(h: &Harness, proxy: &DbProxy) -> String {
    let mut url = url::Url::parse(&h.db.url).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    url.to_string()
}

/// Where the proxies forward: the test server's `host:port`.
fn upstream() -> String {
    let url = url::Url::parse(&admin_url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
}

#[tokio::test]
async fn a_reader_of_the_path_sees_the_previous_file_or_the_new_one_whole_never_part_of_one() {
    // Arrange: a feather file of 82,000 days in place, then every close changed.
    let h = Harness::new().await;
    load_long_history(&h).await;
    let out = Scratch::new();
    let dir = out.text("data");
    let args = daily(&dir, "feather", &["--symbols", "BTC"]);
    assert_exported(&export(&h, &args).await);
    let path = out.path("data").join("BTC_USD-1d.feather");
    let previous = std::fs::read(&path).unwrap();
    sqlx::query("UPDATE daily_prices SET close = close + 1")
        .execute(h.pool())
        .await
        .unwrap();

    // Act: the export again, held by the proxy after 3 MB of the 7: half-way through the
    // coin, part of the new file written.
    let proxy = DbProxy::start(upstream(), 3_000_000).await;
    let mut running = export_command(&h, &through(&h, &proxy), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.until_held().await;
    until_partly_written(&out.path("data")).await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        previous,
        "mid-way, the path is the old file"
    );

    // A reader polls the path while the rest is written.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                seen.insert(std::fs::read(&path).unwrap());
            }
            seen.insert(std::fs::read(&path).unwrap());
            seen
        })
    };
    proxy.release();
    let finished = tokio::time::timeout(Duration::from_secs(120), running.wait())
        .await
        .expect("the export ends")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().unwrap();

    // Assert: only the old file and the new one were ever seen, each whole.
    assert!(finished.success());
    let new = std::fs::read(&path).unwrap();
    assert_ne!(new, previous);
    assert!(
        seen.iter().all(|bytes| *bytes == previous || *bytes == new),
        "{} different contents seen, of sizes {:?}",
        seen.len(),
        seen.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        entries(&out.path("data")),
        ["BTC_USD-1d.feather"],
        "no temporary file left"
    );
    let read = read_back("feather", path.to_str().unwrap()).await;
    let rows = file_rows(&read);
    assert_eq!(rows.len(), 82_180);
    assert_eq!(
        rows.last().unwrap().1[3],
        (95 + 82_180 % 97 + 82_180 % 11 + 1) as f64
    );
}

/// Waits until the one temporary file in `dir` holds part of a file: the export has
/// written what the proxy let through. Polls, since a file growing sends no event.
async fn until_partly_written(dir: &Path) {
    let partly_written = || {
        let staged: Vec<String> = entries(dir)
            .into_iter()
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        staged.len() == 1
            && std::fs::metadata(dir.join(&staged[0])).is_ok_and(|file| file.len() > 0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !partly_written() {
        assert!(
            std::time::Instant::now() < deadline,
            "no part of the new file was written within a minute: {:?}",
            entries(dir)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers `n` tracked coins `C001`... with 1461 days each, by SQL.
async fn tracked_coins_with_four_years(h: &Harness, n: i32) {
    sqlx::query(
        r#"
WITH coin AS (
    INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since)
    SELECT 'C' || lpad(k::text, 3, '0'), 'coin-' || k, '2021-01-01', TRUE, '2021-01-01'
    FROM generate_series(1, $1) AS k RETURNING symbol)
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
SELECT symbol, d::date, 100.25, 110.5, 90.125, 95 + extract(doy FROM d) % 10, 123456.789, d
FROM coin, generate_series('2021-01-01'::date, '2024-12-31'::date, interval '1 day') AS d
"#,
    )
    .bind(n)
    .execute(h.pool())
    .await
    .expect("the coins are loaded");
}

/// The files of `dir` and their bytes, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    entries(dir)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// `export` of every tracked coin as JSON into `dir`.
fn tracked_as_json(dir: &str) -> Vec<&str> {
    daily(dir, "json", &["--tracked"])
}

/// The previous files of an export, and the complete new ones it is writing.
struct Versions {
    previous: Vec<(String, Vec<u8>)>,
    new: Vec<(String, Vec<u8>)>,
}

/// An export of 30 tracked coins into `data`, which holds an earlier export of them,
/// held by a proxy part-way through, after its first file was put in place. The complete
/// new files are exported beside first, into `new`, to compare.
async fn held_half_way(h: &Harness, out: &Scratch) -> (Service, DbProxy, Versions) {
    tracked_coins_with_four_years(h, 30).await;
    let data = out.text("data");
    assert_exported(&export(h, &tracked_as_json(&data)).await);
    let previous = files(&out.path("data"));
    sqlx::query("UPDATE daily_prices SET close = close + 1")
        .execute(h.pool())
        .await
        .unwrap();
    assert_exported(&export(h, &tracked_as_json(&out.text("new"))).await);
    let new = files(&out.path("new"));

    // About 4 MB of rows in all: held at 2.
    let proxy = DbProxy::start(upstream(), 2_000_000).await;
    let mut command = export_command(h, &through(h, &proxy), &tracked_as_json(&data));
    command.env("RUST_LOG", "warn,price_history::export=debug");
    let running = start_captured(command);
    // The first file is put in place.
    running
        .wait_for_printed("file written", Duration::from_secs(60))
        .await;
    proxy.until_held().await;
    (running, proxy, Versions { previous, new })
}

/// Asserts that the files of `dir` are, in symbol order, complete new ones and then the
/// previous ones untouched, at least one of each, and nothing else.
#[track_caller]
fn assert_new_then_previous(dir: &Path, Versions { previous, new }: &Versions) {
    let now = files(dir);
    let names: Vec<&String> = now.iter().map(|(name, _)| name).collect();
    let expected: Vec<&String> = previous.iter().map(|(name, _)| name).collect();
    assert_eq!(
        names, expected,
        "every file still there, no temporary one left"
    );
    let written = now
        .iter()
        .zip(new)
        .take_while(|((_, bytes), (_, new))| bytes == new)
        .count();
    assert!(
        (1..now.len()).contains(&written),
        "{written} of {} written",
        now.len()
    );
    for ((name, bytes), (_, old)) in now.iter().zip(previous).skip(written) {
        assert_eq!(bytes, old, "{name} is the previous file, whole");
    }
}

#[tokio::test]
async fn an_export_that_loses_the_database_exits_1_and_leaves_every_file_whole_the_one_in_progress_as_it_was()
 {
    let h = Harness::new().await;
    let out = Scratch::new();
    let (mut running, proxy, versions) = held_half_way(&h, &out).await;

    proxy.cut();
    let code = running.exit_code(Duration::from_secs(60)).await;

    let said = running.output();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("error: while exporting C0"), "{said}");
    assert!(said.contains("run the export again to finish"), "{said}");
    assert_new_then_previous(&out.path("data"), &versions);
}

#[tokio::test]
async fn sigterm_stops_an_export_at_once_with_exit_1_and_every_file_whole() {
    let h = Harness::new().await;
    let out = Scratch::new();
    let (mut running, _proxy, versions) = held_half_way(&h, &out).await;

    running.signal("TERM");
    let code = running.exit_code(Duration::from_secs(30)).await;

    assert_eq!(code, Some(1), "{}", running.output());
    assert!(
        running.output().contains("interrupted after"),
        "{}",
        running.output()
    );
    assert_new_then_previous(&out.path("data"), &versions);
}

#[tokio::test]
async fn what_cannot_be_exported_is_refused_with_exit_2_and_a_sentence_leaving_nothing_behind() {
    let h = Harness::new().await;
    let out = Scratch::new();
    std::fs::create_dir_all(&out.0).unwrap();
    std::fs::write(out.path("a-file"), "not a directory").unwrap();
    let fresh = out.text("fresh/deeper");
    let a_file = out.text("a-file");
    // (--out, --timeframe, --format, the rest, what the refusal says)
    let cases: [(&str, &str, &str, &[&str], &str); 12] = [
        (
            &fresh,
            "1d",
            "xlsx",
            &["--all"],
            "\"xlsx\" is not an export format: one of feather, parquet, json, jsongz, csv",
        ),
        (
            &fresh,
            "5m",
            "json",
            &["--all"],
            "\"5m\" is not a timeframe: use one of 1d, 4h, 1h",
        ),
        (
            &fresh,
            "1H",
            "json",
            &["--all"],
            "\"1H\" is not a timeframe: use one of 1d, 4h, 1h",
        ),
        (
            &fresh,
            "4h",
            "feather",
            &["--symbols", "BTC,nope"],
            "NOPE is not a registered coin",
        ),
        (
            &fresh,
            "1d",
            "json",
            &["--symbols", "BTC,nope,ETH"],
            "NOPE, ETH are not registered coins: register them with `price-history coins add SYMBOL COINGECKO_ID`",
        ),
        (
            &fresh,
            "1d",
            "json",
            &["--symbols", "BT-C"],
            "invalid value 'BT-C' for '--symbols <A,B>'",
        ),
        (
            &fresh,
            "1d",
            "json",
            &[],
            "the following required arguments were not provided",
        ),
        (
            &fresh,
            "1d",
            "json",
            &["--all", "--tracked"],
            "cannot be used with",
        ),
        (
            &fresh,
            "1d",
            "json",
            &[
                "--all",
                "--start-date",
                "2024-02-01",
                "--end-date",
                "2024-01-01",
            ],
            "--end-date 2024-01-01 is before --start-date 2024-02-01",
        ),
        (
            &a_file,
            "1d",
            "json",
            &["--all"],
            "is not a directory: name a directory (it is created when missing)",
        ),
        (
            "/proc/price-history-nope/x",
            "1d",
            "json",
            &["--all"],
            "--out /proc/price-history-nope/x cannot be created",
        ),
        (
            "/sys",
            "1d",
            "json",
            &["--all"],
            "--out /sys cannot be written",
        ),
    ];
    for (dir, timeframe, format, rest, sentence) in cases {
        let mut args = vec!["--out", dir, "--timeframe", timeframe, "--format", format];
        args.extend(rest);
        let output = export(&h, &args).await;
        assert_exited_saying(&output, 2, &[sentence]);
        assert!(
            !out.path("fresh").exists(),
            "{args:?} left its --out behind"
        );
        assert_eq!(
            std::fs::read(out.path("a-file")).unwrap(),
            b"not a directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_coins_of_four_years_export_in_under_50_mb_and_a_coin_without_days_is_listed_and_skipped()
 {
    // Arrange: 1,000 tracked coins × 1461 days (1.46 M rows), and two coins with none
    // (BTC, registered by the first migration, and EMPTY).
    let h = Harness::new().await;
    sqlx::raw_sql(
        r#"
INSERT INTO coins (symbol, coingecko_id, first_day, tracked, track_since)
SELECT 'M' || lpad(k::text, 4, '0'), 'many-' || k, '2021-01-01', TRUE, '2021-01-01'
FROM generate_series(1, 1000) AS k;
INSERT INTO daily_prices (symbol, date, open, high, low, close, volume, "timestamp")
SELECT c.symbol, d::date, 100.25, 110.5, 90.125, 95 + extract(doy FROM d) % 10, 123456.789, d
FROM coins c CROSS JOIN generate_series('2021-01-01'::date, '2024-12-31'::date, interval '1 day') AS d
WHERE c.tracked;
INSERT INTO coins (symbol, coingecko_id, first_day) VALUES ('EMPTY', 'empty-coin', '2021-01-01');
"#,
    )
    .execute(h.pool())
    .await
    .expect("the coins are loaded");
    let out = Scratch::new();
    let data = out.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("EMPTY_USD-1d.parquet"), "an earlier file").unwrap();

    // Act: the export of every coin, as a child whose peak memory the kernel records.
    let (status, peak_kib, printed) = tokio::task::spawn_blocking({
        let (data, log) = (out.text("data"), out.path("export.log"));
        let (url, fake) = (h.db.url.clone(), h.fake.base_url());
        move || run_measured(&url, &fake, &data, &log)
    })
    .await
    .unwrap();

    // Assert
    assert_eq!(status, 0, "{printed}");
    println!(
        "1,000 coins x 1461 days as parquet: peak RSS {:.1} MB",
        peak_kib as f64 / 1024.0
    );
    assert!(peak_kib < 50 * 1024, "peak RSS {peak_kib} KiB");
    assert_mentions(
        &printed,
        &[
            "1000 parquet file(s) of 1d candles written",
            "(1461000 rows)",
            "skipped 2 coin(s) with no candle in the range: BTC EMPTY",
        ],
    );
    assert_eq!(
        std::fs::read(data.join("EMPTY_USD-1d.parquet")).unwrap(),
        b"an earlier file",
        "a skipped coin's file is left alone"
    );
    assert_eq!(entries(&data).len(), 1001);
    let last = read_back(
        "parquet",
        data.join("M1000_USD-1d.parquet").to_str().unwrap(),
    )
    .await;
    assert_eq!(file_rows(&last).len(), 1461);
}

/// Runs `export --all --format parquet` into `dir`, its output into `log`, and returns its
/// exit code, its peak resident memory in KiB and what it printed. The peak is
/// `getrusage(RUSAGE_CHILDREN)` in a small Python parent that has no other child: Linux
/// keeps a process's high-water mark across `exec`, and a child starts from the memory of
/// the process that spawned it, so the test binary (tens of MB) cannot be that parent.
fn run_measured(
    database_url: &str,
    coingecko_url: &str,
    dir: &str,
    log: &Path,
) -> (i32, i64, String) {
    const MEASURE: &str = "import json, resource, subprocess, sys\n\
        with open(sys.argv[1], 'w') as log:\n\
        \x20   code = subprocess.run(sys.argv[2:], stdout=log, stderr=log).returncode\n\
        print(json.dumps([code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n";
    let measured = std::process::Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(log)
        .arg(env!("CARGO_BIN_EXE_price-history"))
        .arg("export")
        .args(daily(dir, "parquet", &["--all"]))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("COINGECKO_BASE_URL", coingecko_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("python3 runs");
    assert!(measured.status.success(), "{}", output_text(&measured));
    let (code, peak_kib): (i32, i64) =
        serde_json::from_slice(&measured.stdout).expect("the measure is JSON");
    (code, peak_kib, std::fs::read_to_string(log).unwrap())
}
