#include "mqtt_proxy/app/io.hpp"

#include <algorithm>

namespace mqtt_proxy::app {

namespace {
constexpr std::string_view kLog = "app";

Result<std::unique_ptr<capture::PcapCapture>> open_capture(const Options& opt,
                                                           const SystemInterface& i,
                                                           const m2m::ClientConfig* m2m,
                                                           log::Logger& log) {
  auto offloads = enabled_offloads(i.name);
  const bool merges = std::find_if(offloads.begin(), offloads.end(), [](const std::string& o) {
                        return o == "generic-receive-offload" || o == "large-receive-offload";
                      }) != offloads.end();
  capture::CaptureConfig cc;
  cc.iface = i.name;
  cc.buffer_bytes = static_cast<int>(opt.capture_buffer_bytes);
  // Frames are at most MTU-sized unless this interface merges what it receives (GRO/LRO); a
  // sender's TSO super-frame would arrive truncated, be counted, and be retransmitted by TCP.
  cc.snaplen = merges ? capture::CaptureConfig{}.snaplen : static_cast<int>(i.mtu) + 14 + 4;
  cc.filter = opt.ws_port == 0 ? fmt::format("tcp dst port {} and (", opt.tcp_port)
                               : fmt::format("tcp and (dst port {} or dst port {}) and (",
                                             opt.tcp_port, opt.ws_port);
  for (std::size_t k = 0; k < i.addresses.size(); ++k) {
    cc.filter += fmt::format("{}dst host {}", k ? " or " : "", i.addresses[k]);
  }
  cc.filter += ")";
  if (m2m) {
    // MQTT2MULTICAST on this interface: multicast PUBLISHes on the data port (whatever the group:
    // a wildcard filter's messages come to their topics' groups), the controller's REPLYs and its
    // ARP answers.
    cc.filter = fmt::format(
        "({}) or (udp and dst net 224.0.0.0/4 and dst port {}) or (udp and src host {} and src "
        "port {} and dst port {}) or (arp src host {})",
        cc.filter, m2m->data_port, m2m->server, m2m->server_port, m2m->client_port, m2m->server);
  }
  auto c = capture::PcapCapture::open(cc);
  if (!c) return c;
  // GSO alone is harmless here: without transmit checksum offload, segments are checksummed in
  // software before they leave the sender.
  std::erase(offloads, "generic-segmentation-offload");
  if (!offloads.empty()) {
    std::string names;
    for (const auto& o : offloads) names += (names.empty() ? "" : ", ") + o;
    log.warn(kLog,
             "{}: offloads on ({}): captured checksums may be partial and frames larger than the "
             "MTU; for testbeds turn them off (ethtool -K {} tx off tso off gso off gro off)",
             i.name, names, i.name);
  }
  log.debug(kLog, "{}: capture snap length {}, ring {} MiB, filter \"{}\"", i.name, cc.snaplen,
            opt.capture_buffer_bytes >> 20, cc.filter);
  return c;
}

}  // namespace

metrics::Counters Io::snapshot() const {
  metrics::Counters c = counters;
  for (const auto& cap : captures) cap->add_counters(c);
  return c;
}

Result<std::unique_ptr<Io>> open_io(const Options& opt, const std::vector<SystemInterface>& ifaces,
                                    const core::CoreConfig& core, log::Logger& log) {
  auto io = std::make_unique<Io>();
  for (std::size_t k = 0; k < ifaces.size(); ++k) {
    const auto& i = ifaces[k];
    const m2m::ClientConfig* m2m = core.m2m && core.m2m_iface == k ? &*core.m2m : nullptr;
    auto c = open_capture(opt, i, m2m, log);
    if (!c) return Error{c.error()};
    io->captures.push_back(std::move(*c));
    if (auto s = io->injector.add_interface(i.ifindex); !s) {
      return Error{"cannot send on " + i.name + ": " + s.error()};
    }
  }
  if (auto s = io->udp.open(opt.udp_port); !s) return Error{s.error()};
  if (core.m2m) {
    // Bound so that the kernel answers the controller's REPLYs with no ICMP port unreachable;
    // capture reads them, this socket never (so it has the kernel's small default buffer).
    if (auto s = io->m2m.open(core.m2m->client_port, false); !s) {
      return Error{"--m2m-client-port: " + s.error()};
    }
    io->groups = std::make_unique<udp::GroupMemberships>(ifaces[core.m2m_iface].ifindex);
  }
  if (std::any_of(ifaces.begin(), ifaces.end(), [](const auto& i) { return i.loopback; })) {
    auto lo = firewall::LoopbackSysctls::apply(log);
    if (!lo) return Error{"-i lo: " + lo.error()};
    io->loopback = std::move(*lo);
  }
  if (opt.firewall) {
    std::vector<std::string> names;
    for (const auto& i : ifaces) names.push_back(i.name);
    auto guard = firewall::FirewallGuard::install(names, opt.tcp_port, log);
    if (!guard) return Error{guard.error()};
    io->firewall = std::move(*guard);
    if (opt.ws_port != 0) {
      auto ws = firewall::FirewallGuard::install(names, opt.ws_port, log);
      if (!ws) return Error{"--ws-port: " + ws.error()};
      io->ws_firewall = std::move(*ws);
    }
  }
  return io;
}

}  // namespace mqtt_proxy::app
