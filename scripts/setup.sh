#!/usr/bin/env bash
# Installs everything mqtt_proxy needs on Debian 12 and starts Open vSwitch. Idempotent: packages
# already present are not touched, running daemons are left alone. Needs root.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format clang-tidy
  libtins-dev libpcap-dev libboost-program-options-dev libfmt-dev libgtest-dev libgmock-dev
  libbenchmark-dev libssl-dev
  # testbed and clients; the mosquitto broker is the benchmarks' baseline
  mininet openvswitch-switch python3-os-ken ethtool iproute2 iptables iputils-ping iputils-arping tcpdump
  mosquitto mosquitto-clients python3-paho-mqtt libpaho-mqtt-dev libmosquitto-dev
  # link delay without netem: the NFQUEUE delay element (docs/testbed-delay.md); plots
  libnetfilter-queue-dev python3-matplotlib
  # behind HAProxy (PROXY protocol, TLS), scraped by Prometheus, pushed to InfluxDB (docs/deployment.md)
  haproxy prometheus influxdb libcivetweb-dev openssl
  # MQTT over WebSocket in a real browser, driven through DevTools (mininet/websocket_test.py)
  chromium python3-websocket
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: needs root (apt-get, Open vSwitch)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages must not start daemons (the mosquitto broker would listen on the host's port 1883):
  # the benchmarks start their own, inside testbed hosts. A policy-rc.d of our own is removed again.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# No systemd here: start the OVS daemons directly when they are not running. The kernel has no OVS
# datapath module; the testbed uses the userspace datapath (environment.md).
if ! ovs-vsctl show >/dev/null 2>&1; then
  echo "setup: starting Open vSwitch"
  /usr/share/openvswitch/scripts/ovs-ctl --system-id=random start >/dev/null 2>&1 || true
  ovs-vsctl show >/dev/null
fi
echo "setup: ok"
