#!/bin/sh
# Builds the Debian packages softiwarp and softiwarp-dev (binary only, unsigned) with Debian's
# own tooling: a copy of the source tree (without build trees and .git) gets
# packaging/debian as its debian/ folder, then dpkg-buildpackage -b runs debhelper's
# cmake+ninja build in it. Needs: apt-get install build-essential debhelper cmake ninja-build
# libibverbs-dev librdmacm-dev. Nothing is installed on this machine.
#
#   packaging/build-deb.sh [OUTDIR]      (default: build-deb/ in the source tree)
#
# The .deb files end up in OUTDIR. Extra dpkg-buildpackage options via DPKG_BUILDPACKAGE_OPTS;
# DEB_BUILD_OPTIONS=nocheck skips the tests run during the build.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build-deb}
version=$(sed -n '1s/^softiwarp (\([^)]*\)).*/\1/p' "$src/packaging/debian/changelog")
[ -n "$version" ] || { echo "build-deb.sh: no version in debian/changelog" >&2; exit 1; }
for tool in dpkg-buildpackage dh cmake ninja; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build-deb.sh: $tool is missing (apt-get install build-essential debhelper cmake ninja-build)" >&2
		exit 1
	}
done

rm -rf "$out"
tree=$out/softiwarp-$version
mkdir -p "$tree"
# The source as it is in the work tree (uncommitted changes included), minus build output.
tar -C "$src" --exclude='./build*' --exclude='./out' --exclude='./.git' --exclude='./debian' \
	-cf - . | tar -C "$tree" -xf -
cp -r "$src/packaging/debian" "$tree/debian"
cd "$tree"
# shellcheck disable=SC2086
dpkg-buildpackage -b -us -uc ${DPKG_BUILDPACKAGE_OPTS:-}
cd "$out"
ls -l ./*.deb
for deb in ./*.deb; do
	echo "== $deb"
	dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/&/p'
	dpkg-deb --contents "$deb" | awk '{print "  " $6 ($7 ? " " $7 " " $8 : "")}'
done
