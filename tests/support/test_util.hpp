// Helpers shared by the unit tests.
#pragma once

#include <string>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/siphash.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::test {

inline Bytes bytes(std::string_view hex) {
  return from_hex(hex);
}
inline Bytes text(std::string_view s) {
  const auto b = as_bytes(s);
  return Bytes(b.begin(), b.end());
}
inline std::string str(ByteSpan b) {
  return std::string(as_chars(b));
}

// The login the brokers of the tests accept (test_core_config(), BrokerFixture) and the client
// packets use by default.
inline constexpr std::string_view kUsername = "jorge";
inline constexpr std::string_view kPassword = "passwd";

// Virtual time starts well away from zero so that "now - x" never underflows in tests.
inline TimePoint t0() {
  return TimePoint{std::chrono::hours(1)};
}

// A key for the keyed hashes (ISNs, SYN cookies) that differs with `seed`.
inline SipKey test_secret(std::uint8_t seed) {
  SipKey k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(seed + i);
  return k;
}

}  // namespace mqtt_proxy::test
