#include "mqtt_proxy/broker/broker.hpp"

#include <gtest/gtest.h>

#include "broker_fixture.hpp"

namespace mqtt_proxy::test {
namespace {

using mqtt::PacketType;
using namespace std::chrono_literals;

class Broker : public BrokerFixture {};

// --- CONNECT
// --------------------------------------------------------------------------------------

TEST_F(Broker, AcceptsCorrectCredentials) {
  connect(1, "c1");
  EXPECT_EQ(counters_.mqtt_connects, 1u);
  EXPECT_EQ(broker_.connected_count(), 1u);
  EXPECT_TRUE(host_.closed.empty());
}

TEST_F(Broker, WrongPasswordGetsReturnCode5AndIsClosed) {
  open(1);
  feed(1, connect_packet("c1", 60, "jorge", "wrong"));
  const auto f = host_.take(1);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, PacketType::Connack);
  EXPECT_EQ(to_hex(f[0].body), "00 05");
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_EQ(broker_.session_count(), 0u);
}

TEST_F(Broker, MissingOrWrongUsernameIsRefused) {
  open(1);
  feed(1, connect_packet("c1", 60, "", ""));
  EXPECT_EQ(to_hex(host_.take(1)[0].body), "00 05");
  open(2);
  feed(2, connect_packet("c2", 60, "someone", "passwd"));
  EXPECT_EQ(to_hex(host_.take(2)[0].body), "00 05");
  EXPECT_EQ(counters_.mqtt_connects_refused, 2u);
}

TEST_F(Broker, UnsupportedProtocolLevelGetsReturnCode1) {
  open(1);
  feed(1, bytes("10 0c 00 04 4d 51 54 54 06 02 00 3c 00 00"));
  const auto f = host_.take(1);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(to_hex(f[0].body), "00 01");
  EXPECT_TRUE(host_.closed.contains(1));
}

TEST_F(Broker, EmptyClientIdGetsAnIdentifierWithCleanSession) {
  connect(1, "");
  EXPECT_EQ(broker_.connected_count(), 1u);
}

TEST_F(Broker, EmptyClientIdWithoutCleanSessionIsRejected) {
  open(1);
  feed(1, connect_packet("", 60, "jorge", "passwd", {}, /*clean_session=*/false));
  EXPECT_EQ(to_hex(host_.take(1)[0].body), "00 02");
  EXPECT_TRUE(host_.closed.contains(1));
}

TEST_F(Broker, FirstPacketMustBeConnect) {
  open(1);
  subscribe(1, "a");
  EXPECT_TRUE(host_.take(1).empty());
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_EQ(counters_.mqtt_protocol_errors, 1u);
}

TEST_F(Broker, SecondConnectIsAViolation) {
  connect(1, "c1");
  feed(1, connect_packet("c1"));
  EXPECT_TRUE(host_.closed.contains(1));
}

TEST_F(Broker, SameClientIdTakesOverTheOldSession) {
  connect(1, "same");
  subscribe(1, "t");
  host_.take(1);
  connect(2, "same");
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_FALSE(host_.closed.contains(2));
  EXPECT_EQ(counters_.mqtt_sessions_taken_over, 1u);
  connect(3, "pub");
  publish(3, "t", "x");
  EXPECT_TRUE(received(1).empty());  // the old session's subscription went with it
}

TEST_F(Broker, NothingAfterDisconnectInTheSameChunkIsProcessed) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  connect(2, "pub");
  Bytes chunk;
  mqtt::encode_disconnect(chunk);
  mqtt::encode_publish(chunk, "t", as_bytes("late"), 0, false, false, 0);
  mqtt::encode_pingreq(chunk);
  feed(2, chunk);
  EXPECT_TRUE(host_.closed.contains(2));
  EXPECT_TRUE(received(1).empty());
  EXPECT_TRUE(host_.take(2).empty());  // no PINGRESP either
  // The ended session is gone by the time on_data returns: only the subscriber is left.
  EXPECT_EQ(broker_.session_count(), 1u);
}

TEST_F(Broker, TakeoverInsideAChunkEndsTheOldSessionOnce) {
  connect(1, "same");
  subscribe(1, "t");
  host_.take(1);
  open(2);
  Bytes chunk = connect_packet("same");
  mqtt::encode_subscribe(chunk, 5, std::vector<std::string_view>{"t"});
  feed(2, chunk);
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_EQ(counters_.mqtt_sessions_taken_over, 1u);
  // Data that reaches the old connection after it was taken over is ignored.
  publish(1, "t", "from the old connection");
  connect(3, "pub");
  publish(3, "t", "x");
  EXPECT_EQ(received(2), (std::vector<std::string>{"t=x"}));
  EXPECT_EQ(broker_.session_count(), 2u);
}

TEST_F(Broker, NoConnectWithinTheTimeoutCloses) {
  open(1);
  broker_.on_timers(now_ + 9s);
  EXPECT_FALSE(host_.closed.contains(1));
  broker_.on_timers(now_ + 10s);
  EXPECT_TRUE(host_.closed.contains(1));
}

// --- Subscribe and publish
// ------------------------------------------------------------------------

TEST_F(Broker, SubackGrantsTheRequestedQosAndFailsInvalidFilters) {
  connect(1, "c1");
  feed(1, bytes("82 12 00 0a 00 03 61 2f 23 01 00 03 61 23 62 00 00 01 2b 02"));
  const auto f = host_.take(1);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, PacketType::Suback);
  EXPECT_EQ(to_hex(f[0].body), "00 0a 01 80 02");
}

TEST_F(Broker, DeliversToMatchingSubscribersOnly) {
  connect(1, "sub-exact");
  connect(2, "sub-wild");
  connect(3, "sub-other");
  connect(4, "pub");
  subscribe(1, "sensors/kitchen/temp");
  subscribe(2, "sensors/+/temp");
  subscribe(3, "actuators/#");
  for (int c = 1; c <= 3; ++c) host_.take(static_cast<broker::ClientHandle>(c));
  publish(4, "sensors/kitchen/temp", "21.5");
  EXPECT_EQ(received(1), (std::vector<std::string>{"sensors/kitchen/temp=21.5"}));
  EXPECT_EQ(received(2), (std::vector<std::string>{"sensors/kitchen/temp=21.5"}));
  EXPECT_TRUE(received(3).empty());
  EXPECT_TRUE(received(4).empty());
  EXPECT_EQ(counters_.mqtt_publish_delivered, 2u);
}

TEST_F(Broker, OverlappingFiltersDeliverOneCopy) {
  connect(1, "sub");
  subscribe(1, "a/#", 1);
  subscribe(1, "a/+", 2);
  subscribe(1, "a/b", 3);
  host_.take(1);
  connect(2, "pub");
  publish(2, "a/b", "once");
  EXPECT_EQ(received(1).size(), 1u);
}

TEST_F(Broker, PublisherReceivesItsOwnMessageWhenSubscribed) {
  connect(1, "echo");
  subscribe(1, "loop");
  host_.take(1);
  publish(1, "loop", "me");
  EXPECT_EQ(received(1), (std::vector<std::string>{"loop=me"}));
}

TEST_F(Broker, DollarTopicsAreNotDeliveredToLeadingWildcards) {
  connect(1, "all");
  subscribe(1, "#");
  host_.take(1);
  connect(2, "pub");
  publish(2, "$SYS/x", "hidden");
  EXPECT_TRUE(received(1).empty());
}

TEST_F(Broker, UnsubscribeStopsDeliveryAndIsAcknowledged) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  unsubscribe(1, "t", 9);
  const auto f = host_.take(1);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, PacketType::Unsuback);
  EXPECT_EQ(to_hex(f[0].body), "00 09");
  connect(2, "pub");
  publish(2, "t", "x");
  EXPECT_TRUE(received(1).empty());
}

TEST_F(Broker, RetainFlagIsClearedOnLiveDelivery) {
  connect(1, "sub");
  subscribe(1, "r");
  host_.take(1);
  connect(2, "pub");
  feed(2, publish_packet("r", "v", 0, 0, false, /*retain=*/true));
  EXPECT_EQ(received(1), (std::vector<std::string>{"r=v"}));  // received() checks retain == 0
}

TEST_F(Broker, Qos1PublishIsAcknowledgedAndDeliveredAtQos0) {
  connect(1, "sub");
  subscribe(1, "q");
  host_.take(1);
  connect(2, "pub");
  publish(2, "q", "one", 1, 77);
  const auto acks = host_.take(2);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].type, PacketType::Puback);
  EXPECT_EQ(to_hex(acks[0].body), "00 4d");
  EXPECT_EQ(received(1), (std::vector<std::string>{"q=one"}));
}

