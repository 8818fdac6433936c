#!/usr/bin/env bash
# Builds build/mqtt_proxy, the unit tests and the benchmarks (warnings are errors). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_PROXY_WERROR=ON -DMQTT_PROXY_BENCH=ON \
  "$@" >/dev/null
cmake --build build
