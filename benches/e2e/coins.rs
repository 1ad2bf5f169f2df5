//! Rows 10 and 11 (the coin registry and the plan's reach): the latency of checking a
//! new coin (one CoinGecko call), and a four-year request on a plan that serves 365 days,
//! with the reach configured and learned from CoinGecko's 10012 answer, and with the
//! second source (a fake Coinbase Exchange) filling the older days.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use fake_upstream::coinbase::FakeCoinbase;
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions};
use price_history::store::{self, ingestion_jobs::JobRecord};

use super::{
    Bench, JsonBody, Report, Sizes, days_to_yesterday, ms, spawn, terminate, with_database,
};

impl Bench {
    pub(crate) async fn coins(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        self.coin_check(sizes, report).await?;
        for learned in [false, true] {
            self.plan_reach(sizes, report, learned).await?;
        }
        self.second_source(sizes, report).await?;
        Ok(())
    }

    /// Row 10: `PUT /api/v1/coins/{symbol}` for a new id, on a warm `serve`.
    async fn coin_check(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let url = with_database(&self.admin_url, &format!("{}_coins", self.database))?;
        let fake = FakeCoinGecko::start().await;
        let (mut serve, base) = serve(&url, &fake.base_url(), sizes, &[]).await?;
        let mut latencies = Vec::new();
        for (symbol, id) in [("ETH", "ethereum"), ("SOL", "solana"), ("DOGE", "dogecoin")] {
            let calls_before = fake.call_count();
            let began = Instant::now();
            let response = self
                .http
                .put(format!("{base}/api/v1/coins/{symbol}"))
                .json_body(&serde_json::json!({ "coingecko_id": id }))
                .send()
                .await?;
            let status = response.status();
            response.bytes().await?;
            latencies.push(began.elapsed());
            if status != 201 || fake.call_count() - calls_before != 1 {
                bail!(
                    "checking {id} answered {status} after {} calls",
                    fake.call_count() - calls_before
                );
            }
        }
        terminate(&mut serve).await?;
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        report.row(
            "10. Check of a new coin (PUT /api/v1/coins/{symbol}, one CoinGecko call over its whole history)",
            format!(
                "median {:.1} ms, max {:.1} ms over 3 coins; 1 call each",
                ms(median),
                ms(*latencies.last().unwrap())
            ),
            "1 call",
            Some(true),
        );
        Ok(())
    }

    /// Row 11: 1461 days asked on a plan that serves the past 365 days.
    async fn plan_reach(&self, sizes: &Sizes, report: &mut Report, learned: bool) -> Result<()> {
        let how = if learned { "learned" } else { "configured" };
        let url = with_database(&self.admin_url, &format!("{}_plan_{how}", self.database))?;
        let fake = FakeCoinGecko::start_with(FakeOptions {
            history_limit_days: Some(365),
            ..FakeOptions::default()
        })
        .await?;
        let env: &[(&str, &str)] = if learned {
            &[]
        } else {
            &[("COINGECKO_HISTORY_DAYS", "365")]
        };
        let (job, wall) = self.four_years(&url, &fake, sizes, env).await?;

        let calls = fake.calls();
        let refused = calls.iter().filter(|c| c.status == 401).count();
        let floor = calls.len().saturating_sub(1) as f64 * 60.0 / f64::from(sizes.calls_per_minute);
        let expected_calls = if learned { 6 } else { 5 };
        report.row(
            format!(
                "11. 1461 days on a 365-day plan, reach {how}, at {} calls/min: calls, wall time",
                sizes.calls_per_minute
            ),
            format!(
                "{} calls ({refused} refused with 10012); {} days stored, {} out of plan, {}; {:.3} s (floor {floor:.3} s)",
                calls.len(),
                job.records_fetched,
                job.out_of_plan_days,
                job.status,
                wall.as_secs_f64()
            ),
            if learned {
                "6 calls, 1 refused"
            } else {
                "5 calls, none refused"
            },
            Some(calls.len() == expected_calls && refused == usize::from(learned)),
        );
        Ok(())
    }
}

