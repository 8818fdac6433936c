// Decoding of client packets, MQTT 3.1, 3.1.1 and 5.0. Section numbers refer to MQTT 3.1.1 (OASIS,
// 2014) unless noted "v5".

#include "mqtt_proxy/mqtt/decode.hpp"

#include "fields.hpp"
#include "mqtt_proxy/mqtt/topic.hpp"
#include "property_reader.hpp"

namespace mqtt_proxy::mqtt {

const char* decode_error_name(DecodeError e) {
  switch (e) {
    case DecodeError::None:
      return "none";
    case DecodeError::MalformedRemainingLength:
      return "malformed remaining length";
    case DecodeError::PacketTooLarge:
      return "packet too large";
    case DecodeError::ReservedPacketType:
      return "reserved packet type";
    case DecodeError::UnexpectedPacketType:
      return "unexpected packet type";
    case DecodeError::BadFixedHeaderFlags:
      return "bad fixed header flags";
    case DecodeError::Truncated:
      return "truncated packet";
    case DecodeError::TrailingBytes:
      return "trailing bytes";
    case DecodeError::BadProtocolName:
      return "bad protocol name";
    case DecodeError::UnsupportedProtocolVersion:
      return "unsupported protocol version";
    case DecodeError::ReservedConnectFlag:
      return "reserved CONNECT flag set";
    case DecodeError::BadWillFlags:
      return "bad will flags";
    case DecodeError::PasswordWithoutUsername:
      return "password without username";
    case DecodeError::InvalidUtf8:
      return "invalid UTF-8";
    case DecodeError::NullCharacter:
      return "U+0000 in string";
    case DecodeError::BadQos:
      return "QoS 3";
    case DecodeError::DupWithQos0:
      return "DUP set on QoS 0";
    case DecodeError::PacketIdZero:
      return "packet identifier 0";
    case DecodeError::InvalidTopicName:
      return "invalid topic name";
    case DecodeError::EmptyTopicFilter:
      return "empty topic filter";
    case DecodeError::NoTopicFilters:
      return "no topic filters";
    case DecodeError::BadSubscriptionOptions:
      return "bad subscription options";
    case DecodeError::MalformedProperty:
      return "malformed property";
    case DecodeError::DuplicateProperty:
      return "duplicate property";
    case DecodeError::BadPropertyValue:
      return "forbidden property value";
    case DecodeError::EmptyTopicWithoutAlias:
      return "empty topic without a topic alias";
    case DecodeError::NoLocalOnSharedSubscription:
      return "No Local on a shared subscription";
  }
  return "?";
}

std::uint8_t reason_code_for(DecodeError e) {
  switch (e) {
    case DecodeError::PacketTooLarge:
      return reason::kPacketTooLarge;
    case DecodeError::InvalidTopicName:
      return reason::kTopicNameInvalid;
    case DecodeError::UnsupportedProtocolVersion:
      return reason::kUnsupportedProtocolVersion;
    case DecodeError::DupWithQos0:
    case DecodeError::PacketIdZero:
    case DecodeError::UnexpectedPacketType:
    case DecodeError::DuplicateProperty:
    case DecodeError::BadPropertyValue:
    case DecodeError::EmptyTopicWithoutAlias:
    case DecodeError::NoLocalOnSharedSubscription:
    case DecodeError::NoTopicFilters:
      return reason::kProtocolError;
    default:
      return reason::kMalformedPacket;
  }
}

namespace {

// A UTF-8 string field (1.5.3).
DecodeError read_string(Reader& r, std::string_view& out) {
  ByteSpan b;
  if (!r.binary(b)) return DecodeError::Truncated;
  out = as_chars(b);
  return utf8_error(out);
}

// The v5 tail of acks, DISCONNECT and AUTH: an optional reason code, then optional properties.
DecodeError read_reason_and_properties(ByteSpan tail, std::uint8_t where, std::uint8_t& reason,
                                       Properties& props) {
  Reader r(tail);
  if (r.remaining() > 0 && !r.u8(reason)) return DecodeError::Truncated;
  if (r.remaining() == 0) return DecodeError::None;
  if (auto e = read_properties(r, where, props); e != DecodeError::None) return e;
  return r.remaining() > 0 ? DecodeError::TrailingBytes : DecodeError::None;
}

DecodeError decode_connect(ByteSpan body, Connect& c) {
  Reader r(body);
  std::string_view name;
  if (auto e = read_string(r, name); e != DecodeError::None) {
    return e == DecodeError::Truncated ? DecodeError::Truncated : DecodeError::BadProtocolName;
  }
  std::uint8_t level = 0;
  if (!r.u8(level)) return DecodeError::Truncated;
  if (name == "MQTT") {
    if (level != 4 && level != 5) return DecodeError::UnsupportedProtocolVersion;
  } else if (name == "MQIsdp") {
    if (level != 3) return DecodeError::UnsupportedProtocolVersion;
  } else {
    return DecodeError::BadProtocolName;
  }
  c.version = static_cast<ProtocolVersion>(level);

  std::uint8_t flags = 0;
  if (!r.u8(flags) || !r.u16(c.keepalive)) return DecodeError::Truncated;
  const bool v5 = c.version == ProtocolVersion::V5;
  if (c.version != ProtocolVersion::V31 && (flags & 0x01)) return DecodeError::ReservedConnectFlag;
  c.clean_session = flags & 0x02;
  const bool will_flag = flags & 0x04;
  const std::uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = flags & 0x20;
  const bool password_flag = flags & 0x40;
  const bool username_flag = flags & 0x80;
  if (will_qos == 3) return DecodeError::BadWillFlags;
  if (!will_flag && (will_qos != 0 || will_retain)) return DecodeError::BadWillFlags;
  // v5 allows a password without a user name (3.1.2.9).
  if (!v5 && password_flag && !username_flag) return DecodeError::PasswordWithoutUsername;
  if (v5) {
    if (auto e = read_properties(r, ctx::kConnect, c.properties); e != DecodeError::None) return e;
  }

  if (auto e = read_string(r, c.client_id); e != DecodeError::None) return e;
  if (will_flag) {
    Will w;
    if (v5) {
      if (auto e = read_properties(r, ctx::kWill, w.properties); e != DecodeError::None) return e;
    }
    if (auto e = read_string(r, w.topic); e != DecodeError::None) return e;
    if (!is_valid_topic_name(w.topic)) return DecodeError::InvalidTopicName;
    if (!r.binary(w.payload)) return DecodeError::Truncated;
    w.qos = will_qos;
    w.retain = will_retain;
    c.will = w;
  }
  if (username_flag) {
    std::string_view user;
    if (auto e = read_string(r, user); e != DecodeError::None) return e;
    c.username = user;
  }
  if (password_flag) {
    ByteSpan pw;
    if (!r.binary(pw)) return DecodeError::Truncated;
    c.password = pw;
  }
  if (r.remaining() != 0) return DecodeError::TrailingBytes;
  return DecodeError::None;
}

DecodeError decode_publish(const FrameView& f, bool v5, Publish& p) {
  Reader r(f.body);
  const std::uint8_t flags = f.flags();
  p.qos = (flags >> 1) & 0x03;
  p.retain = flags & 0x01;
  p.dup = flags & 0x08;
  if (p.qos == 3) return DecodeError::BadQos;
  if (p.dup && p.qos == 0) return DecodeError::DupWithQos0;
  if (auto e = read_string(r, p.topic); e != DecodeError::None) return e;
  // v5: an empty topic stands for the one a Topic Alias names (3.3.2.3.4).
  if (!(v5 && p.topic.empty()) && !is_valid_topic_name(p.topic)) {
    return DecodeError::InvalidTopicName;
  }
  if (p.qos > 0) {
    if (!r.u16(p.packet_id)) return DecodeError::Truncated;
    if (p.packet_id == 0) return DecodeError::PacketIdZero;
  }
  if (v5) {
    if (auto e = read_properties(r, ctx::kPublish, p.properties); e != DecodeError::None) return e;
    if (p.topic.empty() && !p.properties.topic_alias) return DecodeError::EmptyTopicWithoutAlias;
  }
  p.payload = r.rest();
  return DecodeError::None;
}

DecodeError decode_subscribe(ByteSpan body, bool v5, Subscribe& s) {
  Reader r(body);
  if (!r.u16(s.packet_id)) return DecodeError::Truncated;
  if (s.packet_id == 0) return DecodeError::PacketIdZero;
  if (v5) {
    if (auto e = read_properties(r, ctx::kSubscribe, s.properties); e != DecodeError::None) {
      return e;
    }
  }
  while (r.remaining() > 0) {
    TopicRequest t;
    if (auto e = read_string(r, t.filter); e != DecodeError::None) return e;
    if (t.filter.empty()) return DecodeError::EmptyTopicFilter;
    std::uint8_t options = 0;
    if (!r.u8(options)) return DecodeError::Truncated;
    // 3.1.1 uses two bits; v5 adds No Local, Retain As Published and Retain Handling (3.8.3.1).
    const std::uint8_t reserved = v5 ? 0xc0 : 0xfc;
    if ((options & reserved) != 0 || (options & 0x03) == 3) {
      return DecodeError::BadSubscriptionOptions;
    }
    t.requested_qos = options & 0x03;
    t.no_local = options & 0x04;
    t.retain_as_published = options & 0x08;
    t.retain_handling = (options >> 4) & 0x03;
    if (t.retain_handling == 3) return DecodeError::BadSubscriptionOptions;
    if (t.no_local && t.filter.starts_with("$share/")) {
      return DecodeError::NoLocalOnSharedSubscription;
    }
    t.filter_valid = is_valid_topic_filter(t.filter);
    s.topics.push_back(t);
  }
  if (s.topics.empty()) return DecodeError::NoTopicFilters;
  return DecodeError::None;
}

DecodeError decode_unsubscribe(ByteSpan body, bool v5, Unsubscribe& u) {
  Reader r(body);
  if (!r.u16(u.packet_id)) return DecodeError::Truncated;
  if (u.packet_id == 0) return DecodeError::PacketIdZero;
  if (v5) {
    Properties props;
    if (auto e = read_properties(r, ctx::kUnsubscribe, props); e != DecodeError::None) return e;
  }
  while (r.remaining() > 0) {
    std::string_view filter;
    if (auto e = read_string(r, filter); e != DecodeError::None) return e;
    if (filter.empty()) return DecodeError::EmptyTopicFilter;
    u.filters.push_back(filter);
  }
  if (u.filters.empty()) return DecodeError::NoTopicFilters;
  return DecodeError::None;
}

// Required fixed-header flags per packet type (2.2.2); PUBLISH's flags carry fields instead.
std::uint8_t required_flags(PacketType t) {
  switch (t) {
    case PacketType::Pubrel:
    case PacketType::Subscribe:
    case PacketType::Unsubscribe:
      return 0x02;
    default:
      return 0x00;
  }
}

}  // namespace

DecodeError decode_client_packet(const FrameView& f, ProtocolVersion version, ClientPacket& out,
                                 bool lenient_flags) {
  const bool v5 = version == ProtocolVersion::V5;
  const PacketType type = f.type();
  if (type == PacketType::Reserved || (type == PacketType::Auth && !v5)) {
    return DecodeError::ReservedPacketType;
  }
  if (type == PacketType::Connack || type == PacketType::Suback || type == PacketType::Unsuback ||
      type == PacketType::Pingresp) {
    return DecodeError::UnexpectedPacketType;
  }
  if (type != PacketType::Publish && !lenient_flags && f.flags() != required_flags(type)) {
    return DecodeError::BadFixedHeaderFlags;
  }
  switch (type) {
    case PacketType::Connect: {
      Connect c;
      const auto e = decode_connect(f.body, c);
      out = c;
      return e;
    }
    case PacketType::Publish: {
      Publish p;
      const auto e = decode_publish(f, v5, p);
      out = p;
      return e;
    }
    case PacketType::Subscribe: {
      Subscribe s;
      const auto e = decode_subscribe(f.body, v5, s);
      out = std::move(s);
      return e;
    }
    case PacketType::Unsubscribe: {
      Unsubscribe u;
      const auto e = decode_unsubscribe(f.body, v5, u);
      out = std::move(u);
      return e;
    }
    case PacketType::Puback:
    case PacketType::Pubrec:
    case PacketType::Pubrel:
    case PacketType::Pubcomp: {
      if (f.body.size() < 2) return DecodeError::Truncated;
      if (f.body.size() > 2 && !v5) return DecodeError::TrailingBytes;
      PacketIdAck a{type, load_be16(f.body, 0), 0};
      if (a.packet_id == 0) return DecodeError::PacketIdZero;
      // v5 (3.4.2.1): the reason code and properties may be left out.
      Properties props;
      const auto e = read_reason_and_properties(f.body.subspan(2), ctx::kAck, a.reason_code, props);
      out = a;
      return e;
    }
    case PacketType::Pingreq:
      if (!f.body.empty()) return DecodeError::TrailingBytes;
      out = Pingreq{};
      return DecodeError::None;
    case PacketType::Disconnect: {
      if (!v5) {
        if (!f.body.empty()) return DecodeError::TrailingBytes;
        out = Disconnect{};
        return DecodeError::None;
      }
      Disconnect d;
      const auto e =
          read_reason_and_properties(f.body, ctx::kDisconnect, d.reason_code, d.properties);
      out = d;
      return e;
    }
    case PacketType::Auth: {
      Auth a;
      Properties props;
      const auto e = read_reason_and_properties(f.body, ctx::kAuth, a.reason_code, props);
      out = a;
      return e;
    }
    default:
      return DecodeError::ReservedPacketType;
  }
}

}  // namespace mqtt_proxy::mqtt
