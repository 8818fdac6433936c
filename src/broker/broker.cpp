// The broker side of MQTT 3.1, 3.1.1 and 5.0: sessions, subscriptions (shared ones too), retained
// messages, wills, and delivery at QoS 0, 1 and 2 (Outbound keeps each session's flows and queue).

#include "mqtt_proxy/broker/broker.hpp"

#include <algorithm>

namespace mqtt_proxy::broker {

namespace {
constexpr std::string_view kLog = "broker";
namespace property = mqtt::property;

constexpr std::string_view kSharePrefix = "$share/";

// A retained message's v5 properties as they go out now: [MQTT-3.3.2-6] the Message Expiry
// Interval counts down while the message waits.
Bytes with_remaining_expiry(const RetainedStore::Message& m, TimePoint now) {
  if (!m.expires_at) return m.properties;
  Bytes props = mqtt::without_properties(m.properties, {property::kMessageExpiryInterval});
  append(props,
         mqtt::PropertyWriter()
             .u32(property::kMessageExpiryInterval, remaining_expiry_seconds(*m.expires_at, now))
             .bytes());
  return props;
}

// `$share/NAME/FILTER` -> FILTER; nothing for a filter that is not shared. `valid` says whether a
// shared one is well formed: a NAME without wildcards and a FILTER (v5 4.8.2).
std::optional<std::string_view> shared_filter(std::string_view f, bool& valid) {
  valid = true;
  if (!f.starts_with(kSharePrefix)) return std::nullopt;
  const std::string_view rest = f.substr(kSharePrefix.size());
  const auto slash = rest.find('/');
  const std::string_view name = rest.substr(0, slash);
  valid = slash != std::string_view::npos && !name.empty() &&
          name.find_first_of("+#") == std::string_view::npos && slash + 1 < rest.size();
  return valid ? std::optional(rest.substr(slash + 1)) : std::nullopt;
}
// Adds to the counters what an Outbound dropped during one call (a full queue, an expiry), as it
// counts per session and sessions come and go.
class DropTally {
 public:
  DropTally(const Outbound& o, metrics::Counters& c)
      : o_(o),
        c_(c),
        full_(o.dropped(DropReason::QueueFull) + o.dropped(DropReason::QueueBytes)),
        expired_(o.dropped(DropReason::Expired)) {}
  ~DropTally() {
    c_.mqtt_publish_dropped_queue_full +=
        o_.dropped(DropReason::QueueFull) + o_.dropped(DropReason::QueueBytes) - full_;
    c_.mqtt_publish_dropped_expired += o_.dropped(DropReason::Expired) - expired_;
  }
  DropTally(const DropTally&) = delete;
  DropTally& operator=(const DropTally&) = delete;

