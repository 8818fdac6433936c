// The peer protocol's extension (docs/peering.md): its packets, and two Peerings talking through
// it, with datagrams moved by hand so a test can lose, repeat or reorder any of them.
#include "mqtt_proxy/peering/extension.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "client_packets.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using peering::Datagram;
using wire::Ipv4Address;
namespace ext = peering::ext;

const Ipv4Address kA = *Ipv4Address::parse("192.168.1.104");
const Ipv4Address kB = *Ipv4Address::parse("192.168.1.101");

TEST(Extension, EveryKindRoundTripsAndStartsWithTheType15Header) {
  const std::vector<ext::Message> all = {
      ext::Hello{0x11223344, 7, ext::kFeatureCredit | ext::kFeatureBatch, 524288},
      ext::Data{1, 2, 3, 4, 0x0102030405060708ull},
      ext::Credit{9, 8, 1ull << 40, 12345, true},
      ext::Blocked{5, 6, 77},
      ext::Digest{1, 2, 3, 0xfedcba9876543210ull},
      ext::Resync{4, 5, 6},
      ext::Filters{7, 8, 9, 2, 3}};
  for (const auto& m : all) {
    Bytes b;
    ext::encode(b, m);
    ASSERT_EQ(std::to_integer<int>(b[0]), 0xf0);
    bool need_more = false;
    mqtt::DecodeError err{};
    const auto f = mqtt::parse_frame(b, 1 << 16, need_more, err);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->wire_size, b.size());
    const auto back = ext::decode(f->body);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, m);
  }
  Bytes d;
  ext::encode(d, ext::Data{});
  EXPECT_EQ(d.size(), ext::kDataSize);
  EXPECT_EQ(to_hex(Bytes(d.begin(), d.begin() + 6)), "f0 1c 4d 50 01 02");
  Bytes g, f;
  ext::encode(g, ext::Digest{});
  EXPECT_EQ(to_hex(Bytes(g.begin(), g.begin() + 6)), "f0 18 4d 50 01 06");
  ext::encode(f, ext::Filters{1, 2, 3, 0, 1});
  EXPECT_EQ(f.size(), ext::kFiltersSize);
  EXPECT_EQ(to_hex(Bytes(f.begin(), f.begin() + 6)), "f0 14 4d 50 01 08");
}

// A set's hash is the sum of its filters', whatever the order they were added in.
TEST(Extension, AFilterSetsHashIsTheSumOfItsFiltersHashes) {
  EXPECT_NE(ext::filter_hash("a/b"), ext::filter_hash("a/c"));
  EXPECT_EQ(ext::filter_hash("a/b") + ext::filter_hash("x/#"),
            ext::filter_hash("x/#") + ext::filter_hash("a/b"));
  EXPECT_EQ(ext::filter_hash("a/b"), ext::filter_hash("a/b"));
}

TEST(Extension, WhatIsNotOursDoesNotDecode) {
  EXPECT_FALSE(ext::decode(bytes("")));
  EXPECT_FALSE(ext::decode(bytes("4d 50 02 01")));              // another version
  EXPECT_FALSE(ext::decode(bytes("41 55 01 01")));              // no magic: an MQTT 5 AUTH, say
  EXPECT_FALSE(ext::decode(bytes("4d 50 01 0a")));              // an unknown kind
  EXPECT_FALSE(ext::decode(bytes("4d 50 01 01 00 00 00 01")));  // a HELLO cut short
  Bytes c;
  ext::encode(c, ext::Credit{1, 2, 3, 4, false});
  c[c.size() - 1] = std::byte{2};  // paused must be 0 or 1
  EXPECT_FALSE(ext::decode(ByteSpan(c).subspan(2)));
  EXPECT_FALSE(ext::decode(bytes("4d 50 01 05")));  // AUTH is a trailer, not a message
  Bytes f;
  ext::encode(f, ext::Filters{1, 2, 3, 3, 3});  // part 3 of parts 0..2
  EXPECT_FALSE(ext::decode(ByteSpan(f).subspan(2)));
}

// Two proxies' Peerings, A (the publishers' side) and B (the subscribers' side), each with its
// FlowControl; the network between them is the test.
class Pair : public ::testing::Test {
 protected:
  static peering::PeeringConfig config(Ipv4Address peer, std::uint32_t epoch) {
    peering::PeeringConfig c{{peer}};
    c.epoch = epoch;
    c.credit_window = 1000;
    c.refresh_interval = 0s;  // the tests of soft state set it
    return c;
  }
  static flow::FlowConfig flow_config() {
    flow::FlowConfig f;
    f.high_water = 300;
    f.low_water = 100;
    return f;
  }
  Pair() { make_b(0xb0b0b0b0); }
  void make_b(std::uint32_t epoch) {
    b_.reset();
    b_.emplace(config(kA, epoch), log::null_logger(), cb_, &fb_);
  }

