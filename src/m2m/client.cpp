#include "mqtt_proxy/m2m/client.hpp"

#include <algorithm>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/wire/datagram.hpp"

namespace mqtt_proxy::m2m {

namespace {
constexpr std::string_view kLog = "m2m";
constexpr wire::MacAddress kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
// A REQUEST's TTL: the original's (Scapy's default). The controller's first switch takes it.
constexpr std::uint8_t kRequestTtl = 64;
// A multicast PUBLISH's TTL, as the original: the SDN segment is one IP network.
constexpr std::uint8_t kDataTtl = 1;

std::size_t slot(Flags f) {
  return static_cast<std::size_t>(f);
}
}  // namespace

Client::Client(ClientConfig cfg, log::Logger& log, metrics::Counters& counters)
    : cfg_(cfg), log_(log), counters_(counters) {}

void Client::start(TimePoint now) {
  started_ = true;
  arp_deadline_ = now + cfg_.arp_timeout;
  next_arp_ = now;  // the ARP who-has goes at the first on_timers(), due now
}

// -- topics ----------------------------------------------------------------------------------

Client::Topic* Client::find(std::string_view topic) {
  auto it = topics_.find(topic);
  return it == topics_.end() ? nullptr : &it->second;
}

Client::Topic* Client::obtain(std::string_view topic) {
  if (auto* t = find(topic)) return t;
  if (topics_.size() >= cfg_.max_topics) {
    if (counters_.m2m_topics_refused++ % 1000 == 0) {
      log_.warn(kLog, "topic {} not handled: {} topics is the limit ({} refused so far)", topic,
                cfg_.max_topics, counters_.m2m_topics_refused);
    }
    return nullptr;
  }
  return &topics_.emplace(std::string(topic), Topic{}).first->second;
}

void Client::forget_if_idle(std::string_view topic) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) return;
  const Topic& t = it->second;
  if (t.receiver || t.publisher || t.tid[slot(Flags::Unsubscribe)]) return;
  topics_.erase(it);
}

std::optional<wire::Ipv4Address> Client::group_of(std::string_view topic) const {
  auto it = topics_.find(topic);
  return it == topics_.end() ? std::nullopt : it->second.group;
}

std::size_t Client::queued(std::string_view topic) const {
  auto it = topics_.find(topic);
  return it == topics_.end() ? 0 : it->second.queue.size();
}

// -- the broker's side ------------------------------------------------------------------------

void Client::subscribed(std::string_view filter, TimePoint now) {
  Topic* t = obtain(filter);
  if (!t) return;
  t->receiver = true;
  if (auto& u = t->tid[slot(Flags::Unsubscribe)]) {
    by_tid_.erase(*u);  // subscribed again before the flags 2 went out twice: no more of it
    u.reset();
  }
  // Always: the controller must count us as a receiver even when the address is known from the
  // publish side (then the group is joined now; otherwise when the REPLY comes).
  update_membership(*t);
  request(filter, *t, Flags::Subscribe, now);
  schedule_refresh(std::string(filter), *t, now);
}

void Client::unsubscribed(std::string_view filter, TimePoint now) {
  Topic* t = find(filter);
  if (!t || !t->receiver) return;
  t->receiver = false;
  if (auto& s = t->tid[slot(Flags::Subscribe)]) {
    by_tid_.erase(*s);
    s.reset();
  }
  update_membership(*t);
  // No REPLY comes for flags 2, so nothing says it arrived: it is sent twice, `retransmit` apart
  // (a lost one leaves us on the tree, and the datagrams we are sent find no subscriber here).
  request(filter, *t, Flags::Unsubscribe, now);
}

