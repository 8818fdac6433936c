// MQTT2MULTICAST, the proxy's side: the message bytes of the specification, and the client's
// REQUEST/REPLY state machine, queues, refreshes and frames, in virtual time.
#include "mqtt_proxy/m2m/client.hpp"

#include <gtest/gtest.h>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/wire/datagram.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using wire::Ipv4Address;
using wire::MacAddress;

constexpr MacAddress kOurMac{{0x02, 0, 0, 0, 0, 0x01}};
constexpr Ipv4Address kOurIp{0xc0a80165};       // 192.168.1.101
constexpr Ipv4Address kServer{0xc0a80164};      // 192.168.1.100
constexpr Ipv4Address kOtherProxy{0xc0a80168};  // 192.168.1.104
constexpr MacAddress kServerMac{{0x02, 0, 0, 0, 0x01, 0x00}};
constexpr MacAddress kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
constexpr Ipv4Address kGroup0{0xe1000000};  // 225.0.0.0
constexpr Ipv4Address kGroup1{0xe1000001};

Bytes hex_bytes(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size();) {
    if (hex[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(static_cast<std::byte>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    i += 2;
  }
  return out;
}

TEST(M2mProtocol, RequestBytesAsTheSpecification) {
  Bytes b;
  m2m::encode_request(b, 0x12345678, m2m::Flags::Subscribe, "topic1");
  EXPECT_EQ(to_hex(b), "01 12 34 56 78 01 00 06 74 6f 70 69 63 31");
  const auto r = m2m::parse_request(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tid, 0x12345678u);
  EXPECT_EQ(r->flags, 1);
  EXPECT_EQ(r->topic, "topic1");
}

TEST(M2mProtocol, TopicLengthCountsBytesNotCharacters) {
  Bytes b;
  m2m::encode_request(b, 1, m2m::Flags::Unsubscribe, "t\xc3\xb6");  // "tö": 2 characters, 3 bytes
  EXPECT_EQ(to_hex(b), "01 00 00 00 01 02 00 03 74 c3 b6");
}

TEST(M2mProtocol, ReplyBytesAsTheSpecification) {
  Bytes b;
  m2m::encode_reply(b, m2m::Reply{0x12345678, 0, kGroup0});
  EXPECT_EQ(to_hex(b), "02 12 34 56 78 00 e1 00 00 00");
  const auto r = m2m::parse_reply(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tid, 0x12345678u);
  EXPECT_EQ(r->group, kGroup0);
}

TEST(M2mProtocol, MalformedMessagesAreRejected) {
  EXPECT_FALSE(m2m::parse_request(hex_bytes("01 12 34 56 78")));                    // 5 bytes
  EXPECT_FALSE(m2m::parse_request(hex_bytes("01 12 34 56 78 01 00 06 74 6f 70")));  // short topic
  EXPECT_FALSE(m2m::parse_request(hex_bytes("01 12 34 56 78 01 00 01 74 6f")));     // trailing
  EXPECT_FALSE(m2m::parse_request(hex_bytes("03 12 34 56 78 01 00 01 74")));        // type 3
  EXPECT_FALSE(m2m::parse_reply(hex_bytes("02 12 34 56 78 00 e1 00 00")));          // 9 bytes
  EXPECT_FALSE(m2m::parse_reply(hex_bytes("02 12 34 56 78 00 e1 00 00 00 00")));    // 11 bytes
  EXPECT_FALSE(m2m::parse_reply(hex_bytes("01 12 34 56 78 00 e1 00 00 00")));       // a REQUEST
  EXPECT_TRUE(m2m::parse_request(hex_bytes("01 00 00 00 01 00 00 00")));            // empty topic
}

// One frame the client sent, taken apart and checked.
struct Sent {
  bool arp = false;
  MacAddress dst_mac;
  Ipv4Address dst_ip;
  std::uint8_t ttl = 0;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  Bytes payload;
  // The REQUEST inside, for frames to the server.
  std::uint32_t tid = 0;
  int flags = -1;
  std::string topic;
};

class M2mClientTest : public ::testing::Test {
 protected:
  M2mClientTest() { make(); }

  void make(const std::function<void(m2m::ClientConfig&)>& tweak = {}) {
    m2m::ClientConfig cfg;
    cfg.mac = kOurMac;
    cfg.address = kOurIp;
    cfg.prefix_len = 24;
    if (tweak) tweak(cfg);
    counters_ = {};
    client_ = std::make_unique<m2m::Client>(cfg, log::null_logger(), counters_);
  }

  // Starts and answers the ARP, so that REQUESTs go at once.
  void start_resolved() {
    client_->start(now_);
    client_->on_timers(now_);
    auto f = take();
    ASSERT_EQ(f.size(), 1u);
    ASSERT_TRUE(f[0].arp);
    client_->on_arp_reply(kServer, kServerMac, now_);
  }

  std::vector<Sent> take() {
    std::vector<Sent> out;
    for (const auto& f : client_->frames()) {
      Sent s;
      const auto eth = wire::EthernetView::parse(f);
      EXPECT_TRUE(eth);
      EXPECT_EQ(eth->src(), kOurMac);
      s.dst_mac = eth->dst();
      if (eth->ether_type() == wire::kEtherTypeArp) {
        const auto a = wire::Arp::parse(eth->payload());
        EXPECT_TRUE(a);
        EXPECT_EQ(a->operation, 1);
        EXPECT_EQ(a->sender_ip, kOurIp);
        EXPECT_EQ(a->target_ip, kServer);
        EXPECT_EQ(s.dst_mac, kBroadcast);
        s.arp = true;
        out.push_back(s);
        continue;
      }
      const auto ip = wire::Ipv4View::parse(eth->payload());
      EXPECT_TRUE(ip && ip->header_checksum_ok());
      EXPECT_EQ(ip->src(), kOurIp);
      const auto udp = wire::UdpView::parse(ip->payload());
      EXPECT_TRUE(udp && udp->checksum_ok(ip->src(), ip->dst()));
      s.dst_ip = ip->dst();
      s.ttl = ip->ttl();
      s.src_port = udp->src_port();
      s.dst_port = udp->dst_port();
      s.payload.assign(udp->payload().begin(), udp->payload().end());
      if (s.dst_ip == kServer) {
        const auto r = m2m::parse_request(udp->payload());
        EXPECT_TRUE(r);
        s.tid = r->tid;
        s.flags = r->flags;
        s.topic = std::string(r->topic);
      }
      out.push_back(std::move(s));
    }
    client_->clear_frames();
    return out;
  }

  std::vector<Sent> requests() {
    std::vector<Sent> out;
    for (auto& s : take()) {
      if (!s.arp && s.dst_ip == kServer) out.push_back(std::move(s));
    }
    return out;
  }

  void reply(std::uint32_t tid, Ipv4Address group, Ipv4Address from = kServer,
             std::uint16_t port = 11883) {
    Bytes b;
    m2m::encode_reply(b, m2m::Reply{tid, 0, group});
    client_->on_reply(from, port, b, now_);
  }

  void advance(Duration d) {
    now_ += d;
    client_->on_timers(now_);
  }

  TimePoint now_{std::chrono::seconds(1000)};
  metrics::Counters counters_;
  std::unique_ptr<m2m::Client> client_;
};

TEST_F(M2mClientTest, RequestWaitsForTheArpAnswerAndGoesToTheServersMac) {
  client_->start(now_);
  EXPECT_EQ(client_->next_deadline(), now_);
  client_->on_timers(now_);
  auto f = take();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].arp);
  client_->subscribed("topic1", now_);
  EXPECT_TRUE(take().empty());  // waits for the ARP answer
  now_ += 3ms;
  client_->on_arp_reply(kServer, kServerMac, now_);
  const auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].dst_mac, kServerMac);
  EXPECT_EQ(r[0].ttl, 64);
  EXPECT_EQ(r[0].src_port, 11882);
  EXPECT_EQ(r[0].dst_port, 11883);
  EXPECT_EQ(r[0].flags, 1);
  EXPECT_EQ(r[0].topic, "topic1");
}

