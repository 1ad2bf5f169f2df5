//! Every setting of INTERFACE.md, in one place: each is an environment variable and a
//! flag of the same name (`DATABASE_URL` and `--database-url`), flag first. Each is
//! parsed here, once, into the type the code uses.

mod database;

pub use database::{DatabaseUrl, DatabaseUrlParser, InvalidDatabaseUrl};

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::domain::PlanReach;
use crate::domain::{Clock, DEFAULT_SCHEDULE, SyncSchedule};

/// What the public and Demo plans serve: the past 365 days.
pub const PUBLIC_PLAN_DAYS: u32 = 365;

/// Whether `base_url` is CoinGecko's public root, `https://api.coingecko.com/...`, where
/// keyless and Demo keys are served.
fn is_public_root(base_url: &str) -> bool {
    url::Url::parse(base_url.trim())
        .is_ok_and(|url| url.scheme() == "https" && url.host_str() == Some("api.coingecko.com"))
}

/// `DATABASE_URL` when it is not set. Nothing answering there (and no `DATABASE_URL`) means
/// a private server instead: see [`crate::private_postgres`].
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/price_history";

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL holding the data, the job records and the job queue. Not set, and
    /// nothing answering at the default: a private server, started from the machine's
    /// PostgreSQL binaries, its data under ~/.local/share/price-history.
    #[arg(
        long,
        env = "DATABASE_URL",
        // `--help` would print the value, password and all.
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL,
        value_parser = DatabaseUrlParser,
        global = true
    )]
    pub database_url: DatabaseUrl,

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

    /// The key's monthly credits, counted over every process per UTC calendar month:
    /// 10000 for a Demo key (a key on https://api.coingecko.com/...), else none; 0 means no
    /// monthly limit. Read as text so that a bad value is refused with a sentence (exit 1).
    #[arg(
        long,
        env = "COINGECKO_CALLS_PER_MONTH",
        allow_hyphen_values = true,
        global = true
    )]
    pub coingecko_calls_per_month: Option<String>,

    /// How far back the plan serves, in days: 365 for the public and Demo plans (the
    /// default on https://api.coingecko.com/...), none on other roots; 0 means no limit known.
    #[arg(long, env = "COINGECKO_HISTORY_DAYS", global = true)]
    pub coingecko_history_days: Option<u32>,

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

    /// When set, every write (POST, PUT) needs `Authorization: Bearer <token>`. An empty
    /// value means not set (so compose's `${API_TOKEN:-}` leaves the writes open, as no
    /// variable would).
    #[arg(long, env = "API_TOKEN", hide_env_values = true, global = true)]
    pub api_token: Option<SecretString>,

    /// Event streams (`GET /api/v1/job-events`) served at once; one more gets 503 with
    /// Retry-After. The API serves this many connections on top of the 1024 it keeps for
    /// every other request.
    #[arg(long, env = "EVENT_STREAMS_MAX", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub event_streams_max: u32,

    /// Finished jobs (with their queue rows), schedule ticks and track-top imports older
    /// than this many days are deleted; 0 keeps them forever. Read as text so that a bad
    /// value is refused with a sentence (exit 1).
    #[arg(
        long,
        env = "JOB_RETENTION_DAYS",
        default_value = "30",
        allow_hyphen_values = true,
        global = true
    )]
    pub job_retention_days: String,

    /// `text` or `json`; RUST_LOG filters as usual.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Where a coin's days older than the CoinGecko plan's reach come from: `coinbase`
    /// (Coinbase Exchange's public daily candles, no key) or `off`.
    #[arg(
        long,
        env = "FALLBACK_SOURCE",
        value_enum,
        default_value = "coinbase",
        global = true
    )]
    pub fallback_source: FallbackSource,

    /// The second source's root.
    #[arg(
        long,
        env = "COINBASE_BASE_URL",
        default_value = "https://api.exchange.coinbase.com",
        global = true
    )]
    pub coinbase_base_url: String,

    /// The second source's own call budget per minute, retries included, shared by every
    /// process on the database like CoinGecko's.
    #[arg(
        long,
        env = "COINBASE_CALLS_PER_MINUTE",
        default_value = "120",
        global = true
    )]
    pub coinbase_calls_per_minute: NonZeroU32,

    /// The second source's HTTP-level retries of one call.
    #[arg(long, env = "COINBASE_MAX_RETRIES", default_value = "3", global = true)]
    pub coinbase_max_retries: u32,

    /// The second source's first back-off delay in milliseconds; it doubles per retry,
    /// with jitter.
    #[arg(
        long,
        env = "COINBASE_RETRY_BASE_DELAY_MS",
        default_value = "2000",
        global = true
    )]
    pub coinbase_retry_base_delay_ms: u64,

    /// One call's time limit in seconds, for the second source.
    #[arg(long, env = "COINBASE_TIMEOUT_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub coinbase_timeout_secs: u64,

    /// A coin's second source is used only while the median difference of the two
    /// sources' closes, on days both cover, is at most this many percent.
    #[arg(
        long,
        env = "FALLBACK_MAX_DEVIATION_PERCENT",
        default_value = "5",
        value_parser = parse_percent,
        global = true
    )]
    pub fallback_max_deviation_percent: Decimal,

    /// When tracked coins are brought up to date: a cron expression with a seconds field,
    /// in UTC (seconds minutes hours day-of-month month day-of-week [year]); `off` disables.
    #[arg(
        long,
        env = "SYNC_SCHEDULE",
        default_value = DEFAULT_SCHEDULE,
        value_parser = SyncSchedule::parse_arg,
        global = true
    )]
    pub sync_schedule: SyncSchedule,

    /// For tests only: shifts this process's scheduling clock by this many milliseconds
    /// (negative: behind), to run processes whose clocks disagree. Read only by debug
    /// builds, which `cargo test` starts; a release build has no such setting (always 0).
    /// Gated on `debug_assertions` rather than a cargo feature so that `cargo build` and
    /// `cargo test` keep compiling this crate once, with one feature set.
    #[cfg_attr(
        debug_assertions,
        arg(
            long,
            env = "PH_SYNC_CLOCK_OFFSET_MS",
            default_value = "0",
            allow_hyphen_values = true,
            hide = true,
            global = true
        )
    )]
    #[cfg_attr(not(debug_assertions), arg(skip))]
    pub sync_clock_offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `FALLBACK_SOURCE`: the second source, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FallbackSource {
    /// Coinbase Exchange's public daily candles.
    Coinbase,
    /// No second source: out-of-plan days stay empty, as before it existed.
    Off,
}

