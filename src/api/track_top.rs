//! `POST /api/v1/coins/track-top` and following its record: the N largest coins by
//! market cap registered and tracked in one request (see `track_top`). The import runs
//! in this process after the `202`; its record is read like a job's.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::budget::TrackingCost;
use super::day::Day;
use super::error::{ErrorBody, Unavailable, refused};
use super::responses::responses;
use super::{ApiState, ApiTags, Authorized};
use crate::shutdown::Tasks;
use crate::store::coin_imports::{self, ImportRecord, Start};
use crate::track_top::{Ask, StartError};

pub struct TrackTopApi;

#[OpenApi(tag = "ApiTags::Coins")]
impl TrackTopApi {
    /// Track the top N coins
    ///
    /// Registers and tracks the `n` largest coins by market cap, as CoinGecko's
    /// `/coins/markets` lists them: one call per page of 250, then one check call per new
    /// coin, all within the call budget. Coins registered already with the same id are
    /// tracked; a coin whose ticker is registered with another id (tickers collide) is
    /// skipped with the reason. With `hourly`, every coin of the list keeps hourly candles
    /// too. Answers at once with the import's record; follow it at `Location`. One import
    /// runs at a time.
    #[oai(
        path = "/api/v1/coins/track-top",
        method = "post",
        operation_id = "trackTopCoins"
    )]
    async fn track_top(
        &self,
        _auth: Authorized,
        state: Data<&ApiState>,
        tasks: Data<&Tasks>,
        body: Json<TrackTopRequest>,
    ) -> TrackTopResponse {
        let import = state.track_top.clone();
        let ask = Ask {
            n: body.0.n,
            track_since: body.0.track_since.map(|day| day.0),
            hourly: body.0.hourly,
        };
        // Read before the import starts: after it, nothing may be awaited between its
        // record and its task, since a request dropped there (its client gone, its time
        // limit) would leave the record running with nothing to run it, and every import
        // refused until the sweep of abandoned ones.
        let cost = TrackingCost::read(&state.credits, i64::from(ask.n), ask.hourly).await;
        let record = match import.start(ask).await {
            Ok(Start::Started(record)) => *record,
            Ok(Start::Running(active)) => {
                return TrackTopResponse::Conflict(Json(ImportConflict::with(active)));
            }
            Err(StartError::TrackSinceInFuture(e)) => {
                return TrackTopResponse::BadRequest(ErrorBody::json(
                    "track_since_in_future",
                    e.to_string(),
                ));
            }
            Err(StartError::Database(e)) => {
                return TrackTopResponse::unavailable(&e);
            }
        };
        let location = format!("/api/v1/coins/track-top/{}", record.id);
        let mut view = ImportView::from(&record);
        view.tracking_cost = cost;
        // It outlives the request, but not the process: on SIGTERM it ends its record
        // between two coins, and the server waits for it.
        tasks.spawn(|shutdown| async move {
            let id = record.id;
            if let Err(e) = import.run(record, &shutdown, |_| {}).await {
                tracing::error!(import = %id, error = %e, "the import of the top coins stopped: the database failed");
            }
        });
        TrackTopResponse::Accepted(Json(view), location)
    }

    /// Follow an import of the top coins
    #[oai(
        path = "/api/v1/coins/track-top/:id",
        method = "get",
        operation_id = "getTrackTopImport"
    )]
    async fn get(&self, state: Data<&ApiState>, id: Path<Uuid>) -> GetImportResponse {
        match coin_imports::get(&state.pool, id.0).await {
            Ok(Some(record)) => {
                let mut view = ImportView::from(&record);
                view.tracking_cost = TrackingCost::read(&state.credits, 0, false).await;
                GetImportResponse::Ok(Json(view))
            }
            Ok(None) => GetImportResponse::NotFound(ErrorBody::json(
                "not_found",
                format!("no import of the top coins has the id {}", id.0),
            )),
            Err(e) => GetImportResponse::unavailable(&e),
        }
    }
}

/// Which coins to track.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TrackTop", example, deny_unknown_fields)]
pub struct TrackTopRequest {
    /// How many of the largest coins by market cap: 1 to 10000.
    #[oai(
        validator(minimum(value = "1"), maximum(value = "10000")),
        deserialize_with = "required_n"
    )]
    pub n: u32,
    /// The first day to keep of each newly tracked coin, `YYYY-MM-DD`; absent or null:
    /// each coin's first day (or the oldest day the plan serves, whichever is later).
    #[oai(nullable)]
    pub track_since: Option<Day>,
    /// `true`: every coin of the import keeps hourly candles too (turned on for those
    /// registered already), and each one's hours are brought up to date at once, as
    /// `"hourly": true` on `PUT /api/v1/coins/{symbol}` does. Absent, null or `false`: new
    /// coins keep no hours, and coins registered already keep theirs as they are.
    #[oai(default, nullable)]
    pub hourly: bool,
}

