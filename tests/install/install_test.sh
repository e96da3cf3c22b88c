#!/bin/sh
# The installation as a user gets it (ctest label "install"): `cmake --install` into a
# temporary prefix and into a DESTDIR staging tree, the layout (drop-in libraries only in the
# private <libdir>/softiwarp, siw-run and siw-bench in bin, man pages, softiwarp.pc), siw-run
# from the installed, a moved and a staged prefix, the examples built from their installed copy
# with their Makefile and `pkg-config softiwarp` and run WITHOUT siw-run (through their run
# path), and the man pages rendered by groff and man.
#
# Settings come from the environment (tests/install/CMakeLists.txt sets them):
#   SIW_BUILD_DIR SIW_CMAKE SIW_VERSION        build tree, cmake, project version
#   SIW_LIBDIR SIW_BINDIR SIW_MANDIR SIW_DOCDIR CMAKE_INSTALL_*DIR as configured (relative)
#   SIW_CC SIW_EX_FLAGS                        compiler and extra flags (sanitizers) for examples
#   SIW_PRELOAD                                LD_PRELOAD for uninstrumented programs (ASan)
#   SIW_NO_FOREIGN=1                           skip running uninstrumented programs (TSan)
#   SIW_PORT                                   first of the 40 ports the examples may use
# Every step is bounded by timeout(1). Exit status: 0 pass, 1 failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${SIW_BUILD_DIR:?}
cmake=${SIW_CMAKE:-cmake}
work=$PWD/install.work
prefix=$work/prefix
private=$prefix/$SIW_LIBDIR/softiwarp
pcdir=$prefix/$SIW_LIBDIR/pkgconfig
unset LD_LIBRARY_PATH PKG_CONFIG_PATH DESTDIR || true
export LC_ALL=C

step() { printf '\n== %s\n' "$*"; }
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
has() { command -v "$1" >/dev/null 2>&1; }
# foreign CMD...: an uninstrumented program (ibv_devices) against our libraries.
foreign() {
	if [ -n "${SIW_PRELOAD:-}" ]; then
		LD_PRELOAD=$SIW_PRELOAD ASAN_OPTIONS=detect_leaks=0 "$@"
	else
		"$@"
	fi
}
# libs_of BINARY: "libibverbs.so.1 DIR" and "librdmacm.so.1 DIR", the (physical) directories
# the loader takes them from for BINARY.
libs_of() {
	ldd "$1" | sed -n 's/^[[:space:]]*\(lib\(ibverbs\|rdmacm\)\.so\.1\) => \([^ ]*\).*/\1 \3/p' |
		while read -r lib path; do
			echo "$lib $(cd "$(dirname "$path")" && pwd -P)"
		done
}
# phys DIR: DIR without symbolic links or dot-dot.
phys() { (cd "$1" && pwd -P); }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build --prefix $prefix"
timeout 300 "$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log"; fail "cmake --install"; }
grep -c 'Installing:' "$work/install.log"
(cd "$prefix" && find . \( -type f -o -type l \) | sort) >"$work/files"
sed 's/^/  /' "$work/files"

step "layout"
for f in bin/siw-run "$SIW_LIBDIR/softiwarp/libibverbs.so.1" "$SIW_LIBDIR/softiwarp/librdmacm.so.1" \
	"$SIW_LIBDIR/softiwarp/libibverbs.so" "$SIW_LIBDIR/softiwarp/librdmacm.so" \
	"$SIW_LIBDIR/pkgconfig/softiwarp.pc" "$SIW_MANDIR/man1/siw-run.1" \
	"$SIW_MANDIR/man7/softiwarp.7" "$SIW_DOCDIR/examples/Makefile" \
	"$SIW_DOCDIR/examples/write_pingpong.c" "$SIW_DOCDIR/examples/send_recv_server.c"; do
	[ -e "$prefix/$f" ] || fail "$f is not installed"
done
[ -x "$prefix/bin/siw-run" ] || fail "bin/siw-run is not executable"
if [ -x "$build/tools/bench/siw-bench" ]; then
	[ -x "$prefix/bin/siw-bench" ] || fail "bin/siw-bench is not installed"
	[ -e "$prefix/$SIW_MANDIR/man1/siw-bench.1" ] || fail "siw-bench.1 is not installed"
fi
# Shared libraries (ours or any other) only in the private directory: nothing that could
# shadow the system's rdma-core from <prefix>/lib.
stray=$(grep -E '(^|/)lib[^/]*\.(so(\.[0-9.]+)?|a)$' "$work/files" |
	grep -v "^\./$SIW_LIBDIR/softiwarp/[^/]*$" || true)
