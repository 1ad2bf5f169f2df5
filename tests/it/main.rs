//! Integration tests: one binary, against the real PostgreSQL (each test in a database of
//! its own), a fake CoinGecko and a fake Coinbase Exchange on loopback.

mod api;
mod browser;
mod budget;
mod cli;
mod coins;
mod container;
mod durability;
mod events;
mod jobs;
mod outage;
mod page;
mod pipeline;
mod schedule;
mod second_source;
mod support;
mod untrusted;
mod upgrade;