  // Moves every datagram of `from`'s outbox to `to` (through `keep`: false loses it); returns
  // the PUBLISH topics `to` delivered, in order.
  std::vector<std::string> move(peering::Peering& from, peering::Peering& to, Ipv4Address src,
                                const std::function<bool(const Datagram&)>& keep = {}) {
    std::vector<Datagram> out = from.outbox();
    from.clear_outbox();
    std::vector<std::string> topics;
    for (const auto& d : out) {
      if (keep && !keep(d)) continue;
      for (const auto& p : to.on_datagram(src, d.bytes, now_)) topics.emplace_back(p.topic);
    }
    to.end_turn();
    return topics;
  }
  // Until nothing moves: the handshake, credits and answers.
  void settle() {
    for (int i = 0; i < 10 && (!a_.outbox().empty() || !b_->outbox().empty()); ++i) {
      move(a_, *b_, kA);
      move(*b_, a_, kB);
    }
  }
  void handshake() {
    a_.start(now_);
    b_->start(now_);
    settle();
    ASSERT_TRUE(a_.speaks_extension(0));
    ASSERT_TRUE(b_->speaks_extension(0));
    b_->on_datagram(kA, subscribe_packet("t/#"), now_);  // B's subscriber, told to A
    a_.on_datagram(kB, subscribe_packet("t/#"), now_);
  }
  static bool is_data(const Datagram& d) {
    return std::to_integer<std::uint8_t>(d.bytes[0]) == ext::kFirstByte &&
           std::to_integer<std::uint8_t>(d.bytes[5]) == 2;
  }
  void publish(std::string_view topic, std::string_view payload = "0123456789") {
    a_.forward_publish(topic, as_bytes(payload), false, flow::client(1), now_);
  }

  TimePoint now_ = t0();
  metrics::Counters ca_, cb_;
  flow::FlowControl fa_{flow_config(), ca_};
  flow::FlowControl fb_{flow_config(), cb_};
  peering::Peering a_{config(kB, 0xa0a0a0a0), log::null_logger(), ca_, &fa_};
  std::optional<peering::Peering> b_;
};

TEST_F(Pair, BothAnnounceAndEachUsesTheExtensionOnlyAfterHearingTheOther) {
  a_.start(now_);
  EXPECT_FALSE(a_.speaks_extension(0));
  a_.on_datagram(kB, subscribe_packet("t/#"), now_);
  a_.clear_outbox();
  publish("t/plain");  // B never announced: plain, as the prototype expects
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(a_.outbox()[0].bytes, publish_packet("t/plain", "0123456789"));
  a_.clear_outbox();
  b_->start(now_);
  settle();
  EXPECT_TRUE(a_.speaks_extension(0));
  EXPECT_TRUE(b_->speaks_extension(0));
  // The exchange ends by itself once each named the other's epoch.
  EXPECT_TRUE(a_.outbox().empty() && b_->outbox().empty());
  EXPECT_LE(ca_.peer_hello_out + cb_.peer_hello_out, 4u);
  publish("t/x");
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_TRUE(is_data(a_.outbox()[0]));
  EXPECT_EQ(move(a_, *b_, kA), (std::vector<std::string>{"t/x"}));
}

TEST_F(Pair, AnUnansweredHelloBacksOffFromATenthOfASecondToThirtySeconds) {
  a_.start(now_);
  std::vector<Duration> gaps;
  TimePoint last = now_;
  for (int i = 0; i < 11; ++i) {
    a_.clear_outbox();
    const TimePoint next = *a_.next_deadline();
    a_.on_timers(next);
    ASSERT_EQ(a_.outbox().size(), 1u);
    gaps.push_back(next - last);
    last = next;
  }
  EXPECT_EQ(gaps, (std::vector<Duration>{100ms, 200ms, 400ms, 800ms, 1600ms, 3200ms, 6400ms,
                                         12800ms, 25600ms, 30s, 30s}));
  EXPECT_FALSE(a_.speaks_extension(0));
}

TEST_F(Pair, PublishesInOneTurnShareADatagramBehindOneHeader) {
  handshake();
  for (int i = 0; i < 5; ++i) publish("t/" + std::to_string(i));
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(move(a_, *b_, kA), (std::vector<std::string>{"t/0", "t/1", "t/2", "t/3", "t/4"}));
  EXPECT_EQ(cb_.peer_publish_lost, 0u);
}

TEST_F(Pair, TheReceiverCountsWhatTheNetworkLostAndNeverDeliversLateOnes) {
  handshake();
  std::vector<Datagram> sent;
  for (int i = 0; i < 4; ++i) {
    publish("t/" + std::to_string(i));
    publish("t/" + std::to_string(i) + "b");
    sent.push_back(a_.outbox().back());  // one datagram per turn: two PUBLISHes each
    a_.clear_outbox();
  }
  ASSERT_EQ(sent.size(), 4u);
  auto deliver = [&](const Datagram& d) {
    std::vector<std::string> t;
    for (const auto& p : b_->on_datagram(kA, d.bytes, now_)) t.emplace_back(p.topic);
    return t;
  };
  EXPECT_EQ(deliver(sent[0]).size(), 2u);
  EXPECT_EQ(deliver(sent[2]).size(), 2u);  // sent[1] is missing
  EXPECT_EQ(cb_.peer_datagrams_lost, 1u);
  EXPECT_EQ(b_->peer_status()[0].traffic.datagrams_lost, 1u);  // per peer too (the metrics)
  EXPECT_EQ(cb_.peer_publish_lost, 2u);
  EXPECT_TRUE(deliver(sent[1]).empty());  // late: already counted lost
  EXPECT_TRUE(deliver(sent[2]).empty());  // twice
  EXPECT_EQ(cb_.peer_datagrams_late, 1u);
  EXPECT_EQ(cb_.peer_datagrams_repeated, 1u);
  EXPECT_EQ(deliver(sent[3]).size(), 2u);
  EXPECT_EQ(cb_.peer_publish_lost, 2u);
}