 private:
  const Outbound& o_;
  metrics::Counters& c_;
  std::uint64_t full_;
  std::uint64_t expired_;
};
}  // namespace

struct Broker::Session {
  ClientHandle handle = 0;
  wire::ClientAddress peer;    // the TCP peer, or the client a PROXY header named
  bool tls = false;            // a load balancer in front terminated TLS for it
  std::string certificate_cn;  // its verified client certificate's CN, if one was reported
  Phase phase = Phase::AwaitConnect;
  Bytes partial;                  // a frame over max_unread_frame, while it arrives
  std::size_t partial_total = 0;  // its size
  mqtt::ProtocolVersion version = mqtt::ProtocolVersion::V311;
  std::string client_id;
  bool clean = true;     // clean session: nothing outlives the connection
  Duration keep_for{0};  // how long the session is stored after the connection
  bool v5 = false;
  std::uint32_t max_packet_out = UINT32_MAX;  // the client's Maximum Packet Size (v5)
  std::vector<std::string> topic_aliases;     // v5: alias -> topic, index 0 unused
  // v5 outgoing topic aliases: the client's Topic Alias Maximum, and the aliases given so far on
  // this connection [MQTT-3.3.2-7].
  std::uint16_t alias_max_out = 0;
  std::unordered_map<std::string, std::uint16_t> aliases_out;
  bool expiry_was_zero = true;            // v5: CONNECT's Session Expiry Interval was 0
  Duration keepalive_grace{0};            // 1.5 x keepalive; 0 = none
  TimePoint deadline{};                   // CONNECT timeout, then keepalive expiry
  std::optional<TimePoint> scheduled_at;  // the live entry in deadlines_, if any
  Filters filters;
  std::size_t filters_with_options = 0;  // filters whose options are not the defaults
  std::optional<WillMessage> will;
  std::unordered_set<std::uint16_t> qos2_awaiting_pubrel;
  std::unique_ptr<Outbound> out;  // set at CONNECT: the QoS 1/2 flows and the queue toward it
  std::uint64_t delivery_mark = 0;
  std::uint64_t dropped_in_a_row = 0;  // QoS 0 copies lost to a full queue since the last delivery
  bool closing = false;                // ended; takes no input, destroyed by reap()
  bool websocket = false;              // MQTT over WebSocket
  hooks::Client hook;                  // what hooks see of it, once CONNECT was accepted
  bool hooked = false;  // the hooks were told it connected (and will be told it went)
};

Broker::Broker(BrokerConfig cfg, BrokerHost& host, peering::Peering& peering, log::Logger& log,
               metrics::Counters& counters, flow::FlowControl* flow)
    : cfg_(std::move(cfg)),
      host_(host),
      peering_(peering),
      log_(log),
      counters_(counters),
      flow_(flow),
      retained_(cfg_.max_retained_messages) {
  reads_ = cfg_.hooks && cfg_.hooks->reads();
}

hooks::Client Broker::hook_client(const Session& s, std::string_view client_id,
                                  std::string_view username) const {
  hooks::Client who;
  who.connection = s.handle;
  who.client_id = std::string(client_id);
  who.username = std::string(username);
  who.address = s.peer;
  who.address_text = s.peer.is_ipv6 ? wire::format_ipv6(s.peer.ipv6) : s.peer.ipv4.to_string();
  who.protocol_version = static_cast<std::uint8_t>(s.version);
  who.transport = s.websocket ? hooks::Transport::WebSocket : hooks::Transport::Tcp;
  who.tls = s.tls;
  who.tls_cn = s.certificate_cn;
  return who;
}

Broker::~Broker() = default;

std::size_t Broker::shared_subscription_count() const {
  std::size_t n = 0;
  for (const auto& [key, g] : shared_) n += g->members.size();
  return n;
}

std::size_t Broker::subscription_count() const {
  std::size_t n = 0;
  for (const auto& [h, s] : sessions_) {
    if (s->phase == Phase::Connected && !s->closing) n += s->filters.size();
  }
  for (const auto& [id, st] : stored_) n += st.filters.size();
  return n;
}

std::size_t Broker::inflight_count() const {
  std::size_t n = 0;
  for (const auto& [h, s] : sessions_) n += s->out ? s->out->inflight_count() : 0;
  for (const auto& [id, st] : stored_) n += st.out ? st.out->inflight_count() : 0;
  return n;
}

std::size_t Broker::queued_message_count() const {
  std::size_t n = 0;
  for (const auto& [h, s] : sessions_) n += s->out ? s->out->queued_count() : 0;
  for (const auto& [id, st] : stored_) n += st.out ? st.out->queued_count() : 0;
  return n;
}

OutboundConfig Broker::outbound_config() const {
  OutboundConfig c;
  c.max_inflight = cfg_.max_inflight;
  c.max_queued_messages = cfg_.max_queued_messages;
  c.max_queued_bytes = cfg_.max_queued_bytes;
  c.queue_qos0 = cfg_.queue_qos0;
  return c;
}

void Broker::send(Session& s, const Bytes& b) {
  count_sent(b);
  host_.send(s.handle, b);
}

void Broker::schedule(Session& s) {
  // An entry later than the deadline would fire too late; an earlier one is re-armed when it pops.
  if (s.deadline == TimePoint::max()) return;
  if (!s.scheduled_at || s.deadline < *s.scheduled_at) {
    deadlines_.push(s.deadline, s.handle);
    s.scheduled_at = s.deadline;
  }
}

void Broker::touch(Session& s, TimePoint now) {
  if (s.phase != Phase::Connected || s.keepalive_grace.count() == 0) return;
  s.deadline = now + s.keepalive_grace;
  schedule(s);
}

void Broker::on_open(ClientHandle c, const ingress::ClientOrigin& origin, TimePoint now) {
  auto s = std::make_unique<Session>();
  s->handle = c;
  s->peer = origin.address;
  s->tls = origin.tls;
  s->certificate_cn = origin.certificate_cn;
  s->websocket = origin.websocket;
  s->deadline = now + cfg_.connect_timeout;
  schedule(*s);
  log_.debug(kLog, "connection opened client={}", s->peer);
  sessions_.emplace(c, std::move(s));
}

std::size_t Broker::on_data(ClientHandle c, ByteSpan data, TimePoint now) {
  auto it = sessions_.find(c);
  if (it == sessions_.end()) return data.size();
  Session& s = *it->second;
  const flow::Id self = flow::client(c);
  std::size_t used = 0;
  // A handler that ends the session marks it closing; `s` stays valid until reap().
  while (!s.closing && used < data.size()) {
    if (flow_ && flow_->is_paused(self)) break;  // the rest waits in the TCP receive buffer
    if (s.partial_total > 0) {
      const std::size_t take = std::min(s.partial_total - s.partial.size(), data.size() - used);
      append(s.partial, data.subspan(used, take));
      used += take;
      if (s.partial.size() < s.partial_total) break;
      bool need_more = false;
      mqtt::DecodeError err = mqtt::DecodeError::None;
      const auto frame = mqtt::parse_frame(s.partial, cfg_.max_packet_size, need_more, err);
      if (frame) handle_frame(s, *frame, now);  // the header was checked when it came
      s.partial.clear();
      s.partial_total = 0;
      continue;
    }
    const ByteSpan rest = data.subspan(used);
    bool need_more = false;
    mqtt::DecodeError err = mqtt::DecodeError::None;
    const auto frame = mqtt::parse_frame(rest, cfg_.max_packet_size, need_more, err);
    if (frame) {
      used += frame->wire_size;
      handle_frame(s, *frame, now);
      continue;
    }
    if (!need_more) {
      protocol_error(s, mqtt::decode_error_name(err), now, mqtt::reason_code_for(err));
      break;
    }
    // Incomplete: a small frame waits where it is for the rest; a large one might not fit the
    // receive window, so it moves here (the size was checked against the limit already).
    if (const auto total = mqtt::announced_frame_size(rest);
        total && *total > cfg_.max_unread_frame) {
      s.partial_total = *total;
      append(s.partial, rest);
      used = data.size();
    }
    break;
  }
  reap();
  return used;
}

void Broker::reap() {
  for (const ClientHandle h : closing_) sessions_.erase(h);
  closing_.clear();
}

void Broker::protocol_error(Session& s, std::string_view reason, TimePoint now,
                            std::uint8_t v5_reason) {
  ++counters_.mqtt_protocol_errors;
  log_.warn(kLog, "closing client={} id={}: {}", s.peer, s.client_id, reason);
  send_disconnect(s, v5_reason);
  end_session(s, /*publish_will_msg=*/true, now);
}

void Broker::send_disconnect(Session& s, std::uint8_t reason) {
  // Only a v5 session that got its CONNACK may be told why (4.13.2).
  if (!s.v5 || s.phase != Phase::Connected) return;
  scratch_.clear();
  mqtt::encode_disconnect_v5(scratch_, reason);
  send(s, scratch_);
}

void Broker::count_received(const mqtt::FrameView& f) {
  counters_.mqtt_bytes_received += f.wire_size;
  switch (f.type()) {
    case mqtt::PacketType::Connect:
      ++counters_.mqtt_connect_received;
      break;
    case mqtt::PacketType::Puback:
      ++counters_.mqtt_puback_received;
      break;
    case mqtt::PacketType::Pubrec:
      ++counters_.mqtt_pubrec_received;
      break;
    case mqtt::PacketType::Pubrel:
      ++counters_.mqtt_pubrel_received;
      break;
    case mqtt::PacketType::Pubcomp:
      ++counters_.mqtt_pubcomp_received;
      break;
    case mqtt::PacketType::Subscribe:
      ++counters_.mqtt_subscribe_received;
      break;
    case mqtt::PacketType::Unsubscribe:
      ++counters_.mqtt_unsubscribe_received;
      break;
    case mqtt::PacketType::Pingreq:
      ++counters_.mqtt_pingreq_received;
      break;
    case mqtt::PacketType::Auth:
      ++counters_.mqtt_auth_received;
      break;
    // PUBLISH and DISCONNECT are counted where they are handled (mqtt_publish_received,
    // mqtt_disconnects), once they are valid; the server-to-client types are protocol errors.
    default:
      break;
  }
}

void Broker::count_sent(ByteSpan packet) {
  counters_.mqtt_bytes_sent += packet.size();
  if (packet.empty()) return;
  switch (static_cast<mqtt::PacketType>(packet[0] >> 4)) {
    case mqtt::PacketType::Connack:
      ++counters_.mqtt_connack_sent;
      break;
    case mqtt::PacketType::Publish:
      ++counters_.mqtt_publish_sent;
      break;
    case mqtt::PacketType::Puback:
      ++counters_.mqtt_puback_sent;
      break;
    case mqtt::PacketType::Pubrec:
      ++counters_.mqtt_pubrec_sent;
      break;
    case mqtt::PacketType::Pubrel:
      ++counters_.mqtt_pubrel_sent;
      break;
    case mqtt::PacketType::Pubcomp:
      ++counters_.mqtt_pubcomp_sent;
      break;
    case mqtt::PacketType::Suback:
      ++counters_.mqtt_suback_sent;
      break;
    case mqtt::PacketType::Unsuback:
      ++counters_.mqtt_unsuback_sent;
      break;
    case mqtt::PacketType::Pingresp:
      ++counters_.mqtt_pingresp_sent;
      break;
    case mqtt::PacketType::Disconnect:
      ++counters_.mqtt_disconnect_sent;
      break;
    default:
      break;
  }
}

void Broker::handle_frame(Session& s, const mqtt::FrameView& f, TimePoint now) {
  count_received(f);
  if (s.v5 && !mqtt::minimal_length_encoding(f)) {
    // v5 [MQTT-1.5.5-1]; 3.1.1 does not forbid it, so there it is accepted.
    protocol_error(s, "remaining length not in its shortest form", now,
                   mqtt::reason::kMalformedPacket);
    return;
  }
  mqtt::ClientPacket packet;
  const auto err = mqtt::decode_client_packet(f, s.version, packet);
  if (err == mqtt::DecodeError::UnsupportedProtocolVersion && s.phase == Phase::AwaitConnect) {
    // [MQTT-3.1.2-2]: answer with return code 1, then close.
    ++counters_.mqtt_connects_refused;
    log_.info(kLog, "CONNECT refused client={}: unsupported protocol version", s.peer);
    scratch_.clear();
    mqtt::encode_connack(scratch_, false, mqtt::connack::kUnacceptableProtocolVersion);
    send(s, scratch_);
    end_session(s, false, now);
    return;
  }
  if (err != mqtt::DecodeError::None) {
    protocol_error(s,
                   fmt::format("malformed {}: {}", mqtt::packet_type_name(f.type()),
                               mqtt::decode_error_name(err)),
                   now, mqtt::reason_code_for(err));
    return;
  }
  if (s.phase == Phase::AwaitConnect && !std::holds_alternative<mqtt::Connect>(packet)) {
    protocol_error(s, fmt::format("{} before CONNECT", mqtt::packet_type_name(f.type())), now,
                   mqtt::reason::kProtocolError);
    return;
  }
  touch(s, now);
  std::visit(
      [&](auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::Connect>) {
          if (s.phase == Phase::Connected) {
            protocol_error(s, "second CONNECT", now,
                           mqtt::reason::kProtocolError);  // [MQTT-3.1.0-2]
          } else {
            handle_connect(s, p, now);
          }
        } else if constexpr (std::is_same_v<T, mqtt::Publish>) {
          handle_publish(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::Subscribe>) {
          handle_subscribe(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::Unsubscribe>) {
          handle_unsubscribe(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::PacketIdAck>) {
          handle_ack(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::Pingreq>) {
          handle_pingreq(s);
        } else if constexpr (std::is_same_v<T, mqtt::Disconnect>) {
          handle_disconnect(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::Auth>) {
          // No CONNECT here carries an Authentication Method, so AUTH is out of place (4.12).
          protocol_error(s, "AUTH without enhanced authentication", now,
                         mqtt::reason::kProtocolError);
        }
      },
      packet);
}

void Broker::handle_ack(Session& s, const mqtt::PacketIdAck& a, TimePoint now) {
  if (a.type == mqtt::PacketType::Pubrel) {
    // QoS 2, step 3: release the packet id and complete (4.3.3). PUBCOMP also for unknown ids, so
    // a client that lost our earlier PUBCOMP can finish.
    s.qos2_awaiting_pubrel.erase(a.packet_id);
    scratch_.clear();
    mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Pubcomp, a.packet_id);
    send(s, scratch_);
    return;
  }
  if (!s.out) return;
  const DropTally tally(*s.out, counters_);
  AckResult r = AckResult::Unknown;
  if (a.type == mqtt::PacketType::Puback) {
    r = s.out->on_puback(a.packet_id, now, sends_);
  } else if (a.type == mqtt::PacketType::Pubrec) {
    r = s.out->on_pubrec(a.packet_id, a.reason_code, now, sends_);
    if (r == AckResult::Unknown) {
      // 4.3.3: PUBREL anyway, so that the client can finish; v5 says the id is unknown.
      scratch_.clear();
      mqtt::encode_packet_id_ack_v5(scratch_, mqtt::PacketType::Pubrel, a.packet_id,
                                    s.v5 ? mqtt::reason::kPacketIdentifierNotFound : 0);
      send(s, scratch_);
    }
  } else if (a.type == mqtt::PacketType::Pubcomp) {
    r = s.out->on_pubcomp(a.packet_id, now, sends_);
  }
  if (r == AckResult::Unknown || r == AckResult::WrongState) {
    log_.debug(kLog, "client={} id={} sent {} for packet id {}, which {}; ignored", s.peer,
               s.client_id, mqtt::packet_type_name(a.type), a.packet_id,
               r == AckResult::Unknown ? "is not in flight" : "is at another step");
  }
  emit(s, flow::kNone, now);
}

namespace {
// A message to keep for the sessions' flows. Its expiry is written per send from expires_at (what
// is left of it then), so the property itself is not kept.
std::shared_ptr<StoredMessage> make_stored(std::string_view topic, ByteSpan payload,
                                           ByteSpan v5_properties, std::uint8_t qos, bool retain,
                                           std::optional<TimePoint> expires_at) {
  auto msg = std::make_shared<StoredMessage>();
  msg->topic = std::string(topic);
  msg->payload.assign(payload.begin(), payload.end());
  msg->properties = mqtt::without_properties(v5_properties, {property::kMessageExpiryInterval});
  msg->qos = qos;
  msg->retain = retain;
  msg->expires_at = expires_at;
  return msg;
}
}  // namespace

std::shared_ptr<const StoredMessage> Broker::stored_message(const Outgoing& m) const {
  if (!m.stored) {
    m.stored =
        make_stored(m.topic, m.payload, m.v5_properties, m.qos, m.published_retain, m.expires_at);
  }
  return m.stored;
}

void Broker::deliver_outbound(Session& sub, const Outgoing& m, std::uint8_t qos, bool retain,
                              std::vector<std::uint32_t> ids, TimePoint now) {
  {
    const DropTally tally(*sub.out, counters_);
    sub.out->offer(Delivery{stored_message(m), qos, retain, std::move(ids)}, now, sends_);
  }
  emit(sub, m.source, now);
}

void Broker::emit(Session& s, flow::Id source, TimePoint now) {
  // Until nothing is left: ending an abandoned flow frees its window slot, which the next waiting
  // message takes.
  while (!sends_.empty()) {
    emit_round(s, source, now);
    sends_.clear();
    for (const auto& [packet_id, qos] : abandoned_) {
      if (qos == 1) {
        s.out->on_puback(packet_id, now, sends_);
      } else {
        s.out->on_pubrec(packet_id, mqtt::reason::kUnspecifiedError, now, sends_);
      }
    }
    abandoned_.clear();
  }
}

void Broker::emit_round(Session& s, flow::Id source, TimePoint now) {
  for (const Send& out : sends_) {
    emitted_.clear();
    if (out.kind == Send::Kind::Pubrel) {
      mqtt::encode_packet_id_ack(emitted_, mqtt::PacketType::Pubrel, out.packet_id);
      send(s, emitted_);
      continue;
    }
    const StoredMessage& msg = *out.message;
    std::uint16_t alias = 0;
    if (s.v5) {
      Bytes props = msg.properties;
      mqtt::PropertyWriter extra;
      // [MQTT-3.3.2-6]: what is left of the Message Expiry Interval.
      if (out.message_expiry) extra.u32(property::kMessageExpiryInterval, *out.message_expiry);
      for (const std::uint32_t id : out.subscription_ids) {
        extra.varint(property::kSubscriptionIdentifier, id);
      }
      append(props, extra.bytes());
      alias = publish_v5(s, msg.topic, msg.payload, out.qos, out.retain, out.dup, out.packet_id,
                         props, emitted_);
    } else {
      mqtt::encode_publish(emitted_, msg.topic, msg.payload, out.qos, out.retain, out.dup,
                           out.packet_id);
    }
    if (out.qos == 0) {
      if (offer(s, emitted_, msg.payload.size(), source, now)) commit_alias(s, msg.topic, alias);
      continue;
    }
    // QoS 1 and 2 are bounded by the window, not dropped for a full send queue: Outbound holds
    // them open until the client acknowledges them.
    if (emitted_.size() > s.max_packet_out) {
      // [MQTT-3.1.2-25]: never sent, and the flow ends "as if it had completed sending that
      // Application Message", so it does not hold a window slot (emit() ends it).
      ++counters_.mqtt_publish_dropped_too_large;
      abandoned_.emplace_back(out.packet_id, out.qos);
      continue;
    }
    const std::size_t queued = host_.queued_bytes(s.handle);
    ++counters_.mqtt_publish_delivered;
    counters_.mqtt_payload_bytes_sent += msg.payload.size();
    send(s, emitted_);
    commit_alias(s, msg.topic, alias);
    if (flow_ && source != flow::kNone) {
      flow_->on_queued(source, flow::client(s.handle), queued + emitted_.size(), now);
    }
  }
}

void Broker::handle_pingreq(Session& s) {
  scratch_.clear();
  mqtt::encode_pingresp(scratch_);
  send(s, scratch_);
}

void Broker::handle_disconnect(Session& s, const mqtt::Disconnect& d, TimePoint now) {
  if (d.properties.session_expiry) {
    // [MQTT-3.14.2-2]: a session that was to end with the connection cannot be kept now.
    if (s.expiry_was_zero && *d.properties.session_expiry != 0) {
      protocol_error(s, "DISCONNECT sets a session expiry after CONNECT said 0", now,
                     mqtt::reason::kProtocolError);
      return;
    }
    s.keep_for = session_keep_for(*d.properties.session_expiry);
  }
  ++counters_.mqtt_disconnects;
  log_.info(kLog, "DISCONNECT client={} id={}", s.peer, s.client_id);
  // [MQTT-3.14.4-3]: the will is discarded, unless a v5 client asks for it (0x04).
  end_session(s, d.reason_code == mqtt::reason::kDisconnectWithWill, now);
}

std::optional<std::string> Broker::authorized(const Session& s, const mqtt::Connect& c) const {
  const bool listed_users = cfg_.username || cfg_.password_file;
  if (cfg_.use_identity_as_username) {
    // The certificate is the credential: what the CONNECT says is not looked at.
    const std::string& cn = s.certificate_cn;
    if (cn.empty()) return std::nullopt;
    if (!listed_users || (cfg_.username && cn == *cfg_.username) ||
        (cfg_.password_file && cfg_.password_file->has_user(cn))) {
      return cn;
    }
    return std::nullopt;
  }
  if (!listed_users) return std::string(c.username.value_or(""));
  if (!c.username) {
    if (cfg_.allow_anonymous) return std::string();
    return std::nullopt;
  }
  if (cfg_.username && *c.username == *cfg_.username &&
      (!cfg_.password ||
       (c.password && auth::equal_secrets(*c.password, as_bytes(*cfg_.password))))) {
    return std::string(*c.username);
  }
  if (cfg_.password_file && c.password && cfg_.password_file->check(*c.username, *c.password)) {
    return std::string(*c.username);
  }
  return std::nullopt;
}

Duration Broker::session_keep_for(std::uint32_t expiry_seconds) const {
  // v5 Session Expiry Interval, capped by --session-expiry (0xffffffff means "never" to the
  // client).
  return std::min<Duration>(std::chrono::seconds(expiry_seconds), cfg_.session_expiry);
}

void Broker::handle_connect(Session& s, const mqtt::Connect& connect, TimePoint now) {
  // What the rest sees: the CONNECT as the hooks left it (their values live in `cred`).
  mqtt::Connect c = connect;
  hooks::Credentials cred;
  const bool v5 = c.version == mqtt::ProtocolVersion::V5;
  auto refuse = [&](std::uint8_t v3_code, std::uint8_t v5_code, std::string_view why) {
    ++counters_.mqtt_connects_refused;
    log_.info(kLog, "CONNECT refused client={} id={} user={}: {}", s.peer, c.client_id,
              c.username.value_or(""), why);
    scratch_.clear();
    if (v5) {
      mqtt::encode_connack_v5(scratch_, false, v5_code, {});
    } else {
      mqtt::encode_connack(scratch_, false, v3_code);
    }
    send(s, scratch_);
    end_session(s, false, now);
  };

  if (c.properties.authentication_method) {
    return refuse(0, mqtt::reason::kBadAuthenticationMethod,
                  "enhanced authentication is not supported");
  }
  if (cfg_.hooks) {
    // mProxy's AuthConnect, before the proxy's own check: a hook may map the client's
    // credentials to others (a token to a user, say), which are then what is checked.
    s.version = c.version;
    const hooks::Client who = hook_client(s, c.client_id, c.username.value_or(""));
    cred.client_id = hooks::Field(c.client_id);
    cred.username = hooks::Field(c.username.value_or(""));
    cred.password = hooks::Field(as_chars(c.password.value_or(ByteSpan{})));
    cred.has_username = c.username.has_value();
    cred.has_password = c.password.has_value();
    std::string_view by;
    if (const hooks::Reason r = cfg_.hooks->auth_connect(who, cred, &by); r != hooks::kOk) {
      return refuse(hooks::connack_code(r), r, fmt::format("refused by hook {}", by));
    }
    c.client_id = cred.client_id.get();
    if (cred.has_username) c.username = cred.username.get();
    if (cred.has_password) c.password = as_bytes(cred.password.get());
  }
  const auto user = authorized(s, c);
  if (!user) {
    if (cfg_.use_identity_as_username) {
      return refuse(mqtt::connack::kNotAuthorized, mqtt::reason::kNotAuthorized,
                    s.certificate_cn.empty()
                        ? "no verified client certificate to take the username from"
                        : fmt::format("certificate CN {} is not a known user", s.certificate_cn));
    }
    if (c.username) ++counters_.mqtt_auth_fail;
    return refuse(mqtt::connack::kNotAuthorized, mqtt::reason::kBadUserNameOrPassword,
                  "wrong credentials");
  }
  if (c.username && (cfg_.username || cfg_.password_file) && !cfg_.use_identity_as_username) {
    ++counters_.mqtt_auth_success;
  }

  // Mosquitto's max_keepalive. 0 asks for no keepalive at all, which only the default allows.
  std::uint16_t keepalive = c.keepalive;
  const bool keepalive_too_long =
      keepalive > cfg_.max_keepalive || (keepalive == 0 && cfg_.max_keepalive < 65535);
  if (keepalive_too_long) {
    if (!v5) {
      return refuse(mqtt::connack::kIdentifierRejected, 0,
                    fmt::format("keepalive {} s is over the limit of {} s (3.1.1 cannot be told "
                                "a Server Keep Alive)",
                                keepalive, cfg_.max_keepalive));
    }
    keepalive = cfg_.max_keepalive;  // [MQTT-3.2.2-21]: the client must use it
  }

  std::string client_id(c.client_id);
  bool assigned = false;
  if (client_id.empty()) {
    // 3.1.1 lets the server assign an id to a clean session [MQTT-3.1.3-6/7], 5.0 to any
    // [MQTT-3.1.3-6]; 3.1 does not.
    if (c.version == mqtt::ProtocolVersion::V31 || (!v5 && !c.clean_session)) {
      return refuse(mqtt::connack::kIdentifierRejected, mqtt::reason::kClientIdentifierNotValid,
                    "empty client id");
    }
    client_id = fmt::format("auto-{}", ++auto_id_);
    assigned = true;
  }

  // The will is a PUBLISH to come: hooks check it now and may change its topic and payload. One
  // they refuse is dropped and the CONNECT goes on, as Mosquitto 2 drops a will its ACL refuses
  // (when it would send it): refusing the CONNECT would have a client with a will it may not
  // publish reconnect forever.
  hooks::Field will_topic;
  hooks::Field will_payload;
  if (cfg_.hooks) {
    s.version = c.version;
    s.hook = hook_client(s, client_id, *user);
    if (c.will) {
      will_topic = hooks::Field(c.will->topic);
      will_payload = hooks::Field(as_chars(c.will->payload));
      std::string_view by;
      hooks::Reason r = cfg_.hooks->auth_publish(s.hook, will_topic, will_payload, c.will->qos,
                                                 c.will->retain, &by);
      if (r == hooks::kOk && will_topic.changed() &&
          !(mqtt::is_mqtt_string(will_topic.get()) &&
            mqtt::is_valid_topic_name(will_topic.get()))) {
        r = mqtt::reason::kTopicNameInvalid;
      }
      if (r != hooks::kOk) {
        ++counters_.mqtt_publish_refused;
        log_.info(kLog, "will of client={} id={} topic={} dropped: hook {} said 0x{:02x}", s.peer,
                  client_id, c.will->topic, by, r);
        c.will.reset();
      } else {
        c.will->topic = will_topic.get();
        c.will->payload = as_bytes(will_payload.get());
      }
    }
  }

  // Session takeover [MQTT-3.1.4-2]: the new connection wins.
  if (auto it = by_client_id_.find(client_id); it != by_client_id_.end()) {
    Session& old = *it->second;
    ++counters_.mqtt_sessions_taken_over;
    log_.info(kLog, "session id={} taken over: closing client={} for client={}", client_id,
              old.peer, s.peer);
    send_disconnect(old, mqtt::reason::kSessionTakenOver);
    end_session(old, /*publish_will_msg=*/true, now);
  }

  // A will waiting out its Will Delay: a reconnect to the session cancels it; a clean start ends
  // the old session, which publishes it (3.1.3.2.2).
  if (auto it = pending_wills_.find(client_id); it != pending_wills_.end()) {
    const PendingWill pending = std::move(it->second);
    pending_wills_.erase(it);
    if (c.clean_session) {
      publish_will_message(pending.will, client_id, nullptr, now);
    } else {
      log_.info(kLog, "will of id={} cancelled: the client reconnected within its delay",
                client_id);
    }
  }

  s.phase = Phase::Connected;
  s.version = c.version;
  s.v5 = v5;
  s.client_id = client_id;
  // Clean Session (3.1.1) / Clean Start (5.0) share the flag. What outlives the connection: 3.1.1
  // keeps a clean-session-0 session; 5.0 keeps one with a non-zero Session Expiry Interval.
  s.clean = c.clean_session;
  if (v5) {
    const std::uint32_t expiry = c.properties.session_expiry.value_or(0);
    s.expiry_was_zero = expiry == 0;
    s.keep_for = session_keep_for(expiry);
    s.max_packet_out = c.properties.maximum_packet_size.value_or(UINT32_MAX);
    s.topic_aliases.assign(std::size_t{cfg_.topic_alias_maximum} + 1, std::string());
    s.alias_max_out = c.properties.topic_alias_maximum.value_or(0);
  } else {
    s.keep_for = s.clean ? Duration::zero() : cfg_.session_expiry;
  }
  by_client_id_[client_id] = &s;
  // [MQTT-3.1.2-4/6], v5 [MQTT-3.1.2-4/5]: a clean start discards a stored session; else resume.
  bool session_present = false;
  if (s.clean) {
    if (auto it = stored_.find(client_id); it != stored_.end()) drop_stored(it);
  } else {
    session_present = restore_session(s, now);
  }
  if (c.will) {
    WillMessage w;
    w.topic = std::string(c.will->topic);
    w.payload.assign(c.will->payload.begin(), c.will->payload.end());
    w.retain = c.will->retain;
    w.qos = c.will->qos;
    if (v5) {
      w.properties =
          mqtt::without_properties(c.will->properties.raw, {property::kWillDelayInterval});
      w.delay = std::chrono::seconds(c.will->properties.will_delay.value_or(0));
    }
    s.will = std::move(w);
  }
  // [MQTT-3.1.2-24]: one and a half keepalive periods without a packet ends the session.
  s.keepalive_grace = std::chrono::milliseconds(std::int64_t{keepalive} * 1500);
  s.deadline = TimePoint::max();
  touch(s, now);

  ++counters_.mqtt_connects;
  log_.info(kLog, "CONNECT client={} id={} user={} keepalive={} clean={} version={}{}{}", s.peer,
            client_id, *user, keepalive, c.clean_session, static_cast<int>(c.version),
            s.tls ? " tls" : "",
            session_present ? fmt::format(" resumed with {} filter(s)", s.filters.size()) : "");
  scratch_.clear();
  // [MQTT-3.2.2-1/2]: session present only when a stored session was resumed.
  if (v5) {
    // 3.2.2.3: what this server offers. Maximum QoS is left out: 2, every QoS.
    mqtt::PropertyWriter props;
    props.u16(property::kReceiveMaximum, 65535)
        .u32(property::kMaximumPacketSize, static_cast<std::uint32_t>(cfg_.max_packet_size))
        .u16(property::kTopicAliasMaximum, cfg_.topic_alias_maximum)
        .u8(property::kRetainAvailable, 1)
        .u8(property::kWildcardSubscriptionAvailable, 1)
        .u8(property::kSubscriptionIdentifierAvailable, 1)
        .u8(property::kSharedSubscriptionAvailable, 1);
    if (assigned) props.string(property::kAssignedClientIdentifier, client_id);
    if (keepalive_too_long) props.u16(property::kServerKeepAlive, keepalive);
    mqtt::encode_connack_v5(scratch_, session_present, mqtt::reason::kSuccess, props.bytes());
  } else {
    mqtt::encode_connack(scratch_, session_present, mqtt::connack::kAccepted);
  }
  send(s, scratch_);
  // After the CONNACK: a resumed session's open flows again (DUP), then what waited for it.
  const std::uint16_t window = inflight_window(outbound_config(), v5, c.properties.receive_maximum);
  if (s.out) {
    {
      const DropTally tally(*s.out, counters_);
      s.out->reconnected(window, now, sends_);
    }
    emit(s, flow::kNone, now);
  } else {
    s.out = std::make_unique<Outbound>(outbound_config(), window);
  }
  if (cfg_.hooks) {
    s.hooked = true;
    cfg_.hooks->on_connect(s.hook);
  }
}

void Broker::handle_publish(Session& s, const mqtt::Publish& p, TimePoint now) {
  std::string_view topic = p.topic;
  if (s.v5 && p.properties.topic_alias) {
    // 3.3.2.3.4: an alias from 1 to our Topic Alias Maximum; a topic sets it, none uses it.
    const std::uint16_t alias = *p.properties.topic_alias;
    if (alias == 0 || alias >= s.topic_aliases.size()) {
      protocol_error(s, fmt::format("topic alias {} out of range", alias), now,
                     mqtt::reason::kTopicAliasInvalid);
      return;
    }
    if (topic.empty()) {
      topic = s.topic_aliases[alias];
      if (topic.empty()) {
        protocol_error(s, fmt::format("topic alias {} used before it was set", alias), now,
                       mqtt::reason::kProtocolError);
        return;
      }
    } else {
      s.topic_aliases[alias] = std::string(topic);
    }
  }
  ++counters_.mqtt_publish_received;
  counters_.mqtt_payload_bytes_received += p.payload.size();
  log_.debug(kLog, "PUBLISH client={} id={} topic={} qos={} bytes={}", s.peer, s.client_id, topic,
             p.qos, p.payload.size());
  ByteSpan payload = p.payload;
  hooks::Field hooked_topic(topic);
  hooks::Field hooked_payload(as_chars(payload));
  if (s.hooked) {
    // mProxy's AuthPublish: the topic and payload may change, or the message is refused.
    std::string_view by;
    hooks::Reason r =
        cfg_.hooks->auth_publish(s.hook, hooked_topic, hooked_payload, p.qos, p.retain, &by);
    if (r == hooks::kOk && hooked_topic.changed() &&
        !(mqtt::is_mqtt_string(hooked_topic.get()) &&
          mqtt::is_valid_topic_name(hooked_topic.get()))) {
      r = mqtt::reason::kTopicNameInvalid;
    }
    if (r != hooks::kOk) {
      refuse_publish(s, p, topic, r, by);
      return;
    }
    topic = hooked_topic.get();
    payload = as_bytes(hooked_payload.get());
  }
  bool deliver = true;
  if (p.qos == 1) {
    scratch_.clear();
    mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Puback, p.packet_id);
    send(s, scratch_);
  } else if (p.qos == 2) {
    // Method A of 4.3.3: deliver on the first PUBLISH; a resend before PUBREL is not delivered
    // again.
    deliver = s.qos2_awaiting_pubrel.insert(p.packet_id).second;
    scratch_.clear();
    mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Pubrec, p.packet_id);
    send(s, scratch_);
  }
  if (!deliver) return;
  // v5 properties go on to v5 subscribers, less the alias, which belongs to this connection.
  const Bytes props =
      s.v5 ? mqtt::without_properties(p.properties.raw, {property::kTopicAlias}) : Bytes{};
  std::optional<TimePoint> expires;
  if (p.properties.message_expiry) {
    expires = now + std::chrono::seconds(*p.properties.message_expiry);
  }
  if (p.retain) retain(topic, payload, RetainedStore::Origin::Local, props, expires, p.qos);
  const flow::Id source = flow::client(s.handle);
  deliver_local(Outgoing{topic, payload, false, p.retain, &s, props, source, p.qos, expires, {}},
                now);
  // Between mqtt_proxies that speak the extension the v5 properties go along (DATA5).
  peering_.forward_publish(topic, payload, p.retain, source, now, props);
  if (m2m_) m2m_->publish(topic, payload, p.retain, now);
  if (s.hooked) cfg_.hooks->on_publish(s.hook, topic, as_chars(payload));
}

void Broker::refuse_publish(Session& s, const mqtt::Publish& p, std::string_view topic,
                            hooks::Reason r, std::string_view by) {
  ++counters_.mqtt_publish_refused;
  log_.info(kLog, "PUBLISH refused client={} id={} topic={} qos={}: hook {} said 0x{:02x}", s.peer,
            s.client_id, topic, p.qos, by, r);
  // v5 tells the publisher why (3.4.2.1, 3.5.2.1). 3.1.1 has no way to: its acknowledgement is
  // the plain one, as Mosquitto sends for a message its ACL denies, and QoS 0 has none.
  scratch_.clear();
  if (p.qos == 1) {
    if (s.v5) {
      mqtt::encode_packet_id_ack_v5(scratch_, mqtt::PacketType::Puback, p.packet_id, r);
    } else {
      mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Puback, p.packet_id);
    }
  } else if (p.qos == 2) {
    if (s.v5) {
      // A PUBREC with a failure ends the flow: no PUBREL follows [MQTT-4.3.3].
      mqtt::encode_packet_id_ack_v5(scratch_, mqtt::PacketType::Pubrec, p.packet_id, r);
    } else {
      // The client goes on with PUBREL, which is answered as for a message delivered.
      s.qos2_awaiting_pubrel.insert(p.packet_id);
      mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Pubrec, p.packet_id);
    }
  }
  if (!scratch_.empty()) send(s, scratch_);
}

