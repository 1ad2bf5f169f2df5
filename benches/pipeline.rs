//! In-process parts of a window's work, measured by criterion: fetching and parsing one
//! 90-day window of hourly points from a loopback CoinGecko, and turning its points into
//! daily candles. Run with `cargo bench --bench pipeline`.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{Days, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use fake_upstream::coingecko::FakeCoinGecko;
use price_history::coingecko::{CoinGeckoClient, CoinGeckoSettings};
use price_history::ingest::{Window, daily_candles};
use price_history::upstream::CallBudget;

fn window_of_90_days() -> Window {
    let end = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(2))
        .unwrap();
    Window {
        start: end.checked_sub_days(Days::new(89)).unwrap(),
        end,
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let fake = runtime.block_on(FakeCoinGecko::start());
    let client = CoinGeckoClient::new(
        CoinGeckoSettings {
            base_url: fake.base_url(),
            api_key: None,
            // High enough that the budget never waits: this measures the work, not the limit.
            calls_per_minute: NonZeroU32::new(u32::MAX / 2).unwrap(),
            max_retries: 0,
            retry_base_delay: Duration::from_millis(1),
            timeout: Duration::from_secs(10),
        },
        CallBudget::ProcessLocal,
    )
    .expect("a client");
    let window = window_of_90_days();

    c.bench_function(
        "fetch and parse a 90-day window (about 2,160 hourly points)",
        |b| {
            b.to_async(&runtime).iter(|| async {
                client
                    .market_chart_range("bitcoin", window.from(), window.to())
                    .await
                    .expect("a chart")
            });
        },
    );

    let chart = runtime
        .block_on(client.market_chart_range("bitcoin", window.from(), window.to()))
        .expect("a chart");
    let now = Utc::now();
    c.bench_function("aggregate a 90-day window into daily candles", |b| {
        b.iter(|| daily_candles(std::hint::black_box(&chart), &window, now));
    });
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(pipeline);
