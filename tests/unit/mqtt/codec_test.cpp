#include "mqtt_proxy/mqtt/codec.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

using namespace mqtt;

FrameView frame_of(const Bytes& b) {
  bool need_more = false;
  DecodeError err;
  auto f = parse_frame(b, 1 << 20, need_more, err);
  EXPECT_TRUE(f) << decode_error_name(err) << (need_more ? " (need more)" : "");
  return f.value_or(FrameView{});
}

DecodeError decode(const Bytes& b, ClientPacket& out,
                   ProtocolVersion version = ProtocolVersion::V311) {
  bool need_more = false;
  DecodeError err;
  auto f = parse_frame(b, 1 << 20, need_more, err);
  if (!f) return need_more ? DecodeError::Truncated : err;
  return decode_client_packet(*f, version, out);
}

DecodeError decode_error(std::string_view hex) {
  ClientPacket p;
  return decode(bytes(hex), p);
}

// --- Framing
// ----------------------------------------------------------------------------------------

TEST(Framing, RemainingLengthBoundaries) {
  struct Case {
    std::size_t len;
    const char* encoded;
  };
  // MQTT 3.1.1 table 2.4
  for (const Case c : {Case{0, "00"}, Case{127, "7f"}, Case{128, "80 01"}, Case{16383, "ff 7f"},
                       Case{16384, "80 80 01"}, Case{2097151, "ff ff 7f"},
                       Case{2097152, "80 80 80 01"}, Case{268435455, "ff ff ff 7f"}}) {
    Bytes out;
    encode_remaining_length(out, c.len);
    EXPECT_EQ(to_hex(out), to_hex(bytes(c.encoded))) << c.len;
  }
}

TEST(Framing, FifthLengthByteIsMalformed) {
  bool need_more = false;
  DecodeError err;
  EXPECT_FALSE(parse_frame(bytes("30 ff ff ff ff 01"), SIZE_MAX, need_more, err));
  EXPECT_EQ(err, DecodeError::MalformedRemainingLength);
}

TEST(Framing, OversizedPacketIsRefusedBeforeItsBodyArrives) {
  bool need_more = false;
  DecodeError err;
  // Announces 268 MB; only the header is here. Nothing is allocated for the body.
  EXPECT_FALSE(parse_frame(bytes("30 ff ff ff 7f"), 1024, need_more, err));
  EXPECT_EQ(err, DecodeError::PacketTooLarge);
  FrameSplitter s(1024);
  s.feed(bytes("10 80 80 80 01"));
  EXPECT_FALSE(s.next(err));
  EXPECT_EQ(err, DecodeError::PacketTooLarge);
}

TEST(Framing, SplitterHandlesManyPacketsPerChunkAndPacketsAcrossChunks) {
  Bytes stream;
  encode_pingreq(stream);
  encode_publish(stream, "a/b", as_bytes("payload"), 0, false, false, 0);
  encode_disconnect(stream);
  // Feed the stream split at every possible offset, including inside the length varint.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameSplitter s(1024);
    std::vector<PacketType> types;
    DecodeError err;
    s.feed(ByteSpan{stream}.first(cut));
    while (auto f = s.next(err)) types.push_back(f->type());
    s.feed(ByteSpan{stream}.subspan(cut));
    while (auto f = s.next(err)) types.push_back(f->type());
    EXPECT_EQ(err, DecodeError::None);
    ASSERT_EQ(types.size(), 3u) << "cut at " << cut;
    EXPECT_EQ(types[1], PacketType::Publish);
    EXPECT_EQ(s.buffered(), 0u);
  }
}

TEST(Framing, SplitterByteByByte) {
  Bytes stream;
  Connect c;
  c.client_id = "dribble";
  c.keepalive = 30;
  encode_connect(stream, c);
  FrameSplitter s(1024);
  DecodeError err;
  int frames = 0;
  for (auto b : stream) {
    s.feed(ByteSpan{&b, 1});
    while (s.next(err)) ++frames;
  }
  EXPECT_EQ(frames, 1);
}

// --- CONNECT
// ----------------------------------------------------------------------------------------

