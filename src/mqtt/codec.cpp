// MQTT 3.1 / 3.1.1 codec. Section numbers refer to MQTT 3.1.1 (OASIS, 2014) unless noted.

#include "mqtt_proxy/mqtt/codec.hpp"

#include <algorithm>
#include <cassert>

#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::mqtt {

const char* packet_type_name(PacketType t) {
  switch (t) {
    case PacketType::Reserved:
      return "RESERVED";
    case PacketType::Connect:
      return "CONNECT";
    case PacketType::Connack:
      return "CONNACK";
    case PacketType::Publish:
      return "PUBLISH";
    case PacketType::Puback:
      return "PUBACK";
    case PacketType::Pubrec:
      return "PUBREC";
    case PacketType::Pubrel:
      return "PUBREL";
    case PacketType::Pubcomp:
      return "PUBCOMP";
    case PacketType::Subscribe:
      return "SUBSCRIBE";
    case PacketType::Suback:
      return "SUBACK";
    case PacketType::Unsubscribe:
      return "UNSUBSCRIBE";
    case PacketType::Unsuback:
      return "UNSUBACK";
    case PacketType::Pingreq:
      return "PINGREQ";
    case PacketType::Pingresp:
      return "PINGRESP";
    case PacketType::Disconnect:
      return "DISCONNECT";
    case PacketType::Auth:
      return "AUTH";
  }
  return "?";
}

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

// ---------------------------------------------------------------------------------------------------
// Framing (section 2.2)

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

