// Upstream mode's connection table on byte vectors and virtual time: the dial asked for once the
// CONNECT is in, the client's pipelined packets held until the broker's CONNACK, the broker's
// refusal or absence told to the client, timeouts, both directions of backpressure, and every end
// (client, broker, shutdown) closing the other side once.
#include "mqtt_proxy/upstream/sessions.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "client_packets.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using upstream::Sessions;

// The proxy's own TCP toward clients: what was sent, what is still unacknowledged, who was closed.
class Clients final : public broker::BrokerHost {
 public:
  void send(broker::ClientHandle c, ByteSpan b) override {
    EXPECT_FALSE(closed.count(c)) << "bytes after the close";
    append(sent[c], b);
    if (!acking) unacked[c] += b.size();
  }
  std::size_t queued_bytes(broker::ClientHandle c) const override {
    auto it = unacked.find(c);
    return it == unacked.end() ? 0 : it->second;
  }
  void close(broker::ClientHandle c) override { EXPECT_TRUE(closed.insert(c).second); }

  Bytes take(std::uint64_t c) {
    Bytes b = std::move(sent[c]);
    sent[c].clear();
    return b;
  }
  std::map<std::uint64_t, Bytes> sent;
  std::map<std::uint64_t, std::size_t> unacked;
  std::set<std::uint64_t> closed;
  bool acking = true;  // false: the client acknowledges nothing until told
};

class FakeLink final : public upstream::Link {
 public:
  void dial(std::uint64_t id) override { dials.push_back(id); }
  void touch(std::uint64_t id) override { touched.insert(id); }
  std::vector<std::uint64_t> dials;
  std::set<std::uint64_t> touched;
};

Bytes connack(std::uint8_t code) {
  Bytes b;
  mqtt::encode_connack(b, mqtt::ProtocolVersion::V311, false, code, {});
  return b;
}

class SessionsTest : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kId = 42;

  void SetUp() override { make({}); }
  void make(upstream::SessionsConfig cfg) {
    sessions = std::make_unique<Sessions>(cfg, clients, link, logger, counters);
  }
  TimePoint at(int ms) const { return TimePoint{} + std::chrono::milliseconds(ms); }
  // What the link would send: outgoing() emptied, then on_sent().
  Bytes drain_outgoing(TimePoint now) {
    Bytes* out = sessions->outgoing(kId);
    if (!out) return {};
    Bytes b = std::move(*out);
    out->clear();
    sessions->on_sent(kId, now);
    return b;
  }
  // A client through CONNECT and the broker's CONNACK 0; the queues emptied.
  void open() {
    sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
    const Bytes c = connect_packet("c1");
    ASSERT_EQ(sessions->on_data(kId, c, at(1)), c.size());
    ASSERT_EQ(link.dials, std::vector<std::uint64_t>{kId});
    sessions->on_connected(kId, at(2));
    EXPECT_EQ(drain_outgoing(at(2)), c);
    sessions->on_upstream_data(kId, connack(0), at(3));
    EXPECT_EQ(clients.take(kId), connack(0));
    link.touched.clear();
  }

  log::Logger logger;
  metrics::Counters counters;
  Clients clients;
  FakeLink link;
  std::unique_ptr<Sessions> sessions;
};

TEST_F(SessionsTest, DialsOnceTheConnectIsInAndHoldsThePipelinedPacketsForTheConnack) {
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  const Bytes c = connect_packet("c1");
  const Bytes p = publish_packet("a/b", "hello", 1, 1);
  const Bytes both = [&] {
    Bytes b = c;
    append(b, p);
    return b;
  }();
  // Half a CONNECT: nothing yet (a short packet waits for its rest in the caller's buffer).
  EXPECT_EQ(sessions->on_data(kId, ByteSpan(both).first(5), at(1)), 0u);
  EXPECT_TRUE(link.dials.empty());
  EXPECT_FALSE(sessions->hold(kId, true));  // waiting for bytes, not for a queue
  EXPECT_EQ(sessions->on_data(kId, both, at(2)), c.size());
  EXPECT_EQ(link.dials, std::vector<std::uint64_t>{kId});
  EXPECT_TRUE(sessions->hold(kId, true));       // the PUBLISH waits for the CONNACK: so would a FIN
  EXPECT_EQ(sessions->outgoing(kId), nullptr);  // nothing before the connection is up
  EXPECT_FALSE(sessions->wants_read(kId));
  sessions->on_connected(kId, at(3));
  EXPECT_TRUE(link.touched.count(kId));
  EXPECT_EQ(drain_outgoing(at(3)), c);
  EXPECT_TRUE(sessions->wants_read(kId));
  EXPECT_TRUE(sessions->resumed().empty());
  sessions->on_upstream_data(kId, connack(0), at(4));
  EXPECT_EQ(clients.take(kId), connack(0));
  EXPECT_EQ(sessions->resumed(), std::vector<std::uint64_t>{kId});
  sessions->resumed().clear();
  EXPECT_EQ(sessions->on_data(kId, p, at(5)), p.size());
  EXPECT_EQ(drain_outgoing(at(5)), p);
  EXPECT_EQ(counters.upstream_connections, 1u);
  EXPECT_EQ(counters.mqtt_connects, 1u);
  EXPECT_EQ(sessions->connected_count(), 1u);
  EXPECT_EQ(link.dials.size(), 1u);
}

