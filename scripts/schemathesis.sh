#!/usr/bin/env bash
# Fuzzes the REST API with Schemathesis, driven by the API's own OpenAPI document: no
# request, however malformed, may get a 5xx, every response must match the document, and
# every request the document forbids (negative data) must be refused with a 4xx.
#
# First it checks the document itself with openapi-spec-validator, a standard validator
# that, unlike Schemathesis, refuses anything OpenAPI 3.0 does not allow (such as the
# 3.1-only `info.summary`), as strict client generators do.
#
# It builds the binary, starts a loopback fake CoinGecko, a loopback fake Coinbase
# Exchange (the second source) and `price-history api` on free ports, the api against a throwaway
# database (created by the binary, dropped at the end), waits for /readyz, runs
# Schemathesis, and stops the server. Schemathesis and openapi-spec-validator are
# installed from PyPI into a venv under target/ on first use.
#
# Needs: cargo, python3, psql, and PostgreSQL on 127.0.0.1:5432 where user postgres may
# connect without a password (as in the test suite).
#
# Settings (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED          a seed, to replay a run (default: random)
#   POSTGRES_ADMIN_URL         where to drop the database (default postgres://postgres@127.0.0.1:5432/postgres)
# Extra arguments are passed to `st run`.

set -euo pipefail

cd "$(dirname "$0")/.."

venv=target/schemathesis-venv
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}
admin_url=${POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
database="ph_schemathesis_$(date +%s)_$$"
token="schemathesis-$(date +%s%N)"
log=target/schemathesis-server.log

if [[ ! -x "$venv/bin/st" || ! -x "$venv/bin/openapi-spec-validator" ]]; then
    echo "installing schemathesis and openapi-spec-validator into $venv" >&2
    [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet schemathesis openapi-spec-validator
fi

# The checked-in document, which a test keeps identical to what the binary serves.
"$venv/bin/openapi-spec-validator" openapi/openapi.json

# The same build as the test suite's (`cargo test` builds the binary too), so CI compiles once.
cargo test --locked --no-run
# The fake CoinGecko's command; `--workspace` keeps the features of `cargo build`, so only
# the fake itself is compiled here.
cargo build --locked --workspace --bin fake-upstream

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

server=""
fake=""
fake_coinbase=""
cleanup() {
    for pid in "$server" "$fake" "$fake_coinbase"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" || true
        fi
    done
    psql -q -X "$admin_url" -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT

# No worker runs in `api`, but registering a coin (PUT /api/v1/coins/{symbol}) checks its
# id with one CoinGecko call: the loopback fake answers it (ids it does not know get
# "coin not found", as CoinGecko's do), with a budget that never makes a request wait.
fake_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/fake-upstream coingecko --bind "127.0.0.1:$fake_port" \
    >target/schemathesis-fake.log 2>&1 &
fake=$!

# Registering a coin also asks Coinbase Exchange about its product (`coinbase_product`, or
# the guess `{SYMBOL}-USD`): a loopback fake answers, without a rate limit of its own and
# with a budget that never makes a request wait, so that no test case reaches the real one.
fake_coinbase_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/fake-upstream coinbase --bind "127.0.0.1:$fake_coinbase_port" --requests-per-second 0 \
    >target/schemathesis-fake-coinbase.log 2>&1 &
fake_coinbase=$!

DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" \
    BIND_ADDR="127.0.0.1:$port" \
    API_TOKEN="$token" \
    COINGECKO_BASE_URL="http://127.0.0.1:$fake_port" \
    COINGECKO_CALLS_PER_MINUTE=60000 \
    COINBASE_BASE_URL="http://127.0.0.1:$fake_coinbase_port" \
    COINBASE_CALLS_PER_MINUTE=60000 \
    RUST_LOG="${RUST_LOG:-warn}" \
    target/debug/price-history api >"$log" 2>&1 &
server=$!

for _ in $(seq 1 120); do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "price-history api exited before it was ready; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base/readyz" 2>/dev/null; then
        break
    fi
    sleep 0.5
done

seed_args=()
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    seed_args=(--seed "$SCHEMATHESIS_SEED")
fi

# GET /api/v1/job-events (followIngestionJobs) is an event stream that stays open until
# the client leaves, which Schemathesis cannot judge: it is left out here, and covered by
# tests/it/events.rs and the page's browser test.
# From target/, so that Schemathesis keeps its cache (.schemathesis/, replayable
# failures) there rather than in the repository.
mkdir -p target/schemathesis
cd target/schemathesis
"../../$venv/bin/st" run "$base/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,negative_data_rejection \
    --max-examples "$max_examples" \
    --header "Authorization: Bearer $token" \
    --request-timeout 40 \
    --exclude-operation-id followIngestionJobs \
    "${seed_args[@]}" \
    "$@"