[ -z "$stray" ] || fail "libraries outside $SIW_LIBDIR/softiwarp: $stray"
# Nothing outside the prefix (an absolute DESTINATION would ignore --prefix).
if [ -f "$build/install_manifest.txt" ]; then
	outside=$(grep -v "^$prefix/" "$build/install_manifest.txt" || true)
	[ -z "$outside" ] || fail "installed outside the prefix: $outside"
fi
echo "ok: libraries only in $SIW_LIBDIR/softiwarp"
if [ -x "$prefix/bin/siw-bench" ]; then
	readelf -d "$prefix/bin/siw-bench" | grep -E 'R(UN)?PATH' | grep -q "\$ORIGIN/" ||
		fail "siw-bench has no \$ORIGIN-relative run path"
	libs_of "$prefix/bin/siw-bench" | grep -qx "libibverbs.so.1 $(phys "$private")" ||
		fail "installed siw-bench does not load $private/libibverbs.so.1"
fi

step "pkg-config"
export PKG_CONFIG_PATH="$pcdir"
sed 's/^/  /' "$pcdir/softiwarp.pc"
[ "$(pkg-config --modversion softiwarp)" = "$SIW_VERSION" ] || fail "softiwarp.pc version"
[ "$(pkg-config --variable=libdir softiwarp)" = "$private" ] || fail "softiwarp.pc libdir"
[ "$(pkg-config --variable=siw_run softiwarp)" = "$prefix/bin/siw-run" ] || fail "siw_run"
libs=$(pkg-config --libs softiwarp)
echo "  --libs: $libs"
echo "  --cflags: $(pkg-config --cflags softiwarp)"
for want in "-L$private" "-Wl,-rpath,$private" -lrdmacm -libverbs; do
	case " $libs " in
	*" $want "*) ;;
	*) fail "pkg-config --libs lacks $want" ;;
	esac
done

step "siw-run from the prefix"
"$prefix/bin/siw-run" --version | grep -qx "siw-run (softiwarp) $SIW_VERSION" || fail "--version"
real_private=$(cd "$private" && pwd)
"$prefix/bin/siw-run" -v true 2>&1 | grep -q "libraries in $real_private\$" ||
	fail "siw-run does not use $real_private"
[ "$("$prefix/bin/siw-run" sh -c 'echo "$LD_LIBRARY_PATH"')" = "$real_private" ] ||
	fail "LD_LIBRARY_PATH under siw-run"
if [ -n "${SIW_NO_FOREIGN:-}" ]; then
	echo "skip: ibv_devices (uninstrumented programs cannot run in this build)"
elif has ibv_devices; then
	foreign timeout 30 "$prefix/bin/siw-run" ibv_devices >"$work/devices.log" 2>&1 ||
		{ cat "$work/devices.log"; fail "siw-run ibv_devices"; }
	sed 's/^/  /' "$work/devices.log"
	grep -q 'siw_lo' "$work/devices.log" || fail "siw-run ibv_devices does not list siw_lo"
else
	echo "skip: ibv_devices is not installed (ibverbs-utils)"
fi

step "a moved prefix, and siw-run through a symbolic link"
cp -a "$prefix" "$work/moved"
moved=$(cd "$work/moved/$SIW_LIBDIR/softiwarp" && pwd)
"$work/moved/bin/siw-run" -v true 2>&1 | grep -q "libraries in $moved\$" ||
	fail "moved siw-run does not use $moved"
mkdir -p "$work/links"
ln -s "$work/moved/bin/siw-run" "$work/links/siw-run"
"$work/links/siw-run" -v true 2>&1 | grep -q "libraries in $moved\$" ||
	fail "siw-run through a symlink does not use $moved"
if [ -x "$work/moved/bin/siw-bench" ]; then
	libs_of "$work/moved/bin/siw-bench" | grep -qx "libibverbs.so.1 $(phys "$moved")" ||
		fail "moved siw-bench does not load the moved libraries"
fi
rm -rf "$work/moved" "$work/links"
echo "ok"

step "DESTDIR staging (prefix /opt/softiwarp-staged)"
stage=$work/stage
timeout 300 env DESTDIR="$stage" "$cmake" --install "$build" --prefix /opt/softiwarp-staged \
	>"$work/stage.log" 2>&1 || { cat "$work/stage.log"; fail "DESTDIR install"; }