/// What the Demo plan gives a month: the default of `COINGECKO_CALLS_PER_MONTH` for a key
/// on the public root.
pub const DEMO_CALLS_PER_MONTH: NonZeroU32 = NonZeroU32::new(10_000).expect("not zero");

/// A setting that is a whole number, 0 or more: a sentence naming it and what it takes
/// otherwise.
fn whole_number(name: &str, text: &str, takes: &str) -> anyhow::Result<u32> {
    text.trim().parse::<u32>().map_err(|_| {
        anyhow::anyhow!(
            "{name} is {text:?}, which is not a whole number of 0 or more: set it to {takes}, or unset it for the default"
        )
    })
}

/// A percentage: a finite decimal, not negative (`5`, `2.5`).
fn parse_percent(value: &str) -> Result<Decimal, String> {
    let percent: Decimal = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number of percent such as 5 or 2.5"))?;
    if percent.is_sign_negative() && !percent.is_zero() {
        return Err(format!(
            "{value:?} is negative; a deviation limit is 0 or more"
        ));
    }
    Ok(percent)
}

impl Settings {
    /// The plan's reach as configured: `COINGECKO_HISTORY_DAYS`, else 365 days on the
    /// public root (which serves the public and Demo plans), else no limit known.
    pub fn plan_reach(&self) -> PlanReach {
        match self.coingecko_history_days {
            Some(days) => PlanReach::days(days),
            None if is_public_root(&self.coingecko_base_url) => PlanReach::days(PUBLIC_PLAN_DAYS),
            None => PlanReach::UNLIMITED,
        }
    }

