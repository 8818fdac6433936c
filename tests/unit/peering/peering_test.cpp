#include "mqtt_proxy/peering/peering.hpp"

#include <gtest/gtest.h>

#include "broker_fixture.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"

namespace mqtt_proxy::test {
namespace {

using wire::Ipv4Address;
using namespace std::chrono_literals;

const Ipv4Address kPeerA = *Ipv4Address::parse("192.168.1.104");
const Ipv4Address kPeerB = *Ipv4Address::parse("192.168.1.103");
const Ipv4Address kStranger = *Ipv4Address::parse("10.9.9.9");

class Peering : public ::testing::Test {
 protected:
  Peering() : p_(peering::PeeringConfig{{kPeerA, kPeerB}}, log::null_logger(), c_) {}

  metrics::Counters c_;
  peering::Peering p_;
};

TEST_F(Peering, LocalInterestIsAnnouncedToEveryPeerAsPlainMqtt) {
  p_.local_filter_added("topic1");
  const auto& out = p_.outbox();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].dst, kPeerA);
  EXPECT_EQ(out[1].dst, kPeerB);
  EXPECT_EQ(to_hex(out[0].bytes), "82 0b 00 01 00 06 74 6f 70 69 63 31 00");
  p_.clear_outbox();
  p_.local_filter_removed("topic1");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(to_hex(out[0].bytes), "a2 0a 00 02 00 06 74 6f 70 69 63 31");
}

TEST_F(Peering, PublishGoesOnlyToPeersWithAMatchingFilter) {
  p_.on_datagram(kPeerA, subscribe_packet("sensors/#"));
  p_.on_datagram(kPeerB, subscribe_packet("other"));
  p_.forward_publish("sensors/t", as_bytes("21"), false);
  ASSERT_EQ(p_.outbox().size(), 1u);
  EXPECT_EQ(p_.outbox()[0].dst, kPeerA);
  EXPECT_EQ(to_hex(p_.outbox()[0].bytes),
            to_hex(bytes("30 0d 00 09 73 65 6e 73 6f 72 73 2f 74 32 31")));
  EXPECT_EQ(c_.peer_publish_out, 1u);
}

TEST_F(Peering, OnePeerWithSeveralMatchingFiltersGetsOneDatagram) {
  p_.on_datagram(kPeerA, subscribe_packet("a/#"));
  p_.on_datagram(kPeerA, subscribe_packet("a/+"));
  p_.forward_publish("a/b", as_bytes("x"), false);
  EXPECT_EQ(p_.outbox().size(), 1u);
}

TEST_F(Peering, StandardUnsubscribeRemovesInterest) {
  p_.on_datagram(kPeerA, subscribe_packet("t"));
  EXPECT_TRUE(p_.peer_wants(kPeerA, "t"));
  p_.on_datagram(kPeerA, unsubscribe_packet("t"));
  EXPECT_FALSE(p_.peer_wants(kPeerA, "t"));
  p_.forward_publish("t", as_bytes("x"), false);
  EXPECT_TRUE(p_.outbox().empty());
}

TEST_F(Peering, PrototypeType11UnsubscribeIsAccepted) {
  p_.on_datagram(kPeerA, subscribe_packet("topic1"));
  // Type 11, flags 0, packet id 1, one length-prefixed topic: what the Scapy prototype sends.
  p_.on_datagram(kPeerA, bytes("b0 0a 00 01 00 06 74 6f 70 69 63 31"));
  EXPECT_FALSE(p_.peer_wants(kPeerA, "topic1"));
  EXPECT_EQ(c_.peer_unsubscribe_in, 1u);
}

TEST_F(Peering, SubscribeWithFlagsZeroFromHandBuiltPeersIsAccepted) {
  p_.on_datagram(kPeerA, bytes("80 0b 00 01 00 06 74 6f 70 69 63 31 00"));
  EXPECT_TRUE(p_.peer_wants(kPeerA, "topic1"));
}

