#!/bin/sh
# rdma_server / rdma_client (rdma-core): the synchronous endpoint API (rdma_create_ep,
# rdma_get_request, CQs and completion channels made by librdmacm, rdma_get_send/recv_comp,
# inline sends), one 16-byte message each way.
#
#   rdma_server.sh BASEPORT
set -eu
. "$(dirname "$0")/lib.sh"
need rdma_server
need rdma_client

port=$(pick_port "$1")
start_server server rdma_server -p "$port"
wait_listen "$port" "$server_pid"
run client rdma_client -s 127.0.0.1 -p "$port" || fail "rdma_client exited with $rc"
wait_server || fail "rdma_server exited with $rc"
log client | grep -q '^rdma_client: end 0' || fail "rdma_client did not end with 0"
log server | grep -q '^rdma_server: end 0' || fail "rdma_server did not end with 0"
echo "ok: rdma_server/rdma_client"
