//! The export of hours (issue 27 for issue 26's timeframes): every format of `1h`, written
//! by `price-history export --timeframe 1h` and answered by `GET /api/v1/prices`, read back
//! by readers that are not ours, holds the API's JSON hour rows row for row, with `source`
//! and `disputed` in the columnar files; provisional hours are left out, and so are `4h`
//! blocks that hold one.

use price_history::domain::{HourlyCandle, PriceSource};
use serde_json::Value;

use super::{Row, Scratch, assert_exported, entries, export, file_rows, read_back, without_source};
use crate::hourly_reads::{candle, dispute, hour, provisional, store};
use crate::support::{Harness, TestApi};

const RANGE: &str = "symbol=BTC&start_date=2024-01-01&end_date=2024-01-10";

/// Ten days of BTC's hours from 2024-01-01 (240 hours): holes, CoinGecko-built hours in
/// the middle, prices with up to 15 significant digits, a disputed hour, and the last
/// hour provisional (so no file may hold it, nor its `4h` block).
async fn ten_days(pool: &sqlx::PgPool) {
    let candles: Vec<HourlyCandle> = (0..240)
        .filter(|n| !matches!(n, 17..=19 | 100 | 150..=160))
        .map(|n| {
            let source = match n {
                60..=90 => PriceSource::CoinGecko,
                _ => PriceSource::Coinbase,
            };
            let price = format!("{}.{:010}", 40_000 + (n * 7919) % 3001, n * 1_234_567);
            let made = candle(n, source, &price);
            if n == 239 { provisional(made) } else { made }
        })
        .collect();
    store(pool, &candles).await;
    dispute(pool, 33).await;
}

