# Helpers for the rsocket program tests (sourced by the scripts next to this file; POSIX sh).
#
# A server and a client of an unmodified rdma-core program (rstream, riostream) on loopback
# under siw-run: the server first, the client once the server's port listens (polled in
# /proc/net/tcp*, no fixed sleeps), every process bounded by `timeout`. Exit status 77 means
# "skipped" (the program is not installed).
#
# Environment: SIW_RUN (required) = the build tree's bin/siw-run; APP_TIMEOUT = seconds per
# process (default 300); APP_LOG_KEEP=1 keeps the logs of passing runs.

: "${SIW_RUN:?SIW_RUN must point to siw-run}"
: "${APP_TIMEOUT:=300}"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/siw-rsocket.XXXXXX")
pids=""

cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ "${APP_LOG_KEEP:-0}" = 1 ]; then
		echo "logs kept in $workdir"
	else
		rm -rf "$workdir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skip() {
	echo "SKIP: $*"
	exit 77
}

show_logs() {
	for f in "$workdir"/*.log; do
		[ -e "$f" ] || continue
		echo "---- $(basename "$f") (last 40 lines)"
		tail -n 40 "$f"
	done
}

fail() {
	echo "FAIL: $*" >&2
	show_logs >&2
	exit 1
}

need() {
	command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed"
}

port_hex() {
	printf '%04X' "$1"
}

# Is something listening on TCP port $1 (IPv4 or IPv6)?
listening() {
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$(port_hex "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
			END { exit !f }'
}

# Does any socket (any state) use TCP port $1 locally?
port_used() {
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$(port_hex "$1")" 'substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}

# A free port near $1 (each test has its own base, so parallel tests do not collide).
pick_port() {
	p=$(($1 + $$ % 100))
	while port_used "$p"; do
		p=$((p + 1))
	done
	echo "$p"
}

# spawn NAME PROGRAM ARGS...: under siw-run in the background, log NAME.log (stdout
# line-buffered, so a log cut short by a kill still shows how far the program got); sets pid.
spawn() {
	name=$1
	shift
	timeout -k 10 "$APP_TIMEOUT" stdbuf -oL "$SIW_RUN" "$@" >"$workdir/$name.log" 2>&1 &
	pid=$!
	pids="$pids $pid"
}

start_server() {
	spawn "$@"
	server_pid=$pid
}

start_client() {
	spawn "$@"
	client_pid=$pid
}

# Is process $1 running (an exited child stays a zombie until waited for: kill -0 says yes)?
alive() {
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# wait_listen PORT PID: until PORT listens; fails if PID exits first or after 30 s.
wait_listen() {
	i=0
	while ! listening "$1"; do
		alive "$2" || fail "the server exited before it listened on port $1"
		i=$((i + 1))
		[ "$i" -le 600 ] || fail "nothing listens on port $1 after 30 s"
		sleep 0.05
	done
}

# wait_both: until server and client have exited; sets server_rc and client_rc. riostream
# spins on memory for its peer's data with no timeout, so a side whose peer died would spin
# until APP_TIMEOUT and show nothing: once one side has exited, the other gets GRACE seconds
# (default 60), then it is killed (rc 124, as timeout's) and its log says so.
wait_both() {
	server_rc=
	client_rc=
	left=$((${GRACE:-60} * 10)) # tenths of a second, counted once a side has exited
	while [ -z "$server_rc" ] || [ -z "$client_rc" ]; do
		for side in server client; do
			eval "p=\$${side}_pid r=\$${side}_rc"
			[ -z "$r" ] || continue
			if ! alive "$p"; then
				r=0
				wait "$p" || r=$?
			elif [ "$left" -le 0 ]; then
				kill "$p" 2>/dev/null || true
				wait "$p" 2>/dev/null || true
				echo "(killed: still running ${GRACE:-60} s after its peer exited)" \
					>>"$workdir/$side.log"
				r=124
			else
				continue
			fi
			eval "${side}_rc=$r"
		done
		[ -z "$server_rc$client_rc" ] || left=$((left - 1))
		sleep 0.1
	done
}

log() {
	cat "$workdir/$1.log"
}
