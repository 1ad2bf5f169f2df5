//! The command line: one binary, a subcommand per role (see INTERFACE.md, "Processes").
//! This module defines the commands and dispatches them; the long-lived roles start
//! through [`crate::startup`], and each command that does more than that has a module:
//! `backfill` and `coins`.

mod backfill;
mod coins;
mod track_top;

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::api;
use crate::config::Settings;
use crate::shutdown::Shutdown;
use crate::startup::{self, Application, Role};
use crate::store;
use crate::telemetry;

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
        #[arg(long)]
        start_date: NaiveDate,
        /// Last day, YYYY-MM-DD (UTC), at most today.
        #[arg(long)]
        end_date: NaiveDate,
        /// Fetch every day again and update stored rows.
        #[arg(long)]
        force: bool,
        /// A registered coin (`price-history coins list`).
        #[arg(long, default_value = "BTC")]
        symbol: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CoinsCommand {
    /// Register a coin (checked with one CoinGecko call), or change whether it is tracked.
    Add {
        /// The ticker: 1 to 15 letters A-Z or digits, case-insensitive.
        symbol: String,
        /// CoinGecko's id of the coin (the "API ID" on its CoinGecko page), such as ethereum.
        coingecko_id: String,
        /// Keep the coin up to date every day (SYNC_SCHEDULE).
        #[arg(long)]
        track: bool,
        /// With --track: the first day to keep, YYYY-MM-DD.
        #[arg(long)]
        since: Option<NaiveDate>,
    },
    /// List the registered coins with their freshness.
    List,
    /// Register and track the N largest coins by market cap (CoinGecko's /coins/markets),
    /// with a progress bar; symbols already taken by another id are skipped and listed.
    TrackTop {
        /// How many of the largest coins: 1 to 10000.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        n: u32,
        /// The first day to keep of each newly tracked coin, YYYY-MM-DD.
        #[arg(long)]
        since: Option<NaiveDate>,
    },
}

/// Runs the parsed command line; errors are printed by `main` with their causes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    telemetry::init(cli.settings.log_format);
    let settings = cli.settings;
    let role = match cli.command {
        Command::Serve => Role::Serve,
        Command::Api => Role::Api,
        Command::Worker => Role::Worker,
        Command::Migrate => {
            startup::open_database(&settings, startup::SHORT_POOL_SIZE).await?;
            eprintln!(
                "database {} is ready",
                store::database::redact(&settings.database_url)
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Openapi => {
            println!("{}", api::openapi_json());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Coins { command } => return coins::run(settings, command).await,
        Command::Backfill {
            start_date,
            end_date,
            force,
            symbol,
        } => return backfill::run(settings, &symbol, start_date, end_date, force).await,
    };
    Application::build(settings, startup::POOL_SIZE)
        .await?
        .run(role, Shutdown::on_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Bad input: say why and exit 2, as command-line tools do.
fn refuse(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