TEST_F(M2mClientTest, WithoutAnArpAnswerRequestsGoToTheBroadcastAddress) {
  client_->start(now_);
  client_->on_timers(now_);
  take();
  client_->subscribed("topic1", now_);
  advance(499ms);
  EXPECT_TRUE(requests().empty());
  advance(1ms);
  const auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].dst_mac, kBroadcast);  // what the original controller needs
  // An ARP answer from someone else's address teaches nothing.
  client_->on_arp_reply(kOtherProxy, kServerMac, now_);
  client_->unsubscribed("topic1", now_);
  EXPECT_EQ(requests().at(0).dst_mac, kBroadcast);
}

TEST_F(M2mClientTest, ReplyJoinsTheGroupForASubscription) {
  start_resolved();
  client_->subscribed("topic1", now_);
  const auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  reply(r[0].tid, kGroup0);
  EXPECT_EQ(client_->group_of("topic1"), kGroup0);
  ASSERT_EQ(client_->memberships().size(), 1u);
  EXPECT_EQ(client_->memberships()[0].group, kGroup0);
  EXPECT_TRUE(client_->memberships()[0].join);
  EXPECT_EQ(client_->outstanding(), 0u);
  EXPECT_EQ(counters_.m2m_replies_received, 1u);
  advance(10s);
  EXPECT_TRUE(requests().empty());  // answered: no retransmission
}