void Client::publish(std::string_view topic, ByteSpan payload, bool retain, TimePoint now) {
  scratch_.clear();
  // One plain MQTT 3.1.1 PUBLISH at QoS 0, whatever the client sent (the original forwarded the
  // client's packet as it came, trailing packets included).
  mqtt::encode_publish(scratch_, topic, payload, 0, retain, false, 0);
  if (scratch_.size() > cfg_.max_payload) {
    if (counters_.m2m_publish_dropped++ % 1000 == 0) {
      log_.warn(kLog, "PUBLISH topic={} of {} bytes not multicast: larger than one datagram ({})",
                topic, scratch_.size(), cfg_.max_payload);
    }
    return;
  }
  Topic* t = obtain(topic);
  if (!t) {
    ++counters_.m2m_publish_dropped;
    return;
  }
  const bool was_publisher = t->publisher;
  const bool paused_long = t->last_publish && now - *t->last_publish >= cfg_.refresh;
  t->publisher = true;
  t->last_publish = now;
  if (!was_publisher || paused_long) {
    if (!t->tid[slot(Flags::Publish)]) request(topic, *t, Flags::Publish, now);
    // A refresh found the topic idle and scheduled none: it starts again with the publishing.
    schedule_refresh(std::string(topic), *t, now);
  }
  if (t->group && t->publisher_announced) {
    send_publish(*t, scratch_);
    return;
  }
  // The address is pending (or known from the subscribe side, with our flags 0 not yet
  // answered, so the tree may not have us as a transmitter yet): hold it.
  if (t->queue.size() >= cfg_.max_queued_messages ||
      t->queued_bytes + scratch_.size() > cfg_.max_queued_bytes ||
      queued_total_bytes_ + scratch_.size() > cfg_.max_queued_total_bytes) {
    if (counters_.m2m_publish_dropped++ % 1000 == 0) {
      log_.warn(kLog, "PUBLISH topic={} dropped: {} messages wait for its address already", topic,
                t->queue.size());
    }
    return;
  }
  t->queued_bytes += scratch_.size();
  queued_total_bytes_ += scratch_.size();
  t->queue.push_back(scratch_);
  ++counters_.m2m_publish_queued;
}

// -- REQUESTs ---------------------------------------------------------------------------------

std::uint32_t Client::next_tid() {
  // Unpredictable to others on the segment (a REPLY must name a REQUEST of ours), never 0, and
  // distinct from every outstanding one.
  for (;;) {
    std::array<std::uint8_t, 8> n{};
    const std::uint64_t c = ++tid_counter_;
    for (std::size_t i = 0; i < 8; ++i) n[i] = static_cast<std::uint8_t>(c >> (8 * i));
    const auto tid = static_cast<std::uint32_t>(
        siphash24(cfg_.secret, ByteSpan{reinterpret_cast<const std::byte*>(n.data()), n.size()}));
    if (tid != 0 && !by_tid_.contains(tid)) return tid;
  }
}

void Client::request(std::string_view topic, Topic& t, Flags flags, TimePoint now) {
  auto& tid = t.tid[slot(flags)];
  if (tid) {
    // One outstanding per topic and kind; a new reason to ask restarts its backoff.
    auto it = by_tid_.find(*tid);
    if (it != by_tid_.end()) {
      it->second.sent = 0;
      transmit(it->first, it->second, now);
      return;
    }
  }
  tid = next_tid();
  auto& o = by_tid_.emplace(*tid, Outstanding{std::string(topic), flags, 0, now}).first->second;
  transmit(*tid, o, now);
}

void Client::transmit(std::uint32_t tid, Outstanding& o, TimePoint now) {
  if (!started_ || arp_pending(now)) {
    // The first answer to our ARP is awaited (a few milliseconds from our controller); the
    // REQUEST goes when it comes or the wait ends.
    o.due = started_ ? arp_deadline_ : now;
    retransmits_.push(o.due, tid);
    return;
  }
  send_request(tid, o.flags, o.topic);
  if (o.sent > 0) ++counters_.m2m_request_retransmits;
  ++o.sent;
  o.due = now + cfg_.retransmit * (1u << std::min(o.sent - 1, 16u));
  retransmits_.push(o.due, tid);
}

