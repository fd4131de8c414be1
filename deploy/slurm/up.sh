#!/usr/bin/env bash
# A single-node Slurm on this machine, for `python train.py -m hydra/launcher=slurm ...` and
# tests/test_slurm.py: installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server where
# missing, writes slurm.conf, slurmdbd.conf and cgroup.conf for localhost (this machine's cores
# and memory), starts munged, MariaDB (socket only), slurmdbd, slurmctld and slurmd directly (no
# systemd) and waits until sinfo shows the node up. slurmdbd is there because submitit polls
# `sacct` for its jobs' states: without accounting, a job that dies without a result (killed,
# out of memory, cancelled while pending) would keep its sweep waiting for ever. Running this
# again is fine: daemons already running are left alone, a changed config restarts Slurm's.
# deploy/slurm/down.sh stops what this started.
#
# Environment: SLURM_PARTITION (debug), SLURM_UP_TIMEOUT (seconds to wait for each daemon, 60),
# SLURM_MEM_HEADROOM_MB (memory kept from Slurm; default max(1024, 10% of the total)).
# Exit code: 0 up; 3 this machine cannot have it (not root and no sudo, packages missing and no
# apt-get or apt-get failed, a Slurm of its own); 1 anything else (a daemon did not start).
set -euo pipefail

PARTITION=${SLURM_PARTITION:-debug}
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF_DIR=/etc/slurm
STATE=/run/lossbench-slurm            # what this script started (down.sh stops only that)
MARK="# written by lossbench deploy/slurm/up.sh"
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "slurm up: $*"; }
die() { echo "slurm up: error: $*" >&2; exit 1; }
cannot() { echo "slurm up: cannot start Slurm here: $*" >&2; exit 3; }

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  cannot "Slurm's daemons must be started as root: run this as root, or as a user with" \
      "password-less sudo (there is no sudo here, or it asks for a password)"
fi
as_root() { "${SUDO[@]}" "$@"; }

# --- packages ---------------------------------------------------------------------------------
missing=()
for cmd in slurmctld slurmd slurmdbd sinfo sbatch srun sacct munged mariadbd; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 \
    || cannot "missing: ${missing[*]}, and there is no apt-get here: install Slurm (slurmctld," \
           "slurmd, slurmdbd, its client commands), MUNGE and MariaDB with this system's" \
           "package manager, then run this again"
  PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
  # not named `install`: as root, as_root would then run this function for `install -m 644` below
  apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"
  }
  say "installing ${PACKAGES[*]} with apt-get (missing: ${missing[*]})"
  apt_install || { as_root apt-get update -q && apt_install; } \
    || cannot "apt-get could not install ${PACKAGES[*]} (its output is above)"
fi

# --- the node: this machine's cores and memory ------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
HEADROOM=${SLURM_MEM_HEADROOM_MB:-$(( MEM_MB / 10 > 1024 ? MEM_MB / 10 : 1024 ))}
REAL_MB=$(( MEM_MB - HEADROOM ))
[ "$REAL_MB" -ge 256 ] || die "only ${MEM_MB} MB of memory (${HEADROOM} MB kept back): too little"
DEF_MEM=$(( REAL_MB / CPUS ))   # a job that asks for no memory gets this per CPU, not the node
if id slurm >/dev/null 2>&1; then SLURM_USER=slurm; else SLURM_USER=root; fi

for f in slurm.conf slurmdbd.conf; do
  if as_root test -f "$CONF_DIR/$f" && ! as_root grep -qF "$MARK" "$CONF_DIR/$f"; then
    cannot "$CONF_DIR/$f exists and was not written by this script: this machine has a Slurm of" \
        "its own. Use it (hydra.launcher.partition=<one of its partitions>) or move it away"
  fi
done
as_root mkdir -p "$CONF_DIR" "$STATE" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd \
  /var/log/slurm
as_root chown "$SLURM_USER" /var/lib/slurm/slurmctld /var/log/slurm

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/slurm.conf" <<EOF
$MARK: one node, this machine.
ClusterName=lossbench
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=$SLURM_USER
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
MpiDefault=none
# No cgroups needed (a container rarely lets them be written): processes are tracked through
# /proc, tasks are not pinned to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# Accounting (sacct: submitit polls it for its jobs' states) through slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Jobs share the node by cores and memory.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
# A cancelled job gets SIGTERM, and SIGKILL this many seconds later: time for a run to save its
# checkpoint and close its MLflow run KILLED.
KillWait=30
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$tmp/slurmdbd.conf" <<EOF
$MARK: accounting in the local MariaDB, through its socket.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=$SLURM_USER
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$SLURM_USER
StorageLoc=slurm_acct_db
EOF
cat >"$tmp/cgroup.conf" <<EOF
$MARK. Unused: ProctrackType and TaskPlugin need no cgroups.
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
EOF

