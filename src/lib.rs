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
//! - [`config`]: every setting, as environment variable and flag.
//! - [`domain`]: types that cannot be invalid (`DateRange`, `Symbol`, `Coin`, `PlanReach`, `DailyCandle`, `JobStatus`).
//! - [`coingecko`]: the HTTP client (call budget, retries, error bodies).
//! - [`store`]: all SQL, a module per table.
//! - [`private_postgres`]: the PostgreSQL a first run starts from the machine's binaries
//!   when `DATABASE_URL` is not set and nothing answers at its default.
//! - [`ingest`]: the job: plan windows from gaps, fetch, aggregate, upsert, checkpoint.
//! - [`queue`]: apalis-postgres storage, submission and the worker.
//! - [`registry`]: the coin registry's rules (a new CoinGecko id is checked with one call).
//! - [`schedule`]: `SYNC_SCHEDULE`: which process acts on a tick, what a tick queues, catch-up.
//! - [`api`]: the REST API (poem-openapi), Swagger UI and the OpenAPI document.
//! - [`cli`]: the subcommands; `main.rs` only calls [`cli::run`].
//! - [`fake_coingecko`]: a loopback stand-in for CoinGecko, for tests and benchmarks.
//!
//! Data flows one way: (cli, api, schedule) → (registry, queue) → ingest → (coingecko, store).

pub mod api;
pub mod cli;
pub mod coingecko;
pub mod config;
pub mod domain;
pub mod fake_coingecko;
pub mod ingest;
pub mod private_postgres;
pub mod queue;
pub mod registry;
pub mod schedule;
pub mod store;
pub mod telemetry;
