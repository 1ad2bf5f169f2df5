//! The `Jobs` tag: submit a backfill, follow it, list jobs, cancel one.

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::Example;
use poem_openapi::{Enum, Object, OpenApi};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::day::Day;
use super::error::{BEARER_CHALLENGE, ErrorBody, Refusal, Unavailable, refused};
use super::events::JobEvents;
use super::responses::responses;
use super::server::ConnectionPlace;
use super::wire::mirrored;
use super::{ApiState, ApiTags, Authorized};
use crate::domain::{DateRange, JobStatus, Symbol, Trigger, today_utc};
use crate::queue::{self, SubmitError, Turn};
use crate::store::coins;
use crate::store::ingestion_jobs::{self, Cancelled, JobRecord, NewJob};

/// The jobs listed when `limit` is not given.
const DEFAULT_LIST_LIMIT: u32 = 20;

pub struct JobsApi;

#[OpenApi(tag = "ApiTags::Jobs")]
impl JobsApi {
    /// Submit a backfill
    ///
    /// Queues a job that fetches the days of the range that are missing (every day with
    /// `force`) and stores one candle per UTC day. The range is at most 1461 days, ends
    /// today (UTC) at the latest and starts on the coin's first day (BTC: 2013-04-28) at
    /// the earliest; the coin must be registered (`PUT /api/v1/coins/{symbol}`). Only one
    /// job per coin may be pending or running at a time, across every process sharing
    /// the database. Days older than the CoinGecko plan's reach are not asked for: they
    /// end up in `out_of_plan_days`.
    #[oai(
        path = "/api/v1/ingestion-jobs",
        method = "post",
        operation_id = "submitIngestionJob"
    )]
    async fn submit(
        &self,
        _auth: Authorized,
        state: Data<&ApiState>,
        body: Json<NewJobRequest>,
    ) -> SubmitResponse {
        let job = match job_of(&state, body.0).await {
            Ok(job) => job,
            Err(refused) => return refused,
        };
        match queue::submit(&state.pool, job, Turn::Waited).await {
            Ok(record) => {
                let location = format!("/api/v1/ingestion-jobs/{}", record.id);
                SubmitResponse::Accepted(Json(record.into()), location)
            }
            Err(SubmitError::JobInProgress(active)) => {
                SubmitResponse::Conflict(ErrorBody::job_in_progress(active))
            }
            Err(SubmitError::Contended) => SubmitResponse::ServiceUnavailable(ErrorBody::json(
                "busy",
                "jobs are being submitted and finished concurrently; submit again",
            )),
            Err(e @ (SubmitError::Database(_) | SubmitError::Queue(_))) => {
                SubmitResponse::unavailable(&e)
            }
        }
    }

    /// Get a job
    ///
    /// The job as it stands now, with its progress in windows.
    #[oai(
        path = "/api/v1/ingestion-jobs/:id",
        method = "get",
        operation_id = "getIngestionJob"
    )]
    async fn get(
        &self,
        state: Data<&ApiState>,
        /// The job's id, as returned on submission.
        id: Path<Uuid>,
    ) -> GetJobResponse {
        if let Some(job) = state.finished_jobs.get(id.0) {
            return GetJobResponse::Ok(Json(job.into()));
        }
        match ingestion_jobs::get(&state.pool, id.0).await {
            Ok(Some(job)) => {
                state.finished_jobs.remember(&job);
                GetJobResponse::Ok(Json(job.into()))
            }
            Ok(None) => GetJobResponse::NotFound(ErrorBody::job_not_found(id.0)),
            Err(e) => GetJobResponse::unavailable(&e),
        }
    }

    /// List jobs
    ///
    /// Newest first.
    #[oai(
        path = "/api/v1/ingestion-jobs",
        method = "get",
        operation_id = "listIngestionJobs"
    )]
    async fn list(
        &self,
        state: Data<&ApiState>,
        /// Only the jobs with this status.
        status: Query<Option<Status>>,
        /// How many jobs at most.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        /// Only the jobs of this coin (its ticker, case-insensitive).
        symbol: Query<Option<String>>,
    ) -> ListJobsResponse {
        let symbol = match symbol.0.as_deref().map(Symbol::parse).transpose() {
            Ok(symbol) => symbol,
            Err(e) => return ListJobsResponse::BadRequest(ErrorBody::invalid_symbol(&e)),
        };
        match ingestion_jobs::list(
            &state.pool,
            status.0.map(JobStatus::from),
            symbol,
            i64::from(limit.0),
        )
        .await
        {
            Ok(jobs) => ListJobsResponse::Ok(Json(JobList {
                jobs: jobs.into_iter().map(Job::from).collect(),
            })),
            Err(e) => ListJobsResponse::unavailable(&e),
        }
    }

    /// Follow job changes
    ///
    /// Server-sent events (`text/event-stream`): from the moment of the request, one
    /// event per committed change of any job (or only of `symbol`'s jobs), its data the
    /// job as `GET /api/v1/ingestion-jobs/{id}` returns it. A comment is sent every 15 s
    /// to keep the connection open. Changes made while a client is disconnected are not
    /// replayed: a client that reconnects reads the list again. At most
    /// `EVENT_STREAMS_MAX` streams (default 256) are open at once; one more is refused at
    /// once with `503` and `Retry-After`.
    #[oai(
        path = "/api/v1/job-events",
        method = "get",
        operation_id = "followIngestionJobs"
    )]
    async fn events(
        &self,
        request: &poem::Request,
        events: Data<&JobEvents>,
        /// Only the jobs of this coin (its ticker, case-insensitive).
        symbol: Query<Option<String>>,
    ) -> JobEventsResponse {
        let symbol = match symbol.0.as_deref().map(Symbol::parse).transpose() {
            Ok(symbol) => symbol,
            Err(e) => return JobEventsResponse::BadRequest(ErrorBody::invalid_symbol(&e)),
        };
        let Some(place) = events.admit() else {
            return JobEventsResponse::ServiceUnavailable(
                ErrorBody::json(
                    "too_many_streams",
                    format!(
                        "every event stream this server serves is taken; try again in \
                         {STREAMS_RETRY_AFTER_SECS} s, or read GET /api/v1/ingestion-jobs meanwhile"
                    ),
                ),
                Some(STREAMS_RETRY_AFTER_SECS),
            );
        };
        let receiver = match events.subscribe().await {
            Ok(receiver) => receiver,
            Err(e) => {
                return JobEventsResponse::ServiceUnavailable(
                    ErrorBody::database_unavailable(&e),
                    None,
                );
            }
        };
        // Once the stream is served, it is counted by its own cap, not among the connections
        // of ordinary requests: the connection's place is given back when the body is first
        // polled, not before (a HEAD answer drops the body unread, and its connection stays
        // counted); the stream's place goes with the stream, given back when the client leaves.
        let connection = request.extensions().get::<ConnectionPlace>().cloned();
        let state = (receiver, place, connection);
        let changes = futures::stream::unfold(state, move |(mut receiver, place, connection)| {
            if let Some(connection) = &connection {
                connection.release();
            }
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(job) if symbol.is_none_or(|symbol| job.symbol == symbol) => {
                            return Some((Job::from(job), (receiver, place, None)));
                        }
                        Ok(_) => continue,
                        // Changes were lost to a slow follower: the stream ends, so that
                        // the page reconnects and reads the list again.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                    }
                }
            }
        });
        JobEventsResponse::Ok(EventStream::new(changes.boxed()).keep_alive(KEEP_ALIVE))
    }

    /// Cancel a job
    ///
    /// A pending job will never run; a running one stops after the window it is
    /// fetching, keeping what it stored.
    #[oai(
        path = "/api/v1/ingestion-jobs/:id/cancel",
        method = "post",
        operation_id = "cancelIngestionJob"
    )]
    async fn cancel(
        &self,
        _auth: Authorized,
        state: Data<&ApiState>,
        /// The job's id.
        id: Path<Uuid>,
    ) -> CancelResponse {
        match ingestion_jobs::cancel(&state.pool, id.0).await {
            Ok(Cancelled::Now(job)) => CancelResponse::Ok(Json(job.into())),
            Ok(Cancelled::AlreadyFinished(job)) => CancelResponse::Conflict(ErrorBody::json(
                "job_finished",
                format!(
                    "job {} has already finished as {}; there is nothing to cancel",
                    job.id, job.status
                ),
            )),
            Ok(Cancelled::NotFound) => CancelResponse::NotFound(ErrorBody::job_not_found(id.0)),
            Err(e) => CancelResponse::unavailable(&e),
        }
    }
}

