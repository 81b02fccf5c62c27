#!/usr/bin/env bash
# emulator.sh - the local S3 + SQS emulator for tests (MiniStack from PyPI), on 127.0.0.1 only.
#
# Usage:
#   scripts/emulator.sh install   install into the cache if missing (idempotent)
#   scripts/emulator.sh start     install, then start it unless it already answers; waits until ready
#   scripts/emulator.sh stop      stop the instance this script started (by its pid file)
#   scripts/emulator.sh env       print the `export` lines tests read (AWS_ENDPOINT_URL, credentials)
#
# The emulator lives in its own virtualenv (it pins its own botocore) under
# ${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}/ministack-<version>; its data under that cache too.
# Environment: CLIPFLEET_EMULATOR_PORT (default 4566), PYTHON (default python3).
set -euo pipefail

MINISTACK_VERSION=1.5.33
cache="${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}"
venv="$cache/ministack-$MINISTACK_VERSION"
port="${CLIPFLEET_EMULATOR_PORT:-4566}"
run_dir="$cache/run"
pid_file="$run_dir/ministack-$port.pid"
log_file="$run_dir/ministack-$port.log"
PY="${PYTHON:-python3}"

log() { echo "[emulator] $*" >&2; }

installed() { [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "ministack==$MINISTACK_VERSION" ]; }

answers() { curl -fsS -m 2 "http://127.0.0.1:$port/_ministack/health" >/dev/null 2>&1; }

install() {
  installed && return 0
  mkdir -p "$cache"
  exec 9>"$cache/.ministack.lock"
  flock 9
  installed && return 0
  local t0=$SECONDS
  log "installing ministack==$MINISTACK_VERSION into $venv"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ministack==$MINISTACK_VERSION" >&2
  echo "ministack==$MINISTACK_VERSION" > "$venv/.installed"
  log "installed in $((SECONDS - t0)) s"
}

start() {
  install
  if answers; then
    log "already answering on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$run_dir" "$cache/ministack-data"
  log "starting on 127.0.0.1:$port (log: $log_file)"
  # setsid: the emulator outlives this script (tests and later runs reuse it).
  BIND_HOST=127.0.0.1 GATEWAY_PORT="$port" LOG_LEVEL=WARNING \
    S3_DATA_DIR="$cache/ministack-data/s3" \
    setsid "$venv/bin/ministack" >"$log_file" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  for _ in $(seq 1 150); do
    if answers; then
      log "ready"
      return 0
    fi
    kill -0 "$(cat "$pid_file")" 2>/dev/null || { log "it exited; last log lines:"; tail -n 20 "$log_file" >&2; return 1; }
    sleep 0.2
  done
  log "did not answer within 30 s"
  return 1
}

stop() {
  [ -f "$pid_file" ] || { log "no pid file: nothing started by this script"; return 0; }
  local pid
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    log "stopped pid $pid"
  fi
  rm -f "$pid_file"
}

print_env() {
  printf "export AWS_ENDPOINT_URL='http://127.0.0.1:%s'\n" "$port"
  printf "export AWS_REGION='%s'\n" "${AWS_REGION:-us-east-1}"
  printf "export AWS_ACCESS_KEY_ID='%s'\n" "${AWS_ACCESS_KEY_ID:-test}"
  printf "export AWS_SECRET_ACCESS_KEY='%s'\n" "${AWS_SECRET_ACCESS_KEY:-test}"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
