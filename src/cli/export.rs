//! `export`: a file per coin in freqtrade's layout (INTERFACE.md, "Export"), with a
//! progress bar of coins done and rows written, then what was written and skipped. Exit 0
//! when every coin was written (coins with nothing in the range are skipped, not failed),
//! 1 when it stopped part-way (the database gone, a full disk, a signal: the files written
//! are whole, the one being written is not put in place), 2 when refused before anything
//! was written.

use std::cell::Cell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::NaiveDate;
use clap::ArgGroup;
use indicatif::{ProgressBar, ProgressStyle};

use super::refuse;
use crate::config::Settings;
use crate::domain::{Symbol, Timeframe};
use crate::export::{self, Coins, Failure, Format, Progress, Request, Span, Summary};
use crate::shutdown::Shutdown;
use crate::startup;
use crate::store::coins;

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("coins").required(true).args(["symbols", "tracked", "all"])))]
pub struct ExportArgs {
    /// The directory to write into, created when missing: point freqtrade's `datadir` at it.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The candles' length: 1d, 4h or 1h.
    #[arg(long)]
    timeframe: Timeframe,
    /// feather (freqtrade's default), parquet, json, jsongz or csv.
    #[arg(long)]
    format: Format,
    /// These registered coins, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    symbols: Vec<Symbol>,
    /// Every tracked coin.
    #[arg(long)]
    tracked: bool,
    /// Every registered coin.
    #[arg(long)]
    all: bool,
    /// First day, YYYY-MM-DD (UTC); left out, from the first stored day.
    #[arg(long, value_parser = crate::domain::parse_day)]
    start_date: Option<NaiveDate>,
    /// Last day, YYYY-MM-DD (UTC); left out, to the last stored day.
    #[arg(long, value_parser = crate::domain::parse_day)]
    end_date: Option<NaiveDate>,
}

pub(super) async fn run(
    settings: Settings,
    args: ExportArgs,
    shutdown: Shutdown,
) -> anyhow::Result<ExitCode> {
    // Judged once already, before the database was looked for (`cli::run`).
    let request = match request_of(&args) {
        Ok(request) => request,
        Err(message) => return Ok(refuse(&message)),
    };
    let opening = startup::open_database(&settings, startup::SHORT_POOL_SIZE);
    let Some(pool) = shutdown.unless_raised(opening).await.transpose()? else {
        eprintln!("interrupted before any file was written");
        return Ok(ExitCode::FAILURE);
    };
    if let Coins::Listed(symbols) = &request.coins {
        let unknown = coins::unregistered(&pool, symbols).await?;
        if !unknown.is_empty() {
            return Ok(refuse(&unregistered(&unknown)));
        }
    }
    if let Err(message) = prepare(&args.out) {
        return Ok(refuse(&message));
    }
    let bar = progress_bar();
    let last = Cell::new(Progress::default());
    let mut in_flight = export::InFlight::default();
    let written = tokio::select! {
        written = export::to_directory(&pool, &request, &args.out, |progress| {
            bar.set_length(progress.coins_total);
            bar.set_position(progress.coins_done);
            bar.set_message(progress.rows.to_string());
            last.set(*progress);
        }, &mut in_flight) => Some(written),
        () = shutdown.recv() => None,
    };
    bar.finish_and_clear();
    Ok(match written {
        Some(outcome) => {
            pool.close().await;
            report(&request, &args.out, outcome)
        }
        // The pool is not closed: its connection may be stuck in the middle of a read
        // that a closing pool would wait for. Exiting closes it.
        None => {
            // The last coin counted may still be going into place: it is whole, so it is
            // finished rather than left as a temporary file.
            in_flight.finish().await;
            let last = last.get();
            eprintln!(
                "interrupted after {} of {} coins ({} rows): the files written are whole and the file being written \
                 was not put in place; run the export again to finish",
                last.coins_done, last.coins_total, last.rows
            );
            ExitCode::FAILURE
        }
    })
}

/// What `args` ask to export, or the sentence that refuses them before anything is read.
pub(super) fn request_of(args: &ExportArgs) -> Result<Request, String> {
    if let (Some(start), Some(end)) = (args.start_date, args.end_date)
        && end < start
    {
        return Err(format!(
            "--end-date {end} is before --start-date {start}: swap them, or leave either out to export every stored day on that side"
        ));
    }
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!(
            "--out {} is not a directory: name a directory (it is created when missing)",
            args.out.display()
        ));
    }
    let coins = if args.all {
        Coins::All
    } else if args.tracked {
        Coins::Tracked
    } else {
        // Each coin once: two writers of one file would race for its temporary name.
        let mut seen = HashSet::new();
        let symbols = args.symbols.iter().copied().filter(|s| seen.insert(*s));
        Coins::Listed(symbols.collect())
    };
    let span = Span {
        start: args.start_date,
        end: args.end_date,
    };
    Ok(Request::new(coins, args.timeframe, args.format, span))
}

/// The bar of coins done and rows written, ticking on its own.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} coins, {msg} rows written",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Creates `out` when missing and checks that a file can be made in it; on refusal,
/// removes what it created.
fn prepare(out: &Path) -> Result<(), String> {
    let first_missing = out.ancestors().take_while(|dir| !dir.exists()).last();
    if let Err(e) = std::fs::create_dir_all(out) {
        remove_created(out, first_missing);
        return Err(format!(
            "--out {} cannot be created ({e}): name a directory you can write to",
            out.display()
        ));
    }
    let probe = out.join(format!(
        ".price-history-probe.{}.{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            remove_created(out, first_missing);
            Err(format!(
                "--out {} cannot be written ({e}): name a directory you can write to",
                out.display()
            ))
        }
    }
}

/// Removes the empty directories from `out` up to `first_missing`, the ones
/// [`prepare`] created.
fn remove_created(out: &Path, first_missing: Option<&Path>) {
    let Some(first_missing) = first_missing else {
        return;
    };
    for dir in out.ancestors() {
        if std::fs::remove_dir(dir).is_err() || dir == first_missing {
            break;
        }
    }
}

fn unregistered(unknown: &[Symbol]) -> String {
    let names: Vec<&str> = unknown.iter().map(Symbol::as_str).collect();
    let (are, them) = if unknown.len() == 1 {
        ("is not a registered coin", "it")
    } else {
        ("are not registered coins", "them")
    };
    format!(
        "{} {are}: register {them} with `price-history coins add SYMBOL COINGECKO_ID`, or pick from `price-history coins list`",
        names.join(", ")
    )
}

/// Prints what was done, and why it stopped if it did; the exit code.
fn report(request: &Request, out: &Path, outcome: Result<Summary, Failure>) -> ExitCode {
    let done = match &outcome {
        Ok(summary) => summary,
        Err(failure) => &failure.done,
    };
    println!(
        "{} {} file(s) of {} candles written to {} ({} rows)",
        done.written,
        request.format,
        request.timeframe,
        out.display(),
        done.progress.rows
    );
    if !done.skipped.is_empty() {
        let skipped: Vec<&str> = done.skipped.iter().map(Symbol::as_str).collect();
        println!(
            "skipped {} coin(s) with no candle in the range: {}",
            skipped.len(),
            skipped.join(" ")
        );
    }
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!(
                "error: {failure}. The files written before are whole and the file being written was not put in place \
                 (its previous version, if any, is untouched); run the export again to finish"
            );
            ExitCode::FAILURE
        }
    }
}