TEST_F(Broker, Qos2IsDeliveredExactlyOnce) {
  connect(1, "sub");
  subscribe(1, "q2");
  host_.take(1);
  connect(2, "pub");
  publish(2, "q2", "two", 2, 5);
  publish(2, "q2", "two", 2, 5, /*dup=*/true);  // PUBREC was lost; the client resends
  auto f = host_.take(2);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].type, PacketType::Pubrec);
  EXPECT_EQ(f[1].type, PacketType::Pubrec);
  EXPECT_EQ(received(1).size(), 1u);
  feed(2, bytes("62 02 00 05"));  // PUBREL
  f = host_.take(2);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, PacketType::Pubcomp);
  EXPECT_EQ(to_hex(f[0].body), "00 05");
  publish(2, "q2", "two again", 2, 5);  // the id is free again: a new message
  EXPECT_EQ(received(1).size(), 1u);
}

TEST_F(Broker, PingreqGetsPingresp) {
  connect(1, "c");
  feed(1, bytes("c0 00"));
  const auto f = host_.take(1);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].type, PacketType::Pingresp);
}

TEST_F(Broker, ManyPacketsInOneChunk) {
  connect(1, "sub");
  subscribe(1, "m");
  host_.take(1);
  connect(2, "pub");
  Bytes chunk;
  for (int i = 0; i < 50; ++i) {
    mqtt::encode_publish(chunk, "m", as_bytes(std::to_string(i)), 0, false, false, 0);
  }
  mqtt::encode_pingreq(chunk);
  feed(2, chunk);
  const auto got = received(1);
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got.front(), "m=0");
  EXPECT_EQ(got.back(), "m=49");
}

// --- Ending sessions
// --------------------------------------------------------------------------------

TEST_F(Broker, KeepaliveExpiresAfterOneAndAHalfPeriods) {
  connect(1, "sleepy", 2);
  broker_.on_timers(now_ + 2999ms);
  EXPECT_FALSE(host_.closed.contains(1));
  broker_.on_timers(now_ + 3s);
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_EQ(counters_.mqtt_keepalive_expired, 1u);
}

TEST_F(Broker, AnyPacketRestartsTheKeepalive) {
  connect(1, "alive", 2);
  now_ += 2s;
  feed(1, bytes("c0 00"));
  broker_.on_timers(now_ + 2999ms);
  EXPECT_FALSE(host_.closed.contains(1));
  broker_.on_timers(now_ + 3s);
  EXPECT_TRUE(host_.closed.contains(1));
}

TEST_F(Broker, KeepaliveZeroNeverExpires) {
  connect(1, "forever", 0);
  broker_.on_timers(now_ + std::chrono::hours(24));
  EXPECT_FALSE(host_.closed.contains(1));
}

TEST_F(Broker, MalformedPacketClosesOnlyThatClient) {
  connect(1, "good");
  subscribe(1, "t");
  host_.take(1);
  connect(2, "bad");
  feed(2, bytes("30 02 00 00"));  // PUBLISH with an empty topic
  EXPECT_TRUE(host_.closed.contains(2));
  EXPECT_FALSE(host_.closed.contains(1));
  connect(3, "pub");
  publish(3, "t", "still here");
  EXPECT_EQ(received(1).size(), 1u);
}

TEST_F(Broker, OversizedPacketClosesTheClient) {
  connect(1, "big");
  feed(1, bytes("30 ff ff ff 7f"));
  EXPECT_TRUE(host_.closed.contains(1));
}

TEST_F(Broker, WillIsPublishedWhenTheConnectionIsLost) {
  connect(1, "watcher");
  subscribe(1, "status/#");
  host_.take(1);
  open(2);
  mqtt::Will w{"status/dev", as_bytes("offline"), 0, false, {}};
  feed(2, connect_packet("dev", 60, "jorge", "passwd", w));
  host_.take(2);
  broker_.on_lost(2, "reset", now_);
  EXPECT_EQ(received(1), (std::vector<std::string>{"status/dev=offline"}));
  EXPECT_EQ(counters_.mqtt_wills_published, 1u);
}

TEST_F(Broker, WillIsDiscardedOnDisconnect) {
  connect(1, "watcher");
  subscribe(1, "status/#");
  host_.take(1);
  open(2);
  mqtt::Will w{"status/dev", as_bytes("offline"), 0, false, {}};
  feed(2, connect_packet("dev", 60, "jorge", "passwd", w));
  feed(2, bytes("e0 00"));
  EXPECT_TRUE(host_.closed.contains(2));
  broker_.on_lost(2, "closed", now_);  // the transport reports the close afterwards: a no-op
  EXPECT_TRUE(received(1).empty());
}

TEST_F(Broker, SlowSubscriberLosesMessagesOthersDoNot) {
  connect(1, "slow");
  connect(2, "fast");
  subscribe(1, "s");
  subscribe(2, "s");
  host_.take(1);
  host_.take(2);
  host_.queued[1] = BrokerFixture::default_config().max_queued_bytes;  // nothing acknowledged
  connect(3, "pub");
  publish(3, "s", "x");
  EXPECT_TRUE(received(1).empty());
  EXPECT_EQ(received(2).size(), 1u);
  EXPECT_EQ(counters_.mqtt_publish_dropped_slow, 1u);
}

TEST_F(Broker, AnonymousAccessWhenNoCredentialsAreConfigured) {
  metrics::Counters counters;
  FakeHost host;
  peering::Peering peering({}, log::null_logger(), counters);
  broker::Broker open_broker({}, host, peering, log::null_logger(), counters);
  open_broker.on_open(1, {}, now_);
  open_broker.on_data(1, connect_packet("anon", 60, "", ""), now_);
  EXPECT_EQ(to_hex(host.take(1)[0].body), "00 00");
}

// Users alice/secret1 (mosquitto_passwd 2.0.11), besides the fixture's -u jorge -p passwd.
std::string connack_code(const broker::BrokerConfig& base, bool allow_anonymous,
                         std::string_view user, std::string_view pass) {
  broker::BrokerConfig cfg = base;
  auto file = auth::PasswordFile::parse(
      "alice:$7$101$RiJEb9vV0/tONA5O$Z5El9L0Bn7hlRFq7TWkJ5TiyWPaZomxgk7OjmjX9Qpg0wIga5JzbGl6WBxzC"
      "TnY+PqfcpcB4CRO97229JI83QQ==\n");
  cfg.password_file = std::make_shared<const auth::PasswordFile>(std::move(*file));
  cfg.allow_anonymous = allow_anonymous;
  metrics::Counters counters;
  FakeHost host;
  peering::Peering peering({}, log::null_logger(), counters);
  broker::Broker b(cfg, host, peering, log::null_logger(), counters);
  b.on_open(1, {}, t0());
  b.on_data(1, connect_packet("c", 60, user, pass), t0());
  return to_hex(host.take(1)[0].body);
}

TEST(BrokerAuth, PasswordFileUsersAndTheCommandLineUserAreBothAccepted) {
  broker::BrokerConfig with_user;
  with_user.username = "jorge";
  with_user.password = "passwd";
  for (const auto& base : {broker::BrokerConfig{}, with_user}) {
    EXPECT_EQ(connack_code(base, false, "alice", "secret1"), "00 00");
    EXPECT_EQ(connack_code(base, false, "alice", "wrong"), "00 05");
    EXPECT_EQ(connack_code(base, false, "mallory", "secret1"), "00 05");
    EXPECT_EQ(connack_code(base, false, "", ""), "00 05");  // anonymous only when allowed
    EXPECT_EQ(connack_code(base, true, "", ""), "00 00");
    EXPECT_EQ(connack_code(base, true, "alice", "wrong"), "00 05");  // a name must still match
  }
  EXPECT_EQ(connack_code(with_user, false, "jorge", "passwd"), "00 00");
  EXPECT_EQ(connack_code({}, false, "jorge", "passwd"), "00 05");
}

// --- Persistent sessions (clean session 0)
// ----------------------------------------------------------

TEST_F(Broker, PersistentSessionKeepsItsSubscriptionsAcrossAReconnect) {
  EXPECT_EQ(connect_persistent(1, "keeper"), "00 00");  // nothing stored yet
  subscribe(1, "k/#");
  host_.take(1);
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(broker_.stored_session_count(), 1u);
  connect(2, "pub");
  publish(2, "k/1", "while away");  // QoS 0 messages are not queued for an absent client
  now_ += 10min;
  EXPECT_EQ(connect_persistent(3, "keeper"), "01 00");  // session present [MQTT-3.2.2-2]
  EXPECT_EQ(broker_.stored_session_count(), 0u);
  publish(2, "k/2", "back");
  EXPECT_EQ(received(3), (std::vector<std::string>{"k/2=back"}));
  EXPECT_EQ(counters_.mqtt_sessions_resumed, 1u);
}

TEST_F(Broker, CleanSessionDiscardsAStoredSession) {
  connect_persistent(1, "c");
  subscribe(1, "t");
  feed(1, Bytes{std::byte{0xe0}, std::byte{0x00}});  // DISCONNECT also keeps the session
  EXPECT_EQ(broker_.stored_session_count(), 1u);
  connect(2, "c");  // clean session 1 [MQTT-3.1.2-6]
  EXPECT_EQ(broker_.stored_session_count(), 0u);
  connect(3, "pub");
  publish(3, "t", "x");
  EXPECT_TRUE(received(2).empty());
  broker_.on_lost(2, "reset", now_);
  EXPECT_EQ(connect_persistent(4, "c"), "00 00");
}

