// The catalogue of malformed MQTT input and protocol violations (ecosystem-reliability.md 4.2), one
// test per row, numbered as there. Each feeds the bytes to a broker with a bystander client and
// checks the required behaviour: the offender is closed (a v5 one told why in a DISCONNECT), the
// violation is counted, and the bystander still gets its messages.
#include <gtest/gtest.h>

#include "broker_fixture.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;

constexpr broker::ClientHandle kBystander = 100;
constexpr broker::ClientHandle kOffender = 1;

class Catalogue : public BrokerFixture {
 protected:
  Catalogue() {
    connect(kBystander, "bystander");
    subscribe(kBystander, "ok");
    host_.take(kBystander);
  }

  // Connects the offender with MQTT 5 or 3.1.1.
  void connect_offender(bool v5) {
    open(kOffender);
    mqtt::Connect c;
    c.version = v5 ? mqtt::ProtocolVersion::V5 : mqtt::ProtocolVersion::V311;
    c.client_id = "offender";
    c.keepalive = 60;
    c.username = "jorge";
    c.password = as_bytes("passwd");
    Bytes b;
    mqtt::encode_connect(b, c);
    feed(kOffender, b);
    host_.take(kOffender);
  }

  // The offender was closed after being sent only `expected_reply` (hex of its last packets, "" for
  // none); the bystander is undisturbed.
  void expect_closed(std::string_view expected_reply = "") {
    EXPECT_TRUE(host_.closed.contains(kOffender));
    std::string reply;
    for (const auto& f : host_.take(kOffender)) {
      reply += (reply.empty() ? "" : " | ") + to_hex(f.wire);
    }
    EXPECT_EQ(reply, expected_reply);
    bystander_still_served();
  }

  void bystander_still_served() {
    connect(200, "publisher");
    publish(200, "ok", "still here");
    EXPECT_EQ(received(kBystander), (std::vector<std::string>{"ok=still here"}));
    EXPECT_FALSE(host_.closed.contains(kBystander));
  }
};

TEST_F(Catalogue, R01_FiveByteRemainingLength) {
  connect_offender(true);
  feed(kOffender, bytes("30 ff ff ff ff 01"));
  expect_closed("e0 02 81 00");
  EXPECT_EQ(counters_.mqtt_protocol_errors, 1u);
}

TEST_F(Catalogue, R02_NonMinimalRemainingLengthIsMalformedInV5Only) {
  connect_offender(false);
  feed(kOffender, bytes("c0 80 00"));  // PINGREQ with a two-byte zero length: accepted in 3.1.1
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).wire), "d0 00");
  broker_.on_lost(kOffender, "done", now_);
  connect_offender(true);
  feed(kOffender, bytes("c0 80 00"));
  expect_closed("e0 02 81 00");
}

TEST_F(Catalogue, R03_LengthBeyondTheDataWaitsWithoutAllocatingIt) {
  connect_offender(false);
  feed(kOffender, bytes("30 ff ff 7f 00 01 61"));  // announces 2 MiB, sends 3 bytes
  EXPECT_FALSE(host_.closed.contains(kOffender));
  bystander_still_served();
  broker_.on_timers(now_ + 91s);  // keepalive 60 s x 1.5: the dribbling client ends
  EXPECT_TRUE(host_.closed.contains(kOffender));
}

TEST_F(Catalogue, R04_LengthAboveTheMaximumPacketSize) {
  connect_offender(true);
  feed(kOffender, bytes("30 ff ff ff 7f"));  // 268,435,455 > 16 MiB
  expect_closed("e0 02 95 00");
}

TEST_F(Catalogue, R05_FirstPacketNotConnect) {
  open(kOffender);
  feed(kOffender, bytes("c0 00"));
  expect_closed();
}

TEST_F(Catalogue, R06_SecondConnect) {
  connect_offender(true);
  feed(kOffender, connect_packet("again"));
  expect_closed("e0 02 82 00");
}

