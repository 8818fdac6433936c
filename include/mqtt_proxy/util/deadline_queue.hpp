// A min-heap of (deadline, id) with lazy invalidation: owners keep their own current deadline and
// schedule() only when it moves earlier; a popped entry that no longer matches is skipped. That
// keeps per-packet timer updates O(1) for the common case (a deadline that moves later).
#pragma once

#include <functional>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy {

template <typename Id>
class DeadlineQueue {
 public:
  void push(TimePoint t, Id id) { heap_.emplace(t, id); }

  std::optional<TimePoint> earliest() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.top().first;
  }

  // Pops every entry due at `now` and calls fn(time, id) for it.
  template <typename Fn>
  void pop_due(TimePoint now, Fn&& fn) {
    while (!heap_.empty() && heap_.top().first <= now) {
      const auto [t, id] = heap_.top();
      heap_.pop();
      fn(t, id);
    }
  }

  std::size_t size() const { return heap_.size(); }

 private:
  using Entry = std::pair<TimePoint, Id>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
};

}  // namespace mqtt_proxy
