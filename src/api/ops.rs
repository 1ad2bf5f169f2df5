//! The `Ops` tag: liveness, readiness and metrics, for orchestrators and Prometheus.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::error::Unavailable;
use super::responses::responses;
use super::wire::text_payload;
use super::{ApiState, ApiTags};
use crate::coinbase::CoinbaseClient;
use crate::credits::Estimate;
use crate::domain::{JobStatus, PriceSource};
use crate::schedule::{self, Freshness};
use crate::store::call_budget::{self, BudgetFigures};
use crate::store::{coin_figures, stats, upstream_requests};
use crate::upstream::{CallOutcome, Caller, MonthFigures};

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
            Ok(Err(e)) => ReadyResponse::unavailable(&e),
            Err(_) => ReadyResponse::unavailable(&format_args!(
                "no answer to SELECT 1 within {} s",
                DATABASE_PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    /// Metrics
    ///
    /// Prometheus text format: this process's CoinGecko requests and its share of the call
    /// budget (slots taken, time waited for them, the configured budget), and the same for
    /// Coinbase Exchange, the second source (unless `FALLBACK_SOURCE=off`); over the whole
    /// database, every process's requests by outcome, jobs by status, stored candles, and
    /// the shared budgets (slots granted to every process, how far ahead they are handed
    /// out); and whether the database
    /// answers. Always `200`: a figure the database does not give within 2 seconds is
    /// left out, and `price_history_database_up` says only whether it answers at all.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&ApiState>) -> MetricsResponse {
        // The worker's client where a worker runs here (`serve`), else the one that checks
        // new coins: either way, the requests this process sent; and the second source's,
        // unless it is off.
        let coingecko = state.coingecko.as_ref().unwrap_or(&state.registry.client);
        let coinbase = state.registry.coinbase.as_ref().map(CoinbaseClient::caller);
        let callers: Vec<&Caller> = std::iter::once(coingecko.caller())
            .chain(coinbase)
            .collect();
        let database = database_figures(state.0, &callers).await;
        MetricsResponse::Ok(PrometheusText(render(&callers, &database)))
    }
}

/// What `/metrics` reads from the database: each figure on its own clock, all at once,
/// so that a slow one is left out, never the others, and never taken for the database
/// being down. The budgets are read for the sources this process calls.
async fn database_figures(state: &ApiState, callers: &[&Caller]) -> DatabaseFigures {
    let pool = &state.pool;
    let budgets = futures::future::join_all(callers.iter().map(|caller| async move {
        let source = caller.source();
        let name = format!("{source}_budgets");
        let read = figure(&name, call_budget::source_figures(pool, source)).await;
        read.map(|figures| (source, figures))
    }));
    let requests = futures::future::join_all(callers.iter().map(|caller| async move {
        let source = caller.source();
        let name = format!("{source}_shared_requests");
        let read = figure(&name, upstream_requests::by_outcome(pool, source)).await;
        read.map(|counts| (source, counts))
    }));
    let credits = &state.credits;
    let (up, jobs, jobs_ended, stored_candles, budgets, requests, freshness, month, estimate) = tokio::join!(
        figure("database_up", stats::ping(pool)),
        figure("jobs", stats::jobs_by_status(pool)),
        figure("jobs_ended", stats::jobs_ended(pool)),
        figure("stored_candles", coin_figures::stored_days(pool)),
        budgets,
        requests,
        figure("freshness", async {
            let reach = state.registry.reach().await?;
            schedule::freshness(pool, &state.sync_schedule, reach, Utc::now()).await
        }),
        figure("monthly_credits", credits.month()),
        figure("tracked_estimate", credits.tracked_estimate(credits.now())),
    );
    DatabaseFigures {
        up: up.is_some(),
        jobs,
        jobs_ended,
        stored_candles,
        budgets: budgets.into_iter().flatten().collect(),
        requests: requests.into_iter().flatten().collect(),
        freshness,
        month: month.flatten(),
        estimate,
    }
}

/// One figure of `/metrics` read within [`DATABASE_PROBE_TIMEOUT`]; `None`, logged, when
/// it failed or took longer.
async fn figure<T>(
    name: &str,
    read: impl std::future::Future<Output = sqlx::Result<T>>,
) -> Option<T> {
    match tokio::time::timeout(DATABASE_PROBE_TIMEOUT, read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!(figure = name, error = %e, "metrics without this figure of the database");
            None
        }
        Err(_) => {
            tracing::warn!(
                figure = name,
                "metrics without this figure of the database: it did not answer in time"
            );
            None
        }
    }
}

