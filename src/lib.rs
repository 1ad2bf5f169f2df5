//! price-history builds and keeps a complete, trustworthy history of daily coin prices
//! (any coin registered) from CoinGecko's API in PostgreSQL.
//!
//! A user asks for a range of up to four years. A job on a durable queue in PostgreSQL
//! fetches the days that are missing, in windows that fit CoinGecko's call budget, stores
//! one open/high/low/close/volume row per UTC day, fills what is still missing, and
//! records exactly what it has. Any number of processes can share the database.
//!
//! # Layout
//!
//! - [`config`]: every setting, as environment variable and flag, parsed once:
//!   `DATABASE_URL` into a [`config::DatabaseUrl`] (`config/database.rs`).
//! - [`domain`]: types that cannot be invalid (`DateRange`, `Symbol`, `Coin`, `PlanReach`,
//!   `DailyCandle`, `JobStatus`, `Timeframe`; for hours `Hour`, `HourRange`, `HourlyCandle`,
//!   `FourHourCandle`, and the hour-by-hour check, `DisputeRule`).
//! - [`coingecko`]: CoinGecko's URL and key, its wire format and its error meanings.
//! - [`coinbase`]: the same for the second source (Coinbase Exchange's candles, of a
//!   granularity, at most 300 a call), for the days older than the CoinGecko plan's reach.
//! - [`upstream`]: what every source shares: one caller per source (the HTTP client, the
//!   retry loop, the failure policy, the outcome counters), the call budget per source
//!   (the one place that decides whether a call may go), redaction, the body cap,
//!   `Retry-After`. The sources import from it, never the other way.
//! - [`store`]: all SQL, a module per table (hours: `hourly_prices`,
//!   `hours_without_trades`, `hourly_coverage`, `hourly_figures`, `hourly_coins`,
//!   `job_hours`, `job_check_points`); `store::patience`, the one way a running process waits out the database.
//! - [`private_postgres`]: the PostgreSQL a first run starts from the machine's binaries
//!   when `DATABASE_URL` is not set and nothing answers at its default; a file each for
//!   choosing the database, the server held, its layout, its binaries, its locks and the
//!   programs run.
//! - [`ingest`]: the job (`ingest::job`, a file per step and concern): plan windows from
//!   gaps, fetch, fill, then the days older than the plan serves from the second source,
//!   then an hourly coin's missing hours from its exchange product (or built from the
//!   CoinGecko windows' hourly points); upsert, checkpoint behind the queue's fence
//!   ([`ingest::Fence`]). `ingest::source` is the
//!   seat of a price source (what it is asked, what it answers), with CoinGecko and
//!   Coinbase Exchange as its implementations; `ingest::fallback` the second source's
//!   windows and its mapping check.
//! - [`queue`]: everything that knows apalis: its schema, channel and status strings
//!   (`queue::contract`, pinned and tested), the storage (patient with database outages),
//!   the lease, submission and the worker.
//! - [`registry`]: the coin registry's rules, each written once for the API, the CLI and
//!   track-top (a new CoinGecko id is checked with one call, a Coinbase product with one
//!   more, or guessed as `{SYMBOL}-USD`; `track_since` never in the future; turning
//!   tracking on queues the coin's missing days at once; a coin keeps hourly candles only
//!   when asked, and turning them on queues its missing hours at once). `registry::tracking`:
//!   what bringing a tracked coin up to date means, for the registry and the schedule;
//!   `registry::hours`: the same for a coin's hours.
//! - [`track_top`]: tracking the N largest coins by market cap in one import (CoinGecko's
//!   `/coins/markets`, then the registry's rules per coin), recorded like a job, stopped
//!   between two coins by the shutdown signal; built by `startup`.
//! - [`export`]: candles to the files backtesters and data tools read (freqtrade's
//!   `BTC_USD-1d.feather`, `BTC_USD-1h.feather`, Parquet, JSON, JSON.gz, CSV) in every
//!   timeframe (days, hours, `4h` blocks made from the hours), streamed from the store one
//!   coin at a time and renamed into place whole; `price-history export` writes them into
//!   a directory, the API streams the Parquet and Feather ones.
//! - [`schedule`]: `SYNC_SCHEDULE`: which process acts on a tick, what a tick queues (the
//!   missing days of tracked coins, the hours of hourly coins up to the last complete
//!   hour; only what the month's credits pay for, `schedule::credits`), catch-up.
//! - [`credits`]: the month's CoinGecko credits said before they are spent: what is used and
//!   left over every process, what a job or the tracked coins cost, whether a job is
//!   affordable. The credits themselves are taken per attempt by `upstream::budget`
//!   (`store::monthly_credits`); `queue::retention` deletes old finished work.
//! - [`api`]: the REST API (poem-openapi), Swagger UI and the OpenAPI document; reads in
//!   three timeframes (`1d`, `4h`, `1h`).
//! - [`startup`]: settings in, a running service out: the one place that migrates the
//!   database (the queue's schema, then ours) and wires the pool,
//!   the price sources' clients, the ingestor, the registry, the API's state, the worker and
//!   the scheduler. The commands, the tests and the benchmarks all start the service here.
//! - [`shutdown`]: the one stop signal (SIGTERM, SIGINT), its handlers installed first
//!   thing in `main`, handed to every long-lived task (never an `Option`); `Tasks` for
//!   those a request starts (the API's import), which the server waits for.
//! - [`cli`]: the subcommands and their dispatch, a module per command that does more
//!   (`backfill`, `coins`, `track_top`, `export`); `main.rs` only calls [`cli::run`].
//!
//! Test-only code lives outside this crate: `crates/fake-upstream` (package
//! `price-history-fake-upstream`, a dev-dependency) holds the loopback fake CoinGecko and fake Coinbase the
//! tests, benchmarks and checks talk to, so the release binary carries none of it.
//!
//! Data flows one way: cli → startup → (api, schedule) → track_top → registry → queue →
//! ingest → (coingecko, coinbase, store), and (coingecko, coinbase) → upstream → store (the
//! budget's row); every layer may read `config`, `domain` and `shutdown`.

pub mod api;
pub mod cli;
pub mod coinbase;
pub mod coingecko;
pub mod config;
pub mod credits;
pub mod domain;
pub mod export;
pub mod ingest;
pub mod private_postgres;
pub mod queue;
pub mod registry;
pub mod schedule;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod track_top;
pub mod upstream;