TEST_F(Catalogue, R07_ProtocolNameNotMqtt) {
  open(kOffender);
  feed(kOffender, bytes("10 0c 00 04 4d 51 54 58 04 02 00 3c 00 00"));
  expect_closed();
}

TEST_F(Catalogue, R08_UnsupportedProtocolLevel) {
  open(kOffender);
  feed(kOffender, bytes("10 0c 00 04 4d 51 54 54 06 02 00 3c 00 00"));
  expect_closed("20 02 00 01");
}

TEST_F(Catalogue, R09_ReservedConnectFlag) {
  open(kOffender);
  feed(kOffender, bytes("10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00"));
  expect_closed();
}

TEST_F(Catalogue, R10_WillQos3AndWillFlagsWithoutWill) {
  open(kOffender);
  feed(kOffender, bytes("10 0c 00 04 4d 51 54 54 04 1e 00 3c 00 00"));
  expect_closed();
  open(2);
  feed(2, bytes("10 0c 00 04 4d 51 54 54 04 22 00 3c 00 00"));
  EXPECT_TRUE(host_.closed.contains(2));
}

TEST_F(Catalogue, R11_PasswordWithoutUsernameIn311) {
  open(kOffender);
  feed(kOffender, bytes("10 0c 00 04 4d 51 54 54 04 42 00 3c 00 00"));
  expect_closed();
}

TEST_F(Catalogue, R12_EmptyClientIdWithoutCleanSession) {
  open(kOffender);
  feed(kOffender, connect_packet("", 60, "jorge", "passwd", {}, false));
  expect_closed("20 02 00 02");
}

TEST_F(Catalogue, R13_SameClientIdTakesOver) {
  connect_offender(true);
  connect(2, "offender");
  expect_closed("e0 02 8e 00");
}

TEST_F(Catalogue, R14_BadCredentials) {
  open(kOffender);
  feed(kOffender, connect_packet("x", 60, "jorge", "wrong"));
  expect_closed("20 02 00 05");
}

TEST_F(Catalogue, R15_ReservedFixedHeaderFlags) {
  connect_offender(false);
  feed(kOffender, bytes("80 06 00 01 00 01 61 00"));  // SUBSCRIBE with flags 0000
  expect_closed();
}

TEST_F(Catalogue, R16_ReservedPacketTypes) {
  connect_offender(false);
  feed(kOffender, bytes("00 00"));
  expect_closed();
  connect(3, "other");
  feed(3, bytes("f0 00"));  // 15 is AUTH only in v5
  EXPECT_TRUE(host_.closed.contains(3));
}

TEST_F(Catalogue, R17_ServerToClientPacketFromAClient) {
  connect_offender(true);
  feed(kOffender, bytes("20 03 00 00 00"));  // a v5 CONNACK (CVE-2021-28166 class)
  expect_closed("e0 02 82 00");
}

TEST_F(Catalogue, R18_PublishQos3) {
  connect_offender(true);
  feed(kOffender, bytes("36 03 00 01 61"));
  expect_closed("e0 02 81 00");
}

TEST_F(Catalogue, R19_DupWithQos0) {
  connect_offender(true);
  feed(kOffender, bytes("38 03 00 01 61"));
  expect_closed("e0 02 82 00");
}

TEST_F(Catalogue, R20_WildcardInPublishTopic) {
  connect_offender(true);
  feed(kOffender, bytes("30 04 00 01 2b 00"));  // topic "+", no properties
  expect_closed("e0 02 90 00");
}

TEST_F(Catalogue, R21_EmptyPublishTopic) {
  connect_offender(false);
  feed(kOffender, bytes("30 02 00 00"));
  expect_closed();
  connect_offender(true);
  feed(kOffender, bytes("30 03 00 00 00"));  // v5: only with a topic alias
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).wire), "e0 02 82 00");
}

