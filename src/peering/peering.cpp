#include "mqtt_proxy/peering/peering.hpp"

#include <algorithm>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::peering {

namespace {
constexpr std::string_view kLog = "peering";
constexpr Duration kMaxHelloBackoff = std::chrono::seconds(30);
// A blocked sender probes at least this often: a peer that answers none of its probes for the
// grace is taken for stuck, so on a lossy path the probes must be many (at 20% loss each way, 15
// probes in 1.5 s all fail once in five million).
constexpr Duration kMaxProbeBackoff = std::chrono::milliseconds(100);
constexpr Duration kMaxMarkBackoff = std::chrono::seconds(5);
// A HELLO answers a peer's HELLO or a DATA for an earlier run of ours at most this often.
constexpr Duration kHelloReplyGap = std::chrono::milliseconds(100);

// b - a in 32-bit serial arithmetic (RFC 1982): positive when b is ahead of a.
std::int32_t serial_diff(std::uint32_t b, std::uint32_t a) {
  return static_cast<std::int32_t>(b - a);
}
}  // namespace

Peering::Peering(PeeringConfig cfg, log::Logger& log, metrics::Counters& counters,
                 flow::FlowControl* flow)
    : cfg_(std::move(cfg)), log_(log), counters_(counters), flow_(flow) {
  peers_.resize(cfg_.peers.size());
  for (std::size_t i = 0; i < cfg_.peers.size(); ++i) {
    index_.emplace(cfg_.peers[i], i);
    Peer& p = peers_[i];
    p.addr = cfg_.peers[i];
    p.signs = !cfg_.keys.empty() &&
              std::find(cfg_.unsigned_peers.begin(), cfg_.unsigned_peers.end(), p.addr) ==
                  cfg_.unsigned_peers.end();
    if (i < cfg_.local_addresses.size()) p.local = cfg_.local_addresses[i];
  }
  // A PUBLISH must fit a datagram with what travels beside it: a DATA header toward a capable
  // peer, the AUTH packet when signing. (max_datagram stays the limit of what is read.)
  publish_limit_ = cfg_.max_datagram - (cfg_.extension ? ext::kDataSize : 0) -
                   (cfg_.keys.empty() ? 0 : auth::kTagSize);
  if (!cfg_.keys.empty()) cfg_.batch_bytes -= std::min(cfg_.batch_bytes, auth::kTagSize);
  auth_seq_ = cfg_.auth_seq_start;
  keyring_ = std::make_unique<auth::Keyring>(cfg_.keys);
  if (!keyring_->usable()) {
    log_.error(kLog, "OpenSSL could not set up HMAC-SHA256: every peer datagram will be rejected");
  }
  wants_.resize(cfg_.peers.size());
}

