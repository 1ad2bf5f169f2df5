//! Integration tests: one binary, against the real PostgreSQL (each test in a database of
//! its own) and a fake CoinGecko on loopback.

mod api;
mod cli;
mod durability;
mod jobs;
mod mutants;
mod outage;
mod pipeline;
mod support;
