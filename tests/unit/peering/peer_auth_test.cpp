// Authentication of the peer protocol: the AUTH packet, the replay window, the key file, and two
// Peerings that sign, with forged, replayed and unsigned datagrams moved by hand.
#include "mqtt_proxy/peering/peer_auth.hpp"

#include <gtest/gtest.h>

#include "client_packets.hpp"
#include "mqtt_proxy/auth/peer_key_file.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using peering::auth::Endpoints;
using peering::auth::OpenError;
using wire::Ipv4Address;
namespace auth = peering::auth;

const Ipv4Address kA = *Ipv4Address::parse("192.168.1.104");
const Ipv4Address kB = *Ipv4Address::parse("192.168.1.101");
const Ipv4Address kC = *Ipv4Address::parse("192.168.1.103");
const Bytes kKey = bytes("00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff");
const Bytes kNewKey = bytes("ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00 01");

TEST(PeerAuth, ASealedDatagramOpensWithItsKeyBetweenItsEndsOnly) {
  Bytes d = publish_packet("t", "payload");
  const std::size_t payload = d.size();
  const auth::Keyring key({kKey});
  key.seal(d, {kA, kB}, 0x1234, 77);
  ASSERT_EQ(d.size(), payload + auth::kTagSize);
  EXPECT_EQ(
      to_hex(Bytes(ByteSpan(d).subspan(payload, 6).begin(), ByteSpan(d).subspan(payload, 6).end())),
      "f0 20 4d 50 01 05");
  OpenError e{};
  const auto o = key.open(d, {kA, kB}, e);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->payload_size, payload);
  EXPECT_EQ(o->to_epoch, 0x1234u);
  EXPECT_EQ(o->seq, 77u);
  // Another key, another sender, another receiver: no.
  const auth::Keyring other({kNewKey});
  EXPECT_FALSE(other.open(d, {kA, kB}, e));
  EXPECT_EQ(e, OpenError::BadMac);
  EXPECT_FALSE(key.open(d, {kC, kB}, e));
  EXPECT_FALSE(key.open(d, {kA, kC}, e));
  // While a key is rolled out, either verifies.
  const auth::Keyring both({kNewKey, kKey});
  EXPECT_TRUE(both.open(d, {kA, kB}, e));
}

TEST(PeerAuth, EveryChangedByteBreaksTheSignature) {
  Bytes d = subscribe_packet("a/#");
  const auth::Keyring key({kKey});
  key.seal(d, {kA, kB}, 9, 1);
  for (std::size_t i = 0; i < d.size(); ++i) {
    Bytes changed = d;
    changed[i] ^= std::byte{0x01};
    OpenError e{};
    EXPECT_FALSE(key.open(changed, {kA, kB}, e)) << "byte " << i;
  }
}

TEST(PeerAuth, WhatEndsWithoutATagIsNotSigned) {
  OpenError e{};
  const auth::Keyring key({kKey});
  EXPECT_FALSE(key.open(publish_packet("t", "x"), {kA, kB}, e));
  EXPECT_EQ(e, OpenError::NoTag);
  EXPECT_FALSE(key.open(Bytes{}, {kA, kB}, e));
  EXPECT_EQ(e, OpenError::NoTag);
}

TEST(PeerAuth, TheReplayWindowTakesEachNumberOnceAndNothingBelowIt) {
  auth::ReplayWindow w;
  EXPECT_TRUE(w.accept(1000));
  EXPECT_FALSE(w.accept(1000));  // a copy
  EXPECT_TRUE(w.accept(1002));
  EXPECT_TRUE(w.accept(1001));  // reordered, within the window
  EXPECT_FALSE(w.accept(1001));
  EXPECT_TRUE(w.accept(1002 + 63 - 1));
  EXPECT_FALSE(w.accept(1002 - 2));  // 1000: seen, and now at the window's edge
  EXPECT_TRUE(w.accept(5000));
  EXPECT_FALSE(w.accept(5000 - 64));  // below the window
  EXPECT_TRUE(w.accept(5000 - 63));
}

