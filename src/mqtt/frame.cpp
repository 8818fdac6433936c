// Framing (section 2.2). Section numbers refer to MQTT 3.1.1 (OASIS, 2014).

#include "mqtt_proxy/mqtt/frame.hpp"

namespace mqtt_proxy::mqtt {

std::optional<FrameView> parse_frame(ByteSpan data, std::size_t max_packet_size, bool& need_more,
                                     DecodeError& error) {
  need_more = false;
  error = DecodeError::None;
  std::size_t remaining = 0;
  std::size_t i = 1;
  for (int shift = 0;; shift += 7, ++i) {
    if (i >= data.size()) {
      need_more = true;
      return std::nullopt;
    }
    if (i > 4) {  // at most four length bytes (2.2.3)
      error = DecodeError::MalformedRemainingLength;
      return std::nullopt;
    }
    const auto b = load_u8(data, i);
    remaining |= std::size_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) break;
  }
  const std::size_t header = i + 1;
  const std::size_t total = header + remaining;
  if (total > max_packet_size) {
    error = DecodeError::PacketTooLarge;
    return std::nullopt;
  }
  if (data.size() < total) {
    need_more = true;
    return std::nullopt;
  }
  return FrameView{load_u8(data, 0), data.subspan(header, remaining), total};
}

std::optional<std::size_t> announced_frame_size(ByteSpan data) {
  std::size_t remaining = 0;
  for (std::size_t i = 1; i < data.size() && i <= 4; ++i) {
    const auto b = load_u8(data, i);
    remaining |= std::size_t{b & 0x7fu} << (7 * (i - 1));
    if (!(b & 0x80)) return i + 1 + remaining;
  }
  return std::nullopt;
}

bool minimal_length_encoding(const FrameView& f) {
  return f.wire_size == 1 + varint_size(f.body.size()) + f.body.size();
}

void FrameSplitter::feed(ByteSpan data) {
  if (start_ > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  buf_.insert(buf_.end(), data.begin(), data.end());
}

std::optional<FrameView> FrameSplitter::next(DecodeError& error) {
  error = DecodeError::None;
  bool need_more = false;
  auto f = parse_frame(ByteSpan{buf_}.subspan(start_), max_packet_size_, need_more, error);
  if (!f) return std::nullopt;
  start_ += f->wire_size;  // the frame's bytes stay valid; feed() reclaims them
  return f;
}

}  // namespace mqtt_proxy::mqtt
