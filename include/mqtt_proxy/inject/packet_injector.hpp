// Sends Ethernet frames through one AF_PACKET socket per interface, in batches (sendmmsg).
// AF_PACKET bypasses netfilter's OUTPUT chain and the routing table: the frames leave exactly as
// built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqtt_proxy/core/frame_batch.hpp"
#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/os/fd.hpp"
#include "mqtt_proxy/util/result.hpp"

namespace mqtt_proxy::inject {

class PacketInjector {
 public:
  // Counts into `counters` (its inject_* fields), which must outlive the injector.
  explicit PacketInjector(metrics::Counters& counters) : counters_(counters) {}
  PacketInjector(const PacketInjector&) = delete;
  PacketInjector& operator=(const PacketInjector&) = delete;

  // Opens a send-only socket for interface `ifindex`; its frames are named by the returned slot,
  // which is the order of calls (matching the core's interface indices).
  Status add_interface(int ifindex);

  // Sends every frame of the batch. Failures are counted (TCP retransmits what was lost) and the
  // last error is kept for the log.
  void send(const core::FrameBatch& batch);

  const std::string& last_error() const { return last_error_; }

 private:
  struct Iface {
    os::Fd fd;
    int ifindex = 0;
  };
  std::vector<Iface> ifaces_;
  metrics::Counters& counters_;
  std::string last_error_;
};

}  // namespace mqtt_proxy::inject
