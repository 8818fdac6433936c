// Everything one scrape or push exports, gathered by the loop, and the samples made from it. Pure:
// the loop fills the Snapshot (counters, peers, RTTs, process figures read by process_stats), and
// both exporters render the same samples.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mqtt_proxy/metrics/counters.hpp"
#include "mqtt_proxy/peering/peering.hpp"
#include "mqtt_proxy/telemetry/prometheus.hpp"

namespace mqtt_proxy::telemetry {

// One peer, as the exposition labels it (`peer="10.0.0.2"`).
struct PeerFigures {
  enum class State { kPlain, kUp, kDown };
  std::string peer;
  State state = State::kPlain;
  std::uint64_t filters = 0;
  std::uint64_t datagrams_in = 0;
  std::uint64_t datagrams_out = 0;
  std::uint64_t datagrams_lost = 0;
  std::uint64_t publish_in = 0;
  std::uint64_t publish_out = 0;
};

std::vector<PeerFigures> peer_figures(const std::vector<peering::Peering::PeerStatus>& status);

// One capture interface (`interface="h1-eth0"`): the per-interface part of the capture_* counters.
// The loop fills it from PcapCapture::iface() and add_counters() into a fresh Counters per capture.
struct InterfaceFigures {
  std::string interface;
  std::uint64_t dropped = 0;     // capture_dropped: the ring had no room (ps_drop)
  std::uint64_t if_dropped = 0;  // capture_if_dropped: the interface or driver dropped (ps_ifdrop)
  std::uint64_t truncated = 0;   // capture_truncated: cut to the snap length
};

// One hook or plugin of the chain (`plugin="acl_file"`): what HookChain::stats() counted.
struct HookFigures {
  std::string plugin;
  std::uint64_t calls = 0;
  std::uint64_t refusals = 0;
  std::uint64_t slow = 0;  // calls over --hook-budget
  double seconds = 0;      // spent in it, all calls
  double longest_seconds = 0;
};

// The process figures of the Prometheus client libraries (process_stats.hpp reads them).
struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  std::uint64_t resident_memory_bytes = 0;
  std::uint64_t virtual_memory_bytes = 0;
  // RLIMIT_AS; unlimited is 2^64-1, as client_golang exports RLIM_INFINITY.
  std::uint64_t virtual_memory_max_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;      // RLIMIT_NOFILE, soft
  double start_time_seconds = 0;  // since the Unix epoch
};

struct Snapshot {
  metrics::Counters counters;
  std::vector<PeerFigures> peers;
  std::vector<InterfaceFigures> interfaces;
  std::vector<HookFigures> hooks;  // in the chain's order; none without --plugin
  // The smoothed RTT of each current connection, seconds (a summary over connections now, not
  // over time: its _sum and _count go down when connections close).
  std::vector<double> rtt_seconds;
  std::optional<ProcessStats> process;
  std::string version;
};

// Every sample of a snapshot: each Counters field once (catalogue.hpp), the derived Mosquitto
// families, the per-peer, per-interface and per-hook families, the RTT summary, process_* and
// mqtt_proxy_build_info.
std::vector<Sample> collect_samples(const Snapshot& s);

// render_text(collect_samples(s)).
std::string render_prometheus(const Snapshot& s);

}  // namespace mqtt_proxy::telemetry
