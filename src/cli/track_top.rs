//! `coins track-top N [--since D]`: the N largest coins registered and tracked from the
//! shell, with a progress bar, then what was registered and what was skipped and why.
//! Exit 0 when the import completed (skipped coins included), 1 when it failed or was
//! interrupted, 2 when refused (bad input, or another import running).

use std::process::ExitCode;
use std::time::Duration;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};

use super::refuse;
use crate::config::Settings;
use crate::domain::{Trigger, today_utc};
use crate::shutdown::Shutdown;
use crate::startup::{self, Application};
use crate::store::coin_imports::Start;
use crate::track_top::TrackTop;

pub(super) async fn run(
    settings: Settings,
    n: u32,
    since: Option<NaiveDate>,
) -> anyhow::Result<ExitCode> {
    let today = today_utc();
    if let Some(since) = since
        && since > today
    {
        return Ok(refuse(&format!(
            "--since {since} is in the future (today is {today} UTC): pick a day on or before today, or leave it out"
        )));
    }
    let app = Application::build(settings, startup::SHORT_POOL_SIZE).await?;
    let import = TrackTop {
        registry: app.registry(),
        job_max_attempts: app.settings.job_max_attempts,
        trigger: Trigger::Cli,
    };
    let record = match import.start(n, since).await? {
        Start::Started(record) => *record,
        Start::Running(active) => {
            return Ok(refuse(&format!(
                "an import of the top coins is running ({active}); try again when it has ended"
            )));
        }
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} coins, {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let shutdown = Shutdown::on_signal();
    let record = import
        .run(record, Some(&shutdown), |record| {
            bar.set_length(record.coins_total.max(0) as u64);
            bar.set_position(record.coins_done.max(0) as u64);
            bar.set_message(format!(
                "pages {}/{}, {} registered, {} skipped",
                record.pages_done,
                record.pages_total,
                record.registered.len(),
                record.skipped.len()
            ));
        })
        .await?;
    bar.finish_and_clear();

    println!(
        "import {}: {} ({} of the {} largest coins listed)",
        record.id, record.status, record.coins_total, record.n
    );
    println!(
        "registered and tracked: {} new, {} already registered",
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
    Ok(if record.status == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
