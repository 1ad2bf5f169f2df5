//! The Coinbase Exchange client: the second source, which fills the days older than the
//! CoinGecko plan's reach from Coinbase's public daily candles (no key).
//!
//! Three calls: [`CoinbaseClient::candles`] (`/products/{product}/candles`, at most
//! [`MAX_CANDLES_PER_CALL`] days, asked as a [`CandleWindow`]),
//! [`CoinbaseClient::hourly_candles`] (the same endpoint at `granularity=3600`, at most
//! 300 hours) and
//! [`CoinbaseClient::product`] (`/products/{product}`: whether Coinbase lists it). Every
//! failure is a [`CoinbaseError`] whose variant says whether a later try may succeed;
//! none of them is meant to fail a job.
//!
//! # Layout
//!
//! - `client`: settings, the root URL, the two calls and how their answers read. The
//!   budget (its own, `COINBASE_CALLS_PER_MINUTE`, shared by every process on the
//!   database), the retries, the body cap and the redaction of secrets are the shared
//!   [`Caller`](crate::upstream::Caller)'s.
//! - `window`: what one candle request may ask for: at most 300 candles of one
//!   [`Granularity`]; [`CandleWindow`] is a run of whole days.
//! - `wire`: the candle list (`[time, low, high, open, close, volume]`, newest first)
//!   and the product's description, read without trusting them.
//! - `error`: the error enum and its messages.

mod client;
mod error;
mod window;
mod wire;

pub use client::{CoinbaseClient, CoinbaseSettings};
pub use error::CoinbaseError;
pub use window::{CandleWindow, Granularity, MAX_CANDLES_PER_CALL};
pub use wire::{CandlesError, ProductInfo, WireCandle, parse_candles, parse_hourly_candles};
