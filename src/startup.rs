//! Settings in, a running service out: the one place that wires the pool, the price
//! source's client, the ingestor, the registry, the API's state, the worker and the
//! scheduler (zero2prod's `Application::build`).
//!
//! The commands of [`crate::cli`] start their role through [`Application::run`]; the tests'
//! harness and the benchmarks build the same [`Application`], so that what they exercise is
//! what ships (a hand-built copy once lost the client's redaction of secrets).

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState, ConnectionLimits};
use crate::coinbase::{CoinbaseClient, CoinbaseSettings};
use crate::coingecko::{CoinGeckoClient, CoinGeckoSettings};
use crate::config::{DatabaseUrl, Settings};
use crate::credits::Credits;
use crate::domain::{DisputeRule, ImportTrigger};
use crate::ingest::fallback::SecondSource;
use crate::ingest::{Ingestor, Reach};
use crate::queue::{self, WorkerOptions};
use crate::registry::Registry;
use crate::schedule::Scheduler;
use crate::shutdown::Shutdown;
use crate::store;
use crate::track_top::TrackTop;
use crate::upstream::{CallBudget, MonthlyCredits};

/// Connections per long-running process: the worker needs a few (heartbeat, listener,
/// the job), the API the rest.
pub const POOL_SIZE: u32 = 10;

/// Connections for a command that runs a few statements and exits (`migrate`, `coins`).
pub const SHORT_POOL_SIZE: u32 = 2;

/// The price sources the service fetches from, built once per process so that every user
/// of a source shares its call budget. A new source (and its settings) is one more field
/// here, built in [`Sources::new`].
#[derive(Clone)]
pub struct Sources {
    /// CoinGecko, hiding every secret of the process from what it quotes.
    pub coingecko: CoinGeckoClient,
    /// The second source (Coinbase Exchange) for the days CoinGecko's plan cannot reach;
    /// `None` with `FALLBACK_SOURCE=off`. It has a call budget of its own.
    pub coinbase: Option<CoinbaseClient>,
}

impl Sources {
    /// Every client, each keeping the key, `API_TOKEN` and the database password out of
    /// what it quotes, should an answer ever echo them. Every attempt takes a slot of the
    /// call budget shared by every process on this database.
    pub fn new(settings: &Settings, pool: &PgPool) -> anyhow::Result<Sources> {
        let secrets = secrets(settings);
        let coingecko = CoinGeckoClient::new(
            CoinGeckoSettings::from_config(settings),
            CallBudget::Shared(pool.clone()),
        )
        .context("while building the CoinGecko client")?
        .hiding(secrets.iter().map(String::as_str));
        coingecko.caller().budget().count_month(MonthlyCredits {
            limit: settings.calls_per_month()?,
            clock: settings.sync_clock(),
        });
        let coinbase = CoinbaseSettings::from_config(settings)
            .map(|coinbase| {
                CoinbaseClient::new(coinbase, CallBudget::Shared(pool.clone()))
                    .context("while building the Coinbase client")
                    .map(|client| {
                        // CoinGecko's key is no business of Coinbase's, but should an answer
                        // ever echo it, it is hidden there too.
                        let key = settings
                            .coingecko_api_key
                            .as_ref()
                            .map(|k| k.expose_secret());
                        client.hiding(secrets.iter().map(String::as_str).chain(key))
                    })
            })
            .transpose()?;
        Ok(Sources {
            coingecko,
            coinbase,
        })
    }
}

/// What a process must never quote: `API_TOKEN`, and the database password as written in
/// `DATABASE_URL` and decoded (`%40` for `@`, say).
fn secrets(settings: &Settings) -> Vec<String> {
    let token = settings.api_token.iter();
    token
        .map(|token| token.expose_secret().to_owned())
        .chain(settings.database_url.passwords())
        .collect()
}

/// Which long-lived role a process plays (INTERFACE.md, "Processes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The REST API and one worker (with its part in the schedule).
    Serve,
    /// The REST API only; it still sets back to pending the jobs whose worker died.
    Api,
    /// A worker (with its part in the schedule).
    Worker,
}

/// One process of the service, wired from its settings.
#[derive(Clone)]
pub struct Application {
    /// What the process was started with.
    pub settings: Settings,
    /// The database, migrated.
    pub pool: PgPool,
    /// The price sources' clients, shared by the worker, the registry and the API.
    pub sources: Sources,
}

impl Application {
    /// Waits for PostgreSQL (up to `DATABASE_CONNECT_TIMEOUT_SECS`), creates and migrates
    /// the database, opens a pool of `max_connections` and wires the clients.
    pub async fn build(settings: Settings, max_connections: u32) -> anyhow::Result<Application> {
        let pool = open_database(&settings, max_connections).await?;
        Application::with_pool(settings, pool)
    }

    /// Wires the clients over a pool already open on a migrated database.
    pub fn with_pool(settings: Settings, pool: PgPool) -> anyhow::Result<Application> {
        settings.job_retention_days()?;
        let sources = Sources::new(&settings, &pool)?;
        Ok(Application {
            settings,
            pool,
            sources,
        })
    }

