#!/usr/bin/env bash
# Every test: set-up, then
#   1. the unit tests under AddressSanitizer + UBSan (gcc),
#   2. the fuzz targets for a bounded time each (clang, libFuzzer),
#   3. the release build with warnings as errors: unit tests and the Mininet end-to-end tests.
# Each step ends with ctest's summary; the last line printed is the summary of step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# Runs ctest quietly; prints everything when it fails, its summary when it passes.
quiet_ctest() {
  local log
  log=$(mktemp)
  if ! ctest "$@" --output-on-failure >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    return 1
  fi
  tail -n 3 "$log"
  rm -f "$log"
}

bash scripts/setup.sh

echo "=== unit tests under ASan+UBSan"
cmake --preset asan -G Ninja >/dev/null
cmake --build build-asan -j "$jobs"
quiet_ctest --test-dir build-asan -L unit -j "$jobs"

echo "=== fuzz smoke (${FUZZ_SECONDS:-20} s per target)"
cmake --preset fuzz -G Ninja >/dev/null
cmake --build build-fuzz -j "$jobs"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" quiet_ctest --test-dir build-fuzz -L fuzz-smoke

echo "=== release build: unit and end-to-end tests"
bash scripts/build.sh >/dev/null
ctest --test-dir build --output-on-failure
