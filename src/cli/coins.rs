//! `coins add` and `coins list`: the coin registry from the shell, with the API's rules.

use std::collections::HashSet;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;

use super::{CoinsCommand, refuse};
use crate::config::{FallbackSource, Settings};
use crate::domain::{CoinGeckoId, PriceSource, ProductId, Symbol, Trigger, hourly_source};
use crate::registry::{CoinRequest, CoinSync, ProductChoice, RegisterError};
use crate::shutdown::Shutdown;
use crate::startup;
use crate::store::coins::{self, CoinRecord};
use crate::store::hourly_coins;
use crate::store::second_source::Mapping;
use crate::track_top::Ask;

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
            hourly,
            no_hourly,
        } => {
            let product = coinbase_product.as_deref();
            // Neither flag: a registered coin keeps its setting, as the API's absent field.
            let hourly = (hourly || no_hourly).then_some(hourly);
            match request(&symbol, &coingecko_id, (track, since), product, hourly) {
                Ok(request) => add(settings, request, &shutdown).await,
                Err(refused) => Ok(refuse(&refused)),
            }
        }
        CoinsCommand::TrackTop { n, since, hourly } => {
            let ask = Ask {
                n,
                track_since: since,
                hourly,
            };
            super::track_top::run(settings, ask, shutdown).await
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
    hourly: Option<bool>,
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
        hourly,
    })
}

/// `coins add`: registers the coin or changes its tracking, with the API's rules, and says
/// what was queued when tracking was turned on.
async fn add(
    settings: Settings,
    request: CoinRequest,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    let fallback = settings.fallback_source;
    let Some(app) = super::build(settings, startup::SHORT_POOL_SIZE, shutdown).await? else {
        return Ok(super::interrupted(
            "the coin was registered: nothing changed",
        ));
    };
    let symbol = request.symbol;
    let was_tracked = coins::get(&app.pool, symbol)
        .await?
        .is_some_and(|record| record.coin.tracked);
    // The check with CoinGecko (and Coinbase) may wait out back-offs and `Retry-After`
    // for minutes: a stop must not.
    let registry = app.registry();
    let putting = registry.put(request, Trigger::Cli);
    let registered = match shutdown.unless_raised(putting).await {
        Some(Ok(registered)) => registered,
        Some(Err(RegisterError::Database(e))) => return Err(e.into()),
        Some(Err(e)) => return Ok(refuse(&e.to_string())),
        None => {
            return Ok(super::interrupted(
                "the registry answered: `coins list` shows whether the coin was registered, and the same command again is safe",
            ));
        }
    };
    let done = if registered.created {
        "registered"
    } else {
        "updated"
    };
    let hours = hours_from(&registered.coin, registered.hours.hourly, fallback);
    println!(
        "{done} {}, {}",
        describe_coin(&registered.coin),
        describe_hours(hours)
    );
    for note in &registered.notes {
        println!("note: {note}");
    }
    if was_tracked && !registered.coin.coin.tracked {
        // As the API's PUT, which replaces: said, since it is seldom what was meant.
        println!(
            "note: {symbol} is no longer tracked, since --track was left out; the stored days \
             are kept (add --track to keep it tracked)"
        );
    }
    if let Some(synced) = registered.synced {
        let synced =
            synced.context("the coin is registered, but its missing days could not be queued")?;
        let missing = if registered.hours.hourly {
            "days and hours"
        } else {
            "days"
        };
        println!(
            "{}",
            describe_sync(registered.coin.coin.symbol, missing, &synced)
        );
        if let Some(cost) = app.credits().tracking_cost_sentence().await {
            println!("{cost}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What turning tracking or hours on queued, in a sentence; `missing` says what the job
/// fills.
fn describe_sync(symbol: Symbol, missing: &str, synced: &CoinSync) -> String {
    match synced {
        CoinSync::UpToDate => format!("{symbol} is up to date"),
        CoinSync::Queued(job) => format!(
            "job {} queued for {symbol}'s missing {missing}, {}..{}: any worker (price-history worker or serve) runs it",
            job.id,
            job.range.start(),
            job.range.end()
        ),
        CoinSync::Busy(_) => format!(
            "a job of {symbol} is active already; the schedule looks again at its next tick"
        ),
        CoinSync::Unaffordable(resets_on) => format!(
            "the month's CoinGecko credits cannot pay for {symbol}'s missing {missing} now: no job was queued; the schedule queues it once they can (the month resets on {resets_on})"
        ),
    }
}

/// `coins list`: every registered coin with its freshness, as a table.
async fn list(settings: Settings, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    let opening = startup::open_database(&settings, startup::SHORT_POOL_SIZE);
    let Some(pool) = shutdown.unless_raised(opening).await.transpose()? else {
        return Ok(super::interrupted("the coins were read"));
    };
    let list = coins::list(&pool).await?;
    let symbols: Vec<Symbol> = list.iter().map(|c| c.coin.symbol).collect();
    let hourly: HashSet<Symbol> = hourly_coins::of_coins(&pool, &symbols)
        .await?
        .into_iter()
        .filter(|c| c.hourly)
        .map(|c| c.symbol)
        .collect();
    let row = |cells: [&str; 8]| {
        println!(
            "{:<15} {:<30} {:<10} {:<8} {:<11} {:<10} {:<20} {}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7]
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
        "HOURLY",
    ]);
    let day = |d: Option<NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
    for coin in &list {
        let hours = hours_from(
            coin,
            hourly.contains(&coin.coin.symbol),
            settings.fallback_source,
        );
        row([
            coin.coin.symbol.as_str(),
            coin.coin.coingecko_id.as_str(),
            &day(coin.coin.first_day),
            if coin.coin.tracked { "yes" } else { "no" },
            &day(coin.coin.track_since),
            &day(coin.last_complete_day),
            &describe_mapping(&coin.mapping),
            hours.map_or("no", |source| source.map_or("yes", PriceSource::as_str)),
        ]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a coin's hours come from: `None` when it keeps none; `Some(None)` while its
/// product awaits the check that decides.
fn hours_from(
    coin: &CoinRecord,
    hourly: bool,
    fallback: FallbackSource,
) -> Option<Option<PriceSource>> {
    hourly.then(|| hourly_source(hourly, coin.mapping.exchange_product(fallback)))
}

/// A coin's hours in a few words.
fn describe_hours(hours: Option<Option<PriceSource>>) -> String {
    match hours {
        None => "no hourly candles".to_owned(),
        Some(None) => "hourly candles (their source is decided by the product's check)".to_owned(),
        Some(Some(source)) => format!("hourly candles from {}", source.display_name()),
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
