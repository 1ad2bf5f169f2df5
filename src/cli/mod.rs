//! The command line: one binary, a subcommand per role (see INTERFACE.md, "Processes").
//! This module defines the commands and dispatches them; the long-lived roles start
//! through [`crate::startup`], and each command that does more than that has a module:
//! `backfill`, `coins`, `track_top` and `export`.

mod backfill;
mod coins;
mod export;
mod track_top;

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::api;
use crate::config::Settings;
use crate::private_postgres;
use crate::shutdown::Shutdown;
use crate::startup::{self, Application, Role};
use crate::telemetry::{self, Verbosity};

#[derive(Debug, Parser)]
#[command(
    name = "price-history",
    version,
    about = "A complete, trustworthy history of daily coin prices from CoinGecko, kept in PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
    /// Whether `DATABASE_URL` was left to its default (neither the variable nor the flag
    /// given), which alone allows a private PostgreSQL; set by [`Cli::parse_args`].
    #[arg(skip)]
    pub database_url_defaulted: bool,
}

impl Cli {
    /// Parses the command line as `Cli::parse` does, and notes whether `DATABASE_URL` was
    /// given: the parsed settings alone cannot tell it from its default.
    pub fn parse_args() -> Self {
        Self::parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_args`] of the given arguments (the program's name first).
    pub fn parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.database_url_defaulted =
            matches.value_source("database_url") == Some(ValueSource::DefaultValue);
        Ok(cli)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// REST API and one worker in one process: the single-machine default.
    Serve,
    /// REST API only.
    Api,
    /// Worker only; run any number of replicas against one database.
    Worker,
    /// Create the database if missing, apply all migrations, exit.
    Migrate,
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Register or list coins (the same rules as the API).
    Coins {
        #[command(subcommand)]
        command: CoinsCommand,
    },
    /// Queue a backfill on the durable queue, run it here with a progress bar, print the outcome.
    Backfill {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long, value_parser = crate::domain::parse_day)]
        start_date: NaiveDate,
        /// Last day, YYYY-MM-DD (UTC), at most today.
        #[arg(long, value_parser = crate::domain::parse_day)]
        end_date: NaiveDate,
        /// Fetch every day again and update stored rows.
        #[arg(long)]
        force: bool,
        /// A registered coin (`price-history coins list`).
        #[arg(long, default_value = "BTC")]
        symbol: String,
    },
    /// Write a file per coin in freqtrade's layout (BTC_USD-1d.feather, ...), with a progress bar.
    Export(export::ExportArgs),
}

impl Command {
    /// How the command ends when SIGTERM or SIGINT comes before it could start (while it
    /// waits for PostgreSQL): a service exits 0, as it would have a moment later; a
    /// one-off command says so and exits 1, so that no script takes it for done.
    fn interrupted_at_start(&self) -> ExitCode {
        match self {
            Command::Serve
            | Command::Api
            | Command::Worker
            | Command::Migrate
            | Command::Openapi => ExitCode::SUCCESS,
            _ => interrupted("it could reach the database: nothing was done"),
        }
    }

    /// A command a person watches in a terminal logs only warnings unless `RUST_LOG` asks
    /// for more: its progress bar and summary say what happened.
    fn verbosity(&self) -> Verbosity {
        match self {
            Command::Backfill { .. }
            | Command::Export(_)
            | Command::Coins {
                command: CoinsCommand::TrackTop { .. },
            } => Verbosity::Interactive,
            _ => Verbosity::Service,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CoinsCommand {
    /// Register a coin (checked with one CoinGecko call), or change whether it is tracked
    /// and whether it keeps hourly candles.
    Add {
        /// The ticker: 1 to 15 letters A-Z or digits, case-insensitive.
        symbol: String,
        /// CoinGecko's id of the coin (the "API ID" on its CoinGecko page), such as ethereum.
        coingecko_id: String,
        /// Keep the coin up to date every day (SYNC_SCHEDULE).
        #[arg(long)]
        track: bool,
        /// With --track: the first day to keep, YYYY-MM-DD.
        #[arg(long, value_parser = crate::domain::parse_day)]
        since: Option<NaiveDate>,
        /// The coin's product on Coinbase Exchange, the second source (such as ETH-USD),
        /// checked with one call; `none` for no second source. Left out, a new coin gets
        /// {SYMBOL}-USD when Coinbase lists it, and a registered coin keeps its product.
        #[arg(long, value_name = "PRODUCT")]
        coinbase_product: Option<String>,
        /// Keep hourly candles too, and bring the coin's hours up to date at once. Left
        /// out, a new coin keeps none and a registered coin keeps its setting.
        #[arg(long, conflicts_with = "no_hourly")]
        hourly: bool,
        /// Stop keeping hourly candles: the stored hours stay, no more are fetched.
        #[arg(long)]
        no_hourly: bool,
    },
    /// List the registered coins with their freshness.
    List,
    /// Register and track the N largest coins by market cap (CoinGecko's /coins/markets),
    /// with a progress bar; symbols already taken by another id are skipped and listed.
    /// With --hourly, each keeps hourly candles too.
    TrackTop {
        /// How many of the largest coins: 1 to 10000.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        n: u32,
        /// The first day to keep of each newly tracked coin, YYYY-MM-DD.
        #[arg(long, value_parser = crate::domain::parse_day)]
        since: Option<NaiveDate>,
        /// Every coin of the list keeps hourly candles too (turned on for those registered
        /// already), each one's hours brought up to date at once.
        #[arg(long)]
        hourly: bool,
    },
}

/// Runs the parsed command line until it is done or `shutdown` (SIGTERM, SIGINT) stops
/// it; errors are printed by `main` with their causes.
pub async fn run(cli: Cli, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    telemetry::init(cli.settings.log_format, cli.command.verbosity());
    let mut settings = cli.settings;
    if !matches!(cli.command, Command::Openapi) {
        settings.check(matches!(cli.command, Command::Serve | Command::Api))?;
    }
    // What an export is asked for is judged before any database is looked for: a request
    // refused with 2 at once, not after a wait for PostgreSQL that may end in 1.
    if let Command::Export(args) = &cli.command
        && let Err(message) = export::request_of(args)
    {
        return Ok(refuse(&message));
    }
    // Held until this function returns, after every pool of the command is closed.
    let _private_postgres = match cli.command {
        Command::Openapi => None,
        _ => {
            let resolving = private_postgres::resolve_database(
                &settings.database_url,
                !cli.database_url_defaulted,
            );
            let Some((database_url, server)) =
                shutdown.unless_raised(resolving).await.transpose()?
            else {
                return Ok(cli.command.interrupted_at_start());
            };
            settings.database_url = database_url;
            server
        }
    };
    let role = match cli.command {
        Command::Serve => Role::Serve,
        Command::Api => Role::Api,
        Command::Worker => Role::Worker,
        Command::Migrate => return migrate(&settings, &shutdown).await,
        Command::Openapi => {
            println!("{}", api::openapi_json());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Coins { command } => return coins::run(settings, command, shutdown).await,
        Command::Backfill {
            start_date,
            end_date,
            force,
            symbol,
        } => {
            return backfill::run(settings, &symbol, (start_date, end_date), force, shutdown).await;
        }
        Command::Export(args) => return export::run(settings, args, shutdown).await,
    };
    let Some(app) = build(settings, startup::POOL_SIZE, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    app.run(role, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `migrate`: the database created and migrated, nothing else.
async fn migrate(settings: &Settings, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    let opening = startup::open_database(settings, startup::SHORT_POOL_SIZE);
    if shutdown.unless_raised(opening).await.transpose()?.is_some() {
        eprintln!("database {} is ready", settings.database_url);
    }
    Ok(ExitCode::SUCCESS)
}

/// The service wired for a command, unless the process is told to stop while it waits for
/// PostgreSQL or migrates: then `None`, with nothing half done (a migration rolls back),
/// and the command ends as it would have on the signal a moment later.
async fn build(
    settings: Settings,
    max_connections: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Application>> {
    let building = Application::build(settings, max_connections);
    shutdown.unless_raised(building).await.transpose()
}

/// A one-off command stopped before it did `what` it is for: say so and exit 1.
fn interrupted(what: &str) -> ExitCode {
    eprintln!("interrupted before {what}");
    ExitCode::FAILURE
}

/// Bad input: say why and exit 2, as command-line tools do.
fn refuse(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_counts_as_given_as_a_flag_before_or_after_the_subcommand() {
        let url = "postgres://u@db:5432/x";
        for args in [
            vec!["price-history", "--database-url", url, "migrate"],
            vec!["price-history", "migrate", "--database-url", url],
        ] {
            let cli = Cli::parse_args_from(args).expect("valid arguments");
            assert!(!cli.database_url_defaulted);
            assert_eq!(cli.settings.database_url, url.parse().unwrap());
        }
        // Without the flag it is the default, unless the environment sets it.
        let cli = Cli::parse_args_from(["price-history", "migrate"]).expect("valid arguments");
        assert_eq!(
            cli.database_url_defaulted,
            std::env::var_os("DATABASE_URL").is_none()
        );
    }
}
