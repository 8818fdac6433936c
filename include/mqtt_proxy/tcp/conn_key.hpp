// The 4-tuple that names a connection, seen from the proxy: remote = the client, local = us.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::tcp {

struct ConnKey {
  wire::Ipv4Address remote_ip;
  std::uint16_t remote_port = 0;
  wire::Ipv4Address local_ip;
  std::uint16_t local_port = 0;

  friend bool operator==(const ConnKey&, const ConnKey&) = default;
  std::string remote_to_string() const {
    return remote_ip.to_string() + ":" + std::to_string(remote_port);
  }
  // 12 bytes in network order, the input to keyed hashes.
  std::array<std::byte, 12> bytes() const;
};

// A keyed hash so a client choosing ports cannot pile connections into one bucket.
struct ConnKeyHash {
  SipKey key{};
  std::size_t operator()(const ConnKey& k) const noexcept;
};

// The client end of a connection in log lines, "address:port", formatted only when a line is
// written (as addresses are).
struct RemoteEnd {
  wire::Ipv4Address ip;
  std::uint16_t port = 0;
};

}  // namespace mqtt_proxy::tcp

template <>
struct fmt::formatter<mqtt_proxy::tcp::RemoteEnd> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  template <typename Context>
  auto format(const mqtt_proxy::tcp::RemoteEnd& r, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}:{}", r.ip, r.port);
  }
};