/// The figures `/metrics` reads from the database; each `None` when it could not be read.
struct DatabaseFigures {
    /// Whether the database answered `SELECT 1` in time: the only figure that says so.
    up: bool,
    jobs: Option<Vec<(JobStatus, i64)>>,
    /// How many jobs ever ended in each status (what retention deleted included).
    jobs_ended: Option<Vec<(JobStatus, i64)>>,
    stored_candles: Option<Vec<(String, i64)>>,
    /// Each source's shared budget, by key, for the sources whose budget could be read.
    budgets: Vec<(PriceSource, Vec<BudgetFigures>)>,
    /// Each source's requests by outcome over every process, for the sources read.
    requests: Vec<(PriceSource, Vec<(String, i64)>)>,
    /// How current each coin is, and the schedule's ticks.
    freshness: Option<Freshness>,
    /// CoinGecko's monthly credits over every process: one row.
    month: Option<MonthFigures>,
    /// What the tracked coins cost a month: one row of counts.
    estimate: Option<Estimate>,
}

impl DatabaseFigures {
    fn budgets_of(&self, source: PriceSource) -> Option<&[BudgetFigures]> {
        of_source(&self.budgets, source)
    }

    fn requests_of(&self, source: PriceSource) -> Option<&[(String, i64)]> {
        of_source(&self.requests, source)
    }
}

/// The figures of `source` in `figures`, when they could be read.
fn of_source<T>(figures: &[(PriceSource, Vec<T>)], source: PriceSource) -> Option<&[T]> {
    figures
        .iter()
        .find(|(of, _)| *of == source)
        .map(|(_, figures)| figures.as_slice())
}

/// The exposition: a registry of its own per scrape, holding this process's metrics
/// (shared handles, so they keep counting between scrapes) and the database's figures
/// as read now. To add a family, add one call below.
fn render(callers: &[&Caller], database: &DatabaseFigures) -> String {
    let out = Exposition::default();
    out.gauge(
        "price_history_database_up",
        "1 when the database answered SELECT 1 within 2 seconds, 0 when not; a figure too slow to read is left out, not counted here.",
        &[],
        [(vec![], f64::from(u8::from(database.up)))],
    );
    for caller in callers {
        let source = caller.source();
        render_source(&out, caller, database.budgets_of(source));
        if let Some(requests) = database.requests_of(source) {
            render_shared_requests(&out, source, requests);
        }
    }
    if let Some(jobs) = &database.jobs {
        render_jobs(&out, jobs);
    }
    if let Some(ended) = &database.jobs_ended {
        render_jobs_ended(&out, ended);
    }
    if let Some(stored_candles) = &database.stored_candles {
        // Every registered coin gets a sample, 0 included.
        let symbols: Vec<[&str; 1]> = stored_candles.iter().map(|(s, _)| [s.as_str()]).collect();
        out.per_coin_gauge(
            "price_history_stored_candles",
            "Rows in daily_prices (one candle per coin and day), provisional days included.",
            &["symbol"],
            symbols
                .iter()
                .zip(stored_candles)
                .map(|(labels, (_, count))| (&labels[..], *count as f64)),
        );
    }
    if let Some(freshness) = &database.freshness {
        render_freshness(&out, freshness);
    }
    render_credits(&out, database.month.as_ref(), database.estimate.as_ref());
    out.text()
}

/// CoinGecko's month: the credits (when limited), what is used and left, when they reset,
/// and what the tracked coins cost a month.
fn render_credits(out: &Exposition, month: Option<&MonthFigures>, estimate: Option<&Estimate>) {
    let gauge = |name: &str, help: &str, value: f64| out.gauge(name, help, &[], [(vec![], value)]);
    if let Some(month) = month {
        if let Some(limit) = month.limit {
            gauge(
                "price_history_coingecko_calls_per_month",
                "COINGECKO_CALLS_PER_MONTH: the monthly credits every process on the database shares.",
                f64::from(limit),
            );
        }
        if let Some(left) = month.left() {
            gauge(
                "price_history_coingecko_month_left_calls",
                "CoinGecko calls left this UTC month, over every process (0 once CoinGecko refused a call for spent credits).",
                left as f64,
            );
        }
        gauge(
            "price_history_coingecko_month_used_calls",
            "CoinGecko calls this UTC month over every process, retries, coin checks and /coins/markets included.",
            month.used as f64,
        );
        gauge(
            "price_history_coingecko_month_resets_timestamp_seconds",
            "When the month's CoinGecko credits reset (00:00 UTC on the first of the next month), in Unix seconds.",
            month.month.resets_at().timestamp() as f64,
        );
    }
    if let Some(estimate) = estimate {
        gauge(
            "price_history_coingecko_tracked_monthly_estimate_calls",
            "What keeping the tracked coins current costs a month under SYNC_SCHEDULE, in CoinGecko calls.",
            estimate.calls as f64,
        );
    }
}