TEST_F(Pair, ALossAtTheEndOfABurstIsRevealedByMarksUntilTheReceiverHasAccountedForIt) {
  handshake();
  publish("t/last");
  a_.clear_outbox();  // lost
  now_ = *a_.next_deadline();
  EXPECT_EQ(now_, t0() + 250ms);
  a_.on_timers(now_);  // the first mark
  EXPECT_EQ(ca_.peer_marks_out, 1u);
  a_.clear_outbox();  // lost too
  now_ = *a_.next_deadline();
  EXPECT_EQ(now_, t0() + 750ms);  // backing off
  a_.on_timers(now_);
  EXPECT_EQ(ca_.peer_marks_out, 2u);
  move(a_, *b_, kA);
  EXPECT_EQ(cb_.peer_publish_lost, 1u);
  EXPECT_EQ(cb_.peer_datagrams_lost, 2u);
  move(*b_, a_, kB);  // the mark is answered: everything sent is accounted for
  EXPECT_FALSE(a_.next_deadline() && *a_.next_deadline() < now_ + 1s);  // then quiet
  EXPECT_EQ(ca_.peer_marks_out, 2u);
}

TEST_F(Pair, OutOfCreditTheSenderQueuesProbesAndGoesOnWhenGranted) {
  handshake();
  // The window is 1000 bytes: nine PUBLISHes of 107 bytes fit, the last three wait.
  const std::string payload(100, 'p');
  for (int i = 0; i < 12; ++i) publish("t/" + std::to_string(i), payload);
  EXPECT_EQ(publish_packet("t/9", payload).size(), 107u);
  EXPECT_EQ(a_.pending_bytes(0), 107u + 2 * 108u);
  EXPECT_EQ(ca_.peer_publish_waited, 3u);
  EXPECT_TRUE(fa_.is_paused(flow::client(1)));  // past A's high-water mark of 300 bytes
  // B's grant is lost; A asks again after 20 ms.
  move(a_, *b_, kA);
  b_->clear_outbox();
  now_ += 20ms;
  a_.on_timers(now_);
  EXPECT_EQ(ca_.peer_blocked_out, 1u);
  move(a_, *b_, kA);
  EXPECT_EQ(move(*b_, a_, kB), std::vector<std::string>{});
  EXPECT_EQ(a_.pending_bytes(0), 0u);
  EXPECT_EQ(move(a_, *b_, kA).size(), 3u);
  EXPECT_EQ(cb_.peer_publish_in, 12u);
  EXPECT_EQ(cb_.peer_publish_lost, 0u);
}

TEST(PeeringPacing, APacedSenderLetsABurstGoThenOnePacketAtTheRate) {
  metrics::Counters c;
  peering::PeeringConfig cfg{{kB}};
  cfg.pace_bytes_per_second = 1'000'000;  // a byte per microsecond
  cfg.pace_burst = 1000;                  // a millisecond's worth at once
  cfg.credit_window = 1'000'000;
  peering::Peering a(cfg, log::null_logger(), c);
  a.start(t0());
  a.on_datagram(
      kB,
      [] {
        Bytes b;
        ext::encode(b, ext::Hello{0xb, 1, ext::kFeatureCredit, 1'000'000});
        return b;
      }(),
      t0());
  a.on_datagram(kB, subscribe_packet("t/#"), t0());
  a.clear_outbox();
  const std::string payload(100, 'p');  // 107-byte PUBLISHes
  for (int i = 0; i < 30; ++i) a.forward_publish("t/x", as_bytes(payload), false, 1, t0());
  auto sent = [&] {
    std::size_t n = 0;
    for (const auto& d : a.outbox()) n += (d.bytes.size() - ext::kDataSize) / 107;
    a.clear_outbox();
    return n;
  };
  EXPECT_EQ(sent(), 10u);  // what fits in the burst (and the first, which starts it)
  TimePoint now = t0();
  std::size_t total = 10;
  while (total < 30) {
    const TimePoint next = *a.next_deadline();
    ASSERT_LE(next - now, 200us);  // about one packet's time: 107 us
    now = next;
    a.on_timers(now);
    total += sent();
  }
  // 30 x 107 bytes at a byte per microsecond, less the burst: about 2.2 ms.
  EXPECT_GE(now - t0(), 2000us);
  EXPECT_LE(now - t0(), 2400us);
}

