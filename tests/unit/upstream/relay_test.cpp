// The relay of upstream mode, on byte vectors: CONNECT through the hooks and the dial, PUBLISH and
// SUBSCRIBE through the hooks (with SUBACK merging), deliveries checked by auth_read, what passes
// unchanged, backpressure, and the same output whatever the stream's segmentation.
#include "mqtt_proxy/upstream/relay.hpp"

#include <gtest/gtest.h>

#include "mqtt_proxy/mqtt/codec.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using mqtt::PacketType;
using mqtt::ProtocolVersion;
using upstream::Relay;
namespace property = mqtt::property;

class Rules final : public hooks::Hooks {
 public:
  Rules(std::vector<std::string>& events, bool& blind) : events_(events), blind_(blind) {}
  std::string_view name() const override { return "rules"; }
  hooks::Reason auth_connect(const hooks::Client& c, hooks::Credentials& cred) override {
    events_.push_back("auth_connect " + c.client_id + " v" + std::to_string(c.protocol_version));
    if (cred.username.get() == "banned") return 0x8a;
    if (cred.client_id.get() == "rename-me") {
      cred.client_id.set("renamed");
      cred.username.set("mapped");
      cred.password.set("secret");
      cred.has_username = cred.has_password = true;
    }
    if (cred.client_id.get() == "anonymise") {  // the broker is to see no credentials at all
      cred.has_username = cred.has_password = false;
    }
    if (cred.client_id.get() == "long-user") cred.username.set(std::string(70000, 'u'));
    return hooks::kOk;
  }
  hooks::Reason auth_publish(const hooks::Client&, hooks::Field& topic, hooks::Field& payload,
                             std::uint8_t, bool) override {
    if (topic.get().starts_with("secret/") || payload.get() == "deny") return hooks::kNotAuthorized;
    if (topic.get().starts_with("in/")) {
      topic.set("out/" + std::string(topic.get().substr(3)));
      payload.set("[" + std::string(payload.get()) + "]");
    }
    if (topic.get() == "bad") topic.set("bad/#");  // not a topic name
    // Longer than a 16-bit length can say: its tail would be read as the fields after it.
    if (topic.get() == "long") topic.set(std::string(65530, 't') + "/more/");
    if (payload.get() == "once") {  // a quota of one: the first copy passes, any other not
      if (quota_used_) return 0x97;
      quota_used_ = true;
    }
    return hooks::kOk;
  }
  hooks::Reason auth_subscribe(const hooks::Client&, hooks::Field& filter, std::uint8_t) override {
    if (filter.get().starts_with("secret/")) return hooks::kNotAuthorized;
    if (filter.get() == "mine") filter.set("out/#");
    if (filter.get() == "bad") filter.set("a/#/b");  // not a filter
    return hooks::kOk;
  }
  bool reads() const override { return true; }
  hooks::Reason auth_read(const hooks::Client&, std::string_view topic) override {
    return blind_ || topic.starts_with("hidden/") ? hooks::kNotAuthorized : hooks::kOk;
  }
  void on_connect(const hooks::Client& c) override {
    events_.push_back("connect " + c.client_id + " user=" + c.username);
  }
  void on_publish(const hooks::Client& c, std::string_view t, std::string_view p) override {
    events_.push_back("publish " + c.client_id + " " + std::string(t) + "=" + std::string(p));
  }
  void on_subscribe(const hooks::Client& c, std::span<const std::string> f) override {
    events_.push_back(joined("subscribe " + c.client_id, f));
  }
  void on_unsubscribe(const hooks::Client& c, std::span<const std::string> f) override {
    events_.push_back(joined("unsubscribe " + c.client_id, f));
  }
  void on_disconnect(const hooks::Client& c) override {
    events_.push_back("disconnect " + c.client_id);
  }

 private:
  static std::string joined(std::string s, std::span<const std::string> f) {
    for (const auto& x : f) s += " " + x;
    return s;
  }
  std::vector<std::string>& events_;
  bool& blind_;
  bool quota_used_ = false;
};

// --- Packets, built with the codec (the broker's side with its server encoders)

Bytes connect_packet(ProtocolVersion v, std::string_view id, std::string_view user = "u",
                     std::optional<mqtt::Will> will = {}, ByteSpan props = {}) {
  mqtt::Connect c;
  c.version = v;
  c.client_id = id;
  c.keepalive = 30;
  if (!user.empty()) c.username = user;
  c.password = as_bytes("pw");
  c.will = will;
  c.properties.raw = props;
  Bytes b;
  mqtt::encode_connect(b, c);
  return b;
}

Bytes publish(ProtocolVersion v, std::string_view topic, std::string_view payload,
              std::uint8_t qos = 0, std::uint16_t id = 0, ByteSpan props = {}, bool retain = false,
              bool dup = false) {
  Bytes b;
  mqtt::encode_publish(b, v, topic, as_bytes(payload), qos, retain, dup, id, props);
  return b;
}

Bytes ack(PacketType t, std::uint16_t id, std::uint8_t reason = 0) {
  Bytes b;
  mqtt::encode_packet_id_ack_v5(b, t, id, reason);
  return b;
}

Bytes connack(ProtocolVersion v, std::uint8_t code, ByteSpan props = {}) {
  Bytes b;
  mqtt::encode_connack(b, v, false, code, props);
  return b;
}

// SUBSCRIBE by hand, each filter with its own options byte (the codec's encoder has one for all).
Bytes subscribe(ProtocolVersion v, std::uint16_t id,
                std::vector<std::pair<std::string, std::uint8_t>> filters, ByteSpan props = {}) {
  Bytes body{std::byte(id >> 8), std::byte(id & 0xff)};
  if (v == ProtocolVersion::V5) {
    body.push_back(std::byte(props.size()));  // short property blocks only
    append(body, props);
  }
  for (const auto& [f, options] : filters) {
    body.push_back(std::byte{0});
    body.push_back(std::byte(f.size()));
    append(body, as_bytes(f));
    body.push_back(std::byte{options});
  }
  Bytes b{std::byte{0x82}};
  mqtt::encode_remaining_length(b, body.size());
  append(b, body);
  return b;
}