TEST_F(SessionsTest, TheBrokersRefusalReachesTheClientAndEndsBothSides) {
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  const Bytes c = connect_packet("c1");
  sessions->on_data(kId, c, at(1));
  sessions->on_connected(kId, at(2));
  drain_outgoing(at(2));
  sessions->on_upstream_data(kId, connack(5), at(3));
  EXPECT_EQ(clients.take(kId), connack(5));
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(sessions->finished(kId));
  EXPECT_TRUE(link.touched.count(kId));  // the link closes its side
  EXPECT_EQ(sessions->size(), 1u);       // until it says it did
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
  EXPECT_EQ(counters.mqtt_connects_refused, 1u);
  EXPECT_EQ(counters.upstream_lost, 0u);
}

TEST_F(SessionsTest, ABrokerThatCannotBeReachedIsServerUnavailable) {
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  sessions->on_data(kId, connect_packet("c1"), at(1));
  sessions->on_failed(kId, "connect to 10.0.0.4:1883: Connection refused", at(2));
  EXPECT_EQ(clients.take(kId), connack(3));  // 3.1.1's Server unavailable
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(sessions->finished(kId));
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
  EXPECT_EQ(counters.upstream_connect_failures, 1u);
  EXPECT_EQ(counters.upstream_connections, 0u);
}

TEST_F(SessionsTest, ADialThatTakesTooLongIsServerUnavailable) {
  upstream::SessionsConfig cfg;
  cfg.dial_timeout = std::chrono::seconds(2);
  make(cfg);
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  sessions->on_data(kId, connect_packet("c1"), at(1000));
  ASSERT_TRUE(sessions->next_deadline());
  EXPECT_EQ(*sessions->next_deadline(), at(3000));  // before the CONNECT's, now moot, at 10 s
  sessions->on_timers(at(2999));
  EXPECT_FALSE(clients.closed.count(kId));
  sessions->on_timers(at(3000));
  EXPECT_EQ(clients.take(kId), connack(3));
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(sessions->finished(kId));  // the link abandons its connect
  EXPECT_EQ(counters.upstream_connect_failures, 1u);
  sessions->on_timers(at(10000));  // the CONNECT's deadline: nothing left to do
  EXPECT_EQ(counters.upstream_connect_failures, 1u);
  // The link's answer after that changes nothing.
  sessions->on_connected(kId, at(10001));
  EXPECT_EQ(sessions->outgoing(kId), nullptr);
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
}

TEST_F(SessionsTest, AClientThatSendsNoConnectIsClosedWithoutADial) {
  upstream::SessionsConfig cfg;
  cfg.connect_timeout = std::chrono::seconds(10);
  make(cfg);
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  sessions->on_timers(at(9999));
  EXPECT_FALSE(clients.closed.count(kId));
  sessions->on_timers(at(10000));
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(clients.take(kId).empty());
  EXPECT_TRUE(link.dials.empty());
  EXPECT_EQ(sessions->size(), 0u);  // no link to wait for
}

TEST_F(SessionsTest, TheClientLeavingClosesTheBrokersConnectionAfterWhatWasQueued) {
  open();
  const Bytes p = publish_packet("a/b", "last", 1, 1);
  EXPECT_EQ(sessions->on_data(kId, p, at(10)), p.size());
  sessions->on_lost(kId, "connection reset by client", at(11));
  EXPECT_TRUE(sessions->finished(kId));
  EXPECT_TRUE(link.touched.count(kId));
  EXPECT_FALSE(clients.closed.count(kId));  // gone already: not closed again
  // What was queued before still goes (no DISCONNECT is added: the broker publishes the will).
  Bytes* out = sessions->outgoing(kId);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(*out, p);
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
  EXPECT_EQ(sessions->on_data(kId, p, at(12)), p.size());  // discarded
}

