#!/bin/bash
# shellcheck disable=SC2016  # guest commands are single-quoted on purpose (expanded in the guest)
# smoke.sh BUILD_CACHE_DIR - prove the kernel-siw qemu harness works:
#   build  guest-build.sh BUILD_CACHE_DIR (cached after the first run)
#   (a)    in-guest rping over siw0 (server + client on 10.0.2.15, -C 10 -v -V)
#   (b)    guest -> host TCP: guest nc 10.0.2.2:P reaches a python3 listener on host 127.0.0.1:P
#   (c)    host -> guest TCP via hostfwd 127.0.0.1:P -> guest nc -l -p P (background guest,
#          host waits for the guest listener through listen.txt)
#   (d)    in-guest ib_write_bw -R (rdma_cm) server + client on 10.0.2.15
# Each step boots its own guest. Exits 0 only if all steps pass; prints timings and a
# final "smoke: N passed, N failed" line. Run dirs: BUILD_CACHE_DIR/runs/smoke-<date>-<pid>/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' | sed 's/^# \{0,1\}//'; exit 2; }
mkdir -p "$1"
INTEROP_CACHE="$(cd "$1" && pwd)"
export INTEROP_CACHE
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RUNS="$INTEROP_CACHE/runs/smoke-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUNS"
HOST_PIDS=()
cleanup() {
  local p
  for p in "${HOST_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  guest_kill_all
}
trap cleanup EXIT

SUMMARY=() PASSED=0 FAILED=0
record() { # name ok|FAIL wall detail
  SUMMARY+=("$(printf '%-30s %-4s %6ss  %s' "$1" "$2" "$3" "$4")")
  if [ "$2" = ok ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
  interop_log "$1: $2 (${3}s) $4"
}
# boot/command split of a run: "boot 4.3s cmd 0.6s"
guest_split() {
  local t ready end
  t="$(guest_timing "$1")"
  ready="$(sed -n 's/.*guest_ready_uptime_s=\([0-9.]*\).*/\1/p' <<<"$t")"
  end="$(sed -n 's/.*guest_cmd_end_uptime_s=\([0-9.]*\).*/\1/p' <<<"$t")"
  if [ -n "$ready" ] && [ -n "$end" ]; then
    awk -v r="$ready" -v e="$end" 'BEGIN{printf "guest boot->ready %.1fs, cmd %.1fs", r, e-r}'
  fi
}
pid_gone() { ! kill -0 "$1" 2>/dev/null; }
run_fg() { # DIR [guest-run options]: foreground guest, returns its rc
  local dir="$1"; shift
  "$HERE/guest-run.sh" -q -o "$INTEROP_CACHE" -d "$dir" "$@" >"$dir.out" 2>&1
}

# --- build ----------------------------------------------------------------------------------
t=$(interop_now)
[ "$(id -u)" = 0 ] || [ -s "$INTEROP_CACHE/guest/initramfs.cpio.gz" ] || { echo "SKIP: not root, so no guest can be built"; exit 77; }
if interop_build; then record build ok "$(interop_since "$t")" "$INTEROP_CACHE/guest ($(cat "$INTEROP_CACHE/guest/KVER"))"
else record build FAIL "$(interop_since "$t")" "guest-build.sh failed"; echo "smoke: $PASSED passed, $((FAILED + 4)) failed"; exit 1; fi

# --- (a) in-guest rping ---------------------------------------------------------------------
step_a() {
  local d="$RUNS/a-rping" rc=0 pings
  mkdir -p "$d"
  run_fg "$d" -t 180 -e '
P=7174
timeout 60 rping -s -a 10.0.2.15 -p $P -C 10 -V >/share/server.log 2>&1 & S=$!
wait_listen $P 30 || exit 10
timeout 60 rping -c -a 10.0.2.15 -p $P -C 10 -v -V >/share/client.log 2>&1; c=$?
wait $S; s=$?
echo "rping client_rc=$c server_rc=$s pings=$(grep -c "^ping data" /share/client.log)"
[ $c = 0 ] && [ $s = 0 ]' || rc=$?
  pings="$(grep -c '^ping data' "$d/client.log" 2>/dev/null || true)"
  if [ "$rc" = 0 ] && [ "$pings" = 10 ]; then DETAIL="10 pings verified; $(guest_split "$d")"; return 0; fi
  DETAIL="rc=$rc pings=${pings:-0}; see $d"; return 1
}

# --- (b) guest -> host TCP ------------------------------------------------------------------
HOST_LISTENER='
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(1); ls.settimeout(float(sys.argv[3]))
c, peer = ls.accept(); c.settimeout(30); data = b""
while b"\n" not in data:
    chunk = c.recv(4096)
    if not chunk: break
    data += chunk
c.sendall(b"hello-from-host\n"); c.close()
open(out, "wb").write(data); print("host listener: got %r from %s" % (data, peer))
'
step_b() {
  local d="$RUNS/b-guest2host" rc=0 p lp got
  mkdir -p "$d"
  p="$(host_free_port)"
  python3 -c "$HOST_LISTENER" "$p" "$d/host-received.txt" 150 >"$d/host-listener.log" 2>&1 &
  lp=$!; HOST_PIDS+=("$lp")
  host_wait_listen "$p" 10 || { DETAIL="host listener did not start"; return 1; }
  run_fg "$d" -t 150 -e "P=$p"'
echo hello-from-guest | timeout 30 nc 10.0.2.2 $P >/share/guest-received.txt; c=$?
echo "guest nc rc=$c got: $(cat /share/guest-received.txt)"
[ $c = 0 ]' || rc=$?
  wait_until 10 pid_gone "$lp" || kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  got="$(cat "$d/host-received.txt" 2>/dev/null || true)"
  if [ "$rc" = 0 ] && [ "$got" = hello-from-guest ] && [ "$(cat "$d/guest-received.txt" 2>/dev/null)" = hello-from-host ]; then
    DETAIL="10.0.2.2:$p -> 127.0.0.1:$p, data both ways; $(guest_split "$d")"; return 0
  fi
  DETAIL="rc=$rc host got '$got'; see $d"; return 1
}

# --- (c) host -> guest via hostfwd, guest in the background --------------------------------
HOST_CLIENT='
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"hello-via-hostfwd\n"); s.shutdown(socket.SHUT_WR); data = b""
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
s.close(); print("host client: got %r" % data)
sys.exit(0 if data == b"hello-from-guest\n" else 1)
'
step_c() {
  local d="$RUNS/c-host2guest" rc=0 p t1 hc=0
  mkdir -p "$d"
  p="$(host_free_port)"
  guest_start "$d" -f "$p" -t 150 -e "P=$p"'
printf "hello-from-guest\n" | timeout 60 nc -l -p $P >/share/guest-received.txt; c=$?
echo "guest nc -l rc=$c got: $(cat /share/guest-received.txt)"
[ $c = 0 ]'
  guest_wait_ready "$d" 120 || { guest_kill "$d"; DETAIL="guest not ready; see $d"; return 1; }
  t1=$(interop_now)
  guest_wait_listen "$d" "$p" 60 || { guest_kill "$d"; DETAIL="guest listener not up; see $d"; return 1; }
  local lw; lw="$(interop_since "$t1")"
  timeout 60 python3 -c "$HOST_CLIENT" "$p" >"$d/host-client.log" 2>&1 || hc=$?
  guest_wait_done "$d" 60 || rc=$?
  if [ "$rc" = 0 ] && [ "$hc" = 0 ] && [ "$(cat "$d/guest-received.txt" 2>/dev/null)" = hello-via-hostfwd ]; then
    DETAIL="127.0.0.1:$p -> guest :$p, data both ways, listener seen ${lw}s after ready; $(guest_split "$d")"; return 0
  fi
  DETAIL="guest rc=$rc host client rc=$hc; see $d"; return 1
}

