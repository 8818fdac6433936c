# Shared by the per-host launch scripts (mqtt_proxy1.sh, mqtt_proxy2.sh, mqtt_proxy_as_broker.sh):
# the prototype's values as defaults, each overridable by the environment, then the C++ binary in
# the foreground (exec: the shell's PID is the proxy's, so a SIGTERM reaches it directly).
#
# The proxy installs its own iptables rule (tagged with its PID) and removes it when it exits; a
# rule left by a killed predecessor is taken over by the next start or removed by
# `mqtt_proxy --cleanup`. Unlike the prototype's scripts, nothing here adds a rule of its own:
# no global ICMP rule, no RST rule that outlives the proxy.
#
#   MQTT_PROXY_BIN       the binary (default: build/mqtt_proxy of this checkout, built if missing)
#   MQTT_PROXY_TCP_PORT  -t (1883)         MQTT_PROXY_UDP_PORT  -U (1883)
#   MQTT_PROXY_USER      -u (jorge)        MQTT_PROXY_PASSWORD  -p (passwd)
#   MQTT_PROXY_PEERS     -F, space-separated (each script has its own default)
# Arguments after the script's name are passed to mqtt_proxy as they are (e.g. --log-level debug).

launch_proxy() {
  local root bin
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  bin="${MQTT_PROXY_BIN:-$root/build/mqtt_proxy}"
  if [[ ! -x "$bin" ]]; then
    if [[ -n "${MQTT_PROXY_BIN:-}" ]]; then
      echo "$(basename "$0"): MQTT_PROXY_BIN=$bin is not an executable" >&2
      exit 1
    fi
    echo "$(basename "$0"): building $bin" >&2
    (cd "$root" && cmake --preset release >/dev/null && cmake --build build --target mqtt_proxy >&2) ||
      { echo "$(basename "$0"): the build failed" >&2; exit 1; }
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "$(basename "$0"): needs root (packet capture, raw send, iptables)" >&2
    exit 1
  fi
  local args=(-t "${MQTT_PROXY_TCP_PORT:-1883}" -U "${MQTT_PROXY_UDP_PORT:-1883}")
  local user="${MQTT_PROXY_USER-jorge}" password="${MQTT_PROXY_PASSWORD-passwd}"
  [[ -n "$user" ]] && args+=(-u "$user")
  [[ -n "$password" ]] && args+=(-p "$password")
  local peer
  for peer in $PEERS; do
    args+=(-F "$peer")
  done
  echo "$(basename "$0"): $bin ${args[*]} $*" >&2
  exec "$bin" "${args[@]}" "$@"
}
