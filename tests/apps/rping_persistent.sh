#!/bin/sh
# rping -P: one persistent server (a thread per connection) serving CLIENTS clients one after
# the other. Passes when every client exits 0 with all its data lines and the server logged no
# error; the server is then stopped (it never exits by itself).
#
# The clients do not overlap: rping -P itself races when two connection requests arrive before
# its main thread has taken the first (both threads get the same id), with any librdmacm.
#
#   rping_persistent.sh CLIENTS BASEPORT
set -eu
. "$(dirname "$0")/lib.sh"
need rping

clients=$1
port=$(pick_port "$2")
count=20

start_server server rping -s -P -a 127.0.0.1 -p "$port" -S 1024 -V
wait_listen "$port" "$server_pid"
i=0
while [ "$i" -lt "$clients" ]; do
	run "client$i" rping -c -a 127.0.0.1 -p "$port" -S 1024 -C "$count" -v -V ||
		fail "client $i exited with $rc"
	n=$(log "client$i" | grep -c '^ping data: rdma-ping-' || true)
	[ "$n" = "$count" ] || fail "client $i printed $n data lines, expected $count"
	i=$((i + 1))
done
kill -0 "$server_pid" 2>/dev/null || fail "the persistent server died"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
if grep -Eiq 'error|fail' "$workdir/server.log"; then
	fail "the server logged errors"
fi
echo "ok: rping -P served $clients clients"
