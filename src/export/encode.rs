//! A file written batch by batch: [`FileStream`] reads a coin's candles a batch at a time,
//! has the format's encoder write each batch into a spool, and hands out what the spool
//! holds. The API sends those chunks as its answer, `export` appends them to a file; either
//! way only a batch and what the encoder buffers are ever in memory. The text formats
//! (JSON, JSON.gz, CSV) are here; Feather and Parquet in `columnar`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use futures::{Stream, StreamExt};
use sqlx::PgPool;

use super::candles::{Candle, CandleStream, Reader, Span};
use super::columnar;
use super::format::Format;
use crate::domain::{Symbol, Timeframe};

/// Candles read and encoded at a time: large enough that a batch costs little per row,
/// small enough (about 256 KiB) that memory stays flat however long the history.
const BATCH_ROWS: usize = 4096;

/// Why a file could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database failed (it went away, or refused a query).
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The encoder or the file refused a write.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What an encoder has written and its reader has not taken yet. The encoder owns one
/// handle and the [`FileStream`] another, since the Arrow writers own their sink.
#[derive(Debug, Clone, Default)]
pub(super) struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn take(&self) -> Vec<u8> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *bytes)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A format's writer: the header when made, then batches, then whatever ends the file.
pub(super) trait Encoder: Send {
    fn write(&mut self, candles: &[Candle]) -> io::Result<()>;
    fn finish(self: Box<Self>) -> io::Result<()>;
}

fn encoder(format: Format, timeframe: Timeframe, spool: Spool) -> io::Result<Box<dyn Encoder>> {
    Ok(match format {
        Format::Feather => Box::new(columnar::Feather::new(timeframe, spool)?),
        Format::Parquet => Box::new(columnar::Parquet::new(timeframe, spool)?),
        Format::Json => Box::new(Text::new(TextKind::Json, timeframe, spool)?),
        Format::JsonGz => {
            let gzip = GzEncoder::new(spool, flate2::Compression::default());
            Box::new(Text::new(TextKind::Json, timeframe, gzip)?)
        }
        Format::Csv => Box::new(Text::new(TextKind::Csv, timeframe, spool)?),
    })
}

/// One coin's candles as a file, produced chunk by chunk as the candles are read.
pub struct FileStream<'a> {
    candles: CandleStream<'a>,
    /// `None` once the file is complete.
    encoder: Option<Box<dyn Encoder>>,
    spool: Spool,
    batch: Vec<Candle>,
    rows: u64,
}

impl<'a> FileStream<'a> {
    pub fn new(
        candles: CandleStream<'a>,
        format: Format,
        timeframe: Timeframe,
    ) -> io::Result<Self> {
        let spool = Spool::default();
        Ok(FileStream {
            candles,
            encoder: Some(encoder(format, timeframe, spool.clone())?),
            spool,
            batch: Vec::with_capacity(BATCH_ROWS),
            rows: 0,
        })
    }

    /// The candles written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next bytes of the file; `None` once all of it has been handed out. A file is
    /// complete only when this has returned `None`: a caller that stops earlier, or gets
    /// an error, holds part of a file.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        while let Some(encoder) = self.encoder.as_mut() {
            self.batch.clear();
            while self.batch.len() < BATCH_ROWS {
                match self.candles.next().await {
                    Some(candle) => self.batch.push(candle?),
                    None => break,
                }
            }
            let ended = self.batch.len() < BATCH_ROWS;
            if !self.batch.is_empty() {
                encoder.write(&self.batch)?;
                self.rows += self.batch.len() as u64;
            }
            if ended && let Some(encoder) = self.encoder.take() {
                encoder.finish()?;
            }
            let chunk = self.spool.take();
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }
}

