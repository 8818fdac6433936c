#include "mqtt_proxy/hooks/hooks.hpp"

#include <algorithm>
#include <bit>

namespace mqtt_proxy::hooks {

namespace {
constexpr std::string_view kLog = "hooks";
}  // namespace

std::uint8_t connack_code(Reason r) {
  // 3.1.1's CONNACK return codes (3.2.2.3) are a subset of 5.0's reasons; the others say the
  // nearest thing 3.1.1 can.
  switch (r) {
    case 0x84:  // unsupported protocol version
      return 1;
    case 0x85:  // client identifier not valid
      return 2;
    case 0x88:  // server unavailable
    case 0x89:  // server busy
      return 3;
    case 0x86:  // bad user name or password
      return 4;
    default:
      return 5;  // not authorised
  }
}

HookChain::HookChain(std::vector<std::unique_ptr<Hooks>> hooks, Duration budget, Clock clock,
                     log::Logger& log)
    : hooks_(std::move(hooks)), budget_(budget), clock_(std::move(clock)), log_(log) {
  stats_.reserve(hooks_.size());
  for (const auto& h : hooks_) {
    stats_.push_back(HookStats{std::string(h->name())});
    reads_ = reads_ || h->reads();
  }
}

void HookChain::timed_end(std::size_t i, std::string_view what, TimePoint start) {
  const Duration took = clock_() - start;
  HookStats& s = stats_[i];
  ++s.calls;
  s.time += took;
  s.longest = std::max(s.longest, took);
  if (took <= budget_) return;
  // Logged at the 1st, 2nd, 4th, 8th... slow call, so a hook that is always slow cannot flood
  // the log, and the count still tells how often.
  if (std::has_single_bit(++s.slow)) {
    log_.warn(kLog, "hook {} took {} us in {}, over the budget of {} us ({} slow calls so far)",
              s.name, std::chrono::duration_cast<std::chrono::microseconds>(took).count(), what,
              std::chrono::duration_cast<std::chrono::microseconds>(budget_).count(), s.slow);
  }
}

template <typename Call>
Reason HookChain::run(std::string_view what, Call&& call, std::string_view* by, bool only_reads) {
  for (std::size_t i = 0; i < hooks_.size(); ++i) {
    Hooks& h = *hooks_[i];
    if (only_reads && !h.reads()) continue;
    const TimePoint start = clock_();
    const Reason r = call(h);
    timed_end(i, what, start);
    if (r != kOk) {
      ++stats_[i].refusals;
      if (by) *by = stats_[i].name;
      return r >= 0x80 ? r : Reason{0x80};
    }
  }
  return kOk;
}

Reason HookChain::auth_connect(const Client& c, Credentials& cred, std::string_view* by) {
  return run(
      "auth_connect", [&](Hooks& h) { return h.auth_connect(c, cred); }, by);
}

Reason HookChain::auth_publish(const Client& c, Field& topic, Field& payload, std::uint8_t qos,
                               bool retain, std::string_view* by) {
  return run(
      "auth_publish", [&](Hooks& h) { return h.auth_publish(c, topic, payload, qos, retain); }, by);
}

Reason HookChain::auth_subscribe(const Client& c, Field& filter, std::uint8_t qos,
                                 std::string_view* by) {
  return run(
      "auth_subscribe", [&](Hooks& h) { return h.auth_subscribe(c, filter, qos); }, by);
}

Reason HookChain::auth_read(const Client& c, std::string_view topic) {
  if (!reads_) return kOk;
  return run(
      "auth_read", [&](Hooks& h) { return h.auth_read(c, topic); }, nullptr, true);
}

void HookChain::on_connect(const Client& c) {
  run(
      "on_connect", [&](Hooks& h) { return h.on_connect(c), kOk; }, nullptr);
}

void HookChain::on_publish(const Client& c, std::string_view topic, std::string_view payload) {
  run(
      "on_publish", [&](Hooks& h) { return h.on_publish(c, topic, payload), kOk; }, nullptr);
}

void HookChain::on_subscribe(const Client& c, std::span<const std::string> filters) {
  run(
      "on_subscribe", [&](Hooks& h) { return h.on_subscribe(c, filters), kOk; }, nullptr);
}

void HookChain::on_unsubscribe(const Client& c, std::span<const std::string> filters) {
  run(
      "on_unsubscribe", [&](Hooks& h) { return h.on_unsubscribe(c, filters), kOk; }, nullptr);
}

void HookChain::on_disconnect(const Client& c) {
  run(
      "on_disconnect", [&](Hooks& h) { return h.on_disconnect(c), kOk; }, nullptr);
}

}  // namespace mqtt_proxy::hooks
