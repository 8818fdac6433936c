// The I/O the event loop owns: per interface a capture and a send socket, the peer protocol's UDP
// socket, the firewall rules that keep the kernel out of the MQTT port, and lo's sysctls when it is
// captured. Opened in that order,
// capture first, since it is what needs privileges.
#pragma once

#include <memory>
#include <vector>

#include "mqtt_proxy/app/interfaces.hpp"
#include "mqtt_proxy/app/options.hpp"
#include "mqtt_proxy/capture/pcap_capture.hpp"
#include "mqtt_proxy/firewall/firewall_guard.hpp"
#include "mqtt_proxy/firewall/loopback.hpp"
#include "mqtt_proxy/inject/packet_injector.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/udp/udp_socket.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::app {

struct Io {
  // The I/O's part of the counter list (inject_*, peer_datagrams_send_failed); declared first,
  // as the injector counts into it.
  metrics::Counters counters;
  std::vector<std::unique_ptr<capture::PcapCapture>> captures;  // by the core's interface index
  inject::PacketInjector injector{counters};
  udp::UdpSocket udp;
  // MQTT2MULTICAST (-s): the socket bound to the REQUEST port, and the group memberships on the
  // interface toward the controller.
  udp::UdpSocket m2m;
  std::unique_ptr<udp::GroupMemberships> groups;
  std::unique_ptr<firewall::FirewallGuard> firewall;     // null with --no-firewall
  std::unique_ptr<firewall::FirewallGuard> ws_firewall;  // --ws-port's rules, likewise
  std::unique_ptr<firewall::LoopbackSysctls> loopback;   // set while lo is captured

  // `counters` plus the captures' figures, read now.
  metrics::Counters snapshot() const;
};

Result<std::unique_ptr<Io>> open_io(const Options& opt, const std::vector<SystemInterface>& ifaces,
                                    const core::CoreConfig& core, log::Logger& log);

}  // namespace mqtt_proxy::app