std::optional<std::size_t> Peering::index_of(wire::Ipv4Address a) const {
  const auto it = index_.find(a);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

bool Peering::batches(const Peer& p) const {
  switch (cfg_.batch) {
    case BatchPolicy::On:
      return true;
    case BatchPolicy::Off:
      return false;
    case BatchPolicy::Auto:
      return capable(p) && (p.their_features & ext::kFeatureBatch);
  }
  return false;
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
  sealed_ = 0;
  for (auto& p : peers_) p.open_batch.reset();
}

void Peering::set_keys(std::vector<Bytes> keys) {
  if (cfg_.keys.empty() || keys.empty()) {
    log_.warn(kLog, "new keys ignored: authentication is set at start (--peer-key-file)");
    return;
  }
  auto next = std::make_unique<auth::Keyring>(keys);
  if (!next->usable()) {
    log_.error(kLog, "new keys ignored: OpenSSL could not set up HMAC-SHA256 for them");
    return;
  }
  seal_outbox();  // what this turn made so far goes out under the key it was made with
  cfg_.keys = std::move(keys);
  keyring_ = std::move(next);
}

void Peering::seal_outbox() {
  if (cfg_.keys.empty()) return;
  for (; sealed_ < outbox_.size(); ++sealed_) {
    Datagram& d = outbox_[sealed_];
    const Peer& p = peers_[index_.at(d.dst)];
    if (!p.signs) continue;
    // Its run as its HELLO named it, or, before that, as its signed DATA did (a CREDIT then
    // answers DATA that overtook the HELLO).
    keyring_->seal(d.bytes, {p.local, p.addr}, p.their_epoch ? p.their_epoch : p.in.epoch,
                   auth_seq_++);
  }
  // A signed datagram takes nothing more.
  for (auto& p : peers_) p.open_batch.reset();
}

bool Peering::authenticate(std::size_t i, ByteSpan& data) {
  Peer& p = peers_[i];
  if (cfg_.keys.empty()) return true;
  auth::OpenError error{};
  const auto opened = keyring_->open(data, {p.addr, p.local}, error);
  if (!opened) {
    // An unsigned peer's datagram is taken as it is, even one that merely ends like a tag.
    if (!p.signs) return true;
    if (counters_.peer_datagrams_unauthenticated++ % 1000 == 0) {
      log_.warn(kLog, "datagram from peer {} rejected: {} (1 in 1000 such lines is logged)", p.addr,
                error == auth::OpenError::NoTag ? "not signed" : "bad signature (wrong key?)");
    }
    return false;
  }
  data = data.first(opened->payload_size);
  // Sent to another run of ours (or, with to_epoch 0, before the sender knew ours): only a HELLO
  // may be. A HELLO carries nothing a copy could misuse beyond the sender's own announcement,
  // and taking it whatever run it names is what lets two peers that each hold the other's
  // earlier run (one restarted, or a recorded HELLO was played to it) find each other again: the
  // answer to it names the right runs. Copies of it are still refused by the replay window.
  const bool hellos_only = [&] {
    ByteSpan rest = data;
    while (!rest.empty()) {
      bool need_more = false;
      mqtt::DecodeError err{};
      const auto f = mqtt::parse_frame(rest, cfg_.max_datagram, need_more, err);
      if (!f || f->first_byte != ext::kFirstByte) return false;
      const auto m = ext::decode(f->body);
      if (!m || !std::holds_alternative<ext::Hello>(*m)) return false;
      rest = rest.subspan(f->wire_size);
    }
    return true;
  }();
  if (opened->to_epoch != cfg_.epoch && !hellos_only) {
    ++counters_.peer_datagrams_stale;
    log_.debug(kLog, "datagram from peer {} rejected: signed for run {:08x}, we are {:08x}", p.addr,
               opened->to_epoch, cfg_.epoch);
    return false;
  }
  if (!p.replay.accept(opened->seq)) {
    ++counters_.peer_datagrams_replayed;
    log_.debug(kLog, "datagram from peer {} rejected: sequence {} seen or too old", p.addr,
               opened->seq);
    return false;
  }
  return true;
}

Datagram& Peering::new_datagram(std::size_t i) {
  Bytes bytes;
  if (!spare_.empty()) {
    bytes = std::move(spare_.back());
    spare_.pop_back();
  }
  outbox_.push_back(Datagram{cfg_.peers[i], std::move(bytes)});
  ++counters_.peer_datagrams_out;
  ++peers_[i].traffic.datagrams_out;
  return outbox_.back();
}

void Peering::enqueue(std::size_t i, ByteSpan packet, bool batchable) {
  auto& open = peers_[i].open_batch;
  // Never behind a DATA5 header: what follows it is read in the 5.0 form.
  if (batchable && open && !peers_[i].open_v5 &&
      outbox_[*open].bytes.size() + packet.size() <= cfg_.batch_bytes) {
    append(outbox_[*open].bytes, packet);
    return;
  }
  append(new_datagram(i).bytes, packet);
  peers_[i].open_v5 = false;
  // A packet that is not batched closes the peer's batch, so later ones cannot overtake it.
  if (batchable && cfg_.batch_bytes > packet.size()) {
    open = outbox_.size() - 1;
  } else {
    open.reset();
  }
}

void Peering::send_data(std::size_t i, ByteSpan packet, bool v5, TimePoint now) {
  Peer& p = peers_[i];
  Outbound& o = p.out;
  const bool batch = batches(p);
  auto& open = p.open_batch;
  // A datagram holds PUBLISHes of one form: the other form starts a new one.
  if (batch && open && p.open_v5 == v5 &&
      outbox_[*open].bytes.size() + packet.size() <= cfg_.batch_bytes) {
    append(outbox_[*open].bytes, packet);
  } else {
    Datagram& d = new_datagram(i);
    ext::encode(d.bytes, ext::Data{cfg_.epoch, p.their_epoch, o.dseq++, o.mseq, o.offset, v5});
    p.open_v5 = v5;
    append(d.bytes, packet);
    if (batch && d.bytes.size() < cfg_.batch_bytes) {
      open = outbox_.size() - 1;
    } else {
      open.reset();
    }
  }
  ++o.mseq;
  o.offset += packet.size();
  ++counters_.peer_publish_out;
  ++p.traffic.publish_out;
  o.next_mark = now + cfg_.tail_mark;
  o.mark_backoff = cfg_.tail_mark;
}

void Peering::send_control(std::size_t i, const ext::Message& m) {
  control_.clear();
  ext::encode(control_, m);
  append(new_datagram(i).bytes, control_);
}

void Peering::send_hello(std::size_t i, TimePoint now) {
  Peer& p = peers_[i];
  send_control(i, ext::Hello{cfg_.epoch, p.their_epoch,
                             ext::kFeatureCredit | ext::kFeatureBatch | ext::kFeatureDigest |
                                 ext::kFeatureProperties,
                             cfg_.credit_window});
  ++counters_.peer_hello_out;
  p.last_hello = now;
  if (p.knows_us) {
    p.hello_backoff = cfg_.heartbeat_interval;
  } else {
    // A peer that never answers (a plain one) hears from us ever more rarely.
    p.hello_backoff = p.hello_backoff.count() == 0
                          ? cfg_.hello_interval
                          : std::min<Duration>(p.hello_backoff * 2, kMaxHelloBackoff);
  }
  p.next_hello = now + p.hello_backoff;
}

void Peering::send_digest(std::size_t i) {
  const Peer& p = peers_[i];
  send_control(i, ext::Digest{cfg_.epoch, p.their_epoch,
                              static_cast<std::uint32_t>(local_filters_.size()), local_hash_});
}

void Peering::ask_interest(std::size_t i, TimePoint now) {
  Peer& p = peers_[i];
  Mending& m = p.mending;
  if (++nonce_ == 0) nonce_ = 1;
  m.nonce = nonce_;
  m.parts_seen.clear();
  m.parts_left = 0;
  m.collected.clear();
  send_control(i, ext::Resync{cfg_.epoch, p.their_epoch, m.nonce});
  m.next_ask = now + m.backoff;
  m.backoff = std::min<Duration>(m.backoff * 2, cfg_.heartbeat_interval);
}

void Peering::answer_resync(std::size_t i, std::uint32_t nonce, TimePoint now) {
  Peer& p = peers_[i];
  // At most every kHelloReplyGap: an answer is several datagrams, a RESYNC one small one.
  if (p.last_answer && now - *p.last_answer < kHelloReplyGap) return;
  p.last_answer = now;
  // The filters in parts of one datagram each: a FILTERS header, then one SUBSCRIBE. A filter
  // too long for a part of its own size still travels, alone.
  constexpr std::size_t kSubscribeOverhead = 1 + 4 + 2;  // fixed header, packet id
  const std::size_t budget =
      cfg_.batch_bytes - std::min(cfg_.batch_bytes, ext::kFiltersSize + kSubscribeOverhead);
  std::vector<std::vector<std::string_view>> parts(1);
  std::size_t used = 0;
  for (const auto& f : local_filters_) {
    const std::size_t cost = 2 + f.size() + 1;
    if (!parts.back().empty() && used + cost > budget) {
      parts.emplace_back();
      used = 0;
    }
    parts.back().push_back(f);
    used += cost;
  }
  if (parts.size() > 0xffff) {
    log_.warn(kLog, "peer {} asked for our interest: {} filters need more than 65535 datagrams",
              p.addr, local_filters_.size());
    return;
  }
  const auto n = static_cast<std::uint16_t>(parts.size());
  for (std::uint16_t k = 0; k < n; ++k) {
    control_.clear();
    ext::encode(control_, ext::Filters{cfg_.epoch, p.their_epoch, nonce, k, n});
    if (!parts[k].empty()) {
      mqtt::encode_subscribe(control_, next_packet_id(), parts[k]);
      ++counters_.peer_subscribe_out;
    }
    enqueue(i, control_, false);
  }
  ++counters_.peer_resyncs;
  log_.info(kLog, "peer {} asked for our interest: our {} filter(s) sent to it in {} datagram(s)",
            p.addr, local_filters_.size(), n);
}

void Peering::filters_part(std::size_t i, std::uint16_t part, std::uint16_t parts) {
  Mending& m = peers_[i].mending;
  if (m.parts_seen.empty()) {
    m.parts_seen.assign(parts, false);
    m.parts_left = parts;
  }
  if (m.parts_seen.size() != parts || m.parts_seen[part]) return;
  m.parts_seen[part] = true;
  if (--m.parts_left == 0) mended(i);
}

void Peering::mended(std::size_t i) {
  Peer& p = peers_[i];
  std::vector<std::string> gone;
  for (const auto& f : p.filters) {
    if (!p.mending.collected.contains(f)) gone.push_back(f);
  }
  for (const auto& f : gone) {
    p.filters.erase(f);
    remote_.remove(f, i);
    p.filters_hash -= ext::filter_hash(f);
    log_.info(kLog, "peer {} interest mended, dropped topic={}", p.addr, f);
  }
  counters_.peer_interest_expired += gone.size();
  log_.info(kLog, "peer {} interest mended: {} filter(s) held for it, {} dropped", p.addr,
            p.filters.size(), gone.size());
  p.mending = Mending{};
}

void Peering::start(TimePoint now) {
  started_ = true;
  if (refreshing() && !local_filters_.empty()) next_refresh_ = now + cfg_.refresh_interval;
  if (cfg_.extension) {
    for (std::size_t i = 0; i < peers_.size(); ++i) send_hello(i, now);
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
  const bool subscribe = type == mqtt::PacketType::Subscribe;
  if (subscribe) {
    mqtt::encode_subscribe(packet, next_packet_id(), filters);
  } else {
    mqtt::encode_unsubscribe(packet, next_packet_id(), filters);
  }
  for (std::size_t i = 0; i < cfg_.peers.size(); ++i) {
    if (withheld(peers_[i])) continue;
    enqueue(i, packet, false);
    ++(subscribe ? counters_.peer_subscribe_out : counters_.peer_unsubscribe_out);
  }
}

void Peering::refresh_next(TimePoint now) {
  // One filter per tick, the next after the last one refreshed, so each filter is refreshed once
  // per interval and the datagrams are spread over it: the prototype reads its socket one
  // packet at a time (a sniff per packet) and loses what arrives in a burst.
  if (local_filters_.empty()) {
    next_refresh_.reset();  // no wake-ups for nothing; the next first filter starts it again
    return;
  }
  auto it = local_filters_.upper_bound(refresh_cursor_);
  if (it == local_filters_.end()) it = local_filters_.begin();
  refresh_cursor_ = *it;
  announce(mqtt::PacketType::Subscribe, *it);
  ++counters_.peer_refreshes;
  next_refresh_ = now + cfg_.refresh_interval / static_cast<std::int64_t>(local_filters_.size());
}

void Peering::resync(std::size_t i, std::string_view why, TimePoint now) {
  if (local_filters_.empty()) return;
  Bytes packet;
  for (const auto& f : local_filters_) {
    const std::string_view filters[] = {f};
    packet.clear();
    mqtt::encode_subscribe(packet, next_packet_id(), filters);
    enqueue(i, packet, false);
  }
  counters_.peer_subscribe_out += local_filters_.size();
  ++counters_.peer_resyncs;
  peers_[i].resynced_at = now;
  log_.info(kLog, "peer {} {}: our {} filter(s) sent to it again", cfg_.peers[i], why,
            local_filters_.size());
}

void Peering::forget_interest(std::size_t i, std::string_view why) {
  Peer& p = peers_[i];
  if (p.filters.empty()) return;
  log_.info(kLog, "peer {} {}: its {} filter(s) forgotten", p.addr, why, p.filters.size());
  for (const auto& f : p.filters) remote_.remove(f, i);
  counters_.peer_interest_expired += p.filters.size();
  p.filters.clear();
  p.filters_hash = 0;
  p.mending = Mending{};
}

void Peering::heard(std::size_t i, TimePoint now) {
  Peer& p = peers_[i];
  const std::optional<TimePoint> before = p.last_heard;
  p.last_heard = now;
  if (p.up || !capable(p)) return;
  p.up = true;
  ++counters_.peers_up;
  if (before && now - *before >= cfg_.liveness_timeout) {
    const double silent = std::chrono::duration<double>(now - *before).count();
    log_.info(kLog, "peer {} is back after {:.1f} s of silence", p.addr, silent);
    // What we announced while it was away may not have reached it (unless its HELLO just made
    // us send it all: a restart after a silence).
    if (p.resynced_at != now) resync(i, "is back", now);
  }
}

void Peering::check_liveness(std::size_t i, TimePoint now) {
  Peer& p = peers_[i];
  if (!p.last_heard) return;
  if (!capable(p)) {
    // It stopped announcing the extension: its liveness is unknown again, and not counted.
    if (p.up) {
      p.up = false;
      --counters_.peers_up;
    }
    return;
  }
  const Duration silent = now - *p.last_heard;
  if (p.up && silent >= cfg_.liveness_timeout) {
    p.up = false;
    --counters_.peers_up;
    log_.warn(kLog, "peer {} gone: nothing heard from it for {:.1f} s", p.addr,
              std::chrono::duration<double>(silent).count());
  }
  if (expiry().count() > 0 && silent >= expiry() && !p.filters.empty()) {
    forget_interest(i, fmt::format("silent for {:.0f} s, its interest expires",
                                   std::chrono::duration<double>(silent).count()));
  }
}

std::vector<Peering::PeerStatus> Peering::peer_status() const {
  std::vector<PeerStatus> out;
  for (const auto& p : peers_) {
    PeerStatus s;
    s.addr = p.addr;
    s.state = !capable(p) ? PeerState::Plain : p.up ? PeerState::Up : PeerState::Down;
    s.filters = p.filters.size();
    s.last_heard = p.last_heard;
    s.traffic = p.traffic;
    out.push_back(s);
  }
  return out;
}

void Peering::local_filter_added(std::string_view filter, TimePoint now) {
  if (local_filters_.emplace(filter).second) local_hash_ += ext::filter_hash(filter);
  // The first filter: refreshed one interval after this announcement, and the rest in turn.
  if (refreshing() && !next_refresh_) next_refresh_ = now + cfg_.refresh_interval;
  if (cfg_.peers.empty()) return;
  announce(mqtt::PacketType::Subscribe, filter);
  log_.info(kLog, "SUBSCRIBE sent to {} peer(s) topic={}", cfg_.peers.size(), filter);
}

void Peering::local_filter_removed(std::string_view filter) {
  if (auto it = local_filters_.find(filter); it != local_filters_.end()) {
    local_filters_.erase(it);
    local_hash_ -= ext::filter_hash(filter);
  }
  if (cfg_.peers.empty()) return;
  announce(mqtt::PacketType::Unsubscribe, filter);
  log_.info(kLog, "UNSUBSCRIBE sent to {} peer(s) topic={}", cfg_.peers.size(), filter);
}

bool Peering::encode_publish_datagram(std::string_view topic, ByteSpan payload, bool retain,
                                      Bytes& packet) {
  packet.clear();
  mqtt::encode_publish(packet, topic, payload, 0, retain, false, 0);
  if (packet.size() <= publish_limit_) return true;
  ++counters_.peer_publish_too_large;
  log_.warn(kLog, "PUBLISH not forwarded: {} bytes exceed the datagram limit of {} topic={}",
            packet.size(), publish_limit_, topic);
  return false;
}

bool Peering::encode_publish5_datagram(std::string_view topic, ByteSpan payload, bool retain,
                                       ByteSpan properties, Bytes& packet) {
  // The alias belongs to the publisher's connection, a subscription identifier to a subscriber's.
  properties_ = mqtt::without_properties(
      properties, {mqtt::property::kTopicAlias, mqtt::property::kSubscriptionIdentifier});
  if (properties_.empty()) return false;
  packet.clear();
  mqtt::encode_publish_v5(packet, topic, payload, 0, retain, false, 0, properties_);
  if (packet.size() > publish_limit_) {
    // The 3.1.1 form may still fit; if it does not either, that is counted there.
    log_.debug(kLog,
               "PUBLISH with properties too large for a datagram ({} bytes), sent without "
               "them topic={}",
               packet.size(), topic);
    return false;
  }
  // The receiver checks them as strictly: what it would refuse is not sent (nor the rest of the
  // datagram lost with it).
  bool need_more = false;
  mqtt::DecodeError err{};
  const auto f = mqtt::parse_frame(packet, cfg_.max_datagram, need_more, err);
  mqtt::ClientPacket decoded;
  if (!f || mqtt::decode_client_packet(*f, mqtt::ProtocolVersion::V5, decoded) !=
                mqtt::DecodeError::None) {
    log_.warn(kLog, "PUBLISH properties not valid for a PUBLISH, sent without them topic={}",
              topic);
    return false;
  }
  return true;
}

const Bytes* Peering::packet_for(std::size_t i, Encoded& e, std::string_view topic,
                                 ByteSpan payload, bool retain, ByteSpan properties, bool& v5) {
  v5 = false;
  if (!properties.empty() && takes_properties(peers_[i])) {
    if (!e.v5_done) {
      e.v5_done = true;
      e.v5_ok = encode_publish5_datagram(topic, payload, retain, properties, packet5_);
    }
    if (e.v5_ok) {
      v5 = true;
      return &packet5_;
    }
  }
  if (!e.plain_done) {
    e.plain_done = true;
    e.plain_ok = encode_publish_datagram(topic, payload, retain, packet_);
  }
  return e.plain_ok ? &packet_ : nullptr;
}

void Peering::push_publish(std::size_t i, const Bytes& packet, bool v5, std::string_view topic,
                           std::size_t payload_size, flow::Id source, TimePoint now) {
  Peer& p = peers_[i];
  if (withheld(p)) {
    ++counters_.peer_publish_dropped;
    return;
  }
  if (!capable(p)) {
    enqueue(i, packet, batches(p));
    ++counters_.peer_publish_out;
    ++p.traffic.publish_out;
    log_.debug(kLog, "PUBLISH forwarded to peer {} topic={} bytes={}", p.addr, topic, payload_size);
    return;
  }
  const flow::Id sink = flow::peer(i);
  if (flow_ && flow_->is_stuck(sink)) {
    ++counters_.peer_publish_dropped;
    return;
  }
  Outbound& o = p.out;
  if (o.pending.empty() && o.offset + packet.size() <= o.limit && pace(o, packet.size(), now)) {
    send_data(i, packet, v5, now);
    log_.debug(kLog, "PUBLISH forwarded to peer {} topic={} bytes={}", p.addr, topic, payload_size);
    return;
  }
  if (o.pending_bytes + packet.size() > cfg_.max_pending_bytes) {
    if (counters_.peer_publish_dropped++ % 10000 == 0) {
      log_.warn(kLog, "peer {} grants no credit: {} bytes wait for it, dropping PUBLISHes to it",
                p.addr, o.pending_bytes);
    }
    return;
  }
  if (o.pending.empty()) {
    if (o.offset + packet.size() > o.limit) {
      o.next_probe = now + cfg_.blocked_probe;  // out of credit: ask for more
      o.probe_backoff = cfg_.blocked_probe;
    } else {
      o.next_pump = o.pace_tat - pace_tolerance();  // within credit: the pacer holds it back
    }
  }
  Bytes copy;
  if (!spare_.empty()) {
    copy = std::move(spare_.back());
    spare_.pop_back();
  }
  copy.assign(packet.begin(), packet.end());
  o.pending.push_back(Outbound::Waiting{std::move(copy), v5});
  o.pending_bytes += packet.size();
  ++counters_.peer_publish_waited;
  if (flow_) flow_->on_queued(source, sink, o.pending_bytes, now);
}

Duration Peering::pace_tolerance() const {
  return Duration{
      static_cast<Duration::rep>(1'000'000'000.0 * static_cast<double>(cfg_.pace_burst) /
                                 static_cast<double>(cfg_.pace_bytes_per_second))};
}

bool Peering::pace(Outbound& o, std::size_t bytes, TimePoint now) {
  if (cfg_.pace_bytes_per_second == 0) return true;
  // GCRA: a packet conforms when the bytes before it would have left by now plus the burst.
  const TimePoint start = std::max(o.pace_tat, now);
  if (start - now > pace_tolerance()) return false;
  o.pace_tat =
      start + Duration{static_cast<Duration::rep>(1'000'000'000.0 * static_cast<double>(bytes) /
                                                  static_cast<double>(cfg_.pace_bytes_per_second))};
  return true;
}

void Peering::pump(std::size_t i, TimePoint now) {
  Outbound& o = peers_[i].out;
  o.next_pump.reset();
  while (!o.pending.empty() && o.offset + o.pending.front().packet.size() <= o.limit) {
    if (!pace(o, o.pending.front().packet.size(), now)) {
      o.next_pump = o.pace_tat - pace_tolerance();
      break;
    }
    Bytes& packet = o.pending.front().packet;
    if (o.pending.front().v5 && !takes_properties(peers_[i])) {
      // Its HELLO no longer announces the 5.0 form: what waited in it is not sent.
      ++counters_.peer_publish_dropped;
    } else {
      send_data(i, packet, o.pending.front().v5, now);
    }
    o.pending_bytes -= packet.size();
    if (spare_.size() < kMaxSpareBuffers) {
      packet.clear();
      spare_.push_back(std::move(packet));
    }
    o.pending.pop_front();
  }
  if (o.pending.empty()) {
    o.next_probe.reset();
  } else if (o.offset + o.pending.front().packet.size() > o.limit && !o.next_probe) {
    o.next_probe = now + o.probe_backoff;
  }
}

void Peering::drop_pending(std::size_t i) {
  Outbound& o = peers_[i].out;
  counters_.peer_publish_dropped += o.pending.size();
  o.pending.clear();
  o.pending_bytes = 0;
  o.next_probe.reset();
  o.next_pump.reset();
}

void Peering::forward_publish(std::string_view topic, ByteSpan payload, bool retain,
                              flow::Id source, TimePoint now, ByteSpan v5_properties) {
  if (cfg_.peers.empty()) return;
  // A peer with several matching filters still gets one copy.
  std::fill(wants_.begin(), wants_.end(), false);
  bool any = false;
  remote_.match(topic, [&](std::size_t peer) {
    wants_[peer] = true;
    any = true;
  });
  if (!any) return;
  Encoded e;
  for (std::size_t i = 0; i < wants_.size(); ++i) {
    if (!wants_[i]) continue;
    bool v5 = false;
    const Bytes* packet = packet_for(i, e, topic, payload, retain, v5_properties, v5);
    if (packet) push_publish(i, *packet, v5, topic, payload.size(), source, now);
  }
}

void Peering::send_retained(wire::Ipv4Address peer, std::string_view topic, ByteSpan payload,
                            TimePoint now, ByteSpan v5_properties) {
  const auto it = index_.find(peer);
  if (it == index_.end()) return;
  Encoded e;
  bool v5 = false;
  const Bytes* packet = packet_for(it->second, e, topic, payload, true, v5_properties, v5);
  if (packet) push_publish(it->second, *packet, v5, topic, payload.size(), flow::kNone, now);
}

void Peering::peer_subscribe(std::size_t i, std::string_view filter) {
  ++counters_.peer_subscribe_in;
  Peer& p = peers_[i];
  if (p.filters.emplace(filter).second) {
    remote_.add(filter, i);
    p.filters_hash += ext::filter_hash(filter);
    new_interest_.push_back(PeerInterest{cfg_.peers[i], std::string(filter)});
  }
  if (p.mending.nonce != 0) p.mending.collected.emplace(filter);
  log_.info(kLog, "peer {} SUBSCRIBE topic={}", cfg_.peers[i], filter);
}

void Peering::peer_unsubscribe(std::size_t i, std::string_view filter) {
  ++counters_.peer_unsubscribe_in;
  Peer& p = peers_[i];
  const std::string key(filter);
  if (auto it = p.filters.find(key); it != p.filters.end()) {
    p.filters.erase(it);
    remote_.remove(filter, i);
    p.filters_hash -= ext::filter_hash(filter);
  }
  p.mending.collected.erase(key);
  log_.info(kLog, "peer {} UNSUBSCRIBE topic={}", cfg_.peers[i], filter);
}

std::span<const mqtt::Publish> Peering::on_datagram(wire::Ipv4Address src, ByteSpan data,
                                                    TimePoint now) {
  inbound_.clear();
  const auto it = index_.find(src);
  if (it == index_.end()) {
    ++counters_.peer_datagrams_unknown_source;
    log_.debug(kLog, "datagram from {} ignored: not a peer", src);
    return {};
  }
  const std::size_t i = it->second;
  if (!authenticate(i, data)) return {};
  ++counters_.peer_datagrams_in;
  ++peers_[i].traffic.datagrams_in;
  DataContext ctx;
  bool deliver = true;
  bool whole = true;
  do {
    if (!on_packet(i, data, ctx, deliver, now)) {
      whole = false;
      break;
    }
  } while (!data.empty());
  heard(i, now);
  // A part of the answer we wait for counts once all of it was read.
  if (ctx.part && whole) filters_part(i, *ctx.part, ctx.parts);
  if (ctx.accounted) {
    Inbound& in = peers_[i].in;
    // A datagram with nothing but its header is a sequence mark: the sender wants to hear what
    // we have accounted for (in a CREDIT, sent even if there is no more to grant).
    if (ctx.mseq == ctx.first_mseq) in.answer_due = true;
    in.next_mseq = ctx.mseq;
    in.end = std::max(in.end, ctx.offset);
    // Grant more once an eighth of the window is used, so the sender never runs dry while the
    // grant travels.
    if (in.end + cfg_.credit_window >= in.limit_sent + cfg_.credit_window / 8) {
      in.credit_due = true;
    }
  }
  return inbound_;
}

bool Peering::account(Inbound& in, PeerTraffic& traffic, const ext::Data& d) {
  const std::int32_t ahead = serial_diff(d.dseq, in.next_dseq);
  if (ahead >= 0) {
    if (ahead > 0) {
      // Datagrams that never came, and the PUBLISHes they carried.
      counters_.peer_datagrams_lost += static_cast<std::uint32_t>(ahead);
      traffic.datagrams_lost += static_cast<std::uint32_t>(ahead);
      counters_.peer_publish_lost +=
          static_cast<std::uint32_t>(std::max<std::int32_t>(serial_diff(d.mseq, in.next_mseq), 0));
    }
    const auto shift = static_cast<std::uint32_t>(ahead) + 1;
    in.seen_dseq = shift >= 64 ? 1 : (in.seen_dseq << shift) | 1;
    in.next_dseq = d.dseq + 1;
    return true;
  }
  // Behind: one already counted lost that came late, or one that came twice. Either way it is not
  // delivered, so a publisher's messages are never delivered out of order and lost ones stay
  // counted exactly once.
  const auto back = static_cast<std::uint32_t>(-ahead) - 1;
  if (back < 64 && (in.seen_dseq >> back & 1)) {
    ++counters_.peer_datagrams_repeated;
  } else {
    ++counters_.peer_datagrams_late;
  }
  return false;
}

bool Peering::on_packet(std::size_t i, ByteSpan& data, DataContext& ctx, bool& deliver,
                        TimePoint now) {
  const wire::Ipv4Address src = cfg_.peers[i];
  auto malformed = [&](std::string_view why) {
    // The first and then one in 1000: anyone on the segment can send from a peer's address, and
    // must not be able to flood the log.
    if (counters_.peer_datagrams_malformed++ % 1000 == 0) {
      log_.warn(kLog, "datagram from peer {} dropped: {} ({} so far; 1 in 1000 is logged)", src,
                why, counters_.peer_datagrams_malformed);
    }
    return false;
  };

  bool need_more = false;
  mqtt::DecodeError err = mqtt::DecodeError::None;
  const auto frame = mqtt::parse_frame(data, cfg_.max_datagram, need_more, err);
  if (!frame) return malformed(need_more ? "truncated packet" : mqtt::decode_error_name(err));
  data = data.subspan(frame->wire_size);

  if (frame->first_byte == ext::kFirstByte) {
    const auto m = ext::decode(frame->body);
    if (!m) {
      // Another version's, or someone else's: skipped, so a newer peer can add kinds.
      ++counters_.peer_extension_unknown;
      return true;
    }
    on_extension(i, *m, ctx, deliver, now);
    return true;
  }

  // The prototype's unsubscribe: type 11, flags 0, packet id and one length-prefixed filter.
  if (frame->type() == mqtt::PacketType::Unsuback) {
    const ByteSpan b = frame->body;
    if (b.size() < 4 || load_be16(b, 2) + 4u != b.size())
      return malformed("bad legacy unsubscribe");
    const std::string_view filter = as_chars(b.subspan(4));
    if (mqtt::check_utf8(filter) != mqtt::Utf8Status::Ok || filter.empty()) {
      return malformed("bad topic filter in legacy unsubscribe");
    }
    peer_unsubscribe(i, filter);
    return true;
  }

  // Peers that build packets by hand have sent SUBSCRIBE with flags 0: accept any flags here.
  // Behind a DATA5 header a PUBLISH is in the 5.0 form (and only a PUBLISH is).
  const bool v5 = ctx.v5 && frame->type() == mqtt::PacketType::Publish;
  mqtt::ClientPacket packet;
  err = mqtt::decode_client_packet(
      *frame, v5 ? mqtt::ProtocolVersion::V5 : mqtt::ProtocolVersion::V311, packet, true);
  if (err != mqtt::DecodeError::None) return malformed(mqtt::decode_error_name(err));

  if (auto* p = std::get_if<mqtt::Publish>(&packet)) {
    // The 5.0 form is QoS 0 and carries no Topic Alias (a Subscription Identifier does not decode
    // in a PUBLISH to a server).
    if (v5 && p->qos != 0) return malformed("5.0-form PUBLISH with QoS > 0");
    if (v5 && p->properties.topic_alias) return malformed("5.0-form PUBLISH with a topic alias");
    if (ctx.accounted) {
      ++ctx.mseq;
      ctx.offset += frame->wire_size;
    }
    if (!deliver) return true;  // part of a late or repeated datagram
    ++counters_.peer_publish_in;
    ++peers_[i].traffic.publish_in;
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
      peer_subscribe(i, t.filter);
    }
    return true;
  }
  if (auto* u = std::get_if<mqtt::Unsubscribe>(&packet)) {
    for (auto f : u->filters) peer_unsubscribe(i, f);
    return true;
  }
  return malformed("packet type not used between peers");
}

void Peering::on_extension(std::size_t i, const ext::Message& m, DataContext& ctx, bool& deliver,
                           TimePoint now) {
  Peer& p = peers_[i];
  auto reply_hello = [&] {
    // At most every kHelloReplyGap: two peers must not trade HELLOs as fast as they can.
    if (!cfg_.extension || !started_) return;
    if (p.last_hello && now - *p.last_hello < kHelloReplyGap) return;
    send_hello(i, now);
  };
  if (const auto* h = std::get_if<ext::Hello>(&m)) {
    ++counters_.peer_hello_in;
    if (h->epoch == 0) return;
    bool reply = false;
    bool resync_due = false;
    if (h->epoch != p.their_epoch) {
      const bool restarted = p.their_epoch != 0;
      if (!restarted) {
        log_.info(kLog, "peer {} speaks the extension (features {:#x}, window {} bytes)", p.addr,
                  h->features, h->window);
      } else {
        log_.info(kLog, "peer {} restarted (epoch {:08x} -> {:08x})", p.addr, p.their_epoch,
                  h->epoch);
        // Its interest was its earlier run's; the new run announces its own.
        forget_interest(i, "restarted");
      }
      // What waited for the earlier run's credit goes; the new run grants its own.
      drop_pending(i);
      p.their_epoch = h->epoch;
      p.mending = Mending{};
      p.out = Outbound{};
      p.out.limit = h->window;
      p.out.last_progress = now;
      p.open_batch.reset();
      p.hello_backoff = Duration{};
      reply = true;
      resync_due = true;
    }
    p.their_features = h->features;
    const bool knew = p.knows_us;
    p.knows_us = h->peer_epoch == cfg_.epoch;
    if (!p.knows_us) reply = true;
    if (p.knows_us && !knew) {
      // The handshake is done: from now on a heartbeat.
      p.hello_backoff = cfg_.heartbeat_interval;
      p.next_hello = now + cfg_.heartbeat_interval;
    }
    // News is answered at once, whatever reply_hello's gap: the exchange ends when both sides
    // name each other's epoch, so it cannot go on.
    if (reply && cfg_.extension && started_) send_hello(i, now);
    // A new run of the peer (or a peer heard for the first time, which may have missed what we
    // announced before it listened) gets our interest now, after our HELLO: it need not wait for
    // a refresh.
    if (resync_due) resync(i, p.knows_us ? "restarted" : "announced itself", now);
    return;
  }
  // The interest check's packets are for the current pair of runs only.
  const auto current = [&](std::uint32_t epoch, std::uint32_t peer_epoch) {
    return epoch == p.their_epoch && peer_epoch == cfg_.epoch && checks_digest(p);
  };
  if (const auto* g = std::get_if<ext::Digest>(&m)) {
    if (!current(g->epoch, g->peer_epoch)) return;
    if (g->count == p.filters.size() && g->hash == p.filters_hash) {
      p.mending = Mending{};  // in agreement, whatever an answer still on its way would say
      return;
    }
    if (p.mending.nonce != 0) return;  // asking already; its retries go on
    ++counters_.peer_interest_mismatches;
    log_.info(kLog, "peer {} subscribed to {} filter(s), we hold {} (or others): asking it for all",
              p.addr, g->count, p.filters.size());
    p.mending.backoff = cfg_.resync_retry;
    ask_interest(i, now);
    return;
  }
  if (const auto* r = std::get_if<ext::Resync>(&m)) {
    if (current(r->epoch, r->peer_epoch)) answer_resync(i, r->nonce, now);
    return;
  }
  if (const auto* f = std::get_if<ext::Filters>(&m)) {
    if (current(f->epoch, f->peer_epoch) && f->nonce == p.mending.nonce && f->nonce != 0) {
      ctx.part = f->part;
      ctx.parts = f->parts;
    }
    return;
  }
  if (const auto* d = std::get_if<ext::Data>(&m)) {
    ctx = DataContext{};
    ctx.v5 = d->v5;  // the form of what follows, whether it is delivered or not
    deliver = true;
    if (d->peer_epoch != cfg_.epoch) {
      // Sent to an earlier run of ours: the messages are real, the accounting is not ours.
      reply_hello();
      return;
    }
    Inbound& in = p.in;
    if (d->epoch != in.epoch) {
      in = Inbound{};
      in.epoch = d->epoch;
      in.limit_sent = cfg_.credit_window;  // what our HELLO granted at the start
    }
    if (!account(in, p.traffic, *d)) {
      deliver = false;
      return;
    }
    ctx.accounted = true;
    ctx.first_mseq = d->mseq;
    ctx.mseq = d->mseq;
    ctx.offset = d->offset;
    return;
  }
  if (const auto* c = std::get_if<ext::Credit>(&m)) {
    if (c->peer_epoch != cfg_.epoch || c->epoch != p.their_epoch || !capable(p)) return;
    ++counters_.peer_credit_in;
    Outbound& o = p.out;
    o.last_progress = now;
    // Every datagram sent is accounted for at the receiver: no mark is needed any more.
    if (serial_diff(c->next_dseq, o.dseq) >= 0) o.next_mark.reset();
    if (c->limit > o.limit) {
      o.limit = c->limit;
      o.probe_backoff = cfg_.blocked_probe;
      if (o.next_probe) o.next_probe = now + o.probe_backoff;
    }
    pump(i, now);
    return;
  }
  if (const auto* b = std::get_if<ext::Blocked>(&m)) {
    if (b->peer_epoch != cfg_.epoch) return;
    ++counters_.peer_blocked_in;
    Inbound& in = p.in;
    if (b->epoch != in.epoch) {
      in = Inbound{};
      in.epoch = b->epoch;
      in.limit_sent = cfg_.credit_window;
    }
    // Everything up to its offset was sent: what did not arrive is not coming.
    in.end = std::max(in.end, b->offset);
    in.answer_due = true;
  }
}

void Peering::grant(std::size_t i, bool answer) {
  Peer& p = peers_[i];
  Inbound& in = p.in;
  const bool paused = flow_ && flow_->is_paused(flow::peer(i));
  bool send = answer;
  if (!paused) {
    const std::uint64_t limit = in.end + cfg_.credit_window;
    if (limit > in.limit_sent) {
      in.limit_sent = limit;
      send = true;
    }
  }
  if (!send) return;
  send_control(i, ext::Credit{cfg_.epoch, in.epoch, in.limit_sent, in.next_dseq, paused});
  ++counters_.peer_credit_out;
}

void Peering::end_turn() {
  grant_credit();
  seal_outbox();
}

void Peering::grant_credit() {
  if (!cfg_.extension) return;
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    Inbound& in = peers_[i].in;
    if (in.epoch == 0 || !(in.credit_due || in.answer_due)) continue;
    grant(i, in.answer_due);
    in.credit_due = false;
    in.answer_due = false;
  }
}

