// The whole chain in one seeded simulation: a publisher's TCP -> proxy A -> a UDP link that may
// lose datagrams -> proxy B -> a subscriber's TCP that reads at its own pace and pauses. Both
// proxies are the real ProxyCore with the peer extension and backpressure; the clients are the
// reference TCP of sim_tcp.hpp with MQTT on top. Everything runs in virtual time.
//
// What must hold for every seed: every message the publisher sent either reached the subscriber,
// in order and once, or is counted where it was lost (the UDP link, a stuck subscriber, a stuck
// peer); with a lossless link and a subscriber that never stops for longer than the grace, none
// is lost at all; and no queue grows past its bound. MQTT_PROXY_CHAIN_SEED=N replays one seed
// (600 passed when written; CI runs 80), MQTT_PROXY_CHAIN_TRACE=1 traces the datagrams.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <sstream>

#include "client_packets.hpp"
#include "frame_views.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/peering/extension.hpp"
#include "sim_tcp.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace std::chrono_literals;
using sim::Wire;
using wire::Ipv4Address;
using wire::MacAddress;
using wire::Seq;

const Ipv4Address kIpB = *Ipv4Address::parse("192.168.1.101");    // the subscriber's proxy
const Ipv4Address kIpSub = *Ipv4Address::parse("192.168.1.102");  // the subscriber
const Ipv4Address kIpPub = *Ipv4Address::parse("192.168.1.103");  // the publisher
const Ipv4Address kIpA = *Ipv4Address::parse("192.168.1.104");    // the publisher's proxy
constexpr MacAddress kMacA{{2, 0, 0, 0, 0, 0xa}};
constexpr MacAddress kMacB{{2, 0, 0, 0, 0, 0xb}};
constexpr MacAddress kMacPub{{2, 0, 0, 0, 0, 0x3}};
constexpr MacAddress kMacSub{{2, 0, 0, 0, 0, 0x2}};

struct Scenario {
  std::uint64_t seed = 0;
  int messages = 0;
  std::size_t payload = 0;
  double udp_loss = 0;
  double read_bytes_per_ms = 0;  // the subscriber's reading pace
  Duration longest_pause{};      // it stops reading now and then, for up to this long
  bool stuck = false;            // once, it stops for longer than the grace
};

std::ostream& operator<<(std::ostream& os, const Scenario& s) {
  return os << "seed " << s.seed << ": " << s.messages << " messages of " << s.payload
            << " bytes, udp loss " << s.udp_loss << ", reads " << s.read_bytes_per_ms
            << " bytes/ms, pauses up to " << to_ms(s.longest_pause) << " ms"
            << (s.stuck ? ", once stuck" : "");
}

core::CoreConfig proxy_config(Ipv4Address self, MacAddress mac, Ipv4Address peer,
                              std::uint32_t epoch) {
  core::CoreConfig c;
  c.interfaces.push_back(core::InterfaceInfo{"eth0", mac, {self}, 1500});
  c.peering.peers = {peer};
  c.peering.epoch = epoch;
  c.secret = test_secret(static_cast<std::uint8_t>(epoch));
  // Small bounds, so that a few thousand messages exercise them.
  c.broker.max_queued_bytes = 64 * 1024;
  c.peering.max_pending_bytes = 64 * 1024;
  c.peering.credit_window = 16 * 1024;
  c.flow.high_water = 16 * 1024;
  c.flow.low_water = 8 * 1024;
  return c;
}

// An Ethernet frame from a client to its proxy.
Bytes to_frame(const Wire& w, MacAddress src_mac, Ipv4Address src, MacAddress dst_mac,
               Ipv4Address dst) {
  wire::TcpFrameSpec s;
  s.src_mac = src_mac;
  s.dst_mac = dst_mac;
  s.src_ip = src;
  s.dst_ip = dst;
  s.src_port = 40000;
  s.dst_port = 1883;
  s.seq = w.seq;
  s.ack = w.ack;
  s.flags = w.flags;
  s.window = w.window;
  s.mss = w.mss;
  s.window_scale = w.wscale;
  s.payload = w.payload;
  Bytes f(wire::tcp_frame_size(s));
  wire::emit_tcp_frame(s, f);
  return f;
}

