// MQTT 5 properties (v5 section 2.2.2): writing property bytes, and filtering them for forwarding.
// Decoding checks them and picks out the values the broker acts on (`Properties`, packet.hpp).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

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
