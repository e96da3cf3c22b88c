#!/usr/bin/env bash
# The main job: builds softiwarp, then runs unmodified rdma-core programs over it on this
# machine's loopback (no kernel module, no root) and says what happened.
#
#   scripts/demo.sh            build + demo
#   scripts/demo.sh --no-build demo with an existing build/
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
[ "${1:-}" = --no-build ] && build=0
jobs=$(nproc)
port=$((20000 + RANDOM % 20000))
logs=$(mktemp -d)
trap 'rm -rf "$logs"; kill $(jobs -p) 2>/dev/null || true' EXIT

say() { printf '\n==== %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "demo: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
# A fresh machine: install what is missing (apt-get as root, or prints the command).
scripts/deps.sh --demo
need cmake cmake
need rping rdmacm-utils
need ib_write_bw perftest

if [ "$build" = 1 ]; then
	say "building softiwarp (build/)"
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j "$jobs"
fi
run=build/bin/siw-run
[ -x "$run" ] || { echo "demo: $run not built" >&2; exit 1; }

# Waits (bounded) until something listens on the TCP port.
wait_listen() {
	local hex i
	hex=$(printf '%04X' "$1")
	for i in $(seq 1 100); do
		grep -q ":$hex 00000000:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
		sleep 0.05
	done
	echo "demo: nothing listens on port $1" >&2
	return 1
}

say "the software iWARP devices softiwarp sees (Debian's ibv_devices, unmodified)"
"$run" ibv_devices
"$run" ibv_devinfo -d siw_lo >"$logs/devinfo"
grep -E 'hca_id|transport|vendor_id|state|active_mtu|link_layer' "$logs/devinfo"

say "rping: SEND, RDMA READ and RDMA WRITE, 10 rounds of 4 KiB, data checked by both sides"
"$run" rping -s -a 127.0.0.1 -p "$port" -C 10 -S 4096 -V >"$logs/rping-s" 2>&1 &
srv=$!
wait_listen "$port"
timeout 30 "$run" rping -c -a 127.0.0.1 -p "$port" -C 10 -S 4096 -V -v >"$logs/rping-c" 2>&1
wait "$srv"
cut -c1-72 "$logs/rping-c" | head -n 3
echo "   ... $(grep -c 'ping data' "$logs/rping-c") rounds; client and server exited 0, every buffer verified"

say "ib_write_bw -R (perftest): RDMA WRITE bandwidth, 64 KiB messages, rdma_cm connection"
port=$((port + 1))
"$run" ib_write_bw -R -s 65536 -D 2 -p "$port" >"$logs/bw-s" 2>&1 &
srv=$!
wait_listen "$port"
timeout 60 "$run" ib_write_bw -R -s 65536 -D 2 -p "$port" 127.0.0.1 >"$logs/bw-c" 2>&1
wait "$srv"
grep -E 'Transport type|#bytes|^ *65536' "$logs/bw-c"

say "ib_read_lat -R (perftest): RDMA READ latency, 8-byte messages"
port=$((port + 1))
"$run" ib_read_lat -R -s 8 -n 2000 -p "$port" >"$logs/lat-s" 2>&1 &
srv=$!
wait_listen "$port"
timeout 60 "$run" ib_read_lat -R -s 8 -n 2000 -p "$port" 127.0.0.1 >"$logs/lat-c" 2>&1
wait "$srv"
grep -E '#bytes|^ *8 ' "$logs/lat-c"

say "siw-bench: softiwarp next to plain TCP on this machine (short run)"
if [ -x build/tools/bench/siw-bench ]; then
	build/tools/bench/siw-bench --short --quiet
fi

say "done: unmodified rdma-core programs ran over softiwarp (user space iWARP over TCP)"
echo "Run your own with: build/bin/siw-run PROGRAM ARGS..."
