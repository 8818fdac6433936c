// The delay element of the testbed (docs/testbed-delay.md): packets queued by the kernel
// (NFQUEUE) are held by id until their delay has passed, then accepted. The kernel here has no
// netem, so link delay is emulated at each sender's egress with a delay per destination address.
//
// Pure: no I/O, no clock. The caller (src/tools/delay_main.cpp) hands in the arrival time and
// issues the verdicts for the ids it gets back; tests drive it with virtual time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/util/time.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::delay {

// The largest delay accepted: an hour is far beyond any link being emulated, and the bound keeps
// every TimePoint sum far from overflow.
inline constexpr Duration kMaxDelay = std::chrono::hours(1);

// One-way delay by address, with a default for every other address. The address is the
// packet's destination where the element delays what a host sends, its source where it delays
// what a host receives (delay_main.cpp, --match).
class DelayTable {
 public:
  DelayTable() = default;
  explicit DelayTable(Duration default_delay) : default_(default_delay) {}

  // False when `dst` already has an entry (the table keeps the first).
  bool add(wire::Ipv4Address dst, Duration delay) { return entries_.emplace(dst, delay).second; }
  Duration delay_for(wire::Ipv4Address dst) const {
    const auto it = entries_.find(dst);
    return it == entries_.end() ? default_ : it->second;
  }
  Duration default_delay() const { return default_; }
  std::size_t size() const { return entries_.size(); }

 private:
  Duration default_{};
  std::unordered_map<wire::Ipv4Address, Duration> entries_;
};

struct DelayEntry {
  wire::Ipv4Address dst;
  Duration delay{};
};

// Milliseconds as given on the command line: digits, optionally '.' and up to six more digits
// (down to a nanosecond), at most kMaxDelay. Decimal, not floating point: "0.1" is exactly 100 us.
Result<Duration> parse_delay_ms(std::string_view text);
// "IP=MS", such as "192.168.1.103=12.5".
Result<DelayEntry> parse_delay_entry(std::string_view text);
// Every --delay entry over the --default-delay; an address given twice is an error (a typo that
// silently kept one of the two values would skew an experiment).
Result<DelayTable> parse_delay_table(const std::vector<std::string>& entries,
                                     Duration default_delay);

// The destination (or source) of a raw IPv4 packet (from its network header on: what NFQUEUE
// hands over). Nothing when it is not one: shorter than 20 bytes, version other than 4, header
// length below 20 or beyond the bytes given, or a total length shorter than the header. The bytes
// may be cut after the header (the delay element copies only that much).
std::optional<wire::Ipv4Address> ipv4_destination(ByteSpan packet);
std::optional<wire::Ipv4Address> ipv4_source(ByteSpan packet);

struct DelayStats {
  std::uint64_t packets = 0;     // offered to push()
  std::uint64_t released = 0;    // handed back by release_due() / release_all()
  std::uint64_t flushed = 0;     // of those, by release_all(): let go before their time
  std::uint64_t overflowed = 0;  // refused by push() because the line was full
  std::size_t max_held = 0;      // the most held at once
  // How late release_due() ran after a packet's release time (the caller's timer and scheduling;
  // release_all() does not count): the accuracy of the delay as far as the element can see.
  Duration late_total{};
  Duration late_max{};
};

// Packets held until their release time (arrival + the table's delay for their destination),
// handed back in release-time order; packets with the same release time in arrival order, so a
// flow to one destination is never reordered.
//
// At most `max_packets` are held. A packet beyond that is refused (push() returns false) and
// counted, and the caller drops it. Dropping rather than releasing it at once: netem, which this
// stands in for, tail-drops beyond its limit too, and a packet released undelayed would overtake
// the ones held before it, so an overloaded link would look faster and reorder its flows instead
// of losing packets, which the senders' congestion control can see and react to.
class DelayLine {
 public:
  DelayLine(DelayTable table, std::size_t max_packets)
      : table_(std::move(table)), max_packets_(max_packets) {}

  // Holds packet `id` for `dst` that arrived at `now`; false (and counted) when the line is full.
  bool push(std::uint32_t id, wire::Ipv4Address dst, TimePoint now) {
    return push_for(id, table_.delay_for(dst), now);
  }
  // The same with the delay given (a packet whose destination could not be read gets the
  // table's default).
  bool push_for(std::uint32_t id, Duration delay, TimePoint now);

  // The earliest release time held, if any: when the caller's timer should fire.
  std::optional<TimePoint> next_release() const;
  // Appends the ids whose release time is at or before `now`, in release order.
  void release_due(TimePoint now, std::vector<std::uint32_t>& out);
  // Appends every id held, in release order (at exit: everything still held is accepted).
  void release_all(std::vector<std::uint32_t>& out);

  std::size_t held() const { return heap_.size(); }
  std::size_t max_packets() const { return max_packets_; }
  const DelayTable& table() const { return table_; }
  const DelayStats& stats() const { return stats_; }

 private:
  struct Held {
    TimePoint release;
    std::uint64_t seq;  // arrival order: ties on `release` go first come, first served
    std::uint32_t id;
    friend bool operator>(const Held& a, const Held& b) {
      return a.release != b.release ? a.release > b.release : a.seq > b.seq;
    }
  };

  DelayTable table_;
  std::size_t max_packets_;
  std::uint64_t next_seq_ = 0;
  std::priority_queue<Held, std::vector<Held>, std::greater<>> heap_;
  DelayStats stats_;
};

}  // namespace mqtt_proxy::delay