others=$(cd "$stage" && find . \( -type f -o -type l \) | grep -v '^\./opt/softiwarp-staged/' || true)
[ -z "$others" ] || fail "DESTDIR install put files elsewhere: $others"
sprefix=$stage/opt/softiwarp-staged
grep -qx "prefix=/opt/softiwarp-staged" "$sprefix/$SIW_LIBDIR/pkgconfig/softiwarp.pc" ||
	fail "the staged softiwarp.pc does not name the final prefix"
grep -q "/opt/softiwarp-staged/$SIW_LIBDIR/softiwarp" "$sprefix/$SIW_MANDIR/man7/softiwarp.7" ||
	fail "the staged softiwarp(7) does not name the final library directory"
"$sprefix/bin/siw-run" -v true 2>&1 | grep -q "libraries in $sprefix/$SIW_LIBDIR/softiwarp\$" ||
	fail "staged siw-run does not find the staged libraries"
if [ -z "${SIW_NO_FOREIGN:-}" ] && has ibv_devices; then
	foreign timeout 30 "$sprefix/bin/siw-run" ibv_devices 2>&1 | grep -q siw_lo ||
		fail "staged siw-run ibv_devices"
fi
rm -rf "$stage"
echo "ok"

step "examples: make with pkg-config softiwarp (installed copy)"
cp -r "$prefix/$SIW_DOCDIR/examples" "$work/examples"
# PKG_CONFIG_PATH on make's command line, as the Makefile documents, not in the environment.
timeout 300 env -u PKG_CONFIG_PATH make -C "$work/examples" PKG_CONFIG_PATH="$pcdir" CC="${SIW_CC:-cc}" \
	CFLAGS="-O2 -g -Wall -Wextra -Werror ${SIW_EX_FLAGS:-}" LDFLAGS="${SIW_EX_FLAGS:-}" ||
	fail "the examples do not build against the installation"
for ex in write_pingpong send_recv_server; do
	readelf -d "$work/examples/$ex" | grep -E 'R(UN)?PATH' | grep -q "$private" ||
		fail "$ex has no run path to $private"
	libs_of "$work/examples/$ex" >"$work/$ex.ldd"
	grep -qx "libibverbs.so.1 $(phys "$private")" "$work/$ex.ldd" &&
		grep -qx "librdmacm.so.1 $(phys "$private")" "$work/$ex.ldd" ||
		{ cat "$work/$ex.ldd"; fail "$ex does not load softiwarp's libraries"; }
done
echo "ok: both link softiwarp's libraries through their run path"

step "examples: run without siw-run"
port=${SIW_PORT:-19040}
sh "$here/run_examples.sh" write_pingpong "$work/examples" "$port" "$work/run-wp"
sh "$here/run_examples.sh" send_recv_server "$work/examples" $((port + 20)) "$work/run-sr"

step "man pages"
pages=$(cd "$prefix/$SIW_MANDIR" && ls man*/*.[0-9])
[ -n "$pages" ] || fail "no man pages installed"
if has groff; then
	for p in $pages; do
		timeout 30 groff -man -Tutf8 -ww -z "$prefix/$SIW_MANDIR/$p" 2>"$work/groff.err" ||
			fail "groff $p"
		[ ! -s "$work/groff.err" ] || { cat "$work/groff.err"; fail "groff warns about $p"; }
	done
	echo "ok: groff -man -ww: no warnings"
else
	echo "skip: groff is not installed (groff-base)"
fi
if has man; then
	for p in $pages; do
		MANWIDTH=80 MANPAGER=cat timeout 30 man -l "$prefix/$SIW_MANDIR/$p" >"$work/man.out" \
			2>"$work/man.err" || { cat "$work/man.err"; fail "man -l $p"; }
		grep -q '^NAME' "$work/man.out" && grep -q '^DESCRIPTION' "$work/man.out" ||
			fail "man -l $p: no NAME/DESCRIPTION"
		[ ! -s "$work/man.err" ] || { cat "$work/man.err"; fail "man -l $p wrote errors"; }
		# The pages are found by name in the prefix's man directory.
		name=$(basename "$p")
		[ "$(man -M "$prefix/$SIW_MANDIR" -w "${name##*.}" "${name%.*}")" = \
			"$prefix/$SIW_MANDIR/$p" ] || fail "man -M does not find $name"
	done
	echo "ok: man -l renders" $pages
else
	echo "skip: man is not installed (man-db)"
fi

rm -rf "$work"
echo
echo "ok: install"