TEST(Connect, Decodes311WithCredentialsAndWill) {
  // mosquitto_pub -i c1 -u jorge -P passwd --will-topic w --will-payload bye -k 60
  const auto b = bytes(
      "10 25 00 04 4d 51 54 54 04 ee 00 3c 00 02 63 31 00 01 77 00 03 62 79 65"
      " 00 05 6a 6f 72 67 65 00 06 70 61 73 73 77 64");
  ClientPacket p;
  ASSERT_EQ(decode(b, p), DecodeError::None);
  const auto& c = std::get<Connect>(p);
  EXPECT_EQ(c.version, ProtocolVersion::V311);
  EXPECT_TRUE(c.clean_session);
  EXPECT_EQ(c.keepalive, 60);
  EXPECT_EQ(c.client_id, "c1");
  ASSERT_TRUE(c.will);
  EXPECT_EQ(c.will->topic, "w");
  EXPECT_EQ(str(c.will->payload), "bye");
  EXPECT_EQ(c.will->qos, 1);
  EXPECT_TRUE(c.will->retain);
  EXPECT_EQ(*c.username, "jorge");
  EXPECT_EQ(str(*c.password), "passwd");
}

TEST(Connect, Decodes31) {
  Connect in;
  in.version = ProtocolVersion::V31;
  in.client_id = "old-client";
  Bytes b;
  encode_connect(b, in);
  EXPECT_EQ(str(ByteSpan{b}.subspan(2, 8)), std::string("\0\x06MQIsdp", 8));
  ClientPacket p;
  ASSERT_EQ(decode(b, p), DecodeError::None);
  EXPECT_EQ(std::get<Connect>(p).version, ProtocolVersion::V31);
  EXPECT_EQ(std::get<Connect>(p).client_id, "old-client");
}

TEST(Connect, EncodeDecodeRoundTrip) {
  Connect in;
  in.client_id = "round";
  in.keepalive = 5;
  in.clean_session = false;
  in.username = "u";
  const auto pw = text("p");
  in.password = pw;
  Bytes b;
  encode_connect(b, in);
  ClientPacket p;
  ASSERT_EQ(decode(b, p), DecodeError::None);
  const auto& c = std::get<Connect>(p);
  EXPECT_FALSE(c.clean_session);
  EXPECT_EQ(c.keepalive, 5);
  EXPECT_EQ(*c.username, "u");
}

TEST(Connect, Violations) {
  // Levels 3 (with MQIsdp), 4 and 5 are served; 6 and 7 are not.
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 06 02 00 3c 00 00"),
            DecodeError::UnsupportedProtocolVersion);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 07 02 00 3c 00 00"),
            DecodeError::UnsupportedProtocolVersion);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 58 04 02 00 3c 00 00"),
            DecodeError::BadProtocolName);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00"),
            DecodeError::ReservedConnectFlag);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 04 1e 00 3c 00 00"), DecodeError::BadWillFlags);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 04 22 00 3c 00 00"), DecodeError::BadWillFlags);
  EXPECT_EQ(decode_error("10 0c 00 04 4d 51 54 54 04 42 00 3c 00 00"),
            DecodeError::PasswordWithoutUsername);
  EXPECT_EQ(decode_error("10 0b 00 04 4d 51 54 54 04 02 00 3c 00"), DecodeError::Truncated);
  EXPECT_EQ(decode_error("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 00 ff"),
            DecodeError::TrailingBytes);
  EXPECT_EQ(decode_error("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 00"),
            DecodeError::NullCharacter);
  EXPECT_EQ(decode_error("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 c0 af"),
            DecodeError::InvalidUtf8);
  EXPECT_EQ(decode_error("11 0c 00 04 4d 51 54 54 04 02 00 3c 00 00"),
            DecodeError::BadFixedHeaderFlags);
}

// --- PUBLISH
// ----------------------------------------------------------------------------------------

TEST(Publish, QoS0AndQoS1) {
  ClientPacket p;
  const auto b0 = bytes("30 0e 00 06 74 6f 70 69 63 31 68 65 6c 6c 6f 21");
  ASSERT_EQ(decode(b0, p), DecodeError::None);
  auto pub = std::get<Publish>(p);
  EXPECT_EQ(pub.topic, "topic1");
  EXPECT_EQ(str(pub.payload), "hello!");
  EXPECT_EQ(pub.qos, 0);
  const auto b1 = bytes("3b 0a 00 03 61 2f 62 12 34 78 79 7a");
  ASSERT_EQ(decode(b1, p), DecodeError::None);
  pub = std::get<Publish>(p);
  EXPECT_EQ(pub.qos, 1);
  EXPECT_TRUE(pub.dup);
  EXPECT_TRUE(pub.retain);
  EXPECT_EQ(pub.packet_id, 0x1234);
  EXPECT_EQ(str(pub.payload), "xyz");
}

