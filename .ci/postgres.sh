#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the distributed-tuning test.
# Usage: source .ci/postgres.sh WORKDIR   -> exports XRAYBENCH_TEST_POSTGRES, defines stop_postgres
set -euo pipefail
PG_WORK="$1"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
PGPORT="${XRAYBENCH_PG_PORT:-54329}"
mkdir -p "$PG_WORK/pg"
chmod 755 "$PG_WORK"
if [ "$(id -u)" = 0 ]; then
  chown -R postgres:postgres "$PG_WORK/pg"
  AS_PG=(su postgres -s /bin/bash -c)
else
  AS_PG=(bash -c)
fi
"${AS_PG[@]}" "'$PGBIN/initdb' -D '$PG_WORK/pg/data' -A trust -U postgres >/dev/null"
"${AS_PG[@]}" "'$PGBIN/pg_ctl' -D '$PG_WORK/pg/data' -l '$PG_WORK/pg/log' -w \
  -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -k '$PG_WORK/pg'\" start >/dev/null"
"${AS_PG[@]}" "'$PGBIN/createdb' -h 127.0.0.1 -p $PGPORT -U postgres xraybench"
export XRAYBENCH_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PGPORT/xraybench"
PG_STOP_CMD="'$PGBIN/pg_ctl' -D '$PG_WORK/pg/data' -m fast stop"
stop_postgres() { "${AS_PG[@]}" "$PG_STOP_CMD" >/dev/null 2>&1 || true; }
echo "postgres ready at $XRAYBENCH_TEST_POSTGRES"
