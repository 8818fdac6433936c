#include "mqtt_proxy/delay/delay_line.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace mqtt_proxy::delay {

namespace {

constexpr std::size_t kMaxFractionDigits = 6;  // milliseconds to nanoseconds
constexpr std::size_t kMaxShown = 64;

// The user's text inside an error line: cut, and with control bytes escaped, because the line goes
// to a terminal and the text may be anything (a fuzzer's input, a pasted line with a CR).
std::string shown(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, kMaxShown)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return "\"" + out + "\"";
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

Result<Duration> parse_delay_ms(std::string_view text) {
  const auto bad = [&] {
    return Error{fmt::format("{} is not a delay in milliseconds (such as 10 or 2.5)", shown(text))};
  };
  const std::int64_t max_ms = std::chrono::duration_cast<milliseconds>(kMaxDelay).count();
  const auto too_large = [&] {
    return Error{fmt::format("{} ms is more than the maximum of {} ms", shown(text), max_ms)};
  };
  std::size_t i = 0;
  std::int64_t whole = 0;
  if (i == text.size() || !is_digit(text[i])) return bad();
  for (; i < text.size() && is_digit(text[i]); ++i) {
    whole = whole * 10 + (text[i] - '0');
    if (whole > max_ms) return too_large();
  }
  std::int64_t fraction_ns = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    std::size_t digits = 0;
    std::int64_t scale = 100000;  // the first fraction digit is 100 us
    for (; i < text.size() && is_digit(text[i]); ++i, ++digits) {
      if (digits == kMaxFractionDigits) {
        return Error{fmt::format("{}: more than {} decimals (finer than a nanosecond)", shown(text),
                                 kMaxFractionDigits)};
      }
      fraction_ns += (text[i] - '0') * scale;
      scale /= 10;
    }
    if (digits == 0) return bad();
  }
  if (i != text.size()) return bad();
  const Duration d = milliseconds(whole) + std::chrono::nanoseconds(fraction_ns);
  if (d > kMaxDelay) return too_large();
  return d;
}

Result<DelayEntry> parse_delay_entry(std::string_view text) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos) {
    return Error{fmt::format("{}: expected IP=MS, such as 192.168.1.103=10", shown(text))};
  }
  const auto ip_text = text.substr(0, eq);
  const auto dst = wire::Ipv4Address::parse(ip_text);
  if (!dst) {
    return Error{fmt::format("{}: {} is not an IPv4 address", shown(text), shown(ip_text))};
  }
  auto ms = parse_delay_ms(text.substr(eq + 1));
  if (!ms) return Error{fmt::format("{}: {}", shown(text), ms.error())};
  return DelayEntry{*dst, *ms};
}

Result<DelayTable> parse_delay_table(const std::vector<std::string>& entries,
                                     Duration default_delay) {
  if (default_delay < Duration::zero() || default_delay > kMaxDelay) {
    return Error{"the default delay is outside 0 to 1 hour"};
  }
  DelayTable table(default_delay);
  for (const auto& text : entries) {
    auto entry = parse_delay_entry(text);
    if (!entry) return Error{entry.error()};
    if (!table.add(entry->dst, entry->delay)) {
      return Error{fmt::format("{}: {} is given twice", shown(text), entry->dst)};
    }
  }
  return table;
}

namespace {

// Offset 12 is the source address, 16 the destination (RFC 791 3.1).
std::optional<wire::Ipv4Address> ipv4_address_at(ByteSpan packet, std::size_t offset) {
  constexpr std::size_t kMinHeader = 20;
  if (packet.size() < kMinHeader) return std::nullopt;
  const unsigned first = load_u8(packet, 0);
  if (first >> 4 != 4) return std::nullopt;
  const std::size_t header = std::size_t{first & 0x0fu} * 4;
  if (header < kMinHeader || header > packet.size()) return std::nullopt;
  if (load_be16(packet, 2) < header) return std::nullopt;  // total length
  return wire::Ipv4Address{load_be32(packet, offset)};
}

}  // namespace

std::optional<wire::Ipv4Address> ipv4_destination(ByteSpan packet) {
  return ipv4_address_at(packet, 16);
}

std::optional<wire::Ipv4Address> ipv4_source(ByteSpan packet) {
  return ipv4_address_at(packet, 12);
}

bool DelayLine::push_for(std::uint32_t id, Duration delay, TimePoint now) {
  ++stats_.packets;
  if (heap_.size() >= max_packets_) {
    ++stats_.overflowed;
    return false;
  }
  heap_.push(Held{now + std::clamp(delay, Duration::zero(), kMaxDelay), next_seq_++, id});
  stats_.max_held = std::max(stats_.max_held, heap_.size());
  return true;
}

std::optional<TimePoint> DelayLine::next_release() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.top().release;
}

void DelayLine::release_due(TimePoint now, std::vector<std::uint32_t>& out) {
  while (!heap_.empty() && heap_.top().release <= now) {
    const Duration late = now - heap_.top().release;
    stats_.late_total += late;
    stats_.late_max = std::max(stats_.late_max, late);
    out.push_back(heap_.top().id);
    heap_.pop();
    ++stats_.released;
  }
}

void DelayLine::release_all(std::vector<std::uint32_t>& out) {
  while (!heap_.empty()) {
    out.push_back(heap_.top().id);
    heap_.pop();
    ++stats_.released;
    ++stats_.flushed;
  }
}

}  // namespace mqtt_proxy::delay
