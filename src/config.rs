//! Every setting of INTERFACE.md, in one place: each is an environment variable and a
//! flag of the same name (`DATABASE_URL` and `--database-url`), flag first.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::SecretString;

use crate::coingecko::CoinGeckoSettings;

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL holding the data, the job records and the job queue.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@localhost:5432/price_history",
        global = true
    )]
    pub database_url: String,

    /// How long a process waits at start for PostgreSQL to accept a connection (retrying
    /// with back-off) before it exits; 0 tries once.
    #[arg(
        long,
        env = "DATABASE_CONNECT_TIMEOUT_SECS",
        default_value = "60",
        global = true
    )]
    pub database_connect_timeout_secs: u64,

    /// Where the REST API listens.
    #[arg(
        long,
        env = "BIND_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind_addr: SocketAddr,

    /// CoinGecko API root; a Pro key uses https://pro-api.coingecko.com/api/v3.
    #[arg(
        long,
        env = "COINGECKO_BASE_URL",
        default_value = "https://api.coingecko.com/api/v3",
        global = true
    )]
    pub coingecko_base_url: String,

    /// CoinGecko API key, sent as x-cg-demo-api-key (or x-cg-pro-api-key on the Pro root).
    /// An empty value means no key.
    #[arg(long, env = "COINGECKO_API_KEY", hide_env_values = true, global = true)]
    pub coingecko_api_key: Option<SecretString>,

    /// The call budget per minute, retries included; calls are spaced evenly.
    #[arg(
        long,
        env = "COINGECKO_CALLS_PER_MINUTE",
        default_value = "25",
        global = true
    )]
    pub coingecko_calls_per_minute: NonZeroU32,

    /// At most this many days per call.
    #[arg(long, env = "COINGECKO_CHUNK_DAYS", default_value = "90", value_parser = clap::value_parser!(u32).range(1..=365), global = true)]
    pub coingecko_chunk_days: u32,

    /// HTTP-level retries of one call.
    #[arg(
        long,
        env = "COINGECKO_MAX_RETRIES",
        default_value = "3",
        global = true
    )]
    pub coingecko_max_retries: u32,

    /// First back-off delay in milliseconds; it doubles per retry, with jitter.
    #[arg(
        long,
        env = "COINGECKO_RETRY_BASE_DELAY_MS",
        default_value = "2000",
        global = true
    )]
    pub coingecko_retry_base_delay_ms: u64,

    /// One call's time limit in seconds.
    #[arg(long, env = "COINGECKO_TIMEOUT_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub coingecko_timeout_secs: u64,

    /// Queue-level attempts of a job that fails transiently.
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub job_max_attempts: u32,

    /// A job whose worker has been silent this long is taken over by another worker.
    #[arg(long, env = "JOB_LEASE_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(2..=3600), global = true)]
    pub job_lease_secs: u64,

    /// When set, every POST needs `Authorization: Bearer <token>`. An empty value means
    /// not set (so compose's `${API_TOKEN:-}` leaves the POSTs open, as no variable would).
    #[arg(long, env = "API_TOKEN", hide_env_values = true, global = true)]
    pub api_token: Option<SecretString>,

    /// `text` or `json`; RUST_LOG filters as usual.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    pub fn coingecko(&self) -> CoinGeckoSettings {
        CoinGeckoSettings {
            base_url: self.coingecko_base_url.clone(),
            api_key: self.coingecko_api_key.clone().filter(|key| {
                use secrecy::ExposeSecret;
                !key.expose_secret().is_empty()
            }),
            calls_per_minute: self.coingecko_calls_per_minute,
            max_retries: self.coingecko_max_retries,
            retry_base_delay: Duration::from_millis(self.coingecko_retry_base_delay_ms),
            timeout: Duration::from_secs(self.coingecko_timeout_secs),
        }
    }

    pub fn database_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.database_connect_timeout_secs)
    }

    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs)
    }
}