TEST_F(SessionsTest, TheBrokerClosingClosesTheClient) {
  open();
  const Bytes p = publish_packet("a/b", "news", 0);
  sessions->on_upstream_data(kId, p, at(10));
  sessions->on_failed(kId, "broker closed the connection", at(11));
  EXPECT_EQ(clients.take(kId), p);  // what came before the close first
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_EQ(counters.upstream_lost, 1u);
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
  sessions->on_lost(kId, "connection closed", at(12));  // the client's side ends later: nothing
}

TEST_F(SessionsTest, AClientThatDoesNotReadStopsTheReadsFromItsBroker) {
  upstream::SessionsConfig cfg;
  cfg.relay.max_buffered = 1000;
  make(cfg);
  open();
  clients.acking = false;
  const Bytes p = publish_packet("a/b", std::string(300, 'x'), 0);
  Bytes chunk;
  for (int i = 0; i < 10; ++i) append(chunk, p);
  // The client's queue takes up to the limit, the relay's then, and the rest waits unread.
  std::size_t reads = 0;
  while (sessions->wants_read(kId) && reads < 100) {
    sessions->on_upstream_data(kId, chunk, at(10));
    ++reads;
  }
  EXPECT_FALSE(sessions->wants_read(kId));
  EXPECT_LE(reads, 2u);
  const std::size_t queued = clients.queued_bytes(kId);
  EXPECT_GE(queued, cfg.relay.max_buffered);
  EXPECT_LE(queued, cfg.relay.max_buffered + 2 * p.size());
  const std::size_t delivered_before = clients.sent[kId].size();
  // The client acknowledges: the relay's bytes move, and reads resume.
  clients.unacked[kId] = 0;
  link.touched.clear();
  sessions->on_client_progress(kId, at(20));
  EXPECT_GT(clients.sent[kId].size(), delivered_before);
  // Keep acknowledging until everything read reached it, in order and whole.
  for (int i = 0; i < 100 && !sessions->wants_read(kId); ++i) {
    clients.unacked[kId] = 0;
    sessions->on_client_progress(kId, at(21 + i));
  }
  EXPECT_TRUE(sessions->wants_read(kId));
  EXPECT_TRUE(link.touched.count(kId));  // told to read again
  const Bytes got = clients.take(kId);
  EXPECT_EQ(got.size(), reads * chunk.size());
  EXPECT_EQ(got.size() % p.size(), 0u);
}

TEST_F(SessionsTest, ABrokerThatDoesNotReadHoldsTheClientsBytesUnread) {
  upstream::SessionsConfig cfg;
  cfg.relay.max_buffered = 1000;
  make(cfg);
  open();
  const Bytes p = publish_packet("a/b", std::string(300, 'x'), 1, 1);
  Bytes burst;
  for (int i = 0; i < 10; ++i) append(burst, p);
  const std::size_t used = sessions->on_data(kId, burst, at(10));
  EXPECT_LT(used, burst.size());
  EXPECT_EQ(used % p.size(), 0u);
  EXPECT_TRUE(sessions->hold(kId, true));  // a FIN behind these waits
  // Deliveries still flow the other way.
  EXPECT_TRUE(sessions->wants_read(kId));
  // The link writes: the client's bytes go on.
  EXPECT_TRUE(sessions->resumed().empty());
  const Bytes sent = drain_outgoing(at(11));
  EXPECT_EQ(sent.size(), used);
  EXPECT_EQ(sessions->resumed(), std::vector<std::uint64_t>{kId});
  sessions->resumed().clear();
  const std::size_t more = sessions->on_data(kId, ByteSpan(burst).subspan(used), at(12));
  EXPECT_GT(more, 0u);
}

TEST_F(SessionsTest, APacketLargerThanTheReceiveBufferIsTakenInPieces) {
  open();
  // 70000 bytes in segments, as TCP hands them over: a receive buffer of 64 KiB could never
  // hold it whole, so every byte offered must be taken.
  const Bytes big = publish_packet("a/b", std::string(70000, 'x'), 1, 1);
  for (std::size_t from = 0; from < big.size(); from += 1448) {
    const auto piece = ByteSpan(big).subspan(from, std::min<std::size_t>(1448, big.size() - from));
    ASSERT_EQ(sessions->on_data(kId, piece, at(10)), piece.size()) << "at " << from;
    EXPECT_FALSE(sessions->hold(kId, false));  // waiting for its rest, not for a queue
  }
  EXPECT_EQ(drain_outgoing(at(11)), big);
  // A FIN in the middle of one: nothing is forwarded of it.
  sessions->on_data(kId, ByteSpan(big).first(5000), at(12));
  sessions->on_lost(kId, "client closed the connection", at(13));
  Bytes* out = sessions->outgoing(kId);
  ASSERT_NE(out, nullptr);
  EXPECT_TRUE(out->empty());
}

