//! `coins track-top N [--since D] [--hourly]`: the N largest coins registered and tracked
//! (and kept hourly) from the shell, with a progress bar, then what was registered and
//! what was skipped and why.
//! Exit 0 when the import completed (skipped coins included), 1 when it failed or was
//! interrupted, 2 when refused (bad input, or another import running).

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::refuse;
use crate::config::Settings;
use crate::domain::{ImportStatus, ImportTrigger};
use crate::shutdown::Shutdown;
use crate::startup;
use crate::store::coin_imports::{ImportRecord, Start};
use crate::track_top::{Ask, StartError};

pub(super) async fn run(
    settings: Settings,
    ask: Ask,
    shutdown: Shutdown,
) -> anyhow::Result<ExitCode> {
    let Some(app) = super::build(settings, startup::SHORT_POOL_SIZE, &shutdown).await? else {
        return Ok(super::interrupted(
            "the import started: nothing was registered",
        ));
    };
    let import = app.track_top(ImportTrigger::Cli);
    let record = match import.start(ask).await {
        Ok(Start::Started(record)) => *record,
        Ok(Start::Running(active)) => {
            return Ok(refuse(&format!(
                "an import of the top coins is running ({active}); try again when it has ended"
            )));
        }
        Err(StartError::TrackSinceInFuture(e)) => return Ok(refuse(&e.to_string())),
        Err(StartError::Database(e)) => return Err(e.into()),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} coins, {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let record = import
        .run(record, &shutdown, |record| show_progress(&bar, record))
        .await?;
    bar.finish_and_clear();
    report(&record);
    if let Some(cost) = app.credits().tracking_cost_sentence().await {
        println!("{cost}");
    }
    Ok(if record.status == ImportStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show_progress(bar: &ProgressBar, record: &ImportRecord) {
    bar.set_length(record.coins_total.max(0) as u64);
    bar.set_position(record.coins_done.max(0) as u64);
    bar.set_message(format!(
        "pages {}/{}, {} registered, {} skipped",
        record.pages_done,
        record.pages_total,
        record.registered.len(),
        record.skipped.len()
    ));
}

/// How the import ended: what it registered, what it skipped and why, and its error.
fn report(record: &ImportRecord) {
    println!(
        "import {}: {} ({} of the {} largest coins listed)",
        record.id, record.status, record.coins_total, record.n
    );
    println!(
        "registered and tracked{}: {} new, {} already registered",
        if record.hourly {
            ", with hourly candles"
        } else {
            ""
        },
        record.registered.len(),
        record.already.len()
    );
    if !record.registered.is_empty() {
        println!("  new: {}", record.registered.join(" "));
    }
    if !record.skipped.is_empty() {
        println!("skipped {}:", record.skipped.len());
        for skipped in record.skipped.iter() {
            println!(
                "  {} ({}): {}",
                skipped.symbol, skipped.coingecko_id, skipped.reason
            );
        }
    }
    if let Some(message) = &record.error_message {
        eprintln!("error: {message}");
    }
}
