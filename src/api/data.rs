//! The `Data` tag: the stored prices in three timeframes (`1d`, `4h`, `1h`), as JSON, CSV,
//! Parquet or Feather, how complete a range is, and the status of each day for the
//! calendar. The hours' own shapes are in `hours`.

use std::marker::PhantomData;

use chrono::{NaiveDate, Utc};
use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{Enum, Object, OpenApi, ResponseContent, Union};
use rust_decimal::Decimal;

use super::day::Day;
use super::error::{ErrorBody, Refusal, Unavailable, refused};
use super::hours::{
    FourHourPrice, HOURS_CSV_HEADER, HourlyCoverageStats, HourlyPrice, HoursPerDay,
};
use super::responses::responses;
use super::timeframe::{TimeframeParam, or_days};
use super::wire::text_payload;
use super::{ApiState, ApiTags};
use crate::domain::{Coin, HourRange, MAX_RANGE_DAYS, PriceSource, Symbol, Timeframe, today_utc};
use crate::export::{self, Format, Span};
use crate::store::coins::{self, CoinRecord};
use crate::store::gaps::{self, Coverage};
use crate::store::hour_rows::{self, Rendering};
use crate::store::second_source::{self, SourcedCandle};
use crate::store::{days, hourly_coverage};

/// The longest range one read may cover: twenty years, which bounds the size of an
/// answer (and the calendar `coverage` generates) while covering all of BTC's history.
pub const MAX_READ_DAYS: i64 = 7305;

/// The CSV header, as INTERFACE.md fixes it.
const CSV_HEADER: &str = "date,open,high,low,close,volume,provisional,source";

pub struct DataApi;

