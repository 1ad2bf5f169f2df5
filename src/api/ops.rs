//! The `Ops` tag: liveness, readiness and metrics, for orchestrators and Prometheus.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};

use poem::web::Data;
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::MetaSchemaRef;
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::error::ErrorBody;
use super::{ApiState, ApiTags};
use crate::domain::JobStatus;
use crate::schedule::{self, CoinFreshness, Freshness};
use crate::store::stats;

/// How long `/readyz` and `/metrics` wait for the database. Short, so that a probe gets
/// its answer well within an orchestrator's own probe time-out.
pub const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct OpsApi;

#[OpenApi(tag = "ApiTags::Ops")]
impl OpsApi {
    /// Liveness
    ///
    /// `200` while the process runs; it does not look at the database.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".to_owned(),
        }))
    }

    /// Readiness
    ///
    /// `200` when the database answers within 2 seconds, `503` when it does not.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&ApiState>) -> ReadyResponse {
        match tokio::time::timeout(DATABASE_PROBE_TIMEOUT, stats::ping(&state.pool)).await {
            Ok(Ok(())) => ReadyResponse::Ok(Json(Health {
                status: "ready".to_owned(),
            })),
            Ok(Err(e)) => ReadyResponse::ServiceUnavailable(ErrorBody::database_unavailable(&e)),
            Err(_) => {
                ReadyResponse::ServiceUnavailable(ErrorBody::database_unavailable(&format_args!(
                    "no answer to SELECT 1 within {} s",
                    DATABASE_PROBE_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Metrics
    ///
    /// Prometheus text format: CoinGecko requests sent by this process's worker, jobs by
    /// status, stored days and queued jobs over the whole database, how current each coin
    /// is (its last complete day and stale days), the last and next tick of
    /// `SYNC_SCHEDULE`, and whether the database answered. Always `200`: when the database is away, only its figures are
    /// missing.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&ApiState>) -> MetricsResponse {
        let database = tokio::time::timeout(DATABASE_PROBE_TIMEOUT, async {
            Ok::<_, sqlx::Error>(DatabaseFigures {
                jobs: stats::jobs_by_status(&state.pool).await?,
                stored_days: stats::stored_days(&state.pool).await?,
                freshness: schedule::freshness(&state.pool, &state.sync_schedule, Utc::now())
                    .await?,
            })
        })
        .await;
        let database = match database {
            Ok(Ok(figures)) => Some(figures),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics without the database's figures");
                None
            }
            Err(_) => {
                tracing::warn!("metrics without the database's figures: it did not answer in time");
                None
            }
        };
        let coingecko_calls = state
            .coingecko
            .as_ref()
            .map(|client| client.calls_by_outcome());
        MetricsResponse::Ok(PrometheusText(render(
            coingecko_calls.as_ref().map(|calls| calls.as_slice()),
            database.as_ref(),
        )))
    }
}

/// The figures `/metrics` reads from the database.
struct DatabaseFigures {
    jobs: Vec<(JobStatus, i64)>,
    stored_days: Vec<(String, i64)>,
    /// How current each coin is, and the schedule's ticks.
    freshness: Freshness,
}

/// Writes the exposition by hand: a few series do not need a metrics library.
fn render(coingecko_calls: Option<&[(&str, u64)]>, database: Option<&DatabaseFigures>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        write_family(&mut out, name, kind, help, samples);
    };
    family(
        "price_history_database_up",
        "gauge",
        "1 when the database answered the queries behind these metrics, 0 when not.",
        &[(String::new(), u8::from(database.is_some()).to_string())],
    );
    if let Some(calls) = coingecko_calls {
        let samples: Vec<_> = calls
            .iter()
            .map(|(outcome, count)| (format!("{{outcome=\"{outcome}\"}}"), count.to_string()))
            .collect();
        family(
            "price_history_coingecko_requests_total",
            "counter",
            "HTTP requests this process sent to CoinGecko, retries included, by how they ended.",
            &samples,
        );
    }
    if let Some(DatabaseFigures {
        jobs, stored_days, ..
    }) = database
    {
        let count_of = |wanted: JobStatus| {
            jobs.iter()
                .find(|(status, _)| *status == wanted)
                .map_or(0, |(_, count)| *count)
        };
        // Every status gets a sample, 0 included, so that a series never vanishes.
        let samples: Vec<_> = JobStatus::ALL
            .iter()
            .map(|status| {
                (
                    format!("{{status=\"{status}\"}}"),
                    count_of(*status).to_string(),
                )
            })
            .collect();
        family(
            "price_history_jobs",
            "gauge",
            "Ingestion jobs by status, over every process sharing the database.",
            &samples,
        );
        let queued = count_of(JobStatus::Pending);
        family(
            "price_history_jobs_queued",
            "gauge",
            "Jobs waiting on the queue for a worker (status pending).",
            &[(String::new(), queued.to_string())],
        );
        // Every registered coin gets a sample, 0 included.
        let samples: Vec<_> = stored_days
            .iter()
            .map(|(symbol, count)| (format!("{{symbol=\"{symbol}\"}}"), count.to_string()))
            .collect();
        family(
            "price_history_stored_days",
            "gauge",
            "Rows in daily_prices, provisional days included.",
            &samples,
        );
    }
    if let Some(figures) = database {
        render_freshness(&mut out, &figures.freshness);
    }
    out
}

fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, String)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// Freshness to alert on (`SYNC_SCHEDULE`): per coin with a complete day, that day and
/// how stale it is; the last tick acted on and the next one, when there are.
fn render_freshness(out: &mut String, freshness: &Freshness) {
    let labels = |coin: &CoinFreshness| {
        format!(
            "{{symbol=\"{}\",tracked=\"{}\"}}",
            coin.symbol, coin.tracked
        )
    };
    let last_days: Vec<_> = freshness
        .coins
        .iter()
        .map(|coin| {
            let midnight = coin.last_complete_day.and_time(NaiveTime::MIN).and_utc();
            (labels(coin), midnight.timestamp().to_string())
        })
        .collect();
    write_family(
        out,
        "price_history_coin_last_complete_day_timestamp_seconds",
        "gauge",
        "The latest stored day that is not provisional, as the unix time of its 00:00 UTC, per coin with one.",
        &last_days,
    );
    let stale: Vec<_> = freshness
        .coins
        .iter()
        .map(|coin| (labels(coin), coin.stale_days.to_string()))
        .collect();
    write_family(
        out,
        "price_history_coin_stale_days",
        "gauge",
        "Days from the last complete day to yesterday (UTC): 0 when yesterday is stored.",
        &stale,
    );
    let tick = |at: Option<DateTime<Utc>>| -> Vec<(String, String)> {
        at.map(|at| (String::new(), at.timestamp().to_string()))
            .into_iter()
            .collect()
    };
    write_family(
        out,
        "price_history_sync_last_tick_timestamp_seconds",
        "gauge",
        "The last tick of SYNC_SCHEDULE acted on by any process, as a unix time; absent before the first.",
        &tick(freshness.last_tick),
    );
    write_family(
        out,
        "price_history_sync_next_tick_timestamp_seconds",
        "gauge",
        "The next tick of SYNC_SCHEDULE, as a unix time; absent when the schedule is off.",
        &tick(freshness.next_tick),
    );
}

