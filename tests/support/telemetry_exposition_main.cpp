// Prints a full exposition with every sample nonzero (and a peer, the RTT summary and this
// process's figures), for `promtool check metrics` (the ctest metrics.promtool).
#include <cstdio>

#include "mqtt_proxy/telemetry/process_stats.hpp"
#include "mqtt_proxy/telemetry/snapshot.hpp"

int main() {
  using namespace mqtt_proxy::telemetry;
  Snapshot s;
  std::uint64_t v = 0;
#define MQTT_PROXY_SET(name, kind, help) s.counters.name = ++v;
  MQTT_PROXY_COUNTERS(MQTT_PROXY_SET)
#undef MQTT_PROXY_SET
  PeerFigures peer;
  peer.peer = "10.0.0.2";
  peer.state = PeerFigures::State::kUp;
  peer.filters = 2;
  peer.datagrams_in = 10;
  peer.datagrams_out = 11;
  peer.datagrams_lost = 1;
  peer.publish_in = 5;
  peer.publish_out = 6;
  s.peers.push_back(peer);
  peer.peer = "10.0.0.3";
  peer.state = PeerFigures::State::kPlain;
  s.peers.push_back(peer);
  s.interfaces.push_back({"h1-eth0", 1, 2, 3});
  s.hooks.push_back({"acl_file", 100, 3, 1, 0.0125, 0.006});
  s.hooks.push_back({"topic_rewrite", 50, 0, 0, 0.001, 0.0001});
  s.rtt_seconds = {0.001, 0.002, 0.010};
  auto process = read_process_stats();
  if (!process) {
    std::fprintf(stderr, "%s\n", process.error().c_str());
    return 1;
  }
  s.process = *process;
  s.version = "0.1.0";
  const std::string text = render_prometheus(s);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
