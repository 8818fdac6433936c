// Outbound delivery toward one client session at QoS 0, 1 and 2: the in-flight window, packet
// identifiers, the PUBACK / PUBREC / PUBREL / PUBCOMP flows, the resend at reconnect, and the queue
// that holds messages while the client is offline or its window is full.
//
// Read first: MQTT 3.1.1 sections 4.3 (QoS flows), 4.4 (redelivery), 4.6 (ordering); MQTT 5.0
// sections 4.3, 4.4, 4.9 (flow control: Receive Maximum), 3.3.2.3.3 (Message Expiry Interval).
// The anchors: Mosquitto's max_inflight_messages, max_queued_messages, max_queued_bytes and
// queue_qos0_messages, whose defaults and meaning the configuration keeps.
//
// Pure: no I/O, no clock, no encoding. Each call appends what is to be sent now to `out`, as
// `Send`s the broker encodes (mqtt/encode.hpp); the broker owns the byte-level queue and its
// backpressure. One Outbound per session; a persistent session's outlives its connections.
//
// Rules it keeps:
// - A message is delivered at min(publisher's QoS, subscription's QoS) (3.8.4).
// - At most `window` QoS 1 and 2 flows are open at once (v5 4.9: the client's Receive Maximum;
//   before v5 --max-inflight). A flow is open from its PUBLISH until PUBACK, PUBCOMP, or a PUBREC
//   with a reason code of 0x80 or more; one waiting for PUBCOMP still counts.
// - Order: PUBLISHes are first sent in the order they were offered, whatever their QoS. A QoS 0
//   message takes no window slot, so it passes straight through when nothing waits before it;
//   when something does (a full window, messages queued while offline), it waits its turn in the
//   same queue. That is stricter than 4.6, which orders per topic and QoS only, and it means a
//   QoS 0 message can wait for a QoS 1 message's acknowledgement.
// - Resend only at reconnect, never on a timer (v5 [MQTT-4.4.0-1]; 3.1.1 does not forbid one; none
//   here): every open flow's last packet again, with its packet id: the PUBLISH with DUP
//   set, or the PUBREL of a flow waiting for PUBCOMP. PUBLISHes go in the order they were first
//   sent [MQTT-4.6.0-1], PUBRELs in the order their PUBRECs came [MQTT-4.6.0-4], the two merged
//   as those events happened.
// - Packet identifiers run 1..65535 and wrap; one still held by an open flow is skipped (2.3.1).
// - Message expiry (v5 3.3.2.3.3): a message whose expiry passed before its first PUBLISH is
//   dropped (counted), never sent; one whose delivery started is finished, expired or not
//   (v5 4.3.3: no expiry once the PUBLISH was sent), because the client may hold its packet id.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::broker {

// A message as it was published: one per PUBLISH, shared by every subscriber it goes to.
struct StoredMessage {
  std::string topic;
  Bytes payload;
  // v5 PUBLISH properties to forward, without the per-subscriber ones (Message Expiry Interval,
  // written from `expires_at`; Topic Alias; Subscription Identifier).
  Bytes properties;
  std::uint8_t qos = 0;                 // the publisher's
  bool retain = false;                  // the publisher's RETAIN
  std::optional<TimePoint> expires_at;  // v5 Message Expiry Interval, from the time it arrived
};

// One subscriber's copy of a message: the shared message and what is this subscriber's own.
struct Delivery {
  std::shared_ptr<const StoredMessage> message;
  std::uint8_t subscription_qos = 0;  // the subscription's granted QoS
  bool retain = false;                // RETAIN as sent to this subscriber (v5 Retain As Published)
  std::vector<std::uint32_t> subscription_ids;  // v5 Subscription Identifiers of its filters
};