TEST_F(Pair, APausedReceiverGrantsNothingButAnswersSoItIsNotTakenForStuck) {
  handshake();
  // B's local subscriber (sink 9) cannot keep up: the peer source A is paused at B.
  fb_.on_queued(flow::peer(0), 9, 10'000, now_);
  ASSERT_TRUE(fb_.is_paused(flow::peer(0)));
  const std::string payload(100, 'p');
  for (int i = 0; i < 12; ++i) publish("t/" + std::to_string(i), payload);
  move(a_, *b_, kA);
  EXPECT_TRUE(b_->outbox().empty());  // no credit while paused
  now_ += 20ms;
  a_.on_timers(now_);
  move(a_, *b_, kA);  // the probe
  ASSERT_EQ(b_->outbox().size(), 1u);
  move(*b_, a_, kB);  // CREDIT, paused: the limit as it was
  EXPECT_EQ(a_.last_progress(0), now_);
  EXPECT_GT(a_.pending_bytes(0), 0u);
  // B's subscriber drains: A resumes at B and is granted more.
  fb_.update(9, 0, now_, now_);
  for (const auto id : fb_.resumed()) b_->resume(flow::peer_index(id));
  fb_.resumed().clear();
  b_->end_turn();
  move(*b_, a_, kB);
  EXPECT_EQ(a_.pending_bytes(0), 0u);
}

TEST_F(Pair, ARestartedReceiverIsANewEpochAndStartsFromNothing) {
  handshake();
  for (int i = 0; i < 3; ++i) publish("t/" + std::to_string(i));
  move(a_, *b_, kA);
  make_b(0xbbbbbbbb);  // killed and started again
  b_->start(now_);
  settle();
  EXPECT_TRUE(b_->speaks_extension(0));
  EXPECT_FALSE(a_.peer_wants(kB, "t/after"));  // the earlier run's interest is gone
  b_->local_filter_added("t/#");               // the new run's subscriber
  move(*b_, a_, kB);
  publish("t/after");
  EXPECT_EQ(move(a_, *b_, kA), (std::vector<std::string>{"t/after"}));
  EXPECT_EQ(cb_.peer_publish_lost, 0u);  // the new run counts from the new start
}

TEST_F(Pair, DataForAnEarlierRunIsDeliveredAndAnsweredWithAHello) {
  handshake();
  make_b(0xbbbbbbbb);  // restarted, and A has not heard of it yet
  b_->start(now_);
  b_->clear_outbox();  // its HELLO is lost
  now_ += 100ms;       // HELLOs in answer to data go at most every 100 ms
  publish("t/x");
  EXPECT_EQ(move(a_, *b_, kA), (std::vector<std::string>{"t/x"}));
  EXPECT_EQ(b_->outbox().size(), 1u);  // tells A who it is now
  move(*b_, a_, kB);
  EXPECT_FALSE(a_.peer_wants(kB, "t/y"));  // the new run has announced no subscriber yet
  b_->local_filter_added("t/#");
  move(*b_, a_, kB);
  publish("t/y");
  EXPECT_EQ(move(a_, *b_, kA), (std::vector<std::string>{"t/y"}));
}

// Soft state: a peer that restarts learns our interest from its first HELLO's answer, not from a
// refresh, and what it subscribed to in its earlier run is forgotten.
TEST_F(Pair, ARestartedPeerGetsOurInterestAtOnceAndItsOldInterestIsForgotten) {
  handshake();
  a_.local_filter_added("up/#");  // A has a subscriber too
  move(a_, *b_, kA);
  ASSERT_TRUE(b_->peer_wants(kA, "up/1"));
  make_b(0xbbbbbbbb);  // killed and started again: it knows nothing
  b_->start(now_);
  EXPECT_FALSE(b_->peer_wants(kA, "up/1"));
  move(*b_, a_, kB);  // its HELLO
  EXPECT_EQ(ca_.peer_resyncs, 1u);
  EXPECT_EQ(ca_.peer_interest_expired, 1u);  // B's "t/#" of its earlier run
  EXPECT_FALSE(a_.peer_wants(kB, "t/x"));
  move(a_, *b_, kA);  // A's HELLO and, behind it, A's filters
  EXPECT_TRUE(b_->peer_wants(kA, "up/1"));
  settle();
  EXPECT_EQ(ca_.peer_resyncs, 1u);  // once per new run, not per HELLO
}

// A capable peer heartbeats; silence is noticed, logged and counted, and a peer silent for
// `expiry_refreshes` refresh intervals loses the interest held for it. When it speaks again it is
// up again and gets our interest, which it may have missed.
TEST_F(Pair, ASilentPeerGoesDownThenLosesItsInterestAndComesBack) {
  auto cfg = config(kB, 0xa1a1a1a1);
  cfg.refresh_interval = 10s;
  cfg.expiry_refreshes = 3;
  cfg.liveness_timeout = 15s;
  peering::Peering a(cfg, log::null_logger(), ca_, &fa_);
  a.start(now_);
  b_->start(now_);
  for (int i = 0; i < 4; ++i) {
    move(a, *b_, kA);
    move(*b_, a, kB);
  }
  a.on_datagram(kB, subscribe_packet("t/#"), now_);
  a.local_filter_added("mine");
  ASSERT_EQ(a.peer_status().size(), 1u);
  EXPECT_EQ(a.peer_status()[0].state, peering::Peering::PeerState::Up);
  EXPECT_EQ(ca_.peers_up, 1u);
  const TimePoint last = now_;
  // B falls silent: A's timers run, nothing comes back.
  auto run_a_until = [&](TimePoint until) {
    while (*a.next_deadline() <= until) {
      now_ = *a.next_deadline();
      a.on_timers(now_);
      a.clear_outbox();
    }
  };
  run_a_until(last + 15s - 1ms);
  EXPECT_EQ(a.peer_status()[0].state, peering::Peering::PeerState::Up);
  run_a_until(last + 15s);
  EXPECT_EQ(a.peer_status()[0].state, peering::Peering::PeerState::Down);
  EXPECT_EQ(ca_.peers_up, 0u);
  run_a_until(last + 30s - 1ms);
  EXPECT_TRUE(a.peer_wants(kB, "t/x"));  // down, but not yet expired
  run_a_until(last + 30s);
  EXPECT_FALSE(a.peer_wants(kB, "t/x"));
  EXPECT_EQ(ca_.peer_interest_expired, 1u);
  now_ += 1s;
  b_->on_timers(now_);  // B's heartbeat, heard at last
  b_->clear_outbox();
  a.on_datagram(kB, subscribe_packet("t/#"), now_);  // and its refresh
  EXPECT_EQ(a.peer_status()[0].state, peering::Peering::PeerState::Up);
  EXPECT_EQ(ca_.peers_up, 1u);
  EXPECT_EQ(ca_.peer_resyncs, 1u);  // "mine" sent to it again
  ASSERT_FALSE(a.outbox().empty());
  EXPECT_TRUE(a.peer_wants(kB, "t/x"));
}

// Interest checking: with each heartbeat a proxy tells its peer how many filters it subscribed to
// there and their hash; a peer that holds something else asks for all of them and takes the
// answer for the whole truth, so a lost SUBSCRIBE or UNSUBSCRIBE is mended within a heartbeat.
class Digests : public Pair {
 protected:
  // Runs both sides' timers up to `until`, moving what they send (through `keep`).
  void run_until(TimePoint until, const std::function<bool(const Datagram&)>& keep = {}) {
    for (int guard = 0; guard < 10000; ++guard) {
      // What is sent is answered at once (no time passes on the wire).
      for (int turn = 0; turn < 10 && (!a_.outbox().empty() || !b_->outbox().empty()); ++turn) {
        move(a_, *b_, kA, keep);
        move(*b_, a_, kB, keep);
      }
      const auto next = earliest(a_.next_deadline(), b_->next_deadline());
      if (!next || *next > until) break;
      now_ = std::max(now_, *next);
      a_.on_timers(now_);
      b_->on_timers(now_);
    }
    now_ = until;
  }
  static std::uint8_t kind(const Datagram& d) {
    return std::to_integer<std::uint8_t>(d.bytes[0]) == ext::kFirstByte
               ? std::to_integer<std::uint8_t>(d.bytes[5])
               : 0;
  }
  // The handshake, after which each holds exactly what the other has (Pair's handshake leaves
  // each holding a "t/#" of the other's).
  void connect() {
    handshake();
    a_.local_filter_added("t/#", now_);
    b_->local_filter_added("t/#", now_);
    settle();
  }
};

TEST_F(Digests, ALostSubscribeIsMendedByTheNextHeartbeat) {
  connect();
  a_.local_filter_added("up/1", now_);
  a_.clear_outbox();  // the SUBSCRIBE is lost
  EXPECT_FALSE(b_->peer_wants(kA, "up/1"));
  const TimePoint lost_at = now_;
  while (!b_->peer_wants(kA, "up/1") && now_ < lost_at + 6s) run_until(now_ + 100ms);
  EXPECT_TRUE(b_->peer_wants(kA, "up/1"));
  EXPECT_LE(now_ - lost_at, 5s + 100ms);  // the heartbeat is every 5 s
  EXPECT_EQ(cb_.peer_interest_mismatches, 1u);
  EXPECT_EQ(ca_.peer_resyncs, 1u);
  run_until(now_ + 20s);  // and then the digests agree: nothing more is asked
  EXPECT_EQ(cb_.peer_interest_mismatches, 1u);
  EXPECT_EQ(ca_.peer_resyncs, 1u);
}

TEST_F(Digests, ALostUnsubscribeIsMendedAndOnlyTheStaleFilterIsDropped) {
  connect();
  a_.local_filter_added("keep/#", now_);
  a_.local_filter_added("drop/#", now_);
  move(a_, *b_, kA);
  ASSERT_TRUE(b_->peer_wants(kA, "drop/x"));
  a_.local_filter_removed("drop/#");
  a_.clear_outbox();  // the UNSUBSCRIBE is lost
  run_until(now_ + 5s + 100ms);
  EXPECT_FALSE(b_->peer_wants(kA, "drop/x"));
  EXPECT_TRUE(b_->peer_wants(kA, "keep/x"));
  EXPECT_EQ(b_->peer_filter_count(kA), 2u);  // keep/# and t/#
  EXPECT_EQ(cb_.peer_interest_expired, 1u);
}

// An answer of several datagrams, one of them lost: the asker asks again, 250 ms later, and takes
// only a complete answer.
TEST_F(Digests, AnAnswerInSeveralPartsIsTakenOnlyWhole) {
  connect();
  std::vector<std::string> filters;
  for (int k = 0; k < 200; ++k) filters.push_back(fmt::format("a/fairly/long/filter/{:04d}/#", k));
  for (const auto& f : filters) a_.local_filter_added(f, now_);
  move(a_, *b_, kA);
  ASSERT_EQ(b_->peer_filter_count(kA), 201u);              // and t/#
  b_->on_datagram(kA, subscribe_packet("stale/#"), now_);  // B holds one A does not have
  // Up to A's heartbeat and B's RESYNC, then A's answer, of which the second part is lost.
  bool lost_one = false;
  std::size_t parts = 0;
  run_until(now_ + 5s + 50ms, [&](const Datagram& d) {
    if (kind(d) != 8) return true;
    ++parts;
    if (parts != 2 || lost_one) return true;
    lost_one = true;
    return false;
  });
  ASSERT_TRUE(lost_one);
  EXPECT_GE(parts, 5u);                        // 200 filters of 30 bytes in datagrams of 1472
  EXPECT_TRUE(b_->peer_wants(kA, "stale/x"));  // an incomplete answer drops nothing
  run_until(now_ + 300ms);
  EXPECT_FALSE(b_->peer_wants(kA, "stale/x"));
  EXPECT_EQ(b_->peer_filter_count(kA), 201u);
  EXPECT_EQ(ca_.peer_resyncs, 2u);
  EXPECT_EQ(cb_.peer_interest_mismatches, 1u);
  for (const auto& d : a_.outbox()) EXPECT_LE(d.bytes.size(), 1472u);
}

// A peer that did not announce the check (an earlier mqtt_proxy) gets no DIGEST: it would count
// each as an unknown packet.
TEST_F(Digests, APeerWithoutTheFeatureGetsNoDigest) {
  a_.start(now_);
  Bytes hello;
  ext::encode(hello,
              ext::Hello{0xb0b0b0b0, 0xa0a0a0a0, ext::kFeatureCredit | ext::kFeatureBatch, 1000});
  a_.on_datagram(kB, hello, now_);
  ASSERT_TRUE(a_.speaks_extension(0));
  a_.local_filter_added("t/#", now_);
  std::size_t hellos = 0;
  for (int k = 0; k < 5; ++k) {
    a_.clear_outbox();
    now_ = *a_.next_deadline();
    a_.on_timers(now_);
    a_.on_datagram(kB, hello, now_);  // it stays alive
    for (const auto& d : a_.outbox()) {
      EXPECT_NE(kind(d), 6);
      hellos += kind(d) == 1;
    }
  }
  EXPECT_GE(hellos, 4u);
}

// A RESYNC for an earlier run of ours, or from a peer's earlier run, is not answered.
TEST_F(Digests, OnlyTheCurrentRunsAreAnswered) {
  connect();
  a_.local_filter_added("t/#", now_);
  a_.clear_outbox();
  Bytes stale;
  ext::encode(stale, ext::Resync{0xb0b0b0b0, 0x12345678, 1});
  a_.on_datagram(kB, stale, now_);
  EXPECT_TRUE(a_.outbox().empty());
  Bytes fresh;
  ext::encode(fresh, ext::Resync{0xb0b0b0b0, 0xa0a0a0a0, 1});
  a_.on_datagram(kB, fresh, now_);
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(kind(a_.outbox()[0]), 8);
  a_.clear_outbox();
  a_.on_datagram(kB, fresh, now_ + 10ms);  // answered at most every 100 ms
  EXPECT_TRUE(a_.outbox().empty());
}

// A peer that announces itself again without the credit feature (a forgery, without a key) while a
// mark is due: the mark's deadline must not stay behind in the past, or the loop would spin.
TEST_F(Pair, APeerThatStopsAnnouncingCreditLeavesNoPastDeadline) {
  handshake();
  publish("t/x");
  move(a_, *b_, kA);
  Bytes hello;
  ext::encode(hello, ext::Hello{0xb0b0b0b0, 0xa0a0a0a0, 0, 1000});
  a_.on_datagram(kB, hello, now_);
  ASSERT_FALSE(a_.speaks_extension(0));
  now_ += 1s;
  a_.on_timers(now_);
  EXPECT_EQ(ca_.peers_up, 0u);  // its liveness is unknown again
  const auto next = a_.next_deadline();
  ASSERT_TRUE(next);
  EXPECT_GT(*next, now_);
}

// --- MQTT 5 properties across peers: DATA5 (kind 9) and the 5.0 form of PUBLISH

// A user property ("k", "v"): what a v5 publisher may attach.
const char* const kUserProperty = "26 00 01 6b 00 01 76";

TEST(Extension, Data5IsKind9WithTheFieldsOfData) {
  const ext::Data d{1, 2, 3, 4, 5, true};
  Bytes b;
  ext::encode(b, d);
  EXPECT_EQ(b.size(), ext::kDataSize);
  EXPECT_EQ(to_hex(b),
            "f0 1c 4d 50 01 09 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 "
            "00 00 00 00 00 00 00 05");
  const auto back = ext::decode(ByteSpan(b).subspan(2));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, ext::Message{d});
  // DATA stays kind 2, and the two are told apart.
  Bytes plain;
  ext::encode(plain, ext::Data{1, 2, 3, 4, 5});
  EXPECT_EQ(to_hex(Bytes(plain.begin(), plain.begin() + 6)), "f0 1c 4d 50 01 02");
  EXPECT_FALSE(std::get<ext::Data>(*ext::decode(ByteSpan(plain).subspan(2))).v5);
  EXPECT_FALSE(ext::decode(bytes("4d 50 01 09 00 00 00 01")));  // a DATA5 cut short
}

