#!/usr/bin/env bash
# scripts/fleet-local.sh start [--workers N] [--release] | stop | status
#
# A fleet of processes on this machine's real services: clip-ingest (127.0.0.1:${FLEET_PORT:-8080}),
# N clip-worker processes and clip-janitor, on RabbitMQ (127.0.0.1:5672), PostgreSQL (database
# clipfleet_local on 127.0.0.1:5432) and the S3 emulator (bucket clipfleet-local). Media is sealed
# with a keyring file made once. State, config and logs: $CLIPFLEET_CACHE/run/fleet-local/.
# `stop` sends SIGTERM to the processes it started (workers drain) and waits for them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CLIPFLEET_CACHE="${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CLIPFLEET_CACHE/target}"
state="$CLIPFLEET_CACHE/run/fleet-local"
port="${FLEET_PORT:-8080}"
log() { echo "[fleet-local] $*" >&2; }

pids() { cat "$state"/*.pid 2>/dev/null || true; }

running() {
  local pid
  for pid in $(pids); do
    if kill -0 "$pid" 2>/dev/null; then return 0; fi
  done
  return 1
}

write_config() {
  mkdir -p "$state"
  if [ ! -s "$state/keyring.toml" ]; then
    key="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    (umask 077 && printf 'current = "local-1"\n[keys]\nlocal-1 = "%s"\n' "$key" > "$state/keyring.toml")
  fi
  cat > "$state/clipfleet.toml" <<TOML
version = 1
[broker]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
[store]
url = "s3://clipfleet-local"
[store.sealing]
keyring = "file://$state/keyring.toml"
[ledger]
url = "postgres://postgres@127.0.0.1:5432/clipfleet_local"
[limits]
max_upload_bytes = 20_971_520
max_pixels = 40_000_000
[retention]
input_max_age = "1h"
output_ttl = "${FLEET_OUTPUT_TTL:-24h}"
account_months_after_termination = 6
usage_max_age = "90days"
orphan_grace = "15m"
session_ttl = "24h"
[ingest]
[[ingest.tokens]]
name = "dev"
sha256 = "da53e48d37ff274e7ced94981d3f08ca3ee34abc53b7e38d3320addffdc6fbda"
[[pools]]
name = "default"
model = "${FLEET_MODEL:-motion}"
model_version = "1"
max_backlog = 10_000
job_deadline = "10m"
max_deliveries = 5
TOML
}

start() {
  local workers=2 profile=debug flag=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --workers) workers="$2"; shift 2 ;;
      --release) profile=release; flag=(--release); shift ;;
      *) log "unknown flag $1"; exit 2 ;;
    esac
  done
  if running; then log "already running (pids $(pids | tr '\n' ' '))"; exit 0; fi
  bash "$root/scripts/install-system-deps.sh" >&2
  eval "$(bash "$root/scripts/install-libtorch.sh" "$CLIPFLEET_CACHE/libtorch-2.11.0")"
  bash "$root/scripts/services.sh" start >&2
  eval "$(bash "$root/scripts/emulator.sh" env)"
  psql -h 127.0.0.1 -U postgres -d test -tAc "select 1 from pg_database where datname = 'clipfleet_local'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d test -qc "create database clipfleet_local"
  curl -fsS -o /dev/null -X PUT "$AWS_ENDPOINT_URL/clipfleet-local" || true
  (cd "$root" && cargo build --quiet --locked "${flag[@]}" \
    -p clipfleet-ingest -p clipfleet-worker -p clipfleet-janitor -p clipfleet-ctl)
  write_config
  local bin="$CARGO_TARGET_DIR/$profile"
  export CLIPFLEET_CONFIG="$state/clipfleet.toml" RUST_LOG="${RUST_LOG:-info}"
  "$bin/clip-janitor" run --config "$CLIPFLEET_CONFIG" --listen 127.0.0.1:9100 --interval 10s \
    > "$state/janitor.log" 2>&1 & echo $! > "$state/janitor.pid"
  "$bin/clip-ingest" serve --config "$CLIPFLEET_CONFIG" --listen "127.0.0.1:$port" --log-format json \
    > "$state/ingest.log" 2>&1 & echo $! > "$state/ingest.pid"
  for i in $(seq 1 "$workers"); do
    "$bin/clip-worker" serve --config "$CLIPFLEET_CONFIG" --worker-id "local-$i" \
      --listen "127.0.0.1:$((9100 + i))" > "$state/worker-$i.log" 2>&1 & echo $! > "$state/worker-$i.pid"
  done
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; then
      log "up: ingest http://127.0.0.1:$port, $workers worker(s), janitor; config $CLIPFLEET_CONFIG; logs in $state"
      return 0
    fi
    sleep 0.5
  done
  log "ingest did not become ready; see $state/ingest.log"
  exit 1
}

stop() {
  local pid
  for pid in $(pids); do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $(pids); do
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  done
  rm -f "$state"/*.pid
  log "stopped"
}

status() {
  local f
  for f in "$state"/*.pid; do
    [ -e "$f" ] || { log "not running"; return 0; }
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid) $(cat "$f") running"; else echo "$(basename "$f" .pid) exited"; fi
  done
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start [--workers N] [--release] | stop | status" >&2; exit 2 ;;
esac
