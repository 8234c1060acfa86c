#!/usr/bin/env bash
# Run the whole suite but the GPU tests. When Debian's PostgreSQL server is installed, start a
# throwaway cluster on a free loopback port under a temp dir for the `postgres` tests, and stop it
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=.venv/bin/python

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
pg_dir=""
cleanup() {
    if [ -n "$pg_dir" ]; then
        run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
trap cleanup EXIT INT TERM

run_pg() {
    # initdb and postgres refuse to run as root: use the postgres account when we are root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
    pg_dir=$(mktemp -d /tmp/orfeas-pg.XXXXXX)
    chmod 755 "$pg_dir"
    [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
    port=$($PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    run_pg "$pg_bin/initdb" -D "$pg_dir/data" -U orfeas --auth=trust >/dev/null
    run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-h 127.0.0.1 -p $port -k $pg_dir -c fsync=off" start >/dev/null
    export ORFEAS_TEST_POSTGRES_URL="postgresql://orfeas@127.0.0.1:$port/postgres"
    echo "PostgreSQL for tests at 127.0.0.1:$port"
else
    echo "PostgreSQL server not installed: the postgres tests will be skipped"
fi

$PYTHON -m pytest -m "not gpu" "$@"
