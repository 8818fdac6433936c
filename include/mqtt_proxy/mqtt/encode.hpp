// Encoding of MQTT 3.1.1 and 5.0 packets. Encoders append one complete packet to `out`; their
// inputs are the proxy's own, so they assert instead of checking.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

// The _v5 forms write MQTT 5's layout; `properties` are property bytes without their length
// (PropertyWriter builds them).
void encode_connack(Bytes& out, bool session_present, std::uint8_t return_code);
void encode_connack_v5(Bytes& out, bool session_present, std::uint8_t reason, ByteSpan properties);
void encode_publish_v5(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                       bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties);
void encode_suback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes);
void encode_unsuback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes);
void encode_disconnect_v5(Bytes& out, std::uint8_t reason);
// Client side, for tests and tools: `options` is the v5 subscription options byte.
void encode_subscribe_v5(Bytes& out, std::uint16_t packet_id, std::string_view filter,
                         std::uint8_t options, ByteSpan properties = {});

void encode_publish(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                    bool retain, bool dup, std::uint16_t packet_id);
void encode_packet_id_ack(Bytes& out, PacketType type, std::uint16_t packet_id);
void encode_suback(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes);
void encode_unsuback(Bytes& out, std::uint16_t packet_id);
void encode_pingresp(Bytes& out);
void encode_subscribe(Bytes& out, std::uint16_t packet_id,
                      std::span<const std::string_view> filters);
void encode_unsubscribe(Bytes& out, std::uint16_t packet_id,
                        std::span<const std::string_view> filters);
// Client side, for tests and tools.
void encode_connect(Bytes& out, const Connect& c);
void encode_pingreq(Bytes& out);
void encode_disconnect(Bytes& out);

}  // namespace mqtt_proxy::mqtt