#[OpenApi(tag = "ApiTags::Data")]
impl DataApi {
    /// Stored prices: days, hours or four-hour blocks
    ///
    /// The stored candles of a range, ascending by time; periods not stored are absent,
    /// never invented. `timeframe` picks them: `1d` (the default) the daily candles
    /// (`DailyPrice`), `1h` the hourly ones (`HourlyPrice`), `4h` blocks made on read
    /// from the stored hours of each block starting at 00, 04, 08, 12, 16 or 20 UTC
    /// (`FourHourPrice`, with `hours` saying how many it holds). A `1h` or `4h` read covers
    /// at most 1461 days. As JSON, or as CSV with `Accept: text/csv`: `1d` with the header
    /// `date,open,high,low,close,volume,provisional,source`, hours with
    /// `time,open,high,low,close,volume,source,disputed,hours,provisional` (`hours` is 1
    /// for `1h`). A row with `provisional: true` was not over when it was fetched: its
    /// close and volume may still change.
    ///
    /// `source` says where each row came from, and with it what `volume` measures, always
    /// in USD: `coingecko` rows carry CoinGecko's whole-market volume (the trailing 24
    /// hours over every exchange it tracks; for an hour an even 24th of it), `coinbase`
    /// rows one exchange's, Coinbase Exchange's traded volume × close, often 10–100×
    /// smaller. Where a series changes source its volume jumps; that is no market event,
    /// so compare volumes within one source only.
    ///
    /// As a file for data tools, the same as `price-history export` writes: Parquet with
    /// `Accept: application/vnd.apache.parquet`, Feather (an Arrow IPC file,
    /// LZ4-compressed) with `Accept: application/vnd.apache.arrow.file`, streamed as it is
    /// read. Their columns are `date` (UTC timestamp, milliseconds), `open`, `high`,
    /// `low`, `close`, `volume` (float64, its meaning per `source` as above) and `source`,
    /// plus `disputed` for `1h` and `4h`; provisional days and hours (and `4h` blocks not
    /// over or holding a provisional hour) are left out. `format` picks the answer from
    /// the URL alone (`pandas.read_parquet(url)` sends no `Accept`) and overrides
    /// `Accept`; `*/*` or no `Accept` is JSON.
    #[oai(path = "/api/v1/prices", method = "get", operation_id = "listPrices")]
    // poem-openapi takes each query parameter as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    async fn prices(
        &self,
        state: Data<&ApiState>,
        request: &Request,
        /// The coin's ticker, case-insensitive.
        #[oai(default = "default_symbol")]
        symbol: Query<String>,
        /// First day, `YYYY-MM-DD` (UTC).
        start_date: Query<Day>,
        /// Last day, `YYYY-MM-DD` (UTC), on or after `start_date`, at most 7305 days (20 years) later.
        end_date: Query<Day>,
        /// The candles' length: `1d` (the default), `4h` or `1h`.
        timeframe: Query<Option<TimeframeParam>>,
        /// The answer's format, whatever `Accept` says: `json`, `csv`, `parquet` or `feather`.
        format: Query<Option<PriceFormat>>,
    ) -> PricesResponse {
        let Some(format) = format.0.or_else(|| negotiate(request)) else {
            return PricesResponse::NotAcceptable(not_acceptable());
        };
        let timeframe = or_days(timeframe.0);
        let target = read_target(&state, &symbol, start_date.0.0, end_date.0.0, timeframe);
        let (range, record) = match target.await {
            Ok(target) => target,
            Err(refused) => return refused,
        };
        if let Some(file) = format.file() {
            return file_answer(
                state.pool.clone(),
                record.coin.symbol,
                range,
                file,
                timeframe,
            );
        }
        match Rows::read(&state.pool, &record.coin, range, timeframe, format).await {
            Ok(rows) => PricesResponse::Ok(rows.body(format)),
            Err(e) => PricesResponse::unavailable(&e),
        }
    }

    /// Coverage of a range, in days or in hours
    ///
    /// With `timeframe=1d` (the default, `Coverage`): how many days of the range are
    /// stored, and which are missing. Days before the coin's first day of data, and after
    /// today (UTC), are not expected; a provisional day counts as missing. Missing days
    /// older than the CoinGecko plan serves are counted in `out_of_plan_days`, apart from
    /// the gaps.
    /// `days_by_source` splits the stored days by where they came from.
    ///
    /// With `timeframe=1h` or `4h` (`HourlyCoverage`, at most 1461 days): the same in
    /// hours, which `4h` blocks are made of: the hours expected (from the coin's first day
    /// and where its hours begin, through the last complete hour), those stored, those
    /// without trades (accounted for), the runs of missing hours (the first 1000 listed),
    /// the stored hours by source and the disputed ones.
    #[oai(
        path = "/api/v1/coverage",
        method = "get",
        operation_id = "getCoverage"
    )]
    async fn coverage(
        &self,
        state: Data<&ApiState>,
        /// The coin's ticker, case-insensitive.
        #[oai(default = "default_symbol")]
        symbol: Query<String>,
        /// First day, `YYYY-MM-DD` (UTC).
        start_date: Query<Day>,
        /// Last day, `YYYY-MM-DD` (UTC), on or after `start_date`, at most 7305 days (20 years) later.
        end_date: Query<Day>,
        /// `1d` (the default): coverage in days; `1h` or `4h`: in hours.
        timeframe: Query<Option<TimeframeParam>>,
    ) -> CoverageResponse {
        let timeframe = or_days(timeframe.0);
        let target = read_target(&state, &symbol, start_date.0.0, end_date.0.0, timeframe);
        let (range, record) = match target.await {
            Ok(target) => target,
            Err(refused) => return refused,
        };
        let coverage = async {
            if timeframe.is_hourly() {
                let expected = expected(&state, &record, range).await?;
                let coverage =
                    hourly_coverage::coverage(&state.pool, record.coin.symbol, expected).await?;
                let days = (range.start, range.end);
                let symbol = record.coin.symbol.as_str();
                return Ok(CoverageAnswer::Hours(HourlyCoverageStats::of(
                    symbol,
                    days,
                    timeframe.as_str(),
                    coverage,
                )));
            }
            let reach = state.registry.reach().await?;
            let coin = &record.coin;
            gaps::coverage(
                &state.pool,
                coin,
                reach,
                today_utc(),
                range.start,
                range.end,
            )
            .await
            .map(|coverage| CoverageAnswer::Days(coverage.into()))
        };
        match coverage.await {
            Ok(coverage) => CoverageResponse::Ok(Json(coverage)),
            Err(e) => CoverageResponse::unavailable(&e),
        }
    }

    /// Status of every day of a range
    ///
    /// One letter per day of the range, in order, for a calendar: `s` stored (from
    /// CoinGecko), `f` stored from the second source (Coinbase Exchange), `p`
    /// provisional (stored before the day was over; counts as missing), `m` missing and
    /// served by the CoinGecko plan (a gap a job can fill), `o` missing and older than
    /// the plan serves (out of plan), `-` not expected (before the coin's first day of
    /// data, or after today, UTC). Twenty years is 7305 letters.
    ///
    /// With `timeframe=1h` or `4h` (at most 1461 days) it adds `hours`: for every day, in
    /// the letters' order, the hours expected, stored, provisional, without trades,
    /// missing and disputed, so that a calendar can show the missing hours of each day.
    #[oai(
        path = "/api/v1/days",
        method = "get",
        operation_id = "listDayStatuses"
    )]
    async fn days(
        &self,
        state: Data<&ApiState>,
        /// The coin's ticker, case-insensitive.
        #[oai(default = "default_symbol")]
        symbol: Query<String>,
        /// First day, `YYYY-MM-DD` (UTC).
        start_date: Query<Day>,
        /// Last day, `YYYY-MM-DD` (UTC), on or after `start_date`, at most 7305 days (20 years) later.
        end_date: Query<Day>,
        /// `1d` (the default): the letters alone; `1h` or `4h`: the hours of each day too.
        timeframe: Query<Option<TimeframeParam>>,
    ) -> DaysResponse {
        let timeframe = or_days(timeframe.0);
        let target = read_target(&state, &symbol, start_date.0.0, end_date.0.0, timeframe);
        let (range, record) = match target.await {
            Ok(target) => target,
            Err(refused) => return refused,
        };
        let coin = &record.coin;
        let today = today_utc();
        let answer = async {
            let reach = state.registry.reach().await?;
            let bounds = days::Bounds {
                first_day: coin.first_day,
                plan_first_day: reach.first_served_day(today),
                today,
            };
            let statuses = days::statuses(
                &state.pool,
                coin.symbol.as_str(),
                range.start,
                range.end,
                bounds,
            )
            .await?;
            let hours = match timeframe.is_hourly() {
                true => Some(hours_per_day(&state, &record, range).await?),
                false => None,
            };
            Ok::<_, sqlx::Error>((bounds, statuses, hours))
        };
        match answer.await {
            Ok((bounds, statuses, hours)) => DaysResponse::Ok(Json(DayStatuses {
                symbol: coin.symbol.as_str().to_owned(),
                start_date: Day(range.start),
                end_date: Day(range.end),
                first_day: bounds.first_day.map(Day),
                plan_first_day: bounds.plan_first_day.map(Day),
                counts: DayCounts::of(&statuses),
                statuses,
                hours,
            })),
            Err(e) => DaysResponse::unavailable(&e),
        }
    }
}