TEST_F(M2mClientTest, RepliesFromElsewhereOrForNothingAreIgnored) {
  start_resolved();
  client_->subscribed("topic1", now_);
  const auto tid = requests().at(0).tid;
  reply(tid, kGroup0, kOtherProxy);                                // forged source address
  reply(tid, kGroup0, kServer, 11884);                             // wrong source port
  reply(tid ^ 1, kGroup0);                                         // no such transaction
  reply(tid, Ipv4Address{0xc0a80101});                             // not a multicast address
  client_->on_reply(kServer, 11883, hex_bytes("02 00 00"), now_);  // malformed
  EXPECT_EQ(counters_.m2m_replies_ignored, 5u);
  EXPECT_FALSE(client_->group_of("topic1"));
  reply(tid, kGroup0);  // the real one still counts
  EXPECT_EQ(client_->group_of("topic1"), kGroup0);
  reply(tid, kGroup0);  // and a copy of it does not
  EXPECT_EQ(counters_.m2m_replies_ignored, 6u);
}

TEST_F(M2mClientTest, RetransmitsWithBackoffThenGivesUpAndTriesAgainLater) {
  start_resolved();
  client_->subscribed("topic1", now_);
  const auto first = requests();
  ASSERT_EQ(first.size(), 1u);
  advance(999ms);
  EXPECT_TRUE(requests().empty());
  advance(1ms);  // 1 s
  auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].tid, first[0].tid);  // the same transaction
  advance(2s);                        // 3 s
  ASSERT_EQ(requests().size(), 1u);
  advance(4s);  // 7 s: three tries, given up
  EXPECT_TRUE(requests().empty());
  EXPECT_EQ(client_->outstanding(), 0u);
  EXPECT_EQ(counters_.m2m_request_retransmits, 2u);
  EXPECT_EQ(counters_.m2m_requests_unanswered, 1u);
  advance(30s);  // a subscription asks again: the controller may be back
  r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].flags, 1);
  EXPECT_NE(r[0].tid, first[0].tid);
  reply(r[0].tid, kGroup0);
  EXPECT_EQ(client_->group_of("topic1"), kGroup0);
}