TEST_F(Broker, StoredSessionExpires) {
  connect_persistent(1, "e");
  subscribe(1, "t");
  broker_.on_lost(1, "reset", now_);
  ASSERT_TRUE(broker_.next_deadline());
  broker_.on_timers(now_ + 59min);
  EXPECT_EQ(broker_.stored_session_count(), 1u);
  broker_.on_timers(now_ + 1h);
  EXPECT_EQ(broker_.stored_session_count(), 0u);
  EXPECT_EQ(counters_.mqtt_sessions_expired, 1u);
  EXPECT_EQ(connect_persistent(2, "e"), "00 00");
}

TEST_F(Broker, TakeoverOfAPersistentSessionCarriesItsSubscriptions) {
  connect_persistent(1, "dev");
  subscribe(1, "cmd");
  host_.take(1);
  EXPECT_EQ(connect_persistent(2, "dev"), "01 00");
  EXPECT_TRUE(host_.closed.contains(1));
  connect(3, "pub");
  publish(3, "cmd", "go");
  EXPECT_EQ(received(2), (std::vector<std::string>{"cmd=go"}));
}

// --- MQTT 5 sessions
// -------------------------------------------------------------------------------

class BrokerV5 : public BrokerFixture {
 protected:
  // CONNECT v5 with clean start `clean`, `props` and optional credentials; the CONNACK body.
  std::string connect5(broker::ClientHandle c, std::string_view id, const Bytes& props = {},
                       bool clean = true, std::string_view user = "jorge",
                       std::string_view pass = "passwd") {
    open(c);
    mqtt::Connect k;
    k.version = mqtt::ProtocolVersion::V5;
    k.client_id = id;
    k.keepalive = 60;
    k.clean_session = clean;
    if (!user.empty()) k.username = user;
    if (!pass.empty()) k.password = as_bytes(pass);
    k.properties.raw = props;
    Bytes b;
    mqtt::encode_connect(b, k);
    feed(c, b);
    const auto f = host_.take(c);
    if (f.empty() || f[0].type != mqtt::PacketType::Connack) return "no CONNACK";
    return to_hex(f[0].body);
  }
  void subscribe5(broker::ClientHandle c, std::string_view filter, std::uint8_t options,
                  const Bytes& props = {}) {
    Bytes b;
    mqtt::encode_subscribe_v5(b, 1, filter, options, props);
    feed(c, b);
  }
  void publish5(broker::ClientHandle c, std::string_view topic, std::string_view payload,
                const Bytes& props = {}, bool retain = false) {
    Bytes b;
    mqtt::encode_publish_v5(b, topic, as_bytes(payload), 0, retain, false, 0, props);
    feed(c, b);
  }
  // Everything sent to a v5 client: "PUBLISH topic=payload [r] props=<hex>" or "TYPE body".
  std::vector<std::string> sent5(broker::ClientHandle c) {
    std::vector<std::string> out;
    for (const auto& f : host_.take(c)) {
      if (f.type != mqtt::PacketType::Publish) {
        out.push_back(std::string(mqtt::packet_type_name(f.type)) + " " + to_hex(f.body));
        continue;
      }
      // Read by hand: the client-side decoder rightly refuses what only a server may send
      // (Subscription Identifiers, [MQTT-3.3.4-6]).
      const Bytes& b = f.body;
      std::size_t at = 0;
      const std::size_t topic_len =
          (std::to_integer<std::size_t>(b.at(0)) << 8) | std::to_integer<std::size_t>(b.at(1));
      const std::string topic(reinterpret_cast<const char*>(b.data()) + 2, topic_len);
      at = 2 + topic_len;
      if ((f.flags & 0x06) != 0) at += 2;  // packet identifier
      std::size_t props_len = 0;
      for (int shift = 0;; shift += 7) {
        const auto byte = std::to_integer<std::size_t>(b.at(at++));
        props_len |= (byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) break;
      }
      const Bytes props(b.begin() + static_cast<std::ptrdiff_t>(at),
                        b.begin() + static_cast<std::ptrdiff_t>(at + props_len));
      const Bytes payload(b.begin() + static_cast<std::ptrdiff_t>(at + props_len), b.end());
      out.push_back("PUBLISH " + topic + "=" + str(payload) + ((f.flags & 0x01) ? " r" : "") +
                    (props.empty() ? "" : " props=" + to_hex(props)));
    }
    return out;
  }
};

TEST_F(BrokerV5, ConnackTellsTheLimitsAndAssignsAnEmptyId) {
  const std::string connack = connect5(1, "");
  // Session present 0, success, then Receive Maximum, Maximum Packet Size (16 MiB), Topic Alias
  // Maximum 10, Retain Available, Wildcards, Subscription Identifiers, shared subscriptions, and
  // the Assigned Client Identifier "auto-1".
  EXPECT_EQ(connack,
            "00 00 1c 21 ff ff 27 01 00 00 00 22 00 0a 25 01 28 01 29 01 2a 01 12 00 06 61 75 74 "
            "6f 2d 31");
}

TEST_F(BrokerV5, RefusalsUseV5ReasonCodes) {
  EXPECT_EQ(connect5(1, "x", {}, true, "jorge", "wrong"), "00 86 00");
  EXPECT_EQ(connect5(2, "y", mqtt::PropertyWriter().string(0x15, "SCRAM").bytes()), "00 8c 00");
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_TRUE(host_.closed.contains(2));
}

TEST_F(BrokerV5, TopicAliasesAreResolvedAndOutOfRangeOnesDisconnect) {
  connect5(1, "sub");
  subscribe5(1, "t/#", 0);
  sent5(1);
  connect5(2, "pub");
  publish5(2, "t/long/name", "one", mqtt::PropertyWriter().u16(0x23, 3).bytes());
  publish5(2, "", "two", mqtt::PropertyWriter().u16(0x23, 3).bytes());
  EXPECT_EQ(sent5(1),
            (std::vector<std::string>{"PUBLISH t/long/name=one", "PUBLISH t/long/name=two"}));
  publish5(2, "", "x", mqtt::PropertyWriter().u16(0x23, 4).bytes());  // never set
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"DISCONNECT 82 00"}));
  connect5(3, "pub2");
  publish5(3, "t/a", "y", mqtt::PropertyWriter().u16(0x23, 11).bytes());  // above our maximum
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"DISCONNECT 94 00"}));
  EXPECT_TRUE(host_.closed.contains(3));
}

TEST_F(BrokerV5, NoLocalRetainAsPublishedAndRetainHandling) {
  connect5(1, "self");
  subscribe5(1, "n", 0x04);  // No Local
  sent5(1);
  publish5(1, "n", "mine");
  EXPECT_TRUE(sent5(1).empty());
  connect5(2, "other");
  publish5(2, "n", "theirs");
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH n=theirs"}));

  subscribe5(2, "r", 0x08);  // Retain As Published
  subscribe5(1, "r", 0x00);
  sent5(1);
  sent5(2);
  publish5(1, "r", "kept", {}, true);
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"PUBLISH r=kept r"}));
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH r=kept"}));

  connect5(3, "late");
  subscribe5(3, "r", 0x10);  // Retain Handling 1: only for a new subscription
  subscribe5(3, "r", 0x10);
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"SUBACK 00 01 00 00", "PUBLISH r=kept r",
                                                "SUBACK 00 01 00 00"}));
  subscribe5(3, "r", 0x20);  // 2: never
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"SUBACK 00 01 00 00"}));
}

TEST_F(BrokerV5, ASubscribeAgainReplacesTheOptionsAndAStoredSessionKeepsThem) {
  const Bytes expiry = mqtt::PropertyWriter().u32(0x11, 600).bytes();
  connect5(1, "self", expiry, false);
  subscribe5(1, "n", 0x04);  // No Local
  subscribe5(1, "n", 0x00);  // replaced: the publisher's own messages come back
  sent5(1);
  publish5(1, "n", "mine");
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH n=mine"}));
  subscribe5(1, "n", 0x04);
  sent5(1);
  feed(1, bytes("e0 00"));  // DISCONNECT: the session is stored with its options
  EXPECT_TRUE(connect5(2, "self", expiry, false).starts_with("01 00 "));  // session present
  publish5(2, "n", "mine again");
  EXPECT_TRUE(sent5(2).empty());
  connect5(3, "other");
  publish5(3, "n", "theirs");
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"PUBLISH n=theirs"}));
}

TEST_F(BrokerV5, SubackAndUnsubackReasonCodes) {
  connect5(1, "s");
  subscribe5(1, "a/#/b", 0);
  subscribe5(1, "$share/+/t", 0);                      // a wildcard in the share name
  subscribe5(1, "$share/g", 0);                        // no filter
  feed(1, bytes("a2 09 00 02 00 00 01 78 00 01 79"));  // UNSUBSCRIBE x y (none subscribed)
  subscribe5(1, "x", 0);
  feed(1, bytes("a2 09 00 02 00 00 01 78 00 01 79"));
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"SUBACK 00 01 00 8f", "SUBACK 00 01 00 8f",
                                                "SUBACK 00 01 00 8f", "UNSUBACK 00 02 00 11 11",
                                                "SUBACK 00 01 00 00", "UNSUBACK 00 02 00 00 11"}));
}

