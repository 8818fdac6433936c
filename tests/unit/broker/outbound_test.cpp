// Outbound QoS 0/1/2 toward one session, as traces: what is offered and acknowledged, and what the
// broker is told to send.
#include "mqtt_proxy/broker/outbound.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using broker::AckResult;
using broker::DropReason;
using broker::OfferResult;
using Trace = std::vector<std::string>;

constexpr OfferResult kSent{OfferResult::Outcome::Sent};
constexpr OfferResult kQueued{OfferResult::Outcome::Queued};
constexpr OfferResult dropped(DropReason r) {
  return {OfferResult::Outcome::Dropped, r};
}

// "PUBLISH m1 q1 id=1 dup retain exp=30 sid=3,7", "PUBREL id=1"
std::string describe(const broker::Send& s) {
  if (s.kind == broker::Send::Kind::Pubrel) return "PUBREL id=" + std::to_string(s.packet_id);
  std::string d = "PUBLISH " + s.message->topic + " q" + std::to_string(s.qos);
  if (s.qos > 0) d += " id=" + std::to_string(s.packet_id);
  if (s.dup) d += " dup";
  if (s.retain) d += " retain";
  if (s.message_expiry) d += " exp=" + std::to_string(*s.message_expiry);
  for (std::size_t i = 0; i < s.subscription_ids.size(); ++i) {
    d += (i == 0 ? " sid=" : ",") + std::to_string(s.subscription_ids[i]);
  }
  return d;
}

std::shared_ptr<const broker::StoredMessage> message(std::string topic, std::uint8_t qos,
                                                     std::size_t payload_size = 1,
                                                     std::optional<TimePoint> expires_at = {}) {
  auto m = std::make_shared<broker::StoredMessage>();
  m->topic = std::move(topic);
  m->payload.assign(payload_size, std::byte{'x'});
  m->qos = qos;
  m->expires_at = expires_at;
  return m;
}

broker::OutboundConfig config() {
  return broker::OutboundConfig{};  // max_inflight 20, 1000 messages, no byte limit, no QoS 0
}

class Outbound : public ::testing::Test {
 protected:
  explicit Outbound(broker::OutboundConfig cfg = config(), std::uint16_t window = 20)
      : ob_(cfg, window) {}

  // A message published at `pub_qos` to a subscription of `sub_qos`.
  OfferResult offer(const std::string& topic, std::uint8_t pub_qos, std::uint8_t sub_qos = 2,
                    std::size_t payload_size = 1, std::optional<TimePoint> expires_at = {}) {
    broker::Delivery d;
    d.message = message(topic, pub_qos, payload_size, expires_at);
    d.subscription_qos = sub_qos;
    return ob_.offer(std::move(d), now_, out_);
  }
  AckResult puback(std::uint16_t id) { return ob_.on_puback(id, now_, out_); }
  AckResult pubrec(std::uint16_t id, std::uint8_t reason = 0) {
    return ob_.on_pubrec(id, reason, now_, out_);
  }
  AckResult pubcomp(std::uint16_t id) { return ob_.on_pubcomp(id, now_, out_); }
  void reconnect(std::uint16_t window = 20) { ob_.reconnected(window, now_, out_); }

  // What was to be sent since the last call.
  Trace sent() {
    Trace t;
    for (const auto& s : out_) t.push_back(describe(s));
    out_.clear();
    return t;
  }

  broker::Outbound ob_;
  std::vector<broker::Send> out_;
  TimePoint now_ = t0();
};

// --- The flows

TEST_F(Outbound, Qos1PublishPubackFreesTheSlot) {
  EXPECT_EQ(offer("m1", 1), kSent);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1"}));
  EXPECT_EQ(ob_.inflight_count(), 1u);
  EXPECT_EQ(puback(1), AckResult::Done);
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(ob_.inflight_count(), 0u);
  EXPECT_EQ(puback(1), AckResult::Unknown);  // the id is free again
}

