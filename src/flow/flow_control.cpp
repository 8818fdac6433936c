#include "mqtt_proxy/flow/flow_control.hpp"

#include <algorithm>

namespace mqtt_proxy::flow {

void FlowControl::on_queued(Id source, Id sink, std::size_t queued, TimePoint now) {
  if (cfg_.policy == Policy::Drop) return;
  auto it = congested_.find(sink);
  if (it == congested_.end()) {
    if (queued <= cfg_.high_water) return;
    ++counters_.flow_sinks_congested;
    Sink s;
    s.last_progress = now;
    it = congested_.emplace(sink, std::move(s)).first;
  }
  Sink& s = it->second;
  if (s.stuck || source == kNone) return;
  if (std::find(s.waiters.begin(), s.waiters.end(), source) != s.waiters.end()) return;
  s.waiters.push_back(source);
  if (paused_[source]++ == 0) ++counters_.flow_sources_paused;
}

void FlowControl::release(Sink& s) {
  for (const Id w : s.waiters) {
    auto p = paused_.find(w);
    if (p == paused_.end()) continue;  // the source went away meanwhile
    if (--p->second == 0) {
      paused_.erase(p);
      resumed_.push_back(w);
    }
  }
  s.waiters.clear();
}

void FlowControl::update(Id sink, std::size_t queued, TimePoint last_progress, TimePoint now) {
  auto it = congested_.find(sink);
  if (it == congested_.end()) return;
  Sink& s = it->second;
  s.last_progress = std::max(s.last_progress, last_progress);
  if (queued <= cfg_.low_water && (!s.stuck || s.last_progress > s.stuck_at)) {
    release(s);
    congested_.erase(it);
    return;
  }
  if (!s.stuck && now - s.last_progress >= cfg_.grace) {
    s.stuck = true;
    s.stuck_at = now;
    ++counters_.flow_sinks_stuck;
    release(s);
  }
}

void FlowControl::remove(Id id) {
  if (auto it = congested_.find(id); it != congested_.end()) {
    release(it->second);
    congested_.erase(it);
  }
  paused_.erase(id);
}

std::optional<TimePoint> FlowControl::next_deadline() const {
  std::optional<TimePoint> d;
  for (const auto& [id, s] : congested_) {
    if (!s.stuck) d = earliest(d, s.last_progress + cfg_.grace);
  }
  return d;
}

}  // namespace mqtt_proxy::flow