/// How long a client refused a stream is asked to wait: streams last as long as their
/// pages, so a place frees up in minutes rather than seconds.
const STREAMS_RETRY_AFTER_SECS: u32 = 30;

/// How often an idle event stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

responses! {
    pub enum JobEventsResponse refused {
        /// One event per job change, its data the job.
        200 Ok(EventStream<BoxStream<'static, Job>>),
        /// `symbol` is not a ticker.
        400 BadRequest,
        /// `too_many_streams`: `EVENT_STREAMS_MAX` streams are open; try again after
        /// `Retry-After` seconds (the connection is closed). Or `database_unavailable`: the
        /// database is not answering.
        503 ServiceUnavailable(
            Json<ErrorBody>,
            /// Seconds to wait before asking again (with `too_many_streams`).
            #[oai(header = "Retry-After")]
            Option<u32>,
        ),
    }
}

fn default_limit() -> u32 {
    DEFAULT_LIST_LIMIT
}

fn default_symbol() -> String {
    Symbol::BTC.as_str().to_owned()
}

/// What to backfill.
#[derive(Debug, Clone, Object)]
#[oai(rename = "NewIngestionJob", example, deny_unknown_fields)]
pub struct NewJobRequest {
    /// First day, `YYYY-MM-DD` (UTC); not before the coin's first day (BTC: 2013-04-28).
    #[oai(deserialize_with = "required_start_date")]
    pub start_date: Day,
    /// Last day, `YYYY-MM-DD` (UTC), on or after `start_date`, at most today and at most
    /// 1461 days after `start_date`.
    #[oai(deserialize_with = "required_end_date")]
    pub end_date: Day,
    /// Fetch every day again and replace what is stored, instead of only the missing days.
    /// Absent or null: `false`.
    #[oai(default, nullable)]
    pub force: bool,
    /// The coin's ticker, case-insensitive: a registered coin (`GET /api/v1/coins`).
    /// Absent or null: `BTC`.
    #[oai(default = "default_symbol", nullable)]
    pub symbol: String,
}

impl Example for NewJobRequest {
    fn example() -> Self {
        NewJobRequest {
            start_date: Day(NaiveDate::from_ymd_opt(2024, 1, 1).expect("a valid date")),
            end_date: Day(NaiveDate::from_ymd_opt(2024, 12, 31).expect("a valid date")),
            force: false,
            symbol: default_symbol(),
        }
    }
}

mirrored! {
    /// Where a job stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
    #[oai(rename = "JobStatus", rename_all = "snake_case")]
    pub enum Status as JobStatus {
        /// Queued; no worker has started it yet (or it was handed back to the queue).
        Pending,
        /// A worker is fetching it.
        Running,
        /// Every day of the range is stored.
        Completed,
        /// Finished, but CoinGecko had no data for some days: see `gap_dates`.
        CompletedWithGaps,
        /// Gave up: see `error_message`.
        Failed,
        /// Cancelled by request.
        Cancelled,
    }
}

mirrored! {
    /// Who asked for a job.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
    #[oai(rename = "JobTrigger", rename_all = "snake_case")]
    pub enum JobTrigger as Trigger {
        /// `POST /api/v1/ingestion-jobs`.
        Api,
        /// `price-history backfill`.
        Cli,
        /// The schedule that keeps tracked coins current (`SYNC_SCHEDULE`).
        Schedule,
    }
}

/// How far a job has got, in windows of up to `COINGECKO_CHUNK_DAYS` days.
#[derive(Debug, Clone, Object)]
pub struct Progress {
    /// Windows fetched and stored so far, over all attempts.
    pub chunks_done: i32,
    /// Windows planned so far; it grows when a later attempt or the gap fill plans more.
    pub chunks_total: i32,
}

/// A backfill job.
#[derive(Debug, Clone, Object)]
#[oai(rename = "IngestionJob", example)]
pub struct Job {
    /// A UUIDv7.
    pub id: Uuid,
    pub status: Status,
    /// The coin's ticker.
    pub symbol: String,
    /// First day of the range (UTC).
    pub start_date: Day,
    /// Last day of the range (UTC).
    pub end_date: Day,
    /// Whether stored days are fetched again and replaced.
    pub force: bool,
    /// Who asked for the job.
    pub trigger: JobTrigger,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the first attempt began; null while pending.
    #[oai(nullable)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the job finished or was cancelled; null while pending or running.
    #[oai(nullable)]
    pub completed_at: Option<DateTime<Utc>>,
    /// Daily rows received from CoinGecko so far.
    pub records_fetched: i32,
    /// Days of the range still missing when the job finished.
    pub gaps_detected: i32,
    /// Those days, ascending.
    pub gap_dates: Vec<Day>,
    /// Days of the range older than the CoinGecko plan serves (`COINGECKO_HISTORY_DAYS`,
    /// or learned from CoinGecko's 10012 answer) that neither source stored: not gaps.
    pub out_of_plan_days: i32,
    /// Days of the range this job stored from the second source (Coinbase Exchange),
    /// days older than the CoinGecko plan serves.
    pub fallback_days: i32,
    /// Hourly candles this job stored; only for a job of a coin that keeps hours.
    #[oai(skip_serializing_if_is_none)]
    pub hours_fetched: Option<i32>,
    /// Hours of the range still missing when the job ended (0 while it runs; only hours a
    /// source can have count); only for a job of a coin that keeps hours.
    #[oai(skip_serializing_if_is_none)]
    pub hours_missing: Option<i32>,
    /// Hours of the range recorded as without trades (the exchange published no candle:
    /// never missing) when the job ended; only for a job of a coin that keeps hours.
    #[oai(skip_serializing_if_is_none)]
    pub hours_without_trades: Option<i32>,
    /// Why the job failed, was cancelled, finished with gaps, or went back to the queue.
    #[oai(nullable)]
    pub error_message: Option<String>,
    /// Attempts started, takeovers after a crash included.
    pub attempts: i32,
    pub progress: Progress,
}

impl From<JobRecord> for Job {
    fn from(job: JobRecord) -> Self {
        Job {
            id: job.id,
            status: job.status.into(),
            symbol: job.symbol.as_str().to_owned(),
            start_date: Day(job.range.start()),
            end_date: Day(job.range.end()),
            force: job.force,
            trigger: job.trigger.into(),
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
            records_fetched: job.records_fetched,
            gaps_detected: job.gaps_detected,
            gap_dates: job.gap_dates.into_iter().map(Day).collect(),
            out_of_plan_days: job.out_of_plan_days,
            fallback_days: job.fallback_days,
            hours_fetched: job.hours_fetched,
            hours_missing: job.hours_missing,
            hours_without_trades: job.hours_without_trades,
            error_message: job.error_message,
            attempts: job.attempts,
            progress: Progress {
                chunks_done: job.chunks_done,
                chunks_total: job.chunks_total,
            },
        }
    }
}

impl Example for Job {
    fn example() -> Self {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("a valid timestamp");
        Job {
            id: "01943d9a-6c00-7a3b-8f5e-2b1c0d4e5f60"
                .parse()
                .expect("a valid UUID"),
            status: Status::Completed,
            symbol: "BTC".to_owned(),
            start_date: Day(NaiveDate::from_ymd_opt(2024, 1, 1).expect("a valid date")),
            end_date: Day(NaiveDate::from_ymd_opt(2024, 12, 31).expect("a valid date")),
            force: false,
            trigger: JobTrigger::Api,
            created_at: at("2025-01-02T09:00:00Z"),
            updated_at: at("2025-01-02T09:01:10Z"),
            started_at: Some(at("2025-01-02T09:00:01Z")),
            completed_at: Some(at("2025-01-02T09:01:10Z")),
            records_fetched: 366,
            gaps_detected: 0,
            gap_dates: vec![],
            out_of_plan_days: 0,
            fallback_days: 0,
            hours_fetched: Some(8_784),
            hours_missing: Some(0),
            hours_without_trades: Some(0),
            error_message: None,
            attempts: 1,
            progress: Progress {
                chunks_done: 5,
                chunks_total: 5,
            },
        }
    }
}

/// Jobs, newest first.
#[derive(Debug, Clone, Object)]
#[oai(rename = "IngestionJobList")]
pub struct JobList {
    pub jobs: Vec<Job>,
}

responses! {
    pub enum SubmitResponse refused(body) {
        /// The job is queued; `Location` is where to follow it.
        202 Accepted(Json<Job>, #[oai(header = "Location")] String),
        /// The body is malformed or breaks a rule: `end_before_start`, `end_in_future`,
        /// `range_too_long`, `before_first_day`, `invalid_symbol`, `unknown_symbol` (not a
        /// registered coin), `invalid_request`.
        400 BadRequest,
        401 Unauthorized,
        /// `job_in_progress`: another job of the same coin is pending or running;
        /// `active_job_id` names it.
        409 Conflict,
        415 UnsupportedMediaType,
        /// `monthly_credits_exhausted`: what is left of the month's CoinGecko credits
        /// (`COINGECKO_CALLS_PER_MONTH`) does not cover the job's planned calls; `resets_on`
        /// names the day they reset. Nothing was queued.
        429 TooManyRequests,
        /// The database is not answering; nothing was queued. Submit again later.
        503 ServiceUnavailable,
    }
}

responses! {
    #[oai(bad_request_handler = "refused")]
    pub enum GetJobResponse {
        /// The job.
        200 Ok(Json<Job>),
        /// The id is not a UUID.
        400 BadRequest,
        /// No job has this id.
        404 NotFound,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

impl Refusal for GetJobResponse {
    // The id in the path is the only thing to parse.
    fn refusal(_: StatusCode, _: Json<ErrorBody>) -> Self {
        Self::BadRequest(ErrorBody::not_a_job_id())
    }
}

responses! {
    pub enum ListJobsResponse refused {
        /// The jobs, newest first.
        200 Ok(Json<JobList>),
        /// `status` is not a known status, `limit` is not between 1 and 100, or `symbol` is
        /// not a ticker.
        400 BadRequest,
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

responses! {
    #[oai(bad_request_handler = "refused")]
    pub enum CancelResponse {
        /// The job, now `cancelled`.
        200 Ok(Json<Job>),
        /// The id is not a UUID.
        400 BadRequest,
        401 Unauthorized,
        /// No job has this id.
        404 NotFound,
        /// `job_finished`: the job has already finished; it is left as it is.
        409 Conflict,
        /// The database is not answering; nothing changed.
        503 ServiceUnavailable,
    }
}

impl Refusal for CancelResponse {
    fn refusal(status: StatusCode, body: Json<ErrorBody>) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body, BEARER_CHALLENGE.to_owned()),
            // Else the id in the path, the only thing to parse.
            _ => Self::BadRequest(ErrorBody::not_a_job_id()),
        }
    }
}

/// The job `request` asks for, or the answer that refuses it: a symbol that is not one or
/// not registered, a range the coin cannot have, a month whose credits cannot pay for it,
/// or the database away.
async fn job_of(state: &ApiState, request: NewJobRequest) -> Result<NewJob, SubmitResponse> {
    let symbol: Symbol = request
        .symbol
        .parse()
        .map_err(|e| SubmitResponse::BadRequest(ErrorBody::invalid_symbol(&e)))?;
    let coin = match coins::get(&state.pool, symbol).await {
        Ok(Some(record)) => record.coin,
        Ok(None) => {
            return Err(SubmitResponse::BadRequest(ErrorBody::unknown_symbol(
                symbol,
            )));
        }
        Err(e) => return Err(SubmitResponse::unavailable(&e)),
    };
    let today = today_utc();
    let range = DateRange::for_coin(&coin, request.start_date.0, request.end_date.0, today)
        .map_err(|e| SubmitResponse::BadRequest(ErrorBody::json(e.code(), e.to_string())))?;
    match state
        .credits
        .afford_job(&coin, range, request.force, today)
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(refused)) => {
            return Err(SubmitResponse::TooManyRequests(
                ErrorBody::monthly_credits_exhausted(&refused),
            ));
        }
        Err(e) => return Err(SubmitResponse::unavailable(&e)),
    }
    Ok(NewJob {
        id: Uuid::now_v7(),
        symbol,
        range,
        force: request.force,
        trigger: Trigger::Api,
    })
}

fn required_start_date(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Day> {
    super::wire::required(value, "start_date", "YYYY-MM-DD")
}

fn required_end_date(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Day> {
    super::wire::required(value, "end_date", "YYYY-MM-DD")
}
