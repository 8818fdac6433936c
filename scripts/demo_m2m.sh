#!/usr/bin/env bash
# MQTT2MULTICAST: set up, build if needed, then three proxies with -s under the project's os-ken
# app; a message published via one of them reaches subscribers behind the other two, sent once and
# copied by the switches (mininet/demo_m2m.py prints the tree from ovs-ofctl dump-groups).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
exec /usr/bin/python3 mininet/demo_m2m.py "$@"
