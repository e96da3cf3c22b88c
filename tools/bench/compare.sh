#!/usr/bin/env bash
# compare.sh: siw-bench (softiwarp and plain TCP), then -- when installed -- libfabric's tcp
# provider (fi-rma-bench), Debian's perftest over softiwarp (through siw-run) and UCX over TCP,
# all on 127.0.0.1, back to back, printed as one table with ratios against TCP.
#
#   tools/bench/compare.sh [-b BUILD_DIR] [-s SIZES] [--short] [--mss] [-r] [-- siw-bench options...]
#
#   -b DIR     softiwarp build directory (default: $BUILD_DIR or <repo>/build); siw-bench is
#              DIR/tools/bench/siw-bench, fi-rma-bench DIR/tools/bench/fi-rma-bench, siw-run
#              DIR/bin/siw-run (without it perftest runs with LD_LIBRARY_PATH=DIR/lib)
#   -s SIZES   message sizes, siw-bench syntax (default 8,32,128,512,2K,8K,32K,128K,512K,2M,4M)
#   -n         skip libfabric, perftest and UCX (siw-bench only)
#   -S, --short  CI sanity mode: sizes 8,4K,1M, 0.05 s per siw-bench/fi-rma-bench measurement,
#              100 perftest iterations, few UCX iterations (seconds, not a measurement)
#   -M, --mss  the MSS-sized FPDU regime: everything runs inside a new network namespace whose
#              loopback has MTU 1500 (TCP MSS 1448: softiwarp sends one FPDU per segment, as
#              kernel siw and iWARP NICs on a 1500-byte link). Needs root (ip netns); the
#              namespace is deleted afterwards. MTU=N overrides 1500.
#   -V, --veth the MSS regime across a veth pair at MTU 1500 between two new namespaces (client
#              10.231.77.1, server 10.231.77.2 via siw-bench --addr/--server-netns): siw-bench
#              (softiwarp and TCP) only, the other tools have no such option here. Root.
#   -r         require every component: a tool that is not installed is a failure (CI)
#   -c FILE    also write the combined table as CSV (size, then one column per measurement)
#
# perftest: ib_write_bw -R, ib_read_bw -R (-a, 1000 iterations per size, --report_gbits) and
# ib_send_lat -R (-a, 1000 iterations; t_typical). UCX (apt-get install ucx-utils):
# UCX_TLS=tcp UCX_NET_DEVICES=lo ucx_perftest -t ucp_put_bw / ucp_put_lat / tag_bw / tag_lat.
# Units: bandwidth GB/s = 1e9 B/s (perftest Gb/s / 8; UCX MB/s = 2^20 B/s); latency us, one way
# (half a ping-pong), except the READ columns (round trip).
# libfabric: fi-rma-bench (tools/bench/fi-rma-bench.c), tcp provider, FI_EP_MSG, fi_write /
# fi_read / fi_send with --depth 64 in flight, ping-pong latency; data verified.
# Exit status: 0 when every component that ran produced a number for every size it covers
# (perftest: powers of two up to 8M), 1 otherwise, 2 on a usage error.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../../build}
sizes=8,32,128,512,2K,8K,32K,128K,512K,2M,4M
sizes_given=0
others=1
short=0
mss=0
require=0
csv_out=

orig_args=("$@")
args=()
for a in "$@"; do # long options -> getopts letters (up to a "--")
	case $a in
	--short) args+=(-S) ;;
	--mss) args+=(-M) ;;
	--veth) args+=(-V) ;;
	--help) args+=(-h) ;;
	*) args+=("$a") ;;
	esac
done
set -- "${args[@]}"
veth=0
while getopts "b:s:nSMVrc:h" opt; do
	case $opt in
	b) build=$OPTARG ;;
	s) sizes=$OPTARG sizes_given=1 ;;
	n) others=0 ;;
	S) short=1 ;;
	M) mss=1 ;;
	V) veth=1 mss=1 ;;
	r) require=1 ;;
	c) csv_out=$OPTARG ;;
	h)
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
		exit 0
		;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ $short = 1 ] && [ $sizes_given = 0 ]; then
	sizes=8,4K,1M