class Properties : public Pair {
 protected:
  void publish5(std::string_view topic, std::string_view props_hex,
                std::string_view payload = "hi") {
    a_.forward_publish(topic, as_bytes(payload), false, flow::client(1), now_, bytes(props_hex));
  }
  // What B delivers of A's outbox: topic and property bytes (hex) of each PUBLISH.
  std::vector<std::pair<std::string, std::string>> deliver_to_b() {
    std::vector<Datagram> out = a_.outbox();
    a_.clear_outbox();
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& d : out) {
      for (const auto& p : b_->on_datagram(kA, d.bytes, now_)) {
        got.emplace_back(std::string(p.topic),
                         to_hex(Bytes(p.properties.raw.begin(), p.properties.raw.end())));
      }
    }
    b_->end_turn();
    return got;
  }
  static std::uint8_t kind(const Datagram& d) { return std::to_integer<std::uint8_t>(d.bytes[5]); }
};

TEST_F(Properties, HelloAnnouncesTheFeature) {
  a_.start(now_);
  ASSERT_EQ(a_.outbox().size(), 1u);
  const auto m = ext::decode(ByteSpan(a_.outbox()[0].bytes).subspan(2));
  ASSERT_TRUE(m);
  const auto& h = std::get<ext::Hello>(*m);
  EXPECT_EQ(h.features, ext::kFeatureCredit | ext::kFeatureBatch | ext::kFeatureDigest |
                            ext::kFeatureProperties);
  EXPECT_EQ(ext::kFeatureProperties, 0x8u);
}

