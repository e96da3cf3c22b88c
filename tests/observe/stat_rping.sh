#!/bin/sh
# siw-stat against a running rping pair:
#  - --json lists both processes, each with a connected QP, MPA revision 2, non-zero byte,
#    message and FPDU counters each way, the device siw_lo and totals;
#  - the table names both, -p PID shows one, -w refreshes with rates;
#  - the socket of a process killed with SIGKILL is removed by siw-stat, the one of a process
#    that exits by itself is removed at its exit;
#  - a process started with SIW_STAT=0 publishes nothing.
#
#   stat_rping.sh BASEPORT
set -eu
. "$(dirname "$0")/lib.sh"
need rping
need python3

port=$(pick_port "$1")
bg server rping -s -a 127.0.0.1 -p "$port" -C 100000000 -S 2000
server=$bg_pid
wait_listen "$port" "$server"
spid=$(child_of "$server")
bg client rping -c -a 127.0.0.1 -p "$port" -C 100000000 -S 2000
client=$bg_pid
cpid=$(child_of "$client")

# --json until both sides show traffic (bounded: 30 s).
i=0
while :; do
	"$SIW_STAT_BIN" --json >"$workdir/stat.json" || fail "siw-stat --json exited with $?"
	if python3 - "$workdir/stat.json" "$spid" "$cpid" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["siw_stat"] == 1
procs = {p["pid"]: p for p in doc["processes"]}
for pid, role in ((int(sys.argv[2]), "responder"), (int(sys.argv[3]), "initiator")):
    p = procs[pid]
    assert p["comm"] == "rping" and "rping" in p["cmdline"], p["cmdline"]
    assert any(d["name"] == "siw_lo" and d["contexts"] >= 1 for d in p["devices"])
    qps = [q for q in p["qps"] if q["connected"]]
    assert len(qps) == 1, "%d connected QPs" % len(qps)
    q = qps[0]
    assert q["state"] == "RTS" and q["role"] == role and q["peer"].startswith("127.0.0.1:")
    m = q["mpa"]
    assert m["rev"] == 2 and m["ird"] >= 1 and m["ord"] >= 1 and not m["p2p"], m
    for d in ("tx", "rx"):
        for k in ("bytes", "msgs", "fpdus"):
            assert q[d][k] > 1000 or (k != "bytes" and q[d][k] > 10), (d, k, q[d][k])
    assert q["errors"] == 0 and q["terms_sent"] == 0 and q["terms_recv"] == 0
    assert q["retries"] >= 0 and q["last_term"] is None
    t = p["totals"]
    assert t["qps"] >= 1 and t["connected"] == 1 and t["tx_bytes"] >= q["tx"]["bytes"]
PY
	then
		break
	fi
	i=$((i + 1))
	[ "$i" -le 60 ] || fail "siw-stat --json never showed both rping processes with traffic: $(cat "$workdir/stat.json")"
	sleep 0.5
done
echo "ok: --json lists server $spid and client $cpid, connected, MPA rev 2, counters moving"

"$SIW_STAT_BIN" >"$workdir/table.txt" || fail "siw-stat exited with $?"
grep -q "^PID $spid rping" "$workdir/table.txt" || fail "table lacks the server: $(cat "$workdir/table.txt")"
grep -q "^PID $cpid rping" "$workdir/table.txt" || fail "table lacks the client"
grep -q " RTS .* v2 " "$workdir/table.txt" || fail "table lacks an RTS QP with MPA v2"
grep -q "^  total: 1 QP (1 connected)" "$workdir/table.txt" || fail "table lacks the totals"
cat "$workdir/table.txt"

"$SIW_STAT_BIN" --json -p "$spid" >"$workdir/one.json" || fail "siw-stat -p exited with $?"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["processes"]; assert [x["pid"] for x in p]==[int(sys.argv[2])]' \
	"$workdir/one.json" "$spid" || fail "-p $spid: $(cat "$workdir/one.json")"
rc=0
"$SIW_STAT_BIN" -p 2147483646 >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "siw-stat -p of a pid without socket exited with $rc, not 1"
"$SIW_STAT_BIN" -w -n 2 -i 0.3 -p "$cpid" >"$workdir/watch.txt" || fail "siw-stat -w exited with $?"
[ "$(grep -c '^siw-stat every' "$workdir/watch.txt")" = 2 ] || fail "-w -n 2: $(cat "$workdir/watch.txt")"
grep -q "TX-B/s" "$workdir/watch.txt" || fail "-w shows no rates"
echo "ok: table, -p, -w"

# SIGKILL: no cleanup in the process; siw-stat removes the leftover.
[ -S "$SIW_STAT_DIR/$cpid.sock" ] || fail "no socket $SIW_STAT_DIR/$cpid.sock"
kill -9 "$cpid"
i=0
while [ -S "$SIW_STAT_DIR/$cpid.sock" ]; do
	"$SIW_STAT_BIN" >/dev/null
	i=$((i + 1))
	[ "$i" -le 100 ] || fail "siw-stat did not remove the socket of the killed process $cpid"
	sleep 0.1
done
# The server sees its peer vanish and exits (status irrelevant): its socket goes at exit.
i=0
while kill -0 "$spid" 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "the rping server did not exit within 20 s after its peer died"
	sleep 0.1
done
wait "$server" || true
[ ! -e "$SIW_STAT_DIR/$spid.sock" ] || fail "the server's socket outlived it"
echo "ok: stale socket of a killed process removed; socket removed at exit"

port2=$(pick_port $(($1 + 100)))
export SIW_STAT=0
bg quiet rping -s -a 127.0.0.1 -p "$port2" -C 1
unset SIW_STAT
wait_listen "$port2" "$bg_pid"
qpid=$(child_of "$bg_pid")
[ ! -e "$SIW_STAT_DIR/$qpid.sock" ] || fail "SIW_STAT=0 still made a socket"
rc=0
"$SIW_STAT_BIN" -p "$qpid" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "siw-stat -p of a SIW_STAT=0 process exited with $rc"
echo "ok: SIW_STAT=0 publishes nothing"
