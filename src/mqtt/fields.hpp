// Field readers and writers of the MQTT data representation (section 1.5), shared by the decoders,
// the property reader and the encoders of this module. Not a public header.
#pragma once

#include <cassert>
#include <cstdint>
#include <string_view>

#include "mqtt_proxy/mqtt/decode.hpp"
#include "mqtt_proxy/mqtt/topic.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

// Field readers: each returns false once the packet is exhausted.
class Reader {
 public:
  explicit Reader(ByteSpan b) : b_(b) {}
  std::size_t remaining() const { return b_.size() - pos_; }
  bool u8(std::uint8_t& v) {
    if (remaining() < 1) return false;
    v = load_u8(b_, pos_++);
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (remaining() < 2) return false;
    v = load_be16(b_, pos_);
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (remaining() < 4) return false;
    v = load_be32(b_, pos_);
    pos_ += 4;
    return true;
  }
  // A Variable Byte Integer (1.5.5): at most four bytes.
  bool varint(std::uint32_t& v) {
    v = 0;
    for (int i = 0; i < 4; ++i) {
      std::uint8_t b = 0;
      if (!u8(b)) return false;
      v |= std::uint32_t{b & 0x7fu} << (7 * i);
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool take(std::size_t n, ByteSpan& v) {
    if (remaining() < n) return false;
    v = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool binary(ByteSpan& v) {
    std::uint16_t len = 0;
    if (!u16(len) || remaining() < len) return false;
    v = b_.subspan(pos_, len);
    pos_ += len;
    return true;
  }
  ByteSpan rest() {
    auto r = b_.subspan(pos_);
    pos_ = b_.size();
    return r;
  }

 private:
  ByteSpan b_;
  std::size_t pos_ = 0;
};

// The error of a UTF-8 string field (1.5.3), DecodeError::None when there is none.
inline DecodeError utf8_error(std::string_view s) {
  switch (check_utf8(s)) {
    case Utf8Status::Ok:
      return DecodeError::None;
    case Utf8Status::Invalid:
      return DecodeError::InvalidUtf8;
    case Utf8Status::ContainsNull:
      return DecodeError::NullCharacter;
  }
  return DecodeError::InvalidUtf8;
}

// Field writers.
inline void put_u8(Bytes& out, std::uint8_t v) {
  out.push_back(std::byte{v});
}
inline void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(std::byte(v >> 8));
  out.push_back(std::byte(v & 0xff));
}
inline void put_binary(Bytes& out, ByteSpan b) {
  assert(b.size() <= 0xffff);
  put_u16(out, static_cast<std::uint16_t>(b.size()));
  append(out, b);
}
inline void put_string(Bytes& out, std::string_view s) {
  put_binary(out, as_bytes(s));
}

}  // namespace mqtt_proxy::mqtt
