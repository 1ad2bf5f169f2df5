//! Step 4: the missing hours of an hourly coin from its exchange product (Coinbase's
//! `granularity=3600`): one call per run of missing hours, split at 300, each window
//! stored with its checkpoint like a window of days. Each candle is judged on its own
//! (one that breaks a rule is refused and counted; its hour stays missing); it is stored
//! beside CoinGecko's point of its hour when the job's windows brought one (the check);
//! the hours a window's answer has no candle for are recorded as without trades, and never
//! cost a call again. Hours before the product's first candle cost no call: where they end
//! is learned from the oldest window that found none, and kept. Nothing the exchange does
//! fails the job: what it could not fill stays missing, and the final message says why.

use std::ops::ControlFlow;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Postgres, Transaction};

use super::checkpoint::Rows;
use super::hours::HourSource;
use super::run::patiently;
use super::window::WindowEnd;
use super::{JobError, Outcome, Run};
use crate::coinbase::MAX_CANDLES_PER_CALL;
use crate::domain::{
    CheckPoint, DisputeRule, Hour, HourRange, HourlyCandle, ProductId, RefusedHour, check_points,
    hours_from_exchange,
};
use crate::ingest::SourceError;
use crate::store::ingestion_jobs::JobRecord;
use crate::store::{
    hourly_coins, hourly_coverage, hourly_prices, hours_without_trades, job_hours, second_source,
};

/// How long after an hour ends its absence from an answer is taken to mean "no trades":
/// an exchange may still be publishing the last hour's candle in its first minutes, and an
/// hour recorded as without trades is never asked for again.
const SETTLE: TimeDelta = TimeDelta::minutes(5);

/// How many hours without a candle at the start of the oldest window teach where a
/// product's candles begin: a week, as for days (`fallback::CANDLES_BEGIN_MIN_EMPTY_DAYS`).
/// Fewer are quiet hours of a listed product.
const CANDLES_BEGIN_MIN_EMPTY_HOURS: i64 = 7 * 24;

/// One window's hours as stored with its checkpoint.
pub(super) struct HourRows {
    candles: Vec<HourlyCandle>,
    /// Hours the answer had no candle for: without trades.
    quiet: Vec<Hour>,
    rule: DisputeRule,
    refused: Vec<RefusedHour>,
    /// Where the product's candles begin, when this window taught it.
    begins: Option<Hour>,
}

impl HourRows {
    /// Hours built elsewhere (from CoinGecko's points), to store with a checkpoint.
    pub(super) fn built(candles: Vec<HourlyCandle>, rule: DisputeRule) -> HourRows {
        HourRows {
            candles,
            quiet: Vec::new(),
            rule,
            refused: Vec::new(),
            begins: None,
        }
    }
}

impl Rows for HourRows {
    /// Hours are counted in the job's `hours_fetched`, not in its daily `records_fetched`.
    fn fetched(&self) -> usize {
        0
    }

    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        job: &JobRecord,
    ) -> sqlx::Result<u64> {
        let written =
            hourly_prices::upsert(tx, job.symbol, &self.candles, job.force, self.rule).await?;
        hours_without_trades::record(tx, job.symbol, &self.quiet).await?;
        let counted = i32::try_from(written).unwrap_or(i32::MAX);
        job_hours::add_fetched(&mut **tx, job.id, counted).await?;
        Ok(written)
    }
}

