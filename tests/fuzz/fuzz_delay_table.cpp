// Fuzzes the delay element's parsers (include/mqtt_proxy/delay/delay_line.hpp): the input, split
// at newlines, is a command line's --delay entries (a first line that is a delay: its
// --default-delay); the whole input is also a packet's IPv4 header. A table that parses then drives
// a DelayLine with a timeline read from the same bytes, and what it releases must come out in
// release-time order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.hpp"
#include "mqtt_proxy/delay/delay_line.hpp"

using namespace mqtt_proxy;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const ByteSpan bytes{reinterpret_cast<const std::byte*>(data), size};

  if (const auto dst = delay::ipv4_destination(bytes)) {
    check(size >= 20 && (data[0] >> 4) == 4);
    check(dst->value == load_be32(bytes, 16));
    check(delay::ipv4_source(bytes) == wire::Ipv4Address{load_be32(bytes, 12)});
  } else {
    check(!delay::ipv4_source(bytes));
  }

  // Lines, empty ones skipped; a first line that is a delay is the default, the rest entries.
  std::vector<std::string> lines;
  for (std::size_t at = 0; at <= text.size();) {
    const auto nl = text.find('\n', at);
    const auto end = nl == std::string_view::npos ? text.size() : nl;
    if (end > at) lines.emplace_back(text.substr(at, end - at));
    at = end + 1;
  }
  Duration default_delay{};
  if (!lines.empty()) {
    if (const auto first = delay::parse_delay_ms(lines.front())) {
      check(*first >= Duration::zero() && *first <= delay::kMaxDelay);
      default_delay = *first;
      lines.erase(lines.begin());
    }
  }
  for (const auto& line : lines) {
    const auto entry = delay::parse_delay_entry(line);
    if (entry) {
      check(entry->delay >= Duration::zero() && entry->delay <= delay::kMaxDelay);
    } else {
      check(!entry.error().empty());
    }
  }
  const auto table = delay::parse_delay_table(lines, default_delay);
  if (!table) return 0;
  check(table->default_delay() == default_delay && table->size() == lines.size());
  for (const auto& line : lines) {
    const auto entry = delay::parse_delay_entry(line);
    check(entry && table->delay_for(entry->dst) == entry->delay);
  }

  // The timeline: [advance ms][last octet of the destination] per two bytes, 192.168.1.x, with
  // a release step after each; a small bound so overflow is reached too.
  delay::DelayLine line(*table, 8);
  TimePoint now{};
  std::vector<std::uint32_t> out;
  std::vector<TimePoint> release_of;
  for (std::size_t i = 0; i + 1 < size; i += 2) {
    now += milliseconds(data[i]);
    const wire::Ipv4Address dst{0xC0A80100u | data[i + 1]};
    const auto id = static_cast<std::uint32_t>(release_of.size());
    release_of.push_back(now + table->delay_for(dst));
    const bool held = line.push(id, dst, now);
    check(line.held() <= 8 && (held || line.held() == 8));
    out.clear();
    line.release_due(now, out);
    for (const auto released : out) check(release_of[released] <= now);
  }
  out.clear();
  line.release_all(out);
  for (std::size_t i = 1; i < out.size(); ++i) {
    const auto a = release_of[out[i - 1]];
    const auto b = release_of[out[i]];
    check(a < b || (a == b && out[i - 1] < out[i]));
  }
  const auto& s = line.stats();
  check(s.released + s.overflowed == s.packets && line.held() == 0);
  return 0;
}
