// The Internet checksum (RFC 1071) with an explicit running sum, so headers and payloads that live
// in different buffers can be summed without copying.
#pragma once

#include <cstdint>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/wire/address.hpp"

namespace mqtt_proxy::wire {

// Adds `b` to a running one's-complement sum. `b` must start at an even offset of the checksummed
// data (true for every header and for a payload after a header of even length).
std::uint32_t checksum_add(std::uint32_t sum, ByteSpan b);

// Folds a running sum into the 16-bit checksum field value.
std::uint16_t checksum_finish(std::uint32_t sum);

// Sum of the TCP/UDP pseudo-header (RFC 9293 3.1).
std::uint32_t pseudo_header_sum(Ipv4Address src, Ipv4Address dst, std::uint8_t protocol,
                                std::uint16_t length);

}  // namespace mqtt_proxy::wire