TEST_F(Properties, ThePeerGetsThe50FormOnlyAfterItsHelloAnnouncedIt) {
  a_.start(now_);
  a_.on_datagram(kB, subscribe_packet("t/#"), now_);
  a_.clear_outbox();
  // B has not announced anything yet: the 3.1.1 form, byte for byte as without properties.
  publish5("t/x", kUserProperty);
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(a_.outbox()[0].bytes, publish_packet("t/x", "hi"));
  a_.clear_outbox();
  b_->start(now_);
  settle();
  b_->on_datagram(kA, subscribe_packet("t/#"), now_);
  publish5("t/x", kUserProperty);
  ASSERT_EQ(a_.outbox().size(), 1u);
  // DATA5 (epoch a0a0a0a0, peer_epoch b0b0b0b0, dseq 0, mseq 0, offset 0), then the PUBLISH in
  // the 5.0 form: QoS 0, no packet id, property length 7, the user property, the payload.
  EXPECT_EQ(to_hex(a_.outbox()[0].bytes),
            "f0 1c 4d 50 01 09 a0 a0 a0 a0 b0 b0 b0 b0 00 00 00 00 00 00 00 00 00 00 00 00 00 "
            "00 00 00 30 0f 00 03 74 2f 78 07 26 00 01 6b 00 01 76 68 69");
  EXPECT_EQ(deliver_to_b(),
            (std::vector<std::pair<std::string, std::string>>{{"t/x", kUserProperty}}));
  EXPECT_EQ(cb_.peer_datagrams_malformed, 0u);
  // Without properties: DATA and the 3.1.1 form, as before.
  publish("t/y", "hi");
  ASSERT_EQ(a_.outbox().size(), 1u);
  Bytes expected;
  ext::encode(expected, ext::Data{0xa0a0a0a0, 0xb0b0b0b0, 1, 1, 17});
  append(expected, publish_packet("t/y", "hi"));
  EXPECT_EQ(a_.outbox()[0].bytes, expected);
  EXPECT_EQ(deliver_to_b(), (std::vector<std::pair<std::string, std::string>>{{"t/y", ""}}));
}

