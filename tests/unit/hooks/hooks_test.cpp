// The hooks as the broker calls them (mProxy's events): what each refusal becomes on the wire in
// 3.1.1 and 5.0, what a change does, the read check at delivery, and the chain's timing.
#include "mqtt_proxy/hooks/hooks.hpp"

#include <gtest/gtest.h>

#include "broker_fixture.hpp"

namespace mqtt_proxy::test {
namespace {

using mqtt::PacketType;

// Virtual time for the chain: a hook "takes" what it adds to it.
TimePoint g_clock{};
std::vector<std::string> g_events;

class Rules final : public hooks::Hooks {
 public:
  std::string_view name() const override { return "rules"; }
  hooks::Reason auth_connect(const hooks::Client& c, hooks::Credentials& cred) override {
    g_events.push_back("auth_connect " + c.client_id + " v" + std::to_string(c.protocol_version) +
                       " " + c.address_text);
    if (cred.username.get() == "banned") return 0x8a;
    if (cred.username.get() == "token") {  // maps a token to the proxy's user
      cred.username.set(kUsername);
      cred.password.set(kPassword);
    }
    if (cred.client_id.get() == "rename-me") cred.client_id.set("renamed");
    return hooks::kOk;
  }
  hooks::Reason auth_publish(const hooks::Client&, hooks::Field& topic, hooks::Field& payload,
                             std::uint8_t, bool) override {
    if (topic.get().starts_with("secret/")) return hooks::kNotAuthorized;
    if (topic.get().starts_with("in/")) {
      topic.set("out/" + std::string(topic.get().substr(3)));
      payload.set("[" + std::string(payload.get()) + "]");
    }
    if (topic.get() == "bad") topic.set("bad/#");  // not a topic name
    // Not an MQTT string: too long for its 16-bit length, or with a U+0000.
    if (topic.get() == "long") topic.set(std::string(70000, 'x'));
    if (topic.get() == "nul") topic.set(std::string("a\0b", 3));
    return hooks::kOk;
  }
  hooks::Reason auth_subscribe(const hooks::Client&, hooks::Field& filter, std::uint8_t) override {
    if (filter.get().starts_with("secret/")) return hooks::kNotAuthorized;
    if (filter.get() == "mine") filter.set("out/#");
    return hooks::kOk;
  }
  bool reads() const override { return true; }
  hooks::Reason auth_read(const hooks::Client& c, std::string_view topic) override {
    return c.client_id == "blind" && topic == "out/x" ? hooks::kNotAuthorized : hooks::kOk;
  }
  void on_connect(const hooks::Client& c) override {
    g_clock += std::chrono::milliseconds(c.client_id == "slow" ? 10 : 1);
    g_events.push_back("connect " + c.client_id + " user=" + c.username);
  }
  void on_publish(const hooks::Client& c, std::string_view topic, std::string_view p) override {
    g_events.push_back("publish " + c.client_id + " " + std::string(topic) + "=" + std::string(p));
  }
  void on_subscribe(const hooks::Client& c, std::span<const std::string> f) override {
    std::string line = "subscribe " + c.client_id;
    for (const auto& x : f) line += " " + x;
    g_events.push_back(line);
  }
  void on_unsubscribe(const hooks::Client& c, std::span<const std::string> f) override {
    g_events.push_back("unsubscribe " + c.client_id + " " + f.front());
  }
  void on_disconnect(const hooks::Client& c) override {
    g_events.push_back("disconnect " + c.client_id);
  }
};

std::shared_ptr<hooks::HookChain> g_chain;

broker::BrokerConfig hooked_config() {
  std::vector<std::unique_ptr<hooks::Hooks>> h;
  h.push_back(std::make_unique<Rules>());
  g_chain = std::make_shared<hooks::HookChain>(
      std::move(h), std::chrono::milliseconds(5), [] { return g_clock; }, log::null_logger());
  broker::BrokerConfig c = BrokerFixtureDefaults::config();
  c.hooks = g_chain;
  return c;
}

class Hooked : public BrokerFixture {
 protected:
  Hooked() : BrokerFixture({}, (g_events.clear(), hooked_config())) {}

