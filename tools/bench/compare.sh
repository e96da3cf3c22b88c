#!/usr/bin/env bash
# compare.sh: siw-bench, then -- when installed -- Debian's perftest over softiwarp (through
# siw-run) and UCX over TCP, all on 127.0.0.1, printed together.
#
#   tools/bench/compare.sh [-b BUILD_DIR] [-s SIZES] [-- siw-bench options...]
#
#   -b DIR     softiwarp build directory (default: $BUILD_DIR or <repo>/build); siw-bench is
#              DIR/tools/bench/siw-bench, siw-run DIR/bin/siw-run (without it perftest runs with
#              LD_LIBRARY_PATH=DIR/lib, the same libraries)
#   -s SIZES   message sizes, siw-bench syntax (default 8,32,128,512,2K,8K,32K,128K,512K,2M,4M)
#   -n         skip perftest and UCX (siw-bench only)
#
# perftest: ib_write_bw -R, ib_read_bw -R (-a, 1000 iterations per size, --report_gbits) and
# ib_send_lat -R (-a, 1000 iterations; t_typical). UCX (apt-get install ucx-utils):
# UCX_TLS=tcp UCX_NET_DEVICES=lo ucx_perftest -t ucp_put_bw / ucp_put_lat / tag_bw / tag_lat.
# Units: bandwidth GB/s = 1e9 B/s (perftest Gb/s / 8; UCX MB/s = 2^20 B/s); latency us, one way
# (half a ping-pong), except siw-bench's READ (round trip).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../../build}
sizes=8,32,128,512,2K,8K,32K,128K,512K,2M,4M
others=1

while getopts "b:s:nh" opt; do
	case $opt in
	b) build=$OPTARG ;;
	s) sizes=$OPTARG ;;
	n) others=0 ;;
	h)
		sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift

build=$(cd "$build" 2>/dev/null && pwd) || {
	echo "compare.sh: no build directory $build (-b DIR)" >&2
	exit 2
}
bench=$build/tools/bench/siw-bench
if [ ! -x "$bench" ]; then
	echo "compare.sh: $bench not built (cmake --build $build --target siw-bench)" >&2
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/siw-compare.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bytes() { # 4K -> 4096
	local s=$1 m=1
	case $s in
	*[kK]) m=1024 s=${s%?} ;;
	*[mM]) m=1048576 s=${s%?} ;;
	*[gG]) m=1073741824 s=${s%?} ;;
	esac
	echo $((s * m))
}
size_list=()
IFS=, read -r -a raw <<<"$sizes"
for s in "${raw[@]}"; do
	size_list+=("$(bytes "$s")")
done

declare -A val # "<column>:<bytes>" -> number
status=0

# ---- 1. siw-bench ---------------------------------------------------------------------------
echo "==== siw-bench --sizes $sizes $*"
if ! "$bench" --sizes "$sizes" --csv "$work/siw.csv" "$@"; then
	echo "compare.sh: siw-bench failed" >&2
	status=1
fi
if [ -s "$work/siw.csv" ]; then
	# op,size,siw_gbps,tcp_gbps,bw_ratio,siw_cpu,tcp_cpu,siw_lat_med,siw_lat_p99,tcp_lat_med,...
	while IFS=, read -r op size sg tg _ _ _ sl _ tl _; do
		[ "$op" = op ] && continue
		val["siw_${op}_bw:$size"]=$sg
		val["siw_${op}_lat:$size"]=$sl
		if [ "$op" = write ] || [ -z "${val[tcp_bw:$size]:-}" ]; then
			val["tcp_bw:$size"]=$tg
			val["tcp_lat:$size"]=$tl
		fi
	done <"$work/siw.csv"
fi

# ---- 2. perftest over softiwarp ---------------------------------------------------------------
port=$((20000 + RANDOM % 20000))

# run_pair LOG SERVER_CMD... -- CLIENT_CMD...: a server in the background, then its client.
run_pair() {
	local log=$1 srv=() cli=() p
	shift
	while [ "$1" != -- ]; do
		srv+=("$1")
		shift
	done
	shift
	cli=("$@")
	timeout 300 "${srv[@]}" >"$log.srv" 2>&1 &
	p=$!
	pids+=("$p")
	for _ in $(seq 1 50); do
		sleep 0.2
		timeout 300 "${cli[@]}" >"$log" 2>&1 && break
		grep -qiE "refused|Couldn't connect|unable to connect|failed to connect|rdma_cm|UNREACHABLE" \
			"$log" || break
		kill -0 "$p" 2>/dev/null || break
	done
	wait "$p" 2>/dev/null
	grep -q . "$log" || return 1
	return 0
}