impl<S: Sync> Run<'_, S> {
    /// Step 4; see the module's docs.
    pub(super) async fn exchange_hours(&mut self) -> Result<ControlFlow<Outcome>, JobError> {
        let Some(work) = &self.hours else {
            return Ok(ControlFlow::Continue(()));
        };
        let product = match work.source.clone() {
            HourSource::Exchange(product) => product,
            HourSource::Points => return Ok(ControlFlow::Continue(())),
            HourSource::Undecided => match self.decide_hour_source().await? {
                ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
                ControlFlow::Continue(Some(product)) => product,
                ControlFlow::Continue(None) if self.builds_hours_from_points() => {
                    return Ok(match self.hours_from_kept_points().await? {
                        Some(outcome) => ControlFlow::Break(outcome),
                        None => ControlFlow::Continue(()),
                    });
                }
                ControlFlow::Continue(None) => return Ok(ControlFlow::Continue(())),
            },
        };
        self.hours_begin_with_the_days(&product).await?;
        let windows = self.hour_windows().await?;
        if windows.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        self.count_planned(windows.len()).await?;
        tracing::info!(windows = windows.len(), %product, "fetching missing hours from the exchange");
        let mut at_the_edge = self.at_the_oldest_edge(windows[0]).await?;
        for window in windows {
            match self.hour_window(&product, window, at_the_edge).await? {
                WindowEnd::Stored(rows) => {
                    at_the_edge = at_the_edge && rows.begins.is_some_and(|h| h > window.last());
                    if let Some(begins) = rows.begins {
                        self.learn_hours_from(&product, begins).await?;
                    }
                    if let Some(work) = &mut self.hours {
                        work.note_refused(&rows.refused);
                    }
                }
                WindowEnd::Stop(outcome) => return Ok(ControlFlow::Break(outcome)),
                WindowEnd::BeyondReach(_) => {}
                WindowEnd::Failed(e) => {
                    tracing::warn!(error = %e, "the exchange gave no hours; they stay missing");
                    if let Some(work) = &mut self.hours {
                        work.failed = Some(e.to_string());
                    }
                    break;
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The product of a coin whose mapping was not checked when the attempt began, once the
    /// check (made by the second source's step, or here) finds it usable; `None` when it
    /// is not, and the coin's hours are built from CoinGecko's points instead, or when it
    /// cannot be checked yet (its hours stay missing, and the message says why). A stop
    /// during the check breaks off the attempt.
    async fn decide_hour_source(
        &mut self,
    ) -> Result<ControlFlow<Outcome, Option<ProductId>>, JobError> {
        let Some(second) = self.ingestor.second_source.clone() else {
            return Ok(ControlFlow::Continue(None));
        };
        let usable = match self.usable_product(&second).await? {
            ControlFlow::Continue(usable) => usable.map(|(product, _)| product),
            ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
        };
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let mapping = patiently(|| second_source::mapping(pool, symbol))
            .await?
            .unwrap_or_default();
        let source = match (&usable, mapping.usable) {
            (Some(product), _) => HourSource::Exchange(product.clone()),
            (None, Some(false)) => HourSource::Points,
            (None, _) => HourSource::Undecided,
        };
        if let Some(work) = &mut self.hours {
            work.found_unusable = source == HourSource::Points;
            work.source = source;
        }
        Ok(ControlFlow::Continue(usable))
    }

    /// The windows of the missing hours the exchange can have, oldest first: when forced,
    /// every hour of them on the first attempt, and on a later one those that attempts
    /// before it did not store.
    async fn hour_windows(&self) -> Result<Vec<HourRange>, JobError> {
        let Some(expected) = self.exchange_hours_expected().await? else {
            return Ok(Vec::new());
        };
        let job = self.attempt.job;
        let (pool, symbol) = (&self.ingestor.pool, job.symbol);
        let runs = match (job.force, job.attempts) {
            (true, ..=1) => vec![expected],
            (true, _) => {
                patiently(|| {
                    hourly_coverage::runs_not_stored_since(pool, symbol, expected, job.created_at)
                })
                .await?
            }
            (false, _) => {
                patiently(|| hourly_coverage::missing_runs(pool, symbol, expected)).await?
            }
        };
        Ok(runs
            .iter()
            .flat_map(|run| run.windows(MAX_CANDLES_PER_CALL))
            .collect())
    }

    /// Whether `oldest` starts where the coin's hours are known to begin: nothing is
    /// accounted for before it, so an answer empty at its start says where the product's
    /// candles begin (rather than a hole in the middle of its history).
    async fn at_the_oldest_edge(&self, oldest: HourRange) -> Result<bool, JobError> {
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let coin = patiently(|| hourly_coins::get(pool, symbol)).await?;
        Ok(coin.is_some_and(|coin| {
            coin.figures
                .accounted
                .is_none_or(|accounted| accounted.first() >= oldest.first())
        }))
    }

    /// One window of hours, asked and stored with the checkpoint.
    #[tracing::instrument(skip_all, fields(%product, hours = %window))]
    async fn hour_window(
        &self,
        product: &ProductId,
        window: HourRange,
        at_the_edge: bool,
    ) -> Result<WindowEnd<HourRows>, JobError> {
        let Some(second) = &self.ingestor.second_source else {
            return Ok(WindowEnd::Failed(SourceError::Permanent(
                "FALLBACK_SOURCE=off: no call to Coinbase Exchange is made.".to_owned(),
            )));
        };
        let checks = self.check_points_of(window);
        let rule = self.ingestor.hour_check;
        let ask = async {
            // Taken before the call: an hour still running when it was asked for is
            // provisional, even when the answer comes after it ended.
            let asked_at = Utc::now();
            let answer = second.client.hourly_candles(product, window).await?;
            Ok(hour_rows(
                &answer,
                window,
                asked_at,
                (&checks, rule),
                at_the_edge,
            ))
        };
        match self.ask_and_store(ask).await {
            // Rows the table refuses are the exchange's fault: the window failed, not the job.
            Err(JobError::Permanent(_)) => Ok(WindowEnd::Failed(SourceError::BadAnswer(format!(
                "its hourly candles for {window} broke a rule of the table, and nothing of them \
                 was stored."
            )))),
            end => end,
        }
    }

    /// CoinGecko's point of each hour of `window`, from the windows this attempt stored,
    /// and for the other hours from those attempts before it read.
    fn check_points_of(&self, window: HourRange) -> Vec<(Hour, CheckPoint)> {
        let Some(work) = self.hours.as_ref() else {
            return Vec::new();
        };
        let mut points = check_points(&work.points.prices, window);
        let read_now: std::collections::HashSet<Hour> =
            points.iter().map(|(hour, _)| *hour).collect();
        points.extend(
            work.kept
                .iter()
                .filter(|(hour, _)| window.contains(*hour) && !read_now.contains(hour))
                .copied(),
        );
        points.sort_by_key(|(hour, _)| *hour);
        points
    }

    /// A product has no hourly candle before its first daily one: where its daily candles
    /// begin, when known (`coins.coinbase_candles_from`), is kept as where its hours begin
    /// too, so that every reader of `coinbase_hours_from` (the coverage in hours, the
    /// schedule) expects the hours this job does.
    async fn hours_begin_with_the_days(&self, product: &ProductId) -> Result<(), JobError> {
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        let days_from = patiently(|| second_source::mapping(pool, symbol))
            .await?
            .and_then(|mapping| mapping.candles_from)
            .map(Hour::first_of);
        let hours_from = patiently(|| hourly_coins::get(pool, symbol))
            .await?
            .and_then(|coin| coin.coinbase_hours_from);
        match days_from {
            Some(days_from) if hours_from.is_none_or(|hours_from| hours_from < days_from) => {
                self.learn_hours_from(product, days_from).await
            }
            _ => Ok(()),
        }
    }

    /// Remembers that `product` has no hourly candle before `begins`.
    async fn learn_hours_from(&self, product: &ProductId, begins: Hour) -> Result<(), JobError> {
        tracing::info!(%product, %begins, "the exchange's hourly candles begin later than asked");
        let (pool, symbol) = (&self.ingestor.pool, self.attempt.job.symbol);
        patiently(|| second_source::learn_candles_from(pool, symbol, product, begins)).await?;
        Ok(())
    }
}

/// What one answer for `window` makes: its candles (each beside its hour's check point,
/// when there is one), those refused, and the hours without trades; at the oldest edge, an
/// answer with no candle for its first week (or none at all) teaches where candles begin,
/// and the hours before are not "without trades" but before the product.
fn hour_rows(
    answer: &[crate::domain::ExchangeCandle],
    window: HourRange,
    now: DateTime<Utc>,
    (checks, rule): (&[(Hour, CheckPoint)], DisputeRule),
    at_the_edge: bool,
) -> HourRows {
    let hours = hours_from_exchange(answer, window, now);
    // An answer with a candle it had to refuse is not trusted for what it leaves out: its
    // gaps stay missing (asked again later) rather than recorded as hours without trades.
    let mut quiet = if hours.refused.is_empty() {
        hours.without_candles(window, now - SETTLE)
    } else {
        Vec::new()
    };
    let first_traded = hours
        .candles
        .iter()
        .map(|c| c.hour)
        .chain(
            hours
                .refused
                .iter()
                .filter_map(|r| Hour::from_unix(r.time).ok()),
        )
        .min();
    let begins = match first_traded {
        Some(first) if window.first().hours_until(first) >= CANDLES_BEGIN_MIN_EMPTY_HOURS => {
            Some(first)
        }
        Some(_) => None,
        None if window.last().is_over(now - SETTLE) => Some(window.last().plus(1)),
        None => None,
    }
    .filter(|_| at_the_edge);
    if let Some(begins) = begins {
        quiet.retain(|hour| *hour >= begins);
    }
    let candles = hours
        .candles
        .into_iter()
        .map(
            |candle| match checks.iter().find(|(hour, _)| *hour == candle.hour) {
                Some((_, point)) => candle.clone().with_check(*point, rule).unwrap_or(candle),
                None => candle,
            },
        )
        .collect();
    HourRows {
        candles,
        quiet,
        rule,
        refused: hours.refused,
        begins,
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::ExchangeCandle;

    fn first() -> Hour {
        Hour::first_of(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap())
    }

    fn candle(hour: Hour, price: f64) -> ExchangeCandle {
        ExchangeCandle {
            time: hour.unix(),
            low: price,
            high: price,
            open: price,
            close: price,
            volume: 1.0,
        }
    }

    fn long_after() -> DateTime<Utc> {
        first().plus(10_000).start()
    }

    fn rows(answer: &[ExchangeCandle], at_the_edge: bool) -> HourRows {
        let window = HourRange::starting(first(), 300).unwrap();
        let rule = DisputeRule::new(Decimal::from(5));
        hour_rows(answer, window, long_after(), (&[], rule), at_the_edge)
    }

    #[test]
    fn a_week_without_candles_at_the_oldest_edge_says_where_candles_begin() {
        let listed = first().plus(200);
        let answer: Vec<_> = (200..300).map(|n| candle(first().plus(n), 10.0)).collect();

        let at_the_edge = rows(&answer, true);
        assert_eq!(at_the_edge.begins, Some(listed));
        assert!(
            at_the_edge.quiet.is_empty(),
            "the hours before are not quiet ones"
        );
        assert_eq!(at_the_edge.candles.len(), 100);

        let in_the_middle = rows(&answer, false);
        assert_eq!(in_the_middle.begins, None);
        assert_eq!(
            in_the_middle.quiet.len(),
            200,
            "a hole: hours without trades"
        );
    }

    #[test]
    fn fewer_quiet_hours_than_a_week_are_hours_without_trades_even_at_the_edge() {
        let answer: Vec<_> = (100..300).map(|n| candle(first().plus(n), 10.0)).collect();
        let rows = rows(&answer, true);
        assert_eq!(rows.begins, None);
        assert_eq!(rows.quiet.len(), 100);
    }

    #[test]
    fn an_empty_answer_at_the_edge_moves_the_beginning_past_the_window() {
        let rows = rows(&[], true);
        assert_eq!(rows.begins, Some(first().plus(300)));
        assert!(rows.quiet.is_empty());
    }

    #[test]
    fn an_hour_that_ended_minutes_ago_is_not_taken_for_one_without_trades() {
        let window = HourRange::starting(first(), 2).unwrap();
        let rule = DisputeRule::new(Decimal::from(5));
        let just_after = window.end() + TimeDelta::minutes(1);
        let rows = hour_rows(&[], window, just_after, (&[], rule), false);
        assert_eq!(
            rows.quiet,
            vec![first()],
            "the last hour may still be published"
        );
    }

    /// An audit's finding: of two candles for one hour the first was stored as final, and
    /// an answer with refused candles still had its gaps recorded as hours without trades.
    #[test]
    fn an_answer_holding_an_hour_twice_stores_neither_and_records_no_quiet_hour() {
        let mut answer: Vec<_> = (100..300).map(|n| candle(first().plus(n), 10.0)).collect();
        answer.push(candle(first().plus(150), 55.0));

        let rows = rows(&answer, false);

        assert_eq!(rows.refused.len(), 2, "both candles of the hour");
        assert!(rows.candles.iter().all(|c| c.hour != first().plus(150)));
        assert_eq!(rows.candles.len(), 199);
        assert!(rows.quiet.is_empty(), "the answer's gaps are not trusted");
    }

    #[test]
    fn a_candle_is_stored_beside_coingeckos_point_of_its_hour() {
        let window = HourRange::starting(first(), 2).unwrap();
        let rule = DisputeRule::new(Decimal::from(5));
        let point = CheckPoint {
            at: first().start() + TimeDelta::seconds(41),
            price: Decimal::from(10),
        };
        let answer = [candle(first(), 12.0), candle(first().plus(1), 10.0)];
        let rows = hour_rows(
            &answer,
            window,
            long_after(),
            (&[(first(), point)], rule),
            false,
        );
        let check = rows.candles[0].check.expect("the first hour has a point");
        assert!(check.disputed, "{check:?}");
        assert_eq!(rows.candles[1].check, None, "no point, no check");
    }
}