fn default_symbol() -> String {
    Symbol::BTC.as_str().to_owned()
}

/// What every read starts with: the symbol and range checked (for `timeframe`), and the
/// coin registered. Else the read's answer: its 400 for a malformed symbol or range or a
/// coin not registered, its 503 when the database did not answer.
async fn read_target<R: Refusal + Unavailable>(
    state: &ApiState,
    symbol: &str,
    start: NaiveDate,
    end: NaiveDate,
    timeframe: Timeframe,
) -> Result<(ReadRange, CoinRecord), R> {
    let bad_request = |body| R::refusal(StatusCode::BAD_REQUEST, body);
    let (symbol, range) = ReadRange::parse(symbol, start, end, timeframe).map_err(bad_request)?;
    match coins::get(&state.pool, symbol).await {
        Ok(Some(record)) => Ok((range, record)),
        Ok(None) => Err(bad_request(ErrorBody::unknown_symbol(symbol))),
        Err(e) => Err(R::unavailable(&e)),
    }
}

/// A range to read: ordered and at most [`MAX_READ_DAYS`] long, [`MAX_RANGE_DAYS`] for
/// hours. Unlike a job's range it may reach into the future or before the coin's first
/// day: such days are simply not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadRange {
    start: NaiveDate,
    end: NaiveDate,
}

impl ReadRange {
    fn parse(
        symbol: &str,
        start: NaiveDate,
        end: NaiveDate,
        timeframe: Timeframe,
    ) -> Result<(Symbol, ReadRange), Json<ErrorBody>> {
        let symbol: Symbol = symbol.parse().map_err(|e| ErrorBody::invalid_symbol(&e))?;
        if end < start {
            return Err(ErrorBody::json(
                "end_before_start",
                format!(
                    "end_date {end} is before start_date {start}: swap them or pick an end on or after the start"
                ),
            ));
        }
        let days = (end - start).num_days() + 1;
        if timeframe.is_hourly() && days > MAX_RANGE_DAYS {
            return Err(ErrorBody::json(
                "range_too_long",
                format!(
                    "the range covers {days} days but a {timeframe} read covers at most {MAX_RANGE_DAYS} days (four years, \
                     {} hours): split it, or read 1d",
                    MAX_RANGE_DAYS * 24
                ),
            ));
        }
        if days > MAX_READ_DAYS {
            return Err(ErrorBody::json(
                "range_too_long",
                format!(
                    "the range covers {days} days but at most {MAX_READ_DAYS} (20 years) can be read at once: split it"
                ),
            ));
        }
        Ok((symbol, ReadRange { start, end }))
    }

    /// The part of the range that can hold rows: from the coin's first day on; `None`
    /// when the whole range is earlier and there is nothing to ask the database.
    fn queried(self, coin: &Coin) -> Option<(NaiveDate, NaiveDate)> {
        let start = coin
            .first_day
            .map_or(self.start, |first| self.start.max(first));
        (start <= self.end).then_some((start, self.end))
    }
}

/// The rows of a JSON or CSV answer, in their timeframe.
enum Rows {
    Days(Vec<SourcedCandle>),
    /// Hours or `4h` blocks, rendered by the store in the answer's format
    /// ([`hour_rows`]): JSON objects joined by commas, or CSV lines by newlines.
    Rendered(String),
}

