#!/usr/bin/env bash
# A real single-node SLURM on this machine, to try profiles/slurm without a cluster (and for
# the tests). Debian/Ubuntu, run as root. Idempotent; every wait is bounded.
#
#   profiles/slurm/local-slurm.sh install   # apt packages (munge, slurmctld/d, slurmdbd, mariadb)
#   profiles/slurm/local-slurm.sh start     # write configs, start the daemons, wait until idle
#   profiles/slurm/local-slurm.sh status    # what runs, sinfo
#   profiles/slurm/local-slurm.sh stop      # stop only the daemons this script started
#
# What it sets up: munged, MariaDB + slurmdbd (accounting: the SLURM executor plugin polls
# job states with sacct and hangs without a working database), slurmctld and slurmd for one
# node named after this host, one partition `debug`, and GPUS fake GPUs (default 2) as gres
# backed by character devices, so GPU requests (`--gpus=1`) are accepted and jobs see
# CUDA_VISIBLE_DEVICES. The configs go to /etc/slurm (refusing to overwrite files this script
# did not write); state, logs and pid files to $STATE (default /var/lib/hwlab-slurm).
set -euo pipefail

STATE=${HWLAB_SLURM_STATE:-/var/lib/hwlab-slurm}
GPUS=${GPUS:-2}
CLUSTER=hwlab
PARTITION=debug
MARK="# written by hwlab profiles/slurm/local-slurm.sh"
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
GRESCONF=/etc/slurm/gres.conf
MYSQL_SOCK=/run/mysqld/mysqld.sock
TIMEOUT=${HWLAB_SLURM_TIMEOUT:-60}

say() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds or time runs out.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what (logs: $STATE/log)"
    sleep 0.5
  done
}

running() { [[ -f $STATE/pids/$1 ]] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }

# start_daemon NAME PIDFILE COMMAND...: start COMMAND (which daemonises and writes PIDFILE)
# unless this script's copy already runs; remember the pid as ours.
start_daemon() {
  local name=$1 pidfile=$2
  shift 2
  if running "$name"; then
    say "$name already running (pid $(cat "$STATE/pids/$name"))"
    return
  fi
  rm -f "$pidfile"
  "$@"
  wait_for "$TIMEOUT" "$name to write $pidfile" test -s "$pidfile"
  cp "$pidfile" "$STATE/pids/$name"
  say "$name started (pid $(cat "$STATE/pids/$name"))"
}

write_conf() { # write_conf PATH MODE: stdin to PATH unless a foreign file is there
  local path=$1 mode=$2
  if [[ -f $path ]] && ! grep -qF "$MARK" "$path"; then
    die "$path exists and was not written by this script; not touching it"
  fi
  install -m "$mode" /dev/stdin "$path"
}

cmd_install() {
  local pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
  if dpkg-query -W -f='${Status}\n' "${pkgs[@]}" 2>/dev/null | grep -qv "install ok installed" ||
    ! dpkg-query -W "${pkgs[@]}" >/dev/null 2>&1; then
    say "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    say "packages already installed"
  fi
}

node_line() {
  # this host as slurmd sees it, memory lowered ~10% so the node is never INVAL
  local line mem
  line=$(slurmd -C | head -n 1)
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
  line=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/" <<<"$line")
  printf '%s NodeAddr=127.0.0.1 Gres=gpu:%s State=UNKNOWN\n' "$line" "$GPUS"
}

write_configs() {
  local node
  node=$(hostname -s)
  mkdir -p "$STATE"/{state,spool,log,pids} /etc/slurm /run/munge /run/mysqld
  write_conf "$CONF" 644 <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
DefMemPerCPU=2048
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
$(node_line)
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  {
    echo "$MARK"
    for ((i = 0; i < GPUS; i++)); do
      [[ -e /dev/hwlab-fakegpu$i ]] || mknod "/dev/hwlab-fakegpu$i" c 1 3
      echo "NodeName=$node Name=gpu File=/dev/hwlab-fakegpu$i"
    done
  } | write_conf "$GRESCONF" 644
  write_conf "$DBDCONF" 600 <<EOF
$MARK
AuthType=auth/munge
DbdHost=$node
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=hwlab-local
EOF
}

cmd_start() {
  [[ $(id -u) == 0 ]] || die "run as root"
  command -v slurmctld >/dev/null || die "SLURM is not installed: run '$0 install' first"
  write_configs
  chown munge:munge /run/munge
  start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
  if ! running mariadb; then
    chown mysql:mysql /run/mysqld
    setsid mariadbd --user=mysql --socket="$MYSQL_SOCK" --pid-file=/run/mysqld/hwlab.pid \
      --skip-networking=0 --bind-address=127.0.0.1 >"$STATE/log/mariadb.log" 2>&1 </dev/null &
    wait_for "$TIMEOUT" "MariaDB" mariadb-admin --socket="$MYSQL_SOCK" ping
    cp /run/mysqld/hwlab.pid "$STATE/pids/mariadb"
    say "mariadb started (pid $(cat "$STATE/pids/mariadb"))"
  else
    say "mariadb already running (pid $(cat "$STATE/pids/mariadb"))"
  fi
  mariadb --socket="$MYSQL_SOCK" <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'hwlab-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
  start_daemon slurmdbd "$STATE/slurmdbd.pid" /usr/sbin/slurmdbd
  wait_for "$TIMEOUT" "slurmdbd to answer" sacctmgr -n show cluster
  # the cluster must be registered before slurmctld starts, or accounting stays empty
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i add account hwlab Cluster="$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=hwlab DefaultAccount=hwlab >/dev/null 2>&1 || true
  local fresh=1
  running slurmd && fresh=0
  start_daemon slurmctld "$STATE/slurmctld.pid" /usr/sbin/slurmctld
  start_daemon slurmd "$STATE/slurmd.pid" /usr/sbin/slurmd
  wait_for "$TIMEOUT" "the node to register" bash -c \
    "sinfo -h -N -o %t | grep -qE '^(idle|mix|alloc|comp)'"
  if ((fresh)); then
    # slurmctld recovers its queue from $STATE, but on this one node a job from before the
    # daemons (re)started has no live step: slurmd purged its script. Left alone it holds the
    # node's CPUs until its time limit and every new job pends behind it. Cancel them all.
    local stale
    stale=$(squeue -h -o %i | tr '\n' ' ')
    if [[ -n ${stale// /} ]]; then
      say "cancelling jobs left from before this start: $stale"
      # shellcheck disable=SC2086
      scancel $stale
    fi
  fi
  wait_for "$TIMEOUT" "the queue to drain and the node to become idle" bash -c \
    "[[ -z \$(squeue -h -o %i) ]] && sinfo -h -N -o %t | grep -qE '^idle'"
  say "ready: partition $PARTITION, $(nproc) CPUs, $GPUS fake GPUs; try: sinfo; sbatch --wrap hostname"
}

cmd_stop() {
  local name pid
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    [[ -f $STATE/pids/$name ]] || continue
    pid=$(cat "$STATE/pids/$name")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      local end=$((SECONDS + 20))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      say "$name stopped (pid $pid)"
    fi
    rm -f "$STATE/pids/$name"
  done
}

cmd_status() {
  local name
  for name in munged mariadb slurmdbd slurmctld slurmd; do
    if running "$name"; then echo "$name: running (pid $(cat "$STATE/pids/$name"))"; else echo "$name: not running"; fi
  done
  if running slurmctld; then sinfo; fi
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
