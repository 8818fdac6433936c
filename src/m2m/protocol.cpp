#include "mqtt_proxy/m2m/protocol.hpp"

#include <cassert>

namespace mqtt_proxy::m2m {

std::string_view flags_name(Flags f) {
  switch (f) {
    case Flags::Publish:
      return "publish";
    case Flags::Subscribe:
      return "subscribe";
    case Flags::Unsubscribe:
      return "unsubscribe";
  }
  return "?";
}

void encode_request(Bytes& out, std::uint32_t tid, Flags flags, std::string_view topic) {
  assert(topic.size() <= 0xffff);
  const std::size_t at = out.size();
  out.resize(at + kRequestHeaderLen + topic.size());
  MutableByteSpan b{out};
  store_u8(b, at, kTypeRequest);
  store_be32(b, at + 1, tid);
  store_u8(b, at + 5, static_cast<std::uint8_t>(flags));
  // The length in bytes: the original counted characters of the decoded string for flags 2.
  store_be16(b, at + 6, static_cast<std::uint16_t>(topic.size()));
  for (std::size_t i = 0; i < topic.size(); ++i) {
    store_u8(b, at + kRequestHeaderLen + i, static_cast<std::uint8_t>(topic[i]));
  }
}

std::optional<Request> parse_request(ByteSpan b) {
  if (b.size() < kRequestHeaderLen || load_u8(b, 0) != kTypeRequest) return std::nullopt;
  const std::size_t len = load_be16(b, 6);
  if (kRequestHeaderLen + len != b.size()) return std::nullopt;
  return Request{load_be32(b, 1), load_u8(b, 5), as_chars(b.subspan(kRequestHeaderLen))};
}

void encode_reply(Bytes& out, const Reply& r) {
  const std::size_t at = out.size();
  out.resize(at + kReplyLen);
  MutableByteSpan b{out};
  store_u8(b, at, kTypeReply);
  store_be32(b, at + 1, r.tid);
  store_u8(b, at + 5, r.flags);
  store_be32(b, at + 6, r.group.value);
}

std::optional<Reply> parse_reply(ByteSpan b) {
  if (b.size() != kReplyLen || load_u8(b, 0) != kTypeReply) return std::nullopt;
  return Reply{load_be32(b, 1), load_u8(b, 5), wire::Ipv4Address{load_be32(b, 6)}};
}

}  // namespace mqtt_proxy::m2m