TEST_F(Peering, RepeatedSubscribeIsIdempotent) {
  p_.on_datagram(kPeerA, subscribe_packet("t"));
  p_.on_datagram(kPeerA, subscribe_packet("t"));
  EXPECT_EQ(p_.peer_filter_count(kPeerA), 1u);
  p_.on_datagram(kPeerA, unsubscribe_packet("t"));
  EXPECT_EQ(p_.peer_filter_count(kPeerA), 0u);
}

TEST_F(Peering, PeerPublishIsReturnedForLocalDelivery) {
  const auto pub = publish_packet("x/y", "data", 1, 42);  // QoS accepted, ignored
  const auto got = p_.on_datagram(kPeerB, pub);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "x/y");
  EXPECT_EQ(str(got[0].payload), "data");
  EXPECT_TRUE(p_.outbox().empty());  // no acknowledgement on the peer channel
}

TEST_F(Peering, TrafficIsCountedPerPeerAsWellAsInTotal) {
  p_.on_datagram(kPeerA, subscribe_packet("sensors/#"));
  p_.on_datagram(kPeerB, publish_packet("x/y", "data", 0, 0));
  p_.on_datagram(kPeerB, publish_packet("x/z", "data", 0, 0));
  p_.forward_publish("sensors/t", as_bytes("21"), false);
  p_.on_datagram(kStranger, publish_packet("x/y", "data", 0, 0));  // not a peer's: not counted
  const auto status = p_.peer_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].addr, kPeerA);
  EXPECT_EQ(status[0].traffic.datagrams_in, 1u);
  EXPECT_EQ(status[0].traffic.datagrams_out, 1u);
  EXPECT_EQ(status[0].traffic.publish_in, 0u);
  EXPECT_EQ(status[0].traffic.publish_out, 1u);
  EXPECT_EQ(status[1].traffic.datagrams_in, 2u);
  EXPECT_EQ(status[1].traffic.datagrams_out, 0u);
  EXPECT_EQ(status[1].traffic.publish_in, 2u);
  EXPECT_EQ(status[1].traffic.publish_out, 0u);
  EXPECT_EQ(c_.peer_datagrams_in, status[0].traffic.datagrams_in + status[1].traffic.datagrams_in);
  EXPECT_EQ(c_.peer_publish_in, 2u);
  EXPECT_EQ(c_.peer_publish_out, 1u);
}

TEST_F(Peering, DatagramsFromStrangersAreIgnoredAndCounted) {
  EXPECT_TRUE(p_.on_datagram(kStranger, publish_packet("t", "spoof")).empty());
  EXPECT_TRUE(p_.on_datagram(kStranger, subscribe_packet("#")).empty());
  EXPECT_EQ(c_.peer_datagrams_unknown_source, 2u);
  p_.forward_publish("t", as_bytes("x"), false);
  EXPECT_TRUE(p_.outbox().empty());
}

TEST_F(Peering, MalformedDatagramsAreDroppedAndCounted) {
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("")).empty());
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("30")).empty());              // truncated header
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("30 05 00 01 74")).empty());  // shorter than announced
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("30 03 00 01 23")).empty());  // wildcard topic
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("c0 00")).empty());           // PINGREQ: not used
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("b0 03 00 01 00")).empty());  // bad legacy unsubscribe
  EXPECT_TRUE(p_.on_datagram(kPeerA, bytes("30 ff ff ff ff 01")).empty());  // five length bytes
  EXPECT_EQ(c_.peer_datagrams_malformed, 7u);
  EXPECT_EQ(c_.peer_publish_in, 0u);
}

TEST_F(Peering, InvalidFilterInPeerSubscribeIsSkipped) {
  p_.on_datagram(kPeerA, bytes("82 0c 00 01 00 03 61 23 62 00 00 01 63 00"));  // "a#b", then "c"
  EXPECT_EQ(p_.peer_filter_count(kPeerA), 1u);
  EXPECT_TRUE(p_.peer_wants(kPeerA, "c"));
}