    /// `COINGECKO_CALLS_PER_MONTH`, checked: the number given (`0`: none), else 10000 for a
    /// Demo key (a key on the public root), else none.
    pub fn calls_per_month(&self) -> anyhow::Result<Option<NonZeroU32>> {
        use secrecy::ExposeSecret;
        match &self.coingecko_calls_per_month {
            Some(text) => Ok(NonZeroU32::new(whole_number(
                "COINGECKO_CALLS_PER_MONTH",
                text,
                "the key's monthly credits, such as 10000 (0 for no monthly limit)",
            )?)),
            None => {
                let keyed = self
                    .coingecko_api_key
                    .as_ref()
                    .is_some_and(|key| !key.expose_secret().trim().is_empty());
                Ok((keyed && is_public_root(&self.coingecko_base_url))
                    .then_some(DEMO_CALLS_PER_MONTH))
            }
        }
    }

    /// `JOB_RETENTION_DAYS`, checked: `None` keeps finished work forever (`0`).
    /// The settings read as text, checked before anything else starts (a private
    /// PostgreSQL, the wait for the database, the migrations), so that a bad value stops
    /// the process at once with its sentence; `API_TOKEN` only where an API is served.
    pub fn check(&self, serves_api: bool) -> anyhow::Result<()> {
        self.calls_per_month()?;
        self.job_retention_days()?;
        if serves_api {
            self.api_token()?;
        }
        Ok(())
    }

    pub fn job_retention_days(&self) -> anyhow::Result<Option<u32>> {
        let days = whole_number(
            "JOB_RETENTION_DAYS",
            &self.job_retention_days,
            "days to keep finished jobs, such as 30 (0 keeps them forever)",
        )?;
        Ok((days > 0).then_some(days))
    }