Bytes suback(ProtocolVersion v, std::uint16_t id, std::vector<std::uint8_t> codes) {
  Bytes b;
  mqtt::encode_suback(b, v, id, codes);
  return b;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const auto& p : parts) append(b, p);
  return b;
}

// The one packet in `b`, decoded (its views point into `b`).
mqtt::ClientPacket decoded(const Bytes& b, ProtocolVersion v) {
  bool need_more = false;
  mqtt::DecodeError err{};
  const auto f = mqtt::parse_frame(b, SIZE_MAX, need_more, err);
  EXPECT_TRUE(f && f->wire_size == b.size());
  mqtt::ClientPacket p;
  if (f) {
    EXPECT_EQ(mqtt::decode_client_packet(*f, v, p), mqtt::DecodeError::None);
  }
  return p;
}

class RelayTest : public ::testing::TestWithParam<ProtocolVersion> {
 protected:
  ProtocolVersion v() const { return GetParam(); }
  bool v5() const { return v() == ProtocolVersion::V5; }

  void make(upstream::Config cfg = {}, bool with_hooks = true) {
    if (with_hooks) {
      std::vector<std::unique_ptr<hooks::Hooks>> list;
      list.push_back(std::make_unique<Rules>(events, blind));
      cfg.hooks = std::make_shared<hooks::HookChain>(
          std::move(list), std::chrono::milliseconds(5), [] { return TimePoint{}; }, logger);
    }
    hooks::Client who;
    who.connection = 7;
    who.address_text = "10.0.0.2";
    relay = std::make_unique<Relay>(std::move(cfg), who, counters);
  }
  // Bytes that must be taken whole.
  void client(const Bytes& b) { EXPECT_EQ(relay->from_client(b), b.size()); }
  void broker(const Bytes& b) { EXPECT_EQ(relay->from_upstream(b), b.size()); }
  static Bytes take(Bytes& q) {
    Bytes b = std::move(q);
    q.clear();
    return b;
  }
  Bytes to_client() { return take(relay->to_client()); }
  Bytes to_upstream() { return take(relay->to_upstream()); }
  // CONNECT, dial, CONNACK (with `props` in v5); queues and events emptied.
  void open(ByteSpan connect_props = {}, ByteSpan connack_props = {}) {
    if (!relay) make();
    client(connect_packet(v(), "c1", "u", {}, connect_props));
    ASSERT_TRUE(relay->wants_dial());
    relay->upstream_connected();
    broker(connack(v(), 0, connack_props));
    to_client();
    to_upstream();
    events.clear();
  }

  log::Logger logger;
  std::vector<std::string> events;
  bool blind = false;
  metrics::Counters counters;
  std::unique_ptr<Relay> relay;
};

INSTANTIATE_TEST_SUITE_P(Versions, RelayTest,
                         ::testing::Values(ProtocolVersion::V31, ProtocolVersion::V311,
                                           ProtocolVersion::V5),
                         [](const auto& i) {
                           return "v" + std::to_string(static_cast<int>(i.param));
                         });

// --- CONNECT, the dial, CONNACK

TEST_P(RelayTest, ConnectDialsAndPassesUnchanged) {
  make();
  const Bytes c = connect_packet(v(), "c1");
  EXPECT_EQ(relay->state(), Relay::State::AwaitConnect);
  client(c);
  EXPECT_TRUE(relay->wants_dial());
  EXPECT_EQ(relay->to_upstream(), c);  // byte for byte, waiting for the dial
  EXPECT_TRUE(relay->to_client().empty());
  relay->upstream_connected();
  EXPECT_EQ(relay->state(), Relay::State::Open);
  EXPECT_FALSE(relay->wants_dial());
  const Bytes ca = connack(v(), 0);
  broker(ca);
  EXPECT_EQ(to_client(), ca);
  EXPECT_EQ(counters.mqtt_connects, 1u);
  EXPECT_EQ(events,
            (std::vector<std::string>{"auth_connect c1 v" + std::to_string(static_cast<int>(v())),
                                      "connect c1 user=u"}));
  relay->client_lost("reset");
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "client: reset");
  EXPECT_EQ(events.back(), "disconnect c1");
}

TEST_P(RelayTest, ConnectReencodedWithTheHooksCredentials) {
  make();
  const Bytes props = mqtt::PropertyWriter().u32(property::kSessionExpiryInterval, 60).bytes();
  client(connect_packet(v(), "rename-me", "token", {}, props));
  const Bytes out = to_upstream();
  const auto p = decoded(out, v());
  const auto& c = std::get<mqtt::Connect>(p);
  EXPECT_EQ(c.version, v());
  EXPECT_EQ(c.client_id, "renamed");
  EXPECT_EQ(c.username, "mapped");
  EXPECT_EQ(str(*c.password), "secret");
  EXPECT_EQ(c.keepalive, 30);
  if (v5()) {  // the properties stay
    EXPECT_EQ(c.properties.session_expiry, 60u);
  }
  relay->upstream_connected();
  broker(connack(v(), 0));
  EXPECT_EQ(events.back(), "connect renamed user=mapped");
}

TEST_P(RelayTest, ConnectRefusedByHookIsAnsweredAndNeverDialled) {
  make();
  client(cat({connect_packet(v(), "c1", "banned"), publish(v(), "t", "x")}));
  EXPECT_TRUE(relay->closed());
  EXPECT_FALSE(relay->wants_dial());
  EXPECT_TRUE(relay->to_upstream().empty());
  // 0x8a Banned: 5 (not authorized) for 3.1/3.1.1 (hooks::connack_code), the reason for 5.0.
  EXPECT_EQ(to_client(), connack(v(), v5() ? 0x8a : 5));
  EXPECT_EQ(counters.mqtt_connects_refused, 1u);
  EXPECT_EQ(events.size(), 1u);  // no on_connect, no on_disconnect
}

