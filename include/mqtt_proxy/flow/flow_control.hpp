// Backpressure inside one proxy: which sources (publishers) must stop because a sink (a destination
// of their messages) cannot take more.
//
// A split-TCP proxy cuts TCP's end-to-end flow control in two: a publisher's kernel sees only the
// proxy's receive window, not the subscriber's. FlowControl joins the halves again. A sink (a
// local subscriber's TCP send queue, or a peer proxy's credit-limited send queue) whose queue
// passes the high-water mark is *congested*; every source that queues a message for it from then on
// is *paused* (the broker stops reading its TCP stream, so its receive window closes; a peer is
// granted no more credit). When the sink's queue falls below the low-water mark its sources
// resume. A congested sink that makes no progress at all (nothing acknowledged, no credit
// answered) for the grace period is *stuck*: its sources resume and its messages are dropped and
// counted until it drains by making progress again (a queue emptied by dropping it, as a peer's
// is, does not count), so one stuck subscriber holds the others up for at most the grace.
//
// Pure: the owner reports queue levels and progress times and reads back who resumed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::flow {

// A source or a sink: a local client (its connection handle, never 0) or a peer (its index with
// the top bit set). kNone stands for "no source" (a will, a retained message sent on SUBSCRIBE).
using Id = std::uint64_t;
inline constexpr Id kNone = 0;
inline constexpr Id kPeerBit = Id{1} << 63;
inline Id client(std::uint64_t handle) {
  return handle;
}
inline Id peer(std::size_t index) {
  return kPeerBit | index;
}
inline bool is_peer(Id id) {
  return (id & kPeerBit) != 0;
}
inline std::size_t peer_index(Id id) {
  return static_cast<std::size_t>(id & ~kPeerBit);
}

enum class Policy {
  Backpressure,  // pause the sources of a congested sink (the default)
  Drop,          // never pause; a full queue drops (Mosquitto's max_queued_messages)
};

struct FlowConfig {
  Policy policy = Policy::Backpressure;
  std::size_t high_water = 512 * 1024;  // bytes queued for a sink beyond which it is congested
  std::size_t low_water = 256 * 1024;   // and below which it is not any more
  Duration grace = std::chrono::milliseconds(1500);  // congested without progress: stuck
};

class FlowControl {
 public:
  FlowControl(FlowConfig cfg, metrics::Counters& counters) : cfg_(cfg), counters_(counters) {}

  const FlowConfig& config() const { return cfg_; }

  // A message from `source` was queued for `sink`, whose queue now holds `queued` bytes.
  void on_queued(Id source, Id sink, std::size_t queued, TimePoint now);

  // A stuck sink's messages are dropped until its queue falls below the low-water mark.
  bool is_stuck(Id sink) const {
    if (congested_.empty()) return false;
    const auto it = congested_.find(sink);
    return it != congested_.end() && it->second.stuck;
  }
  bool is_paused(Id source) const { return !paused_.empty() && paused_.contains(source); }
  bool is_congested(Id sink) const { return congested_.contains(sink); }

  // The congested and stuck sinks, which the owner reports on with update() every turn.
  template <typename Fn>
  void for_each_watched(Fn&& fn) const {
    for (const auto& [id, s] : congested_) fn(id);
  }
  // `sink` now holds `queued` bytes and last made progress (bytes acknowledged, credit granted or
  // answered) at `last_progress`.
  void update(Id sink, std::size_t queued, TimePoint last_progress, TimePoint now);

  // The sink or source is gone (a closed connection): its waiters resume, it is forgotten.
  void remove(Id id);

  // When the earliest congested sink would turn stuck if it made no progress.
  std::optional<TimePoint> next_deadline() const;

  // Sources that resumed since the last call (the owner clears it).
  std::vector<Id>& resumed() { return resumed_; }

  std::size_t congested_count() const { return congested_.size(); }
  std::size_t paused_count() const { return paused_.size(); }

 private:
  struct Sink {
    bool stuck = false;
    TimePoint last_progress{};
    TimePoint stuck_at{};
    std::vector<Id> waiters;  // sources paused on this sink, each once
  };
  void release(Sink& s);

  FlowConfig cfg_;
  metrics::Counters& counters_;
  std::unordered_map<Id, Sink> congested_;        // congested or stuck sinks
  std::unordered_map<Id, std::uint32_t> paused_;  // source -> sinks it waits for
  std::vector<Id> resumed_;
};

}  // namespace mqtt_proxy::flow
