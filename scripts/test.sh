#!/usr/bin/env bash
# The test command of README.md: everything the suite needs on a fresh machine, then
# `cargo test --locked --workspace`.
#
# The suite talks to a real PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth;
# TEST_DATABASE_URL overrides), lints /metrics with promtool (Debian's `prometheus`), and
# drives the page at / in a real headless Chromium over WebDriver (Debian's `chromium` and
# `chromium-driver`). What is missing is installed from Debian's packages, and a local
# PostgreSQL cluster that is down is started.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# The export tests read the files back with pandas and pyarrow in a venv of their own.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} from Debian's packages for the test suite"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -z "${TEST_DATABASE_URL:-}" ]] && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432
fi

exec cargo test --locked --workspace "$@"