TEST_P(RelayTest, WillRefusedIsDroppedAndChangedIsReencoded) {
  make();
  mqtt::Will w;
  w.topic = "secret/will";
  w.payload = as_bytes("bye");
  client(connect_packet(v(), "c1", "u", w));
  const Bytes dropped = to_upstream();
  EXPECT_EQ(dropped, connect_packet(v(), "c1", "u"));
  EXPECT_EQ(counters.mqtt_publish_refused, 1u);

  make();
  const Bytes will_props = mqtt::PropertyWriter().u32(property::kWillDelayInterval, 9).bytes();
  w.topic = "in/will";
  w.qos = 1;
  w.retain = true;
  w.properties.raw = will_props;
  client(connect_packet(v(), "c1", "u", w));
  mqtt::Will changed = w;
  changed.topic = "out/will";
  changed.payload = as_bytes("[bye]");
  EXPECT_EQ(to_upstream(), connect_packet(v(), "c1", "u", changed));

  make();
  w.topic = "bad";  // rewritten to a filter: refused as 0x90
  client(connect_packet(v(), "c1", "u", w));
  EXPECT_EQ(to_upstream(), connect_packet(v(), "c1", "u"));
  EXPECT_EQ(counters.mqtt_publish_refused, 2u);
}

TEST_P(RelayTest, AnythingBeforeConnectIsAProtocolError) {
  make();
  Bytes ping;
  mqtt::encode_pingreq(ping);
  client(ping);
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "client: PINGREQ before CONNECT");
  EXPECT_TRUE(relay->to_client().empty());
  EXPECT_TRUE(relay->to_upstream().empty());
  EXPECT_EQ(counters.mqtt_protocol_errors, 1u);
}

TEST_P(RelayTest, UnsupportedProtocolLevelGetsConnack1) {
  make();
  Bytes c = connect_packet(ProtocolVersion::V311, "c1");
  c[8] = std::byte{6};  // the protocol level
  client(c);
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(to_client(), connack(ProtocolVersion::V311, 1));
}

TEST_P(RelayTest, UpstreamFailedBeforeConnackIsServerUnavailable) {
  for (const bool dialled : {false, true}) {
    make();
    client(connect_packet(v(), "c1"));
    if (dialled) relay->upstream_connected();
    relay->upstream_failed("connection refused");
    EXPECT_TRUE(relay->closed());
    EXPECT_EQ(relay->error(), "CONNECT refused: upstream unavailable: connection refused");
    EXPECT_EQ(to_client(), connack(v(), v5() ? 0x88 : 3));
    EXPECT_TRUE(relay->to_upstream().empty());
  }
  EXPECT_EQ(counters.mqtt_connects_refused, 2u);
}

TEST_P(RelayTest, UpstreamFailedAfterConnackJustCloses) {
  open();
  relay->upstream_failed("reset");
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "upstream: reset");
  EXPECT_TRUE(relay->to_client().empty());
  EXPECT_EQ(events, std::vector<std::string>{"disconnect c1"});
}

TEST_P(RelayTest, BrokersRefusalReachesTheClientUnchanged) {
  make();
  client(connect_packet(v(), "c1"));
  relay->upstream_connected();
  const Bytes refusal = connack(v(), v5() ? 0x86 : 4);
  broker(refusal);
  EXPECT_EQ(to_client(), refusal);
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(counters.mqtt_connects_refused, 1u);
  EXPECT_EQ(counters.mqtt_connects, 0u);
  EXPECT_EQ(events.size(), 1u);  // auth_connect only
}

TEST_P(RelayTest, PacketsAfterConnectWaitForTheConnack) {
  make();
  const Bytes c = connect_packet(v(), "c1");
  const Bytes p = publish(v(), "secret/x", "x", 1, 3);  // refused: answered by the relay
  const Bytes both = cat({c, p});
  EXPECT_EQ(relay->from_client(both), c.size());
  relay->upstream_connected();
  EXPECT_EQ(relay->from_client(p), 0u);
  EXPECT_TRUE(relay->to_client().empty());  // nothing before the CONNACK
  broker(connack(v(), 0));
  client(p);
  EXPECT_EQ(to_client(), cat({connack(v(), 0), ack(PacketType::Puback, 3, v5() ? 0x87 : 0)}));
}

TEST_P(RelayTest, FromUpstreamBeforeConnectedIsACallerError) {
  make();
  client(connect_packet(v(), "c1"));
  broker(connack(v(), 0));
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "upstream: bytes before upstream_connected()");
}

// --- PUBLISH from the client

TEST_P(RelayTest, PublishPassesOrIsRewrittenKeepingItsFlags) {
  open();
  const Bytes plain = publish(v(), "a/b", "x", 1, 4);
  client(plain);
  EXPECT_EQ(to_upstream(), plain);
  const Bytes props = mqtt::PropertyWriter()
                          .u32(property::kMessageExpiryInterval, 60)
                          .string(property::kContentType, "text")
                          .bytes();
  client(publish(v(), "in/x", "p", 2, 9, props, true, true));
  EXPECT_EQ(to_upstream(), publish(v(), "out/x", "[p]", 2, 9, props, true, true));
  EXPECT_EQ(events, (std::vector<std::string>{"publish c1 a/b=x", "publish c1 out/x=[p]"}));
  EXPECT_TRUE(relay->to_client().empty());
}

