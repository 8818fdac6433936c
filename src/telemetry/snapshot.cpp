#include "mqtt_proxy/telemetry/snapshot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace mqtt_proxy::telemetry {

namespace {

Sample make(std::string_view family, MetricType type, std::string_view help,
            std::variant<std::uint64_t, double> value, std::vector<Label> labels = {}) {
  Sample s;
  s.family = family;
  s.type = type;
  s.help = help;
  s.value = value;
  s.labels = std::move(labels);
  return s;
}

std::string_view state_name(PeerFigures::State s) {
  switch (s) {
    case PeerFigures::State::kUp:
      return "up";
    case PeerFigures::State::kDown:
      return "down";
    case PeerFigures::State::kPlain:
      return "plain";
  }
  return "plain";
}

void add_counters(const metrics::Counters& c, std::vector<Sample>& out) {
  const auto cat = catalogue();
  std::size_t i = 0;
  c.for_each([&](std::string_view, metrics::Kind, std::string_view, std::uint64_t v) {
    // catalogue() is built by the same for_each, so entry i is field i.
    const CatalogueEntry& e = cat[i++];
    std::vector<Label> labels;
    if (!e.label_name.empty())
      labels.push_back({std::string(e.label_name), std::string(e.label_value)});
    out.push_back(make(e.family, e.type, e.help, v, std::move(labels)));
  });
  for (const DerivedFamily& d : derived_families()) {
    out.push_back(make(d.family, d.type, d.help, derived_value(d, c)));
  }
}

void add_peers(const std::vector<PeerFigures>& peers, std::vector<Sample>& out) {
  constexpr std::array kStates{PeerFigures::State::kUp, PeerFigures::State::kDown,
                               PeerFigures::State::kPlain};
  for (const PeerFigures& p : peers) {
    const auto peer = [&] { return std::vector<Label>{{"peer", p.peer}}; };
    out.push_back(make("mqtt_proxy_per_peer_up", MetricType::kGauge,
                       "1 if the peer speaks the extension and was heard within the liveness "
                       "timeout, else 0",
                       std::uint64_t{p.state == PeerFigures::State::kUp ? 1u : 0u}, peer()));
    for (const auto st : kStates) {
      out.push_back(make("mqtt_proxy_per_peer_state", MetricType::kGauge,
                         "the peer's state (1 for the current one): up, down (capable and silent), "
                         "plain (never announced the extension: liveness unknown)",
                         std::uint64_t{p.state == st ? 1u : 0u},
                         {{"peer", p.peer}, {"state", std::string(state_name(st))}}));
    }
    out.push_back(make("mqtt_proxy_per_peer_filters", MetricType::kGauge,
                       "topic filters the peer subscribed to, that we hold", p.filters, peer()));
    out.push_back(make("mqtt_proxy_per_peer_datagrams_in", MetricType::kCounter,
                       "datagrams from the peer", p.datagrams_in, peer()));
    out.push_back(make("mqtt_proxy_per_peer_datagrams_out", MetricType::kCounter,
                       "datagrams sent to the peer", p.datagrams_out, peer()));
    out.push_back(make("mqtt_proxy_per_peer_datagrams_lost", MetricType::kCounter,
                       "datagrams from the peer that never arrived (sequence gaps)",
                       p.datagrams_lost, peer()));
    out.push_back(make("mqtt_proxy_per_peer_publish_in", MetricType::kCounter,
                       "PUBLISH packets from the peer", p.publish_in, peer()));
    out.push_back(make("mqtt_proxy_per_peer_publish_out", MetricType::kCounter,
                       "PUBLISH packets sent to the peer", p.publish_out, peer()));
  }
}

void add_interfaces(const std::vector<InterfaceFigures>& ifaces, std::vector<Sample>& out) {
  for (const InterfaceFigures& f : ifaces) {
    const auto label = [&] { return std::vector<Label>{{"interface", f.interface}}; };
    out.push_back(make("mqtt_proxy_per_interface_capture_dropped", MetricType::kCounter,
                       "frames the capture ring of the interface had no room for (libpcap ps_drop)",
                       f.dropped, label()));
    out.push_back(make("mqtt_proxy_per_interface_capture_if_dropped", MetricType::kCounter,
                       "frames the interface or driver dropped (libpcap ps_ifdrop)", f.if_dropped,
                       label()));
    out.push_back(make("mqtt_proxy_per_interface_capture_truncated", MetricType::kCounter,
                       "frames of the interface longer than the snap length, cut", f.truncated,
                       label()));
  }
}

void add_hooks(const std::vector<HookFigures>& hooks, std::vector<Sample>& out) {
  for (const HookFigures& h : hooks) {
    const auto label = [&] { return std::vector<Label>{{"plugin", h.plugin}}; };
    out.push_back(make("mqtt_proxy_hook_calls", MetricType::kCounter,
                       "calls of the plugin's hooks (docs/plugins.md)", h.calls, label()));
    out.push_back(make("mqtt_proxy_hook_refusals", MetricType::kCounter,
                       "CONNECTs, PUBLISHes, filters and deliveries the plugin refused", h.refusals,
                       label()));
    out.push_back(make("mqtt_proxy_hook_slow", MetricType::kCounter,
                       "calls of the plugin that took longer than --hook-budget", h.slow, label()));
    out.push_back(make("mqtt_proxy_hook_seconds", MetricType::kCounter,
                       "time spent in the plugin's hooks, in the event loop", h.seconds, label()));
    out.push_back(make("mqtt_proxy_hook_longest_seconds", MetricType::kGauge,
                       "the longest single call of the plugin so far", h.longest_seconds, label()));
  }
}

void add_rtt(std::vector<double> rtt, std::vector<Sample>& out) {
  constexpr std::string_view kFamily = "mqtt_proxy_tcp_rtt_seconds";
  constexpr std::string_view kHelp =
      "smoothed RTT of the current TCP connections (over connections now, not over time)";
  std::sort(rtt.begin(), rtt.end());
  double sum = 0;
  for (const double r : rtt) sum += r;
  for (const double q : {0.5, 0.9, 0.99}) {
    // Nearest rank; no connections: NaN, as the client libraries report an empty summary.
    double v = std::nan("");
    if (!rtt.empty()) {
      const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(rtt.size())));
      v = rtt[std::max<std::size_t>(rank, 1) - 1];
    }
    out.push_back(
        make(kFamily, MetricType::kSummary, kHelp, v, {{"quantile", fmt::format("{}", q)}}));
  }
  Sample s = make(kFamily, MetricType::kSummary, kHelp, sum);
  s.suffix = "_sum";
  out.push_back(s);
  s.value = std::uint64_t{rtt.size()};
  s.suffix = "_count";
  out.push_back(std::move(s));
}

