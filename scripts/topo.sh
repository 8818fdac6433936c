#!/usr/bin/env bash
# The topology command with Debian's Python (Mininet imports only there), as root:
#   sudo bash scripts/topo.sh -f 2 -f 2 -d 20ms -D 10ms --proxies h1,h4
# Builds mqtt_proxy and the delay element first if they are missing. Options: mininet/topo.py -h.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ ! -x "$root/build/mqtt_proxy" || ! -x "$root/build/mqtt_proxy_delay" ]]; then
  (cd "$root" && cmake --preset release >/dev/null &&
    cmake --build build --target mqtt_proxy mqtt_proxy_delay >&2)
fi
exec /usr/bin/python3 "$root/mininet/topo.py" "$@"
