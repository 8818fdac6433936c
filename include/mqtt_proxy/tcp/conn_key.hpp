// The 4-tuple that names a connection, seen from the proxy: remote = the client, local = us.
#pragma once

#include <array>
#include <cstdint>

#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::tcp {

struct ConnKey {
  wire::Ipv4Address remote_ip;
  std::uint16_t remote_port = 0;
  wire::Ipv4Address local_ip;
  std::uint16_t local_port = 0;

  friend bool operator==(const ConnKey&, const ConnKey&) = default;
  wire::SocketAddress remote() const { return {remote_ip, remote_port}; }
  // 12 bytes in network order, the input to keyed hashes.
  std::array<std::byte, 12> bytes() const;
};

// A keyed hash so a client choosing ports cannot pile connections into one bucket.
struct ConnKeyHash {
  SipKey key{};
  std::size_t operator()(const ConnKey& k) const noexcept;
};

}  // namespace mqtt_proxy::tcp