have_perftest=0
if [ $others = 1 ] && command -v ib_write_bw >/dev/null && command -v ib_read_bw >/dev/null &&
	command -v ib_send_lat >/dev/null; then
	have_perftest=1
	if [ -x "$build/bin/siw-run" ]; then
		runner=("$build/bin/siw-run")
		label=siw-run
	else
		echo "(no $build/bin/siw-run yet: perftest runs with LD_LIBRARY_PATH=$build/lib)"
		runner=(env "LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
		label="LD_LIBRARY_PATH=$build/lib"
	fi
	for t in ib_write_bw ib_read_bw ib_send_lat; do
		port=$((port + 1))
		args=(-R -F -a -n 1000 -p "$port")
		case $t in *_bw) args+=(--report_gbits) ;; esac
		echo "==== perftest: $label $t ${args[*]} 127.0.0.1"
		if ! run_pair "$work/$t.log" "${runner[@]}" "$t" "${args[@]}" -- \
			"${runner[@]}" "$t" "${args[@]}" 127.0.0.1; then
			echo "compare.sh: $t produced no output" >&2
			status=1
			continue
		fi
		# Data lines: "#bytes #iterations ..." (bw: BW average [Gb/s] is field 4; lat:
		# t_typical [usec] is field 5).
		n=0
		while read -r -a f; do
			[[ ${f[0]:-} =~ ^[0-9]+$ ]] && [ "${#f[@]}" -ge 5 ] || continue
			case $t in
			*_bw) val["$t:${f[0]}"]=$(awk -v g="${f[3]}" 'BEGIN{printf "%.3f", g / 8}') ;;
			*) val["$t:${f[0]}"]=${f[4]} ;;
			esac
			n=$((n + 1))
		done <"$work/$t.log"
		if [ $n = 0 ]; then
			echo "compare.sh: $t failed:" >&2
			tail -5 "$work/$t.log" "$work/$t.log.srv" >&2
			status=1
		fi
	done
elif [ $others = 1 ]; then
	echo "(perftest not installed: apt-get install perftest)"
fi

# ---- 3. UCX over TCP --------------------------------------------------------------------------
have_ucx=0
if [ $others = 1 ] && command -v ucx_perftest >/dev/null; then
	have_ucx=1
	export UCX_TLS=tcp UCX_NET_DEVICES=lo
	echo "==== UCX: UCX_TLS=tcp UCX_NET_DEVICES=lo ucx_perftest -t ucp_put_bw|ucp_put_lat|tag_bw|tag_lat"
	for t in ucp_put_bw tag_bw ucp_put_lat tag_lat; do
		for s in "${size_list[@]}"; do
			case $t in
			*_bw) n=$((536870912 / s)) lo=200 hi=200000 ;;
			*) n=$((67108864 / s)) lo=200 hi=20000 ;;
			esac
			[ $n -lt $lo ] && n=$lo
			[ $n -gt $hi ] && n=$hi
			port=$((port + 1))
			if ! run_pair "$work/ucx.log" ucx_perftest -p "$port" -- \
				ucx_perftest 127.0.0.1 -p "$port" -t "$t" -s "$s" -n "$n" -w $((n / 10)) -f; then
				echo "compare.sh: ucx_perftest -t $t -s $s produced no output" >&2
				status=1
				continue
			fi
			# -f: "iterations 50%ile average overall bw_avg bw_overall rate_avg rate_overall"
			line=$(awk '$1 ~ /^[0-9]+$/ && NF >= 8 {l = $0} END {print l}' "$work/ucx.log")
			if [ -z "$line" ]; then
				echo "compare.sh: ucx_perftest -t $t -s $s failed:" >&2
				tail -3 "$work/ucx.log" >&2
				status=1
				continue
			fi
			read -r -a f <<<"$line"
			case $t in
			*_bw) val["$t:$s"]=$(awk -v m="${f[5]}" 'BEGIN{printf "%.3f", m * 1048576 / 1e9}') ;;
			*) val["$t:$s"]=${f[1]} ;;
			esac
		done
	done
elif [ $others = 1 ]; then
	echo "(UCX not installed: apt-get install ucx-utils)"
fi

# ---- all together ---------------------------------------------------------------------------
v() { # value or "-"
	local x=${val[$1:$2]:-}
	[ -n "$x" ] && printf '%.3f' "$x" 2>/dev/null || printf -- -
}
hsize() {
	local s=$1
	if [ $((s % 1048576)) = 0 ]; then echo "$((s / 1048576))M"
	elif [ $((s % 1024)) = 0 ]; then echo "$((s / 1024))K"
	else echo "$s"; fi
}

echo
echo "==== bandwidth, GB/s (1e9 B/s), one direction, 127.0.0.1"
cols=(siw_write_bw siw_read_bw siw_send_bw tcp_bw)
heads=("siw write" "siw read" "siw send" "TCP")
if [ $have_perftest = 1 ]; then
	cols+=(ib_write_bw ib_read_bw)
	heads+=("ib_write_bw" "ib_read_bw")
fi
if [ $have_ucx = 1 ]; then
	cols+=(ucp_put_bw tag_bw)
	heads+=("ucx put" "ucx tag")
fi
printf '%6s' size
for h in "${heads[@]}"; do printf ' %12s' "$h"; done
echo
for s in "${size_list[@]}"; do
	printf '%6s' "$(hsize "$s")"
	for c in "${cols[@]}"; do printf ' %12s' "$(v "$c" "$s")"; done
	echo
done

echo
echo "==== latency, us: one way (half round trip); 'siw read' is the READ round trip"
cols=(siw_write_lat siw_send_lat siw_read_lat tcp_lat)
heads=("siw write" "siw send" "siw read" "TCP")
if [ $have_perftest = 1 ]; then
	cols+=(ib_send_lat)
	heads+=("ib_send_lat")
fi
if [ $have_ucx = 1 ]; then
	cols+=(ucp_put_lat tag_lat)
	heads+=("ucx put" "ucx tag")
fi
printf '%6s' size
for h in "${heads[@]}"; do printf ' %12s' "$h"; done
echo
for s in "${size_list[@]}"; do
	printf '%6s' "$(hsize "$s")"
	for c in "${cols[@]}"; do printf ' %12s' "$(v "$c" "$s")"; done
	echo
done
echo "(siw = siw-bench medians over softiwarp; TCP = siw-bench's blocking socket loop;"
echo " ib_* = perftest over softiwarp, t_typical for latency; ucx = UCX over TCP, median latency)"
exit $status