TEST_F(BrokerV5, SubscriptionIdentifiersNameEveryMatchingSubscriptionOnOneCopy) {
  connect5(1, "s");
  subscribe5(1, "t/#", 0, mqtt::PropertyWriter().varint(0x0b, 300).bytes());
  subscribe5(1, "t/+", 0, mqtt::PropertyWriter().varint(0x0b, 5).bytes());
  subscribe5(1, "t/a", 0);  // no identifier
  sent5(1);
  connect5(2, "pub");
  publish5(2, "t/a", "x", mqtt::PropertyWriter().string(0x03, "j").bytes());
  publish5(2, "t/b/c", "y");
  // [MQTT-3.3.4-4/5]: one copy, the publisher's properties, then each identifier (300 is the
  // variable byte integer ac 02).
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH t/a=x props=03 00 01 6a 0b 05 0b ac 02",
                                                "PUBLISH t/b/c=y props=0b ac 02"}));
  // A 3.1.1 subscriber of the same topics gets no properties, identifiers included.
  connect(3, "v311");
  subscribe(3, "t/#");
  host_.take(3);
  publish5(2, "t/a", "z");
  EXPECT_EQ(received(3), (std::vector<std::string>{"t/a=z"}));
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH t/a=z props=0b 05 0b ac 02"}));
}

TEST_F(BrokerV5, RetainedMessagesCarryTheIdentifierOfTheSubscribeTheyAnswer) {
  connect5(1, "pub");
  publish5(1, "r", "kept", {}, true);
  connect5(2, "s");
  subscribe5(2, "r", 0, mqtt::PropertyWriter().varint(0x0b, 7).bytes());
  EXPECT_EQ(sent5(2),
            (std::vector<std::string>{"SUBACK 00 01 00 00", "PUBLISH r=kept r props=0b 07"}));
  // Subscribing again without one replaces the subscription: live messages carry none.
  subscribe5(2, "r", 0x20);
  sent5(2);
  publish5(1, "r", "live");
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"PUBLISH r=live"}));
}

TEST_F(BrokerV5, ASharedSubscriptionDeliversEachMessageToOneMemberInTurn) {
  connect5(1, "a");
  connect5(2, "b");
  connect(3, "c311");  // Mosquitto takes $share from 3.1.1 clients too
  subscribe5(1, "$share/g/t/+", 0, mqtt::PropertyWriter().varint(0x0b, 9).bytes());
  subscribe5(2, "$share/g/t/+", 0);
  subscribe(3, "$share/g/t/+");
  subscribe5(2, "t/x", 0);  // and a subscription of its own
  sent5(1);
  sent5(2);
  host_.take(3);
  connect5(4, "pub");
  for (const char* m : {"1", "2", "3", "4"}) publish5(4, "t/x", m);
  EXPECT_EQ(sent5(1),
            (std::vector<std::string>{"PUBLISH t/x=1 props=0b 09", "PUBLISH t/x=4 props=0b 09"}));
  // b: every message for its own subscription, and the second for the group.
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"PUBLISH t/x=1", "PUBLISH t/x=2", "PUBLISH t/x=2",
                                                "PUBLISH t/x=3", "PUBLISH t/x=4"}));
  EXPECT_EQ(received(3), (std::vector<std::string>{"t/x=3"}));
}

TEST_F(BrokerV5, SharedGroupsAreAnnouncedOnceAndLeaveWithTheirLastMember) {
  connect5(1, "a");
  connect5(2, "b");
  subscribe5(1, "$share/g/t", 0);
  subscribe5(2, "$share/g/t", 0);
  subscribe5(2, "$share/h/t", 0);  // another group, same filter
  EXPECT_EQ(broker_.local_filter_count(), 1u);
  EXPECT_EQ(peering_.local_filters().size(), 1u);  // "t": what the peers must send us
  EXPECT_EQ(broker_.shared_subscription_count(), 3u);
  feed(1, bytes("a2 0f 00 02 00 00 0a 24 73 68 61 72 65 2f 67 2f 74"));  // UNSUBSCRIBE $share/g/t
  sent5(1);
  connect5(3, "pub");
  publish5(3, "t", "m");
  // Group g has only b now; group h has b: b gets one copy per group.
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"SUBACK 00 01 00 00", "SUBACK 00 01 00 00",
                                                "PUBLISH t=m", "PUBLISH t=m"}));
  EXPECT_TRUE(sent5(1).empty());
  broker_.on_lost(2, "reset", now_);
  EXPECT_EQ(broker_.local_filter_count(), 0u);
  EXPECT_TRUE(peering_.local_filters().empty());
}

TEST_F(BrokerV5, SharedSubscriptionsGetNoRetainedMessagesAndRefuseNoLocal) {
  connect5(1, "pub");
  publish5(1, "r", "kept", {}, true);
  connect5(2, "s");
  subscribe5(2, "$share/g/r", 0);
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"SUBACK 00 01 00 00"}));  // v5 4.8.2
  subscribe5(2, "$share/g/n", 0x04);                                      // No Local [MQTT-3.8.3-4]
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"DISCONNECT 82 00"}));
}

TEST_F(BrokerV5, OutgoingTopicAliasesUpToTheClientsMaximumAndOnlyOnItsConnection) {
  const Bytes two_aliases = mqtt::PropertyWriter().u16(0x22, 2).bytes();  // Topic Alias Maximum
  connect5(1, "s", two_aliases);
  subscribe5(1, "t/#", 0);
  sent5(1);
  connect5(2, "pub");
  for (const char* t : {"t/a", "t/b", "t/c", "t/a", "t/b", "t/c"}) publish5(2, t, "m");
  // Aliases 1 and 2 are set with the topic, then stand for it; t/c finds none left.
  EXPECT_EQ(sent5(1),
            (std::vector<std::string>{
                "PUBLISH t/a=m props=23 00 01", "PUBLISH t/b=m props=23 00 02", "PUBLISH t/c=m",
                "PUBLISH =m props=23 00 01", "PUBLISH =m props=23 00 02", "PUBLISH t/c=m"}));
  // A client that takes none, and a new connection of the same one, get whole topics first.
  connect5(3, "plain");
  subscribe5(3, "t/#", 0);
  sent5(3);
  broker_.on_lost(1, "reset", now_);
  connect5(4, "s", two_aliases);
  subscribe5(4, "t/#", 0x20);  // no retained messages
  sent5(4);
  publish5(2, "t/a", "again");
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"PUBLISH t/a=again"}));
  EXPECT_EQ(sent5(4), (std::vector<std::string>{"PUBLISH t/a=again props=23 00 01"}));
}

TEST_F(BrokerV5, PropertiesThatCameFromAPeerReachV5SubscribersAndTheRetainedReplica) {
  connect5(1, "v5");
  subscribe5(1, "p", 0);
  sent5(1);
  // As Peering hands over a 5.0-form PUBLISH from a DATA5 datagram: Content Type "j".
  const Bytes props = mqtt::PropertyWriter().string(0x03, "j").bytes();
  mqtt::Publish p;
  p.topic = "p";
  p.payload = as_bytes("x");
  p.retain = true;
  p.properties.raw = props;
  broker_.on_peer_publish(p, flow::kNone, now_);
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH p=x r props=03 00 01 6a"}));
  connect5(2, "late");
  subscribe5(2, "p", 0);
  EXPECT_EQ(sent5(2),
            (std::vector<std::string>{"SUBACK 00 01 00 00", "PUBLISH p=x r props=03 00 01 6a"}));
}

TEST_F(BrokerV5, ViolationsAreToldInADisconnect) {
  connect5(1, "a");
  subscribe5(1, "t", 0, mqtt::PropertyWriter().varint(0x0b, 0).bytes());  // 0 is no identifier
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"DISCONNECT 82 00"}));
  connect5(2, "b");
  feed(2, bytes("36 03 00 01 61"));  // QoS 3
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"DISCONNECT 81 00"}));
  connect5(3, "c");
  feed(3, bytes("f0 00"));  // AUTH without an authentication method
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"DISCONNECT 82 00"}));
  EXPECT_EQ(counters_.mqtt_protocol_errors, 3u);
}

TEST_F(BrokerV5, PropertiesReachV5SubscribersOnly) {
  connect5(1, "v5");
  subscribe5(1, "p", 0);
  sent5(1);
  connect(2, "v311");
  subscribe(2, "p");
  host_.take(2);
  connect5(3, "pub");
  // Content Type "j", a user property, and a topic alias that must not be passed on.
  publish5(3, "p", "x", mqtt::PropertyWriter().string(0x03, "j").u16(0x23, 1).bytes());
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH p=x props=03 00 01 6a"}));
  EXPECT_EQ(received(2), (std::vector<std::string>{"p=x"}));
}

