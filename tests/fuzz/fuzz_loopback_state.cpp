// Fuzzes the parser of lo's sysctl state file (/run/mqtt_proxy/lo-net-*): any input either is
// refused or yields a state that renders to text which parses back to the same state. Any broken
// invariant traps.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_target.hpp"
#include "mqtt_proxy/firewall/loopback.hpp"

using namespace mqtt_proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);  // NOLINT: bytes as text
  const auto s = firewall::parse_loopback_state(text);
  if (!s) return 0;
  const auto again = firewall::parse_loopback_state(firewall::render_loopback_state(*s));
  if (!again || !(*again == *s)) __builtin_trap();
  for (const auto pid : s->owners) {
    if (pid <= 0) __builtin_trap();
  }
  return 0;
}