TEST_P(RelayTest, RefusedPublishIsAnsweredByTheRelay) {
  open();
  client(publish(v(), "secret/a", "x"));  // QoS 0: dropped
  client(publish(v(), "secret/a", "x", 1, 1));
  client(publish(v(), "bad", "x", 1, 2));  // rewritten to an invalid topic: 0x90
  client(publish(v(), "secret/a", "x", 2, 3));
  EXPECT_TRUE(relay->to_upstream().empty());
  EXPECT_EQ(to_client(), cat({ack(PacketType::Puback, 1, v5() ? 0x87 : 0),
                              ack(PacketType::Puback, 2, v5() ? 0x90 : 0),
                              ack(PacketType::Pubrec, 3, v5() ? 0x87 : 0)}));
  // In 3.x the refused QoS 2 flow is completed by the relay; the broker never hears of it. In
  // 5.0 the failing PUBREC ended it: a PUBREL anyway is the broker's to answer (0x92).
  client(ack(PacketType::Pubrel, 3));
  if (v5()) {
    EXPECT_TRUE(relay->to_client().empty());
    EXPECT_EQ(to_upstream(), ack(PacketType::Pubrel, 3));
  } else {
    EXPECT_EQ(to_client(), ack(PacketType::Pubcomp, 3));
    EXPECT_TRUE(relay->to_upstream().empty());
  }
  EXPECT_EQ(counters.mqtt_publish_refused, 4u);
  EXPECT_TRUE(events.empty());
  // The id used again, accepted this time: its PUBREL is the broker's.
  client(publish(v(), "secret/a", "x", 2, 5));
  client(publish(v(), "ok", "x", 2, 5));
  to_client();
  client(ack(PacketType::Pubrel, 5));
  EXPECT_EQ(to_upstream(), cat({publish(v(), "ok", "x", 2, 5), ack(PacketType::Pubrel, 5)}));
  EXPECT_TRUE(relay->to_client().empty());
}

// --- SUBSCRIBE from the client

TEST_P(RelayTest, SubscribeUnchangedPassesAndSoDoesItsSuback) {
  open();
  const Bytes s = subscribe(v(), 7, {{"a/#", 1}, {"b", 2}});
  client(s);
  EXPECT_EQ(to_upstream(), s);
  const Bytes sa = suback(v(), 7, {1, 2});
  broker(sa);
  EXPECT_EQ(to_client(), sa);
  EXPECT_EQ(events, std::vector<std::string>{"subscribe c1 a/# b"});
}

TEST_P(RelayTest, RefusedFiltersAreRemovedAndTheSubackMerged) {
  open();
  const Bytes props = mqtt::PropertyWriter().varint(property::kSubscriptionIdentifier, 5).bytes();
  const std::uint8_t opts2 = v5() ? 0x2e : 0x02;  // v5: No Local, Retain As Published, RH 2
  client(
      subscribe(v(), 7, {{"a", 1}, {"secret/x", 1}, {"mine", opts2}, {"bad", 0}, {"b", 0}}, props));
  EXPECT_EQ(counters.mqtt_subscribe_refused, 2u);
  const Bytes fwd = to_upstream();
  const auto p = decoded(fwd, v());
  const auto& s = std::get<mqtt::Subscribe>(p);
  EXPECT_EQ(s.packet_id, 7);
  ASSERT_EQ(s.topics.size(), 3u);
  EXPECT_EQ(s.topics[0].filter, "a");
  EXPECT_EQ(s.topics[0].requested_qos, 1);
  EXPECT_EQ(s.topics[1].filter, "out/#");
  EXPECT_EQ(s.topics[1].requested_qos, 2);
  EXPECT_EQ(s.topics[1].no_local, v5());
  EXPECT_EQ(s.topics[1].retain_as_published, v5());
  EXPECT_EQ(s.topics[1].retain_handling, v5() ? 2 : 0);
  EXPECT_EQ(s.topics[2].filter, "b");
  if (v5()) {
    EXPECT_EQ(s.properties.subscription_id, 5u);
  }
  EXPECT_EQ(events, std::vector<std::string>{"subscribe c1 a out/# b"});

  // One code per filter the client sent, in its order; the broker's properties kept.
  const std::uint8_t refused = v5() ? 0x87 : 0x80;
  const std::uint8_t invalid = v5() ? 0x8f : 0x80;
  if (v5()) {
    broker(bytes("90 0a 00 07 04 1f 00 01 6f 01 02 80"));  // reason string "o"
    EXPECT_EQ(to_client(), bytes("90 0c 00 07 04 1f 00 01 6f 01 87 02 8f 80"));
  } else {
    broker(suback(v(), 7, {1, 2, 0x80}));
    EXPECT_EQ(to_client(), suback(v(), 7, {1, refused, 2, invalid, 0x80}));
  }
  // The merge was for that SUBACK only.
  const Bytes again = suback(v(), 7, {0});
  broker(again);
  EXPECT_EQ(to_client(), again);
}

TEST_P(RelayTest, EveryFilterRefusedIsAnsweredByTheRelay) {
  open();
  client(subscribe(v(), 8, {{"secret/a", 0}, {"secret/b", 1}}));
  EXPECT_TRUE(relay->to_upstream().empty());
  const std::uint8_t r = v5() ? 0x87 : 0x80;
  EXPECT_EQ(to_client(), suback(v(), 8, {r, r}));
  EXPECT_TRUE(events.empty());
}

TEST_P(RelayTest, SubackWithTheWrongNumberOfCodesClosesBoth) {
  open();
  client(subscribe(v(), 7, {{"a", 0}, {"secret/x", 0}}));
  broker(suback(v(), 7, {0, 0}));
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "upstream: SUBACK 7 with 2 codes for 1 filters");
}

// --- From the broker

TEST_P(RelayTest, DeliveriesTheClientMayNotReadAreAcknowledgedToTheBroker) {
  open();
  const Bytes visible = publish(v(), "news", "n", 1, 1);
  broker(cat({publish(v(), "hidden/a", "x"), publish(v(), "hidden/a", "x", 1, 2), visible,
              publish(v(), "hidden/a", "x", 2, 3)}));
  EXPECT_EQ(to_client(), visible);
  EXPECT_EQ(to_upstream(), cat({ack(PacketType::Puback, 2), ack(PacketType::Pubrec, 3)}));
  broker(ack(PacketType::Pubrel, 3));
  EXPECT_EQ(to_upstream(), ack(PacketType::Pubcomp, 3));
  EXPECT_TRUE(relay->to_client().empty());
  // Another PUBREL is the client's business.
  broker(ack(PacketType::Pubrel, 4));
  EXPECT_EQ(to_client(), ack(PacketType::Pubrel, 4));
}

