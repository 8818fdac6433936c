#include "mqtt_proxy/wire/address.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <charconv>

namespace mqtt_proxy::wire {

std::string MacAddress::to_string() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", octets[0], octets[1], octets[2],
                     octets[3], octets[4], octets[5]);
}

std::optional<Ipv4Address> Ipv4Address::parse(std::string_view s) {
  std::uint32_t value = 0;
  const char* p = s.data();
  const char* end = s.data() + s.size();
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
    if (p == end || *p < '0' || *p > '9') return std::nullopt;
    unsigned octet = 0;
    const char* start = p;
    auto [next, ec] = std::from_chars(p, end, octet);
    if (ec != std::errc{} || octet > 255 || next - start > 3) return std::nullopt;
    if (next - start > 1 && *start == '0') return std::nullopt;  // no octal-looking octets
    value = (value << 8) | octet;
    p = next;
  }
  if (p != end) return std::nullopt;
  return Ipv4Address{value};
}

std::string Ipv4Address::to_string() const {
  return fmt::format("{}", *this);
}

std::string format_ipv6(const Ipv6Address& a) {
  // inet_ntop is a pure function of its input: RFC 5952's zero compression and the IPv4-mapped
  // form.
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(AF_INET6, a.data(), buf, sizeof buf) == nullptr) return "?";
  return buf;
}

}  // namespace mqtt_proxy::wire
