// Broker side of MQTT 3.1 / 3.1.1. Delivery to subscribers is QoS 0; inbound QoS 1 and 2 are
// acknowledged by the book so clients never stall (section 4.3).

#include "mqtt_proxy/broker/broker.hpp"

#include <algorithm>
#include <cstring>

namespace mqtt_proxy::broker {

namespace {
constexpr std::string_view kLog = "broker";

bool equal_bytes(ByteSpan a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}
}  // namespace

struct Broker::Session {
  ClientHandle handle = 0;
  std::string label;
  Phase phase = Phase::AwaitConnect;
  mqtt::FrameSplitter splitter;
  mqtt::ProtocolVersion version = mqtt::ProtocolVersion::V311;
  std::string client_id;
  bool clean = true;                      // clean session: nothing outlives the connection
  Duration keepalive_grace{0};            // 1.5 x keepalive; 0 = none
  TimePoint deadline{};                   // CONNECT timeout, then keepalive expiry
  std::optional<TimePoint> scheduled_at;  // the live entry in deadlines_, if any
  std::unordered_set<std::string> filters;
  struct StoredWill {
    std::string topic;
    Bytes payload;
    bool retain = false;
  };
  std::optional<StoredWill> will;
  std::unordered_set<std::uint16_t> qos2_awaiting_pubrel;
  std::uint64_t delivery_mark = 0;
  std::uint64_t dropped_in_a_row = 0;  // QoS 0 copies lost to a full queue since the last delivery
  bool closing = false;

  explicit Session(std::size_t max_packet) : splitter(max_packet) {}
};

Broker::Broker(BrokerConfig cfg, BrokerHost& host, peering::Peering& peering, log::Logger& log,
               metrics::Counters& counters)
    : cfg_(std::move(cfg)),
      host_(host),
      peering_(peering),
      log_(log),
      counters_(counters),
      retained_(cfg_.max_retained_messages) {}

Broker::~Broker() = default;

void Broker::send(Session& s, const Bytes& b) {
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

void Broker::on_open(ClientHandle c, std::string label, TimePoint now) {
  auto s = std::make_unique<Session>(cfg_.max_packet_size);
  s->handle = c;
  s->label = std::move(label);
  s->deadline = now + cfg_.connect_timeout;
  schedule(*s);
  log_.debug(kLog, "connection opened client={}", s->label);
  sessions_.emplace(c, std::move(s));
}

void Broker::on_data(ClientHandle c, ByteSpan data, TimePoint now) {
  auto it = sessions_.find(c);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (s.closing) return;
  s.splitter.feed(data);
  for (;;) {
    mqtt::DecodeError err;
    const auto frame = s.splitter.next(err);
    if (!frame) {
      if (err != mqtt::DecodeError::None) protocol_error(s, mqtt::decode_error_name(err), now);
      return;
    }
    handle_frame(s, *frame, now);
    // handle_frame may have ended the session; `s` is then gone.
    auto again = sessions_.find(c);
    if (again == sessions_.end() || again->second->closing) return;
  }
}

void Broker::protocol_error(Session& s, std::string_view reason, TimePoint now) {
  ++counters_.mqtt_protocol_errors;
  log_.warn(kLog, "closing client={} id={}: {}", s.label, s.client_id, reason);
  end_session(s, /*publish_will_msg=*/true, now);
}

void Broker::handle_frame(Session& s, const mqtt::FrameView& f, TimePoint now) {
  mqtt::ClientPacket packet;
  const auto err = mqtt::decode_client_packet(f, s.version, packet);
  if (err == mqtt::DecodeError::UnsupportedProtocolVersion && s.phase == Phase::AwaitConnect) {
    // [MQTT-3.1.2-2]: answer with return code 1, then close.
    ++counters_.mqtt_connects_refused;
    log_.info(kLog, "CONNECT refused client={}: unsupported protocol version", s.label);
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
                   now);
    return;
  }
  if (s.phase == Phase::AwaitConnect && !std::holds_alternative<mqtt::Connect>(packet)) {
    protocol_error(s, fmt::format("{} before CONNECT", mqtt::packet_type_name(f.type())), now);
    return;
  }
  touch(s, now);
  std::visit(
      [&](auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, mqtt::Connect>) {
          if (s.phase == Phase::Connected) {
            protocol_error(s, "second CONNECT", now);  // [MQTT-3.1.0-2]
          } else {
            handle_connect(s, p, now);
          }
        } else if constexpr (std::is_same_v<T, mqtt::Publish>) {
          handle_publish(s, p, now);
        } else if constexpr (std::is_same_v<T, mqtt::Subscribe>) {
          handle_subscribe(s, p);
        } else if constexpr (std::is_same_v<T, mqtt::Unsubscribe>) {
          handle_unsubscribe(s, p);
        } else if constexpr (std::is_same_v<T, mqtt::PacketIdAck>) {
          if (p.type == mqtt::PacketType::Pubrel) {
            // QoS 2, step 3: release the packet id and complete (4.3.3). PUBCOMP also for unknown
            // ids, so a client that lost our earlier PUBCOMP can finish.
            s.qos2_awaiting_pubrel.erase(p.packet_id);
            scratch_.clear();
            mqtt::encode_packet_id_ack(scratch_, mqtt::PacketType::Pubcomp, p.packet_id);
            send(s, scratch_);
          } else {
            // We only ever send QoS 0, so PUBACK/PUBREC/PUBCOMP from a client acknowledge nothing.
            log_.debug(kLog, "client={} sent {} for id {}; ignored", s.label,
                       mqtt::packet_type_name(p.type), p.packet_id);
          }
        } else if constexpr (std::is_same_v<T, mqtt::Pingreq>) {
          scratch_.clear();
          mqtt::encode_pingresp(scratch_);
          send(s, scratch_);
        } else if constexpr (std::is_same_v<T, mqtt::Disconnect>) {
          ++counters_.mqtt_disconnects;
          log_.info(kLog, "DISCONNECT client={} id={}", s.label, s.client_id);
          end_session(s, /*publish_will_msg=*/false, now);  // [MQTT-3.14.4-3]: will discarded
        }
      },
      packet);
}

