// The relay of upstream mode: a client's packets through the hooks to its broker, and back.
// Section numbers refer to MQTT 3.1.1 unless noted "v5".

#include "mqtt_proxy/upstream/relay.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <variant>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::upstream {

namespace {

using mqtt::PacketType;
namespace property = mqtt::property;
namespace reason = mqtt::reason;

// Reads the fields of a packet from the broker (the codec decodes only what clients send).
class Cursor {
 public:
  explicit Cursor(ByteSpan b) : b_(b) {}
  std::size_t left() const { return b_.size() - pos_; }
  bool take(std::size_t n, ByteSpan& v) {
    if (left() < n) return false;
    v = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool u8(std::uint8_t& v) {
    ByteSpan b;
    if (!take(1, b)) return false;
    v = load_u8(b, 0);
    return true;
  }
  bool u16(std::uint16_t& v) {
    ByteSpan b;
    if (!take(2, b)) return false;
    v = load_be16(b, 0);
    return true;
  }
  bool varint(std::uint32_t& v) {  // v5 1.5.5
    v = 0;
    for (unsigned shift = 0; shift < 28; shift += 7) {
      std::uint8_t b = 0;
      if (!u8(b)) return false;
      v |= std::uint32_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool binary(ByteSpan& v) {
    std::uint16_t n = 0;
    return u16(n) && take(n, v);
  }
  bool property_block(ByteSpan& v) {  // v5 2.2.2.1
    std::uint32_t n = 0;
    return varint(n) && take(n, v);
  }
  ByteSpan rest() {
    ByteSpan r = b_.subspan(pos_);
    pos_ = b_.size();
    return r;
  }

 private:
  ByteSpan b_;
  std::size_t pos_ = 0;
};

// Calls f(id, value) for each property of a v5 property block (v5 2.2.2.2): the value's bytes,
// a string's without its length. False when malformed.
template <typename F>
bool each_property(ByteSpan props, F&& f) {
  Cursor c(props);
  while (c.left() > 0) {
    std::uint8_t id = 0;
    ByteSpan v;
    std::uint32_t n = 0;
    if (!c.u8(id)) return false;  // every identifier is below 128: one byte
    bool ok = false;
    switch (id) {
      case property::kPayloadFormatIndicator:
      case property::kRequestProblemInformation:
      case property::kRequestResponseInformation:
      case property::kMaximumQos:
      case property::kRetainAvailable:
      case property::kWildcardSubscriptionAvailable:
      case property::kSubscriptionIdentifierAvailable:
      case property::kSharedSubscriptionAvailable:
        ok = c.take(1, v);
        break;
      case property::kServerKeepAlive:
      case property::kReceiveMaximum:
      case property::kTopicAliasMaximum:
      case property::kTopicAlias:
        ok = c.take(2, v);
        break;
      case property::kMessageExpiryInterval:
      case property::kSessionExpiryInterval:
      case property::kWillDelayInterval:
      case property::kMaximumPacketSize:
        ok = c.take(4, v);
        break;
      case property::kSubscriptionIdentifier:
        ok = c.varint(n);
        break;
      case property::kUserProperty:
        ok = c.binary(v) && c.binary(v);
        break;
      case property::kContentType:
      case property::kResponseTopic:
      case property::kCorrelationData:
      case property::kAssignedClientIdentifier:
      case property::kAuthenticationMethod:
      case property::kAuthenticationData:
      case property::kResponseInformation:
      case property::kServerReference:
      case property::kReasonString:
        ok = c.binary(v);
        break;
      default:
        break;
    }
    if (!ok) return false;
    f(id, v);
  }
  return true;
}

// A PUBLISH from the broker (3.3), into the codec's struct. Only what the relay needs is checked:
// the broker's PUBLISH may carry properties a client's may not (Subscription Identifier).
bool parse_publish(const mqtt::FrameView& f, bool v5, mqtt::Publish& p) {
  Cursor c(f.body);
  p.qos = (f.flags() >> 1) & 0x03;
  p.retain = f.flags() & 0x01;
  p.dup = f.flags() & 0x08;
  ByteSpan topic;
  if (p.qos == 3 || !c.binary(topic)) return false;
  p.topic = as_chars(topic);
  if (p.qos > 0 && !c.u16(p.packet_id)) return false;
  if (v5) {
    if (!c.property_block(p.properties.raw)) return false;
    const bool ok = each_property(p.properties.raw, [&](std::uint8_t id, ByteSpan v) {
      if (id == property::kTopicAlias) p.properties.topic_alias = load_be16(v, 0);
    });
    if (!ok) return false;
  }
  p.payload = c.rest();
  return true;
}

void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(std::byte(v >> 8));
  out.push_back(std::byte(v & 0xff));
}

void put_property_block(Bytes& out, bool v5, ByteSpan props) {
  if (!v5) return;
  mqtt::encode_remaining_length(out, props.size());
  append(out, props);
}

std::size_t property_block_size(bool v5, ByteSpan props) {
  return v5 ? mqtt::varint_size(props.size()) + props.size() : 0;
}

// The codec's encode_suback() writes no properties: the broker's reason string and user
// properties are kept.
void encode_suback(Bytes& out, bool v5, std::uint16_t id, ByteSpan props,
                   std::span<const std::uint8_t> codes) {
  out.push_back(std::byte{0x90});
  mqtt::encode_remaining_length(out, 2 + property_block_size(v5, props) + codes.size());
  put_u16(out, id);
  put_property_block(out, v5, props);
  for (const std::uint8_t code : codes) out.push_back(std::byte{code});
}

// The codec's encode_subscribe() gives every filter the same options: here each keeps its own.
void encode_subscribe(Bytes& out, bool v5, std::uint16_t id, ByteSpan props,
                      std::span<const std::string> filters, std::span<const std::uint8_t> options) {
  std::size_t len = 2 + property_block_size(v5, props);
  for (const auto& f : filters) len += 2 + f.size() + 1;
  out.push_back(std::byte{0x82});
  mqtt::encode_remaining_length(out, len);
  put_u16(out, id);
  put_property_block(out, v5, props);
  for (std::size_t i = 0; i < filters.size(); ++i) {
    put_u16(out, static_cast<std::uint16_t>(filters[i].size()));
    append(out, as_bytes(filters[i]));
    out.push_back(std::byte{options[i]});
  }
}

// The subscription options byte (3.8.3.1, v5 3.8.3.1) of a decoded filter.
std::uint8_t options_byte(const mqtt::TopicRequest& t) {
  return static_cast<std::uint8_t>(t.requested_qos | (t.no_local ? 0x04 : 0) |
                                   (t.retain_as_published ? 0x08 : 0) | (t.retain_handling << 4));
}

}  // namespace

Relay::Relay(Config cfg, hooks::Client client, metrics::Counters& counters)
    : cfg_(std::move(cfg)), counters_(counters), who_(std::move(client)) {}

// Each direction looks at the queue it feeds, so a broker that stops reading holds up only the
// client's packets, not its deliveries. The other queue gets a looser bound of its own: it
// takes the relay's answers (PUBACK, PUBREC, PUBCOMP, SUBACK), which a peer that floods without
// reading could otherwise grow without end.
bool Relay::client_blocked() const {
  return to_upstream_.size() > cfg_.max_buffered || to_client_.size() > 2 * cfg_.max_buffered;
}

bool Relay::upstream_blocked() const {
  return to_client_.size() > cfg_.max_buffered || to_upstream_.size() > 2 * cfg_.max_buffered;
}

void Relay::close(std::string why) {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  error_ = std::move(why);
  if (connacked_ && hooked()) cfg_.hooks->on_disconnect(who_);
}

void Relay::client_error(std::string_view why, std::uint8_t v5_reason) {
  ++counters_.mqtt_protocol_errors;
  // Only a v5 client that got its CONNACK may be told why (4.13.2). The broker is not: its
  // connection just closes, so that it publishes the will.
  if (v5_ && connacked_) mqtt::encode_disconnect_v5(to_client_, v5_reason);
  close(fmt::format("client: {}", why));
}

std::size_t Relay::from_client(ByteSpan data) {
  std::size_t used = 0;
  while (state_ != State::Closed && used < data.size() && !client_blocked()) {
    bool need_more = false;
    mqtt::DecodeError err = mqtt::DecodeError::None;
    const auto f = mqtt::parse_frame(data.subspan(used), cfg_.max_packet_size, need_more, err);
    if (!f) {
      if (!need_more) client_error(mqtt::decode_error_name(err), mqtt::reason_code_for(err));
      break;
    }
    // After CONNECT, only AUTH (v5 enhanced authentication) goes before the broker's CONNACK:
    // the relay answers nothing before the client has its CONNACK [MQTT-3.2.0-1].
    if (state_ != State::AwaitConnect && !connacked_ && f->type() != PacketType::Auth) break;
    client_frame(*f, data.subspan(used, f->wire_size));
    used += f->wire_size;
  }
  return state_ == State::Closed ? data.size() : used;
}

void Relay::client_frame(const mqtt::FrameView& f, ByteSpan wire) {
  mqtt::ClientPacket packet;
  const auto err = mqtt::decode_client_packet(f, version_, packet);
  if (state_ == State::AwaitConnect) {
    if (err == mqtt::DecodeError::UnsupportedProtocolVersion) {  // [MQTT-3.1.2-2]
      return refuse_connect(mqtt::connack::kUnacceptableProtocolVersion, 0,
                            "unsupported protocol version");
    }
    if (err == mqtt::DecodeError::None && !std::holds_alternative<mqtt::Connect>(packet)) {
      return client_error(fmt::format("{} before CONNECT", mqtt::packet_type_name(f.type())),
                          reason::kProtocolError);
    }
  }
  if (err != mqtt::DecodeError::None) {
    return client_error(fmt::format("malformed {}: {}", mqtt::packet_type_name(f.type()),
                                    mqtt::decode_error_name(err)),
                        mqtt::reason_code_for(err));
  }
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::Connect>) {
          if (state_ != State::AwaitConnect) {
            client_error("second CONNECT", reason::kProtocolError);  // [MQTT-3.1.0-2]
          } else {
            client_connect(p, wire);
          }
        } else if constexpr (std::is_same_v<T, mqtt::Publish>) {
          client_publish(p, wire);
        } else if constexpr (std::is_same_v<T, mqtt::Subscribe>) {
          client_subscribe(p, wire);
        } else {
          if constexpr (std::is_same_v<T, mqtt::PacketIdAck>) {
            // The PUBREL of a QoS 2 PUBLISH the relay refused: the broker never had it.
            if (p.type == PacketType::Pubrel && refused_from_client_.erase(p.packet_id) > 0) {
              mqtt::encode_packet_id_ack(to_client_, PacketType::Pubcomp, p.packet_id);
              return;
            }
            if (p.type == PacketType::Pubrel) forwarded_qos2_.erase(p.packet_id);
          }
          append(to_upstream_, wire);
          if constexpr (std::is_same_v<T, mqtt::Unsubscribe>) {
            if (hooked()) {
              const std::vector<std::string> filters(p.filters.begin(), p.filters.end());
              cfg_.hooks->on_unsubscribe(who_, filters);
            }
          } else if constexpr (std::is_same_v<T, mqtt::Disconnect>) {
            close("client sent DISCONNECT");
          }
        }
      },
      packet);
}

