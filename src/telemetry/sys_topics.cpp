#include "mqtt_proxy/telemetry/sys_topics.hpp"

#include <fmt/format.h>

#include <cmath>
#include <string_view>

#include "mqtt_proxy/telemetry/catalogue.hpp"

namespace mqtt_proxy::telemetry {

namespace {
constexpr std::string_view kPrefix = "$SYS/broker/";

std::uint64_t packets(std::string_view family, const metrics::Counters& c) {
  const DerivedFamily* d = find_derived(family);
  return d ? derived_value(*d, c) : 0;
}
}  // namespace

SysTopics::SysTopics(std::string version, TimePoint start)
    : version_(std::move(version)), start_(start) {}

std::vector<SysMessage> SysTopics::update(const metrics::Counters& c, TimePoint now) {
  std::map<std::string, std::string> figures;
  auto put = [&](std::string_view topic, std::string value) {
    figures[std::string(kPrefix) + std::string(topic)] = std::move(value);
  };
  auto number = [&](std::string_view topic, std::uint64_t v) { put(topic, std::to_string(v)); };

  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(now - start_).count();
  put("version", "mqtt_proxy version " + version_);
  put("uptime", fmt::format("{} seconds", uptime));

  max_clients_ = std::max(max_clients_, c.mqtt_clients_online);
  // Mosquitto publishes each figure under two names (the older one kept for compatibility).
  number("clients/connected", c.mqtt_clients_online);
  number("clients/active", c.mqtt_clients_online);
  number("clients/disconnected", c.mqtt_sessions_offline);
  number("clients/inactive", c.mqtt_sessions_offline);
  number("clients/total", c.mqtt_clients_online + c.mqtt_sessions_offline);
  number("clients/maximum", max_clients_);
  number("clients/expired", c.mqtt_sessions_expired);

  const std::uint64_t received = packets("mosquitto_mqtt_packets_received", c);
  const std::uint64_t sent = packets("mosquitto_mqtt_packets_sent", c);
  const std::uint64_t dropped = c.mqtt_publish_dropped_slow + c.mqtt_publish_dropped_too_large +
                                c.mqtt_publish_dropped_queue_full + c.mqtt_publish_dropped_expired;
  number("messages/received", received);
  number("messages/sent", sent);
  // The only messages this broker stores are the retained ones.
  number("messages/stored", c.mqtt_retained_topics);
  number("store/messages/count", c.mqtt_retained_topics);
  number("store/messages/bytes", c.mqtt_retained_bytes);
  number("retained messages/count", c.mqtt_retained_topics);
  number("subscriptions/count", c.mqtt_subscriptions_active);
  number("shared_subscriptions/count", c.mqtt_shared_subscriptions_active);
  number("publish/messages/received", c.mqtt_publish_received);
  number("publish/messages/sent", c.mqtt_publish_sent);
  number("publish/messages/dropped", dropped);
  number("publish/bytes/received", c.mqtt_payload_bytes_received);
  number("publish/bytes/sent", c.mqtt_payload_bytes_sent);
  number("bytes/received", c.mqtt_bytes_received);
  number("bytes/sent", c.mqtt_bytes_sent);

  static constexpr std::array<std::string_view, kLoads> kLoadNames{
      "messages/received", "messages/sent", "publish/received", "publish/sent", "publish/dropped",
      "bytes/received",    "bytes/sent",    "sockets",          "connections"};
  const std::array<std::uint64_t, kLoads> totals{received,
                                                 sent,
                                                 c.mqtt_publish_received,
                                                 c.mqtt_publish_sent,
                                                 dropped,
                                                 c.mqtt_bytes_received,
                                                 c.mqtt_bytes_sent,
                                                 c.tcp_connections_accepted,
                                                 c.mqtt_connects};
  const double interval =
      last_update_ ? std::chrono::duration<double>(now - *last_update_).count() : 0.0;
  for (std::size_t k = 0; k < kLoads; ++k) {
    if (interval > 0) {
      // The rate over the interval, per minute, pulled into each average with weight
      // 1 - e^(-interval/period).
      const double rate = static_cast<double>(totals[k] - previous_[k]) * 60.0 / interval;
      auto smooth = [&](double& avg, double period) {
        avg = rate + std::exp(-interval / period) * (avg - rate);
      };
      smooth(loads_[k].m1, 60);
      smooth(loads_[k].m5, 300);
      smooth(loads_[k].m15, 900);
    }
    previous_[k] = totals[k];
    const std::string base = "load/" + std::string(kLoadNames[k]);
    put(base + "/1min", fmt::format("{:.2f}", loads_[k].m1));
    put(base + "/5min", fmt::format("{:.2f}", loads_[k].m5));
    put(base + "/15min", fmt::format("{:.2f}", loads_[k].m15));
  }
  if (!last_update_ || interval > 0) last_update_ = now;

  std::vector<SysMessage> changed;
  for (auto& [topic, payload] : figures) {
    auto it = published_.find(topic);
    if (it != published_.end() && it->second == payload) continue;
    published_[topic] = payload;
    changed.push_back({topic, std::move(payload)});
  }
  return changed;
}

}  // namespace mqtt_proxy::telemetry