TEST_F(SessionsTest, ALongPacketTheSessionHoldsWaitsForAFullQueueAndAFinWithIt) {
  upstream::SessionsConfig cfg;
  cfg.relay.max_buffered = 1000;
  make(cfg);
  open();
  // Packets longer than max_unread_frame: each moves into the session while it arrives, and
  // waits there, whole, while the broker's queue is full.
  const Bytes p = publish_packet("a/b", std::string(20000, 'x'), 1, 1);
  Bytes stream;
  for (int i = 0; i < 4; ++i) append(stream, p);
  // The caller: holds what it has not given, offers at most a receive buffer's worth (4 KiB
  // here) at a time, and writes whatever the relay queued for the broker in between.
  Bytes pending = stream;
  Bytes sent;
  bool held_seen = false;
  for (int i = 0; i < 1000 && sent.size() < stream.size(); ++i) {
    const std::size_t n = sessions->on_data(
        kId, ByteSpan(pending).first(std::min<std::size_t>(4096, pending.size())), at(10 + i));
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
    if (sessions->hold(kId, !pending.empty())) held_seen = true;  // a FIN would wait now
    sessions->resumed().clear();
    if (i % 3 == 2) append(sent, drain_outgoing(at(10 + i)));  // the broker reads now and then
  }
  EXPECT_TRUE(held_seen);
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(sent, stream);
  EXPECT_FALSE(sessions->hold(kId, false));
}

TEST_F(SessionsTest, ALongConnectIsHeldWhileItArrivesAndWhatFollowsItWaitsForTheConnack) {
  sessions->on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, at(0));
  const std::string will_payload(20000, 'w');  // longer than max_unread_frame
  mqtt::Will will;
  will.topic = "last/words";
  will.payload = as_bytes(will_payload);
  const Bytes c = connect_packet("c1", 60, kUsername, kPassword, will);
  const Bytes p = publish_packet("a/b", "after", 1, 1);
  Bytes both = c;
  append(both, p);
  // Its start moves into the session; its rest is taken up to its end, and the PUBLISH after it
  // stays in the caller's buffer until the CONNACK.
  EXPECT_EQ(sessions->on_data(kId, ByteSpan(both).first(100), at(1)), 100u);
  EXPECT_FALSE(sessions->hold(kId, false));
  EXPECT_EQ(sessions->on_data(kId, ByteSpan(both).subspan(100), at(1)), c.size() - 100);
  EXPECT_EQ(link.dials, std::vector<std::uint64_t>{kId});
  EXPECT_TRUE(sessions->hold(kId, true));
  sessions->on_connected(kId, at(2));
  EXPECT_EQ(drain_outgoing(at(2)), c);
  sessions->on_upstream_data(kId, connack(0), at(3));
  EXPECT_EQ(sessions->resumed(), std::vector<std::uint64_t>{kId});
  EXPECT_EQ(sessions->on_data(kId, p, at(4)), p.size());
  EXPECT_EQ(drain_outgoing(at(4)), p);
}

// Refuses every PUBLISH, so that the relay answers each itself.
class RefuseAll final : public hooks::Hooks {
 public:
  std::string_view name() const override { return "refuse-all"; }
  hooks::Reason auth_publish(const hooks::Client&, hooks::Field&, hooks::Field&, std::uint8_t,
                             bool) override {
    return hooks::kNotAuthorized;
  }
};