void Relay::refuse_connect(std::uint8_t v3_code, std::uint8_t v5_code, std::string_view why) {
  ++counters_.mqtt_connects_refused;
  if (v5_ && v5_code != 0) {
    mqtt::encode_connack_v5(to_client_, false, v5_code, {});
  } else {
    mqtt::encode_connack(to_client_, false, v3_code);
  }
  close(fmt::format("CONNECT refused: {}", why));
}

void Relay::client_connect(mqtt::Connect c, ByteSpan wire) {
  version_ = c.version;
  v5_ = c.version == mqtt::ProtocolVersion::V5;
  who_.protocol_version = static_cast<std::uint8_t>(c.version);
  who_.client_id = std::string(c.client_id);
  who_.username = std::string(c.username.value_or(""));
  down_.maximum = c.properties.topic_alias_maximum.value_or(0);
  // The hooks' values live here until the CONNECT is re-encoded.
  hooks::Credentials cred;
  hooks::Field will_topic;
  hooks::Field will_payload;
  bool changed = false;
  if (hooked()) {
    // mProxy's AuthConnect, as the broker calls it (broker.cpp, handle_connect).
    cred.client_id = hooks::Field(c.client_id);
    cred.username = hooks::Field(c.username.value_or(""));
    cred.password = hooks::Field(as_chars(c.password.value_or(ByteSpan{})));
    cred.has_username = c.username.has_value();
    cred.has_password = c.password.has_value();
    std::string_view by;
    if (const hooks::Reason r = cfg_.hooks->auth_connect(who_, cred, &by); r != hooks::kOk) {
      return refuse_connect(hooks::connack_code(r), r, fmt::format("hook {} said 0x{:02x}", by, r));
    }
    changed = cred.client_id.changed() || cred.username.changed() || cred.password.changed() ||
              cred.has_username != c.username.has_value() ||
              cred.has_password != c.password.has_value();
    // What a hook set goes on the wire with a 16-bit length: it must fit, and be UTF-8 where the
    // field is a string. 3.1/3.1.1 have no password without a username [MQTT-3.1.2-22].
    if (changed && (!mqtt::is_mqtt_string(cred.client_id.get()) ||
                    (cred.has_username && !mqtt::is_mqtt_string(cred.username.get())) ||
                    (cred.has_password && cred.password.get().size() > 0xffff) ||
                    (!v5_ && cred.has_password && !cred.has_username))) {
      return refuse_connect(hooks::connack_code(reason::kBadUserNameOrPassword),
                            reason::kBadUserNameOrPassword,
                            fmt::format("hook {} set credentials the CONNECT cannot carry", by));
    }
    c.client_id = cred.client_id.get();
    // A hook may also remove the username or the password.
    c.username =
        cred.has_username ? std::optional<std::string_view>(cred.username.get()) : std::nullopt;
    c.password =
        cred.has_password ? std::optional<ByteSpan>(as_bytes(cred.password.get())) : std::nullopt;
    who_.client_id = std::string(c.client_id);
    who_.username = std::string(c.username.value_or(""));
    // The will is a PUBLISH to come: checked now. Refused, it is dropped and the CONNECT goes
    // on, as the broker does (and Mosquitto 2).
    if (c.will) {
      will_topic = hooks::Field(c.will->topic);
      will_payload = hooks::Field(as_chars(c.will->payload));
      hooks::Reason r = cfg_.hooks->auth_publish(who_, will_topic, will_payload, c.will->qos,
                                                 c.will->retain, &by);
      if (r == hooks::kOk && will_topic.changed() &&
          !(mqtt::is_mqtt_string(will_topic.get()) &&
            mqtt::is_valid_topic_name(will_topic.get()))) {
        r = reason::kTopicNameInvalid;
      }
      if (r != hooks::kOk) {
        ++counters_.mqtt_publish_refused;
        c.will.reset();
        changed = true;
      } else if (will_topic.changed() || will_payload.changed()) {
        c.will->topic = will_topic.get();
        c.will->payload = as_bytes(will_payload.get());
        changed = true;
      }
    }
  }
  if (changed) {
    mqtt::encode_connect(to_upstream_, c);  // v5: with its properties and the will's
  } else {
    append(to_upstream_, wire);
  }
  state_ = State::Dial;
}