// A packet for the broker to encode and send now.
struct Send {
  enum class Kind : std::uint8_t { Publish, Pubrel };
  Kind kind = Kind::Publish;
  std::uint16_t packet_id = 0;  // 0 for a QoS 0 PUBLISH
  // PUBLISH only:
  std::uint8_t qos = 0;  // as delivered: min(publisher's, subscription's)
  bool dup = false;
  bool retain = false;
  std::shared_ptr<const StoredMessage> message;
  std::vector<std::uint32_t> subscription_ids;
  // The Message Expiry Interval to write (v5 [MQTT-3.3.2-6]: what is left of it), when the
  // message has one: whole seconds rounded up, 0 for a resent message that expired meanwhile.
  std::optional<std::uint32_t> message_expiry;
};

struct OutboundConfig {
  // The window toward a client before v5 (--max-inflight; Mosquitto's max_inflight_messages);
  // 0: no limit but the packet identifiers'. A v5 client's Receive Maximum replaces it.
  std::uint16_t max_inflight = 20;
  // Messages waiting (offline, or behind a full window), and their payload bytes as Mosquitto
  // counts them; beyond either, new messages are dropped (counted). 0: no limit.
  std::size_t max_queued_messages = 1000;
  std::size_t max_queued_bytes = 0;
  // Queue QoS 0 messages for an offline client too (Mosquitto's queue_qos0_messages).
  bool queue_qos0 = false;
};

// The window for a client: its Receive Maximum in v5 (65535 when it sent none, 3.1.2.11.3), else
// --max-inflight.
std::uint16_t inflight_window(const OutboundConfig& cfg, bool v5,
                              std::optional<std::uint16_t> receive_maximum);

// Whole seconds left until `expires_at`, rounded up; 0 when it passed.
std::uint32_t remaining_expiry_seconds(TimePoint expires_at, TimePoint now);

enum class DropReason : std::uint8_t {
  QueueFull,    // max_queued_messages reached
  QueueBytes,   // max_queued_bytes would be exceeded
  Qos0Offline,  // QoS 0 for an offline client without queue_qos0 (offered, or queued at the end)
  Expired,      // its Message Expiry Interval passed before it could be sent
};
inline constexpr std::size_t kDropReasons = 4;

struct OfferResult {
  enum class Outcome : std::uint8_t { Sent, Queued, Dropped };
  Outcome outcome = Outcome::Sent;
  DropReason reason = DropReason::QueueFull;  // when Dropped
  friend bool operator==(const OfferResult&, const OfferResult&) = default;
};

enum class AckResult : std::uint8_t {
  Done,        // the flow is complete (PUBACK, PUBCOMP, PUBREC >= 0x80); its window slot is free
  Pubrel,      // PUBREC: a PUBREL was appended
  Unknown,     // no open flow has this id: ignored (a PUBREC is answered PUBREL, v5 reason 0x92)
  WrongState,  // the flow is not at this step (PUBACK for QoS 2, PUBCOMP before PUBREC):
               // nothing changed; a protocol error for the broker to judge
};

class Outbound {
 public:
  // A session whose client is connected with this window (inflight_window(); at least 1).
  Outbound(OutboundConfig cfg, std::uint16_t window);
  // It holds iterators into its own list: a copy would point into the original; a move keeps the
  // list's nodes, so they stay valid.
  Outbound(const Outbound&) = delete;
  Outbound& operator=(const Outbound&) = delete;
  Outbound(Outbound&&) = default;
  Outbound& operator=(Outbound&&) = default;

  // A message for this session: sent now, queued, or dropped (counted).
  OfferResult offer(Delivery d, TimePoint now, std::vector<Send>& out);

  // The client's acknowledgements. A completed flow frees a window slot, which the next waiting
  // message takes (appended to `out`). `reason_code` is v5's (0 before v5).
  AckResult on_puback(std::uint16_t packet_id, TimePoint now, std::vector<Send>& out);
  AckResult on_pubrec(std::uint16_t packet_id, std::uint8_t reason_code, TimePoint now,
                      std::vector<Send>& out);
  AckResult on_pubcomp(std::uint16_t packet_id, TimePoint now, std::vector<Send>& out);

