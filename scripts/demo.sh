#!/usr/bin/env bash
# The main job: builds softiwarp and runs a loopback demo on this machine.
# (Until the connection manager lands this runs the protocol core's self-test and benchmark.)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
echo "==== building softiwarp (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
echo
echo "==== protocol core self-test (unit tests: MPA, DDP, RDMAP, CRC32c, real kernel siw captures)"
ctest --test-dir build -L unit --output-on-failure | tail -n 4
echo
echo "==== protocol core throughput next to memcpy"
build/tools/siw-core-bench 0.2