void Client::send_request(std::uint32_t tid, Flags flags, std::string_view topic) {
  Bytes payload;
  encode_request(payload, tid, flags, topic);
  emit_udp(request_mac(), cfg_.server, cfg_.client_port, cfg_.server_port, kRequestTtl, payload);
  ++counters_.m2m_requests_sent;
  log_.debug(kLog, "REQUEST tid={:08x} flags={} topic={}", tid, flags_name(flags), topic);
}

wire::MacAddress Client::request_mac() const {
  return server_mac_.value_or(kBroadcast);
}

void Client::give_up(std::uint32_t tid, Outstanding& o, TimePoint now) {
  Topic* t = find(o.topic);
  const std::string topic = o.topic;
  const Flags flags = o.flags;
  by_tid_.erase(tid);  // `o` is gone from here on
  if (!t) return;
  t->tid[slot(flags)].reset();
  switch (flags) {
    case Flags::Unsubscribe:
      forget_if_idle(topic);  // sent twice; nothing answers it
      return;
    case Flags::Publish:
      ++counters_.m2m_requests_unanswered;
      if (!t->publisher_announced) {
        drop_queue(topic, *t, "the controller did not answer");
        // The next PUBLISH asks again, from the start.
        t->publisher = false;
        forget_if_idle(topic);
      }
      return;
    case Flags::Subscribe:
      ++counters_.m2m_requests_unanswered;
      log_.warn(kLog, "no REPLY from {}:{} for subscribe topic={} after {} tries; again in {} s",
                cfg_.server, cfg_.server_port, topic, cfg_.tries,
                std::chrono::duration_cast<std::chrono::seconds>(cfg_.retry_after_give_up).count());
      t->refresh_due = now + cfg_.retry_after_give_up;
      refreshes_.push(*t->refresh_due, topic);
      return;
  }
}

void Client::on_reply(wire::Ipv4Address src, std::uint16_t src_port, ByteSpan payload,
                      TimePoint now) {
  (void)now;
  const auto r = parse_reply(payload);
  if (!r || src != cfg_.server || src_port != cfg_.server_port) {
    if (counters_.m2m_replies_ignored++ % 1000 == 0) {
      log_.warn(kLog, "datagram from {}:{} to our REQUEST port ignored: {} ({} so far)", src,
                src_port, r ? "not from the server" : "not a REPLY", counters_.m2m_replies_ignored);
    }
    return;
  }
  auto it = by_tid_.find(r->tid);
  if (it == by_tid_.end() || it->second.flags == Flags::Unsubscribe) {
    // A late copy (answered or given up), or nothing of ours: the original's REPLY thread died
    // here.
    ++counters_.m2m_replies_ignored;
    log_.debug(kLog, "REPLY tid={:08x} matches no REQUEST of ours: ignored", r->tid);
    return;
  }
  if (!wire::is_multicast(r->group)) {
    ++counters_.m2m_replies_ignored;
    log_.warn(kLog, "REPLY tid={:08x} for topic={} names {}, not a multicast address: ignored",
              r->tid, it->second.topic, r->group);
    return;
  }
  ++counters_.m2m_replies_received;
  const std::string topic = std::move(it->second.topic);
  const Flags flags = it->second.flags;
  by_tid_.erase(it);
  Topic* t = find(topic);
  if (!t) return;
  t->tid[slot(flags)].reset();
  log_.debug(kLog, "REPLY tid={:08x} flags={} topic={} group={}", r->tid, flags_name(flags), topic,
             r->group);
  learn_group(topic, *t, r->group);
  if (flags == Flags::Publish) {
    t->publisher_announced = true;
    flush_queue(topic, *t);
  }
}

