//! `GET /api/v1/budget`: each source's call budgets as they stand, for people and the page:
//! per minute for CoinGecko and Coinbase, and CoinGecko's monthly credits (used, left, when
//! they reset) beside what the tracked coins cost a month under `SYNC_SCHEDULE`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::error::Unavailable;
use super::responses::responses;
use super::{ApiState, ApiTags};
use crate::credits::{Credits, Estimate};
use crate::upstream::{CallLimiter, MonthFigures};

pub struct BudgetApi;

#[OpenApi(tag = "ApiTags::Ops")]
impl BudgetApi {
    /// Call budgets
    ///
    /// Per source: the budget per minute shared by every process on the database and the
    /// calls they all began in the last 60 seconds; for CoinGecko also the month's
    /// credits over every process (`COINGECKO_CALLS_PER_MONTH`: null when there is no
    /// monthly limit), what is used and left, when they reset (00:00 UTC on the first of
    /// the next month), and what the tracked coins cost a month under `SYNC_SCHEDULE`,
    /// with a warning when that is more than the month has. `coinbase` is null with
    /// `FALLBACK_SOURCE=off`; it has no monthly credits.
    #[oai(path = "/api/v1/budget", method = "get", operation_id = "getBudget")]
    async fn budget(&self, state: Data<&ApiState>) -> BudgetResponse {
        let credits = &state.credits;
        let now = credits.now();
        let coingecko = state
            .coingecko
            .as_ref()
            .unwrap_or(&state.registry.client)
            .caller()
            .budget();
        let coinbase = state
            .registry
            .coinbase
            .as_ref()
            .map(|client| client.caller().budget());
        let coinbase_minute = async {
            match coinbase {
                Some(limiter) => MinuteBudget::of(limiter).await.map(Some),
                None => Ok(None),
            }
        };
        let (month, estimate, coingecko_minute, coinbase) = tokio::join!(
            credits.month(),
            credits.tracked_estimate(now),
            MinuteBudget::of(coingecko),
            coinbase_minute,
        );
        let read = (|| Ok::<_, sqlx::Error>((month?, estimate?, coingecko_minute?, coinbase?)))();
        let (month, estimate, coingecko_minute, coinbase) = match read {
            Ok(read) => read,
            Err(e) => {
                return BudgetResponse::unavailable(&e);
            }
        };
        BudgetResponse::Ok(Json(Budget {
            coingecko: CoinGeckoBudget::of(coingecko, coingecko_minute, month, estimate, now),
            coinbase,
        }))
    }
}

/// Every source's budget.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Budget")]
pub struct Budget {
    pub coingecko: CoinGeckoBudget,
    /// Null with `FALLBACK_SOURCE=off`.
    #[oai(nullable)]
    pub coinbase: Option<MinuteBudget>,
}

/// A budget per minute.
#[derive(Debug, Clone, Object)]
#[oai(rename = "MinuteBudget")]
pub struct MinuteBudget {
    /// The calls per minute every process on the database shares, retries included.
    pub calls_per_minute: u32,
    /// Calls every process on the database began in the last 60 seconds.
    pub calls_last_minute: u32,
}

impl MinuteBudget {
    /// `limiter`'s budget, its last minute read from the database.
    async fn of(limiter: &CallLimiter) -> sqlx::Result<Self> {
        Ok(MinuteBudget {
            calls_per_minute: limiter.calls_per_minute(),
            calls_last_minute: limiter.shared_calls_in_the_last_minute().await?,
        })
    }
}

