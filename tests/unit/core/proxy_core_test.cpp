// The whole core, frame in and frame out: Ethernet/IPv4/TCP carrying MQTT from simulated clients,
// and the peer datagrams it produces.
#include "mqtt_proxy/core/proxy_core.hpp"

#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <set>
#include <utility>

#include "broker_fixture.hpp"
#include "core_config.hpp"
#include "frame_client.hpp"
#include "frame_views.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "mqtt_proxy/wire/datagram.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace wire;
using namespace wire::tcp_flags;
using namespace std::chrono_literals;
using wire::Seq;

struct OutSegment {
  MacAddress dst_mac;
  Ipv4Address dst_ip;
  std::uint16_t dst_port = 0;
  Seq seq;
  Seq ack;
  std::uint8_t flags = 0;
  std::optional<std::uint16_t> mss;
  Bytes payload;
};

class ProxyCoreTest : public ::testing::Test {
 protected:
  ProxyCoreTest() { make_core(); }

  void make_core(const std::function<void(core::CoreConfig&)>& tweak = {}) {
    core::CoreConfig cfg = test_core_config();
    cfg.max_connections = 1000;
    cfg.verify_checksums = true;
    if (tweak) tweak(cfg);
    core_ = std::make_unique<core::ProxyCore>(cfg, logger_ ? *logger_ : log::null_logger());
    core_->start(now_);
  }

  void inject(const Bytes& frame) {
    core_->on_frame(0, frame, now_);
    core_->flush(now_);
  }

  // Moves the frames the core sent into pending_, parsed and checksum-verified.
  void collect() {
    for (const auto& e : core_->frames().entries()) {
      const auto f = core_->frames().frame(e);
      if (m2m_on_ && !parse_tcp_frame(f)) {
        m2m_out_.emplace_back(f.begin(), f.end());  // ProxyCoreM2m reads them
        continue;
      }
      const auto v = parse_tcp_frame(f);
      ASSERT_TRUE(v) << "the core sent a frame that is not TCP in IPv4 in Ethernet";
      const auto& [eth, ip, tcp] = *v;
      EXPECT_TRUE(ip.header_checksum_ok());
      EXPECT_TRUE(tcp.checksum_ok(ip.src(), ip.dst()));
      EXPECT_EQ(eth.src(), kProxyMac);
      EXPECT_EQ(ip.src(), kProxyIp);
      EXPECT_TRUE(tcp.src_port() == 1883 || tcp.src_port() == 8080) << tcp.src_port();
      pending_.push_back(OutSegment{eth.dst(), ip.dst(), tcp.dst_port(), tcp.seq(), tcp.ack(),
                                    tcp.flags(), tcp.options().mss,
                                    Bytes(tcp.payload().begin(), tcp.payload().end())});
    }
    core_->frames().clear();
  }

  // Every segment sent and not yet received by a client.
  std::vector<OutSegment> drain() {
    collect();
    return std::exchange(pending_, {});
  }

  // Delivers what the proxy sent to `c` into its stream and acknowledges it; segments for other
  // clients stay pending.
  void receive(Client& c) {
    collect();
    std::vector<OutSegment> others;
    bool got = false;
    for (auto& s : pending_) {
      if (s.dst_port != c.port) {
        others.push_back(std::move(s));
        continue;
      }
      got = true;
      if (s.seq == c.rcv_nxt) {
        append(c.stream, s.payload);
        c.rcv_nxt =
            c.rcv_nxt + static_cast<std::uint32_t>(s.payload.size()) + ((s.flags & kFin) ? 1u : 0u);
      }
    }
    pending_ = std::move(others);
    if (!got) return;
    inject(c.frame(kAck));
    collect();
  }

  void handshake(Client& c) {
    inject(c.frame(kSyn));
    const auto synack = drain();
    ASSERT_EQ(synack.size(), 1u);
    ASSERT_EQ(synack[0].flags, kSyn | kAck);
    ASSERT_EQ(synack[0].dst_mac, c.mac);
    ASSERT_EQ(synack[0].ack, c.snd_nxt + 1);
    ASSERT_EQ(synack[0].mss, 1460);
    c.snd_nxt = c.snd_nxt + 1;
    c.rcv_nxt = synack[0].seq + 1;
    inject(c.frame(kAck));
    EXPECT_TRUE(drain().empty());
  }

  void send_mqtt(Client& c, const Bytes& packet) {
    inject(c.frame(kAck | kPsh, packet));
    c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(packet.size());
    receive(c);
  }

  std::vector<OwnedFrame> take_mqtt(Client& c) {
    auto frames = split_frames(c.stream);
    c.stream.clear();
    return frames;
  }

  void connect(Client& c, std::string_view id, std::uint16_t keepalive = 60) {
    handshake(c);
    send_mqtt(c, connect_packet(id, keepalive));
    const auto f = take_mqtt(c);
    ASSERT_EQ(f.size(), 1u);
    ASSERT_EQ(f[0].type, mqtt::PacketType::Connack);
    ASSERT_EQ(to_hex(f[0].body), "00 00");
  }

  // The plain packets sent to the peer. It is a plain peer (it never answers the extension's
  // HELLO), so the HELLOs, which ProxyCoreExtension tests, are left out.
  std::vector<std::string> datagram_types() {
    std::vector<std::string> out;
    for (const auto& d : core_->datagrams()) {
      EXPECT_EQ(d.dst, kPeerIp);
      if (std::to_integer<std::uint8_t>(d.bytes[0]) == peering::ext::kFirstByte) continue;
      out.push_back(mqtt::packet_type_name(
          static_cast<mqtt::PacketType>(std::to_integer<int>(d.bytes[0]) >> 4)));
    }
    core_->clear_datagrams();
    return out;
  }

  bool m2m_on_ = false;
  std::vector<Bytes> m2m_out_;

  Client client(std::uint8_t n, std::uint16_t port) {
    return Client{MacAddress{{0x02, 0, 0, 0, 0, static_cast<std::uint8_t>(0x10 + n)}},
                  Ipv4Address{0xc0a80100u + n},
                  port,
                  Seq{1000u * n},
                  Seq{},
                  {},
                  65535};
  }

  TimePoint now_ = t0();
  log::Logger* logger_ = nullptr;  // null: nothing is logged
  std::unique_ptr<core::ProxyCore> core_;
  std::vector<OutSegment> pending_;
};

TEST_F(ProxyCoreTest, SubscriberReceivesAnotherClientsPublish) {
  Client sub = client(2, 40001);
  Client pub = client(3, 40002);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("topic1"));
  ASSERT_EQ(take_mqtt(sub)[0].type, mqtt::PacketType::Suback);
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"SUBSCRIBE"}));

  connect(pub, "pub");
  inject(pub.frame(kAck | kPsh, publish_packet("topic1", "message1")));
  const auto out = drain();
  // The ACK to the publisher and the PUBLISH to the subscriber, in one batch.
  ASSERT_EQ(out.size(), 2u);
  const auto& to_sub = out[0].dst_port == sub.port ? out[0] : out[1];
  EXPECT_EQ(to_hex(to_sub.payload), to_hex(publish_packet("topic1", "message1")));
  EXPECT_EQ(to_sub.seq, sub.rcv_nxt);
  EXPECT_TRUE(datagram_types().empty());  // the peer never subscribed to topic1
}