TEST_F(Peering, OversizedPublishIsNotForwarded) {
  metrics::Counters c;
  peering::Peering small({{kPeerA}, 100}, log::null_logger(), c);
  small.on_datagram(kPeerA, subscribe_packet("t"));
  small.forward_publish("t", as_bytes(std::string(200, 'x')), false);
  EXPECT_TRUE(small.outbox().empty());
  EXPECT_EQ(c.peer_publish_too_large, 1u);
}

TEST_F(Peering, RefreshResendsLocalInterest) {
  metrics::Counters c;
  peering::PeeringConfig cfg{{kPeerA}, 65507, 30s};
  cfg.extension = false;  // only the refresh: no HELLOs
  peering::Peering r(cfg, log::null_logger(), c);
  r.start(t0());
  EXPECT_FALSE(r.next_deadline());  // nothing to refresh: no wake-ups
  r.local_filter_added("a", t0());
  r.local_filter_added("b", t0());
  r.clear_outbox();
  r.on_timers(t0() + 29s);
  EXPECT_TRUE(r.outbox().empty());
  // One filter at a time, spread over the interval: each is refreshed once per 30 s, and a peer
  // that reads a packet at a time (the prototype) never gets a burst.
  r.on_timers(t0() + 30s);
  ASSERT_EQ(r.outbox().size(), 1u);
  EXPECT_EQ(r.outbox()[0].bytes, subscribe_packet("a", 3));
  EXPECT_EQ(*r.next_deadline(), t0() + 45s);
  r.on_timers(t0() + 45s);
  ASSERT_EQ(r.outbox().size(), 2u);
  EXPECT_EQ(r.outbox()[1].bytes, subscribe_packet("b", 4));
  r.on_timers(t0() + 60s);
  ASSERT_EQ(r.outbox().size(), 3u);
  EXPECT_EQ(r.outbox()[2].bytes, subscribe_packet("a", 5));
  EXPECT_EQ(c.peer_refreshes, 3u);
}

// Several packets back to back in one datagram (what a peer with batching on sends) are taken one
// by one, in order, whether or not this side batches.
TEST_F(Peering, BatchedDatagramDeliversEveryPacketInOrder) {
  Bytes d = publish_packet("a", "1");
  append(d, subscribe_packet("s/#"));
  append(d, publish_packet("b", "2"));
  const auto got = p_.on_datagram(kPeerA, d);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].topic, "a");
  EXPECT_EQ(str(got[1].payload), "2");
  EXPECT_TRUE(p_.peer_wants(kPeerA, "s/x"));
  EXPECT_EQ(c_.peer_datagrams_in, 1u);
  EXPECT_EQ(c_.peer_publish_in, 2u);
}

TEST_F(Peering, MalformedPacketInABatchDropsTheRestOnly) {
  Bytes d = publish_packet("a", "1");
  append(d, bytes("30 03 00 01 23"));  // wildcard topic
  append(d, publish_packet("b", "2"));
  const auto got = p_.on_datagram(kPeerA, d);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "a");
  EXPECT_EQ(c_.peer_datagrams_malformed, 1u);
  // A packet cut short at the end of the datagram is malformed too.
  EXPECT_EQ(p_.on_datagram(kPeerA, bytes("30 03 00 01 74 ff")).size(), 1u);
  EXPECT_EQ(c_.peer_datagrams_malformed, 2u);
}

