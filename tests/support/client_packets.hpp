// MQTT client packets, encoded with the project's codec, for tests and benchmarks.
#pragma once

#include <optional>
#include <string_view>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {

inline Bytes connect_packet(std::string_view id, std::uint16_t keepalive = 60,
                            std::string_view user = kUsername, std::string_view pass = kPassword,
                            std::optional<mqtt::Will> will = {}, bool clean_session = true) {
  mqtt::Connect c;
  c.client_id = id;
  c.keepalive = keepalive;
  c.clean_session = clean_session;
  if (!user.empty()) c.username = user;
  if (!pass.empty()) c.password = as_bytes(pass);
  c.will = will;
  Bytes b;
  mqtt::encode_connect(b, c);
  return b;
}

inline Bytes subscribe_packet(std::string_view filter, std::uint16_t id = 1) {
  Bytes b;
  const std::string_view filters[] = {filter};
  mqtt::encode_subscribe(b, id, filters);
  return b;
}

inline Bytes unsubscribe_packet(std::string_view filter, std::uint16_t id = 2) {
  Bytes b;
  const std::string_view filters[] = {filter};
  mqtt::encode_unsubscribe(b, id, filters);
  return b;
}

inline Bytes publish_packet(std::string_view topic, std::string_view payload, std::uint8_t qos = 0,
                            std::uint16_t id = 0, bool dup = false, bool retain = false) {
  Bytes b;
  mqtt::encode_publish(b, topic, as_bytes(payload), qos, retain, dup, id);
  return b;
}

}  // namespace mqtt_proxy::test
