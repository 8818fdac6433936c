#include "mqtt_proxy/util/bytes.hpp"

#include <cstdlib>

namespace mqtt_proxy {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<Bytes> parse_hex(std::string_view hex) {
  Bytes out;
  int high = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n' || c == '\t') continue;
    const int v = hex_value(c);
    if (v < 0) return std::nullopt;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(std::byte(static_cast<unsigned>(high * 16 + v)));
      high = -1;
    }
  }
  if (high >= 0) return std::nullopt;
  return out;
}

Bytes from_hex(std::string_view hex) {
  auto b = parse_hex(hex);
  if (!b) std::abort();
  return std::move(*b);
}

std::string to_hex(ByteSpan b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 3);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i) s.push_back(' ');
    const auto v = std::to_integer<unsigned>(b[i]);
    s.push_back(kDigits[v >> 4]);
    s.push_back(kDigits[v & 0xf]);
  }
  return s;
}

}  // namespace mqtt_proxy
