#!/usr/bin/env bash
# Installs the Debian packages softiwarp's build, demo and tests need, if any is missing.
# Used by scripts/demo.sh, scripts/test.sh and .ci/run, so that the README's two commands work
# on a fresh Debian 12 machine. As root it runs apt-get; otherwise it uses sudo when that works
# without a password, and else prints the command to run and fails.
#
#   scripts/deps.sh            the packages of the build, the demo and the test suite
#   scripts/deps.sh --demo     only what scripts/demo.sh needs
set -euo pipefail

demo=(build-essential cmake ninja-build pkg-config libibverbs-dev librdmacm-dev ibverbs-utils
	rdmacm-utils perftest ibverbs-providers gnuplot-nox procps)
tests=(gcc clang llvm libclang-rt-14-dev python3 libisal-dev libisal2 tshark iproute2 nftables
	groff-base man-db libfabric-dev ucx-utils)

want=("${demo[@]}")
[ "${1:-}" = --demo ] || want+=("${tests[@]}")

missing=()
for p in "${want[@]}"; do
	# Installed packages only (a package that was removed but left config files is missing).
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0

echo "softiwarp: installing ${missing[*]}" >&2
if [ "$(id -u)" = 0 ]; then
	sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
	sudo=(sudo -n)
else
	echo "softiwarp: missing Debian packages; run as root:" >&2
	echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; an old list may name removed versions.
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