TEST_F(ProxyCoreTest, MosquittosPacketAndByteCountersCountEachPacketOnce) {
  Client sub = client(2, 40001);
  Client pub = client(3, 40002);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("topic1"));
  take_mqtt(sub);
  connect(pub, "pub");
  const Bytes publish = publish_packet("topic1", "message1");
  const Bytes qos1 = publish_packet("topic1", "m2", 1, 7);
  send_mqtt(pub, publish);
  send_mqtt(pub, qos1);
  receive(sub);
  Bytes ping;
  mqtt::encode_pingreq(ping);
  send_mqtt(pub, ping);
  send_mqtt(sub, unsubscribe_packet("topic1"));
  const auto c = core_->counters();
  EXPECT_EQ(c.mqtt_connect_received, 2u);
  EXPECT_EQ(c.mqtt_connack_sent, 2u);
  EXPECT_EQ(c.mqtt_subscribe_received, 1u);
  EXPECT_EQ(c.mqtt_suback_sent, 1u);
  EXPECT_EQ(c.mqtt_publish_received, 2u);
  EXPECT_EQ(c.mqtt_publish_sent, 2u);
  EXPECT_EQ(c.mqtt_puback_sent, 1u);
  EXPECT_EQ(c.mqtt_pingreq_received, 1u);
  EXPECT_EQ(c.mqtt_pingresp_sent, 1u);
  EXPECT_EQ(c.mqtt_unsubscribe_received, 1u);
  EXPECT_EQ(c.mqtt_unsuback_sent, 1u);
  EXPECT_EQ(c.mqtt_payload_bytes_received, 10u);  // "message1" and "m2"
  EXPECT_EQ(c.mqtt_payload_bytes_sent, 10u);
  const std::size_t in = connect_packet("sub").size() + connect_packet("pub").size() +
                         subscribe_packet("topic1").size() + publish.size() + qos1.size() +
                         ping.size() + unsubscribe_packet("topic1").size();
  EXPECT_EQ(c.mqtt_bytes_received, in);
  EXPECT_EQ(c.mqtt_clients_online, 2u);
  EXPECT_EQ(c.mqtt_subscriptions_active, 0u);
  EXPECT_EQ(c.mqtt_auth_success, 2u);
}

TEST_F(ProxyCoreTest, ManyMqttPacketsInOneSegmentAndOneSplitOverThree) {
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("t"));
  take_mqtt(sub);
  Client pub = client(3, 40002);
  connect(pub, "pub");
  Bytes batch;
  for (int i = 0; i < 10; ++i) append(batch, publish_packet("t", std::to_string(i)));
  send_mqtt(pub, batch);
  const Bytes big = publish_packet("t", std::string(3000, 'z'));
  for (std::size_t off = 0; off < big.size(); off += 1200) {
    const auto piece = ByteSpan{big}.subspan(off, std::min<std::size_t>(1200, big.size() - off));
    inject(pub.frame(kAck, piece));
    pub.snd_nxt = pub.snd_nxt + static_cast<std::uint32_t>(piece.size());
  }
  // The subscriber gets the 10 small messages and the big one, segmented to its MSS.
  receive(sub);
  const auto frames = take_mqtt(sub);
  ASSERT_EQ(frames.size(), 11u);
  EXPECT_EQ(frames.back().wire, big);
}

TEST_F(ProxyCoreTest, PeerPublishReachesLocalSubscriber) {
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("sensors/#"));
  take_mqtt(sub);
  core_->on_peer_datagram(kPeerIp, publish_packet("sensors/a", "42"), now_);
  core_->flush(now_);
  receive(sub);
  const auto f = take_mqtt(sub);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].wire, publish_packet("sensors/a", "42"));
}

TEST_F(ProxyCoreTest, LocalPublishIsForwardedToAnInterestedPeer) {
  core_->on_peer_datagram(kPeerIp, subscribe_packet("up/#"), now_);
  Client pub = client(3, 40002);
  connect(pub, "pub");
  core_->clear_datagrams();  // the HELLOs of start()
  send_mqtt(pub, publish_packet("up/x", "hi"));
  ASSERT_EQ(core_->datagrams().size(), 1u);
  EXPECT_EQ(core_->datagrams()[0].bytes, publish_packet("up/x", "hi"));
}

TEST_F(ProxyCoreTest, ResetFromSubscriberUnsubscribesAtPeers) {
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("t"));
  datagram_types();
  inject(sub.frame(kRst));
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
  EXPECT_EQ(core_->connection_count(), 0u);
}

TEST_F(ProxyCoreTest, KeepaliveExpiryClosesWithFinAndUnsubscribes) {
  Client sub = client(2, 40001);
  connect(sub, "sub", 1);
  send_mqtt(sub, subscribe_packet("t"));
  datagram_types();
  core_->on_timers(now_ + 1499ms);
  core_->flush(now_ + 1499ms);
  EXPECT_TRUE(drain().empty());
  now_ += 1500ms;
  core_->on_timers(now_);
  core_->flush(now_);
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kFin);
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
}

TEST_F(ProxyCoreTest, ClientFinIsAnsweredAndTheStateFreed) {
  Client c = client(2, 40001);
  connect(c, "c");
  inject(c.frame(kAck | kFin));
  c.snd_nxt = c.snd_nxt + 1;
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kFin | kAck);
  EXPECT_EQ(out[0].ack, c.snd_nxt);
  c.rcv_nxt = out[0].seq + 1;
  inject(c.frame(kAck));
  EXPECT_EQ(core_->connection_count(), 0u);
}

TEST_F(ProxyCoreTest, DisconnectThenCloseLeavesTimeWaitAndANewSynReusesThePorts) {
  Client c = client(2, 40001);
  connect(c, "c");
  Bytes d;
  mqtt::encode_disconnect(d);
  send_mqtt(c, d);  // we close first: our FIN arrives, the client ACKs it in receive()
  inject(c.frame(kAck | kFin));
  c.snd_nxt = c.snd_nxt + 1;
  drain();
  ASSERT_EQ(core_->connection_count(), 1u);
  EXPECT_EQ(core_->open_connection_count(), 0u);  // TIME-WAIT
  Client again = c;
  again.snd_nxt = c.snd_nxt + 100000;
  again.rcv_nxt = Seq{};
  connect(again, "c-again");
  EXPECT_EQ(core_->open_connection_count(), 1u);
}

TEST_F(ProxyCoreTest, SegmentWithoutConnectionGetsReset) {
  Client c = client(2, 40001);
  inject(c.frame(kAck | kPsh, text("junk"), Seq{555}));
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kRst);
  EXPECT_EQ(out[0].seq, c.rcv_nxt);  // SEQ = the segment's ACK
  inject(c.frame(kRst, {}, Seq{555}));
  EXPECT_TRUE(drain().empty());  // never answer a RST
  EXPECT_EQ(core_->counters().tcp_resets_sent, 1u);
}

TEST_F(ProxyCoreTest, FramesForOtherHostsPortsOrMacsAreIgnored) {
  Client c = client(2, 40001);
  const MacAddress other_mac{{0x02, 0, 0, 0, 0, 0x99}};
  inject(c.frame(kSyn, {}, {}, other_mac));                                      // flooded unicast
  inject(c.frame(kSyn, {}, {}, kProxyMac, *Ipv4Address::parse("192.168.1.9")));  // not our address
  inject(c.frame(kSyn, {}, {}, kProxyMac, kProxyIp, 80));                        // not our port
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(core_->connection_count(), 0u);
  EXPECT_EQ(core_->counters().frames_not_for_us, 3u);
}

TEST_F(ProxyCoreTest, BadChecksumIsDroppedWhenVerifying) {
  Client c = client(2, 40001);
  auto f = c.frame(kSyn);
  f[f.size() - 1] ^= std::byte{0xff};  // corrupt the last option byte
  inject(f);
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(core_->counters().tcp_checksum_mismatch, 1u);
}

TEST_F(ProxyCoreTest, GarbageFramesAreCountedNotFatal) {
  for (const char* hex : {"00", "02 00 00 00 00 01 02 00 00 00 00 02 08 00 45",
                          "02 00 00 00 00 01 02 00 00 00 00 02 08 00 45 00 00 14 00 00 00 00 40 06"
                          " 00 00 c0 a8 01 02 c0 a8 01 65"}) {
    inject(bytes(hex));
  }
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(core_->counters().frames_malformed, 3u);
}

TEST_F(ProxyCoreTest, ConnectionLimitRefusesWithReset) {
  make_core([](core::CoreConfig& c) { c.max_connections = 1; });
  Client a = client(2, 40001);
  handshake(a);
  Client b = client(3, 40002);
  inject(b.frame(kSyn));
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kRst | kAck);
  EXPECT_EQ(core_->counters().tcp_connection_limit_hits, 1u);
}

