//! Candles to the files other tools read (INTERFACE.md, "Export"): freqtrade's layout
//! (`BTC_USD-1d.feather` in its `datadir`), Parquet for pandas, polars and DuckDB, CSV for
//! backtrader and spreadsheets. `price-history export` writes them to a directory, and
//! `GET /api/v1/prices` streams the Parquet and Feather ones as its answer: both through
//! [`FileStream`], so that a file is the same however it is fetched.
//!
//! # Layout
//!
//! - [`candles`]: the one seam between the store and the files: a stream of [`Candle`]s
//!   per coin and timeframe: days, hours, `4h` blocks.
//! - `format`: the formats, their file names and media types.
//! - `encode`: a file written batch by batch into a spool that its reader drains:
//!   [`FileStream`], and the text formats (JSON, JSON.gz, CSV).
//! - `columnar`: the Arrow formats, Feather (LZ4, as freqtrade writes it) and Parquet.
//! - `staged`: a file written under a temporary name and renamed into place.
//! - `directory`: many coins into a directory, one at a time.
//!
//! Reads `store` and `domain`; the API and the CLI call it.

mod candles;
mod columnar;
mod directory;
mod encode;
mod format;
mod staged;

pub use candles::{Candle, CandleStream, Reader, Span, candles};
pub use directory::{Coins, Failure, InFlight, Progress, Request, Summary, to_directory};
pub use encode::{ExportError, FileStream, spawn_file};
pub use format::{Format, UnknownFormat};