void Broker::on_peer_publish(const mqtt::Publish& p, flow::Id source, TimePoint now) {
  // A peer sends RETAIN set both for a live retained message and for the retained messages it
  // answers our SUBSCRIBE with; the two cannot be told apart, so local subscribers see the flag
  // either way (as behind a Mosquitto bridge).
  // Its v5 properties came along if the peer sent the 5.0 form (DATA5, docs/peering.md); the
  // Message Expiry Interval then counts from now.
  const ByteSpan props = p.properties.raw;
  std::optional<TimePoint> expires;
  if (p.properties.message_expiry) {
    expires = now + std::chrono::seconds(*p.properties.message_expiry);
  }
  if (p.retain) retain(p.topic, p.payload, RetainedStore::Origin::Peer, props, expires);
  // Peers carry QoS 0 (docs/peering.md): a remote publisher's message is delivered here at QoS 0.
  deliver_local(
      Outgoing{p.topic, p.payload, p.retain, p.retain, nullptr, props, source, 0, expires, {}},
      now);
}

void Broker::publish_sys(std::string_view topic, ByteSpan payload, TimePoint now) {
  retain(topic, payload, RetainedStore::Origin::System);
  deliver_local(
      Outgoing{topic, payload, false, true, nullptr, {}, flow::kNone, 0, std::nullopt, {}}, now);
}

