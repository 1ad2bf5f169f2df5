//! The tracing subscriber: human-readable text or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How much is logged when `RUST_LOG` does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// A service (`serve`, `api`, `worker`, ...): `info`, the lines an operator reads.
    Service,
    /// A command a person watches (`backfill`, `export`, `track-top`): `warn` only, so that
    /// its progress bar and closing summary are what the terminal shows.
    Interactive,
}

/// Installs the global subscriber; `RUST_LOG` filters (by default `info` for a service,
/// `warn` for a command a person watches). Logs go to stderr so that stdout stays clean
/// for `openapi` and the commands' summaries.
pub fn init(format: LogFormat, verbosity: Verbosity) {
    let default = match verbosity {
        Verbosity::Service => "info",
        Verbosity::Interactive => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests that call into the binary's entry) is harmless: ignore it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
