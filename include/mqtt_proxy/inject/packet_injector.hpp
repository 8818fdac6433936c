// Sends Ethernet frames through one AF_PACKET socket per interface, in batches (sendmmsg).
// AF_PACKET bypasses netfilter's OUTPUT chain and the routing table: the frames leave exactly as
// built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqtt_proxy/core/frame_batch.hpp"

namespace mqtt_proxy::inject {

struct InjectStats {
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_failed = 0;
  std::uint64_t send_calls = 0;
};

class PacketInjector {
 public:
  PacketInjector() = default;
  ~PacketInjector();
  PacketInjector(const PacketInjector&) = delete;
  PacketInjector& operator=(const PacketInjector&) = delete;

  // Opens a send-only socket for interface `ifindex`; its frames are named by the returned slot,
  // which is the order of calls (matching the core's interface indices). False on error.
  bool add_interface(int ifindex, std::string& error);

  // Sends every frame of the batch. Failures are counted (TCP retransmits what was lost) and the
  // last error is kept for the log.
  void send(const core::FrameBatch& batch);

  const InjectStats& stats() const { return stats_; }
  const std::string& last_error() const { return last_error_; }

 private:
  struct Iface {
    int fd = -1;
    int ifindex = 0;
  };
  std::vector<Iface> ifaces_;
  InjectStats stats_;
  std::string last_error_;
};

}  // namespace mqtt_proxy::inject
