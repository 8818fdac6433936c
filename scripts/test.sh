#!/usr/bin/env bash
# Every test: set-up, then
#   1. formatting (clang-format) and static checks (clang-tidy, .clang-tidy's checks, on src/ and plugins/),
#   2. the unit tests under AddressSanitizer + UBSan (gcc),
#   3. the fuzz targets for a bounded time each (clang, libFuzzer),
#   4. the release build with warnings as errors: unit tests and the Mininet end-to-end tests.
# Each step prints its wall time; each test step ends with ctest's summary, and the last line
# printed is the summary of step 4.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
total_start=$SECONDS
step_start=$SECONDS
step_name=""

step() {
  end_step
  step_name="$1"
  step_start=$SECONDS
  echo "=== $step_name"
}
end_step() {
  if [[ -n "$step_name" ]]; then
    echo "--- $step_name: $((SECONDS - step_start)) s"
  fi
  step_name=""
}

# Runs ctest quietly; prints everything when it fails, its summary when it passes.
quiet_ctest() {
  local log
  log=$(mktemp)
  if ! ctest "$@" >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    return 1
  fi
  tail -n 3 "$log"
  rm -f "$log"
}

step "set-up"
bash scripts/setup.sh

step "format and static checks"
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' '*.c' '*.h')
clang-format --dry-run --Werror "${sources[@]}"
cmake --preset release >/dev/null  # compile_commands.json for clang-tidy
# The proxy's sources and the shipped plugins (C and C++), which are code the proxy runs too.
run-clang-tidy -quiet -p build -j "$jobs" "$PWD/src/" "$PWD/plugins/" >/tmp/mqtt_proxy_tidy.log 2>&1 || {
  grep -E "(warning|error):" /tmp/mqtt_proxy_tidy.log | sort -u
  echo "clang-tidy found problems (the full log is in /tmp/mqtt_proxy_tidy.log)" >&2
  exit 1
}
echo "clang-format and clang-tidy: clean (${#sources[@]} files formatted, src/ and plugins/ checked)"

step "unit tests under ASan+UBSan"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
quiet_ctest --preset asan -j "$jobs"

step "fuzz smoke (${FUZZ_SECONDS:-20} s per target)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" quiet_ctest --preset fuzz

step "release build: unit and end-to-end tests"
bash scripts/build.sh >/dev/null
# Everything the release build registers: unit (and sim), python, build checks, e2e. The step
# times go before ctest's summary, which stays the last thing printed.
log=$(mktemp)
status=0
ctest --test-dir build --output-on-failure 2>&1 | tee "$log" || status=$?
end_step
echo "=== all steps: $((SECONDS - total_start)) s"
tail -n 4 "$log"
rm -f "$log"
exit "$status"
