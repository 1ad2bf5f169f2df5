//! What every price source shares, so that a source is only its URL, its wire format and
//! its error meanings (`coingecko/`, `coinbase/`).
//!
//! # Layout
//!
//! - `caller`: one [`Caller`] per source: a slot of the budget before every attempt, the
//!   HTTP client, the retry loop and its back-off, the sorting of answers into what the
//!   source reads and what is retried, the [`CallOutcome`] counters `/metrics` shows. A
//!   source gives its [`Profile`] and reads answers; its errors come from a `CallError`.
//! - `budget`: "may I make this call?", per source: the call budget shared by every process
//!   on the database (GCRA in one PostgreSQL row per source and key, see
//!   `store::call_budget`), or the process's own for tools without a database.
//! - `redact`: keeps the keys and the other secrets out of every quoted body and error.
//! - `wire`: the body cap, `Retry-After`, quotes of an upstream's words, and the `f64` to
//!   `Decimal` rule every JSON source needs.
//!
//! Nothing here knows a source: the sources import from here, never the other way.

mod budget;
mod caller;
mod redact;
mod wire;

pub use budget::{BudgetMetrics, CallBudget, CallLimiter, MonthFigures, MonthlyCredits, NoSlot};
pub(crate) use caller::{Answer, CallError, Profile};
pub use caller::{CallOutcome, CallSettings, Caller};
#[cfg(test)]
pub(crate) use caller::{Failure, GaveUp};
pub(crate) use redact::Redactor;
pub use wire::{MAX_BODY_BYTES, decimal_from_f64};
pub(crate) use wire::{base_url, endpoint, printable, quote, quote_at_most};
