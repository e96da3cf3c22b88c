# shellcheck shell=bash
# lib.sh - helpers for host-side interop test scripts (source it from bash).
#
#   . tests/interop/lib.sh
#   INTEROP_CACHE=build/interop-cache      # OUTDIR of guest-build.sh (default: <repo>/build/interop-cache)
#   interop_build                          # guest-build.sh "$INTEROP_CACHE" (cached: ~1-3 s when built)
#   trap guest_kill_all EXIT               # never leave a guest behind
#   P=$(host_free_port)
#   guest_start "$RUN" -f "$P" -e "rping -s -a 10.0.2.15 -p $P -C 10 -V"
#   guest_wait_ready "$RUN" 120            # siw is up, cmd.sh is starting
#   guest_wait_listen "$RUN" "$P" 60       # the guest's (kernel) TCP listener on P exists
#   ... connect the host side to 127.0.0.1:$P ...
#   rc=0; guest_wait_done "$RUN" 120 || rc=$?   # returns the guest command's exit code
#
# Every wait is bounded: it returns 1 on timeout (guest_wait_done: kills the guest and
# returns 124) and returns early (1) when the guest has already ended. All functions
# return non-zero on failure instead of exiting, so use `|| ...` under set -e.
# Guest-side counterparts (functions in guest-init.sh): mark NAME, wait_host NAME,
# wait_listen PORT, pcap_start/pcap_stop, siw_reload.

INTEROP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${INTEROP_CACHE:=$INTEROP_DIR/../../build/interop-cache}"
INTEROP_GUESTS=()

interop_log() { printf '[interop %s] %s\n' "$(date +%T)" "$*" >&2; }
interop_now() { date +%s.%N; }
# interop_since T0 -> seconds since T0 (from interop_now), one decimal
interop_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

interop_build() { "$INTEROP_DIR/guest-build.sh" "$INTEROP_CACHE"; }

# wait_until SECS CMD [ARGS...]: poll CMD every 0.1 s until it succeeds (0) or SECS pass (1)
wait_until() {
  local secs="$1"; shift
  local end=$(( $(date +%s%N) + secs * 1000000000 ))
  while ! "$@"; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# host_listening PORT: a TCP socket listens on PORT on this host (any address)
host_listening() {
  local hex; hex="$(printf '%04X' "$1")"
  grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
# host_wait_listen PORT [SECS=30]
host_wait_listen() { wait_until "${2:-30}" host_listening "$1" || { interop_log "host port $1: no listener after ${2:-30}s"; return 1; }; }

# host_free_port: a TCP port (20000-29999) nothing listens on; random, so concurrent
# tests rarely collide (qemu fails at start if a --fwd port is taken: retry then)
host_free_port() {
  local p _
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 10000 ))
    host_listening "$p" || { echo "$p"; return 0; }
  done
  return 1
}

_guest_ended() { [ -f "$1/run.rc" ]; }
_guest_tail() { interop_log "guest $1: last console lines:"; tail -n "${2:-15}" "$1/console.log" >&2 2>/dev/null || true; }

# guest_start DIR [guest-run.sh options...]: boot a guest in the background (console to
# DIR/console.log, guest-run.sh output to DIR/run.out) and return at once.
guest_start() {
  local dir="$1"; shift
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  rm -f "$dir"/{rc,ready,listen.txt,setup-failed,dmesg.txt,console.log,qemu.pid,timing.txt,run.rc,runner.pid,killed}
  "$INTEROP_DIR/guest-run.sh" -q -o "$INTEROP_CACHE" -d "$dir" "$@" >"$dir/run.out" 2>&1 &
  echo $! >"$dir/runner.pid"
  INTEROP_GUESTS+=("$dir")
}

# guest_wait_file DIR NAME [SECS=60]: wait for DIR/NAME (guest: `mark NAME`)
guest_wait_file() {
  local dir="$1" name="$2" secs="${3:-60}"
  local end=$(( $(date +%s%N) + secs * 1000000000 ))
  while [ ! -e "$dir/$name" ]; do
    if _guest_ended "$dir"; then
      interop_log "guest $dir ended (rc=$(cat "$dir/run.rc")) before $name appeared"; _guest_tail "$dir"; return 1
    fi
    if [ "$(date +%s%N)" -ge "$end" ]; then interop_log "guest $dir: no $name after ${secs}s"; _guest_tail "$dir" 5; return 1; fi
    sleep 0.1
  done
}