impl Example for TrackTopRequest {
    fn example() -> Self {
        TrackTopRequest {
            n: 100,
            track_since: None,
            hourly: false,
        }
    }
}

/// How far an import has got.
#[derive(Debug, Clone, Object)]
#[oai(rename = "ImportProgress")]
pub struct ImportProgress {
    /// Pages of CoinGecko's `/coins/markets` read (one call each), of those needed.
    pub pages_done: i32,
    pub pages_total: i32,
    /// Coins of the list dealt with, of those listed.
    pub coins_done: i32,
    pub coins_total: i32,
}

/// A coin of the list that was not registered, and why.
#[derive(Debug, Clone, Object)]
#[oai(rename = "SkippedCoin")]
pub struct SkippedCoin {
    /// CoinGecko's ticker, as it lists it.
    pub symbol: String,
    pub coingecko_id: String,
    /// A sentence: the symbol is registered with another id, the ticker is no symbol
    /// here, CoinGecko could not be reached for the check...
    pub reason: String,
}

/// An import of the top coins, read like a job.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TrackTopImport")]
pub struct ImportView {
    pub id: Uuid,
    /// `running`, `completed` or `failed` (with `error_message`).
    pub status: String,
    pub n: i32,
    #[oai(nullable)]
    pub track_since: Option<Day>,
    /// Whether every coin of the import keeps hourly candles too.
    pub hourly: bool,
    /// `api` or `cli`.
    pub trigger: String,
    pub progress: ImportProgress,
    /// New coins registered and tracked, by rank.
    pub registered: Vec<String>,
    /// Coins registered before with the same id, now tracked (and hourly, when asked).
    pub already_registered: Vec<String>,
    pub skipped: Vec<SkippedCoin>,
    #[oai(nullable)]
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[oai(nullable)]
    pub completed_at: Option<DateTime<Utc>>,
    /// What the tracked coins cost a month under `SYNC_SCHEDULE`: on the `202`, with all
    /// `n` coins counted as newly tracked (at most what the import adds); afterwards, the
    /// tracked coins as they are. With a warning when it is more than the month has.
    #[oai(skip_serializing_if_is_none)]
    pub tracking_cost: Option<TrackingCost>,
}

impl From<&ImportRecord> for ImportView {
    fn from(record: &ImportRecord) -> Self {
        ImportView {
            id: record.id,
            status: record.status.to_string(),
            n: record.n,
            track_since: record.track_since.map(Day),
            hourly: record.hourly,
            trigger: record.trigger.to_string(),
            progress: ImportProgress {
                pages_done: record.pages_done,
                pages_total: record.pages_total,
                coins_done: record.coins_done,
                coins_total: record.coins_total,
            },
            registered: record.registered.clone(),
            already_registered: record.already.clone(),
            skipped: record
                .skipped
                .0
                .iter()
                .map(|s| SkippedCoin {
                    symbol: s.symbol.clone(),
                    coingecko_id: s.coingecko_id.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            error_message: record.error_message.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            completed_at: record.completed_at,
            tracking_cost: None,
        }
    }
}

/// `409` while another import runs.
#[derive(Debug, Clone, Object)]
#[oai(rename = "ImportInProgress")]
pub struct ImportConflict {
    /// `import_in_progress`.
    pub error: String,
    pub message: String,
    /// The running import.
    pub active_import_id: Uuid,
}

impl ImportConflict {
    fn with(active: Uuid) -> Self {
        ImportConflict {
            error: "import_in_progress".to_owned(),
            message: format!(
                "an import of the top coins is running ({active}): follow it at /api/v1/coins/track-top/{active}, and start another when it has ended"
            ),
            active_import_id: active,
        }
    }
}

responses! {
    pub enum TrackTopResponse refused(body) {
        /// The import is running; `Location` is where to follow it.
        202 Accepted(Json<ImportView>, #[oai(header = "Location")] String),
        /// The body is malformed or breaks a rule: `n` not between 1 and 10000,
        /// `track_since_in_future`, `invalid_request`.
        400 BadRequest,
        401 Unauthorized,
        /// `import_in_progress`: another import runs, `active_import_id`.
        409 Conflict(Json<ImportConflict>),
        415 UnsupportedMediaType,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

responses! {
    pub enum GetImportResponse refused {
        /// The import.
        200 Ok(Json<ImportView>),
        /// The id is not a UUID.
        400 BadRequest,
        /// No import has this id.
        404 NotFound,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

fn required_n(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<u32> {
    super::wire::required(value, "n", "a whole number from 1 to 10000")
}
