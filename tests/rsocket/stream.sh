#!/bin/sh
# rstream / riostream (rdma-core, unmodified) over softiwarp's rsockets, with data verification.
#
#   stream.sh PROGRAM BASEPORT RESULT_LINES [PROGRAM-OPTION...]
#
# Server and client get the same options (plus -p PORT, and -s for the client); add -T v for
# verification. RS_BIND (server -b) and RS_DST (client -s, default 127.0.0.1) select the
# addresses, e.g. RS_BIND=:: RS_DST=::1 for IPv6.
#
# Passes when both exit 0, neither reports a verification failure or an error, and each printed
# RESULT_LINES result lines ("custom ..." for -S/-C/-I runs, "<size>_lat"/"<size>_bw" for the
# default sweep, which opens a second connection for its bandwidth half).
set -eu
. "$(dirname "$0")/lib.sh"
need "$1"

prog=$1
port=$(pick_port "$2")
want=$3
shift 3
dst=${RS_DST:-127.0.0.1}

if [ -n "${RS_BIND:-}" ]; then
	start_server server "$prog" -b "$RS_BIND" -p "$port" "$@"
else
	start_server server "$prog" -p "$port" "$@"
fi
wait_listen "$port" "$server_pid"
start_client client "$prog" -s "$dst" -p "$port" "$@"
wait_both
[ "$client_rc" = 0 ] || fail "$prog client exited with $client_rc"
[ "$server_rc" = 0 ] || fail "$prog server exited with $server_rc"

for side in server client; do
	if log "$side" | grep -qiE 'verification failed|error|failed|refused|reset'; then
		fail "$prog $side reported a failure"
	fi
	n=$(log "$side" | grep -cE '^(custom|[0-9.]+[kmg]?_(lat|bw)) ' || true)
	[ "$n" = "$want" ] || fail "$prog $side printed $n result lines, expected $want"
done
echo "ok: $prog $* ($want result lines each side)"
log client