TEST(PeerKeyFile, HexKeysOneOrTwoOfAtLeastSixteenBytes) {
  const auto k = mqtt_proxy::auth::parse_peer_keys(
      "# rolled out on Monday\n00112233445566778899aabbccddeeff\n\n  "
      "FFEEDDCCBBAA99887766554433221100 \n");
  ASSERT_TRUE(k);
  ASSERT_EQ(k->size(), 2u);
  EXPECT_EQ((*k)[0], kKey);
  EXPECT_FALSE(mqtt_proxy::auth::parse_peer_keys(""));
  EXPECT_FALSE(mqtt_proxy::auth::parse_peer_keys("00112233"));                          // too short
  EXPECT_FALSE(mqtt_proxy::auth::parse_peer_keys("00112233445566778899aabbccddeefg"));  // not hex
  EXPECT_FALSE(mqtt_proxy::auth::parse_peer_keys("00112233445566778899aabbccddeef"));   // odd
  const std::string key = "00112233445566778899aabbccddeeff\n";
  EXPECT_FALSE(mqtt_proxy::auth::parse_peer_keys(key + key + key));  // at most two
  const auto err = mqtt_proxy::auth::parse_peer_keys("# c\nzz");
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().find("line 2"), std::string::npos);
}

// Two Peerings that share a key, through a network the test controls; C is an address on the
// segment that is not a peer of either, or a forger using A's.
class Signed : public ::testing::Test {
 protected:
  static peering::PeeringConfig config(Ipv4Address self, Ipv4Address peer, std::uint32_t epoch,
                                       std::vector<Bytes> keys) {
    peering::PeeringConfig c{{peer}};
    c.epoch = epoch;
    c.refresh_interval = 0s;
    c.keys = std::move(keys);
    c.local_addresses = {self};
    c.auth_seq_start = 1'000'000;
    return c;
  }
  std::vector<std::string> move(peering::Peering& from, peering::Peering& to, Ipv4Address src,
                                std::vector<Bytes>* copy = nullptr) {
    std::vector<peering::Datagram> out = from.outbox();
    from.clear_outbox();
    std::vector<std::string> topics;
    for (const auto& d : out) {
      if (copy) copy->push_back(d.bytes);
      for (const auto& p : to.on_datagram(src, d.bytes, now_)) topics.emplace_back(p.topic);
    }
    to.end_turn();
    return topics;
  }
  void settle() {
    for (int i = 0; i < 10 && (!a_.outbox().empty() || !b_.outbox().empty()); ++i) {
      a_.end_turn();
      move(a_, b_, kA);
      b_.end_turn();
      move(b_, a_, kB);
    }
  }
  void handshake() {
    a_.start(now_);
    b_.start(now_);
    settle();
    ASSERT_TRUE(a_.speaks_extension(0));
    ASSERT_TRUE(b_.speaks_extension(0));
    b_.local_filter_added("t/#");
    b_.end_turn();
    move(b_, a_, kB);
  }
  std::vector<std::string> publish(std::string_view topic) {
    a_.forward_publish(topic, as_bytes(std::string_view("0123456789")), false, flow::kNone, now_);
    a_.end_turn();
    return move(a_, b_, kA);
  }

  TimePoint now_ = t0();
  metrics::Counters ca_, cb_;
  peering::Peering a_{config(kA, kB, 0xa0a0a0a0, {kKey}), log::null_logger(), ca_};
  peering::Peering b_{config(kB, kA, 0xb0b0b0b0, {kKey}), log::null_logger(), cb_};
};

TEST_F(Signed, PeersThatShareAKeyHandshakeAndDeliver) {
  handshake();
  EXPECT_TRUE(a_.peer_wants(kB, "t/x"));
  EXPECT_EQ(publish("t/x"), (std::vector<std::string>{"t/x"}));
  EXPECT_EQ(ca_.peer_datagrams_unauthenticated + cb_.peer_datagrams_unauthenticated, 0u);
  EXPECT_EQ(ca_.peer_datagrams_stale + cb_.peer_datagrams_stale, 0u);
}

