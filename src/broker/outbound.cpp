// Outbound QoS 0/1/2 toward one session (outbound.hpp). Read first: MQTT 3.1.1 4.3, 4.4, 4.6 and
// MQTT 5.0 4.3, 4.4, 4.9, 3.3.2.3.3.

#include "mqtt_proxy/broker/outbound.hpp"

#include <algorithm>
#include <cassert>
#include <limits>
#include <numeric>

namespace mqtt_proxy::broker {

namespace {

constexpr std::uint16_t kMaxPacketId = 65535;
// v5 2.4: a PUBREC reason code of 0x80 or more is a failure, and ends the flow (4.3.3).
constexpr std::uint8_t kFirstFailureReason = 0x80;

bool expired(const StoredMessage& m, TimePoint now) {
  return m.expires_at && *m.expires_at <= now;
}

}  // namespace

std::uint16_t inflight_window(const OutboundConfig& cfg, bool v5,
                              std::optional<std::uint16_t> receive_maximum) {
  // v5 3.1.2.11.3: absent means 65535; 0 is a protocol error the decoder refuses.
  const std::uint16_t w = v5 ? receive_maximum.value_or(kMaxPacketId) : cfg.max_inflight;
  return w == 0 ? kMaxPacketId : w;
}

std::uint32_t remaining_expiry_seconds(TimePoint expires_at, TimePoint now) {
  if (expires_at <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::seconds>(expires_at - now).count();
  constexpr auto kMax = std::numeric_limits<std::uint32_t>::max();
  return left >= kMax ? kMax : static_cast<std::uint32_t>(left);
}

namespace {

Send publish_of(std::shared_ptr<const StoredMessage> message,
                std::vector<std::uint32_t> subscription_ids, std::uint8_t qos, bool retain,
                std::uint16_t packet_id, bool dup, TimePoint now) {
  Send s;
  s.kind = Send::Kind::Publish;
  s.packet_id = packet_id;
  s.qos = qos;
  s.dup = dup;
  s.retain = retain;
  if (message->expires_at) s.message_expiry = remaining_expiry_seconds(*message->expires_at, now);
  s.message = std::move(message);
  s.subscription_ids = std::move(subscription_ids);
  return s;
}

}  // namespace

Outbound::Outbound(OutboundConfig cfg, std::uint16_t window)
    : cfg_(cfg), window_(std::max<std::uint16_t>(window, 1)) {
  assert(window >= 1);
}

std::uint64_t Outbound::dropped_total() const {
  return std::accumulate(dropped_.begin(), dropped_.end(), std::uint64_t{0});
}

OfferResult Outbound::offer(Delivery d, TimePoint now, std::vector<Send>& out) {
  assert(d.message && d.message->qos <= 2 && d.subscription_qos <= 2);
  Entry e;
  e.qos = std::min(d.message->qos, d.subscription_qos);  // 3.8.4
  e.retain = d.retain;
  e.message = std::move(d.message);
  e.subscription_ids = std::move(d.subscription_ids);

  // v5 [MQTT-3.3.2-5]: expired before onward delivery started: not sent.
  if (expired(*e.message, now)) {
    drop(DropReason::Expired);
    return {OfferResult::Outcome::Dropped, DropReason::Expired};
  }
  // Nothing overtakes what waits: first PUBLISHes go in the order of offer().
  if (connected_ && queue_.empty() && unsent_.empty()) {
    if (e.qos == 0) {
      out.push_back(publish_of(std::move(e.message), std::move(e.subscription_ids), 0, e.retain, 0,
                               false, now));
      return {OfferResult::Outcome::Sent};
    }
    if (slots_used_ < window_) {
      open_flow(std::move(e), now, out);
      return {OfferResult::Outcome::Sent};
    }
  }
  if (!connected_ && e.qos == 0 && !cfg_.queue_qos0) {
    drop(DropReason::Qos0Offline);
    return {OfferResult::Outcome::Dropped, DropReason::Qos0Offline};
  }
  if (const auto reason = no_room_for(e)) {
    drop(*reason);
    return {OfferResult::Outcome::Dropped, *reason};
  }
  push_queue(std::move(e));
  return {OfferResult::Outcome::Queued};
}

AckResult Outbound::on_puback(std::uint16_t packet_id, TimePoint now, std::vector<Send>& out) {
  const auto it = find(packet_id);
  if (it == flows_.end()) return AckResult::Unknown;
  if (it->state != State::AwaitPuback) return wrong_state();
  // v5 3.4.2.1: whatever the reason code, the QoS 1 flow is over.
  close_flow(it);
  drain(now, out);
  return AckResult::Done;
}

AckResult Outbound::on_pubrec(std::uint16_t packet_id, std::uint8_t reason_code, TimePoint now,
                              std::vector<Send>& out) {
  const auto it = find(packet_id);
  if (it == flows_.end()) return AckResult::Unknown;
  if (it->state == State::AwaitPuback) return wrong_state();
  if (reason_code >= kFirstFailureReason) {
    // v5 4.3.3: the receiver refused the message; no PUBREL, and the slot is free (4.9).
    if (it->state != State::AwaitPubrec) return wrong_state();
    close_flow(it);
    drain(now, out);
    return AckResult::Done;
  }
  // 4.3.3: PUBREL, and the PUBLISH is never sent again. A PUBREC again while awaiting PUBCOMP
  // gets the PUBREL again, as Mosquitto does, and keeps its place.
  take_slot(it);
  if (it->state == State::AwaitPubrec) {
    it->state = State::AwaitPubcomp;
    // [MQTT-4.6.0-4]: PUBRELs, resent ones too, go in the order of the PUBRECs.
    flows_.splice(flows_.end(), flows_, it);
  }
  Send s;
  s.kind = Send::Kind::Pubrel;
  s.packet_id = packet_id;
  out.push_back(std::move(s));
  return AckResult::Pubrel;
}

AckResult Outbound::on_pubcomp(std::uint16_t packet_id, TimePoint now, std::vector<Send>& out) {
  const auto it = find(packet_id);
  if (it == flows_.end()) return AckResult::Unknown;
  if (it->state != State::AwaitPubcomp) return wrong_state();
  close_flow(it);
  drain(now, out);
  return AckResult::Done;
}

std::size_t Outbound::disconnected() {
  connected_ = false;
  for (Flow& f : flows_) f.sent = false;
  unsent_.clear();
  slots_used_ = 0;
  if (cfg_.queue_qos0) return 0;
  // QoS 0 that waited behind a full window is not kept for an offline client either.
  std::size_t n = 0;
  std::erase_if(queue_, [&](const Entry& e) {
    if (e.qos != 0) return false;
    queued_bytes_ -= e.message->payload.size();
    ++n;
    return true;
  });
  dropped_[static_cast<std::size_t>(DropReason::Qos0Offline)] += n;
  return n;
}

void Outbound::reconnected(std::uint16_t window, TimePoint now, std::vector<Send>& out) {
  if (connected_) disconnected();  // a takeover: the old connection's packets are gone
  assert(window >= 1);
  connected_ = true;
  window_ = std::max<std::uint16_t>(window, 1);
  // 3.1.1 4.4, v5 4.4 [MQTT-4.4.0-1]: every open flow again, with its original packet id, in
  // order. PUBRELs count against the window first: the client already holds their ids, so they
  // are all sent; PUBLISHes fill what is left (v5 4.9), the rest as slots free.
  const auto pubrels = static_cast<std::size_t>(std::count_if(
      flows_.begin(), flows_.end(), [](const Flow& f) { return f.state == State::AwaitPubcomp; }));
  std::size_t room = window_ > pubrels ? window_ - pubrels : 0;
  for (auto it = flows_.begin(); it != flows_.end(); ++it) {
    Flow& f = *it;
    if (f.state == State::AwaitPubcomp) {
      Send s;
      s.kind = Send::Kind::Pubrel;
      s.packet_id = f.packet_id;
      out.push_back(std::move(s));
    } else if (room > 0) {
      --room;
      // [MQTT-3.3.1-1]: DUP on a PUBLISH sent again.
      out.push_back(publish_of(f.entry.message, f.entry.subscription_ids, f.entry.qos,
                               f.entry.retain, f.packet_id, true, now));
    } else {
      unsent_.push_back(it);
      continue;
    }
    f.sent = true;
    ++slots_used_;
    ++resent_;
  }
  drain(now, out);
}

std::size_t Outbound::drop_expired(TimePoint now) {
  const std::size_t n = std::erase_if(queue_, [&](const Entry& e) {
    if (!expired(*e.message, now)) return false;
    queued_bytes_ -= e.message->payload.size();
    return true;
  });
  dropped_[static_cast<std::size_t>(DropReason::Expired)] += n;
  return n;
}

std::optional<DropReason> Outbound::no_room_for(const Entry& e) const {
  if (cfg_.max_queued_messages != 0 && queue_.size() >= cfg_.max_queued_messages) {
    return DropReason::QueueFull;
  }
  if (cfg_.max_queued_bytes != 0 &&
      queued_bytes_ + e.message->payload.size() > cfg_.max_queued_bytes) {
    return DropReason::QueueBytes;
  }
  return std::nullopt;
}

void Outbound::push_queue(Entry e) {
  queued_bytes_ += e.message->payload.size();
  queue_.push_back(std::move(e));
}

Outbound::Entry Outbound::pop_queue() {
  Entry e = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= e.message->payload.size();
  return e;
}

std::uint16_t Outbound::allocate_packet_id() {
  // A free id exists: a flow opens only below the window, which is at most 65535.
  assert(by_id_.size() < kMaxPacketId);
  for (;;) {
    const std::uint16_t id = next_packet_id_;
    next_packet_id_ = id == kMaxPacketId ? 1 : static_cast<std::uint16_t>(id + 1);
    if (!by_id_.contains(id)) return id;  // 2.3.1: never one still in use
  }
}

void Outbound::open_flow(Entry e, TimePoint now, std::vector<Send>& out) {
  Flow f;
  f.packet_id = allocate_packet_id();
  f.state = e.qos == 1 ? State::AwaitPuback : State::AwaitPubrec;
  f.sent = true;
  f.entry = std::move(e);
  flows_.push_back(std::move(f));
  const Flow& g = flows_.back();
  by_id_.emplace(g.packet_id, std::prev(flows_.end()));
  ++slots_used_;
  out.push_back(publish_of(g.entry.message, g.entry.subscription_ids, g.entry.qos, g.entry.retain,
                           g.packet_id, false, now));
}

void Outbound::take_slot(Flows::iterator it) {
  if (it->sent) return;
  // Acknowledged before its resend came (the client had it from the last connection).
  unsent_.erase(std::find(unsent_.begin(), unsent_.end(), it));
  it->sent = true;
  ++slots_used_;
}

void Outbound::close_flow(Flows::iterator it) {
  if (it->sent) {
    --slots_used_;
  } else {
    unsent_.erase(std::find(unsent_.begin(), unsent_.end(), it));
  }
  by_id_.erase(it->packet_id);
  flows_.erase(it);
}

void Outbound::drain(TimePoint now, std::vector<Send>& out) {
  if (!connected_) return;
  while (!unsent_.empty() && slots_used_ < window_) {
    Flow& f = *unsent_.front();
    unsent_.pop_front();
    f.sent = true;
    ++slots_used_;
    ++resent_;
    out.push_back(publish_of(f.entry.message, f.entry.subscription_ids, f.entry.qos, f.entry.retain,
                             f.packet_id, true, now));
  }
  if (!unsent_.empty()) return;  // nothing new overtakes a resend
  while (!queue_.empty()) {
    Entry& e = queue_.front();
    if (expired(*e.message, now)) {
      pop_queue();
      drop(DropReason::Expired);
      continue;
    }
    if (e.qos == 0) {
      Entry q = pop_queue();
      out.push_back(publish_of(std::move(q.message), std::move(q.subscription_ids), 0, q.retain, 0,
                               false, now));
      continue;
    }
    if (slots_used_ >= window_) break;
    open_flow(pop_queue(), now, out);
  }
}

Outbound::Flows::iterator Outbound::find(std::uint16_t packet_id) {
  const auto it = by_id_.find(packet_id);
  if (it == by_id_.end()) {
    ++unknown_acks_;
    return flows_.end();
  }
  return it->second;
}

}  // namespace mqtt_proxy::broker