  std::string connack(broker::ClientHandle c, const Bytes& connect) {
    open(c);
    feed(c, connect);
    const auto f = host_.take(c);
    if (f.empty() || f[0].type != PacketType::Connack) return "no CONNACK";
    return to_hex(f[0].body);
  }
  Bytes connect5(std::string_view id, std::string_view user = kUsername,
                 std::string_view pass = kPassword) {
    mqtt::Connect k;
    k.version = mqtt::ProtocolVersion::V5;
    k.client_id = id;
    k.keepalive = 60;
    k.username = user;
    k.password = as_bytes(pass);
    Bytes b;
    mqtt::encode_connect(b, k);
    return b;
  }
  std::string first(broker::ClientHandle c) {
    const auto f = host_.take(c);
    if (f.empty()) return "nothing";
    return std::string(mqtt::packet_type_name(f[0].type)) + " " + to_hex(f[0].body);
  }
};

TEST_F(Hooked, ConnectRefusalIsConnack5In311And0x8aIn5) {
  EXPECT_EQ(connack(1, connect_packet("a", 60, "banned", "x")), "00 05");
  EXPECT_EQ(connack(2, connect5("b", "banned", "x")), "00 8a 00");
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_TRUE(host_.closed.contains(2));
  EXPECT_EQ(counters_.mqtt_connects_refused, 2u);
  EXPECT_EQ(g_chain->stats()[0].refusals, 2u);
}

TEST_F(Hooked, ConnectHookMapsCredentialsAndClientIdBeforeTheProxysOwnCheck) {
  EXPECT_EQ(connack(1, connect_packet("rename-me", 60, "token", "whatever")), "00 00");
  EXPECT_EQ(broker_.connected_count(), 1u);
  EXPECT_EQ(g_events.at(0), "auth_connect rename-me v4 10.0.0.1");
  EXPECT_EQ(g_events.at(1), "connect renamed user=jorge");
  // Without the hook's mapping the same password is wrong.
  EXPECT_EQ(connack(2, connect_packet("c", 60, kUsername, "whatever")), "00 05");
}

TEST_F(Hooked, RefusedPublishIsNotDeliveredAndIsAcknowledgedAsTheVersionAllows) {
  connect(1, "sub");
  subscribe(1, "#");
  host_.take(1);
  connect(2, "pub");
  publish(2, "secret/a", "x", 0);
  publish(2, "secret/a", "x", 1, 7);
  EXPECT_EQ(first(2), "PUBACK 00 07");  // 3.1.1 has no reason to give
  publish(2, "secret/a", "x", 2, 8);
  EXPECT_EQ(first(2), "PUBREC 00 08");
  feed(2, bytes("62 02 00 08"));  // PUBREL: the flow ends as for any message
  EXPECT_EQ(first(2), "PUBCOMP 00 08");
  EXPECT_TRUE(received(1).empty());
  EXPECT_EQ(counters_.mqtt_publish_refused, 3u);

  EXPECT_TRUE(connack(3, connect5("pub5")).starts_with("00 00 "));
  Bytes b;
  mqtt::encode_publish_v5(b, "secret/b", as_bytes("y"), 1, false, false, 9, {});
  feed(3, b);
  EXPECT_EQ(first(3), "PUBACK 00 09 87");
  b.clear();
  mqtt::encode_publish_v5(b, "secret/b", as_bytes("y"), 2, false, false, 10, {});
  feed(3, b);
  EXPECT_EQ(first(3), "PUBREC 00 0a 87");
  EXPECT_TRUE(received(1).empty());
  EXPECT_FALSE(host_.closed.contains(2));
  EXPECT_FALSE(host_.closed.contains(3));
}

TEST_F(Hooked, PublishHookRewritesTopicAndPayloadAndAnInvalidRewriteIsRefused) {
  connect(1, "sub");
  subscribe(1, "#");
  host_.take(1);
  connect(2, "pub");
  publish(2, "in/x", "v");
  EXPECT_EQ(received(1), (std::vector<std::string>{"out/x=[v]"}));
  EXPECT_EQ(g_events.back(), "publish pub out/x=[v]");
  publish(2, "bad", "v");
  publish(2, "long", "v");
  publish(2, "nul", "v");
  EXPECT_TRUE(received(1).empty());
  EXPECT_EQ(counters_.mqtt_publish_refused, 3u);
  // What is retained is what the hook made of it, so a later subscriber reads the same.
  publish(2, "in/r", "kept", 0, 0, false, true);
  EXPECT_EQ(received(1), (std::vector<std::string>{"out/r=[kept]"}));
  connect(3, "late");
  subscribe(3, "out/r");
  EXPECT_EQ(received(3), (std::vector<std::string>{"out/r=[kept] (retained)"}));
}

TEST_F(Hooked, SubscribeRefusalIsSuback0x80In311And0x87In5AndARewriteIsSubscribed) {
  connect(1, "c");
  feed(1, subscribe_packet("secret/#", 3));
  EXPECT_EQ(first(1), "SUBACK 00 03 80");
  subscribe(1, "mine");
  EXPECT_EQ(first(1), "SUBACK 00 01 00");
  EXPECT_EQ(g_events.back(), "subscribe c out/#");
  EXPECT_EQ(counters_.mqtt_subscribe_refused, 1u);
  connect(2, "pub");
  publish(2, "out/y", "z");
  EXPECT_EQ(received(1), (std::vector<std::string>{"out/y=z"}));

  EXPECT_NE(connack(3, connect5("c5")), "no CONNACK");
  Bytes b;
  mqtt::encode_subscribe_v5(b, 4, "secret/x", 0, {});
  feed(3, b);
  EXPECT_EQ(first(3), "SUBACK 00 04 00 87");
}

TEST_F(Hooked, ReadCheckSkipsOneSubscriberOnLiveAndRetainedMessages) {
  connect(1, "blind");
  connect(2, "sees");
  subscribe(1, "out/#");
  subscribe(2, "out/#");
  host_.take(1);
  host_.take(2);
  connect(3, "pub");
  publish(3, "out/x", "1", 0, 0, false, true);
  publish(3, "out/y", "2");
  EXPECT_EQ(received(1), (std::vector<std::string>{"out/y=2"}));
  EXPECT_EQ(received(2), (std::vector<std::string>{"out/x=1", "out/y=2"}));
  // The retained out/x is kept from "blind" when it subscribes again, too.
  subscribe(1, "out/x", 5);
  EXPECT_TRUE(received(1).empty());
}

TEST_F(Hooked, NotificationsComeInOrderAndTheSlowHookIsCounted) {
  connect(1, "slow");
  subscribe(1, "a");
  unsubscribe(1, "a");
  feed(1, bytes("e0 00"));
  EXPECT_EQ(g_events, (std::vector<std::string>{"auth_connect slow v4 10.0.0.1",
                                                "connect slow user=jorge", "subscribe slow a",
                                                "unsubscribe slow a", "disconnect slow"}));
  const hooks::HookStats& s = g_chain->stats()[0];
  EXPECT_EQ(s.slow, 1u);  // on_connect took 10 ms of a 5 ms budget
  EXPECT_EQ(s.longest, std::chrono::milliseconds(10));
  EXPECT_GE(s.calls, 5u);
}

TEST_F(Hooked, ARefusedWillIsDroppedAndTheConnectAccepted) {
  connect(1, "watcher");
  subscribe(1, "#");
  host_.take(1);
  mqtt::Will refused{"secret/will", as_bytes(std::string_view("gone")), 0, false, {}};
  EXPECT_EQ(connack(2, connect_packet("w", 60, kUsername, kPassword, refused)), "00 00");
  EXPECT_EQ(counters_.mqtt_publish_refused, 1u);
  mqtt::Will rewritten{"in/will", as_bytes(std::string_view("gone")), 0, false, {}};
  EXPECT_EQ(connack(3, connect_packet("r", 60, kUsername, kPassword, rewritten)), "00 00");
  broker_.on_lost(2, "test", now_);
  broker_.on_lost(3, "test", now_);
  // The refused will is not published; the rewritten one is, as the hook made it.
  EXPECT_EQ(received(1), (std::vector<std::string>{"out/will=[gone]"}));
}

// A hook that answers with `r` whatever it is asked.
class Says final : public hooks::Hooks {
 public:
  explicit Says(hooks::Reason r) : r_(r) {}
  std::string_view name() const override { return "says"; }
  hooks::Reason auth_publish(const hooks::Client&, hooks::Field&, hooks::Field&, std::uint8_t,
                             bool) override {
    return r_;
  }

