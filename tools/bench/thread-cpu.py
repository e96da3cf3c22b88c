#!/usr/bin/env python3
"""thread-cpu.py: per-thread CPU share and context switches of a running benchmark.

    tools/bench/thread-cpu.py DELAY SECONDS COMMAND [ARGS...]

Starts COMMAND, waits DELAY seconds, then samples /proc/PID/task/*/{stat,status} of every
process named like COMMAND's program (siw-bench forks its server) twice, SECONDS apart, and
prints for each thread its name (siw-progress, siw-cm, siw-stat, or the program's), its CPU
share, and voluntary/involuntary context switches per second. Then it waits for COMMAND and
prints its result rows. Used for docs/PERFORMANCE.md §8-§9.
"""
import os
import subprocess
import sys
import time


def snap(comm):
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    st = f.read()
                name = st[st.index("(") + 1:st.rindex(")")]
                fields = st[st.rindex(")") + 2:].split()
                cpu = int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
                vol = nonvol = 0
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            vol = int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            nonvol = int(line.split()[1])
                out[(int(pid), int(tid))] = (name, cpu, vol, nonvol)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    delay, secs, cmd = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    comm = os.path.basename(cmd[0])[:15]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(delay)
    tick = os.sysconf("SC_CLK_TCK")
    a, t0 = snap(comm), time.monotonic()
    time.sleep(secs)
    b, el = snap(comm), time.monotonic() - t0
    for k in sorted(b):
        if k not in a:
            continue
        name, cpu, vol, nonvol = b[k]
        _, cpu0, vol0, nonvol0 = a[k]
        print(f"pid {k[0]:>7} tid {k[1]:>7} {name:<15} cpu {100 * (cpu - cpu0) / tick / el:5.0f}%"
              f"  vcsw/s {(vol - vol0) / el:8.0f}  ivcsw/s {(nonvol - nonvol0) / el:7.0f}")
    out = proc.communicate()[0]
    for line in out.splitlines():
        if line.split()[:1] in (["write"], ["read"], ["send"]):
            print(line)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
