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
# id. Only that case is retried (at most 3 attempts, each with a fresh server and port).
attempt=1
while :; do
	port=$(pick_port "$base")
	start_server server "$prog" -R -p "$port" "$@"
	wait_listen "$port" "$server_pid"
	if run client "$prog" -R -p "$port" "$@" 127.0.0.1; then
		break
	fi
	crc=$rc
	if [ "$attempt" -lt 3 ] && grep -q "connection refused" "$workdir/client.log"; then
		echo "perftest's re-listen race (client refused), attempt $attempt; retrying"
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		attempt=$((attempt + 1))
		base=$((port + 1))
		continue
	fi
	fail "$prog client exited with $crc"
done
wait_server || fail "$prog server exited with $rc"

log client | grep -q 'Transport type : IW' || fail "the device is not reported as iWARP"
log client | grep -q '#bytes' || fail "no result header"
log client | grep -Eq '^[[:space:]]*[0-9]+[[:space:]]+[0-9]+[[:space:]]+[0-9]+\.[0-9]+' ||
	fail "no result row"
echo "ok: $prog -R $*"
log client | grep -E -A1 '#bytes'
