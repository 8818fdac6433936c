// Fuzzes the MQTT codec and the broker's handling of a client's byte stream. Input layout (after
// mosquitto's OSS-Fuzz broker target): byte 0 = session state (bit 0: already connected, bit 1:
// with MQTT 5), byte 1 = where to split the stream, then the bytes the client sends.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/mqtt/codec.hpp"
#include "null_host.hpp"

using namespace mqtt_proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool connected = data[0] & 1;
  const ByteSpan stream{reinterpret_cast<const std::byte*>(data + 2), size - 2};

  // The codec on its own, for every version.
  for (auto v :
       {mqtt::ProtocolVersion::V31, mqtt::ProtocolVersion::V311, mqtt::ProtocolVersion::V5}) {
    mqtt::FrameSplitter splitter(1 << 20);
    splitter.feed(stream);
    mqtt::DecodeError err;
    while (auto f = splitter.next(err)) {
      mqtt::ClientPacket p;
      (void)mqtt::decode_client_packet(*f, v, p);
      (void)mqtt::decode_client_packet(*f, v, p, true);
    }
  }

  // The broker, fed in two pieces.
  metrics::Counters counters;
  test::NullHost host;
  peering::Peering peering({{wire::Ipv4Address{0x0a000001}}}, log::null_logger(), counters);
  broker::BrokerConfig cfg;
  cfg.max_packet_size = 1 << 20;
  broker::Broker b(cfg, host, peering, log::null_logger(), counters);
  TimePoint now{std::chrono::hours(1)};
  b.on_open(1, {}, now);
  b.on_open(2, {}, now);
  Bytes hello;
  mqtt::Connect c;
  c.client_id = "sub";
  mqtt::encode_connect(hello, c);
  const std::string_view all[] = {"#"};
  mqtt::encode_subscribe(hello, 1, all);
  b.on_data(2, hello, now);
  if (connected) {
    Bytes connect;
    mqtt::Connect cc;
    cc.client_id = "fuzz";
    cc.keepalive = 1;
    // Bit 1 of the state byte: an MQTT 5 session, so the stream is decoded as 5.0.
    if (data[0] & 2) cc.version = mqtt::ProtocolVersion::V5;
    mqtt::encode_connect(connect, cc);
    b.on_data(1, connect, now);
  }
  const std::size_t cut = stream.empty() ? 0 : data[1] % (stream.size() + 1);
  // The rest of a first chunk the broker did not take comes again with the second, as from TCP.
  const std::size_t taken = b.on_data(1, stream.first(cut), now);
  b.on_data(1, stream.subspan(taken), now);
  b.on_timers(now + std::chrono::seconds(2));
  b.on_lost(1, "fuzz", now);
  return 0;
}