TEST(Publish, EmptyPayloadIsFine) {
  ClientPacket p;
  const auto b = bytes("30 03 00 01 74");
  ASSERT_EQ(decode(b, p), DecodeError::None);
  EXPECT_TRUE(std::get<Publish>(p).payload.empty());
}

TEST(Publish, Violations) {
  EXPECT_EQ(decode_error("36 05 00 01 74 00 01"), DecodeError::BadQos);
  EXPECT_EQ(decode_error("38 03 00 01 74"), DecodeError::DupWithQos0);
  EXPECT_EQ(decode_error("32 05 00 01 74 00 00"), DecodeError::PacketIdZero);
  EXPECT_EQ(decode_error("32 04 00 01 74 00"), DecodeError::Truncated);
  EXPECT_EQ(decode_error("30 02 00 00"), DecodeError::InvalidTopicName);  // CVE-2021-34432 class
  EXPECT_EQ(decode_error("30 05 00 03 61 2f 2b"), DecodeError::InvalidTopicName);
  EXPECT_EQ(decode_error("30 03 00 01 23"), DecodeError::InvalidTopicName);
  EXPECT_EQ(decode_error("30 05 00 03 61 00 62"), DecodeError::NullCharacter);
  EXPECT_EQ(decode_error("30 04 00 02 ed a0"), DecodeError::InvalidUtf8);
  EXPECT_EQ(decode_error("30 05 00 09 74 6f 70"), DecodeError::Truncated);
}

TEST(Publish, EncodesLikeTheSpec) {
  Bytes b;
  encode_publish(b, "topic1", as_bytes("message1"), 0, false, false, 0);
  EXPECT_EQ(to_hex(b), to_hex(bytes("30 10 00 06 74 6f 70 69 63 31 6d 65 73 73 61 67 65 31")));
  b.clear();
  encode_publish(b, "t", as_bytes("x"), 2, true, true, 9);
  EXPECT_EQ(to_hex(b), to_hex(bytes("3d 06 00 01 74 00 09 78")));
}

// --- SUBSCRIBE / UNSUBSCRIBE
// ------------------------------------------------------------------------

TEST(Subscribe, DecodesEveryFilterAndFlagsInvalidWildcards) {
  ClientPacket p;
  const auto b = bytes("82 12 00 0a 00 03 61 2f 23 01 00 03 61 23 62 00 00 01 2b 02");
  ASSERT_EQ(decode(b, p), DecodeError::None);
  const auto& s = std::get<Subscribe>(p);
  EXPECT_EQ(s.packet_id, 10);
  ASSERT_EQ(s.topics.size(), 3u);
  EXPECT_EQ(s.topics[0].filter, "a/#");
  EXPECT_EQ(s.topics[0].requested_qos, 1);
  EXPECT_TRUE(s.topics[0].filter_valid);
  EXPECT_FALSE(s.topics[1].filter_valid);  // "a#b"
  EXPECT_EQ(s.topics[2].filter, "+");
}

TEST(Subscribe, Violations) {
  EXPECT_EQ(decode_error("80 06 00 01 00 01 61 00"), DecodeError::BadFixedHeaderFlags);
  EXPECT_EQ(decode_error("82 02 00 01"), DecodeError::NoTopicFilters);
  EXPECT_EQ(decode_error("82 06 00 00 00 01 61 00"), DecodeError::PacketIdZero);
  EXPECT_EQ(decode_error("82 05 00 01 00 00 00"), DecodeError::EmptyTopicFilter);
  EXPECT_EQ(decode_error("82 06 00 01 00 01 61 03"), DecodeError::BadSubscriptionOptions);
  EXPECT_EQ(decode_error("82 06 00 01 00 01 61 04"), DecodeError::BadSubscriptionOptions);
  EXPECT_EQ(decode_error("82 05 00 01 00 01 61"), DecodeError::Truncated);  // no QoS byte
  EXPECT_EQ(decode_error("82 07 00 01 00 02 61 00 00"), DecodeError::NullCharacter);
}

