#!/usr/bin/env bash
# Builds build/mqtt_proxy and the unit tests (warnings are errors). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_PROXY_WERROR=ON "$@" >/dev/null
cmake --build build
