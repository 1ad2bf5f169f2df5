//! Many coins into one directory, one coin at a time: each coin's candles are streamed
//! from PostgreSQL into a temporary file, which is put in place while the next coin is
//! read. Memory stays flat whatever the number of coins, and a failure part-way leaves
//! every file either as it was or complete.

use std::fs::File;
use std::io;
use std::path::Path;
use std::pin::Pin;

use futures::StreamExt;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::candles::{Reader, Span, candles};
use super::encode::{ExportError, FileStream};
use super::format::Format;
use super::staged::Staged;
use crate::domain::{Symbol, Timeframe};
use crate::store::coins;

/// Registered symbols read at a time when every coin (or every tracked one) is exported.
const COINS_PAGE: i64 = 500;

/// Which coins an export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coins {
    /// These, in this order (each checked to be registered by the caller).
    Listed(Vec<Symbol>),
    /// Every tracked coin, by symbol.
    Tracked,
    /// Every registered coin, by symbol.
    All,
}

/// An export: which coins, which candles, in which format, over which days.
pub struct Request {
    pub coins: Coins,
    pub timeframe: Timeframe,
    pub format: Format,
    pub span: Span,
    read: Reader,
}

impl Request {
    pub fn new(coins: Coins, timeframe: Timeframe, format: Format, span: Span) -> Self {
        Request {
            read: candles(timeframe),
            coins,
            timeframe,
            format,
            span,
        }
    }
}

/// How far an export has come; reported after every chunk written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub coins_total: u64,
    /// Coins finished: written or skipped.
    pub coins_done: u64,
    /// Candles written, in every file so far.
    pub rows: u64,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub progress: Progress,
    /// Files put in place.
    pub written: u64,
    /// Coins with no candle in the span: no file written, none touched.
    pub skipped: Vec<Symbol>,
}

/// An export that stopped part-way: what it had done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{cause}", match .symbol { Some(symbol) => format!("while exporting {symbol}: "), None => String::new() })]
pub struct Failure {
    /// What was done before it stopped: the coin that failed is not in it.
    pub done: Summary,
    /// The coin being written; `None` when the coins could not be listed or the
    /// directory synced.
    pub symbol: Option<Symbol>,
    pub cause: ExportError,
}

/// The file an export is putting in place (its fsync and rename, on a blocking thread)
/// while it reads the next coin. It lives with the caller, so that an export dropped
/// part-way (a SIGTERM) can still finish the file, which is whole, rather than leave it
/// to a thread the process's exit would cut short.
#[derive(Debug, Default)]
pub struct InFlight(Option<(Symbol, JoinHandle<io::Result<()>>)>);

impl InFlight {
    /// Waits until the file is in place, if one was being put there; true when it is.
    pub async fn finish(&mut self) -> bool {
        matches!(committed(&mut self.0).await, Some((_, Ok(()))))
    }
}

/// Waits until the file being put in place, if any, is there, and says how that went. The
/// handle stays in `committing` until its task has ended: a wait dropped midway (by a stop)
/// leaves it for [`InFlight::finish`], where taking it out first would detach the task, to
/// be cut by the runtime's exit with its temporary file left behind.
async fn committed(
    committing: &mut Option<(Symbol, JoinHandle<io::Result<()>>)>,
) -> Option<(Symbol, io::Result<()>)> {
    let (symbol, commit) = committing.as_mut()?;
    let symbol = *symbol;
    let result = commit.await.unwrap_or_else(|e| Err(io::Error::other(e)));
    *committing = None;
    Some((symbol, result))
}

/// Writes a file per coin of `request` into `dir` (which exists and can be written),
/// calling `progress` as it goes. A coin's file is put in place (its fsync and rename) on
/// a blocking thread while the next coin is read, since the fsync is most of a file's
/// time on a disk, kept in `in_flight`; the directory is synced once, at the end.
pub async fn to_directory(
    pool: &PgPool,
    request: &Request,
    dir: &Path,
    progress: impl FnMut(&Progress),
    in_flight: &mut InFlight,
) -> Result<Summary, Failure> {
    let mut run = Run {
        pool,
        request,
        dir,
        summary: Summary::default(),
        progress,
        committing: &mut in_flight.0,
    };
    let result = run.all().await;
    // Whatever happened, the file being put in place is finished (it was whole), and the
    // renames done are made durable.
    let placed = run.put_in_place().await;
    let synced = File::open(dir).and_then(|dir| dir.sync_all());
    if let Err(mut failure) = result.and(placed) {
        failure.done = run.summary;
        return Err(failure);
    }
    synced.map_err(|e| run.failed(None, cannot_write(dir, e).into()))?;
    Ok(run.summary)
}