void Broker::on_peer_interest(wire::Ipv4Address peer, std::string_view filter, TimePoint now) {
  retained_.drop_expired(now);
  // Only what local clients retained: a replica goes back to where it came from, not onward.
  retained_.for_each_match(filter, [&](std::string_view topic, const RetainedStore::Message& m) {
    if (m.origin != RetainedStore::Origin::Local) return;
    ++counters_.mqtt_retained_sent;
    peering_.send_retained(peer, topic, m.payload, now, with_remaining_expiry(m, now));
  });
}

void Broker::retain(std::string_view topic, ByteSpan payload, RetainedStore::Origin origin,
                    ByteSpan properties, std::optional<TimePoint> expires_at, std::uint8_t qos) {
  switch (retained_.set(topic, payload, origin, properties, expires_at, qos)) {
    case RetainedStore::SetResult::Stored:
      log_.debug(kLog, "retained message stored topic={} bytes={}", topic, payload.size());
      break;
    case RetainedStore::SetResult::Deleted:
      log_.debug(kLog, "retained message cleared topic={}", topic);
      break;
    case RetainedStore::SetResult::Full:
      if (counters_.mqtt_retained_refused++ % 1000 == 0) {
        log_.warn(kLog, "retained message not stored topic={}: {} retained topics is the limit",
                  topic, cfg_.max_retained_messages);
      }
      break;
  }
}