Wire from_frame(ByteSpan frame) {
  const auto v = parse_tcp_frame(frame);
  EXPECT_TRUE(v);
  Wire w;
  w.seq = v->tcp.seq();
  w.ack = v->tcp.ack();
  w.flags = v->tcp.flags();
  w.window = v->tcp.window();
  const auto o = v->tcp.options();
  w.mss = o.mss;
  w.wscale = o.window_scale;
  w.payload.assign(v->tcp.payload().begin(), v->tcp.payload().end());
  return w;
}

// Datagrams between the proxies, delayed, lost at random. SUBSCRIBE and UNSUBSCRIBE are spared:
// interest is sent once (a lost one waits for --peer-refresh), and this test is about the
// messages; HELLO, CREDIT, BLOCKED and the DATA datagrams all take their chances.
class UdpLink {
 public:
  UdpLink(double loss, std::mt19937_64& rng) : loss_(loss), rng_(rng) {}
  void send(const Bytes& b, TimePoint now) {
    const auto first = std::to_integer<std::uint8_t>(b[0]);
    const bool lost_now = first != 0x82 && first != 0xa2 && loss_ > 0 &&
                          std::uniform_real_distribution<double>(0, 1)(rng_) < loss_;
    if (std::getenv("MQTT_PROXY_CHAIN_TRACE")) trace(b, now, lost_now);
    if (lost_now) {
      ++lost_;
      return;
    }
    queue_.emplace(now + 1ms, b);
  }
  // MQTT_PROXY_CHAIN_TRACE=1: one line per datagram on stderr, what it carries and its fate.
  static void trace(const Bytes& b, TimePoint now, bool lost) {
    std::cerr << to_ms(now - t0()) << "ms " << (lost ? "LOST " : "sent ");
    ByteSpan rest = b;
    int publishes = 0;
    while (!rest.empty()) {
      bool need_more = false;
      mqtt::DecodeError e{};
      const auto f = mqtt::parse_frame(rest, SIZE_MAX, need_more, e);
      if (!f) break;
      if (f->first_byte == 0xf0) {
        if (auto m = peering::ext::decode(f->body)) {
          if (auto* d = std::get_if<peering::ext::Data>(&*m)) {
            std::cerr << "DATA d" << d->dseq << " m" << d->mseq << " ";
          } else if (std::get_if<peering::ext::Credit>(&*m)) {
            std::cerr << "CREDIT ";
          } else if (std::get_if<peering::ext::Blocked>(&*m)) {
            std::cerr << "BLOCKED ";
          } else {
            std::cerr << "HELLO ";
          }
        }
      } else if (f->type() == mqtt::PacketType::Publish) {
        ++publishes;
      }
      rest = rest.subspan(f->wire_size);
    }
    std::cerr << publishes << " publishes\n";
  }
  std::optional<TimePoint> next() const {
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first;
  }
  std::optional<Bytes> pop_due(TimePoint now) {
    if (queue_.empty() || queue_.begin()->first > now) return std::nullopt;
    Bytes b = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    return b;
  }
  std::uint64_t lost() const { return lost_; }

 private:
  double loss_;
  std::mt19937_64& rng_;
  std::multimap<TimePoint, Bytes> queue_;
  std::uint64_t lost_ = 0;
};

// The sequence numbers in the PUBLISH payloads of the MQTT byte stream from the proxy, read as
// the stream grows.
struct PublishReader {
  std::size_t parsed = 0;
  std::vector<std::uint32_t> seqs;
  void read(const Bytes& stream);
};

