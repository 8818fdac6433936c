// Encoding of MQTT 3.1, 3.1.1 and 5.0 packets. Encoders append one complete packet to `out`; their
// inputs are the proxy's own, so they assert instead of checking.
//
// One encoder per packet serves every version, and `version` picks the layout. 3.1 and 3.1.1 share
// theirs; MQTT 5 adds a property block, written from `properties`: property bytes without their
// length (PropertyWriter builds them), empty for "no properties". Before v5 they are not written.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

// --- Server side

// `code`: a 3.1.1 return code (connack::) or a v5 reason code (reason::).
void encode_connack(Bytes& out, ProtocolVersion version, bool session_present, std::uint8_t code,
                    ByteSpan properties = {});
// `packet_id` is written only when `qos` > 0.
void encode_publish(Bytes& out, ProtocolVersion version, std::string_view topic, ByteSpan payload,
                    std::uint8_t qos, bool retain, bool dup, std::uint16_t packet_id,
                    ByteSpan properties = {});
// PUBACK, PUBREC, PUBREL or PUBCOMP. The same bytes serve v5: reason Success and no properties
// may be left out (v5 3.4.2.1).
void encode_packet_id_ack(Bytes& out, PacketType type, std::uint16_t packet_id);
// The same with a v5 reason code other than Success (no properties), e.g. PUBREL 0x92.
void encode_packet_id_ack_v5(Bytes& out, PacketType type, std::uint16_t packet_id,
                             std::uint8_t reason);
// One return code (v5: reason code) per filter.
void encode_suback(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                   std::span<const std::uint8_t> codes);
// `codes`: v5's reason code per filter. A 3.1.1 UNSUBACK has no payload (3.11.3); they are not
// written there.
void encode_unsuback(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                     std::span<const std::uint8_t> codes);
// v5: the reason code and no properties. A 3.1.1 DISCONNECT is empty (and only a client sends it).
void encode_disconnect(Bytes& out, ProtocolVersion version, std::uint8_t reason);
void encode_pingresp(Bytes& out);

// --- Client side: for tests and tools, and for upstream::Relay, which forwards a CONNECT the hooks
// changed

// In the version `c.version`, with `c.properties.raw` and the will's properties in v5.
void encode_connect(Bytes& out, const Connect& c);
// `options` is every filter's subscription options byte: the requested QoS, and in v5 No Local,
// Retain As Published and Retain Handling (v5 3.8.3.1).
void encode_subscribe(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                      std::span<const std::string_view> filters, std::uint8_t options,
                      ByteSpan properties = {});
void encode_unsubscribe(Bytes& out, ProtocolVersion version, std::uint16_t packet_id,
                        std::span<const std::string_view> filters);
void encode_pingreq(Bytes& out);

// --- The same encoders for one version, under the names callers use

// PUBLISH's are defined with the encoder, so that the forwarding path makes one call, as cheap as
// a single-version encoder's.
void encode_publish(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                    bool retain, bool dup, std::uint16_t packet_id);
void encode_publish_v5(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                       bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties);

inline void encode_connack(Bytes& out, bool session_present, std::uint8_t return_code) {
  encode_connack(out, ProtocolVersion::V311, session_present, return_code);
}
inline void encode_connack_v5(Bytes& out, bool session_present, std::uint8_t reason,
                              ByteSpan properties) {
  encode_connack(out, ProtocolVersion::V5, session_present, reason, properties);
}
inline void encode_suback(Bytes& out, std::uint16_t packet_id,
                          std::span<const std::uint8_t> codes) {
  encode_suback(out, ProtocolVersion::V311, packet_id, codes);
}
inline void encode_suback_v5(Bytes& out, std::uint16_t packet_id,
                             std::span<const std::uint8_t> codes) {
  encode_suback(out, ProtocolVersion::V5, packet_id, codes);
}
inline void encode_unsuback(Bytes& out, std::uint16_t packet_id) {
  encode_unsuback(out, ProtocolVersion::V311, packet_id, {});
}
inline void encode_unsuback_v5(Bytes& out, std::uint16_t packet_id,
                               std::span<const std::uint8_t> codes) {
  encode_unsuback(out, ProtocolVersion::V5, packet_id, codes);
}
inline void encode_disconnect(Bytes& out) {
  encode_disconnect(out, ProtocolVersion::V311, reason::kSuccess);
}
inline void encode_disconnect_v5(Bytes& out, std::uint8_t reason) {
  encode_disconnect(out, ProtocolVersion::V5, reason);
}
// Requested QoS 0 for every filter.
inline void encode_subscribe(Bytes& out, std::uint16_t packet_id,
                             std::span<const std::string_view> filters) {
  encode_subscribe(out, ProtocolVersion::V311, packet_id, filters, 0);
}
inline void encode_subscribe_v5(Bytes& out, std::uint16_t packet_id, std::string_view filter,
                                std::uint8_t options, ByteSpan properties = {}) {
  encode_subscribe(out, ProtocolVersion::V5, packet_id,
                   std::span<const std::string_view>(&filter, 1), options, properties);
}
inline void encode_unsubscribe(Bytes& out, std::uint16_t packet_id,
                               std::span<const std::string_view> filters) {
  encode_unsubscribe(out, ProtocolVersion::V311, packet_id, filters);
}

}  // namespace mqtt_proxy::mqtt
