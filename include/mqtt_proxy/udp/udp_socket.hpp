// The kernel UDP socket of the peer protocol. Being bound, it also keeps the kernel from answering
// peers with ICMP port unreachable.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/os/fd.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::udp {

class UdpSocket {
 public:
  UdpSocket() = default;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // `receives`: large buffers for a socket that is read (the peers'); without, the kernel's
  // defaults for one that is only bound (the MQTT2MULTICAST REQUEST port, which capture reads).
  Status open(std::uint16_t port, bool receives = true);
  int fd() const { return fd_.get(); }

  // Calls fn(source address, datagram) for every datagram waiting now; returns how many.
  template <typename Fn>
  int drain(Fn&& fn) {
    int total = 0;
    for (;;) {
      const auto n = static_cast<std::size_t>(std::max(receive_batch(), 0));
      for (std::size_t i = 0; i < n; ++i) fn(rx_src_[i], ByteSpan{rx_buf_[i].data(), rx_len_[i]});
      total += static_cast<int>(n);
      // A short batch emptied the queue; another call would only return EAGAIN.
      if (n < kBatch) return total;
    }
  }

  // Sends each datagram to its peer at `port`. Returns the number that failed.
  std::size_t send(const std::vector<peering::Datagram>& datagrams, std::uint16_t port);
  const std::string& last_error() const { return last_error_; }

 private:
  int receive_batch();

  static constexpr std::size_t kBatch = 32;
  os::Fd fd_;
  std::vector<Bytes> rx_buf_;
  std::vector<std::size_t> rx_len_;
  std::vector<wire::Ipv4Address> rx_src_;
  std::string last_error_;
};

// IPv4 multicast group memberships on one interface (IGMP reports follow), spread over as many
// sockets as the kernel's per-socket limit needs (net.ipv4.igmp_max_memberships, 20 by default).
// The sockets are bound to no port and receive nothing: they only make the host a member.
class GroupMemberships {
 public:
  explicit GroupMemberships(int ifindex) : ifindex_(ifindex) {}
  Status join(wire::Ipv4Address group);
  Status leave(wire::Ipv4Address group);
  std::size_t size() const { return where_.size(); }

 private:
  std::vector<os::Fd> sockets_;
  std::unordered_map<std::uint32_t, std::size_t> where_;  // group -> index into sockets_
  int ifindex_;
};

}  // namespace mqtt_proxy::udp
