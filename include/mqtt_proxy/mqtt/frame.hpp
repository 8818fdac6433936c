// Framing (section 2.2): the fixed header, the Remaining Length, and splitting a byte stream into
// frames.
//
// Decoding never throws and never allocates the announced remaining length up front: a frame is
// only handed out once all of its bytes have arrived, and its size is checked against the limit as
// soon as the remaining length is known.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "mqtt_proxy/mqtt/decode.hpp"
#include "mqtt_proxy/mqtt/packet.hpp"
#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::mqtt {

// Splits a byte stream into MQTT frames. Bytes are buffered only while a frame is incomplete.
class FrameSplitter {
 public:
  explicit FrameSplitter(std::size_t max_packet_size) : max_packet_size_(max_packet_size) {}

  void feed(ByteSpan data);

  // The next complete frame, if any. The frame's view stays valid until the next feed(). Sets
  // `error` (and returns nullopt) on a malformed or oversized header; the stream is then unusable.
  std::optional<FrameView> next(DecodeError& error);

  std::size_t buffered() const { return buf_.size() - start_; }

 private:
  std::size_t max_packet_size_;
  Bytes buf_;
  std::size_t start_ = 0;
};

// Parses a fixed header at the start of `data`. Returns the frame when all of it is present; sets
// `need_more` when it is not; sets `error` when the header is malformed or too large.
std::optional<FrameView> parse_frame(ByteSpan data, std::size_t max_packet_size, bool& need_more,
                                     DecodeError& error);

// Whether the frame's Remaining Length used the fewest bytes (required by MQTT 5 [MQTT-1.5.5-1]).
bool minimal_length_encoding(const FrameView& f);

// The size of the frame starting at `data` (fixed header included), once its header is there.
std::optional<std::size_t> announced_frame_size(ByteSpan data);

// The Remaining Length (2.2.3) is a Variable Byte Integer (v5 1.5.5), as are MQTT 5's property
// lengths. Both are written by every encoder, hence inline.

// The number of bytes `v` takes as a Variable Byte Integer.
constexpr std::size_t varint_size(std::size_t v) {
  std::size_t n = 1;
  for (; v >= 128; v >>= 7) ++n;
  return n;
}

// Writes `len` as a Variable Byte Integer; returns its size.
inline std::size_t encode_remaining_length(Bytes& out, std::size_t len) {
  std::size_t n = 0;
  do {
    auto b = static_cast<std::uint8_t>(len & 0x7f);
    len >>= 7;
    if (len) b |= 0x80;
    out.push_back(std::byte{b});
    ++n;
  } while (len);
  return n;
}

}  // namespace mqtt_proxy::mqtt