TEST(Unsubscribe, DecodesAndRejects) {
  ClientPacket p;
  const auto b = bytes("a2 0a 00 05 00 01 61 00 03 62 2f 2b");
  ASSERT_EQ(decode(b, p), DecodeError::None);
  const auto& u = std::get<Unsubscribe>(p);
  EXPECT_EQ(u.packet_id, 5);
  ASSERT_EQ(u.filters.size(), 2u);
  EXPECT_EQ(u.filters[1], "b/+");
  EXPECT_EQ(decode_error("a2 02 00 05"), DecodeError::NoTopicFilters);
  EXPECT_EQ(decode_error("a0 05 00 05 00 01 61"), DecodeError::BadFixedHeaderFlags);
  EXPECT_EQ(decode_error("a2 04 00 05 00 00"), DecodeError::EmptyTopicFilter);
}

// --- Small packets
// ----------------------------------------------------------------------------------

TEST(SmallPackets, AcksPingDisconnect) {
  ClientPacket p;
  ASSERT_EQ(decode(bytes("62 02 00 07"), p), DecodeError::None);
  EXPECT_EQ(std::get<PacketIdAck>(p).type, PacketType::Pubrel);
  EXPECT_EQ(std::get<PacketIdAck>(p).packet_id, 7);
  EXPECT_EQ(decode_error("60 02 00 07"), DecodeError::BadFixedHeaderFlags);  // PUBREL needs 0010
  EXPECT_EQ(decode_error("40 03 00 07 00"), DecodeError::TrailingBytes);
  EXPECT_EQ(decode_error("40 02 00 00"), DecodeError::PacketIdZero);
  ASSERT_EQ(decode(bytes("c0 00"), p), DecodeError::None);
  EXPECT_TRUE(std::holds_alternative<Pingreq>(p));
  EXPECT_EQ(decode_error("c0 01 00"), DecodeError::TrailingBytes);
  ASSERT_EQ(decode(bytes("e0 00"), p), DecodeError::None);
  EXPECT_TRUE(std::holds_alternative<Disconnect>(p));
  EXPECT_EQ(decode_error("e1 00"), DecodeError::BadFixedHeaderFlags);
}

TEST(SmallPackets, ServerToClientAndReservedTypesAreRefused) {
  EXPECT_EQ(decode_error("20 02 00 00"), DecodeError::UnexpectedPacketType);  // CONNACK
  EXPECT_EQ(decode_error("90 03 00 01 00"), DecodeError::UnexpectedPacketType);
  EXPECT_EQ(decode_error("b0 02 00 01"), DecodeError::UnexpectedPacketType);
  EXPECT_EQ(decode_error("d0 00"), DecodeError::UnexpectedPacketType);
  EXPECT_EQ(decode_error("00 00"), DecodeError::ReservedPacketType);
  EXPECT_EQ(decode_error("f0 00"), DecodeError::ReservedPacketType);
}

TEST(Encoders, ServerPackets) {
  Bytes b;
  encode_connack(b, false, connack::kNotAuthorized);
  EXPECT_EQ(to_hex(b), "20 02 00 05");
  b.clear();
  const std::uint8_t codes[] = {0x00, 0x80};
  encode_suback(b, 0x0102, codes);
  EXPECT_EQ(to_hex(b), "90 04 01 02 00 80");
  b.clear();
  encode_unsuback(b, 3);
  EXPECT_EQ(to_hex(b), "b0 02 00 03");
  b.clear();
  encode_pingresp(b);
  EXPECT_EQ(to_hex(b), "d0 00");
  b.clear();
  encode_packet_id_ack(b, PacketType::Pubrec, 4);
  encode_packet_id_ack(b, PacketType::Pubrel, 4);
  encode_packet_id_ack(b, PacketType::Pubcomp, 4);
  EXPECT_EQ(to_hex(b), "50 02 00 04 62 02 00 04 70 02 00 04");
}

