#include "mqtt_proxy/peering/peering.hpp"

#include <algorithm>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::peering {

namespace {
constexpr std::string_view kLog = "peering";
}

Peering::Peering(PeeringConfig cfg, log::Logger& log, metrics::Counters& counters)
    : cfg_(std::move(cfg)), log_(log), counters_(counters) {
  for (std::size_t i = 0; i < cfg_.peers.size(); ++i) index_.emplace(cfg_.peers[i], i);
  remote_filters_.resize(cfg_.peers.size());
  open_batch_.resize(cfg_.peers.size());
  wants_.resize(cfg_.peers.size());
}

void Peering::clear_outbox() {
  // The buffers are kept for the next turn's datagrams (up to a bound), so forwarding does not
  // allocate per datagram either.
  for (auto& d : outbox_) {
    if (spare_.size() >= kMaxSpareBuffers) break;
    d.bytes.clear();
    spare_.push_back(std::move(d.bytes));
  }
  outbox_.clear();
  std::fill(open_batch_.begin(), open_batch_.end(), std::nullopt);
}

void Peering::enqueue(std::size_t peer, ByteSpan packet, bool batchable) {
  auto& open = open_batch_[peer];
  if (batchable && open && outbox_[*open].bytes.size() + packet.size() <= cfg_.batch_bytes) {
    append(outbox_[*open].bytes, packet);
    return;
  }
  Bytes bytes;
  if (!spare_.empty()) {
    bytes = std::move(spare_.back());
    spare_.pop_back();
  }
  bytes.assign(packet.begin(), packet.end());
  outbox_.push_back(Datagram{cfg_.peers[peer], std::move(bytes)});
  ++counters_.peer_datagrams_out;
  // A packet that is not batched closes the peer's batch, so later ones cannot overtake it.
  if (batchable && cfg_.batch_bytes > packet.size()) {
    open = outbox_.size() - 1;
  } else {
    open.reset();
  }
}

void Peering::start(TimePoint now) {
  if (cfg_.refresh_interval.count() > 0 && !cfg_.peers.empty()) {
    next_refresh_ = now + cfg_.refresh_interval;
  }
}

std::uint16_t Peering::next_packet_id() {
  if (++packet_id_ == 0) packet_id_ = 1;  // 0 is not a valid packet identifier
  return packet_id_;
}

void Peering::announce(mqtt::PacketType type, std::string_view filter) {
  // One filter per datagram keeps each one meaningful on its own.
  Bytes packet;
  const std::string_view filters[] = {filter};
  if (type == mqtt::PacketType::Subscribe) {
    mqtt::encode_subscribe(packet, next_packet_id(), filters);
    counters_.peer_subscribe_out += cfg_.peers.size();
  } else {
    mqtt::encode_unsubscribe(packet, next_packet_id(), filters);
    counters_.peer_unsubscribe_out += cfg_.peers.size();
  }
  for (std::size_t i = 0; i < cfg_.peers.size(); ++i) enqueue(i, packet, false);
}

void Peering::local_filter_added(std::string_view filter) {
  local_filters_.emplace(filter);
  if (cfg_.peers.empty()) return;
  announce(mqtt::PacketType::Subscribe, filter);
  log_.info(kLog, "SUBSCRIBE sent to {} peer(s) topic={}", cfg_.peers.size(), filter);
}

void Peering::local_filter_removed(std::string_view filter) {
  if (auto it = local_filters_.find(filter); it != local_filters_.end()) local_filters_.erase(it);
  if (cfg_.peers.empty()) return;
  announce(mqtt::PacketType::Unsubscribe, filter);
  log_.info(kLog, "UNSUBSCRIBE sent to {} peer(s) topic={}", cfg_.peers.size(), filter);
}

bool Peering::encode_publish_datagram(std::string_view topic, ByteSpan payload, bool retain,
                                      Bytes& packet) {
  packet.clear();
  mqtt::encode_publish(packet, topic, payload, 0, retain, false, 0);
  if (packet.size() <= cfg_.max_datagram) return true;
  ++counters_.peer_publish_too_large;
  log_.warn(kLog, "PUBLISH not forwarded: {} bytes exceed the datagram limit of {} topic={}",
            packet.size(), cfg_.max_datagram, topic);
  return false;
}

void Peering::push_publish(std::size_t peer, const Bytes& packet, std::string_view topic,
                           std::size_t payload_size) {
  enqueue(peer, packet, true);
  ++counters_.peer_publish_out;
  log_.debug(kLog, "PUBLISH forwarded to peer {} topic={} bytes={}", cfg_.peers[peer], topic,
             payload_size);
}

void Peering::forward_publish(std::string_view topic, ByteSpan payload, bool retain) {
  if (cfg_.peers.empty()) return;
  // A peer with several matching filters still gets one copy.
  std::fill(wants_.begin(), wants_.end(), false);
  bool any = false;
  remote_.match(topic, [&](std::size_t peer) {
    wants_[peer] = true;
    any = true;
  });
  if (!any) return;
  if (!encode_publish_datagram(topic, payload, retain, packet_)) return;
  for (std::size_t i = 0; i < wants_.size(); ++i) {
    if (wants_[i]) push_publish(i, packet_, topic, payload.size());
  }
}