changed=0
for f in slurm.conf slurmdbd.conf cgroup.conf; do
  if ! as_root cmp -s "$tmp/$f" "$CONF_DIR/$f"; then
    as_root install -m 644 "$tmp/$f" "$CONF_DIR/$f"
    changed=1
  fi
done
as_root chown "$SLURM_USER" "$CONF_DIR/slurmdbd.conf"
as_root chmod 600 "$CONF_DIR/slurmdbd.conf"   # slurmdbd refuses a readable one
[ "$changed" = 0 ] || say "wrote $CONF_DIR/{slurm,slurmdbd,cgroup}.conf ($CPUS CPUs, ${REAL_MB} MB)"

# --- daemons ----------------------------------------------------------------------------------
running() {  # running <pid file> <program>: the pid file names a live process of that program
  local pid
  pid=$(as_root cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(as_root cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop() {  # stop <pid file> <program>: SIGTERM, then wait up to 20 s
  local pid
  running "$1" "$2" || return 0
  pid=$(as_root cat "$1")
  as_root kill "$pid"
  for _ in $(seq 200); do running "$1" "$2" || return 0; sleep 0.1; done
  die "$2 (pid $pid) did not stop within 20 s"
}
wait_for() {  # wait_for <what> <log> <command...>: until the command succeeds, or fail
  local what=$1 logfile=$2
  shift 2
  for _ in $(seq $(( TIMEOUT * 2 ))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  as_root tail -n 5 "$logfile" >&2 || true
  die "$what is not up after ${TIMEOUT} s (its log: $logfile)"
}
started() { as_root touch "$STATE/$1"; say "started $1"; }

if ! running /run/munge/munged.pid munged; then
  as_root test -s /etc/munge/munge.key || as_root mungekey --create --force
  as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
  as_root chown munge: /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
  as_root runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
  started munged
fi
munge -n | unmunge >/dev/null || die "MUNGE does not work (munge -n | unmunge failed)"

DB_LOG=/var/log/mysql/error.log
if ! as_root mariadb-admin ping >/dev/null 2>&1; then
  as_root test -d /var/lib/mysql/mysql \
    || as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  as_root mkdir -p /run/mysqld /var/log/mysql
  as_root chown mysql: /run/mysqld /var/log/mysql
  as_root setsid -f mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --log-error="$DB_LOG" </dev/null >/dev/null 2>&1
  wait_for MariaDB "$DB_LOG" as_root mariadb-admin ping
  started mariadbd
fi
grant="GRANT ALL ON slurm_acct_db.* TO '$SLURM_USER'@'localhost'"
[ "$SLURM_USER" = root ] && grant="SELECT 1"
as_root mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS '$SLURM_USER'@'localhost' IDENTIFIED VIA unix_socket; $grant;" \
  || die "could not create the accounting database in MariaDB"

if [ "$changed" = 1 ]; then  # a new config: restart what runs with the old one
  stop /run/slurmd.pid slurmd
  stop /run/slurmctld.pid slurmctld
  stop /run/slurmdbd.pid slurmdbd
fi
if ! running /run/slurmdbd.pid slurmdbd; then
  as_root slurmdbd || die "slurmdbd did not start (see /var/log/slurm/slurmdbd.log)"
  started slurmdbd
fi
wait_for slurmdbd /var/log/slurm/slurmdbd.log sacctmgr -n list cluster
if ! running /run/slurmctld.pid slurmctld; then
  as_root slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
  started slurmctld
fi
if ! running /run/slurmd.pid slurmd; then
  as_root slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
  started slurmd
fi

# --- wait for the node ------------------------------------------------------------------------
state=""
for _ in $(seq $(( TIMEOUT * 2 ))); do
  state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc|comp) break ;;
    down*|drain*|drng*|fail*)  # e.g. after an unexpected restart: put it back in service
      as_root scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mix|alloc|comp) ;;
  *) sinfo 2>&1 | sed 's/^/  /' >&2 || true
     as_root tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
     die "node $NODE is not up after ${TIMEOUT} s (state: ${state:-no answer from slurmctld});" \
         "logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log" ;;
esac
# Accounting: sacct answers once slurmctld has registered the cluster with slurmdbd.
wait_for "accounting (sacct)" /var/log/slurm/slurmctld.log \
  bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx lossbench && sacct -n -X -j 1"
say "node $NODE is $state: $CPUS CPUs, ${REAL_MB} MB of memory"
say "partition: $PARTITION (the default)"
echo "A sweep on it: python train.py -m seed=1,2 hydra/launcher=slurm" \
  "hydra.launcher.partition=$PARTITION"
