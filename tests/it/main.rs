//! Integration tests: one binary, against the real PostgreSQL (each test in a database of
//! its own) and a fake CoinGecko on loopback.

mod cli;
mod durability;
mod jobs;
mod pipeline;
mod support;
