-- Every process's HTTP requests to each source, by how they ended (`/metrics`'
-- `price_history_{source}_shared_requests_total`). A `worker` process serves no
-- /metrics, so the per-process `..._requests_total` of the API replicas missed the jobs'
-- calls, and with them the refusals and 429s that alerts watch. One row per source and
-- outcome, one upsert per request: requests are spaced by the call budget, so the row is
-- seldom contended. Only additions.
CREATE TABLE upstream_requests (
    source  VARCHAR(30) NOT NULL,
    outcome VARCHAR(30) NOT NULL,
    count   BIGINT      NOT NULL,
    PRIMARY KEY (source, outcome)
);
