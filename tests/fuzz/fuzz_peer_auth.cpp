// Fuzzes the peer protocol with authentication on: the input as it arrives (the AUTH trailer's
// parser and the rejection path), and the input signed with the key (so everything behind the
// check is reached too, as from a holder of the key).
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "mqtt_proxy/broker/broker.hpp"
#include "mqtt_proxy/peering/peer_auth.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "null_host.hpp"
#include "test_network.hpp"

using namespace mqtt_proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const wire::Ipv4Address peer = test::kPeerIp;
  const wire::Ipv4Address self{0x0a000002};
  const Bytes key(16, std::byte{0x5a});
  metrics::Counters counters;
  test::NullHost host;
  peering::PeeringConfig cfg{{peer}};
  cfg.keys = {key};
  cfg.local_addresses = {self};
  cfg.epoch = 7;
  peering::Peering peering(cfg, log::null_logger(), counters);
  broker::Broker b({}, host, peering, log::null_logger(), counters);
  const TimePoint now{std::chrono::hours(1)};
  const ByteSpan d{reinterpret_cast<const std::byte*>(data), size};
  for (const auto& p : peering.on_datagram(peer, d, now)) b.on_peer_publish(p, flow::kNone, now);
  Bytes sealed(d.begin(), d.end());
  static const peering::auth::Keyring keyring({key});
  keyring.seal(sealed, {peer, self}, size % 2 ? 7 : 0, 1 + size);
  for (const auto& p : peering.on_datagram(peer, sealed, now)) {
    b.on_peer_publish(p, flow::kNone, now);
  }
  peering.forward_publish("a/b", d.first(std::min<std::size_t>(size, 16)), false);
  peering.end_turn();
  return 0;
}