TEST_F(Signed, ForgedUnsignedAndReplayedDatagramsAreRejectedAndCounted) {
  handshake();
  // Unsigned, from A's address: a plain SUBSCRIBE and a plain PUBLISH.
  EXPECT_TRUE(b_.on_datagram(kA, publish_packet("t/x", "forged"), now_).empty());
  b_.on_datagram(kA, subscribe_packet("secret/#"), now_);
  EXPECT_FALSE(b_.peer_wants(kA, "secret/x"));
  // Signed with another key.
  Bytes forged = publish_packet("t/x", "forged");
  auth::Keyring({kNewKey}).seal(forged, {kA, kB}, 0xb0b0b0b0, 5'000'000);
  EXPECT_TRUE(b_.on_datagram(kA, forged, now_).empty());
  EXPECT_EQ(cb_.peer_datagrams_unauthenticated, 3u);
  // A real one, then its copy.
  std::vector<Bytes> sent;
  a_.forward_publish("t/y", as_bytes(std::string_view("1")), false, flow::kNone, now_);
  a_.end_turn();
  EXPECT_EQ(move(a_, b_, kA, &sent), (std::vector<std::string>{"t/y"}));
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(b_.on_datagram(kA, sent[0], now_).empty());
  EXPECT_EQ(cb_.peer_datagrams_replayed, 1u);
  // A's datagram for B, sent by an address on the segment as its own: the ends do not match.
  EXPECT_TRUE(b_.on_datagram(kC, sent[0], now_).empty());  // not a peer at all
  EXPECT_EQ(cb_.peer_datagrams_unknown_source, 1u);
  // Nothing of it disturbed the real stream.
  EXPECT_EQ(publish("t/z"), (std::vector<std::string>{"t/z"}));
  EXPECT_EQ(cb_.peer_datagrams_lost, 0u);
}

TEST_F(Signed, ADatagramForAnotherRunOfTheReceiverIsStale) {
  handshake();
  std::vector<Bytes> sent;
  a_.forward_publish("t/y", as_bytes(std::string_view("1")), false, flow::kNone, now_);
  a_.end_turn();
  move(a_, b_, kA, &sent);
  // B restarts; a recording of A's datagram to the earlier B is played to the new one.
  metrics::Counters c;
  peering::Peering b2(config(kB, kA, 0xbbbbbbbb, {kKey}), log::null_logger(), c);
  b2.start(now_);
  EXPECT_TRUE(b2.on_datagram(kA, sent[0], now_).empty());
  EXPECT_EQ(c.peer_datagrams_stale, 1u);
}

TEST_F(Signed, NothingButHellosGoesToASigningPeerBeforeItsRunIsKnown) {
  a_.start(now_);
  a_.local_filter_added("early/#");  // B has not answered: its run is unknown
  a_.end_turn();
  ASSERT_EQ(a_.outbox().size(), 1u);  // the HELLO only
  EXPECT_EQ(ca_.peer_subscribe_out, 0u);
  b_.start(now_);
  settle();
  EXPECT_TRUE(b_.peer_wants(kA, "early/1"));  // sent behind the handshake
}

TEST_F(Signed, KeysRollOverWithoutLosingAMessage) {
  // B accepts both keys first; then A signs with the new one; then B drops the old.
  metrics::Counters c;
  peering::Peering b(config(kB, kA, 0xb0b0b0b0, {kKey, kNewKey}), log::null_logger(), c);
  peering::Peering a(config(kA, kB, 0xa0a0a0a0, {kNewKey, kKey}), log::null_logger(), ca_);
  a.start(now_);
  b.start(now_);
  for (int i = 0; i < 4; ++i) {
    a.end_turn();
    move(a, b, kA);
    b.end_turn();
    move(b, a, kB);
  }
  ASSERT_TRUE(a.speaks_extension(0));
  ASSERT_TRUE(b.speaks_extension(0));
  EXPECT_EQ(c.peer_datagrams_unauthenticated + ca_.peer_datagrams_unauthenticated, 0u);
}

