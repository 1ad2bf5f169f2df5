//! The chaos test, in a binary of its own so that it runs alone (see `chaos/chaos.rs`).
//! It shares the integration tests' harness and private PostgreSQL cluster.

#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "it/cluster.rs"]
mod cluster;

#[path = "chaos/chaos.rs"]
mod chaos;