 private:
  hooks::Reason r_;
};

TEST(HookChainAnswers, AnythingButOkRefusesAndANonReasonIsUnspecifiedError) {
  for (const auto& [said, told] : std::vector<std::pair<hooks::Reason, hooks::Reason>>{
           {0, 0}, {1, 0x80}, {0x7f, 0x80}, {0x80, 0x80}, {0x97, 0x97}}) {
    std::vector<std::unique_ptr<hooks::Hooks>> h;
    h.push_back(std::make_unique<Says>(said));
    hooks::HookChain chain(
        std::move(h), std::chrono::milliseconds(5), [] { return TimePoint{}; }, log::null_logger());
    hooks::Field topic("t");
    hooks::Field payload("p");
    EXPECT_EQ(chain.auth_publish(hooks::Client{}, topic, payload, 0, false), told) << int{said};
    EXPECT_EQ(chain.stats()[0].refusals, said == 0 ? 0u : 1u);
  }
}

TEST(HookField, ASetFromAPartOfItsOwnValueKeepsThatPart) {
  hooks::Field f("original");
  f.set("prefix/value");
  f.set(f.get().substr(7));  // a second plugin trimming what the first set
  EXPECT_EQ(f.get(), "value");
  f.set(f.get());
  EXPECT_EQ(f.get(), "value");
  EXPECT_TRUE(f.changed());
}

TEST(HookConnack, V5ReasonsMapToThe311ReturnCodes) {
  EXPECT_EQ(hooks::connack_code(0x85), 2);
  EXPECT_EQ(hooks::connack_code(0x86), 4);
  EXPECT_EQ(hooks::connack_code(0x88), 3);
  EXPECT_EQ(hooks::connack_code(0x87), 5);
  EXPECT_EQ(hooks::connack_code(0x8a), 5);
}

}  // namespace
}  // namespace mqtt_proxy::test