impl Rows {
    /// The stored rows of `coin` in `range`, from the coin's first day on.
    async fn read(
        pool: &sqlx::PgPool,
        coin: &Coin,
        range: ReadRange,
        timeframe: Timeframe,
        format: PriceFormat,
    ) -> sqlx::Result<Rows> {
        let Some((start, end)) = range.queried(coin) else {
            return Ok(match timeframe {
                Timeframe::Day => Rows::Days(Vec::new()),
                _ => Rows::Rendered(String::new()),
            });
        };
        let hours = HourRange::of_days(start, end).expect("an ordered range");
        let rendering = match format {
            PriceFormat::Csv => Rendering::Csv,
            _ => Rendering::Json,
        };
        Ok(match timeframe {
            Timeframe::Day => {
                Rows::Days(second_source::list_sourced(pool, coin.symbol, start, end).await?)
            }
            Timeframe::Hour => {
                Rows::Rendered(hour_rows::hours(pool, coin.symbol, hours, rendering).await?)
            }
            Timeframe::FourHours => Rows::Rendered(
                hour_rows::blocks(pool, coin.symbol, hours, Utc::now(), rendering).await?,
            ),
        })
    }

    fn body(self, format: PriceFormat) -> PricesBody {
        match (self, format) {
            (Rows::Days(days), PriceFormat::Csv) => PricesBody::Csv(Csv::of(&days)),
            (Rows::Days(days), _) => PricesBody::Json(JsonPrices::Objects(Json(PriceList {
                prices: days.into_iter().map(|d| PriceRow::Day(d.into())).collect(),
            }))),
            (Rows::Rendered(lines), PriceFormat::Csv) => {
                let newline = if lines.is_empty() { "" } else { "\n" };
                PricesBody::Csv(Csv(format!("{HOURS_CSV_HEADER}\n{lines}{newline}")))
            }
            (Rows::Rendered(objects), _) => {
                PricesBody::Json(JsonPrices::Rendered(format!("{{\"prices\":[{objects}]}}")))
            }
        }
    }
}

/// The hours a read of `range` expects of the coin now ([`expected_hours`]), from its
/// hourly side, its product's check and the plan's reach.
async fn expected(
    state: &ApiState,
    record: &CoinRecord,
    range: ReadRange,
) -> sqlx::Result<Option<HourRange>> {
    let reach = state.registry.reach().await?;
    let fallback = state.registry.fallback_source();
    let days = (range.start, range.end);
    hourly_coverage::expected_of(&state.pool, record, fallback, reach, days, Utc::now()).await
}

/// The hours of each day of `range`, for the calendar.
async fn hours_per_day(
    state: &ApiState,
    record: &CoinRecord,
    range: ReadRange,
) -> sqlx::Result<HoursPerDay> {
    let expected = expected(state, record, range).await?;
    let days = (range.start, range.end);
    let rows =
        hourly_coverage::hours_per_day(&state.pool, record.coin.symbol, days, expected).await?;
    Ok(HoursPerDay::of((range.start, range.end), &rows, expected))
}

/// What `GET /api/v1/prices` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum PriceFormat {
    /// `{"prices": [...]}`, every field as the API documents it.
    Json,
    /// The header `date,open,high,low,close,volume,provisional,source` (`1d`) or
    /// `time,open,high,low,close,volume,source,disputed,hours,provisional` (`4h`, `1h`),
    /// then a line per row.
    Csv,
    /// A Parquet file, as `price-history export --format parquet` writes it.
    Parquet,
    /// A Feather (Arrow IPC, LZ4) file, as `price-history export --format feather` writes it.
    Feather,
}

impl PriceFormat {
    /// The media types served, in the order `406` lists them.
    const MEDIA_TYPES: [&str; 4] = [
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
        "application/vnd.apache.arrow.file",
    ];

    /// The formats in the order `406` lists them, which breaks a tie.
    const ALL: [PriceFormat; 4] = [
        PriceFormat::Json,
        PriceFormat::Csv,
        PriceFormat::Parquet,
        PriceFormat::Feather,
    ];

    /// Its media type.
    fn media_type(self) -> &'static str {
        match self {
            PriceFormat::Json => Self::MEDIA_TYPES[0],
            PriceFormat::Csv => Self::MEDIA_TYPES[1],
            PriceFormat::Parquet => Self::MEDIA_TYPES[2],
            PriceFormat::Feather => Self::MEDIA_TYPES[3],
        }
    }

    /// What `ranges` (media range and q, in `Accept`'s order) say of it: the quality of
    /// the most specific range matching its type (`text/csv`, then `text/*`, then `*/*`, as
    /// RFC 9110 has it), so that a type refused by name (`q=0`) is not brought back by a
    /// wildcard; then how specific that range is (2, 1, 0) and where it stands, which
    /// break a tie: a type named beats one a wildcard brings, and the first named wins.
    fn quality_in(self, ranges: &[(String, f32)]) -> Option<(f32, u8, usize)> {
        let media = self.media_type();
        let kind = media.split('/').next().unwrap_or_default();
        let wildcard = format!("{kind}/*");
        [(media, 2), (wildcard.as_str(), 1), ("*/*", 0)]
            .into_iter()
            .find_map(|(wanted, specific)| {
                let at = ranges.iter().position(|(range, _)| range == wanted)?;
                Some((ranges[at].1, specific, at))
            })
    }

    /// The export's format of a file answer; `None` for JSON and CSV.
    fn file(self) -> Option<Format> {
        match self {
            PriceFormat::Json | PriceFormat::Csv => None,
            PriceFormat::Parquet => Some(Format::Parquet),
            PriceFormat::Feather => Some(Format::Feather),
        }
    }
}