TEST_F(Outbound, Qos2PublishPubrecPubrelPubcomp) {
  EXPECT_EQ(offer("m1", 2), kSent);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q2 id=1"}));
  EXPECT_EQ(pubrec(1), AckResult::Pubrel);
  EXPECT_EQ(sent(), (Trace{"PUBREL id=1"}));
  EXPECT_EQ(ob_.inflight_count(), 1u);  // a flow awaiting PUBCOMP still holds its slot
  EXPECT_EQ(pubcomp(1), AckResult::Done);
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(ob_.inflight_count(), 0u);
}

TEST_F(Outbound, APubrecAgainGetsThePubrelAgain) {
  offer("m1", 2);
  pubrec(1);
  sent();
  EXPECT_EQ(pubrec(1), AckResult::Pubrel);
  EXPECT_EQ(sent(), (Trace{"PUBREL id=1"}));
  EXPECT_EQ(pubcomp(1), AckResult::Done);
}

class OutboundWindowOne : public Outbound {
 protected:
  OutboundWindowOne() : Outbound(config(), 1) {}
};

TEST_F(OutboundWindowOne, AV5PubrecWithAnErrorEndsTheFlowWithoutPubrel) {
  offer("m1", 2);
  offer("m2", 1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q2 id=1"}));
  EXPECT_EQ(pubrec(1, 0x87), AckResult::Done);       // Not authorized: the message is done
  EXPECT_EQ(sent(), (Trace{"PUBLISH m2 q1 id=2"}));  // no PUBREL; the slot went to m2
  EXPECT_EQ(ob_.inflight_count(), 1u);
  EXPECT_EQ(pubcomp(1), AckResult::Unknown);
  // 0x7f is still success's side of the line; 0x80 is the first failure.
  puback(2);
  offer("m3", 2);
  sent();
  EXPECT_EQ(pubrec(3, 0x80), AckResult::Done);
  EXPECT_EQ(sent(), Trace{});
  offer("m4", 2);
  sent();
  EXPECT_EQ(pubrec(4, 0x10), AckResult::Pubrel);  // No matching subscribers: a success code
}

TEST_F(Outbound, AcksForUnknownIdsAreReportedAndChangeNothing) {
  offer("m1", 1);
  sent();
  EXPECT_EQ(puback(7), AckResult::Unknown);
  EXPECT_EQ(pubrec(7), AckResult::Unknown);  // the broker answers PUBREL (v5: 0x92)
  EXPECT_EQ(pubcomp(7), AckResult::Unknown);
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(ob_.unknown_acks(), 3u);
  EXPECT_EQ(ob_.inflight_count(), 1u);
  EXPECT_EQ(puback(1), AckResult::Done);
}

TEST_F(Outbound, AcksOfTheWrongStepAreReportedAndChangeNothing) {
  offer("m1", 1);
  offer("m2", 2);
  sent();
  EXPECT_EQ(pubrec(1), AckResult::WrongState);   // PUBREC for QoS 1
  EXPECT_EQ(pubcomp(1), AckResult::WrongState);  // PUBCOMP for QoS 1
  EXPECT_EQ(puback(2), AckResult::WrongState);   // PUBACK for QoS 2
  EXPECT_EQ(pubcomp(2), AckResult::WrongState);  // PUBCOMP before PUBREC
  EXPECT_EQ(pubrec(2), AckResult::Pubrel);
  EXPECT_EQ(pubrec(2, 0x80), AckResult::WrongState);  // refusing after the PUBREL went
  EXPECT_EQ(sent(), (Trace{"PUBREL id=2"}));
  EXPECT_EQ(ob_.wrong_state_acks(), 5u);
  EXPECT_EQ(ob_.unknown_acks(), 0u);
  EXPECT_EQ(ob_.inflight_count(), 2u);
  EXPECT_EQ(puback(1), AckResult::Done);
  EXPECT_EQ(pubcomp(2), AckResult::Done);
}

// --- The window and the queue

class OutboundWindowTwo : public Outbound {
 protected:
  OutboundWindowTwo() : Outbound(config(), 2) {}
};

TEST_F(OutboundWindowTwo, AFullWindowQueuesInOrderAndDrainsAsAcksCome) {
  EXPECT_EQ(offer("m1", 1), kSent);
  EXPECT_EQ(offer("m2", 2), kSent);
  EXPECT_EQ(offer("m3", 1), kQueued);
  EXPECT_EQ(offer("m4", 2), kQueued);
  EXPECT_EQ(offer("m5", 1), kQueued);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1", "PUBLISH m2 q2 id=2"}));
  EXPECT_EQ(ob_.queued_count(), 3u);
  EXPECT_EQ(ob_.queued_bytes(), 3u);
  EXPECT_EQ(pubrec(2), AckResult::Pubrel);
  EXPECT_EQ(sent(), (Trace{"PUBREL id=2"}));  // still two open flows: nothing more
  EXPECT_EQ(puback(1), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m3 q1 id=3"}));
  EXPECT_EQ(pubcomp(2), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m4 q2 id=4"}));
  EXPECT_EQ(puback(3), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m5 q1 id=5"}));
  EXPECT_EQ(ob_.queued_count(), 0u);
  EXPECT_EQ(ob_.queued_bytes(), 0u);
  EXPECT_EQ(ob_.inflight_count(), 2u);
}

TEST_F(OutboundWindowOne, Qos0PassesStraightThroughButNeverOvertakesWhatWaits) {
  offer("m1", 1);
  EXPECT_EQ(offer("z1", 0), kSent);  // the window is full, but QoS 0 takes no slot
  EXPECT_EQ(offer("m2", 1), kQueued);
  EXPECT_EQ(offer("z2", 0), kQueued);  // behind m2
  EXPECT_EQ(offer("z3", 0), kQueued);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1", "PUBLISH z1 q0"}));
  puback(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m2 q1 id=2", "PUBLISH z2 q0", "PUBLISH z3 q0"}));
  EXPECT_EQ(offer("z4", 0), kSent);
  EXPECT_EQ(sent(), (Trace{"PUBLISH z4 q0"}));
}

TEST_F(Outbound, DeliveryIsAtTheLowerOfThePublishersAndTheSubscriptionsQos) {
  for (std::uint8_t pub = 0; pub <= 2; ++pub) {
    for (std::uint8_t sub = 0; sub <= 2; ++sub) {
      const std::string name = "p" + std::to_string(pub) + "s" + std::to_string(sub);
      offer(name, pub, sub);
    }
  }
  EXPECT_EQ(sent(), (Trace{"PUBLISH p0s0 q0", "PUBLISH p0s1 q0", "PUBLISH p0s2 q0",
                           "PUBLISH p1s0 q0", "PUBLISH p1s1 q1 id=1", "PUBLISH p1s2 q1 id=2",
                           "PUBLISH p2s0 q0", "PUBLISH p2s1 q1 id=3", "PUBLISH p2s2 q2 id=4"}));
  EXPECT_EQ(pubrec(3), AckResult::WrongState);  // downgraded to QoS 1: PUBACK it is
}

TEST_F(Outbound, TheMessageIsSharedAndTheSubscribersOwnPartsPassThrough) {
  const auto m = message("m1", 2);
  broker::Delivery d;
  d.message = m;
  d.subscription_qos = 1;
  d.retain = true;
  d.subscription_ids = {3, 7};
  broker::Outbound other(config(), 20);
  other.offer(d, now_, out_);
  ob_.offer(std::move(d), now_, out_);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].message.get(), m.get());  // one copy of topic and payload for both
  EXPECT_EQ(out_[1].message.get(), m.get());
  EXPECT_EQ(sent(),
            (Trace{"PUBLISH m1 q1 id=1 retain sid=3,7", "PUBLISH m1 q1 id=1 retain sid=3,7"}));
}

TEST(OutboundWindow, IsTheReceiveMaximumInV5AndMaxInflightBefore) {
  broker::OutboundConfig cfg;
  EXPECT_EQ(broker::inflight_window(cfg, true, 5), 5);
  EXPECT_EQ(broker::inflight_window(cfg, true, std::nullopt), 65535);  // v5 3.1.2.11.3
  EXPECT_EQ(broker::inflight_window(cfg, false, std::nullopt), 20);    // Mosquitto's default
  cfg.max_inflight = 0;
  EXPECT_EQ(broker::inflight_window(cfg, false, std::nullopt), 65535);  // no limit but the ids'
}

// --- Offline

TEST_F(Outbound, OfflineQueuesQos1And2ButDropsQos0ByDefault) {
  ob_.disconnected();
  EXPECT_FALSE(ob_.connected());
  EXPECT_EQ(offer("m1", 1), kQueued);
  EXPECT_EQ(offer("z1", 0), dropped(DropReason::Qos0Offline));
  EXPECT_EQ(offer("m2", 2), kQueued);
  EXPECT_EQ(offer("m3", 2, 0), dropped(DropReason::Qos0Offline));  // delivered at QoS 0
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(ob_.queued_count(), 2u);
  EXPECT_EQ(ob_.dropped(DropReason::Qos0Offline), 2u);
  reconnect();
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1", "PUBLISH m2 q2 id=2"}));  // first sends: no DUP
}

class OutboundQueueQos0 : public Outbound {
 protected:
  static broker::OutboundConfig with_qos0() {
    broker::OutboundConfig c = config();
    c.queue_qos0 = true;
    return c;
  }
  OutboundQueueQos0() : Outbound(with_qos0(), 1) {}
};

TEST_F(OutboundQueueQos0, OfflineQueuesQos0WhenAskedInOrderWithTheRest) {
  ob_.disconnected();
  EXPECT_EQ(offer("z1", 0), kQueued);
  EXPECT_EQ(offer("m1", 1), kQueued);
  EXPECT_EQ(offer("z2", 0), kQueued);
  EXPECT_EQ(offer("m2", 2), kQueued);
  EXPECT_EQ(offer("z3", 0), kQueued);
  reconnect(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH z1 q0", "PUBLISH m1 q1 id=1", "PUBLISH z2 q0"}));
  puback(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m2 q2 id=2", "PUBLISH z3 q0"}));
}

TEST_F(OutboundQueueQos0, Qos0WaitingBehindTheWindowStaysForAnOfflineClientWhenAsked) {
  offer("m1", 1);
  offer("m2", 1);
  offer("z1", 0);
  sent();
  EXPECT_EQ(ob_.disconnected(), 0u);
  EXPECT_EQ(ob_.queued_count(), 2u);
}

TEST_F(OutboundWindowOne, Qos0WaitingBehindTheWindowIsDroppedWhenTheClientGoes) {
  offer("m1", 1);
  offer("m2", 1);
  offer("z1", 0);
  offer("m3", 2);
  offer("z2", 0);
  sent();
  EXPECT_EQ(ob_.disconnected(), 2u);
  EXPECT_EQ(ob_.dropped(DropReason::Qos0Offline), 2u);
  EXPECT_EQ(ob_.queued_count(), 2u);
  EXPECT_EQ(ob_.queued_bytes(), 2u);
  reconnect(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1 dup"}));
  puback(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m2 q1 id=2"}));
  puback(2);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m3 q2 id=3"}));
}

// --- Limits

class OutboundLimits : public Outbound {
 protected:
  static broker::OutboundConfig limits() {
    broker::OutboundConfig c = config();
    c.max_queued_messages = 3;
    c.max_queued_bytes = 100;
    return c;
  }
  OutboundLimits() : Outbound(limits(), 1) {}
};

TEST_F(OutboundLimits, TheMessageLimitDropsNewMessagesAndCountsThem) {
  ob_.disconnected();
  EXPECT_EQ(offer("m1", 1), kQueued);
  EXPECT_EQ(offer("m2", 2), kQueued);
  EXPECT_EQ(offer("m3", 1), kQueued);
  EXPECT_EQ(offer("m4", 1), dropped(DropReason::QueueFull));  // the new one goes, as in Mosquitto
  EXPECT_EQ(offer("m5", 2), dropped(DropReason::QueueFull));
  EXPECT_EQ(ob_.dropped(DropReason::QueueFull), 2u);
  EXPECT_EQ(ob_.dropped_total(), 2u);
  EXPECT_EQ(ob_.queued_count(), 3u);
  reconnect(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1"}));
  EXPECT_EQ(offer("m6", 1), kQueued);  // room again: m1 left the queue for the window
  EXPECT_EQ(offer("m7", 1), dropped(DropReason::QueueFull));  // online behind the window too
}

TEST_F(OutboundLimits, TheByteLimitDropsWhatWouldPassItAndCountsIt) {
  ob_.disconnected();
  EXPECT_EQ(offer("m1", 1, 2, 60), kQueued);
  EXPECT_EQ(offer("m2", 1, 2, 41), dropped(DropReason::QueueBytes));
  EXPECT_EQ(offer("m3", 1, 2, 40), kQueued);  // exactly at the limit
  EXPECT_EQ(offer("m4", 1, 2, 1), dropped(DropReason::QueueBytes));
  EXPECT_EQ(offer("m5", 1, 2, 0), kQueued);  // an empty payload costs no bytes
  EXPECT_EQ(offer("m6", 1, 2, 0), dropped(DropReason::QueueFull));
  EXPECT_EQ(ob_.queued_bytes(), 100u);
  EXPECT_EQ(ob_.dropped(DropReason::QueueBytes), 2u);
  EXPECT_EQ(ob_.dropped(DropReason::QueueFull), 1u);
  EXPECT_EQ(ob_.dropped_total(), 3u);
}

TEST(OutboundNoLimits, ZeroMeansNoLimit) {
  broker::OutboundConfig cfg;
  cfg.max_queued_messages = 0;
  cfg.max_queued_bytes = 0;
  broker::Outbound ob(cfg, 20);
  ob.disconnected();
  std::vector<broker::Send> out;
  const auto m = message("m", 1, 1000);
  for (int i = 0; i < 5000; ++i) {
    broker::Delivery d;
    d.message = m;
    d.subscription_qos = 1;
    ASSERT_EQ(ob.offer(std::move(d), t0(), out), kQueued);
  }
  EXPECT_EQ(ob.queued_count(), 5000u);
  EXPECT_EQ(ob.queued_bytes(), 5000u * 1000u);
}

// --- Message expiry (v5 3.3.2.3.3)

TEST_F(Outbound, AMessageThatExpiredBeforeItCameIsDroppedAndCounted) {
  EXPECT_EQ(offer("m1", 1, 2, 1, now_), dropped(DropReason::Expired));
  EXPECT_EQ(offer("z1", 0, 2, 1, now_ - 1s), dropped(DropReason::Expired));
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(ob_.dropped(DropReason::Expired), 2u);
}

TEST_F(Outbound, ThePublishCarriesWhatIsLeftOfTheExpiryRoundedUp) {
  offer("m1", 1, 2, 1, now_ + 30s);
  offer("m2", 0, 2, 1, now_ + 10500ms);
  offer("m3", 2);  // none: none written
  EXPECT_EQ(sent(),
            (Trace{"PUBLISH m1 q1 id=1 exp=30", "PUBLISH m2 q0 exp=11", "PUBLISH m3 q2 id=2"}));
  EXPECT_EQ(broker::remaining_expiry_seconds(now_ + 1ns, now_), 1u);
  EXPECT_EQ(broker::remaining_expiry_seconds(now_ - 1s, now_), 0u);
}

TEST_F(OutboundWindowOne, AQueuedMessageWhoseExpiryPassesIsDroppedNotSent) {
  offer("m1", 1);
  offer("m2", 1, 2, 1, now_ + 10s);
  offer("z1", 0, 2, 1, now_ + 10s);
  offer("m3", 2, 2, 1, now_ + 100s);
  sent();
  now_ += 10s;
  puback(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m3 q2 id=2 exp=90"}));
  EXPECT_EQ(ob_.dropped(DropReason::Expired), 2u);
  EXPECT_EQ(ob_.queued_count(), 0u);
}

TEST_F(OutboundWindowOne, DropExpiredClearsTheQueueForTheGauges) {
  ob_.disconnected();
  offer("m1", 1, 2, 5, now_ + 10s);
  offer("m2", 1, 2, 7, now_ + 20s);
  offer("m3", 1, 2, 9);
  EXPECT_EQ(ob_.drop_expired(now_ + 10s), 1u);
  EXPECT_EQ(ob_.queued_count(), 2u);
  EXPECT_EQ(ob_.queued_bytes(), 16u);
  EXPECT_EQ(ob_.dropped(DropReason::Expired), 1u);
}

TEST_F(Outbound, AnOpenFlowIsFinishedEvenWhenItsMessageExpires) {
  offer("m1", 2, 2, 1, now_ + 5s);
  sent();
  ob_.disconnected();
  now_ += 10s;
  reconnect();
  // The client may hold id 1 (QoS 2 Method B): the flow must end, so the PUBLISH goes again.
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q2 id=1 dup exp=0"}));
  EXPECT_EQ(ob_.dropped_total(), 0u);
}

// --- Reconnect

TEST_F(Outbound, ReconnectResendsEveryOpenFlowInOrderWithDupAndPubrel) {
  offer("m1", 1);
  offer("m2", 2);
  offer("m3", 2);
  offer("m4", 1);
  offer("m5", 2);
  EXPECT_EQ(pubrec(3), AckResult::Pubrel);
  EXPECT_EQ(pubrec(2), AckResult::Pubrel);
  EXPECT_EQ(puback(4), AckResult::Done);
  sent();
  ob_.disconnected();
  EXPECT_EQ(ob_.inflight_count(), 4u);
  offer("m6", 1);  // while offline
  EXPECT_EQ(sent(), Trace{});
  reconnect();
  // PUBLISHes in the order first sent, PUBRELs in the order of their PUBRECs (4.6), then the
  // queue.
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1 dup", "PUBLISH m5 q2 id=5 dup", "PUBREL id=3",
                           "PUBREL id=2", "PUBLISH m6 q1 id=6"}));
  EXPECT_EQ(ob_.resent(), 4u);
  EXPECT_EQ(puback(1), AckResult::Done);
  EXPECT_EQ(pubrec(5), AckResult::Pubrel);
  EXPECT_EQ(pubcomp(3), AckResult::Done);
  EXPECT_EQ(pubcomp(2), AckResult::Done);
  EXPECT_EQ(pubcomp(5), AckResult::Done);
  EXPECT_EQ(puback(6), AckResult::Done);
  EXPECT_EQ(ob_.inflight_count(), 0u);
}

TEST_F(Outbound, AResentFlowIsResentAgainAfterAnotherCutKeepingItsPlace) {
  offer("m1", 2);
  offer("m2", 2);
  sent();
  ob_.disconnected();
  reconnect();
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q2 id=1 dup", "PUBLISH m2 q2 id=2 dup"}));
  ob_.disconnected();
  reconnect();
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q2 id=1 dup", "PUBLISH m2 q2 id=2 dup"}));
}

TEST_F(Outbound, ATakeoverIsADisconnectAndAReconnect) {
  offer("m1", 1);
  sent();
  reconnect();  // no disconnected() in between
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1 dup"}));
  EXPECT_EQ(puback(1), AckResult::Done);
}

class OutboundWindowFour : public Outbound {
 protected:
  OutboundWindowFour() : Outbound(config(), 4) {}
};

TEST_F(OutboundWindowFour, ASmallerReceiveMaximumAfterReconnectHoldsTheRestBack) {
  offer("m1", 2);
  pubrec(1);
  offer("m2", 1);
  offer("m3", 1);
  offer("m4", 1);
  sent();
  ob_.disconnected();
  reconnect(2);
  // The PUBREL takes a slot (its PUBCOMP is what frees it, v5 4.9), m2 the other.
  EXPECT_EQ(sent(), (Trace{"PUBREL id=1", "PUBLISH m2 q1 id=2 dup"}));
  EXPECT_EQ(ob_.window(), 2);
  EXPECT_EQ(ob_.inflight_count(), 4u);
  // Nothing overtakes the flows still to be resent, not even QoS 0.
  EXPECT_EQ(offer("z1", 0), kQueued);
  EXPECT_EQ(offer("m5", 1), kQueued);
  EXPECT_EQ(puback(2), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m3 q1 id=3 dup"}));
  EXPECT_EQ(pubcomp(1), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m4 q1 id=4 dup", "PUBLISH z1 q0"}));
  EXPECT_EQ(puback(3), AckResult::Done);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m5 q1 id=5"}));
}

TEST_F(OutboundWindowFour, AFlowAcknowledgedBeforeItsResendIsNotResent) {
  offer("m1", 1);
  offer("m2", 1);
  offer("m3", 2);
  sent();
  ob_.disconnected();
  reconnect(1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m1 q1 id=1 dup"}));
  // The client had m2 and m3 from the last connection; acknowledgements for them are taken.
  EXPECT_EQ(puback(2), AckResult::Done);
  EXPECT_EQ(pubrec(3), AckResult::Pubrel);
  EXPECT_EQ(sent(), (Trace{"PUBREL id=3"}));
  EXPECT_EQ(puback(1), AckResult::Done);
  EXPECT_EQ(sent(), Trace{});
  EXPECT_EQ(pubcomp(3), AckResult::Done);
  EXPECT_EQ(ob_.inflight_count(), 0u);
}

TEST_F(OutboundWindowFour, PubrelsAreResentEvenBeyondASmallerWindow) {
  for (const char* m : {"m1", "m2", "m3"}) offer(m, 2);
  offer("m4", 1);
  pubrec(1);
  pubrec(2);
  pubrec(3);
  sent();
  ob_.disconnected();
  reconnect(2);
  EXPECT_EQ(sent(), (Trace{"PUBREL id=1", "PUBREL id=2", "PUBREL id=3"}));
  pubcomp(1);
  EXPECT_EQ(sent(), Trace{});  // two still open
  pubcomp(2);
  EXPECT_EQ(sent(), (Trace{"PUBLISH m4 q1 id=4 dup"}));
}

// --- Packet identifiers

TEST_F(OutboundWindowFour, PacketIdsWrapFrom65535To1SkippingIdsStillInFlight) {
  offer("held1", 2);  // id 1, kept open awaiting PUBCOMP
  pubrec(1);
  offer("held2", 2);  // id 2, kept open awaiting PUBREC
  sent();
  for (std::uint32_t id = 3; id <= 65533; ++id) {
    offer("m", 1);
    ASSERT_EQ(out_.size(), 1u);
    ASSERT_EQ(out_[0].packet_id, id);
    out_.clear();
    ASSERT_EQ(puback(static_cast<std::uint16_t>(id)), AckResult::Done);
  }
  offer("a", 1);
  offer("b", 1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH a q1 id=65534", "PUBLISH b q1 id=65535"}));
  puback(65534);
  offer("c", 1);
  EXPECT_EQ(sent(), (Trace{"PUBLISH c q1 id=3"}));  // 1 and 2 are still in use
  pubcomp(1);
  puback(65535);
  offer("d", 2);
  EXPECT_EQ(sent(), (Trace{"PUBLISH d q2 id=4"}));  // 1 is free, but the count goes on
  puback(3);
  pubrec(2);
  pubcomp(2);
  pubrec(4);
  pubcomp(4);
  EXPECT_EQ(ob_.inflight_count(), 0u);
  EXPECT_EQ(ob_.unknown_acks(), 0u);
}

}  // namespace
}  // namespace mqtt_proxy::test