/// One source's families, named after it (`price_history_coingecko_...`,
/// `price_history_coinbase_...`): this process's requests by outcome and its share of
/// the source's budget, and, when read, the budget shared by every process.
fn render_source(out: &Exposition, caller: &Caller, budgets: Option<&[BudgetFigures]>) {
    let (prefix, name) = (caller.source().as_str(), caller.source().display_name());
    out.counter(
        &format!("price_history_{prefix}_requests_total"),
        &format!("HTTP requests this process sent to {name}, retries included, by how they ended."),
        &["outcome"],
        caller
            .calls_by_outcome()
            .map(|(outcome, count)| (vec![outcome.as_str().to_owned()], count)),
    );
    let budget = caller.budget_metrics();
    out.register(budget.granted.clone());
    out.register(budget.wait.clone());
    out.register(budget.calls_per_minute.clone());
    let Some(budgets) = budgets else {
        return;
    };
    let key = |budget: &BudgetFigures| vec![budget.key_fingerprint.clone()];
    out.counter(
        &format!("price_history_{prefix}_budget_granted_total"),
        &format!("Slots of the shared {name} call budget granted to every process on this database, by key fingerprint."),
        &["key"],
        budgets
            .iter()
            .map(|budget| (key(budget), u64::try_from(budget.granted).unwrap_or(0))),
    );
    out.gauge(
        &format!("price_history_{prefix}_budget_backlog_seconds"),
        &format!("How far ahead of now the shared {name} call budget has handed out slots: above 0, the budget is in full use and callers queue."),
        &["key"],
        budgets
            .iter()
            .map(|budget| (key(budget), budget.backlog.as_secs_f64())),
    );
}

/// `source`'s requests by outcome over every process (each outcome gets a sample, 0
/// included): what alerts read, since a `worker` serves no /metrics of its own.
fn render_shared_requests(out: &Exposition, source: PriceSource, requests: &[(String, i64)]) {
    let count_of = |outcome: CallOutcome| {
        requests
            .iter()
            .find(|(of, _)| of == outcome.as_str())
            .map_or(0, |(_, count)| u64::try_from(*count).unwrap_or(0))
    };
    out.counter(
        &format!("price_history_{}_shared_requests_total", source.as_str()),
        &format!(
            "HTTP requests every process sharing the database sent to {}, retries included, by how they ended.",
            source.display_name()
        ),
        &["outcome"],
        CallOutcome::ALL
            .map(|outcome| (vec![outcome.as_str().to_owned()], count_of(outcome))),
    );
}

/// Ingestion jobs by status over the database; every status gets a sample, 0 included,
/// so that a series never vanishes.
fn render_jobs(out: &Exposition, jobs: &[(JobStatus, i64)]) {
    let count_of = |wanted: JobStatus| {
        jobs.iter()
            .find(|(status, _)| *status == wanted)
            .map_or(0, |(_, count)| *count)
    };
    out.gauge(
        "price_history_jobs",
        "Ingestion jobs by status, over every process sharing the database.",
        &["status"],
        JobStatus::ALL
            .iter()
            .map(|status| (vec![status.to_string()], count_of(*status) as f64)),
    );
    out.gauge(
        "price_history_jobs_queued",
        "Jobs waiting on the queue for a worker (status pending).",
        &[],
        [(vec![], count_of(JobStatus::Pending) as f64)],
    );
}

