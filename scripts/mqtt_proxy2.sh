#!/usr/bin/env bash
# The prototype's mqtt_proxy2.sh: the proxy on h4 (192.168.1.104), forwarding to the one on h1.
# Run it in h4: `xterm h4` then `./scripts/mqtt_proxy2.sh`, or `h4 scripts/mqtt_proxy2.sh &` in
# the Mininet CLI. Defaults and overrides: launch_common.sh (MQTT_PROXY_PEERS, default
# 192.168.1.101). Stop it with Ctrl-C or SIGTERM; it leaves no iptables rule behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
PEERS="${MQTT_PROXY_PEERS-192.168.1.101}"
launch_proxy "$@"
