// Fuzzes the peer protocol: one datagram from a configured peer (one packet or a batch), then the
// local delivery it causes.
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
  for (const auto& p : peering.on_datagram(peer, d)) b.on_peer_publish(p, flow::kNone, now);
  // Whatever interest the datagram left behind must be safe to match against.
  peering.forward_publish("a/b", d.first(std::min<std::size_t>(size, 16)), false);
  return 0;
}
