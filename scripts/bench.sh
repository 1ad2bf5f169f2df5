#!/usr/bin/env bash
# The benchmarks, in one command: criterion for the in-process parts, then the
# end-to-end runner (the real binary against the local PostgreSQL and a loopback fake
# CoinGecko), which writes the table to BENCHMARKS.md with the criterion figures.
#
#   bash scripts/bench.sh            full sizes (a few minutes), writes BENCHMARKS.md
#   PH_BENCH_SMOKE=1 bash scripts/bench.sh
#                                    tiny sizes, writes target/BENCHMARKS.smoke.md
#   PH_BENCH_ONLY=pipeline|gaps|scale|second-source|export|hourly-job|year|hourly|page bash scripts/bench.sh
#                                    one piece of the end-to-end runner alone (criterion
#                                    still runs), writes target/BENCHMARKS.<piece>.md
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and wrk, which it
# installs from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

mkdir -p target
if [[ -n "${PH_BENCH_SMOKE:-}" ]]; then
    # Smoke: debug builds already made by the tests; criterion only checks it runs.
    cargo test --locked --bench pipeline -- --test 2>&1 | tee target/criterion.txt
    PH_CRITERION_OUTPUT=target/criterion.txt cargo test --locked --bench e2e
else
    cargo bench --locked --bench pipeline 2>&1 | tee target/criterion.txt
    PH_CRITERION_OUTPUT=target/criterion.txt cargo bench --locked --bench e2e
fi