void Client::learn_group(const std::string& topic, Topic& t, wire::Ipv4Address group) {
  if (t.group == group) {
    update_membership(t);  // subscribed after the publish side learnt it, or again
    return;
  }
  if (t.group) {
    // The controller restarted and numbered the topics anew.
    log_.info(kLog, "topic={} moved from group {} to {}", topic, *t.group, group);
    if (t.joined) {
      leave(*t.group);
      t.joined = false;
    }
  } else {
    log_.info(kLog, "topic={} has group {}", topic, group);
  }
  t.group = group;
  update_membership(t);
}

void Client::update_membership(Topic& t) {
  const bool want = t.receiver && t.group;
  if (want && !t.joined) {
    join(*t.group);
    t.joined = true;
  } else if (!want && t.joined) {
    leave(*t.group);
    t.joined = false;
  }
}

// -- data ------------------------------------------------------------------------------------

void Client::emit_udp(const wire::MacAddress& dst_mac, wire::Ipv4Address dst,
                      std::uint16_t src_port, std::uint16_t dst_port, std::uint8_t ttl,
                      ByteSpan payload) {
  wire::UdpFrameSpec s;
  s.src_mac = cfg_.mac;
  s.dst_mac = dst_mac;
  s.src_ip = cfg_.address;
  s.dst_ip = dst;
  s.src_port = src_port;
  s.dst_port = dst_port;
  s.ttl = ttl;
  s.ip_id = ip_id_++;
  s.payload = payload;
  Bytes& f = frames_.emplace_back(wire::udp_frame_size(s));
  wire::emit_udp_frame(s, f);
}

void Client::send_publish(const Topic& t, ByteSpan packet) {
  emit_udp(cfg_.ethernet_broadcast ? kBroadcast : wire::multicast_mac(*t.group), *t.group,
           cfg_.data_port, cfg_.data_port, kDataTtl, packet);
  ++counters_.m2m_publish_out;
}

void Client::flush_queue(const std::string& topic, Topic& t) {
  if (t.queue.empty()) return;
  log_.debug(kLog, "topic={}: {} held PUBLISHes sent", topic, t.queue.size());
  for (const auto& p : t.queue) send_publish(t, p);
  queued_total_bytes_ -= t.queued_bytes;
  t.queue.clear();
  t.queued_bytes = 0;
}

void Client::drop_queue(std::string_view topic, Topic& t, std::string_view why) {
  if (t.queue.empty()) return;
  counters_.m2m_publish_dropped += t.queue.size();
  log_.warn(kLog, "topic={}: {} held PUBLISHes dropped: {} ({}:{}, {} tries)", topic,
            t.queue.size(), why, cfg_.server, cfg_.server_port, cfg_.tries);
  queued_total_bytes_ -= t.queued_bytes;
  t.queue.clear();
  t.queued_bytes = 0;
}

bool Client::admits(wire::Ipv4Address src) const {
  if (src == cfg_.address) return false;  // our own, should a switch flood it back
  return wire::same_network(src, cfg_.address, cfg_.prefix_len);
}

std::optional<mqtt::Publish> Client::on_datagram(wire::Ipv4Address src, wire::Ipv4Address group,
                                                 ByteSpan payload) {
  auto reject = [&](std::string_view why) -> std::optional<mqtt::Publish> {
    if (counters_.m2m_datagrams_rejected++ % 1000 == 0) {
      log_.warn(kLog, "multicast datagram from {} to {} dropped: {} ({} so far; 1 in 1000 logged)",
                src, group, why, counters_.m2m_datagrams_rejected);
    }
    return std::nullopt;
  };
  if (!admits(src)) return reject("the sender is not on the SDN segment");
  bool need_more = false;
  mqtt::DecodeError err = mqtt::DecodeError::None;
  const auto frame = mqtt::parse_frame(payload, payload.size(), need_more, err);
  if (!frame) return reject(need_more ? "truncated packet" : mqtt::decode_error_name(err));
  if (frame->type() != mqtt::PacketType::Publish) return reject("not a PUBLISH");
  mqtt::ClientPacket packet;
  err = mqtt::decode_client_packet(*frame, mqtt::ProtocolVersion::V311, packet, true);
  if (err != mqtt::DecodeError::None) return reject(mqtt::decode_error_name(err));
  auto* p = std::get_if<mqtt::Publish>(&packet);
  if (!p) return reject("not a PUBLISH");
  ++counters_.m2m_publish_in;
  return *p;
}