bool minimal_length_encoding(const FrameView& f) {
  std::size_t bytes = 1;
  for (std::size_t n = f.body.size(); n >= 128; n >>= 7) ++bytes;
  return f.wire_size == 1 + bytes + f.body.size();
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

// ---------------------------------------------------------------------------------------------------
// Field readers: each returns false once the packet is exhausted.

namespace {

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

// A UTF-8 string field (1.5.3).
DecodeError read_string(Reader& r, std::string_view& out) {
  ByteSpan b;
  if (!r.binary(b)) return DecodeError::Truncated;
  out = as_chars(b);
  switch (check_utf8(out)) {
    case Utf8Status::Ok:
      return DecodeError::None;
    case Utf8Status::Invalid:
      return DecodeError::InvalidUtf8;
    case Utf8Status::ContainsNull:
      return DecodeError::NullCharacter;
  }
  return DecodeError::InvalidUtf8;
}

// --- MQTT 5 properties (2.2.2)

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

// Where a property may appear, in packets from a client.
namespace ctx {
constexpr std::uint8_t kConnect = 0x01;
constexpr std::uint8_t kWill = 0x02;
constexpr std::uint8_t kPublish = 0x04;
constexpr std::uint8_t kSubscribe = 0x08;
constexpr std::uint8_t kUnsubscribe = 0x10;
constexpr std::uint8_t kAck = 0x20;  // PUBACK, PUBREC, PUBREL, PUBCOMP
constexpr std::uint8_t kDisconnect = 0x40;
constexpr std::uint8_t kAuth = 0x80;
constexpr std::uint8_t kAll = 0xff;
}  // namespace ctx

struct PropSpec {
  PropType type = PropType::None;
  std::uint8_t where = 0;
};

PropSpec prop_spec(std::uint8_t id) {
  using enum PropType;
  switch (id) {
    case 0x01:
      return {Byte, ctx::kPublish | ctx::kWill};  // Payload Format Indicator
    case 0x02:
      return {FourByte, ctx::kPublish | ctx::kWill};  // Message Expiry Interval
    case 0x03:
      return {Utf8, ctx::kPublish | ctx::kWill};  // Content Type
    case 0x08:
      return {Utf8, ctx::kPublish | ctx::kWill};  // Response Topic
    case 0x09:
      return {Binary, ctx::kPublish | ctx::kWill};  // Correlation Data
    case 0x0b:
      return {Varint, ctx::kSubscribe};  // Subscription Identifier
    case 0x11:
      return {FourByte, ctx::kConnect | ctx::kDisconnect};  // Session Expiry Interval
    case 0x15:
      return {Utf8, ctx::kConnect | ctx::kAuth};  // Authentication Method
    case 0x16:
      return {Binary, ctx::kConnect | ctx::kAuth};  // Authentication Data
    case 0x17:
      return {Byte, ctx::kConnect};  // Request Problem Information
    case 0x18:
      return {FourByte, ctx::kWill};  // Will Delay Interval
    case 0x19:
      return {Byte, ctx::kConnect};  // Request Response Information
    case 0x1f:
      return {Utf8, ctx::kAck | ctx::kDisconnect | ctx::kAuth};  // Reason String
    case 0x21:
      return {TwoByte, ctx::kConnect};  // Receive Maximum
    case 0x22:
      return {TwoByte, ctx::kConnect};  // Topic Alias Maximum
    case 0x23:
      return {TwoByte, ctx::kPublish};  // Topic Alias
    case 0x26:
      return {Utf8Pair, ctx::kAll};  // User Property
    case 0x27:
      return {FourByte, ctx::kConnect};  // Maximum Packet Size
    default:
      return {};
  }
}

DecodeError check_utf8_field(ByteSpan b) {
  switch (check_utf8(as_chars(b))) {
    case Utf8Status::Ok:
      return DecodeError::None;
    case Utf8Status::Invalid:
      return DecodeError::InvalidUtf8;
    case Utf8Status::ContainsNull:
      return DecodeError::NullCharacter;
  }
  return DecodeError::InvalidUtf8;
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
    if (id != 0x26) {
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
        if (auto e = check_utf8_field(v.bin); e != DecodeError::None) return e;
        break;
      case PropType::Utf8Pair:
        if (auto e = check_utf8_field(v.bin); e != DecodeError::None) return e;
        if (auto e = check_utf8_field(v.bin2); e != DecodeError::None) return e;
        break;
      default:
        break;
    }
    const std::uint16_t b16 = v.b16;
    const std::uint32_t b32 = v.b32;
    const ByteSpan bin = v.bin;
    switch (id) {
      case 0x11:
        out.session_expiry = b32;
        break;
      case 0x21:
        if (b16 == 0) return DecodeError::BadPropertyValue;  // 3.1.2.11.3
        out.receive_maximum = b16;
        break;
      case 0x27:
        if (b32 == 0) return DecodeError::BadPropertyValue;  // 3.1.2.11.4
        out.maximum_packet_size = b32;
        break;
      case 0x22:
        out.topic_alias_maximum = b16;
        break;
      case 0x23:
        out.topic_alias = b16;
        break;
      case 0x0b:
        if (b32 == 0) return DecodeError::BadPropertyValue;  // 3.8.2.1.2
        out.subscription_id = b32;
        break;
      case 0x18:
        out.will_delay = b32;
        break;
      case 0x02:
        out.message_expiry = b32;
        break;
      case 0x15:
        out.authentication_method = as_chars(bin);
        break;
      default:
        break;
    }
  }
  return DecodeError::None;
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

// ---------------------------------------------------------------------------------------------------
// Encoding

namespace {

void put_u8(Bytes& out, std::uint8_t v) {
  out.push_back(std::byte{v});
}
void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(std::byte(v >> 8));
  out.push_back(std::byte(v & 0xff));
}
void put_binary(Bytes& out, ByteSpan b) {
  assert(b.size() <= 0xffff);
  put_u16(out, static_cast<std::uint16_t>(b.size()));
  append(out, b);
}
void put_string(Bytes& out, std::string_view s) {
  put_binary(out, as_bytes(s));
}
std::size_t string_size(std::string_view s) {
  return 2 + s.size();
}

void put_header(Bytes& out, std::uint8_t first_byte, std::size_t remaining) {
  put_u8(out, first_byte);
  encode_remaining_length(out, remaining);
}

}  // namespace

std::size_t encode_remaining_length(Bytes& out, std::size_t len) {
  std::size_t n = 0;
  do {
    auto b = static_cast<std::uint8_t>(len & 0x7f);
    len >>= 7;
    if (len) b |= 0x80;
    put_u8(out, b);
    ++n;
  } while (len);
  return n;
}

void encode_connack(Bytes& out, bool session_present, std::uint8_t return_code) {
  put_header(out, 0x20, 2);
  put_u8(out, session_present ? 1 : 0);
  put_u8(out, return_code);
}

void encode_publish(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                    bool retain, bool dup, std::uint16_t packet_id) {
  const std::uint8_t first =
      static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
  put_header(out, first, string_size(topic) + (qos > 0 ? 2 : 0) + payload.size());
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  append(out, payload);
}

void encode_packet_id_ack(Bytes& out, PacketType type, std::uint16_t packet_id) {
  const auto first = static_cast<std::uint8_t>((static_cast<unsigned>(type) << 4) |
                                               (type == PacketType::Pubrel ? 0x02 : 0x00));
  put_header(out, first, 2);
  put_u16(out, packet_id);
}

void encode_suback(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0x90, 2 + codes.size());
  put_u16(out, packet_id);
  for (auto c : codes) put_u8(out, c);
}

void encode_unsuback(Bytes& out, std::uint16_t packet_id) {
  put_header(out, 0xb0, 2);
  put_u16(out, packet_id);
}

void encode_pingresp(Bytes& out) {
  put_header(out, 0xd0, 0);
}
void encode_pingreq(Bytes& out) {
  put_header(out, 0xc0, 0);
}
void encode_disconnect(Bytes& out) {
  put_header(out, 0xe0, 0);
}