bool Broker::authorized(const mqtt::Connect& c) const {
  if (!cfg_.username && !cfg_.password_file) return true;
  if (!c.username) return cfg_.allow_anonymous;
  if (cfg_.username && *c.username == *cfg_.username &&
      (!cfg_.password || (c.password && equal_bytes(*c.password, *cfg_.password)))) {
    return true;
  }
  return cfg_.password_file && c.password && cfg_.password_file->check(*c.username, *c.password);
}

void Broker::handle_connect(Session& s, const mqtt::Connect& c, TimePoint now) {
  auto refuse = [&](std::uint8_t code, std::string_view why) {
    ++counters_.mqtt_connects_refused;
    log_.info(kLog, "CONNECT refused client={} id={} user={}: {}", s.label, c.client_id,
              c.username.value_or(""), why);
    scratch_.clear();
    mqtt::encode_connack(scratch_, false, code);
    send(s, scratch_);
    end_session(s, false, now);
  };

  if (!authorized(c)) return refuse(mqtt::connack::kNotAuthorized, "wrong credentials");

  std::string client_id(c.client_id);
  if (client_id.empty()) {
    // 3.1.1 lets the server assign an id to a clean session [MQTT-3.1.3-6/7]; 3.1 does not.
    if (c.version == mqtt::ProtocolVersion::V31 || !c.clean_session) {
      return refuse(mqtt::connack::kIdentifierRejected, "empty client id");
    }
    client_id = fmt::format("auto-{}", ++auto_id_);
  }

  // Session takeover [MQTT-3.1.4-2]: the new connection wins.
  if (auto it = by_client_id_.find(client_id); it != by_client_id_.end()) {
    Session& old = *it->second;
    ++counters_.mqtt_sessions_taken_over;
    log_.info(kLog, "session id={} taken over: closing client={} for client={}", client_id,
              old.label, s.label);
    end_session(old, /*publish_will_msg=*/true, now);
  }

  s.phase = Phase::Connected;
  s.version = c.version;
  s.client_id = client_id;
  s.clean = c.clean_session;
  by_client_id_[client_id] = &s;
  // [MQTT-3.1.2-4/6]: clean session 1 discards a stored session; 0 resumes it.
  bool session_present = false;
  if (s.clean) {
    stored_.erase(client_id);
  } else {
    session_present = restore_session(s);
  }
  if (c.will) {
    s.will =
        Session::StoredWill{std::string(c.will->topic),
                            Bytes(c.will->payload.begin(), c.will->payload.end()), c.will->retain};
  }
  // [MQTT-3.1.2-24]: one and a half keepalive periods without a packet ends the session.
  s.keepalive_grace = std::chrono::milliseconds(std::int64_t{c.keepalive} * 1500);
  s.deadline = TimePoint::max();
  touch(s, now);

  ++counters_.mqtt_connects;
  log_.info(kLog, "CONNECT client={} id={} user={} keepalive={} clean={} version={}{}", s.label,
            client_id, c.username.value_or(""), c.keepalive, c.clean_session,
            static_cast<int>(c.version),
            session_present ? fmt::format(" resumed with {} filter(s)", s.filters.size()) : "");
  scratch_.clear();
  // [MQTT-3.2.2-1/2]: session present only when a stored session was resumed.
  mqtt::encode_connack(scratch_, session_present, mqtt::connack::kAccepted);
  send(s, scratch_);
}

