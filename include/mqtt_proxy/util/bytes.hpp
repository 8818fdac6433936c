// Big-endian loads and stores on byte spans, plus small helpers for tests and logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqtt_proxy {

using Bytes = std::vector<std::byte>;
using ByteSpan = std::span<const std::byte>;
using MutableByteSpan = std::span<std::byte>;

inline std::uint8_t load_u8(ByteSpan b, std::size_t off) {
  return std::to_integer<std::uint8_t>(b[off]);
}

inline std::uint16_t load_be16(ByteSpan b, std::size_t off) {
  return static_cast<std::uint16_t>((load_u8(b, off) << 8) | load_u8(b, off + 1));
}

inline std::uint32_t load_be32(ByteSpan b, std::size_t off) {
  return (std::uint32_t{load_u8(b, off)} << 24) | (std::uint32_t{load_u8(b, off + 1)} << 16) |
         (std::uint32_t{load_u8(b, off + 2)} << 8) | std::uint32_t{load_u8(b, off + 3)};
}

inline void store_u8(MutableByteSpan b, std::size_t off, std::uint8_t v) {
  b[off] = std::byte{v};
}

inline void store_be16(MutableByteSpan b, std::size_t off, std::uint16_t v) {
  b[off] = std::byte(v >> 8);
  b[off + 1] = std::byte(v & 0xff);
}

inline void store_be32(MutableByteSpan b, std::size_t off, std::uint32_t v) {
  b[off] = std::byte(v >> 24);
  b[off + 1] = std::byte((v >> 16) & 0xff);
  b[off + 2] = std::byte((v >> 8) & 0xff);
  b[off + 3] = std::byte(v & 0xff);
}

inline ByteSpan as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string_view as_chars(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline void append(Bytes& out, ByteSpan b) {
  out.insert(out.end(), b.begin(), b.end());
}

// "c3 50 07 5b" -> bytes; blanks ignored. Nothing on a character that is not a hex digit or an
// odd number of digits.
std::optional<Bytes> parse_hex(std::string_view hex);
// The same for tests and tools only: aborts on bad input.
Bytes from_hex(std::string_view hex);
std::string to_hex(ByteSpan b);

}  // namespace mqtt_proxy