void encode_subscribe(Bytes& out, std::uint16_t packet_id,
                      std::span<const std::string_view> filters) {
  std::size_t len = 2;
  for (auto f : filters) len += string_size(f) + 1;
  put_header(out, 0x82, len);
  put_u16(out, packet_id);
  for (auto f : filters) {
    put_string(out, f);
    put_u8(out, 0);  // requested QoS 0
  }
}

void encode_unsubscribe(Bytes& out, std::uint16_t packet_id,
                        std::span<const std::string_view> filters) {
  std::size_t len = 2;
  for (auto f : filters) len += string_size(f);
  put_header(out, 0xa2, len);
  put_u16(out, packet_id);
  for (auto f : filters) put_string(out, f);
}

std::size_t varint_size(std::size_t v) {
  std::size_t n = 1;
  while (v >= 128) {
    v >>= 7;
    ++n;
  }
  return n;
}

void put_properties(Bytes& out, ByteSpan properties) {
  encode_remaining_length(out, properties.size());
  append(out, properties);
}

std::size_t properties_size(ByteSpan properties) {
  return varint_size(properties.size()) + properties.size();
}

void encode_connack_v5(Bytes& out, bool session_present, std::uint8_t reason, ByteSpan properties) {
  put_header(out, 0x20, 2 + properties_size(properties));
  put_u8(out, session_present ? 1 : 0);
  put_u8(out, reason);
  put_properties(out, properties);
}

void encode_publish_v5(Bytes& out, std::string_view topic, ByteSpan payload, std::uint8_t qos,
                       bool retain, bool dup, std::uint16_t packet_id, ByteSpan properties) {
  const std::uint8_t first =
      static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
  put_header(out, first,
             string_size(topic) + (qos > 0 ? 2 : 0) + properties_size(properties) + payload.size());
  put_string(out, topic);
  if (qos > 0) put_u16(out, packet_id);
  put_properties(out, properties);
  append(out, payload);
}

void encode_suback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0x90, 3 + codes.size());
  put_u16(out, packet_id);
  put_u8(out, 0);  // no properties
  for (auto c : codes) put_u8(out, c);
}

void encode_unsuback_v5(Bytes& out, std::uint16_t packet_id, std::span<const std::uint8_t> codes) {
  put_header(out, 0xb0, 3 + codes.size());
  put_u16(out, packet_id);
  put_u8(out, 0);
  for (auto c : codes) put_u8(out, c);
}

void encode_disconnect_v5(Bytes& out, std::uint8_t reason) {
  put_header(out, 0xe0, 2);
  put_u8(out, reason);
  put_u8(out, 0);  // no properties
}

void encode_subscribe_v5(Bytes& out, std::uint16_t packet_id, std::string_view filter,
                         std::uint8_t options, ByteSpan properties) {
  put_header(out, 0x82, 2 + properties_size(properties) + string_size(filter) + 1);
  put_u16(out, packet_id);
  put_properties(out, properties);
  put_string(out, filter);
  put_u8(out, options);
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

void encode_connect(Bytes& out, const Connect& c) {
  const bool v31 = c.version == ProtocolVersion::V31;
  const bool v5 = c.version == ProtocolVersion::V5;
  const std::string_view name = v31 ? "MQIsdp" : "MQTT";
  std::size_t len = string_size(name) + 1 + 1 + 2 + string_size(c.client_id);
  if (v5) len += properties_size(c.properties.raw);
  if (v5 && c.will) len += properties_size(c.will->properties.raw);
  std::uint8_t flags = c.clean_session ? 0x02 : 0x00;
  if (c.will) {
    flags |= static_cast<std::uint8_t>(0x04 | (c.will->qos << 3) | (c.will->retain ? 0x20 : 0));
    len += string_size(c.will->topic) + 2 + c.will->payload.size();
  }
  if (c.username) {
    flags |= 0x80;
    len += string_size(*c.username);
  }
  if (c.password) {
    flags |= 0x40;
    len += 2 + c.password->size();
  }
  put_header(out, 0x10, len);
  put_string(out, name);
  put_u8(out, static_cast<std::uint8_t>(c.version));
  put_u8(out, flags);
  put_u16(out, c.keepalive);
  if (v5) put_properties(out, c.properties.raw);
  put_string(out, c.client_id);
  if (c.will) {
    if (v5) put_properties(out, c.will->properties.raw);
    put_string(out, c.will->topic);
    put_binary(out, c.will->payload);
  }
  if (c.username) put_string(out, *c.username);
  if (c.password) put_binary(out, *c.password);
}

}  // namespace mqtt_proxy::mqtt
