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

# host_port_used PORT: any TCP socket (listening, connected, TIME_WAIT...) uses local PORT
host_port_used() {
  local hex; hex="$(printf '%04X' "$1")"
  grep -qE "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# host_free_port: print a TCP port no socket uses, random in INTEROP_PORT_MIN..INTEROP_PORT_MAX
# (default 12000-17999: below the kernel's ephemeral range and apart from the port ranges of
# the other test families), so concurrent tests rarely collide (qemu fails at start if a --fwd
# port is taken: retry then). take_port VAR does the same into VAR and never hands out a port
# twice in this shell (host_free_port runs in $(...) and cannot remember).
INTEROP_PORTS_GIVEN=" "
host_free_port() {
  local lo="${INTEROP_PORT_MIN:-12000}" hi="${INTEROP_PORT_MAX:-17999}" p _
  for _ in $(seq 1 500); do
    p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1) ))
    [[ "$INTEROP_PORTS_GIVEN" == *" $p "* ]] && continue
    host_port_used "$p" && continue
    echo "$p"; return 0
  done
  return 1
}
take_port() {
  local _p _i
  for _i in 1 2 3 4 5 6 7 8 9 10; do
    _p="$(host_free_port)" || return 1
    [[ "$INTEROP_PORTS_GIVEN" == *" $_p "* ]] && continue
    INTEROP_PORTS_GIVEN="$INTEROP_PORTS_GIVEN$_p "
    printf -v "$1" '%s' "$_p"; return 0
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

# --- guest agent: many steps in one boot (guest-agent.sh) ----------------------------------
#   ga_start DIR [guest-run.sh options]      boot with the agent as the guest command
#   ga_wait_up DIR [SECS=120]                siw is up and the agent polls for jobs
#   ga_submit DIR 'CMD'                      queue CMD (ash, cwd /share); job number in GA_JOB
#   ga_wait DIR N [SECS=120]                 wait for job N; returns its exit code (124: still
#                                            running after SECS; 125: the guest ended first)
#   ga_run DIR SECS 'CMD'                    ga_submit + ga_wait; output in $(ga_out DIR N)
#   ga_quit DIR [SECS=120]                   no more jobs: the agent drains and the guest powers
#                                            off; returns guest_wait_done's code
GA_JOB=""
ga_start() {
  local dir="$1"; shift
  mkdir -p "$dir"
  rm -rf "$dir/q" "$dir/agent-up"; mkdir -p "$dir/q"; echo 0 >"$dir/q/.last"
  guest_start "$dir" "$@" -c "$INTEROP_DIR/guest-agent.sh"
}
ga_wait_up() { guest_wait_ready "$1" "${2:-120}" && guest_wait_file "$1" agent-up 30; }
ga_submit() {
  local dir="$1" n; n=$(( $(cat "$dir/q/.last") + 1 ))
  printf '%s\n' "$2" >"$dir/q/.$n.sh.tmp" && mv -f "$dir/q/.$n.sh.tmp" "$dir/q/$n.sh"
  echo "$n" >"$dir/q/.last"
  GA_JOB=$n
}
ga_wait() {
  local dir="$1" n="$2" secs="${3:-120}"
  local end=$(( $(date +%s%N) + secs * 1000000000 ))
  while [ ! -s "$dir/q/$n.rc" ]; do
    if _guest_ended "$dir"; then interop_log "guest $dir ended (rc=$(cat "$dir/run.rc")) before job $n did"; return 125; fi
    if [ "$(date +%s%N)" -ge "$end" ]; then interop_log "guest $dir: job $n still running after ${secs}s"; return 124; fi
    sleep 0.05
  done
  return "$(cat "$dir/q/$n.rc")"
}
ga_run() { ga_submit "$1" "$3"; ga_wait "$1" "$GA_JOB" "$2"; }
ga_out() { echo "$1/q/$2.out"; }
ga_quit() {
  local dir="$1" secs="${2:-120}"
  _guest_ended "$dir" || cat "$dir/q/.last" >"$dir/q/quit"
  guest_wait_done "$dir" "$secs"
}
# ga_stuck DIR PORT: the guest's stuck-socket watch (guest-agent.sh) reported a connection on
# local or remote PORT whose receive queue stopped draining (prints the matching lines)
ga_stuck() {
  local hex; hex="$(printf '%04X' "$2")"
  grep -E " [0-9A-F]{8}:$hex( |$)" "$1/stuck.txt" 2>/dev/null
}

# guest_kill_hard DIR: pull the plug: SIGKILL to qemu (no guest shutdown, no FIN from the
# guest's kernel; the host kernel closes qemu's sockets), then wait for the runner (rc 137)
guest_kill_hard() {
  local dir="$1" p
  _guest_ended "$dir" && return 0
  : >"$dir/killed"
  p="$(cat "$dir/qemu.pid" 2>/dev/null || true)"
  if [ -n "$p" ] && [[ "$(cat "/proc/$p/comm" 2>/dev/null || true)" == qemu-system* ]]; then
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait_until 15 _guest_ended "$dir" || guest_kill "$dir"
  _guest_reap "$dir"
}
