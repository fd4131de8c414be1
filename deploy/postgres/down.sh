#!/usr/bin/env bash
# Stops the PostgreSQL cluster that up.sh started (pg_ctlcluster); its data stays, and up.sh
# starts it again. Nothing to do when it is down or not installed.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd /

version=$(pg_version)
if [ -z "$version" ] || [ "$(cluster_field "$version" 4)" != online ]; then
  say "no PostgreSQL cluster ${version:+$version/}$PG_CLUSTER is running"
  exit 0
fi
as_root pg_ctlcluster "$version" "$PG_CLUSTER" stop
say "stopped the cluster $version/$PG_CLUSTER"
