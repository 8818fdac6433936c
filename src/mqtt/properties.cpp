// MQTT 5 properties (v5 section 2.2.2): the property table, the reader that checks them, and the
// writer.

#include "mqtt_proxy/mqtt/properties.hpp"

#include <algorithm>

#include "fields.hpp"
#include "mqtt_proxy/mqtt/frame.hpp"
#include "property_reader.hpp"

namespace mqtt_proxy::mqtt {

namespace {

enum class PropType : std::uint8_t {
  None,
  Byte,
  TwoByte,
  FourByte,
  Varint,
  Utf8,
  Binary,
  Utf8Pair
};

struct PropSpec {
  PropType type = PropType::None;
  std::uint8_t where = 0;
};

// The type of each property a client may send, and the packets it may appear in. The others only a
// server sends (CONNACK's, Server Reference); from a client they are malformed.
PropSpec prop_spec(std::uint8_t id) {
  using enum PropType;
  switch (id) {
    case property::kPayloadFormatIndicator:
      return {Byte, ctx::kPublish | ctx::kWill};
    case property::kMessageExpiryInterval:
      return {FourByte, ctx::kPublish | ctx::kWill};
    case property::kContentType:
      return {Utf8, ctx::kPublish | ctx::kWill};
    case property::kResponseTopic:
      return {Utf8, ctx::kPublish | ctx::kWill};
    case property::kCorrelationData:
      return {Binary, ctx::kPublish | ctx::kWill};
    case property::kSubscriptionIdentifier:
      return {Varint, ctx::kSubscribe};
    case property::kSessionExpiryInterval:
      return {FourByte, ctx::kConnect | ctx::kDisconnect};
    case property::kAuthenticationMethod:
      return {Utf8, ctx::kConnect | ctx::kAuth};
    case property::kAuthenticationData:
      return {Binary, ctx::kConnect | ctx::kAuth};
    case property::kRequestProblemInformation:
      return {Byte, ctx::kConnect};
    case property::kWillDelayInterval:
      return {FourByte, ctx::kWill};
    case property::kRequestResponseInformation:
      return {Byte, ctx::kConnect};
    case property::kReasonString:
      return {Utf8, ctx::kAck | ctx::kDisconnect | ctx::kAuth};
    case property::kReceiveMaximum:
      return {TwoByte, ctx::kConnect};
    case property::kTopicAliasMaximum:
      return {TwoByte, ctx::kConnect};
    case property::kTopicAlias:
      return {TwoByte, ctx::kPublish};
    case property::kUserProperty:
      return {Utf8Pair, ctx::kAll};
    case property::kMaximumPacketSize:
      return {FourByte, ctx::kConnect};
    default:
      return {};
  }
}

struct PropValue {
  std::uint8_t b8 = 0;
  std::uint16_t b16 = 0;
  std::uint32_t b32 = 0;
  ByteSpan bin, bin2;
};

// Reads one property value of type `t`; false when the packet ends first.
bool read_value(Reader& p, PropType t, PropValue& v) {
  switch (t) {
    case PropType::Byte:
      return p.u8(v.b8);
    case PropType::TwoByte:
      return p.u16(v.b16);
    case PropType::FourByte:
      return p.u32(v.b32);
    case PropType::Varint:
      return p.varint(v.b32);
    case PropType::Utf8:
    case PropType::Binary:
      return p.binary(v.bin);
    case PropType::Utf8Pair:
      return p.binary(v.bin) && p.binary(v.bin2);
    case PropType::None:
      return false;
  }
  return false;
}

}  // namespace

DecodeError read_properties(Reader& r, std::uint8_t where, Properties& out) {
  std::uint32_t len = 0;
  ByteSpan all;
  if (!r.varint(len) || !r.take(len, all)) return DecodeError::MalformedProperty;
  out.raw = all;
  Reader p(all);
  std::uint64_t seen = 0;  // single-instance identifiers seen, by bit (all ids are below 64)
  while (p.remaining() > 0) {
    std::uint32_t id = 0;
    if (!p.varint(id) || id > 0x7f) return DecodeError::MalformedProperty;
    const PropSpec spec = prop_spec(static_cast<std::uint8_t>(id));
    if (spec.type == PropType::None || !(spec.where & where)) return DecodeError::MalformedProperty;
    if (id != property::kUserProperty) {
      if (seen & (std::uint64_t{1} << id)) return DecodeError::DuplicateProperty;
      seen |= std::uint64_t{1} << id;
    }
    PropValue v;
    if (!read_value(p, spec.type, v)) return DecodeError::MalformedProperty;
    switch (spec.type) {
      case PropType::Byte:
        if (v.b8 > 1) return DecodeError::BadPropertyValue;  // every byte property here is 0 or 1
        break;
      case PropType::Utf8:
        if (auto e = utf8_error(as_chars(v.bin)); e != DecodeError::None) return e;
        break;
      case PropType::Utf8Pair:
        if (auto e = utf8_error(as_chars(v.bin)); e != DecodeError::None) return e;
        if (auto e = utf8_error(as_chars(v.bin2)); e != DecodeError::None) return e;
        break;
      default:
        break;
    }
    const std::uint16_t b16 = v.b16;
    const std::uint32_t b32 = v.b32;
    const ByteSpan bin = v.bin;
    switch (id) {
      case property::kSessionExpiryInterval:
        out.session_expiry = b32;
        break;
      case property::kReceiveMaximum:
        if (b16 == 0) return DecodeError::BadPropertyValue;  // 3.1.2.11.3
        out.receive_maximum = b16;
        break;
      case property::kMaximumPacketSize:
        if (b32 == 0) return DecodeError::BadPropertyValue;  // 3.1.2.11.4
        out.maximum_packet_size = b32;
        break;
      case property::kTopicAliasMaximum:
        out.topic_alias_maximum = b16;
        break;
      case property::kTopicAlias:
        out.topic_alias = b16;
        break;
      case property::kSubscriptionIdentifier:
        if (b32 == 0) return DecodeError::BadPropertyValue;  // 3.8.2.1.2
        out.subscription_id = b32;
        break;
      case property::kWillDelayInterval:
        out.will_delay = b32;
        break;
      case property::kMessageExpiryInterval:
        out.message_expiry = b32;
        break;
      case property::kAuthenticationMethod:
        out.authentication_method = as_chars(bin);
        break;
      default:
        break;
    }
  }
  return DecodeError::None;
}

PropertyWriter& PropertyWriter::u8(std::uint8_t id, std::uint8_t v) {
  put_u8(b_, id);
  put_u8(b_, v);
  return *this;
}
PropertyWriter& PropertyWriter::u16(std::uint8_t id, std::uint16_t v) {
  put_u8(b_, id);
  put_u16(b_, v);
  return *this;
}
PropertyWriter& PropertyWriter::u32(std::uint8_t id, std::uint32_t v) {
  put_u8(b_, id);
  put_u16(b_, static_cast<std::uint16_t>(v >> 16));
  put_u16(b_, static_cast<std::uint16_t>(v & 0xffff));
  return *this;
}
PropertyWriter& PropertyWriter::varint(std::uint8_t id, std::uint32_t v) {
  put_u8(b_, id);
  encode_remaining_length(b_, v);
  return *this;
}
PropertyWriter& PropertyWriter::string(std::uint8_t id, std::string_view v) {
  put_u8(b_, id);
  put_string(b_, v);
  return *this;
}

Bytes without_properties(ByteSpan properties, std::initializer_list<std::uint8_t> ids) {
  Bytes out;
  Reader r(properties);
  while (r.remaining() > 0) {
    const std::size_t start = properties.size() - r.remaining();
    std::uint32_t id = 0;
    if (!r.varint(id)) break;
    PropValue v;
    if (!read_value(r, prop_spec(static_cast<std::uint8_t>(id)).type, v)) break;
    const std::size_t end = properties.size() - r.remaining();
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
      append(out, properties.subspan(start, end - start));
    }
  }
  return out;
}

}  // namespace mqtt_proxy::mqtt
