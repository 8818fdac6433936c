// MQTT 5 properties (v5 section 2.2.2): their identifiers, writing property bytes, and filtering
// them for forwarding. Decoding checks them and picks out the values the broker acts on
// (`Properties`, packet.hpp).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

// Property identifiers, all of them, named as v5 section 2.2.2.2 names them.
namespace property {
inline constexpr std::uint8_t kPayloadFormatIndicator = 0x01;
inline constexpr std::uint8_t kMessageExpiryInterval = 0x02;
inline constexpr std::uint8_t kContentType = 0x03;
inline constexpr std::uint8_t kResponseTopic = 0x08;
inline constexpr std::uint8_t kCorrelationData = 0x09;
inline constexpr std::uint8_t kSubscriptionIdentifier = 0x0b;
inline constexpr std::uint8_t kSessionExpiryInterval = 0x11;
inline constexpr std::uint8_t kAssignedClientIdentifier = 0x12;
inline constexpr std::uint8_t kServerKeepAlive = 0x13;
inline constexpr std::uint8_t kAuthenticationMethod = 0x15;
inline constexpr std::uint8_t kAuthenticationData = 0x16;
inline constexpr std::uint8_t kRequestProblemInformation = 0x17;
inline constexpr std::uint8_t kWillDelayInterval = 0x18;
inline constexpr std::uint8_t kRequestResponseInformation = 0x19;
inline constexpr std::uint8_t kResponseInformation = 0x1a;
inline constexpr std::uint8_t kServerReference = 0x1c;
inline constexpr std::uint8_t kReasonString = 0x1f;
inline constexpr std::uint8_t kReceiveMaximum = 0x21;
inline constexpr std::uint8_t kTopicAliasMaximum = 0x22;
inline constexpr std::uint8_t kTopicAlias = 0x23;
inline constexpr std::uint8_t kMaximumQos = 0x24;
inline constexpr std::uint8_t kRetainAvailable = 0x25;
inline constexpr std::uint8_t kUserProperty = 0x26;
inline constexpr std::uint8_t kMaximumPacketSize = 0x27;
inline constexpr std::uint8_t kWildcardSubscriptionAvailable = 0x28;
inline constexpr std::uint8_t kSubscriptionIdentifierAvailable = 0x29;
inline constexpr std::uint8_t kSharedSubscriptionAvailable = 0x2a;
}  // namespace property

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

}  // namespace mqtt_proxy::mqtt
