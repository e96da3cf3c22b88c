#!/bin/sh
# Runs one example program of examples/ as server and client(s) on 127.0.0.1 and checks that
# every process succeeded on a softiwarp device (siw_lo).
#
#   run_examples.sh write_pingpong|send_recv_server BINDIR BASEPORT [WORKDIR]
#
# The programs are run as they are: no siw-run, no LD_LIBRARY_PATH (it is unset), so they must
# find softiwarp through their run path. Every wait is bounded: each process runs under
# timeout(1), and the server's start is awaited for at most 20 s. If the server cannot listen
# (port taken by someone else), the next port is tried, up to 5 times.
# Exit status: 0 success, 1 failure.
set -eu

prog=${1:?usage: run_examples.sh PROGRAM BINDIR BASEPORT [WORKDIR]}
bindir=${2:?BINDIR}
port=${3:?BASEPORT}
work=${4:-$PWD/$prog.work}
bin=$bindir/$prog
unset LD_LIBRARY_PATH

fail() {
	echo "FAIL ($prog): $*" >&2
	for f in "$work"/*.log; do
		[ -f "$f" ] || continue
		echo "---- $f" >&2
		tail -n 30 "$f" >&2
	done
	exit 1
}

[ -x "$bin" ] || fail "$bin is not an executable"
rm -rf "$work"
mkdir -p "$work"

# start_server ARGS...: starts "$bin -p $port ARGS" in the background and waits until it
# listens; moves to the next port when the current one is taken.
start_server() {
	for _ in 1 2 3 4 5; do
		timeout 120 "$bin" -p "$port" "$@" >"$work/server.log" 2>&1 &
		server_pid=$!
		i=0
		while [ $i -lt 200 ]; do
			grep -q 'listening on port' "$work/server.log" && return 0
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
			i=$((i + 1))
		done
		if grep -qi 'address in use\|address already in use' "$work/server.log"; then
			wait "$server_pid" || true
			echo "port $port is taken, trying $((port + 1))"
			port=$((port + 1))
			continue
		fi
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" || true
		fail "the server did not start listening within 20 s"
	done
	fail "no free port"
}

# wait_server: the server's exit status (it runs under timeout 120, so this is bounded).
wait_server() {
	rc=0
	wait "$server_pid" || rc=$?
	[ "$rc" = 0 ] || fail "the server exited with status $rc"
}

# client NAME ARGS...: one client run, bounded, which must succeed on siw_lo.
client() {
	name=$1
	shift
	rc=0
	timeout 60 "$bin" -p "$port" "$@" 127.0.0.1 >"$work/$name.log" 2>&1 || rc=$?
	[ "$rc" = 0 ] || fail "$name exited with status $rc"
	grep -q 'device siw_lo' "$work/$name.log" || fail "$name did not run on siw_lo"
}

case "$prog" in
write_pingpong)
	start_server -b 127.0.0.1
	client client -n 2000
	grep -q '2000 rounds of 8 bytes, round trip average' "$work/client.log" ||
		fail "no latency line from the client"
	wait_server
	grep -q 'device siw_lo' "$work/server.log" || fail "the server did not run on siw_lo"
	grep -q '2000 rounds served' "$work/server.log" || fail "the server did not serve 2000 rounds"
	sed -n 's/^write_pingpong: //p' "$work/client.log"
	;;
send_recv_server)
	# Five clients: three one after another, then two at once (the second one's connect
	# request waits on the listener's channel until the first is done).
	start_server -b 127.0.0.1 -k 5
	client c1 -m 1
	client c2 -m 100
	client c3 -m 10
	client c4 -m 50 &
	c4=$!
	client c5 -m 50 &
	c5=$!
	wait "$c4" || fail "client c4"
	wait "$c5" || fail "client c5"
	wait_server
	for c in c1:1 c2:100 c3:10 c4:50 c5:50; do
		grep -q "^send_recv_server: ${c#*:} messages echoed" "$work/${c%%:*}.log" ||
			fail "client ${c%%:*} did not get ${c#*:} echoes"
	done
	[ "$(grep -c 'client done after' "$work/server.log")" = 5 ] ||
		fail "the server did not serve 5 clients"
	;;
*)
	fail "unknown example"
	;;
esac
echo "ok: $prog ($bin)"
