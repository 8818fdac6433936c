#include "mqtt_proxy/app/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "mqtt_proxy/auth/peer_key_file.hpp"

namespace mqtt_proxy::app {

namespace {

Result<std::shared_ptr<const auth::PasswordFile>> read_password_file(const std::string& path) {
  if (path.empty()) return std::shared_ptr<const auth::PasswordFile>();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return Error{"cannot read --password-file " + path + ": " + std::strerror(errno)};
  auto parsed = auth::PasswordFile::parse(text.str());
  if (!parsed) return Error{"--password-file " + path + ": " + parsed.error()};
  return std::make_shared<const auth::PasswordFile>(std::move(*parsed));
}

Result<std::vector<SystemInterface>> choose_interfaces(const std::vector<std::string>& names) {
  auto all = list_interfaces();
  if (!all) return Error{all.error()};
  std::vector<SystemInterface> chosen;
  if (names.empty()) {
    for (const auto& i : *all) {
      if (i.up && !i.loopback && i.ethernet && !i.addresses.empty()) chosen.push_back(i);
    }
    if (chosen.empty()) return Error{"no up, non-loopback interface with an IPv4 address; use -i"};
    return chosen;
  }
  for (const auto& name : names) {
    auto it = std::find_if(all->begin(), all->end(), [&](const auto& i) { return i.name == name; });
    if (it == all->end()) return Error{"no such interface: " + name};
    if (it->addresses.empty()) return Error{"interface " + name + " has no IPv4 address"};
    if (!it->ethernet) return Error{"interface " + name + " is not an Ethernet interface"};
    chosen.push_back(*it);
  }
  return chosen;
}

// The source address the kernel would use toward `peer`: what the peer sees as ours, and so what
// a signature covers (a UDP connect() sends nothing).
Result<wire::Ipv4Address> source_address_toward(wire::Ipv4Address peer) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket: ") + std::strerror(errno)};
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(peer.value);
  sockaddr_in from{};
  socklen_t len = sizeof(from);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&from), &len) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) return Error{fmt::format("no route to peer {}: {}", peer, std::strerror(saved))};
  return wire::Ipv4Address{ntohl(from.sin_addr.s_addr)};
}

}  // namespace

