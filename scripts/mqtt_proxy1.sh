#!/usr/bin/env bash
# The prototype's mqtt_proxy1.sh: the proxy on h1 (192.168.1.101), forwarding to the one on h4.
# Run it in h1: `xterm h1` then `./scripts/mqtt_proxy1.sh`, or `h1 scripts/mqtt_proxy1.sh &` in
# the Mininet CLI. Defaults and overrides: launch_common.sh (MQTT_PROXY_PEERS, default
# 192.168.1.104). Stop it with Ctrl-C or SIGTERM; it leaves no iptables rule behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
PEERS="${MQTT_PROXY_PEERS-192.168.1.104}"
launch_proxy "$@"