TEST_F(ProxyCoreTest, WorksWithSequenceNumbersAcrossTheWrap) {
  core_->set_isn_function([](const tcp::ConnKey&, TimePoint) { return Seq{0xfffffff0u}; });
  Client sub = client(2, 40001);
  sub.snd_nxt = Seq{0xfffffffau};
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("w"));
  take_mqtt(sub);
  Client pub = client(3, 40002);
  connect(pub, "pub");
  for (int i = 0; i < 20; ++i) {
    send_mqtt(pub, publish_packet("w", "payload-" + std::to_string(i)));
    receive(sub);
  }
  const auto frames = take_mqtt(sub);
  ASSERT_EQ(frames.size(), 20u);
  EXPECT_EQ(frames[19].wire, publish_packet("w", "payload-19"));
}

TEST_F(ProxyCoreTest, LostSegmentToSubscriberIsRetransmitted) {
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("t"));
  take_mqtt(sub);
  core_->on_peer_datagram(kPeerIp, publish_packet("t", "again"), now_);
  core_->flush(now_);
  EXPECT_EQ(drain().size(), 1u);  // "lost" on the way
  now_ += 5s;
  core_->on_timers(now_);
  core_->flush(now_);
  receive(sub);
  const auto f = take_mqtt(sub);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].wire, publish_packet("t", "again"));
  EXPECT_EQ(core_->counters().tcp_retransmits, 1u);
}

TEST_F(ProxyCoreTest, ShutdownClosesEveryClient) {
  Client a = client(2, 40001);
  Client b = client(3, 40002);
  connect(a, "a");
  connect(b, "b");
  core_->shutdown(now_);
  core_->flush(now_);
  const auto out = drain();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].flags & kFin);
  EXPECT_TRUE(out[1].flags & kFin);
}

TEST_F(ProxyCoreTest, SynFloodGetsCookiesWhileClientsOldAndNewKeepWorking) {
  make_core([](core::CoreConfig& c) { c.max_half_open = 16; });
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("t"));
  take_mqtt(sub);

  // 5000 spoofed SYNs that never complete.
  for (std::uint16_t i = 0; i < 5000; ++i) {
    Client spoof = client(50, static_cast<std::uint16_t>(10000 + i));
    core_->on_frame(0, spoof.frame(kSyn), now_);
  }
  core_->flush(now_);
  const auto answers = drain();
  EXPECT_EQ(answers.size(), 5000u);
  EXPECT_EQ(core_->half_open_count(), 16u);
  EXPECT_EQ(core_->connection_count(), 17u);
  EXPECT_EQ(core_->counters().tcp_syn_cookies_sent, 5000u - 16u);

  // A new client during the flood: its SYN gets a cookie, its ACK creates the connection.
  Client pub = client(3, 40002);
  connect(pub, "pub");
  EXPECT_EQ(core_->counters().tcp_syn_cookies_accepted, 1u);
  send_mqtt(pub, publish_packet("t", "through the flood"));
  receive(sub);
  const auto f = take_mqtt(sub);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].wire, publish_packet("t", "through the flood"));

  // An ACK that guesses a cookie is reset, not accepted.
  Client guess = client(4, 40003);
  guess.rcv_nxt = Seq{0x12345678};
  inject(guess.frame(kAck));
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kRst);
  EXPECT_EQ(core_->counters().tcp_syn_cookies_accepted, 1u);
}

TEST_F(ProxyCoreTest, HalfOpenSlotsFreeUpAsHandshakesComplete) {
  make_core([](core::CoreConfig& c) { c.max_half_open = 2; });
  for (std::uint8_t i = 0; i < 6; ++i) {
    Client c = client(static_cast<std::uint8_t>(10 + i), static_cast<std::uint16_t>(41000 + i));
    handshake(c);
  }
  EXPECT_EQ(core_->half_open_count(), 0u);
  EXPECT_EQ(core_->counters().tcp_syn_cookies_sent, 0u);
  EXPECT_EQ(core_->counters().tcp_connections_accepted, 6u);
}

TEST_F(ProxyCoreTest, SubscriberThatStopsReadingLosesQos0MessagesThenItsConnection) {
  make_core([](core::CoreConfig& c) {
    c.broker.max_queued_bytes = 2000;
    c.tcp.user_timeout = 30s;
  });
  Client slow = client(2, 40001);
  Client fast = client(3, 40002);
  Client pub = client(4, 40003);
  connect(slow, "slow");
  connect(fast, "fast");
  connect(pub, "pub");
  for (Client* c : {&slow, &fast}) {
    send_mqtt(*c, subscribe_packet("t"));
    take_mqtt(*c);
  }
  slow.window = 0;  // its application stopped reading
  inject(slow.frame(kAck));

  const std::string payload(100, 'p');
  for (int i = 0; i < 50; ++i) {
    send_mqtt(pub, publish_packet("t", payload));
    receive(fast);
    now_ += 100ms;
    core_->on_timers(now_);
    core_->flush(now_);
    collect();
    // The slow client acknowledges probes with its zero window, so it looks alive.
    inject(slow.frame(kAck));
  }
  EXPECT_EQ(take_mqtt(fast).size(), 50u);
  const auto c = core_->counters();
  EXPECT_GT(c.mqtt_publish_dropped_slow, 0u);
  // Every copy is either queued or dropped; the slow client's queue stops at 2000 bytes.
  EXPECT_EQ(c.mqtt_publish_delivered + c.mqtt_publish_dropped_slow, 100u);
  EXPECT_EQ(c.mqtt_publish_delivered - 50u, 2000u / publish_packet("t", payload).size());

  // 30 s without acknowledgement progress: the slow client is aborted; the others stay.
  for (int i = 0; i < 30; ++i) {
    now_ += 1s;
    core_->on_timers(now_);
    core_->flush(now_);
    inject(slow.frame(kAck));
  }
  EXPECT_EQ(core_->counters().tcp_stalls, 1u);
  const auto out = drain();
  bool reset_slow = false;
  for (const auto& s : out) reset_slow |= s.dst_port == slow.port && (s.flags & kRst);
  EXPECT_TRUE(reset_slow);
  send_mqtt(pub, publish_packet("t", "after"));
  receive(fast);
  const auto f = take_mqtt(fast);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].wire, publish_packet("t", "after"));
}

TEST_F(ProxyCoreTest, RetainedTopicsGaugeFollowsTheStore) {
  Client pub = client(3, 40002);
  connect(pub, "pub");
  send_mqtt(pub, publish_packet("r/1", "kept", 0, 0, false, true));
  send_mqtt(pub, publish_packet("r/2", "kept", 0, 0, false, true));
  EXPECT_EQ(core_->counters().mqtt_retained_topics, 2u);
  send_mqtt(pub, publish_packet("r/1", "", 0, 0, false, true));  // deletes
  EXPECT_EQ(core_->counters().mqtt_retained_topics, 1u);
}

// MQTT2MULTICAST through the whole core: the controller's ARP answer and REPLYs, and multicast
// datagrams, arrive as captured frames; REQUESTs and multicast PUBLISHes leave as frames.
class ProxyCoreM2m : public ProxyCoreTest {
 protected:
  static constexpr Ipv4Address kServer{0xc0a80164};  // 192.168.1.100
  static constexpr Ipv4Address kSender{0xc0a80169};  // 192.168.1.105: a proxy, not a -F peer
  static constexpr MacAddress kServerMac{{0x02, 0, 0, 0, 1, 0}};
  static constexpr Ipv4Address kGroup{0xe1000000};  // 225.0.0.0

  void SetUp() override {
    m2m_on_ = true;
    make_core([](core::CoreConfig& c) {
      m2m::ClientConfig m;
      m.mac = kProxyMac;
      m.address = kProxyIp;
      c.m2m = m;
    });
    // The ARP who-has for the server, answered.
    core_->on_timers(now_);
    core_->flush(now_);
    collect();
    ASSERT_EQ(m2m_out_.size(), 1u);
    m2m_out_.clear();
    Bytes arp(wire::kArpFrameLen);
    wire::emit_arp_request(kServerMac, kServer, kProxyIp, arp);
    store_be16(arp, wire::kEthernetHeaderLen + 6, 2);  // a reply, from the server
    for (std::size_t i = 0; i < 6; ++i) store_u8(arp, i, kProxyMac.octets[i]);
    inject(arp);
  }

