//! `coins add` and `coins list`: the coin registry from the shell, with the API's rules.

use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;

use super::{CoinsCommand, refuse};
use crate::config::Settings;
use crate::domain::{CoinGeckoId, ProductId, Symbol, Trigger};
use crate::registry::{CoinRequest, ProductChoice, RegisterError, Registered};
use crate::schedule::{self, CoinSync};
use crate::startup::{self, Application};
use crate::store::coins::{self, CoinRecord};
use crate::store::second_source::Mapping;

pub(super) async fn run(settings: Settings, command: CoinsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CoinsCommand::Add {
            symbol,
            coingecko_id,
            track,
            since,
            coinbase_product,
        } => {
            let symbol = match Symbol::parse(&symbol) {
                Ok(symbol) => symbol,
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            let coingecko_id = match CoinGeckoId::parse(&coingecko_id) {
                Ok(id) => id,
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            let coinbase_product = match coinbase_product.as_deref().map(str::trim) {
                None => ProductChoice::Unsaid,
                Some(none) if none.eq_ignore_ascii_case("none") => ProductChoice::Clear,
                Some(product) => match ProductId::parse(product) {
                    Ok(product) => ProductChoice::Set(product),
                    Err(e) => return Ok(refuse(&format!("{e}, or none"))),
                },
            };
            let app = Application::build(settings, startup::SHORT_POOL_SIZE).await?;
            let registry = app.registry();
            let request = CoinRequest {
                symbol,
                coingecko_id,
                tracked: track,
                track_since: since,
                coinbase_product,
            };
            let (coin, started_tracking) = match registry.put(request).await {
                Ok(Registered::Created { coin, notes }) => {
                    println!("registered {}", describe_coin(&coin));
                    for note in notes {
                        println!("note: {note}");
                    }
                    let tracked = coin.coin.tracked;
                    (coin, tracked)
                }
                Ok(Registered::Changed {
                    coin,
                    started_tracking,
                }) => {
                    println!("updated {}", describe_coin(&coin));
                    (coin, started_tracking)
                }
                Err(RegisterError::Database(e)) => return Err(e.into()),
                Err(e) => return Ok(refuse(&e.to_string())),
            };
            if started_tracking {
                // Up to date at once, not at the next tick.
                let synced = schedule::tracking_started(
                    &app.pool,
                    &registry.reach,
                    &coin.coin,
                    Trigger::Cli,
                    app.settings.job_max_attempts,
                )
                .await
                .context("the coin is registered, but its missing days could not be queued")?;
                let symbol = coin.coin.symbol;
                match synced {
                    CoinSync::UpToDate => println!("{symbol} is up to date"),
                    CoinSync::Queued(job) => println!(
                        "job {} queued for {symbol}'s missing days, {}..{}: any worker (price-history worker or serve) runs it",
                        job.id,
                        job.range.start(),
                        job.range.end()
                    ),
                    CoinSync::Busy(_) => {
                        println!(
                            "a job of {symbol} is active already; the schedule looks again at its next tick"
                        )
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CoinsCommand::TrackTop { n, since } => super::track_top::run(settings, n, since).await,
        CoinsCommand::List => {
            let pool = startup::open_database(&settings, startup::SHORT_POOL_SIZE).await?;
            let list = coins::list(&pool).await?;
            println!(
                "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10} {:<20}",
                "SYMBOL",
                "COINGECKO_ID",
                "FIRST_DAY",
                "TRACKED",
                "SINCE",
                "LAST_DAY",
                "COINBASE_PRODUCT"
            );
            for coin in &list {
                let day =
                    |d: Option<NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
                println!(
                    "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10} {:<20}",
                    coin.coin.symbol.as_str(),
                    coin.coin.coingecko_id.as_str(),
                    day(coin.coin.first_day),
                    if coin.coin.tracked { "yes" } else { "no" },
                    day(coin.coin.track_since),
                    day(coin.last_complete_day),
                    describe_mapping(&coin.mapping),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The second source of a coin in a few words: the product, and whether its check let it
/// be used.
fn describe_mapping(mapping: &Mapping) -> String {
    match (&mapping.product, mapping.usable) {
        (None, _) => "-".to_owned(),
        (Some(product), None) => format!("{product} (unchecked)"),
        (Some(product), Some(true)) => product.to_string(),
        (Some(product), Some(false)) => format!("{product} (unusable)"),
    }
}

fn describe_coin(coin: &CoinRecord) -> String {
    format!(
        "{} ({}), first day {}, {}, second source {}",
        coin.coin.symbol,
        coin.coin.coingecko_id,
        coin.coin.first_day.map_or_else(
            || "older than the plan serves".to_owned(),
            |d| d.to_string()
        ),
        match (coin.coin.tracked, coin.coin.track_since) {
            (true, Some(since)) => format!("tracked since {since}"),
            (true, None) => "tracked".to_owned(),
            (false, _) => "not tracked".to_owned(),
        },
        match &coin.mapping.product {
            Some(product) => format!("Coinbase Exchange {product}"),
            None => "none".to_owned(),
        }
    )
}