TEST(Encoders, PeerSubscribeAndUnsubscribe) {
  Bytes b;
  const std::string_view filters[] = {"topic1"};
  encode_subscribe(b, 1, filters);
  EXPECT_EQ(to_hex(b), "82 0b 00 01 00 06 74 6f 70 69 63 31 00");
  b.clear();
  encode_unsubscribe(b, 2, filters);
  EXPECT_EQ(to_hex(b), "a2 0a 00 02 00 06 74 6f 70 69 63 31");
  ClientPacket p;
  ASSERT_EQ(decode(b, p), DecodeError::None);
  EXPECT_EQ(std::get<Unsubscribe>(p).filters[0], "topic1");
}

TEST(Decoder, LenientFlagsAcceptHandBuiltPeerPackets) {
  const auto b = bytes("80 06 00 01 00 01 61 00");  // SUBSCRIBE with flags 0
  ClientPacket p;
  const auto f = frame_of(b);
  EXPECT_EQ(decode_client_packet(f, ProtocolVersion::V311, p), DecodeError::BadFixedHeaderFlags);
  EXPECT_EQ(decode_client_packet(f, ProtocolVersion::V311, p, true), DecodeError::None);
}

// --- MQTT 5
// -----------------------------------------------------------------------------------------

DecodeError decode5(const Bytes& b, ClientPacket& out) {
  return decode(b, out, ProtocolVersion::V5);
}

DecodeError decode5_error(std::string_view hex) {
  ClientPacket p;
  return decode5(bytes(hex), p);
}

// A v5 CONNECT with the given property bytes (hex) and client id "c".
Bytes connect5(std::string_view props_hex, std::uint8_t flags = 0x02) {
  const Bytes props = bytes(props_hex);
  Bytes body = bytes("00 04 4d 51 54 54 05");
  body.push_back(std::byte{flags});
  append(body, bytes("00 3c"));
  encode_remaining_length(body, props.size());
  append(body, props);
  append(body, bytes("00 01 63"));
  Bytes out{std::byte{0x10}};
  encode_remaining_length(out, body.size());
  append(out, body);
  return out;
}

TEST(V5Connect, PropertiesArePickedOutAndKeptRaw) {
  ClientPacket p;
  // Session Expiry 300, Receive Maximum 20, Maximum Packet Size 1000, Topic Alias Maximum 5, a
  // user property.
  const auto b = connect5("11 00 00 01 2c 21 00 14 27 00 00 03 e8 22 00 05 26 00 01 6b 00 01 76");
  ASSERT_EQ(decode5(b, p), DecodeError::None);
  const auto& c = std::get<Connect>(p);
  EXPECT_EQ(c.version, ProtocolVersion::V5);
  EXPECT_EQ(c.client_id, "c");
  EXPECT_EQ(c.properties.session_expiry, 300u);
  EXPECT_EQ(c.properties.receive_maximum, 20);
  EXPECT_EQ(c.properties.maximum_packet_size, 1000u);
  EXPECT_EQ(c.properties.topic_alias_maximum, 5);
  EXPECT_EQ(c.properties.raw.size(), 23u);
}

TEST(V5Connect, PropertyViolations) {
  ClientPacket p;
  // Receive Maximum twice: a protocol error.
  EXPECT_EQ(decode5(connect5("21 00 14 21 00 15"), p), DecodeError::DuplicateProperty);
  // Receive Maximum 0 and Maximum Packet Size 0 are forbidden.
  EXPECT_EQ(decode5(connect5("21 00 00"), p), DecodeError::BadPropertyValue);
  EXPECT_EQ(decode5(connect5("27 00 00 00 00"), p), DecodeError::BadPropertyValue);
  // Request Problem Information must be 0 or 1.
  EXPECT_EQ(decode5(connect5("17 02"), p), DecodeError::BadPropertyValue);
  // Unknown identifier; Topic Alias is not a CONNECT property; a value cut short.
  EXPECT_EQ(decode5(connect5("7f 00"), p), DecodeError::MalformedProperty);
  EXPECT_EQ(decode5(connect5("23 00 01"), p), DecodeError::MalformedProperty);
  EXPECT_EQ(decode5(connect5("11 00 00"), p), DecodeError::MalformedProperty);
  // A user property with invalid UTF-8.
  EXPECT_EQ(decode5(connect5("26 00 01 ff 00 01 76"), p), DecodeError::InvalidUtf8);
  // Any number of user properties is fine.
  EXPECT_EQ(decode5(connect5("26 00 01 6b 00 01 76 26 00 01 6b 00 01 76"), p), DecodeError::None);
}