void add_process(const ProcessStats& p, std::vector<Sample>& out) {
  out.push_back(make("process_cpu_seconds", MetricType::kCounter,
                     "Total user and system CPU time spent in seconds.", p.cpu_seconds));
  out.push_back(make("process_resident_memory_bytes", MetricType::kGauge,
                     "Resident memory size in bytes.", p.resident_memory_bytes));
  out.push_back(make("process_virtual_memory_bytes", MetricType::kGauge,
                     "Virtual memory size in bytes.", p.virtual_memory_bytes));
  out.push_back(make("process_virtual_memory_max_bytes", MetricType::kGauge,
                     "Maximum amount of virtual memory available in bytes.",
                     p.virtual_memory_max_bytes));
  out.push_back(
      make("process_open_fds", MetricType::kGauge, "Number of open file descriptors.", p.open_fds));
  out.push_back(make("process_max_fds", MetricType::kGauge,
                     "Maximum number of open file descriptors.", p.max_fds));
  out.push_back(make("process_start_time_seconds", MetricType::kGauge,
                     "Start time of the process since unix epoch in seconds.",
                     p.start_time_seconds));
}

}  // namespace

std::vector<PeerFigures> peer_figures(const std::vector<peering::Peering::PeerStatus>& status) {
  using State = peering::Peering::PeerState;
  std::vector<PeerFigures> out;
  out.reserve(status.size());
  for (const auto& s : status) {
    PeerFigures f;
    f.peer = fmt::format("{}", s.addr);
    f.state = s.state == State::Up     ? PeerFigures::State::kUp
              : s.state == State::Down ? PeerFigures::State::kDown
                                       : PeerFigures::State::kPlain;
    f.filters = s.filters;
    f.datagrams_in = s.traffic.datagrams_in;
    f.datagrams_out = s.traffic.datagrams_out;
    f.datagrams_lost = s.traffic.datagrams_lost;
    f.publish_in = s.traffic.publish_in;
    f.publish_out = s.traffic.publish_out;
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Sample> collect_samples(const Snapshot& s) {
  std::vector<Sample> out;
  out.reserve(256);
  add_counters(s.counters, out);
  add_peers(s.peers, out);
  add_hooks(s.hooks, out);
  add_interfaces(s.interfaces, out);
  add_rtt(s.rtt_seconds, out);
  if (s.process) add_process(*s.process, out);
  out.push_back(make("mqtt_proxy_build_info", MetricType::kGauge,
                     "always 1; the version of mqtt_proxy in its label", std::uint64_t{1},
                     {{"version", s.version}}));
  return out;
}

std::string render_prometheus(const Snapshot& s) {
  const auto samples = collect_samples(s);
  return render_text(samples);
}

}  // namespace mqtt_proxy::telemetry