  // The connection ended; the session stays. Open flows wait for the reconnect; queued QoS 0
  // messages are dropped unless queue_qos0 (returns how many).
  std::size_t disconnected();
  // The client is back (clean session 0 / clean start 0) with `window`: appends the resend of
  // every open flow that fits (PUBRELs always: the client already holds their ids), then what was
  // queued. Open flows beyond a smaller window are resent as acknowledgements free slots, before
  // anything queued. Also a takeover: a connected session is disconnected first.
  void reconnected(std::uint16_t window, TimePoint now, std::vector<Send>& out);

  // Drops the queued messages whose expiry passed, so that the gauges do not count them (they are
  // dropped when their turn comes anyway). Returns how many.
  std::size_t drop_expired(TimePoint now);

  bool connected() const { return connected_; }
  std::uint16_t window() const { return window_; }
  // Open QoS 1 and 2 flows (awaiting PUBACK, PUBREC or PUBCOMP), sent on this connection or not.
  std::size_t inflight_count() const { return flows_.size(); }
  // Messages waiting for their first PUBLISH, and their payload bytes.
  std::size_t queued_count() const { return queue_.size(); }
  std::size_t queued_bytes() const { return queued_bytes_; }
  std::uint64_t dropped(DropReason r) const { return dropped_[static_cast<std::size_t>(r)]; }
  std::uint64_t dropped_total() const;
  std::uint64_t unknown_acks() const { return unknown_acks_; }
  std::uint64_t wrong_state_acks() const { return wrong_state_acks_; }
  // Packets sent again after a reconnect: PUBLISHes with DUP, PUBRELs.
  std::uint64_t resent() const { return resent_; }

 private:
  // A message as this subscriber gets it.
  struct Entry {
    std::shared_ptr<const StoredMessage> message;
    std::vector<std::uint32_t> subscription_ids;
    std::uint8_t qos = 0;  // as delivered
    bool retain = false;
  };
  enum class State : std::uint8_t { AwaitPuback, AwaitPubrec, AwaitPubcomp };
  // An open QoS 1 or 2 flow.
  struct Flow {
    Entry entry;
    std::uint16_t packet_id = 0;
    State state = State::AwaitPuback;
    bool sent = false;  // its last packet went out on this connection (it holds a window slot)
  };
  using Flows = std::list<Flow>;

  // Whether the queue takes `e`; else why not.
  std::optional<DropReason> no_room_for(const Entry& e) const;
  void push_queue(Entry e);
  Entry pop_queue();
  void drop(DropReason r) { ++dropped_[static_cast<std::size_t>(r)]; }
  std::uint16_t allocate_packet_id();
  // Opens a flow for `e` and appends its first PUBLISH.
  void open_flow(Entry e, TimePoint now, std::vector<Send>& out);
  // The flow's last packet goes out on this connection: it takes a window slot.
  void take_slot(Flows::iterator it);
  void close_flow(Flows::iterator it);
  // Fills free window slots: open flows not yet resent first, then the queue.
  void drain(TimePoint now, std::vector<Send>& out);
  // The flow an acknowledgement names, or flows_.end() (counted).
  Flows::iterator find(std::uint16_t packet_id);
  AckResult wrong_state() {
    ++wrong_state_acks_;
    return AckResult::WrongState;
  }

  OutboundConfig cfg_;
  std::uint16_t window_;
  bool connected_ = true;
  // In the order of their first PUBLISH, or for those awaiting PUBCOMP of their PUBREC: the order
  // of the resend at reconnect.
  Flows flows_;
  std::unordered_map<std::uint16_t, Flows::iterator> by_id_;
  std::deque<Flows::iterator> unsent_;  // open flows not yet resent on this connection, in order
  std::size_t slots_used_ = 0;          // flows sent on this connection
  std::deque<Entry> queue_;             // waiting for their first PUBLISH, in order
  std::size_t queued_bytes_ = 0;
  std::uint16_t next_packet_id_ = 1;
  std::array<std::uint64_t, kDropReasons> dropped_{};
  std::uint64_t unknown_acks_ = 0;
  std::uint64_t wrong_state_acks_ = 0;
  std::uint64_t resent_ = 0;
};

}  // namespace mqtt_proxy::broker