TEST_F(Properties, TheAliasAndSubscriptionIdentifierNeverTravel) {
  handshake();
  // Topic Alias 5, Subscription Identifier 1, the user property: only the last one goes.
  publish5("t/x", std::string("23 00 05 0b 01 ") + kUserProperty);
  EXPECT_EQ(deliver_to_b(),
            (std::vector<std::pair<std::string, std::string>>{{"t/x", kUserProperty}}));
  // Nothing left once they are gone: the 3.1.1 form.
  publish5("t/y", "23 00 05");
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(kind(a_.outbox()[0]), 2u);
  EXPECT_EQ(deliver_to_b(), (std::vector<std::pair<std::string, std::string>>{{"t/y", ""}}));
  // Property bytes that are not a PUBLISH's (a Session Expiry Interval) are not sent either: the
  // message goes without them.
  publish5("t/z", "11 00 00 00 05");
  ASSERT_EQ(a_.outbox().size(), 1u);
  EXPECT_EQ(kind(a_.outbox()[0]), 2u);
  EXPECT_EQ(deliver_to_b(), (std::vector<std::pair<std::string, std::string>>{{"t/z", ""}}));
  EXPECT_EQ(cb_.peer_datagrams_malformed, 0u);
}

TEST_F(Properties, ABatchOfBothFormsKeepsOrderAndEveryDatagramHasOneForm) {
  handshake();
  // One turn: plain, two with properties, plain. The message expiry is decoded on receipt too.
  publish("t/1", "a");
  publish5("t/2", kUserProperty);
  publish5("t/3", "02 00 00 00 3c");
  publish("t/4", "b");
  const std::vector<Datagram> out = a_.outbox();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(kind(out[0]), 2u);
  EXPECT_EQ(kind(out[1]), 9u);
  EXPECT_EQ(kind(out[2]), 2u);
  // The second holds both 5.0-form PUBLISHes behind one DATA5 header.
  Bytes second;
  ext::encode(second, ext::Data{0xa0a0a0a0, 0xb0b0b0b0, 1, 1, 8, true});
  append(second, bytes("30 0f 00 03 74 2f 32 07 26 00 01 6b 00 01 76 68 69"));
  append(second, bytes("30 0d 00 03 74 2f 33 05 02 00 00 00 3c 68 69"));
  EXPECT_EQ(to_hex(out[1].bytes), to_hex(second));
  EXPECT_EQ(out[2].bytes.size(), ext::kDataSize + publish_packet("t/4", "b").size());
  a_.clear_outbox();
  std::vector<std::string> got;
  for (const auto& d : out) {
    for (const auto& p : b_->on_datagram(kA, d.bytes, now_)) {
      got.push_back(std::string(p.topic) + " " +
                    to_hex(Bytes(p.properties.raw.begin(), p.properties.raw.end())));
      if (p.topic == "t/3") {
        EXPECT_EQ(p.properties.message_expiry, 60u);
      }
    }
  }
  EXPECT_EQ(got, (std::vector<std::string>{"t/1 ", std::string("t/2 ") + kUserProperty,
                                           "t/3 02 00 00 00 3c", "t/4 "}));
  EXPECT_EQ(cb_.peer_datagrams_lost + cb_.peer_publish_lost + cb_.peer_datagrams_malformed, 0u);
  EXPECT_EQ(cb_.peer_publish_in, 4u);
}

