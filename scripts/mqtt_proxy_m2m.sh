#!/usr/bin/env bash
# The prototype's mqtt_proxy_m2m.sh: a proxy in MQTT2MULTICAST mode, publishing each message once
# to its topic's multicast group, which the SDN controller's trees carry to every proxy with a
# subscriber (docs/mqtt2multicast.md). Run it in any host of a testbed under the project's
# MQTT2MULTICAST app (`mininet/topo.py --controller m2m`, or osken-manager with
# mininet/controller/mqtt2multicast.py): `h1 scripts/mqtt_proxy_m2m.sh &` in the Mininet CLI.
#
# The original also passed -F 127.0.0.1 so that its receiver thread ran at all; this proxy receives
# multicast without it (no -F by default; MQTT_PROXY_PEERS adds unicast peers beside it).
#   MQTT_PROXY_M2M_SERVER       -s (192.168.1.100, the controller's virtual address)
#   MQTT_PROXY_M2M_SERVER_PORT  -S (11883)      MQTT_PROXY_M2M_CLIENT_PORT  -C (11882)
# and the variables of launch_common.sh. Stop it with Ctrl-C or SIGTERM: it tells the controller
# its subscriptions are gone (flags 2) and leaves no iptables rule behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
PEERS="${MQTT_PROXY_PEERS-}"
launch_proxy -s "${MQTT_PROXY_M2M_SERVER:-192.168.1.100}" \
  -S "${MQTT_PROXY_M2M_SERVER_PORT:-11883}" -C "${MQTT_PROXY_M2M_CLIENT_PORT:-11882}" "$@"
