#!/bin/sh
# SIW_CAPTURE on a real server/client pair, checked with tshark: in each process's file
#  - one MPA request and one MPA reply per connection, decoded as such;
#  - every FPDU decodes (DDP/RDMAP opcodes), as many each way as the engine counted (the
#    "QP n destroyed: sent ..., received ..." lines at SIW_LOG_LEVEL=info);
#  - the opcodes the program uses are there;
#  - with CRC on (SIW_MPA_CRC=require in the environment) every FPDU shows "Good CRC32";
#  - no malformed packet, no bad checksum, no TCP sequence complaint in `-z expert`.
#
#   capture.sh BASEPORT rping                    rping -C 30 -S 30000 -V
#   capture.sh BASEPORT PERFTEST ARGS...         e.g. ib_write_bw -q 2 -n 200 -s 65536
set -eu
. "$(dirname "$0")/lib.sh"
need tshark
port=$(pick_port "$1")
prog=$2
shift 2
need "$prog"

SIW_CAPTURE="$workdir/cap-%p.pcap"
SIW_LOG_LEVEL=info
export SIW_CAPTURE SIW_LOG_LEVEL
if [ "$prog" = rping ]; then
	bg server rping -s -a 127.0.0.1 -p "$port" -C 30 -S 30000 -V
	wait_listen "$port" "$bg_pid"
	fg client rping -c -a 127.0.0.1 -p "$port" -C 30 -S 30000 -V
	want_ops="0x00 0x01 0x02 0x03" # Write, Read Request, Read Response, Send
else
	bg server "$prog" -R -p "$port" "$@"
	wait_listen "$port" "$bg_pid"
	fg client "$prog" -R -p "$port" "$@" 127.0.0.1
	want_ops="0x00 0x03"
fi
[ "$rc" = 0 ] || fail "client exited with $rc"
wait "$bg_pid" || fail "server exited with $?"

crc=0
case "${SIW_MPA_CRC:-}" in require | request) crc=1 ;; esac
nfiles=0
for log in server client; do
	f=$(sed -n 's/.*SIW_CAPTURE: writing the iWARP traffic of process [0-9]* to //p' \
		"$workdir/$log.log" | head -n 1)
	[ -n "$f" ] && [ -s "$f" ] || fail "$log: no capture file named in its log"
	nfiles=$((nfiles + 1))
	# What the engine counted, summed over the process's QPs.
	eng=$(awk '/ destroyed: sent / {
			for (i = 1; i <= NF; i++) {
				if ($i == "FPDUs;" && !r) { s += $(i - 1); r = 1 }
				else if ($i == "FPDUs;" && r) { v += $(i - 1) }
			}
			r = 0; n++
		} END { print n + 0, s + 0, v + 0 }' "$workdir/$log.log")
	set -- $eng
	nconn=$1 esent=$2 erecv=$3
	[ "$nconn" -ge 1 ] || fail "$log: no QP summary in its log (SIW_LOG_LEVEL=info)"
	# One pass over the file: per segment its source port, sequence number, length, RDMAP
	# opcodes and MPA keys. The server's FPDUs come from $port, the client's go to it.
	TSHARK -r "$f" -T fields -e tcp.srcport -e tcp.dstport -e tcp.seq -e tcp.len \
		-e iwarp_rdma.opcode -e iwarp_mpa.key.req -e iwarp_mpa.key.rep >"$workdir/fields.txt"
	# Wireshark 4.0 counts one marker too many when a marker position coincides with the end
	# of an FPDU (number_of_markers(): (size - offset) / 512 + 1): such an FPDU stays
	# undecoded. With markers on, an undecoded segment must be one of those ("boundary").
	set -- $(awk -F '\t' -v p="$port" -v who="$log" -v markers="${SIW_MPA_MARKERS:-0}" '
		function mine(port) { return (port == p) == (who == "server") }
		$6 != "" || $7 != "" { req += $6 != ""; rep += $7 != ""; start[$1 ":" $2] = $3 + $4; next }
		$4 > 0 && $5 != "" {
			n = split($5, a, ",")
			if (mine($1)) s += n; else r += n
			for (i = 1; i <= n; i++) op[a[i]] = 1
		}
		$4 > 0 && $5 == "" {
			if (markers != 1 || ($3 + $4 - start[$1 ":" $2]) % 512) { other++; next }
			if (mine($1)) bs++; else br++
		}
		END {
			ops = ""
			for (o in op) ops = ops "," o
			print req + 0, rep + 0, s + 0, r + 0, bs + 0, br + 0, other + 0, ops ","
		}' "$workdir/fields.txt")
	nreq=$1 nrep=$2 tsent=$3 trecv=$4 boundary=$(($5 + $6)) other=$7 ops=$8
	echo "$log ($f): $nconn connection(s); MPA requests $nreq, replies $nrep; FPDUs decoded sent $tsent (engine $esent), received $trecv (engine $erecv); undecoded: $boundary ending on a marker position, $other other"
	[ "$nreq" = "$nconn" ] && [ "$nrep" = "$nconn" ] ||
		fail "$log: $nreq MPA requests and $nrep replies decoded for $nconn connections"
	[ "$other" = 0 ] || fail "$log: $other segments with data that tshark did not decode"
	[ $((tsent + $5)) = "$esent" ] && [ $((trecv + $6)) = "$erecv" ] ||
		fail "$log: tshark decoded $tsent/$trecv FPDUs sent/received (+$5/$6 on marker boundaries), the engine counted $esent/$erecv"
	for op in $want_ops; do
		case "$ops" in *",$op,"*) ;; *) fail "$log: no RDMAP opcode $op in the capture ($ops)" ;; esac
	done
	if [ "$crc" = 1 ]; then
		TSHARK -r "$f" -V >"$workdir/tree.txt"
		good=$(grep -c 'Good CRC32' "$workdir/tree.txt" || true)
		bad=$(grep -ci 'Bad CRC32' "$workdir/tree.txt" || true)
		[ "$good" = $((tsent + trecv)) ] && [ "$bad" = 0 ] ||
			fail "$log: $good good and $bad bad CRCs for $((tsent + trecv)) FPDUs"
		echo "$log: all $good CRCs good"
	fi
	TSHARK -r "$f" -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -q -z expert \
		>"$workdir/expert.txt"
	if grep -Ei 'malformed|bad checksum|bad crc|previous segment|unseen segment|out-of-order|retransmission|window full|zero ?window' \
		"$workdir/expert.txt"; then
		cat "$workdir/expert.txt"
		fail "$log: tshark's expert info complains"
	fi
done
[ "$nfiles" = 2 ] || fail "expected 2 capture files"
echo "ok: $prog captured and decoded"
