#!/bin/sh
# rping (rdma-core): SEND, RDMA READ and RDMA WRITE per iteration, validated by both sides.
#
#   rping.sh SIZE COUNT BASEPORT [EXTRA-RPING-OPTION]
#
# EXTRA-RPING-OPTION is given to both sides, e.g. -q (the application creates its QP itself and
# names it by number in conn_param.qp_num).
#
# Passes when server and client exit 0 and the client printed COUNT data lines in order
# ("ping data: rdma-ping-<i>: <pattern>", the pattern starting at the character rping uses for
# iteration i).
set -eu
. "$(dirname "$0")/lib.sh"
need rping

size=$1
count=$2
port=$(pick_port "$3")
extra=${4:-}

# shellcheck disable=SC2086 # $extra is one option or nothing
start_server server rping -s -a 127.0.0.1 -p "$port" -S "$size" -C "$count" -V $extra
wait_listen "$port" "$server_pid"
# shellcheck disable=SC2086
run client rping -c -a 127.0.0.1 -p "$port" -S "$size" -C "$count" -v -V $extra ||
	fail "rping client exited with $rc"
wait_server || fail "rping server exited with $rc"

lines=$(log client | grep -c '^ping data: rdma-ping-' || true)
[ "$lines" = "$count" ] || fail "client printed $lines data lines, expected $count"
# rping's pattern: "rdma-ping-<i>: " then characters from 'A' + (i mod 58) upwards.
log client | grep '^ping data: rdma-ping-' | awk -v want="$count" '
	{
		n = NR - 1
		if ($3 != "rdma-ping-" n ":") { print "line " NR ": " $3 " out of order"; bad = 1; exit }
		c = sprintf("%c", 65 + n % 58)
		if (substr($4, 1, 1) != c) { print "line " NR ": pattern starts with " substr($4, 1, 1) ", not " c; bad = 1; exit }
	}
	END { exit bad }' || fail "wrong data lines"
echo "ok: rping size $size, $count iterations"