TEST_P(RelayTest, EverythingElsePassesByteForByte) {
  open();
  Bytes ping;
  mqtt::encode_pingreq(ping);
  Bytes unsub;
  const std::string_view filters[] = {"a/#"};
  mqtt::encode_unsubscribe(unsub, v(), 3, filters);
  const Bytes from_client = cat({ping, unsub, ack(PacketType::Puback, 1),
                                 ack(PacketType::Pubrec, 2), ack(PacketType::Pubcomp, 3)});
  client(from_client);
  EXPECT_EQ(to_upstream(), from_client);
  EXPECT_EQ(events, std::vector<std::string>{"unsubscribe c1 a/#"});
  Bytes pong;
  mqtt::encode_pingresp(pong);
  Bytes unsuback;
  mqtt::encode_unsuback(unsuback, v(), 3, std::vector<std::uint8_t>{0});
  const Bytes from_broker = cat({pong, unsuback, ack(PacketType::Puback, 5),
                                 ack(PacketType::Pubrec, 6), ack(PacketType::Pubcomp, 7)});
  broker(from_broker);
  EXPECT_EQ(to_client(), from_broker);
}

TEST_P(RelayTest, ClientDisconnectIsForwardedAndCloses) {
  open();
  Bytes d;
  mqtt::encode_disconnect(d, v(), 0);
  client(d);
  EXPECT_EQ(to_upstream(), d);
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(events, std::vector<std::string>{"disconnect c1"});
}

TEST_P(RelayTest, TooLargeOrMalformedFromTheClientCloses) {
  upstream::Config cfg;
  cfg.max_packet_size = 64;
  make(cfg);
  open();
  const Bytes big = publish(v(), "t", std::string(100, 'x'));
  EXPECT_EQ(relay->from_client(ByteSpan(big).first(3)), 3u);  // the header is enough
  EXPECT_TRUE(relay->closed());
  Bytes expected;
  if (v5()) mqtt::encode_disconnect_v5(expected, mqtt::reason::kPacketTooLarge);
  EXPECT_EQ(to_client(), expected);
  EXPECT_TRUE(relay->to_upstream().empty());  // the broker is not told: it publishes the will

  make();
  open();
  client(bytes("36 05 00 01 74 00 01"));  // QoS 3
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "client: malformed PUBLISH: QoS 3");
  expected.clear();
  if (v5()) mqtt::encode_disconnect_v5(expected, mqtt::reason::kMalformedPacket);
  EXPECT_EQ(to_client(), expected);
  EXPECT_EQ(counters.mqtt_protocol_errors, 2u);
}

TEST_P(RelayTest, TooLargeOrUnexpectedFromTheBrokerClosesBoth) {
  upstream::Config cfg;
  cfg.max_packet_size = 64;
  make(cfg);
  open();
  broker(publish(v(), "t", std::string(100, 'x')));
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "upstream: packet too large");
  EXPECT_TRUE(relay->to_client().empty());

  make();
  open();
  broker(subscribe(v(), 1, {{"a", 0}}));
  EXPECT_EQ(relay->error(), "upstream: sent SUBSCRIBE");
}

// --- Backpressure

// A stream of `n` copies of `packet`, offered to `feed` as a caller would: what is not taken is
// offered again once `queue` is drained. Checks every call stops at a packet boundary with the
// queue over the limit, and returns what went into the queue.
template <typename Feed>
Bytes offer_all(const Bytes& packet, std::size_t n, std::size_t limit, Bytes& queue, Feed feed) {
  Bytes held;
  for (std::size_t i = 0; i < n; ++i) append(held, packet);
  Bytes out;
  std::size_t calls = 0;
  while (!held.empty()) {
    const std::size_t used = feed(ByteSpan(held));
    EXPECT_EQ(used % packet.size(), 0u);  // whole packets only
    if (used < held.size()) {
      EXPECT_GT(queue.size(), limit);
    }
    EXPECT_LE(queue.size(), limit + packet.size());
    EXPECT_EQ(feed(ByteSpan(held).subspan(used)), 0u);  // nothing more until drained
    held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(used));
    append(out, queue);
    queue.clear();
    EXPECT_LT(++calls, 2 * n);
  }
  EXPECT_GT(calls, 2u);
  return out;
}

TEST_P(RelayTest, BackpressureStopsAtAPacketBoundaryAndResumes) {
  upstream::Config cfg;
  cfg.max_buffered = 64;
  make(cfg);
  open();
  const Bytes p = publish(v(), "a/b", std::string(20, 'x'), 1, 1);
  const auto up =
      offer_all(p, 10, 64, relay->to_upstream(), [&](ByteSpan b) { return relay->from_client(b); });
  EXPECT_EQ(up.size(), 10 * p.size());
  const auto down =
      offer_all(p, 10, 64, relay->to_client(), [&](ByteSpan b) { return relay->from_upstream(b); });
  EXPECT_EQ(down.size(), 10 * p.size());
  // The relay's own answers count too: refused PUBLISHes fill to_client, up to twice the limit.
  const Bytes refused = publish(v(), "secret/x", std::string(20, 'x'), 1, 1);
  const auto acks = offer_all(refused, 80, 128, relay->to_client(),
                              [&](ByteSpan b) { return relay->from_client(b); });
  EXPECT_EQ(acks.size(), 80 * ack(PacketType::Puback, 1, v5() ? 0x87 : 0).size());
}