Result<ProxyConfig> build_config(const Options& opt) {
  ProxyConfig pc;
  auto password_file = read_password_file(opt.password_file);
  if (!password_file) return Error{password_file.error()};
  pc.password_file = *password_file;
  auto interfaces = choose_interfaces(opt.ifaces);
  if (!interfaces) return Error{interfaces.error()};
  pc.interfaces = std::move(*interfaces);

  core::CoreConfig& cfg = pc.core;
  cfg.tcp_port = opt.tcp_port;
  cfg.ws_port = opt.ws_port;
  cfg.ws.path = opt.ws_path;
  // A frame may carry the largest packet and a few small ones beside it (MQTT 6.0).
  cfg.ws.max_frame_payload = opt.max_packet_size + 64 * 1024;
  cfg.ws.max_message = cfg.ws.max_frame_payload;
  cfg.max_connections = opt.max_connections;
  cfg.max_half_open = opt.max_half_open;
  cfg.tcp.rcv_buffer = opt.tcp_rcv_buffer;
  cfg.tcp.user_timeout = std::chrono::seconds(opt.stall_timeout_seconds);
  cfg.verify_checksums = opt.verify_checksums;
  if (::getrandom(cfg.secret.data(), cfg.secret.size(), 0) !=
      static_cast<ssize_t>(cfg.secret.size())) {
    return Error{std::string("getrandom: ") + std::strerror(errno)};
  }
  cfg.broker.username = opt.username;
  cfg.broker.password = opt.password;
  cfg.broker.password_file = pc.password_file;
  cfg.broker.allow_anonymous = opt.allow_anonymous;
  cfg.broker.use_identity_as_username = opt.use_identity_as_username;
  cfg.broker.max_packet_size = opt.max_packet_size;
  cfg.broker.max_queued_bytes = opt.max_queued_bytes;
  cfg.broker.max_retained_messages = opt.max_retained;
  cfg.broker.session_expiry = std::chrono::seconds(opt.session_expiry_seconds);
  cfg.broker.max_keepalive = static_cast<std::uint16_t>(opt.max_keepalive);
  cfg.broker.max_inflight = static_cast<std::uint16_t>(opt.max_inflight);
  cfg.broker.max_queued_messages = opt.max_queued_messages;
  cfg.broker.queue_qos0 = opt.queue_qos0;
  cfg.peering.peers = opt.peers;
  if (!opt.peer_key_file.empty()) {
    auto keys = auth::read_peer_key_file(opt.peer_key_file);
    if (!keys) return Error{keys.error()};
    if (!peering::auth::Keyring(*keys).usable()) {
      return Error{"--peer-key-file: OpenSSL cannot compute HMAC-SHA256 here"};
    }
    cfg.peering.keys = std::move(*keys);
    cfg.peering.unsigned_peers = opt.unsigned_peers;
    for (const auto& peer : opt.peers) {
      const bool unsigned_peer = std::find(opt.unsigned_peers.begin(), opt.unsigned_peers.end(),
                                           peer) != opt.unsigned_peers.end();
      if (unsigned_peer) {
        cfg.peering.local_addresses.push_back(wire::Ipv4Address{});  // not signed for
        continue;
      }
      auto local = source_address_toward(peer);
      if (!local) return Error{local.error()};
      cfg.peering.local_addresses.push_back(*local);
    }
    // Signatures count up from the wall clock, so a restarted proxy's are above its last run's.
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    cfg.peering.auth_seq_start = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
                                 static_cast<std::uint64_t>(ts.tv_nsec);
  }
  cfg.peering.refresh_interval = std::chrono::seconds(opt.peer_refresh_seconds);
  cfg.peering.expiry_refreshes = opt.peer_expiry_refreshes;
  for (const auto& i : pc.interfaces) {
    cfg.interfaces.push_back(core::InterfaceInfo{i.name, i.mac, i.addresses, i.mtu});
  }
  cfg.peering.batch = opt.peer_batch;
  // One IPv4 packet: a batch that needs fragmenting is lost whole when any fragment is.
  const auto mtu = std::min_element(pc.interfaces.begin(), pc.interfaces.end(),
                                    [](const auto& a, const auto& b) { return a.mtu < b.mtu; })
                       ->mtu;
  cfg.peering.batch_bytes = mtu > 28 ? mtu - 28 : 0;
  cfg.peering.extension = opt.peer_extension;
  // The epoch tells peers this run from the one before it (docs/peering.md); never 0.
  do {
    if (::getrandom(&cfg.peering.epoch, sizeof(cfg.peering.epoch), 0) !=
        static_cast<ssize_t>(sizeof(cfg.peering.epoch))) {
      return Error{std::string("getrandom: ") + std::strerror(errno)};
    }
  } while (cfg.peering.epoch == 0);
  if (opt.proxy_protocol) {
    ingress::ProxyProtocolPolicy pp;
    pp.mode = *opt.proxy_protocol;
    pp.header_timeout = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(opt.proxy_protocol_timeout_seconds));
    pp.trusted_sources = opt.proxy_protocol_from;
    pp.require_tls = opt.proxy_protocol_require_tls || opt.require_certificate;
    pp.require_certificate = opt.require_certificate;
    cfg.proxy_protocol = pp;
  }
  if (opt.m2m_server) {
    // The interface toward the controller: the first whose network holds its address.
    std::optional<std::size_t> chosen;
    m2m::ClientConfig m;
    for (std::size_t k = 0; k < pc.interfaces.size() && !chosen; ++k) {
      const auto& i = pc.interfaces[k];
      for (std::size_t a = 0; a < i.addresses.size(); ++a) {
        const unsigned len = a < i.prefix_lengths.size() ? i.prefix_lengths[a] : 32;
        if (wire::same_network(i.addresses[a], *opt.m2m_server, len)) {
          chosen = k;
          m.address = i.addresses[a];
          m.prefix_len = len;
          break;
        }
      }
    }
    if (!chosen) {
      return Error{fmt::format(
          "--m2m-server {}: no interface served (-i) is on its network; the controller's address "
          "must be on the SDN segment",
          *opt.m2m_server)};
    }
    const auto& i = pc.interfaces[*chosen];
    m.server = *opt.m2m_server;
    m.server_port = opt.m2m_server_port;
    m.client_port = opt.m2m_client_port;
    m.data_port = opt.udp_port;
    m.mac = i.mac;
    m.max_payload = i.mtu > 28 ? i.mtu - 28 : 0;
    m.refresh = std::chrono::seconds(opt.m2m_refresh_seconds);
    m.ethernet_broadcast = opt.m2m_ethernet_broadcast;
    if (::getrandom(m.secret.data(), m.secret.size(), 0) != static_cast<ssize_t>(m.secret.size())) {
      return Error{std::string("getrandom: ") + std::strerror(errno)};
    }
    cfg.m2m = m;
    cfg.m2m_iface = *chosen;
  }
  cfg.flow.policy = opt.overload;
  cfg.flow.grace =
      std::chrono::duration_cast<Duration>(std::chrono::duration<double>(opt.slow_grace_seconds));
  // The thresholds follow the hard limit: congested at an eighth of it, resumed at a sixteenth.
  cfg.flow.high_water = std::max<std::size_t>(opt.max_queued_bytes / 8, 4096);
  cfg.flow.low_water = cfg.flow.high_water / 2;
  cfg.peering.max_pending_bytes = opt.max_queued_bytes;
  // A paused peer may still send what its credit allows: with the high-water mark that stays under
  // the hard limit (an eighth plus a quarter of it), so backpressure, not the limit, holds.
  cfg.peering.credit_window = static_cast<std::uint32_t>(std::min<std::size_t>(
      cfg.peering.credit_window, std::max<std::size_t>(opt.max_queued_bytes / 4, 16 * 1024)));
  // A frame waits in the receive buffer only if half of it can hold the frame.
  cfg.broker.max_unread_frame =
      std::min<std::size_t>(cfg.broker.max_unread_frame, opt.tcp_rcv_buffer / 2);
  if (!opt.upstream_host.empty()) {
    upstream::SessionsConfig u;
    u.relay.max_packet_size = opt.max_packet_size;
    u.connect_timeout = cfg.broker.connect_timeout;
    u.max_unread_frame = cfg.broker.max_unread_frame;
    cfg.upstream = u;  // the hooks are added with the plugins
  }
  return pc;
}

std::string proxy_protocol_summary(const ingress::ProxyProtocolPolicy& p) {
  const char* mode = p.mode == ingress::Mode::V1   ? "v1"
                     : p.mode == ingress::Mode::V2 ? "v2"
                                                   : "any";
  std::string from;
  for (const auto& a : p.trusted_sources) from += (from.empty() ? "" : ",") + a.to_string();
  return fmt::format(" behind PROXY {} from {}{}", mode, from.empty() ? "anywhere" : from,
                     p.require_certificate ? ", client certificate required"
                     : p.require_tls       ? ", TLS required"
                                           : "");
}

std::string auth_mode(const Options& opt, const auth::PasswordFile* file) {
  if (!opt.upstream_host.empty()) return "the upstream broker's";
  if (!opt.username && !file) return "anonymous";
  std::string m = "required (";
  if (opt.username) m += "-u";
  if (file) {
    m += std::string(opt.username ? ", " : "") + std::to_string(file->size()) + " users in " +
         opt.password_file;
  }
  m += opt.allow_anonymous ? "; anonymous allowed)" : ")";
  return m;
}

}  // namespace mqtt_proxy::app
