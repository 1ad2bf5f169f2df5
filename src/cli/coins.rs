//! `coins add` and `coins list`: the coin registry from the shell, with the API's rules.

use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;

use super::{CoinsCommand, refuse};
use crate::config::Settings;
use crate::domain::{CoinGeckoId, ProductId, Symbol, Trigger};
use crate::registry::{CoinRequest, CoinSync, ProductChoice, RegisterError};
use crate::shutdown::Shutdown;
use crate::startup;
use crate::store::coins::{self, CoinRecord};
use crate::store::second_source::Mapping;

pub(super) async fn run(
    settings: Settings,
    command: CoinsCommand,
    shutdown: Shutdown,
) -> anyhow::Result<ExitCode> {
    match command {
        CoinsCommand::Add {
            symbol,
            coingecko_id,
            track,
            since,
            coinbase_product,
        } => {
            let product = coinbase_product.as_deref();
            match request(&symbol, &coingecko_id, (track, since), product) {
                Ok(request) => add(settings, request, &shutdown).await,
                Err(refused) => Ok(refuse(&refused)),
            }
        }
        CoinsCommand::TrackTop { n, since } => {
            super::track_top::run(settings, n, since, shutdown).await
        }
        CoinsCommand::List => list(settings, &shutdown).await,
    }
}

/// What `coins add` asks of the registry, or why its arguments are refused.
fn request(
    symbol: &str,
    coingecko_id: &str,
    (tracked, track_since): (bool, Option<NaiveDate>),
    coinbase_product: Option<&str>,
) -> Result<CoinRequest, String> {
    let symbol = Symbol::parse(symbol).map_err(|e| e.to_string())?;
    let coingecko_id = CoinGeckoId::parse(coingecko_id).map_err(|e| e.to_string())?;
    let coinbase_product = match coinbase_product.map(str::trim) {
        None => ProductChoice::Unsaid,
        Some(none) if none.eq_ignore_ascii_case("none") => ProductChoice::Clear,
        Some(product) => {
            ProductChoice::Set(ProductId::parse(product).map_err(|e| format!("{e}, or none"))?)
        }
    };
    Ok(CoinRequest {
        symbol,
        coingecko_id,
        tracked,
        track_since,
        coinbase_product,
    })
}

/// `coins add`: registers the coin or changes its tracking, with the API's rules, and says
/// what was queued when tracking was turned on.
async fn add(
    settings: Settings,
    request: CoinRequest,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    let Some(app) = super::build(settings, startup::SHORT_POOL_SIZE, shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let registered = match app.registry().put(request, Trigger::Cli).await {
        Ok(registered) => registered,
        Err(RegisterError::Database(e)) => return Err(e.into()),
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let done = if registered.created {
        "registered"
    } else {
        "updated"
    };
    println!("{done} {}", describe_coin(&registered.coin));
    for note in &registered.notes {
        println!("note: {note}");
    }
    if let Some(synced) = registered.synced {
        let synced =
            synced.context("the coin is registered, but its missing days could not be queued")?;
        println!("{}", describe_sync(registered.coin.coin.symbol, &synced));
    }
    Ok(ExitCode::SUCCESS)
}

/// What turning tracking on queued, in a sentence.
fn describe_sync(symbol: Symbol, synced: &CoinSync) -> String {
    match synced {
        CoinSync::UpToDate => format!("{symbol} is up to date"),
        CoinSync::Queued(job) => format!(
            "job {} queued for {symbol}'s missing days, {}..{}: any worker (price-history worker or serve) runs it",
            job.id,
            job.range.start(),
            job.range.end()
        ),
        CoinSync::Busy(_) => format!(
            "a job of {symbol} is active already; the schedule looks again at its next tick"
        ),
    }
}

/// `coins list`: every registered coin with its freshness, as a table.
async fn list(settings: Settings, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    let opening = startup::open_database(&settings, startup::SHORT_POOL_SIZE);
    let Some(pool) = shutdown.unless_raised(opening).await.transpose()? else {
        return Ok(ExitCode::SUCCESS);
    };
    let list = coins::list(&pool).await?;
    let row = |cells: [&str; 7]| {
        println!(
            "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10} {:<20}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        );
    };
    row([
        "SYMBOL",
        "COINGECKO_ID",
        "FIRST_DAY",
        "TRACKED",
        "SINCE",
        "LAST_DAY",
        "COINBASE_PRODUCT",
    ]);
    let day = |d: Option<NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
    for coin in &list {
        row([
            coin.coin.symbol.as_str(),
            coin.coin.coingecko_id.as_str(),
            &day(coin.coin.first_day),
            if coin.coin.tracked { "yes" } else { "no" },
            &day(coin.coin.track_since),
            &day(coin.last_complete_day),
            &describe_mapping(&coin.mapping),
        ]);
    }
    Ok(ExitCode::SUCCESS)
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