std::optional<std::string_view> Relay::resolve(Aliases& a, const mqtt::Publish& p,
                                               std::uint8_t& why) const {
  if (!p.properties.topic_alias) return p.topic;
  // v5 3.3.2.3.4: from 1 to the receiver's Topic Alias Maximum; a topic sets it, none uses it.
  const std::uint16_t alias = *p.properties.topic_alias;
  if (alias == 0 || alias > a.maximum) {
    why = reason::kTopicAliasInvalid;
    return std::nullopt;
  }
  if (!p.topic.empty()) {
    if (!remember(a, a.sender, alias, p.topic)) {
      why = reason::kQuotaExceeded;
      return std::nullopt;
    }
    return p.topic;
  }
  const auto it = a.sender.find(alias);
  if (it == a.sender.end()) {
    why = reason::kProtocolError;
    return std::nullopt;
  }
  return std::string_view(it->second);
}

bool Relay::remember(Aliases& a, std::unordered_map<std::uint16_t, std::string>& map,
                     std::uint16_t alias, std::string_view topic) const {
  std::string& known = map[alias];
  a.bytes = a.bytes - known.size() + topic.size();
  known.assign(topic.data(), topic.size());
  return a.bytes <= cfg_.max_alias_bytes;
}

void Relay::forward_publish(Bytes& out, Aliases& a, const mqtt::Publish& p, ByteSpan wire,
                            std::string_view topic, ByteSpan payload, bool payload_changed) {
  std::string_view on_wire = topic;
  if (p.properties.topic_alias) {
    // The alias alone when the receiver has it for this topic; else the topic, which sets it.
    const std::uint16_t alias = *p.properties.topic_alias;
    const auto it = a.receiver.find(alias);
    if (p.topic.empty() && it != a.receiver.end() && it->second == topic) on_wire = {};
    // Over the budget only by this topic: resolve() refuses the sender's next one.
    remember(a, a.receiver, alias, topic);
  }
  if (on_wire == p.topic && !payload_changed) {
    append(out, wire);
  } else {
    mqtt::encode_publish(out, version_, on_wire, payload, p.qos, p.retain, p.dup, p.packet_id,
                         p.properties.raw);  // the alias stays in the properties
  }
}

