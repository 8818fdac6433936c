#!/usr/bin/env bash
# The main job: set up, build if needed, then two proxies in the reference Mininet testbed deliver
# mosquitto_pub's messages (h3, via h4) to mosquitto_sub (h2, via h1). Tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
exec /usr/bin/python3 mininet/demo.py "$@"