TEST_F(Properties, WhatWaitsForCreditKeepsItsForm) {
  handshake();
  // B's window is 1000 bytes: the rest waits, and goes in its form once B grants more.
  const std::string big(400, 'x');
  for (int k = 0; k < 4; ++k) publish5("t/" + std::to_string(k), kUserProperty, big);
  EXPECT_GT(a_.pending_bytes(0), 0u);
  std::size_t delivered = 0;
  for (int round = 0; round < 10 && delivered < 4; ++round) {
    for (const auto& [topic, props] : deliver_to_b()) {
      EXPECT_EQ(props, kUserProperty) << topic;
      ++delivered;
    }
    move(*b_, a_, kB);
    now_ += 10ms;
    a_.on_timers(now_);
  }
  EXPECT_EQ(delivered, 4u);
  EXPECT_EQ(cb_.peer_datagrams_malformed, 0u);
}

TEST_F(Properties, APeerThatDidNotAnnounceTheBitGetsNoProperties) {
  a_.start(now_);
  // A capable peer of an earlier version: credit, batch and digest, not 0x8.
  Bytes hello;
  ext::encode(hello,
              ext::Hello{0xb0b0b0b0, 0xa0a0a0a0,
                         ext::kFeatureCredit | ext::kFeatureBatch | ext::kFeatureDigest, 1000});
  a_.on_datagram(kB, hello, now_);
  ASSERT_TRUE(a_.speaks_extension(0));
  a_.on_datagram(kB, subscribe_packet("t/#"), now_);
  a_.clear_outbox();
  publish5("t/x", kUserProperty);
  publish("t/y", "hi");
  ASSERT_EQ(a_.outbox().size(), 1u);  // one batch, one form
  Bytes expected;
  ext::encode(expected, ext::Data{0xa0a0a0a0, 0xb0b0b0b0, 0, 0, 0});
  append(expected, publish_packet("t/x", "hi"));
  append(expected, publish_packet("t/y", "hi"));
  EXPECT_EQ(a_.outbox()[0].bytes, expected);
}

}  // namespace
}  // namespace mqtt_proxy::test
