//! Loopback stand-ins for the upstream price sources of price-history, for its tests,
//! benchmarks and checks only: a dev-dependency of the service, never part of its
//! release binary.
//!
//! # Layout
//!
//! - [`coingecko`]: a fake CoinGecko (`/coins/{id}/market_chart/range`), scriptable and
//!   recording every call.
//! - [`coinbase`]: a fake Coinbase Exchange (`/products/{id}/candles` and `/products/{id}`),
//!   the second source, whose products follow the fake CoinGecko's coins a little off.
//! - `src/main.rs`: the `fake-upstream` command, which serves one fake as a process
//!   (`fake-upstream coingecko --bind 127.0.0.1:8090`, `fake-upstream coinbase --bind
//!   127.0.0.1:8091`) for Schemathesis and the
//!   container check.
//!
//! - `server`: what every fake shares ([`Fake`], [`ScriptedResponse`]): listening,
//!   stopping, recording every call, scripted answers, a delay, a rate limit; and
//!   [`most_within`], the busiest window of a record.
//!
//! Each upstream gets its own module and its own subcommand; a module is the upstream's
//! routes, world and answers, and a [`server::Upstream`] the core runs.

pub mod coinbase;
pub mod coingecko;
pub mod server;

pub use server::{Fake, ScriptedResponse, most_within};
