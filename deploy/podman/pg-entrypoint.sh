#!/bin/sh
# What deploy/docker-compose.onprem.yml uses of the official postgres image's entrypoint: on an
# empty PGDATA, initdb with POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB (password auth over the
# network), then run the server as the postgres user.
set -eu
: "${PGDATA:?}" "${POSTGRES_PASSWORD:?}"
USER_NAME=${POSTGRES_USER:-postgres}
DB_NAME=${POSTGRES_DB:-$USER_NAME}
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown -R postgres:postgres "$PGDATA" /run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  PWFILE=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$PWFILE"
  initdb -D "$PGDATA" -U "$USER_NAME" --pwfile="$PWFILE" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$PWFILE"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.auto.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$DB_NAME" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -U "$USER_NAME" -d postgres -c "CREATE DATABASE \"$DB_NAME\""
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "database $DB_NAME initialised"
fi
exec "$@"
