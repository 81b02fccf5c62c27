#!/usr/bin/env bash
# services.sh - make sure the services the tests talk to are up: RabbitMQ (127.0.0.1:5672),
# PostgreSQL (127.0.0.1:5432) and the S3/SQS emulator (127.0.0.1:4566). Starts what is not
# running, waits until each answers, and never stops anything it did not start.
#
# Usage: scripts/services.sh start | status
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "[services] $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2 seconds=$3
  for _ in $(seq 1 $((seconds * 5))); do
    port_open "$port" && return 0
    sleep 0.2
  done
  log "$name did not open 127.0.0.1:$port within ${seconds} s"
  return 1
}

start_rabbitmq() {
  if port_open 5672; then return 0; fi
  command -v rabbitmq-server >/dev/null || { log "rabbitmq-server is not installed (apt-get install rabbitmq-server)"; return 1; }
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port RabbitMQ 5672 90
  # The port opens before the broker accepts work; wait for the application itself.
  if command -v rabbitmqctl >/dev/null; then
    timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || log "rabbitmqctl await_startup did not confirm"
  fi
}

start_postgres() {
  if port_open 5432; then return 0; fi
  local version
  version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || { log "PostgreSQL is not installed (apt-get install postgresql)"; return 1; }
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port PostgreSQL 5432 60
}

case "${1:-}" in
  start)
    start_rabbitmq
    start_postgres
    bash "$here/emulator.sh" start
    log "RabbitMQ, PostgreSQL and the emulator are up"
    ;;
  status)
    for pair in RabbitMQ:5672 PostgreSQL:5432 emulator:"${CLIPFLEET_EMULATOR_PORT:-4566}"; do
      if port_open "${pair#*:}"; then echo "${pair%%:*}: up"; else echo "${pair%%:*}: down"; fi
    done
    ;;
  *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