class PeeringBatch : public ::testing::Test {
 protected:
  static constexpr std::size_t kLimit = 100;
  PeeringBatch() : p_(config(), log::null_logger(), c_) {
    p_.on_datagram(kPeerA, subscribe_packet("#"));
    p_.on_datagram(kPeerB, subscribe_packet("b/#"));
  }
  static peering::PeeringConfig config() {
    peering::PeeringConfig cfg{{kPeerA, kPeerB}};
    cfg.batch_bytes = kLimit;
    cfg.batch = peering::BatchPolicy::On;  // the peers here never announce the extension
    return cfg;
  }
  // The packets of one datagram, split the way a receiver does it.
  static std::vector<std::string> topics(const peering::Datagram& d) {
    metrics::Counters c;
    peering::Peering rx({{d.dst}}, log::null_logger(), c);
    std::vector<std::string> out;
    for (const auto& p : rx.on_datagram(d.dst, d.bytes)) out.emplace_back(p.topic);
    EXPECT_EQ(c.peer_datagrams_malformed, 0u);
    return out;
  }

  metrics::Counters c_;
  peering::Peering p_;
};

TEST_F(PeeringBatch, PublishesForOnePeerShareADatagramUpToTheLimit) {
  for (const char* t : {"x/1", "b/2", "x/3"}) p_.forward_publish(t, as_bytes("payload"), false);
  const auto& out = p_.outbox();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].dst, kPeerA);
  EXPECT_EQ(topics(out[0]), (std::vector<std::string>{"x/1", "b/2", "x/3"}));
  EXPECT_EQ(out[1].dst, kPeerB);
  EXPECT_EQ(topics(out[1]), (std::vector<std::string>{"b/2"}));
  EXPECT_EQ(c_.peer_publish_out, 4u);
  EXPECT_EQ(c_.peer_datagrams_out, 2u);

  // 14-byte packets: seven fill 98 of the 100 bytes, the eighth starts a new datagram.
  p_.clear_outbox();
  for (int i = 0; i < 8; ++i)
    p_.forward_publish("x/" + std::to_string(i), as_bytes("payload"), false);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].bytes.size(), 98u);
  EXPECT_EQ(topics(out[1]), (std::vector<std::string>{"x/7"}));
}

TEST_F(PeeringBatch, APacketOverTheLimitTravelsAloneAndNothingOvertakesAnAnnouncement) {
  p_.forward_publish("x/1", as_bytes("a"), false);
  p_.forward_publish("x/big", as_bytes(std::string(200, 'z')), false);
  p_.forward_publish("x/2", as_bytes("b"), false);
  p_.local_filter_added("mine");
  p_.forward_publish("x/3", as_bytes("c"), false);
  std::vector<std::vector<std::string>> to_a;
  for (const auto& d : p_.outbox()) {
    if (d.dst == kPeerA) to_a.push_back(topics(d));
  }
  // The SUBSCRIBE for "mine" yields no topic: its datagram shows as an empty list.
  EXPECT_EQ(to_a,
            (std::vector<std::vector<std::string>>{{"x/1"}, {"x/big"}, {"x/2"}, {}, {"x/3"}}));
}

TEST_F(PeeringBatch, ABatchIsNeverReopenedAfterTheOutboxIsCleared) {
  p_.forward_publish("x/1", as_bytes("a"), false);
  p_.clear_outbox();
  p_.forward_publish("x/2", as_bytes("b"), false);
  ASSERT_EQ(p_.outbox().size(), 1u);
  EXPECT_EQ(topics(p_.outbox()[0]), (std::vector<std::string>{"x/2"}));
}

// --- MQTT 5 properties (docs/peering.md, "PUBLISH properties"): the 5.0 form behind DATA5

// A DATA5 header naming no run of ours (so nothing is accounted), then `rest`.
Bytes data5(std::string_view rest_hex) {
  Bytes d;
  peering::ext::encode(d, peering::ext::Data{9, 0, 0, 0, 0, true});
  append(d, bytes(rest_hex));
  return d;
}

TEST_F(Peering, PlainPeersNeverGetProperties) {
  p_.on_datagram(kPeerA, subscribe_packet("t"));
  p_.forward_publish("t", as_bytes("x"), true, flow::kNone, {}, bytes("26 00 01 6b 00 01 76"));
  p_.send_retained(kPeerA, "t", as_bytes("x"), {}, bytes("26 00 01 6b 00 01 76"));
  ASSERT_EQ(p_.outbox().size(), 2u);
  EXPECT_EQ(to_hex(p_.outbox()[0].bytes), "31 04 00 01 74 78");
  EXPECT_EQ(to_hex(p_.outbox()[1].bytes), "31 04 00 01 74 78");
}

