// MAC and IPv4 addresses as small value types.
#pragma once

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::wire {

struct MacAddress {
  std::array<std::uint8_t, 6> octets{};

  static MacAddress from(ByteSpan b, std::size_t off) {
    MacAddress m;
    for (std::size_t i = 0; i < 6; ++i) m.octets[i] = load_u8(b, off + i);
    return m;
  }
  bool is_broadcast() const {
    for (auto o : octets)
      if (o != 0xff) return false;
    return true;
  }
  std::string to_string() const;
  friend bool operator==(const MacAddress&, const MacAddress&) = default;
};

// Stored in host byte order; `value` 0xC0A80165 is 192.168.1.101.
struct Ipv4Address {
  std::uint32_t value = 0;

  static std::optional<Ipv4Address> parse(std::string_view dotted);
  std::string to_string() const;
  friend auto operator<=>(const Ipv4Address&, const Ipv4Address&) = default;
};

// Whether `a` and `b` share their first `prefix_len` bits (0..32): the same IPv4 network.
inline bool same_network(Ipv4Address a, Ipv4Address b, unsigned prefix_len) {
  const std::uint32_t mask = prefix_len == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix_len);
  return (a.value & mask) == (b.value & mask);
}

// One end of a TCP connection or a UDP flow, "address:port" in log lines.
struct SocketAddress {
  Ipv4Address ip;
  std::uint16_t port = 0;
  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;
};

// An IPv6 address in network byte order, as on the wire.
using Ipv6Address = std::array<std::uint8_t, 16>;

// RFC 5952's text form ("2001:db8::1"): what log lines and labels show.
std::string format_ipv6(const Ipv6Address& a);

// A client as the broker names it in logs, events and hooks: the TCP peer, or the source a PROXY
// protocol header reported for it, which may be an IPv6 address although the proxy's own TCP runs
// over IPv4.
struct ClientAddress {
  bool is_ipv6 = false;
  Ipv4Address ipv4;  // !is_ipv6
  Ipv6Address ipv6{};
  std::uint16_t port = 0;

  ClientAddress() = default;
  // Implicit: the TCP peer is what a client is called unless a PROXY header says otherwise.
  ClientAddress(SocketAddress a)
      : ipv4(a.ip), port(a.port) {}  // NOLINT(google-explicit-constructor)
  static ClientAddress v6(const Ipv6Address& a, std::uint16_t port) {
    ClientAddress c;
    c.is_ipv6 = true;
    c.ipv6 = a;
    c.port = port;
    return c;
  }
  friend bool operator==(const ClientAddress&, const ClientAddress&) = default;
};

}  // namespace mqtt_proxy::wire

template <>
struct std::hash<mqtt_proxy::wire::Ipv4Address> {
  std::size_t operator()(const mqtt_proxy::wire::Ipv4Address& a) const noexcept {
    return std::hash<std::uint32_t>{}(a.value);
  }
};

// Log lines take addresses as they are: formatted only when a line is actually written, so a
// disabled debug line on the per-message path costs nothing.
template <>
struct fmt::formatter<mqtt_proxy::wire::Ipv4Address> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  template <typename Context>
  auto format(const mqtt_proxy::wire::Ipv4Address& a, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}.{}.{}.{}", a.value >> 24, (a.value >> 16) & 0xff,
                          (a.value >> 8) & 0xff, a.value & 0xff);
  }
};

template <>
struct fmt::formatter<mqtt_proxy::wire::SocketAddress> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  template <typename Context>
  auto format(const mqtt_proxy::wire::SocketAddress& a, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}:{}", a.ip, a.port);
  }
};

template <>
struct fmt::formatter<mqtt_proxy::wire::ClientAddress> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  template <typename Context>
  auto format(const mqtt_proxy::wire::ClientAddress& a, Context& ctx) const {
    if (!a.is_ipv6) return fmt::format_to(ctx.out(), "{}:{}", a.ipv4, a.port);
    return fmt::format_to(ctx.out(), "[{}]:{}", mqtt_proxy::wire::format_ipv6(a.ipv6), a.port);
  }
};