TEST_F(M2mClientTest, PublishesWaitForTheAddressThenGoOnceEachToTheGroup) {
  start_resolved();
  client_->publish("topic1", as_bytes("message1"), false, now_);
  client_->publish("topic1", as_bytes("message2"), false, now_);
  const auto r = requests();
  ASSERT_EQ(r.size(), 1u);  // one REQUEST for the topic, however many PUBLISHes wait
  EXPECT_EQ(r[0].flags, 0);
  EXPECT_EQ(client_->queued("topic1"), 2u);
  EXPECT_EQ(counters_.m2m_publish_queued, 2u);
  reply(r[0].tid, kGroup0);
  auto sent = take();
  ASSERT_EQ(sent.size(), 2u);
  for (const auto& s : sent) {
    EXPECT_EQ(s.dst_ip, kGroup0);
    EXPECT_EQ(s.dst_mac, kBroadcast);
    EXPECT_EQ(s.ttl, 1);
    EXPECT_EQ(s.src_port, 1883);
    EXPECT_EQ(s.dst_port, 1883);
  }
  // A plain QoS 0 PUBLISH, the specification's example.
  EXPECT_EQ(to_hex(sent[0].payload), "30 10 00 06 74 6f 70 69 63 31 6d 65 73 73 61 67 65 31");
  client_->publish("topic1", as_bytes("message3"), false, now_);
  sent = take();
  ASSERT_EQ(sent.size(), 1u);  // known: at once, and no REQUEST
  EXPECT_EQ(sent[0].dst_ip, kGroup0);
  EXPECT_EQ(counters_.m2m_publish_out, 3u);
}

TEST_F(M2mClientTest, PublishSideAnnouncesItselfThoughTheSubscribeSideKnowsTheAddress) {
  start_resolved();
  client_->subscribed("topic1", now_);
  reply(requests().at(0).tid, kGroup0);
  client_->publish("topic1", as_bytes("m"), false, now_);
  const auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].flags, 0);                  // the original sent nothing here (its defect)
  EXPECT_EQ(client_->queued("topic1"), 1u);  // until the tree has us as a transmitter
  reply(r[0].tid, kGroup0);
  const auto sent = take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].dst_ip, kGroup0);
}

TEST_F(M2mClientTest, StoppedControllerDropsThatTopicsQueueAndLeavesOthersAlone) {
  start_resolved();
  client_->publish("a", as_bytes("1"), false, now_);
  client_->publish("a", as_bytes("2"), false, now_);
  const auto ra = requests().at(0);
  now_ += 500ms;
  client_->publish("b", as_bytes("x"), false, now_);
  const auto rb = requests().at(0);
  reply(rb.tid, kGroup1);  // b's answer comes; a's never does
  ASSERT_EQ(take().size(), 1u);
  advance(500ms);  // a: 1 s
  advance(2s);     // 3 s
  advance(4s);     // 7 s: given up
  auto frames = take();
  EXPECT_EQ(frames.size(), 2u);  // a's two retransmissions
  EXPECT_EQ(client_->queued("a"), 0u);
  EXPECT_EQ(counters_.m2m_publish_dropped, 2u);
  client_->publish("b", as_bytes("y"), false, now_);
  EXPECT_EQ(take().size(), 1u);                       // b goes on
  client_->publish("a", as_bytes("3"), false, now_);  // a starts over
  const auto again = requests();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0].tid, ra.tid);
}

TEST_F(M2mClientTest, QueueOfAPendingTopicIsBounded) {
  make([](m2m::ClientConfig& c) { c.max_queued_messages = 3; });
  start_resolved();
  for (int i = 0; i < 5; ++i) client_->publish("t", as_bytes("m"), false, now_);
  EXPECT_EQ(client_->queued("t"), 3u);
  EXPECT_EQ(counters_.m2m_publish_dropped, 2u);
}

TEST_F(M2mClientTest, OversizedPublishIsNotMulticast) {
  make([](m2m::ClientConfig& c) { c.max_payload = 100; });
  start_resolved();
  client_->publish("t", as_bytes(std::string(200, 'x')), false, now_);
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(counters_.m2m_publish_dropped, 1u);
}

TEST_F(M2mClientTest, LastSubscriberGoneSendsFlagsTwoTwiceAndLeavesTheGroup) {
  start_resolved();
  client_->subscribed("topic1", now_);
  reply(requests().at(0).tid, kGroup0);
  client_->memberships().clear();
  client_->unsubscribed("topic1", now_);
  auto r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].flags, 2);
  ASSERT_EQ(client_->memberships().size(), 1u);
  EXPECT_FALSE(client_->memberships()[0].join);
  advance(1s);
  r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].flags, 2);
  advance(2s);
  advance(3600s);
  EXPECT_TRUE(requests().empty());            // and never again: no refresh for a filter we dropped
  EXPECT_FALSE(client_->group_of("topic1"));  // forgotten
}