TEST(V5Connect, PasswordWithoutUserNameIsAllowedInV5) {
  ClientPacket p;
  const Bytes b = bytes("10 13 00 04 4d 51 54 54 05 42 00 3c 00 00 01 63 00 03 70 77 64");
  ASSERT_EQ(decode5(b, p), DecodeError::None);
  EXPECT_FALSE(std::get<Connect>(p).username);
  EXPECT_EQ(str(*std::get<Connect>(p).password), "pwd");
}

TEST(V5Connect, WillPropertiesComeBeforeTheWillTopic) {
  ClientPacket p;
  // Will flag, will properties (Will Delay 10, Content Type "t"), topic "w", payload "x".
  const Bytes b = bytes(
      "10 1e 00 04 4d 51 54 54 05 06 00 3c 00 00 01 63 09 18 00 00 00 0a 03 00 01 74 00 01 77 "
      "00 01 78");
  ASSERT_EQ(decode5(b, p), DecodeError::None) << decode_error_name(decode5(b, p));
  const auto& w = *std::get<Connect>(p).will;
  EXPECT_EQ(w.topic, "w");
  EXPECT_EQ(str(w.payload), "x");
  EXPECT_EQ(w.properties.will_delay, 10u);
  EXPECT_EQ(to_hex(without_properties(w.properties.raw, {0x18})), "03 00 01 74");
}

TEST(V5Publish, TopicAliasAndEmptyTopic) {
  ClientPacket p;
  // QoS 0, topic "a", properties: Topic Alias 1, payload "hi".
  const Bytes with_alias = bytes("30 09 00 01 61 03 23 00 01 68 69");  // views point into it
  ASSERT_EQ(decode5(with_alias, p), DecodeError::None);
  EXPECT_EQ(std::get<Publish>(p).properties.topic_alias, 1);
  EXPECT_EQ(str(std::get<Publish>(p).payload), "hi");
  // An empty topic with an alias is fine; without one it is a protocol error.
  ASSERT_EQ(decode5(bytes("30 08 00 00 03 23 00 01 68 69"), p), DecodeError::None);
  EXPECT_EQ(decode5_error("30 05 00 00 00 68 69"), DecodeError::EmptyTopicWithoutAlias);
  // 3.1.1 has no properties: the same bytes are topic "a" and payload "\x03#\0\x01hi".
  ASSERT_EQ(decode(with_alias, p), DecodeError::None);
  EXPECT_EQ(std::get<Publish>(p).payload.size(), 6u);
  // A client must not send a Subscription Identifier in PUBLISH.
  EXPECT_EQ(decode5_error("30 07 00 01 61 02 0b 01 78"), DecodeError::MalformedProperty);
}

TEST(V5Subscribe, OptionsAndProperties) {
  ClientPacket p;
  Bytes b;
  // No Local, Retain As Published, Retain Handling 2, QoS 1.
  encode_subscribe_v5(b, 7, "a/#", 0x2d);
  ASSERT_EQ(decode5(b, p), DecodeError::None);
  const auto& t = std::get<Subscribe>(p).topics.at(0);
  EXPECT_TRUE(t.no_local);
  EXPECT_TRUE(t.retain_as_published);
  EXPECT_EQ(t.retain_handling, 2);
  EXPECT_EQ(t.requested_qos, 1);
  // Retain Handling 3 and the reserved bits are malformed; in 3.1.1 any of bits 2-7 are.
  b.clear();
  encode_subscribe_v5(b, 7, "a", 0x30);
  EXPECT_EQ(decode5(b, p), DecodeError::BadSubscriptionOptions);
  b.clear();
  encode_subscribe_v5(b, 7, "a", 0x40);
  EXPECT_EQ(decode5(b, p), DecodeError::BadSubscriptionOptions);
  // No Local on a shared subscription is a protocol error.
  b.clear();
  encode_subscribe_v5(b, 7, "$share/g/a", 0x04);
  EXPECT_EQ(decode5(b, p), DecodeError::NoLocalOnSharedSubscription);
  // Subscription Identifier: picked out; 0 is forbidden.
  b.clear();
  encode_subscribe_v5(b, 7, "a", 0x00, PropertyWriter().varint(0x0b, 300).bytes());
  ASSERT_EQ(decode5(b, p), DecodeError::None);
  EXPECT_EQ(std::get<Subscribe>(p).properties.subscription_id, 300u);
  b.clear();
  encode_subscribe_v5(b, 7, "a", 0x00, PropertyWriter().varint(0x0b, 0).bytes());
  EXPECT_EQ(decode5(b, p), DecodeError::BadPropertyValue);
}

