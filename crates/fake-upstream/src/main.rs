//! `fake-upstream`: serves one fake upstream until ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fake_upstream::coinbase::{FakeCoinbase, FakeCoinbaseOptions};
use fake_upstream::coingecko::{FakeCoinGecko, FakeOptions};

#[derive(Parser)]
#[command(
    name = "fake-upstream",
    about = "Serves a fake upstream price source on loopback"
)]
struct Cli {
    #[command(subcommand)]
    upstream: Upstream,
}

#[derive(Subcommand)]
enum Upstream {
    /// A fake CoinGecko: `COINGECKO_BASE_URL=http://<bind>` points price-history at it.
    Coingecko {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: SocketAddr,
        /// Added before every response, in milliseconds.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// A fake Coinbase Exchange: `COINBASE_BASE_URL=http://<bind>` points price-history at it.
    Coinbase {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8091")]
        bind: SocketAddr,
        /// Answer 429 beyond this many requests in any second, as Coinbase's public limit
        /// does (10); 0 never rate-limits.
        #[arg(long, default_value_t = 10)]
        requests_per_second: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().upstream {
        Upstream::Coingecko { bind, delay_ms } => {
            let fake = FakeCoinGecko::start_with(FakeOptions {
                bind,
                delay: Duration::from_millis(delay_ms),
                ..FakeOptions::default()
            })
            .await?;
            eprintln!("fake CoinGecko listening at {}", fake.base_url());
            stopped().await?;
            fake.shutdown().await;
        }
        Upstream::Coinbase {
            bind,
            requests_per_second,
        } => {
            let fake = FakeCoinbase::start_with(FakeCoinbaseOptions {
                bind,
                requests_per_second_limit: NonZeroU32::new(requests_per_second),
            })
            .await?;
            eprintln!("fake Coinbase Exchange listening at {}", fake.base_url());
            stopped().await?;
            fake.shutdown().await;
        }
    }
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM (how scripts and container engines stop a process).
async fn stopped() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("while listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("while waiting for ctrl-c"),
        _ = terminate.recv() => Ok(()),
    }
}
