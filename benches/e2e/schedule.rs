//! Row 10: `SYNC_SCHEDULE` on three `worker` replicas, in a database of its own (one
//! tracked coin would otherwise meet the other rows' jobs). A schedule of every two
//! seconds runs for a few minutes (seconds in smoke mode); now and then, right after a
//! tick, a few recent days are deleted, so that the next tick finds days missing. Every
//! tick due in the run is looked at: was it acted on, once; did it find days missing;
//! how many jobs were created (counted in `ingestion_jobs`, not taken from the actor).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Days, TimeDelta, Utc};
use price_history::domain::{Symbol, Trigger};
use price_history::schedule::SyncSchedule;
use price_history::store::{coins, ingestion_jobs, sync_schedule};

use super::{Bench, Report, Sizes, spawn, terminate, with_database};

const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";

impl Bench {
    pub(super) async fn schedule(&self, sizes: &Sizes, report: &mut Report) -> Result<()> {
        let run_for = if sizes.smoke {
            Duration::from_secs(12)
        } else {
            Duration::from_secs(180)
        };
        let database = format!("{}_schedule", self.database);
        let url = with_database(&self.admin_url, &database)?;
        let pool = price_history::startup::connect_and_migrate(&url.parse()?, 4).await?;
        let result = self.schedule_run(&url, &pool, run_for, report).await;
        pool.close().await;
        self.drop_database(&database).await;
        result
    }

    async fn schedule_run(
        &self,
        url: &str,
        pool: &sqlx::PgPool,
        run_for: Duration,
        report: &mut Report,
    ) -> Result<()> {
        let today = Utc::now().date_naive();
        let day = |n: u64| today.checked_sub_days(Days::new(n)).expect("a date");
        coins::set_tracking(pool, Symbol::BTC, true, Some(day(30)))
            .await?
            .context("BTC is registered")?;
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(sync_schedule::TICKS_CHANNEL).await?;
        // Instants of the fake's calls, read as wall-clock times.
        let (base_instant, base_time) = (Instant::now(), Utc::now());
        let wall =
            |at: Instant| base_time + TimeDelta::from_std(at - base_instant).unwrap_or_default();
        let calls_before = self.fake.call_count();

        let env = [
            ("SYNC_SCHEDULE", EVERY_TWO_SECONDS),
            ("COINGECKO_CALLS_PER_MINUTE", "6000"),
        ];
        let fake = self.fake.base_url();
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(spawn(url, &fake, &["worker"], &env)?);
        }
        let started = Utc::now();
        let deadline = Instant::now() + run_for;
        // After every third tick that found nothing missing, delete a few recent days
        // (two runs), so the next tick has work.
        let mut current_ticks = 0;
        let mut seen: Option<DateTime<Utc>> = None;
        while Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
            let ticks = sync_schedule::acted_ticks(pool).await?;
            let last_seen = seen;
            for tick in ticks.into_iter().filter(|t| Some(t.tick) > last_seen) {
                seen = Some(tick.tick);
                if tick.coins_behind == 0 {
                    current_ticks += 1;
                    if current_ticks % 3 == 0 {
                        sqlx::query(
                            "DELETE FROM daily_prices WHERE symbol = 'BTC' AND date = ANY($1)",
                        )
                        .bind(vec![day(1), day(2), day(5)])
                        .execute(pool)
                        .await?;
                    }
                }
            }
        }
        let stopped = Utc::now();
        for mut worker in workers {
            terminate(&mut worker).await?;
        }

        let acted = sync_schedule::acted_ticks(pool).await?;
        let jobs: Vec<_> = ingestion_jobs::list(pool, None, None, 100)
            .await?
            .into_iter()
            .filter(|job| job.trigger == Trigger::Schedule)
            .collect();
        let calls: Vec<DateTime<Utc>> = self
            .fake
            .calls()
            .into_iter()
            .skip(calls_before)
            .map(|call| wall(call.at))
            .collect();
        // Every tick due between the first acted on and the stop, by the expression.
        let schedule: SyncSchedule = EVERY_TWO_SECONDS.parse()?;
        let first = acted.first().context("a tick was acted on")?.tick;
        let mut due = vec![first];
        while let Some(next) = schedule.next_after(*due.last().unwrap())
            && next <= stopped - TimeDelta::seconds(1)
        {
            due.push(next);
        }
        let acted_due = due
            .iter()
            .filter(|tick| acted.iter().any(|a| a.tick == **tick))
            .count();

        let mut to_queue = Vec::new();
        let mut with_work = (0, 0);
        let mut without_work = (0, 0);
        let mut busy = (0, 0);
        let last_due = *due.last().unwrap();
        for (i, tick) in acted.iter().enumerate() {
            if tick.tick > last_due {
                break;
            }
            let until = acted.get(i + 1).map_or(stopped, |next| next.acted_at);
            let created: Vec<_> = jobs
                .iter()
                .filter(|job| job.created_at >= tick.acted_at && job.created_at < until)
                .collect();
            let n = created.len();
            let class = if tick.coins_busy > 0 {
                &mut busy
            } else if tick.coins_behind > 0 {
                &mut with_work
            } else {
                &mut without_work
            };
            class.0 += 1;
            class.1 += n;
            let target = usize::from(tick.coins_behind > 0 && tick.coins_busy == 0);
            if n != target {
                report.notes.push(format!(
                    "tick {} created {n} jobs, target {target}",
                    tick.tick
                ));
            }
            // A catch-up acts on a tick that passed before the process started: no delay to measure.
            if let Some(job) = created.first().filter(|_| !tick.catch_up) {
                let queued = job.created_at - tick.tick;
                let first_call = calls.iter().find(|at| **at >= job.created_at).copied();
                to_queue.push((queued, first_call.map(|at| at - tick.tick)));
            }
        }
        let ms = |d: TimeDelta| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let queued_ms: Vec<f64> = to_queue.iter().map(|(q, _)| ms(*q)).collect();
        let call_ms: Vec<f64> = to_queue.iter().filter_map(|(_, c)| c.map(ms)).collect();
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        let (median_queued, median_call) = (median(queued_ms.clone()), median(call_ms.clone()));
        report.row(
            "10. SYNC_SCHEDULE, 3 worker replicas: tick to job queued, to first CoinGecko call",
            format!(
                "queued: median {:.0} ms, max {:.0} ms; first call: median {:.0} ms, max {:.0} ms ({} jobs, catch-ups left out)",
                median_queued.unwrap_or(f64::NAN),
                max(&queued_ms),
                median_call.unwrap_or(f64::NAN),
                max(&call_ms),
                to_queue.len()
            ),
            "queued < 500 ms, call < 1 s",
            Some(
                !to_queue.is_empty()
                    && max(&queued_ms) < 500.0
                    && call_ms.len() == to_queue.len()
                    && max(&call_ms) < 1000.0,
            ),
        );
        let met = acted_due == due.len()
            && with_work.1 == with_work.0
            && without_work.1 == 0
            && busy.1 == 0
            && with_work.0 > 0;
        report.row(
            format!(
                "10. Ticks over {} s with 3 replicas (`{EVERY_TWO_SECONDS}`): jobs created per tick",
                (stopped - started).num_seconds()
            ),
            format!(
                "{acted_due} of {} ticks due acted on, each once; {} with days missing: {} jobs; \
                 {} with none: {} jobs; {} with a job still active: {} jobs",
                due.len(),
                with_work.0,
                with_work.1,
                without_work.0,
                without_work.1,
                busy.0,
                busy.1
            ),
            "exactly 1 per tick with days missing, 0 otherwise",
            Some(met),
        );
        Ok(())
    }
}
