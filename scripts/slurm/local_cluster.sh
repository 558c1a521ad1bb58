#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, to test pipelines/profiles/slurm (needs root).
#
#   scripts/slurm/local_cluster.sh start    # install slurm-wlm + munge if missing, start, wait for idle
#   scripts/slurm/local_cluster.sh install  # only install the packages (apt-get) if missing
#   scripts/slurm/local_cluster.sh status   # daemons, sinfo; exit 0 when up, 3 when down
#   scripts/slurm/local_cluster.sh stop     # cancel this cluster's jobs, stop exactly the daemons it started
#
# Everything lives in one state directory (IBTPO_SLURM_STATE, default /tmp/ibtpo-slurm): slurm.conf,
# logs, pid files, spool and state directories and munged's own socket (the system munge key is
# used). The one thing outside it is /etc/slurm/slurm.conf, a symlink to the state directory's
# slurm.conf while the cluster runs: the job-step executor strips SLURM_* variables (SLURM_CONF
# included) before its `srun`, so commands inside jobs find the cluster only at the default path,
# as on a real cluster. Hence one such cluster per machine; `start` refuses to replace a
# slurm.conf it did not write. Ports: IBTPO_SLURM_CTLD_PORT (6817), IBTPO_SLURM_SLURMD_PORT (6818).
# There is no systemd and no cgroup here, hence proctrack/linuxproc, task/none and no job
# accounting (no slurmdbd: `sacct` fails, so the profile queries job states with `squeue`, which
# shows finished jobs for MinJobAge seconds: IBTPO_SLURM_MIN_JOB_AGE, 600). Idempotent: `start` on
# a running cluster and `stop` on a stopped one do nothing.
set -euo pipefail

STATE="${IBTPO_SLURM_STATE:-/tmp/ibtpo-slurm}"
CTLD_PORT="${IBTPO_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${IBTPO_SLURM_SLURMD_PORT:-6818}"
MIN_JOB_AGE="${IBTPO_SLURM_MIN_JOB_AGE:-600}"   # s a finished job stays visible to squeue
CONF="$STATE/slurm.conf"
SYS_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET="$STATE/munge/munge.socket"
export SLURM_CONF="$CONF"

log() { echo "[local_cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

# pid from a pid file, only if that process is alive and is the daemon named $2
daemon_pid() {
  local pidfile="$1" name="$2" pid
  [ -r "$pidfile" ] || return 1
  pid="$(tr -dc '0-9' < "$pidfile")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
  echo "$pid"
}

need_root() { [ "$(id -u)" = 0 ] || die "needs root (munged runs as the munge user, slurmd as root)"; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
  log "installing slurm-wlm and munge (apt-get, --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
}

write_conf() {
  local node hw cpus mem
  node="$(hostname -s)"
  # the machine as slurmd sees it: CPUs, sockets, cores, threads, RealMemory (MB)
  hw="$(slurmd -C | head -n1 | sed 's/^NodeName=[^ ]* //')"
  cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
  mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not read CPUs/RealMemory from 'slurmd -C': $hw"
  mkdir -p "$STATE/ctld" "$STATE/d"
  cat > "$CONF" <<EOF
# written by scripts/slurm/local_cluster.sh for host $node: one node, no cgroups, no accounting
ClusterName=ibtpo-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  log "wrote $CONF ($node: CPUs=$cpus RealMemory=${mem}MB)"
}

link_conf() {  # /etc/slurm/slurm.conf -> $CONF, unless it is someone else's file
  if [ -L "$SYS_CONF" ] && [ "$(readlink "$SYS_CONF")" = "$CONF" ]; then return; fi
  if [ -e "$SYS_CONF" ] || [ -L "$SYS_CONF" ]; then
    die "$SYS_CONF exists and is not a link to $CONF (another SLURM setup?); not touching it"
  fi
  mkdir -p "$(dirname "$SYS_CONF")"
  ln -s "$CONF" "$SYS_CONF"
}

unlink_conf() {
  if [ -L "$SYS_CONF" ] && [ "$(readlink "$SYS_CONF")" = "$CONF" ]; then rm -f "$SYS_CONF"; fi
}

start_munged() {
  if daemon_pid "$STATE/munge/munged.pid" munged >/dev/null; then return; fi
  mkdir -p "$STATE/munge"
  chown munge:munge "$STATE/munge"
  # 0755: job processes (sbatch, srun, slurmstepd) must reach the socket; munged refuses a
  # group- or world-writable socket directory
  chmod 0755 "$STATE/munge"
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  runuser -u munge -- munged --socket="$MUNGE_SOCKET" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
  munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null \
    || die "munged does not answer on $MUNGE_SOCKET (see $STATE/munge/munged.log)"
}

wait_idle() {
  local node state
  node="$(hostname -s)"
  for i in $(seq 120); do
    state="$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)"
    case "$state" in
      idle|mixed|allocated) log "node $node is $state"; return 0 ;;
      down*|drain*) [ $((i % 10)) = 1 ] && scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  die "node $node not idle after 60 s (state '${state:-?}'; logs: $STATE/slurmctld.log, $STATE/slurmd.log)"
}

start() {
  need_root
  install_packages
  if daemon_pid "$STATE/slurmctld.pid" slurmctld >/dev/null && daemon_pid "$STATE/slurmd.pid" slurmd >/dev/null; then
    log "already running ($STATE)"
    link_conf
    wait_idle
    return
  fi
  local t0
  t0="$(date +%s.%N)"
  mkdir -p "$STATE"
  write_conf
  link_conf
  start_munged
  daemon_pid "$STATE/slurmctld.pid" slurmctld >/dev/null || slurmctld -f "$CONF"
  daemon_pid "$STATE/slurmd.pid" slurmd >/dev/null || slurmd -f "$CONF"
  wait_idle
  log "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s ($SYS_CONF -> $CONF)"
}

stop_pid() {  # stop_pid PIDFILE NAME
  local pid
  pid="$(daemon_pid "$1" "$2")" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do [ -d "/proc/$pid" ] || { log "stopped $2 ($pid)"; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  log "killed $2 ($pid)"
}

stop() {
  if daemon_pid "$STATE/slurmctld.pid" slurmctld >/dev/null; then
    # this cluster's jobs only (SLURM_CONF points at it); their steps end with their slurmstepd
    local jobs
    jobs="$(squeue -h -t PENDING,RUNNING,SUSPENDED,REQUEUED -o %A 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
      log "cancelling jobs: $(echo $jobs)"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 50); do [ -z "$(squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  stop_pid "$STATE/slurmd.pid" slurmd
  stop_pid "$STATE/slurmctld.pid" slurmctld
  stop_pid "$STATE/munge/munged.pid" munged
  unlink_conf
}

status() {
  local up=0 name pidfile pid
  for name in munged slurmctld slurmd; do
    pidfile="$STATE/$name.pid"
    [ "$name" = munged ] && pidfile="$STATE/munge/munged.pid"
    if pid="$(daemon_pid "$pidfile" "$name")"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"; up=3
    fi
  done
  if [ "$up" = 0 ]; then
    sinfo -N -o "%N %T %c %m" || up=3
    echo "config: $CONF (linked from $SYS_CONF)"
  fi
  return "$up"
}

case "${1:-}" in
  install) need_root; install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status|install   (state: $STATE)" >&2; exit 2 ;;
esac
