#!/bin/sh
# shellcheck shell=dash
# guest-agent.sh - a command agent for one guest boot, so that a host script can run many
# steps (servers, clients, siw_reload, kills) in ONE guest instead of booting one per step.
# Run it as the guest command: guest-run.sh -c guest-agent.sh (lib.sh: ga_start).
# It is sourced by the guest's /init (busybox ash), so the /init helpers (wait_listen, mark,
# siw_reload, pcap_start, say, ...) are available to every job.
#
# Protocol (all files in the 9p share, /share/q/ in the guest = RUNDIR/q/ on the host):
#   host writes q/N.sh (N = 1, 2, 3, ... in order, atomically via rename)
#   agent runs it at once in the background: ( . q/N.sh ) >q/N.out 2>&1, cwd /share,
#         and writes q/N.rc (its exit code) when it ends. Jobs that start programs another
#         job must kill keep their own pid files.
#   host writes q/quit containing the number of the last job; the agent starts every job
#         up to that number, waits (at most AGENT_DRAIN s, default 30) for the running
#         ones, and ends; the guest then powers off with the agent's exit code: 0, or 3
#         when jobs were still running after the drain time.
# The agent gives up (exit 4) when no job arrives for AGENT_IDLE s (default 600): the host
# side always bounds the guest with guest-run.sh -t as well.
#
# Stuck-socket watch (lib.sh: ga_stuck): while the agent runs, a background loop samples
# /proc/net/tcp every 0.5 s and appends "UPTIME LOCAL REMOTE RXQ" (addresses and queue in the
# kernel's hex notation) to /share/stuck.txt for every ESTABLISHED connection whose receive
# queue held the same non-zero byte count in 3 samples in a row. kernel siw consumes a
# connection's bytes in softirq as they arrive, so that only happens when the driver has
# stopped reading the socket: the known kernel siw accept race (README.md, "kernel siw
# findings") leaves a first FPDU unread that way.
Q=/share/q
mkdir -p "$Q"
: "${AGENT_DRAIN:=30}" "${AGENT_IDLE:=600}"
stuck_watch() {
  : >/tmp/sw.prev
  while :; do
    awk 'NR > 1 && $4 == "01" { split($5, q, ":"); if (q[2] != "00000000") print $2, $3, q[2] }' \
      /proc/net/tcp >/tmp/sw.cur 2>/dev/null
    awk 'FILENAME == ARGV[1] { c[$1 " " $2 " " $3] = $4; next }
         { k = $1 " " $2 " " $3; n = 1; if (k in c) n = c[k] + 1; print k, n }' /tmp/sw.prev /tmp/sw.cur >/tmp/sw.next
    mv -f /tmp/sw.next /tmp/sw.prev
    awk -v up="$(up)" '$4 == 3 { print up, $1, $2, $3 }' /tmp/sw.prev >>/share/stuck.txt
    sleep 0.5
  done
}
: >/share/stuck.txt
stuck_watch </dev/null >/dev/null 2>&1 &
WATCH_STUCK=$!
n=1 idle=0 last=""
mark agent-up
say "agent up"
while :; do
  if [ -e "$Q/$n.sh" ]; then
    (
      # shellcheck disable=SC1090
      ( . "$Q/$n.sh" ) >"$Q/$n.out" 2>&1 </dev/null
      echo $? >"$Q/.$n.rc.tmp" && mv -f "$Q/.$n.rc.tmp" "$Q/$n.rc"
    ) &
    n=$((n + 1)) idle=0
    continue
  fi
  if [ -z "$last" ] && [ -s "$Q/quit" ]; then last=$(cat "$Q/quit"); fi
  if [ -n "$last" ] && [ "$n" -gt "$last" ]; then break; fi
  idle=$((idle + 1))
  if [ "$idle" -gt $((AGENT_IDLE * 20)) ]; then say "agent: no job for ${AGENT_IDLE}s, giving up"; exit 4; fi
  sleep 0.05
done
say "agent: all $last jobs started, draining"
kill "$WATCH_STUCK" 2>/dev/null
i=0
while :; do
  busy=""
  j=1
  while [ "$j" -le "$last" ]; do
    [ -e "$Q/$j.rc" ] || busy="$busy $j"
    j=$((j + 1))
  done
  [ -z "$busy" ] && break
  i=$((i + 1))
  if [ "$i" -gt $((AGENT_DRAIN * 10)) ]; then say "agent: jobs still running after ${AGENT_DRAIN}s:$busy"; exit 3; fi
  sleep 0.1
done
say "agent: done"
exit 0
