// The MQTT2MULTICAST messages (docs/mqtt2multicast.md; the original's layout, byte for byte).
// A proxy asks the controller for a topic's multicast address with a REQUEST; the controller
// answers flags 0 and 1 with a REPLY. All fields are big-endian.
//
//   REQUEST: type 1 | transaction id:4 | flags:1 | topic length:2 | topic (bytes, no terminator)
//   REPLY:   type 2 | transaction id:4 | flags:1 (0) | IPv4 multicast address:4
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::m2m {

inline constexpr std::uint8_t kTypeRequest = 1;
inline constexpr std::uint8_t kTypeReply = 2;
inline constexpr std::size_t kRequestHeaderLen = 8;
inline constexpr std::size_t kReplyLen = 10;

enum class Flags : std::uint8_t {
  Publish = 0,      // "I will publish on this topic": the sender becomes a transmitter
  Subscribe = 1,    // "a local client subscribed": the sender becomes a receiver
  Unsubscribe = 2,  // "the last local subscriber is gone": no REPLY
};
std::string_view flags_name(Flags f);

struct Request {
  std::uint32_t tid = 0;
  std::uint8_t flags = 0;
  std::string_view topic;  // into the parsed buffer
};

struct Reply {
  std::uint32_t tid = 0;
  std::uint8_t flags = 0;
  wire::Ipv4Address group;
};

// Appends a REQUEST to `out`; the topic must be at most 65535 bytes (an MQTT topic always is).
void encode_request(Bytes& out, std::uint32_t tid, Flags flags, std::string_view topic);
// A REQUEST whose length field matches the bytes that follow exactly; anything else is nullopt.
std::optional<Request> parse_request(ByteSpan b);

void encode_reply(Bytes& out, const Reply& r);
// Exactly 10 bytes of type 2; anything else is nullopt.
std::optional<Reply> parse_reply(ByteSpan b);

}  // namespace mqtt_proxy::m2m
