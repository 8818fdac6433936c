// MQTT control packets as typed values. Strings and payloads are views into the frame they were
// decoded from; a decoded packet lives only as long as that frame.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

enum class PacketType : std::uint8_t {
  Reserved = 0,
  Connect = 1,
  Connack = 2,
  Publish = 3,
  Puback = 4,
  Pubrec = 5,
  Pubrel = 6,
  Pubcomp = 7,
  Subscribe = 8,
  Suback = 9,
  Unsubscribe = 10,
  Unsuback = 11,
  Pingreq = 12,
  Pingresp = 13,
  Disconnect = 14,
  Auth = 15,
};

const char* packet_type_name(PacketType t);

// The protocol level byte of CONNECT.
enum class ProtocolVersion : std::uint8_t { V31 = 3, V311 = 4, V5 = 5 };

// One framed packet: the first byte of the fixed header and the body after the remaining length.
struct FrameView {
  std::uint8_t first_byte = 0;
  ByteSpan body;
  std::size_t wire_size = 0;  // fixed header + body

  PacketType type() const { return static_cast<PacketType>(first_byte >> 4); }
  std::uint8_t flags() const { return first_byte & 0x0f; }
};

// MQTT 5 properties (section 2.2.2). Decoding validates every property; the values the broker acts
// on are picked out, and `raw` keeps the property bytes (without their length) for forwarding.
struct Properties {
  std::optional<std::uint32_t> session_expiry;            // 0x11
  std::optional<std::uint16_t> receive_maximum;           // 0x21
  std::optional<std::uint32_t> maximum_packet_size;       // 0x27
  std::optional<std::uint16_t> topic_alias_maximum;       // 0x22
  std::optional<std::uint16_t> topic_alias;               // 0x23
  std::optional<std::uint32_t> subscription_id;           // 0x0b
  std::optional<std::uint32_t> will_delay;                // 0x18
  std::optional<std::uint32_t> message_expiry;            // 0x02
  std::optional<std::string_view> authentication_method;  // 0x15
  ByteSpan raw;
};

struct Will {
  std::string_view topic;
  ByteSpan payload;
  std::uint8_t qos = 0;
  bool retain = false;
  Properties properties;  // v5
};

struct Connect {
  ProtocolVersion version = ProtocolVersion::V311;
  bool clean_session = true;
  std::uint16_t keepalive = 0;
  std::string_view client_id;
  std::optional<Will> will;
  std::optional<std::string_view> username;
  std::optional<ByteSpan> password;
  Properties properties;  // v5
};

struct Publish {
  std::string_view topic;
  ByteSpan payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // only when qos > 0
  Properties properties;        // v5; the topic may then be empty with a topic alias
};

struct TopicRequest {
  std::string_view filter;
  std::uint8_t requested_qos = 0;
  bool filter_valid = true;  // false: wildcards misplaced; answered with SUBACK 0x80 (v5: 0x8f)
  // v5 subscription options (3.8.3.1)
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;  // 0: send retained, 1: only if new, 2: never
};

struct Subscribe {
  std::uint16_t packet_id = 0;
  std::vector<TopicRequest> topics;
  Properties properties;  // v5
};

struct Unsubscribe {
  std::uint16_t packet_id = 0;
  std::vector<std::string_view> filters;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP: a packet identifier (and in v5 a reason code and properties).
struct PacketIdAck {
  PacketType type = PacketType::Puback;
  std::uint16_t packet_id = 0;
  std::uint8_t reason_code = 0;
};

struct Pingreq {};
struct Disconnect {
  std::uint8_t reason_code = 0;  // v5
  Properties properties;         // v5
};
struct Auth {  // v5 only
  std::uint8_t reason_code = 0;
};

using ClientPacket =
    std::variant<Connect, Publish, Subscribe, Unsubscribe, PacketIdAck, Pingreq, Disconnect, Auth>;

// CONNACK return codes of MQTT 3.1 / 3.1.1.
namespace connack {
inline constexpr std::uint8_t kAccepted = 0x00;
inline constexpr std::uint8_t kUnacceptableProtocolVersion = 0x01;
inline constexpr std::uint8_t kIdentifierRejected = 0x02;
inline constexpr std::uint8_t kServerUnavailable = 0x03;
inline constexpr std::uint8_t kBadUsernameOrPassword = 0x04;
inline constexpr std::uint8_t kNotAuthorized = 0x05;
}  // namespace connack

inline constexpr std::uint8_t kSubackFailure = 0x80;

// MQTT 5 reason codes (2.4) the proxy sends.
namespace reason {
inline constexpr std::uint8_t kSuccess = 0x00;
inline constexpr std::uint8_t kDisconnectWithWill = 0x04;  // from a client's DISCONNECT
inline constexpr std::uint8_t kNoSubscriptionExisted = 0x11;
inline constexpr std::uint8_t kUnspecifiedError = 0x80;
inline constexpr std::uint8_t kMalformedPacket = 0x81;
inline constexpr std::uint8_t kProtocolError = 0x82;
inline constexpr std::uint8_t kUnsupportedProtocolVersion = 0x84;
inline constexpr std::uint8_t kClientIdentifierNotValid = 0x85;
inline constexpr std::uint8_t kBadUserNameOrPassword = 0x86;
inline constexpr std::uint8_t kNotAuthorized = 0x87;
inline constexpr std::uint8_t kBadAuthenticationMethod = 0x8c;
inline constexpr std::uint8_t kServerShuttingDown = 0x8b;
inline constexpr std::uint8_t kKeepAliveTimeout = 0x8d;
inline constexpr std::uint8_t kSessionTakenOver = 0x8e;
inline constexpr std::uint8_t kTopicFilterInvalid = 0x8f;
inline constexpr std::uint8_t kTopicNameInvalid = 0x90;
inline constexpr std::uint8_t kPacketIdentifierNotFound = 0x92;
inline constexpr std::uint8_t kTopicAliasInvalid = 0x94;
inline constexpr std::uint8_t kPacketTooLarge = 0x95;
inline constexpr std::uint8_t kQuotaExceeded = 0x97;
inline constexpr std::uint8_t kSharedSubscriptionsNotSupported = 0x9e;
inline constexpr std::uint8_t kSubscriptionIdentifiersNotSupported = 0xa1;
}  // namespace reason

}  // namespace mqtt_proxy::mqtt
