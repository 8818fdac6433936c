// Encoding of MQTT 3.1, 3.1.1 and 5.0 packets. Section numbers refer to MQTT 3.1.1 (OASIS, 2014)
// unless noted "v5".

#include "mqtt_proxy/mqtt/encode.hpp"

#include "fields.hpp"
#include "mqtt_proxy/mqtt/frame.hpp"

namespace mqtt_proxy::mqtt {

namespace {

inline std::size_t string_size(std::string_view s) {
  return 2 + s.size();
}

inline void put_header(Bytes& out, std::uint8_t first_byte, std::size_t remaining) {
  put_u8(out, first_byte);
  encode_remaining_length(out, remaining);
}

inline bool has_properties(ProtocolVersion version) {
  return version == ProtocolVersion::V5;
}

// MQTT 5's property block: the properties' length, then the properties (v5 2.2.2). Nothing before
// v5.
inline std::size_t property_block_size(ProtocolVersion version, ByteSpan properties) {
  return has_properties(version) ? varint_size(properties.size()) + properties.size() : 0;
}

inline void put_property_block(Bytes& out, ProtocolVersion version, ByteSpan properties) {
  if (!has_properties(version)) return;
  encode_remaining_length(out, properties.size());
  append(out, properties);
}

// SUBACK and UNSUBACK: the packet identifier, the property block, a code per filter.
void put_codes_ack(Bytes& out, std::uint8_t first_byte, ProtocolVersion version,
                   std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, first_byte, 2 + property_block_size(version, {}) + codes.size());
  put_u16(out, packet_id);
  put_property_block(out, version, {});
  for (auto c : codes) put_u8(out, c);
}

// The one PUBLISH encoder. PUBLISH is the forwarding path: each entry point below inlines it, so
// that the version is a constant there and 3.1.1 pays nothing for v5's property block.
[[gnu::always_inline]] inline void put_publish(Bytes& out, ProtocolVersion version,
                                               std::string_view topic, ByteSpan payload,
                                               std::uint8_t qos, bool retain, bool dup,
                                               std::uint16_t packet_id, ByteSpan properties) {
  const std::uint8_t first =
      static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
  put_header(out, first,
             string_size(topic) + (qos > 0 ? 2 : 0) + property_block_size(version, properties) +
                 payload.size());
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  put_property_block(out, version, properties);
  append(out, payload);
}

}  // namespace

void encode_connack(Bytes& out, ProtocolVersion version, bool session_present, std::uint8_t code,
                    ByteSpan properties) {
  put_header(out, 0x20, 2 + property_block_size(version, properties));
  put_u8(out, session_present ? 1 : 0);
  put_u8(out, code);
  put_property_block(out, version, properties);
}

void encode_publish(Bytes& out, ProtocolVersion version, std::string_view topic, ByteSpan payload,
                    std::uint8_t qos, bool retain, bool dup, std::uint16_t packet_id,
                    ByteSpan properties) {
  put_publish(out, version, topic, payload, qos, retain, dup, packet_id, properties);
}

void encode_publish(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                    bool retain, bool dup, std::uint16_t packet_id) {
  put_publish(out, ProtocolVersion::V311, topic, payload, qos, retain, dup, packet_id, {});
}

void encode_publish_v5(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                       bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties) {
  put_publish(out, ProtocolVersion::V5, topic, payload, qos, retain, dup, packet_id, properties);
}

void encode_packet_id_ack(Bytes& out, PacketType type, std::uint16_t packet_id) {
  const auto first = static_cast<std::uint8_t>((static_cast<unsigned>(type) << 4) |
                                               (type == PacketType::Pubrel ? 0x02 : 0x00));
  put_header(out, first, 2);
  put_u16(out, packet_id);
}

void encode_packet_id_ack_v5(Bytes& out, PacketType type, std::uint16_t packet_id,
                             std::uint8_t reason) {
  if (reason == 0) return encode_packet_id_ack(out, type, packet_id);
  const auto first = static_cast<std::uint8_t>((static_cast<unsigned>(type) << 4) |
                                               (type == PacketType::Pubrel ? 0x02 : 0x00));
  put_header(out, first, 3);
  put_u16(out, packet_id);
  out.push_back(std::byte{reason});
}

void encode_suback(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                   std::span<const std::uint8_t> codes) {
  put_codes_ack(out, 0x90, version, packet_id, codes);
}

void encode_unsuback(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                     std::span<const std::uint8_t> codes) {
  if (!has_properties(version)) codes = {};  // a 3.1.1 UNSUBACK has no payload (3.11.3)
  put_codes_ack(out, 0xb0, version, packet_id, codes);
}

void encode_disconnect(Bytes& out, ProtocolVersion version, std::uint8_t reason) {
  if (!has_properties(version)) {  // a 3.1.1 DISCONNECT is empty (3.14)
    put_header(out, 0xe0, 0);
    return;
  }
  put_header(out, 0xe0, 1 + property_block_size(version, {}));
  put_u8(out, reason);
  put_property_block(out, version, {});
}

void encode_pingresp(Bytes& out) {
  put_header(out, 0xd0, 0);
}
void encode_pingreq(Bytes& out) {
  put_header(out, 0xc0, 0);
}

void encode_subscribe(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                      std::span<const std::string_view> filters, std::uint8_t options,
                      ByteSpan properties) {
  std::size_t len = 2 + property_block_size(version, properties);
  for (auto f : filters) len += string_size(f) + 1;
  put_header(out, 0x82, len);
  put_u16(out, packet_id);
  put_property_block(out, version, properties);
  for (auto f : filters) {
    put_string(out, f);
    put_u8(out, options);
  }
}

void encode_unsubscribe(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                        std::span<const std::string_view> filters) {
  std::size_t len = 2 + property_block_size(version, {});
  for (auto f : filters) len += string_size(f);
  put_header(out, 0xa2, len);
  put_u16(out, packet_id);
  put_property_block(out, version, {});
  for (auto f : filters) put_string(out, f);
}

void encode_connect(Bytes& out, const Connect& c) {
  const std::string_view name = c.version == ProtocolVersion::V31 ? "MQIsdp" : "MQTT";
  std::size_t len = string_size(name) + 1 + 1 + 2 +
                    property_block_size(c.version, c.properties.raw) + string_size(c.client_id);
  std::uint8_t flags = c.clean_session ? 0x02 : 0x00;
  if (c.will) {
    flags |= static_cast<std::uint8_t>(0x04 | (c.will->qos << 3) | (c.will->retain ? 0x20 : 0));
    len += property_block_size(c.version, c.will->properties.raw) + string_size(c.will->topic) + 2 +
           c.will->payload.size();
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
  put_property_block(out, c.version, c.properties.raw);
  put_string(out, c.client_id);
  if (c.will) {
    put_property_block(out, c.version, c.will->properties.raw);
    put_string(out, c.will->topic);
    put_binary(out, c.will->payload);
  }
  if (c.username) put_string(out, *c.username);
  if (c.password) put_binary(out, *c.password);
}

}  // namespace mqtt_proxy::mqtt