void Peering::send_retained(wire::Ipv4Address peer, std::string_view topic, ByteSpan payload) {
  const auto it = index_.find(peer);
  if (it == index_.end()) return;
  if (encode_publish_datagram(topic, payload, true, packet_)) {
    push_publish(it->second, packet_, topic, payload.size());
  }
}

void Peering::peer_subscribe(std::size_t peer, std::string_view filter) {
  ++counters_.peer_subscribe_in;
  if (remote_filters_[peer].emplace(filter).second) {
    remote_.add(filter, peer);
    new_interest_.push_back(PeerInterest{cfg_.peers[peer], std::string(filter)});
  }
  log_.info(kLog, "peer {} SUBSCRIBE topic={}", cfg_.peers[peer], filter);
}

void Peering::peer_unsubscribe(std::size_t peer, std::string_view filter) {
  ++counters_.peer_unsubscribe_in;
  if (auto it = remote_filters_[peer].find(std::string(filter));
      it != remote_filters_[peer].end()) {
    remote_filters_[peer].erase(it);
    remote_.remove(filter, peer);
  }
  log_.info(kLog, "peer {} UNSUBSCRIBE topic={}", cfg_.peers[peer], filter);
}

std::span<const mqtt::Publish> Peering::on_datagram(wire::Ipv4Address src, ByteSpan data) {
  inbound_.clear();
  const auto it = index_.find(src);
  if (it == index_.end()) {
    ++counters_.peer_datagrams_unknown_source;
    log_.debug(kLog, "datagram from {} ignored: not a peer", src);
    return {};
  }
  ++counters_.peer_datagrams_in;
  do {
    if (!on_packet(it->second, src, data)) break;
  } while (!data.empty());
  return inbound_;
}

bool Peering::on_packet(std::size_t peer, wire::Ipv4Address src, ByteSpan& data) {
  auto malformed = [&](std::string_view why) {
    ++counters_.peer_datagrams_malformed;
    log_.warn(kLog, "datagram from peer {} dropped: {}", src, why);
    return false;
  };

  bool need_more = false;
  mqtt::DecodeError err = mqtt::DecodeError::None;
  const auto frame = mqtt::parse_frame(data, cfg_.max_datagram, need_more, err);
  if (!frame) return malformed(need_more ? "truncated packet" : mqtt::decode_error_name(err));
  data = data.subspan(frame->wire_size);

  // The prototype's unsubscribe: type 11, flags 0, packet id and one length-prefixed filter.
  if (frame->type() == mqtt::PacketType::Unsuback) {
    const ByteSpan b = frame->body;
    if (b.size() < 4 || load_be16(b, 2) + 4u != b.size())
      return malformed("bad legacy unsubscribe");
    const std::string_view filter = as_chars(b.subspan(4));
    if (mqtt::check_utf8(filter) != mqtt::Utf8Status::Ok || filter.empty()) {
      return malformed("bad topic filter in legacy unsubscribe");
    }
    peer_unsubscribe(peer, filter);
    return true;
  }

  // Peers that build packets by hand have sent SUBSCRIBE with flags 0: accept any flags here.
  mqtt::ClientPacket packet;
  err = mqtt::decode_client_packet(*frame, mqtt::ProtocolVersion::V311, packet, true);
  if (err != mqtt::DecodeError::None) return malformed(mqtt::decode_error_name(err));

  if (auto* p = std::get_if<mqtt::Publish>(&packet)) {
    ++counters_.peer_publish_in;
    log_.debug(kLog, "peer {} PUBLISH topic={} bytes={}", src, p->topic, p->payload.size());
    inbound_.push_back(*p);
    return true;
  }
  if (auto* s = std::get_if<mqtt::Subscribe>(&packet)) {
    for (const auto& t : s->topics) {
      if (!t.filter_valid) {
        log_.warn(kLog, "peer {} SUBSCRIBE with invalid filter ignored: {}", src, t.filter);
        continue;
      }
      peer_subscribe(peer, t.filter);
    }
    return true;
  }
  if (auto* u = std::get_if<mqtt::Unsubscribe>(&packet)) {
    for (auto f : u->filters) peer_unsubscribe(peer, f);
    return true;
  }
  return malformed("packet type not used between peers");
}

void Peering::on_timers(TimePoint now) {
  if (!next_refresh_ || now < *next_refresh_) return;
  next_refresh_ = now + cfg_.refresh_interval;
  if (local_filters_.empty()) return;
  for (const auto& f : local_filters_) announce(mqtt::PacketType::Subscribe, f);
  log_.debug(kLog, "interest refresh: {} filter(s) to {} peer(s)", local_filters_.size(),
             cfg_.peers.size());
}

bool Peering::peer_wants(wire::Ipv4Address peer, std::string_view topic) const {
  const auto it = index_.find(peer);
  if (it == index_.end()) return false;
  bool wants = false;
  remote_.match(topic, [&](std::size_t p) { wants = wants || p == it->second; });
  return wants;
}

std::size_t Peering::peer_filter_count(wire::Ipv4Address peer) const {
  const auto it = index_.find(peer);
  return it == index_.end() ? 0 : remote_filters_[it->second].size();
}

}  // namespace mqtt_proxy::peering