TEST_F(BrokerV5, DisconnectWithWillPublishesTheWill) {
  connect(1, "watch");
  subscribe(1, "w");
  host_.take(1);
  open(2);
  mqtt::Connect k;
  k.version = mqtt::ProtocolVersion::V5;
  k.client_id = "dev";
  k.username = "jorge";
  k.password = as_bytes("passwd");
  k.will = mqtt::Will{"w", as_bytes("bye"), 0, false, {}};
  Bytes b;
  mqtt::encode_connect(b, k);
  feed(2, b);
  feed(2, bytes("e0 02 04 00"));  // reason 0x04: Disconnect with Will Message
  EXPECT_EQ(received(1), (std::vector<std::string>{"w=bye"}));
}

TEST_F(BrokerV5, SessionExpiryDecidesWhatIsKept) {
  const Bytes minute = mqtt::PropertyWriter().u32(0x11, 60).bytes();
  connect5(1, "k", minute, false);
  subscribe5(1, "t", 0);
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(broker_.stored_session_count(), 1u);
  EXPECT_EQ(connect5(2, "k", {}, false).substr(0, 5), "01 00");  // resumed
  feed(2, bytes("e0 00"));  // its own expiry is 0: nothing kept now
  EXPECT_EQ(broker_.stored_session_count(), 0u);
  connect5(3, "k2", {}, false);
  feed(3, bytes("e0 07 00 05 11 00 00 00 3c"));  // may not raise 0 [MQTT-3.14.2-2]
  EXPECT_EQ(sent5(3), (std::vector<std::string>{"DISCONNECT 82 00"}));
  connect5(4, "k3", minute, false);
  broker_.on_lost(4, "reset", now_);
  broker_.on_timers(now_ + 61s);
  EXPECT_EQ(broker_.stored_session_count(), 0u);
}

TEST_F(BrokerV5, MaximumPacketSizeOfTheClientIsRespected) {
  connect5(1, "small", mqtt::PropertyWriter().u32(0x27, 20).bytes());
  subscribe5(1, "t", 0);
  sent5(1);
  connect5(2, "pub");
  publish5(2, "t", "short");
  publish5(2, "t", std::string(50, 'L'));
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"PUBLISH t=short"}));
  EXPECT_EQ(counters_.mqtt_publish_dropped_too_large, 1u);
}

TEST_F(BrokerV5, AQos1MessageOverTheMaximumPacketSizeEndsItsFlowAndFreesTheWindow) {
  // [MQTT-3.1.2-25]: "as if it had completed sending": a Receive Maximum of 1 is not held up.
  const Bytes props =
      mqtt::PropertyWriter().u32(0x27, 30).u16(mqtt::property::kReceiveMaximum, 1).bytes();
  connect5(1, "small", props);
  subscribe5(1, "t", 2);
  sent5(1);
  connect5(2, "pub");
  Bytes b;
  mqtt::encode_publish_v5(b, "t", as_bytes(std::string(50, 'L')), 1, false, false, 1, {});
  mqtt::encode_publish_v5(b, "t", as_bytes(std::string_view("fits")), 2, false, false, 2, {});
  feed(2, b);
  const auto got = sent5(1);
  ASSERT_EQ(got.size(), 1u) << testing::PrintToString(got);
  EXPECT_TRUE(got[0].starts_with("PUBLISH t=fits")) << got[0];
  EXPECT_EQ(counters_.mqtt_publish_dropped_too_large, 1u);
  EXPECT_EQ(broker_.inflight_count(), 1u);  // only "fits", awaiting its PUBREC
}

TEST_F(BrokerV5, TakenOverSessionIsToldWhy) {
  connect5(1, "same");
  connect5(2, "same");
  EXPECT_EQ(sent5(1), (std::vector<std::string>{"DISCONNECT 8e 00"}));
  EXPECT_TRUE(host_.closed.contains(1));
}

// --- Outbound QoS 1 and 2 (the flows are Outbound's, outbound_test.cpp; these are the broker's
// part: granting, min(QoS), encoding, acks from the wire, persistent sessions)
// -----------------------------------------------------------------------------

class BrokerQos : public BrokerFixture {
 protected:
  BrokerQos() : BrokerFixture({}, config()) {}
  static broker::BrokerConfig config() {
    broker::BrokerConfig c = default_config();
    c.max_inflight = 2;
    c.max_queued_messages = 3;
    return c;
  }
  void subscribe_qos(broker::ClientHandle c, std::string_view filter, std::uint8_t qos) {
    Bytes b;
    mqtt::encode_subscribe(b, mqtt::ProtocolVersion::V311, 1,
                           std::span<const std::string_view>(&filter, 1), qos);
    feed(c, b);
  }
  // Everything sent to a 3.1.1 client: "t=payload q1 #3 dup r" for a PUBLISH (QoS, packet id,
  // flags), else the type and body.
  std::vector<std::string> sent(broker::ClientHandle c) {
    std::vector<std::string> out;
    for (const auto& f : host_.take(c)) {
      if (f.type != mqtt::PacketType::Publish) {
        out.push_back(std::string(mqtt::packet_type_name(f.type)) + " " + to_hex(f.body));
        continue;
      }
      mqtt::ClientPacket p;
      mqtt::FrameView v{static_cast<std::uint8_t>(0x30 | f.flags), f.body, 0};
      EXPECT_EQ(mqtt::decode_client_packet(v, mqtt::ProtocolVersion::V311, p),
                mqtt::DecodeError::None);
      const auto& pub = std::get<mqtt::Publish>(p);
      std::string line =
          std::string(pub.topic) + "=" + str(pub.payload) + " q" + std::to_string(pub.qos);
      if (pub.qos > 0) line += " #" + std::to_string(pub.packet_id);
      if (pub.dup) line += " dup";
      if (pub.retain) line += " r";
      out.push_back(line);
    }
    return out;
  }
  void ack(broker::ClientHandle c, PacketType type, std::uint16_t id) {
    Bytes b;
    mqtt::encode_packet_id_ack(b, type, id);
    feed(c, b);
  }
};

TEST_F(BrokerQos, DeliveryIsAtTheLowerOfThePublishersAndTheSubscriptionsQos) {
  connect(1, "s1");
  subscribe_qos(1, "a", 1);
  connect(2, "s2");
  subscribe_qos(2, "a", 2);
  connect(3, "s0");
  subscribe_qos(3, "a", 0);
  for (const broker::ClientHandle c : {1u, 2u, 3u}) host_.take(c);
  connect(4, "pub");
  publish(4, "a", "x", 2, 7);
  publish(4, "a", "y", 0);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=x q1 #1", "a=y q0"}));
  EXPECT_EQ(sent(2), (std::vector<std::string>{"a=x q2 #1", "a=y q0"}));
  EXPECT_EQ(sent(3), (std::vector<std::string>{"a=x q0", "a=y q0"}));
}

TEST_F(BrokerQos, TheQos1AndQos2FlowsRunOnTheAcksFromTheWire) {
  connect(1, "s");
  subscribe_qos(1, "a", 2);
  host_.take(1);
  connect(2, "pub");
  publish(2, "a", "one", 1, 1);
  publish(2, "a", "two", 2, 2);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=one q1 #1", "a=two q2 #2"}));
  ack(1, PacketType::Puback, 1);
  ack(1, PacketType::Pubrec, 2);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"PUBREL 00 02"}));
  EXPECT_EQ(broker_.inflight_count(), 1u);  // until PUBCOMP
  ack(1, PacketType::Pubcomp, 2);
  EXPECT_EQ(broker_.inflight_count(), 0u);
  // A PUBREC for an id not in flight gets its PUBREL anyway, so the client can finish (4.3.3).
  ack(1, PacketType::Pubrec, 9);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"PUBREL 00 09"}));
  EXPECT_EQ(counters_.mqtt_puback_received, 1u);
  EXPECT_EQ(counters_.mqtt_pubrel_sent, 2u);
}

TEST_F(BrokerQos, TheWindowHoldsTheRestInOrderAndAFullQueueDropsAndCounts) {
  connect(1, "s");
  subscribe_qos(1, "a", 1);
  host_.take(1);
  connect(2, "pub");
  for (int k = 1; k <= 6; ++k) publish(2, "a", std::to_string(k), 1, static_cast<std::uint16_t>(k));
  // Window 2 (--max-inflight), queue 3 (--max-queued-messages): the sixth is dropped.
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=1 q1 #1", "a=2 q1 #2"}));
  EXPECT_EQ(broker_.queued_message_count(), 3u);
  EXPECT_EQ(counters_.mqtt_publish_dropped_queue_full, 1u);
  ack(1, PacketType::Puback, 1);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=3 q1 #3"}));
  publish(2, "a", "late q0", 0);  // waits its turn behind the queued ones
  ack(1, PacketType::Puback, 2);
  ack(1, PacketType::Puback, 3);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=4 q1 #4", "a=5 q1 #5", "a=late q0 q0"}));
}

