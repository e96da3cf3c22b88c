#!/usr/bin/env bash
# run_tool.sh LIBDIR CHECK - runs an unmodified Debian rdma-core / perftest program against our
# libibverbs.so.1 (LD_LIBRARY_PATH=LIBDIR) and checks what it prints. CHECK is one of:
#   ibv_devices      lists siw_lo
#   ibv_devinfo      siw_lo block: "transport: iWARP (1)", port state PORT_ACTIVE
#   ibv_devinfo_v    the same with -v (device_ex attributes, GIDs, ...)
#   ib_write_bw_help perftest starts (libmlx5/libefa load on our private ABI) and prints usage
#   ib_send_bw_help  the same for ib_send_bw (also links libibumad)
# Every run uses LD_BIND_NOW=1, so any symbol or version the program or a library it loads
# imports and we lack fails at start. SIW_TOOL_PRELOAD (':'-separated) is preloaded: the
# sanitizer runtime of a sanitized build. Exit 0 pass, 1 fail, 77 skip (program not installed).
set -u
[ $# -eq 2 ] || { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
libdir=$1 check=$2

fail() { echo "FAIL: $*"; exit 1; }

case "$check" in
ibv_devices) tool=ibv_devices args=() ;;
ibv_devinfo) tool=ibv_devinfo args=() ;;
ibv_devinfo_v) tool=ibv_devinfo args=(-v) ;;
ib_write_bw_help) tool=ib_write_bw args=(-h) ;;
ib_send_bw_help) tool=ib_send_bw args=(-h) ;;
*) fail "unknown check $check" ;;
esac
path=$(command -v "$tool") || { echo "SKIP: $tool is not installed"; exit 77; }
[ -e "$libdir/libibverbs.so.1" ] || fail "no $libdir/libibverbs.so.1"

# The loader must pick our library, not the system's.
preload=${SIW_TOOL_PRELOAD:-}
# Some sanitizer runtimes cannot be preloaded on some kernels (clang 14's TSan crashes even
# /bin/true when the mmap layout surprises it): nothing to test then.
if [ -n "$preload" ] && ! LD_PRELOAD=$preload /bin/true 2>/dev/null; then
	echo "SKIP: the sanitizer runtime $preload cannot be preloaded here"
	exit 77
fi
deps=$(LD_PRELOAD=$preload LD_LIBRARY_PATH=$libdir LD_TRACE_LOADED_OBJECTS=1 "$path" 2>&1)
echo "$deps" | grep -q "libibverbs.so.1 => $libdir/libibverbs.so.1" ||
	fail "$tool does not load $libdir/libibverbs.so.1:"$'\n'"$deps"

out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
LD_PRELOAD=$preload LD_BIND_NOW=1 LD_LIBRARY_PATH=$libdir timeout 60 "$path" "${args[@]}" >"$out" 2>"$err"
rc=$?
cat "$out" "$err"
if grep -qE "symbol lookup error|version .* not found|error while loading shared libraries|undefined symbol" "$err"; then
	fail "$tool did not load"
fi

# The block of one device in ibv_devinfo's output.
block() { awk -v d="$1" '/^hca_id:/ { on = ($2 == d) } on' "$out"; }

case "$check" in
ibv_devices)
	[ "$rc" -eq 0 ] || fail "exit code $rc"
	grep -qE '^[[:space:]]+siw_lo[[:space:]]+[0-9a-f]{16}$' "$out" || fail "siw_lo not listed"
	;;
ibv_devinfo | ibv_devinfo_v)
	[ "$rc" -eq 0 ] || fail "exit code $rc"
	b=$(block siw_lo)
	[ -n "$b" ] || fail "no hca_id siw_lo"
	grep -qP '^\ttransport:\t+iWARP \(1\)$' <<<"$b" || fail "siw_lo: transport is not iWARP (1)"
	grep -qP '^\t+state:\t+PORT_ACTIVE \(4\)$' <<<"$b" || fail "siw_lo: port not PORT_ACTIVE"
	grep -qP '^\t+link_layer:\t+Ethernet$' <<<"$b" || fail "siw_lo: link layer not Ethernet"
	grep -qP '^\tvendor_id:\t+0x626d74$' <<<"$b" || fail "siw_lo: vendor_id"
	if [ "$check" = ibv_devinfo_v ]; then
		grep -qP '^\tmax_qp_rd_atom:\t+[1-9]' <<<"$b" || fail "siw_lo: no max_qp_rd_atom"
		grep -qP '^\t+gid_tbl_len:\t+1$' <<<"$b" || fail "siw_lo: gid_tbl_len"
		grep -qP '^\t+max_msg_sz:\t+0xffffffff$' <<<"$b" || fail "siw_lo: max_msg_sz"
		grep -q 'Failed' "$err" && fail "ibv_devinfo -v reported a failure"
	fi
	;;
ib_write_bw_help | ib_send_bw_help)
	# perftest 4.5 exits 1 after printing its usage, with rdma-core's library too.
	[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || fail "exit code $rc"
	grep -q '^Usage:' "$out" || fail "no usage text"
	for lib in libmlx5.so.1 libefa.so.1; do
		echo "$deps" | grep -q "$lib =>" || fail "$lib was not loaded"
	done
	;;
esac
echo "PASS: $check"
