#!/usr/bin/env bash
# Make sure the services the tests use are up: Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432,
# trust auth), plus redis-server/redis-cli binaries, Debian's chromium + chromedriver for the
# dashboard test, and libfaketime for the skewed-clock fault test. Installs what is missing (Debian packages) and starts what is down; fails loudly
# when a service cannot be brought up. Safe to run again.
set -euo pipefail

log() { printf '[ensure_services] %s\n' "$*" >&2; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Redis -------------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "installing redis-server"; apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "FATAL: Redis did not come up"; exit 1; }

# --- PostgreSQL --------------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null; then
  log "installing postgresql"; apt_install postgresql
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { log "FATAL: PostgreSQL did not come up"; exit 1; }
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster: let local TCP connections in without a password (tests only).
  conf=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main reload
  sleep 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null || { log "FATAL: cannot log in to PostgreSQL as postgres"; exit 1; }

# --- Chromium (dashboard test) -----------------------------------------------------------------
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver"; apt_install chromium chromium-driver
fi
# --- libfaketime (the skewed-clock fault test runs a worker under it) -----------------------------
if ! dpkg -s libfaketime >/dev/null 2>&1; then
  log "installing libfaketime"; apt_install libfaketime
fi
# --- unshare (the PID-namespace fault test) -----------------------------------------------------
if ! command -v unshare >/dev/null; then
  log "installing util-linux"; apt_install util-linux
fi
log "Redis, PostgreSQL, Chromium and the fault-test tools are ready"