fi

# --mss: the whole comparison again, inside a namespace whose loopback has MTU 1500.
if [ $mss = 1 ] && [ -z "${SIW_COMPARE_NETNS:-}" ]; then
	if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
		echo "compare.sh --mss: needs root and iproute2 (ip netns)" >&2
		exit 2
	fi
	ns=siwcmp-$$
	mtu=${MTU:-1500}
	ip netns add "$ns" || exit 1
	trap 'ip netns del "$ns" 2>/dev/null; [ $veth = 1 ] && ip netns del "$ns-s" 2>/dev/null' EXIT
	trap 'exit 130' INT TERM
	if ! ip -n "$ns" link set lo mtu "$mtu" up; then
		echo "compare.sh --mss: cannot set MTU $mtu on the namespace's loopback" >&2
		exit 1
	fi
	if [ $veth = 1 ]; then
		if ! ip netns add "$ns-s" || ! ip -n "$ns-s" link set lo up ||
			! ip link add "v$$c" netns "$ns" type veth peer name "v$$s" netns "$ns-s" ||
			! ip -n "$ns" addr add 10.231.77.1/24 dev "v$$c" ||
			! ip -n "$ns-s" addr add 10.231.77.2/24 dev "v$$s" ||
			! ip -n "$ns" link set "v$$c" mtu "$mtu" up ||
			! ip -n "$ns-s" link set "v$$s" mtu "$mtu" up; then
			echo "compare.sh --veth: cannot set up the namespaces" >&2
			exit 1
		fi
		echo "==== --veth: client in $ns (10.231.77.1), server in $ns-s (10.231.77.2), veth MTU $mtu"
		SIW_COMPARE_VETH="$ns-s" SIW_COMPARE_NETNS=$ns ip netns exec "$ns" "$0" "${orig_args[@]}"
		exit $?
	fi
	echo "==== --mss: network namespace $ns, lo MTU $mtu ($(ip -n "$ns" -o link show lo |
		grep -o 'mtu [0-9]*'))"
	SIW_COMPARE_NETNS=$ns ip netns exec "$ns" "$0" "${orig_args[@]}"
	exit $?
fi
veth_args=()
if [ -n "${SIW_COMPARE_VETH:-}" ]; then
	veth_args=(--addr 10.231.77.2 --server-netns "$SIW_COMPARE_VETH")
	others=0
	where="veth 10.231.77.1 -> 10.231.77.2 (namespaces ${SIW_COMPARE_NETNS} -> $SIW_COMPARE_VETH), $(ip -o link show | grep -o 'mtu [0-9]*' | tail -1)"
elif [ -n "${SIW_COMPARE_NETNS:-}" ]; then
	where="network namespace ${SIW_COMPARE_NETNS}, lo $(ip -o link show lo | grep -o 'mtu [0-9]*')"
else
	where="127.0.0.1, lo $(ip -o link show lo 2>/dev/null | grep -o 'mtu [0-9]*')"
fi

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
tmo=300
[ $short = 1 ] && tmo=120

echo "==== compare.sh on $(hostname), $where; $(uptime | sed 's/.*load average/load average/')"

# ---- 1. siw-bench ---------------------------------------------------------------------------
sb_args=(--sizes "$sizes" "${veth_args[@]}")
[ $short = 1 ] && sb_args+=(--time 0.05)
echo "==== siw-bench ${sb_args[*]} $*"
if ! timeout $((tmo * 3)) "$bench" "${sb_args[@]}" --csv "$work/siw.csv" "$@"; then
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

missing() { # a component that is not installed: a failure with -r
	echo "($1 not installed: $2)"
	if [ $require = 1 ]; then
		echo "compare.sh: $1 missing (-r)" >&2
		status=1
	fi
}