/// `{"status": "ok"}`: the process (or the database) answers.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Health")]
pub struct Health {
    /// `ok` for liveness, `ready` for readiness.
    pub status: String,
}

/// The Prometheus text exposition format, version 0.0.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusText(pub String);

impl Payload for PrometheusText {
    const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }
}

impl IntoResponse for PrometheusText {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.0)
    }
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process runs.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// `database_unavailable`: the database did not answer within 2 seconds.
    #[oai(status = 503)]
    ServiceUnavailable(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// The metrics.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PrometheusText),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_symbol_has_a_sample_and_each_family_its_help_and_type() {
        let jobs = vec![(JobStatus::Pending, 1), (JobStatus::Completed, 3)];
        let figures = DatabaseFigures {
            jobs,
            stored_days: vec![("BTC".to_owned(), 42)],
            freshness: Freshness {
                coins: vec![CoinFreshness {
                    symbol: crate::domain::Symbol::BTC,
                    tracked: true,
                    last_complete_day: "2026-11-26".parse().unwrap(),
                    stale_days: 1,
                }],
                last_tick: Some("2026-11-28T00:40:00Z".parse().unwrap()),
                next_tick: Some("2026-11-29T00:40:00Z".parse().unwrap()),
            },
        };
        let text = render(Some(&[("ok", 7), ("rate_limited", 1)]), Some(&figures));
        assert!(text.contains("price_history_database_up 1\n"), "{text}");
        assert!(
            text.contains("price_history_coingecko_requests_total{outcome=\"ok\"} 7\n")
                && text.contains(
                    "price_history_coingecko_requests_total{outcome=\"rate_limited\"} 1\n"
                ),
            "{text}"
        );
        assert!(
            text.contains("price_history_jobs{status=\"completed_with_gaps\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("price_history_jobs_queued 1\n"), "{text}");
        assert!(
            text.contains("price_history_stored_days{symbol=\"BTC\"} 42\n"),
            "{text}"
        );
        let families = text
            .lines()
            .filter(|line| line.starts_with("# TYPE"))
            .count();
        assert_eq!(
            families,
            text.lines()
                .filter(|line| line.starts_with("# HELP"))
                .count()
        );
        assert_eq!(families, 9);
        for line in [
            "price_history_coin_last_complete_day_timestamp_seconds{symbol=\"BTC\",tracked=\"true\"} 1795651200\n",
            "price_history_coin_stale_days{symbol=\"BTC\",tracked=\"true\"} 1\n",
            "price_history_sync_last_tick_timestamp_seconds 1795826400\n",
            "price_history_sync_next_tick_timestamp_seconds 1795912800\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn without_the_database_only_its_figures_are_missing() {
        let text = render(None, None);
        assert_eq!(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .collect::<Vec<_>>(),
            vec!["price_history_database_up 0"]
        );
    }
}