/// Jobs that ever ended, by status, over the database: a counter, unlike
/// `price_history_jobs`, which falls when retention deletes old jobs (an alert on a rise
/// of failed jobs reads this one). Every end gets a sample, 0 included.
fn render_jobs_ended(out: &Exposition, ended: &[(JobStatus, i64)]) {
    let count_of = |wanted: JobStatus| {
        ended
            .iter()
            .find(|(status, _)| *status == wanted)
            .map_or(0, |(_, count)| u64::try_from(*count).unwrap_or(0))
    };
    out.counter(
        "price_history_jobs_ended_total",
        "Ingestion jobs that ended, by how, over every process sharing the database; jobs deleted by retention stay counted.",
        &["status"],
        JobStatus::ALL
            .iter()
            .filter(|status| status.is_terminal())
            .map(|status| (vec![status.to_string()], count_of(*status))),
    );
}

/// Freshness to alert on (`SYNC_SCHEDULE`): per coin with a complete day, that day and
/// how stale it is, and per tracked coin without one how stale it is all the same; the
/// last tick acted on and the next one, when there are.
fn render_freshness(out: &Exposition, freshness: &Freshness) {
    let labels: Vec<[&str; 2]> = freshness
        .coins
        .iter()
        .map(|coin| {
            [
                coin.symbol.as_str(),
                if coin.tracked { "true" } else { "false" },
            ]
        })
        .collect();
    out.per_coin_gauge(
        "price_history_coin_last_complete_day_timestamp_seconds",
        "The latest stored day that is not provisional, as the unix time of its 00:00 UTC, per coin with one.",
        &["symbol", "tracked"],
        labels.iter().zip(&freshness.coins).filter_map(|(labels, coin)| {
            let midnight = coin.last_complete_day?.and_time(NaiveTime::MIN).and_utc();
            Some((&labels[..], midnight.timestamp() as f64))
        }),
    );
    out.per_coin_gauge(
        "price_history_coin_stale_seconds",
        "How far the last complete day is behind yesterday (UTC): the coin's stale_days times 86400; 0 when yesterday is stored. A tracked coin with no complete day, and no job under way, counts from the day before the first day it keeps.",
        &["symbol", "tracked"],
        labels
            .iter()
            .zip(&freshness.coins)
            .map(|(labels, coin)| (&labels[..], (coin.stale_days * 86_400) as f64)),
    );
    let tick = |at: Option<DateTime<Utc>>| at.map(|at| (vec![], at.timestamp() as f64));
    out.gauge(
        "price_history_sync_last_tick_timestamp_seconds",
        "The last tick of SYNC_SCHEDULE acted on by any process, as a unix time; absent before the first.",
        &[],
        tick(freshness.last_tick),
    );
    out.gauge(
        "price_history_sync_next_tick_timestamp_seconds",
        "The next tick of SYNC_SCHEDULE, as a unix time; absent when the schedule is off.",
        &[],
        tick(freshness.next_tick),
    );
}

/// A registry with shorthands for the families `/metrics` builds at each scrape.
#[derive(Default)]
struct Exposition {
    registry: prometheus::Registry,
    /// Families with one sample per coin, written straight as text: at ten thousand
    /// coins, building them through the registry (a hashed, allocated label set per
    /// sample, then sorted) cost most of a scrape.
    per_coin: std::cell::RefCell<String>,
}

impl Exposition {
    /// A gauge family with one sample per label-value list.
    fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        samples: impl IntoIterator<Item = (Vec<String>, f64)>,
    ) {
        let family = prometheus::GaugeVec::new(prometheus::Opts::new(name, help), labels);
        self.family(family, samples, |gauge, value| gauge.set(value));
    }

    /// A counter family (`_total`) with one sample per label-value list.
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        samples: impl IntoIterator<Item = (Vec<String>, u64)>,
    ) {
        let family = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels);
        self.family(family, samples, |counter, value| counter.inc_by(value));
    }

    /// A family of `family`'s kind, each sample `put` under its label values.
    fn family<T, V>(
        &self,
        family: prometheus::Result<prometheus::core::MetricVec<T>>,
        samples: impl IntoIterator<Item = (Vec<String>, V)>,
        put: impl Fn(&T::M, V),
    ) where
        T: prometheus::core::MetricVecBuilder + 'static,
    {
        let family = family.expect("a valid metric name and labels");
        for (values, value) in samples {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            put(&family.with_label_values(&values), value);
        }
        self.register(family);
    }

    /// A metric kept elsewhere (a handle that counts between scrapes).
    fn register(&self, collector: impl prometheus::core::Collector + 'static) {
        self.registry
            .register(Box::new(collector))
            .expect("each family is registered once");
    }

    /// A gauge family with one sample per coin, as text; `samples` are label values
    /// (in the order of `labels`) and the value.
    fn per_coin_gauge<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        samples: impl IntoIterator<Item = (&'a [&'a str], f64)>,
    ) {
        use std::fmt::Write as _;
        let mut out = self.per_coin.borrow_mut();
        let _ = writeln!(
            out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (values, value) in samples {
            out.push_str(name);
            out.push('{');
            for (i, (label, value)) in labels.iter().zip(values).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{label}=\"{escaped}\"");
            }
            let _ = writeln!(out, "}} {value}");
        }
    }

    /// The Prometheus text format, version 0.0.4.
    fn text(&self) -> String {
        let mut text = prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("the text encoder writes any gathered family");
        text.push_str(&self.per_coin.borrow());
        text
    }
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

