#!/usr/bin/env bash
# Builds build/mqtt_proxy, the unit tests and the benchmarks with the release preset (warnings are
# errors). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release "$@" >/dev/null
cmake --build --preset release
