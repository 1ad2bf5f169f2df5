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
//! - `client`: settings, the root URL and key header, the two calls and how their
//!   answers read. The budget, the retries and the back-off are the shared
//!   [`Caller`](crate::upstream::Caller)'s.
//! - `wire`: the success bodies (`prices`, `total_volumes`; a page of `/coins/markets`).
//! - `error`: the error enum and the lenient reading of CoinGecko's error bodies.
//!
//! Nothing CoinGecko sends is trusted: a body over
//! [`MAX_BODY_BYTES`](crate::upstream::MAX_BODY_BYTES) is refused while it is read, a
//! chart with a price not above zero, a negative volume or two values at one instant is
//! refused whole, and every quote of a body is redacted.

mod client;
mod error;
mod wire;

pub use client::{CoinGeckoClient, CoinGeckoSettings, FirstDay};
pub use error::CoinGeckoError;
pub use wire::{MarketChart, MarketCoin, Point};
