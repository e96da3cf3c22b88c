#!/bin/sh
# Checks that librdmacm.so.1 exports exactly rdma-core 44's functions, each in its version
# node (default version), and defines the version nodes with rdma-core's parent chain.
#
#   check-symbols.sh LIB EXPECTED.tsv      (tsv: node<TAB>name<TAB>FUNC<TAB>default)
set -eu
lib=$1
want=$2
tmp=${TMPDIR:-/tmp}/cm-syms.$$
trap 'rm -f "$tmp".*' EXIT

readelf -h "$lib" >/dev/null

# Defined global functions as "NODE<TAB>name"; only default versions (name@@NODE) exist in ours.
readelf --dyn-syms -W "$lib" |
	awk '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" { print $8 }' |
	awk -F'@' '{ if ($2 == "" && NF == 3) print $3 "\t" $1; else print "NOVERSION(" $0 ")\t" $1 }' |
	sort >"$tmp.got"
awk -F'\t' '$3 == "FUNC" { print $1 "\t" $2 }' "$want" | sort >"$tmp.want"
if ! diff -u "$tmp.want" "$tmp.got"; then
	echo "FAIL: exported functions differ from rdma-core 44 (- expected, + ours)" >&2
	exit 1
fi
echo "ok: $(wc -l <"$tmp.got") functions, versions as rdma-core 44"

# Version definitions: RDMACM_1.0 <- 1.1 <- 1.2 <- 1.3.
readelf -V -W "$lib" | sed -n '/Version definition/,/Version needs/p' >"$tmp.vd"
for pair in "RDMACM_1.1 RDMACM_1.0" "RDMACM_1.2 RDMACM_1.1" "RDMACM_1.3 RDMACM_1.2"; do
	set -- $pair
	if ! grep -A1 "Name: $1\$" "$tmp.vd" | grep -q "Parent 1: $2\$"; then
		echo "FAIL: version node $1 missing or not a child of $2" >&2
		cat "$tmp.vd" >&2
		exit 1
	fi
done
grep -q "Name: RDMACM_1.0\$" "$tmp.vd" || { echo "FAIL: no RDMACM_1.0" >&2; exit 1; }
echo "ok: version nodes RDMACM_1.0 <- 1.1 <- 1.2 <- 1.3"

# SONAME and no stray exports (data, our internals).
readelf -d "$lib" | grep -q 'SONAME.*\[librdmacm.so.1\]' || { echo "FAIL: SONAME" >&2; exit 1; }
extra=$(readelf --dyn-syms -W "$lib" |
	awk '$5 == "GLOBAL" && $7 != "UND" && $4 != "FUNC" && $8 !~ /^RDMACM_1\.[0-3]$/ { print $8 }')
if [ -n "$extra" ]; then
	echo "FAIL: unexpected exports: $extra" >&2
	exit 1
fi
echo "ok: SONAME librdmacm.so.1, nothing else exported"
