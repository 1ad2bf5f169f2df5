//! The REST API (being written).
