#!/bin/sh
# A connection the server refuses in MPA (the client asks for markers, the server does not take
# them): both capture files show the MPA request and the reject reply, and both sides' logs say
# what happened and what to change.
#
#   capture_reject.sh BASEPORT
set -eu
. "$(dirname "$0")/lib.sh"
need rping
need tshark
port=$(pick_port "$1")

SIW_CAPTURE="$workdir/cap-%p.pcap"
export SIW_CAPTURE
bg server rping -s -a 127.0.0.1 -p "$port" -C 1
server=$bg_pid
wait_listen "$port" "$server"
spid=$(child_of "$server")
export SIW_MPA_MARKERS=1
fg client rping -c -a 127.0.0.1 -p "$port" -C 1
unset SIW_MPA_MARKERS
[ "$rc" != 0 ] || fail "the client connected although the server refuses markers"
# The server keeps listening; the reject is written when it was sent.
kill "$server"
wait "$server" 2>/dev/null || true

grep -q "rejected by the peer" "$workdir/client.log" || fail "the client's log does not say it was rejected"
grep -q "rejected connection from 127.0.0.1.*SIW_MPA_MARKERS" "$workdir/server.log" ||
	fail "the server's log does not say why it rejected and what to set"
n=0
for f in "$workdir"/cap-*.pcap; do
	[ -s "$f" ] || continue
	n=$((n + 1))
	TSHARK -r "$f" -Y iwarp_mpa.req -T fields -e iwarp_mpa.marker_flag | grep -q . ||
		fail "$f: no MPA request"
	[ "$(TSHARK -r "$f" -Y 'iwarp_mpa.rep && iwarp_mpa.rej_flag == 1' | wc -l)" = 1 ] ||
		fail "$f: no MPA reply with the reject flag"
	echo "$f: request and reject decoded"
done
[ "$n" = 2 ] || fail "expected a capture from both processes, found $n"
echo "ok: rejected MPA exchange captured on both sides"