// The form is the header's, whatever this side knows of the sender: no HELLO was exchanged here.
TEST_F(Peering, A50FormPublishYieldsItsProperties) {
  // DATA5, a 5.0-form PUBLISH (RETAIN, a user property and a content type), then a DATA header and
  // a 3.1.1-form PUBLISH, a SUBSCRIBE (read as 3.1.1 behind either header).
  Bytes d = data5("31 14 00 01 74 0e 26 00 01 6b 00 01 76 03 00 04 74 65 78 74 78 79");
  append(d, subscribe_packet("s/#"));
  peering::ext::encode(d, peering::ext::Data{9, 0, 1, 1, 0});
  append(d, publish_packet("u", "z"));
  const auto got = p_.on_datagram(kPeerA, d);
  EXPECT_EQ(c_.peer_datagrams_malformed, 0u);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].topic, "t");
  EXPECT_TRUE(got[0].retain);
  EXPECT_EQ(str(got[0].payload), "xy");
  EXPECT_EQ(to_hex(Bytes(got[0].properties.raw.begin(), got[0].properties.raw.end())),
            "26 00 01 6b 00 01 76 03 00 04 74 65 78 74");
  EXPECT_EQ(got[1].topic, "u");
  EXPECT_TRUE(got[1].properties.raw.empty());
  EXPECT_TRUE(p_.peer_wants(kPeerA, "s/x"));
  EXPECT_EQ(c_.peer_publish_in, 2u);
}

TEST_F(Peering, Malformed50FormPublishesAreDroppedAndCounted) {
  const char* const bad[] = {
      "30 05 00 01 74 05 00",              // property length beyond the packet
      "30 06 00 01 74 03 23 00 01",        // a Topic Alias
      "30 07 00 01 74 02 0b 01 78",        // a Subscription Identifier
      "30 09 00 01 74 05 11 00 00 00 01",  // Session Expiry: not a PUBLISH's
      "30 08 00 01 74 02 01 02 78 79",     // Payload Format Indicator 2
      "30 09 00 01 74 04 01 01 01 01 78",  // a single-instance property twice
      "30 07 00 01 74 03 26 00 01",        // a user property cut short
      "32 07 00 01 74 00 01 00 78",        // QoS 1
      "30 06 00 00 03 23 00 01",           // an empty topic (the alias it needs is refused)
      "30 04 00 00 00 78",                 // an empty topic without an alias
      "30 04 00 01 74 80",                 // a property length varint that does not end
      "30 06 00 01 23 01 26 00",           // a wildcard topic
  };
  std::uint64_t n = 0;
  for (const char* b : bad) {
    Bytes d = data5(b);
    append(d, publish_packet("after", "x"));  // lost with it
    EXPECT_TRUE(p_.on_datagram(kPeerA, d).empty()) << b;
    EXPECT_EQ(c_.peer_datagrams_malformed, ++n) << b;
  }
  // What came before a malformed one stands.
  Bytes d = data5("30 05 00 01 74 00 78");
  append(d, bytes("30 06 00 01 74 03 23 00 01"));
  const auto got = p_.on_datagram(kPeerA, d);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(str(got[0].payload), "x");
  EXPECT_EQ(c_.peer_datagrams_malformed, n + 1);
  // A 3.1.1-form PUBLISH is not one after a DATA5 header: its payload is taken for properties.
  EXPECT_TRUE(p_.on_datagram(kPeerA, data5("30 06 00 01 74 78 79 7a")).empty());
  EXPECT_EQ(c_.peer_datagrams_malformed, n + 2);
  EXPECT_EQ(c_.peer_publish_in, 1u);
}

}  // namespace
}  // namespace mqtt_proxy::test
