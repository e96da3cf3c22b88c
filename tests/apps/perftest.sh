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
port=$(pick_port "$2")
shift 2

start_server server "$prog" -R -p "$port" "$@"
wait_listen "$port" "$server_pid"
run client "$prog" -R -p "$port" "$@" 127.0.0.1 || fail "$prog client exited with $rc"
wait_server || fail "$prog server exited with $rc"

log client | grep -q 'Transport type : IW' || fail "the device is not reported as iWARP"
log client | grep -q '#bytes' || fail "no result header"
log client | grep -Eq '^[[:space:]]*[0-9]+[[:space:]]+[0-9]+[[:space:]]+[0-9]+\.[0-9]+' ||
	fail "no result row"
echo "ok: $prog -R $*"
log client | grep -E -A1 '#bytes'