void PublishReader::read(const Bytes& stream) {
  for (;;) {
    const ByteSpan rest = ByteSpan(stream).subspan(parsed);
    bool need_more = false;
    mqtt::DecodeError err{};
    const auto f = mqtt::parse_frame(rest, SIZE_MAX, need_more, err);
    if (!f) break;
    parsed += f->wire_size;
    if (f->type() != mqtt::PacketType::Publish) continue;
    mqtt::ClientPacket p;
    if (mqtt::decode_client_packet(*f, mqtt::ProtocolVersion::V311, p) != mqtt::DecodeError::None) {
      ADD_FAILURE() << "bad PUBLISH from the proxy";
      break;
    }
    const auto& pub = std::get<mqtt::Publish>(p);
    seqs.push_back(load_be32(pub.payload, 0));
  }
}

std::string run(const Scenario& sc) {
  std::mt19937_64 rng(sc.seed);
  std::ostringstream err;
  TimePoint now = t0();
  core::ProxyCore a(
      proxy_config(kIpA, kMacA, kIpB, 0xa0000000u + static_cast<std::uint32_t>(sc.seed)),
      log::null_logger());
  core::ProxyCore b(
      proxy_config(kIpB, kMacB, kIpA, 0xb0000000u + static_cast<std::uint32_t>(sc.seed)),
      log::null_logger());
  a.set_isn_function([](const tcp::ConnKey&, TimePoint) { return Seq{0xfffff000u}; });
  a.start(now);
  b.start(now);
  UdpLink a_to_b(sc.udp_loss, rng), b_to_a(sc.udp_loss, rng);
  std::multimap<TimePoint, Bytes> to_a, to_b;  // client frames on their way to a proxy
  std::multimap<TimePoint, Wire> to_pub, to_sub;

  // The subscriber: CONNECT and SUBSCRIBE, then it only reads.
  Bytes sub_data = connect_packet("sub", 0, "", "");
  append(sub_data, subscribe_packet("chain/t"));
  sim::RefPeer sub({Seq{1000}, 1460, 7, 256 * 1024, false}, sub_data, [&](const Wire& w) {
    to_b.emplace(now + 500us, to_frame(w, kMacSub, kIpSub, kMacB, kIpB));
  });
  // The publisher: CONNECT, the messages, DISCONNECT, FIN; it starts once A has B's interest.
  Bytes pub_data = connect_packet("pub", 0, "", "");
  std::string payload(sc.payload, 'p');
  for (int i = 0; i < sc.messages; ++i) {
    for (int k = 0; k < 4; ++k)
      payload[static_cast<std::size_t>(k)] = static_cast<char>(i >> (24 - 8 * k));
    append(pub_data, publish_packet("chain/t", payload));
  }
  mqtt::encode_disconnect(pub_data);
  sim::RefPeer pub({Seq{5000}, 1460, 7, 65535, true}, pub_data, [&](const Wire& w) {
    to_a.emplace(now + 500us, to_frame(w, kMacPub, kIpPub, kMacA, kIpA));
  });
  sub.connect(now);
  bool pub_started = false;

  // The subscriber's reading: a pace, with pauses; one of them longer than the grace if stuck.
  bool paused = false;
  TimePoint paused_until = now;
  bool stuck_done = !sc.stuck;
  std::size_t max_queue_b = 0, max_pending_a = 0;
  const TimePoint deadline = now + 300s;
  PublishReader reader;
  std::optional<TimePoint> quiet_since;
  TimePoint next_read = now + 1ms;

  auto turn = [&](core::ProxyCore& core, std::multimap<TimePoint, Wire>& to_client,
                  UdpLink& udp_out) {
    core.on_timers(now);
    core.flush(now);
    for (const auto& e : core.frames().entries()) {
      const Wire w = from_frame(core.frames().frame(e));
      to_client.emplace(now + 500us, w);
    }
    core.frames().clear();
    for (const auto& d : core.datagrams()) udp_out.send(d.bytes, now);
    core.clear_datagrams();
  };

  while (now < deadline) {
    // Deliver everything due now.
    for (auto it = to_a.begin(); it != to_a.end() && it->first <= now; it = to_a.erase(it)) {
      a.on_frame(0, it->second, now);
    }
    for (auto it = to_b.begin(); it != to_b.end() && it->first <= now; it = to_b.erase(it)) {
      b.on_frame(0, it->second, now);
    }
    while (auto d = a_to_b.pop_due(now)) b.on_peer_datagram(kIpA, *d, now);
    while (auto d = b_to_a.pop_due(now)) a.on_peer_datagram(kIpB, *d, now);
    turn(a, to_pub, a_to_b);
    turn(b, to_sub, b_to_a);
    for (auto it = to_pub.begin(); it != to_pub.end() && it->first <= now; it = to_pub.erase(it)) {
      pub.on_segment(it->second, now);
    }
    for (auto it = to_sub.begin(); it != to_sub.end() && it->first <= now; it = to_sub.erase(it)) {
      sub.on_segment(it->second, now);
    }
    pub.on_timer(now);
    sub.on_timer(now);
    if (!pub.error().empty() || !sub.error().empty()) {
      return "client TCP failed: " + pub.error() + sub.error();
    }
    // The publisher starts once A has B's interest and both speak the extension: before that the
    // peers talk plain, and a plain datagram lost is lost uncounted (docs/peering.md).
    if (!pub_started && a.peering().peer_wants(kIpB, "chain/t") &&
        a.peering().speaks_extension(0) && b.peering().speaks_extension(0)) {
      pub.connect(now);
      pub_started = true;
    }
    if (now >= next_read) {
      next_read = now + 1ms;
      if (paused && now >= paused_until) paused = false;
      if (!paused && pub_started) {
        if (!stuck_done && std::uniform_real_distribution<double>(0, 1)(rng) < 0.01) {
          paused = true;
          paused_until = now + 3s;  // twice the grace: it is declared stuck
          stuck_done = true;
        } else if (sc.longest_pause > Duration::zero() && now - paused_until >= 300ms &&
                   std::uniform_real_distribution<double>(0, 1)(rng) < 0.005) {
          // Pauses shorter than the grace, 300 ms of reading apart: slow, never stuck.
          paused = true;
          paused_until = now + Duration(std::uniform_int_distribution<Duration::rep>(
                                   1, sc.longest_pause.count())(rng));
        }
      }
      if (!paused) sub.app_read(static_cast<std::size_t>(sc.read_bytes_per_ms));
    }
    max_queue_b = std::max(max_queue_b, b.largest_send_queue());
    max_pending_a = std::max(max_pending_a, a.peering().pending_bytes(0));

    reader.read(sub.received());
    const bool all_in = reader.seqs.size() == static_cast<std::size_t>(sc.messages);
    // Done when everything arrived, or when the links have been quiet for 2 s after the
    // publisher finished (the sequence marks after a burst come 50 and 500 ms after it).
    const bool quiet = to_a.empty() && to_b.empty() && !a_to_b.next() && !b_to_a.next() &&
                       to_sub.empty() && b.largest_send_queue() == 0 &&
                       a.peering().pending_bytes(0) == 0;
    if (!pub.done() || !quiet) quiet_since.reset();
    if (pub.done() && quiet && !quiet_since) quiet_since = now;
    if (all_in || (quiet_since && now - *quiet_since >= 2s)) break;
    // Jump to the next thing that happens.
    std::optional<TimePoint> next = next_read;
    auto consider = [&](std::optional<TimePoint> t) { next = earliest(next, t); };
    if (!to_a.empty()) consider(to_a.begin()->first);
    if (!to_b.empty()) consider(to_b.begin()->first);
    if (!to_pub.empty()) consider(to_pub.begin()->first);
    if (!to_sub.empty()) consider(to_sub.begin()->first);
    consider(a_to_b.next());
    consider(b_to_a.next());
    consider(a.next_deadline());
    consider(b.next_deadline());
    consider(pub.deadline());
    consider(sub.deadline());
    now = std::max(now + 1us, *next);
  }

  if (!pub_started) return "the proxies never set up: no interest or no extension";
  if (std::getenv("MQTT_PROXY_CHAIN_TRACE")) {
    std::cerr << "ended at " << to_ms(now - t0()) << " ms, A pending "
              << a.peering().pending_bytes(0) << ", B queue " << b.largest_send_queue()
              << ", pub done " << pub.done() << "\n";
  }
  reader.read(sub.received());
  const auto& got = reader.seqs;
  const auto ca = a.counters();
  const auto cb = b.counters();
  // In order and once: sequence numbers strictly increase.
  for (std::size_t i = 1; i < got.size(); ++i) {
    if (got[i] <= got[i - 1]) {
      err << "out of order or repeated at " << i << ": " << got[i - 1] << " then " << got[i];
      return err.str();
    }
  }
  const std::uint64_t lost_counted =
      ca.peer_publish_dropped + cb.peer_publish_lost + cb.mqtt_publish_dropped_slow;
  if (got.size() + lost_counted != static_cast<std::uint64_t>(sc.messages)) {
    err << "accounting: sent " << sc.messages << ", received " << got.size() << ", counted lost "
        << lost_counted << " (A dropped " << ca.peer_publish_dropped << ", B lost on the link "
        << cb.peer_publish_lost << ", B dropped for the subscriber " << cb.mqtt_publish_dropped_slow
        << "; the link lost " << a_to_b.lost() << " datagrams, B counted " << cb.peer_datagrams_lost
        << ")";
    return err.str();
  }
  if (sc.udp_loss == 0 && !sc.stuck && lost_counted != 0) {
    err << "lost " << lost_counted << " with a lossless link and no stuck subscriber (A dropped "
        << ca.peer_publish_dropped << ", B lost on the link " << cb.peer_publish_lost
        << ", B dropped for the subscriber " << cb.mqtt_publish_dropped_slow
        << "; sinks stuck at A " << ca.flow_sinks_stuck << ", at B " << cb.flow_sinks_stuck << ")";
    return err.str();
  }
  const std::size_t queue_bound = 64 * 1024 + 2 * (sc.payload + 16);
  if (max_queue_b > queue_bound || max_pending_a > 64 * 1024) {
    err << "queues: B's largest send queue " << max_queue_b << " (bound " << queue_bound
        << "), A's largest credit queue " << max_pending_a;
    return err.str();
  }
  return {};
}

