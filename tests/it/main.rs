//! Integration tests: one binary, against the real PostgreSQL (each test in a database of
//! its own), a fake CoinGecko and a fake Coinbase Exchange on loopback.

mod alerts;
mod api;
mod browser;
mod budget;
mod cli;
mod cluster;
mod coins;
mod container;
mod credits;
mod durability;
mod events;
mod export;
mod figures;
mod hourly_job;
mod hourly_optin;
mod hourly_reads;
mod hourly_store;
mod jobs;
mod outage;
mod page;
mod page_budget;
mod pipeline;
mod private_postgres;
mod queue_contract;
mod retention;
mod scale;
mod schedule;
mod second_source;
mod support;
mod track_top;
mod untrusted;
mod upgrade;
