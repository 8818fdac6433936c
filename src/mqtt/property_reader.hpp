// Reading MQTT 5 properties (v5 2.2.2) out of a packet, for the decoders. Not a public header.
#pragma once

#include <cstdint>

#include "fields.hpp"
#include "mqtt_proxy/mqtt/decode.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"

namespace mqtt_proxy::mqtt {

// Where a property may appear, in packets from a client.
namespace ctx {
inline constexpr std::uint8_t kConnect = 0x01;
inline constexpr std::uint8_t kWill = 0x02;
inline constexpr std::uint8_t kPublish = 0x04;
inline constexpr std::uint8_t kSubscribe = 0x08;
inline constexpr std::uint8_t kUnsubscribe = 0x10;
inline constexpr std::uint8_t kAck = 0x20;  // PUBACK, PUBREC, PUBREL, PUBCOMP
inline constexpr std::uint8_t kDisconnect = 0x40;
inline constexpr std::uint8_t kAuth = 0x80;
inline constexpr std::uint8_t kAll = 0xff;
}  // namespace ctx

// Reads a property length and the properties after it, checks each against where it may appear
// (`where`, ctx::*), picks out the values the broker acts on and keeps the bytes in `out.raw`.
DecodeError read_properties(Reader& r, std::uint8_t where, Properties& out);

}  // namespace mqtt_proxy::mqtt
