// Fuzzes the peer protocol: one datagram from a configured peer (one packet or a batch), then the
// local delivery it causes, and forwarding with MQTT 5 properties after it.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "null_host.hpp"
#include "test_network.hpp"

using namespace mqtt_proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const wire::Ipv4Address peer = test::kPeerIp;
  metrics::Counters counters;
  test::NullHost host;  // no client is open, so nothing is ever sent
  peering::Peering peering({{peer}}, log::null_logger(), counters);
  broker::Broker b({}, host, peering, log::null_logger(), counters);
  const TimePoint now{std::chrono::hours(1)};
  const ByteSpan d{reinterpret_cast<const std::byte*>(data), size};
  // A 5.0-form PUBLISH (after a DATA5 header) yields its properties: sent back out below.
  Bytes received_properties;
  for (const auto& p : peering.on_datagram(peer, d)) {
    b.on_peer_publish(p, flow::kNone, now);
    if (!p.properties.raw.empty()) {
      received_properties.assign(p.properties.raw.begin(), p.properties.raw.end());
    }
  }
  // Whatever interest the datagram left behind must be safe to match against; a HELLO in it that
  // announced credit and properties (0x9) makes the one with properties go in the 5.0 form.
  peering.forward_publish("a/b", d.first(std::min<std::size_t>(size, 16)), false);
  // A Topic Alias (stripped), a user property, and whatever bytes the input ends with, which
  // may not be properties at all: the sender must check them before they travel.
  Bytes properties = {std::byte{0x23}, std::byte{0x00}, std::byte{0x01},
                      std::byte{0x26}, std::byte{0x00}, std::byte{0x01},
                      std::byte{'k'},  std::byte{0x00}, std::byte{0x00}};
  peering.forward_publish("a/b", {}, false, flow::kNone, now, properties);
  append(properties, d.last(std::min<std::size_t>(size, 8)));
  peering.forward_publish("a/c", {}, true, flow::kNone, now, properties);
  if (!received_properties.empty()) {
    peering.send_retained(peer, "a/d", {}, now, received_properties);
  }
  return 0;
}
