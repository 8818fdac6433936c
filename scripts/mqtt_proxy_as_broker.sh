#!/usr/bin/env bash
# The prototype's mqtt_proxy_as_broker.sh: a proxy with no peers, i.e. a plain QoS 0 broker for
# the central-broker experiments (topo.py -g runs it on h1). Defaults and overrides:
# launch_common.sh (MQTT_PROXY_PEERS, default none). Stop it with Ctrl-C or SIGTERM; it leaves no
# iptables rule behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
PEERS="${MQTT_PROXY_PEERS-}"
launch_proxy "$@"
