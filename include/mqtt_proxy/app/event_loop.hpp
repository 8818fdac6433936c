// The one event loop: it owns the clock and every descriptor (captures, the peer socket, a
// timerfd armed for the core's next deadline, a signalfd for SIGINT/SIGTERM, the metrics server's
// wake-up fd), drains what is ready into the core, lets it react, and sends what it produced. It is
// also the only thread that reads the figures: scrapes, InfluxDB pushes and $SYS topics are made
// here, from one snapshot each.
#pragma once

#include <signal.h>

#include <memory>
#include <optional>

#include "mqtt_proxy/app/io.hpp"
#include "mqtt_proxy/app/upstream_connector.hpp"
#include "mqtt_proxy/core/proxy_core.hpp"
#include "mqtt_proxy/os/fd.hpp"
#include "mqtt_proxy/telemetry/http_exporter.hpp"
#include "mqtt_proxy/telemetry/snapshot.hpp"
#include "mqtt_proxy/telemetry/sys_topics.hpp"
#include "mqtt_proxy/util/log.hpp"
#include "mqtt_proxy/util/result.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::app {

// Set from Options, which holds the defaults.
struct LoopConfig {
  std::uint16_t udp_port = 0;  // where datagrams to peers go
  Duration stats_interval{0};  // log every counter this often; 0: never
  Duration shutdown_grace{0};  // after a signal, for clients to take their FIN
  std::string peer_key_file;   // read again at SIGHUP (a new key rolled out); empty: none
  std::string version;         // for $SYS/broker/version and mqtt_proxy_build_info
  // Exporters, owned by the caller; null when off.
  telemetry::MetricsServer* metrics = nullptr;
  telemetry::InfluxPusher* influx = nullptr;
  std::optional<telemetry::InfluxTarget> influx_target;
  Duration metrics_interval{0};  // InfluxDB pushes
  Duration sys_interval{0};      // $SYS topics; 0: none
  // Upstream mode: the broker the core's relays connect to, through sockets the loop owns.
  std::optional<UpstreamTarget> upstream;
};

class EventLoop {
 public:
  // `signals` are blocked already; the loop reads them from a signalfd.
  static Result<std::unique_ptr<EventLoop>> create(Io& io, core::ProxyCore& core,
                                                   const sigset_t& signals, LoopConfig cfg,
                                                   log::Logger& log);

  // Runs until a signal's shutdown completes (0) or a capture fails (1).
  int run();

  // The core's counters and the I/O's, read now.
  metrics::Counters counters() const;
  // One log line with every counter that is not zero.
  void log_counters(std::string_view what) const;
  // Everything the exporters export, read now.
  telemetry::Snapshot snapshot() const;
  // Upstream mode: the broker, as the ready line names it; empty otherwise.
  std::string upstream_description() const;

 private:
  EventLoop(Io& io, core::ProxyCore& core, LoopConfig cfg, log::Logger& log)
      : io_(io), core_(core), cfg_(cfg), log_(log) {}
  void arm_timer();
  void drain_capture(std::uint32_t index);
  void read_signals();
  void reload_peer_keys();
  void send_output();
  void publish_sys();
  void push_influx();

  Io& io_;
  core::ProxyCore& core_;
  LoopConfig cfg_;
  log::Logger& log_;
  // Acts on what the core's relays asked of the broker side, flushing the core after each round.
  void service_upstream();

  os::Fd epoll_, timer_, signals_;
  std::unique_ptr<UpstreamConnector> upstream_;  // upstream mode
  TimePoint now_{};
  std::optional<TimePoint> next_stats_;
  std::optional<TimePoint> next_sys_;
  std::optional<TimePoint> next_influx_;
  std::optional<telemetry::SysTopics> sys_;
  std::optional<TimePoint> shutdown_by_;
  std::optional<TimePoint> armed_deadline_;
  bool timer_armed_ = false;
  bool capture_failed_ = false;
};

// CLOCK_MONOTONIC as the core's TimePoint.
TimePoint monotonic_now();

}  // namespace mqtt_proxy::app