/// The format `Accept` ranks highest among those served (the first one listed on a tie);
/// JSON when there is no `Accept`; `None` when it names none that is served.
fn negotiate(request: &Request) -> Option<PriceFormat> {
    let Some(accept) = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .filter(|accept| !accept.trim().is_empty())
    else {
        return Some(PriceFormat::Json);
    };
    let ranges: Vec<(String, f32)> = accept
        .split(',')
        .map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            // `q` in any case; one that is no number from 0 to 1 counts as 1, leniently.
            let quality = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, q)| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            (media, quality)
        })
        .collect();
    // Highest quality, then the most specific range, then the first in `Accept`, then the
    // order the formats are listed in.
    type Rank = (f32, u8, std::cmp::Reverse<usize>);
    let ranked =
        |(q, specific, at): (f32, u8, usize)| -> Rank { (q, specific, std::cmp::Reverse(at)) };
    let mut best: Option<(Rank, PriceFormat)> = None;
    for format in PriceFormat::ALL {
        let Some(said) = format.quality_in(&ranges).filter(|(q, _, _)| *q > 0.0) else {
            continue;
        };
        let rank = ranked(said);
        if best.as_ref().is_none_or(|(best, _)| rank > *best) {
            best = Some((rank, format));
        }
    }
    best.map(|(_, format)| format)
}

/// The answer to an `Accept` that names nothing served: what is.
fn not_acceptable() -> Json<ErrorBody> {
    ErrorBody::json(
        "not_acceptable",
        format!(
            "Accept names no type this endpoint serves: it answers {}; send one of them (or */*), \
             or pick the format with format=json, csv, parquet or feather",
            PriceFormat::MEDIA_TYPES.join(", ")
        ),
    )
}

/// A Parquet or Feather answer: the file `export` writes for the coin, the range and the
/// timeframe, streamed as it is read.
fn file_answer(
    pool: sqlx::PgPool,
    coin: Symbol,
    range: ReadRange,
    format: Format,
    timeframe: Timeframe,
) -> PricesResponse {
    let span = Span {
        start: Some(range.start),
        end: Some(range.end),
    };
    let read = export::candles(timeframe);
    let chunks = export::spawn_file(pool, read, coin, span, format, timeframe);
    let body = Body::from_bytes_stream(chunks);
    let name = format.file_name(coin, timeframe);
    PricesResponse::Ok(match format {
        Format::Feather => PricesBody::Feather(File::new(body, name)),
        _ => PricesBody::Parquet(File::new(body, name)),
    })
}

/// A file answer's type, fixed at compile time so that the document names it.
pub trait FileType: Send {
    const MEDIA_TYPE: &'static str;
}

/// `application/vnd.apache.parquet`.
pub struct ParquetType;

impl FileType for ParquetType {
    const MEDIA_TYPE: &'static str = "application/vnd.apache.parquet";
}

/// `application/vnd.apache.arrow.file`: Feather version 2 is the Arrow IPC file format.
pub struct FeatherType;

impl FileType for FeatherType {
    const MEDIA_TYPE: &'static str = "application/vnd.apache.arrow.file";
}

/// A binary file, streamed, saved under its export name by a browser.
pub struct File<T> {
    body: Body,
    name: String,
    kind: PhantomData<T>,
}

impl<T: FileType> File<T> {
    fn new(body: Body, name: String) -> Self {
        File {
            body,
            name,
            kind: PhantomData,
        }
    }
}

impl<T: FileType> Payload for File<T> {
    const CONTENT_TYPE: &'static str = T::MEDIA_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            format: Some("binary"),
            ..MetaSchema::new("string")
        }))
    }
}

impl<T: FileType> IntoResponse for File<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .status(StatusCode::OK)
            .content_type(Self::CONTENT_TYPE)
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", self.name),
            )
            .body(self.body)
    }
}

/// One stored UTC day. Prices are in USD; every number is a decimal string, so that no
/// digit is lost to floating point.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DailyPrice")]
pub struct Price {
    /// The UTC day.
    pub date: Day,
    /// First price of the day.
    pub open: Decimal,
    /// Highest price of the day.
    pub high: Decimal,
    /// Lowest price of the day.
    pub low: Decimal,
    /// Last price of the day.
    pub close: Decimal,
    /// In USD, and what it measures depends on `source`. `coingecko`: the whole market's
    /// trailing 24-hour volume (every exchange CoinGecko tracks) as last reported that
    /// day. `coinbase`: what traded on Coinbase Exchange alone that day (its base volume
    /// × close), often 10–100× less. Where a series changes source the volume jumps; that
    /// is no market event, so compare volumes within one source only.
    pub volume: Decimal,
    /// The day was not over when it was fetched: close and volume may still change, and
    /// coverage counts it as missing until a later job replaces it.
    pub provisional: bool,
    /// How many of CoinGecko's price points the day was built from: about 24 from hourly
    /// data, 1 from daily data (before 2018-01-30). Null for a day stored before the
    /// count was recorded, and for a day from the second source.
    #[oai(nullable)]
    pub points: Option<i32>,
    /// Where the day came from.
    pub source: Source,
}