// B restarted once (B0 -> B1) and runs with A; a recording of B0's first HELLO (signed for run
// 0) is played to A when A restarts, before A's own first HELLO leaves: A2 then holds B's old run
// and signs for it, B1 holds A's old run and signs for that. HELLOs are taken whatever run they
// are signed for, so the answers put both right; were they not, neither would ever hear the other.
TEST_F(Signed, PeersThatHoldEachOthersEarlierRunFindEachOtherAgain) {
  b_.start(now_);
  b_.end_turn();
  ASSERT_EQ(b_.outbox().size(), 1u);
  const Bytes recorded = b_.outbox()[0].bytes;  // B0's first HELLO, signed for run 0
  b_.clear_outbox();
  metrics::Counters c1, c2;
  auto cfg_b = config(kB, kA, 0xb1b1b1b1, {kKey});
  cfg_b.auth_seq_start = 2'000'000;  // a later wall clock
  peering::Peering b1(cfg_b, log::null_logger(), c1);
  a_.start(now_);
  b1.start(now_);
  for (int i = 0; i < 4; ++i) {
    a_.end_turn();
    move(a_, b1, kA);
    b1.end_turn();
    move(b1, a_, kB);
  }
  ASSERT_TRUE(b1.speaks_extension(0));
  auto cfg_a = config(kA, kB, 0xa2a2a2a2, {kKey});
  cfg_a.auth_seq_start = 3'000'000;
  peering::Peering a2(cfg_a, log::null_logger(), c2);  // A restarted
  a2.start(now_);
  a2.on_datagram(kB, recorded, now_);  // the replay, before A2's HELLO is signed
  for (int i = 0; i < 8; ++i) {
    now_ += 5s;  // heartbeats
    a2.on_timers(now_);
    b1.on_timers(now_);
    a2.end_turn();
    move(a2, b1, kA);
    b1.end_turn();
    move(b1, a2, kB);
  }
  ASSERT_TRUE(a2.speaks_extension(0));
  b1.local_filter_added("t/#", now_);
  b1.end_turn();
  move(b1, a2, kB);
  a2.forward_publish("t/x", as_bytes(std::string_view("1")), false, flow::kNone, now_);
  a2.end_turn();
  EXPECT_EQ(move(a2, b1, kA), (std::vector<std::string>{"t/x"}));
}

// SIGHUP's reload: the keys change under a running Peering, the peers see no gap.
TEST_F(Signed, NewKeysTakeEffectAtOnceWhileTheOldOneIsStillAccepted) {
  handshake();
  b_.set_keys({kKey, kNewKey});  // step 1 on B: accept the new key too
  a_.set_keys({kNewKey, kKey});  // step 2 on A: sign with it
  EXPECT_EQ(publish("t/1"), (std::vector<std::string>{"t/1"}));
  b_.set_keys({kNewKey});  // step 3: the old one goes
  EXPECT_EQ(publish("t/2"), (std::vector<std::string>{"t/2"}));
  a_.set_keys({kKey});  // A back on the old key, which B no longer takes
  EXPECT_TRUE(publish("t/3").empty());
  EXPECT_EQ(cb_.peer_datagrams_unauthenticated, 1u);
}

TEST_F(Signed, AnUnsignedPeerMustBeNamedToBeHeard) {
  auto cfg = config(kB, kA, 0xb0b0b0b0, {kKey});
  cfg.unsigned_peers = {kA};
  metrics::Counters c;
  peering::Peering b(cfg, log::null_logger(), c);
  b.on_datagram(kA, subscribe_packet("plain/#"), now_);  // the prototype's SUBSCRIBE
  EXPECT_TRUE(b.peer_wants(kA, "plain/1"));
  EXPECT_EQ(c.peer_datagrams_unauthenticated, 0u);
  b.forward_publish("plain/1", as_bytes(std::string_view("x")), false, flow::kNone, now_);
  b.end_turn();
  ASSERT_EQ(b.outbox().size(), 1u);
  EXPECT_EQ(b.outbox()[0].bytes, publish_packet("plain/1", "x"));  // sent unsigned
}

}  // namespace
}  // namespace mqtt_proxy::test
