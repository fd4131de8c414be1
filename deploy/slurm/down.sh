#!/usr/bin/env bash
# Stops what deploy/slurm/up.sh started (slurmd, slurmctld, slurmdbd, MariaDB, munged), and
# nothing else: a daemon that was already running when up.sh ran is left alone. Jobs still
# queued or running are cancelled first (a lossbench run ends KILLED, with its checkpoint). The
# configs in /etc/slurm, the accounting database and the installed packages stay.
set -euo pipefail

STATE=/run/lossbench-slurm
export PATH="$PATH:/usr/sbin:/sbin"
if [ -z "$(ls -A "$STATE" 2>/dev/null)" ]; then
  echo "slurm down: nothing to stop (deploy/slurm/up.sh started no daemon that still runs)"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "slurm down: error: stopping Slurm's daemons needs root (or password-less sudo)" >&2
  exit 3
fi
as_root() { "${SUDO[@]}" "$@"; }

stop() {  # stop <name> <pid file>
  local pid
  [ -e "$STATE/$1" ] || return 0
  pid=$(as_root cat "$2" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(as_root cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
    as_root kill "$pid"
    for _ in $(seq 200); do
      [ "$(as_root cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || break
      sleep 0.1
    done
    if [ "$(as_root cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
      echo "slurm down: $1 (pid $pid) did not stop within 20 s" >&2
      exit 1
    fi
    echo "slurm down: stopped $1"
  fi
  as_root rm -f "$STATE/$1"
}

if [ -e "$STATE/slurmctld" ] && jobs=$(squeue -h -o %A 2>/dev/null) && [ -n "$jobs" ]; then
  echo "slurm down: cancelling the jobs still queued or running: ${jobs//$'\n'/ }"
  # shellcheck disable=SC2086  # one argument per job id
  as_root scancel $jobs
  for _ in $(seq 80); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
fi
stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