TEST_P(RelayTest, ABrokerThatStopsReadingHoldsUpOnlyTheClientsPackets) {
  upstream::Config cfg;
  cfg.max_buffered = 64;
  make(cfg);
  open();
  const Bytes p = publish(v(), "a/b", std::string(40, 'x'), 1, 1);
  const Bytes three = cat({p, p, p});
  EXPECT_LT(relay->from_client(three), three.size());  // to_upstream is over the limit: stops
  EXPECT_TRUE(relay->client_blocked());
  EXPECT_FALSE(relay->upstream_blocked());
  // Deliveries still reach the client, whose queue is empty.
  EXPECT_EQ(relay->from_upstream(p), p.size());
  EXPECT_EQ(relay->to_client(), p);
  // And the other way round: a client that stops reading holds up only its deliveries.
  relay->to_upstream().clear();
  EXPECT_EQ(relay->from_upstream(three), p.size());  // to_client holds two now: over the limit
  EXPECT_TRUE(relay->upstream_blocked());
  EXPECT_FALSE(relay->client_blocked());
  EXPECT_EQ(relay->from_client(p), p.size());
  EXPECT_EQ(relay->to_upstream(), p);
}

// --- Segmentation

// The caller: keeps what the relay did not take, dials when asked, drains the queues.
struct Pipe {
  Relay& r;
  Bytes held_client, held_broker, client_out, broker_out;
  void pump() {
    for (bool progress = true; progress;) {
      progress = false;
      auto eat = [&](Bytes& held, auto from) {
        const std::size_t n = from(ByteSpan(held));
        held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(n));
        progress = progress || n > 0;
      };
      eat(held_client, [&](ByteSpan b) { return r.from_client(b); });
      if (r.wants_dial()) {
        r.upstream_connected();
        progress = true;
      }
      if (r.state() != Relay::State::Dial && r.state() != Relay::State::AwaitConnect) {
        eat(held_broker, [&](ByteSpan b) { return r.from_upstream(b); });
      }
      auto drain = [&](Bytes& q, Bytes& out) {
        if (q.empty()) return;
        append(out, q);
        q.clear();
        progress = true;
      };
      drain(r.to_client(), client_out);
      drain(r.to_upstream(), broker_out);
    }
  }
};

TEST_P(RelayTest, EverySplitGivesTheSameOutput) {
  const Bytes c = connect_packet(v(), "c1");
  const Bytes from_client =
      cat({c, publish(v(), "in/x", "p", 1, 1), subscribe(v(), 2, {{"a", 1}, {"secret/b", 0}}),
           publish(v(), "secret/y", "q", 2, 3), ack(PacketType::Pubrel, 3),
           publish(v(), "z", std::string(200, 'z'))});
  const Bytes ca = connack(v(), 0);
  const Bytes from_broker =
      cat({ack(PacketType::Puback, 1), suback(v(), 2, {1}), publish(v(), "hidden/h", "h", 2, 4),
           ack(PacketType::Pubrel, 4), publish(v(), "news", std::string(150, 'n'), 1, 5)});
  // The client's stream cut once at `cc`, then the CONNACK, then the broker's answers cut at `bc`;
  // or everything a byte at a time (`bytewise`).
  auto run = [&](std::size_t cc, std::size_t bc, bool bytewise) {
    make();
    Pipe pipe{*relay, {}, {}, {}, {}};
    auto feed = [&](Bytes& held, const Bytes& all, std::size_t cut) {
      std::vector<std::size_t> ends;
      for (std::size_t i = 1; bytewise && i < all.size(); ++i) ends.push_back(i);
      if (!bytewise) ends.push_back(cut);
      ends.push_back(all.size());
      std::size_t from = 0;
      for (const std::size_t to : ends) {
        held.insert(held.end(), all.begin() + static_cast<std::ptrdiff_t>(from),
                    all.begin() + static_cast<std::ptrdiff_t>(to));
        pipe.pump();
        from = to;
      }
    };
    feed(pipe.held_client, from_client, cc);
    feed(pipe.held_broker, ca, ca.size());
    feed(pipe.held_broker, from_broker, bc);
    EXPECT_TRUE(pipe.held_client.empty());
    EXPECT_TRUE(pipe.held_broker.empty());
    EXPECT_FALSE(relay->closed()) << relay->error();
    return std::pair{pipe.client_out, pipe.broker_out};
  };
  const auto whole = run(from_client.size(), from_broker.size(), false);
  const std::uint8_t refused = v5() ? 0x87 : 0x80;
  // The PUBREL of the refused QoS 2 PUBLISH: completed by the relay in 3.x, the broker's in 5.0
  // (whose failing PUBREC ended the flow).
  const Bytes pubrel_answer = v5() ? Bytes{} : ack(PacketType::Pubcomp, 3);
  const Bytes pubrel_forwarded = v5() ? ack(PacketType::Pubrel, 3) : Bytes{};
  EXPECT_EQ(whole.first,
            cat({connack(v(), 0), ack(PacketType::Pubrec, 3, v5() ? 0x87 : 0), pubrel_answer,
                 ack(PacketType::Puback, 1), suback(v(), 2, {1, refused}),
                 publish(v(), "news", std::string(150, 'n'), 1, 5)}));
  EXPECT_EQ(whole.second, cat({c, publish(v(), "out/x", "[p]", 1, 1), subscribe(v(), 2, {{"a", 1}}),
                               pubrel_forwarded, publish(v(), "z", std::string(200, 'z')),
                               ack(PacketType::Pubrec, 4), ack(PacketType::Pubcomp, 4)}));
  for (std::size_t cut = 1; cut < from_client.size(); ++cut) {
    EXPECT_EQ(run(cut, from_broker.size(), false), whole) << "client stream cut at " << cut;
  }
  for (std::size_t cut = 1; cut < from_broker.size(); ++cut) {
    EXPECT_EQ(run(from_client.size(), cut, false), whole) << "broker stream cut at " << cut;
  }
  EXPECT_EQ(run(1, 1, true), whole);
}

// --- MQTT 5 only

class RelayV5Test : public RelayTest {};
INSTANTIATE_TEST_SUITE_P(V5, RelayV5Test, ::testing::Values(ProtocolVersion::V5));