impl Bench {
    /// Row 11 with the second source: the 1461 days on a 365-day plan, the 1097 older
    /// days from a fake Coinbase Exchange (at its public limit of 10 requests a second)
    /// under the default budget of 120 calls a minute.
    pub(crate) async fn second_source(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        const COINBASE_CALLS_PER_MINUTE: u32 = 120;
        let url = with_database(&self.admin_url, &format!("{}_second", self.database))?;
        let fake = FakeCoinGecko::start_with(FakeOptions {
            history_limit_days: Some(365),
            ..FakeOptions::default()
        })
        .await?;
        let coinbase = FakeCoinbase::start().await;
        let coinbase_url = coinbase.base_url();
        let per_minute = COINBASE_CALLS_PER_MINUTE.to_string();
        let env: &[(&str, &str)] = &[
            ("COINGECKO_HISTORY_DAYS", "365"),
            ("FALLBACK_SOURCE", "coinbase"),
            ("COINBASE_BASE_URL", &coinbase_url),
            ("COINBASE_CALLS_PER_MINUTE", &per_minute),
        ];
        let (job, wall) = self.four_years(&url, &fake, sizes, env).await?;

        let coingecko_calls = fake.call_count();
        let coinbase_calls = coinbase.call_count();
        let refused = coinbase.calls().iter().filter(|c| c.status != 200).count();
        // Each source spaces its own calls; Coinbase's begin after CoinGecko's last.
        let floor = coingecko_calls.saturating_sub(1) as f64 * 60.0
            / f64::from(sizes.calls_per_minute)
            + coinbase_calls.saturating_sub(1) as f64 * 60.0 / f64::from(COINBASE_CALLS_PER_MINUTE);
        let out_of_plan = 1097usize;
        let windows = out_of_plan.div_ceil(300);
        report.row(
            format!(
                "11. 1461 days on a 365-day plan with the second source, at {} and {COINBASE_CALLS_PER_MINUTE} calls/min: calls, wall time",
                sizes.calls_per_minute
            ),
            format!(
                "{coingecko_calls} CoinGecko + {coinbase_calls} Coinbase calls (1 check + {windows} windows of <= 300 days; {refused} refused); {} days stored, {} out of plan, {}; {:.3} s (floor {floor:.3} s, ratio {:.3})",
                job.records_fetched,
                job.out_of_plan_days,
                job.status,
                wall.as_secs_f64(),
                wall.as_secs_f64() / floor.max(f64::EPSILON)
            ),
            format!("5 + {} calls, 1461 days, completed", 1 + windows),
            Some(
                coingecko_calls == 5
                    && coinbase_calls == 1 + windows
                    && job.records_fetched == 1461
                    && job.out_of_plan_days == 0,
            ),
        );
        Ok(())
    }

    /// Submits the 1461 days up to yesterday to a fresh `serve` with `env` and waits for
    /// the job's end: the job and the wall time from submission to its end.
    async fn four_years(
        &self,
        url: &str,
        fake: &FakeCoinGecko,
        sizes: &Sizes,
        env: &[(&str, &str)],
    ) -> Result<(JobRecord, Duration)> {
        let (mut serve, base) = serve(url, &fake.base_url(), sizes, env).await?;
        let pool = store::connect(&url.parse()?, 2).await?;
        let (start, end) = days_to_yesterday(1461);
        let (job, wall) = self
            .submit_and_finish(&base, &pool, start, end, Duration::from_secs(300))
            .await?;
        terminate(&mut serve).await?;
        pool.close().await;
        Ok((job, wall))
    }
}

/// A `serve` on a free port, ready; returns it and its base URL.
pub(super) async fn serve(
    url: &str,
    coingecko: &str,
    sizes: &Sizes,
    env: &[(&str, &str)],
) -> Result<(tokio::process::Child, String)> {
    let port = super::free_port();
    let bind = format!("127.0.0.1:{port}");
    let calls = sizes.calls_per_minute.to_string();
    let mut all: Vec<(&str, &str)> =
        vec![("BIND_ADDR", &bind), ("COINGECKO_CALLS_PER_MINUTE", &calls)];
    all.extend_from_slice(env);
    let child = spawn(url, coingecko, &["serve"], &all)?;
    let base = format!("http://{bind}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            return Ok((child, base));
        }
        if Instant::now() > deadline {
            bail!("serve did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