void Broker::handle_publish(Session& s, const mqtt::Publish& p, TimePoint now) {
  (void)now;
  ++counters_.mqtt_publish_received;
  log_.debug(kLog, "PUBLISH client={} id={} topic={} qos={} bytes={}", s.label, s.client_id,
             p.topic, p.qos, p.payload.size());
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
  if (p.retain) retain(p.topic, p.payload, RetainedStore::Origin::Local);
  deliver_local(p.topic, p.payload, false);
  peering_.forward_publish(p.topic, p.payload, p.retain);
}

void Broker::on_peer_publish(const mqtt::Publish& p, TimePoint now) {
  (void)now;
  // A peer sends RETAIN set both for a live retained message and for the retained messages it
  // answers our SUBSCRIBE with; the two cannot be told apart, so local subscribers see the flag
  // either way (as behind a Mosquitto bridge).
  if (p.retain) retain(p.topic, p.payload, RetainedStore::Origin::Peer);
  deliver_local(p.topic, p.payload, p.retain);
}

void Broker::on_peer_interest(wire::Ipv4Address peer, std::string_view filter) {
  // Only what local clients retained: a replica goes back to where it came from, not onward.
  retained_.for_each_match(
      filter, [&](std::string_view topic, ByteSpan payload, RetainedStore::Origin origin) {
        if (origin != RetainedStore::Origin::Local) return;
        ++counters_.mqtt_retained_sent;
        peering_.send_retained(peer, topic, payload);
      });
}

