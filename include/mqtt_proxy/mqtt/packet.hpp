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

struct Will {
  std::string_view topic;
  ByteSpan payload;
  std::uint8_t qos = 0;
  bool retain = false;
};

struct Connect {
  ProtocolVersion version = ProtocolVersion::V311;
  bool clean_session = true;
  std::uint16_t keepalive = 0;
  std::string_view client_id;
  std::optional<Will> will;
  std::optional<std::string_view> username;
  std::optional<ByteSpan> password;
};

struct Publish {
  std::string_view topic;
  ByteSpan payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // only when qos > 0
};

struct TopicRequest {
  std::string_view filter;
  std::uint8_t requested_qos = 0;
  bool filter_valid = true;  // false: wildcards misplaced; answered with SUBACK 0x80
};

struct Subscribe {
  std::uint16_t packet_id = 0;
  std::vector<TopicRequest> topics;
};

struct Unsubscribe {
  std::uint16_t packet_id = 0;
  std::vector<std::string_view> filters;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP: a packet identifier and nothing else (in 3.1.1).
struct PacketIdAck {
  PacketType type = PacketType::Puback;
  std::uint16_t packet_id = 0;
};

struct Pingreq {};
struct Disconnect {};

using ClientPacket =
    std::variant<Connect, Publish, Subscribe, Unsubscribe, PacketIdAck, Pingreq, Disconnect>;

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

}  // namespace mqtt_proxy::mqtt