void Broker::filter_removed(std::string_view filter, TimePoint now) {
  peering_.local_filter_removed(filter);
  if (m2m_) m2m_->unsubscribed(filter, now);
  // A replica nobody here subscribes to would go stale: the peer stops telling us about it.
  retained_.drop_peer_entries(filter, [&](std::string_view topic) {
    bool wanted = false;
    subscriptions_.match(topic, [&](const Subscriber&) { wanted = true; });
    return wanted;
  });
}

bool Broker::offer(Session& sub, const Bytes& packet, std::size_t payload_size, flow::Id source,
                   TimePoint now) {
  if (packet.size() > sub.max_packet_out) {
    // [MQTT-3.1.2-25] v5: never send a client more than its Maximum Packet Size.
    ++counters_.mqtt_publish_dropped_too_large;
    return false;
  }
  const flow::Id sink = flow::client(sub.handle);
  const std::size_t queued = host_.queued_bytes(sub.handle);
  // Stuck (no progress for the grace), or over the hard limit even so: dropped and counted.
  const bool stuck = flow_ && flow_->is_stuck(sink);
  if (stuck || queued + packet.size() > cfg_.max_queued_bytes) {
    ++counters_.mqtt_publish_dropped_slow;
    if (sub.dropped_in_a_row++ == 0) {
      log_.warn(kLog, "client={} id={} {}: {} bytes queued, dropping QoS 0 messages to it",
                sub.peer, sub.client_id, stuck ? "is stuck" : "is not reading", queued);
    }
    return false;
  }
  if (sub.dropped_in_a_row > 0) {
    log_.info(kLog, "client={} id={} reads again; {} messages to it were dropped", sub.peer,
              sub.client_id, sub.dropped_in_a_row);
    sub.dropped_in_a_row = 0;
  }
  ++counters_.mqtt_publish_delivered;
  counters_.mqtt_payload_bytes_sent += payload_size;
  count_sent(packet);
  host_.send(sub.handle, packet);
  if (flow_) flow_->on_queued(source, sink, queued + packet.size(), now);
  return true;
}

