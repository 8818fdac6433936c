// A seeded simulation of the broker's QoS 2 delivery to a persistent session whose connection
// breaks at random points: after a PUBLISH, before or after the client's PUBREC, before or after
// its PUBCOMP, with messages arriving meanwhile. The client follows the receiver's rules of MQTT
// 3.1.1 4.3.3 (Method B: it keeps the packet id of a PUBLISH it delivered until the PUBREL, and
// delivers a PUBLISH with a held id only once), and keeps that state across reconnects, as its
// session requires. Every message must reach its application exactly once, in order.
//
// Outbound's own simulation (outbound_sim_test.cpp) checks the flows; this one checks the broker
// around them: the session stored at the break and given back at the reconnect, the resend after
// the CONNACK, the acks read from the wire, the queue filled while the client is away.
#include <gtest/gtest.h>

#include <cstdio>
#include <deque>
#include <random>
#include <set>

#include "broker_fixture.hpp"

namespace mqtt_proxy::test {
namespace {

using mqtt::PacketType;

constexpr std::uint64_t kSeeds = 30;
constexpr int kMessages = 300;

class BrokerQosSim : public BrokerFixture, public ::testing::WithParamInterface<std::uint64_t> {
 protected:
  BrokerQosSim() : BrokerFixture({}, config(GetParam())) {}
  static broker::BrokerConfig config(std::uint64_t seed) {
    broker::BrokerConfig c = default_config();
    c.max_inflight = static_cast<std::uint16_t>(1 + seed % 4);  // windows 1 to 4
    c.max_queued_messages = 0;                                  // no limit: nothing may be lost
    return c;
  }

  void connect_subscriber() {
    sub_ = next_handle_++;
    open(sub_);
    feed(sub_, connect_packet("sim", 60, kUsername, kPassword, {}, false));
    connected_ = true;
  }
  void send_ack(PacketType type, std::uint16_t id) {
    Bytes b;
    mqtt::encode_packet_id_ack(b, type, id);
    feed(sub_, b);
  }
  void publish_next() {
    const std::string payload = std::to_string(published_++);
    const auto id = static_cast<std::uint16_t>(1 + published_ % 60000);
    feed(kPublisher, publish_packet("t", payload, 2, id));
    send_ack_from_publisher(id);
  }
  void send_ack_from_publisher(std::uint16_t id) {
    Bytes b;
    mqtt::encode_packet_id_ack(b, PacketType::Pubrel, id);
    feed(kPublisher, b);
    host_.take(kPublisher);  // PUBREC, PUBCOMP
  }
  // The connection breaks: what the broker sent and the client did not read yet is lost with it.
  void break_connection() {
    broker_.on_lost(sub_, "reset", now_);
    host_.take(sub_);
    pending_.clear();
    connected_ = false;
    ++breaks_;
  }
  // The client reads one packet and answers it; with `rng`, one answer in ten is lost (the
  // connection breaks before it). False when nothing was there to read.
  bool read_one(std::mt19937_64* rng) {
    if (pending_.empty()) {
      for (auto& f : host_.take(sub_)) pending_.push_back(std::move(f));
      if (pending_.empty()) return false;
    }
    const OwnedFrame f = std::move(pending_.front());
    pending_.pop_front();
    const bool answer_lost = rng && std::uniform_int_distribution<int>(0, 9)(*rng) == 0;
    if (f.type == PacketType::Publish) {
      mqtt::ClientPacket p;
      mqtt::FrameView v{static_cast<std::uint8_t>(0x30 | f.flags), f.body, 0};
      EXPECT_EQ(mqtt::decode_client_packet(v, mqtt::ProtocolVersion::V311, p),
                mqtt::DecodeError::None);
      const auto& pub = std::get<mqtt::Publish>(p);
      EXPECT_EQ(pub.qos, 2);
      if (pub.dup) ++resent_;
      // Method B: deliver unless the id is held (a resend of one delivered already).
      if (held_.insert(pub.packet_id).second) delivered_.push_back(str(pub.payload));
      if (answer_lost) {
        break_connection();
      } else {
        send_ack(PacketType::Pubrec, pub.packet_id);
      }
    } else if (f.type == PacketType::Pubrel) {
      const auto id = static_cast<std::uint16_t>((std::to_integer<unsigned>(f.body.at(0)) << 8) |
                                                 std::to_integer<unsigned>(f.body.at(1)));
      held_.erase(id);
      if (answer_lost) {
        break_connection();
      } else {
        send_ack(PacketType::Pubcomp, id);
      }
    }
    return true;
  }

  static constexpr broker::ClientHandle kPublisher = 1;
  broker::ClientHandle next_handle_ = 100;
  broker::ClientHandle sub_ = 0;
  bool connected_ = false;
  int published_ = 0;
  std::deque<OwnedFrame> pending_;
  std::set<std::uint16_t> held_;  // the client's Method B state, kept across connections
  std::vector<std::string> delivered_;
  int breaks_ = 0;  // so that the test can say it tested something
  int resent_ = 0;
};

TEST_P(BrokerQosSim, EveryQos2MessageReachesTheApplicationOnceAndInOrder) {
  std::mt19937_64 rng(GetParam());
  connect(kPublisher, "pub");
  connect_subscriber();
  Bytes sub;
  const std::string_view filter = "t";
  mqtt::encode_subscribe(sub, mqtt::ProtocolVersion::V311, 1,
                         std::span<const std::string_view>(&filter, 1), 2);
  feed(sub_, sub);
  host_.take(sub_);  // CONNACK, SUBACK
  for (int step = 0; step < 20 * kMessages && (published_ < kMessages || connected_); ++step) {
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    if (!connected_) {
      if (r < 30)
        connect_subscriber();  // away for a while, messages keep coming
      else if (published_ < kMessages)
        publish_next();
    } else if (r < 40 && published_ < kMessages) {
      publish_next();
    } else if (r < 43) {
      break_connection();
    } else {
      read_one(&rng);
    }
    if (published_ == kMessages && connected_ && pending_.empty() &&
        broker_.inflight_count() == 0 && broker_.queued_message_count() == 0) {
      break;
    }
  }
  // The last reconnect, and every packet read and answered.
  if (!connected_) connect_subscriber();
  for (int k = 0; k < 10 * kMessages && read_one(nullptr); ++k) {
  }
  ASSERT_EQ(published_, kMessages);
  std::vector<std::string> expected;
  for (int k = 0; k < kMessages; ++k) expected.push_back(std::to_string(k));
  EXPECT_EQ(delivered_, expected);
  // The run broke the connection often, and the broker had flows to resend.
  EXPECT_GT(breaks_, 10);
  EXPECT_GT(resent_, 0);
  std::printf("seed %llu: %d breaks, %d resent PUBLISHes\n",
              static_cast<unsigned long long>(GetParam()), breaks_, resent_);
  EXPECT_EQ(broker_.inflight_count(), 0u);
  EXPECT_EQ(counters_.mqtt_publish_dropped_queue_full, 0u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, BrokerQosSim, ::testing::Range<std::uint64_t>(0, kSeeds));

}  // namespace
}  // namespace mqtt_proxy::test