/// Where a stored day or hour came from, and so what its volume measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "PriceSource", rename_all = "lowercase")]
pub enum Source {
    /// CoinGecko, the primary source: prices aggregated over the market, volume the whole
    /// market's trailing 24 hours in USD (for an hour, a 24th of it). Its hours are built
    /// from its hourly price points.
    Coingecko,
    /// Coinbase Exchange's candles, true OHLCV of one exchange, volume what traded there
    /// in USD: the second source for days older than the CoinGecko plan serves, and the
    /// hourly candles of a coin with a usable product.
    Coinbase,
}

impl From<PriceSource> for Source {
    fn from(source: PriceSource) -> Self {
        match source {
            PriceSource::CoinGecko => Source::Coingecko,
            PriceSource::Coinbase => Source::Coinbase,
        }
    }
}

impl From<SourcedCandle> for Price {
    fn from(
        SourcedCandle {
            candle: price,
            source,
        }: SourcedCandle,
    ) -> Self {
        Price {
            date: Day(price.date),
            open: price.open,
            high: price.high,
            low: price.low,
            close: price.close,
            volume: price.volume,
            provisional: price.provisional,
            points: price.points,
            source: source.into(),
        }
    }
}

/// One row of a prices answer: a day (`1d`), an hour (`1h`) or a four-hour block (`4h`),
/// as `timeframe` asked.
#[derive(Debug, Clone, Union)]
pub enum PriceRow {
    Day(Price),
    Hour(HourlyPrice),
    FourHours(FourHourPrice),
}

/// Stored rows of one timeframe, ascending by time.
#[derive(Debug, Clone, Object)]
#[oai(rename = "PriceList")]
pub struct PriceList {
    pub prices: Vec<PriceRow>,
}

/// A JSON answer of prices, `PriceList` either way: days as poem writes its objects, hours
/// and blocks as the store renders them ([`hour_rows`]), which four years of hours need to
/// stay fast.
pub enum JsonPrices {
    Objects(Json<PriceList>),
    Rendered(String),
}

impl Payload for JsonPrices {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        PriceList::schema_ref()
    }

    fn register(registry: &mut Registry) {
        PriceList::register(registry);
    }
}

impl IntoResponse for JsonPrices {
    fn into_response(self) -> Response {
        match self {
            JsonPrices::Objects(json) => json.into_response(),
            JsonPrices::Rendered(text) => Response::builder()
                .status(StatusCode::OK)
                .content_type(Self::CONTENT_TYPE)
                .body(text),
        }
    }
}

/// A CSV document, `text/csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csv(pub String);

impl Csv {
    /// The header `date,open,high,low,close,volume,provisional,source`, then one line
    /// per day.
    fn of(prices: &[SourcedCandle]) -> Csv {
        use std::fmt::Write;
        let mut csv = String::with_capacity(64 * (prices.len() + 1));
        csv.push_str(CSV_HEADER);
        csv.push('\n');
        for SourcedCandle { candle: p, source } in prices {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{}",
                p.date, p.open, p.high, p.low, p.close, p.volume, p.provisional, source
            );
        }
        Csv(csv)
    }
}

text_payload!(Csv, "text/csv; charset=utf-8");

#[derive(ResponseContent)]
pub enum PricesBody {
    Json(JsonPrices),
    Csv(Csv),
    Parquet(File<ParquetType>),
    Feather(File<FeatherType>),
}

/// How complete a range is.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Coverage")]
pub struct CoverageStats {
    /// The coin's ticker.
    pub symbol: String,
    pub start_date: Day,
    pub end_date: Day,
    /// Days of the range from the coin's first day of data on.
    pub total_expected_days: i64,
    /// Of those, the days stored for good (not provisional), from either source.
    pub total_stored_days: i64,
    /// The stored days by where they came from; they add up to `total_stored_days`.
    pub days_by_source: DaysBySource,
    /// The number of missing days.
    pub gap_count: i64,
    /// The missing days the CoinGecko plan serves, ascending.
    pub gap_dates: Vec<Day>,
    /// Missing days older than the CoinGecko plan serves: a job cannot fetch them with
    /// this key, so they are not gaps.
    pub out_of_plan_days: i64,
    /// The oldest day the CoinGecko plan serves today; null when no limit is known.
    #[oai(nullable)]
    pub plan_first_day: Option<Day>,
    /// Stored over expected, in percent, rounded to two decimals; 100 when nothing is
    /// expected.
    pub coverage_percent: f64,
}

/// Stored days by source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object)]
pub struct DaysBySource {
    /// Days from CoinGecko.
    pub coingecko: i64,
    /// Days from the second source, Coinbase Exchange.
    pub coinbase: i64,
}

