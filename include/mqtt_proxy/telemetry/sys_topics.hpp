// The `$SYS/broker/...` topics, as Mosquitto publishes them (its sys_tree.c and the list in
// mosquitto(8)): what the figures are, and which changed since the last publication. Pure: the loop
// calls update() every --sys-interval with the counters and the time, and the broker publishes
// what it returns as retained messages to local subscribers (never to peers: each proxy has its
// own figures).
//
// The loads are Mosquitto's: per-minute rates over the interval, smoothed with the exponential
// weights of the 1, 5 and 15 minute load averages, printed with two decimals.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::telemetry {

struct SysMessage {
  std::string topic;
  std::string payload;
  bool operator==(const SysMessage&) const = default;
};

class SysTopics {
 public:
  // `version` as --version prints it; `start` is when the proxy started (for the uptime).
  SysTopics(std::string version, TimePoint start);

  // The topics whose payload differs from what was last returned (all of them the first time),
  // sorted by topic.
  std::vector<SysMessage> update(const metrics::Counters& c, TimePoint now);

 private:
  // The series with a load: messages received and sent (every packet), PUBLISH received, sent and
  // dropped, bytes received and sent, sockets (TCP connections accepted) and connections (MQTT
  // clients accepted).
  static constexpr std::size_t kLoads = 9;
  struct Load {
    double m1 = 0, m5 = 0, m15 = 0;
  };

  std::string version_;
  TimePoint start_;
  std::optional<TimePoint> last_update_;
  std::uint64_t max_clients_ = 0;
  std::array<std::uint64_t, kLoads> previous_{};
  std::array<Load, kLoads> loads_{};
  std::map<std::string, std::string> published_;
};

}  // namespace mqtt_proxy::telemetry