  struct Udp {
    MacAddress dst_mac;
    Ipv4Address dst;
    std::uint8_t ttl;
    std::uint16_t sport, dport;
    Bytes payload;
  };
  std::vector<Udp> take_udp() {
    collect();
    std::vector<Udp> out;
    for (const auto& f : m2m_out_) {
      const auto eth = EthernetView::parse(f);
      const auto ip = Ipv4View::parse(eth->payload());
      if (!ip) continue;
      const auto udp = UdpView::parse(ip->payload());
      EXPECT_TRUE(udp && udp->checksum_ok(ip->src(), ip->dst()));
      out.push_back(Udp{eth->dst(), ip->dst(), ip->ttl(), udp->src_port(), udp->dst_port(),
                        Bytes(udp->payload().begin(), udp->payload().end())});
    }
    m2m_out_.clear();
    return out;
  }

  Bytes udp_frame(Ipv4Address src, Ipv4Address dst, std::uint16_t sport, std::uint16_t dport,
                  const Bytes& payload) {
    UdpFrameSpec s;
    s.src_mac = MacAddress{{0x02, 0, 0, 0, 0, 0x77}};
    s.dst_mac = is_multicast(dst) ? MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} : kProxyMac;
    s.src_ip = src;
    s.dst_ip = dst;
    s.src_port = sport;
    s.dst_port = dport;
    s.payload = payload;
    Bytes f(udp_frame_size(s));
    emit_udp_frame(s, f);
    return f;
  }

  void reply(std::uint32_t tid) {
    Bytes r;
    m2m::encode_reply(r, m2m::Reply{tid, 0, kGroup});
    inject(udp_frame(kServer, kProxyIp, 11883, 11882, r));
  }
};

TEST_F(ProxyCoreM2m, SubscriberJoinsTheGroupAndGetsMulticastPublishes) {
  Client sub = client(2, 40001);
  connect(sub, "sub");
  send_mqtt(sub, subscribe_packet("topic1"));
  take_mqtt(sub);
  auto out = take_udp();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, kServer);
  EXPECT_EQ(out[0].dst_mac, kServerMac);
  const auto req = m2m::parse_request(out[0].payload);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->flags, 1);
  EXPECT_EQ(req->topic, "topic1");
  reply(req->tid);
  ASSERT_NE(core_->memberships(), nullptr);
  ASSERT_EQ(core_->memberships()->size(), 1u);
  EXPECT_EQ((*core_->memberships())[0].group, kGroup);

  inject(udp_frame(kSender, kGroup, 1883, 1883, publish_packet("topic1", "message1")));
  receive(sub);
  auto got = take_mqtt(sub);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(to_hex(got[0].wire), to_hex(publish_packet("topic1", "message1")));
  // From a -F peer: it delivers by unicast, so its multicast copy is not delivered again.
  inject(udp_frame(kPeerIp, kGroup, 1883, 1883, publish_packet("topic1", "again")));
  receive(sub);
  EXPECT_TRUE(take_mqtt(sub).empty());
  EXPECT_EQ(core_->counters().m2m_datagrams_from_peers, 1u);
  EXPECT_EQ(core_->counters().m2m_publish_in, 1u);
}

TEST_F(ProxyCoreM2m, LocalPublishGoesOnceToTheGroupAfterTheReply) {
  Client pub = client(3, 40002);
  connect(pub, "pub");
  inject(pub.frame(kAck | kPsh, publish_packet("topic1", "message1")));
  auto out = take_udp();
  ASSERT_EQ(out.size(), 1u);
  const auto req = m2m::parse_request(out[0].payload);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->flags, 0);
  reply(req->tid);
  out = take_udp();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, kGroup);
  EXPECT_EQ(out[0].ttl, 1);
  EXPECT_EQ(out[0].sport, 1883);
  EXPECT_EQ(out[0].dport, 1883);
  EXPECT_EQ(to_hex(out[0].payload), "30 10 00 06 74 6f 70 69 63 31 6d 65 73 73 61 67 65 31");
  EXPECT_TRUE(datagram_types().empty());  // no unicast: the -F peer never subscribed
}

// ---- The PROXY protocol on the TCP path ----

// A v2 header for a TCP over IPv4 client, with TLVs after the addresses.
Bytes pp2_inet(Ipv4Address src, std::uint16_t sport, const Bytes& tlvs = {}) {
  Bytes body;
  for (int shift = 24; shift >= 0; shift -= 8) body.push_back(std::byte(src.value >> shift));
  for (int shift = 24; shift >= 0; shift -= 8) body.push_back(std::byte(kProxyIp.value >> shift));
  body.push_back(std::byte(sport >> 8));
  body.push_back(std::byte(sport & 0xff));
  body.push_back(std::byte{0x07});
  body.push_back(std::byte{0x5b});
  append(body, tlvs);
  Bytes h = bytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11");
  h.push_back(std::byte(body.size() >> 8));
  h.push_back(std::byte(body.size() & 0xff));
  append(h, body);
  return h;
}

Bytes pp2_tlv(std::uint8_t type, const Bytes& value) {
  Bytes t{std::byte{type}, std::byte(value.size() >> 8), std::byte(value.size() & 0xff)};
  append(t, value);
  return t;
}

// PP2_TYPE_SSL: the client bits, the verify result, a CN when given.
Bytes pp2_ssl(std::uint8_t client, std::uint32_t verify, std::string_view cn = {}) {
  Bytes v{std::byte{client}, std::byte(verify >> 24), std::byte(verify >> 16),
          std::byte(verify >> 8), std::byte(verify)};
  append(v, pp2_tlv(ingress::pp2_type::kSslVersion, text("TLSv1.3")));
  if (!cn.empty()) append(v, pp2_tlv(ingress::pp2_type::kSslCn, text(cn)));
  return pp2_tlv(ingress::pp2_type::kSsl, v);
}

class ProxyCorePp : public ProxyCoreTest {
 protected:
  void SetUp() override { start({}); }

  void start(const std::function<void(core::CoreConfig&)>& tweak) {
    logger_ = &recorder_;
    make_core([&](core::CoreConfig& c) {
      c.proxy_protocol = ingress::ProxyProtocolPolicy{};
      if (tweak) tweak(c);
    });
  }

  // The handshake; the proxy may close at once (an untrusted source).
  void open(Client& c) {
    inject(c.frame(kSyn));
    const auto synack = drain();
    ASSERT_EQ(synack.size(), 1u);
    ASSERT_EQ(synack[0].flags, kSyn | kAck);
    c.snd_nxt = c.snd_nxt + 1;
    c.rcv_nxt = synack[0].seq + 1;
    inject(c.frame(kAck));
    receive_noting_fin(c);
  }

  // Sends `bytes` as one segment and lets the proxy answer.
  void send_raw(Client& c, const Bytes& b) {
    inject(c.frame(kAck | kPsh, b));
    c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(b.size());
    receive_noting_fin(c);
  }

  // The MQTT answer to `first` (a header and whatever follows it); empty if there was none.
  std::vector<OwnedFrame> exchange(Client& c, const Bytes& first) {
    open(c);
    send_raw(c, first);
    return take_mqtt(c);
  }

  bool closed_by_proxy(const Client& c) const { return fin_seen_.contains(c.port); }

  // Receives everything for `c`, noting a FIN.
  void receive_noting_fin(Client& c) {
    collect();
    for (const auto& s : pending_) {
      if (s.dst_port == c.port && (s.flags & kFin)) fin_seen_.insert(c.port);
    }
    receive(c);
  }

