#!/usr/bin/env bash
# A PostgreSQL for `make server`: installs Debian's postgresql where missing (apt), starts its
# cluster without systemd (pg_ctlcluster), waits until it accepts connections on 127.0.0.1,
# creates the user (LOGIN CREATEDB) and the database, and prints the SQLAlchemy URL as its last
# line, alone on stdout: URL=$(bash deploy/postgres/up.sh). Idempotent: run it as often as you
# like. Settings: LOSSBENCH_PG_USER, LOSSBENCH_PG_PASSWORD, LOSSBENCH_PG_DB (lossbench each),
# LOSSBENCH_PG_PORT (5432, for a cluster it creates). Exit status 3: neither apt nor root.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd /  # the postgres user may not read the caller's cwd

version=$(pg_version)
if [ -z "$version" ]; then
  command -v apt-get >/dev/null 2>&1 \
    || die "$NO_PRIVILEGE" "PostgreSQL is not installed and there is no apt-get: install a PostgreSQL server (Debian's package: postgresql), then run this again"
  say "installing Debian's postgresql"
  wait_lock=(-o DPkg::Lock::Timeout=600)  # another apt-get may hold dpkg's lock a while
  as_root apt-get "${wait_lock[@]}" update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -q postgresql >&2
  version=$(pg_version)
  [ -n "$version" ] || die 1 "apt-get installed postgresql, yet no server is in /usr/lib/postgresql"
fi

if [ -z "$(cluster_field "$version" 2)" ]; then
  say "creating the cluster $version/$PG_CLUSTER on port $PG_PORT"
  as_root pg_createcluster "$version" "$PG_CLUSTER" --port "$PG_PORT" >&2
fi
port=$(cluster_field "$version" 3)
[ "$port" = "$PG_PORT" ] || say "the cluster $version/$PG_CLUSTER listens on port $port (not $PG_PORT)"
if [ "$(cluster_field "$version" 4)" != online ]; then
  say "starting the cluster $version/$PG_CLUSTER"
  as_root pg_ctlcluster "$version" "$PG_CLUSTER" start >&2
fi
for _ in $(seq 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port" >&2 \
  || die 1 "PostgreSQL does not accept connections on 127.0.0.1:$port; see /var/log/postgresql/postgresql-$version-$PG_CLUSTER.log"

# The user (its password set again each time) and its database, as the postgres superuser.
as_root runuser -u postgres -- psql -q -X -v ON_ERROR_STOP=1 -p "$port" -d postgres \
  -v user="$PG_USER" -v pw="$PG_PASSWORD" -v db="$PG_DB" >&2 <<'SQL'
SELECT format('CREATE ROLE %I', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN CREATEDB PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL

say "PostgreSQL $version ($version/$PG_CLUSTER) is up; database $PG_DB, user $PG_USER"
echo "postgresql://$(urlencode "$PG_USER"):$(urlencode "$PG_PASSWORD")@127.0.0.1:$port/$(urlencode "$PG_DB")"
