#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the tests: `local_cluster.sh start` | `local_cluster.sh stop`.
# Needs root; no systemd. Installs munge and Slurm from Debian if missing, writes its own slurm.conf,
# starts munged, slurmctld and slurmd (only those not already running) and waits for the node to be
# idle. `stop` ends only the daemons this script started, by their PID files.
set -euo pipefail

STATE=${HF_SLURM_DIR:-/var/lib/harmonic-forecast-slurm}
RUN=$STATE/run
NODE=$(hostname -s)  # slurmd identifies itself by the short host name

owned() {  # owned PIDFILE COMMAND: the PID in the file is a live COMMAND process
  [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return
  local blocker=/usr/sbin/policy-rc.d added=0  # keep package scripts from starting services
  [ -e $blocker ] || { printf '#!/bin/sh\nexit 101\n' > $blocker; chmod +x $blocker; added=1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    munge slurmctld slurmd slurm-client > /dev/null
  [ $added = 1 ] && rm -f $blocker
  return 0
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key --force
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  if owned "$RUN/munged.pid" munged || munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then return; fi
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$RUN/munged.pid"
}

write_config() {
  local cpus memory
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=harmonic-forecast-test
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again only after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
# start pending and requeued jobs within seconds, not the default minute
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" -eq 0 ] || { echo "local_cluster.sh: needs root" >&2; exit 1; }
  install_packages
  mkdir -p "$RUN" "$STATE/state" "$STATE/spool" "$STATE/log" /etc/slurm
  start_munge
  write_config
  owned "$RUN/slurmctld.pid" slurmctld || /usr/sbin/slurmctld
  for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
  owned "$RUN/slurmd.pid" slurmd || /usr/sbin/slurmd
  local state=""
  for _ in $(seq 150); do
    state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null || true)
    case "$state" in
      idle* | mixed* | allocated*) echo "local_cluster.sh: node $NODE $state"; return ;;
      down* | drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
  done
  echo "local_cluster.sh: node $NODE is '$state'" >&2
  tail -20 "$STATE/log/slurmd.log" >&2
  exit 1
}

stop_daemon() {  # stop_daemon PIDFILE COMMAND
  owned "$1" "$2" || { rm -f "$1"; return 0; }
  local pid
  pid=$(cat "$1")
  kill -TERM "$pid"
  for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid"
  rm -f "$1"
}

stop() {
  stop_daemon "$RUN/slurmd.pid" slurmd  # first: it ends the running job steps
  stop_daemon "$RUN/slurmctld.pid" slurmctld
  stop_daemon "$RUN/munged.pid" munged  # only when this script started it
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
