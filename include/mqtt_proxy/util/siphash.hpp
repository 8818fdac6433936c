// SipHash-2-4 (Aumasson and Bernstein): a keyed hash for ISNs (RFC 6528) and for hash tables whose
// keys an attacker chooses.
#pragma once

#include <array>
#include <cstdint>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy {

using SipKey = std::array<std::uint8_t, 16>;

std::uint64_t siphash24(const SipKey& key, ByteSpan data);

}  // namespace mqtt_proxy