TEST(V5Acks, ReasonCodeAndPropertiesAreOptional) {
  ClientPacket p;
  ASSERT_EQ(decode5(bytes("40 02 00 05"), p), DecodeError::None);
  EXPECT_EQ(std::get<PacketIdAck>(p).reason_code, 0);
  ASSERT_EQ(decode5(bytes("40 03 00 05 10"), p), DecodeError::None);
  EXPECT_EQ(std::get<PacketIdAck>(p).reason_code, 0x10);
  ASSERT_EQ(decode5(bytes("62 08 00 05 92 04 1f 00 01 78"), p), DecodeError::None);
  EXPECT_EQ(decode5_error("40 05 00 05 00 00 ff"), DecodeError::TrailingBytes);
  EXPECT_EQ(decode_error("40 03 00 05 10"), DecodeError::TrailingBytes);  // not in 3.1.1
}

TEST(V5Disconnect, ReasonAndSessionExpiry) {
  ClientPacket p;
  ASSERT_EQ(decode5(bytes("e0 00"), p), DecodeError::None);
  EXPECT_EQ(std::get<Disconnect>(p).reason_code, 0);
  ASSERT_EQ(decode5(bytes("e0 07 04 05 11 00 00 00 3c"), p), DecodeError::None);
  EXPECT_EQ(std::get<Disconnect>(p).reason_code, 4);
  EXPECT_EQ(std::get<Disconnect>(p).properties.session_expiry, 60u);
  EXPECT_EQ(decode_error("e0 01 04"), DecodeError::TrailingBytes);  // 3.1.1
}

TEST(V5Auth, OnlyInV5) {
  ClientPacket p;
  ASSERT_EQ(decode5(bytes("f0 00"), p), DecodeError::None);
  EXPECT_TRUE(std::holds_alternative<Auth>(p));
  EXPECT_EQ(decode_error("f0 00"), DecodeError::ReservedPacketType);
}

TEST(V5Encoders, ServerPacketsByteForByte) {
  Bytes b;
  encode_connack_v5(b, true, 0x00, PropertyWriter().u16(0x22, 10).u8(0x25, 1).bytes());
  EXPECT_EQ(to_hex(b), "20 08 01 00 05 22 00 0a 25 01");
  b.clear();
  encode_publish_v5(b, "t", as_bytes("p"), 0, true, false, 0, bytes("01 01"));
  EXPECT_EQ(to_hex(b), "31 07 00 01 74 02 01 01 70");
  b.clear();
  const std::uint8_t codes[] = {0x00, 0x8f};
  encode_suback_v5(b, 3, codes);
  EXPECT_EQ(to_hex(b), "90 05 00 03 00 00 8f");
  b.clear();
  encode_unsuback_v5(b, 3, codes);
  EXPECT_EQ(to_hex(b), "b0 05 00 03 00 00 8f");
  b.clear();
  encode_disconnect_v5(b, 0x8e);
  EXPECT_EQ(to_hex(b), "e0 02 8e 00");
}

TEST(V5ReasonCodes, ForDecodeErrors) {
  EXPECT_EQ(reason_code_for(DecodeError::PacketTooLarge), reason::kPacketTooLarge);
  EXPECT_EQ(reason_code_for(DecodeError::InvalidTopicName), reason::kTopicNameInvalid);
  EXPECT_EQ(reason_code_for(DecodeError::DuplicateProperty), reason::kProtocolError);
  EXPECT_EQ(reason_code_for(DecodeError::Truncated), reason::kMalformedPacket);
  EXPECT_EQ(reason_code_for(DecodeError::MalformedProperty), reason::kMalformedPacket);
}

}  // namespace
}  // namespace mqtt_proxy::test
