// Decoding of the packets a client sends, MQTT 3.1, 3.1.1 and 5.0, and the errors that close the
// client. A decoder checks every field once; the packet it fills holds views into the frame.
#pragma once

#include <cstdint>

#include "mqtt_proxy/mqtt/packet.hpp"

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

// Decodes a frame received from a client. `version` is the session's protocol level (CONNECT itself
// is decoded with any version). Fixed-header flags are checked strictly unless `lenient_flags`
// (used on the peer channel, where older peers built packets with flags 0).
DecodeError decode_client_packet(const FrameView& f, ProtocolVersion version, ClientPacket& out,
                                 bool lenient_flags = false);

}  // namespace mqtt_proxy::mqtt
