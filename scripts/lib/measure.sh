# shellcheck shell=bash
# Helpers the benchmarks share: CPU used by a process tree, and medians.

# CPU seconds a process tree has used so far: the process, its live
# descendants, and the children they reaped (PostgreSQL's backends end
# with their connections).
cpu_seconds() { # pid
  python3 - "$1" <<'PY'
import os, sys
stats = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            # After the command: state, ppid, ..., utime, stime, cutime, cstime.
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    stats[int(entry)] = (int(fields[1]), sum(map(int, fields[11:15])))
tree = {int(sys.argv[1])}
for _ in range(8):
    tree |= {pid for pid, (ppid, _) in stats.items() if ppid in tree}
print(round(sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK"), 2))
PY
}

minus() { python3 -c 'import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 2))' "$1" "$2"; }
median() { python3 -c 'import statistics, sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 3))' "$@"; }
