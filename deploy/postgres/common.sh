# Sourced by up.sh and down.sh: which PostgreSQL cluster lossbench uses, and how to act on it.
# Debian's postgresql-common names a cluster <version>/<name>; ours is the newest installed
# version's LOSSBENCH_PG_CLUSTER (main), as root directly, else through sudo.

PG_USER=${LOSSBENCH_PG_USER:-lossbench}
PG_PASSWORD=${LOSSBENCH_PG_PASSWORD:-lossbench}
PG_DB=${LOSSBENCH_PG_DB:-lossbench}
PG_PORT=${LOSSBENCH_PG_PORT:-5432}  # the port of a cluster up.sh creates
PG_CLUSTER=${LOSSBENCH_PG_CLUSTER:-main}
NO_PRIVILEGE=3  # exit status when neither apt nor root (or sudo) is there: tests skip on it

say() { echo "${0##*/}: $*" >&2; }
die() {
  say "$2"
  exit "$1"
}

[ -t 0 ] && TERMINAL=1 || TERMINAL=""  # sudo may ask for a password only on a terminal

# How to become root: nothing as root; sudo (never prompting without a terminal) otherwise.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif ! command -v sudo >/dev/null 2>&1; then
    die "$NO_PRIVILEGE" "not root and no sudo: run ${0##*/} as root, or install postgresql yourself"
  elif [ -n "$TERMINAL" ]; then
    sudo "$@"
  else
    sudo -n "$@" || die "$NO_PRIVILEGE" "sudo needs a password and there is no terminal: run ${0##*/} as root"
  fi
}

# The newest PostgreSQL server version installed by Debian's packages (empty if none).
pg_version() {
  [ -d /usr/lib/postgresql ] || return 0
  find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' \
    | awk -F/ '{print $5}' | sort -V | tail -n 1
}

# A field of our cluster in `pg_lsclusters -h` (2: name, 3: port, 4: status); empty if none.
cluster_field() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h | awk -v v="$1" -v c="$PG_CLUSTER" -v f="$2" \
    '$1 == v && $2 == c {print $f}'
}

# $1 percent-encoded for a URL (every byte but [A-Za-z0-9._~-]).
urlencode() {
  local LC_ALL=C out="" c i
  for ((i = 0; i < ${#1}; i++)); do
    c=${1:i:1}
    case $c in
      [a-zA-Z0-9._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}