text_payload!(PrometheusText, "text/plain; version=0.0.4; charset=utf-8");

responses! {
    pub enum HealthResponse {
        /// The process runs.
        200 Ok(Json<Health>),
    }
}

responses! {
    pub enum ReadyResponse {
        /// The database answers.
        200 Ok(Json<Health>),
        /// `database_unavailable`: the database did not answer within 2 seconds.
        503 ServiceUnavailable,
    }
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
    use crate::coingecko::CoinGeckoClient;
    use crate::upstream::CallBudget;

    fn client() -> CoinGeckoClient {
        CoinGeckoClient::new(
            crate::coingecko::CoinGeckoSettings {
                base_url: "http://127.0.0.1:1".to_owned(),
                api_key: None,
                calls_per_minute: std::num::NonZeroU32::new(120).unwrap(),
                max_retries: 0,
                retry_base_delay: Duration::from_millis(1),
                timeout: Duration::from_secs(1),
            },
            CallBudget::ProcessLocal,
        )
        .unwrap()
    }

    #[test]
    fn every_status_and_symbol_has_a_sample_and_each_family_its_help_and_type() {
        let jobs = vec![(JobStatus::Pending, 1), (JobStatus::Completed, 3)];
        let figures = DatabaseFigures {
            up: true,
            jobs: Some(jobs),
            jobs_ended: Some(vec![(JobStatus::Failed, 4)]),
            stored_candles: Some(vec![("BTC".to_owned(), 42)]),
            budgets: vec![(
                PriceSource::CoinGecko,
                vec![BudgetFigures {
                    key_fingerprint: "none".to_owned(),
                    granted: 51,
                    calls_per_minute: 120,
                    backlog: Duration::from_millis(1500),
                }],
            )],
            requests: vec![(
                PriceSource::CoinGecko,
                vec![("refused".to_owned(), 2), ("ok".to_owned(), 40)],
            )],
            freshness: Some(Freshness {
                coins: vec![schedule::CoinFreshness {
                    symbol: crate::domain::Symbol::BTC,
                    tracked: true,
                    last_complete_day: Some("2026-11-26".parse().unwrap()),
                    stale_days: 1,
                }],
                last_tick: Some("2026-11-28T00:40:00Z".parse().unwrap()),
                next_tick: Some("2026-11-29T00:40:00Z".parse().unwrap()),
            }),
            month: Some(MonthFigures {
                month: crate::domain::CreditMonth::containing("2026-11-28".parse().unwrap()),
                used: 9000,
                limit: Some(10_000),
                refused: false,
            }),
            estimate: Some(Estimate::of((300, 0, 0), (30, 30))),
        };
        let client = client();
        client.caller().budget_metrics().granted.inc_by(2);
        let text = render(&[client.caller()], &figures);
        for line in [
            "price_history_database_up 1",
            "price_history_coingecko_calls_per_month 10000",
            "price_history_coingecko_month_used_calls 9000",
            "price_history_coingecko_month_left_calls 1000",
            "price_history_coingecko_month_resets_timestamp_seconds 1796083200",
            "price_history_coingecko_tracked_monthly_estimate_calls 9000",
            "price_history_coingecko_requests_total{outcome=\"ok\"} 0",
            "price_history_coingecko_requests_total{outcome=\"rate_limited\"} 0",
            "price_history_coingecko_shared_requests_total{outcome=\"ok\"} 40",
            "price_history_coingecko_shared_requests_total{outcome=\"refused\"} 2",
            "price_history_coingecko_shared_requests_total{outcome=\"rate_limited\"} 0",
            "price_history_jobs{status=\"completed_with_gaps\"} 0",
            "price_history_jobs_ended_total{status=\"failed\"} 4",
            "price_history_jobs_ended_total{status=\"cancelled\"} 0",
            "price_history_jobs{status=\"completed\"} 3",
            "price_history_jobs_queued 1",
            "price_history_stored_candles{symbol=\"BTC\"} 42",
            "price_history_coingecko_slots_granted_total 2",
            "price_history_coingecko_slot_wait_seconds_count 0",
            "price_history_coingecko_budget_calls_per_minute 120",
            "price_history_coingecko_budget_granted_total{key=\"none\"} 51",
            "price_history_coingecko_budget_backlog_seconds{key=\"none\"} 1.5",
            "price_history_coin_last_complete_day_timestamp_seconds{symbol=\"BTC\",tracked=\"true\"} 1795651200",
            "price_history_coin_stale_seconds{symbol=\"BTC\",tracked=\"true\"} 86400",
            "price_history_sync_last_tick_timestamp_seconds 1795826400",
            "price_history_sync_next_tick_timestamp_seconds 1795912800",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
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
        assert_eq!(families, 21);
    }

    #[test]
    fn without_the_database_only_its_figures_are_missing() {
        let none = DatabaseFigures {
            up: false,
            jobs: None,
            jobs_ended: None,
            stored_candles: None,
            budgets: vec![],
            requests: vec![],
            freshness: None,
            month: None,
            estimate: None,
        };
        let text = render(&[client().caller()], &none);
        assert!(text.contains("price_history_database_up 0\n"), "{text}");
        assert!(!text.contains("price_history_jobs"), "{text}");
        assert!(!text.contains("budget_granted"), "{text}");
        assert!(!text.contains("shared_requests"), "{text}");
    }

    #[test]
    fn a_figure_too_slow_to_read_is_left_out_and_the_database_still_counts_as_up() {
        let slow_candles = DatabaseFigures {
            up: true,
            jobs: Some(vec![]),
            jobs_ended: Some(vec![]),
            stored_candles: None,
            budgets: vec![
                (PriceSource::CoinGecko, vec![]),
                (PriceSource::Coinbase, vec![]),
            ],
            requests: vec![],
            freshness: None,
            month: None,
            estimate: None,
        };
        let text = render(&[client().caller()], &slow_candles);
        assert!(text.contains("price_history_database_up 1\n"), "{text}");
        assert!(text.contains("price_history_jobs_queued 0\n"), "{text}");
        assert!(!text.contains("price_history_stored_candles"), "{text}");
    }

    #[test]
    fn the_second_source_has_its_requests_and_budget_beside_coingeckos() {
        let coinbase = CoinbaseClient::new(
            crate::coinbase::CoinbaseSettings {
                base_url: "http://127.0.0.1:1".to_owned(),
                calls_per_minute: std::num::NonZeroU32::new(120).unwrap(),
                max_retries: 0,
                retry_base_delay: Duration::from_millis(1),
                timeout: Duration::from_secs(1),
            },
            CallBudget::ProcessLocal,
        )
        .unwrap();
        coinbase.caller().budget_metrics().granted.inc_by(3);
        let figures = DatabaseFigures {
            up: true,
            jobs: None,
            jobs_ended: None,
            stored_candles: None,
            budgets: vec![(
                PriceSource::Coinbase,
                vec![BudgetFigures {
                    key_fingerprint: "none".to_owned(),
                    granted: 7,
                    calls_per_minute: 120,
                    backlog: Duration::from_millis(500),
                }],
            )],
            requests: vec![],
            freshness: None,
            month: None,
            estimate: None,
        };
        let coingecko = client();
        let text = render(&[coingecko.caller(), coinbase.caller()], &figures);
        for line in [
            "price_history_coinbase_requests_total{outcome=\"ok\"} 0",
            "price_history_coinbase_requests_total{outcome=\"transport_error\"} 0",
            "price_history_coinbase_slots_granted_total 3",
            "price_history_coinbase_budget_calls_per_minute 120",
            "price_history_coinbase_budget_granted_total{key=\"none\"} 7",
            "price_history_coinbase_budget_backlog_seconds{key=\"none\"} 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let without = render(&[coingecko.caller()], &figures);
        assert!(!without.contains("price_history_coinbase"), "{without}");
    }
}