// -- membership ------------------------------------------------------------------------------

void Client::join(wire::Ipv4Address g) {
  if (joined_[g.value]++ == 0) memberships_.push_back(Membership{g, true});
}

void Client::leave(wire::Ipv4Address g) {
  auto it = joined_.find(g.value);
  if (it == joined_.end()) return;
  if (--it->second == 0) {
    joined_.erase(it);
    memberships_.push_back(Membership{g, false});
  }
}

// -- ARP and timers --------------------------------------------------------------------------

void Client::on_arp_reply(wire::Ipv4Address sender, const wire::MacAddress& mac, TimePoint now) {
  if (sender != cfg_.server) return;
  const bool first = !server_mac_;
  if (!server_mac_ || *server_mac_ != mac) {
    log_.info(kLog, "controller {} is at {}", sender, mac.to_string());
  }
  server_mac_ = mac;
  if (!first) return;
  // REQUESTs that waited for the answer go now.
  for (auto& [tid, o] : by_tid_) {
    if (o.sent == 0) transmit(tid, o, now);
  }
}

void Client::schedule_refresh(const std::string& topic, Topic& t, TimePoint now) {
  if (t.refresh_due && *t.refresh_due > now) return;
  t.refresh_due = now + cfg_.refresh;
  refreshes_.push(*t.refresh_due, topic);
}

void Client::refresh(const std::string& topic, Topic& t, TimePoint now) {
  t.refresh_due.reset();
  bool again = false;
  if (t.receiver) {
    ++counters_.m2m_refreshes;
    request(topic, t, Flags::Subscribe, now);
    again = true;
  }
  if (t.publisher && t.last_publish && now - *t.last_publish < cfg_.refresh) {
    ++counters_.m2m_refreshes;
    if (!t.tid[slot(Flags::Publish)]) request(topic, t, Flags::Publish, now);
    again = true;
  } else if (t.publisher && t.queue.empty()) {
    // Idle for a whole interval: the publish side is forgotten (its next PUBLISH announces it
    // again), so topics published once do not hold state, and the topic limit, for good.
    t.publisher = false;
    t.publisher_announced = false;
  }
  if (again) {
    schedule_refresh(topic, t, now);
  } else {
    forget_if_idle(topic);  // `t` may be gone from here on
  }
}

void Client::on_timers(TimePoint now) {
  if (!started_) return;
  if (now >= next_arp_) {
    next_arp_ = now + cfg_.arp_refresh;
    Bytes& f = frames_.emplace_back(wire::kArpFrameLen);
    wire::emit_arp_request(cfg_.mac, cfg_.address, cfg_.server, f);
  }
  retransmits_.pop_due(now, [&](TimePoint t, std::uint32_t tid) {
    auto it = by_tid_.find(tid);
    if (it == by_tid_.end() || it->second.due != t) return;
    Outstanding& o = it->second;
    if (o.sent >= cfg_.tries || (o.flags == Flags::Unsubscribe && o.sent >= 2)) {
      give_up(tid, o, now);
    } else {
      transmit(tid, o, now);
    }
  });
  refreshes_.pop_due(now, [&](TimePoint t, const std::string& topic) {
    Topic* tp = find(topic);
    if (!tp || !tp->refresh_due || *tp->refresh_due != t) return;
    refresh(topic, *tp, now);
  });
}

std::optional<TimePoint> Client::next_deadline() const {
  if (!started_) return std::nullopt;
  return earliest(earliest(retransmits_.earliest(), refreshes_.earliest()),
                  std::optional<TimePoint>(next_arp_));
}

}  // namespace mqtt_proxy::m2m