TEST_F(BrokerQos, APersistentSessionGetsWhatCameWhileItWasAwayAfterItsConnack) {
  EXPECT_EQ(connect_persistent(1, "p"), "00 00");
  subscribe_qos(1, "a", 1);
  host_.take(1);
  connect(2, "pub");
  publish(2, "a", "in flight", 1, 1);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"a=in flight q1 #1"}));
  broker_.on_lost(1, "reset", now_);  // never acknowledged
  publish(2, "a", "while away", 1, 2);
  publish(2, "a", "qos 0, not queued", 0);
  EXPECT_EQ(broker_.queued_message_count(), 1u);
  // Session present; the open flow again with DUP and its packet id, then the queued one.
  open(3);
  feed(3, connect_packet("p", 60, kUsername, kPassword, {}, false));
  EXPECT_EQ(sent(3), (std::vector<std::string>{"CONNACK 01 00", "a=in flight q1 #1 dup",
                                               "a=while away q1 #2"}));
  ack(3, PacketType::Puback, 1);
  ack(3, PacketType::Puback, 2);
  EXPECT_EQ(broker_.inflight_count(), 0u);
  // A clean start throws the session away, queue and all.
  broker_.on_lost(3, "reset", now_);
  publish(2, "a", "dropped with the session", 1, 3);
  connect(4, "p");
  EXPECT_TRUE(sent(4).empty());
  EXPECT_EQ(broker_.queued_message_count(), 0u);
}

TEST_F(BrokerQos, ASharedGroupsMemberGetsItsTurnAtItsQos) {
  connect(1, "a");
  connect(2, "b");
  subscribe_qos(1, "$share/g/t", 1);
  subscribe_qos(2, "$share/g/t", 0);
  host_.take(1);
  host_.take(2);
  connect(3, "pub");
  publish(3, "t", "x", 1, 1);
  publish(3, "t", "y", 1, 2);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"t=x q1 #1"}));
  EXPECT_EQ(sent(2), (std::vector<std::string>{"t=y q0"}));
}

TEST_F(BrokerQos, RetainedMessagesKeepTheirQosForNewSubscribers) {
  connect(1, "pub");
  publish(1, "r", "kept", 1, 1, false, true);
  connect(2, "s");
  subscribe_qos(2, "r", 2);
  EXPECT_EQ(sent(2), (std::vector<std::string>{"SUBACK 00 01 02", "r=kept q1 #1 r"}));
}

TEST_F(BrokerQos, WillsAreDeliveredAtTheirQos) {
  connect(1, "s");
  subscribe_qos(1, "w", 1);
  host_.take(1);
  open(2);
  mqtt::Will will;
  will.topic = "w";
  will.payload = as_bytes("gone");
  will.qos = 1;
  feed(2, connect_packet("dying", 60, kUsername, kPassword, will));
  host_.take(2);
  broker_.on_lost(2, "reset", now_);
  EXPECT_EQ(sent(1), (std::vector<std::string>{"w=gone q1 #1"}));
}

// Mosquitto's max_keepalive, here 60 s.
class BrokerMaxKeepalive : public BrokerFixture {
 protected:
  BrokerMaxKeepalive() : BrokerFixture({}, config()) {}
  static broker::BrokerConfig config() {
    broker::BrokerConfig c = default_config();
    c.max_keepalive = 60;
    return c;
  }
  // The CONNACK body for a CONNECT of `version` asking for `keepalive` seconds.
  std::string connack(broker::ClientHandle c, mqtt::ProtocolVersion version,
                      std::uint16_t keepalive) {
    open(c);
    const std::string id = "k" + std::to_string(c);  // outlives the encoding: Connect views it
    mqtt::Connect k;
    k.version = version;
    k.client_id = id;
    k.keepalive = keepalive;
    k.username = "jorge";
    k.password = as_bytes("passwd");
    Bytes b;
    mqtt::encode_connect(b, k);
    feed(c, b);
    const auto f = host_.take(c);
    return f.empty() ? "no CONNACK" : to_hex(f[0].body);
  }
};

TEST_F(BrokerMaxKeepalive, AV5ClientIsToldTheServerKeepAliveAndHeldToIt) {
  // Asked for 100 s: told 60 (13 00 3c) and expired after 1.5 x 60 s, not 150 s.
  const std::string body = connack(1, mqtt::ProtocolVersion::V5, 100);
  EXPECT_TRUE(body.starts_with("00 00 ")) << body;
  EXPECT_NE(body.find("13 00 3c"), std::string::npos) << body;
  broker_.on_timers(now_ + 89s);
  EXPECT_FALSE(host_.closed.contains(1));
  broker_.on_timers(now_ + 91s);
  EXPECT_TRUE(host_.closed.contains(1));
  // No keepalive at all is over a limit too; within it, nothing is said.
  EXPECT_NE(connack(2, mqtt::ProtocolVersion::V5, 0).find("13 00 3c"), std::string::npos);
  const std::string within = connack(3, mqtt::ProtocolVersion::V5, 30);
  EXPECT_EQ(within.find("13 00 3c"), std::string::npos) << within;
  EXPECT_EQ(within.find("13 00 1e"), std::string::npos) << within;
}

TEST_F(BrokerMaxKeepalive, A311ClientOverTheLimitIsRefusedAsMosquittoDoes) {
  EXPECT_EQ(connack(1, mqtt::ProtocolVersion::V311, 61), "00 02");  // identifier rejected
  EXPECT_TRUE(host_.closed.contains(1));
  EXPECT_EQ(connack(2, mqtt::ProtocolVersion::V311, 0), "00 02");
  EXPECT_EQ(connack(3, mqtt::ProtocolVersion::V311, 60), "00 00");
  EXPECT_EQ(counters_.mqtt_connects_refused, 2u);
}

TEST_F(Broker, TheDefaultLimitLetsEveryKeepaliveThroughUntold) {
  connect(1, "none", 0);
  connect(2, "longest", 65535);
  broker_.on_timers(now_ + std::chrono::hours(24));
  EXPECT_FALSE(host_.closed.contains(1));  // keepalive 0: never expired
}

class BrokerV5Will : public BrokerV5 {
 protected:
  // v5 CONNECT with a will on "w" with `will_delay` and `session_expiry` (seconds), clean start
  // `clean`; returns the CONNACK body.
  std::string connect_with_will(broker::ClientHandle c, std::uint32_t will_delay,
                                std::uint32_t session_expiry, bool clean = true) {
    open(c);
    mqtt::Connect k;
    k.version = mqtt::ProtocolVersion::V5;
    k.client_id = "dev";
    k.clean_session = clean;
    k.username = "jorge";
    k.password = as_bytes("passwd");
    const Bytes props = mqtt::PropertyWriter().u32(0x11, session_expiry).bytes();
    const Bytes will_props = mqtt::PropertyWriter().u32(0x18, will_delay).bytes();
    k.properties.raw = props;
    k.will = mqtt::Will{"w", as_bytes("bye"), 0, false, {}};
    k.will->properties.raw = will_props;
    Bytes b;
    mqtt::encode_connect(b, k);
    feed(c, b);
    const auto frames = host_.take(c);
    return frames.empty() ? "" : to_hex(frames[0].body);
  }
};

TEST_F(BrokerV5Will, WillDelayHoldsTheWillUntilItPasses) {
  connect(9, "watch");
  subscribe(9, "w");
  host_.take(9);
  connect_with_will(1, 30, 60);
  broker_.on_lost(1, "reset", now_);
  EXPECT_TRUE(received(9).empty());
  broker_.on_timers(now_ + 29s);
  EXPECT_TRUE(received(9).empty());
  ASSERT_TRUE(broker_.next_deadline());
  broker_.on_timers(now_ + 30s);
  EXPECT_EQ(received(9), (std::vector<std::string>{"w=bye"}));
}

TEST_F(BrokerV5Will, ReconnectWithinTheWillDelayCancelsTheWill) {
  connect(9, "watch");
  subscribe(9, "w");
  host_.take(9);
  connect_with_will(1, 30, 60);
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(connect_with_will(2, 30, 60, false).substr(0, 2), "01");  // session present
  broker_.on_timers(now_ + 31s);
  EXPECT_TRUE(received(9).empty());
  // A clean start ends the old session instead: its will goes out then.
  broker_.on_lost(2, "reset", now_);
  connect_with_will(3, 30, 60, true);
  EXPECT_EQ(received(9), (std::vector<std::string>{"w=bye"}));
}

TEST_F(BrokerV5Will, WillDelayBeyondTheSessionIsCutToIt) {
  connect(9, "watch");
  subscribe(9, "w");
  host_.take(9);
  connect_with_will(1, 30, 0);  // the session ends with the connection
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(received(9), (std::vector<std::string>{"w=bye"}));
}

TEST_F(BrokerV5, RetainedMessagesKeepTheirPropertiesAndExpire) {
  connect5(1, "pub");
  // Message Expiry 100 s and Content Type "j", retained.
  publish5(1, "r", "x", mqtt::PropertyWriter().u32(0x02, 100).string(0x03, "j").bytes(), true);
  now_ += 30s;
  connect5(2, "v5");
  subscribe5(2, "r", 0);
  // The expiry counts down [MQTT-3.3.2-6]: 70 s are left.
  EXPECT_EQ(sent5(2), (std::vector<std::string>{"SUBACK 00 01 00 00",
                                                "PUBLISH r=x r props=03 00 01 6a 02 00 00 00 46"}));
  connect(3, "v311");
  subscribe(3, "r");
  EXPECT_EQ(received(3), (std::vector<std::string>{"r=x (retained)"}));
  now_ += 71s;
  connect5(4, "late");
  subscribe5(4, "r", 0);
  EXPECT_EQ(sent5(4), (std::vector<std::string>{"SUBACK 00 01 00 00"}));
  EXPECT_EQ(broker_.retained().size(), 0u);
}

