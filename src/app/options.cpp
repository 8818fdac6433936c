#include "mqtt_proxy/app/options.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <sstream>

namespace mqtt_proxy::app {

namespace po = boost::program_options;

namespace {
constexpr const char* kVersion = "mqtt_proxy " MQTT_PROXY_VERSION;

// Each of `names` as an IPv4 address, appended to `out`; false, with the one-line error, at the
// first that is not one.
bool parse_addresses(const std::vector<std::string>& names, std::string_view option,
                     std::vector<wire::Ipv4Address>& out, std::string& message) {
  for (const auto& f : names) {
    const auto a = wire::Ipv4Address::parse(f);
    if (!a) {
      message = std::string(option) + ": not an IPv4 address: " + f;
      return false;
    }
    out.push_back(*a);
  }
  return true;
}

// `ADDR:PORT` with an IPv4 address and a port 1..65535, as civetweb's listening_ports takes it.
bool valid_listen_address(const std::string& v) {
  const auto colon = v.rfind(':');
  if (colon == std::string::npos || !wire::Ipv4Address::parse(v.substr(0, colon))) return false;
  const std::string port = v.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const unsigned p = static_cast<unsigned>(std::stoul(port));
  return p >= 1 && p <= 65535;
}

bool to_port(unsigned v, std::uint16_t& out) {
  if (v == 0 || v > 65535) return false;
  out = static_cast<std::uint16_t>(v);
  return true;
}
}  // namespace

ParseOutcome parse_options(int argc, const char* const* argv, Options& out, std::string& message) {
  const Options d;  // the defaults
  unsigned tcp_port = d.tcp_port;
  unsigned ws_port = d.ws_port;
  unsigned udp_port = d.udp_port;
  std::vector<std::string> forwarders;
  std::vector<std::string> unsigned_names;
  std::string level(log::level_name(d.log_level));
  for (auto& ch : level) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string verify = d.verify_checksums ? "on" : "off";
  std::size_t capture_mib = d.capture_buffer_bytes >> 20;
  auto batch_name = [](peering::BatchPolicy p) {
    return p == peering::BatchPolicy::Auto ? "auto" : p == peering::BatchPolicy::On ? "on" : "off";
  };
  std::string batch = batch_name(d.peer_batch);
  std::string extension = d.peer_extension ? "on" : "off";
  unsigned m2m_server_port = d.m2m_server_port;
  unsigned m2m_client_port = d.m2m_client_port;
  std::string m2m_server;
  std::string m2m_ethernet = d.m2m_ethernet_broadcast ? "broadcast" : "group";
  std::string overload = d.overload == flow::Policy::Backpressure ? "backpressure" : "drop";
  std::string proxy_protocol = "off";
  std::vector<std::string> proxy_protocol_from;
  std::string influx_url;
  std::string influx_database;
  std::string influx_username;
  std::string influx_password;
  std::string upstream;
  po::options_description desc(
      "Usage: mqtt_proxy [options]\n"
      "MQTT edge proxy: terminates clients' TCP in user space from captured frames, acts as a QoS "
      "0\n"
      "broker toward them, and exchanges SUBSCRIBE/UNSUBSCRIBE/PUBLISH with peer proxies over "
      "UDP.\n"
      "With --upstream it is a proxy in front of a broker instead (mProxy's upstream mode).\n\n"
      "Options");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help and exit")
    ("version", "show the version and exit")
    ("tcpport,t", po::value<unsigned>(&tcp_port)->default_value(tcp_port), "MQTT TCP port to serve")
    ("ws-port", po::value<unsigned>(&ws_port)->default_value(ws_port),
     "MQTT over WebSocket (RFC 6455, subprotocol mqtt) on this TCP port, as mProxy's; captured and "
     "guarded like -t; 0: off (docs/websocket.md)")
    ("ws-path", po::value<std::string>(&out.ws_path)->default_value(out.ws_path),
     "with --ws-port: the request path WebSocket clients must ask for (others get 404)")
    ("username,u", po::value<std::string>(), "username clients must present (default: anonymous allowed)")
    ("password,p", po::value<std::string>(), "password clients must present (needs --username)")
    ("password-file", po::value<std::string>(&out.password_file),
     "Mosquitto password file (mosquitto_passwd); its users are accepted too")
    ("allow-anonymous", po::bool_switch(&out.allow_anonymous),
     "with -u or --password-file: also accept clients that send no username")
    ("forwarder,F", po::value<std::vector<std::string>>(&forwarders)->composing(),
     "a peer proxy's IPv4 address; repeatable")
    ("udpport,U", po::value<unsigned>(&udp_port)->default_value(udp_port),
     "UDP port of the peer protocol, ours and the peers'")
    ("iface,i", po::value<std::vector<std::string>>(&out.ifaces)->composing(),
     "interface to capture on; repeatable (default: every up, non-loopback IPv4 interface)")
    ("log-level", po::value<std::string>(&level)->default_value(level),
     "trace, debug, info, warn, error or off")
    ("no-firewall", po::bool_switch(), "do not install the iptables rule that keeps the kernel "
     "from answering the MQTT port (install an equivalent yourself)")
    ("cleanup", po::bool_switch(&out.cleanup), "remove the iptables rules that proxies which no "
     "longer run left for port -t (on the -i interfaces; default: any) and lo's sysctls they "
     "changed, then exit")
    ("verify-checksums", po::value<std::string>(&verify)->default_value(verify),
     "on: drop segments whose TCP checksum is wrong; off: count them only (pcap cannot tell an "
     "offloaded checksum from a corrupt one)")
    ("max-connections", po::value<std::size_t>(&out.max_connections)->default_value(d.max_connections),
     "connections held at once; further SYNs are refused with RST")
    ("max-half-open", po::value<std::size_t>(&out.max_half_open)->default_value(d.max_half_open),
     "connections in SYN-RECEIVED at once; beyond this SYNs get SYN cookies")
    ("tcp-rcv-buffer", po::value<std::uint32_t>(&out.tcp_rcv_buffer)->default_value(d.tcp_rcv_buffer),
     "receive buffer per connection, in bytes; above 65535 needs the client's window scaling")
    ("stall-timeout", po::value<unsigned>(&out.stall_timeout_seconds)->default_value(d.stall_timeout_seconds),
     "abort a connection whose queued data saw no acknowledgement for this long, in seconds "
     "(a client that stopped reading; 0: never)")
    ("max-packet-size", po::value<std::size_t>(&out.max_packet_size)->default_value(d.max_packet_size),
     "largest MQTT packet accepted from a client, in bytes")
    ("max-queued-bytes", po::value<std::size_t>(&out.max_queued_bytes)->default_value(d.max_queued_bytes),
     "bytes queued toward one client beyond which further messages to it are dropped")
    ("session-expiry", po::value<unsigned>(&out.session_expiry_seconds)->default_value(d.session_expiry_seconds),
     "keep a clean-session-0 client's subscriptions this long after it goes, in seconds (0: never)")
    ("max-inflight", po::value<unsigned>(&out.max_inflight)->default_value(d.max_inflight),
     "QoS 1 and 2 messages sent to a 3.1/3.1.1 client and not yet acknowledged, at most (a v5 "
     "client's Receive Maximum sets its own; Mosquitto's max_inflight_messages; 0: no limit)")
    ("max-queued-messages", po::value<std::size_t>(&out.max_queued_messages)->default_value(d.max_queued_messages),
     "messages a session holds while its client is away or its in-flight window is full; beyond, "
     "new ones are dropped and counted (Mosquitto's max_queued_messages; 0: no limit)")
    ("queue-qos0", po::bool_switch(&out.queue_qos0),
     "queue QoS 0 messages for persistent sessions whose client is away, too (Mosquitto's "
     "queue_qos0_messages)")
    ("max-keepalive", po::value<unsigned>(&out.max_keepalive)->default_value(d.max_keepalive),
     "longest keepalive a client may ask for, in seconds (Mosquitto's max_keepalive): an MQTT 5 "
     "client asking for more, or for none while this is under 65535, is told this value (Server "
     "Keep Alive); a 3.1.1 client is refused")
    ("max-retained", po::value<std::size_t>(&out.max_retained)->default_value(d.max_retained),
     "topics with a retained message at once; beyond, new retained topics are refused")
    ("capture-buffer", po::value<std::size_t>(&capture_mib)->default_value(capture_mib),
     "capture ring size per interface, in MiB")
    ("peer-refresh", po::value<unsigned>(&out.peer_refresh_seconds)->default_value(d.peer_refresh_seconds),
     "resend SUBSCRIBE for every local filter to every peer this often, in seconds (0: off)")
    ("peer-expiry", po::value<unsigned>(&out.peer_expiry_refreshes)->default_value(d.peer_expiry_refreshes),
     "forget the interest of a peer that speaks the extension once it was silent this many "
     "--peer-refresh intervals (0: never; a plain peer's interest never expires)")
    ("peer-key-file", po::value<std::string>(&out.peer_key_file),
     "shared key (hex, one per line; a second one while a new key is rolled out): every datagram "
     "between peers is signed with HMAC-SHA256 and checked; unsigned, forged and replayed ones are "
     "rejected (docs/peering.md); the file must not be open to group or others")
    ("peer-unsigned", po::value<std::vector<std::string>>(&unsigned_names)->composing(),
     "with --peer-key-file: a peer (one of -F) that may send unsigned datagrams and is sent "
     "unsigned ones, such as the prototype; repeatable")
    ("peer-batch", po::value<std::string>(&batch)->default_value(batch)->implicit_value("on"),
     "pack the PUBLISHes for a peer into datagrams up to the MTU: auto (to peers that announced "
     "the extension), on (to every peer; all must read batches), off (docs/peering.md)")
    ("peer-extension", po::value<std::string>(&extension)->default_value(extension),
     "on: announce the peer protocol's extension (sequence numbers, credit-based flow control, "
     "batching) and use it with peers that announce it too; off: plain datagrams only")
    ("overload", po::value<std::string>(&overload)->default_value(overload),
     "backpressure: a subscriber (or peer) that cannot keep up pauses the publishers feeding it; "
     "drop: its messages beyond --max-queued-bytes are dropped (Mosquitto's behaviour)")
    ("slow-grace", po::value<double>(&out.slow_grace_seconds)->default_value(d.slow_grace_seconds),
     "seconds a congested subscriber or peer may make no progress before it is declared stuck: "
     "its publishers go on and its messages are dropped (counted)")
    ("m2m-server,s", po::value<std::string>(&m2m_server),
     "MQTT2MULTICAST: the SDN controller's (virtual) address, e.g. 192.168.1.100; turns the "
     "multicast mode on: each local PUBLISH goes once to its topic's multicast group, which the "
     "switches copy to every proxy with a subscriber (docs/mqtt2multicast.md); works beside -F")
    ("m2m-server-port,S", po::value<unsigned>(&m2m_server_port)->default_value(m2m_server_port),
     "with -s: the controller's UDP port for REQUESTs")
    ("m2m-client-port,C", po::value<unsigned>(&m2m_client_port)->default_value(m2m_client_port),
     "with -s: our UDP port for REQUESTs and their REPLYs (not -U)")
    ("m2m-refresh", po::value<unsigned>(&out.m2m_refresh_seconds)->default_value(d.m2m_refresh_seconds),
     "with -s: announce subscriptions and publishing topics to the controller again this often, "
     "in seconds; under the controller's flow idle timeout (3600 s)")
    ("m2m-ethernet", po::value<std::string>(&m2m_ethernet)->default_value(m2m_ethernet),
     "with -s: Ethernet destination of multicast PUBLISHes: broadcast (as the original) or "
     "group (01:00:5e:..., RFC 1112)")
    ("proxy-protocol", po::value<std::string>(&proxy_protocol)->default_value(proxy_protocol),
     "behind a load balancer (HAProxy send-proxy / send-proxy-v2): off, v1, v2 or any (either, "
     "told apart by the first byte). When on, every connection must start with a PROXY header, "
     "whose source then names the client in logs and checks (docs/deployment.md)")
    ("proxy-protocol-timeout", po::value<double>(&out.proxy_protocol_timeout_seconds)
         ->default_value(d.proxy_protocol_timeout_seconds),
     "with --proxy-protocol: seconds a connection has to send its complete header")
    ("proxy-protocol-from", po::value<std::vector<std::string>>(&proxy_protocol_from)->composing(),
     "with --proxy-protocol: accept connections (and their headers) only from this address, the "
     "load balancer's; repeatable. Without it any client that reaches the port can claim any "
     "address")
    ("proxy-protocol-require-tls", po::bool_switch(&out.proxy_protocol_require_tls),
     "with --proxy-protocol: refuse connections whose header does not report TLS (v2 SSL TLV)")
    ("require-certificate", po::bool_switch(&out.require_certificate),
     "with --proxy-protocol: refuse connections whose header does not report a verified client "
     "certificate (implies --proxy-protocol-require-tls)")
    ("use-identity-as-username", po::bool_switch(&out.use_identity_as_username),
     "with --proxy-protocol: the verified client certificate's CN (HAProxy send-proxy-v2-ssl-cn) "
     "is the username, and no password is asked; with -u or --password-file it must be one of "
     "their users")
    ("metrics", po::value<std::string>(&out.metrics_listen),
     "serve GET /metrics (Prometheus text format, Mosquitto's metric names; docs/metrics.md) on "
     "this IPv4 ADDR:PORT, e.g. 10.0.0.1:9234 (a kernel socket: not the captured MQTT port)")
    ("influxdb", po::value<std::string>(&influx_url),
     "push the same figures to InfluxDB 1.x every --metrics-interval: "
     "http://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE (line protocol, measurement mqtt_proxy)")
    ("influxdb-database", po::value<std::string>(&influx_database),
     "with --influxdb: the database (instead of the URL's path)")
    ("influxdb-username", po::value<std::string>(&influx_username),
     "with --influxdb: the user (instead of the URL's)")
    ("influxdb-password", po::value<std::string>(&influx_password),
     "with --influxdb: the password (instead of the URL's)")
    ("metrics-interval", po::value<unsigned>(&out.metrics_interval_seconds)->default_value(d.metrics_interval_seconds),
     "with --influxdb: push this often, in seconds")
    ("sys-interval", po::value<unsigned>(&out.sys_interval_seconds)->default_value(d.sys_interval_seconds),
     "publish the $SYS/broker/... topics (Mosquitto's) to local subscribers this often, in "
     "seconds (0: never)")
    ("stats-interval", po::value<unsigned>(&out.stats_interval_seconds)->default_value(d.stats_interval_seconds),
     "log all counters this often, in seconds (0: only at exit)")
    ("plugin", po::value<std::vector<std::string>>()->composing(),
     "load a plugin (a shared object built against mqtt_proxy/plugin.h, docs/plugins.md); "
     "repeatable, called in the order given")
    ("plugin-opt", po::value<std::vector<std::string>>()->composing(),
     "NAME=VALUE for the --plugin given before it; repeatable")
    ("hook-budget", po::value<double>(&out.hook_budget_ms)->default_value(out.hook_budget_ms),
     "milliseconds a hook call may take; longer ones are logged and counted")
    ("upstream", po::value<std::string>(&upstream),
     "HOST[:PORT] (port 1883): upstream mode, mProxy's: stand in front of that broker instead of "
     "being one. Each client gets its own TCP connection to it, dialled once the plugins accepted "
     "its CONNECT, and its packets pass through the plugins both ways (docs/upstream.md). UDP "
     "peering (-F), MQTT2MULTICAST (-s), $SYS topics and the broker's own options (-u, "
     "--password-file, queue and session limits) are off: the upstream broker does that")
    ("upstream-tls", po::bool_switch(&out.upstream_tls),
     "with --upstream: TLS to the broker, its certificate verified against --upstream-cafile and "
     "HOST (mProxy's MPROXY_CLIENT_TLS)")
    ("upstream-cafile", po::value<std::string>(&out.upstream_cafile),
     "with --upstream-tls: the CA certificates (PEM) to verify the broker with (default: the "
     "system's)");
  // clang-format on

  po::variables_map vm;
  try {
    const po::parsed_options parsed = po::command_line_parser(argc, argv).options(desc).run();
    po::store(parsed, vm);
    po::notify(vm);
    // --plugin-opt belongs to the --plugin before it, which only the order of the command line
    // says (the variables map keeps each option's values apart).
    for (const auto& o : parsed.options) {
      if (o.string_key == "plugin") {
        for (const auto& v : o.value) out.plugins.push_back(hooks::PluginSpec{v, {}});
      } else if (o.string_key == "plugin-opt") {
        for (const auto& v : o.value) {
          const auto eq = v.find('=');
          if (out.plugins.empty()) {
            message = "--plugin-opt " + v + ": no --plugin before it";
            return ParseOutcome::Error;
          }
          if (eq == std::string::npos || eq == 0) {
            message = "--plugin-opt " + v + ": expected NAME=VALUE";
            return ParseOutcome::Error;
          }
          out.plugins.back().options.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        }
      }
    }
  } catch (const po::error& e) {
    message = e.what();
    return ParseOutcome::Error;
  }
  if (vm.count("help")) {
    std::ostringstream s;
    s << desc << "\nExample (the prototype's launch line):\n"
      << "  mqtt_proxy -t 1883 -u jorge -p passwd -F 192.168.1.104 -U 1883\n"
      << "With MQTT2MULTICAST (the original's mqtt_proxy_m2m.sh, without its -F 127.0.0.1):\n"
      << "  mqtt_proxy -t 1883 -u jorge -p passwd -U 1883 -s 192.168.1.100 -S 11883 -C 11882\n";
    message = s.str();
    return ParseOutcome::Exit0;
  }
  if (vm.count("version")) {
    message = std::string(kVersion) + "\n";
    return ParseOutcome::Exit0;
  }
  if (!to_port(tcp_port, out.tcp_port)) {
    message = "--tcpport must be 1..65535, not " + std::to_string(tcp_port);
    return ParseOutcome::Error;
  }
  if (ws_port > 65535) {
    message = "--ws-port must be 0..65535, not " + std::to_string(ws_port);
    return ParseOutcome::Error;
  }
  out.ws_port = static_cast<std::uint16_t>(ws_port);
  if (out.ws_port == out.tcp_port) {
    message = "--ws-port must differ from --tcpport (" + std::to_string(tcp_port) + ")";
    return ParseOutcome::Error;
  }
  if (out.ws_path.empty() || out.ws_path[0] != '/' ||
      std::any_of(out.ws_path.begin(), out.ws_path.end(), [](char ch) {
        return ch == '?' || ch == '#' || static_cast<unsigned char>(ch) <= 0x20 ||
               static_cast<unsigned char>(ch) >= 0x7f;
      })) {
    message = "--ws-path must be a path starting with / (no query, no spaces), not " + out.ws_path;
    return ParseOutcome::Error;
  }
  if (!to_port(udp_port, out.udp_port)) {
    message = "--udpport must be 1..65535, not " + std::to_string(udp_port);
    return ParseOutcome::Error;
  }
  if (!to_port(m2m_server_port, out.m2m_server_port)) {
    message = "--m2m-server-port must be 1..65535, not " + std::to_string(m2m_server_port);
    return ParseOutcome::Error;
  }
  if (!to_port(m2m_client_port, out.m2m_client_port)) {
    message = "--m2m-client-port must be 1..65535, not " + std::to_string(m2m_client_port);
    return ParseOutcome::Error;
  }
  if (!m2m_server.empty()) {
    out.m2m_server = wire::Ipv4Address::parse(m2m_server);
    if (!out.m2m_server) {
      message = "--m2m-server: not an IPv4 address: " + m2m_server;
      return ParseOutcome::Error;
    }
    if (out.m2m_client_port == out.udp_port) {
      message = "--m2m-client-port must differ from --udpport (both are bound)";
      return ParseOutcome::Error;
    }
  }
  if (m2m_ethernet != "broadcast" && m2m_ethernet != "group") {
    message = "--m2m-ethernet must be broadcast or group, not " + m2m_ethernet;
    return ParseOutcome::Error;
  }
  out.m2m_ethernet_broadcast = m2m_ethernet == "broadcast";
  if (out.m2m_refresh_seconds < 1) {
    message = "--m2m-refresh must be at least 1 second";
    return ParseOutcome::Error;
  }
  if (vm.count("username")) out.username = vm["username"].as<std::string>();
  if (vm.count("password")) out.password = vm["password"].as<std::string>();
  if (out.password && !out.username) {
    message = "--password needs --username";
    return ParseOutcome::Error;
  }
  if (!parse_addresses(forwarders, "--forwarder", out.peers, message)) return ParseOutcome::Error;
  for (const auto& f : unsigned_names) {
    const auto a = wire::Ipv4Address::parse(f);
    if (!a) {
      message = "--peer-unsigned: not an IPv4 address: " + f;
      return ParseOutcome::Error;
    }
    if (std::find(out.peers.begin(), out.peers.end(), *a) == out.peers.end()) {
      message = "--peer-unsigned " + f + " is not a peer (-F)";
      return ParseOutcome::Error;
    }
    out.unsigned_peers.push_back(*a);
  }
  if (!out.peer_key_file.empty() && extension == "off") {
    message =
        "--peer-key-file needs --peer-extension on (a signature names the peer's run, which "
        "only the extension's HELLO tells)";
    return ParseOutcome::Error;
  }
  if (!out.unsigned_peers.empty() && out.peer_key_file.empty()) {
    message = "--peer-unsigned needs --peer-key-file (without a key every peer is unsigned)";
    return ParseOutcome::Error;
  }
  const auto lvl = log::parse_level(level);
  if (!lvl) {
    message = "--log-level: unknown level " + level;
    return ParseOutcome::Error;
  }
  out.log_level = *lvl;
  if (verify != "on" && verify != "off") {
    message = "--verify-checksums must be on or off, not " + verify;
    return ParseOutcome::Error;
  }
  out.verify_checksums = verify == "on";
  out.firewall = !vm["no-firewall"].as<bool>();
  if (out.max_connections == 0) {
    message = "--max-connections must be at least 1";
    return ParseOutcome::Error;
  }
  if (out.tcp_rcv_buffer < 1024 || out.tcp_rcv_buffer > (1u << 30)) {
    message = "--tcp-rcv-buffer must be between 1024 and 1073741824";
    return ParseOutcome::Error;
  }
  if (out.max_packet_size < 2 || out.max_packet_size > 268435460) {
    message = "--max-packet-size must be 2..268435460 bytes";
    return ParseOutcome::Error;
  }
  if (capture_mib == 0 || capture_mib > 1024) {
    message = "--capture-buffer must be 1..1024 MiB";
    return ParseOutcome::Error;
  }
  out.capture_buffer_bytes = capture_mib * 1024 * 1024;
  if (batch == "auto") {
    out.peer_batch = peering::BatchPolicy::Auto;
  } else if (batch == "on") {
    out.peer_batch = peering::BatchPolicy::On;
  } else if (batch == "off") {
    out.peer_batch = peering::BatchPolicy::Off;
  } else {
    message = "--peer-batch must be auto, on or off, not " + batch;
    return ParseOutcome::Error;
  }
  if (extension != "on" && extension != "off") {
    message = "--peer-extension must be on or off, not " + extension;
    return ParseOutcome::Error;
  }
  out.peer_extension = extension == "on";
  if (overload == "backpressure") {
    out.overload = flow::Policy::Backpressure;
  } else if (overload == "drop") {
    out.overload = flow::Policy::Drop;
  } else {
    message = "--overload must be backpressure or drop, not " + overload;
    return ParseOutcome::Error;
  }
  if (proxy_protocol == "v1") {
    out.proxy_protocol = ingress::Mode::V1;
  } else if (proxy_protocol == "v2") {
    out.proxy_protocol = ingress::Mode::V2;
  } else if (proxy_protocol == "any") {
    out.proxy_protocol = ingress::Mode::Any;
  } else if (proxy_protocol != "off") {
    message = "--proxy-protocol must be off, v1, v2 or any, not " + proxy_protocol;
    return ParseOutcome::Error;
  }
  if (!parse_addresses(proxy_protocol_from, "--proxy-protocol-from", out.proxy_protocol_from,
                       message)) {
    return ParseOutcome::Error;
  }
  if (!out.proxy_protocol) {
    for (const auto* name : {"proxy-protocol-from", "proxy-protocol-require-tls",
                             "require-certificate", "use-identity-as-username"}) {
      const auto it = vm.find(name);
      if (it != vm.end() && !it->second.defaulted()) {
        message = std::string("--") + name + " needs --proxy-protocol (v1, v2 or any)";
        return ParseOutcome::Error;
      }
    }
  }
  if (out.proxy_protocol == ingress::Mode::V1 &&
      (out.proxy_protocol_require_tls || out.require_certificate || out.use_identity_as_username)) {
    message =
        "--proxy-protocol v1 cannot report TLS or a certificate: use v2 (HAProxy send-proxy-v2-ssl "
        "or send-proxy-v2-ssl-cn) with --proxy-protocol-require-tls, --require-certificate and "
        "--use-identity-as-username";
    return ParseOutcome::Error;
  }
  if (!(out.proxy_protocol_timeout_seconds >= 0.1 && out.proxy_protocol_timeout_seconds <= 3600)) {
    message = "--proxy-protocol-timeout must be between 0.1 and 3600 seconds";
    return ParseOutcome::Error;
  }
  if (!out.metrics_listen.empty() && !valid_listen_address(out.metrics_listen)) {
    message = "--metrics must be IPv4ADDR:PORT (port 1..65535), not " + out.metrics_listen;
    return ParseOutcome::Error;
  }
  if (!out.metrics_listen.empty()) {
    // The kernel never sees the captured ports: the firewall rule drops them before its TCP.
    const auto port = static_cast<unsigned>(
        std::stoul(out.metrics_listen.substr(out.metrics_listen.rfind(':') + 1)));
    if (port == out.tcp_port || port == out.ws_port) {
      message = "--metrics " + out.metrics_listen + ": the port is " +
                (port == out.tcp_port ? "--tcpport's" : "--ws-port's") +
                ", which the proxy captures (pick another, or move that one)";
      return ParseOutcome::Error;
    }
  }
  if (!influx_url.empty()) {
    auto target = telemetry::parse_influx_url(influx_url);
    if (!target) {
      message = "--influxdb: " + target.error();
      return ParseOutcome::Error;
    }
    if (!influx_database.empty()) target->database = influx_database;
    if (!influx_username.empty()) target->username = influx_username;
    if (!influx_password.empty()) target->password = influx_password;
    if (auto ok = telemetry::check_target(*target); !ok) {
      message = "--influxdb: " + ok.error();
      return ParseOutcome::Error;
    }
    out.influx = std::move(*target);
  } else {
    for (const auto* name : {"influxdb-database", "influxdb-username", "influxdb-password"}) {
      if (vm.count(name)) {
        message = std::string("--") + name + " needs --influxdb";
        return ParseOutcome::Error;
      }
    }
  }
  if (out.max_inflight > 65535) {
    message = "--max-inflight must be 0..65535";
    return ParseOutcome::Error;
  }
  if (out.max_keepalive < 1 || out.max_keepalive > 65535) {
    message = "--max-keepalive must be 1..65535 seconds";
    return ParseOutcome::Error;
  }
  if (out.metrics_interval_seconds < 1 || out.metrics_interval_seconds > 86400) {
    message = "--metrics-interval must be 1..86400 seconds";
    return ParseOutcome::Error;
  }
  if (out.sys_interval_seconds > 86400) {
    message = "--sys-interval must be 0..86400 seconds";
    return ParseOutcome::Error;
  }
  if (!(out.hook_budget_ms > 0 && out.hook_budget_ms <= 60000)) {
    message = "--hook-budget must be between 0 and 60000 milliseconds";
    return ParseOutcome::Error;
  }
  if (!(out.slow_grace_seconds >= 0.01 && out.slow_grace_seconds <= 3600)) {
    message = "--slow-grace must be between 0.01 and 3600 seconds";
    return ParseOutcome::Error;
  }
  if (upstream.empty()) {
    for (const auto* name : {"upstream-tls", "upstream-cafile"}) {
      if (vm.count(name) && !vm[name].defaulted()) {
        message = std::string("--") + name + " needs --upstream";
        return ParseOutcome::Error;
      }
    }
    return ParseOutcome::Run;
  }
  if (!parse_host_port(upstream, out.upstream_host, out.upstream_port)) {
    message =
        "--upstream must be HOST[:PORT] (IPv6 as [ADDR]:PORT, port 1..65535), not " + upstream;
    return ParseOutcome::Error;
  }
  if (vm.count("upstream-cafile") && !out.upstream_tls) {
    message = "--upstream-cafile needs --upstream-tls";
    return ParseOutcome::Error;
  }
  // What the upstream broker does is not done twice, and not half: a password file here would
  // look like it protected the broker while the relay never reads it.
  const std::pair<const char*, bool> broker_only[] = {
      {"--forwarder (-F): UDP peering", !out.peers.empty()},
      {"--m2m-server (-s): MQTT2MULTICAST", out.m2m_server.has_value()},
      {"--username (-u): the broker's own credentials", out.username.has_value()},
      {"--password-file: the broker's own credentials", !out.password_file.empty()},
      {"--peer-key-file: UDP peering", !out.peer_key_file.empty()},
      {"--use-identity-as-username: the broker's own credentials", out.use_identity_as_username},
  };
  for (const auto& [what, given] : broker_only) {
    if (given) {
      message = std::string(what) +
                " is off in upstream mode (--upstream): the upstream broker authenticates and "
                "routes";
      return ParseOutcome::Error;
    }
  }
  return ParseOutcome::Run;
}

bool parse_host_port(std::string_view s, std::string& host, std::uint16_t& port) {
  std::string_view h = s;
  std::string_view p;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    h = s.substr(1, close - 1);
    const auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
  } else {
    const auto colon = s.rfind(':');
    if (colon != std::string_view::npos) {
      if (s.find(':') != colon) return false;  // an IPv6 address needs its brackets
      h = s.substr(0, colon);
      p = s.substr(colon + 1);
      if (p.empty()) return false;
    }
  }
  if (h.empty() || std::any_of(h.begin(), h.end(), [](char ch) {
        return static_cast<unsigned char>(ch) <= 0x20 || static_cast<unsigned char>(ch) >= 0x7f ||
               ch == '/' || ch == '@';
      })) {
    return false;
  }
  if (!p.empty()) {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || end != p.data() + p.size() || !to_port(v, port)) return false;
  }
  host = std::string(h);
  return true;
}

}  // namespace mqtt_proxy::app
