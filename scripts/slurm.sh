#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine, for `augur slurm`'s tests.
#   scripts/slurm.sh start DIR   # prints the slurm.conf path (export SLURM_CONF=it)
#   scripts/slurm.sh stop DIR
# This host is controller and compute node (proctrack/linuxproc, no cgroups,
# no accounting); state, logs and spool live in DIR. Installs Debian's
# slurm-wlm and munge if they are missing (as root, with apt). Exits non-zero,
# saying why, if no cluster can be started.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a directory for the cluster}
conf=$dir/slurm.conf

case "$action" in
start)
    if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            echo "installing Debian's slurm-wlm and munge for the Slurm tests" >&2
            mkdir -p "$dir"
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q slurm-wlm munge > "$dir/apt.log" 2>&1 \
                || { apt-get update -q >> "$dir/apt.log" 2>&1 && apt-get install -y -q slurm-wlm munge >> "$dir/apt.log" 2>&1; } \
                || { echo "apt-get install slurm-wlm munge failed (see $dir/apt.log)" >&2; exit 1; }
        else
            echo "no Slurm (slurmctld, munged), and no root apt to install it" >&2
            exit 1
        fi
    fi
    [ "$(id -u)" = 0 ] || { echo "the test cluster runs its daemons as root; run as root" >&2; exit 1; }
    mkdir -p "$dir/state" "$dir/spool"
    # munge authenticates Slurm's messages: a key, and its daemon.
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2> /dev/null
    fi
    chown munge:munge /etc/munge/munge.key 2> /dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge 2> /dev/null || true
    if ! munge -n > /dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged > "$dir/munged.log" 2>&1 \
            || { echo "munged did not start: $(tail -2 "$dir/munged.log")" >&2; exit 1; }
    fi
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
    # Ports of their own, so a second cluster on the machine does not clash.
    port=$(( 16817 + RANDOM % 2000 ))
    cat > "$conf" <<CONF
ClusterName=augur-test
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$(( port + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$conf
    slurmctld -f "$conf" || { echo "slurmctld did not start: $(tail -3 "$dir/slurmctld.log" 2> /dev/null)" >&2; exit 1; }
    slurmd -f "$conf" || { echo "slurmd did not start: $(tail -3 "$dir/slurmd.log" 2> /dev/null)" >&2; exit 1; }
    for _ in $(seq 60); do
        if [ "$(sinfo -h -o %t 2> /dev/null)" = idle ]; then
            echo "$conf"
            exit 0
        fi
        sleep 0.5
    done
    echo "the node did not become idle: $(sinfo 2>&1 | tail -2 | tr '\n' ' ') $(tail -2 "$dir/slurmd.log" 2> /dev/null)" >&2
    exit 1
    ;;
stop)
    for daemon in slurmd slurmctld; do
        if [ -f "$dir/$daemon.pid" ]; then
            kill "$(cat "$dir/$daemon.pid")" 2> /dev/null || true
        fi
    done
    ;;
*)
    echo "usage: scripts/slurm.sh start|stop DIR" >&2
    exit 2
    ;;
esac