TEST_F(M2mClientTest, BothSidesRefreshBeforeTheFlowsIdleOut) {
  make([](m2m::ClientConfig& c) { c.refresh = 100s; });
  start_resolved();
  client_->subscribed("s", now_);
  reply(requests().at(0).tid, kGroup0);
  client_->publish("p", as_bytes("m"), false, now_);
  reply(requests().at(0).tid, kGroup1);
  take();
  advance(50s);
  client_->publish("p", as_bytes("m"), false, now_);
  take();
  advance(50s);  // 100 s: both again
  auto r = requests();
  ASSERT_EQ(r.size(), 2u);
  for (const auto& q : r) reply(q.tid, q.topic == "s" ? kGroup0 : kGroup1);
  EXPECT_EQ(counters_.m2m_refreshes, 2u);
  advance(100s);  // 200 s: p has not published for 150 s, so only s
  r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].topic, "s");
  reply(r[0].tid, kGroup0);
  advance(100s);  // 300 s: s again
  r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].topic, "s");
  now_ += 1s;
  client_->publish("p", as_bytes("m"), false, now_);  // after a pause longer than the refresh
  // The idle publish side was forgotten at 200 s: announced anew, the message held for the REPLY.
  r = requests();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].flags, 0);
  EXPECT_EQ(r[0].topic, "p");
  EXPECT_EQ(client_->queued("p"), 1u);
  reply(r[0].tid, kGroup1);
  const auto sent = take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].dst_ip, kGroup1);
}

TEST_F(M2mClientTest, PublishRefreshGoesOnAfterALongPause) {
  make([](m2m::ClientConfig& c) { c.refresh = 100s; });
  start_resolved();
  client_->publish("p", as_bytes("m"), false, now_);
  reply(requests().at(0).tid, kGroup1);
  take();
  advance(150s);  // the refresh at 100 s found it idle
  EXPECT_TRUE(requests().empty());
  client_->publish("p", as_bytes("m"), false, now_);  // announced again at once
  reply(requests().at(0).tid, kGroup1);
  take();
  // Publishing steadily from here on: refreshed every interval, not only after pauses.
  unsigned refreshes = 0;
  for (int i = 0; i < 50; ++i) {
    advance(10s);
    client_->publish("p", as_bytes("m"), false, now_);
    for (const auto& r : requests()) {
      EXPECT_EQ(r.flags, 0);
      reply(r.tid, kGroup1);
      ++refreshes;
    }
  }
  EXPECT_EQ(refreshes, 5u);  // 500 s at one per 100 s
}

TEST_F(M2mClientTest, TopicsPublishedOnceAreForgottenAfterAnIdleInterval) {
  make([](m2m::ClientConfig& c) {
    c.refresh = 100s;
    c.max_topics = 2;
  });
  start_resolved();
  client_->publish("a", as_bytes("m"), false, now_);
  client_->publish("b", as_bytes("m"), false, now_);
  for (const auto& r : requests()) reply(r.tid, r.topic == "a" ? kGroup0 : kGroup1);
  take();
  client_->publish("c", as_bytes("m"), false, now_);
  EXPECT_EQ(counters_.m2m_topics_refused, 1u);  // full
  advance(100s);
  EXPECT_FALSE(client_->group_of("a"));  // idle for an interval: forgotten
  client_->publish("c", as_bytes("m"), false, now_);
  EXPECT_EQ(counters_.m2m_topics_refused, 1u);
  ASSERT_EQ(requests().size(), 1u);
}

