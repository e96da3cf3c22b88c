#!/bin/sh
# ucmatose (rdma-core's cmatose): several connections at once through one event channel,
# rdma_accept(id, NULL), SEND/RECV on each, disconnect events.
#
#   ucmatose.sh CONNECTIONS BASEPORT [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/lib.sh"
need ucmatose

conns=$1
port=$(pick_port "$2")
shift 2

start_server server ucmatose -p "$port" -c "$conns" -C 20 -S 1000 "$@"
wait_listen "$port" "$server_pid"
run client ucmatose -s 127.0.0.1 -p "$port" -c "$conns" -C 20 -S 1000 "$@" ||
	fail "ucmatose client exited with $rc"
wait_server || fail "ucmatose server exited with $rc"
for side in client server; do
	log "$side" | grep -q '^test complete' || fail "$side did not complete the test"
	log "$side" | grep -q '^return status 0' || fail "$side returned an error"
done
echo "ok: ucmatose, $conns connections $*"