/// The file of one coin's candles as a stream of chunks that owns what it reads, for an
/// HTTP answer: a task of its own reads the candles whole first (a read is bounded: 1461
/// days of hours, 35,064 candles, a few MB), so that its database connection goes back
/// to the pool at once however slowly the client takes the file, then encodes at most
/// two chunks ahead of the client, and stops when the stream is dropped (the client
/// left). A failure part-way ends the stream with an error, so that the client sees a cut
/// answer, never a short file that looks whole.
pub fn spawn_file(
    pool: PgPool,
    read: Reader,
    symbol: Symbol,
    span: Span,
    format: Format,
    timeframe: Timeframe,
) -> impl Stream<Item = io::Result<Vec<u8>>> + Send + 'static {
    let (chunks, received) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let candles: Vec<sqlx::Result<Candle>> = read(&pool, symbol, span).collect().await;
        let candles = futures::stream::iter(candles).boxed();
        let mut file = match FileStream::new(candles, format, timeframe) {
            Ok(file) => file,
            Err(e) => return drop(chunks.send(Err(e)).await),
        };
        loop {
            let chunk = match file.next_chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, %symbol, %format, "a streamed file failed part-way");
                    Err(io::Error::other(e))
                }
            };
            let failed = chunk.is_err();
            if chunks.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    })
}

/// A writer that must be told the file is over: gzip writes its trailer.
trait Sink: Write + Send {
    fn close(self) -> io::Result<()>;
}

impl Sink for Spool {
    fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for GzEncoder<Spool> {
    fn close(self) -> io::Result<()> {
        self.finish().map(drop)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    /// freqtrade's JSON: `[[ms, open, high, low, close, volume], ...]`.
    Json,
    /// `date,open,high,low,close,volume,source`, dates as [`Timeframe::label`] writes them.
    Csv,
}

/// A period's start as CSV writes it (INTERFACE.md, "Export"): the day (`2024-01-01`)
/// for days, RFC 3339 UTC (`2024-01-01T04:00:00Z`) for hours.
struct Label(Timeframe, DateTime<Utc>);

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Timeframe::Day => write!(f, "{}", self.1.date_naive()),
            Timeframe::FourHours | Timeframe::Hour => {
                write!(f, "{}", self.1.format("%Y-%m-%dT%H:%M:%SZ"))
            }
        }
    }
}

/// The CSV header, as INTERFACE.md fixes it.
const CSV_HEADER: &str = "date,open,high,low,close,volume,source\n";

/// JSON and CSV: one line of text per candle, numbers as the shortest decimal that reads
/// back as the same float64.
struct Text<S> {
    kind: TextKind,
    timeframe: Timeframe,
    out: S,
    first: bool,
    line: String,
}

impl<S: Sink> Text<S> {
    fn new(kind: TextKind, timeframe: Timeframe, mut out: S) -> io::Result<Self> {
        out.write_all(match kind {
            TextKind::Json => b"[",
            TextKind::Csv => CSV_HEADER.as_bytes(),
        })?;
        Ok(Text {
            kind,
            timeframe,
            out,
            first: true,
            line: String::with_capacity(128),
        })
    }
}