    pub fn database_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.database_connect_timeout_secs)
    }

    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs)
    }

    /// `API_TOKEN`, checked. Empty means "not set", as unset does: that is what compose's
    /// `${API_TOKEN:-}` passes when the user set none. A token of only blanks, or one with
    /// spaces around it, is a mistake no default produces: the first would guard the
    /// writes with a guessable token, the second would lock every write out (the presented
    /// token is read trimmed). The error never quotes the token.
    pub fn api_token(&self) -> anyhow::Result<Option<SecretString>> {
        use secrecy::ExposeSecret;
        let Some(token) = self
            .api_token
            .clone()
            .filter(|token| !token.expose_secret().is_empty())
        else {
            return Ok(None);
        };
        let text = token.expose_secret();
        if text.trim().is_empty() {
            anyhow::bail!(
                "API_TOKEN is set but blank: unset it (or set it empty) to leave the writes open, or give it a value"
            );
        }
        if text.trim() != text {
            anyhow::bail!(
                "API_TOKEN begins or ends with whitespace, which no client can send in a bearer token: remove it"
            );
        }
        // A header's value is read as visible ASCII: any other character would make every
        // write a 401 forever.
        if !text.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
            anyhow::bail!(
                "API_TOKEN holds a character that is not printable ASCII (a letter with an accent, a tab, an emoji...), which no client can send in a bearer token: use ASCII letters, digits and punctuation"
            );
        }
        Ok(Some(token))
    }

    /// The clock the schedule reads.
    pub fn sync_clock(&self) -> Clock {
        Clock::offset_by_ms(self.sync_clock_offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["price-history"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).settings
    }

    #[test]
    fn the_sync_schedule_defaults_to_00_40_utc_and_a_malformed_one_is_refused_as_given() {
        assert_eq!(settings(&[]).sync_schedule.to_string(), "0 40 0 * * *");
        assert!(settings(&["--sync-schedule", "off"]).sync_schedule.is_off());
        let refused = Cli::try_parse_from(["price-history", "--sync-schedule", "0 40 * * *"])
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("\"0 40 * * *\""), "{refused}");
        assert!(refused.contains("6 or 7 are needed"), "{refused}");
    }

    #[test]
    fn the_deviation_limit_defaults_to_5_percent_and_takes_decimals() {
        assert_eq!(
            settings(&[]).fallback_max_deviation_percent,
            Decimal::from(5)
        );
        let set = settings(&["--fallback-max-deviation-percent", "2.5"]);
        assert_eq!(set.fallback_max_deviation_percent.to_string(), "2.5");
    }

    #[test]
    fn coinbase_retries_and_time_limits_that_are_no_numbers_are_refused() {
        for bad in [
            ["--coinbase-timeout-secs", "0"],
            ["--coinbase-max-retries", "-1"],
            ["--coinbase-retry-base-delay-ms", "soon"],
        ] {
            let refused = Cli::try_parse_from(["price-history", bad[0], bad[1]]);
            assert!(refused.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_negative_or_wordy_deviation_limit_is_refused() {
        for bad in ["-1", "five", ""] {
            let refused =
                Cli::try_parse_from(["price-history", "--fallback-max-deviation-percent", bad]);
            assert!(refused.is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["price-history", "--fallback-source", "binance"]).is_err());
        assert!(
            Cli::try_parse_from(["price-history", "--coinbase-calls-per-minute", "0"]).is_err()
        );
    }

    #[test]
    fn a_demo_key_on_the_public_root_has_10000_calls_a_month_and_other_plans_none_unless_set() {
        let public = "https://api.coingecko.com/api/v3";
        let demo = settings(&["--coingecko-base-url", public, "--coingecko-api-key", "k"]);
        assert_eq!(demo.calls_per_month().unwrap(), NonZeroU32::new(10_000));
        let keyless = settings(&["--coingecko-base-url", public]);
        assert_eq!(keyless.calls_per_month().unwrap(), None);
        let pro = settings(&[
            "--coingecko-base-url",
            "https://pro-api.coingecko.com/api/v3",
            "--coingecko-api-key",
            "k",
        ]);
        assert_eq!(pro.calls_per_month().unwrap(), None);
        let set = settings(&["--coingecko-calls-per-month", "500000"]);
        assert_eq!(set.calls_per_month().unwrap(), NonZeroU32::new(500_000));
        let off = settings(&[
            "--coingecko-api-key",
            "k",
            "--coingecko-calls-per-month",
            "0",
        ]);
        assert_eq!(off.calls_per_month().unwrap(), None);
    }

    #[test]
    fn negative_or_wordy_monthly_credits_and_retention_are_refused_with_a_sentence() {
        for bad in ["-1", "lots", "1.5", ""] {
            let refused = settings(&["--coingecko-calls-per-month", bad])
                .calls_per_month()
                .unwrap_err()
                .to_string();
            assert!(refused.contains("COINGECKO_CALLS_PER_MONTH"), "{refused}");
            let refused = settings(&["--job-retention-days", bad])
                .job_retention_days()
                .unwrap_err()
                .to_string();
            assert!(refused.contains("JOB_RETENTION_DAYS"), "{refused}");
        }
        assert_eq!(settings(&[]).job_retention_days().unwrap(), Some(30));
        let forever = settings(&["--job-retention-days", "0"]);
        assert_eq!(forever.job_retention_days().unwrap(), None);
    }

    #[test]
    fn the_public_root_defaults_to_365_days_and_other_roots_to_no_limit() {
        let public = settings(&["--coingecko-base-url", "https://api.coingecko.com/api/v3"]);
        assert_eq!(public.plan_reach(), PlanReach::days(365));
        let pro = settings(&[
            "--coingecko-base-url",
            "https://pro-api.coingecko.com/api/v3",
        ]);
        assert_eq!(pro.plan_reach(), PlanReach::UNLIMITED);
        let zero = settings(&[
            "--coingecko-base-url",
            "https://api.coingecko.com/api/v3",
            "--coingecko-history-days",
            "0",
        ]);
        assert_eq!(zero.plan_reach(), PlanReach::UNLIMITED);
        let set = settings(&[
            "--coingecko-base-url",
            "http://127.0.0.1:1",
            "--coingecko-history-days",
            "30",
        ]);
        assert_eq!(set.plan_reach(), PlanReach::days(30));
    }
}
