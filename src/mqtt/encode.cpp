// Encoding of MQTT 3.1, 3.1.1 and 5.0 packets. Section numbers refer to MQTT 3.1.1 (OASIS, 2014)
// unless noted "v5".

#include "mqtt_proxy/mqtt/encode.hpp"

#include "fields.hpp"
#include "mqtt_proxy/mqtt/frame.hpp"

namespace mqtt_proxy::mqtt {

namespace {

std::size_t string_size(std::string_view s) {
  return 2 + s.size();
}

void put_header(Bytes& out, std::uint8_t first_byte, std::size_t remaining) {
  put_u8(out, first_byte);
  encode_remaining_length(out, remaining);
}

// MQTT 5's property block: the properties' length, then the properties.
void put_properties(Bytes& out, ByteSpan properties) {
  encode_remaining_length(out, properties.size());
  append(out, properties);
}

std::size_t properties_size(ByteSpan properties) {
  return varint_size(properties.size()) + properties.size();
}

}  // namespace

void encode_connack(Bytes& out, bool session_present, std::uint8_t return_code) {
  put_header(out, 0x20, 2);
  put_u8(out, session_present ? 1 : 0);
  put_u8(out, return_code);
}

void encode_publish(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                    bool retain, bool dup, std::uint16_t packet_id) {
  const std::uint8_t first =
      static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
  put_header(out, first, string_size(topic) + (qos > 0 ? 2 : 0) + payload.size());
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  append(out, payload);
}

void encode_packet_id_ack(Bytes& out, PacketType type, std::uint16_t packet_id) {
  const auto first = static_cast<std::uint8_t>((static_cast<unsigned>(type) << 4) |
                                               (type == PacketType::Pubrel ? 0x02 : 0x00));
  put_header(out, first, 2);
  put_u16(out, packet_id);
}

void encode_suback(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0x90, 2 + codes.size());
  put_u16(out, packet_id);
  for (auto c : codes) put_u8(out, c);
}

void encode_unsuback(Bytes& out, std::uint16_t packet_id) {
  put_header(out, 0xb0, 2);
  put_u16(out, packet_id);
}

void encode_pingresp(Bytes& out) {
  put_header(out, 0xd0, 0);
}
void encode_pingreq(Bytes& out) {
  put_header(out, 0xc0, 0);
}
void encode_disconnect(Bytes& out) {
  put_header(out, 0xe0, 0);
}

void encode_subscribe(Bytes& out, std::uint16_t packet_id,
                      std::span<const std::string_view> filters) {
  std::size_t len = 2;
  for (auto f : filters) len += string_size(f) + 1;
  put_header(out, 0x82, len);
  put_u16(out, packet_id);
  for (auto f : filters) {
    put_string(out, f);
    put_u8(out, 0);  // requested QoS 0
  }
}

void encode_unsubscribe(Bytes& out, std::uint16_t packet_id,
                        std::span<const std::string_view> filters) {
  std::size_t len = 2;
  for (auto f : filters) len += string_size(f);
  put_header(out, 0xa2, len);
  put_u16(out, packet_id);
  for (auto f : filters) put_string(out, f);
}

void encode_connack_v5(Bytes& out, bool session_present, std::uint8_t reason, ByteSpan properties) {
  put_header(out, 0x20, 2 + properties_size(properties));
  put_u8(out, session_present ? 1 : 0);
  put_u8(out, reason);
  put_properties(out, properties);
}

void encode_publish_v5(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                       bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties) {
  const std::uint8_t first =
      static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
  put_header(out, first,
             string_size(topic) + (qos > 0 ? 2 : 0) + properties_size(properties) + payload.size());
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  put_properties(out, properties);
  append(out, payload);
}

void encode_suback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0x90, 3 + codes.size());
  put_u16(out, packet_id);
  put_u8(out, 0);  // no properties
  for (auto c : codes) put_u8(out, c);
}

void encode_unsuback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0xb0, 3 + codes.size());
  put_u16(out, packet_id);
  put_u8(out, 0);
  for (auto c : codes) put_u8(out, c);
}

void encode_disconnect_v5(Bytes& out, std::uint8_t reason) {
  put_header(out, 0xe0, 2);
  put_u8(out, reason);
  put_u8(out, 0);  // no properties
}

void encode_subscribe_v5(Bytes& out, std::uint16_t packet_id, std::string_view filter,
                         std::uint8_t options, ByteSpan properties) {
  put_header(out, 0x82, 2 + properties_size(properties) + string_size(filter) + 1);
  put_u16(out, packet_id);
  put_properties(out, properties);
  put_string(out, filter);
  put_u8(out, options);
}

void encode_connect(Bytes& out, const Connect& c) {
  const bool v31 = c.version == ProtocolVersion::V31;
  const bool v5 = c.version == ProtocolVersion::V5;
  const std::string_view name = v31 ? "MQIsdp" : "MQTT";
  std::size_t len = string_size(name) + 1 + 1 + 2 + string_size(c.client_id);
  if (v5) len += properties_size(c.properties.raw);
  if (v5 && c.will) len += properties_size(c.will->properties.raw);
  std::uint8_t flags = c.clean_session ? 0x02 : 0x00;
  if (c.will) {
    flags |= static_cast<std::uint8_t>(0x04 | (c.will->qos << 3) | (c.will->retain ? 0x20 : 0));
    len += string_size(c.will->topic) + 2 + c.will->payload.size();
  }
  if (c.username) {
    flags |= 0x80;
    len += string_size(*c.username);
  }
  if (c.password) {
    flags |= 0x40;
    len += 2 + c.password->size();
  }
  put_header(out, 0x10, len);
  put_string(out, name);
  put_u8(out, static_cast<std::uint8_t>(c.version));
  put_u8(out, flags);
  put_u16(out, c.keepalive);
  if (v5) put_properties(out, c.properties.raw);
  put_string(out, c.client_id);
  if (c.will) {
    if (v5) put_properties(out, c.will->properties.raw);
    put_string(out, c.will->topic);
    put_binary(out, c.will->payload);
  }
  if (c.username) put_string(out, *c.username);
  if (c.password) put_binary(out, *c.password);
}

}  // namespace mqtt_proxy::mqtt