# ---- 2. libfabric tcp provider (fi-rma-bench) -------------------------------------------------
fibench=$build/tools/bench/fi-rma-bench
have_fi=0
if [ $others = 1 ] && [ -x "$fibench" ]; then
	fi_args=(--sizes "$sizes" --quiet)
	[ $short = 1 ] && fi_args+=(--time 0.05)
	echo "==== libfabric: fi-rma-bench ${fi_args[*]} (tcp provider, FI_EP_MSG, depth 64)"
	have_fi=1
	if ! timeout $((tmo * 3)) "$fibench" "${fi_args[@]}" --csv "$work/fi.csv"; then
		echo "compare.sh: fi-rma-bench failed" >&2
		status=1
	fi
	if [ -s "$work/fi.csv" ]; then
		# op,size,gbps,msgs,lat_med_us,lat_p99_us,lat_iters
		while IFS=, read -r op size g _ l _ _; do
			[ "$op" = op ] && continue
			[ -n "$g" ] && val["fi_${op}_bw:$size"]=$g
			[ -n "$l" ] && val["fi_${op}_lat:$size"]=$l
		done <"$work/fi.csv"
	fi
elif [ $others = 1 ]; then
	missing fi-rma-bench "apt-get install libfabric-dev, then rebuild $build"
fi

# ---- 3. perftest over softiwarp ---------------------------------------------------------------
port=$((20000 + RANDOM % 20000))

# run_pair LOG SERVER_CMD... -- CLIENT_CMD...: a server in the background, then its client
# (again while it cannot connect yet). Fails, with the logs' ends, unless both exit 0.
run_pair() {
	local log=$1 srv=() cli=() p crc=1 src=0
	shift
	while [ "$1" != -- ]; do
		srv+=("$1")
		shift
	done
	shift
	cli=("$@")
	timeout $tmo "${srv[@]}" >"$log.srv" 2>&1 &
	p=$!
	pids+=("$p")
	for _ in $(seq 1 50); do
		sleep 0.2
		crc=0
		timeout $tmo "${cli[@]}" >"$log" 2>&1 || crc=$?
		[ $crc = 0 ] && break
		grep -qiE "refused|Couldn't connect|unable to connect|failed to connect|rdma_cm|UNREACHABLE" \
			"$log" || break
		kill -0 "$p" 2>/dev/null || break
	done
	wait "$p" 2>/dev/null || src=$?
	if [ $crc != 0 ] || [ $src != 0 ]; then
		echo "compare.sh: ${cli[*]}: client exited with $crc, server with $src" >&2
		tail -5 "$log" "$log.srv" >&2
		return 1
	fi
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
		iters=1000
		[ $short = 1 ] && iters=100
		args=(-R -F -a -n "$iters" -p "$port")
		case $t in *_bw) args+=(--report_gbits) ;; esac
		echo "==== perftest: $label $t ${args[*]} 127.0.0.1"
		# A failed run still gives the rows it printed (the failure is reported).
		run_pair "$work/$t.log" "${runner[@]}" "$t" "${args[@]}" -- \
			"${runner[@]}" "$t" "${args[@]}" 127.0.0.1 || status=1
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
	missing perftest "apt-get install perftest"
fi

# ---- 4. UCX over TCP --------------------------------------------------------------------------
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
			[ $short = 1 ] && n=$((n / 20)) lo=100 hi=2000
			[ $n -lt $lo ] && n=$lo
			[ $n -gt $hi ] && n=$hi
			port=$((port + 1))
			run_pair "$work/ucx.log" ucx_perftest -p "$port" -- \
				ucx_perftest 127.0.0.1 -p "$port" -t "$t" -s "$s" -n "$n" -w $((n / 10)) -f ||
				status=1
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
	missing ucx_perftest "apt-get install ucx-utils"
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

ratio() { # value / TCP value, or "-"
	local x=${val[$1:$3]:-} t=${val[$2:$3]:-}
	if [ -n "$x" ] && [ -n "$t" ]; then
		awk -v x="$x" -v t="$t" 'BEGIN{ if (t > 0) printf "%.2f", x / t; else printf "-" }'
	else
		printf -- -
	fi
}