void Relay::client_publish(const mqtt::Publish& p, ByteSpan wire) {
  std::uint8_t why = 0;
  const auto topic = resolve(up_, p, why);
  if (!topic) {
    return client_error(fmt::format("PUBLISH with topic alias {}", *p.properties.topic_alias), why);
  }
  // A resend of a QoS 2 PUBLISH the broker already has (its PUBREL has not come): the hooks
  // decided on the first copy, and the broker's flow must see this one through.
  if (p.qos == 2 && forwarded_qos2_.contains(p.packet_id)) {
    return forward_publish(to_upstream_, up_, p, wire, *topic, p.payload, false);
  }
  hooks::Field t(*topic);
  hooks::Field payload(as_chars(p.payload));
  if (hooked()) {
    std::string_view by;
    hooks::Reason r = cfg_.hooks->auth_publish(who_, t, payload, p.qos, p.retain, &by);
    if (r == hooks::kOk && t.changed() &&
        !(mqtt::is_mqtt_string(t.get()) && mqtt::is_valid_topic_name(t.get()))) {
      r = reason::kTopicNameInvalid;
    }
    if (r != hooks::kOk) return refuse_publish(p, r);
  }
  if (p.qos == 2) {
    refused_from_client_.erase(p.packet_id);  // the id is in use again
    forwarded_qos2_.insert(p.packet_id);      // until its PUBREL goes to the broker
  }
  forward_publish(to_upstream_, up_, p, wire, t.get(), as_bytes(payload.get()), payload.changed());
  if (hooked()) cfg_.hooks->on_publish(who_, t.get(), payload.get());
}

