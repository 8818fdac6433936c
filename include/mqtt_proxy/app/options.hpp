// Command line (design brief section 2; compatible with the prototype's launch scripts).
//
// Defaults live in the configuration structs of the modules that use them (tcp::EndpointConfig,
// broker::BrokerConfig, core::CoreConfig, peering::PeeringConfig, capture::CaptureConfig). Options
// takes them from there, and --help prints them from Options, so each is written once.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/capture/pcap_capture.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/hooks/plugin_loader.hpp"
#include "mqtt_proxy/ingress/admission.hpp"
#include "mqtt_proxy/m2m/client.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "mqtt_proxy/tcp/endpoint.hpp"
#include "mqtt_proxy/telemetry/influx.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::app {

namespace defaults {
inline const core::CoreConfig kCore{};
inline const tcp::EndpointConfig kTcp{};
inline const broker::BrokerConfig kBroker{};
inline const peering::PeeringConfig kPeering{};
inline const capture::CaptureConfig kCapture{};
inline const flow::FlowConfig kFlow{};
inline const m2m::ClientConfig kM2m{};
inline const ingress::ProxyProtocolPolicy kProxyProtocol{};
}  // namespace defaults

inline unsigned whole_seconds(Duration d) {
  return static_cast<unsigned>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

struct Options {
  std::uint16_t tcp_port = defaults::kCore.tcp_port;
  std::uint16_t ws_port = defaults::kCore.ws_port;  // MQTT over WebSocket; 0: off
  std::string ws_path = defaults::kCore.ws.path;
  std::uint16_t udp_port = 1883;  // the prototype's; ours and the peers'
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::vector<wire::Ipv4Address> peers;  // -F / --forwarder
  std::vector<std::string> ifaces;
  log::Level log_level = log::Level::Info;
  bool firewall = true;
  bool cleanup = false;  // --cleanup: remove leftover rules, then exit
  bool verify_checksums = defaults::kCore.verify_checksums;
  std::string password_file;  // empty: none
  bool allow_anonymous = defaults::kBroker.allow_anonymous;
  std::size_t max_connections = defaults::kCore.max_connections;
  std::size_t max_half_open = defaults::kCore.max_half_open;
  std::uint32_t tcp_rcv_buffer = defaults::kTcp.rcv_buffer;
  unsigned stall_timeout_seconds = whole_seconds(defaults::kTcp.user_timeout);
  std::size_t max_packet_size = defaults::kBroker.max_packet_size;
  std::size_t max_queued_bytes = defaults::kBroker.max_queued_bytes;
  std::size_t max_retained = defaults::kBroker.max_retained_messages;
  unsigned session_expiry_seconds = whole_seconds(defaults::kBroker.session_expiry);
  unsigned max_keepalive = defaults::kBroker.max_keepalive;
  unsigned max_inflight = defaults::kBroker.max_inflight;
  std::size_t max_queued_messages = defaults::kBroker.max_queued_messages;
  bool queue_qos0 = defaults::kBroker.queue_qos0;
  std::size_t capture_buffer_bytes = static_cast<std::size_t>(defaults::kCapture.buffer_bytes);
  unsigned peer_refresh_seconds = whole_seconds(defaults::kPeering.refresh_interval);
  unsigned peer_expiry_refreshes = defaults::kPeering.expiry_refreshes;
  std::string peer_key_file;                      // empty: peers are not authenticated
  std::vector<wire::Ipv4Address> unsigned_peers;  // --peer-unsigned, with a key
  peering::BatchPolicy peer_batch = defaults::kPeering.batch;
  bool peer_extension = defaults::kPeering.extension;
  flow::Policy overload = defaults::kFlow.policy;
  double slow_grace_seconds =
      std::chrono::duration<double>(defaults::kFlow.grace).count();  // then a subscriber is stuck
  // MQTT2MULTICAST (-s turns it on; docs/mqtt2multicast.md).
  std::optional<wire::Ipv4Address> m2m_server;
  std::uint16_t m2m_server_port = defaults::kM2m.server_port;
  std::uint16_t m2m_client_port = defaults::kM2m.client_port;
  unsigned m2m_refresh_seconds = whole_seconds(defaults::kM2m.refresh);
  bool m2m_ethernet_broadcast = defaults::kM2m.ethernet_broadcast;
  // The PROXY protocol (docs/deployment.md): off unless --proxy-protocol is given.
  std::optional<ingress::Mode> proxy_protocol;
  double proxy_protocol_timeout_seconds =
      std::chrono::duration<double>(defaults::kProxyProtocol.header_timeout).count();
  std::vector<wire::Ipv4Address> proxy_protocol_from;
  bool proxy_protocol_require_tls = false;
  bool require_certificate = false;
  bool use_identity_as_username = false;
  // Metrics (docs/metrics.md): the Prometheus endpoint, the InfluxDB target and how often it is
  // pushed to, and the $SYS topics' interval.
  std::string metrics_listen;  // --metrics ADDR:PORT; empty: no endpoint
  std::optional<telemetry::InfluxTarget> influx;
  unsigned metrics_interval_seconds = 10;
  unsigned sys_interval_seconds = 10;   // 0: no $SYS topics
  unsigned stats_interval_seconds = 0;  // 0: counters are logged at exit only
  unsigned shutdown_grace_ms = 2000;    // for clients to take their FIN after SIGTERM
  // Plugins (docs/plugins.md), in the order given, each with the --plugin-opt that followed it,
  // and the time a hook call may take before it is logged and counted.
  std::vector<hooks::PluginSpec> plugins;
  double hook_budget_ms = 5;
  // Upstream mode (--upstream HOST[:PORT], docs/upstream.md): in front of that broker instead of
  // being one; empty: off.
  std::string upstream_host;
  std::uint16_t upstream_port = 1883;
  bool upstream_tls = false;
  std::string upstream_cafile;  // with --upstream-tls; empty: the system's CAs
};

// "HOST", "HOST:PORT", "[IPV6]" or "[IPV6]:PORT" (the port defaults to `port`); false when none
// of these.
bool parse_host_port(std::string_view s, std::string& host, std::uint16_t& port);

enum class ParseOutcome { Run, Exit0, Error };

// Parses argv. On Exit0 (--help, --version) `message` is the text to print on stdout; on Error it
// is a one-line reason.
ParseOutcome parse_options(int argc, const char* const* argv, Options& out, std::string& message);

}  // namespace mqtt_proxy::app