    /// The plan's reach: configured, or learned and kept in the database.
    pub fn reach(&self) -> Reach {
        Reach::new(
            self.settings.plan_reach(),
            &CoinGeckoSettings::from_config(&self.settings),
        )
    }

    /// What runs a job.
    pub fn ingestor(&self) -> Ingestor {
        Ingestor {
            pool: self.pool.clone(),
            client: self.sources.coingecko.clone(),
            chunk_days: self.settings.coingecko_chunk_days,
            reach: self.reach(),
            second_source: self.sources.coinbase.clone().map(|client| SecondSource {
                client,
                max_deviation_percent: self.settings.fallback_max_deviation_percent,
            }),
            hour_check: DisputeRule::new(self.settings.fallback_max_deviation_percent),
        }
    }

    /// The coin registry, checking new coins with the process's client (so that the
    /// checks and the jobs share one call budget).
    pub fn registry(&self) -> Registry {
        Registry {
            pool: self.pool.clone(),
            client: self.sources.coingecko.clone(),
            reach: self.reach(),
            coinbase: self.sources.coinbase.clone(),
            credits: self.credits(),
        }
    }

    /// What work costs in the month's CoinGecko credits, and what is left.
    pub fn credits(&self) -> Credits {
        Credits {
            pool: self.pool.clone(),
            client: self.sources.coingecko.clone(),
            chunk_days: self.settings.coingecko_chunk_days,
            reach: self.reach(),
            schedule: self.settings.sync_schedule.clone(),
            fallback: self.settings.fallback_source,
        }
    }

    /// The import of the top coins, through the registry, for `trigger`.
    pub fn track_top(&self, trigger: ImportTrigger) -> TrackTop {
        TrackTop {
            registry: self.registry(),
            trigger,
        }
    }

    /// The API's state; refuses an `API_TOKEN` no client could present. `with_worker`
    /// says whether a worker runs in this process (`serve`), whose client the API then
    /// reports on.
    pub fn api_state(&self, with_worker: bool) -> anyhow::Result<ApiState> {
        Ok(ApiState {
            pool: self.pool.clone(),
            api_token: self.settings.api_token()?,
            coingecko: with_worker.then(|| self.sources.coingecko.clone()),
            finished_jobs: Default::default(),
            registry: self.registry(),
            track_top: self.track_top(ImportTrigger::Api),
            sync_schedule: self.settings.sync_schedule.clone(),
            credits: self.credits(),
        })
    }

    /// How this process's worker runs, under `name` (see [`queue::worker_name`]).
    pub fn worker_options(&self, name: String) -> WorkerOptions {
        WorkerOptions {
            name,
            lease: self.settings.job_lease(),
            max_attempts: self.settings.job_max_attempts,
            retry_base_delay: Duration::from_millis(self.settings.coingecko_retry_base_delay_ms),
        }
    }

    /// Starts a worker named `name` until `shutdown`. Once it is raised the clients start
    /// no call: the job's call in flight is given a grace to bring its answer, and nothing
    /// more.
    pub fn spawn_worker(&self, name: String, shutdown: Shutdown) -> JoinHandle<anyhow::Result<()>> {
        let coinbase = self.sources.coinbase.iter().map(|client| client.caller());
        for caller in std::iter::once(self.sources.coingecko.caller()).chain(coinbase) {
            caller.budget().stop_with(shutdown.clone());
        }
        tokio::spawn(queue::run_worker(
            self.pool.clone(),
            self.ingestor(),
            self.worker_options(name),
            shutdown,
        ))
    }

    /// Starts this process's part in `SYNC_SCHEDULE` until `shutdown`; none when the
    /// schedule is off.
    pub fn spawn_scheduler(&self, shutdown: Shutdown) -> Option<JoinHandle<()>> {
        if self.settings.sync_schedule.is_off() {
            tracing::info!(
                "SYNC_SCHEDULE is off: tracked coins are brought up to date only when tracking is turned on"
            );
            return None;
        }
        let scheduler = Scheduler {
            pool: self.pool.clone(),
            schedule: self.settings.sync_schedule.clone(),
            clock: self.settings.sync_clock(),
            reach: self.reach(),
            name: queue::worker_name(),
            credits: Some(self.credits()),
        };
        Some(tokio::spawn(scheduler.run(shutdown)))
    }

    /// Starts this process's part in retention (`JOB_RETENTION_DAYS`) until `shutdown`:
    /// every long-running process takes part, one at a time prunes.
    pub fn spawn_retention(&self, shutdown: Shutdown) -> JoinHandle<()> {
        let days = self.settings.job_retention_days().unwrap_or(None);
        tokio::spawn(queue::run_retention(self.pool.clone(), days, shutdown))
    }