TEST_F(SessionsTest, AClientFloodingRefusedPublishesWithoutReadingIsHeldAndResumed) {
  upstream::SessionsConfig cfg;
  cfg.relay.max_buffered = 200;
  std::vector<std::unique_ptr<hooks::Hooks>> list;
  list.push_back(std::make_unique<RefuseAll>());
  cfg.relay.hooks = std::make_shared<hooks::HookChain>(
      std::move(list), std::chrono::milliseconds(5), [] { return TimePoint{}; }, logger);
  make(cfg);
  open();
  clients.acking = false;
  // Each QoS 1 PUBLISH is answered with a PUBACK by the relay, none forwarded: the answers fill
  // the client's queue, then the relay's (to twice the limit), and then its bytes wait unread.
  const Bytes p = publish_packet("a/b", "x", 1, 1);
  Bytes flood;
  for (int i = 0; i < 1000; ++i) append(flood, p);
  // Offered again whenever resumed, as ProxyCore does, until the client's queue is full too.
  std::size_t used = 0;
  for (int i = 0; i < 20; ++i) {
    used += sessions->on_data(kId, ByteSpan(flood).subspan(used), at(10));
    if (sessions->resumed().empty()) break;
    sessions->resumed().clear();
  }
  EXPECT_LT(used, flood.size());
  // Held: what the client's queue took (it moves while under the limit) and the relay's.
  EXPECT_GE(clients.queued_bytes(kId), cfg.relay.max_buffered);
  EXPECT_LE(clients.queued_bytes(kId), 4 * cfg.relay.max_buffered);
  EXPECT_TRUE(sessions->hold(kId, true));
  EXPECT_TRUE(sessions->resumed().empty());
  EXPECT_EQ(sessions->outgoing(kId)->size(), 0u);  // the broker hears of none of them
  // The client reads its PUBACKs: the relay's move on, and its bytes are offered again.
  clients.unacked[kId] = 0;
  sessions->on_client_progress(kId, at(11));
  EXPECT_EQ(sessions->resumed(), std::vector<std::uint64_t>{kId});
  sessions->resumed().clear();
  std::size_t total = used;
  for (int i = 0; i < 1000 && total < flood.size(); ++i) {
    clients.unacked[kId] = 0;
    sessions->on_client_progress(kId, at(12 + i));
    sessions->resumed().clear();
    total += sessions->on_data(kId, ByteSpan(flood).subspan(total), at(12 + i));
  }
  EXPECT_EQ(total, flood.size());
  clients.unacked[kId] = 0;
  sessions->on_client_progress(kId, at(200));
  Bytes puback;
  mqtt::encode_packet_id_ack(puback, mqtt::PacketType::Puback, 1);
  EXPECT_EQ(clients.take(kId).size(), 1000 * puback.size());
  EXPECT_EQ(counters.mqtt_publish_refused, 1000u);
}

TEST_F(SessionsTest, ShutdownClosesEveryClientAndEveryBrokerConnection) {
  open();
  sessions->on_open(7, wire::SocketAddress{wire::Ipv4Address{0x0a000003}, 40001}, at(5));
  sessions->close_all("shutting down", at(10));
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(clients.closed.count(7));
  EXPECT_TRUE(sessions->finished(kId));
  EXPECT_TRUE(link.touched.count(kId));
  EXPECT_EQ(sessions->size(), 1u);  // kId's link is still to close; 7 never had one
  sessions->on_closed(kId);
  EXPECT_EQ(sessions->size(), 0u);
  EXPECT_EQ(sessions->connected_count(), 0u);
}

TEST_F(SessionsTest, AMalformedPacketClosesOnlyThatClientWithAReason) {
  open();
  const Bytes bad{std::byte{0x30}, std::byte{0x02}, std::byte{0x00}, std::byte{0x05}};  // topic
  sessions->on_data(kId, bad, at(10));
  EXPECT_TRUE(clients.closed.count(kId));
  EXPECT_TRUE(sessions->finished(kId));
  EXPECT_EQ(counters.mqtt_protocol_errors, 1u);
}

// --- A seeded simulation: both streams through one session, whatever the segmentation, the
// order of events and the backpressure, arrive whole and in order, and nothing stalls. The caller
// behaves as ProxyCore does: it offers the client's bytes when new ones arrive and when resumed,
// never otherwise, so a resume the session forgets is a stall the run detects.

constexpr std::uint64_t kSimSeeds = 40;