/// One export under way.
struct Run<'a, P> {
    pool: &'a PgPool,
    request: &'a Request,
    dir: &'a Path,
    summary: Summary,
    progress: P,
    /// The last file written, being put in place.
    committing: &'a mut Option<(Symbol, JoinHandle<io::Result<()>>)>,
}

impl<P: FnMut(&Progress)> Run<'_, P> {
    async fn all(&mut self) -> Result<(), Failure> {
        let request = self.request;
        self.summary.progress.coins_total = match &request.coins {
            Coins::Listed(symbols) => symbols.len() as u64,
            Coins::Tracked | Coins::All => coins::count(self.pool, request.coins == Coins::Tracked)
                .await
                .map_err(|e| self.failed(None, e.into()))?
                as u64,
        };
        (self.progress)(&self.summary.progress);
        let mut after = None;
        loop {
            let page = match &request.coins {
                Coins::Listed(symbols) if after.is_none() => symbols.clone(),
                Coins::Listed(_) => Vec::new(),
                Coins::Tracked | Coins::All => {
                    let tracked_only = request.coins == Coins::Tracked;
                    coins::symbols_after(self.pool, tracked_only, after, COINS_PAGE)
                        .await
                        .map_err(|e| self.failed(None, e.into()))?
                }
            };
            let Some(&last) = page.last() else {
                return self.put_in_place().await;
            };
            for symbol in page {
                self.one_coin(symbol).await?;
            }
            after = Some(last);
        }
    }

    /// Writes one coin's file and starts putting it in place; a coin with no candle in
    /// the span is skipped (nothing written, its previous file left alone).
    async fn one_coin(&mut self, symbol: Symbol) -> Result<(), Failure> {
        let rows_before = self.summary.progress.rows;
        match self.write(symbol).await {
            Ok(Some(staged)) => {
                self.put_in_place().await?;
                let commit = tokio::task::spawn_blocking(move || staged.commit());
                *self.committing = Some((symbol, commit));
            }
            Ok(None) => self.summary.skipped.push(symbol),
            Err(cause) => {
                // Its temporary file is thrown away: its rows are none of those written.
                self.summary.progress.rows = rows_before;
                return Err(self.failed(Some(symbol), cause));
            }
        }
        self.summary.progress.coins_done += 1;
        (self.progress)(&self.summary.progress);
        Ok(())
    }

    /// The coin's candles into a temporary file; `None` when it has none in the span.
    async fn write(&mut self, symbol: Symbol) -> Result<Option<Staged>, ExportError> {
        let request = self.request;
        let mut candles = (request.read)(self.pool, symbol, request.span).peekable();
        if Pin::new(&mut candles).peek().await.is_none() {
            return Ok(None);
        }
        let name = request.format.file_name(symbol, request.timeframe);
        let mut file = FileStream::new(candles.boxed(), request.format, request.timeframe)?;
        let mut staged = Staged::create(self.dir, &name).map_err(|e| cannot_write(self.dir, e))?;
        let rows_before = self.summary.progress.rows;
        while let Some(chunk) = file.next_chunk().await? {
            staged
                .write(&chunk)
                .map_err(|e| cannot_write(self.dir, e))?;
            self.summary.progress.rows = rows_before + file.rows();
            (self.progress)(&self.summary.progress);
        }
        tracing::debug!(%symbol, rows = file.rows(), file = %name, "file written");
        Ok(Some(staged))
    }

    /// Waits until the last file written is in place.
    async fn put_in_place(&mut self) -> Result<(), Failure> {
        let Some((symbol, result)) = committed(self.committing).await else {
            return Ok(());
        };
        match result.map_err(|e| cannot_write(self.dir, e)) {
            Ok(()) => {
                self.summary.written += 1;
                Ok(())
            }
            Err(e) => Err(self.failed(Some(symbol), e.into())),
        }
    }

    fn failed(&self, symbol: Option<Symbol>, cause: ExportError) -> Failure {
        Failure {
            done: self.summary.clone(),
            symbol,
            cause,
        }
    }
}

/// An I/O error that names the directory it happened in.
fn cannot_write(dir: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("could not write into {}: {e}", dir.display()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_for_a_file_dropped_midway_leaves_it_to_finish() {
        let (release, released) = mpsc::channel::<()>();
        let commit = tokio::task::spawn_blocking(move || {
            released.recv().map_err(io::Error::other)?;
            Ok(())
        });
        let mut in_flight = InFlight(Some((Symbol::BTC, commit)));

        let cut = tokio::time::timeout(Duration::from_millis(20), committed(&mut in_flight.0));
        assert!(cut.await.is_err(), "the file is still going into place");
        assert!(in_flight.0.is_some(), "and it is still in flight");
        release.send(()).unwrap();

        assert!(in_flight.finish().await, "finished after the cut wait");
        assert!(in_flight.0.is_none());
        assert!(!in_flight.finish().await, "nothing is left in flight");
    }
}