void Relay::refuse_publish(const mqtt::Publish& p, hooks::Reason r) {
  ++counters_.mqtt_publish_refused;
  // As the broker answers (broker.cpp, refuse_publish): v5 with the reason, 3.1.1 plainly.
  if (p.qos == 0) return;
  const PacketType type = p.qos == 1 ? PacketType::Puback : PacketType::Pubrec;
  if (v5_) {
    mqtt::encode_packet_id_ack_v5(to_client_, type, p.packet_id, r);
  } else {
    mqtt::encode_packet_id_ack(to_client_, type, p.packet_id);
  }
  // 3.1.1 goes on with PUBREL, which the relay completes. In v5 the failing PUBREC ends the flow
  // (v5 4.3.3, 3.5): nothing is kept, so ids the client never uses again cannot pile up, and a
  // PUBREL it sends anyway goes to the broker, which answers 0x92 (packet identifier not found).
  if (p.qos == 2 && !v5_) refused_from_client_.insert(p.packet_id);
}

void Relay::client_subscribe(const mqtt::Subscribe& s, ByteSpan wire) {
  if (!hooked()) return append(to_upstream_, wire);
  std::vector<std::uint16_t> codes;  // per filter sent: the relay's code, or kFromBroker
  std::vector<std::string> kept;     // the filters forwarded, as the hooks left them
  std::vector<std::uint8_t> options;
  std::vector<std::string> accepted;  // for on_subscribe: the valid ones
  bool changed = false;
  for (const auto& t : s.topics) {
    hooks::Field f(t.filter);
    // An invalid filter is refused here, as the broker does (broker.cpp): forwarding it would
    // leave what a hook never saw to the broker's reading of the filter syntax.
    if (!t.filter_valid) {
      codes.push_back(v5_ ? reason::kTopicFilterInvalid : mqtt::kSubackFailure);
      changed = true;
      continue;
    }
    {
      std::string_view by;
      hooks::Reason r = cfg_.hooks->auth_subscribe(who_, f, t.requested_qos, &by);
      if (r == hooks::kOk && f.changed() &&
          !(mqtt::is_mqtt_string(f.get()) && mqtt::is_valid_topic_filter(f.get()))) {
        r = reason::kTopicFilterInvalid;
      }
      if (r != hooks::kOk) {
        ++counters_.mqtt_subscribe_refused;
        codes.push_back(v5_ ? r : mqtt::kSubackFailure);
        changed = true;
        continue;
      }
      changed = changed || f.changed();
      accepted.emplace_back(f.get());
    }
    codes.push_back(kFromBroker);
    kept.emplace_back(f.get());
    options.push_back(options_byte(t));
  }
  subacks_.erase(s.packet_id);
  if (kept.empty()) {  // every filter refused: the relay answers
    std::vector<std::uint8_t> own;
    for (const std::uint16_t code : codes) own.push_back(static_cast<std::uint8_t>(code));
    return encode_suback(to_client_, v5_, s.packet_id, {}, own);
  }
  if (!changed) {
    append(to_upstream_, wire);
  } else {
    encode_subscribe(to_upstream_, v5_, s.packet_id, s.properties.raw, kept, options);
    if (kept.size() < codes.size()) subacks_[s.packet_id] = std::move(codes);
  }
  if (!accepted.empty()) cfg_.hooks->on_subscribe(who_, accepted);
}

