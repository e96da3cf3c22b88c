#!/bin/sh
# The man pages of the build tree (<build>/man/*.[1-8], configured from man/*.in) must format
# without a single groff warning (-ww) and contain the usual sections. Skips (77) without groff.
#   man_lint.sh <build>/man
set -eu
dir=${1:?usage: man_lint.sh <build>/man}
command -v groff >/dev/null 2>&1 || { echo "skip: groff is not installed (groff-base)"; exit 77; }
n=0
for page in "$dir"/*.[1-8]; do
	[ -f "$page" ] || continue
	n=$((n + 1))
	err=$(LC_ALL=C groff -man -Tutf8 -ww -z "$page" 2>&1) || { echo "$err"; exit 1; }
	[ -z "$err" ] || { echo "FAIL: groff warns about $page:"; echo "$err"; exit 1; }
	if grep -n '@[A-Z_]*@' "$page"; then
		echo "FAIL: $page has unconfigured @VARIABLES@"
		exit 1
	fi
	out=$(LC_ALL=C groff -man -Tutf8 -P-cbou "$page" 2>&1)
	for s in NAME DESCRIPTION "SEE ALSO"; do
		printf '%s\n' "$out" | grep -q "^$s" || { echo "FAIL: $page has no $s"; exit 1; }
	done
	echo "ok: $(basename "$page")"
done
[ "$n" -ge 3 ] || { echo "FAIL: only $n man pages in $dir"; exit 1; }
