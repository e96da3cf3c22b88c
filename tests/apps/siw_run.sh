#!/bin/sh
# siw-run itself: options, errors, and that a program under it sees softiwarp's devices.
set -eu
. "$(dirname "$0")/lib.sh"

"$SIW_RUN" --help | grep -q '^usage: siw-run' || fail "--help"
"$SIW_RUN" --version | grep -Eq '^siw-run \(softiwarp\) [0-9]+\.[0-9]+' || fail "--version"
rc=0
"$SIW_RUN" --bogus true 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "unknown option: exit $rc, expected 2"
rc=0
"$SIW_RUN" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "no program: exit $rc, expected 2"
rc=0
"$SIW_RUN" siw-no-such-program 2>/dev/null || rc=$?
[ "$rc" = 127 ] || fail "missing program: exit $rc, expected 127"

# -v says what it sets; the program's environment has our library directory first.
libdir=$(cd "$(dirname "$SIW_RUN")/../lib" && pwd)
"$SIW_RUN" -v sh -c 'echo "LDP=$LD_LIBRARY_PATH"' >"$workdir/v.log" 2>&1 || fail "-v run"
grep -q "^siw-run: LD_LIBRARY_PATH=$libdir" "$workdir/v.log" || fail "-v output"
grep -q "^LDP=$libdir" "$workdir/v.log" || fail "LD_LIBRARY_PATH not set for the program"
LD_LIBRARY_PATH=/elsewhere "$SIW_RUN" sh -c 'echo "$LD_LIBRARY_PATH"' |
	grep -qx "$libdir:/elsewhere" || fail "an existing LD_LIBRARY_PATH is not kept after ours"
# Arguments pass through untouched, including ones that look like options.
[ "$("$SIW_RUN" -- printf '%s|' -v 'a b' '')" = "-v|a b||" ] || fail "arguments changed"

# A program under siw-run loads our libraries (ldd resolves through LD_LIBRARY_PATH).
if command -v rping >/dev/null 2>&1 && command -v ldd >/dev/null 2>&1; then
	"$SIW_RUN" ldd "$(command -v rping)" >"$workdir/ldd.log" 2>&1 || true
	grep -q "librdmacm.so.1 => $libdir/librdmacm.so.1" "$workdir/ldd.log" ||
		fail "rping does not load our librdmacm.so.1"
	grep -q "libibverbs.so.1 => $libdir/libibverbs.so.1" "$workdir/ldd.log" ||
		fail "rping does not load our libibverbs.so.1"
fi
if command -v ibv_devices >/dev/null 2>&1; then
	run devices ibv_devices || fail "ibv_devices under siw-run exited with $rc"
	log devices | grep -q 'siw_lo' || fail "ibv_devices does not list siw_lo"
fi
echo "ok: siw-run"