// --- Retained messages
// -----------------------------------------------------------------------------

TEST_F(Broker, RetainedMessageGoesToLaterSubscribersWithTheRetainFlag) {
  connect(1, "pub");
  connect(2, "early");
  subscribe(2, "r/#");
  host_.take(2);
  publish_retained(1, "r/a", "first");
  publish_retained(1, "r/a", "second");  // replaces
  publish_retained(1, "r/b", "other");
  // Live delivery never carries the flag [MQTT-3.3.1-9].
  EXPECT_EQ(received(2), (std::vector<std::string>{"r/a=first", "r/a=second", "r/b=other"}));
  connect(3, "late");
  subscribe(3, "r/+");
  EXPECT_EQ(received(3),
            (std::vector<std::string>{"r/a=second (retained)", "r/b=other (retained)"}));
  EXPECT_EQ(broker_.retained().size(), 2u);
  EXPECT_EQ(counters_.mqtt_retained_sent, 2u);
}

TEST_F(Broker, EmptyRetainedPayloadDeletesAndNonRetainedPublishLeavesItAlone) {
  connect(1, "pub");
  publish_retained(1, "r/x", "kept");
  publish(1, "r/x", "live only");  // RETAIN 0: the retained message stays [MQTT-3.3.1-12]
  connect(2, "s1");
  subscribe(2, "r/x");
  EXPECT_EQ(received(2), (std::vector<std::string>{"r/x=kept (retained)"}));
  publish_retained(1, "r/x", "");  // deletes [MQTT-3.3.1-10]
  EXPECT_EQ(received(2), (std::vector<std::string>{"r/x="}));
  connect(3, "s2");
  subscribe(3, "r/x");
  EXPECT_TRUE(received(3).empty());
  EXPECT_EQ(broker_.retained().size(), 0u);
}

TEST_F(Broker, ResubscribingResendsRetainedMessages) {
  connect(1, "pub");
  publish_retained(1, "r", "v");
  connect(2, "sub");
  subscribe(2, "r");
  subscribe(2, "r", 2);
  EXPECT_EQ(received(2), (std::vector<std::string>{"r=v (retained)", "r=v (retained)"}));
}

TEST_F(Broker, WildcardsDoNotMatchDollarTopicsForRetainedMessagesEither) {
  connect(1, "pub");
  publish_retained(1, "$SYS/x", "sys");
  connect(2, "sub");
  subscribe(2, "#");
  EXPECT_TRUE(received(2).empty());
  subscribe(2, "$SYS/#", 2);
  EXPECT_EQ(received(2), (std::vector<std::string>{"$SYS/x=sys (retained)"}));
}

TEST_F(Broker, WillWithRetainIsStoredAsARetainedMessage) {
  open(1);
  mqtt::Will w{"status/dev", as_bytes("offline"), 0, true, {}};
  feed(1, connect_packet("dev", 60, "jorge", "passwd", w));
  host_.take(1);
  broker_.on_lost(1, "reset", now_);
  connect(2, "later");
  subscribe(2, "status/+");
  EXPECT_EQ(received(2), (std::vector<std::string>{"status/dev=offline (retained)"}));
}

TEST(RetainedStore, RefusesNewTopicsBeyondTheLimitButUpdatesKnownOnes) {
  broker::RetainedStore store(2);
  using R = broker::RetainedStore;
  EXPECT_EQ(store.set("a", as_bytes("1"), R::Origin::Local), R::SetResult::Stored);
  EXPECT_EQ(store.set("b", as_bytes("22"), R::Origin::Local), R::SetResult::Stored);
  EXPECT_EQ(store.set("c", as_bytes("3"), R::Origin::Local), R::SetResult::Full);
  EXPECT_EQ(store.set("a", as_bytes("111"), R::Origin::Peer), R::SetResult::Stored);
  EXPECT_EQ(store.payload_bytes(), 5u);
  EXPECT_EQ(store.set("b", {}, R::Origin::Local), R::SetResult::Deleted);
  EXPECT_EQ(store.set("c", as_bytes("3"), R::Origin::Local), R::SetResult::Stored);
  std::vector<std::string> seen;
  store.for_each_match("#", [&](std::string_view t, const R::Message& m) {
    seen.push_back(std::string(t) + "=" + str(m.payload) +
                   (m.origin == R::Origin::Peer ? " peer" : ""));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"a=111 peer", "c=3"}));
}

TEST(RetainedStore, DropsOnlyUnwantedPeerEntriesUnderAFilter) {
  broker::RetainedStore store(10);
  using R = broker::RetainedStore;
  store.set("x/1", as_bytes("p"), R::Origin::Peer);
  store.set("x/2", as_bytes("p"), R::Origin::Peer);
  store.set("x/3", as_bytes("l"), R::Origin::Local);
  store.set("y/1", as_bytes("p"), R::Origin::Peer);
  EXPECT_EQ(store.drop_peer_entries("x/#", [](std::string_view t) { return t == "x/2"; }), 1u);
  EXPECT_EQ(store.size(), 3u);  // x/2 still wanted, x/3 local, y/1 outside the filter
}

// --- Peering interplay
// ------------------------------------------------------------------------------

// --- Backpressure (FlowControl) ----------------------------------------------------------------

class BrokerBackpressure : public BrokerFixture {
 protected:
  BrokerBackpressure() : BrokerFixture({}, small_frames(), true) {}
  static broker::BrokerConfig small_frames() {
    auto c = default_config();
    c.max_unread_frame = 64;
    return c;
  }
  // The subscriber's TCP acknowledged everything: its queue is empty, and FlowControl hears so as
  // the core would tell it; the publishers it released go on with what they had unread.
  void drained(broker::ClientHandle sub) {
    host_.queued[sub] = 0;
    flow_.update(flow::client(sub), 0, now_, now_);
    reoffer();
  }
  void reoffer() {
    for (const flow::Id id : flow_.resumed()) resumed_.push_back(id);
    flow_.resumed().clear();
    for (const flow::Id id : resumed_) feed(id, {});
    resumed_.clear();
  }
  std::vector<flow::Id> resumed_;
};

TEST_F(BrokerBackpressure, APublisherPausesWhileItsSubscriberIsCongestedAndGoesOnWhenItDrains) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  host_.queued[1] = 0;
  connect(2, "pub");
  Bytes burst;
  for (int i = 0; i < 20; ++i) append(burst, publish_packet("t", "message-" + std::to_string(i)));
  // Copies of 14 bytes (message-0 to -9) and 15 (-10 to -19): the eighth passes the 100-byte mark.
  feed(2, burst);
  EXPECT_TRUE(flow_.is_paused(flow::client(2)));
  EXPECT_EQ(received(1).size(), 8u);
  EXPECT_EQ(unread_[2].size(), 2u * 14 + 10u * 15);  // the rest waits in the TCP receive buffer
  feed(2, {});                                       // still paused: nothing is read
  EXPECT_TRUE(received(1).empty());
  drained(1);
  const auto rest = received(1);
  ASSERT_EQ(rest.size(), 7u);  // and again up to the mark: 2 x 14 + 5 x 15 = 103
  EXPECT_EQ(rest.front(), "t=message-8");
  drained(1);
  EXPECT_EQ(received(1).size(), 5u);
  EXPECT_TRUE(unread_[2].empty());
  EXPECT_FALSE(flow_.is_paused(flow::client(2)));
  EXPECT_EQ(counters_.mqtt_publish_dropped_slow, 0u);
}

TEST_F(BrokerBackpressure, AStuckSubscriberIsDroppedAfterTheGraceAndTheOthersGoOn) {
  connect(1, "stuck");
  subscribe(1, "t");
  connect(3, "healthy");
  subscribe(3, "t");
  host_.take(1);
  host_.take(3);
  host_.queued[1] = host_.queued[3] = 0;
  connect(2, "pub");
  Bytes burst;
  for (int i = 0; i < 20; ++i) append(burst, publish_packet("t", "message-" + std::to_string(i)));
  feed(2, burst);
  ASSERT_TRUE(flow_.is_paused(flow::client(2)));
  // The healthy one keeps up; the stuck one acknowledges nothing for 1.5 s.
  host_.queued[3] = 0;
  flow_.update(flow::client(3), 0, now_, now_);
  now_ += 1500ms;
  flow_.update(flow::client(1), host_.queued[1], t0(), now_);
  EXPECT_TRUE(flow_.is_stuck(flow::client(1)));
  reoffer();
  for (int i = 0; i < 10 && !unread_[2].empty(); ++i) drained(3);
  EXPECT_EQ(received(3).size(), 20u);
  EXPECT_EQ(received(1).size(), 8u);
  EXPECT_EQ(counters_.mqtt_publish_dropped_slow, 12u);
  EXPECT_EQ(counters_.flow_sinks_stuck, 1u);
}

