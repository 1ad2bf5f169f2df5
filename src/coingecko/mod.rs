//! The CoinGecko HTTP client: the only place that talks to CoinGecko.
//!
//! The ingest code asks for one window of prices with
//! [`CoinGeckoClient::market_chart_range`] and learns from the error variant what to do:
//! put the job back on the queue ([`CoinGeckoError::Transient`],
//! [`CoinGeckoError::RateLimited`]), learn the plan's reach
//! ([`CoinGeckoError::PlanLimit`], CoinGecko's 10012), or fail it
//! ([`CoinGeckoError::Permanent`], [`CoinGeckoError::BadAnswer`]). Everything about the
//! wire stays in here.
//!
//! # Layout
//!
//! - `client`: settings, the request, the retry loop and its back-off.
//! - `budget`: the call budget shared by every process on the database (GCRA in one
//!   PostgreSQL row), as a middleware every attempt passes through.
//! - `wire`: the success body (`prices`, `total_volumes`) and the `f64` to `Decimal` rule.
//! - `error`: the error enum and the lenient reading of CoinGecko's error bodies.
//! - `redact`: keeps the key and the other secrets out of every quoted body and error.
//!
//! Nothing CoinGecko sends is trusted: a body over [`MAX_BODY_BYTES`] is refused while
//! it is read, a chart with a price not above zero, a negative volume or two values at
//! one instant is refused whole, and every quote of a body is redacted.

mod budget;
mod client;
mod error;
mod redact;
mod wire;

pub use budget::{BudgetMetrics, CallBudget, CallLimiter};
// For the other upstream clients (see `crate::upstream`), until these move there.
pub(crate) use budget::RateLimit;
pub use client::{CallOutcome, CoinGeckoClient, CoinGeckoSettings, MAX_BODY_BYTES};
pub use error::CoinGeckoError;
pub(crate) use redact::Redactor;
pub use wire::{MarketChart, MarketCoin, Point, decimal_from_f64};