TEST_F(Catalogue, R22_InvalidUtf8) {
  connect_offender(false);
  feed(kOffender, bytes("30 05 00 02 c0 af 78"));  // overlong '/'
  expect_closed();
  open(3);
  feed(3, bytes("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 ed a0 80"));  // surrogate in the id
  EXPECT_TRUE(host_.closed.contains(3));
}

TEST_F(Catalogue, R23_NullCharacter) {
  connect_offender(true);
  feed(kOffender, bytes("30 05 00 02 61 00 00"));
  expect_closed("e0 02 81 00");
}

TEST_F(Catalogue, R24_StringLengthPastThePacket) {
  connect_offender(true);
  feed(kOffender, bytes("30 03 00 09 61"));
  expect_closed("e0 02 81 00");
}

TEST_F(Catalogue, R25_PacketIdZero) {
  connect_offender(false);
  feed(kOffender, bytes("32 05 00 01 61 00 00"));
  expect_closed();
  connect(3, "other");
  feed(3, bytes("82 06 00 00 00 01 61 00"));
  EXPECT_TRUE(host_.closed.contains(3));
}

TEST_F(Catalogue, R26_SubscribeWithoutFilters) {
  connect_offender(true);
  feed(kOffender, bytes("82 03 00 01 00"));
  expect_closed("e0 02 82 00");
}

TEST_F(Catalogue, R27_SubscriptionOptionsReservedBitsQos3RetainHandling3) {
  connect_offender(false);
  feed(kOffender, bytes("82 06 00 01 00 01 61 04"));  // bit 2 is reserved in 3.1.1
  expect_closed();
  connect(3, "q3");
  feed(3, bytes("82 06 00 01 00 01 61 03"));
  EXPECT_TRUE(host_.closed.contains(3));
  connect_offender(true);
  feed(kOffender, bytes("82 07 00 01 00 00 01 61 30"));  // v5 Retain Handling 3
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).wire), "e0 02 81 00");
}

TEST_F(Catalogue, R28_EmptyTopicFilter) {
  connect_offender(false);
  feed(kOffender, bytes("82 05 00 01 00 00 00"));
  expect_closed();
}

TEST_F(Catalogue, R29_MisplacedWildcardsFailThatFilterOnly) {
  connect_offender(false);
  feed(kOffender, subscribe_packet("a/#/b"));
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).body), "00 01 80");
  EXPECT_FALSE(host_.closed.contains(kOffender));
  bystander_still_served();
}

TEST_F(Catalogue, R30_UnsubscribeWithoutFilters) {
  connect_offender(false);
  feed(kOffender, bytes("a2 02 00 01"));
  expect_closed();
}

TEST_F(Catalogue, R31_LongTopicsAndDeepLevels) {
  connect_offender(false);
  std::string deep;
  for (int i = 0; i < 30000; ++i) deep += i ? "/a" : "a";  // 59,999 bytes, 30,000 levels
  subscribe(kOffender, deep + "/#");
  connect(2, "pub");
  publish(2, deep + "/x", "deep");
  EXPECT_EQ(received(kOffender).size(), 1u);
  EXPECT_FALSE(host_.closed.contains(kOffender));
}

TEST_F(Catalogue, R32_LeadingWildcardsDoNotMatchDollarTopics) {
  connect_offender(false);
  subscribe(kOffender, "#");
  subscribe(kOffender, "+/x", 2);
  host_.take(kOffender);
  connect(2, "pub");
  publish(2, "$SYS/x", "hidden");
  EXPECT_TRUE(received(kOffender).empty());
}

TEST_F(Catalogue, R33_KeepaliveExpiry) {
  open(kOffender);
  feed(kOffender, connect_packet("idle", 2));
  host_.take(kOffender);
  broker_.on_timers(now_ + 2999ms);
  EXPECT_FALSE(host_.closed.contains(kOffender));
  broker_.on_timers(now_ + 3s);
  EXPECT_TRUE(host_.closed.contains(kOffender));
  EXPECT_EQ(counters_.mqtt_keepalive_expired, 1u);
}