Broker::Wanted Broker::wanted_by(const Filters& filters, std::string_view topic, bool from_itself,
                                 std::vector<std::uint32_t>& ids) {
  Wanted w;
  for (const auto& [f, o] : filters) {
    if (!mqtt::topic_matches(f, topic)) continue;
    if (o.no_local && from_itself) continue;
    w.any = true;
    w.qos = std::max(w.qos, o.qos);
    w.retain_as_published = w.retain_as_published || o.retain_as_published;
    if (o.subscription_id != 0) ids.push_back(o.subscription_id);
  }
  std::sort(ids.begin(), ids.end());
  return w;
}

void Broker::deliver_local(const Outgoing& m, TimePoint now) {
  // At most four encodings, each made once: 3.x or 5.0, RETAIN 0 or 1. Retain is 0 on live
  // delivery [MQTT-3.3.1-9] unless the message came retained from a peer (see on_peer_publish)
  // or a v5 subscriber asked for Retain As Published.
  PublishEncodings& enc = encodings_;
  enc.valid = 0;
  auto packet = [&](bool v5, bool retain) -> const Bytes& {
    Bytes& e = enc.bytes[v5][retain];
    const auto bit = static_cast<std::uint8_t>(1u << (2 * v5 + retain));
    if (!(enc.valid & bit)) {
      e.clear();
      if (v5) {
        mqtt::encode_publish_v5(e, m.topic, m.payload, 0, retain, false, 0, m.v5_properties);
      } else {
        mqtt::encode_publish(e, m.topic, m.payload, 0, retain, false, 0);
      }
      enc.valid |= bit;
    }
    return e;
  };
  const std::uint64_t mark = ++delivery_mark_;
  subscriptions_.match(m.topic, [&](const Subscriber& match) {
    if (match.group) {
      deliver_shared(*match.group, m, now);
      return;
    }
    Session* sub = match.session;
    if (sub->delivery_mark == mark) return;  // several matching filters: one copy
    sub->delivery_mark = mark;
    if (!may_read(sub->hook, m.topic)) return;
    bool retain = m.retain;
    ids_.clear();
    std::uint8_t qos = 0;  // the highest of the matching subscriptions' (3.3.4, one copy)
    if (sub->filters_with_options > 0) {
      const Wanted w = wanted_by(sub->filters, m.topic, sub == m.origin, ids_);
      if (!w.any) return;
      retain = retain || (w.retain_as_published && m.published_retain);
      qos = w.qos;
    }
    if (sub->out && (std::min(qos, m.qos) > 0 || sub->out->queued_count() > 0)) {
      // QoS 1 or 2, or a QoS 0 message that must not pass what waits before it.
      deliver_outbound(*sub, m, qos, retain, ids_, now);
      return;
    }
    if (!sub->v5 || (ids_.empty() && sub->alias_max_out == 0)) {
      offer(*sub, packet(sub->v5, retain), m.payload.size(), m.source, now);
      return;
    }
    // The subscriber's own copy, encoded here, not kept: [MQTT-3.3.4-4/5] one copy for
    // overlapping subscriptions carries the identifier of every one that matched (sorted; the
    // spec asks for no order), and a topic alias is this connection's.
    mqtt::PropertyWriter with_ids;
    for (const std::uint32_t id : ids_) with_ids.varint(property::kSubscriptionIdentifier, id);
    Bytes props(m.v5_properties.begin(), m.v5_properties.end());
    append(props, with_ids.bytes());
    own_.clear();
    const std::uint16_t alias =
        publish_v5(*sub, m.topic, m.payload, 0, retain, false, 0, props, own_);
    if (offer(*sub, own_, m.payload.size(), m.source, now)) commit_alias(*sub, m.topic, alias);
  });
  if (offline_.filter_count() == 0) return;
  // Persistent sessions whose clients are away queue it (Outbound drops QoS 0 there unless
  // --queue-qos0).
  offline_.match(m.topic, [&](StoredSession* st) {
    if (st->delivery_mark == mark || !st->out) return;
    st->delivery_mark = mark;
    if (!may_read(st->hook, m.topic)) return;
    std::vector<std::uint32_t> ids;
    const Wanted w = wanted_by(st->filters, m.topic, false, ids);
    const bool retain = m.retain || (w.retain_as_published && m.published_retain);
    const DropTally tally(*st->out, counters_);
    st->out->offer(Delivery{stored_message(m), w.qos, retain, std::move(ids)}, now, sends_);
    sends_.clear();  // nothing is sent to a client that is away
  });
}

std::uint16_t Broker::publish_v5(Session& s, std::string_view topic, ByteSpan payload,
                                 std::uint8_t qos, bool retain, bool dup, std::uint16_t packet_id,
                                 ByteSpan properties, Bytes& out) {
  if (s.alias_max_out == 0) {
    mqtt::encode_publish_v5(out, topic, payload, qos, retain, dup, packet_id, properties);
    return 0;
  }
  Bytes props(properties.begin(), properties.end());
  if (const auto it = s.aliases_out.find(std::string(topic)); it != s.aliases_out.end()) {
    // 3.3.2.3.4: a set alias stands for the topic, which is then left empty.
    append(props, mqtt::PropertyWriter().u16(property::kTopicAlias, it->second).bytes());
    mqtt::encode_publish_v5(out, "", payload, qos, retain, dup, packet_id, props);
    return 0;
  }
  if (s.aliases_out.size() >= s.alias_max_out) {
    // Every alias is taken: the topics that came first keep theirs (no replacement, so an alias
    // never changes meaning under a client).
    mqtt::encode_publish_v5(out, topic, payload, qos, retain, dup, packet_id, properties);
    return 0;
  }
  const auto alias = static_cast<std::uint16_t>(s.aliases_out.size() + 1);
  append(props, mqtt::PropertyWriter().u16(property::kTopicAlias, alias).bytes());
  mqtt::encode_publish_v5(out, topic, payload, qos, retain, dup, packet_id, props);
  return alias;
}

void Broker::commit_alias(Session& s, std::string_view topic, std::uint16_t alias) {
  if (alias != 0) s.aliases_out.emplace(std::string(topic), alias);
}

void Broker::deliver_shared(SharedGroup& g, const Outgoing& m, TimePoint now) {
  // One member per message, in turn (Mosquitto's round robin). It gets its own copy beside any of
  // its non-shared subscriptions (v5 4.8.2 allows both), with this subscription's options.
  Session& sub = *g.members[g.next++ % g.members.size()];
  // A member the hooks do not let read it does not get it, and the turn is spent (as in
  // Mosquitto, whose ACL check comes after the member is chosen).
  if (!may_read(sub.hook, m.topic)) return;
  const auto o = sub.filters.find(g.key);
  const FilterOptions options = o == sub.filters.end() ? FilterOptions{} : o->second;
  const bool retain = m.retain || (options.retain_as_published && m.published_retain);
  if (sub.out && (std::min(options.qos, m.qos) > 0 || sub.out->queued_count() > 0)) {
    std::vector<std::uint32_t> ids;
    if (options.subscription_id != 0) ids.push_back(options.subscription_id);
    deliver_outbound(sub, m, options.qos, retain, std::move(ids), now);
    return;
  }
  own_.clear();
  if (sub.v5) {
    Bytes props(m.v5_properties.begin(), m.v5_properties.end());
    if (options.subscription_id != 0) {
      append(props, mqtt::PropertyWriter()
                        .varint(property::kSubscriptionIdentifier, options.subscription_id)
                        .bytes());
    }
    const std::uint16_t alias =
        publish_v5(sub, m.topic, m.payload, 0, retain, false, 0, props, own_);
    if (offer(sub, own_, m.payload.size(), m.source, now)) commit_alias(sub, m.topic, alias);
    return;
  }
  mqtt::encode_publish(own_, m.topic, m.payload, 0, retain, false, 0);
  offer(sub, own_, m.payload.size(), m.source, now);
}