TEST_F(M2mClientTest, HeldPublishesAreBoundedAcrossTopics) {
  make([](m2m::ClientConfig& c) { c.max_queued_total_bytes = 100; });
  start_resolved();
  for (int i = 0; i < 10; ++i) {
    client_->publish("t" + std::to_string(i), as_bytes(std::string(20, 'x')), false, now_);
  }
  // Each is 2 + 2 + 2 + 20 = 26 bytes: three fit in 100.
  EXPECT_EQ(counters_.m2m_publish_queued, 3u);
  EXPECT_EQ(counters_.m2m_publish_dropped, 7u);
}

TEST_F(M2mClientTest, SubscriberAfterThePublishSideJoinsTheKnownGroup) {
  start_resolved();
  client_->publish("t", as_bytes("m"), false, now_);
  reply(requests().at(0).tid, kGroup0);
  take();
  EXPECT_TRUE(client_->memberships().empty());  // publishing alone joins nothing
  client_->subscribed("t", now_);
  ASSERT_EQ(client_->memberships().size(), 1u);  // known already: joined at once
  EXPECT_TRUE(client_->memberships()[0].join);
  reply(requests().at(0).tid, kGroup0);  // the flags 1 REPLY, same group: nothing more
  EXPECT_EQ(client_->memberships().size(), 1u);
  client_->unsubscribed("t", now_);
  ASSERT_EQ(client_->memberships().size(), 2u);
  EXPECT_FALSE(client_->memberships()[1].join);
  take();
  client_->subscribed("t", now_);  // the topic is still published: kept, and joined again
  ASSERT_EQ(client_->memberships().size(), 3u);
  EXPECT_TRUE(client_->memberships()[2].join);
  EXPECT_TRUE(client_->joined(kGroup0));
}

TEST_F(M2mClientTest, RestartedControllerMovesATopicToAnotherGroup) {
  start_resolved();
  client_->subscribed("s", now_);
  reply(requests().at(0).tid, kGroup0);
  client_->memberships().clear();
  advance(1800s);
  reply(requests().at(0).tid, kGroup1);
  ASSERT_EQ(client_->memberships().size(), 2u);
  EXPECT_EQ(client_->memberships()[0].group, kGroup0);
  EXPECT_FALSE(client_->memberships()[0].join);
  EXPECT_EQ(client_->memberships()[1].group, kGroup1);
  EXPECT_TRUE(client_->memberships()[1].join);
}

TEST_F(M2mClientTest, GroupEthernetAddressOnRequest) {
  make([](m2m::ClientConfig& c) { c.ethernet_broadcast = false; });
  start_resolved();
  client_->publish("t", as_bytes("m"), false, now_);
  reply(requests().at(0).tid, Ipv4Address{0xe1810203});  // 225.129.2.3
  const auto s = take();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].dst_mac, (MacAddress{{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}}));
}

TEST_F(M2mClientTest, DatagramsAreTakenFromTheSegmentOnlyAndMustBeOnePublish) {
  Bytes publish;
  mqtt::encode_publish(publish, "topic1", as_bytes("message1"), 0, false, false, 0);
  const auto p = client_->on_datagram(kOtherProxy, kGroup0, publish);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->topic, "topic1");
  EXPECT_EQ(as_chars(p->payload), "message1");
  EXPECT_FALSE(client_->on_datagram(Ipv4Address{0x0a000001}, kGroup0, publish));  // 10.0.0.1
  EXPECT_FALSE(client_->on_datagram(kOurIp, kGroup0, publish));                   // our own
  EXPECT_FALSE(client_->on_datagram(kOtherProxy, kGroup0, hex_bytes("82 05 00 01 00 01 61")));
  EXPECT_FALSE(client_->on_datagram(kOtherProxy, kGroup0, hex_bytes("30 10 00 06")));
  // QoS 1 as the original forwards a client's packet: delivered (at QoS 0 here).
  Bytes q1;
  mqtt::encode_publish(q1, "topic1", as_bytes("x"), 1, false, false, 7);
  EXPECT_TRUE(client_->on_datagram(kOtherProxy, kGroup0, q1));
  EXPECT_EQ(counters_.m2m_publish_in, 2u);
  EXPECT_EQ(counters_.m2m_datagrams_rejected, 4u);
}

}  // namespace
}  // namespace mqtt_proxy::test