/// CoinGecko's budgets: per minute, and the month's credits.
#[derive(Debug, Clone, Object)]
#[oai(rename = "CoinGeckoBudget")]
pub struct CoinGeckoBudget {
    /// The calls per minute every process on the database shares, retries included.
    pub calls_per_minute: u32,
    /// Calls every process on the database began in the last 60 seconds.
    pub calls_last_minute: u32,
    /// `COINGECKO_CALLS_PER_MONTH`; null: no monthly limit.
    #[oai(nullable)]
    pub calls_per_month: Option<u32>,
    /// CoinGecko calls this UTC month over every process, retries, coin checks and
    /// `/coins/markets` included.
    pub used_this_month: i64,
    /// What is left this month; null without a monthly limit.
    #[oai(nullable)]
    pub left_this_month: Option<i64>,
    /// When the month's credits reset: 00:00 UTC on the first of the next month.
    pub month_resets_at: DateTime<Utc>,
    /// Whole days until then (0 on the last day of the month).
    pub days_to_reset: i64,
    /// What keeping coins current costs a month under `SYNC_SCHEDULE`, in calls, for the
    /// coins the schedule keeps current (`tracked_coins`): a call per coin per day with a
    /// tick (its new day), except a coin whose hours are built from CoinGecko's points: a
    /// call per tick (its new day and hours come in one window). Hours from Coinbase cost
    /// no CoinGecko credit.
    pub tracked_monthly_estimate: i64,
    /// The coins the schedule keeps current: the tracked ones, and every coin that keeps
    /// hours (tracked or not).
    pub tracked_coins: i64,
    /// Said when `tracked_monthly_estimate` is more than `calls_per_month`.
    #[oai(nullable)]
    pub warning: Option<String>,
}

impl CoinGeckoBudget {
    fn of(
        limiter: &CallLimiter,
        minute: MinuteBudget,
        month: Option<MonthFigures>,
        estimate: Estimate,
        now: DateTime<Utc>,
    ) -> Self {
        let month = month.unwrap_or(MonthFigures {
            month: crate::domain::CreditMonth::of(now),
            used: 0,
            limit: limiter.monthly().and_then(|m| m.limit).map(|l| l.get()),
            refused: false,
        });
        let resets_at = month.month.resets_at();
        CoinGeckoBudget {
            calls_per_minute: minute.calls_per_minute,
            calls_last_minute: minute.calls_last_minute,
            calls_per_month: month.limit,
            used_this_month: month.used,
            left_this_month: month.left(),
            month_resets_at: resets_at,
            days_to_reset: (resets_at - now).num_days(),
            tracked_monthly_estimate: estimate.calls,
            tracked_coins: estimate.coins(),
            warning: estimate.warning(month.limit),
        }
    }
}

responses! {
    pub enum BudgetResponse {
        /// Each source's budget.
        200 Ok(Json<Budget>),
        /// The database is not answering.
        503 ServiceUnavailable,
    }
}

/// What keeping the tracked coins current costs a month: said in the answers that change
/// the tracked set (turning `tracked` or `hourly` on, an import of the top coins).
#[derive(Debug, Clone, Object)]
#[oai(rename = "TrackingCost")]
pub struct TrackingCost {
    /// The coins the schedule keeps current: tracked ones, and every coin that keeps hours.
    pub tracked_coins: i64,
    /// CoinGecko calls a month under `SYNC_SCHEDULE` for them (see `CoinGeckoBudget`).
    pub tracked_monthly_estimate: i64,
    /// `COINGECKO_CALLS_PER_MONTH`; null: no monthly limit.
    #[oai(nullable)]
    pub calls_per_month: Option<u32>,
    /// Said when the estimate is more than the month has.
    #[oai(nullable)]
    pub warning: Option<String>,
}

impl TrackingCost {
    /// The cost of the tracked coins now, with `more` coins on top (an import about to
    /// register them: at most that many); `None`, logged, when the database cannot say.
    pub async fn read(credits: &Credits, more: i64, hourly: bool) -> Option<TrackingCost> {
        let estimate = credits.tracked_estimate(credits.now()).await;
        let month = credits.month().await;
        match (estimate, month) {
            (Ok(estimate), Ok(month)) => {
                let estimate = estimate.with_more(more, hourly);
                let limit = month.and_then(|m| m.limit);
                Some(TrackingCost {
                    tracked_coins: estimate.coins(),
                    tracked_monthly_estimate: estimate.calls,
                    calls_per_month: limit,
                    warning: estimate.warning(limit),
                })
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "could not estimate what the tracked coins cost a month");
                None
            }
        }
    }
}