/// The API's JSON rows of `timeframe` over [`RANGE`], provisional ones left out, as
/// compared with the files; and whether each is disputed.
async fn api_hours(api: &TestApi, timeframe: &str) -> (Vec<Row>, Vec<bool>) {
    let answer = api
        .get(&format!("/api/v1/prices?{RANGE}&timeframe={timeframe}"))
        .await;
    answer.assert_status(reqwest::StatusCode::OK);
    let rows: Vec<Value> = answer.json()["prices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["provisional"] == false)
        .cloned()
        .collect();
    let number =
        |row: &Value, field: &str| -> f64 { row[field].as_str().unwrap().parse().unwrap() };
    let compared = rows
        .iter()
        .map(|row| {
            let time: chrono::DateTime<chrono::Utc> =
                row["time"].as_str().unwrap().parse().unwrap();
            (
                time.timestamp_millis(),
                ["open", "high", "low", "close", "volume"].map(|field| number(row, field)),
                Some(row["source"].as_str().unwrap().to_owned()),
            )
        })
        .collect();
    let disputed = rows.iter().map(|row| row["disputed"] == true).collect();
    (compared, disputed)
}

#[tokio::test]
async fn every_format_of_hours_read_back_by_readers_that_are_not_ours_holds_the_apis_rows() {
    let (h, api) = TestApi::with_harness().await;
    ten_days(h.pool()).await;
    let (hours, disputed) = api_hours(&api, "1h").await;
    assert_eq!(
        hours.len(),
        240 - 3 - 1 - 11 - 1,
        "holes and the provisional hour left out"
    );
    assert_eq!(disputed.iter().filter(|d| **d).count(), 1);
    let out = Scratch::new();

    for format in ["feather", "parquet", "json", "jsongz", "csv"] {
        let dir = out.text(format);
        let args = [
            "--out",
            &dir,
            "--timeframe",
            "1h",
            "--format",
            format,
            "--symbols",
            "BTC",
            "--start-date",
            "2024-01-01",
            "--end-date",
            "2024-01-10",
        ];
        assert_exported(&export(&h, &args).await);
        let extension = if format == "jsongz" {
            "json.gz"
        } else {
            format
        };
        let name = format!("BTC_USD-1h.{extension}");
        assert_eq!(
            entries(&out.path(format)),
            std::slice::from_ref(&name),
            "freqtrade's name"
        );
        let read = read_back(format, out.path(format).join(&name).to_str().unwrap()).await;
        match format {
            "json" | "jsongz" => assert_eq!(file_rows(&read), without_source(&hours), "{format}"),
            _ => assert_eq!(file_rows(&read), hours, "{format}"),
        }
        if matches!(format, "feather" | "parquet") {
            assert_eq!(
                read["columns"],
                serde_json::json!([
                    "date", "open", "high", "low", "close", "volume", "source", "disputed"
                ])
            );
            assert_eq!(read["disputed"], serde_json::json!(disputed), "{format}");
        }
        if format != "csv" {
            assert_eq!(
                read["freqtrade_rows"].as_u64(),
                Some(hours.len() as u64),
                "freqtrade 2026.9 itself loads every hour of the {format} file"
            );
        }
    }
    let csv = std::fs::read_to_string(out.path("csv").join("BTC_USD-1h.csv")).unwrap();
    assert!(
        csv.starts_with("date,open,high,low,close,volume,source\n2024-01-01T00:00:00Z,"),
        "{csv:.80}"
    );

    // Over HTTP: the URL alone, as pandas reads it.
    for format in ["parquet", "feather"] {
        let url = api.url(&format!(
            "/api/v1/prices?{RANGE}&timeframe=1h&format={format}"
        ));
        let read = read_back(format, &url).await;
        assert_eq!(file_rows(&read), hours, "{format} over HTTP");
        assert_eq!(
            read["disputed"],
            serde_json::json!(disputed),
            "{format} over HTTP"
        );
    }
    let answer = api
        .get(&format!(
            "/api/v1/prices?{RANGE}&timeframe=1h&format=parquet"
        ))
        .await;
    assert_eq!(
        answer.header("content-disposition"),
        Some("attachment; filename=\"BTC_USD-1h.parquet\"")
    );
    api.stop().await;
}

/// BTC's `4h` blocks as `export --all --format {format}` writes them, read back by
/// [`read_back`].
async fn exported_blocks(h: &Harness, format: &str) -> Value {
    let out = Scratch::new();
    let dir = out.text(format);
    let args = [
        "--out",
        &dir,
        "--timeframe",
        "4h",
        "--format",
        format,
        "--all",
    ];
    assert_exported(&export(h, &args).await);
    let file = out.path(format).join(format!("BTC_USD-4h.{format}"));
    read_back(format, file.to_str().unwrap()).await
}

#[tokio::test]
async fn four_hour_files_hold_the_apis_finished_blocks_and_leave_out_the_one_with_a_provisional_hour()
 {
    let (h, api) = TestApi::with_harness().await;
    ten_days(h.pool()).await;
    let (blocks, disputed) = api_hours(&api, "4h").await;
    assert_eq!(
        blocks.len(),
        60 - 2 - 1,
        "60 blocks; 152..156 and 156..160 hold no hour, 236..240 a provisional one"
    );
    assert!(
        blocks
            .iter()
            .any(|(_, _, source)| source.as_deref() == Some("mixed")),
        "hours 88..92 are of both sources"
    );
    for format in ["feather", "csv"] {
        let read = exported_blocks(&h, format).await;
        assert_eq!(file_rows(&read), blocks, "{format}");
        if format == "feather" {
            assert_eq!(read["disputed"], serde_json::json!(disputed));
        }
    }
    let url = api.url(&format!(
        "/api/v1/prices?{RANGE}&timeframe=4h&format=parquet"
    ));
    assert_eq!(file_rows(&read_back("parquet", &url).await), blocks);
    assert_eq!(
        hour(236).start().timestamp_millis(),
        blocks.last().unwrap().0 + 4 * 3_600_000
    );
    api.stop().await;
}

/// An audit's finding: an exchange's hours are stored only once over, so a job that ran at
/// 02:xx left the newest block with its first two hours alone; once 04:00 had passed it was
/// exported as final (and answered `provisional: false`) with a close that the next job's
/// hours would change. A block that ends after the coin's last hour accounted for waits.
#[tokio::test]
async fn the_newest_four_hour_block_waits_for_its_later_hours_before_it_is_final() {
    let (h, api) = TestApi::with_harness().await;
    let price = |n: i64| format!("{}.5", 40_000 + n);
    let hours = |range: std::ops::Range<i64>| -> Vec<HourlyCandle> {
        range
            .map(|n| candle(n, PriceSource::Coinbase, &price(n)))
            .collect()
    };
    store(h.pool(), &hours(0..10)).await;
    let exported = async |h: &Harness| file_rows(&exported_blocks(h, "csv").await);

    let (blocks, _) = api_hours(&api, "4h").await;
    assert_eq!(blocks.len(), 2, "0..4 and 4..8; 8..12 holds 8 and 9 alone");
    assert_eq!(exported(&h).await, blocks);

    store(h.pool(), &hours(10..12)).await;
    let (blocks, _) = api_hours(&api, "4h").await;
    assert_eq!(blocks.len(), 3, "8..12 is whole");
    let (hourly, _) = api_hours(&api, "1h").await;
    assert_eq!(
        blocks[2].1[3], hourly[11].1[3],
        "its close is its last hour's"
    );
    assert_eq!(exported(&h).await, blocks);
    api.stop().await;
}
