#!/usr/bin/env bash
# Every test: set-up, then
#   1. the unit tests under AddressSanitizer + UBSan (gcc),
#   2. the fuzz targets for a bounded time each (clang, libFuzzer),
#   3. the release build with warnings as errors: unit tests and the Mininet end-to-end tests.
# Each step ends with ctest's summary; the last line printed is the summary of step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/setup.sh

echo "=== unit tests under ASan+UBSan"
cmake --preset asan -G Ninja >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan -L unit -j "$jobs" --output-on-failure | tail -n 3

echo "=== fuzz smoke (${FUZZ_SECONDS:-20} s per target)"
cmake --preset fuzz -G Ninja >/dev/null
cmake --build build-fuzz -j "$jobs"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" ctest --test-dir build-fuzz -L fuzz-smoke --output-on-failure | tail -n 3

echo "=== release build: unit and end-to-end tests"
bash scripts/build.sh >/dev/null
ctest --test-dir build --output-on-failure
