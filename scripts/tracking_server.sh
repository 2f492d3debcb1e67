#!/usr/bin/env bash
# The multi-worker tracking setup: PostgreSQL (the Debian package) + `mlflow server` on loopback.
#
#   scripts/tracking_server.sh start [DIR]   # start what is not running; prints MLFLOW_TRACKING_URI=...
#   scripts/tracking_server.sh stop [DIR]    # stop the mlflow server, then PostgreSQL
#   scripts/tracking_server.sh stop-server [DIR]   # stop only the mlflow server (start brings it back)
#
# DIR (default .tracking) holds the pid and log files and the artifact root. PostgreSQL's data
# dir is a throwaway one (DIR/pgdata, or, when run as root, a fresh /tmp dir owned by the
# postgres user, whose path is kept in DIR/pgdata.path). Both servers listen on 127.0.0.1 only.
# Settings: PG_PORT (5433), MLFLOW_PORT (5000), MLFLOW_WORKERS (2), PYTHON (.venv/bin/python
# if there is one, else python3). Installs postgresql (apt, as root) and psycopg2-binary (pip)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command=${1:-}
dir=$(mkdir -p "${2:-.tracking}" && cd "${2:-.tracking}" && pwd)
PG_PORT=${PG_PORT:-5433}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=python3; fi
fi
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: the URI names psycopg2 explicitly.
PSYCOPG2=psycopg2-binary==2.9.13   # also pinned in constraints.txt
say() { echo "tracking_server: $*" >&2; }
die() { say "error: $*"; exit 1; }
# Running, and not a zombie: an orphan that init does not reap still answers kill -0.
alive() { local stat; stat=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing postgresql (apt)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null \
        || die "apt-get install postgresql failed"
      bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    fi
    [ -n "$bin" ] || die "PostgreSQL is not installed: sudo apt-get install -y postgresql"
  fi
  echo "$bin"
}

as_pg() {  # PostgreSQL refuses to run as root: run its tools as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data_dir() {
  if [ "$(id -u)" != 0 ]; then echo "$dir/pgdata"; return; fi
  if [ ! -s "$dir/pgdata.path" ]; then
    local d; d=$(mktemp -d /tmp/selfregress-pg.XXXXXX)
    chown postgres: "$d"; echo "$d/data" > "$dir/pgdata.path"
  fi
  cat "$dir/pgdata.path"
}

start_postgres() {
  local bin data; bin=$(pg_bin); data=$(data_dir)
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 >/dev/null || die "initdb failed"
  fi
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/../postgres.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $data/.." >/dev/null \
      || die "PostgreSQL did not start (see $data/../postgres.log)"
  fi
  as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='mlflow'" \
    | grep -q 1 || as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres mlflow \
    || die "createdb mlflow failed"
}

start_mlflow() {
  local url=http://127.0.0.1:$MLFLOW_PORT
  "$PYTHON" -c "import psycopg2" 2>/dev/null || {
    say "installing $PSYCOPG2"; "$PYTHON" -m pip install -q "$PSYCOPG2" >/dev/null || die "pip install $PSYCOPG2 failed"; }
  if [ -s "$dir/mlflow.pid" ] && alive "$(cat "$dir/mlflow.pid")"; then
    echo "MLFLOW_TRACKING_URI=$url"; return
  fi
  # Its own session, so that stop ends the server and its workers as one process group.
  setsid "$PYTHON" -m mlflow server --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/mlflow" \
    --artifacts-destination "$dir/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" >>"$dir/mlflow.log" 2>&1 < /dev/null &
  echo $! > "$dir/mlflow.pid"
  for _ in $(seq 600); do
    if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('$url/health', timeout=2)" 2>/dev/null; then
      echo "MLFLOW_TRACKING_URI=$url"; return
    fi
    alive "$(cat "$dir/mlflow.pid")" || die "mlflow server exited (see $dir/mlflow.log)"
    sleep 0.5
  done
  die "mlflow server did not answer $url/health in 300 s (see $dir/mlflow.log)"
}

stop_mlflow() {
  if [ -s "$dir/mlflow.pid" ]; then
    local pid; pid=$(cat "$dir/mlflow.pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 60); do alive "$pid" || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$dir/mlflow.pid"
  fi
}

stop_postgres() {
  local data; data=$(data_dir)
  [ -f "$data/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
}

case "$command" in
  start) start_postgres; start_mlflow ;;
  stop) stop_mlflow; stop_postgres ;;
  stop-server) stop_mlflow ;;
  *) echo "usage: $0 start|stop|stop-server [DIR]" >&2; exit 2 ;;
esac