TEST_P(RelayV5Test, ClientTopicAliasesAreResolvedForTheHooksAndKeptRightForTheBroker) {
  const Bytes max = mqtt::PropertyWriter().u16(property::kTopicAliasMaximum, 5).bytes();
  open({}, max);
  auto alias = [](std::uint16_t a) {
    return mqtt::PropertyWriter().u16(property::kTopicAlias, a).bytes();
  };
  // Set and used, rewritten: the broker's alias 1 is out/a, so the alias alone is enough.
  client(cat({publish(v(), "in/a", "1", 0, 0, alias(1)), publish(v(), "", "2", 0, 0, alias(1))}));
  EXPECT_EQ(to_upstream(), cat({publish(v(), "out/a", "[1]", 0, 0, alias(1)),
                                publish(v(), "", "[2]", 0, 0, alias(1))}));
  EXPECT_EQ(events, (std::vector<std::string>{"publish c1 out/a=[1]", "publish c1 out/a=[2]"}));
  // Set by a PUBLISH the hooks refused: the broker never had it, so the next one names the topic.
  const Bytes next = publish(v(), "", "ok", 0, 0, alias(2));
  client(cat({publish(v(), "t", "deny", 0, 0, alias(2)), next, next}));
  EXPECT_EQ(to_upstream(), cat({publish(v(), "t", "ok", 0, 0, alias(2)), next}));
  // Unknown, or beyond the broker's Topic Alias Maximum.
  client(publish(v(), "", "x", 0, 0, alias(3)));
  EXPECT_EQ(to_client(), bytes("e0 02 82 00"));
  make();
  open({}, max);
  client(publish(v(), "t", "x", 0, 0, alias(6)));
  EXPECT_EQ(to_client(), bytes("e0 02 94 00"));
}

TEST_P(RelayV5Test, TopicAliasesHaveAByteBudget) {
  upstream::Config cfg;
  cfg.max_alias_bytes = 1000;
  make(cfg);
  const Bytes max = mqtt::PropertyWriter().u16(property::kTopicAliasMaximum, 100).bytes();
  open({}, max);
  auto alias = [](std::uint16_t a) {
    return mqtt::PropertyWriter().u16(property::kTopicAlias, a).bytes();
  };
  // Setting one alias again and again replaces its topic: the budget holds one at a time.
  for (int i = 0; i < 50; ++i) {
    client(publish(v(), std::string(300, static_cast<char>('a' + i % 26)), "x", 0, 0, alias(1)));
  }
  EXPECT_FALSE(relay->closed());
  // Kept for both sides (set and sent): 2 x 300 per alias, so the third alias is over 1000.
  client(publish(v(), std::string(300, 'y'), "x", 0, 0, alias(2)));
  EXPECT_FALSE(relay->closed());
  to_upstream();
  client(publish(v(), std::string(300, 'z'), "x", 0, 0, alias(3)));
  EXPECT_TRUE(relay->closed());
  EXPECT_TRUE(relay->to_upstream().empty());
  EXPECT_EQ(to_client(), bytes("e0 02 97 00"));  // DISCONNECT Quota exceeded
  EXPECT_EQ(counters.mqtt_protocol_errors, 1u);
}

TEST_P(RelayV5Test, BrokerTopicAliasesAreFollowedForAuthRead) {
  const Bytes max = mqtt::PropertyWriter().u16(property::kTopicAliasMaximum, 5).bytes();
  open(max);
  auto alias = [](std::uint16_t a) {
    return mqtt::PropertyWriter().u16(property::kTopicAlias, a).bytes();
  };
  broker(
      cat({publish(v(), "hidden/a", "1", 0, 0, alias(1)), publish(v(), "", "2", 0, 0, alias(1))}));
  EXPECT_TRUE(relay->to_client().empty());  // the alias names a hidden topic
  blind = true;  // the client may not read "news" now: its alias is never set at the client
  broker(publish(v(), "news", "1", 0, 0, alias(2)));
  blind = false;
  const Bytes next = publish(v(), "", "2", 0, 0, alias(2));
  broker(cat({next, next}));
  EXPECT_EQ(to_client(), cat({publish(v(), "news", "2", 0, 0, alias(2)), next}));
  broker(publish(v(), "", "x", 0, 0, alias(4)));
  EXPECT_EQ(relay->error(), "upstream: PUBLISH with a bad topic alias");
}

TEST_P(RelayV5Test, SubscriptionIdentifiersFromTheBrokerAreFine) {
  open();
  const Bytes id = mqtt::PropertyWriter().varint(property::kSubscriptionIdentifier, 300).bytes();
  const Bytes p = publish(v(), "news", "n", 1, 9, id);
  broker(p);
  EXPECT_EQ(to_client(), p);
}

TEST_P(RelayV5Test, AssignedClientIdentifierIsWhatTheHooksSee) {
  make();
  client(connect_packet(v(), "", "u"));
  relay->upstream_connected();
  broker(connack(
      v(), 0,
      mqtt::PropertyWriter().string(property::kAssignedClientIdentifier, "auto-1").bytes()));
  EXPECT_EQ(events.back(), "connect auto-1 user=u");
  EXPECT_EQ(relay->client().client_id, "auto-1");
}

TEST_P(RelayV5Test, EnhancedAuthenticationPassesBeforeTheConnack) {
  make();
  const Bytes method =
      mqtt::PropertyWriter().string(property::kAuthenticationMethod, "SCRAM").bytes();
  const Bytes c = connect_packet(v(), "c1", "u", {}, method);
  const Bytes auth = bytes("f0 0a 18 08 15 00 05 53 43 52 41 4d");  // AUTH 0x18 "SCRAM"
  const Bytes p = publish(v(), "t", "x");
  EXPECT_EQ(relay->from_client(cat({c, auth, p})), c.size() + auth.size());
  EXPECT_EQ(to_upstream(), cat({c, auth}));
  relay->upstream_connected();
  broker(auth);
  EXPECT_EQ(to_client(), auth);
  broker(connack(v(), 0));
  client(p);
  EXPECT_EQ(to_upstream(), p);
}