  bool logged(std::string_view needle) const {
    for (const auto& l : lines_) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  std::vector<std::string> lines_;
  log::Logger recorder_{log::Level::Debug, [this](log::Level, std::string_view,
                                                  std::string_view m) { lines_.emplace_back(m); }};
  std::set<std::uint16_t> fin_seen_;
};

Bytes with(Bytes a, const Bytes& b) {
  append(a, b);
  return a;
}

TEST_F(ProxyCorePp, AV2HeadersSourceNamesTheClientAndTheBytesAfterItAreMqtt) {
  Client c = client(2, 40001);
  const auto f = exchange(c, with(pp2_inet(Ipv4Address{0x0a010203}, 5555), connect_packet("c")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
  EXPECT_EQ(to_hex(f[0].body), "00 00");
  EXPECT_TRUE(logged("CONNECT client=10.1.2.3:5555 id=c")) << testing::PrintToString(lines_);
  EXPECT_EQ(core_->counters().proxy_protocol_headers, 1u);
}

TEST_F(ProxyCorePp, AV1HeaderSplitOverSegmentsThenConnectInALaterOne) {
  Client c = client(2, 40001);
  open(c);
  const auto line = text("PROXY TCP4 10.9.8.7 192.168.1.1 4242 1883\r\n");
  send_raw(c, Bytes(line.begin(), line.begin() + 10));
  send_raw(c, Bytes(line.begin() + 10, line.end()));
  EXPECT_TRUE(take_mqtt(c).empty());
  send_raw(c, connect_packet("c"));
  const auto f = take_mqtt(c);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
  EXPECT_TRUE(logged("CONNECT client=10.9.8.7:4242")) << testing::PrintToString(lines_);
}

TEST_F(ProxyCorePp, AnIpv6SourceIsLoggedInBrackets) {
  Client c = client(2, 40001);
  open(c);
  Bytes h = bytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 21 00 24");
  append(h, bytes("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01"));  // 2001:db8::1
  append(h, bytes("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02"));
  append(h, bytes("0f a0 07 5b"));  // 4000 -> 1883
  send_raw(c, with(h, connect_packet("c")));
  ASSERT_EQ(take_mqtt(c).size(), 1u);
  EXPECT_TRUE(logged("CONNECT client=[2001:db8::1]:4000")) << testing::PrintToString(lines_);
}

TEST_F(ProxyCorePp, AConnectionWithoutAHeaderIsClosedAndAnotherWithOneIsServed) {
  Client bypass = client(2, 40001);
  open(bypass);
  send_raw(bypass, connect_packet("direct"));
  EXPECT_TRUE(take_mqtt(bypass).empty()) << "no CONNACK without a header";
  EXPECT_TRUE(closed_by_proxy(bypass));
  EXPECT_EQ(core_->counters().proxy_protocol_invalid, 1u);
  EXPECT_TRUE(logged("connection refused: PROXY header: ")) << testing::PrintToString(lines_);

  Client good = client(3, 40002);
  const auto f = exchange(good, with(pp2_inet(Ipv4Address{0x0a000001}, 1000), connect_packet("g")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
}

TEST_F(ProxyCorePp, AHeaderThatDoesNotComeInTimeClosesTheConnection) {
  Client c = client(2, 40001);
  open(c);
  send_raw(c, bytes("0d 0a 0d 0a"));  // the start of a v2 signature, then nothing
  now_ += 4900ms;
  core_->on_timers(now_);
  core_->flush(now_);
  receive_noting_fin(c);
  EXPECT_FALSE(closed_by_proxy(c));
  now_ += 200ms;
  core_->on_timers(now_);
  core_->flush(now_);
  receive_noting_fin(c);
  EXPECT_TRUE(closed_by_proxy(c));
  EXPECT_EQ(core_->counters().proxy_protocol_timeouts, 1u);
  EXPECT_TRUE(logged("no complete PROXY header within 5000 ms")) << testing::PrintToString(lines_);
}

TEST_F(ProxyCorePp, OnlyTrustedSourcesMaySendHeaders) {
  start([](core::CoreConfig& c) { c.proxy_protocol->trusted_sources = {Ipv4Address{0xc0a80103}}; });
  Client stranger = client(2, 40001);  // 192.168.1.2
  open(stranger);
  receive_noting_fin(stranger);
  EXPECT_TRUE(closed_by_proxy(stranger)) << "refused at once, before any header";
  EXPECT_EQ(core_->counters().proxy_protocol_untrusted, 1u);

  Client balancer = client(3, 40002);  // 192.168.1.3
  const auto f =
      exchange(balancer, with(pp2_inet(Ipv4Address{0x0a000001}, 1000), connect_packet("b")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
}

TEST_F(ProxyCorePp, RequiredTlsRefusesAPlainHeaderAndAcceptsOneReportingTls) {
  start([](core::CoreConfig& c) { c.proxy_protocol->require_tls = true; });
  Client plain = client(2, 40001);
  open(plain);
  send_raw(plain, with(pp2_inet(Ipv4Address{0x0a000001}, 1000), connect_packet("p")));
  receive_noting_fin(plain);
  EXPECT_TRUE(take_mqtt(plain).empty());
  EXPECT_TRUE(closed_by_proxy(plain));
  EXPECT_EQ(core_->counters().proxy_protocol_insecure, 1u);
  EXPECT_TRUE(logged("TLS required")) << testing::PrintToString(lines_);

  Client tls = client(3, 40002);
  const auto f = exchange(
      tls, with(pp2_inet(Ipv4Address{0x0a000002}, 1000, pp2_ssl(0x01, 0)), connect_packet("t")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(to_hex(f[0].body), "00 00");
  EXPECT_TRUE(logged("CONNECT client=10.0.0.2:1000 id=t user=jorge"))
      << testing::PrintToString(lines_);
}

TEST_F(ProxyCorePp, TheCertificatesCnIsTheUsernameWhenItIsAKnownUser) {
  start([](core::CoreConfig& c) {
    c.proxy_protocol->require_tls = true;
    c.proxy_protocol->require_certificate = true;
    c.broker.use_identity_as_username = true;
    c.broker.username = "alice";
    c.broker.password.reset();
  });
  const Ipv4Address src{0x0a000001};
  Client alice = client(2, 40001);  // no username in the CONNECT: the certificate speaks
  auto f = exchange(
      alice, with(pp2_inet(src, 1000, pp2_ssl(0x03, 0, "alice")), connect_packet("a", 60, "", "")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(to_hex(f[0].body), "00 00");
  EXPECT_TRUE(logged("id=a user=alice")) << testing::PrintToString(lines_);

  Client mallory = client(3, 40002);  // a verified certificate, but not a user; its CONNECT lies
  f = exchange(mallory, with(pp2_inet(src, 1001, pp2_ssl(0x03, 0, "mallory")),
                             connect_packet("m", 60, "alice", "x")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(to_hex(f[0].body), "00 05");  // not authorized
  EXPECT_TRUE(logged("certificate CN mallory is not a known user"));

  Client nocert = client(4, 40003);  // TLS, but no certificate: refused before MQTT
  open(nocert);
  send_raw(nocert, with(pp2_inet(src, 1002, pp2_ssl(0x01, 0)), connect_packet("n", 60, "alice")));
  receive_noting_fin(nocert);
  EXPECT_TRUE(take_mqtt(nocert).empty());
  EXPECT_TRUE(closed_by_proxy(nocert));
  EXPECT_TRUE(logged("a client certificate is required, and the client presented none"));

  Client failed = client(5, 40004);  // presented, did not verify
  open(failed);
  send_raw(failed, with(pp2_inet(src, 1003, pp2_ssl(0x03, 20, "alice")), connect_packet("f")));
  receive_noting_fin(failed);
  EXPECT_TRUE(closed_by_proxy(failed));
  EXPECT_TRUE(logged("it did not verify"));
  EXPECT_EQ(core_->counters().proxy_protocol_insecure, 2u);
}

TEST_F(ProxyCorePp, LocalIsTheBalancerItselfAndMayNotSpeakMqttWhenTlsIsRequired) {
  const Bytes local = bytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 20 00 00 00");
  Client check = client(2, 40001);
  auto f = exchange(check, with(local, connect_packet("hc")));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(to_hex(f[0].body), "00 00");
  EXPECT_TRUE(logged("CONNECT client=192.168.1.2:40001 id=hc")) << testing::PrintToString(lines_);
  EXPECT_EQ(core_->counters().proxy_protocol_local, 1u);

  start([](core::CoreConfig& c) { c.proxy_protocol->require_tls = true; });
  Client probe = client(3, 40002);  // a health check: header, then close
  open(probe);
  send_raw(probe, local);
  inject(probe.frame(kAck | kFin));
  probe.snd_nxt = probe.snd_nxt + 1;
  receive_noting_fin(probe);
  EXPECT_TRUE(closed_by_proxy(probe));
  EXPECT_EQ(core_->counters().proxy_protocol_insecure, 0u);
  EXPECT_EQ(core_->counters().proxy_protocol_local, 1u);

  Client sneaky = client(4, 40003);
  f = exchange(sneaky, with(local, connect_packet("s")));
  EXPECT_TRUE(f.empty());
  receive_noting_fin(sneaky);
  EXPECT_TRUE(closed_by_proxy(sneaky));
  EXPECT_EQ(core_->counters().proxy_protocol_insecure, 1u);
}

// MQTT over WebSocket on --ws-port (8080 by default): the Upgrade, then MQTT in frames both ways,
// and every way such a connection ends.
Bytes ws_frame(std::uint8_t first, const Bytes& payload) {
  constexpr std::array<std::uint8_t, 4> key{0x37, 0xfa, 0x21, 0x3d};
  Bytes f{std::byte{first}};
  if (payload.size() < 126) {
    f.push_back(std::byte(0x80 | payload.size()));
  } else {
    f.push_back(std::byte{0x80 | 126});
    f.push_back(std::byte(payload.size() >> 8));
    f.push_back(std::byte(payload.size() & 0xff));
  }
  for (const auto k : key) f.push_back(std::byte{k});
  for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(payload[i] ^ std::byte{key[i % 4]});
  return f;
}

Bytes ws_request(std::string_view path = "/mqtt") {
  const auto r = fmt::format(
      "GET {} HTTP/1.1\r\nHost: 192.168.1.1:8080\r\nUpgrade: websocket\r\nConnection: "
      "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
      "13\r\nSec-WebSocket-Protocol: mqtt\r\nOrigin: http://192.168.1.1\r\n\r\n",
      path);
  return text(r);
}

// What a client read from the proxy: an HTTP response head (first only), the binary frames'
// payloads joined (MQTT), and the control frames (opcode, payload).
struct WsRead {
  std::string head;
  Bytes app;
  std::vector<std::pair<std::uint8_t, Bytes>> control;
};

class ProxyCoreWs : public ProxyCorePp {
 protected:
  void SetUp() override {
    logger_ = &recorder_;
    make_core();
  }

  Client ws_client(std::uint8_t n, std::uint16_t port) {
    Client c = client(n, port);
    c.server_port = 8080;
    return c;
  }

  WsRead take_ws(Client& c) {
    WsRead r;
    std::string_view all(reinterpret_cast<const char*>(c.stream.data()), c.stream.size());
    std::size_t at = 0;
    if (all.starts_with("HTTP/")) {
      at = all.find("\r\n\r\n");
      EXPECT_NE(at, std::string_view::npos);
      at += 4;
      r.head = all.substr(0, at);
    }
    while (at < c.stream.size()) {
      EXPECT_GE(c.stream.size() - at, 2u);
      const auto first = std::to_integer<std::uint8_t>(c.stream[at]);
      std::size_t len = std::to_integer<std::uint8_t>(c.stream[at + 1]);
      EXPECT_EQ(len & 0x80, 0u) << "a server never masks";
      at += 2;
      if (len == 126) {
        len = std::to_integer<std::size_t>(c.stream[at]) << 8 |
              std::to_integer<std::size_t>(c.stream[at + 1]);
        at += 2;
      }
      EXPECT_LE(at + len, c.stream.size());
      const Bytes payload(c.stream.begin() + static_cast<std::ptrdiff_t>(at),
                          c.stream.begin() + static_cast<std::ptrdiff_t>(at + len));
      at += len;
      EXPECT_EQ(first & 0x80, 0x80) << "FIN";
      if ((first & 0x0f) == 0x2) {
        append(r.app, payload);
      } else {
        r.control.emplace_back(first & 0x0f, payload);
      }
    }
    c.stream.clear();
    return r;
  }

  // The handshake, the Upgrade answered 101, and CONNECT (with a will "gone" on "will", if asked)
  // answered CONNACK, over frames.
  void ws_connect(Client& c, std::string_view id, bool with_will = false) {
    open(c);
    send_raw(c, ws_request());
    const auto r = take_ws(c);
    ASSERT_TRUE(r.head.starts_with("HTTP/1.1 101 ")) << r.head;
    EXPECT_NE(r.head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
              std::string::npos)
        << r.head;
    EXPECT_NE(r.head.find("Sec-WebSocket-Protocol: mqtt\r\n"), std::string::npos) << r.head;
    std::optional<mqtt::Will> will;
    if (with_will) {
      will.emplace();
      will->topic = "will";
      will->payload = as_bytes(std::string_view("gone"));
    }
    send_raw(c, ws_frame(0x82, connect_packet(id, 60, kUsername, kPassword, will)));
    const auto f = mqtt_of(c);
    ASSERT_EQ(f.size(), 1u);
    ASSERT_EQ(f[0].type, mqtt::PacketType::Connack);
    ASSERT_EQ(to_hex(f[0].body), "00 00");
  }

  std::vector<OwnedFrame> mqtt_of(Client& c) {
    auto r = take_ws(c);
    EXPECT_TRUE(r.control.empty());
    return split_frames(r.app);
  }
};

TEST_F(ProxyCoreWs, MqttInFramesBothWaysBetweenAWebSocketAndATcpClient) {
  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser");
  EXPECT_TRUE(logged("CONNECT client=192.168.1.2:40001 id=browser"))
      << testing::PrintToString(lines_);
  // SUBSCRIBE cut over two frames of one message (a continuation), and over two segments.
  const Bytes sub = subscribe_packet("t/#");
  const Bytes head(sub.begin(), sub.begin() + 3);
  const Bytes tail(sub.begin() + 3, sub.end());
  send_raw(browser, ws_frame(0x02, head));
  send_raw(browser, ws_frame(0x80, tail));
  auto f = mqtt_of(browser);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Suback);

  Client tcp_pub = client(3, 40002);
  connect(tcp_pub, "tcp-pub");
  send_mqtt(tcp_pub, publish_packet("t/1", "to the browser"));
  receive(browser);
  f = mqtt_of(browser);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Publish);
  EXPECT_NE(to_hex(f[0].body).find(to_hex(text("to the browser"))), std::string::npos);

  // Two PUBLISHes in one frame, from the browser to a TCP subscriber.
  send_mqtt(tcp_pub, subscribe_packet("b"));
  take_mqtt(tcp_pub);
  send_raw(browser, ws_frame(0x82, with(publish_packet("b", "one"), publish_packet("b", "two"))));
  receive(tcp_pub);
  f = take_mqtt(tcp_pub);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(core_->counters().ws_upgrades, 1u);
  EXPECT_EQ(core_->counters().ws_upgrades_refused, 0u);

  // A ping is answered with a pong of the same payload, MQTT going on around it.
  send_raw(browser, ws_frame(0x89, text("are you there")));
  const auto r = take_ws(browser);
  ASSERT_EQ(r.control.size(), 1u);
  EXPECT_EQ(r.control[0].first, 0xA);
  EXPECT_EQ(r.control[0].second, text("are you there"));
}

TEST_F(ProxyCoreWs, ARefusedUpgradeIsAnHttpErrorAndNeverASession) {
  Client lost = ws_client(2, 40001);
  open(lost);
  send_raw(lost, ws_request("/other"));
  const auto r = take_ws(lost);
  EXPECT_TRUE(r.head.starts_with("HTTP/1.1 404 ")) << r.head;
  EXPECT_TRUE(closed_by_proxy(lost));
  EXPECT_EQ(core_->counters().ws_upgrades_refused, 1u);
  EXPECT_EQ(core_->broker().connected_count(), 0u);
  EXPECT_TRUE(logged("WebSocket handshake refused (404)")) << testing::PrintToString(lines_);

  // Plain MQTT on the WebSocket port is not an Upgrade either.
  Client plain = ws_client(3, 40002);
  open(plain);
  send_raw(plain, connect_packet("plain"));
  EXPECT_TRUE(take_ws(plain).head.starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(closed_by_proxy(plain));
  EXPECT_EQ(core_->counters().mqtt_connect_received, 0u);
}

TEST_F(ProxyCoreWs, AnUpgradeThatNeverCompletesIsClosedAfterTheTimeout) {
  Client slow = ws_client(2, 40001);
  open(slow);
  const Bytes req = ws_request();
  send_raw(slow, Bytes(req.begin(), req.begin() + 20));
  now_ += 9s;
  core_->on_timers(now_);
  core_->flush(now_);
  receive_noting_fin(slow);
  EXPECT_FALSE(closed_by_proxy(slow));
  now_ += 1s;
  core_->on_timers(now_);
  core_->flush(now_);
  receive_noting_fin(slow);
  EXPECT_TRUE(closed_by_proxy(slow));
  EXPECT_TRUE(slow.stream.empty());  // nothing but the FIN
  EXPECT_EQ(core_->counters().ws_handshake_timeouts, 1u);
  // The rest of its request, late, is read and dropped; it is not a refused handshake as well.
  send_raw(slow, Bytes(req.begin() + 20, req.end()));
  EXPECT_EQ(core_->counters().ws_upgrades_refused, 0u);
  EXPECT_EQ(core_->counters().ws_upgrades, 0u);
}

TEST_F(ProxyCoreWs, ATextFrameFailsTheConnectionAndTheWillGoesOut) {
  Client watcher = client(3, 40002);
  connect(watcher, "watcher");
  send_mqtt(watcher, subscribe_packet("will"));
  take_mqtt(watcher);

  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser", /*with_will=*/true);
  send_raw(browser, ws_frame(0x81, text("{}")));
  const auto r = take_ws(browser);
  ASSERT_EQ(r.control.size(), 1u);
  EXPECT_EQ(r.control[0].first, 0x8);
  EXPECT_EQ(to_hex(r.control[0].second), "03 eb");  // 1003
  EXPECT_TRUE(closed_by_proxy(browser));
  EXPECT_EQ(core_->counters().ws_protocol_errors, 1u);
  receive(watcher);
  const auto f = take_mqtt(watcher);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Publish);
}

TEST_F(ProxyCoreWs, TheClientsCloseIsEchoedAndEndsTheSession) {
  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser");
  send_raw(browser, ws_frame(0x88, text("\x03\xe9")));  // 1001, going away
  const auto r = take_ws(browser);
  ASSERT_EQ(r.control.size(), 1u);
  EXPECT_EQ(r.control[0].first, 0x8);
  EXPECT_EQ(to_hex(r.control[0].second), "03 e9");
  EXPECT_TRUE(closed_by_proxy(browser));
  EXPECT_EQ(core_->broker().connected_count(), 0u);
  EXPECT_EQ(core_->counters().ws_protocol_errors, 0u);
}

TEST_F(ProxyCoreWs, WhatCameBeforeTheCloseInTheSameSegmentIsReadFirst) {
  // MQTT.js: DISCONNECT in two frames, then at once an empty Close; here with a last PUBLISH.
  Client watcher = client(3, 40002);
  connect(watcher, "watcher");
  send_mqtt(watcher, subscribe_packet("#"));
  take_mqtt(watcher);
  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser", /*with_will=*/true);
  Bytes disconnect;
  mqtt::encode_disconnect(disconnect);
  const Bytes d1(disconnect.begin(), disconnect.begin() + 1);
  const Bytes d2(disconnect.begin() + 1, disconnect.end());
  Bytes last = ws_frame(0x82, publish_packet("last", "words"));
  append(last, ws_frame(0x82, d1));
  append(last, ws_frame(0x82, d2));
  append(last, ws_frame(0x88, {}));
  send_raw(browser, last);
  EXPECT_TRUE(closed_by_proxy(browser));
  receive(watcher);
  const auto f = take_mqtt(watcher);
  ASSERT_EQ(f.size(), 1u);  // the PUBLISH, and no will: the DISCONNECT was read
  EXPECT_NE(to_hex(f[0].body).find(to_hex(text("words"))), std::string::npos);
  EXPECT_EQ(core_->counters().mqtt_wills_published, 0u);
  EXPECT_EQ(core_->counters().mqtt_disconnects, 1u);
}

TEST_F(ProxyCoreWs, TheBrokerEndingASessionSendsACloseFrameBeforeTheFin) {
  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser");
  Bytes d;
  mqtt::encode_disconnect(d);
  send_raw(browser, ws_frame(0x82, d));
  const auto r = take_ws(browser);
  ASSERT_EQ(r.control.size(), 1u);
  EXPECT_EQ(r.control[0].first, 0x8);
  EXPECT_EQ(to_hex(r.control[0].second), "03 e8");  // 1000
  EXPECT_TRUE(closed_by_proxy(browser));
  // The client's answering Close is read and dropped; nothing more is sent but ACKs.
  send_raw(browser, ws_frame(0x88, text("\x03\xe8")));
  EXPECT_TRUE(browser.stream.empty());
}

TEST_F(ProxyCoreWs, BehindAProxyHeaderTheUpgradeFollowsIt) {
  start({});  // the PROXY protocol on
  Client browser = ws_client(2, 40001);
  open(browser);
  send_raw(browser, with(pp2_inet(Ipv4Address{0x0a010203}, 5555), ws_request()));
  EXPECT_TRUE(take_ws(browser).head.starts_with("HTTP/1.1 101 "));
  send_raw(browser, ws_frame(0x82, connect_packet("b")));
  ASSERT_EQ(mqtt_of(browser).size(), 1u);
  EXPECT_TRUE(logged("CONNECT client=10.1.2.3:5555 id=b")) << testing::PrintToString(lines_);
}

TEST_F(ProxyCoreWs, PingsFasterThanTheClientReadsDoNotGrowTheQueueWithoutBound) {
  make_core([](core::CoreConfig& c) { c.broker.max_queued_bytes = 8192; });
  Client browser = ws_client(2, 40001);
  ws_connect(browser, "browser");
  Bytes pings;
  for (int i = 0; i < 10; ++i) append(pings, ws_frame(0x89, Bytes(100, std::byte{'p'})));
  for (int i = 0; i < 200; ++i) {  // 200 KiB of pongs asked for; the client acknowledges none
    inject(browser.frame(kAck | kPsh, pings));
    browser.snd_nxt = browser.snd_nxt + static_cast<std::uint32_t>(pings.size());
  }
  EXPECT_LE(core_->largest_send_queue(), 8192u + pings.size());
  EXPECT_GE(core_->largest_send_queue(), 8192u);
  // Once the client reads, pings are answered again.
  receive(browser);
  take_ws(browser);
  send_raw(browser, ws_frame(0x89, text("again")));
  const auto r = take_ws(browser);
  ASSERT_EQ(r.control.size(), 1u);
  EXPECT_EQ(r.control[0].second, text("again"));
}

TEST_F(ProxyCoreWs, PortZeroTurnsWebSocketOff) {
  make_core([](core::CoreConfig& c) { c.ws_port = 0; });
  Client c = ws_client(2, 40001);
  inject(c.frame(kSyn));
  EXPECT_TRUE(drain().empty());
  EXPECT_EQ(core_->counters().frames_not_for_us, 1u);
}

// --- Upstream mode: the client's TCP here, its broker's connection behind a Link

class UpstreamLink final : public upstream::Link {
 public:
  void dial(std::uint64_t id) override { dials.push_back(id); }
  void touch(std::uint64_t id) override { touched.insert(id); }
  std::vector<std::uint64_t> dials;
  std::set<std::uint64_t> touched;
};

// What the link writes to the broker for `id` (all of it), as it tells the core.
Bytes written_to_broker(upstream::LinkEvents& events, core::ProxyCore& core, std::uint64_t id,
                        TimePoint now) {
  Bytes* out = events.outgoing(id);
  if (!out) return {};
  Bytes b = std::move(*out);
  out->clear();
  events.on_sent(id, now);
  core.flush(now);
  return b;
}

class ProxyCoreUpstream : public ProxyCoreTest {
 protected:
  ProxyCoreUpstream() {
    make_core([](core::CoreConfig& c) { c.upstream.emplace(); });
    events_ = &core_->attach_upstream(link_);
  }
  Bytes written(std::uint64_t id) { return written_to_broker(*events_, *core_, id, now_); }
  void from_broker(std::uint64_t id, const Bytes& b) {
    events_->on_upstream_data(id, b, now_);
    core_->flush(now_);
  }
  static Bytes connack_ok() {
    Bytes b;
    mqtt::encode_connack(b, mqtt::ProtocolVersion::V311, false, 0, {});
    return b;
  }

  UpstreamLink link_;
  upstream::LinkEvents* events_ = nullptr;
};

TEST_F(ProxyCoreUpstream, TheConnectGoesToTheBrokerAndPacketsBothWays) {
  Client c = client(2, 40001);
  handshake(c);
  const Bytes connect = connect_packet("c1");
  send_mqtt(c, connect);
  ASSERT_EQ(link_.dials.size(), 1u);
  const std::uint64_t id = link_.dials[0];
  EXPECT_TRUE(take_mqtt(c).empty());  // no CONNACK of our own: the broker's is awaited
  events_->on_connected(id, now_);
  EXPECT_EQ(written(id), connect);
  from_broker(id, connack_ok());
  receive(c);
  auto f = take_mqtt(c);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
  EXPECT_EQ(core_->counters().mqtt_clients_online, 1u);

  const Bytes pub = publish_packet("a/b", "up", 1, 1);
  send_mqtt(c, pub);
  EXPECT_EQ(written(id), pub);
  const Bytes down = publish_packet("x/y", "down", 0);
  from_broker(id, down);
  receive(c);
  f = take_mqtt(c);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Publish);
  EXPECT_TRUE(datagram_types().empty());             // no peering in this mode
  EXPECT_EQ(core_->broker().connected_count(), 0u);  // nor a broker here
}

TEST_F(ProxyCoreUpstream, PacketsAndAFinBeforeTheConnackWaitForIt) {
  Client c = client(2, 40001);
  handshake(c);
  const Bytes connect = connect_packet("c1");
  const Bytes pub = publish_packet("a/b", "early", 1, 1);
  Bytes burst = connect;
  append(burst, pub);
  inject(c.frame(kAck | kPsh, burst));
  c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(burst.size());
  inject(c.frame(kAck | kFin));  // mosquitto_pub -l's way: everything, then the FIN at once
  c.snd_nxt = c.snd_nxt + 1;
  ASSERT_EQ(link_.dials.size(), 1u);
  const std::uint64_t id = link_.dials[0];
  EXPECT_FALSE(events_->finished(id));  // the FIN waits behind the PUBLISH
  events_->on_connected(id, now_);
  EXPECT_EQ(written(id), connect);
  from_broker(id, connack_ok());
  // The PUBLISH went on after the CONNACK, then the FIN ended the session.
  EXPECT_EQ(written(id), pub);
  EXPECT_TRUE(events_->finished(id));
  EXPECT_TRUE(link_.touched.count(id));
  events_->on_closed(id);
  EXPECT_EQ(core_->upstream()->size(), 0u);
}

TEST_F(ProxyCoreUpstream, TheBrokerGoingAwayClosesTheClientWithAFin) {
  Client c = client(2, 40001);
  handshake(c);
  send_mqtt(c, connect_packet("c1"));
  const std::uint64_t id = link_.dials.at(0);
  events_->on_connected(id, now_);
  written(id);
  from_broker(id, connack_ok());
  receive(c);
  take_mqtt(c);
  events_->on_failed(id, "broker closed the connection", now_);
  core_->flush(now_);
  const auto out = drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kFin);
  EXPECT_EQ(core_->counters().upstream_lost, 1u);
}

TEST_F(ProxyCoreUpstream, AnUnreachableBrokerIsConnackServerUnavailable) {
  Client c = client(2, 40001);
  handshake(c);
  send_mqtt(c, connect_packet("c1"));
  const std::uint64_t id = link_.dials.at(0);
  events_->on_failed(id, "connect to 10.0.0.4:1883: Connection refused", now_);
  core_->flush(now_);
  receive(c);
  const auto f = take_mqtt(c);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, mqtt::PacketType::Connack);
  EXPECT_EQ(to_hex(f[0].body), "00 03");
  EXPECT_EQ(core_->counters().upstream_connect_failures, 1u);
}

TEST_F(ProxyCoreUpstream, BeforeTheConnackTheWindowClosesOnAClientThatFloods) {
  Client c = client(2, 40001);
  handshake(c);
  const Bytes connect = connect_packet("c1");
  // The CONNECT split over two segments, the second carrying the first PUBLISH too.
  inject(c.frame(kAck | kPsh, Bytes(connect.begin(), connect.begin() + 5)));
  c.snd_nxt = c.snd_nxt + 5u;
  receive(c);
  Bytes rest(connect.begin() + 5, connect.end());
  append(rest, publish_packet("a/b", "first", 0));
  inject(c.frame(kAck | kPsh, rest));
  c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(rest.size());
  receive(c);
  ASSERT_EQ(link_.dials.size(), 1u);
  // No CONNACK: what the client sends waits in the receive buffer, which fills.
  const Bytes pub = publish_packet("a/b", std::string(1000, 'x'), 0);
  const Seq start = c.snd_nxt;
  Seq acked = start;
  for (int i = 0; i < 500; ++i) {
    inject(c.frame(kAck | kPsh, pub));
    c.snd_nxt = c.snd_nxt + static_cast<std::uint32_t>(pub.size());
    for (const auto& o : drain()) acked = o.ack;
  }
  EXPECT_LE(acked - start, test_core_config().tcp.rcv_buffer + 0u);
  EXPECT_GT(acked - start, 0u);
}

class ProxyCoreWsUpstream : public ProxyCoreWs {
 protected:
  void SetUp() override {
    make_core([](core::CoreConfig& c) { c.upstream.emplace(); });
    events_ = &core_->attach_upstream(link_);
  }
  Bytes written(std::uint64_t id) { return written_to_broker(*events_, *core_, id, now_); }
  // A CONNECT split over two frames, the second carrying a PUBLISH too; then `close` a Close.
  std::uint64_t split_connect_then_publish(Client& c, const Bytes& connect, const Bytes& pub,
                                           bool close) {
    open(c);
    send_raw(c, ws_request());
    take_ws(c);
    Bytes rest(connect.begin() + 5, connect.end());
    append(rest, pub);
    send_raw(c, ws_frame(0x82, Bytes(connect.begin(), connect.begin() + 5)));
    send_raw(c, ws_frame(0x82, rest));
    if (close) send_raw(c, ws_frame(0x88, Bytes{std::byte{0x03}, std::byte{0xe8}}));
    EXPECT_EQ(link_.dials.size(), 1u);
    return link_.dials.empty() ? 0 : link_.dials[0];
  }
  void connack(std::uint64_t id) {
    Bytes ca;
    mqtt::encode_connack(ca, mqtt::ProtocolVersion::V311, false, 0, {});
    events_->on_upstream_data(id, ca, now_);
    core_->flush(now_);
  }

  UpstreamLink link_;
  upstream::LinkEvents* events_ = nullptr;
};

TEST_F(ProxyCoreWsUpstream, APublishPipelinedBehindASplitConnectGoesOnAfterTheConnack) {
  Client c = ws_client(2, 40001);
  const Bytes connect = connect_packet("c1");
  const Bytes pub = publish_packet("a/b", "early", 1, 1);
  const std::uint64_t id = split_connect_then_publish(c, connect, pub, false);
  events_->on_connected(id, now_);
  EXPECT_EQ(written(id), connect);
  connack(id);
  EXPECT_EQ(written(id), pub);
}

TEST_F(ProxyCoreWsUpstream, ACloseBehindAPipelinedPublishWaitsForIt) {
  Client c = ws_client(2, 40001);
  const Bytes connect = connect_packet("c1");
  const Bytes pub = publish_packet("a/b", "early", 1, 1);
  const std::uint64_t id = split_connect_then_publish(c, connect, pub, true);
  EXPECT_FALSE(events_->finished(id));
  events_->on_connected(id, now_);
  EXPECT_EQ(written(id), connect);
  connack(id);
  EXPECT_EQ(written(id), pub);
  EXPECT_TRUE(events_->finished(id));  // then the Close ended the session
}

}  // namespace
}  // namespace mqtt_proxy::test
