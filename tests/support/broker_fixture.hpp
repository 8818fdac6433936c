// A broker with a fake transport: bytes the broker sends are collected per client, closes recorded.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "client_packets.hpp"
#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "test_util.hpp"

namespace mqtt_proxy::test {

struct OwnedFrame {
  mqtt::PacketType type;
  std::uint8_t flags;
  Bytes body;
  Bytes wire;
};

// Splits a byte stream into frames (test side: the stream must be well formed).
inline std::vector<OwnedFrame> split_frames(ByteSpan stream) {
  std::vector<OwnedFrame> out;
  mqtt::FrameSplitter s(SIZE_MAX);
  s.feed(stream);
  mqtt::DecodeError err;
  while (auto f = s.next(err)) {
    const auto wire = stream.subspan(stream.size() - s.buffered() - f->wire_size, f->wire_size);
    out.push_back(OwnedFrame{f->type(), f->flags(), Bytes(f->body.begin(), f->body.end()),
                             Bytes(wire.begin(), wire.end())});
  }
  EXPECT_EQ(err, mqtt::DecodeError::None);
  EXPECT_EQ(s.buffered(), 0u);
  return out;
}

class FakeHost : public broker::BrokerHost {
 public:
  void send(broker::ClientHandle c, ByteSpan b) override {
    append(out[c], b);
    queued[c] += b.size();
  }
  std::size_t queued_bytes(broker::ClientHandle c) const override {
    auto it = queued.find(c);
    return it == queued.end() ? 0 : it->second;
  }
  void close(broker::ClientHandle c) override { closed.insert(c); }

  std::vector<OwnedFrame> take(broker::ClientHandle c) {
    auto frames = split_frames(out[c]);
    out[c].clear();
    return frames;
  }

  std::map<broker::ClientHandle, Bytes> out;
  std::map<broker::ClientHandle, std::size_t> queued;
  std::set<broker::ClientHandle> closed;
};

struct BrokerFixtureDefaults {
  static broker::BrokerConfig config() {
    broker::BrokerConfig c;
    c.username = std::string(kUsername);
    c.password = std::string(kPassword);
    return c;
  }
};

class BrokerFixture : public ::testing::Test {
 protected:
  // With `flow`, the broker applies backpressure through flow_ (high-water mark 100 bytes, low 50,
  // grace 1.5 s).
  explicit BrokerFixture(std::vector<wire::Ipv4Address> peers = {},
                         broker::BrokerConfig cfg = default_config(), bool flow = false)
      : peering_(peering::PeeringConfig{std::move(peers)}, log::null_logger(), counters_),
        broker_(cfg, host_, peering_, log::null_logger(), counters_, flow ? &flow_ : nullptr) {}

  static flow::FlowConfig flow_config() {
    flow::FlowConfig f;
    f.high_water = 100;
    f.low_water = 50;
    return f;
  }

  static broker::BrokerConfig default_config() { return BrokerFixtureDefaults::config(); }

  void open(broker::ClientHandle c) {
    broker_.on_open(
        c, wire::SocketAddress{wire::Ipv4Address{0x0a000001}, static_cast<std::uint16_t>(c)}, now_);
  }

  // As the TCP receive buffer does: what the broker does not take is offered again with the next
  // bytes.
  void feed(broker::ClientHandle c, const Bytes& b) {
    Bytes& u = unread_[c];
    append(u, b);
    const std::size_t n = broker_.on_data(c, u, now_);
    u.erase(u.begin(), u.begin() + static_cast<std::ptrdiff_t>(n));
  }

  // Opens and connects a client; asserts CONNACK 0.
  void connect(broker::ClientHandle c, std::string_view id, std::uint16_t keepalive = 60) {
    open(c);
    feed(c, connect_packet(id, keepalive));
    const auto f = host_.take(c);
    ASSERT_EQ(f.size(), 1u);
    ASSERT_EQ(f[0].type, mqtt::PacketType::Connack);
    ASSERT_EQ(to_hex(f[0].body), "00 00");
  }

  // Opens and connects a clean-session-0 client; returns the CONNACK body ("01 00": session
  // present).
  std::string connect_persistent(broker::ClientHandle c, std::string_view id) {
    open(c);
    feed(c, connect_packet(id, 60, kUsername, kPassword, {}, false));
    const auto f = host_.take(c);
    if (f.size() != 1 || f[0].type != mqtt::PacketType::Connack) return "no CONNACK";
    return to_hex(f[0].body);
  }

  void subscribe(broker::ClientHandle c, std::string_view filter, std::uint16_t id = 1) {
    feed(c, subscribe_packet(filter, id));
  }

  void unsubscribe(broker::ClientHandle c, std::string_view filter, std::uint16_t id = 2) {
    feed(c, unsubscribe_packet(filter, id));
  }

  void publish(broker::ClientHandle c, std::string_view topic, std::string_view payload,
               std::uint8_t qos = 0, std::uint16_t id = 0, bool dup = false, bool retain = false) {
    feed(c, publish_packet(topic, payload, qos, id, dup, retain));
  }
  void publish_retained(broker::ClientHandle c, std::string_view topic, std::string_view payload) {
    publish(c, topic, payload, 0, 0, false, true);
  }

  // Topics and payloads of the PUBLISH packets sent to `c` since the last call; " (retained)"
  // follows those with RETAIN set.
  std::vector<std::string> received(broker::ClientHandle c) {
    std::vector<std::string> out;
    for (const auto& f : host_.take(c)) {
      if (f.type != mqtt::PacketType::Publish) continue;
      mqtt::ClientPacket p;
      mqtt::FrameView v{static_cast<std::uint8_t>(0x30 | f.flags), f.body, 0};
      EXPECT_EQ(mqtt::decode_client_packet(v, mqtt::ProtocolVersion::V311, p),
                mqtt::DecodeError::None);
      const auto& pub = std::get<mqtt::Publish>(p);
      EXPECT_EQ(pub.qos, 0);
      out.push_back(std::string(pub.topic) + "=" + str(pub.payload) +
                    (pub.retain ? " (retained)" : ""));
    }
    return out;
  }

  TimePoint now_ = t0();
  std::map<broker::ClientHandle, Bytes> unread_;
  metrics::Counters counters_;
  flow::FlowControl flow_{flow_config(), counters_};
  FakeHost host_;
  peering::Peering peering_;
  broker::Broker broker_;
};

}  // namespace mqtt_proxy::test
