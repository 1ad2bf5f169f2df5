#!/usr/bin/env bash
# The container deployment, run as a new user runs it, on a real engine, here:
#
#   1. installs podman (with runc) and podman-compose (Debian's packages, PyPI), or with
#      ENGINE=docker Debian's docker.io and docker-compose;
#   2. builds stand-in base images, since no registry of images can be reached:
#      debian:bookworm-slim from debootstrap, rust:1.95-bookworm from it plus gcc and this
#      machine's Rust toolchain, postgres:16 from it plus Debian's PostgreSQL (15: the
#      server's major version is not what is being checked) behind an entry point that
#      does what the official image's does for compose.yaml (POSTGRES_PASSWORD, a fresh
#      data directory, listening on the network);
#   3. builds the project's image with the unchanged docker/Dockerfile, cold, then again
#      after a one-line change to src/ (in a copy of the sources: the work tree is not
#      touched);
#   4. brings the unchanged docker/compose.yaml up (`up -d --build`, nothing set but
#      COINGECKO_BASE_URL, pointed at the fake CoinGecko in a container of the
#      Dockerfile's `fake-upstream` stage), submits the README's job, stops the worker that runs it, checks that the
#      other replica takes it over at once and completes it with every day stored, that
#      the stopped worker logged no ERROR, and that `down` and `up` keep the data;
#   5. prints the figures.
#
# Run by hand (a cold release build takes both cores for 10-40 minutes; COLD=0 reuses
# the layers and takes ~5), and by anyone who changes
# docker/Dockerfile, docker/compose.yaml or .dockerignore:
#
#   bash scripts/container-check.sh            # everything
#   COLD=0 bash scripts/container-check.sh     # reuse the cached layers (no cold build)
#   ENGINE=docker bash scripts/container-check.sh   # on Debian's docker.io and docker-compose
#
# ENGINE=docker needs a running daemon (without systemd: `dockerd --storage-driver=overlay2 &`)
# and uses `docker compose` if that works, else Debian's docker-compose (1.29).
#
# State lives in $CHECK_DIR (default /var/tmp/ph-container-check): the debootstrap trees,
# the containers.conf used, the build logs. The compose project is torn down at the end
# (its volume too) unless KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHECK_DIR=${CHECK_DIR:-/var/tmp/ph-container-check}
COLD=${COLD:-1}
ENGINE=${ENGINE:-podman}
KEEP=${KEEP:-0}
PROJECT=ph-check
COMPOSE_FILE="$ROOT/docker/compose.yaml"
FAKE=ph-check-fake-coingecko
mkdir -p "$CHECK_DIR"

say() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# --- 1. The engine ----------------------------------------------------------------------
case $ENGINE in
podman)
  say "installing podman, runc, debootstrap (Debian) and podman-compose (PyPI)"
  need_apt=()
  for tool in podman:podman runc:runc debootstrap:debootstrap aardvark-dns:aardvark-dns; do
    package=${tool#*:}
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
  done
  if ((${#need_apt[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" containernetworking-plugins
  fi
  command -v podman-compose >/dev/null || pip3 install -q podman-compose

  # Debian's podman defaults to crun, which this machine lacks; and its default limits
  # (nofile and nproc above 10^6) are more than runc may set here: a hard RLIMIT_NPROC above
  # 32768 fails with "error setting rlimit type 6: operation not permitted" (found by
  # trying), as does RLIMIT_NOFILE above this shell's hard limit.
  export CONTAINERS_CONF="$CHECK_DIR/containers.conf"
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
  # HEALTHCHECK and STOPSIGNAL are kept only in Docker's image format.
  export BUILDAH_FORMAT=docker
  COMPOSE=(podman-compose)
  ENGINE_VERSION=$(podman --version)
  COMPOSE_VERSION=$(podman-compose version 2>/dev/null | grep -io 'podman-compose version [0-9.]*' || true)
  ;;
docker)
  # Debian's docker.io and its Compose (docker-compose 1.29, the only one Debian 12
  # packages; Compose v2 is used instead when `docker compose` works). The daemon must
  # already run: without systemd, `dockerd --storage-driver=overlay2 &` by hand.
  say "installing docker.io, debootstrap and docker-compose (Debian)"
  need_apt=()
  for package in docker.io debootstrap; do
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
  done
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    dpkg -s docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
    COMPOSE=(docker-compose)
  fi
  if ((${#need_apt[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  fi
  docker info >/dev/null 2>&1 ||
    fail "the docker daemon does not answer: start it (without systemd: dockerd --storage-driver=overlay2 &)"
  ENGINE_VERSION="docker $(docker version --format '{{.Server.Version}}')"
  COMPOSE_VERSION=$("${COMPOSE[@]}" version 2>/dev/null | head -1)
  ;;
*) fail "ENGINE must be podman or docker, not $ENGINE" ;;
esac
echo "$ENGINE_VERSION; $COMPOSE_VERSION" >&2
image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

# --- 2. Stand-in base images ------------------------------------------------------------
if ! image_exists docker.io/library/debian:bookworm-slim; then
  say "debian:bookworm-slim from debootstrap"
  if [[ ! -x "$CHECK_DIR/rootfs-slim/bin/bash" ]]; then
    rm -rf "$CHECK_DIR/rootfs-slim"
    debootstrap --variant=minbase bookworm "$CHECK_DIR/rootfs-slim" http://deb.debian.org/debian
  fi
  rm -rf "$CHECK_DIR/rootfs-slim/var/lib/apt/lists/"* "$CHECK_DIR/rootfs-slim/var/cache/apt/"*.bin
  tar -C "$CHECK_DIR/rootfs-slim" -c . |
    "$ENGINE" import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - docker.io/library/debian:bookworm-slim >/dev/null
fi

if ! image_exists docker.io/library/rust:1.95-bookworm; then
  say "rust:1.95-bookworm from it, gcc and this machine's toolchain ($(rustc --version))"
  context="$CHECK_DIR/rust-context"
  rm -rf "$context" && mkdir -p "$context/ca"
  mkdir -p "$context/rust" && cp -a "$(rustc --print sysroot)/." "$context/rust/"
  rm -rf "$context/rust/share/doc" "$context/rust/lib/rustlib/src"
  # This machine reaches crates.io through its own certificate authorities; a site's base
  # image carries them the same way.
  cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
  cat >"$context/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config git curl \
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
EOF
  "$ENGINE" build -q -f "$context/Containerfile" -t docker.io/library/rust:1.95-bookworm "$context" >/dev/null
  rm -rf "$context"
fi

if ! image_exists docker.io/library/postgres:16; then
  say "postgres:16 from it and Debian's PostgreSQL"
  context="$CHECK_DIR/postgres-context"
  rm -rf "$context" && mkdir -p "$context"
  cat >"$context/entrypoint.sh" <<'EOF'
#!/bin/bash
# What the official image's entry point does for docker/compose.yaml: a fresh data
# directory gets a cluster whose postgres user has POSTGRES_PASSWORD and that accepts
# password logins from the network; then the server runs as pid 1.
set -euo pipefail
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/tmp/pwfile
  chown postgres /tmp/pwfile
  as_postgres initdb -D "$PGDATA" -U postgres --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "PostgreSQL init process complete; ready for start up."
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" "$@"
EOF
  cat >"$context/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
EOF
  "$ENGINE" build -q -f "$context/Containerfile" -t docker.io/library/postgres:16 "$context" >/dev/null
  rm -rf "$context"
fi
[[ ${1:-} == bases ]] && exit 0

# --- 3. The project's image -------------------------------------------------------------
# A copy of the sources (tracked and untracked, not ignored), built like the work tree:
# buildah's layer cache goes by content, so the compose build below reuses these layers.
sources="$CHECK_DIR/sources"
rm -rf "$sources" && mkdir -p "$sources"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$sources")

build() { "$ENGINE" build -f docker/Dockerfile -t price-history:latest "$@" . >"$CHECK_DIR/build.log" 2>&1 || {
  tail -40 "$CHECK_DIR/build.log" >&2
  fail "$ENGINE build failed (log: $CHECK_DIR/build.log)"
}; }

cd "$sources"
if [[ $COLD == 1 ]]; then
  say "cold build of docker/Dockerfile (no cached layers)"
  started=$(now)
  build --no-cache
  COLD_BUILD="$(since "$started") s"
else
  build
  COLD_BUILD="(skipped: COLD=0)"
fi
say "rebuild after a one-line change to src/main.rs"
echo "// container-check: a one-line change at $(date +%s)" >>src/main.rs
started=$(now)
build
REBUILD=$(since "$started")
if grep -q "Compiling tokio " "$CHECK_DIR/build.log"; then
  fail "a one-line change to src/ rebuilt the dependencies"
fi
say "the fake CoinGecko's image (the Dockerfile's fake-upstream stage)"
"$ENGINE" build -f docker/Dockerfile --target fake-upstream -t price-history-fake-upstream:latest . \
  >"$CHECK_DIR/build-fake.log" 2>&1 || {
  tail -40 "$CHECK_DIR/build-fake.log" >&2
  fail "$ENGINE build of the fake upstream failed (log: $CHECK_DIR/build-fake.log)"
}
cd "$ROOT"
rm -rf "$sources"

# --- 4. Compose -------------------------------------------------------------------------
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
containers_of() { # service -> container names
  "$ENGINE" ps -a --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort
}
psql_() { "$ENGINE" exec "$(containers_of postgres)" psql -U postgres -d price_history -tAc "$1"; }
ready() { curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8080/readyz; }
# Polls (an outside process offers no event to wait on): what, seconds, command...
wait_for() {
  local what=$1 limit=$2 started
  shift 2
  started=$(now)
  until "$@" >/dev/null 2>&1; do
    awk -v s="$started" -v l="$limit" -v n="$(now)" 'BEGIN { exit !(n - s > l) }' && fail "timed out: $what"
    sleep 0.1
  done
}
cleanup() {
  if [[ $KEEP != 1 ]]; then
    "$ENGINE" rm -f "$FAKE" >/dev/null 2>&1 || true
    compose down -v >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
compose down -v >/dev/null 2>&1 || true
"$ENGINE" rm -f "$FAKE" >/dev/null 2>&1 || true
if curl -s -o /dev/null --max-time 1 http://127.0.0.1:8080/; then
  fail "something already listens on port 8080, which compose.yaml publishes"
fi

say "compose up -d --build (COINGECKO_BASE_URL pointed at the fake; nothing else set)"
export COINGECKO_BASE_URL="http://$FAKE:8090"
unset API_TOKEN COINGECKO_API_KEY DATABASE_CONNECT_TIMEOUT_SECS
started=$(now)
compose up -d --build >"$CHECK_DIR/compose-up.log" 2>&1 || {
  tail -40 "$CHECK_DIR/compose-up.log" >&2
  fail "compose up failed (log: $CHECK_DIR/compose-up.log)"
}
UP_RETURNED=$(since "$started")
wait_for "the api's /readyz" 120 ready
API_READY=$(since "$started")
api=$(containers_of api)
workers=$(containers_of worker)
[[ $(wc -l <<<"$workers") == 2 ]] || fail "expected 2 worker containers, got: $workers"
for worker in $workers; do
  [[ $("$ENGINE" inspect "$worker" --format '{{.State.Running}}') == true ]] || fail "$worker is not running"
done
network=$("$ENGINE" inspect "$api" --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' | awk '{print $1}')
# The fake answers each call after 400 ms, so a four-year job (17 windows) runs long
# enough to stop its worker in the middle.
"$ENGINE" run -d --name "$FAKE" --network "$network" price-history-fake-upstream:latest \
  coingecko --bind 0.0.0.0:8090 --delay-ms 400 >/dev/null

say "a job, submitted as the README says"
end=$(date -u -d yesterday +%F)
start=$(date -u -d "$end - 1460 days" +%F)
response=$(curl -sS -X POST http://127.0.0.1:8080/api/v1/ingestion-jobs \
  -H 'Content-Type: application/json' \
  -d "{\"start_date\": \"$start\", \"end_date\": \"$end\"}")
job=$(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$response")
[[ -n $job ]] || fail "no job id in: $response"
echo "job $job: $start..$end" >&2
job_field() { psql_ "SELECT $1 FROM ingestion_jobs WHERE id = '$job'"; }
two_windows_stored() { (($(job_field chunks_done) >= 2)); }
wait_for "two windows stored" 120 two_windows_stored
holder=$(psql_ "SELECT lock_by FROM apalis.jobs WHERE status = 'Running'")
busy=""
for worker in $workers; do
  hostname=$("$ENGINE" inspect "$worker" --format '{{.Config.Hostname}}')
  [[ $holder == price-history-"$hostname"-* ]] && busy=$worker
done
[[ -n $busy ]] || fail "no worker container matches the job's holder $holder"
attempts=$(job_field attempts)

say "$ENGINE stop $busy (SIGTERM) while it runs the job"
started=$(now)
"$ENGINE" stop -t 35 "$busy" >/dev/null &
stopping=$!
taken_over() { [[ $(job_field status) == running ]] && (($(job_field attempts) > attempts)); }
wait_for "the other replica to take the job" 30 taken_over
wait "$stopping"
STOPPED=$(since "$started")
# From the SIGTERM to the other replica's first log line of the job ("fetching"), by the
# timestamps both write (polling the database would add its own latency).
other=$(grep -vx "$busy" <<<"$workers")
resumed_at=$("$ENGINE" logs "$other" 2>&1 | grep '"message":"fetching"' | tail -1 |
  sed -n 's/.*"timestamp":"\([^"]*\)".*/\1/p')
[[ -n $resumed_at ]] || fail "$other logged no start of the job"
HANDOFF=$(awk -v a="$started" -v b="$(date -d "$resumed_at" +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
exit_code=$("$ENGINE" inspect "$busy" --format '{{.State.ExitCode}}')
[[ $exit_code == 0 ]] || fail "the stopped worker exited $exit_code"
if "$ENGINE" logs "$busy" 2>&1 | grep '"level":"ERROR"' >&2; then
  fail "the hand-off logged ERROR lines (above)"
fi
for container in "$api" $workers; do
  if "$ENGINE" logs "$container" 2>&1 | grep 'already exists' >&2; then
    fail "$container logged PostgreSQL's notices (above)"
  fi
done
completed() { [[ $(job_field status) == completed ]]; }
wait_for "the job to complete" 120 completed
days=$(psql_ "SELECT count(*) FROM daily_prices")
[[ $days == 1461 ]] || fail "$days days stored, expected 1461"
"$ENGINE" start "$busy" >/dev/null

say "compose down, up: the data stays"
"$ENGINE" rm -f "$FAKE" >/dev/null
compose down >/dev/null 2>&1
compose up -d >/dev/null 2>&1
wait_for "the api's /readyz after up" 120 ready
days_after=$(psql_ "SELECT count(*) FROM daily_prices")
[[ $days_after == 1461 ]] || fail "$days_after days after down/up, expected 1461"

# --- 5. Figures -------------------------------------------------------------------------
size=$("$ENGINE" image inspect price-history:latest --format '{{.Size}}')
binary=$("$ENGINE" run --rm --entrypoint stat price-history:latest -c %s /usr/local/bin/price-history)
cat <<EOF

container check passed ($ENGINE_VERSION, $COMPOSE_VERSION, runc $(runc --version | sed -n 's/runc version //p'))
  image price-history:latest     $((size / 1000000)) MB (binary $((binary / 1000000)) MB)
  cold build                     ${COLD_BUILD}
  rebuild after a one-line change ${REBUILD} s
  compose up -d --build returned ${UP_RETURNED} s; api /readyz 200 after ${API_READY} s
  hand-off after $ENGINE stop     ${HANDOFF} s (the worker exited 0 after ${STOPPED} s)
  job                            completed, 1461 days stored, kept across down/up
EOF