    /// The API's limits: the documented ones, with `EVENT_STREAMS_MAX`.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            event_streams: self.settings.event_streams_max as usize,
            ..ConnectionLimits::default()
        }
    }

    /// Runs `role` until `shutdown` is raised, then lets every task stop cleanly (the
    /// worker hands its job back at a window boundary) and returns.
    pub async fn run(self, role: Role, shutdown: Shutdown) -> anyhow::Result<()> {
        match role {
            Role::Worker => {
                self.spawn_retention(shutdown.clone());
                let scheduler = self.spawn_scheduler(shutdown.clone());
                let worker = self.spawn_worker(queue::worker_name(), shutdown).await;
                let worker = worker.context("the worker panicked")?;
                if let (Ok(()), Some(scheduler)) = (&worker, scheduler) {
                    let _ = scheduler.await;
                }
                worker
            }
            Role::Serve => {
                let state = self.api_state(true)?;
                let listener = bind(&self.settings).await?;
                self.spawn_retention(shutdown.clone());
                let scheduler = self.spawn_scheduler(shutdown.clone());
                let worker = self.spawn_worker(queue::worker_name(), shutdown.clone());
                let api = api::serve(state, listener, self.connection_limits(), shutdown);
                let (worker, api) = tokio::join!(worker, api);
                let worker = worker.context("the worker panicked")?;
                if let (Ok(()), Ok(()), Some(scheduler)) = (&worker, &api, scheduler) {
                    let _ = scheduler.await;
                }
                worker?;
                api
            }
            Role::Api => {
                let state = self.api_state(false)?;
                let listener = bind(&self.settings).await?;
                self.spawn_retention(shutdown.clone());
                // No worker here, but jobs whose worker died are still set back to pending.
                tokio::spawn(queue::reconcile_orphans(
                    self.pool.clone(),
                    self.settings.job_lease(),
                    shutdown.clone(),
                ));
                api::serve(state, listener, self.connection_limits(), shutdown).await
            }
        }
    }
}

/// Waits for PostgreSQL (up to `DATABASE_CONNECT_TIMEOUT_SECS`), then creates and
/// migrates the database and opens the pool.
pub async fn open_database(settings: &Settings, max_connections: u32) -> anyhow::Result<PgPool> {
    store::database::wait_for_server(&settings.database_url, settings.database_connect_timeout())
        .await?;
    connect_and_migrate(&settings.database_url, max_connections).await
}

/// Creates the database if it is missing, opens a pool and applies every migration.
pub async fn connect_and_migrate(
    url: &DatabaseUrl,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    store::database::create_database_if_missing(url).await?;
    let pool = store::connect(url, max_connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Applies every migration: the queue's schema first (apalis-postgres's), because one of
/// ours puts a trigger on its table; then ours. Both migrators take PostgreSQL's advisory
/// migration lock, so replicas starting together apply each migration exactly once.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    queue::contract::setup(pool)
        .await
        .context("while creating the job queue's tables (apalis-postgres migrations)")?;
    store::database::migrate(pool).await
}

/// Listens on `BIND_ADDR`, saying what to check when it cannot.
async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    let bind = settings.bind_addr;
    TcpListener::bind(bind).await.with_context(|| {
        format!("could not listen on {bind} (BIND_ADDR): is another process using it?")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(database_url: &str, api_token: Option<&str>) -> Settings {
        let mut args = vec!["price-history", "--database-url", database_url];
        if let Some(token) = api_token {
            args.extend(["--api-token", token]);
        }
        args.push("migrate");
        crate::cli::Cli::try_parse_from(args)
            .expect("valid arguments")
            .settings
    }

    #[tokio::test]
    async fn the_coingecko_client_is_built_hiding_the_token_and_the_database_password() {
        let settings = settings(
            "postgres://u:p%40ss-w0rd-99@localhost/x",
            Some("tok-123456"),
        );
        let pool = PgPool::connect_lazy("postgres://localhost/none").expect("a lazy pool");
        let app = Application::with_pool(settings, pool).expect("an application");
        let quoted = app
            .sources
            .coingecko
            .caller()
            .redact("echo: tok-123456, p@ss-w0rd-99 and p%40ss-w0rd-99");
        assert_eq!(quoted, "echo: ***, *** and ***");
    }

    #[tokio::test]
    async fn the_apis_state_refuses_a_blank_or_padded_token_without_showing_it_and_takes_empty_as_unset()
     {
        let pool = PgPool::connect_lazy("postgres://localhost/none").expect("a lazy pool");
        let app = |token: &str| {
            Application::with_pool(
                settings("postgres://localhost/x", Some(token)),
                pool.clone(),
            )
            .expect("an application")
        };
        for token in ["   ", " padded-secret", "padded-secret\n"] {
            let error = app(token)
                .api_state(false)
                .err()
                .unwrap_or_else(|| panic!("{token:?} was accepted"));
            assert!(error.to_string().contains("API_TOKEN"), "{error}");
            assert!(!error.to_string().contains("padded-secret"), "{error}");
        }
        assert!(app("ok").api_state(false).is_ok());
        let empty = app("")
            .api_state(false)
            .expect("an empty token means not set");
        assert!(empty.api_token.is_none());
    }
}