# guest_wait_ready DIR [SECS=120]: siw is loaded, links are up, cmd.sh is about to run
guest_wait_ready() {
  local dir="$1" secs="${2:-120}"
  local end=$(( $(date +%s%N) + secs * 1000000000 ))
  while [ ! -e "$dir/ready" ]; do
    if [ -e "$dir/setup-failed" ]; then interop_log "guest $dir setup failed: $(cat "$dir/setup-failed")"; return 1; fi
    if _guest_ended "$dir"; then interop_log "guest $dir ended (rc=$(cat "$dir/run.rc")) before ready"; _guest_tail "$dir"; return 1; fi
    if [ "$(date +%s%N)" -ge "$end" ]; then interop_log "guest $dir not ready after ${secs}s"; _guest_tail "$dir" 5; return 1; fi
    sleep 0.1
  done
}

# guest_wait_listen DIR PORT [SECS=60]: a TCP listener on PORT exists in the guest
# (DIR/listen.txt, refreshed by the guest every 0.2 s; siw's kernel listen sockets count)
guest_wait_listen() {
  local dir="$1" port="$2" secs="${3:-60}"
  local end=$(( $(date +%s%N) + secs * 1000000000 ))
  while ! grep -q ":$port\$" "$dir/listen.txt" 2>/dev/null; do
    if _guest_ended "$dir"; then interop_log "guest $dir ended (rc=$(cat "$dir/run.rc")) before listening on $port"; _guest_tail "$dir"; return 1; fi
    if [ "$(date +%s%N)" -ge "$end" ]; then interop_log "guest $dir: no listener on $port after ${secs}s"; _guest_tail "$dir" 5; return 1; fi
    sleep 0.1
  done
}

# guest_signal DIR NAME [TEXT]: create DIR/NAME for the guest (guest: `wait_host NAME`)
guest_signal() { printf '%s\n' "${3:-1}" >"$1/.$2.tmp" && mv -f "$1/.$2.tmp" "$1/$2"; }

# guest_wait_done DIR [SECS=300]: wait for the guest to end; returns its command's exit
# code (124 after killing it on timeout; see guest-run.sh for 125/126)
guest_wait_done() {
  local dir="$1" secs="${2:-300}"
  if ! wait_until "$secs" _guest_ended "$dir"; then
    interop_log "guest $dir still running after ${secs}s: killing it"; _guest_tail "$dir" 5
    guest_kill "$dir"; return 124
  fi
  _guest_reap "$dir"
  return "$(cat "$dir/run.rc")"
}

_guest_reap() { # collect the runner if it is our child (no-op otherwise)
  local pid; pid="$(cat "$1/runner.pid" 2>/dev/null || true)"
  if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  return 0
}

# guest_kill DIR: stop the guest now (TERM to qemu, KILL after 5 s), wait for its runner
# (its rc becomes 137 unless the guest command had already finished)
guest_kill() {
  local dir="$1" p _
  _guest_ended "$dir" && { _guest_reap "$dir"; return 0; }
  : >"$dir/killed"
  p="$(cat "$dir/qemu.pid" 2>/dev/null || true)"
  if [ -n "$p" ] && [[ "$(cat "/proc/$p/comm" 2>/dev/null || true)" == qemu-system* ]]; then
    kill -TERM "$p" 2>/dev/null || true
    wait_until 5 _guest_ended "$dir" || kill -KILL "$p" 2>/dev/null || true
  fi
  if ! wait_until 10 _guest_ended "$dir"; then
    p="$(cat "$dir/runner.pid" 2>/dev/null || true)"
    if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
    wait_until 10 _guest_ended "$dir" || interop_log "guest $dir: runner did not end"
  fi
  _guest_reap "$dir"
}

# guest_kill_all: kill every guest started by guest_start in this shell that still runs
guest_kill_all() {
  local d
  for d in "${INTEROP_GUESTS[@]}"; do _guest_ended "$d" || guest_kill "$d"; done
  return 0
}

# guest_rc DIR: the exit code guest-run.sh returned (empty while running)
guest_rc() { cat "$1/run.rc" 2>/dev/null || true; }
# guest_timing DIR: host_wall_s=... guest_ready_uptime_s=... guest_cmd_end_uptime_s=... rc=...
guest_timing() { cat "$1/timing.txt" 2>/dev/null || true; }