impl DaysBySource {
    fn of(counts: &[(PriceSource, i64)]) -> Self {
        let count = |wanted| {
            counts
                .iter()
                .find(|(source, _)| *source == wanted)
                .map_or(0, |(_, n)| *n)
        };
        DaysBySource {
            coingecko: count(PriceSource::CoinGecko),
            coinbase: count(PriceSource::Coinbase),
        }
    }
}

impl From<Coverage> for CoverageStats {
    fn from(coverage: Coverage) -> Self {
        CoverageStats {
            days_by_source: DaysBySource::of(&coverage.days_by_source),
            symbol: coverage.symbol.as_str().to_owned(),
            start_date: Day(coverage.start),
            end_date: Day(coverage.end),
            total_expected_days: coverage.total_expected_days,
            total_stored_days: coverage.total_stored_days,
            gap_count: coverage.gap_dates.len() as i64,
            gap_dates: coverage.gap_dates.into_iter().map(Day).collect(),
            out_of_plan_days: coverage.out_of_plan_days,
            plan_first_day: coverage.plan_first_day.map(Day),
            coverage_percent: coverage.coverage_percent,
        }
    }
}

/// Coverage in the timeframe asked: days for `1d`, hours for `1h` and `4h`.
#[derive(Debug, Clone, Union)]
pub enum CoverageAnswer {
    Days(CoverageStats),
    Hours(HourlyCoverageStats),
}