impl<S: Sink> Encoder for Text<S> {
    fn write(&mut self, candles: &[Candle]) -> io::Result<()> {
        let mut text = String::with_capacity(candles.len() * 80);
        for c in candles {
            self.line.clear();
            let _ = match self.kind {
                TextKind::Json => write!(
                    self.line,
                    "{}[{},{},{},{},{},{}]",
                    if self.first { "" } else { "," },
                    c.start.timestamp_millis(),
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume
                ),
                TextKind::Csv => writeln!(
                    self.line,
                    "{},{},{},{},{},{},{}",
                    Label(self.timeframe, c.start),
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.source
                ),
            };
            self.first = false;
            text.push_str(&self.line);
        }
        self.out.write_all(text.as_bytes())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        if self.kind == TextKind::Json {
            self.out.write_all(b"]")?;
        }
        self.out.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::day;

    fn start_of_day(date: chrono::NaiveDate) -> DateTime<Utc> {
        date.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    #[test]
    fn csv_labels_a_day_by_its_date_and_an_hour_by_its_utc_time() {
        let start = start_of_day(day("2024-01-01"));
        assert_eq!(Label(Timeframe::Day, start).to_string(), "2024-01-01");
        let four = start + chrono::TimeDelta::hours(4);
        assert_eq!(
            Label(Timeframe::FourHours, four).to_string(),
            "2024-01-01T04:00:00Z"
        );
        assert_eq!(
            Label(Timeframe::Hour, four).to_string(),
            "2024-01-01T04:00:00Z"
        );
    }

    pub(crate) fn candle(date: &str, close: f64) -> Candle {
        Candle {
            start: start_of_day(day(date)),
            open: 1.5,
            high: 2.25,
            low: 0.000_012_5,
            close,
            volume: 1e6,
            source: "coingecko",
            disputed: None,
        }
    }

    async fn whole_file(format: Format, candles: Vec<Candle>) -> (Vec<u8>, u64) {
        let stream = futures::stream::iter(candles.into_iter().map(Ok)).boxed();
        let mut file = FileStream::new(stream, format, Timeframe::Day).unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = file.next_chunk().await.unwrap() {
            bytes.extend_from_slice(&chunk);
        }
        (bytes, file.rows())
    }

    #[tokio::test]
    async fn json_and_csv_write_every_candle_with_numbers_that_read_back_exactly() {
        let candles = vec![candle("2024-01-01", 42_000.1), candle("2024-01-03", 100.0)];
        let (json, rows) = whole_file(Format::Json, candles.clone()).await;
        assert_eq!(rows, 2);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "[[1704067200000,1.5,2.25,0.0000125,42000.1,1000000],\
             [1704240000000,1.5,2.25,0.0000125,100,1000000]]"
        );
        let (csv, _) = whole_file(Format::Csv, candles).await;
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "date,open,high,low,close,volume,source\n\
             2024-01-01,1.5,2.25,0.0000125,42000.1,1000000,coingecko\n\
             2024-01-03,1.5,2.25,0.0000125,100,1000000,coingecko\n"
        );
    }

    #[tokio::test]
    async fn a_file_of_many_batches_comes_in_several_chunks_and_gzip_reads_back_whole() {
        let candles: Vec<Candle> = (0..3 * BATCH_ROWS as i64)
            .map(|i| Candle {
                start: start_of_day(day("1900-01-01")) + chrono::TimeDelta::days(i),
                ..candle("1900-01-01", i as f64)
            })
            .collect();
        let stream = futures::stream::iter(candles.clone().into_iter().map(Ok)).boxed();
        let mut file = FileStream::new(stream, Format::Json, Timeframe::Day).unwrap();
        let mut chunks = 0;
        while file.next_chunk().await.unwrap().is_some() {
            chunks += 1;
        }
        assert!(chunks >= 3, "{chunks} chunks");

        let (gzipped, rows) = whole_file(Format::JsonGz, candles.clone()).await;
        assert_eq!(rows, candles.len() as u64);
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut json)
            .unwrap();
        let (plain, _) = whole_file(Format::Json, candles).await;
        assert_eq!(json.as_bytes(), plain);
    }

    #[tokio::test]
    async fn no_candles_make_a_valid_empty_file() {
        assert_eq!(whole_file(Format::Json, vec![]).await.0, b"[]");
        assert_eq!(
            whole_file(Format::Csv, vec![]).await.0,
            CSV_HEADER.as_bytes()
        );
    }

    #[tokio::test]
    async fn a_database_error_is_returned_and_the_file_never_completes() {
        let stream = futures::stream::iter(vec![
            Ok(candle("2024-01-01", 1.0)),
            Err(sqlx::Error::PoolTimedOut),
        ])
        .boxed();
        let mut file = FileStream::new(stream, Format::Json, Timeframe::Day).unwrap();
        assert!(matches!(
            file.next_chunk().await,
            Err(ExportError::Database(_))
        ));
    }
}