void Broker::handle_subscribe(Session& s, const mqtt::Subscribe& sub, TimePoint now) {
  // v5: one identifier for every filter of this SUBSCRIBE (3.8.2.1.2); the decoder refused 0.
  const std::uint32_t subscription_id = sub.properties.subscription_id.value_or(0);
  std::vector<std::uint8_t> codes;
  codes.reserve(sub.topics.size());
  std::vector<bool> send_retained(sub.topics.size(), false);
  granted_.assign(sub.topics.size(), 0);
  // The filters as subscribed: as the client sent them, or as a hook changed them.
  std::vector<std::string> filters(sub.topics.size());
  std::vector<std::string> accepted;  // for the hooks' notification
  for (std::size_t i = 0; i < sub.topics.size(); ++i) {
    const auto& t = sub.topics[i];
    if (!t.filter_valid) {
      log_.info(kLog, "SUBSCRIBE refused client={} id={} topic={}: invalid filter", s.peer,
                s.client_id, t.filter);
      codes.push_back(s.v5 ? mqtt::reason::kTopicFilterInvalid : mqtt::kSubackFailure);
      continue;
    }
    filters[i] = std::string(t.filter);
    if (s.hooked) {
      // mProxy's AuthSubscribe, one filter at a time: changed, or refused with its own code.
      hooks::Field f(t.filter);
      std::string_view by;
      hooks::Reason r = cfg_.hooks->auth_subscribe(s.hook, f, t.requested_qos, &by);
      if (r == hooks::kOk && f.changed() &&
          !(mqtt::is_mqtt_string(f.get()) && mqtt::is_valid_topic_filter(f.get()))) {
        r = mqtt::reason::kTopicFilterInvalid;
      }
      if (r != hooks::kOk) {
        ++counters_.mqtt_subscribe_refused;
        log_.info(kLog, "SUBSCRIBE refused client={} id={} topic={}: hook {} said 0x{:02x}", s.peer,
                  s.client_id, t.filter, by, r);
        codes.push_back(s.v5 ? r : mqtt::kSubackFailure);
        continue;
      }
      if (f.changed()) filters[i] = std::string(f.get());
    }
    const std::string& filter = filters[i];
    bool share_valid = true;
    const bool shared = shared_filter(filter, share_valid).has_value();
    if (!share_valid) {
      log_.info(kLog, "SUBSCRIBE refused client={} id={} topic={}: invalid shared subscription",
                s.peer, s.client_id, filter);
      codes.push_back(s.v5 ? mqtt::reason::kTopicFilterInvalid : mqtt::kSubackFailure);
      continue;
    }
    if (shared && t.no_local) {
      // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
      protocol_error(s, fmt::format("No Local on the shared subscription {}", filter), now,
                     mqtt::reason::kProtocolError);
      return;
    }
    ++counters_.mqtt_subscriptions;
    log_.info(kLog, "SUBSCRIBE client={} id={} topic={} qos={}", s.peer, s.client_id, filter,
              t.requested_qos);
    const std::uint8_t granted = std::min<std::uint8_t>(t.requested_qos, 2);
    granted_[i] = granted;
    codes.push_back(granted);
    const bool is_new = add_subscription(
        s, filter, FilterOptions{t.no_local, t.retain_as_published, subscription_id, granted}, now);
    if (s.hooked) accepted.push_back(filter);
    // v5 Retain Handling: 0 always, 1 only for a new subscription, 2 never (3.8.3.1). A shared
    // subscription gets none (v5 4.8.2: they would go to every member).
    send_retained[i] = !shared && (t.retain_handling == 0 || (t.retain_handling == 1 && is_new));
  }
  scratch_.clear();
  if (s.v5) {
    mqtt::encode_suback_v5(scratch_, sub.packet_id, codes);
  } else {
    mqtt::encode_suback(scratch_, sub.packet_id, codes);
  }
  send(s, scratch_);
  // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: the retained messages of each filter, RETAIN set, after the
  // SUBACK.
  retained_.drop_expired(now);
  for (std::size_t i = 0; i < sub.topics.size(); ++i) {
    if (!send_retained[i]) continue;
    retained_.for_each_match(
        filters[i], [&](std::string_view topic, const RetainedStore::Message& m) {
          if (!may_read(s.hook, topic)) return;
          if (s.out && (std::min(m.qos, granted_[i]) > 0 || s.out->queued_count() > 0)) {
            // At min(its publisher's QoS, the subscription's) through the session's flows.
            auto msg = make_stored(topic, m.payload, m.properties, m.qos, true, m.expires_at);
            std::vector<std::uint32_t> ids;
            if (subscription_id != 0) ids.push_back(subscription_id);
            const DropTally tally(*s.out, counters_);
            const auto r = s.out->offer(Delivery{std::move(msg), granted_[i], true, std::move(ids)},
                                        now, sends_);
            if (r.outcome != OfferResult::Outcome::Dropped) ++counters_.mqtt_retained_sent;
            emit(s, flow::kNone, now);
            return;
          }
          scratch_.clear();
          if (s.v5) {
            Bytes props = with_remaining_expiry(m, now);
            // The subscription it answers (3.3.4): this SUBSCRIBE's identifier.
            if (subscription_id != 0) {
              append(props, mqtt::PropertyWriter()
                                .varint(property::kSubscriptionIdentifier, subscription_id)
                                .bytes());
            }
            const std::uint16_t alias =
                publish_v5(s, topic, m.payload, 0, true, false, 0, props, scratch_);
            if (offer(s, scratch_, m.payload.size(), flow::kNone, now)) {
              ++counters_.mqtt_retained_sent;
              commit_alias(s, topic, alias);
            }
            return;
          }
          mqtt::encode_publish(scratch_, topic, m.payload, 0, true, false, 0);
          if (offer(s, scratch_, m.payload.size(), flow::kNone, now)) {
            ++counters_.mqtt_retained_sent;
          }
        });
  }
  if (s.hooked && !accepted.empty()) cfg_.hooks->on_subscribe(s.hook, accepted);
}

bool Broker::add_subscription(Session& s, const std::string& filter, FilterOptions options,
                              TimePoint now) {
  const auto [it, is_new] = s.filters.try_emplace(filter, options);
  if (!is_new) {
    // [MQTT-3.8.4-3]: a repeat replaces the subscription; only its options change.
    if (!it->second.is_default()) --s.filters_with_options;
    it->second = options;
  }
  if (!options.is_default()) ++s.filters_with_options;
  if (is_new) index_add(s, filter, now);
  return is_new;
}

void Broker::index_add(Session& s, const std::string& filter, TimePoint now) {
  bool valid = true;
  const auto inner = shared_filter(filter, valid);
  Subscriber sub{&s, nullptr};
  std::string_view indexed = filter;
  if (inner) {
    auto& g = shared_[filter];
    if (!g) {
      g = std::make_unique<SharedGroup>();
      g->key = filter;
      g->filter = std::string(*inner);
    }
    g->members.push_back(&s);
    if (g->members.size() > 1) return;  // the group is indexed already
    sub = Subscriber{nullptr, g.get()};
    indexed = g->filter;
  }
  if (subscriptions_.add(indexed, sub)) {
    peering_.local_filter_added(indexed, now);
    if (m2m_) m2m_->subscribed(indexed, now);
  }
}

void Broker::index_remove(Session& s, const std::string& filter, TimePoint now) {
  bool valid = true;
  if (!shared_filter(filter, valid)) {
    if (subscriptions_.remove(filter, Subscriber{&s, nullptr})) filter_removed(filter, now);
    return;
  }
  auto it = shared_.find(filter);
  if (it == shared_.end()) return;
  SharedGroup& g = *it->second;
  std::erase(g.members, &s);
  if (!g.members.empty()) return;
  const std::string inner = g.filter;
  const bool last = subscriptions_.remove(inner, Subscriber{nullptr, &g});
  shared_.erase(it);
  if (last) filter_removed(inner, now);
}