TEST_P(RelayV5Test, BrokerDisconnectIsForwardedAndCloses) {
  open();
  Bytes d;
  mqtt::encode_disconnect_v5(d, mqtt::reason::kServerShuttingDown);
  broker(d);
  EXPECT_EQ(to_client(), d);
  EXPECT_TRUE(relay->closed());
  EXPECT_EQ(relay->error(), "upstream sent DISCONNECT");
}

// MQTT 3.1 and 3.1.1 clients (a 5.0 client may get these packets: RelayV5Test).
class RelayV3Test : public RelayTest {};
INSTANTIATE_TEST_SUITE_P(V3, RelayV3Test,
                         ::testing::Values(ProtocolVersion::V31, ProtocolVersion::V311),
                         [](const auto& i) {
                           return "v" + std::to_string(static_cast<int>(i.param));
                         });

TEST_P(RelayV3Test, FivePointOhPacketsFromTheBrokerClose) {
  for (const bool auth : {false, true}) {
    make();
    open();
    Bytes b;
    if (auth) {
      b = {std::byte{0xf0}, std::byte{0x00}};  // AUTH, success
    } else {
      mqtt::encode_disconnect_v5(b, mqtt::reason::kServerShuttingDown);
    }
    broker(b);
    EXPECT_TRUE(to_client().empty());  // never reaches a client that cannot read it
    EXPECT_TRUE(relay->closed());
    EXPECT_EQ(relay->error(), std::string("upstream: sent ") + (auth ? "AUTH" : "DISCONNECT") +
                                  " to an MQTT 3.x client");
  }
}

TEST(RelayNoHooks, IsAPipe) {
  metrics::Counters counters;
  Relay r({}, hooks::Client{}, counters);
  const Bytes c = connect_packet(ProtocolVersion::V5, "c1");
  const Bytes s = subscribe(ProtocolVersion::V5, 1, {{"secret/x", 0}});
  ASSERT_EQ(r.from_client(c), c.size());
  r.upstream_connected();
  const Bytes ca = connack(ProtocolVersion::V5, 0);
  ASSERT_EQ(r.from_upstream(ca), ca.size());
  ASSERT_EQ(r.from_client(s), s.size());
  EXPECT_EQ(r.to_upstream(), cat({c, s}));
  EXPECT_EQ(r.to_client(), ca);
}

// --- What review found: hook values that do not fit, credentials removed, QoS 2 resends, invalid
// filters

TEST_P(RelayTest, AHookMayRemoveTheCredentials) {
  make();
  client(connect_packet(v(), "anonymise", "token"));
  const Bytes out = to_upstream();
  const auto packet = decoded(out, v());
  const auto& c = std::get<mqtt::Connect>(packet);
  EXPECT_FALSE(c.username.has_value());
  EXPECT_FALSE(c.password.has_value());
}

TEST_P(RelayTest, CredentialsTooLongForTheConnectRefuseIt) {
  make();
  client(connect_packet(v(), "long-user"));
  EXPECT_FALSE(relay->wants_dial());
  EXPECT_TRUE(relay->closed());
  EXPECT_TRUE(to_upstream().empty());
  const Bytes answer = to_client();
  ASSERT_GE(answer.size(), 4u);
  EXPECT_EQ(std::to_integer<int>(answer[0]), 0x20);  // CONNACK
  EXPECT_EQ(std::to_integer<int>(answer[3]), v5() ? 0x86 : 4);
}

TEST_P(RelayTest, ATopicTooLongAfterTheHookIsRefusedNotSpilledIntoThePayload) {
  open();
  client(publish(v(), "long", "x", 1, 3));
  EXPECT_TRUE(to_upstream().empty());
  const Bytes answer = to_client();
  ASSERT_GE(answer.size(), 4u);
  EXPECT_EQ(std::to_integer<int>(answer[0]), 0x40);  // PUBACK
  if (v5()) {
    EXPECT_EQ(std::to_integer<int>(answer[4]), 0x90);
  }
  EXPECT_EQ(counters.mqtt_publish_refused, 1u);
}

TEST_P(RelayTest, AQos2ResendOfAForwardedPublishGoesOnWithoutTheHooks) {
  open();
  client(publish(v(), "t", "once", 2, 5));
  EXPECT_FALSE(to_upstream().empty());
  // The resend (DUP) is the broker's flow: a hook that would now refuse it is not asked.
  const Bytes again = publish(v(), "t", "once", 2, 5, {}, false, true);
  client(again);
  EXPECT_EQ(to_upstream(), again);
  EXPECT_TRUE(to_client().empty());
  // Its PUBREL goes to the broker, which alone can end the flow.
  const Bytes rel = cat({Bytes{std::byte{0x62}, std::byte{0x02}, std::byte{0}, std::byte{5}}});
  client(rel);
  EXPECT_EQ(to_upstream(), rel);
  EXPECT_TRUE(to_client().empty());
  // After the flow, the same id is a new message, and the hook refuses it (quota used).
  client(publish(v(), "t", "once", 2, 5));
  EXPECT_TRUE(to_upstream().empty());
  EXPECT_EQ(std::to_integer<int>(to_client()[0]), 0x50);  // PUBREC, from the relay
}

TEST_P(RelayTest, AnInvalidFilterIsRefusedHereNotLeftToTheBroker) {
  open();
  client(subscribe(v(), 9, {{"a/#/b", 0}, {"ok/#", 1}}));
  const Bytes up = to_upstream();
  const auto packet = decoded(up, v());
  const auto& s = std::get<mqtt::Subscribe>(packet);
  ASSERT_EQ(s.topics.size(), 1u);
  EXPECT_EQ(s.topics[0].filter, "ok/#");
  broker(suback(v(), 9, {1}));
  const Bytes answer = to_client();
  // One code per filter the client sent, in its order: the refusal, then the broker's grant.
  ASSERT_GE(answer.size(), 2u);
  EXPECT_EQ(std::to_integer<int>(answer[answer.size() - 2]), v5() ? 0x8f : 0x80);
  EXPECT_EQ(std::to_integer<int>(answer[answer.size() - 1]), 1);
}

}  // namespace
}  // namespace mqtt_proxy::test
