#include "mqtt_proxy/telemetry/sys_topics.hpp"

#include <gtest/gtest.h>

#include <map>

#include "mqtt_proxy/telemetry/catalogue.hpp"

namespace mqtt_proxy::telemetry {
namespace {

using namespace std::chrono_literals;

std::map<std::string, std::string> as_map(const std::vector<SysMessage>& v) {
  std::map<std::string, std::string> m;
  for (const auto& s : v) m[s.topic] = s.payload;
  return m;
}

TEST(SysTopics, TheFirstUpdatePublishesEveryFigureUnderMosquittosTopics) {
  const TimePoint start{};
  SysTopics sys("1.2.3", start);
  metrics::Counters c;
  c.mqtt_clients_online = 3;
  c.mqtt_sessions_offline = 2;
  c.mqtt_sessions_expired = 1;
  c.mqtt_connect_received = 5;
  c.mqtt_publish_received = 7;
  c.mqtt_subscribe_received = 2;
  c.mqtt_connack_sent = 5;
  c.mqtt_publish_sent = 11;
  c.mqtt_retained_topics = 4;
  c.mqtt_retained_bytes = 40;
  c.mqtt_subscriptions_active = 6;
  c.mqtt_shared_subscriptions_active = 2;
  c.mqtt_publish_dropped_slow = 2;
  c.mqtt_publish_dropped_too_large = 1;
  c.mqtt_payload_bytes_received = 70;
  c.mqtt_payload_bytes_sent = 110;
  c.mqtt_bytes_received = 200;
  c.mqtt_bytes_sent = 300;
  const auto m = as_map(sys.update(c, start + 12s));
  EXPECT_EQ(m.at("$SYS/broker/version"), "mqtt_proxy version 1.2.3");
  EXPECT_EQ(m.at("$SYS/broker/uptime"), "12 seconds");
  EXPECT_EQ(m.at("$SYS/broker/clients/connected"), "3");
  EXPECT_EQ(m.at("$SYS/broker/clients/active"), "3");
  EXPECT_EQ(m.at("$SYS/broker/clients/disconnected"), "2");
  EXPECT_EQ(m.at("$SYS/broker/clients/inactive"), "2");
  EXPECT_EQ(m.at("$SYS/broker/clients/total"), "5");
  EXPECT_EQ(m.at("$SYS/broker/clients/maximum"), "3");
  EXPECT_EQ(m.at("$SYS/broker/clients/expired"), "1");
  // Every packet, as the Prometheus family mosquitto_mqtt_packets_received counts them.
  EXPECT_EQ(m.at("$SYS/broker/messages/received"), "14");
  EXPECT_EQ(m.at("$SYS/broker/messages/received"),
            std::to_string(derived_value(*find_derived("mosquitto_mqtt_packets_received"), c)));
  EXPECT_EQ(m.at("$SYS/broker/messages/sent"), "16");
  EXPECT_EQ(m.at("$SYS/broker/messages/stored"), "4");
  EXPECT_EQ(m.at("$SYS/broker/store/messages/count"), "4");
  EXPECT_EQ(m.at("$SYS/broker/store/messages/bytes"), "40");
  EXPECT_EQ(m.at("$SYS/broker/retained messages/count"), "4");
  EXPECT_EQ(m.at("$SYS/broker/subscriptions/count"), "6");
  EXPECT_EQ(m.at("$SYS/broker/shared_subscriptions/count"), "2");
  EXPECT_EQ(m.at("$SYS/broker/publish/messages/received"), "7");
  EXPECT_EQ(m.at("$SYS/broker/publish/messages/sent"), "11");
  EXPECT_EQ(m.at("$SYS/broker/publish/messages/dropped"), "3");
  EXPECT_EQ(m.at("$SYS/broker/publish/bytes/received"), "70");
  EXPECT_EQ(m.at("$SYS/broker/publish/bytes/sent"), "110");
  EXPECT_EQ(m.at("$SYS/broker/bytes/received"), "200");
  EXPECT_EQ(m.at("$SYS/broker/bytes/sent"), "300");
  // Nine load series, three averages each; no interval yet, so 0.
  std::size_t loads = 0;
  for (const auto& [topic, payload] : m) {
    if (topic.starts_with("$SYS/broker/load/")) {
      ++loads;
      EXPECT_EQ(payload, "0.00") << topic;
    }
  }
  EXPECT_EQ(loads, 27u);
}

TEST(SysTopics, OnlyWhatChangedIsPublishedAgain) {
  const TimePoint start{};
  SysTopics sys("1", start);
  metrics::Counters c;
  c.mqtt_clients_online = 2;
  sys.update(c, start);
  auto m = as_map(sys.update(c, start + 10s));
  EXPECT_EQ(m, (std::map<std::string, std::string>{{"$SYS/broker/uptime", "10 seconds"}}));
  // Fewer clients: connected and total change, the maximum stays.
  c.mqtt_clients_online = 1;
  m = as_map(sys.update(c, start + 20s));
  EXPECT_EQ(m.at("$SYS/broker/clients/connected"), "1");
  EXPECT_EQ(m.at("$SYS/broker/clients/total"), "1");
  EXPECT_FALSE(m.contains("$SYS/broker/clients/maximum"));
}

TEST(SysTopics, LoadsArePerMinuteRatesSmoothedAsMosquittosLoadAverages) {
  const TimePoint start{};
  SysTopics sys("1", start);
  metrics::Counters c;
  sys.update(c, start);
  // 60 PUBLISH in 10 s: 360 per minute; after one interval each average has moved
  // 1 - e^(-10/period) of the way from 0 to 360.
  c.mqtt_publish_received = 60;
  auto m = as_map(sys.update(c, start + 10s));
  EXPECT_EQ(m.at("$SYS/broker/load/publish/received/1min"), "55.27");  // 360 (1 - e^(-1/6))
  EXPECT_EQ(m.at("$SYS/broker/load/publish/received/5min"), "11.80");  // 360 (1 - e^(-1/30))
  EXPECT_EQ(m.at("$SYS/broker/load/publish/received/15min"), "3.98");  // 360 (1 - e^(-1/90))
  EXPECT_FALSE(m.contains("$SYS/broker/load/publish/sent/1min"));      // still 0.00
  // No more traffic: the averages decay by e^(-10/period) per interval.
  m = as_map(sys.update(c, start + 20s));
  EXPECT_EQ(m.at("$SYS/broker/load/publish/received/1min"),
            "46.78");  // 360 (1 - e^(-1/6)) e^(-1/6)
  // A second update at the same instant computes no rate (no division by zero) and moves
  // nothing but what the counters say.
  m = as_map(sys.update(c, start + 20s));
  EXPECT_TRUE(m.empty());
}

}  // namespace
}  // namespace mqtt_proxy::telemetry