void Broker::store_session(Session& s, TimePoint now) {
  if (s.keep_for <= Duration::zero()) return;
  if (stored_.size() >= cfg_.max_stored_sessions && !stored_.contains(s.client_id)) {
    if (counters_.mqtt_sessions_not_stored++ % 1000 == 0) {
      log_.warn(kLog, "session id={} not kept: {} stored sessions is the limit", s.client_id,
                cfg_.max_stored_sessions);
    }
    return;
  }
  StoredSession& st = stored_[s.client_id];
  index_offline(st, false);  // stored before, and taken over since
  st.filters = s.filters;
  st.hook = s.hook;
  st.expires_at = now + s.keep_for;
  st.out = std::move(s.out);
  // Queued QoS 0 messages go now, unless --queue-qos0: not counted as drops, as a QoS 0 message
  // for an away client is never queued (Mosquitto's rule).
  if (st.out) st.out->disconnected();
  index_offline(st, true);
  stored_expiry_.push(st.expires_at, s.client_id);
  log_.debug(kLog, "session id={} kept with {} filter(s) for {} s", s.client_id, st.filters.size(),
             std::chrono::duration_cast<std::chrono::seconds>(s.keep_for).count());
}

void Broker::index_offline(StoredSession& st, bool add) {
  for (const auto& [filter, options] : st.filters) {
    bool valid = true;
    if (shared_filter(filter, valid) || !valid) continue;
    if (add) {
      offline_.add(filter, &st);
    } else {
      offline_.remove(filter, &st);
    }
  }
}

void Broker::drop_stored(std::unordered_map<std::string, StoredSession>::iterator it) {
  index_offline(it->second, false);
  stored_.erase(it);  // what it had queued goes with it, as the session it was kept for
}

bool Broker::restore_session(Session& s, TimePoint now) {
  auto it = stored_.find(s.client_id);
  if (it == stored_.end()) return false;
  index_offline(it->second, false);
  for (const auto& [filter, options] : it->second.filters) {
    add_subscription(s, filter, options, now);
  }
  s.out = std::move(it->second.out);  // reconnected() once the CONNACK is sent
  stored_.erase(it);
  ++counters_.mqtt_sessions_resumed;
  return true;
}

void Broker::handle_unsubscribe(Session& s, const mqtt::Unsubscribe& u, TimePoint now) {
  std::vector<std::uint8_t> codes;  // v5 only
  for (auto f : u.filters) {
    ++counters_.mqtt_unsubscriptions;
    log_.info(kLog, "UNSUBSCRIBE client={} id={} topic={}", s.peer, s.client_id, f);
    auto it = s.filters.find(std::string(f));
    if (it == s.filters.end()) {
      codes.push_back(mqtt::reason::kNoSubscriptionExisted);
      continue;
    }
    codes.push_back(mqtt::reason::kSuccess);
    if (!it->second.is_default()) --s.filters_with_options;
    s.filters.erase(it);
    index_remove(s, std::string(f), now);
  }
  scratch_.clear();
  if (s.v5) {
    mqtt::encode_unsuback_v5(scratch_, u.packet_id, codes);
  } else {
    mqtt::encode_unsuback(scratch_, u.packet_id);
  }
  send(s, scratch_);
  if (s.hooked) {
    const std::vector<std::string> filters(u.filters.begin(), u.filters.end());
    cfg_.hooks->on_unsubscribe(s.hook, filters);
  }
}

void Broker::publish_will(Session& s, TimePoint now) {
  if (!s.will) return;
  WillMessage will = std::move(*s.will);
  s.will.reset();
  // v5 Will Delay: wait, unless the session ends first (3.1.3.2.2).
  const Duration delay = std::min(will.delay, s.keep_for);
  if (delay > Duration::zero()) {
    const TimePoint due = now + delay;
    log_.info(kLog, "will of client={} id={} topic={} held for {} s", s.peer, s.client_id,
              will.topic, std::chrono::duration_cast<std::chrono::seconds>(delay).count());
    pending_wills_[s.client_id] = PendingWill{std::move(will), due};
    will_timers_.push(due, s.client_id);
    return;
  }
  publish_will_message(will, s.client_id, &s, now);
}

void Broker::publish_will_message(const WillMessage& will, const std::string& client_id,
                                  const Session* origin, TimePoint now) {
  ++counters_.mqtt_wills_published;
  log_.info(kLog, "will published for id={} topic={}", client_id, will.topic);
  // [MQTT-3.1.2-17]: a will with Will Retain is published as a retained message.
  if (will.retain) {
    retain(will.topic, will.payload, RetainedStore::Origin::Local, will.properties, {}, will.qos);
  }
  deliver_local(Outgoing{will.topic,
                         will.payload,
                         false,
                         will.retain,
                         origin,
                         will.properties,
                         flow::kNone,
                         will.qos,
                         std::nullopt,
                         {}},
                now);
  peering_.forward_publish(will.topic, will.payload, will.retain, flow::kNone, now,
                           will.properties);
  if (m2m_) m2m_->publish(will.topic, will.payload, will.retain, now);
}

void Broker::end_session(Session& s, bool publish_will_msg, TimePoint now) {
  if (s.closing) return;
  s.closing = true;
  closing_.push_back(s.handle);
  if (s.hooked) {
    s.hooked = false;
    cfg_.hooks->on_disconnect(s.hook);
  }
  if (s.phase == Phase::Connected) store_session(s, now);
  for (const auto& [f, options] : s.filters) index_remove(s, f, now);
  s.filters.clear();
  s.filters_with_options = 0;
  if (s.phase == Phase::Connected) {
    if (auto it = by_client_id_.find(s.client_id); it != by_client_id_.end() && it->second == &s) {
      by_client_id_.erase(it);
    }
  }
  if (publish_will_msg) publish_will(s, now);
  if (flow_) flow_->remove(flow::client(s.handle));
  host_.close(s.handle);
}

void Broker::on_lost(ClientHandle c, std::string_view reason, TimePoint now) {
  auto it = sessions_.find(c);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (s.closing) return;
  if (s.phase == Phase::Connected) {
    ++counters_.mqtt_connections_lost;
    log_.info(kLog, "DISCONNECT client={} id={} without DISCONNECT packet: {}", s.peer, s.client_id,
              reason);
  } else {
    log_.debug(kLog, "connection closed before CONNECT client={}: {}", s.peer, reason);
  }
  end_session(s, /*publish_will_msg=*/true, now);
  reap();
}

void Broker::on_timers(TimePoint now) {
  will_timers_.pop_due(now, [&](TimePoint t, const std::string& id) {
    auto it = pending_wills_.find(id);
    if (it == pending_wills_.end() || it->second.due != t) return;  // cancelled or replaced
    const PendingWill pending = std::move(it->second);
    pending_wills_.erase(it);
    publish_will_message(pending.will, id, nullptr, now);
  });
  stored_expiry_.pop_due(now, [&](TimePoint t, const std::string& id) {
    auto it = stored_.find(id);
    if (it == stored_.end() || it->second.expires_at != t) return;  // resumed or stored again
    ++counters_.mqtt_sessions_expired;
    log_.info(kLog, "session id={} expired with {} filter(s)", id, it->second.filters.size());
    drop_stored(it);
  });
  deadlines_.pop_due(now, [&](TimePoint t, ClientHandle c) {
    auto it = sessions_.find(c);
    if (it == sessions_.end()) return;
    Session& s = *it->second;
    if (s.closing || !s.scheduled_at || *s.scheduled_at != t) return;  // ended, or superseded
    s.scheduled_at.reset();
    if (s.deadline > now) {
      schedule(s);  // activity moved the deadline since this entry was queued
      return;
    }
    if (s.phase == Phase::Connected && flow_ && flow_->is_paused(flow::client(c))) {
      // Backpressure: its packets wait unread in our buffer, so its silence is ours.
      s.deadline = now + s.keepalive_grace;
      schedule(s);
      return;
    }
    if (s.phase == Phase::AwaitConnect) {
      log_.info(kLog, "closing client={}: no CONNECT within {} ms", s.peer,
                to_ms(cfg_.connect_timeout));
      end_session(s, false, now);
    } else {
      ++counters_.mqtt_keepalive_expired;
      log_.info(kLog, "DISCONNECT client={} id={}: keepalive expired", s.peer, s.client_id);
      send_disconnect(s, mqtt::reason::kKeepAliveTimeout);
      end_session(s, /*publish_will_msg=*/true, now);
    }
  });
  reap();
}

void Broker::close_all(std::string_view reason, TimePoint now) {
  // Ending a session never destroys or adds one before reap(), so the map can be walked.
  for (const auto& [h, s] : sessions_) {
    if (s->closing) continue;
    log_.debug(kLog, "closing client={}: {}", s->peer, reason);
    send_disconnect(*s, mqtt::reason::kServerShuttingDown);
    end_session(*s, false, now);
  }
  reap();
}

}  // namespace mqtt_proxy::broker
