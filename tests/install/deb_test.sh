#!/bin/sh
# The Debian packages (ctest install.deb, opt-in: -DSIW_TEST_DEB=ON): builds them with
# packaging/build-deb.sh, extracts softiwarp and softiwarp-dev into a directory (never installs
# them), checks that the libraries are in /usr/lib/<triplet>/softiwarp only, runs the extracted
# siw-run, builds the examples against the extracted softiwarp.pc (prefix redefined to the
# extraction directory) and runs them without siw-run. Skips (77) without debhelper.
#   deb_test.sh SOURCE_DIR BASEPORT
set -eu
src=${1:?usage: deb_test.sh SOURCE_DIR BASEPORT}
port=${2:-19100}
here=$(cd "$(dirname "$0")" && pwd)
work=$PWD/deb.work
unset LD_LIBRARY_PATH PKG_CONFIG_PATH || true
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
for t in dpkg-buildpackage dh dpkg-architecture; do
	command -v "$t" >/dev/null 2>&1 || { echo "skip: $t is missing (apt-get install debhelper)"; exit 77; }
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

rm -rf "$work"
# nocheck: the packaging is under test here, the test suite has tests of its own.
timeout 1800 env DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" \
	sh "$src/packaging/build-deb.sh" "$work/out" >"$work.log" 2>&1 ||
	{ tail -n 60 "$work.log"; fail "packaging/build-deb.sh"; }
root=$work/root
mkdir -p "$root"
for pkg in softiwarp softiwarp-dev; do
	deb=$(ls "$work"/out/${pkg}_*.deb) || fail "no $pkg package"
	echo "$deb"
	dpkg-deb -x "$deb" "$root"
done
private=$root/usr/lib/$multiarch/softiwarp
for f in "$private/libibverbs.so.1" "$private/librdmacm.so.1" "$private/libibverbs.so" \
	"$root/usr/lib/$multiarch/pkgconfig/softiwarp.pc" "$root/usr/bin/siw-run" \
	"$root/usr/share/man/man7/softiwarp.7.gz" "$root/usr/share/doc/softiwarp/examples/Makefile"; do
	[ -e "$f" ] || fail "${f#"$root"} is not in the packages"
done
stray=$(cd "$root" && find . -name 'lib*.so*' | grep -v "^\./usr/lib/$multiarch/softiwarp/" || true)
[ -z "$stray" ] || fail "libraries outside /usr/lib/$multiarch/softiwarp: $stray"
grep -qx 'prefix=/usr' "$root/usr/lib/$multiarch/pkgconfig/softiwarp.pc" || fail "softiwarp.pc prefix"
"$root/usr/bin/siw-run" -v true 2>&1 | grep -q "libraries in $private\$" ||
	fail "the extracted siw-run does not find the extracted libraries"
if command -v ibv_devices >/dev/null 2>&1; then
	timeout 30 "$root/usr/bin/siw-run" ibv_devices | grep -q siw_lo || fail "siw-run ibv_devices"
fi

cp -r "$root/usr/share/doc/softiwarp/examples" "$work/examples"
timeout 300 make -C "$work/examples" PKG_CONFIG_PATH="$root/usr/lib/$multiarch/pkgconfig" \
	PKG_CONFIG="pkg-config --define-variable=prefix=$root/usr" CFLAGS="-O2 -g -Wall -Wextra -Werror" ||
	fail "the examples do not build against the packages"
sh "$here/run_examples.sh" write_pingpong "$work/examples" "$port" "$work/run-wp"
sh "$here/run_examples.sh" send_recv_server "$work/examples" $((port + 20)) "$work/run-sr"
rm -rf "$work" "$work.log"
echo "ok: Debian packages"