# --- (d) in-guest ib_write_bw -R ------------------------------------------------------------
step_d() {
  local d="$RUNS/d-ib_write_bw" rc=0 line
  mkdir -p "$d"
  run_fg "$d" -t 240 -e '
P=18515
timeout 150 ib_write_bw -R -F -p $P -s 4096 -n 200 >/share/server.log 2>&1 & S=$!
wait_listen $P 30 || exit 10
timeout 150 ib_write_bw -R -F -p $P -s 4096 -n 200 10.0.2.15 >/share/client.log 2>&1; c=$?
wait $S; s=$?
echo "ib_write_bw client_rc=$c server_rc=$s"
[ $c = 0 ] && [ $s = 0 ]' || rc=$?
  line="$(grep -E '^ *4096 +200 ' "$d/client.log" 2>/dev/null | head -1 | tr -s ' \t' ' ' || true)"
  if [ "$rc" = 0 ] && [ -n "$line" ]; then
    DETAIL="#bytes #iters BW-peak BW-avg[MB/s] MsgRate[Mpps]:${line}; $(guest_split "$d")"; return 0
  fi
  DETAIL="rc=$rc; see $d"; return 1
}

for s in "a:in-guest rping (siw0)" "b:guest->host TCP (slirp)" "c:host->guest TCP (hostfwd)" "d:in-guest ib_write_bw -R"; do
  DETAIL="" t=$(interop_now)
  if "step_${s%%:*}"; then record "(${s%%:*}) ${s#*:}" ok "$(interop_since "$t")" "$DETAIL"
  else record "(${s%%:*}) ${s#*:}" FAIL "$(interop_since "$t")" "$DETAIL"; fi
done

echo "=== smoke summary (run dirs: $RUNS)"
printf '%s\n' "${SUMMARY[@]}"
echo "smoke: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
