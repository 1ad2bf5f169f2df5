//! All SQL of the service, one module per table or concern, as plain parameterised
//! queries. Nothing here knows about HTTP, the queue or CoinGecko.

pub mod call_budget;
pub mod coin_figures;
pub mod coin_imports;
pub mod coins;
pub mod daily_prices;
pub mod database;
pub mod days;
mod decode;
pub mod empty_days;
pub mod final_hours;
pub mod gaps;
pub mod hour_rows;
pub mod hourly_coins;
pub mod hourly_coverage;
pub mod hourly_figures;
pub mod hourly_prices;
pub mod hours_without_trades;
pub mod ingestion_jobs;
pub mod job_check_points;
pub mod job_hours;
pub mod monthly_credits;
pub mod patience;
pub mod plan_reach;
pub mod retention;
pub mod second_source;
pub mod stats;
pub mod sync_schedule;
pub mod upstream_requests;

pub use database::connect;
pub use patience::{is_unavailable, patiently};