# table TITLE TCP_COLUMN "col:head" ...: values, then each column / TCP (same run).
table() {
	local title=$1 tcp=$2 c s
	shift 2
	local cols=() heads=()
	for c in "$@"; do
		cols+=("${c%%:*}")
		heads+=("${c#*:}")
	done
	echo
	echo "==== $title"
	printf '%6s' size
	for c in "${heads[@]}"; do printf ' %11s' "$c"; done
	echo
	for s in "${size_list[@]}"; do
		printf '%6s' "$(hsize "$s")"
		for c in "${cols[@]}"; do printf ' %11s' "$(v "$c" "$s")"; done
		echo
	done
	echo "---- the same / TCP (same run)"
	printf '%6s' size
	for c in "${heads[@]}"; do printf ' %11s' "$c"; done
	echo
	for s in "${size_list[@]}"; do
		printf '%6s' "$(hsize "$s")"
		for c in "${cols[@]}"; do printf ' %11s' "$(ratio "$c" "$tcp" "$s")"; done
		echo
	done
}

bwcols=("siw_write_bw:siw write" "siw_read_bw:siw read" "siw_send_bw:siw send" "tcp_bw:TCP")
latcols=("siw_write_lat:siw write" "siw_send_lat:siw send" "siw_read_lat:siw read" "tcp_lat:TCP")
if [ $have_fi = 1 ]; then
	bwcols+=("fi_write_bw:fi write" "fi_read_bw:fi read" "fi_send_bw:fi send")
	latcols+=("fi_write_lat:fi write" "fi_send_lat:fi send" "fi_read_lat:fi read")
fi
if [ $have_perftest = 1 ]; then
	bwcols+=("ib_write_bw:ib_write_bw" "ib_read_bw:ib_read_bw")
	latcols+=("ib_send_lat:ib_send_lat")
fi
if [ $have_ucx = 1 ]; then
	bwcols+=("ucp_put_bw:ucx put" "tag_bw:ucx tag")
	latcols+=("ucp_put_lat:ucx put" "tag_lat:ucx tag")
fi
table "bandwidth, GB/s (1e9 B/s), one direction; $where" tcp_bw "${bwcols[@]}"
table "latency, us: one way (half round trip); the read columns: the whole round trip" \
	tcp_lat "${latcols[@]}"
echo "(siw = siw-bench over softiwarp; TCP = siw-bench's blocking socket loop, same run;"
echo " fi = fi-rma-bench, libfabric tcp provider; ib_* = perftest over softiwarp (t_typical for"
echo " latency); ucx = UCX over TCP, median latency. Latency ratios > 1: slower than TCP.)"

if [ -n "$csv_out" ]; then
	{
		printf size
		for c in "${bwcols[@]}" "${latcols[@]}"; do printf ',%s' "${c%%:*}"; done
		echo
		for s in "${size_list[@]}"; do
			printf '%s' "$s"
			for c in "${bwcols[@]}" "${latcols[@]}"; do
				printf ',%s' "${val[${c%%:*}:$s]:-}"
			done
			echo
		done
	} >"$csv_out"
fi

# Every component that ran must have produced a number for every size it covers (siw-bench
# given options of its own, e.g. --bw-only or --ops: its exit status says whether it did).
pow2() { local x=$1; [ "$x" -ge 2 ] && [ "$x" -le 8388608 ] && [ $((x & (x - 1))) = 0 ]; }
for c in "${bwcols[@]}" "${latcols[@]}"; do
	c=${c%%:*}
	case $c in siw_* | tcp_*) [ $# -gt 0 ] && continue ;; esac
	for s in "${size_list[@]}"; do
		case $c in ib_*) pow2 "$s" || continue ;; esac
		if [ -z "${val[$c:$s]:-}" ]; then
			echo "compare.sh: no number for $c at $(hsize "$s")" >&2
			status=1
		fi
	done
done
[ $status = 0 ] && echo "compare.sh: every component produced every number" ||
	echo "compare.sh: FAILED (see above)" >&2
exit $status
