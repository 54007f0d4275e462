#!/usr/bin/env bash
# bench/cpu_cap.sh CPUS COMMAND... — run COMMAND with PostgreSQL, Redis and everything COMMAND
# starts capped at CPUS cores in total (a cgroup-v1 cpu group, CFS period 5 ms so throttling
# stalls stay short), then move them all back. Emulates a slower machine of the same kind: pick
# CPUS so the same run's celery_noop yardstick reads its README's reference figure (630-810
# tasks/s; 1.07 on a machine where it reads ~1,350 uncapped). Needs root and /sys/fs/cgroup/cpu.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CPUS COMMAND..." >&2; exit 2; }
cpus=$1; shift
root=/sys/fs/cgroup/cpu
group=$root/nhbench-cap
[ -w "$root" ] || { echo "cpu_cap: $root is not writable (cgroup v1 cpu controller, root)" >&2; exit 2; }
mkdir -p "$group"
echo 5000 > "$group/cpu.cfs_period_us"
awk -v c="$cpus" 'BEGIN { q = int(c * 5000); if (q < 1000) exit 1; print q }' \
  > "$group/cpu.cfs_quota_us" || { echo "cpu_cap: CPUS must be >= 0.2" >&2; exit 2; }
release() {  # every process still in the group goes back to the root group
  while read -r pid; do echo "$pid" > "$root/cgroup.procs" 2>/dev/null || true; done \
    < "$group/cgroup.procs"
}
trap release EXIT
for pid in $(pgrep -x 'postgres|redis-server' || true); do
  echo "$pid" > "$group/cgroup.procs" 2>/dev/null || true
done
echo $$ > "$group/cgroup.procs"
"$@"