responses! {
    pub enum PricesResponse refused {
        /// The stored rows, ascending: JSON; CSV with the header
        /// `date,open,high,low,close,volume,provisional,source` (`1d`) or
        /// `time,open,high,low,close,volume,source,disputed,hours,provisional` (`4h`, `1h`);
        /// or a Parquet or Feather file with the columns `date` (UTC timestamp, ms), `open`,
        /// `high`, `low`, `close`, `volume` (float64, USD, what it measures per `source`),
        /// `source`, and `disputed` for hours, provisional rows left out.
        200 Ok(PricesBody),
        /// A date is missing or malformed, `end_before_start`, `range_too_long` (more than
        /// 7305 days, or more than 1461 for `1h` and `4h`), `invalid_symbol` or
        /// `unknown_symbol` (not a registered coin), `timeframe` is not one of `1d`, `4h`,
        /// `1h`, or `format` is not one of `json`, `csv`, `parquet`, `feather`.
        400 BadRequest,
        /// `not_acceptable`: `Accept` names none of `application/json`, `text/csv`,
        /// `application/vnd.apache.parquet`, `application/vnd.apache.arrow.file` (nor a
        /// wildcard); the message lists them.
        406 NotAcceptable,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

responses! {
    pub enum CoverageResponse refused {
        /// The coverage of the range: in days (`Coverage`) or hours (`HourlyCoverage`).
        200 Ok(Json<CoverageAnswer>),
        /// A date is missing or malformed, `end_before_start`, `range_too_long` (more than
        /// 7305 days, or more than 1461 for `1h` and `4h`), `invalid_symbol`,
        /// `unknown_symbol` (not a registered coin), or `timeframe` is not one of `1d`, `4h`,
        /// `1h`.
        400 BadRequest,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

/// The status of every day of a range, one letter per day.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DayStatuses")]
pub struct DayStatuses {
    /// The coin's ticker.
    pub symbol: String,
    pub start_date: Day,
    pub end_date: Day,
    /// The coin's first day of data; earlier days are `-`. Null when unknown.
    #[oai(nullable)]
    pub first_day: Option<Day>,
    /// The oldest day the CoinGecko plan serves today; older missing days are `o`. Null
    /// when no limit is known.
    #[oai(nullable)]
    pub plan_first_day: Option<Day>,
    /// One letter per day from `start_date` to `end_date`: `s` stored (CoinGecko), `f`
    /// stored from the second source, `p` provisional, `m` missing, `o` out of plan and
    /// in neither source, `-` not expected.
    pub statuses: String,
    /// How many days have each status.
    pub counts: DayCounts,
    /// With `timeframe=1h` or `4h` only: the hours of each day, in the letters' order.
    #[oai(skip_serializing_if_is_none)]
    pub hours: Option<HoursPerDay>,
}

/// How many days of the range have each status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object)]
pub struct DayCounts {
    /// `s`: stored for good, from CoinGecko.
    pub stored: i64,
    /// `f`: stored for good, from the second source (Coinbase Exchange).
    pub second_source: i64,
    /// `p`: stored before the day was over; counts as missing until replaced.
    pub provisional: i64,
    /// `m`: missing, and the plan serves it.
    pub missing: i64,
    /// `o`: missing, older than the plan serves, and in neither source.
    pub out_of_plan: i64,
    /// `-`: before the coin's first day, or after today.
    pub not_expected: i64,
}

impl DayCounts {
    fn of(statuses: &str) -> DayCounts {
        let mut counts = DayCounts::default();
        for letter in statuses.bytes() {
            match letter {
                b's' => counts.stored += 1,
                b'f' => counts.second_source += 1,
                b'p' => counts.provisional += 1,
                b'm' => counts.missing += 1,
                b'o' => counts.out_of_plan += 1,
                _ => counts.not_expected += 1,
            }
        }
        counts
    }
}

responses! {
    pub enum DaysResponse refused {
        /// The status of every day of the range (and its hours, for `1h` and `4h`).
        200 Ok(Json<DayStatuses>),
        /// A date is missing or malformed, `end_before_start`, `range_too_long` (more than
        /// 7305 days, or more than 1461 for `1h` and `4h`), `invalid_symbol`,
        /// `unknown_symbol` (not a registered coin), or `timeframe` is not one of `1d`, `4h`,
        /// `1h`.
        400 BadRequest,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn accepting(accept: Option<&str>) -> Option<PriceFormat> {
        let mut request = Request::builder();
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        negotiate(&request.finish())
    }

    #[test]
    fn accept_picks_the_best_served_format_json_by_default_and_none_when_nothing_is_served() {
        use PriceFormat::*;
        // From `application/json;q=0, */*` on, a review's findings: a type refused by name
        // came back through the wildcard; `Q=0` or `q=inf` were read as 1 (an odd q counts
        // as 1 still); on a tie, a wildcard's JSON beat the type named. Now a type named
        // beats one a wildcard brings, and the first named wins.
        let cases = [
            ("text/csv", Some(Csv)),
            ("text/csv, application/json;q=0.5", Some(Csv)),
            ("application/json, text/csv;q=0.5", Some(Json)),
            ("application/vnd.apache.parquet", Some(Parquet)),
            (
                "application/vnd.apache.arrow.file;q=0.9, */*;q=0.1",
                Some(Feather),
            ),
            ("*/*", Some(Json)),
            ("text/html, */*;q=0.8", Some(Json)),
            ("", Some(Json)),
            ("text/html", None),
            ("application/json;q=0", None),
            ("text/*", Some(Csv)),
            ("application/*", Some(Json)),
            ("application/json;q=0, */*", Some(Csv)),
            ("application/json;q=0, text/csv;q=0.5, */*;q=0.1", Some(Csv)),
            ("text/csv;Q=0, */*;q=0.1", Some(Json)),
            ("text/csv;q=inf, application/json;q=0.5", Some(Csv)),
            ("application/vnd.apache.parquet, */*", Some(Parquet)),
            ("text/csv, application/json", Some(Csv)),
            ("application/json, text/csv", Some(Json)),
        ];
        for (accept, format) in cases {
            assert_eq!(accepting(Some(accept)), format, "Accept: {accept:?}");
        }
        assert_eq!(accepting(None), Some(Json), "no Accept");
    }

    #[test]
    fn a_read_range_is_ordered_and_at_most_twenty_years() {
        assert!(
            ReadRange::parse("btc", day("2020-01-01"), day("2020-01-01"), Timeframe::Day).is_ok()
        );
        assert_eq!(
            ReadRange::parse("BTC", day("2020-01-02"), day("2020-01-01"), Timeframe::Day)
                .unwrap_err()
                .error,
            "end_before_start"
        );
        assert_eq!(
            ReadRange::parse("BTC", day("2000-01-01"), day("2020-01-01"), Timeframe::Day)
                .unwrap_err()
                .error,
            "range_too_long"
        );
        assert_eq!(
            ReadRange::parse(
                "DO-GE",
                day("2020-01-01"),
                day("2020-01-01"),
                Timeframe::Day
            )
            .unwrap_err()
            .error,
            "invalid_symbol"
        );
    }

    #[test]
    fn an_hourly_read_covers_at_most_1461_days() {
        for timeframe in [Timeframe::Hour, Timeframe::FourHours] {
            let read = |end| ReadRange::parse("BTC", day("2020-01-01"), day(end), timeframe);
            assert!(read("2023-12-31").is_ok(), "1461 days");
            let refused = read("2024-01-01").unwrap_err();
            assert_eq!(refused.error, "range_too_long");
            assert!(
                refused.message.contains("at most 1461 days"),
                "{}",
                refused.message
            );
        }
        assert!(
            ReadRange::parse("BTC", day("2020-01-01"), day("2024-01-01"), Timeframe::Day).is_ok()
        );
    }

    #[test]
    fn days_before_the_first_day_are_never_queried() {
        let bitcoin = Coin::bitcoin();
        let (_, range) =
            ReadRange::parse("BTC", day("2010-01-01"), day("2013-05-01"), Timeframe::Day).unwrap();
        assert_eq!(
            range.queried(&bitcoin),
            Some((day("2013-04-28"), day("2013-05-01")))
        );
        let (_, range) =
            ReadRange::parse("BTC", day("2000-01-01"), day("2013-04-27"), Timeframe::Day).unwrap();
        assert_eq!(range.queried(&bitcoin), None);
    }
}
