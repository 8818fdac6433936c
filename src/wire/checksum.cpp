#include "mqtt_proxy/wire/checksum.hpp"

namespace mqtt_proxy::wire {

std::uint32_t checksum_add(std::uint32_t sum, ByteSpan b) {
  // 64-bit accumulator: no carry handling inside the loop for any frame we can see.
  std::uint64_t acc = sum;
  std::size_t i = 0;
  for (; i + 1 < b.size(); i += 2) acc += load_be16(b, i);
  if (i < b.size()) acc += std::uint64_t{load_u8(b, i)} << 8;
  while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
  return static_cast<std::uint32_t>(acc);
}

std::uint16_t checksum_finish(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffffu);
}

std::uint32_t pseudo_header_sum(Ipv4Address src, Ipv4Address dst, std::uint8_t protocol,
                                std::uint16_t length) {
  std::uint64_t acc = (src.value >> 16) + (src.value & 0xffffu) + (dst.value >> 16) +
                      (dst.value & 0xffffu) + protocol + length;
  while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
  return static_cast<std::uint32_t>(acc);
}

}  // namespace mqtt_proxy::wire