void Broker::retain(std::string_view topic, ByteSpan payload, RetainedStore::Origin origin) {
  switch (retained_.set(topic, payload, origin)) {
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
  counters_.mqtt_retained_topics = retained_.size();
}

void Broker::filter_removed(std::string_view filter) {
  peering_.local_filter_removed(filter);
  // A replica nobody here subscribes to would go stale: the peer stops telling us about it.
  retained_.drop_peer_entries(filter, [&](std::string_view topic) {
    bool wanted = false;
    subscriptions_.match(topic, [&](Session*) { wanted = true; });
    return wanted;
  });
  counters_.mqtt_retained_topics = retained_.size();
}

bool Broker::offer(Session& sub, const Bytes& packet) {
  if (host_.queued_bytes(sub.handle) + packet.size() > cfg_.max_queued_bytes) {
    ++counters_.mqtt_publish_dropped_slow;
    if (sub.dropped_in_a_row++ == 0) {
      log_.warn(kLog,
                "client={} id={} is not reading: {} bytes queued, dropping QoS 0 messages to it",
                sub.label, sub.client_id, host_.queued_bytes(sub.handle));
    }
    return false;
  }
  if (sub.dropped_in_a_row > 0) {
    log_.info(kLog, "client={} id={} reads again; {} messages to it were dropped", sub.label,
              sub.client_id, sub.dropped_in_a_row);
    sub.dropped_in_a_row = 0;
  }
  ++counters_.mqtt_publish_delivered;
  host_.send(sub.handle, packet);
  return true;
}

void Broker::deliver_local(std::string_view topic, ByteSpan payload, bool retain) {
  // One encoding for every subscriber. Retain is 0 on live delivery [MQTT-3.3.1-9], except for
  // what peers send retained (see on_peer_publish).
  Bytes packet;
  mqtt::encode_publish(packet, topic, payload, 0, retain, false, 0);
  const std::uint64_t mark = ++delivery_mark_;
  subscriptions_.match(topic, [&](Session* sub) {
    if (sub->delivery_mark == mark) return;  // several matching filters: one copy
    sub->delivery_mark = mark;
    offer(*sub, packet);
  });
}

void Broker::handle_subscribe(Session& s, const mqtt::Subscribe& sub) {
  std::vector<std::uint8_t> codes;
  codes.reserve(sub.topics.size());
  for (const auto& t : sub.topics) {
    if (!t.filter_valid) {
      log_.info(kLog, "SUBSCRIBE refused client={} id={} topic={}: invalid filter", s.label,
                s.client_id, t.filter);
      codes.push_back(mqtt::kSubackFailure);
      continue;
    }
    ++counters_.mqtt_subscriptions;
    log_.info(kLog, "SUBSCRIBE client={} id={} topic={} qos={}", s.label, s.client_id, t.filter,
              t.requested_qos);
    codes.push_back(0x00);  // granted QoS 0
    add_subscription(s, std::string(t.filter));
  }
  scratch_.clear();
  mqtt::encode_suback(scratch_, sub.packet_id, codes);
  send(s, scratch_);
  // [MQTT-3.3.1-6], [MQTT-3.8.4-3]: the retained messages of each filter, RETAIN set, after the
  // SUBACK.
  for (const auto& t : sub.topics) {
    if (!t.filter_valid) continue;
    retained_.for_each_match(t.filter,
                             [&](std::string_view topic, ByteSpan payload, RetainedStore::Origin) {
                               scratch_.clear();
                               mqtt::encode_publish(scratch_, topic, payload, 0, true, false, 0);
                               if (offer(s, scratch_)) ++counters_.mqtt_retained_sent;
                             });
  }
}

void Broker::add_subscription(Session& s, const std::string& filter) {
  if (!s.filters.emplace(filter).second) return;  // a repeat replaces the same subscription
  if (subscriptions_.add(filter, &s)) peering_.local_filter_added(filter);
}

void Broker::store_session(const Session& s, TimePoint now) {
  if (cfg_.session_expiry <= Duration::zero()) return;
  if (stored_.size() >= cfg_.max_stored_sessions && !stored_.contains(s.client_id)) {
    if (counters_.mqtt_sessions_not_stored++ % 1000 == 0) {
      log_.warn(kLog, "session id={} not kept: {} stored sessions is the limit", s.client_id,
                cfg_.max_stored_sessions);
    }
    return;
  }
  StoredSession& st = stored_[s.client_id];
  st.filters.assign(s.filters.begin(), s.filters.end());
  st.expires_at = now + cfg_.session_expiry;
  stored_expiry_.push(st.expires_at, s.client_id);
  log_.debug(kLog, "session id={} kept with {} filter(s) for {} s", s.client_id, st.filters.size(),
             std::chrono::duration_cast<std::chrono::seconds>(cfg_.session_expiry).count());
}

bool Broker::restore_session(Session& s) {
  auto it = stored_.find(s.client_id);
  if (it == stored_.end()) return false;
  for (const auto& f : it->second.filters) add_subscription(s, f);
  stored_.erase(it);
  ++counters_.mqtt_sessions_resumed;
  return true;
}

void Broker::handle_unsubscribe(Session& s, const mqtt::Unsubscribe& u) {
  for (auto f : u.filters) {
    ++counters_.mqtt_unsubscriptions;
    log_.info(kLog, "UNSUBSCRIBE client={} id={} topic={}", s.label, s.client_id, f);
    auto it = s.filters.find(std::string(f));
    if (it == s.filters.end()) continue;
    s.filters.erase(it);
    if (subscriptions_.remove(f, &s)) filter_removed(f);
  }
  scratch_.clear();
  mqtt::encode_unsuback(scratch_, u.packet_id);
  send(s, scratch_);
}

void Broker::publish_will(Session& s, TimePoint now) {
  (void)now;
  if (!s.will) return;
  ++counters_.mqtt_wills_published;
  log_.info(kLog, "will published for client={} id={} topic={}", s.label, s.client_id,
            s.will->topic);
  const auto will = std::move(*s.will);
  s.will.reset();
  // [MQTT-3.1.2-17]: a will with Will Retain is published as a retained message.
  if (will.retain) retain(will.topic, will.payload, RetainedStore::Origin::Local);
  deliver_local(will.topic, will.payload, false);
  peering_.forward_publish(will.topic, will.payload, will.retain);
}

void Broker::end_session(Session& s, bool publish_will_msg, TimePoint now) {
  const ClientHandle handle = s.handle;
  s.closing = true;
  if (s.phase == Phase::Connected && !s.clean) store_session(s, now);
  for (const auto& f : s.filters) {
    if (subscriptions_.remove(f, &s)) filter_removed(f);
  }
  s.filters.clear();
  if (s.phase == Phase::Connected) {
    if (auto it = by_client_id_.find(s.client_id); it != by_client_id_.end() && it->second == &s) {
      by_client_id_.erase(it);
    }
  }
  if (publish_will_msg) publish_will(s, now);
  host_.close(handle);
  sessions_.erase(handle);  // destroys s
}

void Broker::on_lost(ClientHandle c, std::string_view reason, TimePoint now) {
  auto it = sessions_.find(c);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (s.phase == Phase::Connected) {
    ++counters_.mqtt_connections_lost;
    log_.info(kLog, "DISCONNECT client={} id={} without DISCONNECT packet: {}", s.label,
              s.client_id, reason);
  } else {
    log_.debug(kLog, "connection closed before CONNECT client={}: {}", s.label, reason);
  }
  end_session(s, /*publish_will_msg=*/true, now);
}

void Broker::on_timers(TimePoint now) {
  stored_expiry_.pop_due(now, [&](TimePoint t, const std::string& id) {
    auto it = stored_.find(id);
    if (it == stored_.end() || it->second.expires_at != t) return;  // resumed or stored again
    ++counters_.mqtt_sessions_expired;
    log_.info(kLog, "session id={} expired with {} filter(s)", id, it->second.filters.size());
    stored_.erase(it);
  });
  deadlines_.pop_due(now, [&](TimePoint t, ClientHandle c) {
    auto it = sessions_.find(c);
    if (it == sessions_.end()) return;
    Session& s = *it->second;
    if (!s.scheduled_at || *s.scheduled_at != t) return;  // superseded by an earlier entry
    s.scheduled_at.reset();
    if (s.deadline > now) {
      schedule(s);  // activity moved the deadline since this entry was queued
      return;
    }
    if (s.phase == Phase::AwaitConnect) {
      log_.info(kLog, "closing client={}: no CONNECT within {} ms", s.label,
                to_ms(cfg_.connect_timeout));
      end_session(s, false, now);
    } else {
      ++counters_.mqtt_keepalive_expired;
      log_.info(kLog, "DISCONNECT client={} id={}: keepalive expired", s.label, s.client_id);
      end_session(s, /*publish_will_msg=*/true, now);
    }
  });
}

void Broker::close_all(std::string_view reason, TimePoint now) {
  std::vector<ClientHandle> handles;
  handles.reserve(sessions_.size());
  for (const auto& [h, s] : sessions_) handles.push_back(h);
  for (auto h : handles) {
    auto it = sessions_.find(h);
    if (it == sessions_.end()) continue;
    log_.debug(kLog, "closing client={}: {}", it->second->label, reason);
    end_session(*it->second, false, now);
  }
}

}  // namespace mqtt_proxy::broker