void Relay::upstream_connected() {
  if (state_ == State::Dial) state_ = State::Open;
}

void Relay::upstream_failed(std::string_view why) {
  if (state_ == State::Closed) return;
  if (state_ != State::AwaitConnect && !connacked_) {
    // The client waits for a CONNACK: it is told the server is unavailable (3.2.2.3, v5 3.2.2.2).
    to_upstream_.clear();
    refuse_connect(mqtt::connack::kServerUnavailable, 0x88,
                   fmt::format("upstream unavailable: {}", why));
    return;
  }
  close(fmt::format("upstream: {}", why));
}

void Relay::client_lost(std::string_view why) {
  close(fmt::format("client: {}", why));
}

std::size_t Relay::from_upstream(ByteSpan data) {
  if (state_ == State::Closed) return data.size();
  if (state_ != State::Open) {
    close("upstream: bytes before upstream_connected()");
    return data.size();
  }
  std::size_t used = 0;
  while (state_ != State::Closed && used < data.size() && !upstream_blocked()) {
    bool need_more = false;
    mqtt::DecodeError err = mqtt::DecodeError::None;
    const auto f = mqtt::parse_frame(data.subspan(used), cfg_.max_packet_size, need_more, err);
    if (!f) {
      if (!need_more) close(fmt::format("upstream: {}", mqtt::decode_error_name(err)));
      break;
    }
    upstream_frame(*f, data.subspan(used, f->wire_size));
    used += f->wire_size;
  }
  return state_ == State::Closed ? data.size() : used;
}

void Relay::upstream_frame(const mqtt::FrameView& f, ByteSpan wire) {
  const PacketType type = f.type();
  const char* name = mqtt::packet_type_name(type);
  if (!connacked_ && type != PacketType::Connack && !(v5_ && type == PacketType::Auth)) {
    return close(fmt::format("upstream: {} before CONNACK", name));
  }
  switch (type) {
    case PacketType::Connack:
      if (connacked_) return close("upstream: second CONNACK");
      return upstream_connack(f, wire);
    case PacketType::Publish:
      if (cfg_.hooks && cfg_.hooks->reads()) return upstream_publish(f, wire);
      break;
    case PacketType::Pubrel:
      if (f.body.size() < 2) return close("upstream: truncated PUBREL");
      // The PUBREL of a QoS 2 message the relay kept from the client: complete it here.
      if (const std::uint16_t id = load_be16(f.body, 0); refused_from_upstream_.erase(id) > 0) {
        mqtt::encode_packet_id_ack(to_upstream_, PacketType::Pubcomp, id);
        return;
      }
      break;
    case PacketType::Suback:
      return upstream_suback(f, wire);
    case PacketType::Reserved:
    case PacketType::Connect:
    case PacketType::Subscribe:
    case PacketType::Unsubscribe:
    case PacketType::Pingreq:
      return close(fmt::format("upstream: sent {}", name));
    case PacketType::Auth:
    case PacketType::Disconnect:
      // 5.0's: a 3.1.1 client would read either as a protocol error of ours.
      if (!v5_) return close(fmt::format("upstream: sent {} to an MQTT 3.x client", name));
      break;
    default:
      break;
  }
  append(to_client_, wire);
  if (type == PacketType::Disconnect) close("upstream sent DISCONNECT");
}

