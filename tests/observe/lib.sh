# Helpers of the observability tests (sourced; POSIX sh), on top of tests/apps/lib.sh (workdir,
# cleanup, pick_port, wait_listen, fail, skip, need).
#
# Environment: SIW_RUN (bin/siw-run), SIW_STAT_BIN (siw-stat), SIW_PRELOAD (ASan builds: the
# sanitizer runtime, preloaded into the programs only, not into tshark or python).
. "$(dirname "$0")/../apps/lib.sh"
: "${SIW_STAT_BIN:?SIW_STAT_BIN must point to siw-stat}"

# A private status directory: other tests' processes stay out of our view.
SIW_STAT_DIR="$workdir/stat"
export SIW_STAT_DIR
mkdir -m 700 "$SIW_STAT_DIR"

# bg NAME PROGRAM ARGS...: runs it under siw-run in the background (log NAME.log); $bg_pid is its
# timeout wrapper, which passes TERM on to the program.
bg() {
	name=$1
	shift
	if [ -n "${SIW_PRELOAD:-}" ]; then
		LD_PRELOAD=$SIW_PRELOAD timeout "$APP_TIMEOUT" "$SIW_RUN" "$@" \
			>"$workdir/$name.log" 2>&1 &
	else
		timeout "$APP_TIMEOUT" "$SIW_RUN" "$@" >"$workdir/$name.log" 2>&1 &
	fi
	bg_pid=$!
	pids="$pids $bg_pid"
}

# fg NAME PROGRAM ARGS...: the same in the foreground; its exit status in $rc.
fg() {
	name=$1
	shift
	rc=0
	if [ -n "${SIW_PRELOAD:-}" ]; then
		LD_PRELOAD=$SIW_PRELOAD timeout "$APP_TIMEOUT" "$SIW_RUN" "$@" \
			>"$workdir/$name.log" 2>&1 || rc=$?
	else
		timeout "$APP_TIMEOUT" "$SIW_RUN" "$@" >"$workdir/$name.log" 2>&1 || rc=$?
	fi
}

# The program's pid under the timeout wrapper $1 (siw-run execs it), waiting up to 10 s.
child_of() {
	i=0
	while :; do
		c=$(ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | head -n 1)
		[ -n "$c" ] && break
		i=$((i + 1))
		[ "$i" -le 200 ] || fail "no child of $1 after 10 s"
		sleep 0.05
	done
	echo "$c"
}

# TSHARK ARGS...: tshark on a capture, iWARP-ready (RPC-over-RDMA misreads perftest's Sends;
# heuristics first, so a random test port that a port-based dissector owns still decodes as MPA).
TSHARK() {
	tshark --disable-protocol rpcordma -o tcp.try_heuristic_first:TRUE "$@" 2>/dev/null
}