TEST_F(Catalogue, R34_SlowlorisConnect) {
  open(kOffender);
  const Bytes c = connect_packet("slow");
  for (std::size_t i = 0; i + 1 < c.size(); ++i) feed(kOffender, Bytes{c[i]});
  broker_.on_timers(now_ + 10s);  // the CONNECT deadline
  expect_closed();
}

TEST_F(Catalogue, R35_InboundQos1And2AreAcknowledged) {
  connect_offender(false);
  feed(kOffender, publish_packet("ok", "q1", 1, 7));
  feed(kOffender, publish_packet("ok", "q2", 2, 8));
  feed(kOffender, bytes("62 02 00 08"));
  std::string acks;
  for (const auto& f : host_.take(kOffender)) acks += to_hex(f.wire) + " | ";
  EXPECT_EQ(acks, "40 02 00 07 | 50 02 00 08 | 70 02 00 08 | ");
  EXPECT_EQ(received(kBystander), (std::vector<std::string>{"ok=q1", "ok=q2"}));
}

TEST_F(Catalogue, R36_SubscribeAskingQos2IsGrantedQos2) {
  connect_offender(false);
  feed(kOffender, bytes("82 06 00 01 00 01 61 02"));
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).body), "00 01 02");
}

TEST_F(Catalogue, R37_V5PropertyViolations) {
  connect_offender(true);
  // PUBLISH with Topic Alias twice.
  feed(kOffender, bytes("30 0b 00 01 61 06 23 00 01 23 00 01 78"));
  expect_closed("e0 02 82 00");
  connect_offender(true);
  feed(kOffender, bytes("30 08 00 01 61 03 23 00 00 78"));  // Topic Alias 0
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).wire), "e0 02 94 00");
  connect_offender(true);
  feed(kOffender, bytes("30 07 00 01 61 02 7f 00 78"));  // unknown property
  EXPECT_EQ(to_hex(host_.take(kOffender).at(0).wire), "e0 02 81 00");
}

TEST_F(Catalogue, R38_ManyUserPropertiesInConnectAreLinear) {
  open(kOffender);
  mqtt::Connect c;
  c.version = mqtt::ProtocolVersion::V5;
  c.client_id = "props";
  c.username = "jorge";
  c.password = as_bytes("passwd");
  Bytes props;
  for (int i = 0; i < 20000; ++i) append(props, bytes("26 00 01 6b 00 01 76"));
  c.properties.raw = props;
  Bytes b;
  mqtt::encode_connect(b, c);
  feed(kOffender, b);
  EXPECT_EQ(host_.take(kOffender).at(0).body.at(1), std::byte{0x00});  // accepted
}

TEST_F(Catalogue, R39_SubscriptionsAndConnectionsAreCounted) {
  connect_offender(false);
  for (int i = 0; i < 1000; ++i) subscribe(kOffender, "many/" + std::to_string(i));
  EXPECT_EQ(counters_.mqtt_subscriptions, 1001u);  // with the bystander's
  EXPECT_EQ(broker_.local_filter_count(), 1001u);
}

TEST_F(Catalogue, R40_PacketBoundaryInsideTheLengthAndManyPerChunk) {
  connect_offender(false);
  const Bytes p = publish_packet("ok", std::string(200, 'x'));  // two length bytes
  feed(kOffender, Bytes(p.begin(), p.begin() + 2));             // cut inside the length
  feed(kOffender, Bytes(p.begin() + 2, p.end()));
  Bytes two = publish_packet("ok", "a");
  append(two, publish_packet("ok", "b"));
  feed(kOffender, two);
  EXPECT_EQ(received(kBystander).size(), 3u);
}

}  // namespace
}  // namespace mqtt_proxy::test
