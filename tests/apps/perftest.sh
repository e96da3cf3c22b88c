#!/bin/sh
# perftest in rdma_cm mode (-R): server and client of one benchmark on 127.0.0.1.
#
#   perftest.sh PROGRAM BASEPORT [EXTRA ARGS...]     e.g. perftest.sh ib_write_bw 20000 -n 500
#
# Passes when both exit 0, the client printed a result row (bytes, iterations, numbers) and
# the device was reported as iWARP ("Transport type : IW").
set -eu
. "$(dirname "$0")/lib.sh"
prog=$1
need "$prog"
base=$2
shift 2

# perftest -R has a race of its own (also with kernel siw, tests/interop/README.md finding 2):
# its server closes the rdma_cm listener after the control exchange and listens again a moment
# later; a client that connects in between is refused, and perftest then crashes on its stale
# id. And perftest calibrates the CPU clock after the transfer; on a busy 2-core machine the
# calibration can fail ("Correlation coefficient r^2 ... < 0.9 / Can't produce a report") after
# every message has gone through. Only these two cases are retried (at most 3 attempts, each
# with a fresh server and port); any other failure fails the test at once.
attempt=1
while :; do
	# A retry takes the next port up (pick_port skips ports in use).
	port=$(pick_port "$((base + attempt - 1))")
	start_server server "$prog" -R -p "$port" "$@"
	wait_listen "$port" "$server_pid"
	crc=0
	run client "$prog" -R -p "$port" "$@" 127.0.0.1 || crc=$rc
	if [ "$crc" != 0 ] && [ "$attempt" -lt 3 ] &&
		grep -q "connection refused" "$workdir/client.log"; then
		echo "perftest's re-listen race (client refused), attempt $attempt; retrying"
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		attempt=$((attempt + 1))
		continue
	fi
	src=0
	wait_server || src=$rc
	if { [ "$crc" != 0 ] || [ "$src" != 0 ]; } && [ "$attempt" -lt 3 ] &&
		grep -q "Can't produce a report" "$workdir/client.log" "$workdir/server.log"; then
		echo "perftest's clock calibration failed (busy machine), attempt $attempt; retrying"
		attempt=$((attempt + 1))
		continue
	fi
	[ "$crc" = 0 ] || fail "$prog client exited with $crc"
	[ "$src" = 0 ] || fail "$prog server exited with $src"
	break
done

log client | grep -q 'Transport type : IW' || fail "the device is not reported as iWARP"
log client | grep -q '#bytes' || fail "no result header"
log client | grep -Eq '^[[:space:]]*[0-9]+[[:space:]]+[0-9]+[[:space:]]+[0-9]+\.[0-9]+' ||
	fail "no result row"
echo "ok: $prog -R $*"
log client | grep -E -A1 '#bytes'