TEST_F(BrokerBackpressure, APausedPublishersKeepaliveDoesNotExpire) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  host_.queued[1] = 0;
  connect(2, "pub", 10);  // keepalive 10 s: 15 s of silence would end it
  Bytes burst;
  for (int i = 0; i < 20; ++i) append(burst, publish_packet("t", "message-" + std::to_string(i)));
  feed(2, burst);
  ASSERT_TRUE(flow_.is_paused(flow::client(2)));
  now_ += 60s;
  broker_.on_timers(now_);
  EXPECT_FALSE(host_.closed.contains(2));
  EXPECT_EQ(counters_.mqtt_keepalive_expired, 0u);
}

TEST_F(BrokerBackpressure, AFrameLargerThanHalfTheReceiveBufferIsTakenWhileItArrives) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  connect(2, "pub");
  const Bytes big = publish_packet("t", std::string(500, 'x'));
  feed(2, Bytes(big.begin(), big.begin() + 100));
  EXPECT_TRUE(unread_[2].empty());  // over max_unread_frame: the broker keeps it itself
  feed(2, Bytes(big.begin() + 100, big.end()));
  EXPECT_EQ(received(1), (std::vector<std::string>{"t=" + std::string(500, 'x')}));
  drained(1);
  // A small incomplete frame stays where it is until the rest comes.
  const Bytes small = publish_packet("t", "s");
  feed(2, Bytes(small.begin(), small.begin() + 4));
  EXPECT_EQ(unread_[2].size(), 4u);
  feed(2, Bytes(small.begin() + 4, small.end()));
  EXPECT_EQ(received(1), (std::vector<std::string>{"t=s"}));
  EXPECT_TRUE(unread_[2].empty());
}

class BrokerWithPeers : public BrokerFixture {
 protected:
  BrokerWithPeers() : BrokerFixture({*wire::Ipv4Address::parse("192.168.1.104")}) {}

  std::vector<std::string> datagram_types() {
    std::vector<std::string> out;
    for (const auto& d : peering_.outbox()) {
      out.push_back(
          mqtt::packet_type_name(static_cast<PacketType>(std::to_integer<int>(d.bytes[0]) >> 4)));
    }
    peering_.clear_outbox();
    return out;
  }
};

TEST_F(BrokerWithPeers, FirstSubscriberSubscribesAtPeersLastOneUnsubscribes) {
  connect(1, "a");
  connect(2, "b");
  subscribe(1, "topic1");
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"SUBSCRIBE"}));
  subscribe(2, "topic1");
  EXPECT_TRUE(datagram_types().empty());
  unsubscribe(1, "topic1");
  EXPECT_TRUE(datagram_types().empty());
  unsubscribe(2, "topic1");
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
}

TEST_F(BrokerWithPeers, LostConnectionAndKeepaliveExpiryUnsubscribeAtPeers) {
  connect(1, "lost");
  subscribe(1, "x");
  connect(2, "expired", 1);
  subscribe(2, "y");
  datagram_types();
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
  broker_.on_timers(now_ + 1500ms);
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
  EXPECT_EQ(peering_.local_filters().size(), 0u);
}

TEST_F(BrokerWithPeers, PublishGoesToPeerOnlyWhenThePeerSubscribed) {
  connect(1, "pub");
  publish(1, "t", "nobody");
  EXPECT_TRUE(datagram_types().empty());
  peering_.on_datagram(*wire::Ipv4Address::parse("192.168.1.104"), subscribe_packet("t"));
  publish(1, "t", "somebody");
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"PUBLISH"}));
}

TEST_F(BrokerWithPeers, PublishFromAPeerIsDeliveredLocallyButNotForwarded) {
  connect(1, "sub");
  subscribe(1, "t");
  host_.take(1);
  const auto peer = *wire::Ipv4Address::parse("192.168.1.104");
  peering_.on_datagram(peer, subscribe_packet("t"));  // the peer is interested in "t" too
  datagram_types();
  const auto pub = publish_packet("t", "from afar");
  const auto p = peering_.on_datagram(peer, pub);
  ASSERT_EQ(p.size(), 1u);
  broker_.on_peer_publish(p[0], flow::kNone, now_);
  EXPECT_EQ(received(1), (std::vector<std::string>{"t=from afar"}));
  EXPECT_TRUE(datagram_types().empty());  // no loop back to the peer
}

TEST_F(BrokerWithPeers, PeerSubscriptionGetsTheLocalRetainedMessagesOnce) {
  connect(1, "pub");
  publish_retained(1, "r/a", "here");
  const auto peer = *wire::Ipv4Address::parse("192.168.1.104");
  datagram_types();
  peering_.on_datagram(peer, subscribe_packet("r/#"));
  ASSERT_EQ(peering_.new_interest().size(), 1u);
  for (const auto& i : peering_.new_interest()) broker_.on_peer_interest(i.peer, i.filter, now_);
  peering_.new_interest().clear();
  ASSERT_EQ(peering_.outbox().size(), 1u);
  EXPECT_EQ(peering_.outbox()[0].dst, peer);
  EXPECT_EQ(peering_.outbox()[0].bytes, publish_packet("r/a", "here", 0, 0, false, true));
  peering_.clear_outbox();
  // A refresh of the same filter is not new interest.
  peering_.on_datagram(peer, subscribe_packet("r/#"));
  EXPECT_TRUE(peering_.new_interest().empty());
}

TEST_F(BrokerWithPeers, SysMessagesAreRetainedForLocalSubscribersAndNeverReachPeers) {
  const auto peer = *wire::Ipv4Address::parse("192.168.1.104");
  peering_.on_datagram(peer, subscribe_packet("$SYS/#"));  // even a peer that asks
  for (const auto& i : peering_.new_interest()) broker_.on_peer_interest(i.peer, i.filter, now_);
  peering_.new_interest().clear();
  connect(1, "live");
  subscribe(1, "$SYS/broker/#");
  host_.take(1);
  datagram_types();
  broker_.publish_sys("$SYS/broker/uptime", as_bytes("5 seconds"), now_);
  EXPECT_EQ(received(1), (std::vector<std::string>{"$SYS/broker/uptime=5 seconds"}));
  EXPECT_TRUE(datagram_types().empty());
  // Retained: a later subscriber gets the last figure at once.
  broker_.publish_sys("$SYS/broker/uptime", as_bytes("15 seconds"), now_);
  connect(2, "late");
  subscribe(2, "$SYS/broker/uptime");
  EXPECT_EQ(received(2), (std::vector<std::string>{"$SYS/broker/uptime=15 seconds (retained)"}));
  datagram_types();  // the SUBSCRIBE for the new local filter
  // A peer's later SUBSCRIBE is not answered with it either: it is not a local client's message.
  peering_.on_datagram(peer, subscribe_packet("$SYS/broker/+"));
  for (const auto& i : peering_.new_interest()) broker_.on_peer_interest(i.peer, i.filter, now_);
  peering_.new_interest().clear();
  EXPECT_TRUE(datagram_types().empty());
}

TEST_F(BrokerWithPeers, RetainedMessageFromAPeerServesLaterLocalSubscribersUntilInterestEnds) {
  connect(1, "first");
  subscribe(1, "r/+");
  host_.take(1);
  const auto peer = *wire::Ipv4Address::parse("192.168.1.104");
  const auto pub = publish_packet("r/far", "away", 0, 0, false, true);
  const auto got = peering_.on_datagram(peer, pub);
  ASSERT_EQ(got.size(), 1u);
  broker_.on_peer_publish(got[0], flow::kNone, now_);
  EXPECT_EQ(received(1), (std::vector<std::string>{"r/far=away (retained)"}));
  connect(2, "second");  // subscribes later, sends no new SUBSCRIBE to the peer
  subscribe(2, "r/far");
  EXPECT_EQ(received(2), (std::vector<std::string>{"r/far=away (retained)"}));
  datagram_types();
  // The replica is not offered back to peers.
  broker_.on_peer_interest(peer, "r/#", now_);
  EXPECT_TRUE(datagram_types().empty());
  // Once nobody here subscribes, the peer stops updating it: the replica goes.
  unsubscribe(1, "r/+");
  EXPECT_EQ(broker_.retained().size(), 1u);  // "second" still wants r/far
  unsubscribe(2, "r/far");
  EXPECT_EQ(broker_.retained().size(), 0u);
}

TEST_F(BrokerWithPeers, AbsentPersistentClientIsNotAnInterestPeersKeep) {
  connect_persistent(1, "p");
  subscribe(1, "t");
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"SUBSCRIBE"}));
  broker_.on_lost(1, "reset", now_);
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"UNSUBSCRIBE"}));
  connect_persistent(2, "p");
  EXPECT_EQ(datagram_types(), (std::vector<std::string>{"SUBSCRIBE"}));
}

}  // namespace
}  // namespace mqtt_proxy::test