void Relay::upstream_connack(const mqtt::FrameView& f, ByteSpan wire) {
  Cursor c(f.body);
  std::uint8_t flags = 0;
  std::uint8_t code = 0;
  if (!c.u8(flags) || !c.u8(code)) return close("upstream: truncated CONNACK");
  if (v5_ && c.left() > 0) {
    ByteSpan props;
    const bool ok =
        c.property_block(props) && each_property(props, [&](std::uint8_t id, ByteSpan v) {
          if (id == property::kTopicAliasMaximum) up_.maximum = load_be16(v, 0);
          if (id == property::kAssignedClientIdentifier) {
            who_.client_id = std::string(as_chars(v));
          }
        });
    if (!ok) return close("upstream: malformed CONNACK properties");
  }
  append(to_client_, wire);  // as the broker said it, refusal included
  if (code != 0) {
    ++counters_.mqtt_connects_refused;
    return close(fmt::format("CONNECT refused by upstream: 0x{:02x}", code));
  }
  connacked_ = true;
  ++counters_.mqtt_connects;
  if (hooked()) cfg_.hooks->on_connect(who_);
}

void Relay::upstream_publish(const mqtt::FrameView& f, ByteSpan wire) {
  mqtt::Publish p;
  if (!parse_publish(f, v5_, p)) return close("upstream: malformed PUBLISH");
  std::uint8_t why = 0;
  const auto topic = resolve(down_, p, why);
  if (!topic) return close("upstream: PUBLISH with a bad topic alias");
  if (cfg_.hooks->auth_read(who_, *topic) != hooks::kOk) {
    // Not for this client; the broker's flow still ends (4.3.2, 4.3.3).
    if (p.qos == 1) mqtt::encode_packet_id_ack(to_upstream_, PacketType::Puback, p.packet_id);
    if (p.qos == 2) {
      mqtt::encode_packet_id_ack(to_upstream_, PacketType::Pubrec, p.packet_id);
      refused_from_upstream_.insert(p.packet_id);
    }
    return;
  }
  if (p.qos == 2) refused_from_upstream_.erase(p.packet_id);
  forward_publish(to_client_, down_, p, wire, *topic, p.payload, false);
}

void Relay::upstream_suback(const mqtt::FrameView& f, ByteSpan wire) {
  Cursor c(f.body);
  std::uint16_t id = 0;
  if (!c.u16(id)) return close("upstream: truncated SUBACK");
  const auto it = subacks_.find(id);
  if (it == subacks_.end()) return append(to_client_, wire);
  ByteSpan props;
  if (v5_ && !c.property_block(props)) return close("upstream: malformed SUBACK");
  const ByteSpan theirs = c.rest();
  const auto wanted =
      static_cast<std::size_t>(std::count(it->second.begin(), it->second.end(), kFromBroker));
  if (theirs.size() != wanted) {
    return close(
        fmt::format("upstream: SUBACK {} with {} codes for {} filters", id, theirs.size(), wanted));
  }
  // One code per filter the client sent, in its order: the relay's refusals, the broker's codes
  // for the rest.
  std::vector<std::uint8_t> codes;
  std::size_t next = 0;
  for (const std::uint16_t code : it->second) {
    codes.push_back(code == kFromBroker ? load_u8(theirs, next++)
                                        : static_cast<std::uint8_t>(code));
  }
  subacks_.erase(it);
  encode_suback(to_client_, v5_, id, props, codes);
}

}  // namespace mqtt_proxy::upstream