Scenario scenario(std::uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + 1);
  auto pick = [&](auto... v) {
    const std::array values{v...};
    return values[std::uniform_int_distribution<std::size_t>(0, values.size() - 1)(rng)];
  };
  Scenario s;
  s.seed = seed;
  s.messages = pick(500, 2000, 4000);
  s.payload = pick(std::size_t{8}, std::size_t{60}, std::size_t{400});
  s.udp_loss = pick(0.0, 0.0, 0.02, 0.2);
  s.read_bytes_per_ms = pick(20.0, 200.0, 5000.0);
  s.longest_pause = pick(Duration::zero(), Duration(200ms), Duration(1200ms));
  s.stuck = pick(false, false, false, true);
  return s;
}

class ChainSim : public ::testing::TestWithParam<int> {};

TEST_P(ChainSim, EveryMessageArrivesOrIsCountedAndQueuesStayBounded) {
  constexpr int kShards = 8;
  constexpr int kSeedsPerShard = 10;
  if (const char* one = std::getenv("MQTT_PROXY_CHAIN_SEED")) {
    if (GetParam() != 0) GTEST_SKIP() << "replaying one seed in shard 0";
    const Scenario sc = scenario(std::strtoull(one, nullptr, 10));
    EXPECT_EQ(run(sc), "") << sc;
    return;
  }
  for (int k = 0; k < kSeedsPerShard; ++k) {
    const Scenario sc = scenario(static_cast<std::uint64_t>(GetParam() + kShards * k));
    const std::string failure = run(sc);
    EXPECT_EQ(failure, "") << sc << " (replay: MQTT_PROXY_CHAIN_SEED=" << sc.seed << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, ChainSim, ::testing::Range(0, 8));

}  // namespace
}  // namespace mqtt_proxy::test