class SessionsSim : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(SessionsSim, BothStreamsArriveWholeAndInOrder) {
  std::mt19937_64 rng(GetParam());
  auto pick = [&](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  log::Logger logger;
  metrics::Counters counters;
  Clients clients;
  clients.acking = false;
  FakeLink link;
  upstream::SessionsConfig cfg;
  cfg.relay.max_buffered = pick(1, 3) * 8192;
  Sessions sessions(cfg, clients, link, logger, counters);
  constexpr std::uint64_t kId = 9;
  // The client's stream: CONNECT, then PUBLISHes short and long (over max_unread_frame), QoS 0
  // and 1, and SUBSCRIBEs. The broker's: CONNACK, then PUBLISHes. No hooks: byte for byte.
  Bytes up = connect_packet("sim");
  const std::size_t connect_size = up.size();
  Bytes down = connack(0);
  for (int i = 0; i < 60; ++i) {
    const std::size_t len = pick(0, 9) == 0 ? pick(17000, 70000) : pick(0, 2000);
    const auto qos = static_cast<std::uint8_t>(pick(0, 1));
    append(up, pick(0, 5) == 0 ? subscribe_packet("f/" + std::to_string(i), 1)
                               : publish_packet("t/" + std::to_string(i), std::string(len, 'u'),
                                                qos, qos ? 1 : 0));
    append(down, publish_packet("d/" + std::to_string(i), std::string(pick(0, 30000), 'd'), 0));
  }
  constexpr std::size_t kRcvBuffer = 65535;
  Bytes rcv;  // the caller's receive buffer
  std::size_t up_sent = 0, down_sent = 0;
  Bytes at_broker, at_client;
  bool connected = false;
  TimePoint now{};
  auto offer = [&] {
    const std::size_t n = sessions.on_data(kId, rcv, now);
    rcv.erase(rcv.begin(), rcv.begin() + static_cast<std::ptrdiff_t>(n));
  };
  auto settle = [&] {
    for (int k = 0; k < 100 && !sessions.resumed().empty(); ++k) {
      sessions.resumed().clear();
      offer();
    }
  };
  sessions.on_open(kId, wire::SocketAddress{wire::Ipv4Address{0x0a000002}, 40000}, now);
  const std::size_t steps = 20000;
  for (std::size_t step = 0; step < steps; ++step) {
    now += std::chrono::microseconds(100);
    const bool draining = step > steps / 2;  // every side keeps up: everything must get through
    switch (pick(0, 4)) {
      case 0: {  // the client sends a segment (as much as the window allows)
        const std::size_t n =
            std::min({pick(1, 4096), kRcvBuffer - rcv.size(), up.size() - up_sent});
        if (n == 0) break;
        rcv.insert(rcv.end(), up.begin() + static_cast<std::ptrdiff_t>(up_sent),
                   up.begin() + static_cast<std::ptrdiff_t>(up_sent + n));
        up_sent += n;
        offer();
        break;
      }
      case 1:  // the link writes some of what waits for the broker
        if (Bytes* out = sessions.outgoing(kId); out && !out->empty()) {
          const std::size_t n = draining ? out->size() : pick(1, out->size());
          at_broker.insert(at_broker.end(), out->begin(),
                           out->begin() + static_cast<std::ptrdiff_t>(n));
          out->erase(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(n));
          sessions.on_sent(kId, now);
        }
        break;
      case 2: {  // the broker sends, once it has the CONNECT, while the link may read
        if (!connected || at_broker.size() < connect_size || !sessions.wants_read(kId)) break;
        const std::size_t n = std::min(pick(1, 65536), down.size() - down_sent);
        if (n == 0) break;
        sessions.on_upstream_data(kId, ByteSpan(down).subspan(down_sent, n), now);
        down_sent += n;
        break;
      }
      case 3:  // the client acknowledges what it got
        append(at_client, clients.take(kId));
        clients.unacked[kId] = 0;
        sessions.on_client_progress(kId, now);
        break;
      default:  // the dial completes
        if (!connected && !link.dials.empty()) {
          connected = true;
          sessions.on_connected(kId, now);
        }
        break;
    }
    settle();
    ASSERT_FALSE(sessions.finished(kId))
        << "step " << step << ": " << counters.mqtt_protocol_errors;
    // Bounded: the caller's buffer by its window, the client's queue by three times the limit
    // and a packet.
    ASSERT_LE(rcv.size(), kRcvBuffer);
    ASSERT_LE(clients.queued_bytes(kId), 3 * cfg.relay.max_buffered + 70000);
  }
  append(at_client, clients.take(kId));
  EXPECT_EQ(up_sent, up.size()) << "the client's stream stalled";
  EXPECT_EQ(at_broker.size(), up.size());
  EXPECT_TRUE(at_broker == up) << "the broker got the client's stream out of order or changed";
  EXPECT_EQ(down_sent, down.size()) << "the broker's stream stalled";
  EXPECT_EQ(at_client.size(), down.size());
  EXPECT_TRUE(at_client == down);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SessionsSim, ::testing::Range<std::uint64_t>(0, kSimSeeds));

}  // namespace
}  // namespace mqtt_proxy::test
