// Framing, decoding and encoding of MQTT 3.1, 3.1.1 and 5.0 packets.
//
// Decoding never throws and never allocates the announced remaining length up front: a frame is
// only handed out once all of its bytes have arrived, and its size is checked against the limit as
// soon as the remaining length is known.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>

#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

enum class DecodeError : std::uint8_t {
  None,
  MalformedRemainingLength,    // a fifth length byte [MQTT 2.2.3]
  PacketTooLarge,              // beyond the configured maximum packet size
  ReservedPacketType,          // type 0 or 15
  UnexpectedPacketType,        // a server-to-client packet from a client (CONNACK, SUBACK, ...)
  BadFixedHeaderFlags,         // [MQTT-2.2.2-2]
  Truncated,                   // a field runs past the end of the packet
  TrailingBytes,               // bytes left after the last field
  BadProtocolName,             // not "MQTT" / "MQIsdp" [MQTT-3.1.2-1]
  UnsupportedProtocolVersion,  // answered with CONNACK 0x01 [MQTT-3.1.2-2]
  ReservedConnectFlag,         // [MQTT-3.1.2-3]
  BadWillFlags,                // [MQTT-3.1.2-13/14/15]
  PasswordWithoutUsername,     // [MQTT-3.1.2-22]
  InvalidUtf8,                 // [MQTT-1.5.3-1]
  NullCharacter,               // [MQTT-1.5.3-2]
  BadQos,                      // QoS 3 [MQTT-3.3.1-4]
  DupWithQos0,                 // [MQTT-3.3.1-2]
  PacketIdZero,                // [MQTT-2.3.1-1]
  InvalidTopicName,            // empty or with wildcards [MQTT-3.3.2-2], [MQTT-4.7.3-1]
  EmptyTopicFilter,            // [MQTT-4.7.3-1]
  NoTopicFilters,              // [MQTT-3.8.3-3], [MQTT-3.10.3-2]
  BadSubscriptionOptions,      // reserved bits or QoS 3 [MQTT-3.8.3-4]; v5: Retain Handling 3
  // MQTT 5
  MalformedProperty,       // unknown identifier, not allowed in this packet, bad encoding (0x81)
  DuplicateProperty,       // a single-instance property twice (0x82)
  BadPropertyValue,        // a value the specification forbids, e.g. Receive Maximum 0 (0x82)
  EmptyTopicWithoutAlias,  // v5 3.3.2.1 (0x82)
  NoLocalOnSharedSubscription,  // [MQTT-3.8.3-4] v5 (0x82)
};

// The MQTT 5 reason code for closing a connection because of `e` (DISCONNECT, or CONNACK for a
// CONNECT).
std::uint8_t reason_code_for(DecodeError e);

const char* decode_error_name(DecodeError e);

// Splits a byte stream into MQTT frames. Bytes are buffered only while a frame is incomplete.
class FrameSplitter {
 public:
  explicit FrameSplitter(std::size_t max_packet_size) : max_packet_size_(max_packet_size) {}

  void feed(ByteSpan data);

  // The next complete frame, if any. The frame's view stays valid until the next feed(). Sets
  // `error` (and returns nullopt) on a malformed or oversized header; the stream is then unusable.
  std::optional<FrameView> next(DecodeError& error);

  std::size_t buffered() const { return buf_.size() - start_; }

 private:
  std::size_t max_packet_size_;
  Bytes buf_;
  std::size_t start_ = 0;
};

// Parses a fixed header at the start of `data`. Returns the frame when all of it is present; sets
// `need_more` when it is not; sets `error` when the header is malformed or too large.
std::optional<FrameView> parse_frame(ByteSpan data, std::size_t max_packet_size, bool& need_more,
                                     DecodeError& error);

// Whether the frame's Remaining Length used the fewest bytes (required by MQTT 5 [MQTT-1.5.5-1]).
bool minimal_length_encoding(const FrameView& f);

// Decodes a frame received from a client. `version` is the session's protocol level (CONNECT itself
// is decoded with any version). Fixed-header flags are checked strictly unless `lenient_flags`
// (used on the peer channel, where older peers built packets with flags 0).
DecodeError decode_client_packet(const FrameView& f, ProtocolVersion version, ClientPacket& out,
                                 bool lenient_flags = false);

// Encoders append one complete packet to `out`. The _v5 forms write MQTT 5's layout; `properties`
// are property bytes without their length (PropertyWriter builds them).
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

// MQTT 5 property bytes.
class PropertyWriter {
 public:
  PropertyWriter& u8(std::uint8_t id, std::uint8_t v);
  PropertyWriter& u16(std::uint8_t id, std::uint16_t v);
  PropertyWriter& u32(std::uint8_t id, std::uint32_t v);
  PropertyWriter& varint(std::uint8_t id, std::uint32_t v);
  PropertyWriter& string(std::uint8_t id, std::string_view v);
  const Bytes& bytes() const { return b_; }

 private:
  Bytes b_;
};

// Copies property bytes without the properties whose identifiers are listed (the input is valid).
Bytes without_properties(ByteSpan properties, std::initializer_list<std::uint8_t> ids);
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

// Writes the remaining-length varint; returns its size.
std::size_t encode_remaining_length(Bytes& out, std::size_t len);

}  // namespace mqtt_proxy::mqtt