void Peering::on_timers(TimePoint now) {
  if (next_refresh_ && now >= *next_refresh_) refresh_next(now);
  if (!cfg_.extension || !started_) return;
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    Peer& p = peers_[i];
    check_liveness(i, now);
    if (now >= p.next_hello) {
      send_hello(i, now);
      // The heartbeat carries the check of our interest at the peer.
      if (p.knows_us && checks_digest(p)) send_digest(i);
    }
    if (p.mending.nonce != 0 && now >= p.mending.next_ask) {
      if (p.up && checks_digest(p)) {
        ask_interest(i, now);
      } else {
        p.mending = Mending{};  // gone: it is asked again when a DIGEST disagrees once more
      }
    }
    Outbound& o = p.out;
    if (o.next_pump && now >= *o.next_pump) pump(i, now);
    if (o.next_mark && now >= *o.next_mark && capable(p)) {
      if (o.pending.empty()) {
        Datagram& d = new_datagram(i);
        ext::encode(d.bytes, ext::Data{cfg_.epoch, p.their_epoch, o.dseq++, o.mseq, o.offset});
        p.open_batch.reset();
        ++counters_.peer_marks_out;
      }
      o.mark_backoff = std::min<Duration>(o.mark_backoff * 2, kMaxMarkBackoff);
      o.next_mark = now + o.mark_backoff;
    }
    if (o.next_probe && now >= *o.next_probe && capable(p)) {
      send_control(i, ext::Blocked{cfg_.epoch, p.their_epoch, o.offset});
      ++counters_.peer_blocked_out;
      o.probe_backoff = std::min<Duration>(o.probe_backoff * 2, kMaxProbeBackoff);
      o.next_probe = now + o.probe_backoff;
    }
  }
}

std::optional<TimePoint> Peering::next_deadline() const {
  std::optional<TimePoint> d = next_refresh_;
  if (!cfg_.extension || !started_) return d;
  for (const auto& p : peers_) {
    d = earliest(d, p.next_hello);
    if (p.mending.nonce != 0) d = earliest(d, p.mending.next_ask);
    if (capable(p)) {
      // What on_timers() acts on only for a capable peer: a peer that stopped announcing credit
      // (a HELLO without it) must not leave a past deadline behind to spin on.
      d = earliest(d, p.out.next_probe);
      d = earliest(d, p.out.next_mark);
      d = earliest(d, p.out.next_pump);
    }
    if (p.last_heard && capable(p)) {
      if (p.up) d = earliest(d, *p.last_heard + cfg_.liveness_timeout);
      if (expiry().count() > 0 && !p.filters.empty()) d = earliest(d, *p.last_heard + expiry());
    }
  }
  return d;
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
  return it == index_.end() ? 0 : peers_[it->second].filters.size();
}

}  // namespace mqtt_proxy::peering
